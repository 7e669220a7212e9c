/* test_api.c -- the public contract through rayc.h only: lifecycle,
 * configuration, bad input, error objects and their propagation,
 * retries. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "helpers.h"
#include "testing.h"

static void echo_i64(rayc_ctx *c)
{
	int64_t v;
	if (rayc_arg_i64(c, 0, &v) != RAYC_OK) {
		rayc_fail(c, "bad arg: %s", rayc_errmsg());
		return;
	}
	rayc_return_i64(c, 0, v);
}
RAYC_REMOTE(echo_i64)

static void divide(rayc_ctx *c)
{
	int64_t a, b;
	rayc_arg_i64(c, 0, &a);
	rayc_arg_i64(c, 1, &b);
	if (b == 0) {
		rayc_fail(c, "division by zero (%lld/0)", (long long)a);
		return;
	}
	rayc_return_i64(c, 0, a / b);
}
RAYC_REMOTE(divide)

static void inc(rayc_ctx *c)
{
	int64_t a;
	rayc_arg_i64(c, 0, &a);
	rayc_return_i64(c, 0, a + 1);
}
RAYC_REMOTE(inc)

/* Checks every argument accessor's error paths from inside a task and
 * returns a bitmask of checks that passed. */
static void probe_args(rayc_ctx *c)
{
	int64_t i;
	double f;
	const void *p;
	size_t n;
	rayc_ref r;
	int ok = 0;

	ok |= (rayc_arg_i64(c, 5, &i) == RAYC_ERANGE) << 0;
	ok |= (rayc_arg_f64(c, 0, &f) == RAYC_ETYPE) << 1;
	ok |= (rayc_arg_i64(c, 1, &i) == RAYC_ETYPE) << 2;
	ok |= (rayc_arg_data(c, 1, &p, &n) == RAYC_OK && n == 5 &&
	       memcmp(p, "hello", 6) == 0) << 3;
	ok |= (rayc_arg_ref(c, 0, &r) == RAYC_ETYPE) << 4;
	ok |= (rayc_arg_type(c, 2) == RAYC_TYPE_BYTES) << 5;
	ok |= (rayc_arg_data(c, 2, &p, &n) == RAYC_OK && n == 3) << 6;
	ok |= (rayc_arg_i64(c, 0, NULL) == RAYC_EINVAL) << 7;
	ok |= (rayc_return_i64(c, 1, 0) == RAYC_ERANGE) << 8;
	ok |= (rayc_arg_count(c) == 4) << 9;
	ok |= (rayc_arg_f64(c, 3, &f) == RAYC_OK && f == 0.5) << 10;
	rayc_return_i64(c, 0, ok);
}
RAYC_REMOTE(probe_args)

TestSuite(api, .init = rt_init2, .fini = rt_stop, .timeout = 60);
TestSuite(lifecycle, .timeout = 60);

Test(lifecycle, calls_before_init_and_double_init)
{
	rayc_ref r;
	rayc_view v;
	cr_assert_eq(rayc_call(&r, "inc", RAYC_I64(1)), RAYC_ESTATE);
	cr_assert_eq(rayc_get(r, &v, 0), RAYC_ESTATE);
	cr_assert_eq(rayc_put(&r, "x", 1), RAYC_ESTATE);
	cr_assert_eq(rayc_shutdown(), RAYC_ESTATE);
	rt_start(2);
	cr_assert_eq(rayc_init(NULL), RAYC_ESTATE);
	rt_stop();
	/* And again: init after shutdown works. */
	rt_start(1);
	cr_assert_eq(rayc_call(&r, "inc", RAYC_I64(1)), RAYC_OK);
	cr_assert_eq(get_i64(r), 2);
	rayc_release(r);
	rt_stop();
}

Test(lifecycle, init_null_uses_environment)
{
	setenv("RAYC_NUM_WORKERS", "3", 1);
	setenv("RAYC_RESOURCES", "GPU=2,disk=1.5", 1);
	setenv("RAYC_OBJECT_STORE_BYTES", "64M", 1);
	setenv("RAYC_LOG_LEVEL", "error", 1);
	cr_assert_eq(rayc_init(NULL), RAYC_OK, "%s", rayc_errmsg());
	double total, avail;
	cr_assert_eq(rayc_resource_get("CPU", &total, &avail), RAYC_OK);
	cr_assert_float_eq(total, 3, 1e-9);
	cr_assert_eq(rayc_resource_get("GPU", &total, NULL), RAYC_OK);
	cr_assert_float_eq(total, 2, 1e-9);
	cr_assert_eq(rayc_resource_get("disk", &total, NULL), RAYC_OK);
	cr_assert_float_eq(total, 1.5, 1e-9);
	cr_assert_eq(rayc_resource_get("tpu", &total, NULL), RAYC_ENOTFOUND);
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_eq(st.store_capacity_bytes, (uint64_t)64 << 20);
	cr_assert_eq(st.num_workers, 3);
	rt_stop();
}

