/* net_int.h -- the mesh's own types, shared by the files of lib/net only.
 *
 * Locking.  net->mu guards the peer table, the connection list, the
 * membership view and pending RPCs.  Each
 * connection has its own mu for its send side.  Order: rt->mu, then
 * net->mu, then a conn's mu (net->borrow_mu, actor_ctl.c, comes between
 * rt->mu and net->mu); a frame handler holds none of them when it
 * starts.  Fields marked "rt->mu" are the owner's scheduling state and
 * are guarded by the runtime lock instead.  The KV table has its own
 * rt->kv_mu, a leaf: taken with none of these held, none taken under it.
 *
 * Threads.  Frames are decoded and handled on NNG's completion threads
 * (each connection's receive side is one serial chain of callbacks); the
 * handlers only hand work on: queue a task, seal an object, queue bytes
 * to send.  The event-loop thread (libevent) runs the timers: heartbeats,
 * failure detection, the parent-death pipe, reaping closed connections.
 */
#ifndef RAYC_NET_INT_H
#define RAYC_NET_INT_H

#include <nng/nng.h>

#include "net/net.h"
#include "net/wire.h"

#define RAYC__URL_MAX 128
/* A peer identity's Ed25519 public and secret key, and a signature
 * (libsodium's crypto_sign sizes; handshake.c checks they agree). */
#define RAYC__ID_PK 32
#define RAYC__ID_SK 64
#define RAYC__ID_SIG 64
#define RAYC__NET_CHUNK ((size_t)1 << 20)   /* object transfer piece */
#define RAYC__NET_OUT_HIGH ((size_t)4 << 20) /* queue more chunks below */
/* A CHUNK's payload starts with this sub-header: object id (16 bytes),
 * total length, offset (8 each), type (1).  Payloads of at least
 * RAYC__CHUNK_DIRECT_MIN after it are received in place. */
#define RAYC__CHUNK_SUB 33
/* FETCH flags. */
#define RAYC__FETCH_SAME_HOST 1u /* may answer with SHM_OFFER */
/* Room is made: send the bytes.  Without it an object of more than one
 * CHUNK is answered with its size alone (a CHUNK with no payload). */
#define RAYC__FETCH_GO 2u
/* The fetcher can take the bytes on a bulk lane (lane.c): with GO, send
 * them there if one is up. */
#define RAYC__FETCH_LANE 4u
/* Bulk lanes (lane.c): set-up deadline (connect, and each read and
 * write of the lane's handshake), how long a peer whose lane failed to
 * set up gets none, the largest frame a lane takes, and how many
 * accepted lanes may be setting up at once. */
#define RAYC__LANE_SETUP_MS 5000
/* The longest a GO waits for its lane's set-up: then it goes over the
 * connection (as do later ones until the lane is up). */
#define RAYC__LANE_WAIT_MS 250
#define RAYC__LANE_RETRY_NS ((int64_t)30 * 1000000000)
#define RAYC__LANE_FRAME_MAX ((size_t)4 << 20)
#define RAYC__LANE_SETUPS 8
/* Task lanes (tlane.c): the largest frame one carries (header
 * included); TASKs go on a lane only while the peer has fewer of our
 * tasks than RAYC__TLANE_INFLIGHT, so at most that many frames are
 * unanswered on it each way (128 KiB); each end asks for a send buffer
 * of RAYC__TLANE_SNDBUF, which Linux caps at net.core.wmem_max (208 KiB
 * by default) and doubles: 416 KiB at least, with room for the kernel's
 * overhead, so a write never waits. */
#define RAYC__TLANE_FRAME_MAX ((size_t)8 << 10)
#define RAYC__TLANE_INFLIGHT 16
/* The most of our tasks one peer holds when a strategy named it (node
 * affinity, spread) rather than the default placement choosing it for
 * its room (owner.c: peer_cap, max(32, 16 x CPUs)); more wait here, on
 * the peer's own queue: a few MiB of specs there at most.  1,024 cost a
 * burst of empty tasks a third of its rate and twice the syscalls a
 * task (docs/benchmarks.md, twenty-third pass). */
#define RAYC__PEER_WINDOW 4096
#define RAYC__TLANE_SNDBUF (256 << 10)
#define RAYC__CHUNK_DIRECT_MIN ((size_t)64 << 10)
#define RAYC__CONN_EXT_MAX 16 /* arena pieces spliced into one send batch */
#define RAYC__CONN_IOV_MAX 8  /* what nng_aio_set_iov takes (nng 1.5) */
/* The longest our own dial may stay pending before the loop gives it up
 * (mesh_life.c; NNG's aio timer is not used: conn.c, rayc__conn_dial). */
#define RAYC__DIAL_WAIT_NS ((int64_t)5 * 1000000000)
/* An unauthenticated peer costs a descriptor and a buffer: a handshake
 * must finish within this (or the heartbeat timeout, if longer), and at
 * most this many accepted connections may be handshaking at once. */
#define RAYC__HS_DEADLINE_NS ((int64_t)5 * 1000000000)
#define RAYC__HS_MAX 64
/* What one peer can make this one hold on receive: each connection keeps
 * a RAYC__RX_BASE buffer; what frames need beyond it, over every
 * connection bound to one member, at most RAYC__PEER_RX_MAX (one frame of
 * the largest size and some; RAYC__PEER_RX_MAX in the environment lowers
 * it, tests only).  At most RAYC__CONN_PER_PEER accepted connections per
 * member (the oldest closes for a new one).  A connection not yet bound
 * to a member (a joiner's, until it is admitted) may only send JOIN: its
 * frames are at most RAYC__WIRE_MAX_JOIN bytes, and it counts among the
 * RAYC__HS_MAX handshaking ones. */
#define RAYC__RX_BASE ((size_t)64 << 10)
#define RAYC__PEER_RX_MAX (RAYC__WIRE_MAX_FRAME + ((size_t)4 << 20))
#define RAYC__CONN_PER_PEER 4
#define RAYC__WIRE_MAX_JOIN ((size_t)64 << 10)

/* JOINED frames with an id received (rayc__test_joined_ids). */
extern _Atomic int rayc__joined_ids;

typedef struct rayc__conn rayc__conn;
typedef struct rayc__xout rayc__xout;
typedef struct rayc__xin rayc__xin;
typedef struct rayc__rpc rayc__rpc;
typedef struct rayc__name_del rayc__name_del;
typedef struct rayc__unborrow rayc__unborrow;
typedef struct rayc__hs rayc__hs;
typedef struct rayc__ctl rayc__ctl;
typedef struct rayc__lanes rayc__lanes;
typedef struct rayc__lane rayc__lane;

/* A piece of bulk work (bulk.c), embedded in the poster's own struct.
 * fn runs on the bulk thread; cancel: the net is stopping, only let go
 * of what the job holds. */
typedef struct rayc__bulk_job rayc__bulk_job;
struct rayc__bulk_job {
	void (*fn)(rayc__net *net, rayc__bulk_job *job, bool cancel);
	rayc__bulk_job *next;
};

/* Work for the loop thread (rayc__ctl_post). */
typedef struct rayc__ctl_work {
	void (*fn)(rayc__net *net, void *arg);
	void *arg;
	struct rayc__ctl_work *next;
	bool queued; /* posted and not yet started (ctl->mu) */
} rayc__ctl_work;

/* Internal result: not now (no coordinator yet, or not this peer): ask
 * again shortly.  Never returned to users. */
#define RAYC__RETRY 100
/* The coordinator's control log has no room for the write now (ctl_log.c):
 * the caller waits a little and tries again. */
#define RAYC__BUSY 101

