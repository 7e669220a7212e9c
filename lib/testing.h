/* testing.h -- hooks for rayc's own tests, not API: they let a test
 * simulate failures the single-peer runtime cannot otherwise produce. */
#ifndef RAYC_TESTING_H
#define RAYC_TESTING_H

#include <stdbool.h>
#include <stdint.h>

#include "rayc.h"

/* Drops the data of a sealed object as if its memory were lost; the next
 * rayc_get rebuilds it from lineage (or fails with RAYC_ELOST for puts). */
int rayc__test_lose(rayc_ref ref);
/* The path of this peer's arena file (NULL when not running). */
const char *rayc__test_store_path(void);

/* Runs fn (NULL: nothing) on the fetching peer's receive thread right
 * before each same-host read of another peer's arena, with no lock
 * held: a test can kill the holder there. */
void rayc__test_set_shm_copy_hook(void (*fn)(void));

/* Makes this peer a hostile holder (NULL: an honest one again): its
 * same-host offers name the node at path (taken, not followed, if it is
 * a symlink) instead of its arena.  The caller keeps path alive. */
void rayc__test_set_offer_path(const char *path);
/* Makes this peer's same-host offers announce the object `bytes` further
 * on in its arena than it lies (0: where it lies), as a holder with a
 * bug would. */
void rayc__test_set_offer_skew(int64_t bytes);

/* on = false: every frame tag is computed with libsodium's Poly1305,
 * as in a build without libcrypto (true: big frames use OpenSSL's, if
 * this build has it). */
void rayc__test_wire_big_mac(bool on);

/* Closes every connection this peer has to peer id `peer`, as a network
 * fault would.  With lose > 0, the next lose frames this peer sends it
 * over an open connection are thrown away, each closing the connection
 * it was queued on (a frame lost with its connection). */
int rayc__test_drop_conn(uint32_t peer, int lose);
/* Dials url (a connection of no peer's, like the probes) and waits up
 * to wait_ms for the dial to end: RAYC_OK once it did (*connected: it
 * connected; else it was closed), RAYC_ETIMEDOUT if still pending;
 * *open_ms: how long it was pending. */
int rayc__test_dial_until_closed(const char *url, int wait_ms,
                                 int64_t *open_ms, bool *connected);
/* threads threads dial the urls in turn for ms, each connection given up
 * (aborted on the dialing thread, as the loop does) if its dial has not
 * ended within a random 1 to deadline_ms, then closed and freed at once:
 * dials racing their deadline, and frees racing NNG's threads.  *dials:
 * dials made; *given_up: those given up. */
int rayc__test_dial_storm(const char *const *urls, int nurls, int threads,
                          int ms, int deadline_ms, uint64_t *dials,
                          uint64_t *given_up);
/* While block is true, connections between this peer and peer id
 * `peer` close as soon as they open (those open now close): the peer is
 * a member this one cannot reach. */
int rayc__test_block_peer(uint32_t peer, bool block);
/* True if this peer has an open connection to peer id `peer`. */
bool rayc__test_conn_open(uint32_t peer);
/* Sends peer a frame of type (a RAYC__MSG_ number) with payload p, n:
 * what a faulty or hostile peer could send. */
int rayc__test_send_raw(uint32_t peer, int type, const void *p, size_t n);
/* Dials peer `to` on a connection of its own claiming to be peer `as`
 * of incarnation gen (0: the one this peer knows it by; a member
 * holding the token posing as another),
 * and once the handshake is done sends it a frame of type with payload
 * p, n under that id.  RAYC_OK once `to` closed the connection (within
 * wait_ms), RAYC_ETIMEDOUT if it was still open then. */
int rayc__test_send_as(uint32_t to, uint32_t as, uint64_t gen, int type,
                       const void *p, size_t n, int wait_ms);
/* Opens nconn connections of its own (at most 16) to peer `to`, claiming
 * to be peer as (this peer's own id, or 0: a joiner), and on each sends a frame header claiming 2 * bytes of payload
 * followed by bytes of it: frames that never end, each held by the
 * receiver.  Returns how many of them `to` closed, once want have or
 * wait_ms passed. */
