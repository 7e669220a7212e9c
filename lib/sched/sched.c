/* sched.c -- scheduling classes, ready queues, resource accounting and
 * the dispatch rule: a queued task runs as soon as a worker is free and
 * its class's demand fits the peer's available resources.
 *
 * Wake-ups.  A futex wake-up costs ~10 us on our VMs, so workers spin
 * (yielding) for rt->spin_ns before parking, and a submitter wakes a
 * worker only when one is idle and the new task fits.  A worker that
 * takes a task while more fitting work is queued wakes one more idle
 * worker (chained wake-ups), so a burst of submissions costs the
 * submitter one wake-up, not one per task.
 *
 * Fairness.  A worker takes the oldest queued task that fits.  A task
 * whose demand does not fit yet (2 CPUs while a stream of 1-CPU tasks
 * keeps one busy) would wait for ever if younger tasks kept taking what it
 * needs, so once younger tasks have passed it RAYC__STARVE_PASSES times,
 * nothing that needs a resource it lacks starts until it has run.
 */
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "sched/actor.h"
#include "sched/direct.h"
#include "sched/place.h"
#include "sched/sched.h"

#define RAYC__STARVE_PASSES 16

static bool fits(const rayc__rt *rt, const int64_t *demand)
	RAYC_REQUIRES(rt->mu)
{
	for (int i = 0; i < rt->nres; i++)
		if (demand[i] > 0 && rt->res_avail[i] < demand[i])
			return false;
	return true;
}

bool rayc__sched_feasible(const rayc__rt *rt, const int64_t *demand)
{
	if (!rayc__place_offers(rt->res_total, rt->nres))
		return false; /* a driver that keeps tasks off this process */
	for (int i = 0; i < RAYC__MAX_RES; i++)
		if (demand[i] > 0 && (i >= rt->nres || rt->res_total[i] < demand[i]))
			return false;
	return true;
}

rayc__sclass *rayc__sched_class_locked(rayc__rt *rt, const int64_t *demand)
{
	rayc__sclass *c = rt->last_class;

	if (c != NULL && memcmp(c->demand, demand, sizeof(c->demand)) == 0)
		return c;
	c = rayc__sched_class_ex_locked(rt, demand, false);
	if (c != NULL)
		rt->last_class = c;
	return c;
}

rayc__sclass *rayc__sched_class_ex_locked(rayc__rt *rt, const int64_t *demand,
                                          bool pinned)
{
	rayc__sclass *c;

	for (c = rt->classes; c != NULL; c = c->next)
		if (c->pinned == pinned &&
		    memcmp(c->demand, demand, sizeof(c->demand)) == 0)
			break;
	if (c == NULL) {
		c = aligned_alloc(_Alignof(rayc__sclass), sizeof(*c));
		if (c == NULL)
			return NULL;
		memset(c, 0, sizeof(*c));
		c->pinned = pinned;
		memcpy(c->demand, demand, sizeof(c->demand));
		c->cpu_only = true;
		for (int i = 1; i < RAYC__MAX_RES; i++)
			if (demand[i] != 0)
				c->cpu_only = false;
		/* Append (pick_locked serves the oldest task, not class);
		 * published for rayc__sched_class_find. */
		rayc__sclass **pp = &rt->classes;
		while (*pp != NULL)
			pp = &(*pp)->next;
		__atomic_store_n(pp, c, __ATOMIC_RELEASE);
	}
	return c;
}

rayc__sclass *rayc__sched_class_find(const rayc__rt *rt, const int64_t *demand)
{
	rayc__sclass *c = __atomic_load_n(&rt->classes, __ATOMIC_ACQUIRE);

	for (; c != NULL; c = __atomic_load_n(&c->next, __ATOMIC_ACQUIRE))
		if (!c->pinned &&
		    memcmp(c->demand, demand, sizeof(c->demand)) == 0)
			return c;
	return NULL;
}

