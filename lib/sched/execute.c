/* execute.c -- running one task on the calling thread and completing it:
 * sealing returns, failing them, or re-queueing the task for a retry; an
 * actor's constructor and destructor runs report to sched/actor.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "sched/actor.h"
#include "sched/sched.h"
#include "testing.h"

_Thread_local rayc_ctx *rayc__cur;

static void ret_free(rayc__rt *rt, rayc__ret *r)
{
	if (r->block != NULL)
		rayc__store_free(rt->store, r->block);
	else if (r->data != NULL && r->data != r->buf)
		free(r->data);
	memset(r, 0, sizeof(*r));
}

/* True if every ref argument still has its data (an object can be lost
 * between queueing and running, e.g. by the test hook).  If not, the task
 * goes back to waiting and the lost argument is rebuilt. */
static bool args_present_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu)
{
	bool ok = true;

	for (uint32_t i = 0; i < t->nargs; i++) {
		rayc__obj *o = t->args[i].ref;
		if (o == NULL)
			continue;
		int st = atomic_load(&o->state);
		if (st == RAYC__OBJ_REMOTE)
			rt->hooks->fetch(rt, o); /* bytes are elsewhere */
		if (st != RAYC__OBJ_READY)
			ok = false;
	}
	if (!ok)
		(void)rayc__task_resolve_args_locked(rt, t);
	return ok;
}

static void complete_locked(rayc__rt *rt, rayc__task *t, rayc_ctx *ctx)
	RAYC_REQUIRES(rt->mu)
{
	if (t->akind == RAYC__AK_FINI) {
		rayc__actor_fini_done_locked(rt, t);
		return;
	}
	if (t->akind == RAYC__AK_CTOR) /* fails its return itself */
		rayc__actor_ctor_done_locked(rt, t, !ctx->failed, ctx->errmsg,
		                             0);
	if (ctx->failed) {
		for (uint32_t i = 0; i < t->nreturns; i++)
			ret_free(rt, &ctx->rets[i]);
		if (t->retry_exceptions &&
		    (t->max_retries < 0 || t->attempt < t->max_retries) &&
		    !rt->stopping) {
			t->attempt++;
			t->child_counter = 0;
			atomic_fetch_add(&rt->n_retried, 1);
			rayc__log(RAYC_LOG_INFO, "RAYC-TASK-RETRY",
			          "retrying %s (attempt %d): %s", t->fn->name,
			          t->attempt, ctx->errmsg);
			rayc__sched_enqueue_locked(rt, t);
			return;
		}
		atomic_fetch_add(&rt->n_failed, 1);
		const char *msg = ctx->errmsg != NULL ? ctx->errmsg
		                                      : "task failed";
		for (uint32_t i = 0; i < t->nreturns; i++)
			if (t->returns[i] != NULL)
				rayc__obj_fail_locked(rt, t->returns[i],
				                      RAYC_ETASK, msg);
	} else {
		for (uint32_t i = 0; i < t->nreturns; i++) {
			rayc__ret *r = &ctx->rets[i];
			if (!r->set) {
				r->type = RAYC_TYPE_BYTES;
				r->len = 0;
				r->data = r->buf;
			}
			if (t->returns[i] != NULL)
				rayc__obj_seal_locked(rt, t->returns[i], r);
			else
				ret_free(rt, r);
		}
	}
	rayc__task_done_locked(rt, t);
}

/* Sets ctx up to run t.  False if t cannot run now: an argument went
 * missing (t waits for it again), or no memory for its returns (they
 * failed and t is done). */
