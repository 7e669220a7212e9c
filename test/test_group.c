/* test_group.c -- work that travels and runs together between real
 * peers: GROUP frames (wire.h: bursts of tasks and their answers several
 * under one tag; a tampered GROUP is refused and its tasks still answer;
 * a GROUP holding what it may not closes only that connection), answers
 * a worker's batch holds back until it ends (xrec.c), never longer than a
 * tick behind a run that turned slow, and tiny tasks run by the thread
 * that read them (conn.c: rx_run), which waits for nothing that comes on
 * its own connection and holds up nothing past a tick; an actor's calls
 * from another peer run one after the other by the thread that ran the
 * last, a reader or a worker, their answers written in batches; and
 * tasks a strategy places on a peer beyond a window (RAYC__PEER_WINDOW)
 * wait at their owner: never in that peer's memory, never run here by a
 * get, failed at once if the peer dies, freed at shutdown; and tasks of
 * the default placement waiting for room never wait behind those of a
 * class that has none. */
#include "actor_funcs.h"
#include "net_harness.h"

TestSuite(group, .timeout = 300, .fini = kill_kids);

enum { FRAMES_OUT, GROUPS_OUT, FRAMES_IN, GROUPS_IN };

/* n tasks submitted to `on` at once, then each answer checked. */
static void burst(uint32_t on, int n, int64_t base)
{
	rayc_task_opts o = on_peer(on);
	rayc_ref *r = calloc((size_t)n, sizeof(*r));
	cr_assert_not_null(r);
	for (int i = 0; i < n; i++)
		cr_assert_eq(rayc_call_opts(&r[i], "nf_add", &o,
		                            RAYC_I64(base + i), RAYC_I64(i)),
		             0);
	for (int i = 0; i < n; i++) {
		int64_t v = -1;
		cr_assert_eq(rayc_get_i64(r[i], &v, 60000), RAYC_OK,
		             "task %d: %s", i, rayc_errmsg());
		cr_assert_eq(v, base + 2 * i, "task %d answered %lld", i,
		             (long long)v);
		rayc_release(r[i]);
	}
	free(r);
}

/* This driver and B (extra: one more setting of B's, or NULL), task
 * lanes off at both (bursts and answers go over the connection, where
 * GROUPs are); hb_ms: both peers' heartbeat timeout, 0 for the
 * default. */
static uint32_t pair_hb(const char *extra, int hb_ms)
{
	setenv("RAYC_TASK_LANE", "0", 1);
	if (hb_ms > 0)
		driver_start_hb(NULL, hb_ms);
	else
		driver_start();
	char addr[200], hb[64];
	snprintf(addr, sizeof(addr), "RAYC_ADDRESS=%s", rayc_address());
	snprintf(hb, sizeof(hb), "RAYC_HEARTBEAT_TIMEOUT_MS=%d", hb_ms);
	const char *env[] = { addr, "RAYC_ROLE=worker", "RAYC_TASK_LANE=0",
		              hb_ms > 0 ? hb : extra, hb_ms > 0 ? extra : NULL,
		              NULL };
	pid_t b = spawn_with(TOKEN, env);
	wait_alive(2);
	uint32_t pb = peer_of(b);
	cr_assert_neq(pb, 0);
	return pb;
}

static uint32_t pair(void)
{
	return pair_hb(NULL, 0);
}

/* B counts every function whose runs took under 100 ms so far as quick,
 * even under a sanitizer: it batches them, and its readers run those
 * under 50 ms themselves (here nf_add, nf_quick_or_sleep(0),
 * nf_quick_or_call(0)). */
static void all_quick_on(uint32_t pb)
{
	rayc_task_opts o = on_peer(pb);
	rayc_ref r;
	int64_t v = -1;
	cr_assert_eq(rayc_call_opts(&r, "nf_set_quick_ns", &o,
	                            RAYC_I64(100000000)), 0);
	cr_assert_eq(rayc_get_i64(r, &v, 30000), RAYC_OK, "%s", rayc_errmsg());
	rayc_release(r);
}

