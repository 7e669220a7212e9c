/* test_bulk.c -- big objects between real peers.  Bulk work must not
 * starve control traffic: objects of hundreds of MiB move both ways
 * between two real peers, over TCP and by the same-host path, at the
 * default 1 s heartbeat, and nobody is taken for dead and no election
 * happens.  Before, the fetcher made room for the object (populating it,
 * seconds on a VM that charges for first touches) and hashed same-host
 * objects on NNG's receive thread, so the frames behind them, heartbeats
 * and Raft's among them, waited past the heartbeat timeout.  And the
 * memory of objects nobody needs any more is used again, warm. */
#include <xxhash.h>

#include "net_harness.h"

TestSuite(bulk, .timeout = 600, .fini = kill_kids);

#define BIG ((int64_t)1 << 30)

/* The driver, founding a cluster at the default heartbeat, with room for
 * the objects. */
static void driver_big(void)
{
	rayc_config c = { .num_workers = 2,
		          .store_bytes = (size_t)3 << 30,
		          .prefault_bytes = (size_t)4 << 20,
		          .listen = "tcp://127.0.0.1:0",
		          .token = TOKEN };
	int rc = rayc_init(&c);
	cr_assert_eq(rc, RAYC_OK, "rayc_init: %s", rayc_errmsg());
}

/* xxh3 of ref's bytes as peer `on` computes it (fetching it there). */
static int64_t sum_on(uint32_t on, rayc_ref ref)
{
	rayc_task_opts o = on_peer(on);
	rayc_ref r[2];
	int64_t v = 0;
	o.num_returns = 2;
	cr_assert_eq(rayc_call_opts(r, "nf_checksum", &o, RAYC_REF(ref)), 0);
	int rc = rayc_get_i64(r[0], &v, 300000);
	cr_assert_eq(rc, RAYC_OK, "checksum on %u: %s", on, rayc_errmsg());
	rayc_release(r[0]);
	rayc_release(r[1]);
	return v;
}

/* Peer `on` makes BIG bytes (seed). */
static rayc_ref make_on(uint32_t on, int64_t seed)
{
	rayc_task_opts o = on_peer(on);
	rayc_ref r;
	cr_assert_eq(rayc_call_opts(&r, "nf_make_bytes", &o, RAYC_I64(BIG),
	                            RAYC_I64(seed)),
	             0);
	return r;
}

/* One object each way: made on the worker and read here, made here and
 * read on the worker; checked against the maker's own sum. */
static void both_ways(uint32_t w, int64_t seed)
{
	rayc_ref a = make_on(w, seed);
	rayc_view v = { 0 };
	int rc = rayc_get(a, &v, 300000);
	cr_assert_eq(rc, RAYC_OK, "fetch from %u: %s", w, rayc_errmsg());
	cr_assert_eq(v.len, (size_t)BIG);
	cr_assert_eq((int64_t)XXH3_64bits(v.data, v.len), sum_on(w, a),
	             "object from peer %u arrived changed", w);
	rayc_view_release(&v);
	rayc_release(a);

	rayc_ref b = make_on(rayc_peer_id(), seed + 1);
	cr_assert_eq(sum_on(w, b), sum_on(rayc_peer_id(), b),
	             "object read on peer %u differs", w);
	rayc_release(b);
}

Test(bulk, big_transfers_at_the_default_heartbeat_declare_nobody_dead)
{
	driver_big();
	const char *env[] = { NULL, "RAYC_ROLE=worker",
		              "RAYC_OBJECT_STORE_BYTES=3g",
		              "RAYC_HEARTBEAT_TIMEOUT_MS=1000", NULL };
	char addr[200];
	snprintf(addr, sizeof(addr), "RAYC_ADDRESS=%s", rayc_address());
	env[0] = addr;
	pid_t pid = spawn_with(TOKEN, env);
	wait_alive(2);
	uint32_t w = peer_of(pid);
	cr_assert(w != 0);
	uint64_t term = rayc__test_ctl_term();
	cr_assert(term > 0);

	/* Over TCP (neither side asks for or offers the same-host path:
	 * the worker asks, but we do not offer), then on one host. */
	setenv("RAYC_SAME_HOST_COPY", "0", 1);
	both_ways(w, 1);
	unsetenv("RAYC_SAME_HOST_COPY");
	both_ways(w, 3);

	cr_assert_eq(dead_peers(), 0, "a busy peer was taken for dead");
	cr_assert_eq(peer_of(pid), w);
	cr_assert_eq(rayc__test_ctl_term(), term,
	             "an election happened (term %llu -> %llu)",
	             (unsigned long long)term,
	             (unsigned long long)rayc__test_ctl_term());
	cluster_stop();
}