enum {
	RAYC__CONN_DIALING = 0,
	RAYC__CONN_HANDSHAKE,
	RAYC__CONN_OPEN,
	RAYC__CONN_CLOSED,
};

/* Bytes sent from outside a connection's buffer (see rayc__conn). */
typedef struct rayc__ext {
	size_t at;
	const uint8_t *p;
	size_t n;
} rayc__ext;

/* An object being sent, a chunk at a time, as the send queue drains.
 * CHUNK payloads are not copied: they go out from the object's own
 * memory, so the object stays pinned until NNG has sent its last byte. */
struct rayc__xout {
	rayc_object_id id;
	rayc__obj *obj; /* pinned (one ref) until the last chunk is sent */
	const uint8_t *data;
	size_t len, off;
	rayc_type type;
	rayc__xout *next;
	/* Not an object: a frame given to rayc__conn_send_ext, whose
	 * release (any thread) lets its bytes go once they are sent or
	 * the connection is freed. */
	void (*release)(rayc__xout *x);
};

/* An object being received: bytes land in a block of our own store and
 * become the object when the last chunk is in.
 *
 * Ownership (all under net->mu).  While x is in net->xins the table owns
 * it; whoever takes it out ends it (seals or fails the entry) and frees
 * it.  A receiver writing into dst marks it busy (rayc__remote_chunk_begin
 * to _end) and meanwhile owns the fields below `busy`; a thread that
 * takes a busy x out of the table only marks it dead, and the receiver
 * frees it when its bytes are in, so NNG never writes into freed memory. */
struct rayc__xin {
	rayc_object_id id;
	UT_hash_handle hh;
	uint32_t src;
	bool busy;             /* a receiver is writing into dst */
	bool dead;             /* out of the table while busy */
	rayc__block *block;
	uint8_t *dst;
	size_t total, got;
	rayc_type type;
	bool started;
	rayc__store_view *view; /* same host: dst points into it (held) */
	/* src is not in our view yet (it joined moments ago): FETCH goes
	 * once it is, or the transfer fails at wait_until. */
	bool wait_member;
	int64_t wait_until;
	rayc__xin *next_dead;  /* link while being failed */
};

/* An object of ours pinned while a peer on this host reads it in
 * our arena (SHM_OFFER until its SHM_DONE or its death); net->mu. */
typedef struct rayc__pin {
	uint32_t peer;
	rayc_object_id id;
	rayc__obj *obj;
	struct rayc__pin *next;
} rayc__pin;

struct rayc__conn {
	rayc__net *net;
	nng_stream *s;
	nng_stream_dialer *dialer;
	nng_aio *raio, *saio, *daio;
	/* A send aio without callback: NNG completes it on the thread that
	 * started it when the socket takes the batch at once (no hand-off
	 * to NNG's task threads; conn_tx.c, kick).  fast: whether the next
	 * small batch tries it; only the sender (sending set) touches it. */
	nng_aio *faio;
	bool fast;
	_Atomic int refs; /* users outside net->mu; reaped at zero */
	rayc__mutex mu;   /* state, out, pend, xouts, sending */
	_Atomic int state;
	bool dialed, sending, close_after_send, joining;
	/* Our dial was answered, with the token, by a peer that has not
	 * joined yet (id 0): the peer dialed lives, it only has not read
	 * its JOINED (handshake.c); not a failed dial (mesh.c). */
	_Atomic bool answered_joining;
	bool join_seen; /* a JOIN came on it (receive side only): one only */
	/* We said LANE on it for a task lane (tlane.c): once. */
	_Atomic bool tlane_offered;
	_Atomic bool opened; /* its handshake finished (it carried frames) */
	bool oom;            /* a frame could not be queued: close it */
	uint32_t peer;      /* authenticated peer id, 0 while unknown */
	uint64_t gen;       /* and its incarnation (rayc__peer.gen) */
	/* net->view_seq + 1 when a frame last found its peer not gone
	 * (rayc__net_handle; 0: look). */
	_Atomic uint64_t view_ok;
	uint32_t want_peer; /* who we dialed */
	/* Identity (handshake.c): the key the other side proved it holds in
	 * the handshake, and whether the id it claims is bound to it by the
	 * committed view (verified: frames may be read under c->peer).  A
	 * claim the view cannot settle yet (an admission not applied here)
	 * parks the connection: nothing more is read (rx_parked once the
	 * reader stopped) until it is settled, or the handshake deadline. */
	unsigned char pk[RAYC__ID_PK];
	_Atomic bool verified;
	_Atomic bool parking;
	_Atomic bool settling; /* one thread settles a parked claim */
	bool rx_parked;        /* under mu */
	nng_aio *paio;  /* resumes the reader (rayc__conn_unpark) */
	/* Test (rayc__test_send_as): a dial of its own, claiming to be peer
	 * claim of incarnation claim_gen, as a hostile member could; the
	 * mesh neither registers it nor resends anything when it closes. */
	bool probe;
	uint32_t claim;
	uint64_t claim_gen;
	rayc__hs *hs;        /* handshake state; NULL once it ended */
	int64_t born;        /* made (rayc__now_ns): the handshake deadline */
	/* Frame keys and counters (wire.h) from the handshake: tx under
	 * mu, rx on the receive callback; used once the connection is open.
	 * Frames in out before out_sealed are tagged (or handshake frames,
	 * which are not); the rest are tagged before they are sent. */
	rayc__wauth tx, rx;
	size_t out_sealed;
	rayc__wbuf out;      /* frames to send next */
	uint32_t corked;     /* of them, held back by rayc__conn_end_corked */
	rayc__wbuf pend;     /* frames queued before the handshake ended */
	rayc__wbuf inflight; /* frames NNG is sending now */
	rayc__wbuf seal;     /* conn_tx.c: seal_locked's, swapped with out */
	size_t inflight_off; /* counts the spliced pieces too */
	/* CHUNK payloads (and rayc__conn_send_ext's) spliced into out /
	 * inflight: piece i goes out right after the first ext[i].at bytes
	 * of the buffer.  done: the transfers whose last piece is in that
	 * batch, let go once it is sent. */
	rayc__ext out_ext[RAYC__CONN_EXT_MAX];
	rayc__ext inflight_ext[RAYC__CONN_EXT_MAX];
	int n_out_ext, n_inflight_ext;
	size_t out_ext_bytes, inflight_ext_bytes;
	rayc__xout *out_done, *inflight_done;
	rayc__xout *xhead, *xtail;
	/* Receive side: only the receive callback touches these. */
	uint8_t *rbuf;
	size_t rlen, rcap;
	size_t rx_charged;     /* of rcap, counted in net->rx_held[..] */
	uint32_t rx_charged_to; /* to that member */
	/* A large CHUNK's payload being received straight into its
	 * destination (rx_x busy): its header, sub-header and progress. */
	rayc__xin *rx_x;
	uint8_t *rx_dst;
	size_t rx_n, rx_got;
	uint8_t rx_hdr[RAYC__WIRE_HDR];
	uint8_t rx_sub[RAYC__CHUNK_SUB];
	/* The reader running its read's tasks before it reads again
	 * (conn.c: rx_run): the read's number times two, plus one until the
	 * next receive is out (whoever makes it even starts it: the reader
	 * after the runs, one of them that blocks, or the loop's tick for
	 * one that turned slow, rayc__conn_rx_unstall); since when. */
	_Atomic uint64_t rx_serve;
	_Atomic int64_t rx_serve_since;
	rayc__conn *next;
};

