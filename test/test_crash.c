/* test_crash.c -- tasks that crash the peer running them, owners that
 * die under their borrowers, and what the driver's log says meanwhile;
 * real peer processes (net_peer) on loopback.  Every wait has a
 * deadline; every process started is stopped and reaped by pid. */
#include <pthread.h>
#include <stdatomic.h>

#include "crash_funcs.h"
#include "net_harness.h"

TestSuite(crash, .timeout = 150, .fini = kill_kids);

/* ---- log capture (rayc_set_logger) ---- */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_text[64 * 1024];
static size_t log_len;
static int log_lines;

static void capture(int level, const char *id, const char *msg, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&log_mu);
	int n = snprintf(log_text + log_len, sizeof(log_text) - log_len,
	                 "%d %s %s\n", level, id, msg);
	if (n > 0 && (size_t)n < sizeof(log_text) - log_len)
		log_len += (size_t)n;
	log_lines++;
	pthread_mutex_unlock(&log_mu);
}

/* Lines captured whose id is id (and whose text holds has, if not
 * NULL). */
static int count_logged(const char *id, const char *has)
{
	int n = 0;
	pthread_mutex_lock(&log_mu);
	for (const char *p = log_text; p < log_text + log_len;) {
		const char *end = strchr(p, '\n');
		char line[1024];
		size_t len = (size_t)(end - p);
		snprintf(line, sizeof(line), "%.*s", (int)len, p);
		char *sp = strchr(line, ' ');
		if (sp != NULL && strncmp(sp + 1, id, strlen(id)) == 0 &&
		    sp[1 + strlen(id)] == ' ' &&
		    (has == NULL || strstr(line, has) != NULL))
			n++;
		p = end + 1;
	}
	pthread_mutex_unlock(&log_mu);
	return n;
}

static void log_dump(void)
{
	pthread_mutex_lock(&log_mu);
	cr_log_info("driver log (%d lines):\n%.*s", log_lines,
	            (int)(log_len > 4000 ? 4000 : log_len), log_text);
	pthread_mutex_unlock(&log_mu);
}

/* ---- peers ---- */

/* Waits for the peer in slot to end, checks it died of sig, and cleans
 * up after it (a killed peer leaves its arena file). */
static void reap_dead(int slot, int sig)
{
	int code = reap(kids[slot], 20000);
	cr_assert_eq(code, 128 + sig, "peer pid %d ended with %d", kids[slot],
	             code);
	char path[64];
	snprintf(path, sizeof(path), "/dev/shm/rayc-%d-0", kids[slot]);
	unlink(path);
	kids[slot] = 0;
}

/* True if the peer in slot has exited (it is reaped then). */
static bool gone(int slot, int *code)
{
	int st;
	if (kids[slot] <= 0)
		return true;
	if (waitpid(kids[slot], &st, WNOHANG) != kids[slot])
		return false;
	*code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	char path[64];
	snprintf(path, sizeof(path), "/dev/shm/rayc-%d-0", kids[slot]);
	unlink(path);
	kids[slot] = 0;
	return true;
}

static void wait_voters(int want)
{
	rayc_peer_info pi[MAXP * 2];
	size_t n = 0;
	int v = 0;
	int64_t deadline = rt_now_ms() + 20000;
	do {
		v = 0;
		rayc_cluster_peers(pi, MAXP * 2, &n);
		for (size_t i = 0; i < n && i < MAXP * 2; i++)
			v += pi[i].alive && pi[i].is_voter;
		if (v == want)
			return;
		usleep(5000);
	} while (rt_now_ms() < deadline);
	cr_assert_eq(v, want, "%d voters, not %d", v, want);
}

/* How many of n SPREAD calls of nf_whoami made here ran on peer. */
static int spread_hits(int n, uint32_t peer)
{
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_SPREAD;
	int hits = 0;
	for (int i = 0; i < n; i++) {
		rayc_ref r;
		cr_assert_eq(rayc_call_opts(&r, "nf_whoami", &o), 0, "%s",
		             rayc_errmsg());
		hits += get_i64(r) == peer;
		rayc_release(r);
	}
	return hits;
}

