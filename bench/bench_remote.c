/*
 * bench_remote.c -- the cross-peer figures (remote_*, cluster_formation_4,
 * coordinator_failover)
 * and their same-run baselines: a raw TCP loopback round trip and raw TCP
 * bandwidth between two processes, and NNG's own req/rep round trip and
 * push/pull message rate.  The other process of each baseline is this
 * executable started again with RAYC_BENCH_ECHO set (bench_echo_main);
 * the rayc peers are copies started by cfg.local_peers (their rayc_init
 * serves; see main()).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "bench.h"

extern char **environ;

#define ECHO_TCP_PORT_ENV "RAYC_BENCH_ECHO"

/* ---- the baseline's other process ---- */

static int listen_tcp(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    listen(fd, 4) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
		bench_die("baseline: cannot listen: %s", strerror(errno));
	*port = ntohs(sa.sin_port);
	return fd;
}

static void nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int read_full(int fd, void *p, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (char *)p + got, n - got);
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

static long pulled;

static void *pull_main(void *arg)
{
	nng_socket *s = arg;
	for (;;) {
		nng_msg *m;
		if (nng_recvmsg(*s, &m, 0) != 0)
			return NULL;
		nng_msg_free(m);
		__atomic_add_fetch(&pulled, 1, __ATOMIC_RELAXED);
	}
}

/* The echo process: a TCP echo (64-byte pings, and a sink that answers
 * one byte per megabyte-stream), an NNG rep echo and an NNG pull counter.
 * It writes its ports on stdout, then serves each in turn until the
 * parent says it is done with it. */
int bench_echo_main(void)
{
	int tport, sport;
	int tl = listen_tcp(&tport), sl = listen_tcp(&sport);
	nng_socket rep, pull;

	if (nng_rep0_open(&rep) != 0 || nng_pull0_open(&pull) != 0)
		bench_die("echo: nng open failed");
	nng_listener lr, lp;
	nng_listen(rep, "tcp://127.0.0.1:0", &lr, 0);
	nng_listen(pull, "tcp://127.0.0.1:0", &lp, 0);
	int rport = 0, pport = 0;
	nng_listener_get_int(lr, NNG_OPT_TCP_BOUND_PORT, &rport);
	nng_listener_get_int(lp, NNG_OPT_TCP_BOUND_PORT, &pport);
	pthread_t th;
	pthread_create(&th, NULL, pull_main, &pull);
	printf("%d %d %d %d\n", tport, sport, rport, pport);
	fflush(stdout);
	/* TCP ping-pong server. */
	int c = accept(tl, NULL, NULL);
	nodelay(c);
	char buf[1 << 16];
	for (;;) {
		if (read_full(c, buf, 64) != 0)
			break;
		if (buf[0] == 'Q')
			break;
		if (write(c, buf, 64) != 64)
			break;
	}
	close(c);
	/* TCP sink: reads 8-byte length then that many bytes, acks 1 byte. */
	c = accept(sl, NULL, NULL);
	for (;;) {
		uint64_t n;
		if (read_full(c, &n, 8) != 0 || n == 0)
			break;
		while (n > 0) {
			ssize_t r = read(c, buf, n < sizeof(buf) ? n : sizeof(buf));
			if (r <= 0)
				break;
			n -= (uint64_t)r;
		}
		if (write(c, "k", 1) != 1)
			break;
	}
	close(c);
	/* NNG rep echo; a request "C<n>" waits until n pulls arrived. */
	for (;;) {
		nng_msg *m;
		if (nng_recvmsg(rep, &m, 0) != 0)
			break;
		const char *b = nng_msg_body(m);
		if (nng_msg_len(m) > 1 && b[0] == 'C') {
			long want = atol(b + 1);
			while (__atomic_load_n(&pulled, __ATOMIC_RELAXED) < want)
				usleep(100);
		} else if (nng_msg_len(m) == 1 && b[0] == 'Q') {
			nng_sendmsg(rep, m, 0);
			break;
		}
		nng_sendmsg(rep, m, 0);
	}
	nng_close(pull);
	nng_close(rep);
	pthread_join(th, NULL);
	return 0;
}

/* ---- baselines, parent side ---- */

struct echo {
	pid_t pid;
	int tport, sport, rport, pport;
};

static void echo_start(struct echo *e)
{
	int fds[2];
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0 || pipe(fds) != 0)
		bench_die("baseline: cannot start echo process");
	self[n] = '\0';
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	char *argv[] = { self, NULL };
	char *env[64];
	int k = 0;
	for (char **p = environ; *p != NULL && k < 60; p++)
		if (strncmp(*p, "RAYC_", 5) != 0)
			env[k++] = *p;
	env[k++] = ECHO_TCP_PORT_ENV "=1";
	env[k] = NULL;
	if (posix_spawn(&e->pid, self, &fa, NULL, argv, env) != 0)
		bench_die("baseline: spawn failed");
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	FILE *f = fdopen(fds[0], "r");
	if (fscanf(f, "%d %d %d %d", &e->tport, &e->sport, &e->rport,
	           &e->pport) != 4)
		bench_die("baseline: echo process gave no ports");
	fclose(f);
}