Test(lifecycle, bad_environment_is_a_clear_error)
{
	setenv("RAYC_RESOURCES", "GPU", 1);
	cr_assert_eq(rayc_init(NULL), RAYC_EINVAL);
	cr_assert(strstr(rayc_errmsg(), "RAYC_RESOURCES") != NULL);
	unsetenv("RAYC_RESOURCES");
	setenv("RAYC_OBJECT_STORE_BYTES", "lots", 1);
	cr_assert_eq(rayc_init(NULL), RAYC_EINVAL);
	unsetenv("RAYC_OBJECT_STORE_BYTES");
	setenv("RAYC_LOG_LEVEL", "loud", 1);
	cr_assert_eq(rayc_init(NULL), RAYC_EINVAL);
	unsetenv("RAYC_LOG_LEVEL");
	rayc_config c = { .store_dir = "/nonexistent/dir" };
	cr_assert_eq(rayc_init(&c), RAYC_ESYS);
	cr_assert(strstr(rayc_errmsg(), "/nonexistent/dir") != NULL);
	/* Nothing half-started: a good init still works. */
	rt_start(1);
	rt_stop();
}

Test(api, strerror_never_null)
{
	for (int e = -5; e < 40; e++) {
		cr_assert_not_null(rayc_strerror(e));
		cr_assert_gt(strlen(rayc_strerror(e)), 0);
	}
	cr_assert_str_eq(rayc_strerror(RAYC_OK), "success");
}

Test(api, bad_input_gives_clear_errors)
{
	rayc_ref r;
	rayc_view v;
	cr_assert_eq(rayc_call(NULL, "inc", RAYC_I64(1)), RAYC_EINVAL);
	cr_assert_eq(rayc_call(&r, NULL, RAYC_I64(1)), RAYC_EINVAL);
	cr_assert_eq(rayc_call(&r, "no_such_fn", RAYC_I64(1)), RAYC_ENOFUNC);
	cr_assert(strstr(rayc_errmsg(), "no_such_fn") != NULL, "%s",
	          rayc_errmsg());
	cr_assert_eq(rayc_call(&r, "inc", RAYC_STR(NULL)), RAYC_EINVAL);
	cr_assert_eq(rayc_call(&r, "inc", RAYC_BYTES(NULL, 5)), RAYC_EINVAL);
	rayc_arg weird = { .type = (rayc_type)99 };
	cr_assert_eq(rayc_call_array(&r, "inc", NULL, &weird, 1), RAYC_EINVAL);
	rayc_ref bogus = { { 1, 2 } };
	cr_assert_eq(rayc_call(&r, "inc", RAYC_REF(bogus)), RAYC_ENOTFOUND);
	cr_assert_eq(rayc_get(bogus, &v, 0), RAYC_ENOTFOUND);
	cr_assert_eq(rayc_release(bogus), RAYC_ENOTFOUND);
	cr_assert_eq(rayc_get(bogus, NULL, 0), RAYC_EINVAL);
	cr_assert_eq(rayc_put(NULL, "x", 1), RAYC_EINVAL);
	cr_assert_eq(rayc_put(&r, NULL, 5), RAYC_EINVAL);
	cr_assert_eq(rayc_put(&r, "x", (size_t)1 << 40), RAYC_ETOOBIG);
	cr_assert_eq(rayc_wait(NULL, 3, 1, 0, NULL, NULL), RAYC_EINVAL);
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.num_returns = -1;
	cr_assert_eq(rayc_call_opts(&r, "inc", &o, RAYC_I64(1)), RAYC_EINVAL);
	o.num_returns = 4097;
	cr_assert_eq(rayc_call_opts(&r, "inc", &o, RAYC_I64(1)), RAYC_EINVAL);
	o = RAYC_TASK_OPTS_DEFAULT;
	o.num_cpus = -1;
	cr_assert_eq(rayc_call_opts(&r, "inc", &o, RAYC_I64(1)), RAYC_EINVAL);
	cr_assert_eq(rayc_register("inc", echo_i64), RAYC_EEXIST);
	cr_assert_eq(rayc_register("inc", inc), RAYC_OK, "same pair is fine");
	cr_assert_eq(rayc_register(NULL, inc), RAYC_EINVAL);
	/* Nothing leaked into the table by the failed calls. */
	rayc_stats st;
	rayc_stats_get(&st);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.tasks_submitted, 0);
	cr_assert_eq(rayc_get_i64(bogus, NULL, 0), RAYC_EINVAL);
}

Test(api, wrong_arg_index_and_type_inside_task)
{
	rayc_ref r;
	cr_assert_eq(rayc_call(&r, "probe_args", RAYC_I64(1), RAYC_STR("hello"),
	                       RAYC_BYTES("abc", 3), RAYC_F64(0.5)),
	             RAYC_OK);
	cr_assert_eq(get_i64(r), 0x7ff);
	rayc_release(r);
	double d;
	cr_assert_eq(rayc_call(&r, "inc", RAYC_I64(1)), RAYC_OK);
	cr_assert_eq(rayc_get_f64(r, &d, 5000), RAYC_ETYPE);
	rayc_release(r);
}

Test(api, explicit_register_and_call)
{
	cr_assert_eq(rayc_register("explicit_inc", inc), RAYC_OK);
	rayc_ref r;
	cr_assert_eq(rayc_call(&r, "explicit_inc", RAYC_I64(41)), RAYC_OK);
	cr_assert_eq(get_i64(r), 42);
	rayc_release(r);
}

Test(api, failed_task_gives_etask_with_message)
{
	rayc_ref r;
	rayc_view v;
	cr_assert_eq(rayc_call(&r, "divide", RAYC_I64(7), RAYC_I64(0)),
	             RAYC_OK);
	cr_assert_eq(rayc_get(r, &v, 5000), RAYC_ETASK);
	cr_assert_eq(v.type, RAYC_TYPE_ERROR);
	cr_assert(strstr(v.data, "division by zero (7/0)") != NULL, "%s",
	          (const char *)v.data);
	cr_assert(strstr(rayc_errmsg(), "division by zero") != NULL);
	rayc_view_release(&v);
	rayc_release(r);
}

