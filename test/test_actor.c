/* test_actor.c -- actors on one peer: order per caller, concurrency,
 * handles and the destructor, kill and restart, failing constructors and
 * methods, names, handles as arguments, resources held for life. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "helpers.h"

/* ---- Counter: add(i) checks it sees 0, 1, 2, ... in order -------- */
typedef struct counter {
	int64_t next;  /* the i the next add must carry */
	int64_t sum;
	int64_t wrong; /* adds out of order */
	int64_t inits;
} counter;

static atomic_int counter_finis;
static atomic_int counter_inits;

static void counter_init(rayc_ctx *c)
{
	counter *s = rayc_actor_state(c);
	int64_t start = 0;

	if (rayc_arg_count(c) > 0)
		rayc_arg_i64(c, 0, &start);
	s->next = start;
	s->inits++;
	atomic_fetch_add(&counter_inits, 1);
}

static void counter_fini(void *state)
{
	(void)state;
	atomic_fetch_add(&counter_finis, 1);
}

static void counter_add(rayc_ctx *c)
{
	counter *s = rayc_actor_state(c);
	int64_t i;

	rayc_arg_i64(c, 0, &i);
	if (i != s->next)
		s->wrong++;
	s->next = i + 1;
	s->sum += i;
	rayc_return_i64(c, 0, s->sum);
}

static void counter_get(rayc_ctx *c)
{
	counter *s = rayc_actor_state(c);
	rayc_return_i64(c, 0, s->next);
	rayc_return_i64(c, 1, s->wrong);
	rayc_return_i64(c, 2, s->inits);
}

static void counter_boom(rayc_ctx *c)
{
	rayc_fail(c, "boom %d", 7);
}

static const rayc_actor_method counter_methods[] = {
	{ "add", counter_add },
	{ "get", counter_get },
	{ "boom", counter_boom },
};
static rayc_actor_class counter_class = {
	.name = "Counter",
	.state_size = sizeof(counter),
	.init = counter_init,
	.fini = counter_fini,
	.methods = counter_methods,
	.nmethods = 3,
};
RAYC_ACTOR_CLASS(counter_class)

/* get's three values. */
static void counter_read(rayc_actor h, int64_t *next, int64_t *wrong,
                         int64_t *inits)
{
	rayc_ref r[3];
	rayc_method_opts o = { .num_returns = 3 };

	cr_assert_eq(rayc_actor_call_opts(r, h, "get", &o), RAYC_OK, "%s",
	             rayc_errmsg());
	int rc = rayc_get_i64(r[0], next, 30000);
	if (rc != RAYC_OK) {
		rayc_view v;
		rayc_get(r[0], &v, 0);
		cr_assert_fail("get: %s: %s", rayc_strerror(rc),
		               v.type == RAYC_TYPE_ERROR ? (const char *)v.data
		                                         : "");
	}
	cr_assert_eq(rayc_get_i64(r[1], wrong, 30000), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r[2], inits, 30000), RAYC_OK);
	for (int i = 0; i < 3; i++)
		rayc_release(r[i]);
}

TestSuite(actor, .init = rt_init2, .fini = rt_stop, .timeout = 120);

Test(actor, a_counter_takes_100000_calls_in_order_exactly)
{
	rayc_actor h;
	rayc_ref r;
	int64_t next, wrong, inits, sum;

	cr_assert_eq(rayc_actor_create(&h, "Counter", NULL), RAYC_OK, "%s",
	             rayc_errmsg());
	for (int64_t i = 0; i < 100000; i++) {
		cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(i)),
		             RAYC_OK);
		if (i < 99999)
			cr_assert_eq(rayc_release(r), RAYC_OK);
	}
	cr_assert_eq(rayc_get_i64(r, &sum, 60000), RAYC_OK);
	rayc_release(r);
	cr_assert_eq(sum, (int64_t)99999 * 100000 / 2);
	counter_read(h, &next, &wrong, &inits);
	cr_assert_eq(next, 100000);
	cr_assert_eq(wrong, 0, "%lld calls ran out of order",
	             (long long)wrong);
	cr_assert_eq(inits, 1);
	cr_assert_eq(rayc_actor_release(h), RAYC_OK);
}

/* ---- Log: per caller, the last sequence number seen --------------- */
#define CALLERS 4
#define PER_CALLER 5000
typedef struct logst {
	int64_t last[CALLERS];
	int64_t wrong, total;
} logst;

