/* os.h -- every platform call rayc makes: threads, locks, a futex-backed
 * event, clocks, memory facts and shared-memory files.  Only lib/os/
 * includes <pthread.h> or <sys/mman.h>; a port supplies this set. */
#ifndef RAYC_OS_H
#define RAYC_OS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* An opaque, suitably sized and aligned lock.  Initialised with
 * rayc__mutex_init; never copied. */
typedef struct RAYC_CAPABILITY("mutex") rayc__mutex {
	_Alignas(16) unsigned char opaque[48];
} rayc__mutex;

void rayc__mutex_init(rayc__mutex *m);
void rayc__mutex_fini(rayc__mutex *m);
void rayc__mutex_lock(rayc__mutex *m) RAYC_ACQUIRE(m);
/* The same, spinning up to spin_ns (rayc__mutex_lock: 8 us) while m is
 * busy before the thread sleeps in the kernel. */
void rayc__mutex_lock_spin(rayc__mutex *m, int64_t spin_ns) RAYC_ACQUIRE(m);
void rayc__mutex_unlock(rayc__mutex *m) RAYC_RELEASE(m);
/* Takes m if it is free; never waits. */
bool rayc__mutex_trylock(rayc__mutex *m) RAYC__TSA(try_acquire_capability(true, m));

typedef struct rayc__thread {
	unsigned long handle;
} rayc__thread;

int rayc__thread_start(rayc__thread *t, void *(*fn)(void *), void *arg);
void rayc__thread_join(rayc__thread *t);

/* A binary event on a futex: set() wakes the one thread in wait().  The
 * waiter spins briefly (yielding) before parking, so a reply that is
 * imminent costs no kernel round trip.  Zero-initialised = clear. */
typedef struct rayc__event {
	_Atomic uint32_t state; /* 0 clear, 1 set, 2 clear with a parked waiter */
} rayc__event;

void rayc__event_set(rayc__event *e);
/* rayc__event_set, but when this thread holds a rayc lock the wake-up of
 * a parked waiter (a futex call) is made at its last unlock
 * (rayc__event_wake_owed, from rayc__locks_exit): the woken thread then
 * finds the lock free, instead of sleeping on it or spinning on the CPU
 * its waker needs, and the lock is not held across the syscall.  A
 * waiter that is spinning sees the set at once either way.  The thread
 * wakes those it owes before it waits itself (rayc__event_wait). */
void rayc__event_set_after_unlock(rayc__event *e);
void rayc__event_wake_owed(void);
void rayc__event_reset(rayc__event *e);
/* Returns true when set, false at the deadline (ns, monotonic; -1 never).
 * spin_ns bounds the spinning before parking.  Consumes the set. */
bool rayc__event_wait(rayc__event *e, int64_t deadline_ns, int64_t spin_ns);

/* What a waiter learnt of its own recent waits (zero-initialised).  A
 * wait that outlasts the spin costs a string of yields for nothing (a
 * reply from another peer, a worker idle between remote tasks), so a
 * waiter whose recent waits ran longer than its spin parks at once, and
 * spins again once they are short. */
typedef struct rayc__spin {
	int64_t avg_ns; /* moving average of the waits, capped */
} rayc__spin;

/* rayc__event_wait spinning up to max_spin_ns as s advises, and s
 * taught how long this wait took. */
bool rayc__event_wait_learn(rayc__event *e, int64_t deadline_ns,
                            int64_t max_spin_ns, rayc__spin *s);

int64_t rayc__now_ns(void); /* CLOCK_MONOTONIC */
void rayc__cpu_relax(void);
void rayc__yield(void);
void rayc__sleep_ms(int ms);

int rayc__ncpus(void);
uint64_t rayc__phys_mem(void);
uint64_t rayc__rss_bytes(void); /* this process's resident set, 0 if unknown */
/* What the calling thread has used so far (zeros where unknown). */
typedef struct rayc__usage {
	int64_t user_ns, sys_ns; /* CPU time */
	long vcsw, ivcsw;        /* switched out: blocked, preempted */
	long minflt, majflt;     /* page faults */
} rayc__usage;
void rayc__thread_usage(rayc__usage *u);
size_t rayc__page_size(void);
/* Zeroed private memory of len bytes, its pages made as first touched,
 * in huge pages where the system gives them (2 MiB aligned,
 * MADV_HUGEPAGE: a first pass over it faults once per 2 MiB instead of
 * once per page).  NULL if out of address space. */
void *rayc__vm_reserve(size_t len);
void rayc__vm_release(void *p, size_t len);

