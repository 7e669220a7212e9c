/*
 * bench_rivals.h -- the task libraries the task figures are compared with
 * in the same run: oneTBB (bench_tbb.cpp) and OpenMP (bench_omp.c).  Each
 * is built only where meson found it; without it the calls below say so
 * (NULL, NAN) and the figure prints nulls.  Included from C and C++, so it
 * names only what these two files need.
 */
#ifndef RAYC_BENCH_RIVALS_H
#define RAYC_BENCH_RIVALS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* bench_util.c's clock and fatal error, for the C++ side. */
double bench_now(void);
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)))
	__attribute__((noreturn));

typedef struct bench_tbb bench_tbb;

/* A oneTBB task arena with nworkers worker threads and room for
 * nsubmitters submitting threads (the calling threads), as rayc has
 * nworkers workers besides its callers.  NULL if rayc-bench was built
 * without oneTBB. */
bench_tbb *bench_tbb_start(int nworkers, int nsubmitters);
void bench_tbb_stop(bench_tbb *t);

/* Seconds to run ntasks empty tasks through tbb::task_group::run, from
 * nsubmitters threads (ntasks split evenly, at most the arena's
 * nsubmitters), each with its own task_group, until every wait() has
 * returned.  batch > 0 (one submitter only): run batch, wait, repeat.
 * *inlined: how many of the tasks ran on a submitting thread (in wait(),
 * or when TBB ran one at once) rather than on a worker. */
double bench_tbb_run(bench_tbb *t, size_t ntasks, int nsubmitters,
                     size_t batch, size_t *inlined);

/* The same with OpenMP: a parallel region of nworkers + nsubmitters
 * threads in which threads 0..nsubmitters-1 each create their share of
 * the ntasks as `#pragma omp task` and `#pragma omp taskwait`; the other
 * threads run tasks from the implicit barrier.  Timed from a barrier
 * inside the region to its end.  *inlined as above (libgomp runs a task
 * at once, undeferred, while 64 x threads are queued).  NAN if built
 * without OpenMP. */
double bench_omp_run(int nworkers, size_t ntasks, int nsubmitters,
                     size_t batch, size_t *inlined);

/* Whether each was built in (for the messages). */
int bench_tbb_built(void);
int bench_omp_built(void);

#ifdef __cplusplus
}
#endif

#endif /* RAYC_BENCH_RIVALS_H */
