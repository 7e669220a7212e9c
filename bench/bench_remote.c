/*
 * bench_remote.c -- the cross-peer figures (remote_*, cluster_formation_4,
 * coordinator_failover), each run alternately with its same-run network
 * baseline (bench_netbase.c): a raw TCP round trip, a pipelined raw TCP
 * message stream sized like an empty task's frames, raw TCP bulk
 * transfers into fresh and into reused memory, and NNG req/rep.  The rayc
 * peers are copies of this executable started by cfg.local_peers (their
 * rayc_init serves; see main()).
 */
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

/* ---- rayc figures ---- */

static uint32_t other; /* the peer that runs the tasks and makes objects */

/* CPU time (clock ticks) process pid has used, all its threads; 0 if it
 * cannot be read. */
static unsigned long long cpu_ticks(long pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	size_t n;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* After "(comm)": state, then fields 4-13, then utime, stime. */
	p = strrchr(buf, ')');
	if (p == NULL || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u "
	                        "%*u %*u %llu %llu", &ut, &st) != 2)
		return 0;
	return ut + st;
}

static unsigned long long cluster_ticks(void)
{
	rayc_peer_info pi[8];
	size_t n = 0;
	unsigned long long t = cpu_ticks((long)getpid());

	BENCH_CHECK(rayc_cluster_peers(pi, 8, &n));
	for (size_t i = 0; i < n && i < 8; i++)
		if (pi[i].alive && pi[i].pid > 0 && pi[i].pid != getpid())
			t += cpu_ticks(pi[i].pid);
	return t;
}

/* Waits, up to 5 s, until this process and its peer have used no CPU
 * for 50 ms.  A fresh cluster populates the first prefault_bytes of each
 * store in the background; the figures should not share the CPUs, nor
 * their counts, with that.  Returns the seconds waited. */
static double quiesce(void)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	double t0 = bench_now();
	unsigned long long a = cluster_ticks(), b;

	for (;;) {
		nanosleep(&ts, NULL);
		b = cluster_ticks();
		if (b == a || bench_now() - t0 > 5)
			return bench_now() - t0;
		a = b;
	}
}

/* A two-peer local cluster: this driver and one worker peer, started
 * and let go quiet. */
static void remote_up(size_t store)
{
	rayc_config cfg = { .local_peers = 2, .store_bytes = store };
	double t0 = bench_now(), up, quiet;

	BENCH_CHECK(rayc_init(&cfg));
	other = rayc_peer_id() == 1 ? 2 : 1;
	up = bench_now() - t0;
	quiet = quiesce();
	fprintf(stderr, "    (a fresh cluster: up in %.0f ms, then quiet after "
	        "%.0f ms more)\n", up * 1e3, quiet * 1e3);
}

static void remote_down(void)
{
	BENCH_CHECK(rayc_shutdown());
}

static void remote_noop(rayc_ref *out)
{
	static const rayc_arg none[1];
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
	o.node_id = other;
	BENCH_CHECK(rayc_call_array(out, BENCH_NOOP_FN, &o, none, 0));
}

static void remote_roundtrip(void *arg)
{
	rayc_ref r;

	(void)arg;
	remote_noop(&r);
	bench_get_release(r);
}

static double remote_sync_rep(void *arg)
{
	double t;
	uint64_t n = bench_timed_loop(remote_roundtrip, arg, 16,
	                              bench_g.rep_s, &t);
	return t / (double)n * 1e6;
}

/* Tasks per repetition of remote_tasks_async and of its baseline. */
static size_t async_count(void)
{
	return bench_g.quick ? 20000 : 100000;
}

/* n submissions (each by submit), then each got; per second. */
static double async_run(size_t n, void (*submit)(rayc_ref *, void *),
                        void *arg)
{
	rayc_ref *r = bench_xmalloc(n * sizeof(rayc_ref));
	bench_cost_begin(bench_cost_cur);
	double t0 = bench_now();
	for (size_t i = 0; i < n; i++)
		submit(&r[i], arg);
	for (size_t i = 0; i < n; i++)
		bench_get_release(r[i]);
	double t = bench_now() - t0;
	bench_cost_end(bench_cost_cur, (double)n);
	free(r);
	return (double)n / t;
}

static void noop_submit(rayc_ref *r, void *arg)
{
	(void)arg;
	remote_noop(r);
}

static double remote_async_run(size_t n)
{
	return async_run(n, noop_submit, NULL);
}

