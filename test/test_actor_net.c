/* test_actor_net.c -- actors across peers: placed by their resources on
 * another peer, pending until one that can hold them joins, called from
 * their owner, restarted elsewhere when their peer is SIGKILLed (or dead
 * for good with max_restarts = 0), calls in flight retried or failed,
 * the destructor run once on the peer that hosts them.  Real peer
 * processes (net_peer) on loopback; every wait has a deadline. */
#include <stdlib.h>
#include <string.h>

#include "actor_funcs.h"
#include "net_harness.h"

TestSuite(actor_net, .timeout = 240, .fini = kill_kids);

/* This driver and two peers, a and b (pids, peer ids). */
static void three_peers(pid_t *a, pid_t *b, uint32_t *pa, uint32_t *pb)
{
	driver_start();
	*a = spawn_peer(TOKEN, NULL);
	*b = spawn_peer(TOKEN, NULL);
	wait_alive(3);
	*pa = peer_of(*a);
	*pb = peer_of(*b);
}

struct where {
	int64_t peer, next, wrong, inits;
};

static int where_is(rayc_actor h, struct where *w, int timeout_ms)
{
	rayc_ref r[4];
	rayc_method_opts four = { .num_returns = 4 };
	int64_t *v[4] = { &w->peer, &w->next, &w->wrong, &w->inits };
	int rc;

	cr_assert_eq(rayc_actor_call_opts(r, h, "where", &four), RAYC_OK,
	             "%s", rayc_errmsg());
	rc = rayc_get_i64(r[0], v[0], timeout_ms);
	for (int i = 1; i < 4 && rc == RAYC_OK; i++)
		rc = rayc_get_i64(r[i], v[i], timeout_ms);
	for (int i = 0; i < 4; i++)
		rayc_release(r[i]);
	return rc;
}

static rayc_actor_info info_of(rayc_actor h)
{
	rayc_actor_info all[16];
	size_t n = 0;

	cr_assert_eq(rayc_actor_list(all, 16, &n), RAYC_OK);
	for (size_t i = 0; i < n && i < 16; i++)
		if (all[i].id.hi == h.hi && all[i].id.lo == h.lo)
			return all[i];
	cr_assert_fail("actor not listed");
	return all[0];
}

static int64_t fini_count(const char *tag)
{
	char key[64];
	void *v = NULL;
	size_t n = 0;
	int64_t count = 0;

	snprintf(key, sizeof(key), "fini/%s", tag);
	if (rayc_kv_get(key, &v, &n) == RAYC_OK && n == sizeof(count))
		memcpy(&count, v, sizeof(count));
	free(v);
	return count;
}

Test(actor_net, an_actor_needing_accel_waits_for_a_peer_with_it_and_runs_there)
{
	rayc_resource acc = { "accel", 1 };
	rayc_actor_opts o = { .resources = &acc, .num_resources = 1 };
	rayc_actor h;
	struct where w;

	driver_start();
	spawn_peer(TOKEN, NULL);
	wait_alive(2);
	cr_assert_eq(rayc_actor_create(&h, "NetCounter", &o, RAYC_STR("acc")),
	             RAYC_OK, "%s", rayc_errmsg());
	/* Nobody has accel: pending, visibly, calls waiting. */
	cr_assert_eq(where_is(h, &w, 300), RAYC_ETIMEDOUT);
	cr_assert_eq(info_of(h).state, RAYC_ACTOR_PENDING);
	pid_t g = spawn_peer(TOKEN, "RAYC_RESOURCES=accel=1");
	wait_alive(3);
	uint32_t pg = peer_of(g);
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(w.peer, pg, "the actor runs on %lld, not on %u",
	             (long long)w.peer, pg);
	rayc_actor_info i = info_of(h);
	cr_assert_eq(i.state, RAYC_ACTOR_ALIVE);
	cr_assert_eq(i.peer, pg);
	/* 2,000 calls made at once run there in order, exactly. */
	rayc_ref last;
	for (int64_t k = 0; k < 2000; k++) {
		cr_assert_eq(rayc_actor_call(&last, h, "add", RAYC_I64(k)), 0);
		if (k < 1999)
			rayc_release(last);
	}
	int64_t at;
	cr_assert_eq(rayc_get_i64(last, &at, 60000), RAYC_OK, "%s",
	             rayc_errmsg());
	cr_assert_eq(at, pg);
	rayc_release(last);
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK);
	cr_assert_eq(w.next, 2000);
	cr_assert_eq(w.wrong, 0);
	/* The last handle: the destructor runs there, once. */
	cr_assert_eq(rayc_actor_release(h), RAYC_OK);
	RT_WAIT_FOR(fini_count("acc") >= 1, 20000);
	cr_assert_eq(fini_count("acc"), 1);
	size_t n;
	RT_WAIT_FOR((rayc_actor_list(NULL, 0, &n), n == 0), 10000);
	cr_assert_eq(n, 0, "the record outlived its destructor");
	cluster_stop();
}

/* Two peers with a "slot"; the actor needs one, so it lives on one of
 * them; that one is SIGKILLed. */
