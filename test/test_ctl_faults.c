/* test_ctl_faults.c -- the control store under faults, with real peer
 * processes on loopback: no acknowledged KV write is lost when a peer
 * leaves, no read is stale after a coordinator is replaced, a peer cut
 * off from its cluster fails its waits instead of hanging, joins and
 * membership changes ride out failovers. */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include <raft.h>

#include "net_harness.h"

TestSuite(ctl_faults, .timeout = 150, .fini = kill_kids);

/* The harness's founder-driver start; these tests join a serving founder
 * or set their own heartbeat timeout. */
static void (*const unused_driver_start)(void) __attribute__((unused)) =
	driver_start;

static int count_voters(uint32_t *coord)
{
	rayc_peer_info pi[MAXP * 2];
	size_t n = 0;
	int v = 0;
	rayc_cluster_peers(pi, MAXP * 2, &n);
	if (coord != NULL)
		*coord = 0;
	for (size_t i = 0; i < n && i < MAXP * 2; i++) {
		v += pi[i].alive && pi[i].is_voter;
		if (coord != NULL && pi[i].alive && pi[i].is_coordinator)
			*coord = pi[i].id;
	}
	return v;
}

/* Stops a process this test started (by pid) and removes its arena. */
static void stop_kid(int slot, int sig)
{
	if (kids[slot] <= 0)
		return;
	kill(kids[slot], sig);
	(void)reap(kids[slot], 15000);
	char path[64];
	snprintf(path, sizeof(path), "/dev/shm/rayc-%d-0", kids[slot]);
	unlink(path);
	kids[slot] = 0;
}

/* ---- acknowledged writes survive a peer leaving ---- */

#define W_MAX (1 << 17)
static _Atomic bool w_ok[W_MAX]; /* key w<i> was acknowledged */
static _Atomic int w_n;          /* keys tried */
static _Atomic int w_acked, w_failed;
static _Atomic bool w_shutting;  /* the driver is shutting down */
static _Atomic int w_err;        /* the last error a write got */

/* Runs here (in the driver): writes w0, w1, ... until 3 s after the
 * driver started shutting down, going on after errors as a client that
 * retries would. */
