/* actor_funcs.h -- the actor classes of the multi-peer actor tests,
 * registered in the test driver and in every net_peer process. */
#ifndef RAYC_TEST_ACTOR_FUNCS_H
#define RAYC_TEST_ACTOR_FUNCS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "rayc.h"

#ifndef XXH_INLINE_ALL
#define XXH_INLINE_ALL
#endif
#include <xxhash.h>

/* NetCounter(tag): add(i) checks order, where() says the peer, the
 * count, the inits; sleep_add(ms, i) sleeps first.  Its destructor
 * counts itself in the KV under "fini/<tag>". */
typedef struct net_counter {
	int64_t next, wrong, inits;
	char tag[32];
} net_counter;

static void nc_init(rayc_ctx *c)
{
	net_counter *s = rayc_actor_state(c);
	const void *p;
	size_t n;

	if (rayc_arg_data(c, 0, &p, &n) == RAYC_OK && n < sizeof(s->tag))
		memcpy(s->tag, p, n);
	s->inits++;
}

static void nc_fini(void *state)
{
	net_counter *s = state;
	char key[64];
	void *old = NULL;
	size_t n = 0;
	int64_t count = 1;

	snprintf(key, sizeof(key), "fini/%s", s->tag);
	if (rayc_kv_get(key, &old, &n) == RAYC_OK && n == sizeof(count)) {
		memcpy(&count, old, sizeof(count));
		count++;
	}
	free(old);
	(void)rayc_kv_put(key, &count, sizeof(count));
}

static void nc_add(rayc_ctx *c)
{
	net_counter *s = rayc_actor_state(c);
	int64_t i;

	rayc_arg_i64(c, 0, &i);
	if (i != s->next)
		s->wrong++;
	s->next = i + 1;
	rayc_return_i64(c, 0, (int64_t)rayc_peer_id());
}

static void nc_sleep_add(rayc_ctx *c)
{
	int64_t ms;

	rayc_arg_i64(c, 0, &ms);
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
	net_counter *s = rayc_actor_state(c);
	s->next++;
	rayc_return_i64(c, 0, (int64_t)rayc_peer_id());
}

/* -> peer, next, wrong, inits */
static void nc_where(rayc_ctx *c)
{
	net_counter *s = rayc_actor_state(c);

	rayc_return_i64(c, 0, (int64_t)rayc_peer_id());
	rayc_return_i64(c, 1, s->next);
	rayc_return_i64(c, 2, s->wrong);
	rayc_return_i64(c, 3, s->inits);
}

/* (n) -> n bytes, byte k being (k * 7 + n) & 0xff. */
static void nc_blob(rayc_ctx *c)
{
	int64_t n;
	uint8_t *p;

	if (rayc_arg_i64(c, 0, &n) != RAYC_OK || n < 0 ||
	    rayc_return_alloc(c, 0, (size_t)n, (void **)&p) != RAYC_OK) {
		rayc_fail(c, "blob(n)");
		return;
	}
	for (int64_t k = 0; k < n; k++)
		p[k] = (uint8_t)((k * 7 + n) & 0xff);
}

/* (bytes) -> xxh3 of them, the peer; counts itself in next. */
static void nc_checksum(rayc_ctx *c)
{
	net_counter *s = rayc_actor_state(c);
	const void *p;
	size_t n;

	if (rayc_arg_data(c, 0, &p, &n) != RAYC_OK) {
		rayc_fail(c, "checksum(bytes)");
		return;
	}
	s->next++;
	rayc_return_i64(c, 0, (int64_t)XXH3_64bits(p, n));
	rayc_return_i64(c, 1, (int64_t)rayc_peer_id());
}

static void nc_bad_init(rayc_ctx *c)
{
	rayc_fail(c, "refusing to start on peer %u", rayc_peer_id());
}

static const rayc_actor_method nc_methods[] = {
	{ "add", nc_add },
	{ "sleep_add", nc_sleep_add },
	{ "where", nc_where },
	{ "blob", nc_blob },
	{ "checksum", nc_checksum },
};
static rayc_actor_class nc_class = {
	.name = "NetCounter",
	.state_size = sizeof(net_counter),
	.init = nc_init,
	.fini = nc_fini,
	.methods = nc_methods,
	.nmethods = sizeof(nc_methods) / sizeof(nc_methods[0]),
};
RAYC_ACTOR_CLASS(nc_class)

