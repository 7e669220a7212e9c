/* crash_funcs.h -- remote functions for the crash and fault tests
 * (test_crash.c): tasks that kill the peer running them, and a put made
 * on one peer whose ref another peer keeps.  Compiled into the test
 * driver and into net_peer, so every peer has them under one name. */
#ifndef RAYC_TEST_CRASH_FUNCS_H
#define RAYC_TEST_CRASH_FUNCS_H

#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>

#include "rayc.h"

/* () -> never: kills the process running it with SIGABRT (no core
 * file: a test kills several peers). */
static void cf_abort(rayc_ctx *c)
{
	struct rlimit no_core = { 0, 0 };

	(void)c;
	(void)setrlimit(RLIMIT_CORE, &no_core);
	abort();
}
RAYC_REMOTE(cf_abort)

/* (n, seed, peer) -> 0: puts n bytes here (this peer owns them) and has
 * a task on peer keep a ref to them (nf_keep_ref, a borrower); returns
 * once that task is done.  The put's ref is dropped here, so the object
 * lives on as the borrower's. */
static void cf_lend_put(rayc_ctx *c)
{
	int64_t n, seed, peer;
	rayc_arg_i64(c, 0, &n);
	rayc_arg_i64(c, 1, &seed);
	rayc_arg_i64(c, 2, &peer);
	uint8_t *p = malloc((size_t)n);
	if (p == NULL) {
		rayc_fail(c, "cf_lend_put: no memory");
		return;
	}
	for (int64_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7 + seed);
	rayc_ref obj, r;
	int rc = rayc_put(&obj, p, (size_t)n);
	free(p);
	if (rc != RAYC_OK) {
		rayc_fail(c, "cf_lend_put: put: %s", rayc_strerror(rc));
		return;
	}
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_NODE_AFFINITY;
	o.node_id = (uint32_t)peer;
	int64_t kept = -1;
	rc = rayc_call_opts(&r, "nf_keep_ref", &o, RAYC_REF(obj));
	if (rc == RAYC_OK) {
		rc = rayc_get_i64(r, &kept, 30000);
		rayc_release(r);
	}
	rayc_release(obj);
	if (rc != RAYC_OK || kept != 0) {
		rayc_fail(c, "cf_lend_put: keep: %s", rayc_strerror(rc));
		return;
	}
	rayc_return_i64(c, 0, 0);
}
RAYC_REMOTE(cf_lend_put)

/* (n, peer) -> how many of n SPREAD calls of nf_whoami, submitted from
 * wherever this runs, ran on peer. */
static void cf_spread_on(rayc_ctx *c)
{
	int64_t n, peer, hits = 0;
	rayc_arg_i64(c, 0, &n);
	rayc_arg_i64(c, 1, &peer);
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_SPREAD;
	for (int64_t i = 0; i < n; i++) {
		rayc_ref r;
		int64_t who = 0;
		if (rayc_call_opts(&r, "nf_whoami", &o) != RAYC_OK) {
			rayc_fail(c, "cf_spread_on: submit failed");
			return;
		}
		int rc = rayc_get_i64(r, &who, 30000);
		rayc_release(r);
		if (rc != RAYC_OK) {
			rayc_fail(c, "cf_spread_on: %s", rayc_strerror(rc));
			return;
		}
		hits += who == peer;
	}
	rayc_return_i64(c, 0, hits);
}
RAYC_REMOTE(cf_spread_on)

#endif /* RAYC_TEST_CRASH_FUNCS_H */
