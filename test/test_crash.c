/* test_crash.c -- tasks that crash the peer running them, owners that
 * die under their borrowers, and what the driver's log says meanwhile;
 * real peer processes (net_peer) on loopback.  Every wait has a
 * deadline; every process started is stopped and reaped by pid. */
#include "crash_funcs.h"
#include "net_harness.h"

TestSuite(crash, .timeout = 150, .fini = kill_kids);

/* ---- peers ---- */

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
	cr_assert_eq(rc, RAYC_ELOST, "got %s: %s", rayc_strerror(rc),
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
	/* In a cluster whose only other peer leaves: tasks fail clearly
	 * (nobody can run them), never run here. */
	c.listen = "tcp://127.0.0.1:0";
	c.token = TOKEN;
	c.heartbeat_timeout_ms = 6000;
	c.driver_tasks = RAYC_DRIVER_TASKS_OFF;
	cr_assert_eq(rayc_init(&c), RAYC_OK, "%s", rayc_errmsg());
	rayc_ref r;
	cr_assert_eq(rayc_call(&r, "nf_whoami"), RAYC_EINFEASIBLE);
	rayc_task_opts zero = RAYC_TASK_OPTS_DEFAULT;
	zero.num_cpus = 0;
	int rc = rayc_call_opts(&r, "nf_whoami", &zero);
	if (rc == RAYC_OK) {
		int64_t v;
		rc = rayc_get_i64(r, &v, 10000);
		rayc_release(r);
	}
	cr_assert_eq(rc, RAYC_EINFEASIBLE, "a 0-CPU task: %s",
	             rayc_strerror(rc));
	cluster_stop();
}