static void cf_writer(rayc_ctx *c)
{
	int64_t stop_at = 0;
	char key[32];

	for (int i = 0; i < W_MAX; i++) {
		if (atomic_load(&w_shutting)) {
			if (stop_at == 0)
				stop_at = rt_now_ms() + 3000;
			else if (rt_now_ms() > stop_at)
				break;
		}
		snprintf(key, sizeof(key), "w%d", i);
		int rc = rayc_kv_put(key, key, strlen(key));
		atomic_store(&w_n, i + 1);
		if (rc != RAYC_OK) {
			atomic_store(&w_err, rc);
			atomic_fetch_add(&w_failed, 1);
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
			continue;
		}
		atomic_store(&w_ok[i], true);
		atomic_fetch_add(&w_acked, 1);
	}
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(cf_writer)

/* A driver leaves (rayc_shutdown) while one of its tasks keeps writing:
 * every write it acknowledged is in the cluster's KV afterwards; the
 * writes after it left fail instead of landing in a table nobody will
 * ever read. */
Test(ctl_faults, acknowledged_kv_writes_survive_a_leaving_driver)
{
	char addr[200] = { 0 };
	pid_t f = spawn_serving(addr, sizeof(addr), NULL);
	(void)f;
	driver_start_at(addr);
	spawn_peer(TOKEN, NULL);
	wait_alive(3);
	for (int i = 0; i < W_MAX; i++)
		atomic_store(&w_ok[i], false);
	atomic_store(&w_n, 0);
	atomic_store(&w_acked, 0);
	atomic_store(&w_failed, 0);
	atomic_store(&w_shutting, false);
	atomic_store(&w_err, 0);
	rayc_task_opts o = on_peer(rayc_peer_id());
	rayc_ref r;
	cr_assert_eq(rayc_call_opts(&r, "cf_writer", &o), 0);
	RT_WAIT_FOR(atomic_load(&w_acked) >= 50, 20000);
	cr_assert_geq(atomic_load(&w_acked), 50, "the writer is stuck (%s)",
	              rayc_strerror(atomic_load(&w_err)));
	atomic_store(&w_shutting, true);
	/* The founder stays: this driver leaves, the cluster goes on. */
	cr_assert_eq(rayc_shutdown(), RAYC_OK);
	int n = atomic_load(&w_n);
	cr_log_info("%d writes: %d acknowledged, %d failed (last: %s)", n,
	            atomic_load(&w_acked), atomic_load(&w_failed),
	            rayc_strerror(atomic_load(&w_err)));
	cr_assert_gt(atomic_load(&w_failed), 0,
	             "writes went on succeeding after the peer left");
	/* Back in as a new peer: every acknowledged write is there. */
	driver_start_at(addr);
	char key[32];
	int lost = 0, first = -1;
	for (int i = 0; i < n; i++) {
		void *val;
		size_t len;
		if (!atomic_load(&w_ok[i]))
			continue;
		snprintf(key, sizeof(key), "w%d", i);
		int rc = rayc_kv_get(key, &val, &len);
		if (rc != RAYC_OK) {
			lost++;
			if (first < 0)
				first = i;
			continue;
		}
		cr_assert(len == strlen(key) && memcmp(val, key, len) == 0);
		free(val);
	}
	cr_assert_eq(lost, 0, "%d of %d acknowledged writes lost (first w%d)",
	             lost, atomic_load(&w_acked), first);
	cr_assert_eq(rayc_shutdown(), RAYC_OK);
	kill_kids();
}

/* ---- no stale reads from a coordinator that was replaced ---- */

static const rayc_peer_info *find_peer(rayc_peer_info *pi, size_t n,
                                       uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (pi[i].id == id)
			return &pi[i];
	return NULL;
}

static bool peer_removed(uint32_t id)
{
	rayc_peer_info pi[MAXP * 2];
	size_t n = 0;
	rayc_cluster_peers(pi, MAXP * 2, &n);
	const rayc_peer_info *p = find_peer(pi, n, id);
	return p != NULL && !p->alive;
}

/* The coordinator is stopped (SIGSTOP); the others elect another, remove
 * the old one and commit a new value; the old one is continued and at
 * once reads the key on its own peer.  It still takes itself for the
 * leader, but it must not answer from its copy: the read gives the new
 * value or an error, never the old value. */
Test(ctl_faults, a_replaced_coordinator_never_serves_a_stale_read)
{
	char addr[200] = { 0 };
	pid_t f = spawn_serving(addr, sizeof(addr), NULL);
	driver_start_at(addr);
	spawn_peer(TOKEN, NULL);
	wait_alive(3);
	uint32_t coord = 0;
	RT_WAIT_FOR(count_voters(&coord) == 3 && coord == 1, 20000);
	cr_assert_eq(coord, 1, "the founder leads at first");
	cr_assert_eq(rayc_kv_put("x", "old", 3), 0, "%s", rayc_errmsg());

	char dir[] = "/tmp/rayc-stale-XXXXXX", path[128], started[160];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/read", dir);
	snprintf(started, sizeof(started), "%s.started", path);
	rayc_task_opts o = on_peer(1);
	o.max_retries = 0;
	rayc_ref r;
	cr_assert_eq(rayc_call_opts(&r, "nf_read_after_cont", &o, RAYC_STR("x"),
	                            RAYC_STR(path)), 0);
	RT_WAIT_FOR(access(started, F_OK) == 0, 20000);
	cr_assert_eq(access(started, F_OK), 0, "the reader did not start");

	kill(f, SIGSTOP);
	RT_WAIT_FOR((count_voters(&coord), coord != 0 && coord != 1), 30000);
	cr_assert(coord != 0 && coord != 1, "no new coordinator");
	cr_assert_eq(rayc_kv_put("x", "new", 3), 0, "%s", rayc_errmsg());
	/* Out of the configuration too: nobody will tell it anything. */
	RT_WAIT_FOR(peer_removed(1), 30000);
	cr_assert(peer_removed(1), "the stopped coordinator was not removed");
	kill(f, SIGCONT);

	FILE *fp = NULL;
	RT_WAIT_FOR((fp = fopen(path, "r")) != NULL, 30000);
	cr_assert_not_null(fp, "the old coordinator's read never returned");
	char got[600] = { 0 };
	cr_assert_not_null(fgets(got, sizeof(got), fp));
	fclose(fp);
	unlink(path);
	unlink(started);
	rmdir(dir);
	cr_log_info("the old coordinator's read: %s", got);
	cr_assert(strcmp(got, "OK:old") != 0,
	          "the replaced coordinator served a stale read");
	cr_assert(strcmp(got, "OK:new") == 0 || strncmp(got, "ERR:", 4) == 0,
	          "unexpected answer %s", got);
	/* The old coordinator sees it is out and leaves by itself. */
	int code = reap(f, 60000);
	cr_assert_eq(code, 0, "the old coordinator ended with %d", code);
	kids[0] = 0;
	rayc_release(r);
	void *val;
	size_t len;
	cr_assert_eq(rayc_kv_get("x", &val, &len), 0);
	cr_assert(len == 3 && memcmp(val, "new", 3) == 0);
	free(val);
	cluster_stop();
}

/* ---- a peer cut off from its cluster fails its waits ---- */

typedef struct get_arg {
	rayc_ref r;
	_Atomic bool done;
	int rc;
	char msg[512];
} get_arg;

static void *get_forever(void *arg)
{
	get_arg *g = arg;
	rayc_view v;
	g->rc = rayc_get(g->r, &v, -1);
	snprintf(g->msg, sizeof(g->msg), "%s", rayc_errmsg());
	if (g->rc == RAYC_OK || g->rc == RAYC_ETASK)
		rayc_view_release(&v);
	atomic_store(&g->done, true);
	return NULL;
}

/* Three voters (this driver and two workers); both workers are killed,
 * so no majority is left and no removal can ever commit.  The driver,
 * cut off, must give up on the task that ran on a killed worker: a
 * rayc_get(-1) on it returns a clear error instead of blocking for ever,
 * and a KV call fails at once. */
Test(ctl_faults, a_peer_cut_off_from_its_majority_fails_its_waits)
{
	/* A shorter heartbeat timeout: cut off after 3 of them. */
	rayc_config c = { .num_workers = 2,
		          .store_bytes = (size_t)256 << 20,
		          .prefault_bytes = (size_t)4 << 20,
		          .listen = "tcp://127.0.0.1:0",
		          .token = TOKEN,
		          .heartbeat_timeout_ms = 3000 };
	cr_assert_eq(rayc_init(&c), RAYC_OK, "%s", rayc_errmsg());
	const char *hb = "RAYC_HEARTBEAT_TIMEOUT_MS=3000";
	pid_t a = spawn_peer(TOKEN, hb);
	spawn_peer(TOKEN, hb);
	wait_alive(3);
	RT_WAIT_FOR(count_voters(NULL) == 3, 20000);
	cr_assert_eq(count_voters(NULL), 3);
	rayc_task_opts o = on_peer(peer_of(a));
	o.max_retries = 0;
	get_arg g = { 0 };
	cr_assert_eq(rayc_call_opts(&g.r, "nf_sleep", &o, RAYC_I64(120000)), 0);
	/* It runs there: the worker's heartbeat shows it busy. */
	rayc_peer_info pi[MAXP * 2];
	size_t n = 0;
	RT_WAIT_FOR((rayc_cluster_peers(pi, MAXP * 2, &n),
	             find_peer(pi, n, peer_of(a)) != NULL &&
	                     find_peer(pi, n, peer_of(a))->cpus_available < 2),
	            20000);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, get_forever, &g), 0);
	kill(kids[0], SIGKILL);
	kill(kids[1], SIGKILL);
	int64_t t0 = rt_now_ms();
	RT_WAIT_FOR(atomic_load(&g.done), 60000);
	cr_assert(atomic_load(&g.done), "rayc_get(-1) still blocked after 60 s");
	pthread_join(th, NULL);
	cr_log_info("rayc_get returned after %lld ms: %s (%s)",
	            (long long)(rt_now_ms() - t0), rayc_strerror(g.rc), g.msg);
	/* Either this peer gave up on the unreachable worker first (one
	 * heartbeat timeout: its hard-affinity task can run nowhere else)
	 * or it found itself cut off (three): a clear error either way. */
	cr_assert(g.rc == RAYC_ELOST || g.rc == RAYC_EINFEASIBLE, "%s (%s)",
	          rayc_strerror(g.rc), g.msg);
	cr_assert(strstr(g.msg, "lost its cluster") != NULL ||
	          strstr(g.msg, "is not alive or cannot run it") != NULL,
	          "%s", g.msg);
	rayc_release(g.r);
	/* Once cut off (3 heartbeat timeouts), a KV call fails at once. */
	void *val;
	size_t len;
	int rc;
	int64_t t1, deadline = rt_now_ms() + 60000;
	do {
		t1 = rt_now_ms();
		rc = rayc_kv_get("x", &val, &len);
	} while (rc != RAYC_ESTATE && rt_now_ms() < deadline);
	cr_assert_eq(rc, RAYC_ESTATE, "%s", rayc_errmsg());
	t1 = rt_now_ms();
	cr_assert_eq(rayc_kv_get("x", &val, &len), RAYC_ESTATE, "%s",
	             rayc_errmsg());
	cr_assert_lt(rt_now_ms() - t1, 1000, "the KV call waited");
	for (int i = 0; i < 2; i++)
		stop_kid(i, SIGKILL);
	nkids = 0;
	cr_assert_eq(rayc_shutdown(), RAYC_OK);
}

