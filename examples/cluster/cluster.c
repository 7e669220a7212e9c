/* cluster.c -- the multi-peer demo: a blocked matrix multiply on a local
 * cluster of 4 peers (this process and 3 copies of it that rayc_init
 * starts), with progress and a per-peer summary.
 *
 *   C = A x B, n x n doubles, cut into row bands of A and column bands of
 *   B (each put once in the store); one task per (band, band) pair
 *   multiplies them into a block of C.  Bands travel to the peer that runs
 *   the task (chunked, checksummed); blocks stay where they were made
 *   until the driver reads them.  The driver checks sampled entries of C
 *   against a direct computation.
 *
 * Usage: cluster [n] [block]   (defaults 1024 and 128; n % block == 0)
 * RAYC_LOCAL_PEERS sets the number of peers (default 4 here).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rayc.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double a_at(long i, long k)
{
	return sin(0.001 * (double)i + 0.002 * (double)k);
}

static double b_at(long k, long j)
{
	return cos(0.003 * (double)k - 0.001 * (double)j);
}

/* (A band: bs x n row-major, B band: n x bs column-major, n, bs)
 * -> C block bs x bs row-major. */
static void mm_block(rayc_ctx *ctx)
{
	const double *a, *b;
	size_t la, lb;
	int64_t n, bs;
	double *c;

	if (rayc_arg_data(ctx, 0, (const void **)&a, &la) != RAYC_OK ||
	    rayc_arg_data(ctx, 1, (const void **)&b, &lb) != RAYC_OK ||
	    rayc_arg_i64(ctx, 2, &n) != RAYC_OK ||
	    rayc_arg_i64(ctx, 3, &bs) != RAYC_OK ||
	    la != (size_t)(n * bs) * 8 || lb != la) {
		rayc_fail(ctx, "mm_block: bad arguments");
		return;
	}
	if (rayc_return_alloc(ctx, 0, (size_t)(bs * bs) * 8, (void **)&c) !=
	    RAYC_OK) {
		rayc_fail(ctx, "mm_block: store full");
		return;
	}
	for (int64_t i = 0; i < bs; i++)
		for (int64_t j = 0; j < bs; j++) {
			const double *ar = a + i * n, *bc = b + j * n;
			double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
			int64_t k = 0;
			for (; k + 4 <= n; k += 4) {
				s0 += ar[k] * bc[k];
				s1 += ar[k + 1] * bc[k + 1];
				s2 += ar[k + 2] * bc[k + 2];
				s3 += ar[k + 3] * bc[k + 3];
			}
			for (; k < n; k++)
				s0 += ar[k] * bc[k];
			c[i * bs + j] = (s0 + s1) + (s2 + s3);
		}
}
RAYC_REMOTE(mm_block)

static int put_band(rayc_ref *out, long n, long bs, long band, int is_a)
{
	double *p;
	int rc = rayc_put_create(out, (size_t)(n * bs) * 8, (void **)&p);
	if (rc != RAYC_OK)
		return rc;
	for (long r = 0; r < bs; r++)
		for (long k = 0; k < n; k++)
			p[r * n + k] = is_a ? a_at(band * bs + r, k)
			                    : b_at(k, band * bs + r);
	return rayc_put_seal(*out);
}