/* The same, B with one worker. */
static uint32_t pair_lone_worker(void)
{
	uint32_t pb = pair_hb("RAYC_NUM_WORKERS=1", 0);
	all_quick_on(pb);
	return pb;
}

/* Bursts until both ways carried GROUPs (20 s at most). */
static void until_grouped(uint32_t pb)
{
	uint64_t v[4];
	int64_t p[4];
	int64_t until = rt_now_ms() + 20000;
	do {
		burst(pb, 500, 100);
		rayc__test_groups(&v[0], &v[1], &v[2], &v[3]);
		four_on(pb, "nf_groups", p);
	} while ((v[GROUPS_OUT] == 0 || v[GROUPS_IN] == 0) &&
	         rt_now_ms() < until);
	cr_assert_gt(v[GROUPS_OUT], 0, "no TASKs went in a GROUP");
	cr_assert_gt(v[GROUPS_IN], 0, "no answers came in a GROUP");
	cr_assert_gt(p[GROUPS_IN], 0);
	cr_assert_gt(p[GROUPS_OUT], 0);
	/* A GROUP holds two frames at least. */
	cr_assert_geq(v[FRAMES_OUT], 2 * v[GROUPS_OUT]);
	cr_assert_geq(v[FRAMES_IN], 2 * v[GROUPS_IN]);
	cr_assert_eq(p[FRAMES_IN], (int64_t)v[FRAMES_OUT],
	             "B read %lld frames in GROUPs, we sent %llu",
	             (long long)p[FRAMES_IN], (unsigned long long)v[FRAMES_OUT]);
}

/* No task of ours failed. */
static void none_failed(void)
{
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), 0);
	cr_assert_eq(st.tasks_failed, 0);
}

/* A burst's TASKs go in GROUPs, and so do their answers; every answer is
 * right, and B read every grouped frame we sent.  With encrypt, on
 * connections that encrypt: a GROUP's payload, its frames and their
 * headers, is encrypted as one, and read back whole. */
static void grouped_both_ways(bool encrypt)
{
	if (encrypt)
		setenv("RAYC_ENCRYPT", "on", 1);
	uint32_t pb = pair();
	until_grouped(pb);
	none_failed();
	cr_assert_eq(i64_on(pb, "nf_frames_refused", 30000), 0);
	cluster_stop();
}

Test(group, bursts_of_tasks_and_their_answers_travel_in_groups)
{
	grouped_both_ways(false);
}

Test(group, groups_travel_on_connections_that_encrypt)
{
	grouped_both_ways(true);
}

/* One bit of a GROUP flipped on the way (its xxh3 fixed up, as anyone on
 * the path could): B refuses it, the connection closes, its tasks go
 * again over the next one, and every answer is right. */
Test(group, a_tampered_group_is_refused_and_every_task_answers)
{
	uint32_t pb = pair();
	until_grouped(pb);
	cr_assert_eq(rayc__test_tamper_next(pb, RAYC__MSG_GROUP,
	                                    RAYC__TEST_FLIP), 0);
	int64_t until = rt_now_ms() + 20000, refused;
	do {
		burst(pb, 500, 7);
		refused = i64_on(pb, "nf_frames_refused", 30000);
	} while (refused == 0 && rt_now_ms() < until);
	cr_assert_eq(refused, 1, "B refused %lld frames", (long long)refused);
	burst(pb, 500, 9); /* and the pair goes on */
	none_failed();
	cluster_stop();
}

/* GROUPs an authenticated peer should never send, each with a good tag:
 * a frame of a type a GROUP may not hold (a HEARTBEAT, a GROUP), one
 * whose length runs past the GROUP's end, one from another sender.  B
 * refuses each, closing that connection only; it stays a member and
 * answers the next tasks. */