/* ---- membership changes do not stall behind a promotee ---- */

static bool is_voter(uint32_t id)
{
	rayc_peer_info pi[MAXP * 2];
	size_t n = 0;
	rayc_cluster_peers(pi, MAXP * 2, &n);
	const rayc_peer_info *p = find_peer(pi, n, id);
	return p != NULL && p->alive && p->is_voter;
}

static bool running(pid_t pid)
{
	return waitpid(pid, NULL, WNOHANG) == 0;
}

/* Four peers (3 voters, 1 standby); a fifth joins that never answers
 * the control store (RAYC__DEAF_RAFT: it is stuck in every promotion),
 * and right after it a sixth.  The coordinator lives throughout: the
 * sixth must neither stop itself for want of a coordinator nor wait for
 * ever behind the stuck promotion; when the stuck one is SIGKILLed every
 * healthy peer is still there, five of them voters. */
Test(ctl_faults, churn_behind_a_stuck_promotion_stops_no_healthy_peer)
{
	const char *hb = "RAYC_HEARTBEAT_TIMEOUT_MS=3000";
	driver_start_hb(NULL, 3000);
	pid_t w[5];
	for (int i = 0; i < 3; i++)
		w[i] = spawn_peer(TOKEN, hb);
	wait_alive(4);
	RT_WAIT_FOR(count_voters(NULL) == 3, 20000);
	cr_assert_eq(count_voters(NULL), 3);
	char addr[200];
	snprintf(addr, sizeof(addr), "RAYC_ADDRESS=%s", rayc_address());
	const char *deaf[] = { addr, "RAYC_ROLE=worker", hb,
		               "RAYC__DEAF_RAFT=1", NULL };
	w[3] = spawn_with(TOKEN, deaf);
	wait_alive(5);
	w[4] = spawn_peer(TOKEN, hb);
	wait_alive(6);
	uint32_t p6 = peer_of(w[4]);
	int64_t t0 = rt_now_ms();
	RT_WAIT_FOR(is_voter(p6) || !running(w[4]), 40000);
	cr_assert(running(w[4]), "the newest peer stopped itself");
	cr_assert(is_voter(p6), "the newest peer was never made a voter");
	cr_log_info("the newest peer became a voter in %lld ms",
	            (long long)(rt_now_ms() - t0));
	stop_kid(3, SIGKILL);
	RT_WAIT_FOR(alive_peers() == 5 && count_voters(NULL) == 5, 30000);
	cr_assert_eq(alive_peers(), 5);
	cr_assert_eq(count_voters(NULL), 5);
	for (int i = 0; i < 5; i++)
		if (i != 3)
			cr_assert(running(w[i]), "healthy peer %d stopped", i);
	cr_assert_eq(rayc_kv_put("k", "v", 1), 0, "%s", rayc_errmsg());
	assert_tree_sum(2000);
	/* stop_kid left slot 3 empty; cluster_stop skips it. */
	cluster_stop();
}

