/*
 * bench.h -- shared plumbing of rayc-bench: options, clocks, the
 * repetition driver, JSON output, error checks and the in-process
 * baselines.  Only rayc-bench's own files include it.
 */
#ifndef RAYC_BENCH_H
#define RAYC_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "rayc.h"

/* ------------------------------------------------------------------ */
/* Options                                                              */
/* ------------------------------------------------------------------ */
struct bench_opts {
	int quick;    /* --quick: short repetitions, fewer of them */
	double rep_s; /* target length of one timed repetition, seconds */
	int reps;     /* timed repetitions per measurement (median taken) */
	int costs;    /* --costs: syscalls, faults, switches per unit */
};

extern struct bench_opts bench_g;

/* True if the figure called name was asked for (all are, with no names). */
int bench_want(const char *name);

/* ------------------------------------------------------------------ */
/* Clock                                                                */
/* ------------------------------------------------------------------ */
/* CLOCK_MONOTONIC in seconds. */
double bench_now(void);

/* ------------------------------------------------------------------ */
/* Errors: every rayc call is checked; a failure aborts with a sentence */
/* ------------------------------------------------------------------ */
void bench_fail_rayc(const char *file, int line, const char *expr, int err);
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)))
	__attribute__((noreturn));

#define BENCH_CHECK(expr)                                                      \
	do {                                                                   \
		int bench__e = (expr);                                         \
		if (bench__e != RAYC_OK)                                       \
			bench_fail_rayc(__FILE__, __LINE__, #expr, bench__e);  \
	} while (0)

/* Timeout, in ms, for any rayc_get/rayc_wait whose result should come
 * quickly: a hang in the library then aborts with a message instead of
 * blocking the benchmark forever. */
#define BENCH_GET_TIMEOUT_MS 30000

/* malloc that dies on failure, and one that also touches every page. */
void *bench_xmalloc(size_t n);
void *bench_xmalloc_touched(size_t n, int fill);

/* Names the figure being measured (for the watchdog message) and arms a
 * watchdog of `seconds`; 0 disarms it. */
void bench_watchdog(const char *what, unsigned seconds);

/* ------------------------------------------------------------------ */
/* Repetitions                                                          */
/* ------------------------------------------------------------------ */
/* One timed repetition: returns the figure's value for that repetition
 * (a rate, or a time per operation).  It should run for about
 * bench_g.rep_s seconds. */
typedef double (*bench_rep_fn)(void *arg);

/* Runs `reps` repetitions of fn and returns the median value; prints the
 * spread on stderr under label. */
double bench_median_reps(const char *label, bench_rep_fn fn, void *arg,
                         int reps);

/* Runs op(arg) repeatedly, `chunk` calls between clock reads, for about
 * `seconds`.  Returns the number of calls, and the elapsed time in
 * *elapsed. */
typedef void (*bench_op_fn)(void *arg);
uint64_t bench_timed_loop(bench_op_fn op, void *arg, unsigned chunk,
                          double seconds, double *elapsed);

/* Median of n doubles (sorts v in place). */
double bench_median(double *v, int n);

/* ------------------------------------------------------------------ */
/* Output: one JSON line per figure on stdout (if the figure is wanted) */
/* ------------------------------------------------------------------ */
/* baseline may be NULL (no baseline; prints nulls). */
void bench_emit(const char *name, double value, const char *unit,
                int higher_is_better, const char *baseline,
                double baseline_value);

/* Prints v as a JSON number, or null if it is not finite. */
void bench_put_num(double v);

/* Another same-run comparison for the next bench_emit (at most
 * BENCH_EXTRAS): after the ratio its line gets "<key>":"<label>",
 * "<key>_value" and "<key>_ratio" (the figure's value over this one), and
 * with --costs "<key>_syscalls_per_unit" and the rest of the cost fields.
 * label NULL: not measured (not built in); every field is then null.
 * key and label must outlive the bench_emit. */
#define BENCH_EXTRAS 4
struct bench_cost;
struct bench_extra {
	const char *key, *label;
	double value;
	const struct bench_cost *cost; /* may be NULL */
};
void bench_emit_extra(const char *key, const char *label, double value,
                      const struct bench_cost *cost);

/* ------------------------------------------------------------------ */
/* Costs (--costs; bench_costs.c)                                       */
/* ------------------------------------------------------------------ */
#define BENCH_COST_KIDS 16

/* One thread of a child process and its context switches. */
struct bench_thr {
	long tid;
	uint64_t n;
};

/* Counts at the start of an interval (internal to bench_costs.c). */
struct bench_cost_snap {
	uint64_t sys, faults, ctxsw;
	int sys_ok, nkids;
	long kid[BENCH_COST_KIDS];
	uint64_t kid_faults[BENCH_COST_KIDS];
	struct bench_thr *kid_thr[BENCH_COST_KIDS]; /* malloc'd, per thread */
	int kid_nthr[BENCH_COST_KIDS];
};

/* Kernel costs summed over the timed intervals of one measurement (a
 * figure's, or its baseline's, repetitions).  Zero-initialise. */
struct bench_cost {
	double units;            /* work done: tasks, round trips, MiB */
	double syscalls, faults, ctxsw;
	int sys_ok;              /* every interval had a syscall count */
	int peers;               /* most child processes counted at once */
	int intervals;
	struct bench_cost_snap at;
};

/* Opens the syscall counter; call before any thread or child process
 * exists (it counts those created later).  Says on stderr why syscalls
 * are n/a if it cannot. */
void bench_costs_open(void);

/* Brackets one timed interval; no-ops without --costs or with c NULL.
 * units: the work done in the interval. */
void bench_cost_begin(struct bench_cost *c);
void bench_cost_end(struct bench_cost *c, double units);

/* Where bench_timed_loop adds its interval (and its call count as the
 * units), and rep functions that time themselves theirs; NULL: none. */
extern struct bench_cost *bench_cost_cur;

/* Costs the next bench_emit prints (per: the unit's name, "task"...);
 * either may be NULL (printed as null). */
void bench_costs_next(const char *per, const struct bench_cost *fig,
                      const struct bench_cost *base);
/* For bench_emit. */
void bench_costs_put(const char *name, const char *baseline,
                     const struct bench_extra *ex, int nex);

/* ------------------------------------------------------------------ */
/* Runtime                                                              */
/* ------------------------------------------------------------------ */
/* rayc_init with cfg (NULL = defaults), checked, and the worker count
 * the runtime reports (for sizing the bare-pool baselines). */
int bench_runtime_start(const rayc_config *cfg);
void bench_runtime_stop(void);

/* Name the empty task is registered under (RAYC_REMOTE in bench_tasks.c). */
#define BENCH_NOOP_FN "bench_noop"

/* Submits one call of the empty task, checked. */
void bench_call_noop(rayc_ref *out);

/* Gets ref (bounded wait), checks it is not an error, releases the view
 * and the ref. */
void bench_get_release(rayc_ref ref);

/* ------------------------------------------------------------------ */
/* Baselines (bench_baseline.c)                                        */
/* ------------------------------------------------------------------ */
typedef struct bench_pool bench_pool;

/* A bare mutex/condvar thread pool with nworkers threads and room for
 * max_tasks preallocated task nodes. */
bench_pool *bench_pool_start(int nworkers, size_t max_tasks);
void bench_pool_stop(bench_pool *p);

/* Seconds to run ntasks empty tasks, submitted by nsubmitters threads
 * (ntasks split evenly), until all are done.  batch > 0: each submitter
 * submits batch tasks, waits for them, and repeats (Ray's get-a-batch
 * form); batch == 0: submit everything, then wait. */
double bench_pool_run(bench_pool *p, size_t ntasks, int nsubmitters,
                      size_t batch);

/* Microseconds per round trip of a two-thread ping-pong, measured for
 * about `seconds`.  spin = 0: mutex + condvar; 1: spinning on an atomic. */
double bench_pingpong_us(int spin, double seconds);
/* (bench_timed_loop inside counts into bench_cost_cur, per round trip.) */

/* GB/s (1e9 bytes/s) of memcpy(dst, src, n) into an already-touched dst,
 * over `reps` repetitions, median. */
double bench_memcpy_gbps(void *dst, const void *src, size_t n, int reps);

/* ------------------------------------------------------------------ */
/* Network baselines (bench_netbase.c)                                 */
/* ------------------------------------------------------------------ */
/* The other end of the network baselines: this executable started again
 * with RAYC_BENCH_ECHO set (bench_echo_main), up until bench_net_stop.
 * Start it before rayc_init: it is then a child process that --costs
 * counts (process+peers), and not a copy of the rayc peers' sockets. */
typedef struct bench_net bench_net;
bench_net *bench_net_start(void);
void bench_net_stop(bench_net *n);

/* Each is one timed repetition and brackets its timed part for
 * bench_cost_cur.  Microseconds per round trip of 64 bytes each way,
 * over about bench_g.rep_s (raw TCP; NNG req/rep): */
double bench_net_tcp_rtt_us(bench_net *n);
double bench_net_nng_rtt_us(bench_net *n);
/* The same over NNG's stream API, the way rayc's mesh uses it: the
 * other side answers from its receive callback (on an NNG task thread);
 * this side's thread sends, waiting on an aio, and its receive callback
 * wakes it with the answer.  No rayc round trip can cost less than
 * this, syscalls and context switches included. */
double bench_net_nng_stream_rtt_us(bench_net *n);
/* A 64-byte round trip over a plain blocking TCP socket shaped as a task
 * lane would be (a socket beside the NNG connection that rayc reads
 * itself, as bulk lanes do for object bytes): a thread at each end blocks
 * in read(); this side's hands each answer to the thread that sent the
 * ping (a mutex and condition variable), and the other side's hands each
 * ping to a worker thread that answers (inline_answer 0) or answers it
 * itself (inline_answer 1).  What task frames would cost without NNG. */
double bench_net_lane_rtt_us(bench_net *n, int inline_answer);

/* The wire size of an empty task's TASK frame and of its TASK_DONE
 * answer (32-byte header each; lib/net/owner.c encode_task, xrec.c
 * rayc__xrec_send and executor.c), for BENCH_NOOP_FN with 1 CPU: TASK
 * id 16, dispatch 4, name 4+10, attempt 4, retries 4, retry_exceptions
 * 1, nreturns 4, one demand 1+(4+3)+8, nargs 4 = 67 bytes of payload;
 * TASK_DONE id 16, dispatch 4, status 1, nreturns 4, inline 1, type 1,
 * empty blob 8 = 35.  Checked on the wire (strace of both peers over
 * 60,000 tasks: 99.6 and 67.3 bytes per task, heartbeats included). */
#define BENCH_TASK_FRAME_BYTES 99
#define BENCH_DONE_FRAME_BYTES 67

/* Messages per second: count requests of BENCH_TASK_FRAME_BYTES, each
 * answered with BENCH_DONE_FRAME_BYTES, at most window unanswered; both
 * sides write every batch they can in one write() (see bench/README.md). */
double bench_net_tcp_msgs(bench_net *n, size_t count, int window);

/* GB/s of one transfer of bytes into the other process, in 1 MiB writes,
 * read straight into fresh anonymous memory (fresh) or into one buffer
 * the other process keeps per size (its first use is touched first,
 * untimed). */
double bench_net_tcp_bulk(bench_net *n, size_t bytes, int fresh);

/* ------------------------------------------------------------------ */
/* Figure runners                                                      */
/* ------------------------------------------------------------------ */
/* Need a running runtime with default settings (bench_runtime_start). */
void bench_fig_tasks_async(int nworkers);
void bench_fig_tasks_batch(int nworkers);
void bench_fig_tasks_multi(int nworkers);
void bench_fig_tasks_sync(void);
void bench_fig_wait_1k(void);
/* Actor figures (bench_actors.c), same runtime. */
void bench_fig_actors(int nworkers);
/* Need a runtime whose store holds bench_store_bytes_needed(). */
size_t bench_store_bytes_needed(void);
void bench_fig_get_calls(void);
void bench_fig_put_calls(void);
void bench_fig_put_gigabytes(void);
/* Runs its own init/shutdown cycles; no runtime may be running. */
void bench_fig_init(void);
void bench_fig_remote(void);
/* The founder process of coordinator_failover (RAYC_BENCH_FOUNDER_FILE). */
int bench_founder_main(void);
int bench_echo_main(void);
double bench_median(double *v, int n);

#endif /* RAYC_BENCH_H */
