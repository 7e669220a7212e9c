/* os_posix.c -- Linux/POSIX implementation of lib/os/os.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <linux/futex.h>
#include <linux/magic.h>
#include <pthread.h>
#include <sched.h>
#include <spawn.h>
#include <stdlib.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "os/os.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

_Static_assert(sizeof(pthread_mutex_t) <= sizeof(((rayc__mutex *)0)->opaque),
               "rayc__mutex too small");

void rayc__mutex_init(rayc__mutex *m)
{
	pthread_mutexattr_t a;

	pthread_mutexattr_init(&a);
	/* Critical sections are short: spin a little before sleeping. */
	pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init((pthread_mutex_t *)(void *)m->opaque, &a);
	pthread_mutexattr_destroy(&a);
}

void rayc__mutex_fini(rayc__mutex *m)
{
	pthread_mutex_destroy((pthread_mutex_t *)(void *)m->opaque);
}

/* A busy mutex is spun on (reading its word, trying when it looks free)
 * for a while before the thread sleeps in the kernel: MUTEX_SPIN_NS, or
 * what rayc__mutex_lock_spin asks.  Bounded by time, not by pauses: a
 * pause takes 19 ns on the AMD EPYC VM we measure on, 4 to 40 ns
 * elsewhere.  glibc's adaptive spin (at most 100 tries, fewer as it
 * learns) gave up early enough that nearly every futex call of a burst
 * of tasks was a sleep on rt->mu or the wake-up it cost the holder:
 * 800,000 empty tasks submitted and got made 68,000 syscalls and 19,600
 * context switches, 4,700-8,400 and 2,900-6,100 with a spin of 400
 * pauses (8 us here). */
#ifndef MUTEX_SPIN_NS
#define MUTEX_SPIN_NS 8000
#endif

void rayc__mutex_lock_spin(rayc__mutex *m, int64_t spin_ns) RAYC_NO_TSA
{
	pthread_mutex_t *p = (pthread_mutex_t *)(void *)m->opaque;

	if (pthread_mutex_trylock(p) != 0) {
#ifdef __GLIBC__
		bool got = false;
		int64_t until = 0;
		/* The clock is read every 64 pauses (about 1 us here). */
		for (unsigned i = 1; !got; i++) {
			rayc__cpu_relax();
			if (__atomic_load_n(&p->__data.__lock,
			                    __ATOMIC_RELAXED) == 0 &&
			    pthread_mutex_trylock(p) == 0)
				got = true;
			else if ((i & 63) == 0) {
				int64_t now = rayc__now_ns();
				if (until == 0)
					until = now + spin_ns;
				else if (now >= until)
					break;
			}
		}
		if (!got)
#endif
			pthread_mutex_lock(p);
	}
	rayc__locks_enter();
}

void rayc__mutex_lock(rayc__mutex *m) RAYC_NO_TSA
{
	rayc__mutex_lock_spin(m, MUTEX_SPIN_NS);
}

bool rayc__mutex_trylock(rayc__mutex *m) RAYC_NO_TSA
{
	if (pthread_mutex_trylock((pthread_mutex_t *)(void *)m->opaque) != 0)
		return false;
	rayc__locks_enter();
	return true;
}

void rayc__mutex_unlock(rayc__mutex *m) RAYC_NO_TSA
{
	pthread_mutex_unlock((pthread_mutex_t *)(void *)m->opaque);
	rayc__locks_exit();
}

