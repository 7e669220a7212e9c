/* sched.h -- the local scheduler: scheduling classes (tasks grouped by
 * resource demand), ready queues, resource accounting, worker threads
 * that park and spin, and the blocked-get protocol that lends a task's CPU
 * back while it waits. */
#ifndef RAYC_SCHED_H
#define RAYC_SCHED_H

#include "rt.h"

int rayc__sched_start(rayc__rt *rt, int nworkers);
/* Stops and joins every worker.  Queued tasks are discarded by the
 * caller afterwards. */
void rayc__sched_stop(rayc__rt *rt);

/* Finds or makes the class for a demand vector.  NULL on ENOMEM. */
rayc__sclass *rayc__sched_class_locked(rayc__rt *rt, const int64_t *demand)
	RAYC_REQUIRES(rt->mu);
/* True if the demand fits this peer's totals at all (never for a peer
 * that offers no resources: a driver that runs no tasks). */
bool rayc__sched_feasible(const rayc__rt *rt, const int64_t *demand);

/* A task whose arguments are ready: placement may send it to another
 * peer (lib/net); otherwise it is queued here (enqueue_local) and a
 * worker is woken if one is idle and the task fits. */
void rayc__sched_enqueue_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);
void rayc__sched_enqueue_local_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);
/* Removes a queued task (used for inline execution). */
void rayc__sched_dequeue_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);

/* Offers queued tasks to fn, oldest class first, each class in FIFO
 * order (the mesh sends some of them to another peer).  fn may dequeue
 * the task it is given (rayc__sched_dequeue_locked) and returns one of: */
enum {
	RAYC__OFFER_NEXT,       /* go on with the next task */
	RAYC__OFFER_NEXT_CLASS, /* skip the rest of this class */
	RAYC__OFFER_STOP,       /* done */
};
void rayc__sched_offer_locked(rayc__rt *rt,
                              int (*fn)(rayc__rt *rt, rayc__task *t,
                                        const int64_t *demand, void *arg),
                              void *arg) RAYC_REQUIRES(rt->mu);

/* Runs t on the calling thread (unlocks around user code).  t is
 * RUNNING with its resources accounted for by the caller. */
void rayc__sched_execute_locked(rayc__rt *rt, rayc__task *t, int64_t cpu,
                                int depth) RAYC_REQUIRES(rt->mu);

/* The calling task is about to block: give back its CPU and make sure a
 * worker can take the freed slot.  _unblock takes it back (the CPU may go
 * negative for a while, as in Ray). */
void rayc__sched_block_locked(rayc__rt *rt, rayc_ctx *ctx)
	RAYC_REQUIRES(rt->mu);
void rayc__sched_unblock_locked(rayc__rt *rt, rayc_ctx *ctx)
	RAYC_REQUIRES(rt->mu);

/* A task blocked on o: if o's producer is queued and fits in the CPU the
 * caller already holds, run it right here.  Returns true if it ran. */
bool rayc__sched_try_inline_locked(rayc__rt *rt, rayc_ctx *ctx, rayc__obj *o)
	RAYC_REQUIRES(rt->mu);

/* Frees the classes at shutdown. */
void rayc__sched_destroy_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);

#endif /* RAYC_SCHED_H */
