/* test_store.c -- the object store: TLSF arena allocation, growth,
 * coalescing, full and oversize stores, zero-copy gets, and 1,000,000
 * put/release cycles that leave usage and RSS at baseline. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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

static uint64_t warm_bytes(rayc__store *s, uint64_t *populated)
{
	rayc__store_stats st;

	rayc__store_stats_get(s, &st);
	*populated = st.populated;
	return st.warm;
}

/* Pages of [p, p+n) mapped in this process (/proc/self/pagemap's
 * present bit): what populating does, and fallocate alone does not. */
static size_t pages_mapped(const void *p, size_t n)
{
	long psz = sysconf(_SC_PAGESIZE);
	size_t first = (uintptr_t)p / (size_t)psz, count = n / (size_t)psz;
	uint64_t *e = malloc(count * sizeof(*e));
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	cr_assert(e != NULL && fd >= 0);
	cr_assert_eq(pread(fd, e, count * sizeof(*e),
	                   (off_t)(first * sizeof(*e))),
	             (ssize_t)(count * sizeof(*e)));
	close(fd);
	size_t mapped = 0;
	for (size_t i = 0; i < count; i++)
		mapped += (e[i] >> 63) & 1;
	free(e);
	return mapped;
}

/* Waits up to a minute for the store's thread to have warmed all that
 * was handed out. */
static void wait_all_warm(rayc__store *s)
{
	uint64_t populated = 0, warm = 0;

	RT_WAIT_FOR((warm = warm_bytes(s, &populated)) == populated, 60000);
	cr_assert_eq(warm, populated, "%llu of %llu bytes warmed",
	             (unsigned long long)warm,
	             (unsigned long long)populated);
}

/* A growth of 32 MiB or more is handed out before it is warm, and the
 * store's thread warms it: every page mapped, no byte changed.  The
 * first growth starts the thread, the second finds it waiting. */
Test(store, a_large_growth_is_warmed_by_the_store_thread)
{
	rayc__store *s;
	rayc__block *b[2];
	size_t n[2] = { (size_t)48 << 20, (size_t)96 << 20 }, sum = 0;
	uint64_t populated;

	cr_assert_eq(rayc__store_open(&s, dir, (size_t)256 << 20, 0), RAYC_OK);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(rayc__store_alloc(s, n[i], &b[i]), RAYC_OK);
		(void)warm_bytes(s, &populated);
		cr_assert_geq(populated, sum += n[i]);
		wait_all_warm(s);
		unsigned char *p = rayc__store_ptr(s, b[i]);
		cr_assert_eq(pages_mapped(p, n[i]),
		             n[i] / (size_t)sysconf(_SC_PAGESIZE),
		             "the store's thread populated block %d", i);
		for (size_t o = 0; o < n[i]; o += 4096)
			cr_assert_eq(p[o], 0, "byte %zu changed", o);
	}
	for (int i = 0; i < 2; i++)
		rayc__store_free(s, b[i]);
	rayc__store_close(s);
}

/* Its first writer warms each piece before writing it, as a fetch does,
 * while the store's thread warms from the other end: every byte written
 * stays written. */
Test(store, a_writer_and_the_store_thread_meet_without_a_byte_lost)
{
	rayc__store *s;
	rayc__block *b;
	size_t mib = (size_t)1 << 20, n = 192 * mib;

	cr_assert_eq(rayc__store_open(&s, dir, (size_t)256 << 20, 0), RAYC_OK);
	cr_assert_eq(rayc__store_alloc(s, n, &b), RAYC_OK);
	unsigned char *p = rayc__store_ptr(s, b);
	for (size_t i = 0; i < n / mib; i++) {
		rayc__store_warm(s, p + i * mib, mib);
		memset(p + i * mib, (int)(i * 7 + 1) & 0xff, mib);
	}
	wait_all_warm(s);
	for (size_t i = 0; i < n / mib; i++) {
		unsigned char v = (unsigned char)((i * 7 + 1) & 0xff);
		for (size_t o = 0; o < mib; o++)
			if (p[i * mib + o] != v)
				cr_assert_fail("byte %zu is %d, not %d", i * mib + o,
				         p[i * mib + o], v);
	}
	rayc__store_warm(s, &n, sizeof(n)); /* not the arena's: nothing */
	rayc__store_free(s, b);
	rayc__store_close(s);
}