static void acquire(rayc__rt *rt, const int64_t *d) RAYC_REQUIRES(rt->mu)
{
	for (int i = 0; i < rt->nres; i++)
		rt->res_avail[i] -= d[i];
}

static void release(rayc__rt *rt, const int64_t *d) RAYC_REQUIRES(rt->mu)
{
	for (int i = 0; i < rt->nres; i++)
		rt->res_avail[i] += d[i];
}

static void *worker_main(void *arg);

static int spawn_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu)
{
	rayc__worker *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return RAYC_ENOMEM;
	w->index = rt->nworkers;
	w->woken = true; /* counts as a pick on its way until it runs */
	rt->nwaking++;
	if (rayc__thread_start(&w->th, worker_main, w) != RAYC_OK) {
		rt->nwaking--;
		free(w);
		return RAYC_ESYS;
	}
	w->next_all = rt->workers;
	rt->workers = w;
	rt->nworkers++;
	return RAYC_OK;
}

/* The idle workers: a stack through next_idle, counted in rt->nidle and
 * for direct submitters (rayc__direct_idle_add). */
static void idle_push_locked(rayc__rt *rt, rayc__worker *w)
	RAYC_REQUIRES(rt->mu)
{
	w->idle = true;
	w->next_idle = rt->idle;
	rt->idle = w;
	rt->nidle++;
	rayc__direct_idle_add(rt, 1);
}

/* Takes w, idle, off the stack (at its top but for a worker whose wait
 * ran out: worker_main). */
static void idle_remove_locked(rayc__rt *rt, rayc__worker *w)
	RAYC_REQUIRES(rt->mu)
{
	rayc__worker **pp = &rt->idle;

	while (*pp != w)
		pp = &(*pp)->next_idle;
	*pp = w->next_idle;
	rt->nidle--;
	rayc__direct_idle_add(rt, -1);
	w->idle = false;
}

static void wake_one_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu)
{
	rayc__worker *w = rt->idle;

	idle_remove_locked(rt, w);
	w->woken = true;
	rt->nwaking++;
	rayc__event_set_after_unlock(&w->ev);
}

static bool competes(const rayc__rt *rt, const rayc__sclass *s,
                     const rayc__sclass *c) RAYC_REQUIRES(rt->mu);

/* Direct tasks wait (sched/direct.h), their demand fits now, and no
 * queued task they have passed too often needs what they would take
 * (see pick_locked). */
static bool direct_fits_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu)
{
	if (rt->dclass == NULL || !rayc__direct_pending(rt) ||
	    !fits(rt, rt->dclass->demand))
		return false;
	for (rayc__sclass *c = rt->classes; rt->queued != 0 && c != NULL;
	     c = c->next)
		if (c->q.head != NULL && c->passed >= RAYC__STARVE_PASSES &&
		    competes(rt, c, rt->dclass))
			return false;
	return true;
}

/* The class whose queue's head is the oldest queued task, or NULL. */
static rayc__sclass *oldest_queued_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu)
{
	rayc__sclass *oldest = NULL;

	for (rayc__sclass *c = rt->classes; rt->queued != 0 && c != NULL;
	     c = c->next)
		if (c->q.head != NULL &&
		    (oldest == NULL || c->q.head->qseq < oldest->q.head->qseq))
			oldest = c;
	return oldest;
}

/* A worker takes direct tasks: the oldest queued task, if it waits for
 * resources, is passed once more. */
static void direct_passes_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu)
{
	rayc__sclass *oldest = oldest_queued_locked(rt);

	if (oldest != NULL && !fits(rt, oldest->demand))
		oldest->passed++;
}

static bool any_fits_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu)
{
	if (direct_fits_locked(rt))
		return true;
	if (rt->queued == 0)
		return false;
	for (rayc__sclass *c = rt->classes; c != NULL; c = c->next)
		if (c->q.head != NULL && fits(rt, c->demand))
			return true;
	return false;
}

