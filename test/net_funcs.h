/* net_funcs.h -- the remote functions the multi-peer tests run.  They
 * are compiled into both the test driver and the peer program
 * (net_peer.c), so every peer has them registered under the same names. */
#ifndef RAYC_TEST_NET_FUNCS_H
#define RAYC_TEST_NET_FUNCS_H

#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <raft.h>

#include "net/wire.h"
#include "rayc.h"
#include "testing.h"

/* The bytes make_bytes writes: any test can rebuild them. */
static inline uint8_t nf_pattern(size_t i, int64_t seed)
{
	return (uint8_t)(i * 131u + (uint64_t)seed + (i >> 12));
}

static void nf_leaf(rayc_ctx *c)
{
	int64_t a;
	rayc_arg_i64(c, 0, &a);
	rayc_return_i64(c, 0, a);
}
RAYC_REMOTE(nf_leaf)

static void nf_add(rayc_ctx *c)
{
	int64_t a, b;
	rayc_arg_i64(c, 0, &a);
	rayc_arg_i64(c, 1, &b);
	rayc_return_i64(c, 0, a + b);
}
RAYC_REMOTE(nf_add)

/* () -> writes this peer started with a rayc lock held. */
static void nf_sends_locked(rayc_ctx *c)
{
	rayc_return_i64(c, 0, (int64_t)rayc__test_sends_under_lock());
}
RAYC_REMOTE(nf_sends_locked)

/* () -> frames this peer refused for a bad tag or checksum. */
static void nf_frames_refused(rayc_ctx *c)
{
	rayc_return_i64(c, 0, (int64_t)rayc__test_frames_refused());
}
RAYC_REMOTE(nf_frames_refused)

/* () -> object bytes this peer received on bulk lanes. */
static void nf_lane_in(rayc_ctx *c)
{
	uint64_t in, out, up;
	rayc__test_lane_counts(&in, &out, &up);
	rayc_return_i64(c, 0, (int64_t)in);
}
RAYC_REMOTE(nf_lane_in)

/* () -> this peer's task lane counts: TASKs written and read, TASK_DONEs
 * written and read (four returns). */
static void nf_tlane_counts(rayc_ctx *c)
{
	uint64_t v[4];
	rayc__test_tlane_counts(&v[0], &v[1], &v[2], &v[3]);
	for (size_t i = 0; i < 4; i++)
		rayc_return_i64(c, i, (int64_t)v[i]);
}
RAYC_REMOTE(nf_tlane_counts)

/* () -> 4 returns: frames this peer sent in GROUPs, those GROUPs, frames
 * it received in GROUPs, those GROUPs. */
static void nf_groups(rayc_ctx *c)
{
	uint64_t v[4];
	rayc__test_groups(&v[0], &v[1], &v[2], &v[3]);
	for (size_t i = 0; i < 4; i++)
		rayc_return_i64(c, i, (int64_t)v[i]);
}
RAYC_REMOTE(nf_groups)

/* () -> runs a connection's reader here made itself
 * (rayc__test_served_runs). */
static void nf_served(rayc_ctx *c)
{
	rayc_return_i64(c, 0, (int64_t)rayc__test_served_runs());
}
RAYC_REMOTE(nf_served)

/* (on) -> peer id: this peer's at once if on is 0 (a quick function),
 * else nf_whoami's answer from peer on, waited for here (on -1: one that
 * needs a resource nobody has, waited for up to a minute). */
static void nf_quick_or_call(rayc_ctx *c)
{
	int64_t on = 0, v = -1;
	rayc_arg_i64(c, 0, &on);
	if (on == 0) {
		rayc_return_i64(c, 0, (int64_t)rayc_peer_id());
		return;
	}
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	rayc_resource none = { "no-such-thing", 1 };
	if (on > 0) {
		o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
		o.node_id = (uint32_t)on;
	} else {
		o.resources = &none;
		o.num_resources = 1;
	}
	rayc_ref r;
	if (rayc_call_opts(&r, "nf_whoami", &o) != RAYC_OK) {
		rayc_fail(c, "quick_or_call: %s", rayc_errmsg());
		return;
	}
	int rc = rayc_get_i64(r, &v, 60000);
	rayc_release(r);
	if (rc != RAYC_OK) {
		rayc_fail(c, "quick_or_call: %s", rayc_errmsg());
		return;
	}
	rayc_return_i64(c, 0, v);
}
RAYC_REMOTE(nf_quick_or_call)