/* ---- a join during a failover ---- */

/* The coordinator is killed and a new peer joins at once through a
 * surviving one, which still names the dead coordinator: the join must
 * go on trying (the surviving peer, then the coordinator it names once
 * one is elected) until its deadline, and succeed. */
Test(ctl_faults, a_join_during_a_failover_finds_the_new_coordinator)
{
	char addr[200] = { 0 };
	pid_t f = spawn_serving(addr, sizeof(addr), NULL);
	driver_start_at(addr);
	spawn_peer(TOKEN, NULL);
	wait_alive(3);
	uint32_t coord = 0;
	RT_WAIT_FOR(count_voters(&coord) == 3 && coord == 1, 20000);
	cr_assert_eq(coord, 1, "the founder leads at first");
	kill(f, SIGKILL);
	/* Joins through this driver, which still names peer 1. */
	pid_t n = spawn_peer(TOKEN, NULL);
	RT_WAIT_FOR(peer_of(n) != 0 || !running(n), 30000);
	cr_assert(running(n), "the new peer gave up joining");
	cr_assert_neq(peer_of(n), 0, "the new peer did not join");
	RT_WAIT_FOR(peer_removed(1) && alive_peers() == 3, 30000);
	cr_assert_eq(alive_peers(), 3);
	stop_kid(0, SIGKILL);
	/* It works: a task there writes the KV, we read it. */
	rayc_task_opts o = on_peer(peer_of(n));
	rayc_ref r;
	cr_assert_eq(rayc_call_opts(&r, "nf_kv_write", &o, RAYC_STR("j"),
	                            RAYC_STR("yes")), 0);
	cr_assert_eq(get_i64(r), 0);
	rayc_release(r);
	void *val;
	size_t len;
	cr_assert_eq(rayc_kv_get("j", &val, &len), 0, "%s", rayc_errmsg());
	free(val);
	cluster_stop();
}