static bool prepare_locked(rayc__rt *rt, rayc__task *t, rayc_ctx *ctx,
                           int64_t cpu, int depth) RAYC_REQUIRES(rt->mu)
{
	if (!args_present_locked(rt, t))
		return false;
	memset(ctx, 0, sizeof(*ctx));
	ctx->task = t;
	ctx->held_cpu = cpu;
	ctx->inline_depth = depth;
	ctx->rets = &ctx->ret0;
	if (t->nreturns > 1) {
		ctx->rets = rayc__fault(RAYC__FAULT_TASK_RETURNS)
		                    ? NULL
		                    : calloc(t->nreturns, sizeof(rayc__ret));
		if (ctx->rets == NULL) {
			/* Every return fails: one left pending would be
			 * waited on for ever. */
			char msg[160];
			snprintf(msg, sizeof(msg), "task %s: out of memory for "
			         "its %u returns", t->fn->name, t->nreturns);
			for (uint32_t i = 0; i < t->nreturns; i++)
				if (t->returns[i] != NULL)
					rayc__obj_fail_locked(rt, t->returns[i],
					                      RAYC_ENOMEM, msg);
			atomic_fetch_add(&rt->n_failed, 1);
			rayc__task_done_locked(rt, t);
			return false;
		}
	}
	return true;
}

/* Runs t's function, without rt->mu. */
static void run(rayc__rt *rt, rayc__task *t, rayc_ctx *ctx)
{
	rayc_ctx *prev = rayc__cur;

	rayc__cur = ctx;
	t->fn->fn(ctx);
	rayc__cur = prev;
	atomic_fetch_add_explicit(&rt->n_executed, 1, memory_order_relaxed);
}

static void unprepare(rayc_ctx *ctx)
{
	if (ctx->rets != &ctx->ret0)
		free(ctx->rets);
	free(ctx->errmsg);
}

static void finish_locked(rayc__rt *rt, rayc__task *t, rayc_ctx *ctx)
	RAYC_REQUIRES(rt->mu)
{
	complete_locked(rt, t, ctx);
	unprepare(ctx);
}

/* A run this long is noted at once, whatever the sampling (its function
 * leaves the batches and the readers' runs). */
#define TURNED_SLOW_NS (RAYC__QUICK_NS * 4)

static _Thread_local bool time_all;

void rayc__sched_time_runs(bool all)
{
	time_all = all;
}

/* Folds one run's duration into its function's average (races between
 * workers lose an update, which an average can afford). */
static void note_run(const rayc__fn_entry *fn, int64_t ns)
{
	/* The entry is the registry's; only this field changes. */
	_Atomic uint32_t *avg = (_Atomic uint32_t *)&fn->run_ns;
	uint32_t d = ns > UINT32_MAX / 8 ? UINT32_MAX / 8 : (uint32_t)ns;
	uint32_t old = atomic_load_explicit(avg, memory_order_relaxed);

	if (d == 0)
		d = 1;
	atomic_store_explicit(avg, old == 0 ? d : (old * 7 + d) / 8,
	                      memory_order_relaxed);
}

void rayc__sched_execute_locked(rayc__rt *rt, rayc__task *t, int64_t cpu,
                                int depth)
{
	rayc_ctx ctx;

	if (!prepare_locked(rt, t, &ctx, cpu, depth))
		return;
	rayc__mutex_unlock(&rt->mu);
	rayc__sched_run_timed(rt, t, &ctx);
	rayc__mutex_lock(&rt->mu);
	finish_locked(rt, t, &ctx);
}

void rayc__sched_run_timed(rayc__rt *rt, rayc__task *t, rayc_ctx *ctx)
{
	/* One run in eight is timed (two clock reads are a few percent of
	 * a synchronous round trip), and every run of a function not timed
	 * yet; every one while time_all is set (a run of a connection's
	 * reader: noted if it turned slow). */
	static _Thread_local unsigned tick;
	bool sampled = (++tick & 7) == 0 ||
	               atomic_load_explicit(&t->fn->run_ns,
	                                    memory_order_relaxed) == 0;
	bool timed = sampled || time_all;
	int64_t t0 = timed ? rayc__now_ns() : 0;
	run(rt, t, ctx);
	if (timed) {
		int64_t d = rayc__now_ns() - t0;
		if (sampled || d >= TURNED_SLOW_NS)
			note_run(t->fn, d);
	}
}

