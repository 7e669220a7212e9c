/* test_sched.c -- the local scheduler: dataflow, nested tasks, blocked
 * gets that give their CPU back, resource-aware dispatch. */
#include <stdatomic.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"

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
