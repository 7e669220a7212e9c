/* test_sched.c -- the local scheduler: dataflow, nested tasks, blocked
 * gets that give their CPU back, resource-aware dispatch. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helpers.h"
#include "common/common.h"
#include "common/slab.h"
#include "os/os.h"
#include "testing.h"

static void add(rayc_ctx *c)
{
	int64_t a, b;
	cr_assert_eq(rayc_arg_i64(c, 0, &a), RAYC_OK);
	cr_assert_eq(rayc_arg_i64(c, 1, &b), RAYC_OK);
	rayc_return_i64(c, 0, a + b);
}
RAYC_REMOTE(add)

static void ident(rayc_ctx *c)
{
	int64_t a;
	rayc_arg_i64(c, 0, &a);
	rayc_return_i64(c, 0, a);
}
RAYC_REMOTE(ident)

static void fib(rayc_ctx *c)
{
	int64_t n, x, y;
	rayc_ref a, b;

	rayc_arg_i64(c, 0, &n);
	if (n < 2) {
		rayc_return_i64(c, 0, n);
		return;
	}
	if (rayc_call(&a, "fib", RAYC_I64(n - 1)) != RAYC_OK ||
	    rayc_call(&b, "fib", RAYC_I64(n - 2)) != RAYC_OK) {
		rayc_fail(c, "submit: %s", rayc_errmsg());
		return;
	}
	int ra = rayc_get_i64(a, &x, -1), rb = rayc_get_i64(b, &y, -1);
	rayc_release(a);
	rayc_release(b);
	if (ra != RAYC_OK || rb != RAYC_OK) {
		rayc_fail(c, "get failed");
		return;
	}
	rayc_return_i64(c, 0, x + y);
}
RAYC_REMOTE(fib)

TestSuite(sched, .init = rt_init2, .fini = rt_stop, .timeout = 120);
TestSuite(resources, .timeout = 60);

/* 100,000 leaf tasks reduced pairwise by add tasks through refs. */
Test(sched, tree_reduce_100k_tasks_exact_sum)
{
	const int n = 100000;
	rayc_ref *level = malloc(sizeof(rayc_ref) * n);
	cr_assert_not_null(level);
	for (int i = 0; i < n; i++)
		cr_assert_eq(rayc_call(&level[i], "ident", RAYC_I64(i + 1)),
		             RAYC_OK);
	int m = n;
	while (m > 1) {
		int k = 0;
		for (int i = 0; i + 1 < m; i += 2) {
			rayc_ref r;
			cr_assert_eq(rayc_call(&r, "add", RAYC_REF(level[i]),
			                       RAYC_REF(level[i + 1])),
			             RAYC_OK);
			rayc_release(level[i]);
			rayc_release(level[i + 1]);
			level[k++] = r;
		}
		if (m % 2 == 1)
			level[k++] = level[m - 1];
		m = k;
	}
	cr_assert_eq(get_i64(level[0]), (int64_t)n * (n + 1) / 2);
	rayc_release(level[0]);
	free(level);
	rayc_stats st;
	rayc_stats_get(&st);
	cr_assert_geq(st.tasks_executed, 2 * (uint64_t)n - 1);
	cr_assert_eq(st.objects, 0, "all objects freed, %lu left",
	             (unsigned long)st.objects);
	cr_assert_eq(st.lineage_tasks, 0);
}

/* Nested blocking gets must not deadlock a two-worker pool. */
Test(sched, recursive_fib20_by_nested_tasks)
{
	rayc_ref r;
	cr_assert_eq(rayc_call(&r, "fib", RAYC_I64(20)), RAYC_OK);
	cr_assert_eq(get_i64(r), 6765);
	rayc_release(r);
	rayc_stats st;
	rayc_stats_get(&st);
	cr_assert_eq(st.tasks_executed, 21891); /* calls in fib(20)'s tree */
	cr_assert_eq(st.objects, 0);
}

static atomic_int gate_open;
static atomic_int gated_ran;

static void gated(rayc_ctx *c)
{
	while (!atomic_load(&gate_open))
		sched_yield();
	atomic_fetch_add(&gated_ran, 1);
	rayc_return_i64(c, 0, 1);
}
RAYC_REMOTE(gated)

/* A task waiting on an unready ref holds no worker: with two workers,
 * one busy and many dependents waiting, independent work still runs. */
Test(sched, waiting_task_occupies_no_worker)
{
	rayc_ref g, deps[50], free_r;
	cr_assert_eq(rayc_call(&g, "gated"), RAYC_OK);
	for (int i = 0; i < 50; i++)
		cr_assert_eq(rayc_call(&deps[i], "add", RAYC_REF(g),
		                       RAYC_I64(i)),
		             RAYC_OK);
	cr_assert_eq(rayc_call(&free_r, "ident", RAYC_I64(42)), RAYC_OK);
	cr_assert_eq(get_i64(free_r), 42);
	rayc_stats st;
	rayc_stats_get(&st);
	cr_assert_geq(st.tasks_pending, 50, "dependents wait: %lu",
	              (unsigned long)st.tasks_pending);
	cr_assert_eq(st.num_workers, 2, "no extra threads for waiting tasks");
	atomic_store(&gate_open, 1);
	for (int i = 0; i < 50; i++) {
		cr_assert_eq(get_i64(deps[i]), 1 + i);
		rayc_release(deps[i]);
	}
	rayc_release(g);
	rayc_release(free_r);
}

/* Tasks that need no CPU wait (at most 20 s) until a task that needs
 * one says go. */
static atomic_int cpu_go;

static void wait_for_go(rayc_ctx *c)
{
	int64_t end = rt_now_ms() + 20000;
	while (!atomic_load(&cpu_go) && rt_now_ms() < end) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	rayc_return_i64(c, 0, atomic_load(&cpu_go));
}
RAYC_REMOTE(wait_for_go)

static void say_go(rayc_ctx *c)
{
	atomic_store(&cpu_go, 1);
	rayc_return_i64(c, 0, 1);
}
RAYC_REMOTE(say_go)

/* Work that fits the free resources starts, whatever the threads are
 * busy with: four tasks needing no CPU (so each gets a thread of its
 * own) take the two workers and two more, and the task needing a CPU
 * behind them gets a fifth.  It waited before: the burst was queued
 * while the two workers' wake-ups were on their way, so none of it
 * started a thread, and the woken took one task each. */