static double remote_async_rep(void *arg)
{
	(void)arg;
	return remote_async_run(async_count());
}

/* Fresh memory the fetcher's store populated during the last fetch. */
static size_t xfer_grew;

static size_t populated(void)
{
	rayc_stats st;

	BENCH_CHECK(rayc_stats_get(&st));
	return (size_t)st.store_populated_bytes;
}

/* GB/s of one fetch of an object of *(size_t *)arg bytes that the other
 * peer made; only the rayc_get is timed. */
static double remote_xfer_rep(void *arg)
{
	size_t size = *(size_t *)arg;
	rayc_ref r;
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
	o.node_id = other;
	BENCH_CHECK(rayc_call_opts(&r, "bench_make", &o,
	                           RAYC_I64((int64_t)size)));
	BENCH_CHECK(rayc_wait(&r, 1, 1, BENCH_GET_TIMEOUT_MS, NULL, NULL));
	size_t before = populated();
	bench_cost_begin(bench_cost_cur);
	double t0 = bench_now();
	rayc_view v;
	BENCH_CHECK(rayc_get(r, &v, BENCH_GET_TIMEOUT_MS));
	double t = bench_now() - t0;
	bench_cost_end(bench_cost_cur, (double)size / (1 << 20));
	xfer_grew = populated() - before;
	if (v.len != size)
		bench_die("transfer: got %zu bytes, not %zu", v.len, size);
	rayc_view_release(&v);
	BENCH_CHECK(rayc_release(r));
	return (double)size / t / 1e9;
}

static void bench_make(rayc_ctx *ctx)
{
	int64_t n;
	void *p;
	rayc_arg_i64(ctx, 0, &n);
	if (rayc_return_alloc(ctx, 0, (size_t)n, &p) == RAYC_OK)
		memset(p, 0x11, (size_t)n);
	else
		rayc_fail(ctx, "bench_make: no room");
}
RAYC_REMOTE(bench_make)

/* ---- coordinator failover ---- */

#define FAILOVER_TOKEN "rayc-bench-failover"

int bench_founder_main(void)
{
	const char *file = getenv("RAYC_BENCH_FOUNDER_FILE");
	char tmp[512];

	if (rayc_init(NULL) != RAYC_OK)
		return 1;
	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	FILE *f = fopen(tmp, "w");
	if (f == NULL || fprintf(f, "%s\n", rayc_address()) < 0 ||
	    fclose(f) != 0 || rename(tmp, file) != 0)
		return 1;
	rayc_serve();
	rayc_shutdown();
	return 0;
}

static pid_t spawn_env(const char *const *extra)
{
	char *env[96];
	int k = 0;
	for (char **e = environ; *e != NULL && k < 80; e++)
		if (strncmp(*e, "RAYC_", 5) != 0)
			env[k++] = *e;
	for (int i = 0; extra[i] != NULL; i++)
		env[k++] = (char *)extra[i];
	env[k] = NULL;
	char exe[512];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return -1;
	exe[n] = '\0';
	char *argv[] = { exe, NULL };
	pid_t pid;
	return posix_spawn(&pid, exe, NULL, NULL, argv, env) == 0 ? pid : -1;
}

static uint32_t coordinator(int *voters)
{
	rayc_peer_info pi[8];
	size_t n = 0;
	uint32_t c = 0;
	*voters = 0;
	rayc_cluster_peers(pi, 8, &n);
	for (size_t i = 0; i < n && i < 8; i++) {
		if (pi[i].alive && pi[i].is_coordinator)
			c = pi[i].id;
		*voters += pi[i].alive && pi[i].is_voter;
	}
	return c;
}

/* One run: a founder process, this driver and a worker process (3
 * voters); SIGKILL the founder (the coordinator) and time until another
 * peer leads (*elected) and until a KV put commits again (returned), in
 * ms; -1 on failure. */