int rayc__thread_start(rayc__thread *t, void *(*fn)(void *), void *arg)
{
	pthread_t th;
	sigset_t all, old;
	int rc;

	/* Worker threads take no signals: the embedder's handlers run on its
	 * own threads. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&th, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
		return rayc__err(RAYC_ESYS, "pthread_create: %s", strerror(rc));
	t->handle = (unsigned long)th;
	return RAYC_OK;
}

void rayc__thread_join(rayc__thread *t)
{
	pthread_join((pthread_t)t->handle, NULL);
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val,
                  const struct timespec *ts)
{
	return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

void rayc__event_set(rayc__event *e)
{
	if (atomic_exchange(&e->state, 1) == 2)
		futex(&e->state, FUTEX_WAKE_PRIVATE, 1, NULL);
}

/* The wake-ups this thread owes, at its last unlock.  An address may be
 * woken after its waiter returned (it saw the set on its own): a futex
 * wake-up wakes nobody there, or a waiter that then waits again, which
 * takes it as spurious (the state is not 1) and waits on. */
#define OWED_MAX 16
static _Thread_local rayc__event *owed[OWED_MAX];
_Thread_local int rayc__wakes_owed;

void rayc__event_set_after_unlock(rayc__event *e)
{
	if (atomic_exchange(&e->state, 1) != 2)
		return;
	if (rayc__locks_held == 0 || rayc__wakes_owed == OWED_MAX)
		futex(&e->state, FUTEX_WAKE_PRIVATE, 1, NULL);
	else
		owed[rayc__wakes_owed++] = e;
}

void rayc__event_wake_owed(void)
{
	int n = rayc__wakes_owed;

	rayc__wakes_owed = 0;
	for (int i = 0; i < n; i++)
		futex(&owed[i]->state, FUTEX_WAKE_PRIVATE, 1, NULL);
}

void rayc__event_reset(rayc__event *e)
{
	atomic_store(&e->state, 0);
}

bool rayc__event_wait(rayc__event *e, int64_t deadline_ns, int64_t spin_ns)
{
	int64_t spin_end = rayc__now_ns() + spin_ns;
	uint32_t zero;
	int i = 0;

	if (rayc__wakes_owed != 0)
		rayc__event_wake_owed();

	for (;;) {
		if (atomic_load_explicit(&e->state, memory_order_acquire) == 1)
			break;
		if (++i % 64 == 0) {
			int64_t now = rayc__now_ns();
			if (now >= spin_end)
				goto park;
			rayc__yield();
		}
		rayc__cpu_relax();
	}
	atomic_store(&e->state, 0);
	return true;
park:
	for (;;) {
		zero = 0;
		if (!atomic_compare_exchange_strong(&e->state, &zero, 2) &&
		    zero == 1) {
			atomic_store(&e->state, 0);
			return true;
		}
		struct timespec ts, *tp = NULL;
		if (deadline_ns >= 0) {
			int64_t left = deadline_ns - rayc__now_ns();
			if (left <= 0) {
				uint32_t two = 2;
				if (atomic_compare_exchange_strong(&e->state,
				                                   &two, 0))
					return false;
				atomic_store(&e->state, 0); /* it was set */
				return true;
			}
			ts.tv_sec = left / 1000000000;
			ts.tv_nsec = left % 1000000000;
			tp = &ts;
		}
		futex(&e->state, FUTEX_WAIT_PRIVATE, 2, tp);
	}
}

bool rayc__event_wait_learn(rayc__event *e, int64_t deadline_ns,
                            int64_t max_spin_ns, rayc__spin *s)
{
	int64_t start = rayc__now_ns();
	bool ok = rayc__event_wait(e, deadline_ns,
	                           s->avg_ns <= max_spin_ns ? max_spin_ns : 0);
	int64_t took = rayc__now_ns() - start;

	/* Capped, so a long idle spell is forgotten after a few short
	 * waits. */
	if (took > 4 * max_spin_ns)
		took = 4 * max_spin_ns;
	s->avg_ns += (took - s->avg_ns) / 4;
	return ok;
}

int64_t rayc__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void rayc__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

void rayc__sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void rayc__yield(void)
{
	sched_yield();
}

int rayc__ncpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}

uint64_t rayc__phys_mem(void)
{
	long pages = sysconf(_SC_PHYS_PAGES);
	long psz = sysconf(_SC_PAGESIZE);
	return pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz
	                            : (uint64_t)1 << 30;
}

#define HUGE_BYTES ((size_t)2 << 20)

static size_t huge_round(size_t len)
{
	return (len + HUGE_BYTES - 1) & ~(HUGE_BYTES - 1);
}