static void kill_host(int max_restarts, int max_task_retries,
                      rayc_actor *h, pid_t *kids2, uint32_t *killed)
{
	rayc_resource slot = { "slot", 1 };
	rayc_actor_opts o = { .resources = &slot, .num_resources = 1,
		              .max_restarts = max_restarts,
		              .max_task_retries = max_task_retries };
	struct where w;

	driver_start();
	kids2[0] = spawn_peer(TOKEN, "RAYC_RESOURCES=slot=1");
	kids2[1] = spawn_peer(TOKEN, "RAYC_RESOURCES=slot=1");
	wait_alive(3);
	cr_assert_eq(rayc_actor_create(h, "NetCounter", &o, RAYC_STR("k")),
	             RAYC_OK, "%s", rayc_errmsg());
	rayc_ref r;
	for (int64_t k = 0; k < 10; k++) {
		cr_assert_eq(rayc_actor_call(&r, *h, "add", RAYC_I64(k)), 0);
		rayc_release(r);
	}
	cr_assert_eq(where_is(*h, &w, 30000), RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(w.next, 10);
	*killed = (uint32_t)w.peer;
	pid_t victim = *killed == peer_of(kids2[0]) ? kids2[0] : kids2[1];
	cr_assert_eq(peer_of(victim), *killed, "the actor is on the driver");
	kill(victim, SIGKILL);
	forget_kid(victim);
}

Test(actor_net, its_peer_sigkilled_it_restarts_elsewhere_on_fresh_state)
{
	rayc_actor h;
	pid_t p[2];
	uint32_t killed;
	struct where w;

	kill_host(1, 0, &h, p, &killed);
	/* Once its death is known (a call made before that could be in
	 * flight there, and fail: max_task_retries 0), later calls succeed
	 * on the other slot peer, after the constructor ran again (fresh
	 * state: 0 calls seen, 1 init). */
	RT_WAIT_FOR(info_of(h).restarts == 1, 20000);
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK, "%s", rayc_errmsg());
	cr_assert_neq(w.peer, killed);
	cr_assert_neq(w.peer, rayc_peer_id());
	cr_assert_eq(w.next, 0, "state carried over: %lld", (long long)w.next);
	cr_assert_eq(w.inits, 1);
	rayc_actor_info i = info_of(h);
	cr_assert_eq(i.restarts, 1);
	cr_assert_eq(i.state, RAYC_ACTOR_ALIVE);
	rayc_ref r;
	int64_t at;
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(0)), 0);
	cr_assert_eq(rayc_get_i64(r, &at, 30000), RAYC_OK);
	cr_assert_eq(at, w.peer);
	rayc_release(r);
	rayc_actor_release(h);
	cluster_stop();
}

/* Its host SIGKILLed, the actor restarts on the only other peer that can
 * hold it, C, while 40 of our tasks in flight on C (more than the
 * default placement's share of C, 32) each wait to call it: the
 * constructor must get to C all the same, or nothing moves. */
Test(actor_net, its_restart_is_not_kept_out_by_tasks_that_wait_for_it)
{
	rayc_resource slot = { "slot", 1 };
	rayc_actor_opts o = { .resources = &slot, .num_resources = 1,
		              .max_restarts = 1 };
	rayc_actor h;
	struct where w;
	enum { N = 40 };
	rayc_ref r[N];

	driver_start();
	pid_t p[2] = { spawn_peer(TOKEN, "RAYC_RESOURCES=slot=1"),
		       spawn_peer(TOKEN, "RAYC_RESOURCES=slot=1") };
	wait_alive(3);
	cr_assert_eq(rayc_actor_create(&h, "NetCounter", &o, RAYC_STR("w")),
	             RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK, "%s", rayc_errmsg());
	int host = (uint32_t)w.peer == peer_of(p[0]) ? 0 : 1;
	cr_assert_eq(peer_of(p[host]), (uint32_t)w.peer);
	uint32_t pc = peer_of(p[1 - host]);
	rayc_task_opts on_c = on_peer(pc);
	for (int i = 0; i < N; i++)
		cr_assert_eq(rayc_call_opts(&r[i], "af_later_add", &on_c,
		                            RAYC_ACTOR(h), RAYC_I64(500)),
		             0);
	kill(p[host], SIGKILL);
	forget_kid(p[host]);
	for (int i = 0; i < N; i++) {
		int64_t at = -1;
		cr_assert_eq(rayc_get_i64(r[i], &at, 60000), RAYC_OK,
		             "task %d: %s", i, rayc_errmsg());
		cr_assert_eq(at, pc, "call %d ran on %lld", i, (long long)at);
		rayc_release(r[i]);
	}
	rayc_actor_release(h);
	cluster_stop();
}

Test(actor_net, with_max_restarts_0_its_peer_dying_kills_it)
{
	rayc_actor h;
	pid_t p[2];
	uint32_t killed;
	rayc_ref r;
	rayc_view v;

	kill_host(0, 0, &h, p, &killed);
	RT_WAIT_FOR(info_of(h).state == RAYC_ACTOR_DEAD, 20000);
	cr_assert_eq(info_of(h).state, RAYC_ACTOR_DEAD);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(10)), 0);
	cr_assert_eq(rayc_get(r, &v, 30000), RAYC_EACTORDIED);
	cr_assert(strstr(v.data, "died") != NULL, "%s", (const char *)v.data);
	rayc_view_release(&v);
	rayc_release(r);
	rayc_actor_release(h);
	cluster_stop();
}

/* A call running when its peer dies: sent again to the restarted actor
 * while max_task_retries allows, else RAYC_EACTORDIED. */