/* Makes sure someone will run queued work that fits now: an idle worker
 * if there is one, else a new thread unless a worker is on its way. */
static void kick_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu)
{
	if (rt->stopping || !any_fits_locked(rt))
		return;
	if (rt->idle != NULL)
		wake_one_locked(rt);
	else if (rt->nwaking == 0 && rt->nworkers < RAYC__MAX_THREADS)
		(void)spawn_locked(rt);
}

void rayc__sched_kick_locked(rayc__rt *rt)
{
	kick_locked(rt);
}

void rayc__sched_hold_locked(rayc__rt *rt, const int64_t *demand)
{
	acquire(rt, demand);
}

void rayc__sched_unhold_locked(rayc__rt *rt, const int64_t *demand)
{
	release(rt, demand);
	kick_locked(rt);
}

void rayc__sched_enqueue_locked(rayc__rt *rt, rayc__task *t)
{
	if (t->actor != NULL) {
		rayc__actor_route_locked(rt, t);
		return;
	}
	if (!t->sclass->pinned && rt->hooks != NULL && rt->hooks->place(rt, t))
		return;
	rayc__sched_enqueue_local_locked(rt, t);
}

static _Thread_local bool serving, served, in_served;
static _Thread_local const rayc__fn_entry *served_fn;
static _Thread_local void (*served_on_block)(void);
/* A connection's read (rayc__sched_hold_begin) or its runs
 * (_serve_held): whether tiny tasks queued wake no worker, and how many
 * did not; whether this thread runs them (rayc__sched_serve_more). */
static _Thread_local bool holding, serving_held;
static _Thread_local int held_n;
static void wake_all_waiters_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);
static rayc__task *pick_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);

/* Whether a thread that is no worker's may run t as a tiny task of a
 * read (or a worker as one of a run of calls): tiny, and its function
 * never blocked when run so. */
static bool servable(const rayc__task *t)
{
	return rayc__sched_tiny(t) &&
	       !atomic_load_explicit(&t->fn->blocked_served,
	                             memory_order_relaxed);
}

void rayc__sched_enqueue_local_locked(rayc__rt *rt, rayc__task *t)
{
	rayc__sclass *c = t->sclass;

	t->state = RAYC__TASK_QUEUED;
	t->qseq = rt->qseq++;
	rayc__tq_push(&c->q, t);
	if (rt->queued++ == 0)
		rayc__direct_yield(rt, true);
	if (rt->stopping || !fits(rt, c->demand))
		return;
	if (((serving && rayc__sched_quick_call(t)) ||
	     (holding && rayc__sched_tiny(t))) &&
	    !atomic_load_explicit(&t->fn->blocked_served,
	                          memory_order_relaxed)) {
		/* rayc__sched_serve_end_locked or _serve_held runs it */
		if (holding)
			held_n++;
		else
			served = true;
		return;
	}
	if (rt->idle != NULL)
		wake_one_locked(rt);
	else if (rt->nwaking == 0 && rt->nworkers < RAYC__MAX_THREADS &&
	         (c->demand[RAYC__RES_CPU] == 0 ||
	          rt->res_avail[RAYC__RES_CPU] >= c->demand[RAYC__RES_CPU]))
		/* Free CPU and nobody idle: some workers are blocked in
		 * rayc_get (or tasks need no CPU); add a thread. */
		(void)spawn_locked(rt);
}

void rayc__sched_serve_begin(void (*on_block)(void))
{
	serving = true;
	served = false;
	served_on_block = on_block;
}