/* A chain of 100 dependents of a failed task all fail with the root
 * cause, without running. */
Test(api, error_propagates_through_chain)
{
	rayc_ref root, cur;
	cr_assert_eq(rayc_call(&root, "divide", RAYC_I64(1), RAYC_I64(0)),
	             RAYC_OK);
	cur = root;
	rayc_ref_dup(cur);
	for (int i = 0; i < 100; i++) {
		rayc_ref next;
		cr_assert_eq(rayc_call(&next, "inc", RAYC_REF(cur)), RAYC_OK);
		rayc_release(cur);
		cur = next;
	}
	rayc_view v;
	cr_assert_eq(rayc_get(cur, &v, 5000), RAYC_ETASK);
	cr_assert(strstr(v.data, "task divide failed: division by zero") !=
	                  NULL,
	          "%s", (const char *)v.data);
	rayc_view_release(&v);
	rayc_stats st;
	rayc_stats_get(&st);
	cr_assert_eq(st.tasks_executed, 1, "dependents never ran");
	cr_assert_eq(st.tasks_failed, 1);
	/* A new dependent of the failed ref fails at once too. */
	rayc_ref late;
	cr_assert_eq(rayc_call(&late, "inc", RAYC_REF(root)), RAYC_OK);
	cr_assert_eq(rayc_get(late, &v, 5000), RAYC_ETASK);
	rayc_view_release(&v);
	rayc_release(late);
	rayc_release(cur);
	rayc_release(root);
}

static atomic_int flaky_runs;

static void flaky(rayc_ctx *c)
{
	int n = atomic_fetch_add(&flaky_runs, 1);
	if (n < 2) {
		rayc_fail(c, "transient failure %d", n);
		return;
	}
	rayc_return_i64(c, 0, 100 * rayc_task_attempt(c) + n);
}
RAYC_REMOTE(flaky)

Test(api, retry_exceptions_reruns_failed_task)
{
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.retry_exceptions = 1;
	o.max_retries = 3;
	rayc_ref r;
	cr_assert_eq(rayc_call_opts(&r, "flaky", &o), RAYC_OK);
	cr_assert_eq(get_i64(r), 202, "third run is attempt 2");
	cr_assert_eq(atomic_load(&flaky_runs), 3);
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_eq(st.tasks_retried, 2, "%llu retries counted",
	             (unsigned long long)st.tasks_retried);
	rayc_release(r);
}

Test(api, retries_exhausted_and_not_asked)
{
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	rayc_ref r;
	rayc_view v;
	/* Without retry_exceptions, application errors are final. */
	cr_assert_eq(rayc_call_opts(&r, "flaky", &o), RAYC_OK);
	cr_assert_eq(rayc_get(r, &v, 5000), RAYC_ETASK);
	rayc_view_release(&v);
	rayc_release(r);
	cr_assert_eq(atomic_load(&flaky_runs), 1);
	/* With one retry allowed: two runs, still failing. */
	o.retry_exceptions = 1;
	o.max_retries = 0;
	cr_assert_eq(rayc_call_opts(&r, "flaky", &o), RAYC_OK);
	cr_assert_eq(rayc_get(r, &v, 5000), RAYC_ETASK);
	cr_assert(strstr(v.data, "transient failure 1") != NULL, "%s",
	          (const char *)v.data);
	rayc_view_release(&v);
	rayc_release(r);
	cr_assert_eq(atomic_load(&flaky_runs), 2);
}

static void spawner(rayc_ctx *c)
{
	int64_t n;
	rayc_arg_i64(c, 0, &n);
	rayc_ref rs[16];
	int64_t sum = 0;
	for (int64_t i = 0; i < n; i++)
		if (rayc_call(&rs[i], "inc", RAYC_I64(i)) != RAYC_OK) {
			rayc_fail(c, "submit");
			return;
		}
	for (int64_t i = 0; i < n; i++) {
		int64_t v;
		if (rayc_get_i64(rs[i], &v, -1) != RAYC_OK) {
			rayc_fail(c, "get");
			return;
		}
		sum += v;
		rayc_release(rs[i]);
	}
	rayc_return_i64(c, 0, sum);
}
RAYC_REMOTE(spawner)

Test(api, tasks_submit_tasks)
{
	rayc_ref r[8];
	for (int i = 0; i < 8; i++)
		cr_assert_eq(rayc_call(&r[i], "spawner", RAYC_I64(16)), RAYC_OK);
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(get_i64(r[i]), 136);
		rayc_release(r[i]);
	}
}

static void big_return(rayc_ctx *c)
{
	int64_t n;
	void *p;
	rayc_arg_i64(c, 0, &n);
	if (rayc_return_alloc(c, 0, (size_t)n, &p) != RAYC_OK) {
		rayc_fail(c, "alloc: %s", rayc_errmsg());
		return;
	}
	memset(p, 'z', (size_t)n);
}
RAYC_REMOTE(big_return)

static void checksum(rayc_ctx *c)
{
	const void *p;
	size_t n;
	if (rayc_arg_data(c, 0, &p, &n) != RAYC_OK) {
		rayc_fail(c, "arg");
		return;
	}
	int64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += ((const unsigned char *)p)[i];
	rayc_return_i64(c, 0, s);
}
RAYC_REMOTE(checksum)