Test(group, a_group_holding_what_it_may_not_closes_only_that_connection)
{
	uint32_t pb = pair();
	uint32_t me = rayc_peer_id();
	burst(pb, 10, 1); /* the connection is open */
	uint8_t g[4][2 * RAYC__WIRE_HDR + 20];
	size_t n[4];
	uint8_t free_body[20] = { 0 }; /* an object id and a u32: unknown */
	for (int k = 0; k < 4; k++) {
		memset(g[k], 0, sizeof(g[k]));
		rayc__whdr_put(g[k], RAYC__MSG_FREE, me, sizeof(free_body));
		memcpy(g[k] + RAYC__WIRE_HDR, free_body, sizeof(free_body));
		n[k] = RAYC__WIRE_HDR + sizeof(free_body) + RAYC__WIRE_HDR;
	}
	uint8_t *second;
	second = g[0] + RAYC__WIRE_HDR + sizeof(free_body);
	rayc__whdr_put(second, RAYC__MSG_HEARTBEAT, me, 0);
	second = g[1] + RAYC__WIRE_HDR + sizeof(free_body);
	rayc__whdr_put(second, RAYC__MSG_GROUP, me, 0);
	second = g[2] + RAYC__WIRE_HDR + sizeof(free_body);
	rayc__whdr_put(second, RAYC__MSG_FREE, me, 1000);
	second = g[3] + RAYC__WIRE_HDR + sizeof(free_body);
	rayc__whdr_put(second, RAYC__MSG_FREE, pb, 0);
	for (int k = 0; k < 4; k++) {
		int64_t before = i64_on(pb, "nf_frames_refused", 30000);
		cr_assert_eq(rayc__test_send_raw(pb, RAYC__MSG_GROUP, g[k], n[k]),
		             RAYC_OK);
		int64_t now = before;
		RT_WAIT_FOR((now = i64_on(pb, "nf_frames_refused", 30000)) >
		                    before, 20000);
		cr_assert_eq(now, before + 1, "case %d: B refused %lld frames "
		             "(was %lld)", k, (long long)now, (long long)before);
		burst(pb, 20, 100 * k);
	}
	none_failed();
	cluster_stop();
}

/* B has one worker: a burst's answers go out a batch at a time, not one
 * write each (before: one write per answer, and about 3 syscalls and a
 * context switch per task in all). */
Test(group, a_lone_workers_answers_go_out_a_batch_at_a_time)
{
	uint32_t pb = pair_lone_worker();
	burst(pb, 500, 1); /* nf_add is quick from here on */
	int64_t s0 = i64_on(pb, "nf_conn_sends", 30000);
	burst(pb, 2000, 3);
	int64_t s1 = i64_on(pb, "nf_conn_sends", 30000);
	cr_assert_lt(s1 - s0, 2000 / 2, "B wrote %lld times for 2000 answers",
	             (long long)(s1 - s0));
	cluster_stop();
}

/* n calls of fn(arg) on pb at once, each answered with pb's id. */
static void calls(uint32_t pb, const char *fn, int64_t arg, int n)
{
	rayc_task_opts o = on_peer(pb);
	rayc_ref *r = calloc((size_t)n, sizeof(*r));
	cr_assert_not_null(r);
	for (int i = 0; i < n; i++)
		cr_assert_eq(rayc_call_opts(&r[i], fn, &o, RAYC_I64(arg)), 0);
	for (int i = 0; i < n; i++) {
		int64_t v = -1;
		cr_assert_eq(rayc_get_i64(r[i], &v, 60000), RAYC_OK,
		             "%s %d: %s", fn, i, rayc_errmsg());
		cr_assert_eq(v, (int64_t)pb);
		rayc_release(r[i]);
	}
	free(r);
}

/* Tasks of a read that are tiny (sched.h: RAYC__TINY_NS) are run by the
 * thread that read them, before it reads again, not handed to B's
 * workers; every answer is right. */