void rayc__sched_serve_end_locked(rayc__rt *rt)
{
	serving = false;
	if (!served)
		return;
	served = false;
	rayc__task *t = pick_locked(rt);
	if (t != NULL && (!rayc__sched_quick_call(t) ||
	                  atomic_load_explicit(&t->fn->blocked_served,
	                                       memory_order_relaxed))) {
		/* Older work that is not quick: a worker's. */
		release(rt, t->sclass->demand);
		rayc__sched_requeue_front_locked(rt, t);
		t = NULL;
	}
	kick_locked(rt); /* whatever else is queued */
	if (t == NULL)
		return;
	int64_t demand[RAYC__MAX_RES];
	memcpy(demand, t->sclass->demand, sizeof(demand));
	in_served = true;
	served_fn = t->fn;
	rayc__sched_execute_locked(rt, t, demand[RAYC__RES_CPU], 0);
	in_served = false;
	release(rt, demand);
	kick_locked(rt);
}

void rayc__sched_hold_begin(void)
{
	holding = true;
	held_n = 0;
}

void rayc__sched_hold_note(const rayc__task *t)
{
	if (holding && servable(t))
		held_n++;
}

int rayc__sched_hold_end(void)
{
	holding = false;
	return held_n;
}

static _Atomic uint64_t served_runs; /* for the tests */

uint64_t rayc__test_served_runs(void)
{
	return atomic_load(&served_runs);
}

bool rayc__sched_serve_more(void)
{
	return serving_held;
}

/* Runs first (if not NULL: picked by the caller, its demand acquired)
 * and the oldest queued tiny tasks after it, n and as many as the runs
 * queue meanwhile, up to n + RAYC__SERVE_MORE more (rayc__sched_serve_held
 * says which), each released as it ends; their answers held until the
 * last (rayc__sched_batch_more). */
static void serve_locked(rayc__rt *rt, rayc__task *first, int n,
                         void (*on_block)(void)) RAYC_REQUIRES(rt->mu)
{
	/* What the runs queue (an actor's next call, a dependent task, a
	 * task they submit) is held too and may be run here, up to n + 64
	 * more. */
	holding = true;
	held_n = 0;
	serving_held = true;
	/* Each run is timed: one that turned slow is noted at once, so that
	 * its function is served no more. */
	rayc__sched_time_runs(true);
	for (int done = 0;; done++) {
		int more = held_n < n + RAYC__SERVE_MORE ? held_n
		                                         : n + RAYC__SERVE_MORE;
		if (done >= n + more)
			break;
		rayc__task *t = first != NULL ? first : pick_locked(rt);
		first = NULL;
		if (t == NULL)
			break;
		if (!servable(t)) {
			/* Older work, or longer: a worker's. */
			release(rt, t->sclass->demand);
			rayc__sched_requeue_front_locked(rt, t);
			break;
		}
		atomic_fetch_add_explicit(&served_runs, 1,
		                          memory_order_relaxed);
		int64_t demand[RAYC__MAX_RES];
		memcpy(demand, t->sclass->demand, sizeof(demand));
		in_served = true;
		served_fn = t->fn;
		served_on_block = on_block;
		rayc__sched_execute_locked(rt, t, demand[RAYC__RES_CPU], 0);
		bool blocked = !in_served; /* rayc__sched_block_locked */
		in_served = false;
		release(rt, demand);
		if (blocked)
			break;
	}
	rayc__sched_time_runs(false);
	holding = false;
	serving_held = false;
	rayc__sched_paused_locked(rt); /* answers held meanwhile go */
	kick_locked(rt); /* whatever is left: the workers' */
}

void rayc__sched_serve_held(rayc__rt *rt, int n, void (*on_block)(void))
{
	rayc__rt_lock(rt);
	serve_locked(rt, NULL, n, on_block);
	rayc__mutex_unlock(&rt->mu);
}

/* Whether a worker runs t as a reader serves a read (serve_locked): a
 * tiny call another peer made to an actor hosted here that runs one call
 * at a time, whose next call is then queued as it ends.  Run on, each
 * call's successor is run here instead of a wake-up of a worker for it,
 * and their answers go together instead of one write each (twenty-second
 * pass: with the calls of a deep mailbox handed from worker to worker,
 * workers wrote 220,000 times for 1_1_actor_calls_async_across_peers's
 * 500,000 calls, a write as each call ended).  Not a local caller's: nothing to write, and two
 * workers taking turns kept up with one caller better than one did. */