int rayc__test_hold_frames(uint32_t to, uint32_t as, int nconn,
                           size_t bytes, int want, int wait_ms);
/* From now on counts (from 0) the batches of bytes this peer hands its
 * sockets (after tagging, and encrypting if it does) that hold marker
 * (NULL: stop looking, keeping the count); rayc__test_tap_hits says how
 * many did.  The caller keeps
 * marker alive. */
void rayc__test_tap(const char *marker);
uint64_t rayc__test_tap_hits(void);
/* Tampers with the next frame of type (a RAYC__MSG_ number) this peer
 * sends peer id `peer`, after its tag is computed, as an attacker on the
 * path could: RAYC__TEST_FLIP flips a bit of its last payload byte and
 * writes the payload's xxh3 where frames carried it before they had
 * tags; RAYC__TEST_REPLAY sends the frame twice.  One frame, then it
 * disarms.  CHUNKs whose payload is spliced from an object are never
 * chosen. */
enum { RAYC__TEST_FLIP = 1, RAYC__TEST_REPLAY };
int rayc__test_tamper_next(uint32_t peer, int type, int how);
/* Frames this peer refused for a bad tag or checksum, or GROUPs holding
 * what they may not (each closed its connection). */
uint64_t rayc__test_frames_refused(void);
/* Runs fn(src) (NULL: nothing) on the receive thread after each piece
 * of a CHUNK from peer src lands, with no lock held. */
void rayc__test_set_chunk_hook(void (*fn)(uint32_t src));
/* Runs fn(src) on a bulk lane's thread (the fetcher's) each time a
 * piece of a CHUNK from src is taken for a transfer, before its bytes are
 * received: the transfer is busy meanwhile. */
void rayc__test_set_lane_piece_hook(void (*fn)(uint32_t src));
/* Bulk lanes (lib/net/lane.c): object bytes this peer received and
 * sent on lanes, and lanes it set up (as the fetcher) so far. */
void rayc__test_lane_counts(uint64_t *in, uint64_t *out, uint64_t *up);
/* The next lane frame this peer writes gets a flipped tag bit. */
void rayc__test_lane_tamper(void);
/* This peer's lanes (as the fetcher) take ms longer to set up. */
void rayc__test_lane_stall(int ms);
/* Every connection of this process waits ms after reading each batch
 * before it reads on (0: not), so what comes next waits unread. */
void rayc__test_rx_pause(int ms);
/* The coordinator waits ms on its loop thread between the two steps of
 * join_applied (members.c): after it answered a joiner (JOINED), before
 * the join connection becomes its connection to the newcomer.  What other
 * threads send the newcomer meanwhile goes on a dial of its own. */
void rayc__test_join_gap(int ms);
/* Task lanes (lib/net/tlane.c): TASK frames this peer wrote and read on
 * task lanes, and TASK_DONE frames it wrote and read, so far. */
void rayc__test_tlane_counts(uint64_t *task_out, uint64_t *task_in,
                             uint64_t *done_out, uint64_t *done_in);
/* The next task lane frame this peer writes gets a flipped tag bit. */
void rayc__test_tlane_tamper(void);
/* Shuts this peer's task lanes' sockets down (as a broken network
 * would): their connections close, and what was in flight goes again. */
void rayc__test_tlane_cut(void);
/* This peer's lane listener's port (0: none). */
int rayc__test_lane_port(void);

/* Runs this peer's frame reader (lib/net/conn.c) over the n bytes at p
 * as if a connection had received them, in pieces of at most piece
 * bytes (0: all at once), for fuzz targets and wire tests.  No stream
 * backs the connection: what it would send is dropped with it.  how:
 * RAYC__TEST_RX_ACCEPTOR, a connection accepted (its HELLO sent);
 * RAYC__TEST_RX_DIALER, one dialed to peer (waiting for HELLO);
 * RAYC__TEST_RX_OPEN, one opened by peer id peer whose frames are tagged
 * (wire.h, numbered from 0) under key.  Returns 1 if the reader closed
 * the connection, 0 if it is still open, RAYC_ESTATE without a
 * networked runtime, RAYC_ENOMEM. */