static double failover_once(double *elected)
{
	char dir[] = "/tmp/rayc-bench-XXXXXX", file[128], fenv[160], aenv[200];
	double result = -1;
	pid_t f = -1, w = -1;

	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(file, sizeof(file), "%s/addr", dir);
	snprintf(fenv, sizeof(fenv), "RAYC_BENCH_FOUNDER_FILE=%s", file);
	/* Clusters are closed by default: the three share a token. */
	const char *fe[] = { fenv, "RAYC_LISTEN=tcp://127.0.0.1:0",
		             "RAYC_TOKEN=" FAILOVER_TOKEN,
		             "RAYC_NUM_WORKERS=1",
		             "RAYC_OBJECT_STORE_BYTES=64m", NULL };
	f = spawn_env(fe);
	char addr[200] = { 0 };
	double t = bench_now();
	FILE *fp = NULL;
	while (f > 0 && (fp = fopen(file, "r")) == NULL && bench_now() - t < 20)
		usleep(2000);
	if (fp == NULL || fgets(addr, sizeof(addr), fp) == NULL)
		goto out;
	addr[strcspn(addr, "\n")] = '\0';
	rayc_config cfg = { .address = addr, .listen = "tcp://127.0.0.1:0",
		            .num_workers = 1, .store_bytes = (size_t)64 << 20,
		            .token = FAILOVER_TOKEN };
	if (rayc_init(&cfg) != RAYC_OK)
		goto out;
	snprintf(aenv, sizeof(aenv), "RAYC_ADDRESS=%s", addr);
	const char *we[] = { aenv, "RAYC_ROLE=worker", "RAYC_NUM_WORKERS=1",
		             "RAYC_TOKEN=" FAILOVER_TOKEN,
		             "RAYC_OBJECT_STORE_BYTES=64m", NULL };
	w = spawn_env(we);
	int voters = 0;
	t = bench_now();
	while ((coordinator(&voters) != 1 || voters < 3) &&
	       bench_now() - t < 20)
		usleep(1000);
	if (voters < 3 || rayc_kv_put("bench", "x", 1) != RAYC_OK)
		goto stop;
	double t0 = bench_now();
	kill(f, SIGKILL);
	uint32_t c;
	while (((c = coordinator(&voters)) == 1 || c == 0) &&
	       bench_now() - t0 < 20)
		usleep(500);
	*elected = (bench_now() - t0) * 1e3;
	if (rayc_kv_put("bench", "y", 1) == RAYC_OK)
		result = (bench_now() - t0) * 1e3;
stop:
	rayc_shutdown(); /* the last driver: the worker exits too */
out:
	if (f > 0) {
		kill(f, SIGKILL);
		waitpid(f, NULL, 0);
	}
	if (w > 0) {
		double tw = bench_now();
		while (waitpid(w, NULL, WNOHANG) == 0 && bench_now() - tw < 10)
			usleep(2000);
		kill(w, SIGKILL);
		waitpid(w, NULL, 0);
	}
	unlink(file);
	rmdir(dir);
	return result;
}


/* ---- cluster formation and failover ---- */

static void fig_formation(void)
{
	double best = 1e9, v[5];
	int reps = bench_g.quick ? 3 : 5;

	bench_watchdog("cluster_formation_4", 120);
	for (int i = 0; i < reps; i++) {
		rayc_config cfg = { .local_peers = 4, .num_workers = 1,
			            .store_bytes = (size_t)256 << 20,
			            .prefault_bytes = (size_t)1 << 20 };
		double t0 = bench_now();
		BENCH_CHECK(rayc_init(&cfg));
		v[i] = bench_now() - t0;
		if (v[i] < best)
			best = v[i];
		BENCH_CHECK(rayc_shutdown());
	}
	double med = bench_median(v, reps);
	fprintf(stderr, "  cluster_formation_4: median %.3f s, best %.3f s\n",
	        med, best);
	/* Its peers start and exit inside each interval, so their faults
	 * and switches cannot be read in /proc. */
	if (bench_g.costs)
		fputs("  cluster_formation_4: costs not measured (the peers "
		      "start and stop inside the timed part)\n", stderr);
	bench_emit("cluster_formation_4", med, "s", 0, NULL, 0);
}

static void fig_failover(void)
{
	int reps = bench_g.quick ? 3 : 5, ok = 0;
	double v[5], e[5];

	bench_watchdog("coordinator_failover", 300);
	for (int i = 0; i < reps; i++) {
		double el = -1, r = failover_once(&el);
		if (r < 0)
			continue;
		e[ok] = el;
		v[ok++] = r;
		fprintf(stderr, "  coordinator_failover: new coordinator in "
		        "%.0f ms, KV put committed at %.0f ms\n", el, r);
	}
	if (ok == 0) {
		fprintf(stderr, "  coordinator_failover: FAILED\n");
		return;
	}
	fprintf(stderr, "  coordinator_failover: median %.0f ms (election "
	        "median %.0f ms; heartbeat timeout 1000 ms)\n",
	        bench_median(v, ok), bench_median(e, ok));
	if (bench_g.costs)
		fputs("  coordinator_failover: costs not measured (its "
		      "processes are killed and restarted)\n", stderr);
	bench_emit("coordinator_failover", bench_median(v, ok), "ms", 0,
	           "heartbeat_timeout_ms", 1000);
}

