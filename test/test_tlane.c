/* test_tlane.c -- task lanes (lib/net/tlane.c) between real peers: small
 * tasks and their answers travel on a plain socket beside the
 * connection once it is up, and whatever befalls the lane (turned off, a
 * tampered frame, a cut with tasks in flight, a borrow that must reach
 * the owner first) every task's answer comes back, exactly.  An actor's
 * calls go on the lane too, and keep their order when they change path. */
#include <signal.h>

#include "actor_funcs.h"
#include "net_harness.h"

TestSuite(tlane, .timeout = 300, .fini = kill_kids);

enum { TASK_OUT, TASK_IN, DONE_OUT, DONE_IN };

static void counts_here(uint64_t c[4])
{
	rayc__test_tlane_counts(&c[TASK_OUT], &c[TASK_IN], &c[DONE_OUT],
	                        &c[DONE_IN]);
}

/* n tasks on peer `on`, one after the other, each answer checked. */
static void sync_adds(uint32_t on, int n, int64_t base)
{
	rayc_task_opts o = on_peer(on);
	for (int i = 0; i < n; i++) {
		rayc_ref r;
		int64_t v = -1;
		cr_assert_eq(rayc_call_opts(&r, "nf_add", &o,
		                            RAYC_I64(base + i), RAYC_I64(i)),
		             0);
		cr_assert_eq(rayc_get_i64(r, &v, 30000), RAYC_OK,
		             "task %d: %s", i, rayc_errmsg());
		cr_assert_eq(v, base + 2 * i, "task %d answered %lld", i,
		             (long long)v);
		rayc_release(r);
	}
}

/* Tasks to `on` until one went on a task lane (20 s at most). */
static void until_lane_up(uint32_t on)
{
	uint64_t c0[4], c[4];
	counts_here(c0);
	int64_t until = rt_now_ms() + 20000;
	do {
		sync_adds(on, 5, 1000);
		counts_here(c);
	} while (c[TASK_OUT] == c0[TASK_OUT] && rt_now_ms() < until);
	cr_assert_gt(c[TASK_OUT], c0[TASK_OUT], "no task went on a lane");
}

static uint32_t pair(const char *extra)
{
	driver_start();
	pid_t b = spawn_peer(TOKEN, extra);
	wait_alive(2);
	uint32_t pb = peer_of(b);
	cr_assert_neq(pb, 0);
	return pb;
}

/* Synchronous tasks go on the lane, their answers come back on it, both
 * ends count every one. */
Test(tlane, sync_tasks_and_their_answers_travel_on_a_task_lane)
{
	uint32_t pb = pair(NULL);
	until_lane_up(pb);
	uint64_t c0[4], c1[4];
	int64_t p0[4], p1[4];
	four_on(pb, "nf_tlane_counts", p0);
	counts_here(c0);
	sync_adds(pb, 100, 7);
	counts_here(c1);
	four_on(pb, "nf_tlane_counts", p1);
	cr_assert_geq(c1[TASK_OUT] - c0[TASK_OUT], 100);
	cr_assert_geq(c1[DONE_IN] - c0[DONE_IN], 100);
	cr_assert_geq(p1[TASK_IN] - p0[TASK_IN], 100);
	cr_assert_geq(p1[DONE_OUT] - p0[DONE_OUT], 100);
	cluster_stop();
}

/* RAYC_TASK_LANE=0 on the executor: it offers no lane, tasks and answers
 * stay on the connection. */
Test(tlane, task_lanes_turned_off_leave_tasks_on_the_connection)
{
	uint32_t pb = pair("RAYC_TASK_LANE=0");
	uint64_t c0[4], c1[4];
	counts_here(c0);
	sync_adds(pb, 100, 3);
	counts_here(c1);
	int64_t p[4];
	four_on(pb, "nf_tlane_counts", p);
	cr_assert_eq(c1[TASK_OUT], c0[TASK_OUT], "a task went on a lane");
	cr_assert_eq(c1[DONE_IN], c0[DONE_IN]);
	cr_assert_eq(p[TASK_IN], 0);
	cluster_stop();
}