/* ---- a replica that cannot apply an entry does not differ silently ---- */

/* peer's own copy of key equals want. */
static bool local_kv_is(uint32_t peer, const char *key, const char *want)
{
	rayc_task_opts o = on_peer(peer);
	o.max_retries = 0;
	rayc_ref r;
	rayc_view v;
	if (rayc_call_opts(&r, "nf_kv_local", &o, RAYC_STR(key)) != 0)
		return false;
	int rc = rayc_get(r, &v, 10000);
	bool ok = rc == 0 && v.len == strlen(want) &&
	          memcmp(v.data, want, v.len) == 0;
	if (rc == 0 || rc == RAYC_ETASK)
		rayc_view_release(&v);
	rayc_release(r);
	return ok;
}

/* A worker runs out of memory applying a committed KV write (fault
 * injection): it must not go on with a copy that lacks the write; it
 * leaves the cluster with a clear log, and the others go on. */
Test(ctl_faults, a_replica_that_cannot_apply_a_write_leaves)
{
	driver_start_at(NULL);
	pid_t a = spawn_peer(TOKEN, NULL);
	spawn_peer(TOKEN, NULL);
	wait_alive(3);
	RT_WAIT_FOR(count_voters(NULL) == 3, 20000);
	uint32_t pa = peer_of(a);
	rayc_task_opts o = on_peer(pa);
	rayc_ref r;
	cr_assert_eq(rayc_call_opts(&r, "nf_fault", &o,
	                            RAYC_I64(RAYC__FAULT_KV_APPLY), RAYC_I64(1)),
	             0);
	cr_assert_eq(get_i64(r), 0);
	rayc_release(r);
	cr_assert_eq(rayc_kv_put("d", "v", 1), 0, "%s", rayc_errmsg());
	RT_WAIT_FOR(!running(a) || local_kv_is(pa, "d", "v"), 10000);
	cr_assert(!running(a) || local_kv_is(pa, "d", "v"),
	          "peer %u's copy lacks a committed write and it serves on", pa);
	kids[0] = 0; /* reaped by running() */
	RT_WAIT_FOR(alive_peers() == 2, 20000);
	cr_assert_eq(alive_peers(), 2, "the peer that left was not removed");
	cr_assert_eq(rayc_kv_put("e", "w", 1), 0, "%s", rayc_errmsg());
	assert_tree_sum(1000);
	cluster_stop();
}

/* ---- a newcomer that dies while it is being made a voter ---- */

/* Peer id's entry in the whole cluster view (every peer ever seen, so
 * more than MAXP * 2 once many came and went); false if not there. */
static bool view_of(uint32_t id, rayc_peer_info *out)
{
	static rayc_peer_info pi[VIEW_MAX];
	size_t n = 0;
	rayc_cluster_peers(pi, VIEW_MAX, &n);
	for (size_t i = 0; i < n && i < VIEW_MAX; i++)
		if (pi[i].id == id) {
			*out = pi[i];
			return true;
		}
	return false;
}

static bool voter_now(uint32_t id)
{
	rayc_peer_info p;
	return view_of(id, &p) && p.alive && p.is_voter;
}

static bool gone_now(uint32_t id)
{
	rayc_peer_info p;
	return view_of(id, &p) && !p.alive;
}