/* ---- alternation ---- */

/* One side of a comparison: a repetition function that brackets its own
 * timed part for bench_cost_cur, its values and its costs. */
struct side {
	const char *label;
	bench_rep_fn fn;
	void *arg;
	double v[64], med;
	struct bench_cost c;
};

/* Repetition i: the baseline b, then the figure f. */
static void pair_once(struct side *b, struct side *f, int i)
{
	bench_cost_cur = &b->c;
	b->v[i] = b->fn(b->arg);
	bench_cost_cur = &f->c;
	f->v[i] = f->fn(f->arg);
	bench_cost_cur = NULL;
}

/* The median of a side's reps values, said on stderr. */
static void finish(struct side *s, int reps)
{
	s->med = bench_median(s->v, reps);
	fprintf(stderr, "    %-30s median %.4g  (min %.4g, max %.4g, %d)\n",
	        s->label, s->med, s->v[0], s->v[reps - 1], reps);
}

/* reps repetitions, each running the baseline b and then the figure f. */
static void alternate(int reps, struct side *b, struct side *f)
{
	if (reps > 64)
		reps = 64;
	for (int i = 0; i < reps; i++)
		pair_once(b, f, i);
	finish(f, reps);
	finish(b, reps);
}

/* ---- actor calls across peers ---- */

static void actor_call_rt(void *arg)
{
	rayc_ref r;

	BENCH_CHECK(rayc_actor_call(&r, *(rayc_actor *)arg, "add"));
	bench_get_release(r);
}

static double actor_sync_rep(void *arg)
{
	double t;
	uint64_t n = bench_timed_loop(actor_call_rt, arg, 16, bench_g.rep_s,
	                              &t);
	return (double)n / t;
}

static void call_submit(rayc_ref *r, void *arg)
{
	BENCH_CHECK(rayc_actor_call(r, *(rayc_actor *)arg, "add"));
}

static double actor_async_rep(void *arg)
{
	return async_run(async_count(), call_submit, arg);
}

static double tcp_rtt_rate_rep(void *arg)
{
	return 1e6 / bench_net_tcp_rtt_us(arg);
}

/* ---- round trips and message rates ---- */

static double tcp_rtt_rep(void *arg)
{
	return bench_net_tcp_rtt_us(arg);
}

static double nng_rtt_rep(void *arg)
{
	return bench_net_nng_rtt_us(arg);
}

static double nng_stream_rtt_rep(void *arg)
{
	return bench_net_nng_stream_rtt_us(arg);
}

static void fig_sync(bench_net *net)
{
	static const char name[] = "remote_tasks_sync";
	struct side b = { "raw TCP round trip (us)", tcp_rtt_rep, net };
	struct side f = { "remote_tasks_sync (us)", remote_sync_rep, NULL };

	bench_watchdog(name, bench_g.quick ? 60 : 300);
	fprintf(stderr, "  %s, alternating with its baseline:\n", name);
	for (int i = 0; i < 64; i++)
		remote_roundtrip(NULL); /* warm-up */
	alternate(bench_g.reps, &b, &f);
	bench_costs_next("round trip", &f.c, &b.c);
	bench_emit(name, f.med, "us", 0, "raw_tcp_roundtrip_us", b.med);
}

/* The baseline's window for remote_tasks_async: as many unanswered
 * messages as rayc has tasks in flight.  rayc keeps at most 4,096 tasks
 * with hard node affinity in flight on one peer (RAYC__PEER_WINDOW, in
 * lib/net/net_int.h; the rest wait at their owner; until the
 * twenty-third pass it sent them all at once, and this window was 8,192
 * standing for all).  A raw TCP stream's rate is the same from 1,024 on
 * (twenty-second pass, docs/benchmarks.md: 19-21 M msgs/s at 1,024 and at
 * all 100,000, against 0.8-1.4 M at 32, the window this baseline had
 * before that pass), and the first write of a whole window, 99 bytes a
 * message, stays well under the sockets' buffers (the echo side answers
 * as it reads). */