/* () -> writes this peer's connections started (fast and slow sends). */
static void nf_conn_sends(rayc_ctx *c)
{
	rayc__test_sends s;
	rayc__test_conn_sends(&s);
	rayc_return_i64(c, 0, (int64_t)(s.fast + s.slow));
}
RAYC_REMOTE(nf_conn_sends)

/* (ns) -> 0: functions whose runs took under ns so far are batched here
 * (rayc__test_set_quick_ns; sanitizers make every run slower). */
static void nf_set_quick_ns(rayc_ctx *c)
{
	int64_t ns;
	rayc_arg_i64(c, 0, &ns);
	rayc__test_set_quick_ns((uint32_t)ns);
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(nf_set_quick_ns)

/* (ms) -> peer id: at once if ms is 0 (a quick function, batched),
 * else after sleeping ms. */
static void nf_quick_or_sleep(rayc_ctx *c)
{
	int64_t ms;
	rayc_arg_i64(c, 0, &ms);
	if (ms > 0) {
		struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
		nanosleep(&ts, NULL);
	}
	rayc_return_i64(c, 0, (int64_t)rayc_peer_id());
}
RAYC_REMOTE(nf_quick_or_sleep)

/* (ms) -> 0: rayc__test_rx_pause(ms) here. */
static void nf_rx_pause(rayc_ctx *c)
{
	int64_t ms = 0;
	rayc_arg_i64(c, 0, &ms);
	rayc__test_rx_pause((int)ms);
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(nf_rx_pause)

/* (to, as, gen, kind, term) -> rayc__test_send_as's answer: a
 * connection to peer `to` claiming to be peer `as` of incarnation gen
 * carries a LEAVE (kind 0) or a Raft AppendEntries of that term with no
 * entries (kind 1), the message a new leader sends first. */
static void nf_send_as(rayc_ctx *c)
{
	int64_t to, as, gen, kind, term;
	uint8_t p[64];
	size_t n = 0;

	rayc_arg_i64(c, 0, &to);
	rayc_arg_i64(c, 1, &as);
	rayc_arg_i64(c, 2, &gen);
	rayc_arg_i64(c, 3, &kind);
	rayc_arg_i64(c, 4, &term);
	if (kind == 1) {
		/* type, term, prev index, prev term, commit, no entries:
		 * little-endian, as the wire codec writes them. */
		uint64_t f[4] = { (uint64_t)term, 0, 0, 0 };
		p[n++] = RAFT_IO_APPEND_ENTRIES;
		for (int i = 0; i < 4; i++)
			for (int k = 0; k < 8; k++)
				p[n++] = (uint8_t)(f[i] >> (8 * k));
		memset(p + n, 0, 4);
		n += 4;
	}
	int rc = rayc__test_send_as((uint32_t)to, (uint32_t)as,
	                            (uint64_t)gen,
	                            kind == 1 ? RAYC__MSG_RAFT
	                                      : RAYC__MSG_LEAVE,
	                            p, n, 20000);
	rayc_return_i64(c, 0, rc);
}
RAYC_REMOTE(nf_send_as)

/* (to, joiner, nconn, bytes, want) -> rayc__test_hold_frames's answer
 * (20 s), as this peer or (joiner 1) as a joiner. */
static void nf_hold_frames(rayc_ctx *c)
{
	int64_t to, joiner, nconn, bytes, want;

	rayc_arg_i64(c, 0, &to);
	rayc_arg_i64(c, 1, &joiner);
	rayc_arg_i64(c, 2, &nconn);
	rayc_arg_i64(c, 3, &bytes);
	rayc_arg_i64(c, 4, &want);
	uint32_t as = joiner ? 0 : rayc_peer_id();
	rayc_return_i64(c, 0, rayc__test_hold_frames((uint32_t)to, as,
	                                             (int)nconn, (size_t)bytes,
	                                             (int)want, 20000));
}
RAYC_REMOTE(nf_hold_frames)

/* (str, bytes) -> the string, then the bytes, as the task saw them. */
static void nf_str_then_bytes(rayc_ctx *c)
{
	const void *s, *b;
	size_t sn, bn;

	if (rayc_arg_data(c, 0, &s, &sn) == RAYC_OK &&
	    rayc_arg_data(c, 1, &b, &bn) == RAYC_OK) {
		rayc_return_bytes(c, 0, s, strlen(s));
		rayc_return_bytes(c, 1, b, bn);
	}
}
RAYC_REMOTE(nf_str_then_bytes)

/* (bytes) -> the same bytes. */
static void nf_echo(rayc_ctx *c)
{
	const void *p;
	size_t n;

	if (rayc_arg_data(c, 0, &p, &n) == RAYC_OK)
		rayc_return_bytes(c, 0, p, n);
}
RAYC_REMOTE(nf_echo)

/* (marker bytes, or none) -> batches this peer sent holding the marker
 * since it was armed; arms the tap with a marker, disarms it without. */
static char nf_tap_marker[128];
static void nf_tap(rayc_ctx *c)
{
	const void *p;
	size_t n = 0;

	rayc_return_i64(c, 0, (int64_t)rayc__test_tap_hits());
	if (rayc_arg_count(c) > 0 && rayc_arg_data(c, 0, &p, &n) == RAYC_OK &&
	    n > 0 && n < sizeof(nf_tap_marker)) {
		memcpy(nf_tap_marker, p, n);
		nf_tap_marker[n] = '\0';
		rayc__test_tap(nf_tap_marker);
	} else {
		rayc__test_tap(NULL);
	}
}
RAYC_REMOTE(nf_tap)

/* () -> the bytes of the answers this peer keeps for others' tasks, and
 * the heap memory they take. */
static void nf_xrec_held(rayc_ctx *c)
{
	size_t len, held;
	rayc__test_xrec_held(&len, &held);
	rayc_return_i64(c, 0, (int64_t)len);
	rayc_return_i64(c, 1, (int64_t)held);
}
RAYC_REMOTE(nf_xrec_held)

/* () -> the most tasks of other owners this peer held at once. */
static void nf_xrec_peak(rayc_ctx *c)
{
	rayc_return_i64(c, 0, (int64_t)rayc__test_xrec_peak());
}
RAYC_REMOTE(nf_xrec_peak)

/* (peer, n, ms) -> how many of n calls nf_quick_or_sleep(ms), made from
 * here with hard affinity to peer, ran there: the last one is got first
 * (more than a window of them: it waits here for room there, and the
 * get must not run it here instead), -1 if a get failed. */
static void nf_fan(rayc_ctx *c)
{
	int64_t peer, n, ms, on = 0;
	rayc_arg_i64(c, 0, &peer);
	rayc_arg_i64(c, 1, &n);
	rayc_arg_i64(c, 2, &ms);
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
	o.node_id = (uint32_t)peer;
	rayc_ref *r = calloc((size_t)n, sizeof(*r));
	int64_t i = 0;
	while (r != NULL && i < n &&
	       rayc_call_opts(&r[i], "nf_quick_or_sleep", &o,
	                      RAYC_I64(ms)) == RAYC_OK)
		i++;
	for (int64_t k = i; k-- > 0;) {
		int64_t v = -1;
		if (rayc_get_i64(r[k], &v, 120000) != RAYC_OK)
			on = -1 - n;
		on += v == peer;
		rayc_release(r[k]);
	}
	free(r);
	rayc_return_i64(c, 0, on < 0 ? -1 : on);
}
RAYC_REMOTE(nf_fan)

static void nf_whoami(rayc_ctx *c)
{
	rayc_return_i64(c, 0, (int64_t)rayc_peer_id());
}
RAYC_REMOTE(nf_whoami)

/* (n, seed) -> n bytes of nf_pattern, written in place. */
static void nf_make_bytes(rayc_ctx *c)
{
	int64_t n, seed;
	rayc_arg_i64(c, 0, &n);
	rayc_arg_i64(c, 1, &seed);
	uint8_t *p = NULL;
	if (rayc_return_alloc(c, 0, (size_t)n, (void **)&p) != RAYC_OK) {
		rayc_fail(c, "make_bytes: no room");
		return;
	}
	for (size_t i = 0; i < (size_t)n; i++)
		p[i] = nf_pattern(i, seed);
}
RAYC_REMOTE(nf_make_bytes)

/* (ref) -> xxh3 of its bytes, and the peer that computed it in the
 * second return. */
static void nf_checksum(rayc_ctx *c)
{
	const void *p;
	size_t n;
	if (rayc_arg_data(c, 0, &p, &n) != RAYC_OK) {
		rayc_fail(c, "checksum: no data");
		return;
	}
	rayc_return_i64(c, 0, (int64_t)XXH3_64bits(p, n));
	rayc_return_i64(c, 1, (int64_t)rayc_peer_id());
}
RAYC_REMOTE(nf_checksum)

/* (key) -> the KV value, or a failure naming the error. */
static void nf_kv_read(rayc_ctx *c)
{
	const void *k;
	size_t kn;
	void *v;
	size_t vn;
	rayc_arg_data(c, 0, &k, &kn);
	int rc = rayc_kv_get(k, &v, &vn);
	if (rc != RAYC_OK) {
		rayc_fail(c, "%s", rayc_strerror(rc));
		return;
	}
	rayc_return_bytes(c, 0, v, vn);
	free(v);
}
RAYC_REMOTE(nf_kv_read)

/* (key, value) -> 0 after rayc_kv_put. */
static void nf_kv_write(rayc_ctx *c)
{
	const void *k, *v;
	size_t kn, vn;
	rayc_arg_data(c, 0, &k, &kn);
	rayc_arg_data(c, 1, &v, &vn);
	rayc_return_i64(c, 0, rayc_kv_put(k, v, vn));
}
RAYC_REMOTE(nf_kv_write)

/* () -> (objects fetched so far, cached secondary copy bytes) here. */
static void nf_fetch_stats(rayc_ctx *c)
{
	rayc_stats st;
	rayc_stats_get(&st);
	rayc_return_i64(c, 0, (int64_t)st.objects_fetched);
	rayc_return_i64(c, 1, (int64_t)st.cached_copy_bytes);
}
RAYC_REMOTE(nf_fetch_stats)

/* () -> this peer's rayc_stats, as bytes. */
static void nf_stats(rayc_ctx *c)
{
	rayc_stats st;
	rayc_stats_get(&st);
	rayc_return_bytes(c, 0, &st, sizeof(st));
}
RAYC_REMOTE(nf_stats)

/* (key) -> this peer's own copy of the KV value (not the coordinator's). */
static void nf_kv_local(rayc_ctx *c)
{
	const void *key;
	size_t n;
	void *val;
	size_t len;
	if (rayc_arg_data(c, 0, &key, &n) != RAYC_OK) {
		rayc_fail(c, "kv_local: no key");
		return;
	}
	int rc = rayc__test_kv_local(key, &val, &len);
	if (rc != RAYC_OK) {
		rayc_fail(c, "kv_local: %s", rayc_strerror(rc));
		return;
	}
	rayc_return_bytes(c, 0, val, len);
	free(val);
}
RAYC_REMOTE(nf_kv_local)

/* () -> control store snapshots this peer restored from another. */
static void nf_ctl_restored(rayc_ctx *c)
{
	uint64_t restored = 0;
	(void)rayc__test_ctl_snapshots(&restored);
	rayc_return_i64(c, 0, (int64_t)restored);
}
RAYC_REMOTE(nf_ctl_restored)

/* () -> control store snapshots this peer stored (taken or installed). */
static void nf_ctl_snapshots(rayc_ctx *c)
{
	rayc_return_i64(c, 0, (int64_t)rayc__test_ctl_snapshots(NULL));
}
RAYC_REMOTE(nf_ctl_snapshots)

/* This process's peak resident memory (VmHWM), in bytes; 0 if unknown. */
static inline int64_t nf_peak_rss(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	int64_t kb = 0;
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmHWM: %lld kB", (long long *)&kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

/* () -> (resident bytes now, peak resident bytes) of this peer. */
static void nf_mem(rayc_ctx *c)
{
	rayc_return_i64(c, 0, (int64_t)rayc__test_rss());
	rayc_return_i64(c, 1, nf_peak_rss());
}
RAYC_REMOTE(nf_mem)

/* The voters of the control store in a cluster view (as
 * rayc_cluster_peers lists it, in id order) as one number: a hash of
 * their ids, 0 for none. */
static inline int64_t nf_voters_of(const rayc_peer_info *pi, size_t n)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	bool any = false;
	for (size_t i = 0; i < n; i++) {
		if (!pi[i].is_voter)
			continue;
		h = (h ^ pi[i].id) * 1099511628211ull;
		any = true;
	}
	return any ? (int64_t)(h >> 1) : 0;
}

/* () -> nf_voters_of this peer's view (-1 if it cannot tell). */
static void nf_voters(rayc_ctx *c)
{
	size_t n = 0, cap = 1024;
	int64_t v = -1;
	rayc_peer_info *pi = calloc(cap, sizeof(*pi));
	if (pi != NULL && rayc_cluster_peers(pi, cap, &n) == RAYC_OK &&
	    n <= cap)
		v = nf_voters_of(pi, n);
	free(pi);
	rayc_return_i64(c, 0, v);
}
RAYC_REMOTE(nf_voters)

/* (peer id) -> 0 after asking this peer to hand the coordinator's role
 * to that peer. */
static void nf_ctl_transfer(rayc_ctx *c)
{
	int64_t to;
	rayc_arg_i64(c, 0, &to);
	rayc_return_i64(c, 0, rayc__test_ctl_transfer((uint32_t)to));
}
RAYC_REMOTE(nf_ctl_transfer)

/* (site, count) -> 0 after arming fault site `site` for count passes on
 * this peer (lib/testing.h). */
static void nf_fault(rayc_ctx *c)
{
	int64_t site, count;
	rayc_arg_i64(c, 0, &site);
	rayc_arg_i64(c, 1, &count);
	rayc__test_fault((int)site, (int)count);
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(nf_fault)

/* A ref kept past the task (a borrower), and dropped later. */
static rayc_ref nf_kept;
static void nf_keep_ref(rayc_ctx *c)
{
	rayc_arg_ref(c, 0, &nf_kept);
	rayc_return_i64(c, 0, rayc_ref_dup(nf_kept));
}
RAYC_REMOTE(nf_keep_ref)

static void nf_drop_ref(rayc_ctx *c)
{
	rayc_return_i64(c, 0, rayc_release(nf_kept));
}
RAYC_REMOTE(nf_drop_ref)

/* (ms) -> peer id, after sleeping. */
static void nf_sleep(rayc_ctx *c)
{
	int64_t ms;
	rayc_arg_i64(c, 0, &ms);
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
	rayc_return_i64(c, 0, (int64_t)rayc_peer_id());
}
RAYC_REMOTE(nf_sleep)

/* Argument i as a path in p (cap bytes); false (the task failed, as
 * what) if it is none. */
static bool nf_path_arg(rayc_ctx *c, int i, char *p, size_t cap,
                        const char *what)
{
	const void *path;
	size_t n;
	if (rayc_arg_data(c, i, &path, &n) != RAYC_OK || n >= cap) {
		rayc_fail(c, "%s: no path", what);
		return false;
	}
	memcpy(p, path, n);
	p[n] = '\0';
	return true;
}

/* (path) -> peer id, once a file exists at path (at most 60 s): a task
 * that holds its worker until the test lets it go. */
static void nf_wait_file(rayc_ctx *c)
{
	char p[256];
	if (!nf_path_arg(c, 0, p, sizeof(p), "wait_file"))
		return;
	for (int i = 0; i < 60000 && access(p, F_OK) != 0; i++) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	rayc_return_i64(c, 0, (int64_t)rayc_peer_id());
}
RAYC_REMOTE(nf_wait_file)

/* (path) -> 0 once a file is made at path (nf_wait_file's go). */
static void nf_touch(rayc_ctx *c)
{
	char p[256];
	if (!nf_path_arg(c, 0, p, sizeof(p), "touch"))
		return;
	FILE *f = fopen(p, "w");
	if (f == NULL) {
		rayc_fail(c, "touch: cannot make %s", p);
		return;
	}
	fclose(f);
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(nf_touch)

/* Appends byte b to the file at p; false (the task failed, as what) if
 * it cannot. */
static bool nf_append(rayc_ctx *c, const char *p, char b, const char *what)
{
	int fd = open(p, O_WRONLY | O_CREAT | O_APPEND, 0600);
	bool ok = fd >= 0 && write(fd, &b, 1) == 1;
	if (fd >= 0)
		close(fd);
	if (!ok)
		rayc_fail(c, "%s: cannot write %s", what, p);
	return ok;
}

/* (path, ms) -> peer id: appends a byte to the file at path (the test
 * counts the runs begun), then sleeps ms. */
static void nf_mark_sleep(rayc_ctx *c)
{
	char p[256];
	int64_t ms;
	if (!nf_path_arg(c, 0, p, sizeof(p), "mark_sleep"))
		return;
	rayc_arg_i64(c, 1, &ms);
	if (!nf_append(c, p, 'x', "mark_sleep"))
		return;
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
	rayc_return_i64(c, 0, (int64_t)rayc_peer_id());
}
RAYC_REMOTE(nf_mark_sleep)

/* (depth) -> sum over a nested tree submitted from wherever it runs. */
static void nf_nested(rayc_ctx *c)
{
	int64_t d;
	rayc_arg_i64(c, 0, &d);
	if (d == 0) {
		rayc_return_i64(c, 0, 1);
		return;
	}
	rayc_ref a, b;
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_SPREAD;
	rayc_call_opts(&a, "nf_nested", &o, RAYC_I64(d - 1));
	rayc_call_opts(&b, "nf_nested", &o, RAYC_I64(d - 1));
	int64_t x = 0, y = 0;
	rayc_get_i64(a, &x, 30000);
	rayc_get_i64(b, &y, 30000);
	rayc_release(a);
	rayc_release(b);
	rayc_return_i64(c, 0, x + y);
}
RAYC_REMOTE(nf_nested)

static inline int64_t nf_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* (key, path): reads key the moment this peer's process is continued
 * after a SIGSTOP, and writes what it got to path: "OK:<value>" or
 * "ERR:<error>".  path.started appears once it waits.  Gives up after a
 * minute.  Run with max_retries 0: only the stopped peer may answer. */
static _Atomic bool nf_continued;
static void nf_on_cont(int sig)
{
	(void)sig;
	atomic_store(&nf_continued, true);
}

static void nf_write_file(const char *path, const char *text, size_t n)
{
	char tmp[600];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	if (f == NULL)
		return;
	fwrite(text, 1, n, f);
	if (fclose(f) == 0)
		rename(tmp, path);
}

static void nf_read_after_cont(rayc_ctx *c)
{
	const void *k, *p;
	size_t kn, pn;
	char path[512], out[600];
	rayc_arg_data(c, 0, &k, &kn);
	rayc_arg_data(c, 1, &p, &pn);
	snprintf(path, sizeof(path), "%s", (const char *)p);
	atomic_store(&nf_continued, false);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = nf_on_cont;
	sigaction(SIGCONT, &sa, NULL);
	snprintf(out, sizeof(out), "%s.started", path);
	nf_write_file(out, "", 0);
	int64_t deadline = nf_now_ms() + 60000;
	while (!atomic_load(&nf_continued) && nf_now_ms() < deadline) {
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	if (!atomic_load(&nf_continued)) {
		rayc_return_i64(c, 0, -1);
		return;
	}
	void *v = NULL;
	size_t vn = 0;
	int rc = rayc_kv_get(k, &v, &vn);
	int n = rc == RAYC_OK
	                ? snprintf(out, sizeof(out), "OK:%.*s", (int)vn,
	                           (const char *)v)
	                : snprintf(out, sizeof(out), "ERR:%s (%s)",
	                           rayc_strerror(rc), rayc_errmsg());
	free(v);
	nf_write_file(path, out, (size_t)n < sizeof(out) ? (size_t)n
	                                                 : sizeof(out) - 1);
	rayc_return_i64(c, 0, rc);
}
RAYC_REMOTE(nf_read_after_cont)


/* A value padded to pad bytes (at least 8): with pad over 64 KiB it is
 * kept where it was made, so a chain of them lives on many peers. */
static void nf_pad_return(rayc_ctx *c, int64_t v, int64_t pad)
{
	uint8_t *p = NULL;
	if (pad < 8)
		pad = 8;
	int rc = rayc_return_alloc(c, 0, (size_t)pad, (void **)&p);
	if (rc != RAYC_OK) {
		/* Where, and how full: a full store is a figure to read. */
		rayc_stats st;
		rayc_stats_get(&st);
		rayc_fail(c, "pad: no room (%s) on peer %u: %llu of %llu MiB "
		          "used, %llu MiB of it cached copies, %llu objects, "
		          "%llu tasks pending", rayc_strerror(rc),
		          rayc_peer_id(),
		          (unsigned long long)(st.store_used_bytes >> 20),
		          (unsigned long long)(st.store_capacity_bytes >> 20),
		          (unsigned long long)(st.cached_copy_bytes >> 20),
		          (unsigned long long)st.objects,
		          (unsigned long long)st.tasks_pending);
		return;
	}
	memset(p, 0x5a, (size_t)pad);
	memcpy(p, &v, sizeof(v));
}

static int nf_pad_value(rayc_ctx *c, size_t i, int64_t *v)
{
	const void *p;
	size_t n;
	if (rayc_arg_data(c, i, &p, &n) != RAYC_OK || n < sizeof(*v))
		return -1;
	memcpy(v, p, sizeof(*v));
	return 0;
}

/* (i, pad) -> i padded. */
static void nf_pleaf(rayc_ctx *c)
{
	int64_t i, pad;
	rayc_arg_i64(c, 0, &i);
	rayc_arg_i64(c, 1, &pad);
	nf_pad_return(c, i, pad);
}
RAYC_REMOTE(nf_pleaf)

/* (a, b, pad) -> a + b padded. */
static void nf_padd(rayc_ctx *c)
{
	int64_t a, b, pad;
	if (nf_pad_value(c, 0, &a) != 0 || nf_pad_value(c, 1, &b) != 0) {
		rayc_fail(c, "padd: bad argument");
		return;
	}
	rayc_arg_i64(c, 2, &pad);
	nf_pad_return(c, a + b, pad);
}
RAYC_REMOTE(nf_padd)

/* Submits a tree reduction of 0..n-1: n leaf tasks, then add tasks
 * joined pairwise by refs, all before any result is read.  pad 0: the
 * results are i64s (nf_leaf, nf_add); else each is padded to pad bytes
 * (nf_pleaf, nf_padd).  *root is the last add's ref.  RAYC_OK or the
 * first submit error. */
static inline int nf_tree_sum_pad(int n, int64_t pad, rayc_ref *root)
{
	rayc_ref *refs = malloc(sizeof(rayc_ref) * (size_t)n);
	int rc = refs != NULL ? RAYC_OK : RAYC_ENOMEM;

	for (int i = 0; i < n && rc == RAYC_OK; i++)
		rc = pad == 0 ? rayc_call(&refs[i], "nf_leaf", RAYC_I64(i))
		              : rayc_call(&refs[i], "nf_pleaf", RAYC_I64(i),
		                          RAYC_I64(pad));
	int m = n;
	while (m > 1 && rc == RAYC_OK) {
		int k = 0;
		for (int i = 0; i + 1 < m && rc == RAYC_OK; i += 2) {
			rayc_ref r;
			rc = pad == 0 ? rayc_call(&r, "nf_add", RAYC_REF(refs[i]),
			                          RAYC_REF(refs[i + 1]))
			              : rayc_call(&r, "nf_padd", RAYC_REF(refs[i]),
			                          RAYC_REF(refs[i + 1]),
			                          RAYC_I64(pad));
			rayc_release(refs[i]);
			rayc_release(refs[i + 1]);
			refs[k++] = r;
		}
		if (m % 2)
			refs[k++] = refs[m - 1];
		m = k;
	}
	if (rc == RAYC_OK)
		*root = refs[0];
	free(refs);
	return rc;
}

/* (path, key, ms) -> reads written: reads the KV key in a loop for ms,
 * appending "start_ns end_ns rc value" per read to the file at path, so
 * what a peer saw survives it being cut off.  CLOCK_MONOTONIC is one
 * clock for every process of the host, so the test can compare these
 * times with its writer's. */
static void nf_kv_reader(rayc_ctx *c)
{
	const void *path, *key;
	size_t pn, kn;
	int64_t ms, reads = 0;
	rayc_arg_data(c, 0, &path, &pn);
	rayc_arg_data(c, 1, &key, &kn);
	rayc_arg_i64(c, 2, &ms);
	FILE *f = fopen(path, "a");
	if (f == NULL) {
		rayc_fail(c, "kv_reader: cannot open %s", (const char *)path);
		return;
	}
	setvbuf(f, NULL, _IOLBF, 0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int64_t end = (int64_t)t0.tv_sec * 1000 + t0.tv_nsec / 1000000 + ms;
	for (;;) {
		void *v = NULL;
		size_t vn = 0;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if ((int64_t)t0.tv_sec * 1000 + t0.tv_nsec / 1000000 > end)
			break;
		int rc = rayc_kv_get(key, &v, &vn);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		fprintf(f, "%lld %lld %d %.*s\n",
		        (long long)t0.tv_sec * 1000000000LL + t0.tv_nsec,
		        (long long)t1.tv_sec * 1000000000LL + t1.tv_nsec, rc,
		        rc == RAYC_OK ? (int)vn : 1, rc == RAYC_OK ? (char *)v
		                                                   : "-");
		free(v);
		reads++;
	}
	fclose(f);
	rayc_return_i64(c, 0, reads);
}
RAYC_REMOTE(nf_kv_reader)

static inline int nf_tree_sum(int n, rayc_ref *root)
{
	return nf_tree_sum_pad(n, 0, root);
}

/* Waits up to ms until `want` live peers have run tasks (the counts come
 * with heartbeats).  Leaves the last view in pi (*np entries) and returns
 * how many live peers had run tasks. */
static inline size_t nf_wait_busy_peers(size_t want, int ms,
                                        rayc_peer_info *pi, size_t cap,
                                        size_t *np)
{
	int64_t deadline = nf_now_ms() + ms;
	size_t busy;

	for (;;) {
		rayc_cluster_peers(pi, cap, np);
		busy = 0;
		for (size_t i = 0; i < *np && i < cap; i++)
			busy += pi[i].alive && pi[i].tasks_executed > 0;
		if (busy >= want || nf_now_ms() >= deadline)
			return busy;
		struct timespec ts = { 0, 10000000 };
		nanosleep(&ts, NULL);
	}
}


/* (depth, next, other) -> depth: at each level one call on peer next
 * (with next and other swapped), waited for up to 5 s; a level whose
 * wait timed out counts -1000 (test_tlane.c). */
static void nf_ping(rayc_ctx *c)
{
	int64_t d, next, other;
	rayc_arg_i64(c, 0, &d);
	rayc_arg_i64(c, 1, &next);
	rayc_arg_i64(c, 2, &other);
	if (d == 0) {
		rayc_return_i64(c, 0, 0);
		return;
	}
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
	o.node_id = (uint32_t)next;
	rayc_ref r;
	int64_t v = -1000;
	if (rayc_call_opts(&r, "nf_ping", &o, RAYC_I64(d - 1), RAYC_I64(other),
	                   RAYC_I64(next)) == 0) {
		if (rayc_get_i64(r, &v, 5000) != 0)
			v = -1000;
		rayc_release(r);
	}
	rayc_return_i64(c, 0, v + 1);
}
RAYC_REMOTE(nf_ping)

/* (peer) -> 0 after 20 calls of nf_leaf there, one after the other (a
 * task lane from this peer to that one comes up). */
static void nf_relay(rayc_ctx *c)
{
	int64_t next;
	rayc_arg_i64(c, 0, &next);
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
	o.node_id = (uint32_t)next;
	int64_t bad = 0;
	for (int i = 0; i < 20; i++) {
		rayc_ref r;
		int64_t v = -1;
		if (rayc_call_opts(&r, "nf_leaf", &o, RAYC_I64(i)) != 0) {
			bad++;
			continue;
		}
		if (rayc_get_i64(r, &v, 30000) != 0 || v != i)
			bad++;
		rayc_release(r);
	}
	rayc_return_i64(c, 0, bad);
}
RAYC_REMOTE(nf_relay)

/* (block) -> 0; with block set, first waits with no deadline for an
 * object nobody seals (until the runtime stops). */
static void nf_block(rayc_ctx *c)
{
	int64_t b;
	rayc_arg_i64(c, 0, &b);
	if (b) {
		rayc_ref r;
		void *p;
		rayc_view v;
		if (rayc_put_create(&r, 8, &p) == 0)
			(void)rayc_get(r, &v, -1);
	}
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(nf_block)

#endif /* RAYC_TEST_NET_FUNCS_H */