Test(sched, a_task_needing_a_cpu_runs_beside_tasks_needing_none)
{
	rayc_task_opts none = RAYC_TASK_OPTS_DEFAULT;
	rayc_ref w[4], go;

	none.num_cpus = 0;
	atomic_store(&cpu_go, 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(rayc_call_opts(&w[i], "wait_for_go", &none),
		             RAYC_OK);
	cr_assert_eq(rayc_call(&go, "say_go"), RAYC_OK);
	int64_t v = 0;
	cr_assert_eq(rayc_get_i64(go, &v, 10000), RAYC_OK,
	             "the task needing a CPU did not run: %s", rayc_errmsg());
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(get_i64(w[i]), 1, "waiter %d gave up", i);
		rayc_release(w[i]);
	}
	rayc_release(go);
}

static atomic_int slot_in_use, slot_max, slot_runs;

static void slot_task(rayc_ctx *c)
{
	int now = atomic_fetch_add(&slot_in_use, 1) + 1;
	int m = atomic_load(&slot_max);
	while (now > m && !atomic_compare_exchange_weak(&slot_max, &m, now))
		;
	struct timespec ts = { 0, 2000000 };
	nanosleep(&ts, NULL);
	atomic_fetch_sub(&slot_in_use, 1);
	atomic_fetch_add(&slot_runs, 1);
	rayc_return_i64(c, 0, 1);
}
RAYC_REMOTE(slot_task)

/* Tasks needing one unit of a custom resource with one unit declared
 * never overlap, though there are four workers. */
Test(resources, custom_resource_limits_concurrency)
{
	rayc_resource res = { "slot", 1 };
	rayc_config cfg = { .num_workers = 4, .resources = &res,
	                    .num_resources = 1,
	                    .store_bytes = (size_t)64 << 20 };
	cr_assert_eq(rayc_init(&cfg), RAYC_OK);
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	rayc_resource need = { "slot", 1 };
	o.resources = &need;
	o.num_resources = 1;
	rayc_ref r[20];
	for (int i = 0; i < 20; i++)
		cr_assert_eq(rayc_call_opts(&r[i], "slot_task", &o), RAYC_OK);
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(get_i64(r[i]), 1);
		rayc_release(r[i]);
	}
	cr_assert_eq(atomic_load(&slot_runs), 20);
	cr_assert_eq(atomic_load(&slot_max), 1);
	double total, avail;
	cr_assert_eq(rayc_resource_get("slot", &total, &avail), RAYC_OK);
	cr_assert_float_eq(total, 1.0, 1e-9);
	cr_assert_float_eq(avail, 1.0, 1e-9);
	rt_stop();
}

/* Two CPUs and tasks demanding two CPUs each: they run one at a time. */
Test(resources, num_cpus_demand_is_honoured)
{
	rt_start(2);
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.num_cpus = 2;
	rayc_ref r[10];
	atomic_store(&slot_max, 0);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(rayc_call_opts(&r[i], "slot_task", &o), RAYC_OK);
	for (int i = 0; i < 10; i++) {
		get_i64(r[i]);
		rayc_release(r[i]);
	}
	cr_assert_eq(atomic_load(&slot_max), 1);
	o.num_cpus = 3;
	rayc_ref bad;
	cr_assert_eq(rayc_call_opts(&bad, "slot_task", &o), RAYC_EINFEASIBLE);
	rt_stop();
}

Test(resources, impossible_demand_is_reported_not_hung)
{
	rt_start(2);
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	rayc_ref r;
	o.num_gpus = 1;
	cr_assert_eq(rayc_call_opts(&r, "ident", &o, RAYC_I64(1)),
	             RAYC_EINFEASIBLE);
	cr_assert(strstr(rayc_errmsg(), "GPU") != NULL, "%s", rayc_errmsg());
	rayc_resource need = { "tpu", 1 };
	o.num_gpus = 0;
	o.resources = &need;
	o.num_resources = 1;
	cr_assert_eq(rayc_call_opts(&r, "ident", &o, RAYC_I64(1)),
	             RAYC_EINFEASIBLE);
	rt_stop();
}

static void three(rayc_ctx *c)
{
	rayc_return_i64(c, 0, 1);
	rayc_return_f64(c, 1, 2.5);
	rayc_return_str(c, 2, "three");
}
RAYC_REMOTE(three)

Test(sched, num_returns_three)
{
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.num_returns = 3;
	rayc_ref r[3];
	cr_assert_eq(rayc_call_opts(r, "three", &o), RAYC_OK);
	cr_assert_eq(get_i64(r[0]), 1);
	double f;
	cr_assert_eq(rayc_get_f64(r[1], &f, 5000), RAYC_OK);
	cr_assert_float_eq(f, 2.5, 1e-12);
	rayc_view v;
	cr_assert_eq(rayc_get(r[2], &v, 5000), RAYC_OK);
	cr_assert_eq(v.type, RAYC_TYPE_STR);
	cr_assert_str_eq(v.data, "three");
	rayc_view_release(&v);
	for (int i = 0; i < 3; i++)
		rayc_release(r[i]);
}

Test(sched, wait_returns_when_enough_ready)
{
	rayc_ref r[4];
	atomic_store(&gate_open, 0);
	cr_assert_eq(rayc_call(&r[0], "gated"), RAYC_OK);
	for (int i = 1; i < 4; i++)
		cr_assert_eq(rayc_call(&r[i], "ident", RAYC_I64(i)), RAYC_OK);
	uint8_t flags[4];
	size_t nready = 0;
	cr_assert_eq(rayc_wait(r, 4, 3, 10000, flags, &nready), RAYC_OK);
	cr_assert_geq(nready, 3);
	cr_assert_eq(flags[1] + flags[2] + flags[3], 3);
	cr_assert_eq(rayc_wait(r, 4, 4, 50, flags, &nready), RAYC_ETIMEDOUT);
	cr_assert_eq(flags[0], 0);
	atomic_store(&gate_open, 1);
	cr_assert_eq(rayc_wait(r, 4, 4, 10000, flags, &nready), RAYC_OK);
	cr_assert_eq(nready, 4);
	for (int i = 0; i < 4; i++)
		rayc_release(r[i]);
}

/* As ray.wait: with 6 ready, num_ready = 2 reports the first 2 ready in
 * the order given, not all 6; a ref given twice is refused.  Before, every
 * ready ref was flagged and counted, and duplicates were accepted. */