/* Closing a store while its thread warms a growth (the prefault's or a
 * large one's) stops and joins the thread: nothing hangs, and under
 * ASan nothing is left behind. */
Test(store, closing_while_a_growth_is_warmed)
{
	for (int round = 0; round < 8; round++) {
		rayc__store *s;
		rayc__block *b;
		cr_assert_eq(rayc__store_open(&s, dir, (size_t)512 << 20,
		                              (size_t)8 << 20),
		             RAYC_OK);
		cr_assert_eq(rayc__store_alloc(s, (size_t)384 << 20, &b),
		             RAYC_OK);
		rayc__store_free(s, b);
		rayc__store_close(s);
	}
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
	ino_t ino = sb.st_ino;
	rt_stop();
	cr_assert(stat(path, &sb) != 0 || sb.st_ino != ino,
	          "%s removed at shutdown", path);
}

/* A byte from fd within 20 s ('T' if none came). */
static char read_byte(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c = 'T';
	if (poll(&p, 1, 20000) == 1 && read(fd, &c, 1) != 1)
		c = 'E';
	return c;
}

static bool shm_has_file_of(pid_t pid)
{
	char pre[64];
	snprintf(pre, sizeof(pre), "rayc-%d-", (int)pid);
	DIR *d = opendir("/dev/shm");
	struct dirent *e;
	bool found = false;
	while (d != NULL && (e = readdir(d)) != NULL)
		found |= strncmp(e->d_name, pre, strlen(pre)) == 0;
	if (d != NULL)
		closedir(d);
	return found;
}

/* A crash cannot run rayc_shutdown: the arena must not outlive its
 * process anyway (nothing is left for anyone to reap). */
Test(store, arena_of_a_killed_process_leaves_no_file)
{
	int up[2];
	cr_assert_eq(pipe(up), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		rayc__store *s;
		char r = rayc__store_open(&s, dir, (size_t)8 << 20, 0) ==
		                         RAYC_OK
		                 ? 'R'
		                 : 'F';
		(void)!write(up[1], &r, 1);
		for (;;)
			pause();
	}
	close(up[1]);
	cr_assert_eq(read_byte(up[0]), 'R');
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(up[0]);
	cr_assert_not(shm_has_file_of(pid), "the killed process's arena "
	              "file is left in /dev/shm");
}

/* Names of ours in the shared directory, made first by someone else
 * (here: made by us, given to another user), do not stop a peer. */
Test(store, squatted_arena_names_do_not_stop_a_peer)
{
	char p[64];
	int me = (int)getpid();
	for (int i = 0; i < 32; i++) {
		snprintf(p, sizeof(p), "/dev/shm/rayc-%d-%d", me, i);
		int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		cr_assert_geq(fd, 0, "%s", p);
		(void)!fchown(fd, 65534, 65534);
		close(fd);
	}
	rayc__store *s = NULL;
	int rc = rayc__store_open(&s, dir, (size_t)8 << 20, 0);
	for (int i = 0; i < 32; i++) {
		snprintf(p, sizeof(p), "/dev/shm/rayc-%d-%d", me, i);
		unlink(p);
	}
	cr_assert_eq(rc, RAYC_OK, "%s", rayc_errmsg());
	rayc__store_close(s);
}

/* A file whose name only starts like an arena's is not ours to delete. */
Test(store, files_that_look_like_arenas_are_kept)
{
	const char *p = "/dev/shm/rayc-99999999-1.important-backup.tar";
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	close(fd);
	rayc__store *s;
	cr_assert_eq(rayc__store_open(&s, dir, (size_t)8 << 20, 0), RAYC_OK);
	struct stat sb;
	int kept = stat(p, &sb);
	unlink(p);
	rayc__store_close(s);
	cr_assert_eq(kept, 0, "%s was deleted", p);
}

/* A live peer in another PID namespace (a container sharing /dev/shm)
 * whose pid there is dead here keeps its arena when a peer starts
 * here: pids lie across namespaces. */