Test(group, a_reads_tiny_tasks_run_on_the_thread_that_read_them)
{
	uint32_t pb = pair();
	all_quick_on(pb);
	burst(pb, 500, 1); /* nf_add is tiny from here on */
	int64_t s0 = i64_on(pb, "nf_served", 30000);
	burst(pb, 2000, 3);
	int64_t s1 = i64_on(pb, "nf_served", 30000);
	cr_assert_geq(s1 - s0, 1000, "B's readers ran %lld of 2000 tasks",
	              (long long)(s1 - s0));
	none_failed();
	cluster_stop();
}

/* Calls add(from) .. add(to - 1) to h at once; the last answers with
 * its peer's id, which is returned. */
static int64_t adds(rayc_actor h, int64_t from, int64_t to)
{
	rayc_ref last;
	int64_t at = -1;
	for (int64_t k = from; k < to; k++) {
		cr_assert_eq(rayc_actor_call(&last, h, "add", RAYC_I64(k)), 0);
		if (k < to - 1)
			rayc_release(last);
	}
	cr_assert_eq(rayc_get_i64(last, &at, 60000), RAYC_OK, "%s",
	             rayc_errmsg());
	rayc_release(last);
	return at;
}

/* A NetCounter on pb (net_harness.h), its add tiny there by now. */
static rayc_actor warm_counter_on(uint32_t pb, const char *tag)
{
	rayc_actor h = counter_on(pb, tag);
	cr_assert_eq(adds(h, 0, 500), (int64_t)pb);
	return h;
}

/* h ran next calls in all, each in its turn; then it is let go. */
static void ran_in_order(rayc_actor h, int64_t next)
{
	rayc_ref r[4];
	rayc_method_opts four = { .num_returns = 4 };
	int64_t got = -1, wrong = -1;
	cr_assert_eq(rayc_actor_call_opts(r, h, "where", &four), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r[1], &got, 30000), RAYC_OK);
	cr_assert_eq(rayc_get_i64(r[2], &wrong, 30000), RAYC_OK);
	for (int i = 0; i < 4; i++)
		rayc_release(r[i]);
	cr_assert_eq(got, next);
	cr_assert_eq(wrong, 0, "%lld calls ran out of order", (long long)wrong);
	cr_assert_eq(rayc_actor_release(h), RAYC_OK);
}

/* An actor on B called 2,500 times from here: B's readers run the calls
 * themselves (a call's end starts the next one from the mailbox, held
 * for that reader too), in order, each once. */
Test(group, an_actors_calls_run_on_the_thread_that_read_them_in_order)
{
	uint32_t pb = pair();
	all_quick_on(pb);
	rayc_actor h = warm_counter_on(pb, "served");
	int64_t s0 = i64_on(pb, "nf_served", 30000);
	cr_assert_eq(adds(h, 500, 2500), (int64_t)pb);
	int64_t s1 = i64_on(pb, "nf_served", 30000);
	cr_assert_geq(s1 - s0, 1000, "B's readers ran %lld of 2000 calls",
	              (long long)(s1 - s0));
	ran_in_order(h, 2500);
	none_failed();
	cluster_stop();
}

/* An actor on B called 6,000 times at once from here (1,024 calls in
 * flight: actor.c), the first call slow, so that a worker runs it and
 * the rest come due as it ends: whichever thread runs a call, a reader
 * or a worker, runs the next ones as they come due and B writes their
 * answers a batch at a time (before: once a worker had a call, each next
 * one went to a worker, which wrote as the call ended: 220,000 writes
 * for the benchmark's 500,000 calls); in order, each once. */