/* A TASK whose tag does not match (flipped here) is refused by the
 * executor, which closes the connection the lane is bound to; the owner
 * sends it again over the next connection, every task answers, and a
 * new lane comes up. */
Test(tlane, a_tampered_task_frame_is_refused_and_every_task_answers)
{
	uint32_t pb = pair(NULL);
	until_lane_up(pb);
	rayc_task_opts o = on_peer(pb);
	rayc_ref r;
	int64_t refused0 = -1, refused1 = -1;
	cr_assert_eq(rayc_call_opts(&r, "nf_frames_refused", &o), 0);
	cr_assert_eq(rayc_get_i64(r, &refused0, 30000), RAYC_OK);
	rayc_release(r);
	rayc__test_tlane_tamper();
	sync_adds(pb, 20, 11);
	cr_assert_eq(rayc_call_opts(&r, "nf_frames_refused", &o), 0);
	cr_assert_eq(rayc_get_i64(r, &refused1, 30000), RAYC_OK);
	rayc_release(r);
	cr_assert_gt(refused1, refused0, "the tampered frame was taken");
	until_lane_up(pb);
	cluster_stop();
}

/* Three calls r were just made to pb, since counts c0: all three went on
 * the lane, which is cut now; each still answers pb. */
static void cut_under_three(const uint64_t c0[4], rayc_ref r[3], uint32_t pb)
{
	uint64_t c1[4];

	counts_here(c1);
	cr_assert_eq(c1[TASK_OUT] - c0[TASK_OUT], 3, "not all on the lane");
	rayc__test_tlane_cut();
	for (int i = 0; i < 3; i++) {
		int64_t v = -1;
		cr_assert_eq(rayc_get_i64(r[i], &v, 30000), RAYC_OK,
		             "call %d: %s", i, rayc_errmsg());
		cr_assert_eq(v, (int64_t)pb);
		rayc_release(r[i]);
	}
}

/* The lane's socket is cut (shut down here, the owner) while tasks sent
 * on it run: the connection closes, the tasks are sent again over the
 * next one and answered from the executor's records, each once. */
Test(tlane, tasks_in_flight_when_a_task_lane_is_cut_all_come_back)
{
	uint32_t pb = pair(NULL);
	until_lane_up(pb);
	rayc_task_opts o = on_peer(pb);
	uint64_t c0[4];
	rayc_ref r[3];
	counts_here(c0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(rayc_call_opts(&r[i], "nf_sleep", &o,
		                            RAYC_I64(300)), 0);
	cut_under_three(c0, r, pb);
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), 0);
	cr_assert_eq(st.tasks_failed, 0);
	sync_adds(pb, 20, 5); /* and the pair goes on */
	cluster_stop();
}

/* A task that came on the lane and borrowed one of our objects answers
 * over the connection, after its BORROW_ADD: the object outlives our
 * handle while the executor holds it. */