Test(store, live_peer_in_another_pid_namespace_keeps_its_arena)
{
	pid_t dead = fork(); /* a pid no process has here */
	if (dead == 0)
		_exit(0);
	cr_assert_gt(dead, 1);
	waitpid(dead, NULL, 0);
	int up[2], go[2];
	cr_assert_eq(pipe(up), 0);
	cr_assert_eq(pipe(go), 0);
	pid_t c = fork();
	cr_assert_geq(c, 0);
	if (c == 0) {
		close(up[0]);
		close(go[1]);
		if (unshare(CLONE_NEWPID) != 0)
			_exit(write(up[1], "S", 1) != 1);
		pid_t init = fork(); /* pid 1 there */
		if (init == 0) {
			int fd = open("/proc/sys/kernel/ns_last_pid", O_WRONLY);
			if (fd >= 0) {
				dprintf(fd, "%d", (int)dead - 1);
				close(fd);
			}
			pid_t p = fork();
			if (p == 0) {
				rayc__store *s;
				struct stat a, b;
				if (getpid() != dead ||
				    rayc__store_open(&s, dir, (size_t)8 << 20,
				                     0) != RAYC_OK ||
				    stat(rayc__store_path(s), &a) != 0)
					_exit(write(up[1], "S", 1) != 1);
				(void)!write(up[1], "R", 1);
				char x = read_byte(go[0]);
				bool ok = x == 'g' &&
				          stat(rayc__store_path(s), &b) == 0 &&
				          b.st_ino == a.st_ino &&
				          b.st_nlink == a.st_nlink;
				(void)!write(up[1], ok ? "K" : "L", 1);
				rayc__store_close(s);
				_exit(0);
			}
			waitpid(p, NULL, 0);
			_exit(0);
		}
		waitpid(init, NULL, 0);
		_exit(0);
	}
	close(up[1]);
	close(go[0]);
	char r = read_byte(up[0]);
	if (r == 'S') {
		waitpid(c, NULL, 0);
		cr_skip_test("no PID namespace (needs root)");
	}
	cr_assert_eq(r, 'R', "the peer in the other namespace did not start");
	rayc__store *s;
	cr_assert_eq(rayc__store_open(&s, dir, (size_t)8 << 20, 0), RAYC_OK);
	(void)!write(go[1], "g", 1);
	r = read_byte(up[0]);
	rayc__store_close(s);
	waitpid(c, NULL, 0);
	cr_assert_eq(r, 'K', "the live peer's arena was removed");
}

/* A fetcher maps only a sealed arena: an unsealed memfd of ours, which
 * whoever holds it could shrink under the reader, is refused. */
Test(store, view_refuses_an_unsealed_file)
{
	const size_t n = (size_t)1 << 20;
	int fd = memfd_create("rayc-unsealed", MFD_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fchmod(fd, 0600), 0);
	cr_assert_eq(ftruncate(fd, (off_t)n), 0);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	rayc__store_ident id = { .pid = (int32_t)getpid(), .fd = fd,
		                 .size = n, .dev = (uint64_t)st.st_dev,
		                 .ino = (uint64_t)st.st_ino };
	rayc__store_view *v = NULL;
	cr_assert_eq(rayc__store_view_open(&v, &id), RAYC_ESYS);
	close(fd);
}

/* Whoever can reach a peer's arena file must not be able to shrink it
 * under a reader that maps it: that reader would die of SIGBUS. */
Test(store, truncating_an_arena_under_a_reader_cannot_kill_it)
{
	rayc__store *s;
	rayc__block *b;
	const size_t n = (size_t)1 << 20;

	cr_assert_eq(rayc__store_open(&s, dir, (size_t)8 << 20, 0), RAYC_OK);
	cr_assert_eq(rayc__store_alloc(s, n, &b), RAYC_OK);
	memset(rayc__store_ptr(s, b), 7, n);
	rayc__store_ident id;
	rayc__store_ident_get(s, &id);
	rayc__store_view *v;
	cr_assert_eq(rayc__store_view_open(&v, &id), RAYC_OK, "%s",
	             rayc_errmsg());
	const volatile uint8_t *p =
	        rayc__store_view_range(v, rayc__store_block_offset(b), n);
	cr_assert_not_null(p);
	int fd = open(rayc__store_path(s), O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0, "%s", rayc__store_path(s));
	(void)!ftruncate(fd, 0);
	close(fd);
	size_t sevens = 0;
	for (size_t i = 0; i < n; i++)
		sevens += p[i] == 7;
	cr_assert_eq(sevens, n);
	rayc__store_view_release(v);
	rayc__store_free(s, b);
	rayc__store_close(s);
}