Test(sched, wait_reports_at_most_num_ready_in_order_and_refuses_duplicates)
{
	rayc_ref r[8];
	atomic_store(&gate_open, 0);
	cr_assert_eq(rayc_call(&r[0], "gated"), RAYC_OK);
	for (int i = 1; i < 7; i++)
		cr_assert_eq(rayc_call(&r[i], "ident", RAYC_I64(i)), RAYC_OK);
	cr_assert_eq(rayc_call(&r[7], "gated"), RAYC_OK);
	for (int i = 1; i < 7; i++)
		cr_assert_eq(get_i64(r[i]), i); /* 1..6 are ready */
	uint8_t flags[8];
	size_t nready = 99;
	cr_assert_eq(rayc_wait(r, 8, 2, 10000, flags, &nready), RAYC_OK);
	cr_assert_eq(nready, 2);
	uint8_t want[8] = { 0, 1, 1, 0, 0, 0, 0, 0 };
	cr_assert_arr_eq(flags, want, 8);
	/* Timed out: every ready one is reported (fewer than asked). */
	cr_assert_eq(rayc_wait(r, 8, 7, 20, flags, &nready), RAYC_ETIMEDOUT);
	cr_assert_eq(nready, 6);
	cr_assert_eq(flags[0] + flags[7], 0);
	rayc_ref dup[3] = { r[1], r[2], r[1] };
	cr_assert_eq(rayc_wait(dup, 3, 1, 0, NULL, NULL), RAYC_EINVAL);
	atomic_store(&gate_open, 1);
	for (int i = 0; i < 8; i++)
		rayc_release(r[i]);
}

Test(sched, get_times_out_on_slow_task)
{
	rayc_ref r;
	int64_t v;
	atomic_store(&gate_open, 0);
	cr_assert_eq(rayc_call(&r, "gated"), RAYC_OK);
	int64_t t0 = rt_now_ms();
	cr_assert_eq(rayc_get_i64(r, &v, 100), RAYC_ETIMEDOUT);
	cr_assert_geq(rt_now_ms() - t0, 90);
	cr_assert_eq(rayc_get_i64(r, &v, 0), RAYC_ETIMEDOUT);
	atomic_store(&gate_open, 1);
	cr_assert_eq(get_i64(r), 1);
	rayc_release(r);
}

/* A task that needs both CPUs must not starve behind a stream of 1-CPU
 * tasks submitted after it (each free CPU used to go to the stream,
 * whose class is older, so both were never free at once). */
static atomic_int stream_done;
static atomic_bool stream_active;
static atomic_bool wide_ran_in_stream;

static void narrow(rayc_ctx *c)
{
	(void)c;
	struct timespec ts = { 0, 2000000 };
	nanosleep(&ts, NULL);
	atomic_fetch_add(&stream_done, 1);
}
RAYC_REMOTE(narrow)

static void wide(rayc_ctx *c)
{
	(void)c;
	atomic_store(&wide_ran_in_stream, atomic_load(&stream_active));
}
RAYC_REMOTE(wide)

Test(resources, wide_task_is_not_starved_by_a_stream, .timeout = 60)
{
	rt_start(2);
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.num_cpus = 2;
	rayc_ref w, r;
	int submitted = 0;
	atomic_store(&stream_active, true);
	/* Keep a few narrow tasks queued at every moment for 3 s. */
	int64_t end = rt_now_ms() + 3000;
	bool wide_sent = false;
	while (rt_now_ms() < end) {
		if (submitted - atomic_load(&stream_done) >= 6) {
			struct timespec ts = { 0, 200000 };
			nanosleep(&ts, NULL);
			continue;
		}
		cr_assert_eq(rayc_call(&r, "narrow"), RAYC_OK);
		rayc_release(r);
		if (++submitted == 20) {
			cr_assert_eq(rayc_call_opts(&w, "wide", &o), RAYC_OK);
			wide_sent = true;
		}
	}
	atomic_store(&stream_active, false);
	cr_assert(wide_sent);
	rayc_view v;
	cr_assert_eq(rayc_get(w, &v, 30000), RAYC_OK);
	rayc_view_release(&v);
	rayc_release(w);
	cr_assert(atomic_load(&wide_ran_in_stream),
	          "the 2-CPU task ran only after the stream of 1-CPU tasks "
	          "ended (%d of them ran)", atomic_load(&stream_done));
	rt_stop();
}

/* ------------------------------------------------------------------ */
/* Submitting without waiting for the runtime's lock (sched/submit.c)   */
/* ------------------------------------------------------------------ */
#define HELD_SUBMITS 1000

static atomic_int hold_state; /* 0 start, 1 lock held, 2 submits done */
static atomic_bool hold_timed_out;

static void *hold_lock_thread(void *arg)
{
	(void)arg;
	rayc__test_hold_lock(true);
	atomic_store(&hold_state, 1);
	int64_t end = rt_now_ms() + 5000;
	while (atomic_load(&hold_state) != 2) {
		if (rt_now_ms() > end) {
			atomic_store(&hold_timed_out, true);
			break;
		}
		sched_yield();
	}
	rayc__test_hold_lock(false);
	return NULL;
}

/* A worker, a receive callback or a getter holding rt->mu made every
 * rayc_call wait for it (they all took the lock).  Now a task with no ref
 * arguments is handed over and recorded by the holder when it lets go. */
Test(sched, submit_does_not_wait_while_another_thread_holds_the_lock)
{
	static rayc_ref refs[HELD_SUBMITS];
	pthread_t th;

	/* The first task of a demand makes its class, under the lock. */
	int64_t v0;
	cr_assert_eq(rayc_call(&refs[0], "ident", RAYC_I64(0)), RAYC_OK);
	cr_assert_eq(rayc_get_i64(refs[0], &v0, 10000), RAYC_OK);
	rayc_release(refs[0]);
	atomic_store(&hold_state, 0);
	atomic_store(&hold_timed_out, false);
	cr_assert_eq(pthread_create(&th, NULL, hold_lock_thread, NULL), 0);
	while (atomic_load(&hold_state) != 1)
		sched_yield();
	for (int i = 0; i < HELD_SUBMITS; i++)
		cr_assert_eq(rayc_call(&refs[i], "ident", RAYC_I64(i)), RAYC_OK);
	atomic_store(&hold_state, 2);
	pthread_join(th, NULL);
	cr_assert(!atomic_load(&hold_timed_out),
	          "rayc_call waited for the lock another thread held");
	for (int i = 0; i < HELD_SUBMITS; i++) {
		int64_t v;
		cr_assert_eq(rayc_get_i64(refs[i], &v, 10000), RAYC_OK);
		cr_assert_eq(v, i);
		cr_assert_eq(rayc_release(refs[i]), RAYC_OK);
	}
}

/* Refs made on one thread and got on another: a ref is usable by any
 * thread as soon as rayc_call returned it, however busy the lock. */
#define XT_THREADS 4
#define XT_TASKS 5000
static rayc_ref xt_refs[XT_THREADS][XT_TASKS];
static atomic_int xt_ready[XT_THREADS];