/* ---- a driver that keeps tasks off its own process ---- */

Test(crash, driver_with_tasks_off_survives_an_aborting_task)
{
	/* The variable (the config field is left 0). */
	setenv("RAYC_DRIVER_TASKS", "off", 1);
	driver_start();
	unsetenv("RAYC_DRIVER_TASKS");
	spawn_peer(TOKEN, NULL);
	spawn_peer(TOKEN, NULL);
	wait_alive(3);
	uint32_t me = rayc_peer_id();
	double cpus = -1;
	cr_assert_eq(rayc_resource_get("CPU", &cpus, NULL), 0);
	cr_assert_eq(cpus, 0, "a driver that runs no tasks offers no CPU");

	/* An ordinary task and SPREAD never run here, nor do calls nested
	 * in tasks (their owner is a worker). */
	cr_assert_eq(spread_hits(12, me), 0, "SPREAD ran tasks on the driver");
	rayc_ref r;
	cr_assert_eq(rayc_call(&r, "cf_spread_on", RAYC_I64(12),
	                       RAYC_I64(me)), 0);
	cr_assert_eq(get_i64(r), 0, "nested SPREAD ran tasks on the driver");
	rayc_release(r);
	/* Hard affinity to the driver: nowhere to run it. */
	rayc_task_opts here = on_peer(me);
	int64_t v;
	if (rayc_call_opts(&r, "nf_whoami", &here) == RAYC_OK) {
		cr_assert_eq(rayc_get_i64(r, &v, 10000), RAYC_EINFEASIBLE);
		rayc_release(r);
	}

	/* The crash kills a worker, not us. */
	rayc_task_opts once = RAYC_TASK_OPTS_DEFAULT;
	once.max_retries = 0;
	cr_assert_eq(rayc_call_opts(&r, "cf_abort", &once), 0);
	int rc = rayc_get_i64(r, &v, 60000);
	cr_assert_eq(rc, RAYC_EPEERDIED, "got %s: %s", rayc_strerror(rc),
	             rayc_errmsg());
	cr_assert(strstr(rayc_errmsg(), "cf_abort") != NULL, "%s",
	          rayc_errmsg());
	rayc_release(r);
	int dead = -1, code = 0;
	int64_t deadline = rt_now_ms() + 20000;
	while (dead < 0 && rt_now_ms() < deadline) {
		for (int i = 0; i < 2 && dead < 0; i++)
			if (gone(i, &code))
				dead = i;
		usleep(2000);
	}
	cr_assert_geq(dead, 0, "no worker died");
	cr_assert_eq(code, 128 + SIGABRT);
	RT_WAIT_FOR(alive_peers() == 2, 20000);
	cr_assert_eq(alive_peers(), 2);
	/* The cluster goes on, still without the driver. */
	cr_assert_eq(spread_hits(6, me), 0);
	assert_tree_sum(1000);
	cluster_stop();
}

