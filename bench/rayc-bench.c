/*
 * rayc-bench.c -- entry point of rayc's microbenchmark (after
 * `ray microbenchmark`): parses the command line, starts one rayc runtime
 * per group of figures and runs the figures asked for.  Each figure is one
 * JSON line on stdout; progress goes to stderr.  See bench/README.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* Figures share a runtime by group: a group's runtime is started only if
 * one of its figures is wanted. */
enum group {
	GROUP_TASKS, /* default config */
	GROUP_STORE, /* store big enough for 1 GiB objects */
	GROUP_INIT,  /* runs its own init/shutdown cycles */
	GROUP_REMOTE, /* local clusters (peers are copies of rayc-bench) */
};

struct figure {
	const char *name;
	enum group group;
	const char *what;
};

static const struct figure figures[] = {
	{ "single_client_tasks_async", GROUP_TASKS,
	  "submit N empty tasks, then get each (tasks/s)" },
	{ "single_client_tasks_and_get_batch", GROUP_TASKS,
	  "submit 1000 empty tasks, get them, repeat (tasks/s)" },
	{ "multi_client_tasks_async", GROUP_TASKS,
	  "4 threads each submit and get empty tasks (tasks/s)" },
	{ "single_client_tasks_sync", GROUP_TASKS,
	  "submit one empty task and get it (us per round trip)" },
	{ "baseline_spin_pingpong", GROUP_TASKS,
	  "two threads ping-pong by spinning (us per round trip)" },
	{ "single_client_wait_1k_refs", GROUP_TASKS,
	  "rayc_wait on 1000 ready refs (waits/s)" },
	{ "1_1_actor_calls_sync", GROUP_TASKS,
	  "call an actor's method and get the result, one at a time "
	  "(calls/s)" },
	{ "1_1_actor_calls_async", GROUP_TASKS,
	  "make N calls to one actor, then get each (calls/s)" },
	{ "1_1_actor_calls_concurrent", GROUP_TASKS,
	  "the same, to an actor with max_concurrency 4 (calls/s)" },
	{ "1_n_actor_calls_async", GROUP_TASKS,
	  "one caller, N calls spread over one actor per worker (calls/s)" },
	{ "n_n_actor_calls_async", GROUP_TASKS,
	  "4 threads each call their own actor N/4 times (calls/s)" },
	{ "n_n_actor_calls_with_arg_async", GROUP_TASKS,
	  "the same, each call taking a ref to an 8-byte object (calls/s)" },
	{ "single_client_get_calls", GROUP_STORE,
	  "rayc_get + view release of an 8-byte object (calls/s)" },
	{ "single_client_get_calls_large", GROUP_STORE,
	  "rayc_get + view release of a 64 MiB object (calls/s)" },
	{ "single_client_put_calls", GROUP_STORE,
	  "rayc_put + release of an 8-byte object (calls/s)" },
	{ "single_client_put_calls_1kib", GROUP_STORE,
	  "rayc_put + release of a 1 KiB object (calls/s)" },
	{ "single_client_put_gigabytes", GROUP_STORE,
	  "rayc_put + release of 64 MiB (GB/s)" },
	{ "single_client_put_gigabytes_1gib", GROUP_STORE,
	  "rayc_put + release of 1 GiB (GB/s)" },
	{ "init_to_first_result", GROUP_INIT,
	  "rayc_init(NULL) to the first task's result (ms)" },
	{ "shutdown_ms", GROUP_INIT, "rayc_shutdown after that (ms)" },
	{ "cluster_formation_4", GROUP_REMOTE,
	  "rayc_init with local_peers = 4 until all serve (s)" },
	{ "coordinator_failover", GROUP_REMOTE,
	  "kill the coordinator of 3 voters: until a KV put commits again "
	  "(ms)" },
	{ "remote_tasks_sync", GROUP_REMOTE,
	  "one empty task on another peer and get it (us per round trip)" },
	{ "remote_tasks_async", GROUP_REMOTE,
	  "submit N empty tasks to another peer, then get each (tasks/s)" },
	{ "1_1_actor_calls_sync_across_peers", GROUP_REMOTE,
	  "call an actor on another peer and get the result (calls/s)" },
	{ "1_1_actor_calls_async_across_peers", GROUP_REMOTE,
	  "make N calls to an actor on another peer, then get each "
	  "(calls/s)" },
	{ "remote_transfer_1mib", GROUP_REMOTE,
	  "get a 1 MiB object made on another peer, over TCP, into recycled "
	  "memory (GB/s)" },
	{ "remote_transfer_1mib_cold", GROUP_REMOTE,
	  "the same, first fetch in a fresh cluster (GB/s)" },
	{ "remote_transfer_64mib", GROUP_REMOTE,
	  "get a 64 MiB object made on another peer, over TCP, into recycled "
	  "memory (GB/s)" },
	{ "remote_transfer_64mib_cold", GROUP_REMOTE,
	  "the same, first fetch in a fresh cluster (GB/s)" },
	{ "remote_transfer_1gib", GROUP_REMOTE,
	  "get a 1 GiB object made on another peer, over TCP, into recycled "
	  "memory (GB/s)" },
	{ "remote_transfer_1gib_cold", GROUP_REMOTE,
	  "the same, first fetch in a fresh cluster (GB/s)" },
	{ "remote_transfer_64mib_samehost", GROUP_REMOTE,
	  "64 MiB read in place in the other peer's arena, same host "
	  "(GB/s)" },
	{ "remote_transfer_64mib_samehost_cold", GROUP_REMOTE,
	  "the same, first fetch in a fresh cluster (GB/s)" },
	{ "baseline_nng_reqrep_us", GROUP_REMOTE,
	  "NNG req/rep round trip between two processes (us)" },
	{ "baseline_nng_stream_us", GROUP_REMOTE,
	  "NNG stream round trip, receive callbacks on both sides: the "
	  "floor of remote_tasks_sync on NNG (us)" },
	{ "baseline_lane_handoff_us", GROUP_REMOTE,
	  "plain TCP round trip with a thread hand-off at each end: a task "
	  "lane's floor with the task run by a worker (us)" },
	{ "baseline_lane_inline_us", GROUP_REMOTE,
	  "the same, the far end's reading thread answering: a task lane's "
	  "floor with the task run where it is read (us)" },
};