static rayc_actor_class nc_bad_class = {
	.name = "NetBad",
	.state_size = sizeof(net_counter),
	.init = nc_bad_init,
	.methods = nc_methods,
	.nmethods = sizeof(nc_methods) / sizeof(nc_methods[0]),
};
RAYC_ACTOR_CLASS(nc_bad_class)

/* NetGate, for max_concurrency 2: wait_open() returns 1 once open(bytes)
 * ran (0 after 20 s), polling the state, not in rayc_get. */
typedef struct net_gate {
	int open;
} net_gate;

static void ng_init(rayc_ctx *c)
{
	(void)c;
}

static void ng_wait_open(rayc_ctx *c)
{
	net_gate *s = rayc_actor_state(c);
	int64_t v = 0;

	for (int i = 0; i < 20000 && !v; i++) {
		v = __atomic_load_n(&s->open, __ATOMIC_ACQUIRE);
		if (!v) {
			struct timespec ts = { 0, 1000000 };
			nanosleep(&ts, NULL);
		}
	}
	rayc_return_i64(c, 0, v);
}

static void ng_open(rayc_ctx *c)
{
	net_gate *s = rayc_actor_state(c);

	__atomic_store_n(&s->open, 1, __ATOMIC_RELEASE);
	rayc_return_i64(c, 0, 1);
}

static const rayc_actor_method ng_methods[] = {
	{ "wait_open", ng_wait_open },
	{ "open", ng_open },
};
static rayc_actor_class ng_class = {
	.name = "NetGate",
	.state_size = sizeof(net_gate),
	.init = ng_init,
	.methods = ng_methods,
	.nmethods = sizeof(ng_methods) / sizeof(ng_methods[0]),
};
RAYC_ACTOR_CLASS(ng_class)

/* A call placed on another peer by node affinity got rc: true to try
 * again, as this peer may not have heard of that one yet (every 10 ms,
 * 10 s in all). */
static bool not_heard_of_yet(int rc, int *tries)
{
	if (rc != RAYC_EINFEASIBLE || ++*tries > 1000)
		return false;
	struct timespec ts = { 0, 10000000 };
	nanosleep(&ts, NULL);
	return true;
}

/* count calls add(first), add(first + 1), ... through h; *last gets the
 * ref of the last.  Fails c (and returns false) on an error. */
static bool make_calls(rayc_ctx *c, rayc_actor h, int64_t first,
                       int64_t count, rayc_ref *last)
{
	for (int64_t k = 0; k < count; k++) {
		rayc_ref r;
		if (rayc_actor_call(&r, h, "add", RAYC_I64(first + k)) !=
		    RAYC_OK) {
			rayc_fail(c, "call: %s", rayc_errmsg());
			if (k > 0)
				rayc_release(*last);
			return false;
		}
		if (k > 0)
			rayc_release(*last);
		*last = r;
	}
	return true;
}

/* Waits for last (and lets it go); *at gets the peer its call ran on.
 * Fails c (and returns false) on an error. */
static bool last_call_at(rayc_ctx *c, rayc_ref last, int64_t *at)
{
	int rc = rayc_get_i64(last, at, 30000);
	rayc_release(last);
	if (rc != RAYC_OK)
		rayc_fail(c, "get: %s (%s)", rayc_strerror(rc), rayc_errmsg());
	return rc == RAYC_OK;
}

/* count calls add(first), add(first + 1), ... through h; *at gets the
 * peer the last ran on.  Fails c (and returns false) on an error. */
static bool calls_through(rayc_ctx *c, rayc_actor h, int64_t first,
                          int64_t count, int64_t *at)
{
	rayc_ref last;

	return make_calls(c, h, first, count, &last) &&
	       last_call_at(c, last, at);
}

/* (handle, ms) -> the peer a call add(0) made through the handle ran
 * on, after sleeping ms. */
static void af_later_add(rayc_ctx *c)
{
	rayc_actor h;
	int64_t ms, at = -1;
	rayc_ref r;

	if (rayc_arg_actor(c, 0, &h) != RAYC_OK ||
	    rayc_arg_i64(c, 1, &ms) != RAYC_OK) {
		rayc_fail(c, "af_later_add(handle, ms): %s", rayc_errmsg());
		return;
	}
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
	if (rayc_actor_call(&r, h, "add", RAYC_I64(0)) != RAYC_OK ||
	    rayc_get_i64(r, &at, 120000) != RAYC_OK) {
		rayc_fail(c, "af_later_add: %s", rayc_errmsg());
		return;
	}
	rayc_release(r);
	rayc_return_i64(c, 0, at);
}
RAYC_REMOTE(af_later_add)