/* The config field, and what it means without other peers. */
Test(crash, driver_tasks_setting_is_checked)
{
	rayc_config c = { .num_workers = 2, .store_bytes = (size_t)64 << 20,
		          .prefault_bytes = (size_t)1 << 20,
		          .driver_tasks = RAYC_DRIVER_TASKS_OFF };
	/* A one-peer cluster has no other process to run tasks. */
	cr_assert_eq(rayc_init(&c), RAYC_EINVAL);
	cr_assert(strstr(rayc_errmsg(), "driver") != NULL, "%s",
	          rayc_errmsg());
	c.driver_tasks = 7;
	cr_assert_eq(rayc_init(&c), RAYC_EINVAL);
	setenv("RAYC_DRIVER_TASKS", "maybe", 1);
	c.driver_tasks = 0;
	cr_assert_eq(rayc_init(&c), RAYC_EINVAL);
	unsetenv("RAYC_DRIVER_TASKS");
	/* Alone in a cluster: tasks wait, visibly, for a peer that can run
	 * them (as Ray's infeasible tasks), never run here, and run once
	 * one joins.  One warning per demand. */
	c.listen = "tcp://127.0.0.1:0";
	c.token = TOKEN;
	c.heartbeat_timeout_ms = 6000;
	c.driver_tasks = RAYC_DRIVER_TASKS_OFF;
	rayc_set_logger(capture, NULL);
	cr_assert_eq(rayc_init(&c), RAYC_OK, "%s", rayc_errmsg());
	uint32_t me = rayc_peer_id();
	rayc_ref r[4];
	rayc_task_opts zero = RAYC_TASK_OPTS_DEFAULT;
	zero.num_cpus = 0;
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(rayc_call(&r[2 * i], "nf_whoami"), RAYC_OK, "%s",
		             rayc_errmsg());
		cr_assert_eq(rayc_call_opts(&r[2 * i + 1], "nf_whoami", &zero),
		             RAYC_OK, "a 0-CPU task: %s", rayc_errmsg());
	}
	int64_t v;
	cr_assert_eq(rayc_get_i64(r[0], &v, 300), RAYC_ETIMEDOUT);
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_geq(st.tasks_pending, 4, "pending tasks not visible: %llu",
	              (unsigned long long)st.tasks_pending);
	cr_assert_eq(count_logged("RAYC-TASK-INFEASIBLE", NULL), 2,
	             "one warning per demand expected:\n%s", log_text);
	cr_assert_eq(count_logged("RAYC-TASK-INFEASIBLE", "CPU=1"), 1);
	pid_t w = spawn_peer(TOKEN, NULL);
	wait_alive(2);
	uint32_t pw = peer_of(w);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(rayc_get_i64(r[i], &v, 20000), RAYC_OK,
		             "task %d: %s", i, rayc_errmsg());
		cr_assert_eq(v, pw, "task %d ran on %lld (driver %u)", i,
		             (long long)v, me);
		rayc_release(r[i]);
	}
	rayc_set_logger(NULL, NULL);
	cluster_stop();
}

/* ---- poison-pill quarantine ---- */

Test(crash, poison_task_is_quarantined_after_3_peer_deaths)
{
	rayc_set_logger(capture, NULL);
	rayc_config c = { .num_workers = 2,
		          .store_bytes = (size_t)256 << 20,
		          .prefault_bytes = (size_t)4 << 20,
		          .listen = "tcp://127.0.0.1:0",
		          .token = TOKEN,
		          .heartbeat_timeout_ms = 6000,
		          .driver_tasks = RAYC_DRIVER_TASKS_OFF };
	cr_assert_eq(rayc_init(&c), RAYC_OK, "%s", rayc_errmsg());
	/* The driver and 4 workers are the 5 voters; 4 more workers, the
	 * only ones with `poison`, are standbys: their deaths never cost
	 * the cluster its majority. */
	for (int i = 0; i < 4; i++)
		spawn_peer(TOKEN, NULL);
	wait_alive(5);
	wait_voters(5);
	for (int i = 0; i < 4; i++)
		spawn_peer(TOKEN, "RAYC_RESOURCES=poison=1");
	wait_alive(9);
	rayc_resource poison = { "poison", 1 };
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.max_retries = -1;
	o.resources = &poison;
	o.num_resources = 1;
	rayc_ref r;
	cr_assert_eq(rayc_call_opts(&r, "cf_abort", &o), 0, "%s",
	             rayc_errmsg());
	int64_t v;
	int rc = rayc_get_i64(r, &v, 90000);
	log_dump();
	cr_assert_eq(rc, RAYC_EPEERDIED, "got %s: %s", rayc_strerror(rc),
	             rayc_errmsg());
	const char *msg = rayc_errmsg();
	cr_log_info("quarantined: %s", msg);
	cr_assert(strstr(msg, "cf_abort") != NULL && strstr(msg, "3 ") != NULL,
	          "the error names neither the function nor the deaths: %s",
	          msg);
	rayc_release(r);
	/* Exactly 3 poison peers died (of the abort); the 4th lives. */
	RT_WAIT_FOR(alive_peers() == 6, 20000);
	cr_assert_eq(alive_peers(), 6);
	int died = 0;
	for (int i = 4; i < 8; i++) {
		int code = 0;
		int64_t deadline = rt_now_ms() + 5000;
		bool g;
		while (!(g = gone(i, &code)) && rt_now_ms() < deadline &&
		       died < 3)
			usleep(2000);
		if (g) {
			cr_assert_eq(code, 128 + SIGABRT, "peer %d ended %d", i,
			             code);
			died++;
		}
	}
	cr_assert_eq(died, 3, "%d peers died", died);
	cr_assert_eq(count_logged("RAYC-TASK-QUARANTINE", "cf_abort"), 1);
	/* The driver lives and the cluster still serves, the surviving
	 * poison peer included. */
	assert_tree_sum(2000);
	cr_assert_eq(rayc_call_opts(&r, "nf_whoami", &o), 0);
	cr_assert_gt(get_i64(r), 1);
	rayc_release(r);
	cluster_stop();
	rayc_set_logger(NULL, NULL);
}