#define NFIGURES (sizeof figures / sizeof figures[0])

static int wanted[NFIGURES];

int bench_want(const char *name)
{
	size_t i;

	for (i = 0; i < NFIGURES; i++)
		if (strcmp(figures[i].name, name) == 0)
			return wanted[i];
	bench_die("internal: figure '%s' missing from the table", name);
}

static int group_wanted(enum group g)
{
	size_t i;

	for (i = 0; i < NFIGURES; i++)
		if (figures[i].group == g && wanted[i])
			return 1;
	return 0;
}

/* Wants the figure at index j, and its pair: X and X_cold are one
 * measurement, so naming either prints both. */
static void want_pair(size_t j)
{
	const char *name = figures[j].name;
	size_t len = strlen(name), k;
	static const char sfx[] = "_cold";

	wanted[j] = 1;
	for (k = 0; k < NFIGURES; k++) {
		const char *o = figures[k].name;
		size_t ol = strlen(o);

		if ((ol == len + sizeof sfx - 1 && strncmp(o, name, len) == 0 &&
		     strcmp(o + len, sfx) == 0) ||
		    (len == ol + sizeof sfx - 1 && strncmp(name, o, ol) == 0 &&
		     strcmp(name + ol, sfx) == 0))
			wanted[k] = 1;
	}
}

static void usage(FILE *f)
{
	size_t i;

	fputs("usage: rayc-bench [--quick] [--costs] [--reps N] [NAME...]\n"
	      "  Runs the named figures (all with no NAME), one JSON line\n"
	      "  each on stdout.  --quick: short runs, all in under a minute.\n"
	      "  --costs: also syscalls, page faults and context switches\n"
	      "  per unit of work, over the timed repetitions.\n"
	      "  Naming X or X_cold runs and prints both.\n"
	      "  --list: print the figure names.\n"
	      "  --reps N: N timed repetitions (1-64; default 5, 3 with\n"
	      "  --quick) of the figures that repeat by count, for a\n"
	      "  longer steady state under a profiler.\n"
	      "figures:\n",
	      f);
	for (i = 0; i < NFIGURES; i++)
		fprintf(f, "  %-36s %s\n", figures[i].name, figures[i].what);
}

static void parse_args(int argc, char **argv)
{
	int i, named = 0, reps = 0;
	size_t j;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			bench_g.quick = 1;
		} else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
			reps = atoi(argv[++i]);
			if (reps < 1 || reps > 64) {
				fprintf(stderr, "rayc-bench: --reps takes 1 to "
				        "64\n");
				exit(2);
			}
		} else if (strcmp(argv[i], "--costs") == 0) {
			bench_g.costs = 1;
		} else if (strcmp(argv[i], "--help") == 0 ||
		           strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(argv[i], "--list") == 0) {
			for (j = 0; j < NFIGURES; j++)
				puts(figures[j].name);
			exit(0);
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "rayc-bench: unknown option '%s'\n",
			        argv[i]);
			usage(stderr);
			exit(2);
		} else {
			for (j = 0; j < NFIGURES; j++)
				if (strcmp(figures[j].name, argv[i]) == 0)
					break;
			if (j == NFIGURES) {
				fprintf(stderr, "rayc-bench: unknown figure "
				        "'%s'\n", argv[i]);
				usage(stderr);
				exit(2);
			}
			want_pair(j);
			named = 1;
		}
	}
	if (!named)
		for (j = 0; j < NFIGURES; j++)
			wanted[j] = 1;
	if (bench_g.quick) {
		bench_g.rep_s = 0.12;
		bench_g.reps = 3;
	} else {
		bench_g.rep_s = 0.3;
		bench_g.reps = 5;
	}
	if (reps > 0)
		bench_g.reps = reps;
}