#define TASKS_WINDOW 4096
/* ... and for 1_1_actor_calls_async_across_peers: the calls rayc keeps in
 * flight to an actor on another peer (RAYC__ACTOR_WINDOW, in
 * lib/sched/actor_int.h). */
#define ACTOR_CALLS_WINDOW 1024

struct msgs {
	bench_net *net;
	int window;
};

static double tcp_msgs_rep(void *arg)
{
	struct msgs *m = arg;

	return bench_net_tcp_msgs(m->net, async_count(), m->window);
}

static void fig_async(bench_net *net)
{
	static const char name[] = "remote_tasks_async";
	struct msgs m = { net, TASKS_WINDOW };
	struct side b = { "raw TCP pipelined (msgs/s)", tcp_msgs_rep, &m };
	struct side f = { "remote_tasks_async (tasks/s)", remote_async_rep,
		          NULL };

	bench_watchdog(name, bench_g.quick ? 60 : 300);
	fprintf(stderr, "  %s: %zu tasks per repetition (up to %d in "
	        "flight); baseline: %d-byte messages answered with %d bytes, "
	        "window %d, alternating:\n", name, async_count(), m.window,
	        BENCH_TASK_FRAME_BYTES, BENCH_DONE_FRAME_BYTES, m.window);
	/* Warm-up at the full size: the steady state is measured (a
	 * smaller one left the first timed repetition faulting in the
	 * growth of both peers' slabs and tables: 0.14 page faults per
	 * task over a quick run's three). */
	(void)remote_async_run(async_count());
	(void)bench_net_tcp_msgs(net, 1000, m.window);
	alternate(bench_g.reps, &b, &f);
	bench_costs_next("task", &f.c, &b.c);
	bench_emit(name, f.med, "tasks/s", 1, "raw_tcp_pipelined_msgs_per_s",
	           b.med);
}

/* One actor on the other peer (node affinity), called from here. */
static void fig_actors(bench_net *net)
{
	static const char sync_name[] = "1_1_actor_calls_sync_across_peers";
	static const char async_name[] = "1_1_actor_calls_async_across_peers";
	rayc_actor_opts o;
	rayc_actor h;

	memset(&o, 0, sizeof o);
	o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
	o.node_id = other;
	BENCH_CHECK(rayc_actor_create(&h, "BenchCounter", &o));
	for (int i = 0; i < 64; i++)
		actor_call_rt(&h); /* warm-up, and it is alive */
	if (bench_want(sync_name)) {
		struct side b = { "raw TCP round trips (/s)", tcp_rtt_rate_rep,
			          net };
		struct side f = { "actor calls, sync (/s)", actor_sync_rep, &h };
		bench_watchdog(sync_name, bench_g.quick ? 60 : 300);
		fprintf(stderr, "  %s, alternating with its baseline:\n",
		        sync_name);
		alternate(bench_g.reps, &b, &f);
		bench_costs_next("call", &f.c, &b.c);
		bench_emit(sync_name, f.med, "calls/s", 1,
		           "raw_tcp_roundtrips_per_s", b.med);
	}
	if (bench_want(async_name)) {
		struct msgs m = { net, ACTOR_CALLS_WINDOW };
		struct side b = { "raw TCP pipelined (msgs/s)", tcp_msgs_rep,
			          &m };
		struct side f = { "actor calls, async (/s)", actor_async_rep,
			          &h };
		bench_watchdog(async_name, bench_g.quick ? 60 : 300);
		fprintf(stderr, "  %s: %zu calls per repetition; baseline "
		        "window %d (rayc's calls in flight to an actor), "
		        "alternating:\n", async_name, async_count(),
		        ACTOR_CALLS_WINDOW);
		alternate(bench_g.reps, &b, &f);
		bench_costs_next("call", &f.c, &b.c);
		bench_emit(async_name, f.med, "calls/s", 1,
		           "raw_tcp_pipelined_msgs_per_s", b.med);
	}
	BENCH_CHECK(rayc_actor_release(h));
}

static void fig_nng(bench_net *net)
{
	static const char name[] = "baseline_nng_reqrep_us";
	struct side b = { "raw TCP round trip (us)", tcp_rtt_rep, net };
	struct side f = { "NNG req/rep (us)", nng_rtt_rep, net };

	bench_watchdog(name, bench_g.quick ? 60 : 300);
	fprintf(stderr, "  %s, alternating with raw TCP:\n", name);
	alternate(bench_g.reps, &b, &f);
	bench_costs_next("round trip", &f.c, &b.c);
	bench_emit(name, f.med, "us", 0, "raw_tcp_roundtrip_us", b.med);
}

