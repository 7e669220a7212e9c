/* test_store.c -- the object store: TLSF arena allocation, growth,
 * coalescing, full and oversize stores, zero-copy gets, and 1,000,000
 * put/release cycles that leave usage and RSS at baseline. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "store/store.h"
#include "testing.h"

TestSuite(store, .timeout = 120);

static char dir[] = "/dev/shm";

Test(store, alloc_free_coalesces_to_one_block)
{
	rayc__store *s;
	rayc__block *b[64];
	rayc__store_stats st;

	cr_assert_eq(rayc__store_open(&s, dir, (size_t)64 << 20, 0), RAYC_OK);
	for (int i = 0; i < 64; i++) {
		cr_assert_eq(rayc__store_alloc(s, 1000 + (size_t)i * 4096,
		                               &b[i]),
		             RAYC_OK);
		cr_assert_eq(rayc__store_block_offset(b[i]) % 64, 0);
		memset(rayc__store_ptr(s, b[i]), i, 1000 + (size_t)i * 4096);
	}
	/* Blocks do not overlap: each still holds its own byte. */
	for (int i = 0; i < 64; i++) {
		unsigned char *p = rayc__store_ptr(s, b[i]);
		cr_assert_eq(p[0], (unsigned char)i);
		cr_assert_eq(p[999 + (size_t)i * 4096], (unsigned char)i);
	}
	for (int i = 0; i < 64; i += 2)
		rayc__store_free(s, b[i]);
	for (int i = 1; i < 64; i += 2)
		rayc__store_free(s, b[i]);
	rayc__store_stats_get(s, &st);
	cr_assert_eq(st.used, 0);
	cr_assert_eq(st.blocks, 1, "free neighbours merged: %lu blocks",
	             (unsigned long)st.blocks);
	rayc__store_close(s);
}

Test(store, full_store_returns_error_and_recovers)
{
	rayc__store *s;
	rayc__block *b[8];
	int n = 0;

	cr_assert_eq(rayc__store_open(&s, dir, (size_t)8 << 20, 0), RAYC_OK);
	int rc;
	while ((rc = rayc__store_alloc(s, (size_t)3 << 20, &b[n])) == RAYC_OK)
		n++;
	cr_assert_eq(rc, RAYC_ESTOREFULL);
	cr_assert_eq(n, 2);
	rayc__block *big;
	cr_assert_eq(rayc__store_alloc(s, (size_t)9 << 20, &big), RAYC_ETOOBIG);
	rayc__store_free(s, b[0]);
	cr_assert_eq(rayc__store_alloc(s, (size_t)3 << 20, &b[0]), RAYC_OK);
	for (int i = 0; i < n; i++)
		rayc__store_free(s, b[i]);
	rayc__store_close(s);
}

Test(store, put_get_is_zero_copy_and_pinned)
{
	rt_start(2);
	size_t n = (size_t)4 << 20;
	char *buf = malloc(n);
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)(i * 7);
	rayc_ref r;
	cr_assert_eq(rayc_put(&r, buf, n), RAYC_OK);
	rayc_view v1, v2;
	cr_assert_eq(rayc_get(r, &v1, 0), RAYC_OK);
	cr_assert_eq(rayc_get(r, &v2, 0), RAYC_OK);
	cr_assert_eq(v1.data, v2.data, "same mapping, no copy");
	cr_assert_eq(v1.len, n);
	cr_assert_eq(memcmp(v1.data, buf, n), 0);
	/* Releasing the ref keeps the pinned data readable. */
	rayc_release(r);
	cr_assert_eq(memcmp(v2.data, buf, n), 0);
	rayc_view_release(&v1);
	rayc_view_release(&v2);
	rayc_view_release(&v2); /* harmless */
	rayc_stats st;
	rayc_stats_get(&st);
	cr_assert_eq(st.store_used_bytes, 0);
	cr_assert_eq(st.objects, 0);
	free(buf);
	rt_stop();
}

Test(store, create_write_in_place_seal)
{
	rt_start(2);
	rayc_ref r;
	void *p;
	cr_assert_eq(rayc_put_create(&r, 100000, &p), RAYC_OK);
	rayc_view v;
	cr_assert_eq(rayc_get(r, &v, 0), RAYC_ETIMEDOUT, "unsealed");
	memset(p, 'x', 100000);
	cr_assert_eq(rayc_put_seal(r), RAYC_OK);
	cr_assert_eq(rayc_put_seal(r), RAYC_ESTATE);
	cr_assert_eq(rayc_get(r, &v, 0), RAYC_OK);
	cr_assert_eq(v.data, p, "the bytes written in place");
	cr_assert_eq(((const char *)v.data)[99999], 'x');
	rayc_view_release(&v);
	rayc_release(r);
	cr_assert_eq(rayc_put_create(&r, 5000, &p), RAYC_OK);
	cr_assert_eq(rayc_put_abort(r), RAYC_OK);
	rayc_stats st;
	rayc_stats_get(&st);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.store_used_bytes, 0);
	rt_stop();
}