static void log_init(rayc_ctx *c)
{
	logst *s = rayc_actor_state(c);
	for (int i = 0; i < CALLERS; i++)
		s->last[i] = -1;
}

static void log_put(rayc_ctx *c)
{
	logst *s = rayc_actor_state(c);
	int64_t who, seq;

	rayc_arg_i64(c, 0, &who);
	rayc_arg_i64(c, 1, &seq);
	if (who < 0 || who >= CALLERS || seq != s->last[who] + 1)
		s->wrong++;
	else
		s->last[who] = seq;
	s->total++;
}

static void log_get(rayc_ctx *c)
{
	logst *s = rayc_actor_state(c);
	rayc_return_i64(c, 0, s->total);
	rayc_return_i64(c, 1, s->wrong);
}

static const rayc_actor_method log_methods[] = {
	{ "put", log_put },
	{ "get", log_get },
};
static rayc_actor_class log_class = {
	.name = "Log",
	.state_size = sizeof(logst),
	.init = log_init,
	.methods = log_methods,
	.nmethods = 2,
};
RAYC_ACTOR_CLASS(log_class)

typedef struct caller_arg {
	rayc_actor h;
	int who;
	int failures;
} caller_arg;

static void *caller_main(void *p)
{
	caller_arg *a = p;
	rayc_ref r;

	for (int64_t i = 0; i < PER_CALLER; i++) {
		if (rayc_actor_call(&r, a->h, "put", RAYC_I64(a->who),
		                    RAYC_I64(i)) != RAYC_OK) {
			a->failures++;
			continue;
		}
		rayc_release(r);
	}
	return NULL;
}

Test(actor, four_callers_each_see_their_own_order)
{
	rayc_actor h;
	pthread_t th[CALLERS];
	caller_arg args[CALLERS];
	rayc_ref r[2];
	rayc_method_opts two = { .num_returns = 2 };
	int64_t total, wrong;

	cr_assert_eq(rayc_actor_create(&h, "Log", NULL), RAYC_OK);
	for (int i = 0; i < CALLERS; i++) {
		args[i] = (caller_arg){ .h = h, .who = i };
		pthread_create(&th[i], NULL, caller_main, &args[i]);
	}
	for (int i = 0; i < CALLERS; i++) {
		pthread_join(th[i], NULL);
		cr_assert_eq(args[i].failures, 0);
	}
	cr_assert_eq(rayc_actor_call_opts(r, h, "get", &two), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r[0], &total, 60000), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r[1], &wrong, 60000), RAYC_OK);
	rayc_release(r[0]);
	rayc_release(r[1]);
	cr_assert_eq(total, CALLERS * PER_CALLER);
	cr_assert_eq(wrong, 0);
	rayc_actor_release(h);
}

/* ---- Overlap: how many calls run at once -------------------------- */
static atomic_int ov_now, ov_max;

static void ov_wait(rayc_ctx *c)
{
	int64_t want;
	rayc_arg_i64(c, 0, &want);
	int now = atomic_fetch_add(&ov_now, 1) + 1;
	int m = atomic_load(&ov_max);
	while (now > m && !atomic_compare_exchange_weak(&ov_max, &m, now))
		;
	/* Wait (bounded) until want calls are in at once. */
	int64_t end = rt_now_ms() + 5000;
	while (atomic_load(&ov_max) < want && rt_now_ms() < end) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	atomic_fetch_sub(&ov_now, 1);
	rayc_return_i64(c, 0, atomic_load(&ov_max));
}

static const rayc_actor_method ov_methods[] = { { "wait", ov_wait } };
static rayc_actor_class ov_class = {
	.name = "Overlap",
	.methods = ov_methods,
	.nmethods = 1,
};
RAYC_ACTOR_CLASS(ov_class)

static int overlap_seen(int conc, int calls, int want)
{
	rayc_actor h;
	rayc_actor_opts o = { .max_concurrency = conc };
	rayc_ref r[16];
	int64_t v;

	atomic_store(&ov_now, 0);
	atomic_store(&ov_max, 0);
	cr_assert_eq(rayc_actor_create(&h, "Overlap", &o), RAYC_OK);
	for (int i = 0; i < calls; i++)
		cr_assert_eq(rayc_actor_call(&r[i], h, "wait", RAYC_I64(want)),
		             RAYC_OK);
	for (int i = 0; i < calls; i++) {
		cr_assert_eq(rayc_get_i64(r[i], &v, 30000), RAYC_OK);
		rayc_release(r[i]);
	}
	rayc_actor_release(h);
	return atomic_load(&ov_max);
}

