/* net_local.c -- a program that starts a 4-peer local cluster with
 * cfg.local_peers (copies of itself), computes a 100,000-leaf tree
 * reduction, checks the sum and that every peer ran tasks, and prints the
 * peers' pids so the test can check none is left afterwards.  Exit 0 on
 * success. */
#include <stdio.h>
#include <stdlib.h>

#include "net_funcs.h"

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(void)
{
	rayc_config cfg = { .num_workers = 2, .local_peers = 4,
		            .store_bytes = (size_t)128 << 20,
		            .prefault_bytes = (size_t)4 << 20 };
	int rc = rayc_init(&cfg);
	if (rc != RAYC_OK) {
		fprintf(stderr, "rayc_init: %s\n", rayc_errmsg());
		return 1;
	}
	enum { N = 100000 };
	rayc_ref *refs = malloc(sizeof(rayc_ref) * N);
	for (int i = 0; i < N; i++)
		if (rayc_call(&refs[i], "nf_leaf", RAYC_I64(i)) != RAYC_OK)
			return 2;
	int m = N;
	while (m > 1) {
		int k = 0;
		for (int i = 0; i + 1 < m; i += 2) {
			rayc_ref r;
			if (rayc_call(&r, "nf_add", RAYC_REF(refs[i]),
			              RAYC_REF(refs[i + 1])) != RAYC_OK)
				return 2;
			rayc_release(refs[i]);
			rayc_release(refs[i + 1]);
			refs[k++] = r;
		}
		if (m % 2)
			refs[k++] = refs[m - 1];
		m = k;
	}
	int64_t sum = -1;
	rc = rayc_get_i64(refs[0], &sum, 60000);
	rayc_release(refs[0]);
	free(refs);
	if (rc != RAYC_OK || sum != (int64_t)N * (N - 1) / 2) {
		fprintf(stderr, "sum %lld rc %d\n", (long long)sum, rc);
		return 4;
	}
	/* Every peer's count arrives with its next heartbeat. */
	rayc_peer_info pi[8];
	size_t n = 0, busy = 0;
	int64_t deadline = now_ms() + 10000;
	while (now_ms() < deadline) {
		rayc_cluster_peers(pi, 8, &n);
		busy = 0;
		for (size_t i = 0; i < n; i++)
			busy += pi[i].alive && pi[i].tasks_executed > 0;
		if (busy == 4)
			break;
		struct timespec ts = { 0, 10000000 };
		nanosleep(&ts, NULL);
	}
	printf("pids");
	for (size_t i = 0; i < n; i++)
		printf(" %d", pi[i].pid);
	printf("\n");
	for (size_t i = 0; i < n; i++)
		printf("peer %u executed %llu\n", pi[i].id,
		       (unsigned long long)pi[i].tasks_executed);
	fflush(stdout);
	rayc_shutdown();
	return n == 4 && busy == 4 ? 0 : 5;
}