static void *xt_thread(void *arg)
{
	int k = (int)(intptr_t)arg, from = (k + 1) % XT_THREADS;
	intptr_t bad = 0;

	for (int i = 0; i < XT_TASKS; i++) {
		if (rayc_call(&xt_refs[k][i], "ident",
		              RAYC_I64(k * XT_TASKS + i)) != RAYC_OK)
			return (void *)1;
		atomic_store_explicit(&xt_ready[k], i + 1,
		                      memory_order_release);
	}
	for (int i = 0; i < XT_TASKS; i++) {
		int64_t v = -1;
		while (atomic_load_explicit(&xt_ready[from],
		                            memory_order_acquire) <= i)
			sched_yield();
		if (rayc_get_i64(xt_refs[from][i], &v, 20000) != RAYC_OK ||
		    v != from * XT_TASKS + i)
			bad++;
		rayc_release(xt_refs[from][i]);
	}
	return (void *)bad;
}

Test(sched, refs_submitted_on_one_thread_are_got_on_another)
{
	pthread_t th[XT_THREADS];

	for (int k = 0; k < XT_THREADS; k++)
		atomic_store(&xt_ready[k], 0);
	for (int k = 0; k < XT_THREADS; k++)
		cr_assert_eq(pthread_create(&th[k], NULL, xt_thread,
		                            (void *)(intptr_t)k), 0);
	for (int k = 0; k < XT_THREADS; k++) {
		void *bad;
		pthread_join(th[k], &bad);
		cr_assert_eq((intptr_t)bad, 0, "thread %d: %ld wrong results",
		             k, (long)(intptr_t)bad);
	}
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_eq(st.objects, 0, "%llu entries left",
	             (unsigned long long)st.objects);
}

/* A slab asked for 64-byte blocks hands out blocks on cache-line
 * boundaries, from every chunk (task specs are laid out on lines:
 * rt.h). */
Test(sched, a_slab_of_aligned_blocks_aligns_every_block)
{
	enum { N = 2000 };
	static void *b[N];
	rayc__slab s;

	rayc__slab_init(&s, 200, 0, RAYC__SLAB_XREC, 64);
	for (int i = 0; i < N; i++) {
		b[i] = rayc__slab_alloc(&s);
		cr_assert_not_null(b[i]);
		cr_assert_eq((uintptr_t)b[i] % 64, 0, "block %d at %p", i, b[i]);
		memset(b[i], 0xa5, 200);
	}
	cr_assert_gt(s.nchunks, 1, "more than one chunk");
	for (int i = 0; i < N; i++)
		rayc__slab_free(b[i]);
	rayc__slab_fini(&s);
}

/* Task specs and entries come from slabs that keep their chunks: a
 * second burst of tasks reuses the first one's memory (warm) instead of
 * faulting fresh pages in. */
Test(sched, a_second_burst_of_tasks_reuses_the_first_ones_memory)
{
	enum { N = 20000, ROUNDS = 4 };
	static rayc_ref refs[N];
	size_t t1 = 0, o1 = 0, t2, o2;

	/* The slabs' reuse: a direct task's memory is its record (the
	 * direct suite's). */
	rayc__test_set_direct(false);
	for (int round = 0; round < ROUNDS; round++) {
		for (int i = 0; i < N; i++)
			cr_assert_eq(rayc_call(&refs[i], "ident", RAYC_I64(i)),
			             RAYC_OK);
		/* Every entry made before the first is freed (a get
		 * without the lock does not record submissions). */
		rayc_stats st;
		cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
		cr_assert_geq(st.objects, N);
		for (int i = 0; i < N; i++) {
			int64_t v;
			cr_assert_eq(rayc_get_i64(refs[i], &v, 10000), RAYC_OK);
			cr_assert_eq(v, i);
			rayc_release(refs[i]);
		}
		rayc__test_slab_chunks(&t2, &o2);
		if (round == 0) {
			t1 = t2;
			o1 = o2;
		}
		/* 20,000 specs of 448 bytes and entries of 192 are more
		 * than a hundred 64 KiB chunks: kept, and no more made.  An
		 * entry whose last ref was let go by a worker (rt->mu was
		 * busy: rayc__obj_unpin), and its spec, wait in that
		 * worker's magazine, at most 32 of each: one chunk more at
		 * most. */
		cr_assert_geq(t1, 100);
		cr_assert_geq(o1, 60, "entry chunks %zu", o1);
		cr_assert_leq(t2, t1 + 1, "task chunks %zu then %zu", t1, t2);
		cr_assert_leq(o2, o1 + 1, "entry chunks %zu then %zu", o1, o2);
	}
}

/* A worker that records submissions handed over to it (rt->mu was busy
 * when they came) is neither idle nor running a task for that moment:
 * the task it queues must not pass for work that no worker is free for.
 * That once added a worker thread (on two CPUs with two workers and one
 * submitting thread: a third every time), one more thread than CPUs
 * taking turns at the lock. */
Test(sched, a_stream_of_tasks_from_one_thread_adds_no_worker)
{
	enum { N = 20000, ROUNDS = 5 };
	static rayc_ref refs[N];
	rayc_stats st;

	for (int round = 0; round < ROUNDS; round++) {
		for (int i = 0; i < N; i++)
			cr_assert_eq(rayc_call(&refs[i], "ident", RAYC_I64(i)),
			             RAYC_OK);
		for (int i = 0; i < N; i++) {
			int64_t v;
			cr_assert_eq(rayc_get_i64(refs[i], &v, 10000), RAYC_OK);
			cr_assert_eq(v, i);
			rayc_release(refs[i]);
		}
	}
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_eq(st.num_workers, 2, "%d worker threads for 2 workers",
	             st.num_workers);
}

/* rayc__event_wait_learn: a waiter whose waits outlast its spin (a reply
 * from another peer) learns to park at once; once its waits are short
 * again (the event set before it looks) it spins again. */
static rayc__event late_ev;

static void *set_late(void *arg)
{
	(void)arg;
	struct timespec ts = { 0, 2000000 }; /* 2 ms: 40 times the spin */
	nanosleep(&ts, NULL);
	rayc__event_set(&late_ev);
	return NULL;
}

Test(sched, a_waiter_whose_waits_run_long_parks_at_once)
{
	const int64_t spin = 50000;
	rayc__spin s = { 0 };

	for (int i = 0; i < 8; i++) {
		pthread_t th;
		cr_assert_eq(pthread_create(&th, NULL, set_late, NULL), 0);
		cr_assert(rayc__event_wait_learn(&late_ev, -1, spin, &s));
		pthread_join(th, NULL);
	}
	cr_assert_gt(s.avg_ns, spin, "after 8 waits of 2 ms it would spin "
	             "(average %lld ns)", (long long)s.avg_ns);
	for (int i = 0; i < 8; i++) {
		rayc__event_set(&late_ev);
		cr_assert(rayc__event_wait_learn(&late_ev, -1, spin, &s));
	}
	cr_assert_leq(s.avg_ns, spin, "after 8 waits of nothing it would "
	              "park (average %lld ns)", (long long)s.avg_ns);
}