Test(actor, max_concurrency_4_runs_four_calls_at_once_and_never_five)
{
	/* 8 calls that each wait for 5 to be in at once: at most 4 are. */
	int seen = overlap_seen(4, 8, 5);
	cr_assert_eq(seen, 4, "at most %d calls ran at once", seen);
}

Test(actor, max_concurrency_1_runs_one_call_at_a_time)
{
	int seen = overlap_seen(1, 3, 2);
	cr_assert_eq(seen, 1);
}

/* ---- Handles, destructor ------------------------------------------ */
static void wait_finis(int want)
{
	int64_t end = rt_now_ms() + 10000;
	while (atomic_load(&counter_finis) < want && rt_now_ms() < end) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
}

Test(actor, the_destructor_runs_once_when_the_last_handle_goes)
{
	rayc_actor h;
	rayc_ref r;
	int64_t v;
	size_t n;

	atomic_store(&counter_finis, 0);
	cr_assert_eq(rayc_actor_create(&h, "Counter", NULL), RAYC_OK);
	cr_assert_eq(rayc_actor_dup(h), RAYC_OK);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(0)), RAYC_OK);
	cr_assert_eq(rayc_actor_release(h), RAYC_OK);
	/* One handle left: alive, calls work. */
	cr_assert_eq(rayc_get_i64(r, &v, 30000), RAYC_OK);
	rayc_release(r);
	cr_assert_eq(atomic_load(&counter_finis), 0);
	/* A call made just before the last release still runs. */
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(1)), RAYC_OK);
	cr_assert_eq(rayc_actor_release(h), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r, &v, 30000), RAYC_OK);
	cr_assert_eq(v, 1);
	rayc_release(r);
	wait_finis(1);
	cr_assert_eq(atomic_load(&counter_finis), 1);
	/* Gone: no handle, not listed, a third release refused. */
	cr_assert_eq(rayc_actor_release(h), RAYC_ENOTFOUND);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(2)),
	             RAYC_ENOTFOUND);
	cr_assert_eq(rayc_actor_list(NULL, 0, &n), RAYC_OK);
	cr_assert_eq(n, 0);
	struct timespec ts = { 0, 50000000 };
	nanosleep(&ts, NULL);
	cr_assert_eq(atomic_load(&counter_finis), 1, "destructor ran again");
}

Test(actor, kill_without_restart_fails_later_calls_with_eactordied)
{
	rayc_actor h;
	rayc_ref r;
	rayc_view v;
	int64_t x;
	rayc_actor_info info;
	size_t n;

	atomic_store(&counter_finis, 0);
	rayc_actor_opts o = { .max_restarts = 5 };
	cr_assert_eq(rayc_actor_create(&h, "Counter", &o), RAYC_OK);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(0)), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r, &x, 30000), RAYC_OK);
	rayc_release(r);
	cr_assert_eq(rayc_actor_kill(h, 1), RAYC_OK);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(1)), RAYC_OK);
	cr_assert_eq(rayc_get(r, &v, 30000), RAYC_EACTORDIED);
	cr_assert(strstr(v.data, "killed by rayc_actor_kill") != NULL, "%s",
	          (const char *)v.data);
	rayc_view_release(&v);
	rayc_release(r);
	wait_finis(1);
	cr_assert_eq(atomic_load(&counter_finis), 1);
	cr_assert_eq(rayc_actor_list(&info, 1, &n), RAYC_OK);
	cr_assert_eq(n, 1);
	cr_assert_eq(info.state, RAYC_ACTOR_DEAD);
	cr_assert_eq(info.restarts, 0);
	cr_assert_eq(rayc_actor_release(h), RAYC_OK);
	/* Gone once every hold on it is let go of, which may be a moment
	 * after counter_finis moved: that counts the destructor from inside
	 * its run, before the worker completes the run (an ASan run of this
	 * suite saw it still listed here, once in about 30). */
	RT_WAIT_FOR(rayc_actor_list(&info, 1, &n) == RAYC_OK && n == 0, 10000);
	cr_assert_eq(rayc_actor_list(&info, 1, &n), RAYC_OK);
	cr_assert_eq(n, 0);
}

