/* test_direct.c -- direct tasks (lib/sched/direct.h): plain tasks of a
 * peer with no mesh that never take rt->mu, and everything that takes
 * one into the object table (adoption) while it is queued, running, or
 * done: a waiter, a dependent task, rayc_wait, rayc_ref_dup, a failure
 * and its retry, a return too big to be inline, a lost object, a ring
 * slot already taken, and shutdown with direct tasks left; and their
 * records: one adopted kept while it lives, records growing with the
 * tasks in flight, arguments past a record's room, and fewer records
 * where address space is short. */
#include <pthread.h>
#include <stdbool.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "helpers.h"
#include "sched/direct.h"
#include "testing.h"

static atomic_int gate_open;
static atomic_int flaky_runs;

static void d_ident(rayc_ctx *c)
{
	int64_t a = 0;
	rayc_arg_i64(c, 0, &a);
	rayc_return_i64(c, 0, a);
}
RAYC_REMOTE(d_ident)

static void d_gated(rayc_ctx *c)
{
	int64_t a = 0;
	rayc_arg_i64(c, 0, &a);
	while (!atomic_load(&gate_open))
		sched_yield();
	rayc_return_i64(c, 0, a);
}
RAYC_REMOTE(d_gated)

static void d_add(rayc_ctx *c)
{
	int64_t a = 0, b = 0;
	rayc_arg_i64(c, 0, &a);
	rayc_arg_i64(c, 1, &b);
	rayc_return_i64(c, 0, a + b);
}
RAYC_REMOTE(d_add)

/* Fails its first run. */
static void d_flaky(rayc_ctx *c)
{
	if (atomic_fetch_add(&flaky_runs, 1) == 0) {
		rayc_fail(c, "first run fails");
		return;
	}
	rayc_return_i64(c, 0, 42);
}
RAYC_REMOTE(d_flaky)

static void d_fails(rayc_ctx *c)
{
	rayc_fail(c, "always fails");
}
RAYC_REMOTE(d_fails)

/* n bytes of (i & 0xff), n its argument: over the inline 16 bytes. */
static void d_bytes(rayc_ctx *c)
{
	int64_t n = 0;
	rayc_arg_i64(c, 0, &n);
	unsigned char *p = malloc((size_t)n);
	for (int64_t i = 0; i < n; i++)
		p[i] = (unsigned char)(i & 0xff);
	rayc_return_bytes(c, 0, p, (size_t)n);
	free(p);
}
RAYC_REMOTE(d_bytes)

TestSuite(direct, .init = rt_init2, .fini = rt_stop, .timeout = 120);

static bool is_direct(rayc_ref r)
{
	return rayc__test_direct_phase(r) != 0;
}

/* Waits, without adopting it, for a direct task to be sealed. */
static bool direct_done(rayc_ref r)
{
	RT_WAIT_FOR(rayc__test_direct_phase(r) == 3, 10000);
	return rayc__test_direct_phase(r) == 3;
}

static void expect_empty(void)
{
	rayc_stats st;

	RT_WAIT_FOR(rayc_stats_get(&st) == RAYC_OK && st.objects == 0 &&
	                    st.tasks_pending == 0,
	            10000);
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_eq(st.objects, 0, "%llu objects live",
	             (unsigned long long)st.objects);
	cr_assert_eq(st.tasks_pending, 0, "%llu tasks pending",
	             (unsigned long long)st.tasks_pending);
	cr_assert_eq(st.lineage_tasks, 0, "%llu lineage tasks",
	             (unsigned long long)st.lineage_tasks);
}

/* The common case: each runs once, its value got, nothing left. */
Test(direct, many_tasks_run_once_each_and_leave_nothing)
{
	enum { N = 50000 };
	rayc_ref *r = malloc(N * sizeof(*r));
	rayc_stats st;

	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	uint64_t ran = st.tasks_executed;
	for (int i = 0; i < N; i++)
		cr_assert_eq(rayc_call(&r[i], "d_ident", RAYC_I64(i)), RAYC_OK);
	int direct = 0;
	for (int i = 0; i < N; i += 100)
		direct += is_direct(r[i]);
	cr_assert_gt(direct, N / 100 / 2, "%d of %d sampled were direct",
	             direct, N / 100);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(get_i64(r[i]), i);
		cr_assert_eq(rayc_release(r[i]), RAYC_OK);
	}
	expect_empty();
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_eq(st.tasks_executed - ran, N);
	free(r);
}

/* A second release of a direct ref is refused, as any ref's. */
Test(direct, a_second_release_is_enotfound)
{
	rayc_ref r;

	cr_assert_eq(rayc_call(&r, "d_ident", RAYC_I64(5)), RAYC_OK);
	cr_assert_eq(get_i64(r), 5);
	cr_assert_eq(rayc_release(r), RAYC_OK);
	cr_assert_eq(rayc_release(r), RAYC_ENOTFOUND);
	expect_empty();
}

