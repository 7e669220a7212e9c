/* ctl_int.h -- the control store's shared state, private to its files:
 * ctl.c (overview, proposing, leader duties), ctl_leave.c (handing the
 * role over, a leaving voter staying), ctl_life.c (start and stop), ctl_read.c
 * (linearizable reads), ctl_io.c (libraft's I/O backend over the mesh),
 * ctl_snap.c (its snapshots), ctl_codec.c (raft messages as RAFT
 * frames), ctl_fsm.c (the state machine) and ctl_trace.c (the Raft state
 * in the log).
 */
#ifndef RAYC_NET_CTL_INT_H
#define RAYC_NET_CTL_INT_H

#include <event2/event.h>
#include <raft.h>

#include "net/net_int.h"

/* Control log entries: the first byte of each (built in ctl.c, applied in
 * ctl_fsm.c). */
enum { CMD_ADD = 1, CMD_DEL, CMD_KV_PUT, CMD_KV_DEL, CMD_KV_PUTNX, CMD_KV_DELEQ };

/* KV writes applied, by (client peer, request id): a write retried after
 * the coordinator died is answered with its first result instead of being
 * applied twice (Raft dissertation, 6.3).  The newest DEDUP_MAX are kept,
 * dropped oldest first in log order, so every peer keeps the same ones.
 * Their room is taken once, at start: a replica that could not record one
 * would apply a retry the others refuse, and differ from them. */
#define DEDUP_MAX 4096

typedef struct dedup_key {
	uint64_t req;
	uint32_t client, pad;
} dedup_key;

typedef struct dedup {
	dedup_key k;
	int rc;
	UT_hash_handle hh;
} dedup;

/* A linearizable read waiting for a quorum round (rayc__ctl_read). */
typedef struct read_req {
	rayc__ctl_done done;
	void *arg;
	struct read_req *next;
} read_req;

/* Work done off the loop thread, on a thread of its own (ctl_io.c). */
typedef struct rayc__ctl_job rayc__ctl_job;
/* A stored snapshot's data, counted (ctl_snap.c). */
typedef struct rayc__ctl_sdata rayc__ctl_sdata;

/* A snapshot being taken (ctl_fsm.c): what fsm_snapshot captured on the
 * loop thread, for fsm_snapshot_async to write out on a job's thread. */
typedef struct rayc__ctl_take {
	rayc__wbuf members, dedup;
	rayc__kv_snap kv;
	int64_t loop_ns, job_ns; /* time it took on each thread */
} rayc__ctl_take;

/* A snapshot's KV read back on a job's thread while it is installed
 * (ctl_io.c starts it, ctl_fsm.c reads and uses it). */
typedef struct rayc__ctl_prep {
	bool ready;
	const void *base; /* the data it was read from */
	size_t len;
	int rc;           /* RAYC_OK, RAYC_EPROTO, RAYC_ENOMEM */
	rayc__kv_table kv;
} rayc__ctl_prep;

/* An applied command's size, by its index (ctl_log.c). */
typedef struct rayc__ctl_sized {
	raft_index index;
	size_t len;
} rayc__ctl_sized;

/* Applied commands whose sizes are kept: more than raft ever keeps
 * behind a snapshot (half RAYC__SNAPSHOT_ENTRIES, 512). */
#define RAYC__CTL_RECENT 1024

/* What rayc__ctl_trace last told (ctl_trace.c). */
typedef struct rayc__ctl_seen {
	raft_term term;
	raft_id leader;
	raft_index conf, unc;
	int state;
	bool changing;
} rayc__ctl_seen;

