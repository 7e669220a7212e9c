/*
 * bench_actors.c -- actor figures on one peer, named as Ray's
 * microbenchmark names them: 1_1_actor_calls_sync / _async / _concurrent,
 * 1_n_actor_calls_async, n_n_actor_calls_async and
 * n_n_actor_calls_with_arg_async.  Each alternates, repetition by
 * repetition, with a same-run baseline: for the synchronous form a
 * mutex/condvar ping-pong between two threads (the object behind a
 * mutex, served by its thread); for the others the bare pool (a
 * mutex-guarded queue of preallocated nodes) with as many threads as
 * the actors could use and as many submitting threads.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define MAX_CALLS (256 * 1000)
#define NCALLERS 4
#define CONCURRENCY 4

/* The actor: a counter (atomic: with max_concurrency > 1 calls share
 * the state at once). */
static void bactor_add(rayc_ctx *ctx)
{
	_Atomic int64_t *n = rayc_actor_state(ctx);

	atomic_fetch_add_explicit(n, 1, memory_order_relaxed);
}

static const rayc_actor_method bactor_methods[] = { { "add", bactor_add } };
static rayc_actor_class bactor_class = {
	.name = "BenchCounter",
	.state_size = sizeof(int64_t),
	.methods = bactor_methods,
	.nmethods = 1,
};
RAYC_ACTOR_CLASS(bactor_class)

struct form {
	int nactors;   /* actors the callers share out */
	int ncallers;  /* submitting threads (each its own actors) */
	int conc;      /* max_concurrency */
	int with_arg;  /* a ref argument on every call */
	int sync;      /* get each call before the next */
};

struct run {
	const struct form *f;
	rayc_actor actors[NCALLERS * 8];
	rayc_ref arg;
	rayc_ref *refs;
	pthread_barrier_t go;
};

struct caller {
	struct run *r;
	int who;
	size_t n;
	double t0;
};

static void call_one(struct run *r, int actor, rayc_ref *out)
{
	if (r->f->with_arg)
		BENCH_CHECK(rayc_actor_call(out, r->actors[actor], "add",
		                            RAYC_REF(r->arg)));
	else
		BENCH_CHECK(rayc_actor_call(out, r->actors[actor], "add"));
}

/* One caller's part: its actors are who, who + ncallers, ... */
static void caller_run(struct run *r, int who, size_t n)
{
	const struct form *f = r->f;
	int per = f->nactors / f->ncallers;
	rayc_ref *refs = r->refs + (size_t)who * n;
	size_t i;

	for (i = 0; i < n; i++) {
		int a = who + (int)(i % (size_t)per) * f->ncallers;
		call_one(r, a, &refs[i]);
		if (f->sync)
			bench_get_release(refs[i]);
	}
	if (!f->sync)
		for (i = 0; i < n; i++)
			bench_get_release(refs[i]);
}

static void *caller_main(void *arg)
{
	struct caller *c = arg;

	pthread_barrier_wait(&c->r->go);
	c->t0 = bench_now();
	caller_run(c->r, c->who, c->n);
	return NULL;
}

/* n calls in all; seconds until every result is got. */
static double rayc_run(struct run *r, size_t n)
{
	const struct form *f = r->f;
	struct caller cl[NCALLERS];
	pthread_t th[NCALLERS];
	size_t per = n / (size_t)f->ncallers;
	double t0;
	int i;

	if (f->ncallers == 1) {
		t0 = bench_now();
		caller_run(r, 0, n);
		return bench_now() - t0;
	}
	pthread_barrier_init(&r->go, NULL, (unsigned)f->ncallers + 1);
	for (i = 0; i < f->ncallers; i++) {
		cl[i] = (struct caller){ .r = r, .who = i, .n = per };
		if (pthread_create(&th[i], NULL, caller_main, &cl[i]) != 0)
			bench_die("pthread_create failed");
	}
	pthread_barrier_wait(&r->go);
	t0 = bench_now();
	for (i = 0; i < f->ncallers; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&r->go);
	for (i = 0; i < f->ncallers; i++)
		if (cl[i].t0 < t0)
			t0 = cl[i].t0;
	return bench_now() - t0;
}

