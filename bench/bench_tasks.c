/*
 * bench_tasks.c -- task figures: empty tasks submitted asynchronously
 * (one client, batches, four clients), synchronous round trips, and
 * rayc_wait on 1000 ready refs.  Each is measured in alternation with its
 * baselines (the bare pool; for the three async forms oneTBB and OpenMP
 * as well) so all see the same machine noise.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "bench_rivals.h"

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

/* ------------------------------------------------------------------ */
/* Alternation: rayc and every baseline in turn, in each repetition     */
/* ------------------------------------------------------------------ */
enum side { S_POOL, S_TBB, S_OMP, S_RAYC, S_N };

static const char *const side_name[S_N] = { "bare pool", "oneTBB", "OpenMP",
	                                    "rayc" };

/* How a figure submits: by how many threads, in batches or not, and
 * rayc's side of it. */
struct form {
	int nsub;
	size_t batch;
	double (*rayc)(rayc_ref *refs, size_t n);
};

struct sides {
	int on[S_N];
	double v[S_N][64]; /* tasks/s, one per repetition */
	double med[S_N];
	struct bench_cost c[S_N];
	size_t inlined[S_N]; /* tasks run on a submitting thread, all reps */
};

/* Lets the threads of the side that just ran go idle (TBB's and
 * OpenMP's spin a while before they sleep, rayc's 50 us) so they do not
 * take the CPUs from the next side.  Outside the timed part. */
static void settle(void)
{
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	nanosleep(&ts, NULL);
}

/* Seconds for one run of side k; *inlined: tasks that ran on a
 * submitting thread (never, for the bare pool and rayc). */
static double run_side(int k, const struct form *f, bench_pool *pool,
                       bench_tbb *tbb, int nworkers, rayc_ref *refs, size_t n,
                       size_t *inlined)
{
	*inlined = 0;
	switch (k) {
	case S_POOL:
		return bench_pool_run(pool, n, f->nsub, f->batch);
	case S_TBB:
		return bench_tbb_run(tbb, n, f->nsub, f->batch, inlined);
	case S_OMP:
		return bench_omp_run(nworkers, n, f->nsub, f->batch, inlined);
	default:
		return f->rayc(refs, n);
	}
}

/* bench_g.reps repetitions of n tasks, each running every side once in
 * turn (bare pool, oneTBB, OpenMP, rayc); medians in tasks/s. */
static void alternate(const char *name, int nworkers, const struct form *f,
                      rayc_ref *refs, size_t n, struct sides *s)
{
	bench_pool *pool = bench_pool_start(nworkers, n);
	bench_tbb *tbb = bench_tbb_start(nworkers, f->nsub);
	size_t warm = f->nsub > 1 ? (size_t)f->nsub * BATCH
	                          : (n < 10000 ? n : 10000);
	int i, k, reps = bench_g.reps;
	size_t inl;

	memset(s, 0, sizeof *s);
	s->on[S_POOL] = s->on[S_RAYC] = 1;
	s->on[S_TBB] = tbb != NULL;
	s->on[S_OMP] = bench_omp_built();
	for (k = 0; k < S_RAYC; k++) /* threads started, pools filled */
		if (s->on[k])
			(void)run_side(k, f, pool, tbb, nworkers, refs, warm,
			               &inl);
	/* rayc once at the full size: the steady state is measured, as
	 * the bare pool's nodes are preallocated (calibration ran smaller
	 * bursts, so the first timed one would fault in the slabs' and the
	 * object table's growth). */
	(void)f->rayc(refs, n);
	for (i = 0; i < reps; i++)
		for (k = 0; k < S_N; k++) {
			double t;

			if (!s->on[k])
				continue;
			settle();
			bench_cost_begin(&s->c[k]);
			t = run_side(k, f, pool, tbb, nworkers, refs, n, &inl);
			bench_cost_end(&s->c[k], (double)n);
			s->v[k][i] = (double)n / t;
			s->inlined[k] += inl;
		}
	bench_tbb_stop(tbb);
	bench_pool_stop(pool);
	fprintf(stderr, "  %s: %zu tasks x %d reps, alternating:\n", name, n,
	        reps);
	for (k = 0; k < S_N; k++) {
		if (!s->on[k]) {
			fprintf(stderr, "    %-9s not built in (see bench/README.md)"
			        "\n", side_name[k]);
			s->med[k] = NAN;
			continue;
		}
		s->med[k] = bench_median(s->v[k], reps);
		fprintf(stderr, "    %-9s %.4g tasks/s [%.4g..%.4g]", side_name[k],
		        s->med[k], s->v[k][0], s->v[k][reps - 1]);
		if (k == S_TBB || k == S_OMP)
			fprintf(stderr, ", %.0f%% of the tasks ran on the "
			        "submitting thread%s", 100.0 *
			        (double)s->inlined[k] / ((double)n * reps),
			        f->nsub > 1 ? "s" : "");
		fputc('\n', stderr);
	}
}

/* The figure's line: rayc against the bare pool, oneTBB and OpenMP as
 * extra fields. */
static void emit(const char *name, const char *pool_label, struct sides *s)
{
	bench_costs_next("task", &s->c[S_RAYC], &s->c[S_POOL]);
	bench_emit_extra("tbb", s->on[S_TBB] ? "onetbb_task_group" : NULL,
	                 s->med[S_TBB], &s->c[S_TBB]);
	bench_emit_extra("omp", s->on[S_OMP] ? "openmp_task" : NULL,
	                 s->med[S_OMP], &s->c[S_OMP]);
	bench_emit(name, s->med[S_RAYC], "tasks/s", 1, pool_label,
	           s->med[S_POOL]);
}

static void fig(const char *name, int nworkers, const struct form *f,
                size_t unit, const char *pool_label)
{
	rayc_ref *refs;
	struct sides *s;
	size_t n;

	if (!bench_want(name))
		return;
	bench_watchdog(name, bench_g.quick ? 60 : 300);
	refs = bench_xmalloc_touched(MAX_ASYNC_TASKS * sizeof *refs, 0);
	s = bench_xmalloc(sizeof *s);
	n = calibrate_ntasks(name, f->rayc, refs, unit);
	alternate(name, nworkers, f, refs, n, s);
	emit(name, pool_label, s);
	free(s);
	free(refs);
}

void bench_fig_tasks_async(int nworkers)
{
	static const struct form f = { 1, 0, rayc_async_run };

	fig("single_client_tasks_async", nworkers, &f, BATCH,
	    "bare_pool_prealloc");
}

void bench_fig_tasks_batch(int nworkers)
{
	static const struct form f = { 1, BATCH, rayc_batch_run };

	fig("single_client_tasks_and_get_batch", nworkers, &f, BATCH,
	    "bare_pool_prealloc");
}

void bench_fig_tasks_multi(int nworkers)
{
	static const struct form f = { MULTI_CLIENTS, 0, rayc_multi_run };

	fig("multi_client_tasks_async", nworkers, &f, MULTI_CLIENTS * BATCH,
	    "bare_pool_prealloc_multi");
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