typedef struct rayc__peer {
	/* Committed (set by the control store's log): */
	bool known, alive, worker;
	int job_state; /* drivers: rayc_job_state */
	int64_t job_start_ms, job_end_ms;
	/* From heartbeats and connections: */
	bool del_sent; /* leader: its removal is proposed */
	/* It answered our SHUTDOWN (say_to_all, mesh_life.c). */
	_Atomic bool acked_end;
	bool voter;    /* in the Raft configuration as a voter */
	uint32_t id;
	/* Its incarnation (committed with its ADD, unique in the cluster's
	 * life): a slot (id) of a peer that is gone and out of the Raft
	 * configuration is given to a later joiner with a higher gen, so
	 * ids never run out; a frame from an older gen is a dead peer's. */
	uint64_t gen;
	int pid;
	char url[RAYC__URL_MAX];
	unsigned char pk[RAYC__ID_PK]; /* committed: its identity key */
	rayc__conn *conn;
	int64_t total[RAYC__MAX_RES], avail[RAYC__MAX_RES]; /* local indices */
	/* Its CPUs (total), for reading without net->mu: a copy kept where
	 * total is written (rayc__net_view_changed_locked, heartbeats). */
	_Atomic int64_t cpus;
	uint64_t executed, queued;
	int64_t last_seen;
	/* Owner side, guarded by rt->mu: tasks this peer runs for us. */
	rayc__tq inflight;
	/* ... and tasks a strategy placed on it (node affinity, spread)
	 * while it had RAYC__PEER_WINDOW of ours: they wait here, in order,
	 * and go as its answers make room (owner.c). */
	rayc__tq wait;
	/* Answers of its we have and have not acknowledged yet (owner.c:
	 * ack_locked): nacks entries of (id, dispatch), 20 bytes each. */
	rayc__wbuf acks;
	uint32_t nacks;
	/* Frames to it wait corked on its connection: TASKs (owner.c), sent
	 * by its next TASK_DONE; answers a worker's batch held back
	 * (xrec.c), sent when the batch ends or pauses; either by the next
	 * tick. */
	_Atomic bool corked;
} rayc__peer;

/* What lost connections to one peer left to do (relink.c); net->mu.
 * Kept apart from rayc__peer, which a committed ADD overwrites. */
typedef struct rayc__link {
	bool lost;          /* an open connection closed: resend, refetch */
	bool gave_up;       /* unreachable: its work went elsewhere */
	int64_t lost_since; /* no connection has opened since (0: one has) */
	int64_t last_pass;  /* when relink last ran for it */
	rayc__wbuf orphan;  /* frames of our dials that never opened */
	int lose;           /* test: open-connection frames to throw away */
	bool blocked;       /* test: connections close as they open */
} rayc__link;

/* A task this peer runs or ran for another owner (xrec.c), by id: a
 * TASK sent again (after a lost connection) is not run twice, and is
 * answered again once done.  Guarded by rt->mu. */
typedef struct rayc__xrec {
	rayc_task_id id;
	uint32_t owner, dispatch;
	bool done;
	uint8_t *body; /* the TASK_DONE payload after (id, dispatch) */
	size_t len;
	uint8_t small[32]; /* body, when it fits (no malloc of its own) */
	int64_t done_at;
	/* The TASK came on a task lane (tlane.c), when net->borrow_seq of
	 * its owner stood at bseq: its answer may go back there. */
	bool lane;
	uint64_t bseq;
	TAILQ_ENTRY(rayc__xrec) link; /* on net->xrec_done_q when done */
} rayc__xrec;

/* A request waiting for its reply (KV calls to the coordinator). */
struct rayc__rpc {
	uint64_t id;
	rayc__event ev;
	bool answered; /* rc (and val) came from the coordinator */
	int rc;
	void *val;
	size_t len;
	rayc__rpc *next;
};

struct rayc__net {
	rayc__rt *rt;
	rayc__mutex mu;
	uint32_t self, coord; /* coord: the Raft leader, as last seen */
	bool founder, worker;
	rayc__ctl *ctl;       /* the control store (ctl.c) */
	/* coord's Raft term: the coordinator of the highest term heard of,
	 * from Raft or from a MEMBERS broadcast, is the one (net->mu). */
	uint64_t coord_term;
	/* The last sign that the coordinator lives: a MEMBERS or RAFT frame
	 * from it, or this peer leading (net->mu).  A peer hearing none for
	 * 3 heartbeat timeouts is cut off (ctl.c). */
	int64_t coord_seen;
	char url[RAYC__URL_MAX];
	char coord_url[RAYC__URL_MAX];
	char *token; /* the cluster's (made here if the founder had none) */
	unsigned char key[32];
	/* This peer's identity (Ed25519), made at start: the public half is
	 * committed with its admission (ADD), and every handshake proves the
	 * id it claims with the secret half (handshake.c). */
	unsigned char id_pk[RAYC__ID_PK], id_sk[RAYC__ID_SK];
	/* Encrypt frame payloads (RAYC_ENCRYPT, or a peer of the cluster
	 * met in a handshake did): each connection then encrypts. */
	_Atomic bool encrypt;
	/* Receive buffers beyond RAYC__RX_BASE held for each member, and
	 * the most allowed (conn.c). */
	_Atomic size_t rx_held[RAYC__MAX_PEERS];
	size_t rx_max;
	int joined_delay_ms; /* test: a joiner slow to read JOINED */
	nng_stream_listener *lst;
	nng_aio *acc_aio;
	/* Accept errors (out of descriptors, say) wait acc_wait before the
	 * next accept (acc_sleep), and are logged at most once a second;
	 * only accept_cb and its sleep touch these. */
	nng_aio *acc_sleep;
	int acc_wait_ms;
	uint64_t acc_errs;
	int64_t acc_logged;
	rayc__conn *conns;
	rayc__peer peers[RAYC__MAX_PEERS];
	/* What the hot paths read of the view without net->mu, kept by
	 * rayc__net_view_changed_locked wherever a peer's known, alive or
	 * gen changes: a count of the changes (a connection that found its
	 * peer not gone at one count need not look again until it moves:
	 * mesh.c, rayc__net_handle; one thread's last look, executor.c:
	 * owner_dead) and which peers are alive.  Each net's count starts
	 * 2^40 past the last one's. */
	_Atomic uint64_t view_seq;
	_Atomic uint64_t alive_bits[RAYC__MAX_PEERS / 64];
	_Atomic uint32_t top; /* one past the highest id known: loops stop here */
	uint32_t next_id;   /* the next slot never used */
	uint64_t next_gen;  /* the next incarnation (committed ADDs + 1) */
	/* Coordinator: slots an ADD is proposed for (not yet applied). */
	bool slot_pending[RAYC__MAX_PEERS];
	int64_t hb_ns, timeout_ns;
	/* Joining. */
	rayc__event join_ev;
	int join_rc;
	char join_why[400]; /* why the cluster refused us for good */
	bool joined;
	/* Event loop. */
	struct event_base *base;
	struct event *tick, *pev;
	rayc__thread th;
	bool th_started;
	_Atomic bool stopping;
	_Atomic int users; /* API calls using it (rayc__net_get) */
	_Atomic bool leaving; /* said SHUTDOWN or LEAVE: closes are expected */
	_Atomic bool cluster_down; /* SHUTDOWN seen or coordinator gone */
	_Atomic bool heard_end; /* SHUTDOWN came: passed on as it stops */
	/* Out of the cluster (removed, or cut off from the voters): leaves
	 * without a word, and never ends the cluster it was cut from. */
	_Atomic bool cut_off;
	rayc__event down_ev;
	/* Children started for local_peers, and the pipe they watch. */
	int kids[RAYC__MAX_PEERS];
	int nkids;
	int kid_pipe_w;
	int parent_fd;
	/* Pending RPCs of this peer (the KV itself is rt->kv). */
	rayc__rpc *rpcs;
	uint64_t next_rpc;
	uint64_t next_req; /* KV writes: one id per call, kept across retries */
	/* KV writes this peer proposed as coordinator and has not seen
	 * applied (kv.c, whose own type they are; the loop thread's only). */
	SLIST_HEAD(, kv_work) kv_flight;
	_Atomic uint64_t kv_proposed; /* how many it proposed, for tests */
	_Atomic uint64_t kv_asked;    /* writes asked of it, for tests */
	rayc__name_del *name_dels; /* actor names being given back (names.c) */
	rayc__unborrow *unborrows; /* handles let go, unanswered (actor_ctl.c) */
	/* Orders an UNBORROW's copy-and-send against a BORROW's
	 * cancel-and-send (actor_ctl.c); after rt->mu, before net->mu. */
	rayc__mutex borrow_mu;
	/* Incoming transfers by object id; some may wait for their source
	 * to be in our view (wait_member). */
	rayc__xin *xins;
	bool fetch_waiting;
	/* Same-host copies (samehost.c): each peer's arena mapped read-only
	 * (opened at its first SHM_OFFER, released when it dies), peers
	 * whose arena could not be used (they send over TCP), and our
	 * objects pinned for peers copying them. */
	rayc__store_view *views[RAYC__MAX_PEERS];
	bool no_shm[RAYC__MAX_PEERS];
	rayc__pin *pins;
	/* SPREAD's round-robin position (rt->mu). */
	uint32_t rr;
	/* Lost connections (relink.c): per peer, and the loop event that
	 * runs what they left to do. */
	rayc__link links[RAYC__MAX_PEERS];
	struct event *relink_ev;
	/* Tasks run here for other owners (xrec.c; rt->mu). */
	rayc__idtab xrecs; /* by task id; made with the first record */
	/* Placement's copies of peers' totals and free resources, taken
	 * under net->mu (owner.c: decide_locked; rt->mu). */
	int64_t place_res[RAYC__MAX_PEERS][2][RAYC__MAX_RES];
	/* BORROW_ADDs said to each peer (rt->mu): an answer whose TASK came
	 * on a task lane goes back there only if none went meanwhile. */
	uint64_t borrow_seq[RAYC__MAX_PEERS];
	rayc__slab xrec_slab; /* the records: kept warm, no malloc each */
	TAILQ_HEAD(rayc__xrec_q, rayc__xrec) xrec_done_q; /* oldest first */
	size_t xrec_bytes, xrec_done;
	size_t xrec_live, xrec_live_hw; /* not done yet; the most at once */
	size_t xrec_max; /* RETAIN_MAX, or RAYC__XREC_MAX's (tests only) */
	bool ack_off; /* RAYC__ACK_OFF (tests only): answers unacknowledged */
	/* Work that takes time in proportion to an object's size (bulk.c):
	 * never on a connection's receive callback, where the frames behind
	 * it (heartbeats, Raft) would wait. */
	rayc__mutex bulk_mu;
	rayc__bulk_job *bulk_head, *bulk_tail;
	rayc__event bulk_ev;
	rayc__thread bulk_th;
	bool bulk_started;
	_Atomic bool bulk_stop;
	/* Bulk lanes to and from other peers (lane.c); NULL before start
	 * and after stop. */
	rayc__lanes *lanes;
};