Test(actor, kill_with_restart_reruns_the_constructor_on_fresh_state)
{
	rayc_actor h;
	rayc_ref r;
	int64_t next, wrong, inits, x;
	rayc_actor_info info;
	size_t n;

	atomic_store(&counter_finis, 0);
	atomic_store(&counter_inits, 0);
	rayc_actor_opts o = { .max_restarts = 1 };
	cr_assert_eq(rayc_actor_create(&h, "Counter", &o, RAYC_I64(10)),
	             RAYC_OK);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(10)), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r, &x, 30000), RAYC_OK);
	rayc_release(r);
	cr_assert_eq(rayc_actor_kill(h, 0), RAYC_OK);
	/* Calls made now wait for the restarted actor. */
	counter_read(h, &next, &wrong, &inits);
	cr_assert_eq(next, 10, "state not fresh: next %lld", (long long)next);
	cr_assert_eq(inits, 1, "state not fresh: %lld inits",
	             (long long)inits);
	cr_assert_eq(atomic_load(&counter_inits), 2);
	cr_assert_eq(atomic_load(&counter_finis), 1);
	cr_assert_eq(rayc_actor_list(&info, 1, &n), RAYC_OK);
	cr_assert_eq(n, 1);
	cr_assert_eq(info.state, RAYC_ACTOR_ALIVE);
	cr_assert_eq(info.restarts, 1);
	/* No restart left: a second kill kills. */
	cr_assert_eq(rayc_actor_kill(h, 0), RAYC_OK);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(10)), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r, &x, 30000), RAYC_EACTORDIED);
	rayc_release(r);
	rayc_actor_release(h);
	wait_finis(2);
	cr_assert_eq(atomic_load(&counter_finis), 2);
}

/* ---- A constructor that fails -------------------------------------- */
static void bad_init(rayc_ctx *c)
{
	rayc_fail(c, "no licence for %s", "Bad");
}

static atomic_int bad_finis;
static void bad_fini(void *s)
{
	(void)s;
	atomic_fetch_add(&bad_finis, 1);
}

static const rayc_actor_method bad_methods[] = { { "get", counter_get } };
static rayc_actor_class bad_class = {
	.name = "Bad",
	.state_size = sizeof(counter),
	.init = bad_init,
	.fini = bad_fini,
	.methods = bad_methods,
	.nmethods = 1,
};
RAYC_ACTOR_CLASS(bad_class)

Test(actor, a_failing_constructor_fails_every_call_with_its_message)
{
	rayc_actor h;
	rayc_ref r[3];
	rayc_view v;

	cr_assert_eq(rayc_actor_create(&h, "Bad", NULL), RAYC_OK);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(rayc_actor_call(&r[i], h, "get"), RAYC_OK);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(rayc_get(r[i], &v, 30000), RAYC_EACTORDIED);
		cr_assert(strstr(v.data, "no licence for Bad") != NULL, "%s",
		          (const char *)v.data);
		cr_assert(strstr(v.data, "constructor failed") != NULL);
		rayc_view_release(&v);
		rayc_release(r[i]);
	}
	rayc_actor_release(h);
	cr_assert_eq(atomic_load(&bad_finis), 0, "destructor after a failed "
	             "constructor");
}

Test(actor, a_failing_method_fails_its_call_only)
{
	rayc_actor h;
	rayc_ref r;
	rayc_view v;
	int64_t x;

	cr_assert_eq(rayc_actor_create(&h, "Counter", NULL), RAYC_OK);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(0)), RAYC_OK);
	rayc_release(r);
	cr_assert_eq(rayc_actor_call(&r, h, "boom"), RAYC_OK);
	cr_assert_eq(rayc_get(r, &v, 30000), RAYC_ETASK);
	cr_assert(strstr(v.data, "boom 7") != NULL, "%s", (const char *)v.data);
	rayc_view_release(&v);
	rayc_release(r);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(1)), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r, &x, 30000), RAYC_OK);
	cr_assert_eq(x, 1);
	rayc_release(r);
	rayc_actor_release(h);
}