/* The coordinator in this peer's view (0: none). */
static uint32_t coord_now(void)
{
	static rayc_peer_info pi[VIEW_MAX];
	size_t n = 0;
	rayc_cluster_peers(pi, VIEW_MAX, &n);
	for (size_t i = 0; i < n && i < VIEW_MAX; i++)
		if (pi[i].alive && pi[i].is_coordinator)
			return pi[i].id;
	return 0;
}

/* A KV write from a task on peer commits: that peer follows a live
 * coordinator.  Returns the put's result (or the call's error). */
static int kv_put_on(uint32_t peer, const char *key)
{
	rayc_task_opts o = on_peer(peer);
	o.max_retries = 0;
	rayc_ref r;
	int64_t v = -1;
	if (rayc_call_opts(&r, "nf_kv_write", &o, RAYC_STR(key),
	                   RAYC_STR("1")) != 0)
		return -1;
	int rc = rayc_get_i64(r, &v, 10000);
	rayc_release(r);
	return rc != 0 ? rc : (int)v;
}

/* Two stable peers (this driver, the founder, and one worker) at the
 * default 1000 ms heartbeat timeout: one voter and one standby.  Again
 * and again a third peer joins, so the coordinator makes voters up to
 * three, and is SIGKILLed while it is being promoted (in turn: as soon as
 * it is a member, during its promotion, once counted a voter).  Each
 * time, within five heartbeat timeouts of the kill, both stable peers
 * commit KV writes, neither stops itself, the founder still leads in the
 * same term (it never lost its majority), and the dead peer is out of
 * the membership and, within half a heartbeat timeout, out of the Raft
 * configuration; at the end a new peer joins and becomes a voter. */
Test(ctl_faults, a_newcomer_killed_while_promoted_stops_no_stable_peer)
{
	const int hb = 1000, rounds = 12;
	const char *hbe = "RAYC_HEARTBEAT_TIMEOUT_MS=1000";
	char addr[200];
	driver_start_hb(NULL, hb);
	snprintf(addr, sizeof(addr), "RAYC_ADDRESS=%s", rayc_address());
	const char *env[] = { hbe, addr, "RAYC_ROLE=worker", NULL };
	pid_t w = spawn_with(TOKEN, env);
	wait_alive(2);
	uint32_t wid = peer_of(w);
	cr_assert_neq(wid, 0);
	uint64_t term = rayc__test_ctl_term();
	for (int round = 0; round < rounds; round++) {
		pid_t n = spawn_with(TOKEN, env);
		int slot = nkids - 1;
		uint32_t nid = 0;
		RT_WAIT_FOR((nid = peer_of(n)) != 0 || !running(n), 20000);
		cr_assert_neq(nid, 0, "round %d: the newcomer did not join",
		              round);
		int mode = round % 3;
		if (mode == 1)
			RT_WAIT_FOR(rayc__test_ctl_promoting() == nid ||
			            voter_now(nid), 20000);
		else if (mode == 2)
			RT_WAIT_FOR(voter_now(nid), 20000);
		bool promoting = rayc__test_ctl_promoting() == nid;
		bool voter = voter_now(nid);
		kill(n, SIGKILL);
		int64_t t0 = rt_now_ms();
		cr_assert(mode == 0 || promoting || voter,
		          "round %d: peer %u was never promoted", round, nid);
		stop_kid(slot, SIGKILL);
		char key[32];
		snprintf(key, sizeof(key), "d%d", round);
		int rc = -1;
		while (rt_now_ms() - t0 < 5 * hb &&
		       (rc = rayc_kv_put(key, "1", 1)) != RAYC_OK)
			;
		cr_assert_eq(rc, RAYC_OK, "round %d: the driver's KV put: %s",
		             round, rayc_errmsg());
		snprintf(key, sizeof(key), "w%d", round);
		rc = -1;
		while (rt_now_ms() - t0 < 5 * hb && running(w) &&
		       (rc = kv_put_on(wid, key)) != RAYC_OK)
			;
		cr_assert(running(w), "round %d: the stable worker stopped",
		          round);
		cr_assert_eq(rc, RAYC_OK, "round %d: the worker's KV put: %s",
		             round, rayc_strerror(rc));
		RT_WAIT_FOR(gone_now(nid), 5 * hb);
		cr_assert(gone_now(nid), "round %d: peer %u not removed", round,
		          nid);
		/* Out of the Raft configuration well before libraft would
		 * give up on a promotee's catch-up (one heartbeat timeout):
		 * meanwhile no other change could be made. */
		RT_WAIT_FOR(!rayc__test_ctl_in_conf(nid), hb / 2);
		cr_assert(!rayc__test_ctl_in_conf(nid), "round %d: dead peer "
		          "%u still in the configuration after %lld ms", round,
		          nid, (long long)(rt_now_ms() - t0));
		uint32_t coord = coord_now();
		cr_assert_eq(coord, 1, "round %d: the founder does not lead "
		             "(%u does)", round, coord);
		cr_assert_eq(rayc__test_ctl_term(), term, "round %d: the "
		             "founder lost its leadership", round);
		cr_assert_lt(rt_now_ms() - t0, 5 * hb, "round %d: %lld ms to "
		             "recover", round, (long long)(rt_now_ms() - t0));
		const char *when = promoting ? "in its promotion"
		                   : voter   ? "as a new voter"
		                             : "once a member";
		cr_log_info("round %d: peer %u killed %s; %lld ms to recover",
		            round, nid, when, (long long)(rt_now_ms() - t0));
	}
	/* A new peer joins and stays: three voters. */
	pid_t n = spawn_with(TOKEN, env);
	int64_t t0 = rt_now_ms();
	RT_WAIT_FOR(peer_of(n) != 0 && voter_now(peer_of(n)), 5 * hb);
	cr_assert(peer_of(n) != 0 && voter_now(peer_of(n)),
	          "the last newcomer was not made a voter in %d ms", 5 * hb);
	cr_log_info("the last newcomer became a voter in %lld ms",
	            (long long)(rt_now_ms() - t0));
	cr_assert(running(w), "the stable worker stopped");
	cr_assert_eq(rayc_kv_put("end", "1", 1), RAYC_OK, "%s", rayc_errmsg());
	cluster_stop();
}

