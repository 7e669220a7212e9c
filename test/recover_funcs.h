/* recover_funcs.h -- remote functions of the recovery tests
 * (test_recover.c): lost connections, lost arguments, new peers, many
 * arguments.  Compiled into the driver and net_peer alike, so every peer
 * has them registered under the same names. */
#ifndef RAYC_TEST_RECOVER_FUNCS_H
#define RAYC_TEST_RECOVER_FUNCS_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "net_funcs.h"

static rayc_task_opts rf_on(int64_t peer)
{
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
	o.node_id = (uint32_t)peer;
	return o;
}

/* (owner) -> 1 once a connection to the owner is open again after this
 * peer dropped its connections to it and armed the loss of the next
 * frame to it: this task's own TASK_DONE goes with the connection. */
static void rf_lose_done(rayc_ctx *c)
{
	int64_t owner;
	rayc_arg_i64(c, 0, &owner);
	if (rayc__test_drop_conn((uint32_t)owner, 1) != RAYC_OK) {
		rayc_fail(c, "lose_done: %s", rayc_errmsg());
		return;
	}
	int64_t deadline = nf_now_ms() + 20000;
	while (!rayc__test_conn_open((uint32_t)owner) &&
	       nf_now_ms() < deadline) {
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
	rayc_return_i64(c, 0, rayc__test_conn_open((uint32_t)owner));
}
RAYC_REMOTE(rf_lose_done)

/* (path, ms) -> peer id: appends 's' to the file at path, sleeps ms,
 * then appends 'e' (the test counts the runs begun and ended). */
static void rf_mark_around(rayc_ctx *c)
{
	char p[256];
	int64_t ms;
	if (!nf_path_arg(c, 0, p, sizeof(p), "mark_around"))
		return;
	rayc_arg_i64(c, 1, &ms);
	if (!nf_append(c, p, 's', "mark_around"))
		return;
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
	if (!nf_append(c, p, 'e', "mark_around"))
		return;
	rayc_return_i64(c, 0, (int64_t)rayc_peer_id());
}
RAYC_REMOTE(rf_mark_around)

/* (peer) -> 1 once peer is a live member in this peer's view (waits
 * up to 20 s). */
static void rf_knows(rayc_ctx *c)
{
	int64_t peer;
	rayc_arg_i64(c, 0, &peer);
	int64_t deadline = nf_now_ms() + 20000;
	for (;;) {
		rayc_peer_info pi[64];
		size_t n = 0;
		rayc_cluster_peers(pi, 64, &n);
		for (size_t i = 0; i < n && i < 64; i++)
			if (pi[i].id == (uint32_t)peer && pi[i].alive) {
				rayc_return_i64(c, 0, 1);
				return;
			}
		if (nf_now_ms() > deadline)
			break;
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(rf_knows)

/* The chunk hook: the second piece from rf_target drops the
 * connections to it. */
static _Atomic uint32_t rf_target;
static _Atomic int rf_chunks;
static void rf_chunk_drop(uint32_t src)
{
	if (src == atomic_load(&rf_target) &&
	    atomic_fetch_add(&rf_chunks, 1) == 1)
		(void)rayc__test_drop_conn(src, 0);
}

/* The chunk hook: the first piece from rf_kill_src SIGKILLs process
 * rf_kill_pid (the peer sending it), once. */
static _Atomic uint32_t rf_kill_src;
static _Atomic int rf_kill_pid;
static void rf_chunk_kill(uint32_t src)
{
	if (src != atomic_load(&rf_kill_src))
		return;
	int pid = atomic_exchange(&rf_kill_pid, 0);
	if (pid > 0)
		kill(pid, SIGKILL);
}

/* (peer, pid) -> 0: arms rf_chunk_kill here. */
static void rf_arm_kill(rayc_ctx *c)
{
	int64_t peer, pid;
	rayc_arg_i64(c, 0, &peer);
	rayc_arg_i64(c, 1, &pid);
	atomic_store(&rf_kill_src, (uint32_t)peer);
	atomic_store(&rf_kill_pid, (int)pid);
	rayc__test_set_chunk_hook(rf_chunk_kill);
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(rf_arm_kill)

/* (site, count) -> 0: arms fault injection here (lib/testing.h). */
static void rf_fault(rayc_ctx *c)
{
	int64_t site, count;
	rayc_arg_i64(c, 0, &site);
	rayc_arg_i64(c, 1, &count);
	rayc__test_fault((int)site, (int)count);
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(rf_fault)

/* (to, id.hi, id.lo, redirect) -> 0 after sending peer `to` a MISSING
 * for that object naming `redirect` as a holder. */
static void rf_send_missing(rayc_ctx *c)
{
	int64_t to, hi, lo, redirect;
	rayc_arg_i64(c, 0, &to);
	rayc_arg_i64(c, 1, &hi);
	rayc_arg_i64(c, 2, &lo);
	rayc_arg_i64(c, 3, &redirect);
	uint8_t p[20];
	uint32_t r = (uint32_t)redirect;
	for (int i = 0; i < 8; i++) {
		p[i] = (uint8_t)((uint64_t)hi >> (8 * i));
		p[8 + i] = (uint8_t)((uint64_t)lo >> (8 * i));
	}
	for (int i = 0; i < 4; i++)
		p[16 + i] = (uint8_t)(r >> (8 * i));
	rayc_return_i64(c, 0, rayc__test_send_raw((uint32_t)to,
	                                          15 /* RAYC__MSG_MISSING */,
	                                          p, sizeof(p)));
}
RAYC_REMOTE(rf_send_missing)

/* (peer) -> how many of 4 tasks sent to peer (soft affinity) ran
 * elsewhere, after this peer stopped reaching it while they ran there
 * (it stays a member: the coordinator reaches it). */
static void rf_unreachable(rayc_ctx *c)
{
	int64_t peer;
	rayc_arg_i64(c, 0, &peer);
	rayc_task_opts o = rf_on(peer);
	o.soft = 1;
	rayc_ref s[4];
	for (int i = 0; i < 4; i++)
		if (rayc_call_opts(&s[i], "nf_sleep", &o, RAYC_I64(1500)) != 0) {
			rayc_fail(c, "unreachable: %s", rayc_errmsg());
			return;
		}
	struct timespec ts = { 0, 300000000 };
	nanosleep(&ts, NULL);
	(void)rayc__test_block_peer((uint32_t)peer, true);
	int64_t elsewhere = 0;
	int bad = 0;
	for (int i = 0; i < 4; i++) {
		int64_t who = -1;
		if (rayc_get_i64(s[i], &who, 60000) != RAYC_OK)
			bad++;
		else
			elsewhere += who != peer;
		rayc_release(s[i]);
	}
	(void)rayc__test_block_peer((uint32_t)peer, false);
	if (bad > 0) {
		rayc_fail(c, "unreachable: %d of 4 tasks failed: %s", bad,
		          rayc_errmsg());
		return;
	}
	rayc_return_i64(c, 0, elsewhere);
}
RAYC_REMOTE(rf_unreachable)

/* (refs...) -> the sum of the xxh3 of every argument's bytes. */
static void rf_sum_all(rayc_ctx *c)
{
	uint64_t sum = 0;
	for (size_t i = 0; i < rayc_arg_count(c); i++) {
		const void *p;
		size_t n;
		if (rayc_arg_data(c, i, &p, &n) != RAYC_OK) {
			rayc_fail(c, "sum_all: argument %zu: no data", i);
			return;
		}
		sum += XXH3_64bits(p, n);
	}
	rayc_return_i64(c, 0, (int64_t)sum);
}
RAYC_REMOTE(rf_sum_all)

/* True if v holds n bytes of nf_pattern(seed); releases v and ref. */
static bool rf_fetched_ok(rayc_view *v, rayc_ref ref, int64_t n, int64_t seed)
{
	bool same = v->len == (size_t)n;
	for (size_t i = 0; same && i < v->len; i++)
		same = ((const uint8_t *)v->data)[i] == nf_pattern(i, seed);
	rayc_view_release(v);
	rayc_release(ref);
	return same;
}

/* (peer, n, k) -> 1 if the connection was dropped mid-fetch.  With k
 * sleeping tasks in flight to peer, fetches an n-byte object made there
 * while the connection to it is dropped, then runs rf_lose_done there;
 * fails if any result is not exact or does not come. */
static void rf_chaos(rayc_ctx *c)
{
	int64_t peer, n, k;
	rayc_arg_i64(c, 0, &peer);
	rayc_arg_i64(c, 1, &n);
	rayc_arg_i64(c, 2, &k);
	rayc_task_opts o = rf_on(peer);
	rayc_ref big, s[64], lose;
	if (k > 64 || rayc_call_opts(&big, "nf_make_bytes", &o, RAYC_I64(n),
	                             RAYC_I64(13)) != RAYC_OK ||
	    rayc_wait(&big, 1, 1, 30000, NULL, NULL) != RAYC_OK) {
		rayc_fail(c, "chaos: make: %s", rayc_errmsg());
		return;
	}
	for (int64_t i = 0; i < k; i++)
		if (rayc_call_opts(&s[i], "nf_sleep", &o, RAYC_I64(300)) != 0) {
			rayc_fail(c, "chaos: sleep: %s", rayc_errmsg());
			return;
		}
	atomic_store(&rf_chunks, 0);
	atomic_store(&rf_target, (uint32_t)peer);
	rayc__test_set_chunk_hook(rf_chunk_drop);
	rayc_view v;
	int rc = rayc_get(big, &v, 30000);
	rayc__test_set_chunk_hook(NULL);
	if (rc != RAYC_OK) {
		rayc_fail(c, "chaos: fetch: %s (%s)", rayc_strerror(rc),
		          rayc_errmsg());
		return;
	}
	if (!rf_fetched_ok(&v, big, n, 13)) {
		rayc_fail(c, "chaos: the fetched bytes differ");
		return;
	}
	for (int64_t i = 0; i < k; i++) {
		int64_t who = -1;
		rc = rayc_get_i64(s[i], &who, 30000);
		rayc_release(s[i]);
		if (rc != RAYC_OK || who != peer) {
			rayc_fail(c, "chaos: sleep %lld: %s, ran on %lld",
			          (long long)i, rayc_strerror(rc),
			          (long long)who);
			return;
		}
	}
	int64_t reopened = 0;
	if (rayc_call_opts(&lose, "rf_lose_done", &o,
	                   RAYC_I64(rayc_peer_id())) != RAYC_OK ||
	    (rc = rayc_get_i64(lose, &reopened, 30000)) != RAYC_OK ||
	    reopened != 1) {
		rayc_fail(c, "chaos: lost TASK_DONE: %s (%s), reopened %lld",
		          rayc_strerror(rc), rayc_errmsg(),
		          (long long)reopened);
		return;
	}
	rayc_release(lose);
	rayc_return_i64(c, 0, atomic_load(&rf_chunks) >= 2);
}
RAYC_REMOTE(rf_chaos)

/* A killed lane's last pieces, and the fetch asked again.  The hooks
 * order three threads: the lane's (L), the new stream's (N: the
 * connection, as L, killed but not ended, keeps the GO off lanes) and
 * the relink pass that asks again.
 *   0: L took the transfer's first piece: drop the connections (L is
 *      killed, the fetch asks again); L waits for 2.
 *   1: N landed the new transfer's first piece: 2; N waits for 3.
 *   2: L takes its next piece (still in its socket) for a transfer:
 *      3, and L holds that transfer busy for 2 s while N's pieces come.
 * A piece of a killed lane must not count (xfer.c: chunk_begin): the
 * new transfer then takes N's pieces as they come, and L's wait for 3
 * just runs out.  Counted, the new transfer refuses N's pieces while
 * busy, and ends waiting for one N already sent. */
static _Atomic uint32_t st_src;
static _Atomic int st_phase;
static _Atomic bool st_lane_known;
static pthread_t st_lane;

static bool st_on_lane(void)
{
	return atomic_load(&st_lane_known) &&
	       pthread_equal(pthread_self(), st_lane);
}

static void st_wait(int phase, int64_t ms)
{
	int64_t until = nf_now_ms() + ms;
	while (atomic_load(&st_phase) < phase && nf_now_ms() < until) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
}

static void st_piece(uint32_t src) /* on a lane's thread, transfer busy */
{
	if (src != atomic_load(&st_src))
		return;
	if (!atomic_load(&st_lane_known)) {
		st_lane = pthread_self();
		atomic_store(&st_lane_known, true);
		return;
	}
	int two = 2;
	if (st_on_lane() && atomic_compare_exchange_strong(&st_phase, &two, 3)) {
		struct timespec ts = { 2, 0 };
		nanosleep(&ts, NULL);
	}
}

static void st_chunk(uint32_t src) /* a piece landed */
{
	if (src != atomic_load(&st_src))
		return;
	int zero = 0, one = 1;
	if (st_on_lane() && atomic_compare_exchange_strong(&st_phase, &zero, 1)) {
		(void)rayc__test_drop_conn(src, 0);
		st_wait(2, 10000);
	} else if (!st_on_lane() &&
	           atomic_compare_exchange_strong(&st_phase, &one, 2)) {
		st_wait(3, 3000);
	}
}

/* (peer) -> the phase reached (3: the killed lane's piece came while
 * the new stream was under way), after fetching 32 MiB from peer
 * through the hooks above; fails if the fetch does not complete. */
static void rf_stale(rayc_ctx *c)
{
	int64_t peer;
	const int64_t n = (int64_t)32 << 20;
	rayc_arg_i64(c, 0, &peer);
	rayc_task_opts o = rf_on(peer);
	rayc_ref big;
	if (rayc_call_opts(&big, "nf_make_bytes", &o, RAYC_I64(n),
	                   RAYC_I64(17)) != RAYC_OK ||
	    rayc_wait(&big, 1, 1, 30000, NULL, NULL) != RAYC_OK) {
		rayc_fail(c, "stale: make: %s", rayc_errmsg());
		return;
	}
	atomic_store(&st_phase, 0);
	atomic_store(&st_lane_known, false);
	atomic_store(&st_src, (uint32_t)peer);
	rayc__test_set_lane_piece_hook(st_piece);
	rayc__test_set_chunk_hook(st_chunk);
	rayc_view v;
	int rc = rayc_get(big, &v, 30000);
	rayc__test_set_chunk_hook(NULL);
	rayc__test_set_lane_piece_hook(NULL);
	if (rc != RAYC_OK) {
		rayc_fail(c, "stale: fetch: %s (%s), phase %d", rayc_strerror(rc),
		          rayc_errmsg(), atomic_load(&st_phase));
		return;
	}
	if (!rf_fetched_ok(&v, big, n, 17)) {
		rayc_fail(c, "stale: the fetched bytes differ");
		return;
	}
	rayc_return_i64(c, 0, atomic_load(&st_phase));
}
RAYC_REMOTE(rf_stale)

#endif /* RAYC_TEST_RECOVER_FUNCS_H */