/* ---- an owner dies under its borrower ---- */

/* rayc_get with no wait; the view is let go at once. */
static int get_now(rayc_ref r)
{
	rayc_view v;
	int rc = rayc_get(r, &v, 0);
	rayc_view_release(&v);
	return rc;
}

Test(crash, borrower_whose_owner_died_gets_eownerdied)
{
	driver_start();
	pid_t a = spawn_peer(TOKEN, NULL);
	spawn_peer(TOKEN, NULL); /* keeps the majority when a dies */
	wait_alive(3);
	uint32_t pa = peer_of(a), me = rayc_peer_id();
	/* A puts 1 MiB and has a task here keep a ref: A owns it, this
	 * peer borrows it. */
	rayc_task_opts on_a = on_peer(pa);
	rayc_ref r;
	cr_assert_eq(rayc_call_opts(&r, "cf_lend_put", &on_a,
	                            RAYC_I64(1 << 20), RAYC_I64(3),
	                            RAYC_I64(me)), 0);
	cr_assert_eq(get_i64(r), 0);
	rayc_release(r);
	rayc_view view;
	cr_assert_eq(rayc_get(nf_kept, &view, 10000), 0, "%s", rayc_errmsg());
	cr_assert_eq(view.len, (size_t)1 << 20);
	cr_assert_eq(((const uint8_t *)view.data)[5], (uint8_t)(5 * 7 + 3));
	/* A view taken before stays valid through the owner's death. */
	kill(a, SIGKILL);
	RT_WAIT_FOR(alive_peers() == 2, 30000);
	cr_assert_eq(alive_peers(), 2, "A's death was not noticed");
	cr_assert_eq(((const uint8_t *)view.data)[(1 << 20) - 1],
	             (uint8_t)(((1 << 20) - 1) * 7 + 3));
	rayc_view_release(&view);
	/* The view above learns of the death before this peer has acted on
	 * it: poll (bounded) until a get no longer succeeds. */
	int rc = RAYC_OK;
	RT_WAIT_FOR((rc = get_now(nf_kept)) != RAYC_OK, 10000);
	cr_assert_eq(rc, RAYC_EOWNERDIED, "got %s: %s", rayc_strerror(rc),
	             rayc_errmsg());
	char want[32];
	snprintf(want, sizeof(want), "peer %u", pa);
	cr_assert(strstr(rayc_errmsg(), want) != NULL, "%s", rayc_errmsg());
	/* A task given it fails the same way, and does not run. */
	rayc_ref t[2];
	rayc_task_opts two = RAYC_TASK_OPTS_DEFAULT;
	two.num_returns = 2;
	cr_assert_eq(rayc_call_opts(t, "nf_checksum", &two, RAYC_REF(nf_kept)),
	             0);
	int64_t x;
	cr_assert_eq(rayc_get_i64(t[0], &x, 10000), RAYC_EOWNERDIED);
	rayc_release(t[0]);
	rayc_release(t[1]);
	cr_assert_eq(rayc_release(nf_kept), 0);
	reap_dead(0, SIGKILL);
	cluster_stop();
}

/* ---- what the log says ---- */

