/* remote_int.h -- what the files of tasks and objects between peers share
 * (remote.c, owner.c, executor.c, xfer.c, samehost.c, refs.c); lib/net
 * only.  Their frames come in through rayc__remote_handle (remote.c).
 */
#ifndef RAYC_NET_REMOTE_INT_H
#define RAYC_NET_REMOTE_INT_H

#include "net/net_int.h"

static inline void rayc__w_oid(rayc__wbuf *b, rayc_object_id id)
{
	rayc__w_u64(b, id.hi);
	rayc__w_u64(b, id.lo);
}

static inline rayc_object_id rayc__r_oid(rayc__rd *rd)
{
	rayc_object_id id;

	id.hi = rayc__r_u64(rd);
	id.lo = rayc__r_u64(rd);
	return id;
}

/* remote.c */
/* Sends peer a frame of type carrying an object id and a u32. */
void rayc__remote_send_small(rayc__net *net, uint32_t peer, int type,
                             rayc_object_id id, uint32_t extra);

/* owner.c */
/* Fails every return of t (err, msg) and ends it. */
void rayc__remote_fail_task_locked(rayc__rt *rt, rayc__task *t, int err,
                                   const char *msg) RAYC_REQUIRES(rt->mu);
void rayc__remote_on_task_done(rayc__conn *c, rayc__rd *rd);
/* A connection to peer was lost: send it our tasks in flight there
 * again (their dispatch numbers unchanged). */
void rayc__remote_resend_locked(rayc__rt *rt, rayc__net *net, uint32_t peer)
	RAYC_REQUIRES(rt->mu);
/* Peer cannot be reached: its tasks in flight go back to be placed
 * elsewhere (a new dispatch; not a retry of theirs). */
void rayc__remote_replace_locked(rayc__rt *rt, rayc__net *net,
                                 uint32_t peer) RAYC_REQUIRES(rt->mu);
/* Our tasks waiting on peer's own queue for room there (owner.c):
 * placed again if err is RAYC_OK (the peer died or cannot be reached:
 * hard affinity to it then fails), else failed with err, the message
 * saying why. */
void rayc__remote_wait_flush_locked(rayc__rt *rt, rayc__net *net,
                                    uint32_t peer, int err, const char *why)
	RAYC_REQUIRES(rt->mu);
/* Peer died: acknowledgements for it are dropped (its slot may be
 * given to another). */
void rayc__remote_acks_drop_locked(rayc__net *net, uint32_t peer)
	RAYC_REQUIRES(net->rt->mu);
/* t leaves rt->rwait, the tasks waiting for room on any peer. */
void rayc__remote_rwait_take_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);

/* executor.c */
void rayc__remote_on_task(rayc__conn *c, rayc__rd *rd);

/* xrec.c: tasks run here for other owners (see there). */
rayc__xrec *rayc__xrec_find_locked(rayc__net *net, rayc_task_id id);
/* ACK: the sender has these answers of ours; their records go. */
void rayc__xrec_on_ack(rayc__conn *c, rayc__rd *rd);
/* An ACK entry: task id (hi, lo) and dispatch number. */
#define RAYC__ACK_BYTES 20
/* A record of a run starting (NULL: out of memory). */
rayc__xrec *rayc__xrec_start_locked(rayc__net *net, rayc_task_id id,
                                    uint32_t owner, uint32_t dispatch);
/* The run ended and answered body (moved into the record). */
void rayc__xrec_done_locked(rayc__net *net, rayc__xrec *r,
                            const void *body, size_t len);
void rayc__xrec_drop_locked(rayc__net *net, rayc__xrec *r);
void rayc__xrec_sweep_locked(rayc__net *net, int64_t now);
/* A TASK for a task with record r came: true if it was handled (the
 * run answers it, or the answer went again); false: r is gone, run it. */
bool rayc__xrec_again_locked(rayc__rt *rt, rayc__net *net, rayc__xrec *r,
                             uint32_t owner, uint32_t dispatch)
	RAYC_REQUIRES(rt->mu);
