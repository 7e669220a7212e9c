/*
 * bench_tasks.c -- task figures: empty tasks submitted asynchronously
 * (one client, batches, four clients), synchronous round trips, and
 * rayc_wait on 1000 ready refs.  Each is measured in alternation with its
 * baseline so both see the same machine noise.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* The empty task every figure submits: no arguments, nothing returned
 * (its return is rayc's empty BYTES object). */
static void bench_noop(rayc_ctx *ctx)
{
	(void)ctx;
}
RAYC_REMOTE(bench_noop)

#define BATCH 1000         /* Ray's batch: ray.get([f.remote() x 1000]) */
#define MULTI_CLIENTS 4
#define MAX_ASYNC_TASKS (512 * 1000)

/* ------------------------------------------------------------------ */
/* rayc side                                                            */
/* ------------------------------------------------------------------ */
/* Submits n empty tasks, then gets and releases each.  Seconds. */
static double rayc_async_run(rayc_ref *refs, size_t n)
{
	double t0 = bench_now();
	size_t i;

	for (i = 0; i < n; i++)
		bench_call_noop(&refs[i]);
	for (i = 0; i < n; i++)
		bench_get_release(refs[i]);
	return bench_now() - t0;
}

/* Ray's form: submit BATCH, get them all, repeat until n.  Seconds. */
static double rayc_batch_run(rayc_ref *refs, size_t n)
{
	double t0 = bench_now();
	size_t i, j;

	for (i = 0; i < n; i += BATCH) {
		size_t end = i + BATCH < n ? i + BATCH : n;

		for (j = i; j < end; j++)
			bench_call_noop(&refs[j]);
		for (j = i; j < end; j++)
			bench_get_release(refs[j]);
	}
	return bench_now() - t0;
}

/* Picks the task count of one repetition so that `run` lasts about
 * bench_g.rep_s: after one warm-up run, grows a trial count until a run
 * takes a quarter of rep_s, then scales.  The
 * result is a multiple of `unit`, at least `unit`. */
static size_t calibrate_ntasks(const char *name,
                               double (*run)(rayc_ref *, size_t),
                               rayc_ref *refs, size_t unit)
{
	size_t n = unit, k;
	double t, want;

	(void)run(refs, unit); /* cold: first allocations, thread wake-ups */
	for (;;) {
		t = run(refs, n);
		if (t >= bench_g.rep_s / 4 || n * 4 > MAX_ASYNC_TASKS)
			break;
		n *= 4;
	}
	want = (double)n * bench_g.rep_s / (t > 1e-9 ? t : 1e-9);
	if (want > MAX_ASYNC_TASKS)
		want = MAX_ASYNC_TASKS;
	k = (size_t)(want / (double)unit) * unit;
	if (k < unit)
		k = unit;
	fprintf(stderr, "  %s: calibration %zu tasks in %.3f s -> %zu "
	        "tasks/rep\n", name, n, t, k);
	return k;
}

/* Runs reps alternating rayc and bare-pool repetitions; medians in
 * tasks/s. */
static void alternate(const char *name, int nworkers, int batch_form,
                      double *rayc_rate, double *pool_rate,
                      struct bench_cost *rc, struct bench_cost *pc)
{
	rayc_ref *refs =
		bench_xmalloc_touched(MAX_ASYNC_TASKS * sizeof *refs, 0);
	double rv[64], pv[64];
	size_t n = calibrate_ntasks(
		name, batch_form ? rayc_batch_run : rayc_async_run, refs, BATCH);
	bench_pool *pool = bench_pool_start(nworkers, n);
	int i, reps = bench_g.reps;

	(void)bench_pool_run(pool, n < 10000 ? n : 10000, 1, 0); /* warm */
	for (i = 0; i < reps; i++) {
		double tp, tr;

		bench_cost_begin(pc);
		tp = bench_pool_run(pool, n, 1, batch_form ? BATCH : 0);
		bench_cost_end(pc, (double)n);
		bench_cost_begin(rc);
		tr = batch_form ? rayc_batch_run(refs, n)
		                : rayc_async_run(refs, n);
		bench_cost_end(rc, (double)n);

		pv[i] = (double)n / tp;
		rv[i] = (double)n / tr;
	}
	bench_pool_stop(pool);
	free(refs);
	*pool_rate = bench_median(pv, reps);
	*rayc_rate = bench_median(rv, reps);
	fprintf(stderr, "  %s: rayc %.4g tasks/s [%.4g..%.4g], bare pool "
	        "%.4g tasks/s [%.4g..%.4g], %zu tasks x %d reps\n",
	        name, *rayc_rate, rv[0], rv[reps - 1], *pool_rate, pv[0],
	        pv[reps - 1], n, reps);
}