struct rayc__ctl {
	rayc__net *net;
	struct raft raft;
	struct raft_io io;
	struct raft_fsm fsm;
	bool inited, started, closing, close_called;
	bool deaf; /* tests only (RAYC__DEAF_RAFT): drops every RAFT frame */
	/* Tests only (RAYC__LEADER_STALL_MS): a new leader's loop stalls
	 * this long once it has sent its first heartbeats and appended its
	 * barrier, as on a loaded host. */
	int stall_ms;
	struct event *wake, *rtick;
	/* When raft's timer last ran (ctl_io.c: a timer that comes late is
	 * told). */
	int64_t rtick_ns;
	/* raft's clock (ctl_io.c): clock_at on the real clock was
	 * clock_base on raft's, which runs at most clock_step ahead of
	 * clock_base until raft's timer moves them on. */
	int64_t clock_base, clock_at, clock_step;
	/* The loop's last tick (rayc__ctl_tick), and its thread's usage
	 * then. */
	int64_t tick_at;
	rayc__usage tick_use;
	raft_io_tick_cb tick_cb;
	raft_io_recv_cb recv_cb;
	raft_io_close_cb io_close_cb;
	/* "Persistent" state, kept only for load() after bootstrap. */
	struct raft_buffer boot;
	raft_term term;
	raft_id vote;
	/* The last snapshot stored (snapshot_put), for snapshot_get and
	 * InstallSnapshot: its description (no buffers) and its data
	 * (ctl_snap.c). */
	bool has_snap;
	struct raft_snapshot snap;
	rayc__ctl_sdata *sdata;
	/* Jobs running (loop thread); stop_jobs asks them to give up (the
	 * store closes); close_waits: io_close waits for them to end. */
	rayc__ctl_job *jobs;
	_Atomic bool stop_jobs;
	bool close_waits;
	/* A snapshot being taken, and its data once written: snapshot_put
	 * keeps that buffer (setting give NULL) instead of copying it;
	 * fsm_snapshot_finalize frees it if it is still here. */
	rayc__ctl_take take;
	void *give;
	/* A snapshot being installed (sent by the leader): what its put
	 * stored, whose data stays raft's until fsm_restore takes it (then
	 * it becomes snap), and its KV read back meanwhile. */
	bool has_inst;
	struct raft_snapshot inst; /* no buffers */
	const void *inst_base;     /* its data */
	rayc__ctl_prep prep;
	_Atomic uint64_t n_snapshots, n_restored;
	_Atomic uint64_t term_seen; /* raft's current term, for tests */
	/* Which ids raft's configuration holds, as last seen by the loop
	 * thread (a bit per id), for tests. */
	_Atomic uint32_t conf_seen[RAYC__MAX_PEERS / 32];
	/* Applied KV writes (loop thread only). */
	dedup *seen;
	dedup *ring; /* DEDUP_MAX slots, oldest at ring_head */
	unsigned ring_head, ring_n;
	/* Posted work, and the fixed pieces of it posted at most once. */
	rayc__mutex mu;
	rayc__ctl_work *head, *tail;
	bool woken; /* wake is active or armed, or its callback runs */
	bool inline_posts; /* the loop is gone: run posted work at once */
	rayc__ctl_work start_work, close_work, transfer_work, leave_work;
	/* Leader duties. */
	struct raft_change change;
	bool changing;
	/* The change is this standby's promotion (written by the loop
	 * thread only; atomic for rayc__test_ctl_promoting). */
	_Atomic uint32_t promoting;
	/* When each peer's last promotion failed (0: never; loop thread). */
	int64_t promote_failed[RAYC__MAX_PEERS];
	/* When this leader first saw each peer as a live standby (0: not
	 * yet; loop thread): how long it has been one. */
	int64_t standby_since[RAYC__MAX_PEERS];
	struct raft_transfer transfer;
	_Atomic bool no_transfer;
	bool handing_over; /* leaving as the coordinator */
	raft_id handover_to; /* 0: any live peer */
	/* Leaving: whether the peers that stay still need this one's vote
	 * (rayc__ctl_leave_wait; recomputed after every batch of raft work
	 * once leave_wait is set). */
	bool leave_wait;
	_Atomic bool needed;
	/* A new leader's state may trail what its predecessor committed and
	 * answered: it answers reads and admits peers only once a barrier
	 * of its own term is applied. */
	struct raft_barrier barrier;
	bool barrier_pending, ready;
	/* Reads (Raft dissertation 6.4, the read index): a leader answers
	 * from its copy only after a barrier appended after the read came
	 * in has committed, which a majority of voters must accept in this
	 * leader's term; a deposed leader that does not know it yet never
	 * gets there.  Reads that come in while a barrier is in flight
	 * (reads_wait) wait for the next one (reads_next), one barrier per
	 * batch. */
	struct raft_barrier read_barrier;
	bool read_pending;
	read_req *reads_next, *reads_wait;
	rayc__event closed_ev;
	rayc__ctl_seen traced;
	/* The log's byte bound (ctl_log.c; loop thread): entries between
	 * snapshots, bytes between byte-driven ones; command bytes applied
	 * in all, and as of the last snapshot taken and the last stored;
	 * the last commands' sizes (oldest at recent_head); bytes of the
	 * proposals not yet applied or failed (ctl.c). */
	unsigned snap_every;
	uint64_t snap_bytes, prop_max;
	_Atomic uint64_t n_busy; /* writes answered RAYC__BUSY, for tests */
	/* Bytes of entries in received AppendEntries not yet handed to
	 * raft (ctl_codec.c to ctl_io.c), and such messages dropped: over
	 * RAYC__CTL_RX_BYTES, or while this follower's log is full
	 * (rayc__ctl_log_full). */
	_Atomic size_t rx_pending;
	_Atomic uint64_t n_rx_dropped;
	uint64_t applied_bytes, taken_mark, stored_mark;
	rayc__ctl_sized recent[RAYC__CTL_RECENT];
	unsigned recent_head, recent_n;
	uint64_t prop_bytes;
	/* Per follower, the first entry not sent by an AppendEntries cut
	 * short whose send is not done yet, and its term (0: none;
	 * ctl_io.c, loop thread). */
	raft_index cut_next[RAYC__MAX_PEERS];
	raft_term cut_term[RAYC__MAX_PEERS];
	/* While raft takes in an AppendEntries or InstallSnapshot from
	 * answer_to: the highest index its answer sent at once may claim
	 * (0: none; ctl_io.c: run_recv). */
	raft_index answer_cap;
	raft_id answer_to;
};