Test(group, a_deep_mailbox_of_calls_from_another_peer_is_answered_in_batches)
{
	uint32_t pb = pair();
	all_quick_on(pb);
	rayc_actor h = warm_counter_on(pb, "deep");
	int64_t s0 = i64_on(pb, "nf_conn_sends", 30000);
	/* First a call that is not tiny: a worker's, not the reader's; the
	 * adds then come due one by one as it and each of them end. */
	rayc_ref slow;
	cr_assert_eq(rayc_actor_call(&slow, h, "sleep_add", RAYC_I64(50),
	                             RAYC_I64(500)),
	             RAYC_OK);
	rayc_release(slow);
	cr_assert_eq(adds(h, 501, 6500), (int64_t)pb);
	int64_t s1 = i64_on(pb, "nf_conn_sends", 30000);
	cr_assert_lt(s1 - s0, 6000 / 8, "B wrote %lld times for 6000 answers",
	             (long long)(s1 - s0));
	ran_in_order(h, 6500);
	none_failed();
	cluster_stop();
}

/* A task that B's reader runs itself waits for a task of ours, whose
 * answer comes on the very connection that reader reads: the connection
 * is read again as soon as the task waits (conn.c: rx_on_block), not at
 * B's next tick (12 s here) or never.  The function is not run so again,
 * and the pair goes on. */
Test(group, a_task_its_reader_runs_that_waits_gets_what_comes_on_its_connection)
{
	uint32_t pb = pair_hb(NULL, 60000);
	uint32_t me = rayc_peer_id();
	all_quick_on(pb);
	int64_t s0 = i64_on(pb, "nf_served", 30000);
	calls(pb, "nf_quick_or_call", 0, 500); /* tiny from here on */
	cr_assert_gt(i64_on(pb, "nf_served", 30000), s0,
	             "B's readers ran none of them");
	rayc_task_opts o = on_peer(pb);
	rayc_ref r;
	int64_t v = -1;
	cr_assert_eq(rayc_call_opts(&r, "nf_quick_or_call", &o,
	                            RAYC_I64(me)), 0);
	cr_assert_eq(rayc_get_i64(r, &v, 2000), RAYC_OK,
	             "the call waiting on B's reader: %s", rayc_errmsg());
	cr_assert_eq(v, (int64_t)me);
	rayc_release(r);
	calls(pb, "nf_quick_or_call", 0, 500);
	burst(pb, 500, 5);
	none_failed();
	cluster_stop();
}

/* B is told to shut down (the cluster ends) while a run on its reader
 * waits for a task that can never run: the wait ends with the cluster,
 * the run and the reader's callback end, and B exits cleanly within
 * cluster_stop's 15 s.  (It passed, too, with rayc__net_stop's early
 * rayc__sched_wake_stop taken out: something else ends the wait first;
 * this guards the outcome, not that one call.) */
Test(group, a_peer_shuts_down_while_a_run_on_its_reader_waits)
{
	uint32_t pb = pair();
	all_quick_on(pb);
	calls(pb, "nf_quick_or_call", 0, 500); /* tiny from here on */
	burst(pb, 500, 1);                      /* and nf_add */
	rayc_task_opts o = on_peer(pb);
	enum { TRIES = 5 };
	rayc_ref r[TRIES];
	int n = 0;
	bool on_reader = false;
	/* Once such a run waits on a reader, it keeps the one reader that
	 * serves, and a burst is run by workers (nf_served's own run may
	 * have been on a reader before).  A worker may take the call first
	 * (one still awake from the burst before): then it waits there,
	 * and another is sent. */
	while (!on_reader && n < TRIES) {
		cr_assert_eq(rayc_call_opts(&r[n++], "nf_quick_or_call", &o,
		                            RAYC_I64(-1)), 0);
		int64_t s0 = i64_on(pb, "nf_served", 30000);
		burst(pb, 200, 3);
		int64_t s1 = i64_on(pb, "nf_served", 30000);
		on_reader = s1 - s0 <= 2;
	}
	cr_assert(on_reader, "none of %d waiting calls was on a reader", n);
	for (int i = 0; i < n; i++) {
		cr_assert(!rayc__test_ready(r[i]));
		rayc_release(r[i]);
	}
	cluster_stop();
}