/* ------------------------------------------------------------------ */
/* Batches                                                              */
/* ------------------------------------------------------------------ */
/* A worker that finds many quick tasks of one class queued takes several
 * under one hold of rt->mu, so that it does not meet the submitter and
 * the other workers on the lock for every one (issue 10).  Only functions
 * whose runs took under RAYC__QUICK_NS so far join a batch.  The runs'
 * completions (sealing their returns) wait to be done together, under one
 * more hold, when the batch ends.  Nobody waits for that:
 *   - a run whose results someone waits for hands the batch's ended runs
 *     over as it ends, as a submission is (done at once if rt->mu is
 *     free, else pushed on rayc__handoff with done_ctx set for its
 *     holder): one whose returns a thread in rayc_get or rayc_wait or
 *     a task waiting for its arguments waits for (not a task another
 *     peer owns: its answer waits for the batch's end anyway, see
 *     waited_for_locked).  The batch marks those
 *     when it starts (bits of `watch`); a waiter that comes later marks
 *     the run itself (rayc__sched_watch_locked, under rt->mu) and then
 *     completes the runs that have ended in every batch
 *     (rayc__sched_batch_finish_locked).  A run publishes its end before
 *     it reads its mark, so either the waiter sees the run ended or the
 *     run sees the mark.  (The marks live in the batch, which outlives
 *     its runs: once a run is published, another thread may complete it
 *     and free its spec.);
 *   - a thread about to report an object not ready (rayc_get or rayc_wait
 *     with no time left) completes the ended runs first, and so does an
 *     idle worker before it parks;
 *   - else, while runs keep ending, completions wait at most
 *     RAYC__DEFER_NS after the oldest of them ended (checked as each run
 *     ends).  A run that turns slow holds those before it, with nobody
 *     waiting for them, until it ends or the mesh loop's next tick
 *     (lib/net/mesh_life.c, which completes them): their arguments'
 *     holds and the memory of returns already released go with their
 *     completion;
 *   - the runs not started stay takeable: an idle worker takes them back
 *     to the queue (rayc__sched_batch_steal_locked), and a run that blocks
 *     in rayc_get gives them back itself (rayc__sched_block_locked calls
 *     rayc__sched_batch_return_locked): one may be what it waits for.
 * Two words settle who does what.  claim: the owner starts run `next` by
 * moving next up, a taker ends the batch at `next` by moving n down to
 * it.  done: the owner ends run `fin` by moving fin up; whoever completes
 * the runs [comp, fin) first moves comp up to fin, and does so under
 * rt->mu or hands them to its holder (the owner, when handing over). */
typedef struct batch {
	rayc__task **t;
	rayc_ctx *ctx;
	uint32_t m; /* runs in t */
	_Atomic uint32_t claim; /* runs [next, n) not started: next | n << 16 */
	_Atomic uint32_t done;  /* ended, not completed: comp | fin << 16 */
	_Atomic uint32_t watch; /* runs whose results are waited for (bits) */
} batch;
static _Thread_local batch *cur_batch;
static _Atomic uint64_t batched_runs; /* for the tests */
static _Atomic uint32_t quick_ns = RAYC__QUICK_NS, tiny_ns = RAYC__TINY_NS;

uint64_t rayc__test_batched_runs(void)
{
	return atomic_load(&batched_runs);
}

bool rayc__sched_batch_more(void)
{
	batch *b = cur_batch;

	if (b == NULL)
		return rayc__sched_serve_more();
	uint32_t v = atomic_load_explicit(&b->claim, memory_order_relaxed);
	return (v & 0xffff) < (v >> 16);
}

void rayc__sched_paused_locked(rayc__rt *rt)
{
	if (rt->hooks != NULL && rt->hooks->batch_paused != NULL)
		rt->hooks->batch_paused(rt);
}