static void call_in_flight(int retries)
{
	rayc_resource slot = { "slot", 1 };
	rayc_actor_opts o = { .resources = &slot, .num_resources = 1,
		              .max_restarts = 1,
		              .max_task_retries = retries };
	rayc_actor h;
	struct where w;
	rayc_ref slow;
	int64_t at;

	driver_start();
	pid_t a = spawn_peer(TOKEN, "RAYC_RESOURCES=slot=1");
	pid_t b = spawn_peer(TOKEN, "RAYC_RESOURCES=slot=1");
	wait_alive(3);
	cr_assert_eq(rayc_actor_create(&h, "NetCounter", &o, RAYC_STR("f")),
	             RAYC_OK);
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK);
	pid_t victim = (uint32_t)w.peer == peer_of(a) ? a : b;
	cr_assert_eq(rayc_actor_call(&slow, h, "sleep_add", RAYC_I64(3000)),
	             0);
	struct timespec ts = { 0, 300000000 }; /* it is running there */
	nanosleep(&ts, NULL);
	kill(victim, SIGKILL);
	int rc = rayc_get_i64(slow, &at, 60000);
	if (retries > 0) {
		cr_assert_eq(rc, RAYC_OK, "%s", rayc_errmsg());
		cr_assert_neq(at, w.peer, "ran again where it died");
	} else {
		cr_assert_eq(rc, RAYC_EACTORDIED);
	}
	rayc_release(slow);
	/* Either way the actor itself was restarted. */
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(w.next, retries > 0 ? 1 : 0);
	forget_kid(victim);
	rayc_actor_release(h);
	cluster_stop();
}

Test(actor_net, a_call_in_flight_is_retried_with_max_task_retries)
{
	call_in_flight(1);
}

Test(actor_net, a_call_in_flight_fails_without_max_task_retries)
{
	call_in_flight(0);
}

Test(actor_net, a_constructor_failing_on_another_peer_fails_every_call)
{
	rayc_resource slot = { "slot", 1 };
	rayc_actor_opts o = { .resources = &slot, .num_resources = 1 };
	rayc_actor h;
	rayc_ref r;
	rayc_view v;

	driver_start();
	pid_t a = spawn_peer(TOKEN, "RAYC_RESOURCES=slot=1");
	wait_alive(2);
	cr_assert_eq(rayc_actor_create(&h, "NetBad", &o), RAYC_OK);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(0)), 0);
	cr_assert_eq(rayc_get(r, &v, 30000), RAYC_EACTORDIED);
	char want[64];
	snprintf(want, sizeof(want), "refusing to start on peer %u",
	         peer_of(a));
	cr_assert(strstr(v.data, want) != NULL, "%s", (const char *)v.data);
	rayc_view_release(&v);
	rayc_release(r);
	rayc_actor_release(h);
	cluster_stop();
}

Test(actor_net, a_handle_passed_through_two_tasks_on_other_peers_calls_it)
{
	rayc_actor h;
	struct where w;
	rayc_ref r;
	int64_t at;

	pid_t a, b;
	uint32_t pa, pb;
	three_peers(&a, &b, &pa, &pb);
	/* Owned here, hosted on b; handed to a task on a, which calls it
	 * and hands it to a task on b, which calls it too. */
	rayc_actor_opts o = { .strategy = RAYC_STRATEGY_NODE_AFFINITY,
		              .node_id = pb };
	cr_assert_eq(rayc_actor_create(&h, "NetCounter", &o, RAYC_STR("p")),
	             RAYC_OK);
	rayc_task_opts on_a = on_peer(pa);
	cr_assert_eq(rayc_call_opts(&r, "af_pass_on", &on_a, RAYC_ACTOR(h),
	                            RAYC_I64(0), RAYC_I64(pb)),
	             RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(rayc_get_i64(r, &at, 60000), RAYC_OK, "%s",
	             rayc_errmsg());
	rayc_release(r);
	cr_assert_eq(at, pb, "the actor ran on %lld", (long long)at);
	/* 500 calls made at once from a task on a, in its order. */
	cr_assert_eq(rayc_call_opts(&r, "af_calls_via", &on_a, RAYC_ACTOR(h),
	                            RAYC_I64(2), RAYC_I64(500)),
	             RAYC_OK);
	cr_assert_eq(rayc_get_i64(r, &at, 60000), RAYC_OK, "%s",
	             rayc_errmsg());
	rayc_release(r);
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK);
	cr_assert_eq(w.next, 502);
	cr_assert_eq(w.wrong, 0, "%lld calls out of order",
	             (long long)w.wrong);
	cr_assert_eq(w.peer, pb);
	rayc_actor_release(h);
	RT_WAIT_FOR(fini_count("p") >= 1, 20000);
	cr_assert_eq(fini_count("p"), 1);
	cluster_stop();
}

/* What a task running af_named_create(name, gie, node, detached) on
 * peer got. */