void *rayc__vm_reserve(size_t len)
{
	len = huge_round(len);
	size_t span = len + HUGE_BYTES;
	char *p = mmap(NULL, span, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	/* Trimmed to a 2 MiB boundary, so that huge pages can back it. */
	char *a = (char *)(((uintptr_t)p + HUGE_BYTES - 1) &
	                   ~(uintptr_t)(HUGE_BYTES - 1));
	if (a > p)
		(void)munmap(p, (size_t)(a - p));
	if (p + span > a + len)
		(void)munmap(a + len, (size_t)(p + span - (a + len)));
#ifdef MADV_HUGEPAGE
	(void)madvise(a, len, MADV_HUGEPAGE); /* a hint: fine if refused */
#endif
	return a;
}

void rayc__vm_release(void *p, size_t len)
{
	if (p != NULL)
		(void)munmap(p, huge_round(len));
}

size_t rayc__page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

uint64_t rayc__rss_bytes(void)
{
	unsigned long size = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f == NULL)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (uint64_t)resident * rayc__page_size();
}

void rayc__thread_usage(rayc__usage *u)
{
	struct rusage ru;

	memset(u, 0, sizeof(*u));
#ifdef RUSAGE_THREAD
	if (getrusage(RUSAGE_THREAD, &ru) != 0)
		return;
	u->user_ns = (int64_t)ru.ru_utime.tv_sec * 1000000000 +
	             (int64_t)ru.ru_utime.tv_usec * 1000;
	u->sys_ns = (int64_t)ru.ru_stime.tv_sec * 1000000000 +
	            (int64_t)ru.ru_stime.tv_usec * 1000;
	u->vcsw = ru.ru_nvcsw;
	u->ivcsw = ru.ru_nivcsw;
	u->minflt = ru.ru_minflt;
	u->majflt = ru.ru_majflt;
#else
	(void)ru;
#endif
}

/* The arena is a memfd when dir is memory (tmpfs, as /dev/shm is): a
 * file with no name, so nothing can squat it, nothing is left behind by
 * a crash (no reaper, whose pid checks lie across PID namespaces), and
 * it can be sealed so no one can shrink it under a peer that maps it
 * (that peer would die of SIGBUS).  Peers of the same user on this host
 * reach it through /proc/<pid>/fd/<fd> (rayc__shm_open_ro).  Elsewhere
 * (a disk) it is an unnamed O_TMPFILE file in dir, kept to itself. */
#define ARENA_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)

static int arena_fd(const char *dir, bool *sealable)
{
	struct statfs sf;

	*sealable = false;
	if (statfs(dir, &sf) != 0)
		return -1;
	if (sf.f_type == TMPFS_MAGIC) {
		int fd = memfd_create("rayc-arena",
		                      MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (fd >= 0) {
			*sealable = true;
			return fd;
		}
	}
	return open(dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
}

int rayc__shm_open(rayc__shm *s, const char *dir, size_t size)
{
	bool sealable;

	if (strlen(dir) > RAYC__SHM_DIR_MAX)
		return rayc__err(RAYC_EINVAL, "store directory %s is %zu bytes "
		                 "long: at most %d", dir, strlen(dir),
		                 RAYC__SHM_DIR_MAX);
	int fd = arena_fd(dir, &sealable);
	memset(s, 0, sizeof(*s));
	s->fd = -1;
	s->touch_fd = -1;
	if (fd < 0)
		return rayc__err(RAYC_ESYS,
		                 "cannot create store file in %s: %s", dir,
		                 strerror(errno));
	/* A memfd starts 0777; readers check for 0600. */
	if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)size) != 0 ||
	    (sealable &&
	     fcntl(fd, F_ADD_SEALS, ARENA_SEALS | F_SEAL_SEAL) != 0)) {
		int e = errno;
		close(fd);
		return rayc__err(RAYC_ESYS, "cannot size store file in %s: %s",
		                 dir, strerror(e));
	}
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED) {
		int e = errno;
		close(fd);
		return rayc__err(RAYC_ESYS, "cannot map store file in %s: %s",
		                 dir, strerror(e));
	}
	(void)madvise(p, size, MADV_HUGEPAGE); /* honoured if shmem THP is on */
	s->fd = fd;
	s->base = p;
	s->size = size;
	s->shared = sealable;
	s->touch_fd = memfd_create("rayc-touch", MFD_CLOEXEC); /* may fail */
	snprintf(s->path, sizeof(s->path), "/proc/self/fd/%d", fd);
	return RAYC_OK;
}