/* 16 calls of nf_quick_or_sleep to pb at once into r, each quick but
 * the one at slow, which sleeps ms; returns when they were made. */
static int64_t burst_one_slow(uint32_t pb, int slow, int64_t ms,
                              rayc_ref r[16])
{
	rayc_task_opts o = on_peer(pb);
	for (int i = 0; i < 16; i++)
		cr_assert_eq(rayc_call_opts(&r[i], "nf_quick_or_sleep", &o,
		                            RAYC_I64(i == slow ? ms : 0)), 0);
	return rt_now_ms();
}

/* r[i] of such a burst answers pb's id within 5 s. */
static void answers_soon(uint32_t pb, rayc_ref r[16], int i, int64_t t0)
{
	int64_t v = -1;
	cr_assert_eq(rayc_get_i64(r[i], &v, 5000), RAYC_OK,
	             "answer %d not back %lld ms after the burst: %s", i,
	             (long long)(rt_now_ms() - t0), rayc_errmsg());
	cr_assert_eq(v, (int64_t)pb);
}

/* Every answer of such a burst comes (the slow one too), each let go. */
static void all_answer(rayc_ref r[16])
{
	for (int i = 0; i < 16; i++) {
		int64_t v = -1;
		cr_assert_eq(rayc_get_i64(r[i], &v, 60000), RAYC_OK, "%s",
		             rayc_errmsg());
		rayc_release(r[i]);
	}
}

/* A run on B's reader that turns slow (10 s): B's tick reads the
 * connection again and has workers take the tasks queued behind it; the
 * other 15 tasks of the burst answer within 5 s while it runs. */
Test(group, a_run_on_a_reader_that_turns_slow_holds_up_nothing_past_a_tick)
{
	uint32_t pb = pair();
	all_quick_on(pb);
	int64_t s0 = i64_on(pb, "nf_served", 30000);
	for (int k = 0; k < 10; k++) /* tiny so far */
		calls(pb, "nf_quick_or_sleep", 0, 100);
	cr_assert_gt(i64_on(pb, "nf_served", 30000), s0,
	             "B's readers ran none of them");
	rayc_ref r[16];
	int64_t t0 = burst_one_slow(pb, 4, 10000, r);
	for (int i = 0; i < 16; i++)
		if (i != 4)
			answers_soon(pb, r, i, t0);
	cr_assert(!rayc__test_ready(r[4]), "the slow run ended first");
	all_answer(r);
	/* The slow run was noted as it ended: the function's next run is
	 * not on a reader (nf_served's own run may be; the average comes
	 * down again with quick runs). */
	int64_t s1 = i64_on(pb, "nf_served", 30000);
	calls(pb, "nf_quick_or_sleep", 0, 1);
	int64_t s2 = i64_on(pb, "nf_served", 30000);
	cr_assert_leq(s2 - s1, 1, "a reader ran it again (%lld runs)",
	              (long long)(s2 - s1));
	none_failed();
	cluster_stop();
}

/* A function quick so far turns slow in the middle of a batch on B's
 * lone worker: the answers of the runs before it, held back for the
 * batch's end, still come while it runs (8 s): the next frame B sends
 * us (a heartbeat: we are the coordinator) or its loop's tick takes
 * them. */
Test(group, answers_held_behind_a_run_that_turned_slow_come_within_a_tick)
{
	uint32_t pb = pair_lone_worker();
	for (int k = 0; k < 20; k++) /* it is quick so far */
		calls(pb, "nf_quick_or_sleep", 0, 50);
	rayc_ref r[16];
	int64_t t0 = burst_one_slow(pb, 8, 8000, r);
	for (int i = 0; i < 8; i++)
		answers_soon(pb, r, i, t0);
	all_answer(r);
	cluster_stop();
}

