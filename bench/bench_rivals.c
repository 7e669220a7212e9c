/*
 * bench_rivals.c -- the OpenMP baseline of the task figures (built with
 * the compiler's OpenMP when meson finds it), and what stands in for
 * whichever of OpenMP and oneTBB (bench_tbb.cpp) this build lacks.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "bench_rivals.h"

#ifdef _OPENMP
/* Tasks each thread of the team ran, one cache line each. */
#define OMP_MAX_THREADS 256
static struct {
	size_t n;
	double t0; /* a submitter: when it left the barrier */
	char pad[64 - sizeof(size_t) - sizeof(double)];
} ran[OMP_MAX_THREADS];

/* The empty task; noinline, as in the bare pool, plus the count. */
static __attribute__((noinline)) void omp_empty_task(size_t i)
{
	__asm__ __volatile__("" : : "r"(i) : "memory");
	ran[omp_get_thread_num()].n++;
}

double bench_omp_run(int nworkers, size_t ntasks, int nsubmitters,
                     size_t batch, size_t *inlined)
{
	int nthreads = (nworkers < 1 ? 1 : nworkers) + nsubmitters;
	size_t per = ntasks / (size_t)nsubmitters;
	double t0, t1;
	int got = 0;

	if (nsubmitters > 1 && batch > 0)
		bench_die("OpenMP: batch form needs one submitter");
	if (nthreads > OMP_MAX_THREADS)
		bench_die("OpenMP: %d threads, at most %d", nthreads,
		          OMP_MAX_THREADS);
	memset(ran, 0, sizeof ran);
	omp_set_dynamic(0);
#pragma omp parallel num_threads(nthreads)
	{
		int id = omp_get_thread_num();

#pragma omp master
		got = omp_get_num_threads();
#pragma omp barrier
		if (id < nsubmitters && got == nthreads) {
			ran[id].t0 = bench_now();
			size_t lo = (size_t)id * per;
			size_t hi = id == nsubmitters - 1 ? ntasks : lo + per;
			size_t step = batch > 0 ? batch : hi - lo;

			for (size_t i = lo; i < hi; i += step) {
				size_t end = i + step < hi ? i + step : hi;

				for (size_t j = i; j < end; j++) {
#pragma omp task firstprivate(j)
					omp_empty_task(j);
				}
#pragma omp taskwait
			}
		}
	} /* implicit barrier: every task has run */
	t1 = bench_now();
	if (got != nthreads)
		bench_die("OpenMP: asked for %d threads, got %d (OMP_THREAD_LIMIT?)",
		          nthreads, got);
	/* From the first submitter's start (any thread may be preempted
	 * between the barrier and its clock read). */
	*inlined = 0;
	t0 = ran[0].t0;
	for (int i = 0; i < nsubmitters; i++) {
		*inlined += ran[i].n;
		if (ran[i].t0 < t0)
			t0 = ran[i].t0;
	}
	return t1 - t0;
}

int bench_omp_built(void)
{
	return 1;
}
#else
double bench_omp_run(int nworkers, size_t ntasks, int nsubmitters,
                     size_t batch, size_t *inlined)
{
	*inlined = 0;
	(void)nworkers;
	(void)ntasks;
	(void)nsubmitters;
	(void)batch;
	return NAN;
}

int bench_omp_built(void)
{
	return 0;
}
#endif

#ifndef BENCH_HAVE_TBB
bench_tbb *bench_tbb_start(int nworkers, int nsubmitters)
{
	(void)nworkers;
	(void)nsubmitters;
	return NULL;
}

void bench_tbb_stop(bench_tbb *t)
{
	(void)t;
}

double bench_tbb_run(bench_tbb *t, size_t ntasks, int nsubmitters,
                     size_t batch, size_t *inlined)
{
	*inlined = 0;
	(void)t;
	(void)ntasks;
	(void)nsubmitters;
	(void)batch;
	return NAN;
}

int bench_tbb_built(void)
{
	return 0;
}
#endif