void rayc__shm_close(rayc__shm *s)
{
	if (s->base == NULL)
		return;
	munmap(s->base, s->size);
	close(s->fd); /* the last reference frees the memfd's memory */
	if (s->touch_fd >= 0)
		close(s->touch_fd);
	s->base = NULL;
	s->fd = -1;
	s->touch_fd = -1;
}

int rayc__shm_reserve(rayc__shm *s, size_t off, size_t len)
{
	/* fallocate reserves tmpfs pages up front, so a full /dev/shm is an
	 * error here instead of a SIGBUS at first write. */
	if (fallocate(s->fd, 0, (off_t)off, (off_t)len) != 0 &&
	    errno != EOPNOTSUPP)
		return rayc__err(RAYC_ESTOREFULL,
		                 "store file %s: cannot back %zu bytes: %s",
		                 s->path, len, strerror(errno));
	return RAYC_OK;
}

#define POPULATE_STEP ((size_t)2 << 20)
#define TOUCH_IOVS 512 /* pages one kernel touch takes (2 MiB) */
#define TOUCH_LOOK 64 /* pages read between looks at stop */

/* Where the hypervisor keeps shadow page tables (PVM guests, as this
 * project's VMs are, and KVM without EPT), MADV_POPULATE_WRITE fills
 * the guest's page table only: the first access to each page through
 * the mapping still traps to the host, and the guest's user and kernel
 * modes have shadow tables of their own, so each traps once: ~6 us a
 * 4 KiB page here, 1.3-2 s a GiB for each.  The first writer would take
 * both, a task's memcpy the user's, a fetch's recv the kernel's, page
 * by page on the transfer's path.  Reading a byte of each page here
 * takes them now: a memset after the user's read, a read(2) into the
 * range after the kernel's, ran at ~20 GB/s instead of 0.6-0.7.  On
 * other machines it costs a TLB miss a page.  The kernel reads each
 * page by writing one byte from it to a scratch file (pwritev).  Not
 * instrumented for TSan: the bytes may be being written meanwhile, and
 * only the access matters, not the value.  False if stop was seen. */
RAYC__NO_SANITIZE_THREAD
static bool touch_pages(const rayc__shm *s, char *p, size_t len,
                        const _Atomic int *stop)
{
	size_t psz = rayc__page_size();
	struct iovec v[TOUCH_IOVS];

	for (size_t o = 0; o < len;) {
		int k = 0;
		for (; k < TOUCH_IOVS && o < len; k++, o += psz) {
			if (k % TOUCH_LOOK == 0 && stop != NULL &&
			    atomic_load_explicit(stop, memory_order_relaxed))
				return false;
			(void)((volatile const char *)p)[o];
			v[k].iov_base = p + o;
			v[k].iov_len = 1;
		}
		/* The system call itself: the sanitizers' pwritev would
		 * read the bytes as the kernel does not, racing with their
		 * writers. */
		if (s->touch_fd >= 0)
			(void)syscall(SYS_pwritev, s->touch_fd, v, k, 0L, 0L);
	}
	return true;
}