static int64_t create_at(uint32_t peer, const char *name, int gie,
                         uint32_t node, int detached)
{
	rayc_task_opts o = on_peer(peer);
	rayc_ref r;
	int64_t rc = -1;

	cr_assert_eq(rayc_call_opts(&r, "af_named_create", &o, RAYC_STR(name),
	                            RAYC_I64(gie), RAYC_I64(node),
	                            RAYC_I64(detached)),
	             RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(rayc_get_i64(r, &rc, 60000), RAYC_OK, "%s",
	             rayc_errmsg());
	rayc_release(r);
	return rc;
}

/* ... detached, placed anywhere. */
static int64_t create_on(uint32_t peer, const char *name, int gie)
{
	return create_at(peer, name, gie, 0, 1);
}

/* The peer the last of count calls ran on, through a handle a task on
 * peer found by name (-1: that task failed). */
static int64_t named_calls_on(uint32_t peer, const char *name, int64_t first,
                              int64_t count)
{
	rayc_task_opts o = on_peer(peer);
	rayc_ref r;
	int64_t at = -1;

	cr_assert_eq(rayc_call_opts(&r, "af_named_calls", &o, RAYC_STR(name),
	                            RAYC_I64(first), RAYC_I64(count)),
	             RAYC_OK, "%s", rayc_errmsg());
	rayc_view v;
	int rc = rayc_get_i64(r, &at, 60000);
	if (rc != RAYC_OK) {
		cr_log_error("af_named_calls on %u: %s (%s)", peer,
		             rayc_strerror(rc), rayc_errmsg());
		at = -1;
		if (rayc_get(r, &v, 0) == RAYC_ETASK) {
			cr_log_error("af_named_calls on %u: %.*s", peer,
			             (int)v.len, (const char *)v.data);
			rayc_view_release(&v);
		}
	}
	rayc_release(r);
	return at;
}

static bool name_free(const char *name)
{
	rayc_actor h;
	int rc = rayc_actor_get_named(&h, name);

	if (rc == RAYC_OK)
		rayc_actor_release(h);
	return rc == RAYC_ENOTFOUND;
}

Test(actor_net, a_named_actor_is_found_and_called_from_a_task_on_another_peer)
{
	rayc_actor h, g;
	struct where w;

	pid_t a, b;
	uint32_t pa, pb;
	three_peers(&a, &b, &pa, &pb);
	/* Owned here, hosted on b, named: a task on a finds it by name
	 * and calls it 100 times, in order. */
	rayc_actor_opts o = { .name = "registry-1",
		              .strategy = RAYC_STRATEGY_NODE_AFFINITY,
		              .node_id = pb };
	cr_assert_eq(rayc_actor_create(&h, "NetCounter", &o, RAYC_STR("r1")),
	             RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(named_calls_on(pa, "registry-1", 0, 100), pb);
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK);
	cr_assert_eq(w.next, 100);
	cr_assert_eq(w.wrong, 0);
	/* The name is taken cluster-wide: on a, without get_if_exists,
	 * RAYC_EEXIST; with it, the same actor (nothing made). */
	cr_assert_eq(create_on(pa, "registry-1", 0), RAYC_EEXIST);
	cr_assert_eq(create_on(pa, "registry-1", 1), RAYC_OK);
	cr_assert_eq(rayc_actor_create(&g, "NetCounter", &o, RAYC_STR("x")),
	             RAYC_EEXIST);
	cr_assert_eq(named_calls_on(pa, "registry-1", 100, 1), pb);
	/* It is the library's key: a program may read it, not write it. */
	void *v = NULL;
	size_t n = 0;
	cr_assert_eq(rayc_kv_get("rayc.actor/registry-1", &v, &n), RAYC_OK);
	free(v);
	cr_assert_eq(rayc_kv_put("rayc.actor/registry-1", "x", 1), RAYC_EINVAL);
	cr_assert_eq(rayc_kv_del("rayc.actor/registry-1"), RAYC_EINVAL);

	/* Made by a task on a (owned there, held there): found and called
	 * from here. */
	cr_assert_eq(create_at(pa, "made-on-a", 0, 0, 0), RAYC_OK);
	cr_assert_eq(rayc_actor_get_named(&g, "made-on-a"), RAYC_OK, "%s",
	             rayc_errmsg());
	rayc_ref r;
	int64_t at;
	cr_assert_eq(rayc_actor_call(&r, g, "add", RAYC_I64(0)), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r, &at, 30000), RAYC_OK, "%s",
	             rayc_errmsg());
	rayc_release(r);

	/* Two peers claiming one name at once: exactly one gets it. */
	rayc_task_opts oa = on_peer(pa), ob = on_peer(pb);
	rayc_ref ra, rb;
	int64_t ca, cb;
	cr_assert_eq(rayc_call_opts(&ra, "af_named_create", &oa,
	                            RAYC_STR("race"), RAYC_I64(0)), RAYC_OK);
	cr_assert_eq(rayc_call_opts(&rb, "af_named_create", &ob,
	                            RAYC_STR("race"), RAYC_I64(0)), RAYC_OK);
	cr_assert_eq(rayc_get_i64(ra, &ca, 60000), RAYC_OK);
	cr_assert_eq(rayc_get_i64(rb, &cb, 60000), RAYC_OK);
	rayc_release(ra);
	rayc_release(rb);
	cr_assert((ca == RAYC_OK && cb == RAYC_EEXIST) ||
	          (ca == RAYC_EEXIST && cb == RAYC_OK),
	          "the two claims got %lld and %lld", (long long)ca,
	          (long long)cb);

	/* Its last handle gone, the actor dies and its name is free
	 * again, for a peer that did not own it. */
	cr_assert_eq(rayc_actor_release(h), RAYC_OK);
	RT_WAIT_FOR(name_free("registry-1"), 20000);
	cr_assert(name_free("registry-1"), "the name outlived its actor");
	cr_assert_eq(create_at(pa, "registry-1", 0, 0, 0), RAYC_OK);
	cr_assert_gt(named_calls_on(pb, "registry-1", 0, 5), 0);

	/* Its owner SIGKILLed: every name a owned goes with it. */
	kill(a, SIGKILL);
	forget_kid(a);
	RT_WAIT_FOR(name_free("registry-1") && name_free("made-on-a"), 30000);
	cr_assert(name_free("registry-1") && name_free("made-on-a"),
	          "names outlived their owner");
	cr_assert_eq(create_on(pb, "made-on-a", 0), RAYC_OK);
	/* The handle found before: its actor died with its owner. */
	rayc_view v2;
	cr_assert_eq(rayc_actor_call(&r, g, "add", RAYC_I64(1)), RAYC_OK);
	cr_assert_eq(rayc_get(r, &v2, 30000), RAYC_EACTORDIED);
	cr_log_info("%.*s", (int)v2.len, (const char *)v2.data);
	rayc_view_release(&v2);
	rayc_release(r);
	cr_assert_eq(rayc_actor_release(g), RAYC_OK);
	cluster_stop();
}