static bool serves_calls(const rayc__task *t)
{
	return t->foreign && t->akind == RAYC__AK_CALL && t->actor != NULL &&
	       t->actor->loc == 0 && t->actor->max_conc == 1 && servable(t);
}

void rayc__sched_wake_stop(rayc__rt *rt)
{
	rayc__mutex_lock(&rt->mu);
	/* Atomic: a batch reads it without the lock (execute.c). */
	__atomic_store_n(&rt->stopping, true, __ATOMIC_RELAXED);
	while (rt->idle != NULL)
		wake_one_locked(rt);
	wake_all_waiters_locked(rt);
	rayc__mutex_unlock(&rt->mu);
}

void rayc__sched_requeue_front_locked(rayc__rt *rt, rayc__task *t)
{
	t->state = RAYC__TASK_QUEUED;
	rayc__tq_push_front(&t->sclass->q, t);
	if (rt->queued++ == 0)
		rayc__direct_yield(rt, true);
}

void rayc__sched_dequeue_locked(rayc__rt *rt, rayc__task *t)
{
	if (t->sclass->q.head == t)
		t->sclass->passed = 0;
	rayc__tq_remove(&t->sclass->q, t);
	if (--rt->queued == 0)
		rayc__direct_yield(rt, false);
}

void rayc__sched_offer_locked(rayc__rt *rt,
                              int (*fn)(rayc__rt *rt, rayc__task *t,
                                        const int64_t *demand, void *arg),
                              void *arg)
{
	for (rayc__sclass *c = rt->classes; c != NULL; c = c->next) {
		if (c->pinned)
			continue;
		rayc__task *t = c->q.head;
		while (t != NULL) {
			rayc__task *next = t->q_next;
			int r = fn(rt, t, c->demand, arg);
			if (r == RAYC__OFFER_STOP)
				return;
			if (r == RAYC__OFFER_NEXT_CLASS)
				break;
			t = next;
		}
	}
}

/* True if c needs a resource the starving class s is short of now. */
static bool competes(const rayc__rt *rt, const rayc__sclass *s,
                     const rayc__sclass *c) RAYC_REQUIRES(rt->mu)
{
	for (int i = 0; i < rt->nres; i++)
		if (s->demand[i] > rt->res_avail[i] && c->demand[i] > 0)
			return true;
	return false;
}

/* The class whose head is oldest among those that fit now and, if
 * starving is set, do not compete with it. */
static rayc__sclass *oldest_fitting(rayc__rt *rt, const rayc__sclass *starving)
	RAYC_REQUIRES(rt->mu)
{
	rayc__sclass *best = NULL;

	for (rayc__sclass *c = rt->classes; c != NULL; c = c->next) {
		if (c->q.head == NULL || !fits(rt, c->demand) ||
		    (starving != NULL && competes(rt, starving, c)))
			continue;
		if (best == NULL || c->q.head->qseq < best->q.head->qseq)
			best = c;
	}
	return best;
}

static rayc__task *pick_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu)
{
	if (rt->queued == 0 || rt->stopping)
		return NULL;
	rayc__sclass *oldest = oldest_queued_locked(rt);
	rayc__sclass *c = oldest_fitting(rt, NULL);
	if (c == NULL)
		return NULL;
	if (c != oldest) {
		/* The oldest task waits for resources: younger ones may pass
		 * it only so often. */
		if (oldest->passed >= RAYC__STARVE_PASSES)
			c = oldest_fitting(rt, oldest);
		else
			oldest->passed++;
		if (c == NULL)
			return NULL;
	}
	rayc__task *t = c->q.head;
	rayc__sched_dequeue_locked(rt, t);
	acquire(rt, c->demand);
	t->state = RAYC__TASK_RUNNING;
	return t;
}