/* p's total was written (net->mu held): its lock-free copy of the CPUs
 * follows. */
static inline void rayc__peer_cpus_sync(rayc__peer *p)
{
	atomic_store_explicit(&p->cpus, p->total[RAYC__RES_CPU] / RAYC__RES_SCALE,
	                      memory_order_relaxed);
}

/* Peer id's known, alive or gen changed, or it was written whole (net->mu
 * held): the view's lock-free copies follow (net->view_seq,
 * net->alive_bits, the peer's cpus). */
static inline void rayc__net_view_changed_locked(rayc__net *net, uint32_t id)
	RAYC_REQUIRES(net->mu)
{
	uint64_t bit = (uint64_t)1 << (id % 64);

	rayc__peer_cpus_sync(&net->peers[id]);
	if (net->peers[id].alive)
		atomic_fetch_or(&net->alive_bits[id / 64], bit);
	else
		atomic_fetch_and(&net->alive_bits[id / 64], ~bit);
	atomic_fetch_add(&net->view_seq, 1);
}

/* Marks peer id known (net->mu held) and returns it. */
static inline rayc__peer *rayc__net_know_locked(rayc__net *net, uint32_t id)
	RAYC_REQUIRES(net->mu)
{
	rayc__peer *p = &net->peers[id];

	p->known = true;
	p->id = id;
	if (id + 1 > atomic_load(&net->top))
		atomic_store(&net->top, id + 1);
	return p;
}

/* bulk.c: one thread per net for work proportional to an object's size
 * (making room for an incoming object, hashing one in place).  Jobs run
 * in the order posted. */
int rayc__bulk_start(rayc__net *net);
void rayc__bulk_post(rayc__net *net, rayc__bulk_job *job);
/* Joins the thread; jobs still queued are cancelled.  After every
 * connection is freed (nothing posts any more). */
void rayc__bulk_stop(rayc__net *net);

/* lane.c: bulk lanes, a plain TCP socket per pair of peers for the
 * bytes of large objects, authenticated from their connection (see
 * there).  init before the mesh's listener starts, listen after (no
 * lanes to us if it cannot make one: objects then go over the
 * connection); stop before connections are stopped (it lets go of
 * theirs), free after they are gone. */
int rayc__lane_init(rayc__net *net);
void rayc__lane_listen(rayc__net *net);
void rayc__lane_stop(rayc__net *net);
void rayc__lane_free(rayc__net *net);
bool rayc__lane_on(void); /* RAYC_BULK_LANE is not "0" */
uint16_t rayc__lane_port(rayc__net *net); /* our listener's; 0: none */
/* LANE from c's peer: its listener's port. */
void rayc__lane_on_port(rayc__conn *c, rayc__rd *rd);
/* Fetcher: asks src for object id's bytes by a lane (sets one up if
 * need be, the GO then waits for it).  False: no lane, send GO alone. */
bool rayc__lane_go(rayc__net *net, uint32_t src, rayc_object_id id);
/* Holder: queues x on peer's lane to us; false if none is up (x
 * untouched). */
bool rayc__lane_send(rayc__net *net, uint32_t peer, rayc__xout *x);
/* c closed: the lanes bound to it close too. */
void rayc__lane_conn_lost(rayc__net *net, rayc__conn *c);
/* Joins and frees lanes whose thread ended (loop tick). */
void rayc__lane_reap(rayc__net *net);

/* tlane.c: task lanes, TASK and TASK_DONE frames on a plain TCP socket
 * beside the connection (see there).  _begin: the buffer of our task
 * lane to peer (owner: the one we dialed; else the one it dialed),
 * emptied, its sender lock held, for one frame written at its start; or
 * NULL if none is up (an owner's starts one if it may).  _end seals and
 * writes it and lets go: true if it went (or the lane broke writing it:
 * its connection closes, and what it carried is sent again), false if
 * nothing was written (too big: send it over the connection). */
bool rayc__tlane_on(void); /* RAYC_TASK_LANE is not "0" */
rayc__wbuf *rayc__tlane_begin(rayc__net *net, uint32_t peer, bool owner,
                              rayc__lane **Lp);