Test(actor_net, a_name_survives_the_coordinator)
{
	char addr[200] = { 0 };
	rayc_actor h;

	pid_t f = spawn_founder(addr, sizeof(addr));
	driver_start_at(addr);
	pid_t a = spawn_peer(TOKEN, NULL);
	wait_alive(3);
	uint32_t pa = peer_of(a), self = rayc_peer_id();
	rayc_peer_info pi[8];
	size_t n = 0, voters = 0;
	/* 3 voters, so that 2 elect another coordinator. */
	for (int64_t until = rt_now_ms() + 20000;
	     voters < 3 && rt_now_ms() < until; usleep(2000)) {
		cr_assert_eq(rayc_cluster_peers(pi, 8, &n), RAYC_OK);
		voters = 0;
		for (size_t i = 0; i < n && i < 8; i++)
			voters += pi[i].alive && pi[i].is_voter;
	}
	cr_assert_eq(voters, 3);
	for (size_t i = 0; i < n; i++)
		if (pi[i].is_coordinator)
			cr_assert_eq(pi[i].id, peer_of(f), "the founder leads");
	rayc_actor_opts o = { .name = "survivor",
		              .strategy = RAYC_STRATEGY_NODE_AFFINITY,
		              .node_id = self };
	cr_assert_eq(rayc_actor_create(&h, "NetCounter", &o, RAYC_STR("s")),
	             RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(named_calls_on(pa, "survivor", 0, 10), self);
	/* The coordinator, which applied the claim first, dies. */
	kill(f, SIGKILL);
	forget_kid(f);
	RT_WAIT_FOR(alive_peers() == 2, 30000);
	cr_assert_eq(alive_peers(), 2);
	cr_assert_eq(named_calls_on(pa, "survivor", 10, 10), self);
	/* New names are claimed through the new coordinator. */
	cr_assert_eq(create_on(pa, "after", 0), RAYC_OK);
	cr_assert_eq(create_on(pa, "after", 0), RAYC_EEXIST);
	rayc_actor g = { 0, 0 };
	cr_assert_eq(rayc_actor_create(&g, "NetCounter", &o, RAYC_STR("s")),
	             RAYC_EEXIST);
	struct where w;
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK);
	cr_assert_eq(w.next, 20);
	cr_assert_eq(w.wrong, 0);
	rayc_actor_release(h);
	cluster_stop();
}

Test(actor_net, a_peer_that_does_not_own_an_actor_kills_it)
{
	rayc_actor h;
	struct where w;
	rayc_task_opts oa;
	rayc_ref r;
	int64_t rc;
	rayc_view v;

	pid_t a, b;
	uint32_t pa, pb;
	three_peers(&a, &b, &pa, &pb);
	oa = on_peer(pa);
	/* Owned here, hosted on b, killed by a task on a. */
	rayc_actor_opts o = { .name = "victim", .max_restarts = 1,
		              .strategy = RAYC_STRATEGY_NODE_AFFINITY,
		              .node_id = pb };
	cr_assert_eq(rayc_actor_create(&h, "NetCounter", &o, RAYC_STR("v")),
	             RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(named_calls_on(pa, "victim", 0, 10), pb);
	/* With restart: the constructor runs again, on fresh state. */
	cr_assert_eq(rayc_call_opts(&r, "af_kill_named", &oa,
	                            RAYC_STR("victim"), RAYC_I64(0)),
	             RAYC_OK);
	cr_assert_eq(rayc_get_i64(r, &rc, 30000), RAYC_OK, "%s",
	             rayc_errmsg());
	rayc_release(r);
	cr_assert_eq(rc, RAYC_OK, "kill from peer %u: %lld", pa,
	             (long long)rc);
	RT_WAIT_FOR(info_of(h).restarts == 1, 20000);
	cr_assert_eq(info_of(h).restarts, 1);
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(w.next, 0, "state carried over: %lld", (long long)w.next);
	/* Without: dead; its calls fail, its name is free again. */
	cr_assert_eq(rayc_call_opts(&r, "af_kill_named", &oa,
	                            RAYC_STR("victim"), RAYC_I64(1)),
	             RAYC_OK);
	cr_assert_eq(rayc_get_i64(r, &rc, 30000), RAYC_OK, "%s",
	             rayc_errmsg());
	rayc_release(r);
	cr_assert_eq(rc, RAYC_OK);
	RT_WAIT_FOR(info_of(h).state == RAYC_ACTOR_DEAD, 20000);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(0)), RAYC_OK);
	cr_assert_eq(rayc_get(r, &v, 30000), RAYC_EACTORDIED);
	rayc_view_release(&v);
	rayc_release(r);
	RT_WAIT_FOR(name_free("victim"), 20000);
	cr_assert(name_free("victim"));
	rayc_actor_release(h);
	cluster_stop();
}