static int dial_tcp(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
		                  .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		bench_die("baseline: connect: %s", strerror(errno));
	nodelay(fd);
	return fd;
}

/* One timed repetition of a round-trip op: microseconds per call. */
static double us_per_call(bench_op_fn op, void *arg)
{
	double t;
	uint64_t n = bench_timed_loop(op, arg, 16, bench_g.rep_s, &t);
	return t / (double)n * 1e6;
}

static void tcp_ping(void *arg)
{
	int fd = *(int *)arg;
	char buf[64] = { 'p' };
	if (write(fd, buf, 64) != 64 || read_full(fd, buf, 64))
		bench_die("baseline: tcp ping failed");
}

static double tcp_rtt_rep(void *arg)
{
	return us_per_call(tcp_ping, arg);
}

struct bw {
	int fd;
	size_t total;
	char *buf;
};

static double tcp_bw_rep(void *arg)
{
	struct bw *b = arg;
	uint64_t n = b->total;
	bench_cost_begin(bench_cost_cur);
	double t0 = bench_now();
	if (write(b->fd, &n, 8) != 8)
		bench_die("baseline: tcp sink failed");
	size_t left = b->total;
	while (left > 0) {
		size_t w = left < ((size_t)1 << 20) ? left : ((size_t)1 << 20);
		ssize_t r = write(b->fd, b->buf, w);
		if (r <= 0)
			bench_die("baseline: tcp write failed");
		left -= (size_t)r;
	}
	char k;
	if (read_full(b->fd, &k, 1) != 0)
		bench_die("baseline: tcp sink ack missing");
	double t = bench_now() - t0;
	bench_cost_end(bench_cost_cur, (double)b->total / (1 << 20));
	return (double)b->total / t / 1e9;
}

static void nng_ping(void *arg)
{
	nng_socket s = *(nng_socket *)arg;
	char buf[64] = { 'p' };
	nng_msg *m;
	nng_msg_alloc(&m, 0);
	nng_msg_append(m, buf, 64);
	if (nng_sendmsg(s, m, 0) != 0 || nng_recvmsg(s, &m, 0) != 0)
		bench_die("baseline: nng req failed");
	nng_msg_free(m);
}

static double nng_rtt_rep(void *arg)
{
	return us_per_call(nng_ping, arg);
}

struct pp {
	nng_socket push, req;
	long sent;
};

static double nng_push_rep(void *arg)
{
	struct pp *p = arg;
	char buf[64] = { 'x' };
	long n = bench_g.quick ? 4000 : 20000;
	bench_cost_begin(bench_cost_cur);
	double t0 = bench_now();
	for (long i = 0; i < n; i++)
		if (nng_send(p->push, buf, 64, 0) != 0)
			bench_die("baseline: nng push failed");
	p->sent += n;
	char q[32];
	int ql = snprintf(q, sizeof(q), "C%ld", p->sent) + 1;
	nng_msg *m;
	nng_msg_alloc(&m, 0);
	nng_msg_append(m, q, (size_t)ql);
	if (nng_sendmsg(p->req, m, 0) != 0 || nng_recvmsg(p->req, &m, 0) != 0)
		bench_die("baseline: nng count failed");
	nng_msg_free(m);
	double t = bench_now() - t0;
	bench_cost_end(bench_cost_cur, (double)n);
	return (double)n / t;
}

struct baselines {
	double tcp_rtt_us, tcp_gbps, nng_rtt_us, nng_push_rate;
	/* --costs: per round trip, per MiB, per round trip, per message */
	struct bench_cost tcp_rtt_c, tcp_bw_c, nng_rtt_c, nng_push_c;
};

