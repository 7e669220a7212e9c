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

/* Submitting (submit.c).  rayc__sched_submit hands over a task with no
 * ref arguments, its class set, without waiting for rt->mu; _record_locked
 * records one under the lock (entries for its returns, lineage, argument
 * holds; queued or placed when its arguments are ready; a nested call made
 * already by an earlier run of its parent hands out those results and t is
 * freed).  _drain_locked records every task handed over so far, oldest
 * first, and lets go of the objects' last refs handed over
 * (rayc__obj_unpin); rayc__rt_lock takes rt->mu and does that, for every
 * caller that looks an id up. */
void rayc__sched_submit_init(void);
void rayc__sched_submit(rayc__rt *rt, rayc__task *t);
void rayc__task_record_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);
void rayc__sched_drain_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);
static inline void rayc__rt_drain_if_locked(rayc__rt *rt)
	RAYC_REQUIRES(rt->mu)
{
	if (rayc__handoff_pending(memory_order_relaxed))
		rayc__sched_drain_locked(rt);
}
/* How long the scheduler's own locking of rt->mu (submitting, getting,
 * a batch's end) spins while it is busy before sleeping: it is held a
 * few hundred ns at a time, and each sleep costs a futex wait, the
 * holder a wake, and both a context switch.  Batches of 1,000 empty
 * tasks submitted then got, on 2 vCPUs: 0.032-0.037 syscalls per task
 * with the default 8 us, 0.018-0.019 with 100 us, at the same rate.  Not
 * for everyone: 100 us also on a woken worker's first lock (or on every
 * lock of rt->mu) made remote_tasks_sync 30% slower there, the woken
 * thread spinning on the CPU its waker, still holding the lock, needs
 * (docs/benchmarks.md, ninth pass). */
#define RAYC__RT_SPIN_NS 100000
static inline void rayc__rt_lock(rayc__rt *rt) RAYC_ACQUIRE(rt->mu)
{
	rayc__mutex_lock_spin(&rt->mu, RAYC__RT_SPIN_NS);
	rayc__rt_drain_if_locked(rt);
}
/* rayc__rt_lock if rt->mu is free. */
static inline bool rayc__rt_trylock(rayc__rt *rt)
	RAYC__TSA(try_acquire_capability(true, rt->mu))
{
	if (!rayc__mutex_trylock(&rt->mu))
		return false;
	rayc__rt_drain_if_locked(rt);
	return true;
}

/* Finds or makes the class for a demand vector.  NULL on ENOMEM. */
rayc__sclass *rayc__sched_class_locked(rayc__rt *rt, const int64_t *demand)
	RAYC_REQUIRES(rt->mu);
/* The same, pinned or not (see rayc__sclass.pinned). */
rayc__sclass *rayc__sched_class_ex_locked(rayc__rt *rt, const int64_t *demand,
                                          bool pinned) RAYC_REQUIRES(rt->mu);
/* The class of a demand if there is one already (never a pinned one);
 * needs no lock (classes
 * are only ever appended, and never change, until shutdown). */
rayc__sclass *rayc__sched_class_find(const rayc__rt *rt, const int64_t *demand);
/* True if the demand fits this peer's totals at all (never for a peer
 * that offers no resources: a driver that runs no tasks). */
bool rayc__sched_feasible(const rayc__rt *rt, const int64_t *demand);

/* A task whose arguments are ready: an actor's goes to its actor
 * (sched/actor.c); placement may send another to another peer (lib/net)
 * unless its class is pinned; otherwise it is queued here (enqueue_local)
 * and a worker is woken if one is idle and the task fits. */
void rayc__sched_enqueue_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);
void rayc__sched_enqueue_local_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);
/* Takes resources for something that holds them beyond one task run
 * (an actor, for its life) and gives them back (waking workers). */
void rayc__sched_hold_locked(rayc__rt *rt, const int64_t *demand)
	RAYC_REQUIRES(rt->mu);
void rayc__sched_unhold_locked(rayc__rt *rt, const int64_t *demand)
	RAYC_REQUIRES(rt->mu);
/* A thread that is no worker may run the quick task it queues itself
 * (a task lane's reader, lib/net/tlane.c: a worker's wake-up is a futex
 * call each side and a context switch, half again the cost of a remote
 * round trip).  Between _serve_begin and _serve_end_locked (without
 * letting go of rt->mu in between), queueing a quick task that fits wakes
 * no worker; _serve_end_locked then runs the oldest queued task here if
 * it fits and is quick (unlocking around it), and makes sure a worker
 * sees to whatever else is queued.  A task run so that blocks (in
 * rayc_get or rayc_wait) calls on_block at once, under rt->mu (the thread
 * stops being free for what it otherwise does: the lane closes), and its
 * function is never run so again (rayc__fn_entry.blocked_served). */
void rayc__sched_serve_begin(void (*on_block)(void));
void rayc__sched_serve_end_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);
/* The same for a whole read of a connection (lib/net/conn.c): between
 * _hold_begin and _hold_end (which says how many), tiny tasks
 * (rayc__sched_tiny) queued while a CPU is free wake no worker.
 * _serve_held (rt->mu not held) then runs the oldest queued tiny tasks on
 * this thread, one after the other, before the reader reads again (so
 * the tasks of a read are parsed and run on one core: no worker's
 * wake-up, none of their memory moved between cores): n of them, and as
 * many as the runs queue meanwhile (held as well: an actor's next call,
 * a dependent), up to n + RAYC__SERVE_MORE; then it wakes workers for
 * whatever is left (n 0: only that).  It stops at a task that is not
 * tiny and after a run that blocked (on_block was called; its function
 * is never served again).  While it runs them, rayc__sched_batch_more is
 * true: what they send may wait for the end. */