/* A thread waits for a direct task still running: adopted, then woken
 * when the worker seals it without the lock. */
Test(direct, a_getter_waiting_on_a_running_one_is_woken)
{
	rayc_ref r;

	atomic_store(&gate_open, 0);
	cr_assert_eq(rayc_call(&r, "d_gated", RAYC_I64(7)), RAYC_OK);
	bool direct = is_direct(r);
	int64_t v = 0;
	int rc = rayc_get_i64(r, &v, 50);
	bool adopted = !is_direct(r);
	atomic_store(&gate_open, 1);
	cr_assert(direct);
	cr_assert_eq(rc, RAYC_ETIMEDOUT);
	cr_assert(adopted, "the wait adopted it");
	cr_assert_eq(get_i64(r), 7);
	cr_assert_eq(rayc_release(r), RAYC_OK);
	expect_empty();
}

struct opener {
	rayc_ref r;
};

static void *open_when_waited(void *arg)
{
	struct opener *o = arg;

	RT_WAIT_FOR(rayc__test_waited_for(o->r), 10000);
	atomic_store(&gate_open, 1);
	return NULL;
}

static void *unpause_when_waited(void *arg)
{
	struct opener *o = arg;

	RT_WAIT_FOR(rayc__test_waited_for(o->r), 10000);
	rayc__test_direct_pause(false);
	return NULL;
}

/* The same with the getter parked in rayc_get when the run ends. */
Test(direct, a_parked_getter_is_woken_when_the_run_ends)
{
	struct opener o;
	pthread_t th;

	for (int round = 0; round < 20; round++) {
		atomic_store(&gate_open, 0);
		cr_assert_eq(rayc_call(&o.r, "d_gated", RAYC_I64(round)),
		             RAYC_OK);
		cr_assert_eq(pthread_create(&th, NULL, open_when_waited, &o), 0);
		cr_assert_eq(get_i64(o.r), round);
		pthread_join(th, NULL);
		cr_assert_eq(rayc_release(o.r), RAYC_OK);
	}
	expect_empty();
}

/* The race adoption settles: a getter adopts a direct task after its
 * worker found it not adopted and before it sealed it, and waits; the
 * worker, finding it adopted as it moves it to DONE, wakes it. */
static void pause_at_seal(rayc_ref *r, int64_t v)
{
	rayc__test_direct_pause(true);
	cr_assert_eq(rayc_call(r, "d_ident", RAYC_I64(v)), RAYC_OK);
	RT_WAIT_FOR(rayc__test_direct_paused(), 10000);
	bool paused = rayc__test_direct_paused();
	if (!paused)
		rayc__test_direct_pause(false);
	cr_assert(paused, "the run reached its seal");
}

Test(direct, a_getter_adopting_it_between_the_workers_look_and_seal)
{
	rayc_ref r;
	pthread_t th;

	pause_at_seal(&r, 21);
	struct opener o = { r };
	cr_assert_eq(pthread_create(&th, NULL, unpause_when_waited, &o), 0);
	/* Woken, not found ready when its wait ran out: a wait that ends
	 * finds it ready either way, so its length tells them apart. */
	int64_t v = 0, t0 = rt_now_ms();
	cr_assert_eq(rayc_get_i64(r, &v, 20000), RAYC_OK);
	int64_t took = rt_now_ms() - t0;
	pthread_join(th, NULL);
	cr_assert_eq(v, 21);
	cr_assert_lt(took, 10000, "the getter was not woken (%lld ms)",
	             (long long)took);
	cr_assert_eq(rayc_release(r), RAYC_OK);
	expect_empty();
}

/* The same for a task taking it as its argument. */
Test(direct, a_dependent_adopting_it_between_the_workers_look_and_seal)
{
	rayc_ref r, dep;

	pause_at_seal(&r, 30);
	cr_assert_eq(rayc_call(&dep, "d_add", RAYC_REF(r), RAYC_I64(1)),
	             RAYC_OK);
	rayc__test_direct_pause(false);
	cr_assert_eq(get_i64(dep), 31);
	cr_assert_eq(get_i64(r), 30);
	cr_assert_eq(rayc_release(r), RAYC_OK);
	cr_assert_eq(rayc_release(dep), RAYC_OK);
	expect_empty();
}

/* A task takes a direct task's result as its argument: while that one
 * runs (it waits for it), and after it is done. */