bool rayc__tlane_end(rayc__net *net, rayc__lane *L);
/* Executor: a TASK came over c: say our lane port on it, once. */
void rayc__tlane_offer(rayc__conn *c);
/* True on an executor's task lane thread (the TASK it hands on came on
 * the lane). */
extern _Thread_local bool rayc__tlane_reading;
/* A task that thread ran itself waits (sched.h: serving; rt->mu held):
 * the lane closes with its connection, so that nothing waits behind it
 * (what the owner sent on it goes again over the next connection). */
void rayc__tlane_on_block(void);

/* conn.c and conn_tx.c (sending) */
rayc__conn *rayc__conn_new(rayc__net *net);
int rayc__conn_dial(rayc__conn *c, const char *url);
void rayc__conn_accepted(rayc__conn *c, nng_stream *s);
/* Queues one frame (copied).  Before the handshake ends, app frames wait
 * in pend.  Never blocks on the network.  Out of memory, an open
 * connection is closed (its peer then sends again what it lost, see
 * relink.c), never left to drop frames silently. */
void rayc__conn_send(rayc__conn *c, const rayc__wbuf *frame);
/* Sends what this thread queued while holding a lock (the unlock hook,
 * registered at rayc__net_start). */
void rayc__conn_flush_deferred(void);
/* Appends a frame straight into the send queue while building it:
 * begin returns the buffer locked; end unlocks and starts sending. */
rayc__wbuf *rayc__conn_begin(rayc__conn *c) RAYC_NO_TSA;
void rayc__conn_end(rayc__conn *c) RAYC_NO_TSA;
/* rayc__conn_end for one frame written into b (rayc__conn_begin's) from
 * offset before: one that could not be written (no memory;
 * RAYC__FAULT_CONN_SEND) is taken out and handled as rayc__conn_send
 * handles a frame it cannot queue. */
void rayc__conn_end_frame(rayc__conn *c, rayc__wbuf *b,
                          size_t before) RAYC_NO_TSA;
/* rayc__conn_end for a frame that may wait for company: on an open
 * connection with nothing being sent it is held back (corked), up to
 * RAYC__CONN_CORK_MAX frames and RAYC__CONN_CORK_BYTES queued in all
 * (a batch that big is worth its write), until the next frame queued
 * without cork, or rayc__conn_uncork.  Whoever corks must make sure one
 * of those follows (owner.c: an answer that is sure to come, and every
 * tick).  64 frames, not 16 as before the twenty-second pass: the
 * answers and refills of bursts went a write per 16 (remote_tasks_async:
 * 0.09-0.11 syscalls a task instead of 0.13-0.18, alternating runs). */
#define RAYC__CONN_CORK_MAX 64
#define RAYC__CONN_CORK_BYTES ((size_t)16 << 10) /* bigger go at once */
void rayc__conn_end_corked(rayc__conn *c) RAYC_NO_TSA;
/* rayc__conn_end_frame, the frame corked as rayc__conn_end_corked does
 * if it was written on an open connection. */
void rayc__conn_end_frame_corked(rayc__conn *c, rayc__wbuf *b,
                                 size_t before) RAYC_NO_TSA;
/* Sends what waits corked on c (if its thread holds a lock: at its last
 * unlock, like any send). */
void rayc__conn_uncork(rayc__conn *c);
/* The connection to peer id we would send on, with a ref; NULL if there
 * is none (never dials). */
rayc__conn *rayc__net_conn_have(rayc__net *net, uint32_t id);
void rayc__conn_add_xout(rayc__conn *c, rayc__xout *x);
/* Queues a frame whose payload ends with n bytes at ext, sent from where
 * they are, not copied: head holds the frame up to them (ended with
 * rayc__w_frame_end_len).  Its tag is computed here, under c->mu, over
 * ext as well (Poly1305: some 30 ms a 100 MiB).  x->release(x) runs once
 * they went out or the connection is freed.  False (x untouched) if the
 * connection is not open, has no room for another piece, or no
 * memory. */
bool rayc__conn_send_ext(rayc__conn *c, const rayc__wbuf *head,
                         const void *ext, size_t n, rayc__xout *x);
/* Queues one last frame, then closes once it is sent. */
void rayc__conn_send_close(rayc__conn *c, rayc__wbuf *frame);
void rayc__conn_close(rayc__conn *c, const char *why);
/* Our dial that is still pending is given up (the loop's deadline,
 * RAYC__DIAL_WAIT_NS): aborted on this thread with the error NNG's timer
 * gave (dial_cb then sees it), and c closed. */
void rayc__conn_give_up_dial(rayc__conn *c);
void rayc__conn_unref(rayc__conn *c);
/* Stops and frees a closed conn (not from an NNG callback). */
void rayc__conn_free(rayc__conn *c);
/* At teardown: closes c and waits for any callback of its to end; none
 * runs after (NNG refuses operations on a stopped aio). */
void rayc__conn_stop(rayc__conn *c);
/* Queues a handshake frame ahead of what waits in pend (close_after:
 * close once it is sent). */
void rayc__conn_send_hs(rayc__conn *c, rayc__wbuf *frame, bool close_after);
/* The handshake finished: the connection opens and pend goes out. */
void rayc__conn_set_open(rayc__conn *c);
/* conn_tx.c: the send aio's callback, and letting go of the transfers
 * whose last piece went out (or that a freed connection held). */
void rayc__conn_send_cb(void *arg);
/* Set by every NNG callback of ours on the thread it runs on (an NNG
 * thread runs nothing else): such a thread never waits for a socket
 * (conn_tx.c, kick), so NNG's own threads are never held. */
extern _Thread_local bool rayc__nng_thread;
void rayc__conn_finish_xouts(rayc__conn *c, rayc__xout *done);
/* Reads n bytes at p as if c had received them, for a connection no
 * stream backs (c->s NULL: fuzz targets and tests, fuzz.c): c sends
 * nothing (its frames stay in out) and starts no receive.  False once c
 * is closed. */
bool rayc__conn_rx_feed(rayc__conn *c, const void *p, size_t n);
/* Counts a frame refused for its tag (rayc__test_frames_refused). */
void rayc__conn_count_refused(void);

/* handshake.c: a connection's handshake state (its nonce, CPace
 * secret, transcript), made with the conn, wiped and freed when the
 * handshake ends or the conn is freed. */
rayc__hs *rayc__hs_new(void);
void rayc__hs_free(rayc__hs *hs);
/* The accepting side's first frame. */
void rayc__hs_hello(rayc__conn *c);
/* Handshake frames (conn.c, before the connection opens): AUTH and
 * CONFIRM on the accepting side, HELLO and WELCOME on the dialing side.
 * False drops the connection. */
bool rayc__hs_on_auth(rayc__conn *c, rayc__rd *rd);
bool rayc__hs_on_confirm(rayc__conn *c, rayc__rd *rd);
bool rayc__hs_on_hello(rayc__conn *c, rayc__rd *rd);
bool rayc__hs_on_welcome(rayc__conn *c, rayc__rd *rd);
/* Settles a parked connection's claim if the committed view now can:
 * it opens, or is refused.  False: still waiting. */
bool rayc__hs_settle(rayc__conn *c);
/* conn.c: the reader of a parked connection that rayc__hs_settle opened
 * goes on (on an NNG thread). */
void rayc__conn_unpark(rayc__conn *c);
/* True if c's reader has stopped for its claim to be settled. */
bool rayc__conn_parked(rayc__conn *c);
/* Starts c's next receive if its reader has been running its read's
 * tasks for RAYC__RX_STALL_NS or more (one turned slow): the loop's
 * tick, so that no connection goes unread for much more than a tick
 * behind a task that was quick until now. */