/* rayc__event_set_after_unlock: a parked waiter woken from under a lock
 * is woken (the futex call) when its waker lets go of its last lock, or
 * before the waker waits itself; the event is set at once either way.
 * (A failed assertion here leaves locks held and a waiter asleep: the
 * test then also times out.) */
static rayc__event owed_ev;
static atomic_int owed_woke;

static void *wait_owed(void *arg)
{
	(void)arg;
	cr_assert(rayc__event_wait(&owed_ev, -1, 0)); /* parks at once */
	atomic_fetch_add(&owed_woke, 1);
	return NULL;
}

/* Starts a waiter on owed_ev and waits until it is parked. */
static pthread_t park_owed_waiter(void)
{
	pthread_t th;
	int64_t until = rayc__now_ns() + 10 * 1000000000LL;

	atomic_store(&owed_woke, 0);
	cr_assert_eq(pthread_create(&th, NULL, wait_owed, NULL), 0);
	while (atomic_load(&owed_ev.state) != 2)
		cr_assert_lt(rayc__now_ns(), until, "the waiter never parked");
	return th;
}

Test(sched, a_wake_from_under_a_lock_comes_at_the_last_unlock)
{
	rayc__mutex a, b;
	rayc__event mine = { 0 };

	rayc__mutex_init(&a);
	rayc__mutex_init(&b);
	pthread_t th = park_owed_waiter();
	rayc__mutex_lock(&a);
	rayc__mutex_lock(&b);
	/* The waiter is parked or about to be (it set the state to 2):
	 * the set is seen at once if it has not slept yet, and the futex
	 * wake-up it may need is owed. */
	rayc__event_set_after_unlock(&owed_ev);
	cr_assert_eq(rayc__wakes_owed, 1, "the wake-up is put off");
	rayc__mutex_unlock(&b);
	cr_assert_eq(rayc__wakes_owed, 1, "a lock is still held");
	rayc__mutex_unlock(&a);
	cr_assert_eq(rayc__wakes_owed, 0, "made at the last unlock");
	pthread_join(th, NULL); /* returns only if the waiter woke */
	cr_assert_eq(atomic_load(&owed_woke), 1);

	/* A waker that waits itself, still holding a lock, wakes first. */
	th = park_owed_waiter();
	rayc__mutex_lock(&a);
	rayc__event_set_after_unlock(&owed_ev);
	cr_assert_eq(rayc__wakes_owed, 1);
	cr_assert(!rayc__event_wait(&mine, rayc__now_ns(), 0));
	cr_assert_eq(rayc__wakes_owed, 0, "made before waiting");
	pthread_join(th, NULL);
	rayc__mutex_unlock(&a);

	/* With no lock held it wakes at once. */
	th = park_owed_waiter();
	rayc__event_set_after_unlock(&owed_ev);
	cr_assert_eq(rayc__wakes_owed, 0);
	pthread_join(th, NULL);
	rayc__mutex_fini(&b);
	rayc__mutex_fini(&a);
}

static atomic_int zero_ran;
static void zero_ret(rayc_ctx *c)
{
	(void)c;
	atomic_fetch_add(&zero_ran, 1);
}
RAYC_REMOTE(zero_ret)

Test(sched, a_task_of_no_returns_runs_for_its_effect)
{
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	rayc_stats st;

	atomic_store(&zero_ran, 0);
	o.num_returns = 0;
	for (int i = 0; i < 1000; i++)
		cr_assert_eq(rayc_call_opts(NULL, "zero_ret", &o), RAYC_OK,
		             "%s", rayc_errmsg());
	RT_WAIT_FOR(atomic_load(&zero_ran) == 1000, 20000);
	cr_assert_eq(atomic_load(&zero_ran), 1000);
	/* Nothing left behind: no entry, no spec. */
	RT_WAIT_FOR((rayc_stats_get(&st), st.lineage_tasks == 0), 5000);
	cr_assert_eq(st.lineage_tasks, 0);
	cr_assert_eq(st.objects, 0);
	o.num_returns = -1;
	cr_assert_eq(rayc_call_opts(NULL, "zero_ret", &o), RAYC_EINVAL);
	o.num_returns = 1;
	cr_assert_eq(rayc_call_opts(NULL, "zero_ret", &o), RAYC_EINVAL);
}

/* ------------------------------------------------------------------ */
/* Batches: a worker runs several quick tasks of one class per hold of   */
/* the lock (sched/execute.c).  A run that waits for a task of its own   */
/* batch must get it: the tasks not started go back to the queue, and    */
/* those that ran are completed before it parks.                         */
/* ------------------------------------------------------------------ */
static atomic_int batch_gate;
static rayc_ref batch_wanted; /* set before the gate opens */

static void batch_gate_fn(rayc_ctx *c)
{
	(void)c;
	while (!atomic_load(&batch_gate))
		sched_yield();
}
RAYC_REMOTE(batch_gate_fn)

static void batch_make(rayc_ctx *c)
{
	rayc_return_i64(c, 0, 7);
}
RAYC_REMOTE(batch_make)

/* With 0 it returns at once (so that runs teach the scheduler it is
 * quick); with 1 it gets batch_wanted, made by a task of its batch. */
static void batch_wait(rayc_ctx *c)
{
	int64_t v = 0, mode = 0;

	if (rayc_arg_i64(c, 0, &mode) != RAYC_OK || mode == 0)
		return;
	int rc = rayc_get_i64(batch_wanted, &v, 10000);
	if (rc != RAYC_OK) {
		rayc_fail(c, "get from a run of the batch: %s",
		          rayc_strerror(rc));
		return;
	}
	rayc_return_i64(c, 0, v);
}
RAYC_REMOTE(batch_wait)

/* The n quick tasks queued behind a test's runs: each made 7, and some
 * ran in a batch (more of them than `before`). */
static void get_quick(rayc_ref *more, int n, uint64_t before)
{
	for (int i = 0; i < n; i++) {
		cr_assert_eq(get_i64(more[i]), 7);
		rayc_release(more[i]);
	}
	cr_assert_gt(rayc__test_batched_runs(), before,
	             "the quick tasks ran as a batch");
}