Test(direct, a_dependent_gets_a_running_one_and_a_done_one)
{
	rayc_ref a, b, s1, s2;

	atomic_store(&gate_open, 0);
	cr_assert_eq(rayc_call(&a, "d_gated", RAYC_I64(10)), RAYC_OK);
	cr_assert_eq(rayc_call(&b, "d_ident", RAYC_I64(5)), RAYC_OK);
	bool ok = direct_done(b) && is_direct(a);
	if (!ok)
		atomic_store(&gate_open, 1); /* let the run end */
	cr_assert(ok, "a is direct and queued or running, b direct and done");
	cr_assert_eq(rayc_call(&s1, "d_add", RAYC_REF(a), RAYC_I64(1)),
	             RAYC_OK);
	cr_assert_eq(rayc_call(&s2, "d_add", RAYC_REF(b), RAYC_REF(a)),
	             RAYC_OK);
	cr_assert_eq(rayc_release(a), RAYC_OK); /* the dependents hold it */
	atomic_store(&gate_open, 1);
	cr_assert_eq(get_i64(s1), 11);
	cr_assert_eq(get_i64(s2), 15);
	cr_assert_eq(rayc_release(b), RAYC_OK);
	cr_assert_eq(rayc_release(s1), RAYC_OK);
	cr_assert_eq(rayc_release(s2), RAYC_OK);
	expect_empty();
}

/* rayc_wait over direct tasks, some done and one running. */
Test(direct, wait_sees_done_ones_and_the_end_of_a_running_one)
{
	rayc_ref r[5];
	uint8_t flags[5];
	size_t nready = 0;

	atomic_store(&gate_open, 0);
	cr_assert_eq(rayc_call(&r[0], "d_gated", RAYC_I64(0)), RAYC_OK);
	for (int i = 1; i < 5; i++)
		cr_assert_eq(rayc_call(&r[i], "d_ident", RAYC_I64(i)), RAYC_OK);
	cr_assert_eq(rayc_wait(r, 5, 4, 10000, flags, &nready), RAYC_OK);
	cr_assert_eq(nready, 4);
	cr_assert_eq(flags[0], 0);
	atomic_store(&gate_open, 1);
	cr_assert_eq(rayc_wait(r, 5, 5, 10000, flags, &nready), RAYC_OK);
	cr_assert_eq(nready, 5);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(get_i64(r[i]), i);
		cr_assert_eq(rayc_release(r[i]), RAYC_OK);
	}
	expect_empty();
}

/* A duplicated ref needs both releases; the entry goes after the
 * last. */
Test(direct, a_dup_holds_it_until_both_are_released)
{
	rayc_ref r;

	cr_assert_eq(rayc_call(&r, "d_ident", RAYC_I64(3)), RAYC_OK);
	cr_assert_eq(rayc_ref_dup(r), RAYC_OK);
	cr_assert_eq(rayc_release(r), RAYC_OK);
	cr_assert_eq(get_i64(r), 3);
	cr_assert_eq(rayc_release(r), RAYC_OK);
	cr_assert_eq(rayc_release(r), RAYC_ENOTFOUND);
	expect_empty();
}

/* A failed run: its error to the getter; with retry_exceptions, run
 * again (the second time the usual way) and its value got. */
Test(direct, a_failure_is_reported_and_a_retry_runs_again)
{
	rayc_ref f, g;
	rayc_view v;

	cr_assert_eq(rayc_call(&f, "d_fails"), RAYC_OK);
	cr_assert_eq(rayc_get(f, &v, 10000), RAYC_ETASK);
	cr_assert(strstr(rayc_errmsg(), "always fails") != NULL, "%s",
	          rayc_errmsg());
	rayc_view_release(&v);
	cr_assert_eq(rayc_release(f), RAYC_OK);

	atomic_store(&flaky_runs, 0);
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.retry_exceptions = 1;
	o.max_retries = 2;
	cr_assert_eq(rayc_call_opts(&g, "d_flaky", &o), RAYC_OK);
	cr_assert_eq(get_i64(g), 42);
	cr_assert_eq(atomic_load(&flaky_runs), 2);
	cr_assert_eq(rayc_release(g), RAYC_OK);
	expect_empty();
}

/* Returns too big to be inline go through the table: on the heap and in
 * the store's arena. */
Test(direct, returns_over_the_inline_bytes_are_whole)
{
	const int64_t sizes[] = { 17, 1000, 100000, 3 << 20 };
	rayc_ref r[4];

	for (int i = 0; i < 4; i++)
		cr_assert_eq(rayc_call(&r[i], "d_bytes", RAYC_I64(sizes[i])),
		             RAYC_OK);
	for (int i = 0; i < 4; i++) {
		rayc_view v;
		cr_assert_eq(rayc_get(r[i], &v, 30000), RAYC_OK);
		cr_assert_eq(v.len, (size_t)sizes[i]);
		const unsigned char *p = v.data;
		for (int64_t k = 0; k < sizes[i]; k += 997)
			cr_assert_eq(p[k], (unsigned char)(k & 0xff));
		rayc_view_release(&v);
		cr_assert_eq(rayc_release(r[i]), RAYC_OK);
	}
	expect_empty();
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_eq(st.inline_bytes, 0);
}