Test(api, large_return_written_in_place_and_passed_by_ref)
{
	rayc_ref big, sum;
	cr_assert_eq(rayc_call(&big, "big_return", RAYC_I64(3 << 20)), RAYC_OK);
	cr_assert_eq(rayc_call(&sum, "checksum", RAYC_REF(big)), RAYC_OK);
	cr_assert_eq(get_i64(sum), (int64_t)'z' * (3 << 20));
	rayc_view v;
	cr_assert_eq(rayc_get(big, &v, 5000), RAYC_OK);
	cr_assert_eq(v.len, (size_t)3 << 20);
	rayc_view_release(&v);
	rayc_release(big);
	rayc_release(sum);
	rayc_stats st;
	rayc_stats_get(&st);
	cr_assert_eq(st.store_used_bytes, 0);
	/* A return larger than the store is an error object, not a crash. */
	cr_assert_eq(rayc_call(&big, "big_return", RAYC_I64(1LL << 40)),
	             RAYC_OK);
	cr_assert_eq(rayc_get(big, &v, 5000), RAYC_ETASK);
	cr_assert(strstr(v.data, "alloc") != NULL);
	rayc_view_release(&v);
	rayc_release(big);
}

/* Counted from whichever thread logs. */
static atomic_int log_calls;
static void count_log(int level, const char *id, const char *msg, void *arg)
{
	(void)level;
	(void)id;
	(void)msg;
	atomic_fetch_add((atomic_int *)arg, 1);
}

Test(api, replaceable_logger_sees_messages)
{
	rayc_set_logger(count_log, &log_calls);
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.retry_exceptions = 1;
	rayc_ref r;
	cr_assert_eq(rayc_call_opts(&r, "flaky", &o), RAYC_OK);
	get_i64(r);
	rayc_release(r);
	/* A message logged under a rayc lock is passed on as its thread
	 * lets go of it: the retry it announces may have run, and the
	 * result been got, by then. */
	RT_WAIT_FOR(atomic_load(&log_calls) >= 2, 10000);
	rayc_set_logger(NULL, NULL);
	cr_assert_geq(atomic_load(&log_calls), 2, "retries are logged");
}

/* rayc.h promises the logger never runs with a rayc lock held: one that
 * calls back into rayc (here rayc_stats_get, which takes the runtime
 * lock) must not deadlock.  The retry message is logged while the task is
 * completed under that lock. */
static atomic_int reentrant_calls;

static void reentrant_log(int level, const char *id, const char *msg,
                          void *arg)
{
	rayc_stats st;

	(void)level;
	(void)id;
	(void)msg;
	(void)arg;
	if (rayc_stats_get(&st) == RAYC_OK)
		atomic_fetch_add(&reentrant_calls, 1);
}

Test(api, logger_may_call_rayc, .timeout = 20)
{
	rayc_set_logger(reentrant_log, NULL);
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.retry_exceptions = 1;
	rayc_ref r;
	cr_assert_eq(rayc_call_opts(&r, "flaky", &o), RAYC_OK);
	cr_assert_eq(get_i64(r), 202);
	rayc_release(r);
	RT_WAIT_FOR(atomic_load(&reentrant_calls) >= 2, 10000); /* as above */
	rayc_set_logger(NULL, NULL);
	cr_assert_geq(atomic_load(&reentrant_calls), 2,
	              "both retries reached the logger");
}

/* A one-peer cluster keeps its own KV; it ends with the runtime. */
Test(lifecycle, kv_on_one_peer)
{
	void *v;
	size_t n;

	rt_start(1);
	cr_assert_eq(rayc_kv_put("k", "one", 3), RAYC_OK);
	cr_assert_eq(rayc_kv_put("k", "two", 3), RAYC_OK);
	cr_assert_eq(rayc_kv_get("k", &v, &n), RAYC_OK);
	cr_assert(n == 3 && memcmp(v, "two", 3) == 0);
	free(v);
	cr_assert_eq(rayc_kv_get("absent", &v, &n), RAYC_ENOTFOUND);
	cr_assert_eq(rayc_kv_get("k", NULL, &n), RAYC_EINVAL);
	rt_stop();
	rt_start(1);
	cr_assert_eq(rayc_kv_get("k", &v, &n), RAYC_ENOTFOUND,
	             "the KV outlived its runtime");
	cr_assert_eq(rayc_kv_del("k"), RAYC_ENOTFOUND);
	/* 128 MiB in all: the 129th MiB is refused and loses nothing. */
	static char big[1 << 20];
	char key[16];
	int i, rc = RAYC_OK;
	for (i = 0; i < 200 && rc == RAYC_OK; i++) {
		snprintf(key, sizeof(key), "b%d", i);
		big[0] = (char)i;
		rc = rayc_kv_put(key, big, sizeof(big));
	}
	cr_assert_eq(rc, RAYC_ESTOREFULL, "%s", rayc_strerror(rc));
	cr_assert_eq(i, 128, "refused at put %d", i);
	cr_assert_eq(rayc_kv_get("b127", &v, &n), RAYC_ENOTFOUND);
	cr_assert_eq(rayc_kv_get("b3", &v, &n), RAYC_OK);
	cr_assert(n == sizeof(big) && ((char *)v)[0] == 3);
	free(v);
	cr_assert_eq(rayc_kv_del("b3"), RAYC_OK);
	cr_assert_eq(rayc_kv_put("b127", big, sizeof(big)), RAYC_OK);
	rt_stop();
	cr_assert_eq(rayc_kv_put("k", "x", 1), RAYC_ESTATE);
}

