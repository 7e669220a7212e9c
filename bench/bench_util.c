/*
 * bench_util.c -- clocks, the repetition driver, JSON output, checked
 * rayc calls and the watchdog used by every rayc-bench figure.
 */
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

struct bench_opts bench_g = { .quick = 0, .rep_s = 0.3, .reps = 5,
                              .costs = 0 };

double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------ */
/* Errors                                                               */
/* ------------------------------------------------------------------ */
void bench_fail_rayc(const char *file, int line, const char *expr, int err)
{
	fprintf(stderr, "rayc-bench: %s:%d: %s failed: %s (code %d): %s\n",
	        file, line, expr, rayc_strerror(err), err, rayc_errmsg());
	fflush(stderr);
	abort();
}

void bench_die(const char *fmt, ...)
{
	va_list ap;

	fputs("rayc-bench: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
	abort();
}

void *bench_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		bench_die("out of memory allocating %zu bytes", n);
	return p;
}

void *bench_xmalloc_touched(size_t n, int fill)
{
	void *p = bench_xmalloc(n);

	memset(p, fill, n);
	return p;
}

/* ------------------------------------------------------------------ */
/* Watchdog: a hang inside the library must not hang a CI run.         */
/* ------------------------------------------------------------------ */
static const char *volatile watchdog_what = "startup";

static void watchdog_fire(int sig)
{
	static const char a[] = "rayc-bench: watchdog: no progress, stuck in ";
	static const char b[] = "; aborting\n";
	const char *w = watchdog_what;
	ssize_t r;

	(void)sig;
	r = write(2, a, sizeof a - 1);
	r = write(2, w, strlen(w));
	r = write(2, b, sizeof b - 1);
	(void)r;
	_exit(3);
}

void bench_watchdog(const char *what, unsigned seconds)
{
	static int installed;

	if (!installed) {
		struct sigaction sa;

		memset(&sa, 0, sizeof sa);
		sa.sa_handler = watchdog_fire;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGALRM, &sa, NULL);
		installed = 1;
	}
	watchdog_what = what;
	alarm(seconds);
}

/* ------------------------------------------------------------------ */
/* Repetitions                                                          */
/* ------------------------------------------------------------------ */
static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
	if (n <= 0)
		return NAN;
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	if (n % 2)
		return v[n / 2];
	return 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double bench_median_reps(const char *label, bench_rep_fn fn, void *arg,
                         int reps)
{
	double v[64], med;
	int i;

	if (reps < 1)
		reps = 1;
	if (reps > 64)
		reps = 64;
	for (i = 0; i < reps; i++)
		v[i] = fn(arg);
	med = bench_median(v, reps);
	fprintf(stderr, "  %-34s median %.4g  (min %.4g, max %.4g, %d reps)\n",
	        label, med, v[0], v[reps - 1], reps);
	return med;
}

uint64_t bench_timed_loop(bench_op_fn op, void *arg, unsigned chunk,
                          double seconds, double *elapsed)
{
	struct bench_cost *c = bench_cost_cur;
	double t0, t;
	uint64_t n = 0;
	unsigned i;

	if (chunk == 0)
		chunk = 1;
	bench_cost_begin(c);
	t0 = bench_now();
	do {
		for (i = 0; i < chunk; i++)
			op(arg);
		n += chunk;
		t = bench_now();
	} while (t - t0 < seconds);
	bench_cost_end(c, (double)n);
	*elapsed = t - t0;
	return n;
}

/* ------------------------------------------------------------------ */
/* JSON output                                                          */
/* ------------------------------------------------------------------ */
void bench_put_num(double v)
{
	if (isfinite(v))
		printf("%.6g", v);
	else
		fputs("null", stdout);
}

static struct bench_extra extras[BENCH_EXTRAS];
static int nextras;

void bench_emit_extra(const char *key, const char *label, double value,
                      const struct bench_cost *cost)
{
	if (nextras == BENCH_EXTRAS)
		bench_die("internal: more than %d extras on one line",
		          BENCH_EXTRAS);
	extras[nextras].key = key;
	extras[nextras].label = label;
	extras[nextras].value = label != NULL ? value : NAN;
	extras[nextras].cost = label != NULL ? cost : NULL;
	nextras++;
}

static void put_extras(double value)
{
	int i;

	for (i = 0; i < nextras; i++) {
		const struct bench_extra *x = &extras[i];

		if (x->label != NULL)
			printf(",\"%s\":\"%s\"", x->key, x->label);
		else
			printf(",\"%s\":null", x->key);
		printf(",\"%s_value\":", x->key);
		bench_put_num(x->value);
		printf(",\"%s_ratio\":", x->key);
		bench_put_num(x->value != 0 ? value / x->value : NAN);
	}
}

void bench_emit(const char *name, double value, const char *unit,
                int higher_is_better, const char *baseline,
                double baseline_value)
{
	if (!bench_want(name)) {
		bench_costs_next(NULL, NULL, NULL);
		nextras = 0;
		return;
	}
	printf("{\"name\":\"%s\",\"value\":", name);
	bench_put_num(value);
	printf(",\"unit\":\"%s\",\"higher_is_better\":%s,", unit,
	       higher_is_better ? "true" : "false");
	if (baseline == NULL) {
		fputs("\"baseline\":null,\"baseline_value\":null,"
		      "\"ratio\":null",
		      stdout);
	} else {
		printf("\"baseline\":\"%s\",\"baseline_value\":", baseline);
		bench_put_num(baseline_value);
		fputs(",\"ratio\":", stdout);
		bench_put_num(baseline_value != 0 ? value / baseline_value
		                                  : NAN);
	}
	put_extras(value);
	if (bench_g.costs)
		bench_costs_put(name, baseline, extras, nextras);
	nextras = 0;
	fputs("}\n", stdout);
	fflush(stdout);
}

/* ------------------------------------------------------------------ */
/* Runtime                                                              */
/* ------------------------------------------------------------------ */
int bench_runtime_start(const rayc_config *cfg)
{
	rayc_stats st;
	long cpus;

	BENCH_CHECK(rayc_init(cfg));
	BENCH_CHECK(rayc_stats_get(&st));
	if (st.num_workers > 0)
		return st.num_workers;
	/* Workers may still be starting; rayc's default is online CPUs. */
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus > 0 ? (int)cpus : 1;
}

void bench_runtime_stop(void)
{
	BENCH_CHECK(rayc_shutdown());
}

void bench_call_noop(rayc_ref *out)
{
	/* No arguments; a non-NULL array keeps "NULL args" out of the
	 * question. */
	static const rayc_arg none[1];

	BENCH_CHECK(rayc_call_array(out, BENCH_NOOP_FN, NULL, none, 0));
}

void bench_get_release(rayc_ref ref)
{
	rayc_view v;

	BENCH_CHECK(rayc_get(ref, &v, BENCH_GET_TIMEOUT_MS));
	if (v.type == RAYC_TYPE_ERROR)
		bench_die("task result is an error object: %s",
		          (const char *)v.data);
	rayc_view_release(&v);
	BENCH_CHECK(rayc_release(ref));
}