/* What a task fn(args) on peer returned (an i64), failing the test on
 * an error. */
#define I64_ON(peer, fn, ...)                                                  \
	({                                                                     \
		rayc_task_opts o_ = on_peer(peer);                             \
		rayc_ref r_;                                                   \
		int64_t v_ = -1;                                               \
		cr_assert_eq(rayc_call_opts(&r_, fn, &o_, __VA_ARGS__),        \
		             RAYC_OK, "%s", rayc_errmsg());                    \
		cr_assert_eq(rayc_get_i64(r_, &v_, 60000), RAYC_OK, "%s: %s",  \
		             fn, rayc_errmsg());                               \
		rayc_release(r_);                                              \
		v_;                                                            \
	})

Test(actor_net, handles_held_on_other_peers_keep_the_actor_alive)
{
	rayc_actor h;

	pid_t a, b;
	uint32_t pa, pb;
	three_peers(&a, &b, &pa, &pb);
	/* Owned here, hosted on b; a finds it by name and keeps the
	 * handle; this driver lets go of its own. */
	rayc_actor_opts o = { .name = "lent",
		              .strategy = RAYC_STRATEGY_NODE_AFFINITY,
		              .node_id = pb };
	cr_assert_eq(rayc_actor_create(&h, "NetCounter", &o, RAYC_STR("l")),
	             RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(I64_ON(pa, "af_keep_named", RAYC_STR("lent")), 0);
	cr_assert_eq(rayc_actor_release(h), RAYC_OK);
	/* a's handle keeps it alive: its calls run, in order. */
	cr_assert_eq(I64_ON(pa, "af_kept_calls", RAYC_I64(0), RAYC_I64(50)),
	             pb);
	cr_assert_eq(fini_count("l"), 0, "destroyed under a's handle");
	cr_assert_eq(I64_ON(pa, "af_kept_calls", RAYC_I64(50), RAYC_I64(1)),
	             pb);
	/* a lets go: the last handle anywhere, so it goes, once. */
	cr_assert_eq(I64_ON(pa, "af_let_go", RAYC_I64(0)), RAYC_OK);
	RT_WAIT_FOR(fini_count("l") >= 1, 20000);
	cr_assert_eq(fini_count("l"), 1);
	RT_WAIT_FOR(name_free("lent"), 20000);
	cr_assert(name_free("lent"));

	/* The last handle anywhere let go right after 300 calls are made
	 * through it (most still queued there): they all run first. */
	cr_assert_eq(rayc_actor_create(&h, "NetCounter", &o, RAYC_STR("q")),
	             RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(I64_ON(pa, "af_keep_named", RAYC_STR("lent")), 0);
	cr_assert_eq(rayc_actor_release(h), RAYC_OK);
	cr_assert_eq(I64_ON(pa, "af_calls_then_let_go", RAYC_I64(0),
	                    RAYC_I64(300)),
	             pb);
	RT_WAIT_FOR(fini_count("q") >= 1, 20000);
	cr_assert_eq(fini_count("q"), 1);
	RT_WAIT_FOR(name_free("lent"), 20000);

	/* A handle given to a task on a and dup'ed there keeps it alive
	 * too, until a dies. */
	cr_assert_eq(rayc_actor_create(&h, "NetCounter", &o, RAYC_STR("m")),
	             RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(I64_ON(pa, "af_keep_dup", RAYC_ACTOR(h)), 0);
	cr_assert_eq(rayc_actor_release(h), RAYC_OK);
	cr_assert_eq(I64_ON(pa, "af_kept_calls", RAYC_I64(0), RAYC_I64(10)),
	             pb);
	cr_assert_eq(fini_count("m"), 0);
	kill(a, SIGKILL);
	forget_kid(a);
	RT_WAIT_FOR(fini_count("m") >= 1, 30000);
	cr_assert_eq(fini_count("m"), 1, "outlived the peer holding it");
	cluster_stop();
}

static const rayc_actor_info *listed(const rayc_actor_info *v, size_t n,
                                     const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i].name, name) == 0)
			return &v[i];
	return NULL;
}