Test(tlane, an_answer_after_a_borrow_comes_over_the_connection)
{
	uint32_t pb = pair(NULL);
	until_lane_up(pb);
	static uint8_t data[1 << 20];
	memset(data, 5, sizeof(data));
	rayc_stats st;
	rayc_ref obj, r;
	cr_assert_eq(rayc_put(&obj, data, sizeof(data)), 0);
	rayc_stats_get(&st);
	uint64_t objs = st.objects;
	int64_t p0[4], p1[4];
	four_on(pb, "nf_tlane_counts", p0);
	rayc_task_opts o = on_peer(pb);
	cr_assert_eq(rayc_call_opts(&r, "nf_keep_ref", &o, RAYC_REF(obj)), 0);
	int64_t v = -1;
	cr_assert_eq(rayc_get_i64(r, &v, 30000), RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(v, 0);
	rayc_release(r);
	rayc_release(obj);
	rayc_stats_get(&st);
	cr_assert_eq(st.objects, objs, "object freed while borrowed");
	four_on(pb, "nf_tlane_counts", p1);
	/* Between the two counts: the first count's own answer and nf_keep_ref's
	 * TASK came on the lane; nf_keep_ref's answer did not. */
	cr_assert_eq(p1[TASK_IN] - p0[TASK_IN], 2);
	cr_assert_eq(p1[DONE_OUT] - p0[DONE_OUT], 1,
	             "the borrower's answer went on the lane");
	cr_assert_eq(rayc_call_opts(&r, "nf_drop_ref", &o), 0);
	cr_assert_eq(rayc_get_i64(r, &v, 30000), RAYC_OK);
	rayc_release(r);
	RT_WAIT_FOR((rayc_stats_get(&st), st.objects == objs - 1), 5000);
	cr_assert_eq(st.objects, objs - 1, "object not freed after the "
	             "borrower let go");
	cluster_stop();
}

static int64_t call3(uint32_t on, const char *fn, int64_t a, int64_t b,
                     int64_t c)
{
	rayc_task_opts o = on_peer(on);
	rayc_ref r;
	int64_t v = -1;
	cr_assert_eq(rayc_call_opts(&r, fn, &o, RAYC_I64(a), RAYC_I64(b),
	                            RAYC_I64(c)), 0);
	cr_assert_eq(rayc_get_i64(r, &v, 60000), RAYC_OK, "%s", rayc_errmsg());
	rayc_release(r);
	return v;
}

/* Calls that nest across two peers, each level waiting for the next:
 * one run on peer A's lane thread (a quick function, so far) waits for
 * a call on B, whose run on B's lane thread waits for a call on A, whose
 * TASK comes on the lane A's waiting thread reads.  Before, that one
 * waited out its 5 s (every level's answer late, or lost for good with
 * no deadline); now a run that waits closes its lane, what was sent on
 * it goes again over the connection, and its function runs on workers
 * from then on. */
Test(tlane, calls_nesting_across_two_peers_wait_for_nothing_behind_them)
{
	driver_start();
	pid_t a = spawn_peer(TOKEN, NULL);
	pid_t b = spawn_peer(TOKEN, NULL);
	wait_alive(3);
	uint32_t pa = peer_of(a), pb = peer_of(b);
	/* Lanes both ways between A and B (once each knows the other is
	 * a member), and nf_ping quick. */
	int64_t until = rt_now_ms() + 20000, bad;
	do
		bad = call3(pa, "nf_relay", pb, 0, 0) +
		      call3(pb, "nf_relay", pa, 0, 0);
	while (bad != 0 && rt_now_ms() < until);
	cr_assert_eq(bad, 0, "A and B could not call each other");
	for (int k = 0; k < 2; k++) {
		cr_assert_eq(call3(pa, "nf_relay", pb, 0, 0), 0);
		cr_assert_eq(call3(pb, "nf_relay", pa, 0, 0), 0);
	}
	for (int i = 0; i < 200; i++) {
		cr_assert_eq(call3(pa, "nf_ping", 0, 0, 0), 0);
		cr_assert_eq(call3(pb, "nf_ping", 0, 0, 0), 0);
	}
	for (int it = 0; it < 10; it++)
		cr_assert_eq(call3(pb, "nf_ping", 3, pa, pb), 3,
		             "round %d: a level's wait timed out", it);
	cluster_stop();
}

/* A run on a lane thread waits for an object nobody will seal when the
 * cluster stops: the peer still ends at once (before, it never did: its
 * lane's thread was joined before the runtime told waiters it stops). */
Test(tlane, a_peer_with_a_run_waiting_on_its_lane_thread_still_ends)
{
	uint32_t pa = pair(NULL);
	rayc_task_opts o = on_peer(pa);
	for (int i = 0; i < 300; i++) {
		rayc_ref r;
		int64_t v;
		cr_assert_eq(rayc_call_opts(&r, "nf_block", &o, RAYC_I64(0)), 0);
		cr_assert_eq(rayc_get_i64(r, &v, 30000), RAYC_OK);
		rayc_release(r);
	}
	rayc_ref r;
	cr_assert_eq(rayc_call_opts(&r, "nf_block", &o, RAYC_I64(1)), 0);
	rayc_view v;
	cr_assert_eq(rayc_get(r, &v, 500), RAYC_ETIMEDOUT);
	cluster_stop(); /* each peer must end by itself, code 0 */
}

/* Tasks in flight on the lane to B when B dies (SIGKILL) or hangs
 * (SIGSTOP, found dead by its missed heartbeats): the two with soft
 * affinity run on a live peer, the one with hard affinity and no
 * retries fails with RAYC_EPEERDIED; no ref waits for an answer that
 * will never come.  Two of them run on B (its 2 CPUs), the third waits
 * in its queue.  C keeps a majority of the members. */
static void executor_dies_with_tasks_on_its_lane(int sig)
{
	char mark[64];
	snprintf(mark, sizeof(mark), "/tmp/rayc-tlane-mark-%d", (int)getpid());
	unlink(mark);
	driver_start();
	pid_t b = spawn_peer(TOKEN, NULL);
	spawn_peer(TOKEN, NULL);
	wait_alive(3);
	uint32_t pb = peer_of(b);
	cr_assert_neq(pb, 0);
	until_lane_up(pb);
	rayc_task_opts soft = on_peer(pb), hard = on_peer(pb);
	soft.soft = 1;
	hard.max_retries = 0;
	uint64_t c0[4], c1[4];
	rayc_ref r[3];
	counts_here(c0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(rayc_call_opts(&r[i], "nf_mark_sleep",
		                            i < 2 ? &soft : &hard,
		                            RAYC_STR(mark), RAYC_I64(4000)), 0);
	counts_here(c1);
	cr_assert_eq(c1[TASK_OUT] - c0[TASK_OUT], 3, "not all on the lane");
	RT_WAIT_FOR(file_len(mark) >= 2, 20000);
	cr_assert_geq(file_len(mark), 2, "B did not start the tasks");
	kill(b, sig);
	for (int i = 0; i < 2; i++) {
		int64_t v = -1;
		cr_assert_eq(rayc_get_i64(r[i], &v, 60000), RAYC_OK,
		             "soft task %d: %s", i, rayc_errmsg());
		cr_assert(v > 0 && v != (int64_t)pb, "soft task %d: ran on "
		          "%lld", i, (long long)v);
		rayc_release(r[i]);
	}
	int64_t v = -1;
	int rc = rayc_get_i64(r[2], &v, 60000);
	cr_assert_eq(rc, RAYC_EPEERDIED, "hard task: %d (%s)", rc,
	             rc != RAYC_OK ? rayc_errmsg() : "answered");
	rayc_release(r[2]);
	if (sig != SIGKILL)
		kill(b, SIGKILL);
	forget_kid(b);
	unlink(mark);
	cluster_stop();
}

Test(tlane, a_peer_killed_with_tasks_on_its_lane_fails_or_moves_them)
{
	executor_dies_with_tasks_on_its_lane(SIGKILL);
}

Test(tlane, a_peer_stopped_with_tasks_on_its_lane_fails_or_moves_them)
{
	executor_dies_with_tasks_on_its_lane(SIGSTOP);
}

/* ---- an actor's calls ---- */

/* add(from), add(from + 1), ... add(from + n - 1), each got before the
 * next is made: each answer says the actor's peer. */
static void adds_sync(rayc_actor h, int64_t from, int n, uint32_t on)
{
	for (int i = 0; i < n; i++) {
		rayc_ref r;
		int64_t v = -1;
		cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(from + i)),
		             RAYC_OK, "%s", rayc_errmsg());
		cr_assert_eq(rayc_get_i64(r, &v, 30000), RAYC_OK,
		             "call %lld: %s", (long long)(from + i),
		             rayc_errmsg());
		cr_assert_eq(v, (int64_t)on);
		rayc_release(r);
	}
}