void rayc__test_set_quick_ns(uint32_t ns)
{
	atomic_store(&quick_ns, ns);
	/* In proportion (a sanitizer's build runs everything slower). */
	atomic_store(&tiny_ns, (uint32_t)((uint64_t)ns * RAYC__TINY_NS /
	                                  RAYC__QUICK_NS));
}

/* pred(rt, ref's entry) under rt->mu; false if there is none. */
static bool test_obj(rayc_ref ref,
                     bool (*pred)(rayc__rt *rt, const rayc__obj *o))
{
	rayc__rt *rt = rayc__g;
	bool r = false;

	if (rt == NULL)
		return false;
	rayc__mutex_lock(&rt->mu);
	const rayc__obj *o = rayc__obj_find_locked(rt, ref.id);
	if (o != NULL)
		r = pred(rt, o);
	rayc__mutex_unlock(&rt->mu);
	return r;
}

static bool is_ready(rayc__rt *rt, const rayc__obj *o)
{
	(void)rt;
	return atomic_load(&o->state) == RAYC__OBJ_READY;
}

static bool is_waited_for(rayc__rt *rt, const rayc__obj *o)
{
	(void)rt;
	return o->waiters != NULL || o->deps != NULL;
}

static bool run_ended(rayc__rt *rt, const rayc__obj *o)
{
	for (rayc__worker *w = rt->workers; o->task != NULL && w != NULL;
	     w = w->next_all) {
		batch *b = w->batch;
		if (b == NULL)
			continue;
		uint32_t fin = atomic_load(&b->done) >> 16;
		for (uint32_t k = 0; k < fin && k < b->m; k++)
			if (b->t[k] == o->task)
				return true;
	}
	return false;
}

bool rayc__test_ready(rayc_ref ref)
{
	return test_obj(ref, is_ready);
}

bool rayc__test_waited_for(rayc_ref ref)
{
	return test_obj(ref, is_waited_for);
}

bool rayc__test_run_ended(rayc_ref ref)
{
	return test_obj(ref, run_ended);
}

/* The average run of t's function; 0 if not timed yet, or if t is an
 * actor's and calls is false (an actor's method call if it is true). */
static uint32_t run_ns_of(const rayc__task *t, bool calls)
{
	bool plain = t->akind == RAYC__AK_NONE && t->actor == NULL;
	bool call = calls && t->akind == RAYC__AK_CALL && t->actor != NULL;

	if (t->fn == NULL || (!plain && !call))
		return 0;
	return atomic_load_explicit(&t->fn->run_ns, memory_order_relaxed);
}

/* Whether t's runs (run_ns_of) were timed and averaged under *bound. */
static bool runs_under(const rayc__task *t, bool calls,
                       const _Atomic uint32_t *bound)
{
	uint32_t ns = run_ns_of(t, calls);

	return ns != 0 && ns < atomic_load_explicit(bound, memory_order_relaxed);
}

bool rayc__sched_quick(const rayc__task *t)
{
	return runs_under(t, false, &quick_ns);
}

bool rayc__sched_quick_call(const rayc__task *t)
{
	return runs_under(t, true, &quick_ns);
}

bool rayc__sched_tiny(const rayc__task *t)
{
	return runs_under(t, true, &tiny_ns);
}

void rayc__sched_batch_complete_locked(rayc__rt *rt, rayc__task *t,
                                       rayc_ctx *ctx)
{
	finish_locked(rt, t, ctx);
}

/* True if someone here waits for t's results: a thread in rayc_get or
 * rayc_wait, or a task for its argument.  Under rt->mu.  Not another
 * peer owning t: its answer waits corked for the batch's end anyway
 * (net: xrec.c, hold_back), so such a run is completed with the others
 * (at the batch's end or pause, RAYC__DEFER_NS after the oldest ended,
 * or at the mesh loop's tick if a run turned slow) instead of handed
 * over alone: a trylock of rt->mu per task, failing while the reader of
 * its connection holds it, then a hand-off (4% of the CPU per task of a
 * burst of remote tasks, docs/benchmarks.md, sixteenth pass). */