/* ---- a snapshot being installed when the store closes ---- */

/* Blocks libraft (and rayc, for raft's buffers) took from raft_malloc
 * and its kin and have not given back. */
static _Atomic long raft_live;

static void *rh_malloc(void *data, size_t size)
{
	(void)data;
	void *p = malloc(size);
	if (p != NULL)
		atomic_fetch_add(&raft_live, 1);
	return p;
}

static void rh_free(void *data, void *ptr)
{
	(void)data;
	if (ptr != NULL)
		atomic_fetch_sub(&raft_live, 1);
	free(ptr);
}

static void *rh_calloc(void *data, size_t nmemb, size_t size)
{
	(void)data;
	void *p = calloc(nmemb, size);
	if (p != NULL)
		atomic_fetch_add(&raft_live, 1);
	return p;
}

static void *rh_realloc(void *data, void *ptr, size_t size)
{
	(void)data;
	void *p = realloc(ptr, size);
	if (ptr == NULL && p != NULL)
		atomic_fetch_add(&raft_live, 1);
	else if (ptr != NULL && size == 0 && p == NULL)
		atomic_fetch_sub(&raft_live, 1);
	return p;
}

static void *rh_aligned_alloc(void *data, size_t alignment, size_t size)
{
	(void)data;
	void *p = aligned_alloc(alignment, size);
	if (p != NULL)
		atomic_fetch_add(&raft_live, 1);
	return p;
}

static void rh_aligned_free(void *data, size_t alignment, void *ptr)
{
	(void)alignment;
	rh_free(data, ptr);
}

static struct raft_heap counting_heap = {
	.malloc = rh_malloc,
	.free = rh_free,
	.calloc = rh_calloc,
	.realloc = rh_realloc,
	.aligned_alloc = rh_aligned_alloc,
	.aligned_free = rh_aligned_free,
};

/* A peer that joins a cluster whose log is compacted installs the
 * coordinator's snapshot; stopped while that install is under way, it
 * gives back everything raft allocated for it (libraft 0.15 leaked the
 * snapshot's array of buffers when the put was cancelled, and chaos saw
 * it under LeakSanitizer). */