/* The same, all made before any is got. */
static void adds_async(rayc_actor h, int64_t from, int n, uint32_t on)
{
	rayc_ref *r = calloc((size_t)n, sizeof(*r));
	cr_assert_not_null(r);
	for (int i = 0; i < n; i++)
		cr_assert_eq(rayc_actor_call(&r[i], h, "add",
		                             RAYC_I64(from + i)),
		             RAYC_OK, "%s", rayc_errmsg());
	for (int i = 0; i < n; i++) {
		int64_t v = -1;
		cr_assert_eq(rayc_get_i64(r[i], &v, 30000), RAYC_OK,
		             "call %lld: %s", (long long)(from + i),
		             rayc_errmsg());
		cr_assert_eq(v, (int64_t)on);
		rayc_release(r[i]);
	}
	free(r);
}

/* Its counter's next value and the calls that came out of order. */
static void counter_state(rayc_actor h, int64_t *next, int64_t *wrong)
{
	rayc_ref r[4];
	rayc_method_opts four = { .num_returns = 4 };

	cr_assert_eq(rayc_actor_call_opts(r, h, "where", &four), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r[1], next, 30000), RAYC_OK, "%s",
	             rayc_errmsg());
	cr_assert_eq(rayc_get_i64(r[2], wrong, 30000), RAYC_OK);
	for (int i = 0; i < 4; i++)
		rayc_release(r[i]);
}