#define RAYC__RX_STALL_NS ((int64_t)20 * 1000000)
void rayc__conn_rx_unstall(rayc__conn *c, int64_t now);

/* mesh_life.c */
/* Settles the claims of parked connections the committed view now can
 * (rayc__hs_settle); called once it changed.  Any thread, no lock. */
void rayc__net_settle_parked(rayc__net *net);
/* The peer is out of its cluster for good; called once, by whoever set
 * net->cluster_down: wakes rayc__net_serve and fails every task, fetch
 * and KV call waiting on other peers (why says what happened). */
void rayc__net_lost_cluster(rayc__net *net, const char *why);

/* mesh_listen.c */
/* True if url (tcp://host:port) names only this host's loopback. */
bool rayc__url_is_loopback(const char *url);
/* Listens on url (tcp://host:port), sets net->url to what others dial
 * (rayc__net_set_advertised) and starts accepting.  no_token: refuse an
 * address bound beyond loopback. */
int rayc__net_listen(rayc__net *net, const char *url,
                     const rayc__net_conf *conf, bool no_token);
/* Sets net->url: the advertise address adv if given, else listen, where a
 * wildcard host becomes the address this host reaches join from; port 0
 * or none is the port bound. */
int rayc__net_set_advertised(rayc__net *net, const char *listen,
                             const char *adv, const char *join, int port);

/* mesh.c */
/* The conn to peer id (dialing it if needed), with a ref; NULL if the
 * peer is unknown or dead. */
rayc__conn *rayc__net_conn_to(rayc__net *net, uint32_t id);
void rayc__net_conn_open(rayc__conn *c);   /* handshake finished */
void rayc__net_conn_lost(rayc__conn *c);   /* closed */
void rayc__net_handle(rayc__conn *c, int type, rayc__rd *rd);
/* Frame helpers: send a small frame to a peer. */
void rayc__net_send_to(rayc__net *net, uint32_t peer, rayc__wbuf *frame);

/* relink.c: what a lost connection to a live peer leaves to do.  An open
 * connection that closes loses what was queued on it, and both ends see
 * it close: the owner sends its tasks in flight there again (the
 * executor answers a task it ran from its record, xrec.c), the fetcher
 * asks again for what was coming, the coordinator dials to see whether
 * the peer lives.  Frames queued on a dial that never opened only the
 * sender knows about: they go out again on the next connection.  A peer
 * no connection reaches for a heartbeat timeout gets no more waiting:
 * its tasks are placed elsewhere and its transfers fail. */
int rayc__relink_init(rayc__net *net); /* before the loop thread starts */
void rayc__relink_fini(rayc__net *net);
/* c (to c->peer) closed; any thread, any locks. */
void rayc__relink_conn_lost(rayc__net *net, rayc__conn *c);
/* A connection to peer opened. */
void rayc__relink_conn_open(rayc__net *net, uint32_t peer);
/* c (dialed, never opened) is being freed: keep its queued frames. */
void rayc__relink_orphans(rayc__net *net, rayc__conn *c);
void rayc__relink_tick(rayc__net *net); /* loop thread */
/* Runs the pass soon: transfers wait for a peer to be in our view. */
void rayc__relink_soon(rayc__net *net);
/* Runs relink for peer again soon (what it sent did not go out). */
void rayc__relink_retry(rayc__net *net, uint32_t peer);
/* True if this peer gave up reaching peer (net->mu). */
static inline bool rayc__relink_unreachable_locked(rayc__net *net,
                                                   uint32_t peer)
	RAYC_REQUIRES(net->mu)
{
	return net->links[peer].gave_up;
}
/* Test loss (rayc__test_drop_conn): true if frame must be thrown away
 * (c is then closed). */
bool rayc__relink_test_lose(rayc__net *net, rayc__conn *c);
/* Test (rayc__test_block_peer): connections to peer may not open. */
bool rayc__relink_test_blocked(rayc__net *net, uint32_t peer);
/* Adds c to the connection list, where reaping finds it. */
void rayc__net_conn_link_locked(rayc__net *net, rayc__conn *c)
	RAYC_REQUIRES(net->mu);

/* conn_tx.c: frames received in GROUPs, and the GROUPs (conn.c counts;
 * rayc__test_groups). */
extern _Atomic uint64_t rayc__grouped_in, rayc__groups_in;

/* remote.c, xfer.c: data-plane handlers. */
void rayc__remote_handle(rayc__conn *c, int type, rayc__rd *rd);
/* A connection's reader between _rx_begin and _rx_end may keep rt->mu
 * from one small TASK or TASK_DONE frame to the next (remote.c);
 * _rx_let_go lets go of it, before any frame _rx_keeps does not take
 * (its type and payload length).  _rx_lock and _rx_unlock are those
 * frames' handlers' lock and unlock of rt->mu. */
bool rayc__remote_rx_keeps(int type, size_t len);
void rayc__remote_rx_begin(void);
void rayc__remote_rx_let_go(void);
/* _rx_end says how many tiny tasks the read queued without waking a
 * worker (sched.h: rayc__sched_hold_begin); _rx_serve runs them on this
 * thread before the connection is read again, if no other reader is
 * serving (one at a time: NNG has few threads to lend), else wakes
 * workers for them.  A run that blocks calls on_block, which reads the
 * connection again at once. */
int rayc__remote_rx_end(void);
void rayc__remote_rx_serve(rayc__net *net, int held, void (*on_block)(void));
void rayc__remote_rx_lock(rayc__rt *rt) RAYC_ACQUIRE(rt->mu);
void rayc__remote_rx_unlock(rayc__rt *rt) RAYC_RELEASE(rt->mu);
void rayc__remote_peer_died(rayc__net *net, uint32_t id);
/* This peer lost its cluster (rayc__net_lost_cluster): fails the tasks
 * other peers run for it, the tasks waiting for room there and the
 * fetches from them; later fetches and placements fail or stay here. */
void rayc__remote_cluster_lost(rayc__net *net, const char *why);
/* Loop thread: a connection to live peer id was lost (resend, refetch);
 * give_up: none reached it for a heartbeat timeout (move its work). */
void rayc__remote_relink(rayc__net *net, uint32_t id, bool give_up);
void rayc__remote_xout_done(rayc__net *net, rayc__xout *x);
/* Loop thread, each tick: sends work queued here (over the threshold)
 * or waiting for remote room to every live peer with room.  Queued work
 * otherwise moves only on a TASK_DONE from the peer that freed room, and
 * a peer that joined while it was queued has none to send. */
void rayc__remote_pump_idle(rayc__net *net);
/* The tick: acknowledgements of answers not sent yet go (owner.c). */
void rayc__remote_acks_tick(rayc__net *net);
/* Sends every frame waiting corked (each tick: its bound), or those to
 * one peer. */
void rayc__remote_uncork_all(rayc__net *net);
void rayc__remote_uncork_peer(rayc__net *net, uint32_t peer);
/* The loop's tick: calls through proxies that wait for their owner to
 * be reachable try again (rayc__actors_retry_locked). */
void rayc__remote_actors_tick(rayc__net *net);
/* Receive thread of c: where the payload of an arriving CHUNK goes.
 * sub is its sub-header (RAYC__CHUNK_SUB bytes), n the payload bytes
 * after it, payload those bytes if they are in (else NULL).  1: into
 * *dst (n bytes, within the object), and *x is busy until
 * rayc__remote_chunk_end; 0: nobody wants it here (receive it anywhere
 * and drop it; without payload, call again once it is in); 2: taken,
 * the bulk thread makes room for the object (bulk.c) and copies
 * payload; -1: a malformed CHUNK (close the connection). */