static void batch_warm(void)
{
	rayc_ref r;

	for (int i = 0; i < 20; i++) {
		cr_assert_eq(rayc_call(&r, "batch_make"), RAYC_OK);
		cr_assert_eq(get_i64(r), 7);
		rayc_release(r);
		cr_assert_eq(rayc_call(&r, "batch_wait", RAYC_I64(0)), RAYC_OK);
		rayc_view v;
		cr_assert_eq(rayc_get(r, &v, 10000), RAYC_OK);
		rayc_view_release(&v);
		rayc_release(r);
	}
}

/* One worker, held by a gate while the waiter, its producer (before or
 * after it) and 20 more quick tasks queue up behind it: the worker then
 * takes them as one batch. */
static void batch_case(bool producer_first)
{
	rayc_ref gate, waiter, made, more[20];

	batch_warm();
	atomic_store(&batch_gate, 0);
	uint64_t before = rayc__test_batched_runs();
	cr_assert_eq(rayc_call(&gate, "batch_gate_fn"), RAYC_OK);
	if (producer_first)
		cr_assert_eq(rayc_call(&made, "batch_make"), RAYC_OK);
	cr_assert_eq(rayc_call(&waiter, "batch_wait", RAYC_I64(1)), RAYC_OK);
	if (!producer_first)
		cr_assert_eq(rayc_call(&made, "batch_make"), RAYC_OK);
	for (int i = 0; i < 20; i++)
		cr_assert_eq(rayc_call(&more[i], "batch_make"), RAYC_OK);
	batch_wanted = made;
	atomic_store(&batch_gate, 1);
	cr_assert_eq(get_i64(waiter), 7);
	cr_assert_eq(get_i64(made), 7);
	get_quick(more, 20, before);
	rayc_release(waiter);
	rayc_release(made);
	rayc_release(gate);
}

/* Any function timed under a second counts as quick here: under ASan
 * an empty task may take more than the 2 us of a normal build. */
static void rt_init1(void)
{
	rayc__test_set_direct(false); /* the queues' batches */
	rt_start(1);
	rayc__test_set_quick_ns(1000000000);
}

static void rt_init2_quick(void)
{
	rayc__test_set_direct(false); /* the queues' batches */
	rt_start(2);
	rayc__test_set_quick_ns(1000000000);
}

TestSuite(batch, .init = rt_init1, .fini = rt_stop, .timeout = 60);

Test(batch, a_run_that_waits_for_a_task_later_in_its_batch_gets_it)
{
	batch_case(false);
}

Test(batch, a_run_that_waits_for_a_task_earlier_in_its_batch_gets_it)
{
	batch_case(true);
}

/* Two workers, both held by gates while a batch queues up; nothing a
 * batch holds may wait on the batch's owner: a run that polls (rayc_wait
 * with no wait) for a task queued after it sees it run (the other worker
 * takes the runs not started), and the driver gets the result of a run
 * before it while it spins on memory. */
static atomic_int batch_flag;

static void batch_poll(rayc_ctx *c)
{
	int64_t mode = 0;

	if (rayc_arg_i64(c, 0, &mode) != RAYC_OK || mode == 0)
		return;
	int64_t end = rt_now_ms() + 10000;
	size_t nready = 0;
	while (nready == 0 && rt_now_ms() < end) {
		uint8_t ready;
		(void)rayc_wait(&batch_wanted, 1, 1, 0, &ready, &nready);
		if (nready == 0)
			sched_yield();
	}
	atomic_store(&batch_flag, 1); /* done polling */
	rayc_return_i64(c, 0, (int64_t)nready);
}
RAYC_REMOTE(batch_poll)

static void batch_spin(rayc_ctx *c)
{
	int64_t mode = 0;

	if (rayc_arg_i64(c, 0, &mode) != RAYC_OK || mode == 0)
		return;
	int64_t end = rt_now_ms() + 10000;
	while (!atomic_load(&batch_flag) && rt_now_ms() < end)
		sched_yield();
	rayc_return_i64(c, 0, atomic_load(&batch_flag));
}
RAYC_REMOTE(batch_spin)

/* Gates on both workers; then first, second and 30 quick tasks more. */
static void batch_two(const char *first, const char *second, rayc_ref *r1,
                      rayc_ref *r2)
{
	rayc_ref gate[2], more[30], r;
	const char *warm[2] = { first, second };

	for (int k = 0; k < 2; k++)
		for (int i = 0; i < 20; i++) {
			bool mode_arg = strcmp(warm[k], "batch_make") != 0;
			cr_assert_eq(mode_arg ? rayc_call(&r, warm[k], RAYC_I64(0))
			                      : rayc_call(&r, warm[k]),
			             RAYC_OK);
			rayc_view v;
			cr_assert_eq(rayc_get(r, &v, 10000), RAYC_OK);
			rayc_view_release(&v);
			rayc_release(r);
		}
	atomic_store(&batch_gate, 0);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(rayc_call(&gate[i], "batch_gate_fn"), RAYC_OK);
	cr_assert_eq(strcmp(first, "batch_make") != 0
	                     ? rayc_call(r1, first, RAYC_I64(1))
	                     : rayc_call(r1, first),
	             RAYC_OK);
	cr_assert_eq(strcmp(second, "batch_make") != 0
	                     ? rayc_call(r2, second, RAYC_I64(1))
	                     : rayc_call(r2, second),
	             RAYC_OK);
	batch_wanted = *r2; /* what batch_poll polls for */
	for (int i = 0; i < 30; i++)
		cr_assert_eq(rayc_call(&more[i], "batch_make"), RAYC_OK);
	uint64_t before = rayc__test_batched_runs();
	atomic_store(&batch_gate, 1);
	get_quick(more, 30, before);
	for (int i = 0; i < 2; i++)
		rayc_release(gate[i]);
}

/* A run's completion may wait for the batch's end (sched/execute.c);
 * whoever looks for its result must not wait on the runs after it.  Each
 * test below holds the one worker with a gate while a batch queues behind
 * it: the runs the test adds, then 20 quick tasks. */

static atomic_int batch_hold_started;

/* Returns 7; with 1, once a thread or a task waits for batch_wanted (its
 * own result). */
static void batch_make_held(rayc_ctx *c)
{
	int64_t mode = 0;

	if (rayc_arg_i64(c, 0, &mode) == RAYC_OK && mode == 1) {
		atomic_store(&batch_hold_started, 1);
		int64_t end = rt_now_ms() + 10000;
		while (!rayc__test_waited_for(batch_wanted) &&
		       rt_now_ms() < end)
			sched_yield();
	}
	rayc_return_i64(c, 0, 7);
}
RAYC_REMOTE(batch_make_held)