int rayc__shm_populate(rayc__shm *s, size_t off, size_t len,
                       const _Atomic int *stop)
{
	/* In steps: the kernel holds the process's mmap lock for the whole
	 * of one MADV_POPULATE_WRITE, and every other thread's mmap (a
	 * malloc) waits behind it.  One call over 1 GiB stalled them for
	 * 1.9 s on a VM that charges for first touches, long enough for a
	 * peer to be taken for dead; 2 MiB steps: a few ms at most. */
	for (size_t done = 0; done < len;) {
		size_t n = len - done < POPULATE_STEP ? len - done
		                                      : POPULATE_STEP;
		char *p = (char *)s->base + off + done;
		/* Older kernels (EINVAL): the reads below fault it in. */
		if (madvise(p, n, MADV_POPULATE_WRITE) != 0 && errno != EINVAL)
			return rayc__err(RAYC_ESTOREFULL, "populate: %s",
			                 strerror(errno));
		if (!touch_pages(s, p, n, stop))
			return RAYC_ESTATE;
		done += n;
	}
	return RAYC_OK;
}

void rayc__shm_discard(rayc__shm *s, size_t off, size_t len)
{
	(void)fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
	                (off_t)off, (off_t)len);
}

void rayc__shm_ident(const rayc__shm *s, uint64_t *dev, uint64_t *ino)
{
	uint64_t size;

	rayc__fd_ident(s->fd, &size, dev, ino);
}

void rayc__fd_ident(int fd, uint64_t *size, uint64_t *dev, uint64_t *ino)
{
	struct stat st;

	*size = *dev = *ino = 0;
	if (fd >= 0 && fstat(fd, &st) == 0) {
		*size = (uint64_t)st.st_size;
		*dev = (uint64_t)st.st_dev;
		*ino = (uint64_t)st.st_ino;
	}
}

int rayc__path_handle(const char *path)
{
	return open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
}

/* The device of the kernel's internal tmpfs, where every memfd lives. */
static uint64_t memfd_dev(void)
{
	static _Atomic uint64_t dev = UINT64_MAX;
	uint64_t d = atomic_load(&dev), size, ino;

	if (d != UINT64_MAX)
		return d;
	int fd = memfd_create("rayc-probe", MFD_CLOEXEC);
	if (fd < 0)
		return UINT64_MAX - 1; /* matches nothing */
	rayc__fd_ident(fd, &size, &d, &ino);
	close(fd);
	atomic_store(&dev, d);
	return d;
}

/* Only a peer's arena as rayc__shm_open makes it: a memfd (no name,
 * on the internal tmpfs) of our user, 0600, of the size and identity
 * announced. */
static bool is_arena(const struct stat *st, size_t size, uint64_t dev,
                     uint64_t ino)
{
	return S_ISREG(st->st_mode) && st->st_uid == geteuid() &&
	       (st->st_mode & 0077) == 0 && st->st_nlink == 0 &&
	       (uint64_t)st->st_dev == memfd_dev() &&
	       (uint64_t)st->st_dev == dev && (uint64_t)st->st_ino == ino &&
	       (uint64_t)st->st_size == size && size > 0;
}

