/* app.c -- the program of README's cross-machine example, run by run.sh
 * in network namespaces (one "host" each).  Started exactly as README
 * shows: the founder with a token and RAYC_LISTEN=tcp://0.0.0.0:PORT,
 * workers with the token, RAYC_ADDRESS and RAYC_ROLE=worker.
 *
 * The founder (the driver) waits for NETNS_PEERS peers, then checks
 * that every peer runs tasks (SPREAD), and that an object made on one
 * worker is read by a task on another, so workers dial each other and
 * not only the founder.  Prints "netns app: ok" and exits 0 if all
 * results are exact; exits 1 otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rayc.h"

static void whoami(rayc_ctx *c)
{
	rayc_return_i64(c, 0, (int64_t)rayc_peer_id());
}
RAYC_REMOTE(whoami)

/* 256 KiB of a known pattern: too large to travel inside TASK_DONE, so
 * it stays where it was made until another peer fetches it. */
#define BIG ((size_t)256 << 10)

static void make_big(rayc_ctx *c)
{
	int64_t seed;
	if (rayc_arg_i64(c, 0, &seed) != RAYC_OK) {
		rayc_fail(c, "make_big needs a seed");
		return;
	}
	void *d = NULL;
	if (rayc_return_alloc(c, 0, BIG, &d) != RAYC_OK) {
		rayc_fail(c, "no room");
		return;
	}
	unsigned char *p = d;
	for (size_t i = 0; i < BIG; i++)
		p[i] = (unsigned char)(seed + (int64_t)i * 7);
}
RAYC_REMOTE(make_big)

static void sum_big(rayc_ctx *c)
{
	size_t n = 0;
	const void *d = NULL;
	if (rayc_arg_data(c, 0, &d, &n) != RAYC_OK) {
		rayc_fail(c, "sum_big needs bytes");
		return;
	}
	const unsigned char *p = d;
	int64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += p[i];
	rayc_return_i64(c, 0, s);
}
RAYC_REMOTE(sum_big)

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define CHECK(cond, ...)                                                       \
	do {                                                                   \
		if (!(cond)) {                                                 \
			fprintf(stderr, "netns app: " __VA_ARGS__);            \
			fprintf(stderr, " (%s)\n", rayc_errmsg());             \
			rayc_shutdown();                                       \
			return 1;                                              \
		}                                                              \
	} while (0)

int main(void)
{
	int rc = rayc_init(NULL);
	if (rc != RAYC_OK) {
		fprintf(stderr, "netns app: rayc_init: %s (%s)\n",
		        rayc_strerror(rc), rayc_errmsg());
		return 3;
	}
	/* Workers never get here: rayc_init serves, then exits. */
	int want = atoi(getenv("NETNS_PEERS") != NULL ? getenv("NETNS_PEERS")
	                                              : "3");
	rayc_peer_info pi[16];
	size_t n = 0, alive = 0;
	for (int64_t end = now_ms() + 30000; now_ms() < end;) {
		alive = 0;
		CHECK(rayc_cluster_peers(pi, 16, &n) == RAYC_OK, "peers");
		for (size_t i = 0; i < n && i < 16; i++)
			alive += pi[i].alive;
		if ((int)alive >= want)
			break;
		struct timespec ts = { 0, 10000000 };
		nanosleep(&ts, NULL);
	}
	CHECK((int)alive >= want, "only %zu of %d peers joined", alive, want);
	for (size_t i = 0; i < n && i < 16; i++)
		printf("netns app: peer %u at %s\n", pi[i].id, pi[i].address);

	/* Every peer runs tasks. */
	enum { N = 300 };
	rayc_ref r[N];
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.strategy = RAYC_STRATEGY_SPREAD;
	for (int i = 0; i < N; i++)
		CHECK(rayc_call_opts(&r[i], "whoami", &o) == RAYC_OK, "call");
	int ran[64] = { 0 };
	for (int i = 0; i < N; i++) {
		int64_t id = 0;
		CHECK(rayc_get_i64(r[i], &id, 20000) == RAYC_OK,
		      "whoami %d did not finish", i);
		if (id >= 0 && id < 64)
			ran[id]++;
		rayc_release(r[i]);
	}
	for (size_t i = 0; i < n && i < 16; i++)
		CHECK(!pi[i].alive || ran[pi[i].id] > 0, "peer %u ran nothing",
		      pi[i].id);

	/* Worker to worker: made on one, read on the other. */
	int64_t expect = 0;
	for (size_t i = 0; i < BIG; i++)
		expect += (unsigned char)(5 + (int64_t)i * 7);
	for (size_t a = 0; a < n && a < 16; a++)
		for (size_t b = 0; b < n && b < 16; b++) {
			if (a == b || !pi[a].alive || !pi[b].alive ||
			    pi[a].id == rayc_peer_id() ||
			    pi[b].id == rayc_peer_id())
				continue;
			rayc_task_opts on_a = RAYC_TASK_OPTS_DEFAULT,
			               on_b = RAYC_TASK_OPTS_DEFAULT;
			on_a.strategy = on_b.strategy =
				RAYC_STRATEGY_NODE_AFFINITY;
			on_a.node_id = pi[a].id;
			on_b.node_id = pi[b].id;
			rayc_ref big, s;
			int64_t v = 0;
			CHECK(rayc_call_opts(&big, "make_big", &on_a,
			                     RAYC_I64(5)) == RAYC_OK, "make");
			CHECK(rayc_call_opts(&s, "sum_big", &on_b,
			                     RAYC_REF(big)) == RAYC_OK, "sum");
			CHECK(rayc_get_i64(s, &v, 20000) == RAYC_OK,
			      "peer %u could not read an object of peer %u",
			      pi[b].id, pi[a].id);
			CHECK(v == expect, "sum %lld, want %lld", (long long)v,
			      (long long)expect);
			rayc_release(s);
			rayc_release(big);
		}
	printf("netns app: ok\n");
	return rayc_shutdown() == RAYC_OK ? 0 : 1;
}