/* Returns 7; with 1 it sleeps 1 ms first: a run that turned slow. */
static void batch_sleep(rayc_ctx *c)
{
	int64_t mode = 0;

	if (rayc_arg_i64(c, 0, &mode) == RAYC_OK && mode == 1) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	rayc_return_i64(c, 0, 7);
}
RAYC_REMOTE(batch_sleep)

/* Gets r's result, whatever it is, and releases r. */
static void run_done(rayc_ref r)
{
	rayc_view v;

	cr_assert_eq(rayc_get(r, &v, 10000), RAYC_OK);
	rayc_view_release(&v);
	rayc_release(r);
}

/* Runs fn once (with mode 0 when it takes one) and gets its result. */
static void run_once(const char *fn, bool mode_arg)
{
	rayc_ref r;

	cr_assert_eq(mode_arg ? rayc_call(&r, fn, RAYC_I64(0))
	                      : rayc_call(&r, fn),
	             RAYC_OK);
	run_done(r);
}

struct scene {
	rayc_ref gate, more[20];
	uint64_t before;
};

/* Every function below runs quick first; then the gate. */
static void scene_begin(struct scene *s)
{
	static const struct {
		const char *fn;
		bool mode_arg;
	} fns[] = { { "batch_make", false },     { "batch_spin", true },
		    { "batch_poll", true },      { "batch_make_held", true },
		    { "batch_sleep", true },     { "batch_set_flag", false } };

	for (size_t k = 0; k < sizeof(fns) / sizeof(fns[0]); k++)
		for (int i = 0; i < 20; i++)
			run_once(fns[k].fn, fns[k].mode_arg);
	atomic_store(&batch_gate, 0);
	atomic_store(&batch_flag, 0);
	atomic_store(&batch_hold_started, 0);
	s->before = rayc__test_batched_runs();
	cr_assert_eq(rayc_call(&s->gate, "batch_gate_fn"), RAYC_OK);
}

/* The 20 quick tasks after the test's runs; the gate opens unless the
 * test opens it itself. */
static void scene_open(struct scene *s, bool open)
{
	for (int i = 0; i < 20; i++)
		cr_assert_eq(rayc_call(&s->more[i], "batch_make"), RAYC_OK);
	if (open)
		atomic_store(&batch_gate, 1);
}

static void scene_end(struct scene *s)
{
	get_quick(s->more, 20, s->before);
	rayc_release(s->gate);
}

/* The end of a scene whose run `made` came before the spinner: the
 * spinner saw the flag, and the rest as scene_end. */
static void scene_end_spun(struct scene *s, rayc_ref made, rayc_ref spinner)
{
	cr_assert_eq(get_i64(spinner), 1, "the spinner never saw the flag");
	scene_end(s);
	rayc_release(made);
	rayc_release(spinner);
}

/* Opens the gate once the driver waits in rayc_get for *arg. */
static void *open_when_waited_for(void *arg)
{
	rayc_ref r = *(rayc_ref *)arg;

	RT_WAIT_FOR(rayc__test_waited_for(r), 10000);
	atomic_store(&batch_gate, 1);
	return NULL;
}

/* The getter parks before the batch starts: the batch marks the run. */
Test(batch, a_parked_getter_gets_a_run_while_a_later_run_of_its_batch_spins)
{
	struct scene s;
	rayc_ref made, spinner;
	pthread_t th;
	int64_t v = 0;

	scene_begin(&s);
	cr_assert_eq(rayc_call(&made, "batch_make"), RAYC_OK);
	cr_assert_eq(rayc_call(&spinner, "batch_spin", RAYC_I64(1)), RAYC_OK);
	scene_open(&s, false);
	cr_assert_eq(pthread_create(&th, NULL, open_when_waited_for, &made),
	             0);
	/* Longer than the spinner spins: had the run's completion waited
	 * for the batch's next run, the spinner gives up and says so. */
	int rc = rayc_get_i64(made, &v, 20000);
	atomic_store(&batch_flag, 1);
	pthread_join(th, NULL);
	cr_assert_eq(rc, RAYC_OK, "the run before the spinner: %s",
	             rayc_errmsg());
	cr_assert_eq(v, 7);
	scene_end_spun(&s, made, spinner);
}

/* The getter comes while the run is under way: it marks the run, which
 * hands itself over as it ends although a later run of its batch spins. */
Test(batch, a_getter_that_comes_while_the_run_is_under_way_gets_it)
{
	struct scene s;
	rayc_ref made, spinner;
	int64_t v = 0;

	scene_begin(&s);
	cr_assert_eq(rayc_call(&made, "batch_make_held", RAYC_I64(1)),
	             RAYC_OK);
	cr_assert_eq(rayc_call(&spinner, "batch_spin", RAYC_I64(1)), RAYC_OK);
	batch_wanted = made;
	scene_open(&s, true);
	RT_WAIT_FOR(atomic_load(&batch_hold_started), 5000);
	cr_assert(atomic_load(&batch_hold_started));
	/* Longer than the spinner spins, as above. */
	int rc = rayc_get_i64(made, &v, 20000);
	atomic_store(&batch_flag, 1);
	cr_assert_eq(rc, RAYC_OK, "the run before the spinner: %s",
	             rayc_errmsg());
	cr_assert_eq(v, 7);
	scene_end_spun(&s, made, spinner);
}

/* A task submitted with an argument a run of a batch made, once that run
 * ended and while a later run of the batch spins, finds it ready: the
 * submission completes it (nobody else would: the one worker spins). */
Test(batch, a_task_submitted_after_a_run_ended_completes_it)
{
	struct scene s;
	rayc_ref made, spinner, dep;

	scene_begin(&s);
	cr_assert_eq(rayc_call(&made, "batch_make"), RAYC_OK);
	cr_assert_eq(rayc_call(&spinner, "batch_spin", RAYC_I64(1)), RAYC_OK);
	scene_open(&s, true);
	/* Its end published (not only its function returned); no call
	 * that would complete it. */
	RT_WAIT_FOR(rayc__test_run_ended(made), 5000);
	cr_assert(rayc__test_run_ended(made), "the run never ended");
	cr_assert_eq(rayc_call(&dep, "batch_set_flag", RAYC_REF(made)),
	             RAYC_OK);
	bool ready = rayc__test_ready(made);
	atomic_store(&batch_flag, 1);
	cr_assert(ready, "the run that made the argument was not completed");
	run_done(dep);
	scene_end_spun(&s, made, spinner);
}

/* made (by fn with arg mode), optionally a task needing it queued before
 * the batch starts (dep_first) or submitted once made's run is under way
 * (dep_during), a run after it (`after`, mode 1), then the spinner: the
 * batch is [made, after, spinner, ...] or [made, spinner, ...].  Waits,
 * calling nothing that completes runs, for made to be ready, then lets
 * the spinner go; true if made was ready. */