Test(actor_net, the_cluster_lists_every_actor_once_as_its_owner_sees_it)
{
	rayc_actor h;
	rayc_actor_info v[16];
	size_t n = 0;

	driver_start();
	pid_t a = spawn_peer(TOKEN, NULL);
	pid_t b = spawn_peer(TOKEN, NULL);
	wait_alive(3);
	uint32_t pa = peer_of(a), pb = peer_of(b), self = rayc_peer_id();
	rayc_actor_opts o = { .name = "here-owned",
		              .strategy = RAYC_STRATEGY_NODE_AFFINITY,
		              .node_id = pb };
	cr_assert_eq(rayc_actor_create(&h, "NetCounter", &o, RAYC_STR("c")),
	             RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(create_at(pa, "a-owned", 0, 0, 0), RAYC_OK);
	struct where w;
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK);
	/* Made here and on a, living on b and wherever a's was placed:
	 * each listed once, by its owner. */
	RT_WAIT_FOR((rayc_cluster_actors(v, 16, &n) == RAYC_OK && n == 2 &&
	             listed(v, n, "a-owned") != NULL &&
	             listed(v, n, "a-owned")->state == RAYC_ACTOR_ALIVE),
	            20000);
	cr_assert_eq(rayc_cluster_actors(v, 16, &n), RAYC_OK, "%s",
	             rayc_errmsg());
	cr_assert_eq(n, 2);
	const rayc_actor_info *x = listed(v, n, "here-owned");
	const rayc_actor_info *y = listed(v, n, "a-owned");
	cr_assert(x != NULL && y != NULL);
	cr_assert_eq(x->owner, self);
	cr_assert_eq(x->peer, pb);
	cr_assert_eq(x->state, RAYC_ACTOR_ALIVE);
	cr_assert_str_eq(x->class_name, "NetCounter");
	cr_assert_eq(y->owner, pa);
	cr_assert_eq(y->state, RAYC_ACTOR_ALIVE);
	cr_assert(y->peer != 0);
	/* Its owner dead, a's actor is gone from the list. */
	kill(a, SIGKILL);
	forget_kid(a);
	RT_WAIT_FOR((rayc_cluster_actors(v, 16, &n) == RAYC_OK && n == 1), 30000);
	cr_assert_eq(rayc_cluster_actors(v, 16, &n), RAYC_OK);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(v[0].name, "here-owned");
	rayc_actor_release(h);
	cluster_stop();
}

Test(actor_net, a_detached_actor_outlives_its_owner_on_the_peer_it_runs_on)
{
	struct where w;
	rayc_actor h;
	rayc_ref r;
	rayc_view v;

	pid_t a, b;
	uint32_t pa, pb;
	three_peers(&a, &b, &pa, &pb);
	/* Made by a task on a, detached, living on b; a not-detached one
	 * beside it. */
	cr_assert_eq(create_at(pa, "svc", 0, pb, 1), RAYC_OK);
	cr_assert_eq(create_at(pa, "bound", 0, pb, 0), RAYC_OK);
	cr_assert_eq(named_calls_on(pb, "svc", 0, 10), pb);
	cr_assert_eq(named_calls_on(pb, "bound", 0, 1), pb);
	/* The program on b keeps a handle to it, through a's record. */
	cr_assert_eq(I64_ON(pb, "af_keep_named", RAYC_STR("svc")), 0);
	/* Its owner dies: b adopts it, same instance, same state, and its
	 * name now leads there; the bound one dies with its owner. */
	kill(a, SIGKILL);
	forget_kid(a);
	RT_WAIT_FOR(name_free("bound"), 30000);
	cr_assert(name_free("bound"), "a bound actor outlived its owner");
	RT_WAIT_FOR(fini_count("bound") >= 1, 20000);
	cr_assert_eq(fini_count("bound"), 1);
	rayc_actor_info v2[8];
	size_t n = 0;
	RT_WAIT_FOR((rayc_cluster_actors(v2, 8, &n) == RAYC_OK && n == 1 &&
	             v2[0].owner == pb),
	            30000);
	cr_assert_eq(n, 1);
	cr_assert_eq(v2[0].owner, pb, "owner %u", v2[0].owner);
	cr_assert_str_eq(v2[0].name, "svc");
	cr_assert_eq(rayc_actor_get_named(&h, "svc"), RAYC_OK, "%s",
	             rayc_errmsg());
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(w.peer, pb);
	cr_assert_eq(w.next, 10, "not the same state: %lld",
	             (long long)w.next);
	cr_assert_eq(w.inits, 1, "constructed again");
	cr_assert_eq(fini_count("svc"), 0);
	cr_assert_eq(named_calls_on(pb, "svc", 10, 5), pb);
	/* The handle b's program kept is a handle to its own actor now. */
	cr_assert_eq(I64_ON(pb, "af_kept_calls", RAYC_I64(15), RAYC_I64(5)),
	             pb);
	cr_assert_eq(I64_ON(pb, "af_let_go", RAYC_I64(0)), RAYC_OK);
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK);
	cr_assert_eq(w.next, 20);
	cr_assert_eq(w.wrong, 0);
	/* Killed (it cannot restart now: its constructor was a's), its
	 * destructor runs once and its name is free. */
	cr_assert_eq(rayc_actor_kill(h, 0), RAYC_OK);
	RT_WAIT_FOR(fini_count("svc") >= 1, 20000);
	cr_assert_eq(fini_count("svc"), 1);
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(20)), RAYC_OK);
	cr_assert_eq(rayc_get(r, &v, 30000), RAYC_EACTORDIED);
	rayc_view_release(&v);
	rayc_release(r);
	RT_WAIT_FOR(name_free("svc"), 20000);
	cr_assert(name_free("svc"));
	rayc_actor_release(h);
	cluster_stop();
}