/* A task with no record whose returns are here (its record went, or
 * they outlived it): true if handled (still running: the run answers;
 * all sealed: answered from them). */
bool rayc__xrec_answer_entries_locked(rayc__rt *rt, rayc__net *net,
                                      uint32_t owner, rayc_task_id id,
                                      uint32_t dispatch, uint32_t nret)
	RAYC_REQUIRES(rt->mu);
/* TASK_DONE: header, task id, dispatch, then body; on our task lane
 * from owner if lane and one is up (tlane.c), else over the
 * connection. */
void rayc__xrec_send(rayc__net *net, uint32_t owner, rayc_task_id id,
                     uint32_t dispatch, const void *body, size_t len,
                     bool lane);
void rayc__xrec_fini(rayc__net *net);

/* xfer.c */
void rayc__remote_on_fetch(rayc__conn *c, rayc__rd *rd);
void rayc__remote_on_chunk(rayc__conn *c, rayc__rd *rd);
void rayc__remote_on_missing(rayc__conn *c, rayc__rd *rd);
/* Transfers coming from peer are asked for again (fail: fail them, as
 * if it had no copy). */
void rayc__remote_refetch(rayc__net *net, uint32_t peer, bool fail);
/* Loop thread: transfers waiting for their source to be in our view go
 * (or fail: it is dead, or was not heard of in time).  True if some
 * still wait. */
bool rayc__remote_fetch_waiting(rayc__net *net);
void rayc__remote_xin_free_dst(rayc__net *net, rayc__xin *x);
/* Whether an object is being fetched from peer src (net->mu taken). */
bool rayc__remote_fetching_from(rayc__net *net, uint32_t src);
/* Owner: are any of our tasks in flight to peer? (takes rt->mu) */
bool rayc__remote_tasks_at(rayc__net *net, uint32_t peer);
void rayc__remote_xin_release(rayc__net *net, rayc__xin *x);
/* x (busy) took n more bytes (ok), or none will come: no longer busy.
 * Ends the transfer when it is complete (all total bytes in); a dead x
 * is freed.  False if x is gone. */
bool rayc__remote_xin_end(rayc__net *net, rayc__xin *x, size_t n, bool ok);
void rayc__remote_xin_finish(rayc__net *net, rayc__xin *x, bool ok, int err,
                             const char *msg);

/* samehost.c */
bool rayc__remote_same_host_on(void);
/* Is c's other end on this host (its addresses say so)? */
bool rayc__remote_conn_local(rayc__conn *c);
bool rayc__remote_looks_local_locked(rayc__net *net, uint32_t peer)
	RAYC_REQUIRES(net->mu);
void rayc__remote_offer(rayc__conn *c, rayc__obj *o, rayc_object_id id,
                        const void *data, size_t len, rayc_type type,
                        uint64_t off);
void rayc__remote_unpin(rayc__net *net, uint32_t peer,
                        const rayc_object_id *id);
void rayc__remote_send_shm_done(rayc__net *net, uint32_t peer,
                                rayc_object_id id);
void rayc__remote_on_shm_offer(rayc__conn *c, rayc__rd *rd);

/* refs.c */
void rayc__remote_on_ref_msg(rayc__conn *c, int type, rayc__rd *rd);
/* Drops a ref the mesh holds on o (for its owner, or while sending or
 * offering it).  A result made here for another owner that said FREE
 * (o->let_go) is freed once nothing holds it, never kept as a cached
 * copy: nobody will ask for it again, and its memory is what the next
 * object here should get, warm, instead of memory never touched (a
 * first touch per page; on some VMs ~95 ms per 64 MiB). */
void rayc__remote_unref_locked(rayc__rt *rt, rayc__obj *o)
	RAYC_REQUIRES(rt->mu);

#endif /* RAYC_NET_REMOTE_INT_H */