/* A done direct task's object lost: rebuilt from its task. */
Test(direct, a_lost_result_is_rebuilt_from_its_task)
{
	rayc_ref r;

	cr_assert_eq(rayc_call(&r, "d_ident", RAYC_I64(99)), RAYC_OK);
	cr_assert(direct_done(r));
	cr_assert_eq(rayc__test_lose(r), RAYC_OK); /* adopts it, done */
	cr_assert_eq(get_i64(r), 99);
	cr_assert_eq(rayc_release(r), RAYC_OK);
	expect_empty();
}

/* More tasks live than the ring has slots (RAYC__DIRECT_SLOTS): those
 * whose slot is taken go the usual way, and all of them run. */
Test(direct, tasks_past_the_rings_size_go_the_usual_way)
{
	enum { N = RAYC__DIRECT_SLOTS + 5000 };
	rayc_ref *r = malloc(N * sizeof(*r));

	for (int i = 0; i < N; i++)
		cr_assert_eq(rayc_call(&r[i], "d_ident", RAYC_I64(i)), RAYC_OK);
	int direct_tail = 0;
	for (int i = N - 1000; i < N; i++)
		direct_tail += is_direct(r[i]);
	cr_assert_eq(direct_tail, 0, "%d of the last found free slots",
	             direct_tail);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(get_i64(r[i]), i);
		cr_assert_eq(rayc_release(r[i]), RAYC_OK);
	}
	expect_empty();
	free(r);
}

/* Several submitters, each getting what another submitted. */
#define SUBS 4
#define PER 20000
static rayc_ref cross[SUBS][PER];
static pthread_barrier_t cross_go;

static void *cross_submit(void *arg)
{
	intptr_t k = (intptr_t)arg;

	for (int i = 0; i < PER; i++)
		if (rayc_call(&cross[k][i], "d_ident",
		              RAYC_I64(k * PER + i)) != RAYC_OK)
			return (void *)1;
	pthread_barrier_wait(&cross_go);
	intptr_t other = (k + 1) % SUBS;
	for (int i = 0; i < PER; i++) {
		int64_t v = -1;
		if (rayc_get_i64(cross[other][i], &v, 30000) != RAYC_OK ||
		    v != other * PER + i ||
		    rayc_release(cross[other][i]) != RAYC_OK)
			return (void *)2;
	}
	return NULL;
}

Test(direct, submitters_get_each_others_results)
{
	pthread_t th[SUBS];

	pthread_barrier_init(&cross_go, NULL, SUBS);
	for (intptr_t k = 0; k < SUBS; k++)
		cr_assert_eq(pthread_create(&th[k], NULL, cross_submit,
		                            (void *)k), 0);
	for (int k = 0; k < SUBS; k++) {
		void *rc;
		pthread_join(th[k], &rc);
		cr_assert_null(rc, "submitter %d: step %ld failed", k,
		               (long)(intptr_t)rc);
	}
	pthread_barrier_destroy(&cross_go);
	expect_empty();
}

/* Shut down with direct tasks queued, running and done, their refs
 * never released: nothing leaks (rt_stop checks, under ASan). */
Test(direct, shutdown_frees_what_is_left)
{
	rayc_ref r;

	for (int i = 0; i < 20000; i++)
		cr_assert_eq(rayc_call(&r, "d_ident", RAYC_I64(i)), RAYC_OK);
	cr_assert_eq(get_i64(r), 19999);
}

/* Found by a review (seen failing before the fix): a worker stored READY
 * without the lock between rayc_wait's count of the ready and its
 * linking of the rest, so the caller waited for a wake that never came
 * (one in 5,000-40,000 rounds hung); and a lost object's data, dropped
 * in that window, came back READY and empty.  Now the state is written
 * under the lock only (DONE says ready without it). */
Test(direct, a_wait_on_one_just_submitted_always_returns)
{
	for (int i = 0; i < 50000; i++) {
		rayc_ref r;
		size_t nready = 0;
		cr_assert_eq(rayc_call(&r, "d_ident", RAYC_I64(i)), RAYC_OK);
		int rc = rayc_wait(&r, 1, 1, 10000, NULL, &nready);
		cr_assert_eq(rc, RAYC_OK, "round %d: %s", i, rayc_strerror(rc));
		cr_assert_eq(nready, 1);
		cr_assert_eq(rayc_release(r), RAYC_OK);
	}
	expect_empty();
}

Test(direct, one_lost_as_it_is_sealed_is_rebuilt_whole)
{
	for (int i = 0; i < 20000; i++) {
		rayc_ref r;
		cr_assert_eq(rayc_call(&r, "d_ident", RAYC_I64(i)), RAYC_OK);
		cr_assert_eq(rayc__test_lose(r), RAYC_OK);
		cr_assert_eq(get_i64(r), i, "round %d", i);
		cr_assert_eq(rayc_release(r), RAYC_OK);
	}
	expect_empty();
}