void bench_fig_tasks_async(int nworkers)
{
	static const char name[] = "single_client_tasks_async";
	struct bench_cost rc = { 0 }, pc = { 0 };
	double r, p;

	if (!bench_want(name))
		return;
	bench_watchdog(name, bench_g.quick ? 60 : 300);
	alternate(name, nworkers, 0, &r, &p, &rc, &pc);
	bench_costs_next("task", &rc, &pc);
	bench_emit(name, r, "tasks/s", 1, "bare_pool_prealloc", p);
}

void bench_fig_tasks_batch(int nworkers)
{
	static const char name[] = "single_client_tasks_and_get_batch";
	struct bench_cost rc = { 0 }, pc = { 0 };
	double r, p;

	if (!bench_want(name))
		return;
	bench_watchdog(name, bench_g.quick ? 60 : 300);
	alternate(name, nworkers, 1, &r, &p, &rc, &pc);
	bench_costs_next("task", &rc, &pc);
	bench_emit(name, r, "tasks/s", 1, "bare_pool_prealloc", p);
}

/* ------------------------------------------------------------------ */
/* Four clients                                                         */
/* ------------------------------------------------------------------ */
struct client {
	rayc_ref *refs;
	size_t n;
	pthread_barrier_t *go;
	double t0; /* when it left the barrier */
};

static void *client_main(void *arg)
{
	struct client *c = arg;

	pthread_barrier_wait(c->go);
	c->t0 = bench_now();
	(void)rayc_async_run(c->refs, c->n);
	return NULL;
}

/* n tasks split over MULTI_CLIENTS threads; seconds until all are got. */
static double rayc_multi_run(rayc_ref *refs, size_t n)
{
	struct client cl[MULTI_CLIENTS];
	pthread_t th[MULTI_CLIENTS];
	pthread_barrier_t go;
	size_t per = n / MULTI_CLIENTS;
	double t0;
	int i, r;

	if ((r = pthread_barrier_init(&go, NULL, MULTI_CLIENTS + 1)) != 0)
		bench_die("pthread_barrier_init: %s", strerror(r));
	for (i = 0; i < MULTI_CLIENTS; i++) {
		cl[i].refs = refs + (size_t)i * per;
		cl[i].n = i == MULTI_CLIENTS - 1 ? n - (size_t)i * per : per;
		cl[i].go = &go;
		if ((r = pthread_create(&th[i], NULL, client_main, &cl[i])) != 0)
			bench_die("pthread_create: %s", strerror(r));
	}
	pthread_barrier_wait(&go);
	t0 = bench_now();
	for (i = 0; i < MULTI_CLIENTS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);
	/* From the first client's start: this thread may be preempted
	 * after the barrier while the clients run (as in bench_pool_run). */
	for (i = 0; i < MULTI_CLIENTS; i++)
		if (cl[i].t0 < t0)
			t0 = cl[i].t0;
	return bench_now() - t0;
}

void bench_fig_tasks_multi(int nworkers)
{
	static const char name[] = "multi_client_tasks_async";
	rayc_ref *refs;
	bench_pool *pool;
	struct bench_cost rc = { 0 }, pc = { 0 };
	double rv[64], pv[64], r, p;
	size_t n;
	int i, reps = bench_g.reps;

	if (!bench_want(name))
		return;
	bench_watchdog(name, bench_g.quick ? 60 : 300);
	refs = bench_xmalloc_touched(MAX_ASYNC_TASKS * sizeof *refs, 0);
	n = calibrate_ntasks(name, rayc_multi_run, refs,
	                     MULTI_CLIENTS * BATCH);
	pool = bench_pool_start(nworkers, n);
	(void)bench_pool_run(pool, 4 * BATCH, MULTI_CLIENTS, 0);
	for (i = 0; i < reps; i++) {
		bench_cost_begin(&pc);
		pv[i] = (double)n / bench_pool_run(pool, n, MULTI_CLIENTS, 0);
		bench_cost_end(&pc, (double)n);
		bench_cost_begin(&rc);
		rv[i] = (double)n / rayc_multi_run(refs, n);
		bench_cost_end(&rc, (double)n);
	}
	bench_pool_stop(pool);
	free(refs);
	p = bench_median(pv, reps);
	r = bench_median(rv, reps);
	fprintf(stderr, "  %s: rayc %.4g tasks/s [%.4g..%.4g], bare pool "
	        "%.4g tasks/s [%.4g..%.4g], %zu tasks x %d reps\n",
	        name, r, rv[0], rv[reps - 1], p, pv[0], pv[reps - 1], n, reps);
	bench_costs_next("task", &rc, &pc);
	bench_emit(name, r, "tasks/s", 1, "bare_pool_prealloc_multi", p);
}