/* The actor saw every call once, in order (next is want), and the test
 * ends. */
static void ends_in_order(rayc_actor h, int64_t want)
{
	int64_t next = -1, wrong = -1;

	counter_state(h, &next, &wrong);
	cr_assert_eq(next, want, "next %lld, not %lld", (long long)next,
	             (long long)want);
	cr_assert_eq(wrong, 0, "%lld calls out of order", (long long)wrong);
	rayc_actor_release(h);
	cluster_stop();
}

/* Calls made one at a time to an actor on another peer go on the task
 * lane and their answers come back on it, in order. */
Test(tlane, an_actors_calls_one_at_a_time_travel_on_a_task_lane)
{
	uint32_t pb = pair(NULL);
	until_lane_up(pb);
	rayc_actor h = counter_on(pb, "one");
	adds_sync(h, 0, 5, pb); /* its methods timed */
	uint64_t c0[4], c1[4];
	counts_here(c0);
	adds_sync(h, 5, 200, pb);
	counts_here(c1);
	cr_assert_geq(c1[TASK_OUT] - c0[TASK_OUT], 190,
	              "%llu of 200 calls went on the lane",
	              (unsigned long long)(c1[TASK_OUT] - c0[TASK_OUT]));
	cr_assert_geq(c1[DONE_IN] - c0[DONE_IN], 190);
	ends_in_order(h, 205);
}

/* Lone calls (on the lane) and bursts (the first calls on the lane, the
 * rest corked over the connection) in turn, many times: the actor sees
 * every call once and in the order made. */
Test(tlane, an_actors_calls_keep_their_order_when_they_change_path)
{
	uint32_t pb = pair(NULL);
	until_lane_up(pb);
	rayc_actor h = counter_on(pb, "mix");
	uint64_t c0[4], c1[4];
	int64_t at = 0;
	counts_here(c0);
	for (int round = 0; round < 30; round++) {
		adds_sync(h, at, 3, pb);
		at += 3;
		adds_async(h, at, 200 + 37 * (round % 5), pb);
		at += 200 + 37 * (round % 5);
	}
	counts_here(c1);
	uint64_t lane = c1[TASK_OUT] - c0[TASK_OUT];
	cr_assert_geq(lane, 90, "only %llu calls on the lane",
	              (unsigned long long)lane);
	cr_assert_lt(lane, (uint64_t)at / 2, "%llu of %lld calls on the lane",
	             (unsigned long long)lane, (long long)at);
	ends_in_order(h, at);
}

/* The lane is cut while calls sent on it run (300 ms each): the
 * connection closes, the calls go again over the next one, each runs
 * once, and the calls after them keep their order. */
