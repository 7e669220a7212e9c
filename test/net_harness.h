/* net_harness.h -- starting and stopping multi-peer clusters for the
 * tests: a driver peer inside the test process, net_peer processes
 * joined over loopback TCP with ephemeral ports.  Every wait has a
 * deadline; every process started is stopped and reaped by pid. */
#ifndef RAYC_TEST_NET_HARNESS_H
#define RAYC_TEST_NET_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "net_funcs.h"

extern char **environ;

#define TOKEN "test-token-1"
#define MAXP 8     /* peers a test usually starts */
#define MAXKIDS 64 /* processes a test may start in all */

static pid_t kids[MAXKIDS];
static int nkids;

/* The driver: this test process, founding a cluster (address NULL) or
 * joining the one at address, with a heartbeat timeout of hb_ms. */
static inline void driver_start_store(const char *address, int hb_ms,
                                      size_t store)
{
	rayc_config c = { .num_workers = 2,
		          .store_bytes = store,
		          .prefault_bytes = (size_t)4 << 20,
		          .listen = "tcp://127.0.0.1:0",
		          .address = address,
		          .token = TOKEN,
		          .heartbeat_timeout_ms = hb_ms };
	int rc = rayc_init(&c);
	cr_assert_eq(rc, RAYC_OK, "rayc_init: %s", rayc_errmsg());
	cr_assert_not_null(rayc_address());
}

static inline void driver_start_hb(const char *address, int hb_ms)
{
	driver_start_store(address, hb_ms, (size_t)512 << 20);
}

static inline void driver_start_at(const char *address)
{
	/* CI runs this under ASan on 2 loaded cores: a missed heartbeat
	 * must not look like a death. */
	driver_start_hb(address, 6000);
}

static inline void driver_start(void)
{
	driver_start_at(NULL);
}

/* Reads and drops what fd gets until the peer closes it (0; a reset,
 * for bytes the peer never read, counts), another error (-1), or the
 * deadline (-2). */
static inline int wait_closed(int fd, int64_t deadline_ms)
{
	uint8_t buf[512];
	for (;;) {
		int left = (int)(deadline_ms - rt_now_ms());
		struct pollfd pf = { .fd = fd, .events = POLLIN };
		if (left <= 0)
			return -2;
		if (poll(&pf, 1, left) <= 0)
			continue;
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			return 0;
		if (r < 0)
			return -1;
	}
}

/* Starts a net_peer process; env holds its RAYC_* settings on top of the
 * common ones. */
static inline pid_t spawn_with(const char *token, const char *const *extra)
{
	const char *exe = getenv("RAYC_TEST_PEER");
	char tok[100];
	cr_assert_not_null(exe, "RAYC_TEST_PEER not set");
	snprintf(tok, sizeof(tok), "RAYC_TOKEN=%s", token);
	char *env[64];
	int k = 0;
	for (char **e = environ; *e != NULL && k < 48; e++)
		if (strncmp(*e, "RAYC_", 5) != 0 ||
		    strncmp(*e, "RAYC_LOG_LEVEL=", 15) == 0)
			env[k++] = *e; /* peers log at the test's level */
	/* extra first: the first of two settings of a name wins. */
	for (int i = 0; extra != NULL && extra[i] != NULL && k < 56; i++)
		env[k++] = (char *)extra[i];
	env[k++] = tok;
	env[k++] = "RAYC_NUM_WORKERS=2";
	env[k++] = "RAYC_OBJECT_STORE_BYTES=512m";
	env[k++] = "RAYC_STORE_PREFAULT_BYTES=4m";
	env[k++] = "RAYC_HEARTBEAT_TIMEOUT_MS=6000";
	env[k] = NULL;
	char *argv[] = { (char *)exe, NULL };
	pid_t pid;
	cr_assert_eq(posix_spawn(&pid, exe, NULL, NULL, argv, env), 0);
	cr_assert_lt(nkids, MAXKIDS);
	kids[nkids++] = pid;
	return pid;
}

/* Starts a worker peer joining us; extra is "NAME=value" or NULL. */
static inline pid_t spawn_peer(const char *token, const char *extra)
{
	char addr[200];
	snprintf(addr, sizeof(addr), "RAYC_ADDRESS=%s", rayc_address());
	const char *env[] = { addr, "RAYC_ROLE=worker", extra, NULL };
	return spawn_with(token, env);
}