/* A received raft message, decoded (ctl_codec.c) and handed to raft on
 * the loop thread (ctl_io.c). */
typedef struct rmsg {
	rayc__ctl_work post;
	struct raft_message m;
	size_t bytes; /* of its entries, counted in ctl->rx_pending */
} rmsg;

/* ctl.c */
void rayc__ctl_after(rayc__net *net); /* after each batch of raft work */
/* A configuration change (raft_assign, raft_add...) ended. */
void rayc__ctl_change_cb(struct raft_change *req, int status);
/* Is id a known, live member?  (Takes net->mu.) */
bool rayc__ctl_alive_member(rayc__net *net, raft_id id);

/* ctl_leave.c (loop thread) */
/* One step of handing the coordinator's role over, while one is asked. */
void rayc__ctl_hand_over_step(rayc__net *net);
/* Ends a leaving voter's wait once the others can do without it. */
void rayc__ctl_leave_check(rayc__net *net);

/* ctl_log.c */
/* Queued to a follower, beyond which AppendEntries with entries are not
 * sent to it (ctl_io.c). */
#define RAYC__CTL_SEND_BYTES ((size_t)16 << 20)
/* Sets raft's snapshot thresholds (run_start, after raft_init). */
void rayc__ctl_log_setup(rayc__net *net);
/* From fsm_apply: a command of len bytes is being applied. */
void rayc__ctl_log_applied(rayc__net *net, size_t len);
/* From fsm_snapshot, once it succeeded: a snapshot of everything applied
 * is being taken. */
void rayc__ctl_log_taking(rayc__net *net);
/* A snapshot is stored: the one being taken, or one installed from the
 * leader (the log is gone). */
void rayc__ctl_log_stored(rayc__net *net, bool installed);
/* Received AppendEntries with entries waiting for the loop thread, in
 * bytes, beyond which more are dropped as if lost (ctl_codec.c). */
#define RAYC__CTL_RX_BYTES ((size_t)32 << 20)
/* Whether this peer's log is at its bound while a snapshot is being
 * stored: AppendEntries with entries are then dropped as if lost, until
 * it is (ctl_io.c). */
bool rayc__ctl_log_full(rayc__net *net);

/* ctl_read.c */
/* From rayc__ctl_after: one barrier for the reads that came in since
 * the last one. */
void rayc__ctl_reads_step(rayc__net *net);
/* Closing: answers the reads not yet behind a barrier (RAYC__RETRY). */
void rayc__ctl_reads_close(rayc__net *net);

