/* net_local.c -- a program that starts a 4-peer local cluster with
 * cfg.local_peers (copies of itself), computes a 100,000-leaf tree
 * reduction, checks the sum, that every worker peer ran tasks and that
 * this driver ran none (with local peers it keeps tasks off its own
 * process by default), and prints the peers' pids so the test can check
 * none is left afterwards.  Exit 0 on success. */
#include <stdio.h>
#include <stdlib.h>

#include "net_funcs.h"

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
	rayc_ref root;
	int64_t sum = -1;
	if (nf_tree_sum(N, &root) != RAYC_OK)
		return 2;
	rc = rayc_get_i64(root, &sum, 60000);
	rayc_release(root);
	if (rc != RAYC_OK || sum != (int64_t)N * (N - 1) / 2) {
		fprintf(stderr, "sum %lld rc %d\n", (long long)sum, rc);
		return 4;
	}
	rayc_peer_info pi[8];
	size_t n = 0;
	size_t busy = nf_wait_busy_peers(3, 10000, pi, 8, &n);
	uint64_t here = 0;
	printf("pids");
	for (size_t i = 0; i < n; i++)
		printf(" %d", pi[i].pid);
	printf("\n");
	for (size_t i = 0; i < n; i++) {
		printf("peer %u executed %llu\n", pi[i].id,
		       (unsigned long long)pi[i].tasks_executed);
		if (pi[i].id == rayc_peer_id())
			here = pi[i].tasks_executed;
	}
	fflush(stdout);
	rayc_shutdown();
	return n == 4 && busy == 3 && here == 0 ? 0 : 5;
}