/* The floor of remote_tasks_sync on NNG: a round trip over NNG's stream
 * API with receive callbacks on both sides (bench_net_nng_stream_rtt_us),
 * alternating with raw TCP; its costs are what the mesh's transport
 * charges before rayc does anything. */
static void fig_nng_stream(bench_net *net)
{
	static const char name[] = "baseline_nng_stream_us";
	struct side b = { "raw TCP round trip (us)", tcp_rtt_rep, net };
	struct side f = { "NNG stream round trip (us)", nng_stream_rtt_rep,
		          net };

	bench_watchdog(name, bench_g.quick ? 60 : 300);
	fprintf(stderr, "  %s, alternating with raw TCP:\n", name);
	alternate(bench_g.reps, &b, &f);
	bench_costs_next("round trip", &f.c, &b.c);
	bench_emit(name, f.med, "us", 0, "raw_tcp_roundtrip_us", b.med);
}

static double lane_handoff_rep(void *arg)
{
	return bench_net_lane_rtt_us(arg, 0);
}

static double lane_inline_rep(void *arg)
{
	return bench_net_lane_rtt_us(arg, 1);
}

/* What remote_tasks_sync could cost with task frames on a socket rayc
 * reads itself (bench_net_lane_rtt_us): with a worker hand-off at the
 * executor, and with the executor's reading thread answering. */
static void fig_lane(bench_net *net, const char *name, bench_rep_fn fn,
                     const char *label)
{
	struct side b = { "raw TCP round trip (us)", tcp_rtt_rep, net };
	struct side f = { label, fn, net };

	bench_watchdog(name, bench_g.quick ? 60 : 300);
	fprintf(stderr, "  %s, alternating with raw TCP:\n", name);
	alternate(bench_g.reps, &b, &f);
	bench_costs_next("round trip", &f.c, &b.c);
	bench_emit(name, f.med, "us", 0, "raw_tcp_roundtrip_us", b.med);
}

/* ---- bulk transfers, cold and warm ---- */

struct xfer {
	const char *name, *cold_name;
	size_t n;
	int same_host;
};

struct bulk {
	bench_net *net;
	size_t n;
	int fresh;
};

static double tcp_bulk_rep(void *arg)
{
	struct bulk *b = arg;

	return bench_net_tcp_bulk(b->net, b->n, b->fresh);
}

/* Cold: each sample is the first fetch in a freshly started cluster,
 * after raw TCP into fresh memory (run just before the cluster starts).
 * Warm: later fetches in the last of those clusters, whose store has
 * freed the earlier copies, each after raw TCP into a reused buffer. */
static void fig_xfer(bench_net *net, const struct xfer *x)
{
	int big = x->n >= ((size_t)1 << 30);
	size_t store = big ? ((size_t)5 << 30) : ((size_t)1 << 30);
	int cold_reps = big && bench_g.quick ? 1 : (big ? 3 : bench_g.reps);
	int warm_reps = big ? 3 : bench_g.reps;
	size_t n = x->n, cold_grew = 0, warm_grew = 0;
	struct bulk cb = { net, n, 1 }, wb = { net, n, 0 };
	struct side bc = { "raw TCP, fresh buffer (GB/s)", tcp_bulk_rep, &cb };
	struct side fc = { "rayc, fresh cluster (GB/s)", remote_xfer_rep, &n };
	struct side bw = { "raw TCP, reused buffer (GB/s)", tcp_bulk_rep, &wb };
	struct side fw = { "rayc, later fetches (GB/s)", remote_xfer_rep, &n };

	bench_watchdog(x->name, bench_g.quick ? 120 : 300);
	/* The fetcher (this process) reads RAYC_SAME_HOST_COPY at each
	 * fetch; the peers were started with it unset, so they offer. */
	if (x->same_host)
		unsetenv("RAYC_SAME_HOST_COPY");
	else
		setenv("RAYC_SAME_HOST_COPY", "0", 1);
	fprintf(stderr, "  %s: %d cold sample%s, then %d warm repetitions, "
	        "each after raw TCP:\n", x->name, cold_reps,
	        cold_reps == 1 ? "" : "s",
	        warm_reps);
	for (int i = 0; i < cold_reps; i++) {
		/* Raw TCP first, while no rayc peer is starting up. */
		if (i > 0)
			remote_down();
		bench_cost_cur = &bc.c;
		bc.v[i] = bc.fn(bc.arg);
		remote_up(store);
		bench_cost_cur = &fc.c;
		fc.v[i] = fc.fn(fc.arg);
		bench_cost_cur = NULL;
		cold_grew += xfer_grew;
	}
	for (int i = 0; i < warm_reps; i++) {
		pair_once(&bw, &fw, i);
		warm_grew += xfer_grew;
	}
	finish(&fc, cold_reps);
	finish(&bc, cold_reps);
	finish(&fw, warm_reps);
	finish(&bw, warm_reps);
	remote_down();
	unsetenv("RAYC_SAME_HOST_COPY");
	fprintf(stderr, "    the fetcher's store populated %.1f MiB per "
	        "cold fetch, %.1f MiB per warm one\n",
	        (double)cold_grew / cold_reps / (1 << 20),
	        (double)warm_grew / warm_reps / (1 << 20));
	bench_costs_next("MiB", &fw.c, &bw.c);
	bench_emit(x->name, fw.med, "GB/s", 1, "raw_tcp_warm_gbps", bw.med);
	bench_costs_next("MiB", &fc.c, &bc.c);
	bench_emit(x->cold_name, fc.med, "GB/s", 1, "raw_tcp_cold_gbps",
	           bc.med);
}