/* One worker. */
static void rt_init1(void)
{
	rt_start(1);
}

TestSuite(direct1, .init = rt_init1, .fini = rt_stop, .timeout = 120);

static atomic_int hold_open, hold_running;

/* Holds its worker (no CPU asked) until hold_open. */
static void d_hold(rayc_ctx *c)
{
	atomic_store(&hold_running, 1);
	while (!atomic_load(&hold_open)) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	rayc_return_i64(c, 0, 1);
}
RAYC_REMOTE(d_hold)

/* Found by a review (seen failing before the fix): with the only worker
 * busy on a task that asks no CPU, nobody idle and a CPU free, a direct
 * task waited for that worker (its get timed out); a task queued the
 * usual way starts a thread. */
Test(direct1, a_free_cpu_runs_one_while_the_worker_is_busy)
{
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	rayc_ref h, r;
	int64_t v = 0;

	o.num_cpus = 0;
	atomic_store(&hold_open, 0);
	cr_assert_eq(rayc_call_opts(&h, "d_hold", &o), RAYC_OK);
	RT_WAIT_FOR(atomic_load(&hold_running), 10000);
	cr_assert(atomic_load(&hold_running), "the worker runs d_hold");
	cr_assert_eq(rayc_call(&r, "d_ident", RAYC_I64(42)), RAYC_OK);
	int rc = rayc_get_i64(r, &v, 10000);
	atomic_store(&hold_open, 1);
	cr_assert_eq(rc, RAYC_OK, "%s", rayc_strerror(rc));
	cr_assert_eq(v, 42);
	cr_assert_eq(get_i64(h), 1);
	cr_assert_eq(rayc_release(r), RAYC_OK);
	cr_assert_eq(rayc_release(h), RAYC_OK);
	expect_empty();
}

/* Found by a review (seen failing before the fix): adopting queued
 * direct tasks freed their ring slots, so more tasks than the queue has
 * cells could be queued, and the next submission spun for ever in a
 * full queue.  An adopted task keeps its slot until it has run. */
Test(direct1, adopting_queued_ones_does_not_overfill_the_queue)
{
	enum { N = RAYC__DIRECT_SLOTS - 1 };
	rayc_ref h, x[4], *r = malloc(N * sizeof(*r));
	size_t nready = 0;

	atomic_store(&hold_open, 0);
	cr_assert_eq(rayc_call(&h, "d_hold"), RAYC_OK);
	for (int i = 0; i < N; i++)
		cr_assert_eq(rayc_call(&r[i], "d_ident", RAYC_I64(i)), RAYC_OK);
	/* Adopts them all, queued behind the held worker. */
	cr_assert_eq(rayc_wait(r, N, 0, 0, NULL, &nready), RAYC_OK);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(rayc_call(&x[i], "d_ident", RAYC_I64(i)), RAYC_OK);
	atomic_store(&hold_open, 1);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(get_i64(x[i]), i);
		cr_assert_eq(rayc_release(x[i]), RAYC_OK);
	}
	for (int i = 0; i < N; i++) {
		cr_assert_eq(get_i64(r[i]), i);
		cr_assert_eq(rayc_release(r[i]), RAYC_OK);
	}
	cr_assert_eq(get_i64(h), 1);
	cr_assert_eq(rayc_release(h), RAYC_OK);
	expect_empty();
	free(r);
}

/* Quick so far; the run for 0 waits for the gate while block_zero. */
static atomic_int block_zero;

static void d_maybe_block(rayc_ctx *c)
{
	int64_t a = 0;
	rayc_arg_i64(c, 0, &a);
	if (a == 0 && atomic_load(&block_zero))
		while (!atomic_load(&gate_open))
			sched_yield();
	rayc_return_i64(c, 0, a);
}
RAYC_REMOTE(d_maybe_block)

/* A worker takes several quick tasks at once; when one of them runs
 * long (here: waits for a gate opened only after the others are got),
 * the ones it took and has not started are taken back by the other
 * worker before it parks, and run. */