Test(actor_net, a_big_result_of_a_call_made_on_a_third_peer_comes_back)
{
	rayc_actor h;

	pid_t a, b;
	uint32_t pa, pb;
	three_peers(&a, &b, &pa, &pb);
	/* Owned here, hosted on b, called from a task on a: the result
	 * goes b -> here -> a.  Small, just over 64 KiB, and 8 MiB. */
	h = counter_on(pb, "big");
	int64_t sizes[] = { 100, (64 << 10) + 1, 8 << 20 };
	for (int i = 0; i < 3; i++)
		cr_assert_eq(I64_ON(pa, "af_blob_via", RAYC_ACTOR(h),
		                    RAYC_I64(sizes[i])),
		             sizes[i]);
	/* Over 8 MiB in all: refused, said, not lost. */
	rayc_task_opts on_a = on_peer(pa);
	rayc_ref r;
	rayc_view v;
	cr_assert_eq(rayc_call_opts(&r, "af_blob_via", &on_a, RAYC_ACTOR(h),
	                            RAYC_I64((8 << 20) + 1)),
	             RAYC_OK);
	cr_assert_eq(rayc_get(r, &v, 60000), RAYC_ETASK);
	cr_assert(strstr(v.data, "over 8 MiB") != NULL, "%s",
	          (const char *)v.data);
	rayc_view_release(&v);
	rayc_release(r);
	rayc_actor_release(h);
	cluster_stop();
}

static int64_t kv_i64(const char *key, int64_t dflt)
{
	void *v = NULL;
	size_t n = 0;
	int64_t x = dflt;

	if (rayc_kv_get(key, &v, &n) == RAYC_OK && n == sizeof(x))
		memcpy(&x, v, sizeof(x));
	free(v);
	return x;
}

Test(actor_net, a_handle_passed_on_by_a_task_that_ended_keeps_the_actor_alive)
{
	rayc_actor h;

	pid_t a, b;
	uint32_t pa, pb;
	three_peers(&a, &b, &pa, &pb);
	/* Owned here, hosted on b.  A task on a hands the handle to a task
	 * on b and ends without waiting for it; this driver then lets go
	 * of everything it holds.  The task on b, still holding the
	 * handle as its argument, calls the actor only after that. */
	h = counter_on(pb, "n");
	cr_assert_eq(I64_ON(pa, "af_spawn_user", RAYC_ACTOR(h), RAYC_I64(pb),
	                    RAYC_STR("k1")),
	             0);
	cr_assert_eq(rayc_actor_release(h), RAYC_OK);
	cr_assert_eq(fini_count("n"), 0, "destroyed under a task's handle");
	cr_assert_eq(rayc_kv_put("go/k1", "1", 1), RAYC_OK);
	RT_WAIT_FOR(kv_i64("out/k1", 0) != 0, 40000);
	cr_assert_eq(kv_i64("out/k1", 0), pb, "the call from b got %lld",
	             (long long)kv_i64("out/k1", 0));
	/* Once that task is done, nothing holds it: it goes, once. */
	RT_WAIT_FOR(fini_count("n") >= 1, 20000);
	cr_assert_eq(fini_count("n"), 1);
	cluster_stop();
}

Test(actor_net, a_detached_actor_placed_by_default_outlives_its_creator)
{
	rayc_actor_info v[8];
	size_t n = 0;
	struct where w;
	rayc_actor h;

	driver_start();
	pid_t a = spawn_peer(TOKEN, NULL);
	spawn_peer(TOKEN, NULL);
	wait_alive(3);
	uint32_t pa = peer_of(a);
	/* Made by a task on a that holds no CPU (a is idle: an ordinary
	 * actor would be placed there), detached, default placement: it
	 * goes to another peer than a, which can adopt it. */
	rayc_task_opts o = on_peer(pa);
	o.num_cpus = 0;
	rayc_ref r;
	int64_t rc = -1;
	cr_assert_eq(rayc_call_opts(&r, "af_named_create", &o,
	                            RAYC_STR("roamer"), RAYC_I64(0)),
	             RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(rayc_get_i64(r, &rc, 60000), RAYC_OK, "%s", rayc_errmsg());
	rayc_release(r);
	cr_assert_eq(rc, RAYC_OK);
	RT_WAIT_FOR((rayc_cluster_actors(v, 8, &n) == RAYC_OK && n == 1 &&
	             v[0].state == RAYC_ACTOR_ALIVE),
	            20000);
	cr_assert_eq(n, 1);
	cr_assert_eq(v[0].owner, pa);
	cr_assert_neq(v[0].peer, pa, "placed on its creator's peer");
	uint32_t host = v[0].peer;
	cr_assert_eq(named_calls_on(pa, "roamer", 0, 3), host);
	kill(a, SIGKILL);
	forget_kid(a);
	RT_WAIT_FOR((rayc_cluster_actors(v, 8, &n) == RAYC_OK && n == 1 &&
	             v[0].owner == host),
	            30000);
	cr_assert_eq(n, 1);
	cr_assert_eq(v[0].owner, host);
	cr_assert_eq(rayc_actor_get_named(&h, "roamer"), RAYC_OK, "%s",
	             rayc_errmsg());
	cr_assert_eq(where_is(h, &w, 30000), RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(w.next, 3);
	cr_assert_eq(w.peer, host);
	rayc_actor_release(h);
	cluster_stop();
}