/* One baseline repetition, in calls/s, its costs added to c. */
static double base_rep(const struct form *f, bench_pool *p, size_t n,
                       struct bench_cost *c)
{
	if (f->sync) {
		/* Times itself for a repetition (bench_timed_loop adds its
		 * interval to bench_cost_cur). */
		bench_cost_cur = c;
		double us = bench_pingpong_us(0, bench_g.rep_s);
		bench_cost_cur = NULL;
		return 1e6 / us;
	}
	bench_cost_begin(c);
	double t = bench_pool_run(p, n, f->ncallers, 0);
	bench_cost_end(c, (double)n);
	return (double)n / t;
}

static void figure(const char *name, const struct form *f, int nworkers)
{
	struct run r;
	struct bench_cost rc = { 0 }, bc = { 0 };
	double rv[64], bv[64];
	int i, reps = bench_g.reps;
	size_t n = 1000;
	rayc_actor_opts o;

	if (!bench_want(name))
		return;
	bench_watchdog(name, bench_g.quick ? 120 : 600);
	memset(&r, 0, sizeof r);
	r.f = f;
	memset(&o, 0, sizeof o);
	o.max_concurrency = f->conc;
	for (i = 0; i < f->nactors; i++)
		BENCH_CHECK(rayc_actor_create(&r.actors[i], "BenchCounter",
		                              &o));
	if (f->with_arg) {
		int64_t v = 1;
		BENCH_CHECK(rayc_put(&r.arg, &v, sizeof v));
	}
	r.refs = bench_xmalloc(MAX_CALLS * sizeof(rayc_ref));
	/* Calibrate: grow n until one run takes a quarter repetition. */
	(void)rayc_run(&r, n);
	double t;
	for (;;) {
		t = rayc_run(&r, n);
		if (t >= bench_g.rep_s / 4 || n * 4 > MAX_CALLS)
			break;
		n *= 4;
	}
	double want = (double)n * bench_g.rep_s / (t > 1e-9 ? t : 1e-9);
	n = want > MAX_CALLS ? MAX_CALLS : (size_t)want;
	n -= n % ((size_t)f->ncallers * 100);
	if (n < (size_t)f->ncallers * 100)
		n = (size_t)f->ncallers * 100;
	bench_pool *pool = bench_pool_start(nworkers, n);
	struct bench_cost warm = { 0 };
	(void)base_rep(f, pool, n < 10000 ? n : 10000, &warm);
	for (i = 0; i < reps; i++) {
		bv[i] = base_rep(f, pool, n, &bc);
		bench_cost_begin(&rc);
		double a = rayc_run(&r, n);
		bench_cost_end(&rc, (double)n);
		rv[i] = (double)n / a;
	}
	bench_pool_stop(pool);
	double rm = bench_median(rv, reps), bm = bench_median(bv, reps);
	fprintf(stderr, "  %s: %zu calls x %d reps: rayc %.4g calls/s "
	        "[%.4g..%.4g], %s %.4g [%.4g..%.4g]\n", name, n, reps, rm,
	        rv[0], rv[reps - 1], f->sync ? "condvar ping-pong" :
	        "bare pool", bm, bv[0], bv[reps - 1]);
	for (i = 0; i < f->nactors; i++)
		BENCH_CHECK(rayc_actor_release(r.actors[i]));
	if (f->with_arg)
		BENCH_CHECK(rayc_release(r.arg));
	free(r.refs);
	bench_costs_next("call", &rc, &bc);
	bench_emit(name, rm, "calls/s", 1,
	           f->sync ? "condvar_pingpong" : "bare_pool_prealloc", bm);
}

void bench_fig_actors(int nworkers)
{
	static const struct form sync1 = { 1, 1, 1, 0, 1 };
	static const struct form async1 = { 1, 1, 1, 0, 0 };
	static const struct form conc1 = { 1, 1, CONCURRENCY, 0, 0 };
	struct form one_n = { 1, 1, 1, 0, 0 };
	static const struct form n_n = { NCALLERS, NCALLERS, 1, 0, 0 };
	static const struct form n_n_arg = { NCALLERS, NCALLERS, 1, 1, 0 };

	one_n.nactors = nworkers < 2 ? 2 : (nworkers > 8 ? 8 : nworkers);
	figure("1_1_actor_calls_sync", &sync1, 1);
	figure("1_1_actor_calls_async", &async1, 1);
	figure("1_1_actor_calls_concurrent", &conc1,
	       nworkers < CONCURRENCY ? nworkers : CONCURRENCY);
	figure("1_n_actor_calls_async", &one_n, one_n.nactors);
	figure("n_n_actor_calls_async", &n_n, nworkers);
	figure("n_n_actor_calls_with_arg_async", &n_n_arg, nworkers);
}