static const struct xfer xfers[] = {
	{ "remote_transfer_1mib", "remote_transfer_1mib_cold",
	  (size_t)1 << 20, 0 },
	{ "remote_transfer_64mib", "remote_transfer_64mib_cold",
	  (size_t)64 << 20, 0 },
	{ "remote_transfer_1gib", "remote_transfer_1gib_cold",
	  (size_t)1 << 30, 0 },
	{ "remote_transfer_64mib_samehost",
	  "remote_transfer_64mib_samehost_cold", (size_t)64 << 20, 1 },
};

#define NXFERS (sizeof xfers / sizeof xfers[0])

static int xfer_wanted(const struct xfer *x)
{
	return bench_want(x->name) || bench_want(x->cold_name);
}

void bench_fig_remote(void)
{
	int actors = bench_want("1_1_actor_calls_sync_across_peers") ||
	             bench_want("1_1_actor_calls_async_across_peers");
	int tasks = bench_want("remote_tasks_sync") ||
	            bench_want("remote_tasks_async") || actors;
	int any = tasks || bench_want("baseline_nng_reqrep_us") ||
	          bench_want("baseline_nng_stream_us") ||
	          bench_want("baseline_lane_handoff_us") ||
	          bench_want("baseline_lane_inline_us");
	bench_net *net;

	if (bench_want("cluster_formation_4"))
		fig_formation();
	if (bench_want("coordinator_failover"))
		fig_failover();
	for (size_t i = 0; i < NXFERS; i++)
		any |= xfer_wanted(&xfers[i]);
	if (!any)
		return;
	/* Before any rayc peer starts: its sockets stay out of theirs. */
	net = bench_net_start();
	if (tasks) {
		remote_up((size_t)1 << 30);
		if (bench_want("remote_tasks_sync"))
			fig_sync(net);
		if (bench_want("remote_tasks_async"))
			fig_async(net);
		if (actors)
			fig_actors(net);
		remote_down();
	}
	if (bench_want("baseline_nng_reqrep_us"))
		fig_nng(net);
	if (bench_want("baseline_nng_stream_us"))
		fig_nng_stream(net);
	if (bench_want("baseline_lane_handoff_us"))
		fig_lane(net, "baseline_lane_handoff_us", lane_handoff_rep,
		         "lane, worker hand-off (us)");
	if (bench_want("baseline_lane_inline_us"))
		fig_lane(net, "baseline_lane_inline_us", lane_inline_rep,
		         "lane, reader answers (us)");
	/* The remote_transfer_* figures measure the TCP path (as before
	 * the same-host path existed, so they compare across commits);
	 * _samehost lets the fetcher read in the holder's arena. */
	for (size_t i = 0; i < NXFERS; i++)
		if (xfer_wanted(&xfers[i]))
			fig_xfer(net, &xfers[i]);
	bench_watchdog("stopping the baselines' echo process", 60);
	bench_net_stop(net);
}