enum {
	RAYC__TEST_RX_ACCEPTOR,
	RAYC__TEST_RX_DIALER,
	RAYC__TEST_RX_OPEN,
};
int rayc__test_rx(int how, uint32_t peer, const unsigned char key[32],
                  const void *p, size_t n, size_t piece);
/* Checks the configuration cfg and the RAYC_* environment give, as
 * rayc_init would (RAYC_OK or its error), without starting anything. */
int rayc__test_conf_check(const rayc_config *cfg);

/* Snapshots of the control store this peer stored (taken or installed);
 * *restored (may be NULL) gets how many it restored from another peer. */
uint64_t rayc__test_ctl_snapshots(uint64_t *restored);
/* KV writes this peer, as the coordinator, answered BUSY (its control
 * log had no room for them yet: lib/net/ctl_log.c). */
uint64_t rayc__test_ctl_busy(void);
/* KV writes this peer proposed as coordinator so far (an ask repeated
 * while the first is in flight is not proposed again); *asked: the asks
 * it took as coordinator. */
uint64_t rayc__test_kv_proposed(uint64_t *asked);
/* Sends this process started while holding a rayc lock (each a write
 * that another thread needing that lock waited behind); 0 is the goal. */
uint64_t rayc__test_sends_under_lock(void);
/* Sends this process started from the queueing thread (conn.c, kick),
 * by the send callback, of the former those the socket took in part,
 * and those it turned away (the socket full). */
typedef struct rayc__test_sends {
	uint64_t fast, slow, parts, turned_away;
} rayc__test_sends;
void rayc__test_conn_sends(rayc__test_sends *s);
/* Frames this process sent in GROUPs (wire.h) and the GROUPs; the same
 * received. */
void rayc__test_groups(uint64_t *frames_out, uint64_t *out,
                       uint64_t *frames_in, uint64_t *in);
/* The answers this peer keeps for tasks it ran for others (xrec.c):
 * their bytes, and the heap memory holding them. */
void rayc__test_xrec_held(size_t *len, size_t *held);
/* The most tasks of other owners this peer held at once, run or to run
 * (its records not done: xrec.c). */
size_t rayc__test_xrec_peak(void);
/* RAYC__PEER_WINDOW: the most of one owner's tasks that a strategy
 * placed on a peer it sends there at once (lib/net/owner.c). */
size_t rayc__test_peer_window(void);
/* Every send tries the queueing thread first, whatever its size and
 * even where the last one found the socket filling up (once: a try
 * turned away by a full socket goes by the callback, or a stopped peer
 * would hold that thread for ever). */
void rayc__test_fast_always(bool on);
/* This peer's control store term as last seen by its loop thread: it
 * grows with every election. */
uint64_t rayc__test_ctl_term(void);
/* The peer this peer, as the coordinator, is making a voter now (from
 * the request until the change commits or fails), 0 if none. */
uint32_t rayc__test_ctl_promoting(void);
/* Whether this peer's Raft configuration holds peer id (any role). */
bool rayc__test_ctl_in_conf(uint32_t id);
/* A KV put (or delete) sent as write number req of this peer: sending
 * the same req again is what a retry after a failover does. */
int rayc__test_kv_write(bool put, const char *key, const void *val,
                        size_t len, uint64_t req);
/* Asks this peer, if it is the coordinator, to hand the role to peer
 * `to` (made a voter first if it is not one; asynchronous). */
int rayc__test_ctl_transfer(uint32_t to);
/* Runs fn (NULL: nothing) on the loop thread each time a snapshot of the
 * control store captures this peer's KV table, with the table's own lock
 * (rt->kv_mu) held and no other: a test can check what waits for it. */
void rayc__test_set_kv_write_hook(void (*fn)(void));
/* While hold is true, a snapshot from the coordinator that this peer
 * starts installing is held (its put under way, before its KV is read)
 * until the control store closes; rayc__test_installs_held counts those
 * held. */
void rayc__test_hold_installs(bool hold);
uint64_t rayc__test_installs_held(void);
/* This peer's own copy of a KV key (the API asks the coordinator). */
int rayc__test_kv_local(const char *key, void **val, size_t *len);

