/* stress_threads.c -- many threads submitting, getting and releasing at
 * once, for ThreadSanitizer (.ci/run builds it with -Db_sanitize=thread;
 * Criterion's runner does not run under TSan) and as a plain test.
 *
 * Each round runs, at once: submitters of tasks with no ref arguments
 * (handed over without rt->mu) whose refs another thread gets; a chain
 * of tasks through ref arguments (recorded under the lock, after the
 * hand-off stack); nested recursive tasks (fib, whose submissions come
 * from worker threads); rayc_wait over refs in flight; threads sharing
 * put objects, each getting every one and dropping its handle, so views,
 * releases and the last release of each race (rayc_get and rayc_release
 * without rt->mu, the last ref handed to the lock's holder).  From the second
 * round on, every function counts as quick, so workers run batches
 * whatever the build's speed (sched/execute.c: runs completed together,
 * handed over, taken back).  Every result is checked; exit status 0 only
 * if all are right and nothing is left in the object table. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rayc.h"
#include "testing.h"

#define SUBMITTERS 3
#define PER_SUBMITTER 4000
#define CHAIN 300
#define ROUNDS 3
#define SHARERS 3
#define SHARED 4000

static atomic_int failures;

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "stress_threads: " __VA_ARGS__);       \
			fprintf(stderr, " (%s)\n", rayc_errmsg());             \
			atomic_fetch_add(&failures, 1);                        \
		}                                                              \
	} while (0)

static void ident(rayc_ctx *c)
{
	int64_t a = 0;
	rayc_arg_i64(c, 0, &a);
	rayc_return_i64(c, 0, a);
}
RAYC_REMOTE(ident)

static void inc(rayc_ctx *c)
{
	int64_t a = 0;
	if (rayc_arg_i64(c, 0, &a) != RAYC_OK) {
		rayc_fail(c, "inc: argument");
		return;
	}
	rayc_return_i64(c, 0, a + 1);
}
RAYC_REMOTE(inc)

static void fib(rayc_ctx *c)
{
	int64_t n = 0, x = 0, y = 0;
	rayc_ref a, b;

	rayc_arg_i64(c, 0, &n);
	if (n < 2) {
		rayc_return_i64(c, 0, n);
		return;
	}
	if (rayc_call(&a, "fib", RAYC_I64(n - 1)) != RAYC_OK ||
	    rayc_call(&b, "fib", RAYC_I64(n - 2)) != RAYC_OK) {
		rayc_fail(c, "fib: submit");
		return;
	}
	int ra = rayc_get_i64(a, &x, -1), rb = rayc_get_i64(b, &y, -1);
	rayc_release(a);
	rayc_release(b);
	if (ra != RAYC_OK || rb != RAYC_OK) {
		rayc_fail(c, "fib: get");
		return;
	}
	rayc_return_i64(c, 0, x + y);
}
RAYC_REMOTE(fib)

static rayc_ref refs[SUBMITTERS][PER_SUBMITTER];
static atomic_int ready[SUBMITTERS];

/* Submits its own share, then gets the next submitter's as they come. */
static void *submitter(void *arg)
{
	int k = (int)(intptr_t)arg, from = (k + 1) % SUBMITTERS;

	for (int i = 0; i < PER_SUBMITTER; i++) {
		CHECK(rayc_call(&refs[k][i], "ident",
		                RAYC_I64(k * PER_SUBMITTER + i)) == RAYC_OK,
		      "submit %d/%d", k, i);
		atomic_store_explicit(&ready[k], i + 1, memory_order_release);
	}
	for (int i = 0; i < PER_SUBMITTER; i++) {
		int64_t v = -1;
		while (atomic_load_explicit(&ready[from],
		                            memory_order_acquire) <= i)
			;
		CHECK(rayc_get_i64(refs[from][i], &v, 30000) == RAYC_OK &&
		              v == from * PER_SUBMITTER + i,
		      "get %d/%d: %lld", from, i, (long long)v);
		CHECK(rayc_release(refs[from][i]) == RAYC_OK, "release");
	}
	return NULL;
}