/* ctl_trace.c */
/* The configuration in words: "voters 2,3(dead) standbys 4". */
void rayc__ctl_conf_desc(rayc__net *net, char *buf, size_t len);
/* At debug level: what changed in term, role, leader, configuration. */
void rayc__ctl_trace(rayc__net *net);

/* ctl_io.c */
/* ctl->wake's callback: runs the posted work. */
void rayc__ctl_on_wake(evutil_socket_t fd, short what, void *arg);
/* Runs posted work until none is left; with then_inline, later posts
 * run at once (the loop is gone). */
void rayc__ctl_run_posted(rayc__net *net, bool then_inline);
void rayc__ctl_io_setup(rayc__net *net); /* fills ctl->io */
void rayc__ctl_run_recv(rayc__net *net, void *arg); /* posted: an rmsg */
/* A raft request done: its callback runs on the loop (kind: one of
 * these; snap for a get). */
enum {
	RAYC__DONE_SEND,
	RAYC__DONE_APPEND,
	RAYC__DONE_CLOSE,
	RAYC__DONE_SNAP_PUT,
	RAYC__DONE_SNAP_GET
};
int rayc__ctl_post_done(rayc__net *net, int kind, void *req, int status,
                        struct raft_snapshot *snap);
/* Runs work(net, arg) on a thread of its own, then done(net, arg, what
 * work returned) on the loop; close waits for it.  RAFT_CANCELED
 * (closing) or RAFT_NOMEM: neither runs. */
int rayc__ctl_job_start(rayc__net *net, int (*work)(rayc__net *, void *),
                        void (*done)(rayc__net *, void *, int), void *arg);
/* The store closes with the loop stopped: waits for the jobs' threads
 * (told to give up); their ends are then posted. */
void rayc__ctl_jobs_join(rayc__net *net);

/* ctl_snap.c */
int rayc__ctl_io_snapshot_put(struct raft_io *io, unsigned trailing,
                              struct raft_io_snapshot_put *req,
                              const struct raft_snapshot *snapshot,
                              raft_io_snapshot_put_cb cb);
int rayc__ctl_io_snapshot_get(struct raft_io *io,
                              struct raft_io_snapshot_get *req,
                              raft_io_snapshot_get_cb cb);
/* io_send's InstallSnapshot: the stored data of m's index and term, sent
 * from where it is.  0: req's callback runs later; else a RAFT_ error
 * (io_send reports it). */
int rayc__ctl_snap_send(rayc__net *net, struct raft_io_send *req,
                        const struct raft_message *m);
/* From fsm_restore: the restored data buf (ours now) is the installed
 * snapshot's, kept as the one stored; anything else is freed. */
void rayc__ctl_snap_restored(rayc__net *net, struct raft_buffer *buf);
/* Lets the stored snapshot go (closing). */
void rayc__ctl_snap_drop(rayc__ctl *ctl);

/* ctl_codec.c */
/* How many of AppendEntries a's entries one message carries (the first
 * ones, RAFT_MSG_CAP bytes of them, at least one). */
unsigned rayc__ctl_append_fit(const struct raft_append_entries *a);
bool rayc__ctl_encode_msg(rayc__wbuf *b, uint32_t self,
                          const struct raft_message *m);
/* An InstallSnapshot whose data (n bytes, in place of m's) is sent from
 * where it is (rayc__conn_send_ext): b gets the frame up to it. */
bool rayc__ctl_encode_snapshot_head(rayc__wbuf *b, uint32_t self,
                                    const struct raft_message *m, size_t n);
void rayc__ctl_free_msg(struct raft_message *m);

/* ctl_fsm.c */
void rayc__ctl_fsm_setup(rayc__net *net); /* fills ctl->fsm */
void rayc__ctl_cluster_ends(rayc__net *net, const char *why);
void rayc__ctl_dedup_clear(rayc__ctl *ctl);
/* On a job's thread: reads an installed snapshot's KV into ctl->prep,
 * for fsm_restore. */
int rayc__ctl_fsm_prepare(rayc__net *net, const struct raft_buffer *buf);
/* Frees what ctl->prep holds if fsm_restore did not use it. */
void rayc__ctl_fsm_prep_drop(rayc__net *net);

#endif