Test(tlane, an_actors_calls_in_flight_when_a_task_lane_is_cut_run_once)
{
	uint32_t pb = pair(NULL);
	until_lane_up(pb);
	rayc_actor h = counter_on(pb, "cut");
	adds_sync(h, 0, 5, pb);
	uint64_t c0[4];
	rayc_ref r[3];
	counts_here(c0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(rayc_actor_call(&r[i], h, "sleep_add",
		                             RAYC_I64(300)), RAYC_OK);
	cut_under_three(c0, r, pb);
	/* sleep_add counted 5, 6, 7: once each, or add(8) is out of order
	 * and next is not 108. */
	adds_async(h, 8, 100, pb);
	ends_in_order(h, 108);
}

/* The actor's peer is killed while calls sent on the lane to it run:
 * they are sent again to the actor restarted on the other peer
 * (max_task_retries), and the calls made after them keep their order. */
Test(tlane, an_actors_calls_on_a_lane_to_a_peer_killed_go_to_its_restart)
{
	rayc_resource slot = { "slot", 1 };
	rayc_actor_opts o = { .resources = &slot, .num_resources = 1,
		              .max_restarts = 1,
		              .max_task_retries = 1 };
	rayc_actor h;

	driver_start();
	pid_t a = spawn_peer(TOKEN, "RAYC_RESOURCES=slot=1");
	pid_t b = spawn_peer(TOKEN, "RAYC_RESOURCES=slot=1");
	wait_alive(3);
	cr_assert_eq(rayc_actor_create(&h, "NetCounter", &o, RAYC_STR("kill")),
	             RAYC_OK);
	int64_t host = -1, next = -1, wrong = -1;
	rayc_ref r;
	cr_assert_eq(rayc_actor_call(&r, h, "add", RAYC_I64(0)), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r, &host, 30000), RAYC_OK, "%s",
	             rayc_errmsg());
	rayc_release(r);
	until_lane_up((uint32_t)host);
	adds_sync(h, 1, 9, (uint32_t)host);
	pid_t victim = (uint32_t)host == peer_of(a) ? a : b;
	uint64_t c0[4], c1[4];
	rayc_ref slow[2];
	counts_here(c0);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(rayc_actor_call(&slow[i], h, "sleep_add",
		                             RAYC_I64(2000)), RAYC_OK);
	counts_here(c1);
	cr_assert_eq(c1[TASK_OUT] - c0[TASK_OUT], 2, "not on the lane");
	struct timespec ts = { 0, 300000000 }; /* the first runs there */
	nanosleep(&ts, NULL);
	kill(victim, SIGKILL);
	for (int i = 0; i < 2; i++) {
		int64_t at = -1;
		cr_assert_eq(rayc_get_i64(slow[i], &at, 60000), RAYC_OK,
		             "call %d: %s", i, rayc_errmsg());
		cr_assert_neq(at, host, "ran again where it died");
		rayc_release(slow[i]);
	}
	forget_kid(victim);
	/* Fresh state on the restart: sleep_add ran twice there, once
	 * each. */
	counter_state(h, &next, &wrong);
	cr_assert_eq(next, 2, "next %lld after the restart", (long long)next);
	adds_async(h, 2, 100, (uint32_t)(victim == a ? peer_of(b)
	                                              : peer_of(a)));
	ends_in_order(h, 102);
}

/* An actor running two calls at once: a call sent on the lane waits (not
 * in rayc_get) for a later one whose argument is too big for a lane. The
 * later one is not held back for it (it would wait for ever): calls of
 * an actor of max_concurrency above 1 stay on the connection. */
Test(tlane, a_call_waiting_for_a_later_call_of_its_actor_gets_it)
{
	uint32_t pb = pair(NULL);
	until_lane_up(pb);
	rayc_actor_opts o = { .strategy = RAYC_STRATEGY_NODE_AFFINITY,
		              .node_id = pb, .max_concurrency = 2 };
	rayc_actor h;
	cr_assert_eq(rayc_actor_create(&h, "NetGate", &o), RAYC_OK, "%s",
	             rayc_errmsg());
	static uint8_t big[16 << 10];
	rayc_ref w, op;
	int64_t v = -1;
	cr_assert_eq(rayc_actor_call(&w, h, "wait_open"), RAYC_OK);
	cr_assert_eq(rayc_actor_call(&op, h, "open",
	                             RAYC_BYTES(big, sizeof(big))), RAYC_OK);
	cr_assert_eq(rayc_get_i64(op, &v, 10000), RAYC_OK,
	             "open(): %s", rayc_errmsg());
	cr_assert_eq(rayc_get_i64(w, &v, 30000), RAYC_OK, "%s", rayc_errmsg());
	cr_assert_eq(v, 1, "wait_open() never saw open()");
	rayc_release(w);
	rayc_release(op);
	rayc_actor_release(h);
	cluster_stop();
}
