/* test_bulk.c -- big objects between real peers.  Bulk work must not
 * starve control traffic: objects of hundreds of MiB move both ways
 * between two real peers, over TCP and by the same-host path, at the
 * default 1 s heartbeat, and nobody is taken for dead and no election
 * happens.  Before, the fetcher made room for the object (populating it,
 * seconds on a VM that charges for first touches) and hashed same-host
 * objects on NNG's receive thread, so the frames behind them, heartbeats
 * and Raft's among them, waited past the heartbeat timeout.  And the
 * memory of objects nobody needs any more is used again, warm. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

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
	int64_t theirs = i64_on(w, "nf_sends_locked", 60000);
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

/* ---- bulk lanes (lib/net/lane.c) ---- */

#define LANE_N ((size_t)16 << 20)

static uint64_t lane_in_here(void)
{
	uint64_t in, out, up;
	rayc__test_lane_counts(&in, &out, &up);
	return in;
}

static uint64_t lane_out_here(void)
{
	uint64_t in, out, up;
	rayc__test_lane_counts(&in, &out, &up);
	return out;
}

static int64_t lane_in_on(uint32_t on)
{
	return i64_on(on, "nf_lane_in", 30000);
}

/* Made on peer `on` (seed), read here and checked byte by byte. */
static void fetch_exact(uint32_t on, size_t n, int64_t seed)
{
	rayc_task_opts o = on_peer(on);
	rayc_ref r;
	cr_assert_eq(rayc_call_opts(&r, "nf_make_bytes", &o,
	                            RAYC_I64((int64_t)n), RAYC_I64(seed)), 0);
	rayc_view v;
	cr_assert_eq(rayc_get(r, &v, 60000), 0, "%s", rayc_errmsg());
	cr_assert_eq(v.len, n);
	for (size_t i = 0; i < n; i++)
		if (((const uint8_t *)v.data)[i] != nf_pattern(i, (int)seed))
			cr_assert_fail("byte %zu differs", i);
	rayc_view_release(&v);
	rayc_release(r);
}

/* Put here (seed), read on peer `on`: its checksum against ours. */
static void send_exact(uint32_t on, size_t n, int seed)
{
	uint8_t *buf = malloc(n);
	cr_assert_not_null(buf);
	for (size_t i = 0; i < n; i++)
		buf[i] = nf_pattern(i, seed);
	rayc_ref obj;
	cr_assert_eq(rayc_put(&obj, buf, n), 0);
	cr_assert_eq((uint64_t)sum_on(on, obj), XXH3_64bits(buf, n),
	             "bytes differ on peer %u", on);
	rayc_release(obj);
	free(buf);
}

static uint32_t lane_pair(pid_t *pid, const char *extra)
{
	setenv("RAYC_SAME_HOST_COPY", "0", 1);
	driver_start();
	pid_t b = spawn_peer(TOKEN, extra != NULL ? extra
	                                          : "RAYC_SAME_HOST_COPY=0");
	wait_alive(2);
	uint32_t pb = peer_of(b);
	cr_assert_neq(pb, 0);
	if (pid != NULL)
		*pid = b;
	return pb;
}

/* Objects of several pieces between peers that do not share memory
 * travel on a lane, both ways, byte exact; small ones stay on the
 * connection. */
Test(bulk, large_objects_travel_on_a_lane_both_ways)
{
	uint32_t pb = lane_pair(NULL, NULL);
	uint64_t in0 = lane_in_here();
	int64_t their0 = lane_in_on(pb);

	fetch_exact(pb, 4096, 3); /* one frame: over the connection */
	cr_assert_eq(lane_in_here(), in0, "a small object went by lane");
	fetch_exact(pb, LANE_N, 4);
	cr_assert_geq(lane_in_here() - in0, LANE_N, "the object did not "
	              "come on a lane (%llu bytes did)",
	              (unsigned long long)(lane_in_here() - in0));
	fetch_exact(pb, LANE_N + 12345, 5); /* a short last piece */
	send_exact(pb, LANE_N, 6);
	cr_assert_geq(lane_in_on(pb) - their0, (int64_t)LANE_N,
	              "peer %u did not read our object from a lane", pb);
	cr_assert_geq(lane_out_here(), LANE_N);
	unsetenv("RAYC_SAME_HOST_COPY");
	cluster_stop();
}