Test(crash, killed_worker_logs_one_retry_summary)
{
	rayc_set_logger(capture, NULL);
	setenv("RAYC_DRIVER_TASKS", "off", 1);
	driver_start();
	unsetenv("RAYC_DRIVER_TASKS");
	pid_t a = spawn_peer(TOKEN, NULL);
	spawn_peer(TOKEN, NULL);
	wait_alive(3);
	enum { N = 40 };
	rayc_ref r[N];
	for (int i = 0; i < N; i++)
		cr_assert_eq(rayc_call(&r[i], "nf_sleep", RAYC_I64(200)), 0);
	/* Half of them are in flight there (placed at submit). */
	kill(a, SIGKILL);
	for (int i = 0; i < N; i++) {
		cr_assert_gt(get_i64(r[i]), 1, "a task ran on the driver");
		rayc_release(r[i]);
	}
	log_dump();
	int lines = count_logged("RAYC-TASK-RETRY", NULL);
	cr_assert_eq(lines, 1, "%d RAYC-TASK-RETRY lines for one death", lines);
	cr_assert_eq(count_logged("RAYC-TASK-RETRY", "all retried"), 1);
	pthread_mutex_lock(&log_mu);
	const char *p = strstr(log_text, "RAYC-TASK-RETRY peer ");
	unsigned peer = 0, inflight = 0;
	int got = p != NULL ? sscanf(p, "RAYC-TASK-RETRY peer %u died running "
	                             "%u", &peer, &inflight)
	                    : 0;
	pthread_mutex_unlock(&log_mu);
	cr_assert_eq(got, 2);
	cr_assert_geq(inflight, 2, "only %u tasks were in flight", inflight);
	reap_dead(0, SIGKILL);
	cluster_stop();
	rayc_set_logger(NULL, NULL);
}

/* A driver that joined leaves while the cluster goes on: no warning.
 * Its frames after the LEAVE (heartbeats, Raft replies) met its committed
 * removal in about 1 of 3 leaves at the default heartbeat; here it
 * lingers 500 ms after its LEAVE, so they always do. */
Test(crash, clean_leave_logs_no_removed_warning)
{
	rayc_set_logger(capture, NULL);
	char addr[200];
	/* The founder: a driver process that serves. */
	char dir[] = "/tmp/rayc-crash-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char file[128], fenv[160];
	snprintf(file, sizeof(file), "%s/addr", dir);
	snprintf(fenv, sizeof(fenv), "NET_PEER_ADDR_FILE=%s", file);
	const char *fe[] = { fenv, "RAYC_LISTEN=tcp://127.0.0.1:0",
		             "RAYC_HEARTBEAT_TIMEOUT_MS=1000", NULL };
	spawn_with(TOKEN, fe);
	FILE *fp = NULL;
	RT_WAIT_FOR((fp = fopen(file, "r")) != NULL, 20000);
	cr_assert_not_null(fp, "the founder did not come up");
	cr_assert_not_null(fgets(addr, sizeof(addr), fp));
	fclose(fp);
	unlink(file);
	rmdir(dir);
	addr[strcspn(addr, "\n")] = '\0';
	char aenv[240];
	snprintf(aenv, sizeof(aenv), "RAYC_ADDRESS=%s", addr);
	const char *we[] = { aenv, "RAYC_ROLE=worker",
		             "RAYC_HEARTBEAT_TIMEOUT_MS=1000", NULL };
	spawn_with(TOKEN, we);
	rayc_config dc = { .num_workers = 2,
		           .store_bytes = (size_t)64 << 20,
		           .prefault_bytes = (size_t)1 << 20,
		           .listen = "tcp://127.0.0.1:0",
		           .address = addr,
		           .token = TOKEN,
		           .heartbeat_timeout_ms = 1000 };
	rayc__test_set_leave_linger(500);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(rayc_init(&dc), RAYC_OK, "%s", rayc_errmsg());
		wait_alive(3);
		assert_tree_sum(2000);
		/* Leave while the others go on. */
		cr_assert_eq(rayc_shutdown(), RAYC_OK);
	}
	rayc__test_set_leave_linger(0);
	log_dump();
	cr_assert_eq(count_logged("RAYC-NET-REMOVED", NULL), 0,
	             "a clean leave was logged as a removal");
	/* End the cluster: only processes this test started, by pid. */
	rayc_set_logger(NULL, NULL);
	kill_kids();
}