int rayc__remote_chunk_begin(rayc__conn *c, const uint8_t *sub, size_t n,
                             const uint8_t *payload, uint8_t **dst,
                             rayc__xin **x);
/* The same for a CHUNK on bulk lane L, bound to c (lane.c): its payload
 * is never in (it goes to *dst), n is never 0, and it may also return
 * RAYC__CHUNK_BUSY: its transfer is being written into by another
 * thread (its connection's) for a moment: ask again. */
#define RAYC__CHUNK_BUSY 3
int rayc__remote_lane_chunk_begin(rayc__conn *c, rayc__lane *L,
                                  const uint8_t *sub, size_t n, uint8_t **dst,
                                  rayc__xin **x);
/* Is L dead (killed, or its set-up failed)?  (lane.c) */
bool rayc__lane_dead(rayc__lane *L);
/* The payload is in (ok) or will not come (checksum failed, connection
 * closed): x is no longer busy. */
void rayc__remote_chunk_end(rayc__conn *c, rayc__xin *x, size_t n, bool ok);
void rayc__remote_fini(rayc__net *net);

/* members.c */
/* Resource (name, total[, avail]) lists in frames and log entries. */
void rayc__net_write_res(const rayc__rt *rt, rayc__wbuf *b,
                         const int64_t *total, const int64_t *avail);
bool rayc__net_read_res(rayc__net *net, rayc__rd *rd, int64_t *total,
                        int64_t *avail, bool with_avail);
/* The committed members, as JOINED and snapshots carry them. */
void rayc__net_write_members_locked(rayc__net *net, rayc__wbuf *b)
	RAYC_REQUIRES(net->mu);
/* Reads them back (apply false: only checks they decode).  Applying
 * merges: unknown members are added; members alive here but dead there
 * go to gone[] (*ngone of them) for the caller to mark dead.  Returns 0,
 * or -1 if they do not decode. */
typedef struct rayc__gone {
	uint32_t id;
	uint64_t gen;
	bool left;   /* a driver that left cleanly */
	int64_t end; /* its job's end (wall ms) */
	bool reused; /* its slot holds a newer peer there: read them again
	              * once it is marked dead */
} rayc__gone;
int rayc__net_read_members(rayc__net *net, rayc__rd *rd, bool apply,
                           rayc__gone *gone, int *ngone);
/* This peer's free resources and queue length (takes rt->mu). */
void rayc__net_self_stats(rayc__net *net, int64_t *avail, uint64_t *queued);
/* The coordinator's resource view, to every live member. */
void rayc__net_broadcast_members(rayc__net *net);
/* Frames (rayc__net_handle): MEMBERS, JOIN, HEARTBEAT; and JOINED's
 * members (false if they do not decode). */
void rayc__net_on_members(rayc__conn *c, rayc__rd *rd);
void rayc__net_on_join(rayc__conn *c, rayc__rd *rd);
void rayc__net_on_heartbeat(rayc__conn *c, rayc__rd *rd);
bool rayc__net_on_joined_view(rayc__net *net, rayc__rd *rd);
/* Waits for join_ev (bounded) and returns join_rc. */
int rayc__net_wait_join(rayc__net *net, int64_t deadline);
int rayc__net_join(rayc__net *net, const char *address, int64_t deadline);
int rayc__net_count_alive(rayc__net *net);

/* local.c */
int rayc__net_start_local_peers(rayc__net *net, int n, const char *token);
void rayc__net_stop_kids(rayc__net *net);

/* kv_table.c: the KV table (replicated by the control store), under
 * rt->kv_mu, a leaf; kv.c: the calls that reach the coordinator. */
#define RAYC__KV_KEY_MAX 255
/* PUTNX: put only if absent (RAYC_EEXIST); DELEQ: delete only if the
 * value is exactly the one given (RAYC_ENOTFOUND). */
enum {
	RAYC__KV_PUT = 1,
	RAYC__KV_GET,
	RAYC__KV_DEL,
	RAYC__KV_PUTNX,
	RAYC__KV_DELEQ
};
/* Keys beginning with this are the library's own: programs may not
 * write them (names.c keeps actor names under RAYC__KV_OWN "actor/"). */
#define RAYC__KV_OWN "rayc."
void rayc__kv_handle(rayc__conn *c, int type, rayc__rd *rd);
/* A call of this peer waiting for its answer: r (zeroed, given an id)
 * joins net->rpcs / leaves it. */
void rayc__rpc_add(rayc__net *net, rayc__rpc *r);
void rayc__rpc_remove(rayc__net *net, rayc__rpc *r);
/* Completes this peer's pending call id (net->rpcs) if it still waits,
 * else a name's delete waiting for it (names.c). */
void rayc__rpc_complete(rayc__net *net, uint64_t id, int rc, const void *val,
                        size_t len);
/* actor_ctl.c: ACTOR_CTL and ACTOR_CTL_REP frames; the UNBORROWs not
 * answered yet: the answer to rpc (true if it was one), sent again on
 * the loop's tick, freed with the net. */
void rayc__actor_ctl_handle(rayc__conn *c, int type, rayc__rd *rd);
bool rayc__actor_ctl_answered_locked(rayc__net *net, uint64_t rpc)
	RAYC_REQUIRES(net->mu);
void rayc__actor_ctl_tick(rayc__net *net);
void rayc__actor_ctl_free(rayc__net *net);
/* A KV operation from this process, as rayc_kv_put and the others (a
 * blocking round trip to the coordinator; any key). */
int rayc__kv_call(int op, const char *key, const void *val, size_t len,
                  void **out, size_t *outlen);
/* A write sent without waiting: its answer (KV_REP, or a local one) is
 * matched by rpc in rayc__names_answered_locked. */
void rayc__kv_send_async(rayc__net *net, uint64_t rpc, uint64_t req, int op,
                         const char *key, const void *val, size_t len);
/* Deletes (on this peer's copy) every entry under prefix whose value
 * match accepts: the same on every replica, in log order. */
void rayc__kv_del_matching_locked(rayc__rt *rt, const char *prefix,
                                  bool (*match)(const void *val, size_t len,
                                                void *arg),
                                  void *arg) RAYC_REQUIRES(rt->kv_mu);
/* Wakes every KV call of this peer waiting for an answer (it asks again
 * and sees why it cannot). */
void rayc__kv_wake_all(rayc__net *net);
/* net->coord changed: KV calls still waiting for the old coordinator's
 * answer ask the new one at once (a retried write applies once). */
void rayc__kv_coord_changed_locked(rayc__net *net) RAYC_REQUIRES(net->mu);
int rayc__kv_apply_locked(rayc__rt *rt, int op, const char *key,
                          const void *val, size_t len, void **out,
                          size_t *outlen) RAYC_REQUIRES(rt->kv_mu);
/* The whole table in a snapshot of the control store.  Taking one only
 * captures the entries (a hold on each, no copy) on the loop thread;
 * writing them out, up to 128 MiB, is done on a thread of its own with no
 * lock (entries never change), and the snapshot then lets them go. */
typedef struct rayc__kv_snap {
	rayc__kv **e;
	size_t n;
	size_t bytes; /* what rayc__kv_snap_write writes */
} rayc__kv_snap;
/* RAYC_ENOMEM: nothing captured. */
int rayc__kv_snap_take_locked(rayc__rt *rt, rayc__kv_snap *s)
	RAYC_REQUIRES(rt->kv_mu);
/* Any thread, no lock.  False if *stop became true (b is then cut
 * short) or b is bad. */