/* (handle, first, count) -> the peer the last call ran on, after count
 * calls add(first), add(first + 1), ... made through the handle, from
 * whatever peer runs this task. */
static void af_calls_via(rayc_ctx *c)
{
	rayc_actor h;
	int64_t first, count, at = -1;

	if (rayc_arg_actor(c, 0, &h) != RAYC_OK ||
	    rayc_arg_i64(c, 1, &first) != RAYC_OK ||
	    rayc_arg_i64(c, 2, &count) != RAYC_OK || count < 1) {
		rayc_fail(c, "af_calls_via(handle, first, count): %s",
		          rayc_errmsg());
		return;
	}
	if (calls_through(c, h, first, count, &at))
		rayc_return_i64(c, 0, at);
}
RAYC_REMOTE(af_calls_via)

/* (handle, first, peer) -> a call add(first) here, then af_calls_via of
 * add(first + 1) on peer; returns the peer that call ran on. */
static void af_pass_on(rayc_ctx *c)
{
	rayc_actor h;
	int64_t first, peer, at;

	if (rayc_arg_actor(c, 0, &h) != RAYC_OK ||
	    rayc_arg_i64(c, 1, &first) != RAYC_OK ||
	    rayc_arg_i64(c, 2, &peer) != RAYC_OK) {
		rayc_fail(c, "af_pass_on(handle, first, peer)");
		return;
	}
	rayc_ref r;
	if (rayc_actor_call(&r, h, "add", RAYC_I64(first)) != RAYC_OK ||
	    rayc_get_i64(r, &at, 30000) != RAYC_OK) {
		rayc_fail(c, "first call: %s", rayc_errmsg());
		return;
	}
	rayc_release(r);
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
	o.node_id = (uint32_t)peer;
	int rc, tries = 0;
	do
		rc = rayc_call_opts(&r, "af_calls_via", &o, RAYC_ACTOR(h),
		                    RAYC_I64(first + 1), RAYC_I64(1));
	while (not_heard_of_yet(rc, &tries));
	if (rc != RAYC_OK || rayc_get_i64(r, &at, 30000) != RAYC_OK) {
		rayc_fail(c, "second task: %s", rayc_errmsg());
		return;
	}
	rayc_release(r);
	rayc_return_i64(c, 0, at);
}
RAYC_REMOTE(af_pass_on)

/* (handle, n) -> n, once blob(n) called through the handle from the
 * peer running this came back whole and right. */
static void af_blob_via(rayc_ctx *c)
{
	rayc_actor h;
	int64_t n;
	rayc_ref r;
	rayc_view v;

	if (rayc_arg_actor(c, 0, &h) != RAYC_OK ||
	    rayc_arg_i64(c, 1, &n) != RAYC_OK) {
		rayc_fail(c, "af_blob_via(handle, n)");
		return;
	}
	if (rayc_actor_call(&r, h, "blob", RAYC_I64(n)) != RAYC_OK) {
		rayc_fail(c, "call: %s", rayc_errmsg());
		return;
	}
	int rc = rayc_get(r, &v, 60000);
	if (rc != RAYC_OK) {
		rayc_fail(c, "get: %s (%s)", rayc_strerror(rc),
		          rc == RAYC_ETIMEDOUT ? "" : (const char *)v.data);
		if (rc != RAYC_ETIMEDOUT)
			rayc_view_release(&v);
		rayc_release(r);
		return;
	}
	const uint8_t *p = v.data;
	int64_t bad = (int64_t)v.len != n ? 1 : 0;
	for (int64_t k = 0; k < n && !bad; k++)
		bad = p[k] != (uint8_t)((k * 7 + n) & 0xff);
	rayc_view_release(&v);
	rayc_release(r);
	if (bad)
		rayc_fail(c, "blob(%lld) came back wrong", (long long)n);
	else
		rayc_return_i64(c, 0, n);
}
RAYC_REMOTE(af_blob_via)

/* (handle, key) -> 0, once "go/<key>" is in the KV (30 s at most) and
 * a call add(0) through the handle came back: its outcome (the peer it
 * ran on, or minus the error) goes to "out/<key>". */