static bool waited_for_locked(const rayc__task *t)
{
	for (uint32_t i = 0; i < t->nreturns; i++) {
		const rayc__obj *o = t->returns[i];
		if (o != NULL && (o->waiters != NULL || o->deps != NULL))
			return true;
	}
	return false;
}

void rayc__sched_watch_locked(rayc__rt *rt, rayc__obj *o)
{
	rayc__task *t = o->task;

	if (t == NULL || t->state != RAYC__TASK_RUNNING)
		return;
	for (rayc__worker *w = rt->workers; w != NULL; w = w->next_all) {
		batch *b = w->batch;
		if (b == NULL)
			continue;
		for (uint32_t k = 0; k < b->m; k++)
			if (b->t[k] == t)
				atomic_fetch_or(&b->watch, 1u << k);
	}
}

/* Empties the range [lo, hi) packed in *word (lo | hi << 16) and says
 * what it held; false if it was empty.  up: lo moves up to hi (ended runs
 * taken for completion); else hi moves down to lo (runs not started taken
 * back). */
static bool take_range(_Atomic uint32_t *word, bool up, uint32_t *lo,
                       uint32_t *hi)
{
	uint32_t v = atomic_load(word), l, h;

	do {
		l = v & 0xffff;
		h = v >> 16;
		if (l >= h)
			return false;
	} while (!atomic_compare_exchange_weak(word, &v,
	                                       up ? h | (h << 16)
	                                          : l | (l << 16)));
	*lo = l;
	*hi = h;
	return true;
}

/* Takes the runs of b that ended and are not completed: [*from, *to). */
static bool take_ended(batch *b, uint32_t *from, uint32_t *to)
{
	return take_range(&b->done, true, from, to);
}

static bool finish_ended_locked(rayc__rt *rt, batch *b) RAYC_REQUIRES(rt->mu)
{
	uint32_t i, to;

	if (!take_ended(b, &i, &to))
		return false;
	for (; i < to; i++)
		finish_locked(rt, b->t[i], &b->ctx[i]);
	return true;
}

bool rayc__sched_batch_finish_locked(rayc__rt *rt)
{
	bool any = false;

	/* A batch is on its worker from its start to its end, both under
	 * rt->mu: the one read here lives while we hold it. */
	for (rayc__worker *w = rt->workers; w != NULL; w = w->next_all)
		if (w->batch != NULL)
			any |= finish_ended_locked(rt, w->batch);
	return any;
}

/* Gives the runs of b not started back to the head of the queue. */
static bool give_back_locked(rayc__rt *rt, batch *b) RAYC_REQUIRES(rt->mu)
{
	uint32_t next, n;

	if (!take_range(&b->claim, false, &next, &n))
		return false;
	for (uint32_t i = n; i-- > next;) { /* oldest ends first */
		unprepare(&b->ctx[i]);
		rayc__sched_requeue_front_locked(rt, b->t[i]);
	}
	return true;
}

void rayc__sched_batch_return_locked(rayc__rt *rt)
{
	if (cur_batch == NULL)
		return;
	/* The runs before this one ended: those handed over and still on
	 * the stack, and those not handed over, are completed now. */
	rayc__sched_drain_locked(rt);
	(void)finish_ended_locked(rt, cur_batch);
	(void)give_back_locked(rt, cur_batch);
	rayc__sched_paused_locked(rt);
}

bool rayc__sched_batch_steal_locked(rayc__rt *rt, rayc__worker *self)
{
	bool any = false;

	for (rayc__worker *w = rt->workers; w != NULL; w = w->next_all)
		if (w != self && w->batch != NULL) {
			any |= finish_ended_locked(rt, w->batch);
			any |= give_back_locked(rt, w->batch);
		}
	return any;
}

/* The owner hands the runs of b that ended over: completed now if rt->mu
 * is free, else by its holder. */