int main(int argc, char **argv)
{
	/* First thing: in the peer copies rayc_init serves and never
	 * returns. */
	rayc_config cfg = { .local_peers = 4 };
	if (getenv("RAYC_LOCAL_PEERS") != NULL)
		cfg.local_peers = 0; /* the variable decides */
	double t0 = now_s();
	int rc = rayc_init(&cfg);
	if (rc != RAYC_OK) {
		fprintf(stderr, "rayc_init: %s\n", rayc_errmsg());
		return 1;
	}
	double t_up = now_s() - t0;
	long n = argc > 1 ? atol(argv[1]) : 1024;
	long bs = argc > 2 ? atol(argv[2]) : 128;
	if (n <= 0 || bs <= 0 || n % bs != 0) {
		fprintf(stderr, "usage: cluster [n] [block], n %% block == 0\n");
		rayc_shutdown();
		return 2;
	}
	long nb = n / bs, ntasks = nb * nb;
	rayc_peer_info peers[64];
	size_t np = 0;
	rayc_cluster_peers(peers, 64, &np);
	uint64_t before[64] = { 0 };
	for (size_t i = 0; i < np; i++)
		before[i] = peers[i].tasks_executed;
	printf("cluster: %zu peers up in %.0f ms (this one is %s)\n", np,
	       t_up * 1e3, rayc_address() ? rayc_address() : "alone");
	printf("multiplying %ldx%ld matrices in %ldx%ld blocks: %ld tasks\n",
	       n, n, bs, bs, ntasks);

	double t1 = now_s();
	rayc_ref *a = calloc((size_t)nb, sizeof(rayc_ref));
	rayc_ref *b = calloc((size_t)nb, sizeof(rayc_ref));
	rayc_ref *c = calloc((size_t)ntasks, sizeof(rayc_ref));
	for (long i = 0; i < nb && rc == RAYC_OK; i++) {
		rc = put_band(&a[i], n, bs, i, 1);
		if (rc == RAYC_OK)
			rc = put_band(&b[i], n, bs, i, 0);
	}
	for (long i = 0; i < nb && rc == RAYC_OK; i++)
		for (long j = 0; j < nb && rc == RAYC_OK; j++)
			rc = rayc_call(&c[i * nb + j], "mm_block",
			               RAYC_REF(a[i]), RAYC_REF(b[j]),
			               RAYC_I64(n), RAYC_I64(bs));
	if (rc != RAYC_OK) {
		fprintf(stderr, "submit: %s\n", rayc_errmsg());
		rayc_shutdown();
		return 1;
	}
	/* Progress: wait for a quarter more each time. */
	for (int q = 1; q <= 4; q++) {
		size_t want = (size_t)(ntasks * q / 4), ready = 0;
		rc = rayc_wait(c, (size_t)ntasks, want, 600000, NULL, &ready);
		if (rc != RAYC_OK) {
			fprintf(stderr, "wait: %s\n", rayc_errmsg());
			rayc_shutdown();
			return 1;
		}
		printf("  %3d%%  %zu of %ld blocks done, %.2f s\n", q * 25,
		       ready, ntasks, now_s() - t1);
		fflush(stdout);
	}
	/* Check sampled entries against a direct computation. */
	int bad = 0, samples = 64;
	unsigned seed = 12345;
	for (int s = 0; s < samples; s++) {
		seed = seed * 1103515245u + 12345u;
		long i = (long)(seed >> 8) % n;
		seed = seed * 1103515245u + 12345u;
		long j = (long)(seed >> 8) % n;
		rayc_view v;
		rc = rayc_get(c[(i / bs) * nb + j / bs], &v, 60000);
		if (rc != RAYC_OK) {
			fprintf(stderr, "get: %s\n", rayc_errmsg());
			bad++;
			break;
		}
		double got = ((const double *)v.data)[(i % bs) * bs + j % bs];
		rayc_view_release(&v);
		double want = 0;
		for (long k = 0; k < n; k++)
			want += a_at(i, k) * b_at(k, j);
		if (fabs(got - want) > 1e-9 * (1 + fabs(want)))
			bad++;
	}
	double t_all = now_s() - t1;
	printf("checked %d sampled entries: %s\n", samples,
	       bad ? "MISMATCH" : "OK");
	printf("%.2f GFLOP in %.2f s: %.2f GFLOP/s\n",
	       2.0 * n * n * n / 1e9, t_all, 2.0 * n * n * n / 1e9 / t_all);
	/* Per-peer summary: counts arrive with heartbeats. */
	struct timespec ts = { 0, 300000000 };
	nanosleep(&ts, NULL);
	rayc_cluster_peers(peers, 64, &np);
	printf("peer  pid      address                  role         tasks run\n");
	for (size_t i = 0; i < np; i++)
		printf("%-5u %-8d %-24s %-12s %llu%s\n", peers[i].id,
		       peers[i].pid, peers[i].address,
		       peers[i].is_coordinator ? "coordinator"
		       : peers[i].is_voter     ? "voter"
		                               : "standby",
		       (unsigned long long)(peers[i].tasks_executed - before[i]),
		       peers[i].id == rayc_peer_id() ? "  (driver)" : "");
	for (long i = 0; i < ntasks; i++)
		rayc_release(c[i]);
	for (long i = 0; i < nb; i++) {
		rayc_release(a[i]);
		rayc_release(b[i]);
	}
	free(a);
	free(b);
	free(c);
	rayc_shutdown();
	return bad ? 1 : 0;
}