/* Room for the whole cluster view: it lists every peer ever seen, dead
 * ones too, so a cluster that replaced peers holds more than MAXP. */
#define VIEW_MAX 256

static inline size_t alive_peers(void)
{
	rayc_peer_info pi[VIEW_MAX];
	size_t n = 0, a = 0;
	rayc_cluster_peers(pi, VIEW_MAX, &n);
	for (size_t i = 0; i < n && i < VIEW_MAX; i++)
		a += pi[i].alive;
	return a;
}

/* Dead entries in the view: peers taken for dead at any time. */
static inline size_t dead_peers(void)
{
	rayc_peer_info pi[VIEW_MAX];
	size_t n = 0, d = 0;
	rayc_cluster_peers(pi, VIEW_MAX, &n);
	for (size_t i = 0; i < n && i < VIEW_MAX; i++)
		d += !pi[i].alive;
	return d;
}

static inline void wait_alive(size_t n)
{
	RT_WAIT_FOR(alive_peers() >= n, 20000);
	cr_assert_eq(alive_peers(), n, "%zu of %zu peers joined",
	             alive_peers(), n);
}

/* Waits for pid to exit (deadline ms); kills it if it does not.
 * Returns its exit code, or -1 if it had to be killed. */
static inline int reap(pid_t pid, int ms)
{
	int st;
	int64_t deadline = rt_now_ms() + ms;
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (rt_now_ms() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		usleep(2000);
	}
}

/* A NetCounter (test/actor_funcs.h: registered in every net_peer) with
 * tag, owned here, living on peer node. */
static inline rayc_actor counter_on(uint32_t node, const char *tag)
{
	rayc_actor_opts o = { .strategy = RAYC_STRATEGY_NODE_AFFINITY,
		              .node_id = node };
	rayc_actor h;

	cr_assert_eq(rayc_actor_create(&h, "NetCounter", &o, RAYC_STR(tag)),
	             RAYC_OK, "%s", rayc_errmsg());
	return h;
}

/* Bytes in the file at path (0 if none): the runs a marking task
 * (nf_mark_sleep, rf_mark_around) began or ended. */
static inline long file_len(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 ? (long)sb.st_size : 0;
}

/* A peer this test SIGKILLed: reaped, and left out of cluster_stop. */
static inline void forget_kid(pid_t pid)
{
	char path[64];

	reap(pid, 5000);
	for (int i = 0; i < nkids; i++)
		if (kids[i] == pid)
			kids[i] = 0;
	snprintf(path, sizeof(path), "/dev/shm/rayc-%d-0", pid);
	unlink(path);
}