/* ---- Names ---------------------------------------------------------- */
Test(actor, a_named_actor_is_found_and_get_if_exists_shares_it)
{
	rayc_actor h, h2, h3;
	rayc_actor_opts o = { .name = "tally" };
	rayc_ref r;
	int64_t next, wrong, inits;

	cr_assert_eq(rayc_actor_create(&h, "Counter", &o), RAYC_OK);
	cr_assert_eq(rayc_actor_create(&h2, "Counter", &o), RAYC_EEXIST);
	o.get_if_exists = 1;
	cr_assert_eq(rayc_actor_create(&h2, "Counter", &o), RAYC_OK);
	cr_assert(h2.hi == h.hi && h2.lo == h.lo);
	cr_assert_eq(rayc_actor_get_named(&h3, "tally"), RAYC_OK);
	cr_assert(h3.hi == h.hi && h3.lo == h.lo);
	cr_assert_eq(rayc_actor_call(&r, h3, "add", RAYC_I64(0)), RAYC_OK);
	rayc_release(r);
	counter_read(h2, &next, &wrong, &inits);
	cr_assert_eq(next, 1);
	cr_assert_eq(rayc_actor_get_named(&h3, "nobody"), RAYC_ENOTFOUND);
	rayc_actor_release(h);
	rayc_actor_release(h2);
	rayc_actor_release(h3);
	/* Released for good: the name is free again. */
	wait_finis(0);
	cr_assert_eq(rayc_actor_create(&h, "Counter", &o), RAYC_OK);
	counter_read(h, &next, &wrong, &inits);
	cr_assert_eq(next, 0, "a fresh actor");
	rayc_actor_release(h);
}

Test(actor, a_detached_actor_outlives_its_handles_until_killed)
{
	rayc_actor h, h2;
	rayc_actor_opts o = { .name = "keeper",
	                      .lifetime = RAYC_LIFETIME_DETACHED };
	rayc_ref r;
	int64_t next, wrong, inits;

	atomic_store(&counter_finis, 0);
	cr_assert_eq(rayc_actor_create(&h, "Counter", &o), RAYC_OK);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(0)), RAYC_OK);
	rayc_release(r);
	cr_assert_eq(rayc_actor_release(h), RAYC_OK);
	cr_assert_eq(rayc_actor_get_named(&h2, "keeper"), RAYC_OK);
	counter_read(h2, &next, &wrong, &inits);
	cr_assert_eq(next, 1);
	cr_assert_eq(atomic_load(&counter_finis), 0);
	cr_assert_eq(rayc_actor_kill(h2, 1), RAYC_OK);
	wait_finis(1);
	cr_assert_eq(atomic_load(&counter_finis), 1);
	cr_assert_eq(rayc_actor_get_named(&h, "keeper"), RAYC_ENOTFOUND);
	rayc_actor_release(h2);
}

/* ---- Handles as arguments, refs in and out -------------------------- */
static void bump_via(rayc_ctx *c)
{
	rayc_actor h;
	rayc_ref r;
	int64_t i, v;

	if (rayc_arg_actor(c, 0, &h) != RAYC_OK ||
	    rayc_arg_i64(c, 1, &i) != RAYC_OK) {
		rayc_fail(c, "bad arguments: %s", rayc_errmsg());
		return;
	}
	if (rayc_actor_call(&r, h, "add", RAYC_I64(i)) != RAYC_OK) {
		rayc_fail(c, "call: %s", rayc_errmsg());
		return;
	}
	int rc = rayc_get_i64(r, &v, 30000);
	rayc_release(r);
	if (rc != RAYC_OK)
		rayc_fail(c, "get: %s", rayc_strerror(rc));
	else
		rayc_return_i64(c, 0, v);
}
RAYC_REMOTE(bump_via)

static void slow_value(rayc_ctx *c)
{
	struct timespec ts = { 0, 100000000 };
	int64_t v;
	rayc_arg_i64(c, 0, &v);
	nanosleep(&ts, NULL);
	rayc_return_i64(c, 0, v);
}
RAYC_REMOTE(slow_value)

Test(actor, a_handle_passed_through_two_tasks_calls_the_actor)
{
	rayc_actor h;
	rayc_ref r1, r2;
	int64_t v;

	cr_assert_eq(rayc_actor_create(&h, "Counter", NULL), RAYC_OK);
	cr_assert_eq(rayc_call(&r1, "bump_via", RAYC_ACTOR(h), RAYC_I64(0)),
	             RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(rayc_get_i64(r1, &v, 30000), RAYC_OK);
	cr_assert_eq(v, 0);
	cr_assert_eq(rayc_call(&r2, "bump_via", RAYC_ACTOR(h), RAYC_I64(1)),
	             RAYC_OK);
	/* The task holds the actor: releasing our handle now is fine. */
	cr_assert_eq(rayc_actor_release(h), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r2, &v, 30000), RAYC_OK);
	cr_assert_eq(v, 1);
	rayc_release(r1);
	rayc_release(r2);
}