/* The longest store directory rayc takes (RAYC_EINVAL beyond). */
#define RAYC__SHM_DIR_MAX 228
/* A shared-memory file mapped read-write: a sealed memfd (no name)
 * when the store directory is tmpfs, else an unnamed file in it.  path
 * is where this process reaches it (/proc/self/fd/N), for messages. */
typedef struct rayc__shm {
	int fd;
	void *base;
	size_t size;
	bool shared; /* sealed: peers on this host may map it */
	int touch_fd; /* a scratch memfd the kernel's touches write to */
	char path[64];
} rayc__shm;

int rayc__shm_open(rayc__shm *s, const char *dir, size_t size);
/* Unmaps and closes: nothing is left (no name to unlink). */
void rayc__shm_close(rayc__shm *s);
/* Reserves the file's memory for [off, off+len) (fallocate): no
 * SIGBUS at a later first write.  RAYC_ESTOREFULL if the file system
 * has no room. */
int rayc__shm_reserve(rayc__shm *s, size_t off, size_t len);
/* Makes [off, off+len), reserved, quick to write: populates it
 * (MADV_POPULATE_WRITE), then reads a byte of each page from user space
 * and from the kernel, so that neither a task's first write nor a
 * socket's receive into it traps to the hypervisor page by page (see
 * the function).  Never changes a byte: the range may be in use.  An
 * error only means the first writer will fault the pages in.  Stops
 * early, RAYC_ESTATE, once *stop (NULL: never) is set. */
int rayc__shm_populate(rayc__shm *s, size_t off, size_t len,
                       const _Atomic int *stop);
/* Gives the pages of [off, off+len) back to the system (test hook and
 * shrink).  The range reads as zeros afterwards. */
void rayc__shm_discard(rayc__shm *s, size_t off, size_t len);
/* The file's identity (device and inode), so another process can tell
 * the file it reaches is this one. */
void rayc__shm_ident(const rayc__shm *s, uint64_t *dev, uint64_t *ino);
/* Size and identity of what fd refers to (zeros if it cannot tell). */
void rayc__fd_ident(int fd, uint64_t *size, uint64_t *dev, uint64_t *ino);
/* A handle on path that opens nothing (O_PATH, a symlink not followed),
 * -1 on error.  For tests that play a hostile peer. */
int rayc__path_handle(const char *path);
/* Maps read-only the arena that process pid (same host, same user,
 * same PID namespace) holds as fd, reached as /proc/pid/fd/fd.  It is
 * checked before it is opened, so nothing else (a FIFO, a device, a
 * file by a name) is ever opened, and refused (RAYC_ESYS) unless it is
 * a memfd of our user, mode 0600, sealed against shrinking and growing,
 * of exactly size bytes with that device and inode.  The mapping stays
 * valid after the owner closes it or dies. */
int rayc__shm_open_ro(rayc__shm *s, int pid, int fd, size_t size,
                      uint64_t dev, uint64_t ino);
/* Unmaps a file opened with rayc__shm_open_ro; the file stays. */
void rayc__shm_close_ro(rayc__shm *s);
/* Asks for the pages of [off, off+len) of a read-only mapping to be
 * mapped now, in one call instead of one fault per page. */
void rayc__shm_prefetch(const rayc__shm *s, size_t off, size_t len);

/* Processes (local peers).  rayc__spawn_self starts /proc/self/exe with
 * this process's argv and environment plus extra_env ("NAME=value",
 * replacing variables of the same name), keeping keep_fd open in the
 * child.  fork+exec semantics (posix_spawn): nothing of NNG's state is
 * copied into a running child.  Returns the pid or -1. */
int rayc__spawn_self(const char *const *extra_env, int keep_fd);
/* A pipe whose read end children inherit and whose write end they do
 * not: when this process dies, every child sees EOF.  fds[0] read end. */
int rayc__pipe_for_children(int fds[2]);
/* Reaps pid if it exited by the deadline (ns, monotonic); its exit code
 * in *code (128+signal if killed). */
bool rayc__proc_wait(int pid, int64_t deadline_ns, int *code);
void rayc__proc_kill(int pid);
void rayc__close_fd(int fd);
long rayc__read_fd(int fd, void *buf, size_t n);
int rayc__getpid(void);
void rayc__hostname(char *buf, size_t n);
/* The address (numeric, IPv4 or IPv6) this host would send from to reach
 * host:port (NULL host: the default route), found without sending
 * anything; falls back to the first non-loopback interface address.
 * False if the host has none. */
bool rayc__route_source(const char *host, const char *port, char *out,
                        size_t cap);
/* True if host (a name or numeric address) resolves only to loopback. */
bool rayc__host_is_loopback(const char *host);
/* Writing to a closed connection must not kill the process. */
void rayc__ignore_sigpipe(void);

#endif /* RAYC_OS_H */