Test(ctl_faults, a_peer_stopped_while_installing_a_snapshot_frees_it)
{
	raft_heap_set(&counting_heap);
	setenv("RAYC__SNAPSHOT_ENTRIES", "8", 1);
	char addr[200] = { 0 };
	spawn_serving_with(addr, sizeof(addr), NULL,
	                   "RAYC__SNAPSHOT_ENTRIES=8");
	driver_start_at(addr);
	char key[32];
	for (int i = 0; i < 64; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		cr_assert_eq(rayc_kv_put(key, "v", 1), RAYC_OK, "%s",
		             rayc_errmsg());
	}
	/* Every 8 entries a snapshot, here too: one taken here or
	 * installed from the coordinator (this peer fell behind). */
	RT_WAIT_FOR(rayc__test_ctl_snapshots(NULL) >= 1, 20000);
	cr_assert_geq(rayc__test_ctl_snapshots(NULL), 1, "no snapshot");
	cr_assert_eq(rayc_shutdown(), RAYC_OK);
	cr_assert_eq(atomic_load(&raft_live), 0, "%ld raft blocks left by a "
	             "peer that left", atomic_load(&raft_live));
	/* Back in as a new peer: the coordinator's log no longer starts at
	 * the beginning, so it sends its snapshot, held here until this
	 * peer stops. */
	rayc__test_hold_installs(true);
	driver_start_at(addr);
	RT_WAIT_FOR(rayc__test_installs_held() >= 1, 30000);
	cr_assert_geq(rayc__test_installs_held(), 1, "no snapshot came");
	cr_assert_eq(rayc_shutdown(), RAYC_OK);
	rayc__test_hold_installs(false);
	cr_assert_eq(atomic_load(&raft_live), 0, "%ld raft blocks left by a "
	             "peer stopped while installing a snapshot",
	             atomic_load(&raft_live));
	raft_heap_set_default();
	kill_kids();
}

/* ---- a whole host standing still ---- */

/* The default heartbeat; ASan's builds get a proportionately longer one,
 * as in test_ctl.c. */
#ifdef RAYC_TEST_ASAN
#define STILL_HB 3000
#else
#define STILL_HB 1000
#endif

/* Stops the workers and this process together (as a paused VM would),
 * for ms, and wakes them together; returns once this process runs
 * again.  This process is Criterion's worker for the test: Debian 12's
 * Criterion 2.4.1 (its BoxFort) waits for it with WEXITED only, so the
 * stop goes unseen; a BoxFort that also waits with WSTOPPED would take
 * it for a crash. */
static void stand_still(pid_t w0, pid_t w1, int ms)
{
	pid_t self = getpid();
	pid_t h = fork();
	cr_assert_geq(h, 0);
	if (h == 0) {
		struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
		kill(w0, SIGSTOP);
		kill(w1, SIGSTOP);
		kill(self, SIGSTOP);
		nanosleep(&ts, NULL);
		kill(self, SIGCONT);
		kill(w0, SIGCONT);
		kill(w1, SIGCONT);
		_exit(0);
	}
	int st;
	while (waitpid(h, &st, 0) < 0 && errno == EINTR)
		;
}

/* Every peer of a cluster of three voters stands still for one and a half
 * heartbeat timeouts (several election timeouts), together: a pause of
 * the whole host.  On waking, each peer's timers ran before it read what
 * the others sent meanwhile: followers started an election, the leader
 * stepped down, and the leader took both workers for dead.  Nobody heard
 * anything because nobody listened; nobody may be taken for dead and no
 * election may happen, three times over. */
Test(ctl_faults, a_cluster_standing_still_together_wakes_with_no_election)
{
	char hb[48];
	snprintf(hb, sizeof(hb), "RAYC_HEARTBEAT_TIMEOUT_MS=%d", STILL_HB);
	driver_start_hb(NULL, STILL_HB);
	pid_t w[2];
	for (int i = 0; i < 2; i++)
		w[i] = spawn_peer(TOKEN, hb);
	wait_alive(3);
	RT_WAIT_FOR(count_voters(NULL) == 3, 20000);
	cr_assert_eq(count_voters(NULL), 3);
	uint64_t term = rayc__test_ctl_term();
	cr_assert_gt(term, 0);
	for (int round = 0; round < 3; round++) {
		stand_still(w[0], w[1], STILL_HB * 3 / 2);
		/* Time to notice, on both sides: 2 heartbeat timeouts. */
		RT_WAIT_FOR(dead_peers() != 0 || rayc__test_ctl_term() != term,
		            2 * STILL_HB);
		cr_assert_eq(dead_peers(), 0, "a peer was taken for dead "
		             "(round %d)", round);
		cr_assert_eq(rayc__test_ctl_term(), term,
		             "an election happened (round %d; term %llu -> "
		             "%llu)", round, (unsigned long long)term,
		             (unsigned long long)rayc__test_ctl_term());
	}
	cr_assert_eq(rayc_kv_put("after", "1", 1), 0, "%s", rayc_errmsg());
	cluster_stop();
}