/* The founder says SHUTDOWN on the connection, then its lanes close: a
 * member that has not read the SHUTDOWN yet (its reader paused) sees
 * its lane end first.  It closed the connection with the SHUTDOWN unread,
 * and stayed until it found itself without a coordinator, 3 heartbeat
 * timeouts (18 s) later: cluster_stop's 15 s wait killed it (twice in CI
 * under ASan, in actor_net). */
Test(bulk, a_member_whose_lane_ends_before_it_reads_the_end_hears_it)
{
	uint32_t pb = lane_pair(NULL, NULL);
	int64_t their0 = lane_in_on(pb);
	send_exact(pb, LANE_N, 9);
	cr_assert_geq(lane_in_on(pb) - their0, (int64_t)LANE_N,
	              "peer %u did not read our object from a lane", pb);
	rayc_task_opts o = on_peer(pb);
	rayc_ref r;
	int64_t v = -1;
	cr_assert_eq(rayc_call_opts(&r, "nf_rx_pause", &o, RAYC_I64(1000)), 0);
	cr_assert_eq(rayc_get_i64(r, &v, 30000), 0, "%s", rayc_errmsg());
	rayc_release(r);
	/* Read at once; from the next batch on, each waits 1 s. */
	cr_assert_eq(i64_on(pb, "nf_whoami", 30000), pb);
	unsetenv("RAYC_SAME_HOST_COPY");
	cluster_stop();
}

/* RAYC_BULK_LANE=0: the same objects, all over the connection. */
Test(bulk, lanes_turned_off_leave_objects_on_the_connection)
{
	setenv("RAYC_BULK_LANE", "0", 1);
	uint32_t pb = lane_pair(NULL, NULL);
	uint64_t in0 = lane_in_here();
	fetch_exact(pb, LANE_N, 7);
	send_exact(pb, LANE_N, 8);
	cr_assert_eq(lane_in_here(), in0);
	cr_assert_eq(lane_in_on(pb), 0, "peer %u read from a lane", pb);
	unsetenv("RAYC_BULK_LANE");
	unsetenv("RAYC_SAME_HOST_COPY");
	cluster_stop();
}

/* A lane frame whose tag does not match (flipped here, the holder) is
 * refused by the fetcher, which closes the connection the lane is bound
 * to and asks again: the object arrives whole. */
Test(bulk, a_tampered_lane_frame_is_refused_and_the_object_comes_whole)
{
	uint32_t pb = lane_pair(NULL, NULL);
	rayc_task_opts o = on_peer(pb);
	rayc_ref r;
	int64_t refused0 = -1, refused1 = -1;
	cr_assert_eq(rayc_call_opts(&r, "nf_frames_refused", &o), 0);
	cr_assert_eq(rayc_get_i64(r, &refused0, 30000), RAYC_OK);
	rayc_release(r);
	send_exact(pb, LANE_N, 9); /* the lane is up */
	rayc__test_lane_tamper();
	send_exact(pb, LANE_N, 10);
	cr_assert_eq(rayc_call_opts(&r, "nf_frames_refused", &o), 0);
	cr_assert_eq(rayc_get_i64(r, &refused1, 30000), RAYC_OK);
	rayc_release(r);
	cr_assert_gt(refused1, refused0, "the tampered frame was taken");
	send_exact(pb, LANE_N, 11); /* and the pair goes on */
	unsetenv("RAYC_SAME_HOST_COPY");
	cluster_stop();
}

static _Atomic pid_t lane_doomed;
static _Atomic int lane_pieces;

/* On the lane's reading thread, after the first piece: SIGKILL the
 * holder (and reap it). */
static void lane_kill_holder(uint32_t src)
{
	(void)src;
	atomic_fetch_add(&lane_pieces, 1);
	pid_t p = atomic_exchange(&lane_doomed, 0);
	if (p > 0) {
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
	}
}

/* The holder dies while its object streams in on a lane: the fetch does
 * not wait for ever; the object is made again here from its lineage. */