static void hand_over(rayc__rt *rt, batch *b)
{
	uint32_t i, to;

	if (!take_ended(b, &i, &to))
		return;
	if (rayc__mutex_trylock(&rt->mu)) {
		rayc__sched_drain_locked(rt);
		for (; i < to; i++)
			finish_locked(rt, b->t[i], &b->ctx[i]);
		rayc__mutex_unlock(&rt->mu);
		return;
	}
	for (; i < to; i++) {
		b->t[i]->done_ctx = &b->ctx[i];
		rayc__sched_submit(rt, b->t[i]);
	}
}

void rayc__sched_run_batch_locked(rayc__rt *rt, rayc__worker *w,
                                  rayc__task **tasks, int n, int64_t cpu)
{
	rayc_ctx ctx[RAYC__BATCH_MAX];
	rayc__task *ready[RAYC__BATCH_MAX];
	batch b = { .t = ready, .ctx = ctx };
	uint32_t m = 0;

	for (int i = 0; i < n && i < RAYC__BATCH_MAX; i++)
		if (prepare_locked(rt, tasks[i], &ctx[m], cpu, 0))
			ready[m++] = tasks[i];
	uint32_t watch = 0;
	/* The function whose average the batch's mean goes to, if every
	 * run is of it (else each run is noted as it ends). */
	const rayc__fn_entry *fn = m > 0 ? ready[0]->fn : NULL;
	for (uint32_t k = 0; k < m; k++) {
		if (waited_for_locked(ready[k]))
			watch |= 1u << k;
		if (ready[k]->fn != fn)
			fn = NULL;
	}
	b.m = m;
	atomic_init(&b.claim, m << 16);
	atomic_init(&b.done, 0);
	atomic_init(&b.watch, watch);
	cur_batch = &b;
	w->batch = &b;
	atomic_fetch_add_explicit(&batched_runs, m, memory_order_relaxed);
	rayc__mutex_unlock(&rt->mu);
	int64_t start = rayc__now_ns(), t0 = start, oldest = -1;
	uint32_t ran = 0;
	for (;;) {
		/* Shutting down: no new run starts (a lone task's worker
		 * finishes only the one it runs); the rest go back. */
		if (__atomic_load_n(&rt->stopping, __ATOMIC_RELAXED))
			break;
		uint32_t v = atomic_load(&b.claim), i;
		do {
			i = v & 0xffff;
			if (i >= v >> 16)
				goto out;
		} while (!atomic_compare_exchange_weak(&b.claim, &v, v + 1));
		rayc__task *t = ready[i];
		run(rt, t, &ctx[i]);
		int64_t t1 = rayc__now_ns();
		ran++;
		/* A run that turned slow is noted at once, so that the
		 * function leaves the batches; else once, the batch's
		 * mean (the average is a line every worker reads). */
		if (fn == NULL || t1 - t0 >= TURNED_SLOW_NS)
			note_run(t->fn, t1 - t0);
		t0 = t1;
		/* Ended (seq_cst, before the marks are read: see above);
		 * from here on another thread may complete it. */
		atomic_fetch_add(&b.done, 1u << 16);
		if (oldest < 0)
			oldest = t1;
		if ((atomic_load(&b.watch) & (1u << i)) != 0 ||
		    t1 - oldest >= RAYC__DEFER_NS) {
			hand_over(rt, &b);
			oldest = -1;
		}
	}
out:
	if (fn != NULL && ran > 0) /* not ready[0]->fn: it may be gone */
		note_run(fn, (rayc__now_ns() - start) / ran);
	/* Every completion handed over was done under rt->mu, by a drain
	 * that has ended (this one, or one before it took the lock), and
	 * so was every one another thread took: ctx may go. */
	rayc__rt_lock(rt);
	(void)finish_ended_locked(rt, &b);
	(void)give_back_locked(rt, &b); /* when shutting down */
	cur_batch = NULL;
	w->batch = NULL;
	rayc__sched_paused_locked(rt);
}