/* Runs a worker made as part of a batch (sched/execute.c) since init,
 * and the average run time under which a function counts as quick
 * (RAYC__QUICK_NS unless a test sets it: a slow build, under ASan say,
 * may run an empty task in more; the bound for tasks a connection's
 * reader runs itself, RAYC__TINY_NS, moves in proportion). */
uint64_t rayc__test_batched_runs(void);
/* Runs a connection's reader made itself (sched.h:
 * rayc__sched_serve_held) since init. */
uint64_t rayc__test_served_runs(void);
void rayc__test_set_quick_ns(uint32_t ns);
/* Whether tasks may be direct (sched/direct.h; on unless a test that
 * looks at the batches of the scheduler's queues turns it off). */
void rayc__test_set_direct(bool on);
/* Whether ref's entry is a direct task's, not adopted (yet): 0 no, or
 * its phase (sched/direct.h: 1 queued or running, 3 sealed). */
int rayc__test_direct_phase(rayc_ref ref);
/* Arms (true) a pause of the next direct run to end, after its run and
 * before its seal (an adopter may let a waiter or a dependent wait
 * meanwhile), or lets it go (false); _paused: a run waits there now. */
void rayc__test_direct_pause(bool on);
bool rayc__test_direct_paused(void);
/* Whether ref's entry lies in a direct task's record (rt.h: rayc__drec):
 * 1 yes, 0 no, -1 no such entry. */
int rayc__test_direct_in_rec(rayc_ref ref);
/* How long a worker holds a burst's task back at most for its submitter
 * to get ahead (sched/direct.c: held_back; 0: the default, 20 us), and
 * whether one holds tasks back now; whether a thread waiting for a
 * direct task's result has told the workers to hold none back. */
void rayc__test_direct_hold(int64_t ns);
bool rayc__test_direct_holding(void);
bool rayc__test_direct_hurry(void);
/* Whether a thread (rayc_get, rayc_wait) or a task waits for ref's
 * object. */
bool rayc__test_waited_for(rayc_ref ref);
/* Whether the run that makes ref's object has ended in a batch that is
 * still running. */
bool rayc__test_run_ended(rayc_ref ref);
/* Whether ref's object is ready, without completing anything on the way
 * as rayc_get and rayc_wait do. */
bool rayc__test_ready(rayc_ref ref);

/* Fault injection: the next count passes of site fail as if memory ran
 * out there (count 0 disarms).  rayc__fault(site) is the check. */
enum {
	RAYC__FAULT_TASK_RETURNS, /* the table of a task's returns */
	RAYC__FAULT_KV_APPLY,     /* a KV value's copy in this peer's table */
	RAYC__FAULT_CONN_SEND,    /* queueing a frame on a connection */
	RAYC__FAULT_TASK_IN,      /* the tables of a task from another peer */
	RAYC__FAULT_BORROW,       /* recording a borrower of an object */
	RAYC__FAULT_ANSWER_CUT,   /* a TASK_DONE goes out one byte short */
	RAYC__FAULT_NSITES
};
void rayc__test_fault(int site, int count);

/* Makes a peer that leaves the cluster (rayc_shutdown of a peer that
 * does not end it) wait ms after its LEAVE before it stops, so frames it
 * sends meanwhile meet its committed removal (0: no wait). */
void rayc__test_set_leave_linger(int ms);

/* Makes this peer's next join send its JOIN twice on one connection (as
 * a confused or hostile peer could); rayc__test_joined_ids counts the
 * JOINED frames giving this peer an id that it has received. */
void rayc__test_join_twice(void);
int rayc__test_joined_ids(void);

/* Prints (stderr) what this peer still waits for: unfinished tasks
 * and their arguments, unsealed objects, transfers in flight. */
void rayc__test_dump_pending(const char *tag);

/* Takes (hold) or lets go of the runtime's lock rt->mu on the calling
 * thread, as a worker or a receive callback would hold it. */
int rayc__test_hold_lock(bool hold);
/* The entries in the object table, read under rt->mu without letting go
 * of the refs handed over to its holder first (rayc__obj_unpin). */
uint64_t rayc__test_entries(void);
/* The chunks the task-spec and entry slabs hold now. */
void rayc__test_slab_chunks(size_t *tasks, size_t *objs);

/* This process's resident set in bytes. */
unsigned long rayc__test_rss(void);

#endif
