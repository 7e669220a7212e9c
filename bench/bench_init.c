/*
 * bench_init.c -- start-up and shut-down cost: rayc_init(NULL) through one
 * task's result, then rayc_shutdown, repeated; medians in milliseconds.
 */
#include <stdio.h>

#include "bench.h"

void bench_fig_init(void)
{
	static const char name[] = "init_to_first_result";
	static const char sname[] = "shutdown_ms";
	double init_ms[64], shut_ms[64], spent = 0, budget, im, sm;
	struct bench_cost ic = { 0 }, sc = { 0 };
	int n, min_cycles, max_cycles;

	if (!bench_want(name) && !bench_want(sname))
		return;
	bench_watchdog(name, bench_g.quick ? 60 : 300);
	/* Enough cycles for a median, bounded by time on slow machines. */
	min_cycles = bench_g.quick ? 5 : 11;
	max_cycles = bench_g.quick ? 9 : 31;
	budget = bench_g.rep_s * bench_g.reps;
	for (n = 0; n < max_cycles && (n < min_cycles || spent < budget); n++) {
		rayc_ref ref;
		rayc_view v;
		double t0, t1, t2, t3;

		bench_cost_begin(&ic);
		t0 = bench_now();
		BENCH_CHECK(rayc_init(NULL));
		bench_call_noop(&ref);
		BENCH_CHECK(rayc_get(ref, &v, BENCH_GET_TIMEOUT_MS));
		t1 = bench_now();
		bench_cost_end(&ic, 1);
		if (v.type == RAYC_TYPE_ERROR)
			bench_die("%s: task failed: %s", name,
			          (const char *)v.data);
		rayc_view_release(&v);
		BENCH_CHECK(rayc_release(ref));
		bench_cost_begin(&sc);
		t2 = bench_now();
		BENCH_CHECK(rayc_shutdown());
		t3 = bench_now();
		bench_cost_end(&sc, 1);
		init_ms[n] = (t1 - t0) * 1e3;
		shut_ms[n] = (t3 - t2) * 1e3;
		spent += t3 - t0;
	}
	im = bench_median(init_ms, n); /* sorts: [0] is min, [n-1] max */
	sm = bench_median(shut_ms, n);
	fprintf(stderr, "  %s: median %.4g ms [%.4g..%.4g]; shutdown median "
	        "%.4g ms [%.4g..%.4g]; %d cycles\n",
	        name, im, init_ms[0], init_ms[n - 1], sm, shut_ms[0],
	        shut_ms[n - 1], n);
	bench_costs_next("cycle", &ic, NULL);
	bench_emit(name, im, "ms", 0, NULL, 0);
	bench_costs_next("cycle", &sc, NULL);
	bench_emit(sname, sm, "ms", 0, NULL, 0);
}