/* The rayc_call thread used to write frames to the socket, and hash the
 * chunks of transfers queued behind them, while holding rt->mu, which
 * every other call and the heartbeat need.  Frames queued under a lock
 * now go out at the thread's last unlock: none is written with a rayc
 * lock held, on either side, over tasks both ways and transfers. */
Test(bulk, no_frame_is_written_with_a_lock_held)
{
	driver_start();
	pid_t pid = spawn_peer(TOKEN, NULL);
	wait_alive(2);
	uint32_t w = peer_of(pid);
	cr_assert(w != 0);
	assert_tree_sum(20000);
	setenv("RAYC_SAME_HOST_COPY", "0", 1);
	for (int i = 0; i < 2; i++) {
		uint32_t at = i == 0 ? w : rayc_peer_id();
		rayc_task_opts o = on_peer(at);
		rayc_ref r;
		cr_assert_eq(rayc_call_opts(&r, "nf_make_bytes", &o,
		                            RAYC_I64((int64_t)8 << 20),
		                            RAYC_I64(i)),
		             0);
		cr_assert_eq(sum_on(w, r), sum_on(rayc_peer_id(), r));
		rayc_release(r);
	}
	unsetenv("RAYC_SAME_HOST_COPY");
	rayc_task_opts o = on_peer(w);
	rayc_ref r;
	int64_t theirs = -1;
	cr_assert_eq(rayc_call_opts(&r, "nf_sends_locked", &o), 0);
	cr_assert_eq(rayc_get_i64(r, &theirs, 60000), RAYC_OK);
	rayc_release(r);
	cr_assert_eq(rayc__test_sends_under_lock(), 0,
	             "the driver wrote %llu times with a lock held",
	             (unsigned long long)rayc__test_sends_under_lock());
	cr_assert_eq(theirs, 0, "the worker wrote %lld times with a lock held",
	             (long long)theirs);
	cluster_stop();
}

/* Peer `on`'s rayc_stats. */
static rayc_stats stats_of(uint32_t on)
{
	rayc_task_opts o = on_peer(on);
	rayc_stats st = { 0 };
	rayc_view v = { 0 };
	rayc_ref r;
	cr_assert_eq(rayc_call_opts(&r, "nf_stats", &o), 0);
	int rc = rayc_get(r, &v, 30000);
	cr_assert_eq(rc, RAYC_OK, "stats of %u: %s", on, rayc_errmsg());
	cr_assert_eq(v.len, sizeof(st));
	memcpy(&st, v.data, sizeof(st));
	rayc_view_release(&v);
	rayc_release(r);
	return st;
}

/* A task's result made on a worker for us stays there (held for its
 * owner) until we let go of it.  Then the worker frees it: it used to
 * keep it as a cached copy, though nobody could ask for it again, so
 * every result after it took fresh memory (populated then, a first
 * touch per page) until the cache filled half the store. */
Test(bulk, a_result_its_owner_freed_leaves_the_store_where_it_was_made)
{
	driver_start();
	pid_t pid = spawn_peer(TOKEN, NULL);
	wait_alive(2);
	uint32_t w = peer_of(pid);
	cr_assert(w != 0);
	const int64_t n = (int64_t)16 << 20;
	for (int i = 0; i < 4; i++) {
		/* Read over TCP (sent: pinned until the last chunk is
		 * out), then in place (pinned until we are done). */
		if (i % 2 == 0)
			setenv("RAYC_SAME_HOST_COPY", "0", 1);
		else
			unsetenv("RAYC_SAME_HOST_COPY");
		rayc_task_opts o = on_peer(w);
		rayc_ref r;
		cr_assert_eq(rayc_call_opts(&r, "nf_make_bytes", &o,
		                            RAYC_I64(n), RAYC_I64(i)),
		             0);
		rayc_view v = { 0 };
		int rc = rayc_get(r, &v, 60000);
		cr_assert_eq(rc, RAYC_OK, "fetch: %s", rayc_errmsg());
		cr_assert_eq(v.len, (size_t)n);
		rayc_view_release(&v);
		cr_assert_geq(stats_of(w).store_used_bytes, (uint64_t)n,
		              "the result is not held where it was made");
		rayc_release(r);
		rayc_stats st = { 0 };
		RT_WAIT_FOR((st = stats_of(w), st.store_used_bytes < (uint64_t)n),
		            10000);
		cr_assert_lt(st.store_used_bytes, (uint64_t)n,
		             "result %d still in the worker's store (%llu "
		             "bytes used, %llu cached) after its owner let go",
		             i, (unsigned long long)st.store_used_bytes,
		             (unsigned long long)st.cached_copy_bytes);
		cr_assert_eq(st.cached_copy_bytes, 0);
	}
	unsetenv("RAYC_SAME_HOST_COPY");
	cluster_stop();
}