static void measure_baselines(struct baselines *bl)
{
	struct echo e;
	echo_start(&e);
	int fd = dial_tcp(e.tport);
	memset(bl, 0, sizeof *bl);
	bench_cost_cur = &bl->tcp_rtt_c;
	bl->tcp_rtt_us = bench_median_reps("baseline raw TCP round trip (us)",
	                                   tcp_rtt_rep, &fd, bench_g.reps);
	char q[64] = { 'Q' };
	(void)!write(fd, q, 64);
	close(fd);
	struct bw b = { dial_tcp(e.sport), (size_t)256 << 20, NULL };
	b.buf = bench_xmalloc_touched((size_t)1 << 20, 1);
	bench_cost_cur = &bl->tcp_bw_c;
	bl->tcp_gbps = bench_median_reps("baseline raw TCP bandwidth (GB/s)",
	                                 tcp_bw_rep, &b, bench_g.reps);
	uint64_t zero = 0;
	(void)!write(b.fd, &zero, 8);
	close(b.fd);
	free(b.buf);
	struct pp p = { .sent = 0 };
	char url[64];
	nng_req0_open(&p.req);
	nng_push0_open(&p.push);
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", e.rport);
	if (nng_dial(p.req, url, NULL, 0) != 0)
		bench_die("baseline: nng dial rep failed");
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", e.pport);
	if (nng_dial(p.push, url, NULL, 0) != 0)
		bench_die("baseline: nng dial pull failed");
	bench_cost_cur = &bl->nng_rtt_c;
	bl->nng_rtt_us = bench_median_reps("baseline NNG req/rep (us)",
	                                   nng_rtt_rep, &p.req, bench_g.reps);
	bench_cost_cur = &bl->nng_push_c;
	bl->nng_push_rate = bench_median_reps("baseline NNG push/pull (msg/s)",
	                                      nng_push_rep, &p, bench_g.reps);
	bench_cost_cur = NULL;
	nng_msg *m;
	nng_msg_alloc(&m, 0);
	nng_msg_append(m, "Q", 1);
	nng_sendmsg(p.req, m, 0);
	if (nng_recvmsg(p.req, &m, 0) == 0)
		nng_msg_free(m);
	nng_close(p.req);
	nng_close(p.push);
	int st;
	waitpid(e.pid, &st, 0);
}

/* ---- rayc figures ---- */

static uint32_t other;

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
	return us_per_call(remote_roundtrip, arg);
}

static double remote_async_rep(void *arg)
{
	(void)arg;
	size_t n = bench_g.quick ? 20000 : 100000;
	rayc_ref *r = bench_xmalloc(n * sizeof(rayc_ref));
	bench_cost_begin(bench_cost_cur);
	double t0 = bench_now();
	for (size_t i = 0; i < n; i++)
		remote_noop(&r[i]);
	for (size_t i = 0; i < n; i++)
		bench_get_release(r[i]);
	double t = bench_now() - t0;
	bench_cost_end(bench_cost_cur, (double)n);
	free(r);
	return (double)n / t;
}