static void three_ret(rayc_ctx *c)
{
	rayc_return_i64(c, 0, 1);
	rayc_return_i64(c, 1, 2);
	rayc_return_i64(c, 2, 3);
}
RAYC_REMOTE(three_ret)

/* Out of memory for a task's table of returns fails every return, not
 * only the first (the others were waited on for ever). */
Test(api, oom_fails_every_return, .timeout = 30)
{
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.num_returns = 3;
	rayc_ref r[3];
	rayc__test_fault(RAYC__FAULT_TASK_RETURNS, 1);
	cr_assert_eq(rayc_call_opts(r, "three_ret", &o), RAYC_OK);
	for (int i = 0; i < 3; i++) {
		rayc_view v;
		int rc = rayc_get(r[i], &v, 10000);
		cr_assert_eq(rc, RAYC_ENOMEM, "return %d: %s", i,
		             rayc_strerror(rc));
		rayc_release(r[i]);
	}
	rayc__test_fault(RAYC__FAULT_TASK_RETURNS, 0);
}

static atomic_int gate_open;

/* Holds its worker until gate_open. */
static void gate(rayc_ctx *c)
{
	struct timespec ts = { 0, 1000000 };
	while (!atomic_load(&gate_open))
		nanosleep(&ts, NULL);
	rayc_return_i64(c, 0, 1);
}
RAYC_REMOTE(gate)

static void two_args(rayc_ctx *c)
{
	rayc_return_i64(c, 0, 2);
}
RAYC_REMOTE(two_args)

/* A task whose first argument is still being made and whose second has
 * failed fails at once; the count of tasks waiting for arguments must not
 * go below zero (it wrapped to 2^64-1, which the heartbeat then reported
 * as this peer's queue). */
Test(api, a_failed_argument_after_a_pending_one_keeps_counts_sane)
{
	rayc_ref slow, bad, r;
	rayc_view v;
	atomic_store(&gate_open, 0);
	cr_assert_eq(rayc_call(&slow, "gate"), RAYC_OK);
	cr_assert_eq(rayc_call(&bad, "divide", RAYC_I64(1), RAYC_I64(0)),
	             RAYC_OK);
	cr_assert_eq(rayc_get(bad, &v, 5000), RAYC_ETASK);
	rayc_view_release(&v);
	cr_assert_eq(rayc_call(&r, "two_args", RAYC_REF(slow), RAYC_REF(bad)),
	             RAYC_OK);
	cr_assert_eq(rayc_get(r, &v, 5000), RAYC_ETASK);
	rayc_view_release(&v);
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_lt(st.tasks_pending, 10, "tasks_pending %llu",
	             (unsigned long long)st.tasks_pending);
	atomic_store(&gate_open, 1);
	cr_assert_eq(rayc_get(slow, &v, 5000), RAYC_OK);
	rayc_view_release(&v);
	rayc_release(slow);
	rayc_release(bad);
	rayc_release(r);
}

/* A by-value argument whose length overflows the task's size arithmetic
 * is refused at submit; it used to wrap to a small allocation and crash
 * in the copy. */
Test(api, huge_bytes_argument_is_einval)
{
	static const char p[8] = "abcdefg";
	rayc_ref r;

	cr_assert_eq(rayc_call(&r, "inc", RAYC_BYTES(p, (size_t)-1)),
	             RAYC_EINVAL);
	cr_assert(strstr(rayc_errmsg(), "argument 0") != NULL, "%s",
	          rayc_errmsg());
	cr_assert_eq(rayc_call(&r, "inc", RAYC_BYTES(p, (size_t)-7)),
	             RAYC_EINVAL);
	/* Each fits alone; together they wrap. */
	cr_assert_eq(rayc_call(&r, "inc", RAYC_I64(1),
	                       RAYC_BYTES(p, SIZE_MAX / 2),
	                       RAYC_BYTES(p, SIZE_MAX / 2)),
	             RAYC_EINVAL);
	cr_assert(strstr(rayc_errmsg(), "argument 2") != NULL, "%s",
	          rayc_errmsg());
	cr_assert_eq(rayc_put(&r, p, SIZE_MAX), RAYC_ETOOBIG);
	rayc_stats st;
	rayc_stats_get(&st);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.tasks_submitted, 0);
}

static atomic_int driver_released;

/* Once the driver let go of its handle, releases its REF argument
 * without a rayc_ref_dup: the ref is only borrowed, so that must be
 * RAYC_ENOTFOUND and leave the task's hold. */
static void release_borrowed(rayc_ctx *c)
{
	rayc_ref r;
	RT_WAIT_FOR(atomic_load(&driver_released), 10000);
	int rc = rayc_arg_ref(c, 0, &r);
	if (rc == RAYC_OK)
		rc = rayc_release(r);
	rayc_view v;
	if (rc == RAYC_ENOTFOUND && rayc_get(r, &v, 0) == RAYC_OK &&
	    v.len == 64 << 10 && ((const char *)v.data)[v.len - 1] == 0x5a)
		rc = 0x5a; /* and the data is still there */
	rayc_view_release(&v);
	rayc_return_i64(c, 0, rc);
}
RAYC_REMOTE(release_borrowed)

/* rayc_release of a handle no longer held is RAYC_ENOTFOUND and touches
 * nothing: a second release used to drop the pin of a view taken in
 * between, freeing the data under the reader. */