Test(direct, tasks_behind_one_that_runs_long_are_taken_back)
{
	enum { N = 64 };
	rayc_ref r[N];

	for (int i = 0; i < 2000; i++) { /* its runs timed: quick */
		cr_assert_eq(rayc_call(&r[0], "d_maybe_block", RAYC_I64(1)),
		             RAYC_OK);
		cr_assert_eq(get_i64(r[0]), 1);
		cr_assert_eq(rayc_release(r[0]), RAYC_OK);
	}
	for (int round = 0; round < 20; round++) {
		atomic_store(&gate_open, 0);
		atomic_store(&block_zero, 1);
		for (int i = 0; i < N; i++)
			cr_assert_eq(rayc_call(&r[i], "d_maybe_block",
			                       RAYC_I64(i)),
			             RAYC_OK);
		int late = -1;
		for (int i = 1; i < N && late < 0; i++) {
			int64_t v = -1;
			if (rayc_get_i64(r[i], &v, 10000) != RAYC_OK || v != i)
				late = i;
		}
		atomic_store(&gate_open, 1);
		cr_assert_eq(late, -1, "round %d: task %d did not run while "
		             "task 0 waited", round, late);
		atomic_store(&block_zero, 0);
		for (int i = 0; i < N; i++) {
			cr_assert_eq(get_i64(r[i]), i);
			cr_assert_eq(rayc_release(r[i]), RAYC_OK);
		}
	}
	expect_empty();
}

static atomic_int side_flag;

/* Waits (20 s at most) for d_set_flag, which it does not get: a side
 * channel the runtime cannot see. */
static void d_wait_flag(rayc_ctx *c)
{
	int64_t end = rt_now_ms() + 20000;
	while (!atomic_load(&side_flag) && rt_now_ms() < end)
		sched_yield();
	rayc_return_i64(c, 0, atomic_load(&side_flag));
}
RAYC_REMOTE(d_wait_flag)

static void d_set_flag(rayc_ctx *c)
{
	atomic_store(&side_flag, 1);
	rayc_return_i64(c, 0, 1);
}
RAYC_REMOTE(d_set_flag)

/* A task queued while the one worker running direct tasks is held by a
 * long run, with nobody waiting for it, runs on the idle worker (it
 * looks at the queue every 1-8 ms while direct tasks run).
 * Before, it waited for the long run, which here waits for it. */
Test(direct, one_queued_behind_a_long_run_runs_on_the_idle_worker)
{
	for (int round = 0; round < 10; round++) {
		rayc_ref a, b;
		atomic_store(&side_flag, 0);
		cr_assert_eq(rayc_call(&a, "d_wait_flag"), RAYC_OK);
		rt_sleep_ms(5); /* a worker runs it; the other parks */
		cr_assert_eq(rayc_call(&b, "d_set_flag"), RAYC_OK);
		RT_WAIT_FOR(atomic_load(&side_flag), 10000);
		cr_assert(atomic_load(&side_flag), "round %d: the second task "
		          "did not run while the first held its worker", round);
		cr_assert_eq(get_i64(a), 1);
		cr_assert_eq(get_i64(b), 1);
		cr_assert_eq(rayc_release(a), RAYC_OK);
		cr_assert_eq(rayc_release(b), RAYC_OK);
	}
	expect_empty();
}

/* ------------------------------------------------------------------ */
/* Bursts (direct.c: held_back): a worker lets a submitter of many quick
 * tasks get DISTANCE ahead before it takes them, but never past a
 * thread that waits for one, nor for long.                            */
/* ------------------------------------------------------------------ */

static atomic_int burst_runs;

static void d_count(rayc_ctx *c)
{
	atomic_fetch_add(&burst_runs, 1);
	rayc_return_i64(c, 0, 1);
}
RAYC_REMOTE(d_count)

/* Runs of fn (one argument) one at a time, so that its runs are known
 * quick; then waits for a hurry left from an earlier round (a waiter's,
 * while a worker held tasks back) to be cleared as the queue runs dry:
 * until then no task is held back. */
static void warm_quick(const char *fn)
{
	for (int i = 0; i < 16; i++) {
		rayc_ref r;
		int64_t v = -1;
		cr_assert_eq(rayc_call(&r, fn, RAYC_I64(i)), RAYC_OK);
		cr_assert_eq(rayc_get_i64(r, &v, 10000), RAYC_OK);
		cr_assert_eq(rayc_release(r), RAYC_OK);
	}
	RT_WAIT_FOR(!rayc__test_direct_hurry(), 10000);
	cr_assert(!rayc__test_direct_hurry());
}

/* Bursts of N held back for an hour, rounds until a hold is seen (the
 * worker may be quicker to take them all than the submitter is to queue
 * them); each burst then got by a get of its last task or a wait for
 * all.  One worker (a second one would take tasks held a millisecond:
 * sched.c). */