/* t, and after it up to RAYC__BATCH_MAX - 1 more quick tasks of its
 * class when every queued task is of that class and the queue holds
 * plenty for the other workers too (their share: the queue split among
 * all workers).  Returns how many are in b. */
static int take_more_locked(rayc__rt *rt, rayc__task *t, rayc__task **b)
	RAYC_REQUIRES(rt->mu)
{
	rayc__sclass *c = t->sclass;
	int n = 1;

	b[0] = t;
	if (!rayc__sched_quick(t) || c->q.n != rt->queued)
		return n;
	uint64_t share = c->q.n / (uint64_t)rt->nworkers;
	while (n < RAYC__BATCH_MAX && (uint64_t)n <= share &&
	       c->q.head != NULL && rayc__sched_quick(c->q.head)) {
		rayc__task *u = c->q.head;
		rayc__sched_dequeue_locked(rt, u);
		u->state = RAYC__TASK_RUNNING;
		b[n++] = u;
	}
	return n;
}

static void *worker_main(void *arg)
{
	rayc__worker *w = arg;
	rayc__rt *rt = rayc__g;

	rayc__mutex_lock(&rt->mu);
	while (!rt->stopping) {
		/* Woken workers and new threads count as picks on their way,
		 * so a burst of submissions does not spawn a thread per
		 * task; so does this one until it has picked: what it
		 * records from the hand-off below is queued while it is
		 * neither idle nor running, and must not pass for work no
		 * worker is free for (that spawned a third worker on two
		 * CPUs with one submitter). */
		if (!w->woken) {
			w->woken = true;
			rt->nwaking++;
		}
		rayc__direct_woke(rt);
		if (atomic_load_explicit(&rayc__handoff,
		                         memory_order_relaxed) != NULL)
			rayc__sched_drain_locked(rt);
		/* Direct tasks and the queues take turns. */
		bool direct = (++w->turn & 1) != 0 && direct_fits_locked(rt);
		rayc__task *t = direct ? NULL : pick_locked(rt);
		if (t == NULL && !direct)
			direct = direct_fits_locked(rt);
		w->woken = false;
		rt->nwaking--;
		if (direct) {
			int64_t demand[RAYC__MAX_RES];
			memcpy(demand, rt->dclass->demand, sizeof(demand));
			direct_passes_locked(rt);
			acquire(rt, demand);
			/* More than this one runs: queued tasks, or a backlog
			 * of direct ones (as a direct submitter judges it:
			 * waking a worker for each turn of this one would
			 * put three threads on two CPUs for tasks that one
			 * runs as fast as they come); and as the first turn
			 * starts, so that an idle worker parks again with a
			 * look at the queue every RAYC__DIRECT_POLL_NS (a
			 * turn that ran out stays counted: no wake-up then). */
			if (rt->queued != 0 || !rayc__direct_serving(rt) ||
			    rayc__direct_backlog(rt))
				kick_locked(rt);
			w->dhoard = rayc__direct_hoard();
			rayc__mutex_unlock(&rt->mu);
			rayc__direct_run(rt, demand[RAYC__RES_CPU]);
			rayc__mutex_lock(&rt->mu);
			w->dhoard = NULL;
			release(rt, demand);
			continue;
		}
		rayc__direct_left(rt);
		if (t != NULL) {
			rayc__task *more[RAYC__BATCH_MAX];
			int n = take_more_locked(rt, t, more);
			/* More work fits the resources left: wake a worker,
			 * or add a thread when none is idle or on its way
			 * (the others run tasks that need no CPU, or wait in
			 * rayc_get, or an actor's calls, which may wait for
			 * these).  A burst queued while wake-ups were on
			 * their way started no thread for what the woken
			 * did not take: a task needing a CPU waited behind
			 * tasks needing none, with every CPU free. */
			kick_locked(rt);
			int64_t demand[RAYC__MAX_RES];
			memcpy(demand, t->sclass->demand, sizeof(demand));
			if (n > 1) {
				rayc__sched_run_batch_locked(
					rt, w, more, n, demand[RAYC__RES_CPU]);
			} else if (serves_calls(t)) {
				serve_locked(rt, t, 1, NULL); /* releases */
				continue;
			} else {
				rayc__sched_execute_locked(
					rt, t, demand[RAYC__RES_CPU], 0);
			}
			release(rt, demand);
			continue;
		}
		/* Nothing queued: the runs another worker's batch has not
		 * started are taken back first, and those that ended are
		 * completed. */
		if (rayc__sched_batch_steal_locked(rt, w))
			continue;
		bool stole = false;
		for (rayc__worker *o = rt->workers; o != NULL; o = o->next_all)
			if (o != w)
				stole |= rayc__direct_steal_locked(rt, o->dhoard);
		if (stole)
			continue;
		/* Counted idle, then the direct queue looked at: a direct
		 * submitter queues, then reads the count (direct.c). */
		idle_push_locked(rt, w);
		if (direct_fits_locked(rt)) {
			idle_remove_locked(rt, w);
			continue;
		}
		/* While a worker runs direct tasks, a submitter wakes another
		 * only when none does or a backlog builds (direct.c): if the
		 * one that does is held by a long run, tasks queued behind
		 * it would wait for it with this worker idle.  So an idle
		 * worker looks again every RAYC__DIRECT_POLL_NS meanwhile,
		 * less often while they go on (below; and a thread that
		 * waits for one of them wakes a worker as it adopts it:
		 * direct.c). */
		uint64_t seen = rayc__direct_head(rt);
		for (int64_t poll = RAYC__DIRECT_POLL_NS;;) {
			int64_t until = rayc__direct_serving(rt)
			                        ? rayc__now_ns() + poll
			                        : -1;
			rayc__mutex_unlock(&rt->mu);
			bool set = rayc__event_wait_learn(&w->ev, until,
			                                  rt->spin_ns, &w->spin);
			rayc__mutex_lock(&rt->mu);
			/* While the worker running them gets on with them
			 * (the queue's head moved since the last look), this
			 * one stays parked: waking it would put a third
			 * thread on two CPUs beside a submitter and a worker
			 * keeping up with it.  It looks less often meanwhile,
			 * up to every RAYC__DIRECT_POLL_MAX_NS: each look is
			 * a wake-up (a thousand a second cost a submitter of
			 * empty tasks 10-20%). */
			if (set || until < 0 || !w->idle || rt->stopping ||
			    rt->queued != 0 || !rayc__direct_moved(rt, &seen))
				break;
			if (poll < RAYC__DIRECT_POLL_MAX_NS)
				poll *= 2;
		}
		/* Still idle: nobody took it off the list, its time ran out
		 * (or the event was set by a wake-up that came after its
		 * last wait ran out, which took it off the list then: its
		 * set outlived that wait).  Off the list now, or the next
		 * push would make the list a cycle. */
		if (w->idle)
			idle_remove_locked(rt, w);
	}
	rayc__direct_left(rt);
	rayc__mutex_unlock(&rt->mu);
	return NULL;
}