/* ------------------------------------------------------------------ */
/* Synchronous round trips                                              */
/* ------------------------------------------------------------------ */
static void sync_once(void *arg)
{
	rayc_ref ref;

	(void)arg;
	bench_call_noop(&ref);
	bench_get_release(ref);
}

static double sync_rep_us(void *arg)
{
	double el;
	uint64_t n = bench_timed_loop(sync_once, arg, 16, bench_g.rep_s, &el);

	return el * 1e6 / (double)n;
}

static double spin_rep_us(void *arg)
{
	(void)arg;
	return bench_pingpong_us(1, bench_g.rep_s);
}

void bench_fig_tasks_sync(void)
{
	static const char name[] = "single_client_tasks_sync";
	static const char spin[] = "baseline_spin_pingpong";
	int i, reps = bench_g.reps;

	if (bench_want(name)) {
		struct bench_cost rc = { 0 }, cc = { 0 };
		double rv[64], cv[64], r, c;

		bench_watchdog(name, bench_g.quick ? 60 : 300);
		for (i = 0; i < 64; i++)
			sync_once(NULL); /* warm-up */
		for (i = 0; i < reps; i++) {
			bench_cost_cur = &cc;
			cv[i] = bench_pingpong_us(0, bench_g.rep_s);
			bench_cost_cur = &rc;
			rv[i] = sync_rep_us(NULL);
		}
		bench_cost_cur = NULL;
		c = bench_median(cv, reps);
		r = bench_median(rv, reps);
		fprintf(stderr, "  %s: rayc %.4g us [%.4g..%.4g], condvar "
		        "ping-pong %.4g us [%.4g..%.4g]\n",
		        name, r, rv[0], rv[reps - 1], c, cv[0], cv[reps - 1]);
		bench_costs_next("round trip", &rc, &cc);
		bench_emit(name, r, "us", 0, "condvar_pingpong", c);
	}
	if (bench_want(spin)) {
		struct bench_cost sc = { 0 };
		double s;

		bench_watchdog(spin, bench_g.quick ? 60 : 300);
		bench_cost_cur = &sc;
		s = bench_median_reps(spin, spin_rep_us, NULL, reps);
		bench_cost_cur = NULL;
		bench_costs_next("round trip", &sc, NULL);
		bench_emit(spin, s, "us", 0, NULL, 0);
	}
}

/* ------------------------------------------------------------------ */
/* rayc_wait on 1000 ready refs                                         */
/* ------------------------------------------------------------------ */
struct wait1k {
	rayc_ref refs[1000];
	uint8_t flags[1000];
};

static void wait1k_once(void *arg)
{
	struct wait1k *w = arg;
	size_t nready = 0;

	BENCH_CHECK(rayc_wait(w->refs, 1000, 1000, BENCH_GET_TIMEOUT_MS,
	                      w->flags, &nready));
	if (nready != 1000)
		bench_die("rayc_wait: %zu of 1000 ready, expected all", nready);
}

static double wait1k_rep(void *arg)
{
	double el;
	uint64_t n = bench_timed_loop(wait1k_once, arg, 8, bench_g.rep_s, &el);

	return (double)n / el;
}

void bench_fig_wait_1k(void)
{
	static const char name[] = "single_client_wait_1k_refs";
	struct bench_cost wc = { 0 };
	struct wait1k *w;
	double v;
	size_t i;

	if (!bench_want(name))
		return;
	bench_watchdog(name, bench_g.quick ? 60 : 300);
	w = bench_xmalloc(sizeof *w);
	for (i = 0; i < 1000; i++)
		bench_call_noop(&w->refs[i]);
	wait1k_once(w); /* all ready before timing */
	bench_cost_cur = &wc;
	v = bench_median_reps(name, wait1k_rep, w, bench_g.reps);
	bench_cost_cur = NULL;
	for (i = 0; i < 1000; i++)
		BENCH_CHECK(rayc_release(w->refs[i]));
	free(w);
	bench_costs_next("wait", &wc, NULL);
	bench_emit(name, v, "waits/s", 1, NULL, 0);
}