/* n calls of nf_quick_or_sleep(ms) with hard affinity to pb, submitted at
 * once; the refs in *r (freed by the caller). */
static rayc_ref *sleepers(uint32_t pb, int n, int64_t ms)
{
	rayc_task_opts o = on_peer(pb);
	rayc_ref *r = calloc((size_t)n, sizeof(*r));
	cr_assert_not_null(r);
	for (int i = 0; i < n; i++)
		cr_assert_eq(rayc_call_opts(&r[i], "nf_quick_or_sleep", &o,
		                            RAYC_I64(ms)),
		             0);
	return r;
}

/* Tasks that hard node affinity sends to B, more than a window of them
 * (RAYC__PEER_WINDOW) at once: the rest wait here, counted in
 * tasks_pending, not in B's memory.  B never holds more than a window of
 * ours, and every one runs there. */
Test(group, a_peer_holds_at_most_a_window_of_the_tasks_placed_on_it)
{
	uint32_t pb = pair();
	int64_t w = (int64_t)rayc__test_peer_window();
	int n = (int)(2 * w + 500);
	rayc_ref *r = sleepers(pb, n, 1);
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_gt(st.tasks_pending, 0, "none of %d waits here", n);
	for (int i = 0; i < n; i++) {
		int64_t v = -1;
		cr_assert_eq(rayc_get_i64(r[i], &v, 120000), RAYC_OK,
		             "task %d: %s", i, rayc_errmsg());
		cr_assert_eq(v, (int64_t)pb, "task %d ran on %lld", i,
		             (long long)v);
		rayc_release(r[i]);
	}
	free(r);
	int64_t peak = i64_on(pb, "nf_xrec_peak", 30000);
	cr_assert_leq(peak, w, "B held %lld of our tasks at once (window "
	              "%lld)", (long long)peak, (long long)w);
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_eq(st.tasks_pending, 0);
	cluster_stop();
}

/* A task here gets the result of one that waits here for room on B: the
 * get waits for B to run it, and does not run it here instead (a task
 * waiting for room elsewhere is not on a queue of this peer's). */
Test(group, a_get_of_a_task_waiting_for_room_on_another_peer_waits_for_it)
{
	uint32_t pb = pair();
	int64_t n = (int64_t)rayc__test_peer_window() + 200;
	rayc_task_opts o = on_peer(rayc_peer_id());
	rayc_ref r;
	int64_t v = -2;
	cr_assert_eq(rayc_call_opts(&r, "nf_fan", &o, RAYC_I64(pb),
	                            RAYC_I64(n), RAYC_I64(1)),
	             0);
	cr_assert_eq(rayc_get_i64(r, &v, 180000), RAYC_OK, "%s",
	             rayc_errmsg());
	cr_assert_eq(v, n, "%lld of %lld ran on B", (long long)v,
	             (long long)n);
	rayc_release(r);
	cluster_stop();
}

/* B dies with a window of our tasks in flight and more waiting here for
 * room: every get ends at once, with an error, none waits for its
 * deadline; nothing stays pending. */
Test(group, tasks_waiting_for_room_on_a_peer_that_dies_fail_at_once)
{
	uint32_t pb = pair();
	pid_t b = kids[nkids - 1];
	int n = (int)rayc__test_peer_window() + 500;
	rayc_ref *r = sleepers(pb, n, 200);
	cr_assert_eq(kill(b, SIGKILL), 0);
	int64_t t0 = rt_now_ms();
	for (int i = 0; i < n; i++) {
		int64_t v = -1;
		int rc = rayc_get_i64(r[i], &v, 60000);
		cr_assert(rc == RAYC_EINFEASIBLE || rc == RAYC_EPEERDIED ||
		          (rc == RAYC_OK && v == (int64_t)pb),
		          "task %d: %d %s", i, rc, rayc_errmsg());
		rayc_release(r[i]);
	}
	free(r);
	cr_assert_lt(rt_now_ms() - t0, 50000, "the gets took %lld ms",
	             (long long)(rt_now_ms() - t0));
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_eq(st.tasks_pending, 0);
	forget_kid(b);
	cluster_stop();
}