int rayc__sched_start(rayc__rt *rt, int nworkers)
{
	int rc = RAYC_OK;

	rt->nbase = nworkers;
	rayc__mutex_lock(&rt->mu);
	for (int i = 0; i < nworkers && rc == RAYC_OK; i++)
		rc = spawn_locked(rt);
	rayc__mutex_unlock(&rt->mu);
	return rc;
}

/* Wakes every thread waiting on an object so it sees rt->stopping. */
static void wake_all_waiters_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu)
{
	rayc__obj *o;

	RAYC__IDTAB_EACH(&rt->objs, i, o) {
		for (rayc__wnode *n = o->waiters; n != NULL; n = n->next)
			rayc__event_set(&n->w->ev);
	}
}

void rayc__sched_stop(rayc__rt *rt)
{
	rayc__sched_wake_stop(rt);
	rayc__mutex_lock(&rt->mu);
	rayc__worker *all = rt->workers;
	rt->workers = NULL;
	rayc__mutex_unlock(&rt->mu);
	/* Threads spawned while we join (by blocked tasks) are on the list
	 * again; loop until it stays empty. */
	while (all != NULL) {
		while (all != NULL) {
			rayc__worker *next = all->next_all;
			rayc__thread_join(&all->th);
			free(all);
			all = next;
		}
		rayc__mutex_lock(&rt->mu);
		while (rt->idle != NULL)
			wake_one_locked(rt);
		wake_all_waiters_locked(rt);
		all = rt->workers;
		rt->workers = NULL;
		rayc__mutex_unlock(&rt->mu);
	}
	rayc__mutex_lock(&rt->mu);
	rt->nworkers = 0;
	rayc__mutex_unlock(&rt->mu);
}