Test(api, release_of_a_handle_not_held_is_enotfound)
{
	static char big[64 << 10];
	rayc_ref r;
	rayc_view v;
	rayc_stats st;

	memset(big, 0x5a, sizeof(big));
	cr_assert_eq(rayc_put(&r, big, sizeof(big)), RAYC_OK);
	cr_assert_eq(rayc_get(r, &v, 1000), RAYC_OK);
	cr_assert_eq(rayc_release(r), RAYC_OK);
	cr_assert_eq(rayc_release(r), RAYC_ENOTFOUND);
	cr_assert_eq(rayc_release(r), RAYC_ENOTFOUND);
	rayc_stats_get(&st);
	cr_assert_eq(st.objects, 1, "the view still pins the object");
	cr_assert_geq(st.store_used_bytes, sizeof(big));
	/* Another put must not be handed the viewed block. */
	rayc_ref r2;
	char other[sizeof(big)];
	memset(other, 0x11, sizeof(other));
	cr_assert_eq(rayc_put(&r2, other, sizeof(other)), RAYC_OK);
	cr_assert_eq(memcmp(v.data, big, sizeof(big)), 0);
	rayc_view_release(&v);
	rayc_stats_get(&st);
	cr_assert_eq(st.objects, 1);
	cr_assert_eq(rayc_release(r2), RAYC_OK);

	/* Each dup is one more handle, each released once. */
	cr_assert_eq(rayc_call(&r, "inc", RAYC_I64(1)), RAYC_OK);
	cr_assert_eq(rayc_ref_dup(r), RAYC_OK);
	cr_assert_eq(get_i64(r), 2);
	cr_assert_eq(rayc_release(r), RAYC_OK);
	cr_assert_eq(rayc_get(r, &v, 1000), RAYC_OK, "one handle left");
	cr_assert_eq(rayc_release(r), RAYC_OK);
	cr_assert_eq(rayc_release(r), RAYC_ENOTFOUND);
	cr_assert_eq(*(const int64_t *)v.data, 2);
	rayc_view_release(&v);

	/* A borrowed argument ref is no handle of the task's (in one
	 * process, only once the driver's own handle is gone). */
	cr_assert_eq(rayc_put(&r, big, sizeof(big)), RAYC_OK);
	rayc_ref out;
	cr_assert_eq(rayc_call(&out, "release_borrowed", RAYC_REF(r)),
	             RAYC_OK);
	cr_assert_eq(rayc_release(r), RAYC_OK);
	atomic_store(&driver_released, 1);
	cr_assert_eq(get_i64(out), 0x5a);
	cr_assert_eq(rayc_release(out), RAYC_OK);
	rayc_stats_get(&st);
	cr_assert_eq(st.objects, 0);
}

/* rayc_get of a ready object and rayc_release take no lock while another
 * thread holds the runtime's (rt->mu; here the test's own thread, so
 * waiting for it would never end): a release that is not the last is
 * done at once, the last is handed to the holder, which lets the object
 * go as it unlocks. */
Test(api, get_and_release_do_not_wait_for_the_runtime_lock, .timeout = 20)
{
	int64_t one = 1, two = 2;
	rayc_ref a, b;
	rayc_view v;

	cr_assert_eq(rayc_put(&a, &one, 8), RAYC_OK);
	cr_assert_eq(rayc_put(&b, &two, 8), RAYC_OK);
	cr_assert_eq(rayc_ref_dup(b), RAYC_OK);
	uint64_t n0 = rayc__test_entries();
	rayc__test_hold_lock(true);
	cr_assert_eq(rayc_get(a, &v, 0), RAYC_OK);
	cr_assert_eq(*(const int64_t *)v.data, 1);
	cr_assert_eq(rayc_release(b), RAYC_OK, "not the last handle");
	cr_assert_eq(rayc_release(a), RAYC_OK, "the view still holds it");
	cr_assert_eq(*(const int64_t *)v.data, 1);
	rayc_view_release(&v); /* a's last ref: handed over */
	cr_assert_eq(rayc_release(b), RAYC_OK); /* b's: handed over */
	rayc__test_hold_lock(false); /* lets both go */
	/* As this thread unlocks, another (a worker) may hold rt->mu for a
	 * moment: then that one lets them go as it unlocks, so wait. */
	RT_WAIT_FOR(rayc__test_entries() == n0 - 2, 5000);
	cr_assert_eq(rayc__test_entries(), n0 - 2);
	cr_assert_eq(rayc_release(b), RAYC_ENOTFOUND, "no handle is left");
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_eq(st.objects, n0 - 2);
}

/* Another thread holds rt->mu until go is set. */
static atomic_int holding, hold_go;

static void *hold_mu(void *arg)
{
	(void)arg;
	rayc__test_hold_lock(true);
	atomic_store(&holding, 1);
	while (!atomic_load(&hold_go))
		;
	rayc__test_hold_lock(false);
	return NULL;
}

static void hold_start(pthread_t *th)
{
	atomic_store(&holding, 0);
	atomic_store(&hold_go, 0);
	cr_assert_eq(pthread_create(th, NULL, hold_mu, NULL), 0);
	RT_WAIT_FOR(atomic_load(&holding), 10000);
	cr_assert(atomic_load(&holding));
}

/* A release handed to the lock's holder (another thread holds rt->mu)
 * is done for whatever comes after it on the releasing thread: the
 * released ref names nothing, and the store room it held is there for
 * the next put, although that put may take the lock before the holder
 * has let the object go. */