Test(actor, a_call_waiting_for_an_argument_holds_back_later_calls)
{
	rayc_actor h;
	rayc_ref slow, a, b;
	int64_t va, vb, next, wrong, inits;

	cr_assert_eq(rayc_actor_create(&h, "Counter", NULL), RAYC_OK);
	cr_assert_eq(rayc_call(&slow, "slow_value", RAYC_I64(0)), RAYC_OK);
	/* add(0) waits for slow (100 ms); add(1), made after it, must not
	 * run first although its argument is ready. */
	cr_assert_eq(rayc_actor_call(&a, h, "add", RAYC_REF(slow)), RAYC_OK);
	cr_assert_eq(rayc_actor_call(&b, h, "add", RAYC_I64(1)), RAYC_OK);
	cr_assert_eq(rayc_get_i64(b, &vb, 30000), RAYC_OK);
	cr_assert_eq(rayc_get_i64(a, &va, 30000), RAYC_OK);
	cr_assert_eq(va, 0);
	cr_assert_eq(vb, 1);
	counter_read(h, &next, &wrong, &inits);
	cr_assert_eq(wrong, 0, "a later call overtook one waiting for its "
	             "argument");
	rayc_release(slow);
	rayc_release(a);
	rayc_release(b);
	rayc_actor_release(h);
}

Test(actor, zero_returns_and_bad_calls)
{
	rayc_actor h;
	rayc_method_opts none = { .num_returns = 0 };
	rayc_ref r;
	int64_t next, wrong, inits;

	cr_assert_eq(rayc_actor_create(&h, "Nope", NULL), RAYC_ENOFUNC);
	cr_assert_eq(rayc_actor_create(&h, "Counter", NULL), RAYC_OK);
	cr_assert_eq(rayc_actor_call_opts(NULL, h, "add", &none, RAYC_I64(0)),
	             RAYC_OK, "%s", rayc_errmsg());
	counter_read(h, &next, &wrong, &inits);
	cr_assert_eq(next, 1);
	cr_assert_eq(rayc_actor_call(&r, h, "nope"), RAYC_ENOFUNC);
	cr_assert(strstr(rayc_errmsg(), "nope") != NULL);
	cr_assert_eq(rayc_actor_call(NULL, h, "add", RAYC_I64(1)),
	             RAYC_EINVAL);
	rayc_actor bogus = { 1, 2 };
	cr_assert_eq(rayc_actor_call(&r, bogus, "add", RAYC_I64(1)),
	             RAYC_ENOTFOUND);
	cr_assert_eq(rayc_call(&r, "bump_via", RAYC_ACTOR(bogus), RAYC_I64(1)),
	             RAYC_ENOTFOUND);
	rayc_actor_opts o = { .max_concurrency = -1 };
	cr_assert_eq(rayc_actor_create(&h, "Counter", &o), RAYC_EINVAL);
	rayc_actor_release(h);
}

/* ---- Resources held for life ----------------------------------------- */
Test(actor, an_actor_holds_its_resources_until_it_dies)
{
	rayc_actor h;
	double total, avail;
	rayc_ref r;
	int64_t x;
	rayc_actor_opts o = { .num_cpus = 1 };

	cr_assert_eq(rayc_actor_create(&h, "Counter", &o), RAYC_OK);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(0)), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r, &x, 30000), RAYC_OK);
	rayc_release(r);
	cr_assert_eq(rayc_resource_get("CPU", &total, &avail), RAYC_OK);
	cr_assert_eq(total, 2);
	cr_assert_eq(avail, 1, "available CPU %g while the actor lives",
	             avail);
	rayc_actor_opts big = { .num_cpus = 3 };
	cr_assert_eq(rayc_actor_create(&h, "Counter", &big), RAYC_EINFEASIBLE);
	atomic_store(&counter_finis, 0);
	rayc_actor_release(h);
	wait_finis(1);
	int64_t end = rt_now_ms() + 10000;
	do
		rayc_resource_get("CPU", &total, &avail);
	while (avail != 2 && rt_now_ms() < end);
	cr_assert_eq(avail, 2, "CPU not given back: %g", avail);
}

Test(actor, actors_alive_at_shutdown_run_their_destructor)
{
	rayc_actor h;

	atomic_store(&counter_finis, 0);
	cr_assert_eq(rayc_actor_create(&h, "Counter", NULL), RAYC_OK);
	int64_t next, wrong, inits;
	counter_read(h, &next, &wrong, &inits);
	cr_assert_eq(rayc_shutdown(), RAYC_OK);
	cr_assert_eq(atomic_load(&counter_finis), 1);
	rt_start(2); /* for the suite's fini */
}
