/*
 * bench_tbb.cpp -- the oneTBB baseline of the task figures: empty tasks
 * through tbb::task_group::run, then wait(), in an arena sized like rayc
 * (as many worker threads as rayc has workers, plus a slot for each
 * submitting thread).  Built only when meson finds oneTBB (libtbb-dev);
 * bench_rivals.c stands in otherwise.
 */
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <tbb/task_group.h>

#include "bench_rivals.h"

struct bench_tbb {
	/* At most nworkers TBB worker threads in the whole process: the
	 * limit counts one thread that is not a worker. */
	tbb::global_control limit;
	/* nworkers slots for workers, nsubmitters reserved for callers. */
	tbb::task_arena arena;
	int nsubmitters;

	bench_tbb(int nworkers, int nsub)
		: limit(tbb::global_control::max_allowed_parallelism,
		        (size_t)nworkers + 1),
		  arena(nworkers + nsub, nsub), nsubmitters(nsub)
	{
		arena.initialize();
	}
};

/* Set on a submitting thread while it submits and waits; counts the
 * tasks that thread ran itself. */
static thread_local bool is_submitter;
static thread_local size_t ran_here;

/* The empty task; noinline so the call is a real call, as in the bare
 * pool (bench_baseline.c), plus the count above. */
static __attribute__((noinline)) void tbb_empty_task(size_t i)
{
	__asm__ __volatile__("" : : "r"(i) : "memory");
	if (is_submitter)
		ran_here++;
}

/* One submitter: its own task_group, run n tasks (batch at a time if
 * batch > 0), wait.  Returns how many of them it ran itself. */
static size_t submit_and_wait(size_t n, size_t batch)
{
	tbb::task_group g;

	is_submitter = true;
	ran_here = 0;
	if (batch == 0)
		batch = n;
	for (size_t i = 0; i < n; i += batch) {
		size_t end = i + batch < n ? i + batch : n;

		for (size_t j = i; j < end; j++)
			g.run([j] { tbb_empty_task(j); });
		g.wait();
	}
	is_submitter = false;
	return ran_here;
}

/* Threads wait here until the clock starts (a one-shot barrier). */
struct start_line {
	std::mutex mu;
	std::condition_variable cv;
	int ready = 0;
	bool go = false;
};

static double run_multi(bench_tbb *t, size_t ntasks, int nsub,
                        size_t *inlined)
{
	std::atomic<size_t> ran{ 0 };
	start_line sl;
	std::vector<std::thread> th;
	size_t per = ntasks / (size_t)nsub;
	double t0;

	for (int i = 0; i < nsub; i++) {
		size_t n = i == nsub - 1 ? ntasks - (size_t)i * per : per;

		th.emplace_back([t, &sl, &ran, n] {
			{
				std::unique_lock<std::mutex> lk(sl.mu);
				sl.ready++;
				sl.cv.notify_all();
				sl.cv.wait(lk, [&sl] { return sl.go; });
			}
			t->arena.execute(
				[&ran, n] { ran += submit_and_wait(n, 0); });
		});
	}
	{
		std::unique_lock<std::mutex> lk(sl.mu);
		sl.cv.wait(lk, [&sl, nsub] { return sl.ready == nsub; });
		sl.go = true;
		t0 = bench_now();
		sl.cv.notify_all();
	}
	for (auto &x : th)
		x.join();
	double el = bench_now() - t0;
	*inlined = ran;
	return el;
}

extern "C" bench_tbb *bench_tbb_start(int nworkers, int nsubmitters)
{
	try {
		return new bench_tbb(nworkers < 1 ? 1 : nworkers,
		                     nsubmitters < 1 ? 1 : nsubmitters);
	} catch (const std::exception &e) {
		bench_die("oneTBB: cannot start an arena: %s", e.what());
	}
}

extern "C" void bench_tbb_stop(bench_tbb *t)
{
	delete t;
}

extern "C" double bench_tbb_run(bench_tbb *t, size_t ntasks, int nsubmitters,
                                size_t batch, size_t *inlined)
{
	try {
		if (nsubmitters < 1 || nsubmitters > t->nsubmitters)
			bench_die("oneTBB: %d submitters, arena made for %d",
			          nsubmitters, t->nsubmitters);
		if (nsubmitters > 1 && batch > 0)
			bench_die("oneTBB: batch form needs one submitter");
		if (nsubmitters > 1)
			return run_multi(t, ntasks, nsubmitters, inlined);
		double el = 0;
		t->arena.execute([&el, ntasks, batch, inlined] {
			double t0 = bench_now();
			*inlined = submit_and_wait(ntasks, batch);
			el = bench_now() - t0;
		});
		return el;
	} catch (const std::exception &e) {
		bench_die("oneTBB: %s", e.what());
	}
}

extern "C" int bench_tbb_built(void)
{
	return 1;
}