int rayc__shm_open_ro(rayc__shm *s, int pid, int fd, size_t size,
                      uint64_t dev, uint64_t ino)
{
	char p[64], self[64];
	struct stat st;

	memset(s, 0, sizeof(*s));
	s->fd = -1;
	if (pid <= 0 || fd < 0)
		return rayc__err(RAYC_ESYS, "no arena named");
	snprintf(p, sizeof(p), "/proc/%d/fd/%d", pid, fd);
	/* O_PATH opens nothing (no driver's open, no FIFO to block on):
	 * the node is checked first, and opened only if it is an arena.
	 * The kernel lets us follow the link only into a process we could
	 * ptrace (our user's). */
	int h = open(p, O_PATH | O_CLOEXEC);
	if (h < 0)
		return rayc__err(RAYC_ESYS, "cannot reach %s: %s", p,
		                 strerror(errno));
	if (fstat(h, &st) != 0 || !is_arena(&st, size, dev, ino)) {
		close(h);
		return rayc__err(RAYC_ESYS, "%s is not the arena announced",
		                 p);
	}
	snprintf(self, sizeof(self), "/proc/self/fd/%d", h);
	int rfd = open(self, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	close(h);
	if (rfd < 0)
		return rayc__err(RAYC_ESYS, "cannot open %s: %s", p,
		                 strerror(errno));
	/* Unsealed, its holder (or anyone it gave it to) could shrink it
	 * while we read it: SIGBUS. */
	int seals = fcntl(rfd, F_GET_SEALS);
	if (fstat(rfd, &st) != 0 || !is_arena(&st, size, dev, ino) ||
	    seals < 0 || (seals & ARENA_SEALS) != ARENA_SEALS) {
		close(rfd);
		return rayc__err(RAYC_ESYS, "%s is not a sealed arena", p);
	}
	void *m = mmap(NULL, size, PROT_READ, MAP_SHARED | MAP_NORESERVE, rfd,
	               0);
	close(rfd); /* the mapping keeps the file */
	if (m == MAP_FAILED)
		return rayc__err(RAYC_ESYS, "cannot map %s: %s", p,
		                 strerror(errno));
	s->base = m;
	s->size = size;
	snprintf(s->path, sizeof(s->path), "%s", p);
	return RAYC_OK;
}

void rayc__shm_close_ro(rayc__shm *s)
{
	if (s->base != NULL)
		munmap(s->base, s->size);
	s->base = NULL;
}

void rayc__shm_prefetch(const rayc__shm *s, size_t off, size_t len)
{
	size_t start = off & ~(rayc__page_size() - 1);

	len += off - start;
	if (madvise((char *)s->base + start, len, MADV_POPULATE_READ) != 0)
		(void)madvise((char *)s->base + start, len, MADV_WILLNEED);
}

/* ---- processes ---- */

extern char **environ;

static char **self_argv(void)
{
	int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
	char *buf = NULL;
	size_t len = 0, cap = 0;

	if (fd < 0)
		return NULL;
	for (;;) {
		if (len + 4096 > cap) {
			char *nb = realloc(buf, cap + 65536);
			if (nb == NULL)
				break;
			buf = nb;
			cap += 65536;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (buf == NULL || len == 0) {
		free(buf);
		return NULL;
	}
	buf[len] = '\0';
	size_t argc = 0;
	for (size_t i = 0; i < len; i++)
		argc += buf[i] == '\0';
	/* argv array and strings in one block. */
	char **argv = malloc((argc + 1) * sizeof(char *) + len + 1);
	if (argv == NULL) {
		free(buf);
		return NULL;
	}
	char *strs = (char *)(argv + argc + 1);
	memcpy(strs, buf, len + 1);
	free(buf);
	size_t k = 0;
	for (size_t i = 0; i < len && k < argc; k++) {
		argv[k] = strs + i;
		i += strlen(strs + i) + 1;
	}
	argv[k] = NULL;
	return argv;
}

int rayc__spawn_self(const char *const *extra_env, int keep_fd)
{
	char **argv = self_argv();
	size_t nenv = 0, nextra = 0;
	int pid = -1;

	if (argv == NULL)
		return -1;
	while (environ[nenv] != NULL)
		nenv++;
	while (extra_env[nextra] != NULL)
		nextra++;
	char **envp = malloc((nenv + nextra + 1) * sizeof(char *));
	if (envp != NULL) {
		size_t k = 0;
		for (size_t i = 0; i < nenv; i++) {
			bool replaced = false;
			for (size_t j = 0; j < nextra && !replaced; j++) {
				const char *eq = strchr(extra_env[j], '=');
				size_t n = eq != NULL ? (size_t)(eq - extra_env[j]) + 1
				                      : strlen(extra_env[j]);
				replaced = strncmp(environ[i], extra_env[j], n) == 0;
			}
			if (!replaced)
				envp[k++] = environ[i];
		}
		for (size_t j = 0; j < nextra; j++)
			envp[k++] = (char *)extra_env[j];
		envp[k] = NULL;
		posix_spawn_file_actions_t fa;
		posix_spawn_file_actions_init(&fa);
		(void)keep_fd; /* inherited: created without O_CLOEXEC */
		pid_t p;
		if (posix_spawn(&p, "/proc/self/exe", &fa, NULL, argv, envp) == 0)
			pid = (int)p;
		posix_spawn_file_actions_destroy(&fa);
		free(envp);
	}
	free(argv);
	return pid;
}

int rayc__pipe_for_children(int fds[2])
{
	if (pipe(fds) != 0)
		return RAYC_ESYS;
	(void)fcntl(fds[1], F_SETFD, FD_CLOEXEC);
	return RAYC_OK;
}

bool rayc__proc_wait(int pid, int64_t deadline_ns, int *code)
{
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			if (code != NULL)
				*code = WIFEXITED(st) ? WEXITSTATUS(st)
				                      : 128 + WTERMSIG(st);
			return true;
		}
		if (r < 0 && errno != EINTR)
			return true; /* not our child any more */
		if (deadline_ns >= 0 && rayc__now_ns() >= deadline_ns)
			return false;
		rayc__sleep_ms(2);
	}
}

void rayc__proc_kill(int pid)
{
	if (pid > 0)
		(void)kill(pid, SIGKILL);
}

void rayc__close_fd(int fd)
{
	if (fd >= 0)
		close(fd);
}

void rayc__ignore_sigpipe(void)
{
	struct sigaction sa;

	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
		sa.sa_handler = SIG_IGN;
		sigemptyset(&sa.sa_mask);
		sa.sa_flags = 0;
		(void)sigaction(SIGPIPE, &sa, NULL);
	}
}