/* Sanity, not a figure: every submitted task ran, and nothing the figures
 * released is still alive.  Warns on stderr; the figures stand anyway. */
static void check_stats(const char *group)
{
	rayc_stats st;

	BENCH_CHECK(rayc_stats_get(&st));
	fprintf(stderr, "  %s stats: %llu tasks submitted, %llu executed, "
	        "%llu failed, %llu objects live, %llu store bytes used\n",
	        group, (unsigned long long)st.tasks_submitted,
	        (unsigned long long)st.tasks_executed,
	        (unsigned long long)st.tasks_failed,
	        (unsigned long long)st.objects,
	        (unsigned long long)st.store_used_bytes);
	if (st.tasks_executed < st.tasks_submitted)
		fprintf(stderr, "  WARNING: %s: fewer tasks executed than "
		        "submitted, although every result was got\n", group);
	if (st.objects != 0 || st.store_used_bytes != 0)
		fprintf(stderr, "  WARNING: %s: objects or store bytes still "
		        "live after every ref and view was released\n", group);
}

static void run_tasks_group(void)
{
	int nworkers;

	fputs("rayc-bench: task figures (default config)\n", stderr);
	nworkers = bench_runtime_start(NULL);
	fprintf(stderr, "  rayc workers: %d (bare pools use as many)\n",
	        nworkers);
	bench_fig_tasks_async(nworkers);
	bench_fig_tasks_batch(nworkers);
	bench_fig_tasks_multi(nworkers);
	bench_fig_tasks_sync();
	bench_fig_wait_1k();
	bench_fig_actors(nworkers);
	check_stats("task figures");
	bench_watchdog("rayc_shutdown after the task figures", 60);
	bench_runtime_stop();
}

static void run_store_group(void)
{
	rayc_config cfg;

	memset(&cfg, 0, sizeof cfg);
	cfg.store_bytes = bench_store_bytes_needed();
	fprintf(stderr, "rayc-bench: object figures (store %zu MiB)\n",
	        cfg.store_bytes >> 20);
	bench_runtime_start(&cfg);
	bench_fig_get_calls();
	bench_fig_put_calls();
	bench_fig_put_gigabytes();
	check_stats("object figures");
	bench_watchdog("rayc_shutdown after the object figures", 60);
	bench_runtime_stop();
}

int main(int argc, char **argv)
{
	double t0;

	/* Copies started as cluster peers serve inside rayc_init and exit;
	 * the echo process of the network baselines never gets further. */
	const char *role = getenv("RAYC_ROLE");
	if (role != NULL && strcmp(role, "worker") == 0)
		return rayc_init(NULL) == RAYC_OK ? 0 : 1;
	if (getenv("RAYC_BENCH_ECHO") != NULL)
		return bench_echo_main();
	if (getenv("RAYC_BENCH_FOUNDER_FILE") != NULL)
		return bench_founder_main();

	parse_args(argc, argv);
	/* Before any thread or child exists: the counter follows them. */
	if (bench_g.costs)
		bench_costs_open();
	t0 = bench_now();
	fprintf(stderr, "rayc-bench: %s mode, %d reps of ~%.2f s each\n",
	        bench_g.quick ? "quick" : "full", bench_g.reps, bench_g.rep_s);
	bench_watchdog("rayc_init", 60);
	if (group_wanted(GROUP_TASKS))
		run_tasks_group();
	if (group_wanted(GROUP_STORE))
		run_store_group();
	if (group_wanted(GROUP_INIT)) {
		fputs("rayc-bench: start-up figures\n", stderr);
		bench_fig_init();
	}
	if (group_wanted(GROUP_REMOTE)) {
		fputs("rayc-bench: cross-peer figures\n", stderr);
		bench_watchdog("cross-peer figures", 300);
		bench_fig_remote();
	}
	bench_watchdog("exit", 0);
	fprintf(stderr, "rayc-bench: done in %.1f s\n", bench_now() - t0);
	return 0;
}