/* A chain of CHAIN increments through ref arguments. */
static void *chainer(void *arg)
{
	rayc_ref r, next;
	int64_t v = -1;

	(void)arg;
	CHECK(rayc_call(&r, "ident", RAYC_I64(0)) == RAYC_OK, "chain start");
	for (int i = 0; i < CHAIN; i++) {
		CHECK(rayc_call(&next, "inc", RAYC_REF(r)) == RAYC_OK,
		      "chain submit %d", i);
		rayc_release(r);
		r = next;
		if (i % 50 == 0) { /* wait on a ref still in flight */
			size_t nready = 0;
			CHECK(rayc_wait(&r, 1, 1, 30000, NULL, &nready) ==
			              RAYC_OK && nready == 1,
			      "wait");
		}
	}
	CHECK(rayc_get_i64(r, &v, 30000) == RAYC_OK && v == CHAIN,
	      "chain end %lld", (long long)v);
	rayc_release(r);
	return NULL;
}

static void *fibber(void *arg)
{
	rayc_ref r;
	int64_t v = -1;

	(void)arg;
	CHECK(rayc_call(&r, "fib", RAYC_I64(16)) == RAYC_OK, "fib submit");
	CHECK(rayc_get_i64(r, &v, 60000) == RAYC_OK && v == 987,
	      "fib(16) = %lld", (long long)v);
	rayc_release(r);
	return NULL;
}

static rayc_ref shared[SHARED];
static atomic_int nshared;

/* Puts SHARED objects, each with a handle for every sharer. */
static void *putter(void *arg)
{
	(void)arg;
	for (int i = 0; i < SHARED; i++) {
		int64_t v = i;
		CHECK(rayc_put(&shared[i], &v, sizeof(v)) == RAYC_OK, "put %d",
		      i);
		for (int k = 1; k < SHARERS; k++)
			CHECK(rayc_ref_dup(shared[i]) == RAYC_OK, "dup %d", i);
		atomic_store_explicit(&nshared, i + 1, memory_order_release);
	}
	return NULL;
}

/* Reads each put object, drops its handle, then its view: whichever
 * sharer is last frees the object, from a release or a view's. */
static void *sharer(void *arg)
{
	(void)arg;
	for (int i = 0; i < SHARED; i++) {
		rayc_view v;
		while (atomic_load_explicit(&nshared, memory_order_acquire) <=
		       i)
			;
		CHECK(rayc_get(shared[i], &v, 30000) == RAYC_OK &&
		              v.len == sizeof(int64_t) &&
		              *(const int64_t *)v.data == i,
		      "shared get %d", i);
		CHECK(rayc_release(shared[i]) == RAYC_OK, "shared release %d",
		      i);
		rayc_view_release(&v);
	}
	return NULL;
}

int main(void)
{
	rayc_config cfg = { .num_workers = 2 };

	if (rayc_init(&cfg) != RAYC_OK) {
		fprintf(stderr, "stress_threads: rayc_init: %s\n",
		        rayc_errmsg());
		return 1;
	}
	for (int round = 0; round < ROUNDS; round++) {
		pthread_t th[SUBMITTERS + 3 + SHARERS];
		if (round == 1) /* a second: an instrumented run too */
			rayc__test_set_quick_ns(1000000000);
		for (int k = 0; k < SUBMITTERS; k++)
			atomic_store(&ready[k], 0);
		atomic_store(&nshared, 0);
		for (int k = 0; k < SUBMITTERS; k++)
			pthread_create(&th[k], NULL, submitter,
			               (void *)(intptr_t)k);
		pthread_create(&th[SUBMITTERS], NULL, chainer, NULL);
		pthread_create(&th[SUBMITTERS + 1], NULL, fibber, NULL);
		pthread_create(&th[SUBMITTERS + 2], NULL, putter, NULL);
		for (int k = 0; k < SHARERS; k++)
			pthread_create(&th[SUBMITTERS + 3 + k], NULL, sharer,
			               NULL);
		for (int k = 0; k < SUBMITTERS + 3 + SHARERS; k++)
			pthread_join(th[k], NULL);
	}
	rayc_stats st;
	CHECK(rayc_stats_get(&st) == RAYC_OK && st.objects == 0,
	      "%llu objects left", (unsigned long long)st.objects);
	CHECK(rayc_shutdown() == RAYC_OK, "shutdown");
	int f = atomic_load(&failures);
	if (f != 0)
		fprintf(stderr, "stress_threads: %d failures\n", f);
	else
		printf("stress_threads: %d rounds, all results right (%llu "
		       "runs in batches)\n", ROUNDS,
		       (unsigned long long)rayc__test_batched_runs());
	return f != 0;
}