/* This peer shuts down with a window of tasks in flight on B and more
 * waiting here for room there, their refs never released: it returns,
 * and frees them all (ASan's leak check, in CI's sanitizer run). */
Test(group, shutting_down_with_tasks_waiting_for_room_on_a_peer)
{
	uint32_t pb = pair();
	int n = (int)rayc__test_peer_window() + 500;
	rayc_ref *r = sleepers(pb, n, 100);
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_gt(st.tasks_pending, 0, "none of %d waits here", n);
	free(r);
	cluster_stop();
}

/* n tasks of `ms` each demanding one of resource `res`, from here. */
static rayc_ref *demanding(const char *res, int n, int64_t ms)
{
	rayc_resource want = { res, 1 };
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.resources = &want;
	o.num_resources = 1;
	rayc_ref *r = calloc((size_t)n, sizeof(*r));
	cr_assert_not_null(r);
	for (int i = 0; i < n; i++)
		cr_assert_eq(rayc_call_opts(&r[i], "nf_sleep", &o, RAYC_I64(ms)),
		             0, "%s", rayc_errmsg());
	return r;
}

/* Tasks that only other peers can run wait here for room on them (the
 * default placement keeps at most max(32, 16 x CPUs) on a peer).  G's
 * tasks (only G can run them; slow, one at a time) fill G's share, and
 * 100 more wait here; W's (only W can run them; quick), submitted after
 * them, fill W's share and wait behind those 100.  As W makes room, W
 * gets its tasks at once: they do not wait behind tasks that have no
 * room anywhere (Ray queues by scheduling class too).  Before, the walk
 * over the waiting tasks stopped at the first that went back to waiting
 * (and moved it to the tail): W's went one of G's ahead of them per
 * answer or tick, and W idled for tens of seconds. */
Test(group, tasks_waiting_for_room_do_not_wait_behind_another_class)
{
	driver_start();
	pid_t g = spawn_peer(TOKEN, "RAYC_RESOURCES=accel=1");
	pid_t w = spawn_peer(TOKEN, "RAYC_RESOURCES=slot=4");
	wait_alive(3);
	uint32_t pg = peer_of(g), pw = peer_of(w);
	cr_assert(pg != 0 && pw != 0);
	/* G (2 CPUs) takes 32 at a time and runs them one by one. */
	enum { NG = 132, NW = 40 };
	rayc_ref *rg = demanding("accel", NG, 2000);
	rayc_stats st;
	cr_assert_eq(rayc_stats_get(&st), RAYC_OK);
	cr_assert_gt(st.tasks_pending, 0, "none of G's waits here");
	rayc_ref *rw = demanding("slot", NW, 5);
	for (int i = 0; i < NW; i++) {
		int64_t v = -1;
		cr_assert_eq(rayc_get_i64(rw[i], &v, 120000), RAYC_OK,
		             "W's task %d: %s", i, rayc_errmsg());
		cr_assert_eq(v, (int64_t)pw, "W's task %d ran on %lld", i,
		             (long long)v);
		rayc_release(rw[i]);
	}
	/* G's second ends 4 s after the first began: W's all ended
	 * before. */
	int64_t v = -1;
	cr_assert_eq(rayc_get_i64(rg[1], &v, 0), RAYC_ETIMEDOUT,
	             "W's tasks waited for G's second to end");
	cr_assert_eq(rayc_get_i64(rg[0], &v, 30000), RAYC_OK, "%s",
	             rayc_errmsg());
	cr_assert_eq(v, (int64_t)pg);
	for (int i = 0; i < NG; i++)
		rayc_release(rg[i]);
	free(rg);
	free(rw);
	cluster_stop();
}