Test(lifecycle, a_release_handed_to_the_lock_holder_is_done_for_what_follows,
     .timeout = 30)
{
	rayc_config cfg = { .num_workers = 1, .store_bytes = 8u << 20 };
	static char big[6u << 20];
	rayc_ref x, y;
	rayc_view v;
	pthread_t th;

	cr_assert_eq(rayc_init(&cfg), RAYC_OK, "%s", rayc_errmsg());
	memset(big, 0x33, sizeof(big));
	cr_assert_eq(rayc_put(&x, big, sizeof(big)), RAYC_OK);
	hold_start(&th);
	cr_assert_eq(rayc_release(x), RAYC_OK); /* the last: handed over */
	atomic_store(&hold_go, 1);
	cr_assert_eq(rayc_get(x, &v, 0), RAYC_ENOTFOUND);
	rayc_view_release(&v);
	pthread_join(th, NULL);

	cr_assert_eq(rayc_put(&x, big, sizeof(big)), RAYC_OK);
	hold_start(&th);
	cr_assert_eq(rayc_release(x), RAYC_OK);
	atomic_store(&hold_go, 1);
	cr_assert_eq(rayc_put(&y, big, sizeof(big)), RAYC_OK, "%s",
	             rayc_errmsg());
	pthread_join(th, NULL);
	cr_assert_eq(rayc_release(y), RAYC_OK);
	cr_assert_eq(rayc_shutdown(), RAYC_OK);
}

/* A ref whose entry was freed, and its memory made the entry of a new
 * object, names nothing: the lookup without the lock checks the id of
 * the entry it finds. */
Test(api, a_released_ref_does_not_name_the_object_made_in_its_place)
{
	int64_t one = 1, two = 2;
	rayc_ref a, c;
	rayc_view v;

	for (int i = 0; i < 64; i++) { /* one of them reuses a's entry */
		cr_assert_eq(rayc_put(&a, &one, 8), RAYC_OK);
		cr_assert_eq(rayc_release(a), RAYC_OK);
		cr_assert_eq(rayc_put(&c, &two, 8), RAYC_OK);
		cr_assert_eq(rayc_get(a, &v, 0), RAYC_ENOTFOUND);
		rayc_view_release(&v);
		cr_assert_eq(rayc_release(a), RAYC_ENOTFOUND);
		cr_assert_eq(rayc_get(c, &v, 0), RAYC_OK);
		cr_assert_eq(*(const int64_t *)v.data, two);
		rayc_view_release(&v);
		cr_assert_eq(rayc_release(c), RAYC_OK);
	}
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_eq(st.objects, 0);
}

/* "/dev/shm/./././..." names /dev/shm but leaves no room in a path of
 * 255 bytes for the store file's name. */
static const char *long_dir(void)
{
	static char d[260];
	if (d[0] == '\0') {
		strcpy(d, "/dev/shm");
		while (strlen(d) < 248)
			strcat(d, "/.");
	}
	return d;
}

static const char *long_token(size_t n)
{
	static char t[2048];
	memset(t, 'k', n);
	t[n] = '\0';
	return t;
}

/* Every numeric or limited RAYC_* variable: each bad value is a
 * RAYC_EINVAL from rayc_init whose message names the variable and the
 * value, and good values still start the peer. */
