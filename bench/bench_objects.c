/*
 * bench_objects.c -- object store figures: rayc_get on a ready object
 * (small and 64 MiB, both zero-copy), rayc_put of small objects, and
 * rayc_put bandwidth for 64 MiB and 1 GiB objects against memcpy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define MIB ((size_t)1 << 20)
#define GIB ((size_t)1 << 30)
#define SMALL_BYTES 8
#define KIB_BYTES 1024
#define LARGE_BYTES (64 * MIB)
#define HUGE_BYTES GIB

size_t bench_store_bytes_needed(void)
{
	/* 1 GiB object + room for the allocator to place it next to the
	 * freed 64 MiB ones; sparse, so asking much costs nothing. */
	if (bench_want("single_client_put_gigabytes_1gib"))
		return 3 * GIB;
	return 1 * GIB;
}

/* ------------------------------------------------------------------ */
/* rayc_get + rayc_view_release on one ready object                     */
/* ------------------------------------------------------------------ */
static void get_once(void *arg)
{
	const rayc_ref *ref = arg;
	rayc_view v;

	BENCH_CHECK(rayc_get(*ref, &v, BENCH_GET_TIMEOUT_MS));
	rayc_view_release(&v);
}

static double get_rep(void *arg)
{
	double el;
	uint64_t n = bench_timed_loop(get_once, arg, 256, bench_g.rep_s, &el);

	return (double)n / el;
}

static void get_figure(const char *name, size_t bytes)
{
	void *buf;
	rayc_ref ref;
	rayc_view v;
	struct bench_cost c = { 0 };
	double r;

	if (!bench_want(name))
		return;
	bench_watchdog(name, bench_g.quick ? 60 : 300);
	buf = bench_xmalloc_touched(bytes, 0x5a);
	BENCH_CHECK(rayc_put(&ref, buf, bytes));
	free(buf);
	BENCH_CHECK(rayc_get(ref, &v, BENCH_GET_TIMEOUT_MS));
	if (v.len != bytes)
		bench_die("%s: rayc_get gave %zu bytes, put %zu", name, v.len,
		          bytes);
	if (((const unsigned char *)v.data)[bytes - 1] != 0x5a)
		bench_die("%s: rayc_get gave wrong contents", name);
	rayc_view_release(&v);
	bench_cost_cur = &c;
	r = bench_median_reps(name, get_rep, &ref, bench_g.reps);
	bench_cost_cur = NULL;
	BENCH_CHECK(rayc_release(ref));
	bench_costs_next("call", &c, NULL);
	bench_emit(name, r, "calls/s", 1, NULL, 0);
}

void bench_fig_get_calls(void)
{
	get_figure("single_client_get_calls", SMALL_BYTES);
	get_figure("single_client_get_calls_large", LARGE_BYTES);
}

/* ------------------------------------------------------------------ */
/* rayc_put + rayc_release of small objects                             */
/* ------------------------------------------------------------------ */
struct put_arg {
	const void *data;
	size_t n;
};

static void put_once(void *arg)
{
	const struct put_arg *a = arg;
	rayc_ref ref;

	BENCH_CHECK(rayc_put(&ref, a->data, a->n));
	BENCH_CHECK(rayc_release(ref));
}

static double put_rep(void *arg)
{
	double el;
	uint64_t n = bench_timed_loop(put_once, arg, 256, bench_g.rep_s, &el);

	return (double)n / el;
}

static void put_calls_figure(const char *name, size_t bytes)
{
	static unsigned char buf[KIB_BYTES];
	struct put_arg a = { buf, bytes };
	struct bench_cost c = { 0 };
	double r;
	int i;

	if (!bench_want(name))
		return;
	bench_watchdog(name, bench_g.quick ? 60 : 300);
	memset(buf, 0x33, sizeof buf);
	for (i = 0; i < 256; i++)
		put_once(&a); /* warm-up */
	bench_cost_cur = &c;
	r = bench_median_reps(name, put_rep, &a, bench_g.reps);
	bench_cost_cur = NULL;
	bench_costs_next("call", &c, NULL);
	bench_emit(name, r, "calls/s", 1, NULL, 0);
}