static size_t xfer_size;
static double remote_xfer_rep(void *arg)
{
	(void)arg;
	/* The other peer makes the object; we fetch it. */
	rayc_ref r;
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
	o.node_id = other;
	BENCH_CHECK(rayc_call_opts(&r, "bench_make", &o,
	                           RAYC_I64((int64_t)xfer_size)));
	BENCH_CHECK(rayc_wait(&r, 1, 1, BENCH_GET_TIMEOUT_MS, NULL, NULL));
	bench_cost_begin(bench_cost_cur);
	double t0 = bench_now();
	rayc_view v;
	BENCH_CHECK(rayc_get(r, &v, BENCH_GET_TIMEOUT_MS));
	double t = bench_now() - t0;
	bench_cost_end(bench_cost_cur, (double)xfer_size / (1 << 20));
	if (v.len != xfer_size)
		bench_die("transfer: got %zu bytes, not %zu", v.len, xfer_size);
	rayc_view_release(&v);
	BENCH_CHECK(rayc_release(r));
	return (double)xfer_size / t / 1e9;
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

static int any_remote_wanted(void)
{
	return bench_want("remote_tasks_sync") ||
	       bench_want("remote_tasks_async") ||
	       bench_want("remote_transfer_1mib") ||
	       bench_want("remote_transfer_64mib") ||
	       bench_want("remote_transfer_1gib") ||
	       bench_want("remote_transfer_64mib_samehost");
}

void bench_fig_remote(void)
{
	struct baselines bl;

	if (bench_want("cluster_formation_4")) {
		double best = 1e9, v[5];
		int reps = bench_g.quick ? 3 : 5;
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
		fprintf(stderr, "  cluster_formation_4: median %.3f s, best "
		        "%.3f s\n", med, best);
		/* Its peers start and exit inside each interval, so
		 * their faults and switches cannot be read in /proc. */
		if (bench_g.costs)
			fputs("  cluster_formation_4: costs not measured (the "
			      "peers start and stop inside the timed part)\n",
			      stderr);
		bench_emit("cluster_formation_4", med, "s", 0, NULL, 0);
	}
	if (bench_want("coordinator_failover")) {
		int reps = bench_g.quick ? 3 : 5, ok = 0;
		double v[5], e[5];
		for (int i = 0; i < reps; i++) {
			double el = -1, r = failover_once(&el);
			if (r < 0)
				continue;
			e[ok] = el;
			v[ok++] = r;
			fprintf(stderr, "  coordinator_failover: new coordinator "
			        "in %.0f ms, KV put committed at %.0f ms\n", el,
			        r);
		}
		if (ok > 0) {
			fprintf(stderr, "  coordinator_failover: median %.0f ms "
			        "(election median %.0f ms; heartbeat timeout "
			        "1000 ms)\n", bench_median(v, ok),
			        bench_median(e, ok));
			if (bench_g.costs)
				fputs("  coordinator_failover: costs not "
				      "measured (its processes are killed "
				      "and restarted)\n", stderr);
			bench_emit("coordinator_failover", bench_median(v, ok),
			           "ms", 0, "heartbeat_timeout_ms", 1000);
		} else {
			fprintf(stderr, "  coordinator_failover: FAILED\n");
		}
	}
	if (!any_remote_wanted())
		return;
	measure_baselines(&bl);
	size_t store = bench_want("remote_transfer_1gib") ? ((size_t)5 << 30)
	                                                  : ((size_t)1 << 30);
	/* At the default heartbeat: making and moving a 1 GiB object must
	 * not make a peer look dead (test_bulk.c checks it). */
	rayc_config cfg = { .local_peers = 2, .store_bytes = store };
	BENCH_CHECK(rayc_init(&cfg));
	other = rayc_peer_id() == 1 ? 2 : 1;
	if (bench_want("remote_tasks_sync")) {
		struct bench_cost c = { 0 };
		bench_cost_cur = &c;
		double us = bench_median_reps("remote_tasks_sync (us)",
		                              remote_sync_rep, NULL,
		                              bench_g.reps);
		bench_cost_cur = NULL;
		bench_costs_next("round trip", &c, &bl.tcp_rtt_c);
		bench_emit("remote_tasks_sync", us, "us", 0,
		           "raw_tcp_roundtrip_us", bl.tcp_rtt_us);
		fprintf(stderr, "  (NNG req/rep round trip: %.1f us)\n",
		        bl.nng_rtt_us);
	}
	if (bench_want("remote_tasks_async")) {
		struct bench_cost c = { 0 };
		bench_cost_cur = &c;
		double r = bench_median_reps("remote_tasks_async (tasks/s)",
		                             remote_async_rep, NULL,
		                             bench_g.reps);
		bench_cost_cur = NULL;
		bench_costs_next("task", &c, &bl.nng_push_c);
		bench_emit("remote_tasks_async", r, "tasks/s", 1,
		           "nng_push_pull_msgs_per_s", bl.nng_push_rate);
	}
	/* The remote_transfer_* figures measure the TCP path (as before
	 * the same-host path existed, so they compare across commits);
	 * _samehost lets the fetcher read in the holder's arena.  This
	 * process fetches, and reads RAYC_SAME_HOST_COPY at each fetch;
	 * the peers were started with it unset, so they offer. */
	static const struct {
		const char *name;
		size_t n;
		int same_host;
	} x[] = { { "remote_transfer_1mib", (size_t)1 << 20, 0 },
		  { "remote_transfer_64mib", (size_t)64 << 20, 0 },
		  { "remote_transfer_1gib", (size_t)1 << 30, 0 },
		  { "remote_transfer_64mib_samehost", (size_t)64 << 20, 1 } };
	for (size_t i = 0; i < sizeof(x) / sizeof(x[0]); i++) {
		if (!bench_want(x[i].name))
			continue;
		if (x[i].same_host)
			unsetenv("RAYC_SAME_HOST_COPY");
		else
			setenv("RAYC_SAME_HOST_COPY", "0", 1);
		xfer_size = x[i].n;
		int reps = x[i].n >= ((size_t)1 << 30) ? 3 : bench_g.reps;
		struct bench_cost c = { 0 };
		bench_cost_cur = &c;
		double g = bench_median_reps(x[i].name, remote_xfer_rep, NULL,
		                             reps);
		bench_cost_cur = NULL;
		bench_costs_next("MiB", &c, &bl.tcp_bw_c);
		bench_emit(x[i].name, g, "GB/s", 1, "raw_tcp_gbps", bl.tcp_gbps);
	}
	unsetenv("RAYC_SAME_HOST_COPY");
	fprintf(stderr, "  baselines: raw TCP %.1f us, %.2f GB/s; NNG req/rep "
	        "%.1f us, push/pull %.0f msg/s\n", bl.tcp_rtt_us, bl.tcp_gbps,
	        bl.nng_rtt_us, bl.nng_push_rate);
	bench_costs_next("round trip", &bl.nng_rtt_c, &bl.tcp_rtt_c);
	bench_emit("baseline_nng_reqrep_us", bl.nng_rtt_us, "us", 0,
	           "raw_tcp_roundtrip_us", bl.tcp_rtt_us);
	BENCH_CHECK(rayc_shutdown());
}