void rayc__sched_hold_begin(void);
int rayc__sched_hold_end(void);
/* A tiny call put in the mailbox of an actor hosted here during a read:
 * counted with the read's held tasks, though it waits there for the
 * calls ahead of it, so that _serve_held runs the read's calls one after
 * the other (each queued as the last ends) instead of the first
 * RAYC__SERVE_MORE and a worker's wake-up and a lone answer for each of
 * the rest. */
void rayc__sched_hold_note(const rayc__task *t);
/* Makes sure a worker sees to queued work that fits (a thread that held
 * back wake-ups may be stuck in a run). */
void rayc__sched_kick_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);
void rayc__sched_serve_held(rayc__rt *rt, int n, void (*on_block)(void))
	RAYC_EXCLUDES(rt->mu);
bool rayc__sched_serve_more(void);
/* Shutting down: sets rt->stopping and wakes every idle worker and every
 * thread waiting on an object (which sees it and returns), so that a
 * thread other than a worker, in a task, ends it before it is joined. */
void rayc__sched_wake_stop(rayc__rt *rt);
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

/* Runs t's function on the calling thread (rt->mu not held), with ctx
 * set up for it; one run in eight is timed for its function's average
 * (rayc__fn_entry.run_ns). */
void rayc__sched_run_timed(rayc__rt *rt, rayc__task *t, rayc_ctx *ctx)
	RAYC_EXCLUDES(rt->mu);
/* Runs t on the calling thread (unlocks around user code).  t is
 * RUNNING with its resources accounted for by the caller. */
void rayc__sched_execute_locked(rayc__rt *rt, rayc__task *t, int64_t cpu,
                                int depth) RAYC_REQUIRES(rt->mu);

/* Batches (execute.c).  A worker that took a task whose function is
 * quick (its runs took under RAYC__QUICK_NS so far; never an actor's)
 * may take up to RAYC__BATCH_MAX - 1 more of its class, queued after it,
 * and run them one after the other on the resources it took for the
 * first.  Their completions wait to be done together when the batch ends
 * (or RAYC__DEFER_NS after the oldest ended, checked as runs end: a slow
 * run holds those before it until it ends; the mesh loop's tick completes
 * them then, lib/net/mesh_life.c), unless someone here waits for a run's
 * results (a thread or a task waits for one of its returns; not another
 * peer owning the task, whose answer would wait for the batch's end
 * anyway, lib/net/xrec.c): that run hands the batch's ended runs over
 * as it ends (through rayc__sched_submit with done_ctx set when rt->mu is
 * busy; _complete_locked is the drain's part).  _watch_locked marks the
 * run that makes o, if a batch has it, as waited for (the caller waits
 * for o from now on; a batch looks for waiters itself when it starts).
 * _finish_locked completes the runs that have ended in every batch (true
 * if any), for a thread that has just begun to wait or is about to find
 * an object not ready.  _return_locked (from a run that blocks) and
 * _steal_locked (an idle worker: true if it completed or gave back any)
 * give the runs not started back to the head of the queue. */
#define RAYC__BATCH_MAX 16
#define RAYC__QUICK_NS 2000
#define RAYC__DEFER_NS 20000
bool rayc__sched_quick(const rayc__task *t);
/* Quick, or an actor's method call whose runs took under RAYC__QUICK_NS
 * so far: what a task lane's thread runs itself
 * (rayc__sched_serve_begin; the mailbox still starts the call). */
bool rayc__sched_quick_call(const rayc__task *t);
/* An actor's method call too (not batched, but run by a connection's
 * reader as any task is by a worker: the mailbox still starts it), or
 * quick, and in either case under RAYC__TINY_NS (a test's
 * rayc__test_set_quick_ns moves it in proportion): about
 * what reading a TASK costs its reader (parsing, the executor's records:
 * ~1 us on our 2 vCPU VM), so that a read whose tasks its reader runs
 * itself (rayc__sched_serve_held) takes at most about twice as long as
 * reading it did: the parallelism of workers given up for them is
 * bounded. */
#define RAYC__TINY_NS 1000
#define RAYC__SERVE_MORE 64
bool rayc__sched_tiny(const rayc__task *t);
/* Whether rayc__sched_execute_locked on this thread times every run
 * (else one in eight), noting one that turned slow in its function's
 * average at once. */
void rayc__sched_time_runs(bool all);
/* True on a worker running a batch with runs not started yet, or on a
 * reader running its read's tasks (_serve_held): what a run's
 * completion sends may wait for the batch or the reader's runs to end
 * or pause (rayc__cluster_hooks.batch_paused is called then, under
 * rt->mu). */
bool rayc__sched_batch_more(void);
/* What a batch or a served read held back goes (rt->hooks->batch_paused). */
void rayc__sched_paused_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);
void rayc__sched_run_batch_locked(rayc__rt *rt, rayc__worker *w,
                                  rayc__task **tasks, int n, int64_t cpu)
	RAYC_REQUIRES(rt->mu);
void rayc__sched_batch_complete_locked(rayc__rt *rt, rayc__task *t,
                                       rayc_ctx *ctx) RAYC_REQUIRES(rt->mu);
void rayc__sched_batch_return_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);
bool rayc__sched_batch_finish_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);
void rayc__sched_watch_locked(rayc__rt *rt, rayc__obj *o)
	RAYC_REQUIRES(rt->mu);
bool rayc__sched_batch_steal_locked(rayc__rt *rt, rayc__worker *self)
	RAYC_REQUIRES(rt->mu);
/* Puts a task taken from the head of its class's queue back there. */
void rayc__sched_requeue_front_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);

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