void rayc__sched_block_locked(rayc__rt *rt, rayc_ctx *ctx)
{
	if (in_served) {
		/* A task this thread took on itself (serving) waits: the
		 * thread is not free again until it ends. */
		in_served = false;
		/* The registry's entry; only this field changes. */
		atomic_store_explicit(
			(_Atomic bool *)&served_fn->blocked_served, true,
			memory_order_relaxed);
		if (served_on_block != NULL)
			served_on_block();
		serving_held = false; /* the rest: the workers' */
		holding = false;
		rayc__sched_paused_locked(rt);
	}
	rayc__sched_batch_return_locked(rt);
	rayc__direct_return(rt);
	rt->res_avail[RAYC__RES_CPU] += ctx->held_cpu;
	kick_locked(rt);
}

void rayc__sched_unblock_locked(rayc__rt *rt, rayc_ctx *ctx)
{
	rayc__direct_unblocked(rt);
	rt->res_avail[RAYC__RES_CPU] -= ctx->held_cpu;
}

/* The queued task that o waits on, directly or through arguments of a
 * task still waiting for them (bounded search). */
static rayc__task *queued_producer(rayc__obj *o, int depth)
{
	rayc__task *t = o->task;

	if (t == NULL || depth > 8)
		return NULL;
	if (t->state == RAYC__TASK_QUEUED)
		return t;
	if (t->state != RAYC__TASK_PENDING_ARGS)
		return NULL;
	for (uint32_t i = 0; i < t->nargs; i++)
		if (t->args[i].waiting) {
			rayc__task *q = queued_producer(t->args[i].ref,
			                                depth + 1);
			if (q != NULL)
				return q;
		}
	return NULL;
}

bool rayc__sched_try_inline_locked(rayc__rt *rt, rayc_ctx *ctx, rayc__obj *o)
{
	rayc__task *t = queued_producer(o, 0);

	if (t == NULL || rt->stopping || !t->sclass->cpu_only ||
	    ctx->inline_depth >= RAYC__INLINE_DEPTH ||
	    t->sclass->demand[RAYC__RES_CPU] > ctx->held_cpu)
		return false;
	rayc__sched_dequeue_locked(rt, t);
	t->state = RAYC__TASK_RUNNING;
	/* It runs on the CPU this task already holds. */
	rayc__sched_execute_locked(rt, t, t->sclass->demand[RAYC__RES_CPU],
	                           ctx->inline_depth + 1);
	return true;
}

void rayc__sched_destroy_locked(rayc__rt *rt)
{
	rayc__sclass *c = rt->classes;

	while (c != NULL) {
		rayc__sclass *n = c->next;
		free(c);
		c = n;
	}
	rt->classes = rt->last_class = NULL;
	rt->queued = 0;
}
