/* submit.c -- recording submitted tasks, and submitting without waiting
 * for rt->mu.
 *
 * A task with no ref arguments needs nothing from the object table to be
 * submitted: its return ids follow from its id.  rayc__sched_submit pushes
 * it on a lock-free stack (rayc__handoff) and tries rt->mu once; if the
 * lock is busy, the holder records it (rayc__sched_drain_locked) when it
 * lets go of its last lock (common.h: rayc__locks_exit), so a submitter
 * never waits for the workers, and one holder records a whole burst in one
 * critical section.  Everything that looks an id up takes rt->mu with
 * rayc__rt_lock, which records what is pushed first, so a ref is found as
 * soon as rayc_call has returned it.  Order is kept: the stack is drained
 * oldest first, and a submission that takes the lock (ref arguments)
 * drains before recording its own task.  A worker's batch hands the
 * completion of a run over the same way when rt->mu is busy (the task
 * pushed with done_ctx set; execute.c), so whoever drains completes it. */
#include <stdlib.h>

#include "lineage/lineage.h"
#include "sched/sched.h"

/* A nested call the parent already made in an earlier run: hand out the
 * existing results instead of running it twice. */
static bool dedupe_locked(rayc__rt *rt, rayc__task *t) RAYC_REQUIRES(rt->mu)
{
	rayc__obj *o = rayc__obj_find_locked(rt, rayc__return_id(t->id, 0));

	if (o == NULL || o->task == NULL || o->task->nreturns != t->nreturns)
		return false;
	for (uint32_t i = 0; i < t->nreturns; i++)
		if (o->task->returns[i] == NULL)
			return false;
	for (uint32_t i = 0; i < t->nreturns; i++) {
		rayc__obj *r = o->task->returns[i];
		rayc__obj_ref_locked(r);
		atomic_fetch_add_explicit(&r->handles, 1, memory_order_relaxed);
		if (atomic_load(&r->state) == RAYC__OBJ_LOST)
			rayc__obj_reconstruct_locked(rt, r);
	}
	return true;
}

void rayc__task_record_locked(rayc__rt *rt, rayc__task *t)
{
	if (t->nested && dedupe_locked(rt, t)) {
		rayc__task_free(t);
		return;
	}
	for (uint32_t i = 0; i < t->nreturns; i++) {
		rayc__obj *o = rayc__obj_new_locked(rt, rayc__return_id(t->id, i));
		if (o == NULL)
			abort(); /* out of memory mid-submit */
		o->task = t;
		o->ret_idx = i;
		atomic_store_explicit(&o->handles, 1, memory_order_relaxed);
		/* release: rayc__obj_pin reads the id after this */
		atomic_store_explicit(&o->refcnt, 1, memory_order_release);
		t->returns[i] = o;
	}
	for (uint32_t i = 0; i < t->nargs; i++)
		if (t->args[i].ref != NULL)
			t->args[i].ref->lineage_cnt++;
	t->live_returns = t->nreturns;
	t->in_flight = true;
	rt->nlineage++;
	(void)rayc__task_resolve_args_locked(rt, t);
}

void rayc__sched_drain_locked(rayc__rt *rt)
{
	rayc__task *t = atomic_exchange(&rayc__handoff, NULL);
	rayc__task *oldest = NULL;

	if (atomic_load_explicit(&rayc__handoff_objs, memory_order_relaxed) !=
	    NULL)
		rayc__obj_drain_locked(rt);
	if (atomic_load_explicit(&rayc__handoff_kick, memory_order_relaxed) &&
	    atomic_exchange(&rayc__handoff_kick, false))
		rayc__sched_kick_locked(rt); /* a direct task queued */
	while (t != NULL) { /* newest first: reverse */
		rayc__task *next = t->q_next;
		t->q_next = oldest;
		oldest = t;
		t = next;
	}
	while (oldest != NULL) {
		t = oldest;
		oldest = t->q_next;
		t->q_next = NULL;
		if (oldest != NULL) {
			/* The reversal brought each task's first line in;
			 * recording reads the rest (id, argument and return
			 * arrays), another thread's writes: fetched while t
			 * is recorded. */
			__builtin_prefetch((char *)oldest + 64);
			__builtin_prefetch((char *)oldest + 128);
			__builtin_prefetch((char *)oldest + 192);
		}
		if (t->done_ctx != NULL) { /* a batch run done */
			rayc_ctx *ctx = t->done_ctx;
			t->done_ctx = NULL;
			rayc__sched_batch_complete_locked(rt, t, ctx);
		} else {
			rayc__task_record_locked(rt, t);
		}
	}
}

void rayc__sched_submit(rayc__rt *rt, rayc__task *t)
{
	void *head = atomic_load_explicit(&rayc__handoff, memory_order_relaxed);

	do
		t->q_next = head;
	while (!atomic_compare_exchange_weak(&rayc__handoff, &head, t));
	rayc__fence_store_load();
	if (rayc__mutex_trylock(&rt->mu)) {
		rayc__sched_drain_locked(rt);
		rayc__mutex_unlock(&rt->mu);
	}
	/* Else its holder drains when it lets go (rayc__locks_exit). */
}

/* The handoff hook: this thread let go of its last lock and tasks or
 * objects' last refs wait on the stacks. */
static void drain_hook(void)
{
	/* The acquire orders this after the push, and so after whatever
	 * the pusher saw: the runtime it pushed to, rayc__g, included. */
	if (!rayc__handoff_pending(memory_order_acquire))
		return;
	rayc__rt *rt = rayc__g;

	if (rt == NULL)
		return;
	while (rayc__handoff_pending(memory_order_seq_cst) &&
	       rayc__mutex_trylock(&rt->mu)) {
		rayc__sched_drain_locked(rt);
		rayc__mutex_unlock(&rt->mu);
	}
}

void rayc__sched_submit_init(void)
{
	rayc__set_handoff_hook(drain_hook);
}