Test(store, full_store_put_fails_cleanly_and_keeps_data)
{
	rayc_config c = { .num_workers = 1, .store_bytes = (size_t)8 << 20 };
	cr_assert_eq(rayc_init(&c), RAYC_OK);
	size_t n = (size_t)3 << 20;
	char *buf = malloc(n);
	memset(buf, 'a', n);
	rayc_ref a, b, d;
	cr_assert_eq(rayc_put(&a, buf, n), RAYC_OK);
	memset(buf, 'b', n);
	cr_assert_eq(rayc_put(&b, buf, n), RAYC_OK);
	cr_assert_eq(rayc_put(&d, buf, n), RAYC_ESTOREFULL, "%s",
	             rayc_errmsg());
	cr_assert_eq(rayc_put(&d, buf, (size_t)64 << 20), RAYC_ETOOBIG);
	rayc_view v;
	cr_assert_eq(rayc_get(a, &v, 0), RAYC_OK);
	cr_assert_eq(((const char *)v.data)[n - 1], 'a');
	rayc_view_release(&v);
	rayc_release(a);
	cr_assert_eq(rayc_put(&d, buf, n), RAYC_OK, "space reused");
	rayc_release(b);
	rayc_release(d);
	free(buf);
	rt_stop();
}

/* 1,000,000 put/release cycles of small (inline) and arena objects. */
Test(store, million_put_release_cycles_leave_usage_at_baseline)
{
	rt_start(2);
	char small[64], big[4096];
	memset(small, 1, sizeof(small));
	memset(big, 2, sizeof(big));
	rayc_ref r;
	for (int i = 0; i < 10000; i++) { /* warm up */
		cr_assert_eq(rayc_put(&r, big, sizeof(big)), RAYC_OK);
		rayc_release(r);
	}
	rayc_stats st0, st;
	rayc_stats_get(&st0);
	long rss0 = (long)rayc__test_rss();
	for (int i = 0; i < 1000000; i++) {
		const void *p = (i & 1) ? (const void *)small : big;
		size_t n = (i & 1) ? sizeof(small) : (i % 4 == 0 ? 8 : 4096);
		cr_assert_eq(rayc_put(&r, p, n), RAYC_OK);
		cr_assert_eq(rayc_release(r), RAYC_OK);
	}
	rayc_stats_get(&st);
	long rss1 = (long)rayc__test_rss();
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.store_used_bytes, 0);
	cr_assert_eq(st.inline_bytes, 0);
	cr_assert_eq(st.store_populated_bytes, st0.store_populated_bytes,
	             "no growth");
#ifndef RAYC_TEST_ASAN /* ASan's quarantine keeps freed memory resident */
	cr_assert_lt(rss1 - rss0, 8L << 20, "RSS grew by %ld bytes",
	             rss1 - rss0);
#else
	(void)rss0;
	(void)rss1;
#endif
	rt_stop();
}

Test(store, shutdown_removes_arena_file)
{
	rt_start(2);
	char path[300];
	snprintf(path, sizeof(path), "%s", rayc__test_store_path());
	struct stat sb;
	cr_assert_eq(stat(path, &sb), 0, "%s exists while running", path);
	rt_stop();
	cr_assert_neq(stat(path, &sb), 0, "%s removed at shutdown", path);
}

/* An arena file left by a process that died without rayc_shutdown is
 * removed by the next peer that starts in the same directory. */
Test(store, stale_arena_of_dead_process_is_reaped)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	cr_assert_gt(pid, 0);
	waitpid(pid, NULL, 0);
	char path[64];
	snprintf(path, sizeof(path), "/dev/shm/rayc-%d-7", (int)pid);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fclose(f);
	char live[64];
	snprintf(live, sizeof(live), "/dev/shm/rayc-%d-99", (int)getpid());
	f = fopen(live, "w");
	cr_assert_not_null(f);
	fclose(f);
	rt_start(1);
	struct stat sb;
	cr_assert_neq(stat(path, &sb), 0, "dead process's file removed");
	cr_assert_eq(stat(live, &sb), 0, "a live process's file is kept");
	unlink(live);
	rt_stop();
}