void bench_fig_put_calls(void)
{
	put_calls_figure("single_client_put_calls", SMALL_BYTES);
	put_calls_figure("single_client_put_calls_1kib", KIB_BYTES);
}

/* ------------------------------------------------------------------ */
/* rayc_put bandwidth against memcpy                                    */
/* ------------------------------------------------------------------ */
/* Seconds for one rayc_put of n bytes plus its release. */
static double put_seconds(const void *src, size_t n)
{
	rayc_ref ref;
	double t0, t1;

	bench_cost_begin(bench_cost_cur);
	t0 = bench_now();
	BENCH_CHECK(rayc_put(&ref, src, n));
	BENCH_CHECK(rayc_release(ref));
	t1 = bench_now();
	bench_cost_end(bench_cost_cur, (double)n / (1 << 20));
	return t1 - t0;
}

/* GB/s of rayc_put over about `seconds` (at least one put). */
static double put_gbps(const void *src, size_t n, double seconds)
{
	double spent = 0;
	uint64_t k = 0;

	do {
		spent += put_seconds(src, n);
		k++;
	} while (spent < seconds);
	return (double)n * (double)k / spent / 1e9;
}

/* GB/s of memcpy over about `seconds` (at least one copy). */
static double memcpy_gbps_for(void *dst, const void *src, size_t n,
                              double seconds)
{
	double one = bench_memcpy_gbps(dst, src, n, 1);
	double per = (double)n / 1e9 / one;
	int reps = (int)(seconds / per);

	if (reps < 1)
		return one;
	return bench_memcpy_gbps(dst, src, n, reps > 64 ? 64 : reps);
}

/* reps alternating memcpy and rayc_put repetitions, each about rep_s
 * (at least one copy / put each); medians in GB/s. */
static void put_bandwidth(const char *name, const char *base, size_t n,
                          int reps)
{
	void *src, *dst;
	struct bench_cost rc = { 0 }, mc = { 0 };
	double rv[64], mv[64], r, m;
	int i;

	if (!bench_want(name))
		return;
	bench_watchdog(name, bench_g.quick ? 60 : 600);
	src = bench_xmalloc_touched(n, 0x77);
	dst = bench_xmalloc_touched(n, 0);
	/* First touch of store pages is slow on VMs; keep it out. */
	(void)put_seconds(src, n);
	for (i = 0; i < reps; i++) {
		bench_cost_cur = &mc;
		mv[i] = memcpy_gbps_for(dst, src, n, bench_g.rep_s);
		bench_cost_cur = &rc;
		rv[i] = put_gbps(src, n, bench_g.rep_s);
	}
	bench_cost_cur = NULL;
	free(dst);
	free(src);
	m = bench_median(mv, reps);
	r = bench_median(rv, reps);
	fprintf(stderr, "  %s: rayc_put %.4g GB/s [%.4g..%.4g], memcpy %.4g "
	        "GB/s [%.4g..%.4g], %d reps\n",
	        name, r, rv[0], rv[reps - 1], m, mv[0], mv[reps - 1], reps);
	bench_costs_next("MiB", &rc, &mc);
	bench_emit(name, r, "GB/s", 1, base, m);
}

void bench_fig_put_gigabytes(void)
{
	put_bandwidth("single_client_put_gigabytes", "memcpy_64mib",
	              LARGE_BYTES, bench_g.reps);
	/* A 1 GiB put takes a good part of a quick repetition by itself:
	 * three (after the warm-up), so the median drops one outlier. */
	put_bandwidth("single_client_put_gigabytes_1gib", "memcpy_1gib",
	              HUGE_BYTES, bench_g.quick ? 3 : bench_g.reps);
}