Test(lifecycle, each_bad_environment_value_is_named)
{
	static const struct {
		const char *var, *val;
	} bad[] = {
		{ "RAYC_OBJECT_STORE_BYTES", "99999999999999999999g" },
		{ "RAYC_OBJECT_STORE_BYTES", "20000000000000t" },
		{ "RAYC_OBJECT_STORE_BYTES", "18014398509481984k" },
		{ "RAYC_OBJECT_STORE_BYTES", "16777216T" },
		{ "RAYC_OBJECT_STORE_BYTES", "-5" },
		{ "RAYC_OBJECT_STORE_BYTES", "64mb" },
		{ "RAYC_OBJECT_STORE_BYTES", " 64m" },
		{ "RAYC_OBJECT_STORE_BYTES", "0x10m" },
		{ "RAYC_OBJECT_STORE_BYTES", "1023k" },
		{ "RAYC_STORE_PREFAULT_BYTES", "-5" },
		{ "RAYC_STORE_PREFAULT_BYTES", "1x" },
		{ "RAYC_STORE_PREFAULT_BYTES", "99999999999999999999" },
		{ "RAYC_NUM_WORKERS", "4abc" },
		{ "RAYC_NUM_WORKERS", "0" },
		{ "RAYC_NUM_WORKERS", "-1" },
		{ "RAYC_NUM_WORKERS", "4294967298" },
		{ "RAYC_NUM_WORKERS", "99999" },
		{ "RAYC_HEARTBEAT_TIMEOUT_MS", "4294967346" },
		{ "RAYC_HEARTBEAT_TIMEOUT_MS", "49" },
		{ "RAYC_HEARTBEAT_TIMEOUT_MS", "50ms" },
		{ "RAYC_HEARTBEAT_TIMEOUT_MS", "-1000" },
		{ "RAYC_LOCAL_PEERS", "2x" },
		{ "RAYC_LOCAL_PEERS", "-1" },
		{ "RAYC_LOCAL_PEERS", "18446744073709551617" },
		{ "RAYC_LOCAL_PEERS", "256" },
		{ "RAYC_RESOURCES", "GPU=" },
		{ "RAYC_RESOURCES", "GPU=nan" },
		{ "RAYC_RESOURCES", "GPU=inf" },
		{ "RAYC_RESOURCES", "GPU=1e300" },
		{ "RAYC_LOG_LEVEL", "loud" },
		{ "RAYC_ROLE", "boss" },
		{ "RAYC_DRIVER_TASKS", "maybe" },
		{ "RAYC_ENCRYPT", "yes" },
		{ "RAYC_STORE_DIR", NULL }, /* long_dir() */
		{ "RAYC_TOKEN", NULL }, /* long_token(1025): not shown */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *val = bad[i].val;
		bool secret = false;
		if (val == NULL && strcmp(bad[i].var, "RAYC_STORE_DIR") == 0)
			val = long_dir();
		else if (val == NULL) {
			val = long_token(1025);
			secret = true;
		}
		setenv(bad[i].var, val, 1);
		int rc = rayc_init(NULL);
		if (rc == RAYC_OK)
			rayc_shutdown();
		unsetenv(bad[i].var);
		cr_expect_eq(rc, RAYC_EINVAL, "%s=%.40s: %s (%s)", bad[i].var,
		             val, rayc_strerror(rc), rayc_errmsg());
		if (rc == RAYC_OK)
			continue;
		/* "VAR=value" (its first 40 bytes), or for the secret
		 * token the limit and not the token. */
		const char *m = strstr(rayc_errmsg(), bad[i].var);
		size_t vn = strlen(val) < 40 ? strlen(val) : 40;
		if (secret)
			cr_expect(m != NULL && strstr(m, "1024") != NULL &&
			          strstr(m, "kkkk") == NULL,
			          "token message '%s'", rayc_errmsg());
		else
			cr_expect(m != NULL && m[strlen(bad[i].var)] == '=' &&
			          strncmp(m + strlen(bad[i].var) + 1, val,
			                  vn) == 0,
			          "%s=%.40s: message '%s'", bad[i].var, val,
			          rayc_errmsg());
	}
	static const struct {
		const char *var, *val;
	} good[] = {
		{ "RAYC_OBJECT_STORE_BYTES", "1m" },
		{ "RAYC_OBJECT_STORE_BYTES", "1024K" },
		{ "RAYC_OBJECT_STORE_BYTES", "1g" },
		{ "RAYC_OBJECT_STORE_BYTES", "67108864" },
		{ "RAYC_STORE_PREFAULT_BYTES", "0" },
		{ "RAYC_STORE_PREFAULT_BYTES", "1t" },
		{ "RAYC_NUM_WORKERS", "1" },
		{ "RAYC_NUM_WORKERS", "4" },
		{ "RAYC_HEARTBEAT_TIMEOUT_MS", "50" },
		{ "RAYC_HEARTBEAT_TIMEOUT_MS", "3600000" },
		{ "RAYC_LOCAL_PEERS", "1" },
		{ "RAYC_ENCRYPT", "on" },
		{ "RAYC_ENCRYPT", "off" },
		{ "RAYC_RESOURCES", "GPU=0,disk=2.5" },
		{ "RAYC_STORE_DIR", "/dev/shm/" },
		{ "RAYC_TOKEN", NULL }, /* long_token(1024) */
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		const char *val = good[i].val != NULL ? good[i].val
		                                      : long_token(1024);
		setenv(good[i].var, val, 1);
		if (strcmp(good[i].var, "RAYC_OBJECT_STORE_BYTES") != 0)
			setenv("RAYC_OBJECT_STORE_BYTES", "64m", 1);
		int rc = rayc_init(NULL);
		unsetenv(good[i].var);
		unsetenv("RAYC_OBJECT_STORE_BYTES");
		cr_expect_eq(rc, RAYC_OK, "%s=%.40s: %s (%s)", good[i].var,
		             val, rayc_strerror(rc), rayc_errmsg());
		if (rc == RAYC_OK)
			cr_assert_eq(rayc_shutdown(), RAYC_OK);
	}
}

/* The same limits hold for rayc_config fields, named in the message. */
Test(lifecycle, each_bad_config_field_is_named)
{
	const rayc_resource inf_gpu = { "GPU", 1.0 / 0.0 };
	const struct {
		const char *field;
		rayc_config c;
	} bad[] = {
		{ "store_bytes", { .store_bytes = SIZE_MAX } },
		{ "store_bytes", { .store_bytes = (size_t)1 << 60 } },
		{ "store_bytes", { .store_bytes = 1000 } },
		{ "num_workers", { .num_workers = -1 } },
		{ "num_workers", { .num_workers = 100000 } },
		{ "heartbeat_timeout_ms", { .heartbeat_timeout_ms = 10 } },
		{ "heartbeat_timeout_ms", { .heartbeat_timeout_ms = -5 } },
		{ "local_peers", { .local_peers = 300 } },
		{ "log_level", { .log_level = 99 } },
		{ "role", { .role = 7 } },
		{ "encrypt", { .encrypt = 3 } },
		{ "store_dir", { .store_dir = long_dir() } },
		{ "token", { .token = long_token(1025) } },
		{ "resources", { .resources = &inf_gpu, .num_resources = 1 } },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = rayc_init(&bad[i].c);
		if (rc == RAYC_OK)
			rayc_shutdown();
		cr_expect_eq(rc, RAYC_EINVAL, "%s: %s (%s)", bad[i].field,
		             rayc_strerror(rc), rayc_errmsg());
		if (rc != RAYC_OK)
			cr_expect(strstr(rayc_errmsg(), bad[i].field) != NULL,
			          "%s: message '%s'", bad[i].field,
			          rayc_errmsg());
	}
}