/* A tree reduce of n leaves over the cluster gives the exact sum. */
static inline void assert_tree_sum(int n)
{
	rayc_ref root;
	int64_t sum;
	cr_assert_eq(nf_tree_sum(n, &root), RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(rayc_get_i64(root, &sum, 60000), 0, "%s", rayc_errmsg());
	cr_assert_eq(sum, (int64_t)n * (n - 1) / 2);
	rayc_release(root);
}

/* A test's .fini: a failed test stops here without cluster_stop; stop
 * what it started (by pid) so nothing outlives it. */
static inline void kill_kids(void)
{
	char path[64];
	for (int i = 0; i < nkids; i++) {
		if (kids[i] <= 0)
			continue;
		kill(kids[i], SIGKILL);
		waitpid(kids[i], NULL, 0);
		snprintf(path, sizeof(path), "/dev/shm/rayc-%d-0", kids[i]);
		unlink(path);
	}
	nkids = 0;
}

/* Shuts the driver down (the cluster ends) and checks every peer left:
 * exit code 0. */
static inline void cluster_stop(void)
{
	cr_assert_eq(rayc_shutdown(), RAYC_OK);
	for (int i = 0; i < nkids; i++) {
		if (kids[i] <= 0)
			continue;
		int code = reap(kids[i], 15000);
		cr_expect_eq(code, 0, "peer pid %d ended with %d", kids[i], code);
	}
	/* Arenas are memfds: nothing of theirs is left in /dev/shm (a file
	 * named like an old arena there is an older build's, and says
	 * nothing of this run). */
	nkids = 0;
	rt_leak_check();
}

/* What this driver and its peers still wait for (stderr), for a test
 * whose wait failed: they print on SIGUSR1 (net_peer.c). */
static inline void dump_peers(const char *why)
{
	rayc__test_dump_pending(why);
	for (int i = 0; i < nkids; i++)
		if (kids[i] > 0)
			kill(kids[i], SIGUSR1);
	rt_sleep_ms(2000); /* diagnostics only: let them print */
}

static inline rayc_task_opts on_peer(uint32_t id)
{
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
	o.node_id = id;
	return o;
}

/* Function fn (an i64 return, no arguments) run on peer `on`. */
static inline int64_t i64_on(uint32_t on, const char *fn, int timeout_ms)
{
	rayc_task_opts o = on_peer(on);
	rayc_ref r;
	int64_t v = -1;
	cr_assert_eq(rayc_call_opts(&r, fn, &o), 0);
	cr_assert_eq(rayc_get_i64(r, &v, timeout_ms), RAYC_OK, "%s: %s", fn,
	             rayc_errmsg());
	rayc_release(r);
	return v;
}

/* Function fn (4 i64 returns, no arguments) run on peer `on`: v. */
static inline void four_on(uint32_t on, const char *fn, int64_t v[4])
{
	rayc_task_opts o = on_peer(on);
	rayc_ref r[4];
	o.num_returns = 4;
	cr_assert_eq(rayc_call_opts(r, fn, &o), 0);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(rayc_get_i64(r[i], &v[i], 30000), RAYC_OK, "%s: %s",
		             fn, rayc_errmsg());
		rayc_release(r[i]);
	}
}

/* A peer that is not us, found by its pid. */
static inline uint32_t peer_of(pid_t pid)
{
	rayc_peer_info pi[VIEW_MAX];
	size_t n = 0;
	rayc_cluster_peers(pi, VIEW_MAX, &n);
	for (size_t i = 0; i < n && i < VIEW_MAX; i++)
		if (pi[i].pid == pid && pi[i].alive)
			return pi[i].id;
	return 0;
}

/* A driver process that serves (net_peer with NET_PEER_ADDR_FILE):
 * founding a cluster (join NULL) or joining the one at join.  Its
 * address is read back from the file it writes. */
static inline pid_t spawn_serving_env(char *addr, size_t cap,
                                      const char *join,
                                      const char *const *extra)
{
	char dir[] = "/tmp/rayc-ctl-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char file[128], fenv[160], aenv[240];
	snprintf(file, sizeof(file), "%s/addr", dir);
	snprintf(fenv, sizeof(fenv), "NET_PEER_ADDR_FILE=%s", file);
	snprintf(aenv, sizeof(aenv), "RAYC_ADDRESS=%s", join ? join : "");
	const char *fe[8] = { fenv, "RAYC_LISTEN=tcp://127.0.0.1:0" };
	int k = 2;
	if (join != NULL)
		fe[k++] = aenv;
	for (int i = 0; extra != NULL && extra[i] != NULL && k < 7; i++)
		fe[k++] = extra[i];
	pid_t f = spawn_with(TOKEN, fe);
	FILE *fp = NULL;
	RT_WAIT_FOR((fp = fopen(file, "r")) != NULL, 20000);
	cr_assert_not_null(fp, "the serving driver did not come up");
	cr_assert_not_null(fgets(addr, (int)cap, fp));
	fclose(fp);
	unlink(file);
	rmdir(dir);
	addr[strcspn(addr, "\n")] = '\0';
	return f;
}

static inline pid_t spawn_serving_with(char *addr, size_t cap,
                                       const char *join, const char *extra)
{
	const char *e[] = { extra, NULL };
	return spawn_serving_env(addr, cap, join, e);
}

static inline pid_t spawn_serving(char *addr, size_t cap, const char *join)
{
	return spawn_serving_with(addr, cap, join, NULL);
}

static inline pid_t spawn_founder(char *addr, size_t cap)
{
	return spawn_serving(addr, cap, NULL);
}

#endif /* RAYC_TEST_NET_HARNESS_H */