static void hold_then_want(bool by_wait)
{
	enum { N = 10, ROUNDS = 50 };
	int seen = 0;

	rayc__test_direct_hold((int64_t)3600 * 1000000000);
	for (int round = 0; round < ROUNDS && seen == 0; round++) {
		rayc_ref r[N];
		uint8_t ready[N];
		size_t nready = 0;
		warm_quick("d_ident");
		for (int i = 0; i < N; i++)
			cr_assert_eq(rayc_call(&r[i], "d_ident", RAYC_I64(i)),
			             RAYC_OK);
		RT_WAIT_FOR(rayc__test_direct_holding() ||
		                    rayc__test_direct_phase(r[N - 1]) == 3,
		            10000);
		if (rayc__test_direct_holding()) {
			seen++;
			cr_assert_eq(rayc__test_direct_phase(r[N - 1]), 1,
			             "the last is queued while held back");
		}
		if (by_wait) {
			cr_assert_eq(rayc_wait(r, N, N, 10000, ready, &nready),
			             RAYC_OK);
			cr_assert_eq(nready, N);
		} else {
			cr_assert_eq(get_i64(r[N - 1]), N - 1);
		}
		for (int i = 0; i < N; i++) {
			cr_assert_eq(get_i64(r[i]), i);
			cr_assert_eq(rayc_release(r[i]), RAYC_OK);
		}
	}
	rayc__test_direct_hold(0);
	cr_assert_gt(seen, 0, "no burst was held back in %d rounds", ROUNDS);
	expect_empty();
}

/* A burst's tasks wait for their submitter to get ahead (seen failing
 * before the change: no worker ever held one back), and a get of one
 * of them does not wait for the hold to end (seen failing with the
 * getter's hurry taken out: the get timed out). */
Test(direct1, a_burst_waits_for_its_submitter_to_get_ahead_but_not_a_getter)
{
	hold_then_want(false);
}

/* The same with rayc_wait: it waits, so the hold ends. */
Test(direct1, a_burst_held_back_is_let_go_for_a_wait)
{
	hold_then_want(true);
}

/* A burst nobody waits for runs all the same: a hold ends by itself
 * (20 us by default; 20 ms here, to be seen).  One worker: with two,
 * the idle one would take tasks held that long (it looks every
 * millisecond: sched.c). */
Test(direct1, a_burst_nobody_waits_for_runs)
{
	enum { N = 10, ROUNDS = 50 };
	int seen = 0;

	rayc__test_direct_hold((int64_t)20 * 1000000);
	for (int round = 0; round < ROUNDS && seen == 0; round++) {
		rayc_ref r[N];
		warm_quick("d_count");
		atomic_store(&burst_runs, 0);
		for (int i = 0; i < N; i++)
			cr_assert_eq(rayc_call(&r[i], "d_count", RAYC_I64(i)),
			             RAYC_OK);
		RT_WAIT_FOR(rayc__test_direct_holding() ||
		                    atomic_load(&burst_runs) == N,
		            10000);
		seen += rayc__test_direct_holding();
		RT_WAIT_FOR(atomic_load(&burst_runs) == N, 10000);
		cr_assert_eq(atomic_load(&burst_runs), N, "%d of %d ran",
		             atomic_load(&burst_runs), N);
		for (int i = 0; i < N; i++)
			cr_assert_eq(rayc_release(r[i]), RAYC_OK);
	}
	rayc__test_direct_hold(0);
	cr_assert_gt(seen, 0, "no burst was held back in %d rounds", ROUNDS);
	expect_empty();
}

/* ------------------------------------------------------------------ */
/* Records (rt.h: rayc__drec): a direct task's entry and spec in one
 * block, taken in turn                                                 */
/* ------------------------------------------------------------------ */

/* a + b + c, c a double: three arguments, one more than a record has
 * room for. */
static void d_add3(rayc_ctx *c)
{
	int64_t a = 0, b = 0;
	double x = 0;
	rayc_arg_i64(c, 0, &a);
	rayc_arg_i64(c, 1, &b);
	rayc_arg_f64(c, 2, &x);
	rayc_return_i64(c, 0, a + b + (int64_t)x);
}
RAYC_REMOTE(d_add3)

static void d_len(rayc_ctx *c)
{
	const void *p = NULL;
	size_t n = 0;
	rayc_arg_data(c, 0, &p, &n);
	rayc_return_i64(c, 0, (int64_t)n);
}
RAYC_REMOTE(d_len)

/* An entry adopted into the object table keeps its record while it
 * lives: tasks taking records in turn, one at a time, pass it several
 * times (a few records are in use while few tasks live), take their
 * memory elsewhere there, and it stays whole. */