Test(bulk, holder_killed_mid_lane_transfer_leaves_the_fetcher_whole)
{
	pid_t b;
	uint32_t pb = lane_pair(&b, NULL);
	const size_t n = (size_t)64 << 20;
	rayc_task_opts ob = on_peer(pb);
	ob.soft = 1; /* rebuilt here once B is gone */
	rayc_ref big;
	fetch_exact(pb, LANE_N, 12); /* the lane is up */
	cr_assert_gt(lane_in_here(), 0);
	cr_assert_eq(rayc_call_opts(&big, "nf_make_bytes", &ob,
	                            RAYC_I64((int64_t)n), RAYC_I64(13)), 0);
	cr_assert_eq(rayc_wait(&big, 1, 1, 30000, NULL, NULL), 0);
	uint64_t in0 = lane_in_here();
	atomic_store(&lane_doomed, b);
	rayc__test_set_chunk_hook(lane_kill_holder);
	rayc_view v;
	cr_assert_eq(rayc_get(big, &v, 60000), 0, "%s", rayc_errmsg());
	rayc__test_set_chunk_hook(NULL);
	cr_assert_eq(atomic_load(&lane_doomed), 0, "no piece came");
	cr_assert_gt(lane_in_here(), in0, "the object did not stream on a "
	             "lane");
	cr_assert_eq(v.len, n);
	for (size_t i = 0; i < n; i++)
		if (((const uint8_t *)v.data)[i] != nf_pattern(i, 13))
			cr_assert_fail("byte %zu differs", i);
	rayc_view_release(&v);
	rayc_release(big);
	kids[0] = 0; /* reaped by the hook */
	unsetenv("RAYC_SAME_HOST_COPY");
	cluster_stop();
}