static void af_use_after(rayc_ctx *c)
{
	rayc_actor h;
	const void *p;
	size_t n;
	char key[64], go[80], out[80];
	int64_t v = -RAYC_ETIMEDOUT;

	if (rayc_arg_actor(c, 0, &h) != RAYC_OK ||
	    rayc_arg_data(c, 1, &p, &n) != RAYC_OK || n >= sizeof(key)) {
		rayc_fail(c, "af_use_after(handle, key)");
		return;
	}
	memcpy(key, p, n);
	key[n] = '\0';
	snprintf(go, sizeof(go), "go/%s", key);
	snprintf(out, sizeof(out), "out/%s", key);
	for (int tries = 0; tries < 3000; tries++) {
		void *val = NULL;
		size_t len;
		if (rayc_kv_get(go, &val, &len) == RAYC_OK) {
			free(val);
			rayc_ref r;
			int rc = rayc_actor_call(&r, h, "add", RAYC_I64(0));
			if (rc == RAYC_OK) {
				rc = rayc_get_i64(r, &v, 30000);
				rayc_release(r);
			}
			if (rc != RAYC_OK)
				v = -rc;
			break;
		}
		struct timespec ts = { 0, 10000000 };
		nanosleep(&ts, NULL);
	}
	(void)rayc_kv_put(out, &v, sizeof(v));
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(af_use_after)

/* (handle, node, key) -> 0 at once, having started af_use_after(handle,
 * key) on peer node without waiting for it. */
static void af_spawn_user(rayc_ctx *c)
{
	rayc_actor h;
	int64_t node;
	const void *p;
	size_t n;

	if (rayc_arg_actor(c, 0, &h) != RAYC_OK ||
	    rayc_arg_i64(c, 1, &node) != RAYC_OK ||
	    rayc_arg_data(c, 2, &p, &n) != RAYC_OK) {
		rayc_fail(c, "af_spawn_user(handle, node, key)");
		return;
	}
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
	o.node_id = (uint32_t)node;
	rayc_arg key = RAYC_BYTES(p, n);
	rayc_ref r;
	int rc, tries = 0;
	do
		rc = rayc_call_opts(&r, "af_use_after", &o, RAYC_ACTOR(h), key);
	while (not_heard_of_yet(rc, &tries));
	if (rc != RAYC_OK) {
		rayc_fail(c, "af_use_after: %s", rayc_errmsg());
		return;
	}
	rayc_release(r); /* not waited for */
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(af_spawn_user)

/* Argument i as a NUL-terminated string into buf. */
static bool arg_name(rayc_ctx *c, size_t i, char *buf, size_t cap)
{
	const void *p;
	size_t n;

	if (rayc_arg_data(c, i, &p, &n) != RAYC_OK || n >= cap)
		return false;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return true;
}

/* (name, first, count) -> the peer the last call ran on, after count
 * calls add(first), ... through a handle found by name on whatever peer
 * runs this task. */
static void af_named_calls(rayc_ctx *c)
{
	char name[64];
	int64_t first, count, at = -1;
	rayc_actor h;

	if (!arg_name(c, 0, name, sizeof(name)) ||
	    rayc_arg_i64(c, 1, &first) != RAYC_OK ||
	    rayc_arg_i64(c, 2, &count) != RAYC_OK || count < 1) {
		rayc_fail(c, "af_named_calls(name, first, count)");
		return;
	}
	if (rayc_actor_get_named(&h, name) != RAYC_OK) {
		rayc_fail(c, "get_named: %s", rayc_errmsg());
		return;
	}
	bool ok = calls_through(c, h, first, count, &at);
	rayc_actor_release(h);
	if (ok)
		rayc_return_i64(c, 0, at);
}
RAYC_REMOTE(af_named_calls)

/* Handles af_named_create keeps for actors not detached: they live as
 * long as this process. */
static rayc_actor kept_made[64];
static int nkept_made;

/* (name, get_if_exists[, node, detached]) -> what rayc_actor_create of a
 * NetCounter named name (tag: the name) returned here: detached unless
 * detached is 0 (then this process keeps the handle), placed on peer
 * node if not 0.  A detached actor's handle is let go at once. */
static void af_named_create(rayc_ctx *c)
{
	char name[64];
	int64_t gie, node = 0, detached = 1;
	rayc_actor h;

	if (!arg_name(c, 0, name, sizeof(name)) ||
	    rayc_arg_i64(c, 1, &gie) != RAYC_OK ||
	    (rayc_arg_count(c) > 2 &&
	     (rayc_arg_i64(c, 2, &node) != RAYC_OK ||
	      rayc_arg_i64(c, 3, &detached) != RAYC_OK))) {
		rayc_fail(c, "af_named_create(name, get_if_exists[, node, "
		          "detached])");
		return;
	}
	rayc_actor_opts o = { .name = name,
		              .get_if_exists = (int)gie,
		              .lifetime = detached ? RAYC_LIFETIME_DETACHED
		                                   : RAYC_LIFETIME_DEFAULT };
	if (node != 0) {
		o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
		o.node_id = (uint32_t)node;
	}
	int rc, tries = 0;
	do
		rc = rayc_actor_create(&h, "NetCounter", &o, RAYC_STR(name));
	while (not_heard_of_yet(rc, &tries));
	if (rc == RAYC_OK && !detached && nkept_made < 64)
		kept_made[nkept_made++] = h;
	else if (rc == RAYC_OK)
		rayc_actor_release(h);
	rayc_return_i64(c, 0, rc);
}
RAYC_REMOTE(af_named_create)

/* (name, no_restart) -> what rayc_actor_kill through a handle found by
 * name here returned. */
static void af_kill_named(rayc_ctx *c)
{
	char name[64];
	int64_t no_restart;
	rayc_actor h;

	if (!arg_name(c, 0, name, sizeof(name)) ||
	    rayc_arg_i64(c, 1, &no_restart) != RAYC_OK) {
		rayc_fail(c, "af_kill_named(name, no_restart)");
		return;
	}
	if (rayc_actor_get_named(&h, name) != RAYC_OK) {
		rayc_fail(c, "get_named: %s", rayc_errmsg());
		return;
	}
	int rc = rayc_actor_kill(h, (int)no_restart);
	rayc_actor_release(h);
	rayc_return_i64(c, 0, rc);
}
RAYC_REMOTE(af_kill_named)

/* A handle this process keeps between tasks (af_keep_named, then
 * af_kept_calls and af_let_go). */
static rayc_actor kept_handle;

/* (name) -> 0: finds the actor by name and keeps the handle. */
static void af_keep_named(rayc_ctx *c)
{
	char name[64];

	if (!arg_name(c, 0, name, sizeof(name)) ||
	    rayc_actor_get_named(&kept_handle, name) != RAYC_OK) {
		rayc_fail(c, "af_keep_named: %s", rayc_errmsg());
		return;
	}
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(af_keep_named)

/* (handle) -> 0: keeps a dup of the handle given. */
static void af_keep_dup(rayc_ctx *c)
{
	if (rayc_arg_actor(c, 0, &kept_handle) != RAYC_OK ||
	    rayc_actor_dup(kept_handle) != RAYC_OK) {
		rayc_fail(c, "af_keep_dup: %s", rayc_errmsg());
		return;
	}
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(af_keep_dup)

/* (first, count) -> the peer the last of count calls add(first), ...
 * through the kept handle ran on. */
static void af_kept_calls(rayc_ctx *c)
{
	int64_t first, count, at = -1;

	if (rayc_arg_i64(c, 0, &first) != RAYC_OK ||
	    rayc_arg_i64(c, 1, &count) != RAYC_OK) {
		rayc_fail(c, "af_kept_calls(first, count)");
		return;
	}
	if (calls_through(c, kept_handle, first, count, &at))
		rayc_return_i64(c, 0, at);
}
RAYC_REMOTE(af_kept_calls)

/* (first, count) -> the peer the last of count calls add(first), ...
 * ran on, made through the kept handle, which is let go right after the
 * calls are made (before they run). */
static void af_calls_then_let_go(rayc_ctx *c)
{
	int64_t first, count, at = -1;
	rayc_ref last;

	if (rayc_arg_i64(c, 0, &first) != RAYC_OK ||
	    rayc_arg_i64(c, 1, &count) != RAYC_OK || count < 1) {
		rayc_fail(c, "af_calls_then_let_go(first, count)");
		return;
	}
	if (!make_calls(c, kept_handle, first, count, &last))
		return;
	if (rayc_actor_release(kept_handle) != RAYC_OK) {
		rayc_fail(c, "release: %s", rayc_errmsg());
		rayc_release(last);
		return;
	}
	if (last_call_at(c, last, &at))
		rayc_return_i64(c, 0, at);
}
RAYC_REMOTE(af_calls_then_let_go)

/* () -> what releasing the kept handle returned. */
static void af_let_go(rayc_ctx *c)
{
	rayc_return_i64(c, 0, rayc_actor_release(kept_handle));
}
RAYC_REMOTE(af_let_go)

#endif