static bool batch_ready_while_spinning(const char *fn, int64_t mode,
                                       bool dep_first, bool dep_during,
                                       const char *after)
{
	struct scene s;
	rayc_ref made, spinner, dep, mid;

	scene_begin(&s);
	cr_assert_eq(rayc_call(&made, fn, RAYC_I64(mode)), RAYC_OK);
	batch_wanted = made;
	if (dep_first)
		cr_assert_eq(rayc_call(&dep, "batch_set_flag", RAYC_REF(made)),
		             RAYC_OK);
	if (after != NULL)
		cr_assert_eq(rayc_call(&mid, after, RAYC_I64(1)), RAYC_OK);
	cr_assert_eq(rayc_call(&spinner, "batch_spin", RAYC_I64(1)), RAYC_OK);
	scene_open(&s, true);
	if (dep_during) {
		RT_WAIT_FOR(atomic_load(&batch_hold_started), 5000);
		cr_assert(atomic_load(&batch_hold_started));
		cr_assert_eq(rayc_call(&dep, "batch_set_flag", RAYC_REF(made)),
		             RAYC_OK);
	}
	RT_WAIT_FOR(rayc__test_ready(made), 5000);
	bool ready = rayc__test_ready(made);
	atomic_store(&batch_flag, 1);
	if (dep_first || dep_during)
		run_done(dep);
	if (after != NULL) {
		cr_assert_eq(get_i64(mid), 7);
		rayc_release(mid);
	}
	scene_end_spun(&s, made, spinner);
	return ready;
}

/* A task queued before the batch starts needs the run's result: the batch
 * marks the run when it starts. */
Test(batch, a_run_a_waiting_task_needs_hands_itself_over)
{
	cr_assert(batch_ready_while_spinning("batch_sleep", 0, true, false,
	                                     NULL),
	          "the run a waiting task needs was not completed");
}

/* The task needing it is submitted while the run is under way (the run
 * ends once it sees it): the submission marks the run. */
Test(batch, a_task_submitted_while_the_run_is_under_way_is_seen)
{
	cr_assert(batch_ready_while_spinning("batch_make_held", 1, false, true,
	                                     NULL),
	          "the run a task submitted meanwhile needs was not completed");
}

/* Nobody waits, but a run after it took 1 ms: the ended run is completed
 * RAYC__DEFER_NS after it ended, as the slow one ends. */
Test(batch, a_slow_run_lets_the_runs_before_it_be_completed)
{
	cr_assert(batch_ready_while_spinning("batch_sleep", 0, false, false,
	                                     "batch_sleep"),
	          "the run before a slow one was not completed");
}

Test(batch, a_run_that_polls_for_a_task_earlier_in_its_batch_sees_it)
{
	struct scene s;
	rayc_ref made, poller;

	scene_begin(&s);
	cr_assert_eq(rayc_call(&made, "batch_make"), RAYC_OK);
	cr_assert_eq(rayc_call(&poller, "batch_poll", RAYC_I64(1)), RAYC_OK);
	batch_wanted = made;
	scene_open(&s, true);
	/* No call into rayc meanwhile: a parked getter would complete the
	 * run (sched/execute.c), so the poller must do it. */
	RT_WAIT_FOR(atomic_load(&batch_flag), 15000);
	cr_assert_eq(get_i64(poller), 1, "the poller never saw it ready");
	scene_end(&s);
	rayc_release(made);
	rayc_release(poller);
}

TestSuite(batch2, .init = rt_init2_quick, .fini = rt_stop, .timeout = 60);

Test(batch2, a_run_that_polls_for_a_task_later_in_its_batch_sees_it_run)
{
	rayc_ref poller, made;

	batch_two("batch_poll", "batch_make", &poller, &made);
	cr_assert_eq(get_i64(poller), 1, "the poller never saw it ready");
	rayc_release(poller);
	rayc_release(made);
}

Test(batch2, the_result_of_a_run_is_got_while_a_later_run_of_its_batch_spins)
{
	rayc_ref made, spinner;
	int64_t v = 0;

	atomic_store(&batch_flag, 0);
	batch_two("batch_make", "batch_spin", &made, &spinner);
	cr_assert_eq(rayc_get_i64(made, &v, 5000), RAYC_OK,
	             "the run before the spinner: %s", rayc_errmsg());
	cr_assert_eq(v, 7);
	atomic_store(&batch_flag, 1);
	cr_assert_eq(get_i64(spinner), 1, "the spinner never saw the flag");
	rayc_release(made);
	rayc_release(spinner);
}


/* Sets batch_flag: run once its argument, made by a run of a batch, is
 * there. */
static void batch_set_flag(rayc_ctx *c)
{
	(void)c;
	atomic_store(&batch_flag, 1);
}
RAYC_REMOTE(batch_set_flag)

/* Two workers, the driver calling nothing: a task needing what a run made
 * runs while a later run of that batch spins (the run hands itself over,
 * or the other worker completes it when it runs out of work). */
Test(batch2, a_task_needing_a_run_of_a_batch_runs_while_a_later_run_spins)
{
	rayc_ref gate[2], made, dep, spinner, more[30];

	for (int i = 0; i < 20; i++) {
		run_once("batch_make", false);
		run_once("batch_spin", true);
	}
	atomic_store(&batch_gate, 0);
	atomic_store(&batch_flag, 0);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(rayc_call(&gate[i], "batch_gate_fn"), RAYC_OK);
	cr_assert_eq(rayc_call(&made, "batch_make"), RAYC_OK);
	cr_assert_eq(rayc_call(&dep, "batch_set_flag", RAYC_REF(made)),
	             RAYC_OK);
	cr_assert_eq(rayc_call(&spinner, "batch_spin", RAYC_I64(1)), RAYC_OK);
	for (int i = 0; i < 30; i++)
		cr_assert_eq(rayc_call(&more[i], "batch_make"), RAYC_OK);
	uint64_t before = rayc__test_batched_runs();
	atomic_store(&batch_gate, 1);
	/* No call into rayc meanwhile: nothing here completes runs. */
	RT_WAIT_FOR(atomic_load(&batch_flag), 5000);
	cr_assert(atomic_load(&batch_flag),
	          "the task needing the run never ran");
	cr_assert_eq(get_i64(spinner), 1, "the spinner never saw the flag");
	get_quick(more, 30, before);
	rayc_release(made);
	rayc_release(dep);
	rayc_release(spinner);
	for (int i = 0; i < 2; i++)
		rayc_release(gate[i]);
}