bool rayc__kv_snap_write(const rayc__kv_snap *s, rayc__wbuf *b,
                         _Atomic bool *stop);
/* Lets the entries go (takes rt->kv_mu; frees those only held here). */
void rayc__kv_snap_release(rayc__rt *rt, rayc__kv_snap *s)
	RAYC_EXCLUDES(rt->kv_mu);
/* A table read back from a snapshot, apart from this peer's until it is
 * swapped in: building it (a copy of every value) needs no lock, so it
 * can be done off the loop thread. */
typedef struct rayc__kv_table {
	rayc__kv *h;
	size_t bytes;
} rayc__kv_table;
/* RAYC_EPROTO (it does not decode) or RAYC_ENOMEM: t is left empty. */
int rayc__kv_table_read(rayc__rd *rd, rayc__kv_table *t);
/* t becomes this peer's table, and t gets the one it replaced. */
void rayc__kv_table_swap_locked(rayc__rt *rt, rayc__kv_table *t)
	RAYC_REQUIRES(rt->kv_mu);
/* Lets a table that was this peer's go (a snapshot may still hold some
 * of its entries; takes rt->kv_mu). */
void rayc__kv_table_release(rayc__rt *rt, rayc__kv_table *t)
	RAYC_EXCLUDES(rt->kv_mu);
/* Frees a table that never was this peer's (any thread, no lock). */
void rayc__kv_table_free(rayc__kv_table *t);

/* names.c: actor names in the KV (see names.c; the calls the API makes
 * are in net.h).  The record's largest encoding. */
#define RAYC__NAME_PREFIX RAYC__KV_OWN "actor/"
#define RAYC__NAME_REC_MAX (1 + 8 + 8 + 4 + 8 + 4 + 255)
/* Sends the deletes of names given back that are not waiting for an
 * answer (the loop's tick). */
void rayc__names_tick(rayc__net *net);
/* The answer to write rpc came with rc: done, or to be sent again;
 * false if rpc is not one of these writes. */
bool rayc__names_answered_locked(rayc__net *net, uint64_t rpc, int rc)
	RAYC_REQUIRES(net->mu);
/* A new coordinator: every write not answered yet goes again now. */
void rayc__names_resend_locked(rayc__net *net) RAYC_REQUIRES(net->mu);
void rayc__names_free(rayc__net *net);
/* Applying the log: member dead (incarnation gen) died or left; the
 * names it held go. */
void rayc__names_sweep(rayc__net *net, uint32_t dead, uint64_t gen);

/* ctl.c, ctl_life.c, ctl_leave.c, ctl_io.c: the control store (Raft over
 * the mesh; see ctl.c). */
typedef void (*rayc__ctl_done)(int rc, void *arg);
int rayc__ctl_init(rayc__net *net);   /* before the loop thread starts */
void rayc__ctl_start(rayc__net *net, uint32_t id); /* once our id is known */
void rayc__ctl_stop(rayc__net *net);  /* closes raft; loop still running */
/* If this peer is the coordinator, asks Raft to hand the role to another
 * voter and waits (at most 2 s) for it to move. */
void rayc__ctl_hand_over(rayc__net *net);
/* Leaving, after the LEAVE: waits (at most a heartbeat timeout) while
 * the peers that stay still need this peer's vote to commit, so Raft
 * goes on answering until it is a standby or removed. */
void rayc__ctl_leave_wait(rayc__net *net);
/* After the loop thread ended: runs what is left; later posts run at
 * once.  fini (after every connection is freed) frees it. */
void rayc__ctl_drain(rayc__net *net);
void rayc__ctl_fini(rayc__net *net);
/* Runs fn(net, arg) on the loop thread.  The poster provides w, inside
 * the work's own allocation, so a post never allocates and is never
 * lost; w is the poster's again once fn starts. */
void rayc__ctl_post(rayc__net *net, rayc__ctl_work *w,
                    void (*fn)(rayc__net *, void *), void *arg);
/* The same with a fixed w (zeroed at first) for work wanted once: while
 * w is queued, posting it again does nothing (close, say, may be asked
 * for twice). */
void rayc__ctl_post_once(rayc__net *net, rayc__ctl_work *w,
                         void (*fn)(rayc__net *, void *), void *arg);
void rayc__ctl_on_raft(rayc__conn *c, rayc__rd *rd);
void rayc__ctl_tick(rayc__net *net);   /* loop thread, every heartbeat */
/* The leader proposes removing peer id (it left, or it looks dead). */
void rayc__ctl_peer_gone(rayc__net *net, uint32_t id, bool left);
/* Loop thread only.  Appends cmd to the log if this peer leads; done
 * (may be NULL) gets the entry's result once applied, RAYC__RETRY if it
 * lost leadership first.  Returns RAYC__RETRY if not the leader. */
int rayc__ctl_propose(rayc__net *net, const rayc__wbuf *cmd,
                      rayc__ctl_done done, void *arg);
/* Loop thread only, on the leader: RAYC_OK if a KV write of len bytes
 * may be proposed now, RAYC__BUSY if the log has no room for it yet (the
 * writes proposed and not applied, or the log since the last snapshot,
 * are at their bound: ctl_log.c). */
int rayc__ctl_log_room(rayc__net *net, size_t len);
bool rayc__ctl_is_leader(rayc__net *net);
/* The leader, with every entry of earlier terms applied here: fit to
 * admit peers and to take reads. */
bool rayc__ctl_ready(rayc__net *net);
/* Loop thread only.  A linearizable read: done(RAYC_OK, arg) once a
 * quorum round that began after this call confirmed this peer still
 * leads (its copy then holds every write acknowledged before the call),
 * done(RAYC__RETRY, arg) if it lost leadership first.  Returns
 * RAYC__RETRY (not ready) or RAYC_ENOMEM without calling done. */
int rayc__ctl_read(rayc__net *net, rayc__ctl_done done, void *arg);
void rayc__ctl_cmd_add(rayc__net *net, rayc__wbuf *b, uint32_t id,
                       uint64_t gen, bool worker, int pid, const char *url,
                       const int64_t *total,
                       const unsigned char *pk);
/* Coordinator, loop thread: may the slot id of a gone peer be given to a
 * new one?  Only once it is out of the Raft configuration and no change
 * of the configuration is under way (a server id is never reused while
 * a configuration, committed or not, may still name its old holder).
 * false with *later: it may be soon. */
bool rayc__ctl_slot_free(rayc__net *net, uint32_t id, bool *later);
/* Slot id goes to a new peer: forget what the control store kept of its
 * old holder (loop thread). */
void rayc__ctl_slot_reset(rayc__net *net, uint32_t id);
/* The same for the mesh's per-slot state (net->mu held). */
void rayc__net_slot_reset_locked(rayc__net *net, uint32_t id)
	RAYC_REQUIRES(net->mu);
/* Is the peer at slot id, as a connection or frame of incarnation gen
 * sees it, dead?  A newer gen than the slot's is a peer that joined
 * moments ago (not applied here yet): alive. */
static inline bool rayc__net_gone_locked(rayc__net *net, uint32_t id,
                                         uint64_t gen) RAYC_REQUIRES(net->mu)
{
	const rayc__peer *p = &net->peers[id];
	return p->known && (gen < p->gen || (gen == p->gen && !p->alive));
}
/* A KV write by client (peer id) as its request req: a retried write
 * (same client and req) is applied once. */
void rayc__ctl_cmd_kv(rayc__wbuf *b, int op, uint32_t client, uint64_t req,
                      const char *key, const void *val, size_t len);

#endif /* RAYC_NET_INT_H */