static int dial_port(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
		                 .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

/* Strangers on our lane port: idle sockets beyond the cap on lanes
 * setting up, and hellos with the wrong key.  Neither holds a transfer
 * up (the peer's lane may fail to set up and the bytes go over the
 * connection), the wrong hellos are closed, and the idle ones are
 * closed by the set-up deadline. */
Test(bulk, strangers_on_the_lane_port_are_turned_away)
{
	uint32_t pb = lane_pair(NULL, NULL);
	int port = rayc__test_lane_port();
	cr_assert_gt(port, 0, "no lane listener");
	int idle[12], bad[3];
	for (int i = 0; i < 3; i++) {
		bad[i] = dial_port(port);
		uint8_t hello[32];
		cr_assert_eq(recv(bad[i], hello, sizeof(hello), MSG_WAITALL),
		             (ssize_t)sizeof(hello));
		uint8_t reply[64];
		memset(reply, 0x5a, sizeof(reply));
		memcpy(reply, "RAYCLANE", 8);
		uint32_t as = pb, to = rayc_peer_id();
		memcpy(reply + 8, &as, 4);
		memcpy(reply + 12, &to, 4);
		cr_assert_eq(send(bad[i], reply, sizeof(reply), MSG_NOSIGNAL),
		             (ssize_t)sizeof(reply));
	}
	for (int i = 0; i < 12; i++)
		idle[i] = dial_port(port);
	send_exact(pb, LANE_N, 14);
	for (int i = 0; i < 3; i++) {
		char c;
		struct timeval tv = { 10, 0 };
		setsockopt(bad[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		cr_assert_eq(recv(bad[i], &c, 1, 0), 0, "a hello with the "
		             "wrong key was not closed");
		close(bad[i]);
	}
	for (int i = 0; i < 12; i++) {
		char c[64];
		struct timeval tv = { 15, 0 };
		setsockopt(idle[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		ssize_t r;
		while ((r = recv(idle[i], c, sizeof(c), 0)) > 0)
			; /* the hello of those let in */
		cr_assert_eq(r, 0, "an idle stranger was kept");
		close(idle[i]);
	}
	send_exact(pb, LANE_N, 15);
	unsetenv("RAYC_SAME_HOST_COPY");
	cluster_stop();
}

/* A lane that takes long to set up (a port that drops what comes to it
 * would take the whole 5 s connect deadline) holds no fetch: after
 * RAYC__LANE_WAIT_MS the GO goes over the connection.  It used to wait
 * for the set-up, however long. */
Test(bulk, a_lane_slow_to_set_up_holds_no_fetch)
{
	uint32_t pb = lane_pair(NULL, NULL);
	uint64_t in0, out0, up0, in1, out1, up1;
	rayc__test_lane_counts(&in0, &out0, &up0);
	rayc__test_lane_stall(30000);
	fetch_exact(pb, LANE_N, 16);
	fetch_exact(pb, LANE_N, 17);
	rayc__test_lane_counts(&in1, &out1, &up1);
	cr_assert_eq(up1, up0, "a lane came up during the stall");
	cr_assert_eq(in1, in0, "bytes waited for the stalled lane");
	rayc__test_lane_stall(0);
	unsetenv("RAYC_SAME_HOST_COPY");
	cluster_stop();
}

static _Atomic pid_t lane_victim;
static _Atomic uint64_t lane_out_at_kill;

/* Kills lane_victim once this peer has written some of an object on a
 * lane. */
static void *lane_killer(void *arg)
{
	(void)arg;
	int64_t deadline = rt_now_ms() + 30000;
	while (lane_out_here() == 0 && rt_now_ms() < deadline)
		usleep(100);
	atomic_store(&lane_out_at_kill, lane_out_here());
	kill(atomic_load(&lane_victim), SIGKILL);
	return NULL;
}

/* The fetcher dies while this peer writes an object to it on a lane:
 * the write fails, and the object's pin goes with the lane (its memory
 * is freed once we let go of it), instead of being held for ever. */
Test(bulk, fetcher_killed_mid_lane_transfer_lets_the_holder_go)
{
	pid_t b;
	uint32_t pb = lane_pair(&b, NULL);
	const size_t n = (size_t)256 << 20;
	rayc_stats st0, st;
	cr_assert_eq(rayc_stats_get(&st0), 0);
	uint8_t *buf = malloc(n);
	cr_assert_not_null(buf);
	memset(buf, 0x33, n);
	rayc_ref obj, out[2];
	cr_assert_eq(rayc_put(&obj, buf, n), 0);
	free(buf);
	atomic_store(&lane_victim, b);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, lane_killer, NULL), 0);
	rayc_task_opts o = on_peer(pb);
	o.soft = 1; /* runs here once B is gone */
	o.num_returns = 2;
	cr_assert_eq(rayc_call_opts(out, "nf_checksum", &o, RAYC_REF(obj)), 0);
	pthread_join(th, NULL);
	waitpid(b, NULL, 0);
	kids[0] = 0;
	cr_assert_gt(atomic_load(&lane_out_at_kill), 0, "nothing went on a "
	             "lane");
	cr_assert_lt(atomic_load(&lane_out_at_kill), n, "the transfer ended "
	             "before the kill");
	RT_WAIT_FOR(alive_peers() == 1, 20000);
	int64_t sum = 0;
	cr_assert_eq(rayc_get_i64(out[0], &sum, 60000), RAYC_OK, "%s",
	             rayc_errmsg());
	rayc_release(out[0]);
	rayc_release(out[1]);
	rayc_release(obj);
	RT_WAIT_FOR(rayc_stats_get(&st) == 0 &&
	                    st.store_used_bytes <= st0.store_used_bytes,
	            20000);
	cr_assert_leq(st.store_used_bytes, st0.store_used_bytes,
	              "the object is still held (%llu bytes in use, %llu "
	              "before)", (unsigned long long)st.store_used_bytes,
	              (unsigned long long)st0.store_used_bytes);
	unsetenv("RAYC_SAME_HOST_COPY");
	cluster_stop();
}

/* A stranger that trickles its hello a byte at a time is closed at the
 * lane's set-up deadline (5 s for the whole set-up).  It used to be 5 s
 * per read: a byte every few seconds kept a set-up slot for minutes,
 * and eight such kept every lane out. */
Test(bulk, a_trickling_lane_hello_is_cut_at_the_set_up_deadline)
{
	(void)lane_pair(NULL, NULL);
	int port = rayc__test_lane_port();
	cr_assert_gt(port, 0, "no lane listener");
	int fd = dial_port(port);
	uint8_t hello[32];
	cr_assert_eq(recv(fd, hello, sizeof(hello), MSG_WAITALL),
	             (ssize_t)sizeof(hello));
	int64_t t0 = rt_now_ms(), deadline = t0 + 20000;
	int rc = -2;
	for (int i = 0; i < 63 && rc == -2 && rt_now_ms() < deadline; i++) {
		if (send(fd, "R", 1, MSG_NOSIGNAL) != 1) {
			rc = 0; /* closed under us */
			break;
		}
		rc = wait_closed(fd, rt_now_ms() + 1000);
	}
	int64_t ms = rt_now_ms() - t0;
	cr_log_info("a trickling hello was closed after %lld ms",
	            (long long)ms);
	cr_assert_eq(rc, 0, "a trickling hello was not closed");
	cr_assert_geq(ms, 4000, "closed before the deadline");
	close(fd);
	unsetenv("RAYC_SAME_HOST_COPY");
	cluster_stop();
}