Test(direct, an_adopted_ones_record_is_not_taken_while_it_lives)
{
	enum { N = 3 * RAYC__DIRECT_RECS0 + 20 };
	rayc_ref a;
	int elsewhere = 0;

	cr_assert_eq(rayc_call(&a, "d_ident", RAYC_I64(777)), RAYC_OK);
	cr_assert_eq(rayc__test_direct_in_rec(a), 1);
	cr_assert_eq(rayc_ref_dup(a), RAYC_OK); /* adopts it */
	cr_assert_eq(is_direct(a), false);
	for (int i = 0; i < N; i++) {
		rayc_ref r;
		cr_assert_eq(rayc_call(&r, "d_ident", RAYC_I64(i)), RAYC_OK);
		elsewhere += rayc__test_direct_in_rec(r) == 0;
		cr_assert_eq(get_i64(r), i);
		cr_assert_eq(rayc_release(r), RAYC_OK);
	}
	cr_assert_geq(elsewhere, 3, "only %d tasks met its record", elsewhere);
	cr_assert_leq(elsewhere, 4, "%d tasks found no record", elsewhere);
	cr_assert_eq(rayc__test_direct_in_rec(a), 1);
	cr_assert_eq(get_i64(a), 777);
	cr_assert_eq(rayc_release(a), RAYC_OK);
	cr_assert_eq(rayc_release(a), RAYC_OK);
	expect_empty();
}

/* Records in use grow with the tasks in flight: 20,000 submitted before
 * any is got nearly all lie in records (RAYC__DIRECT_RECS0 are in use at
 * first). */
Test(direct, records_follow_the_tasks_in_flight)
{
	enum { N = 20000 };
	rayc_ref *r = malloc(N * sizeof(*r));
	int in = 0;

	for (int i = 0; i < N; i++) {
		cr_assert_eq(rayc_call(&r[i], "d_ident", RAYC_I64(i)), RAYC_OK);
		in += rayc__test_direct_in_rec(r[i]) == 1;
	}
	cr_assert_geq(in, N - N / 10, "%d of %d in records", in, N);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(get_i64(r[i]), i);
		cr_assert_eq(rayc_release(r[i]), RAYC_OK);
	}
	expect_empty();
	free(r);
}

/* A record holds two arguments of 8 bytes; a task with more, or with a
 * string or bytes to copy, takes its memory from the slabs, still
 * direct, and each gets its arguments whole. */
Test(direct, arguments_past_a_records_room_take_slab_memory)
{
	rayc_ref two, three, str;

	cr_assert_eq(rayc_call(&two, "d_add", RAYC_I64(40), RAYC_I64(2)),
	             RAYC_OK);
	cr_assert_eq(rayc_call(&three, "d_add3", RAYC_I64(1), RAYC_I64(2),
	                       RAYC_F64(3.0)),
	             RAYC_OK);
	cr_assert_eq(rayc_call(&str, "d_len", RAYC_STR("eleven char")),
	             RAYC_OK);
	cr_assert_eq(rayc__test_direct_in_rec(two), 1);
	cr_assert_eq(rayc__test_direct_in_rec(three), 0);
	cr_assert_eq(rayc__test_direct_in_rec(str), 0);
	cr_assert_eq(get_i64(two), 42);
	cr_assert_eq(get_i64(three), 6);
	cr_assert_eq(get_i64(str), 11);
	cr_assert_eq(rayc_release(two), RAYC_OK);
	cr_assert_eq(rayc_release(three), RAYC_OK);
	cr_assert_eq(rayc_release(str), RAYC_OK);
	expect_empty();
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

/* Sanitizers reserve terabytes of address space: these tests are left
 * out of their builds (a skipped Criterion test leaks its runner's 48
 * bytes, which LSan reports). */
#ifndef SANITIZED
/* The address space this process has reserved (bytes). */
static size_t vm_now(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long pages = 0;

	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%lu", &pages), 1);
	fclose(f);
	return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}

TestSuite(direct_as, .timeout = 60);

/* Found by a review (seen failing before the fix: rayc_init returned
 * RAYC_ENOMEM): the records' 256 MiB of address space is reserved at
 * rayc_init; where a ulimit -v (or overcommit turned off) refuses it,
 * fewer records are reserved, and tasks run all the same. */
Test(direct_as, little_address_space_takes_fewer_records)
{
	enum { N = 2000 };
	size_t lim = vm_now() + ((size_t)192 << 20);
	struct rlimit rl = { lim, lim };
	rayc_config c = { .num_workers = 2, .store_bytes = (size_t)16 << 20 };
	rayc_ref r[N];

	cr_assert_eq(setrlimit(RLIMIT_AS, &rl), 0);
	int rc = rayc_init(&c);
	cr_assert_eq(rc, RAYC_OK, "rayc_init: %s (%s)", rayc_strerror(rc),
	             rayc_errmsg());
	for (int i = 0; i < N; i++)
		cr_assert_eq(rayc_call(&r[i], "d_ident", RAYC_I64(i)), RAYC_OK);
	cr_assert_eq(rayc__test_direct_in_rec(r[N - 1]), 1);
	for (int i = 0; i < N; i++) {
		cr_assert_eq(get_i64(r[i]), i);
		cr_assert_eq(rayc_release(r[i]), RAYC_OK);
	}
	cr_assert_eq(rayc_shutdown(), RAYC_OK);
}
#endif /* SANITIZED */