long rayc__read_fd(int fd, void *buf, size_t n)
{
	return (long)read(fd, buf, n);
}

int rayc__getpid(void)
{
	return (int)getpid();
}

void rayc__hostname(char *buf, size_t n)
{
	if (gethostname(buf, n) != 0 && n > 0)
		snprintf(buf, n, "localhost");
	if (n > 0)
		buf[n - 1] = '\0';
}

static bool sa_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) ||
		       (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) &&
		        in6->sin6_addr.s6_addr[12] == 127);
	}
	return false;
}

static bool sa_numeric(const struct sockaddr *sa, socklen_t len, char *out,
                       size_t cap)
{
	return getnameinfo(sa, len, out, (socklen_t)cap, NULL, 0,
	                   NI_NUMERICHOST) == 0;
}

bool rayc__route_source(const char *host, const char *port, char *out,
                        size_t cap)
{
	struct addrinfo hints = { .ai_socktype = SOCK_DGRAM }, *ai = NULL;
	bool ok = false;

	/* A UDP connect only picks a route and a source address; nothing
	 * goes on the wire.  192.0.2.1 (TEST-NET-1) stands for "anywhere"
	 * when there is no host to reach. */
	if (getaddrinfo(host != NULL ? host : "192.0.2.1", port != NULL ? port
	                : "9", &hints, &ai) == 0) {
		for (struct addrinfo *a = ai; a != NULL && !ok; a = a->ai_next) {
			int fd = socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			if (fd < 0)
				continue;
			if (connect(fd, a->ai_addr, a->ai_addrlen) == 0 &&
			    getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 &&
			    (host != NULL || !sa_is_loopback((void *)&ss)))
				ok = sa_numeric((struct sockaddr *)&ss, sl, out,
				                cap);
			close(fd);
		}
		freeaddrinfo(ai);
	}
	if (ok || host != NULL)
		return ok;
	struct ifaddrs *ifs = NULL;
	if (getifaddrs(&ifs) != 0)
		return false;
	for (struct ifaddrs *i = ifs; i != NULL && !ok; i = i->ifa_next)
		if (i->ifa_addr != NULL && i->ifa_addr->sa_family == AF_INET &&
		    !sa_is_loopback(i->ifa_addr))
			ok = sa_numeric(i->ifa_addr, sizeof(struct sockaddr_in),
			                out, cap);
	freeifaddrs(ifs);
	return ok;
}

bool rayc__host_is_loopback(const char *host)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
	bool lo = true;

	if (getaddrinfo(host, NULL, &hints, &ai) != 0)
		return false;
	for (struct addrinfo *a = ai; a != NULL; a = a->ai_next)
		if (!sa_is_loopback(a->ai_addr))
			lo = false;
	freeaddrinfo(ai);
	return lo;
}
