/* common.h -- shared plumbing every rayc module uses: errors, logging,
 * annotations and small helpers.  Includes the public header, never the
 * reverse. */
#ifndef RAYC_COMMON_H
#define RAYC_COMMON_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rayc.h"

#define RAYC__LIKELY(x) __builtin_expect(!!(x), 1)
#define RAYC__UNLIKELY(x) __builtin_expect(!!(x), 0)

#define RAYC__CONTAINER_OF(ptr, type, member)                                  \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

/* Clang thread-safety annotations; they vanish on other compilers. */
#if defined(__clang__)
#define RAYC__TSA(x) __attribute__((x))
#else
#define RAYC__TSA(x)
#endif
#define RAYC_CAPABILITY(x) RAYC__TSA(capability(x))
/* In C, clang cannot name a sibling field inside a struct's attribute, so
 * GUARDED_BY documents the lock without being checked. */
#define RAYC_GUARDED_BY(x)
#define RAYC_PT_GUARDED_BY(x)
#define RAYC_REQUIRES(...) RAYC__TSA(requires_capability(__VA_ARGS__))
#define RAYC_EXCLUDES(...) RAYC__TSA(locks_excluded(__VA_ARGS__))
#define RAYC_ACQUIRE(...) RAYC__TSA(acquire_capability(__VA_ARGS__))
#define RAYC_RELEASE(...) RAYC__TSA(release_capability(__VA_ARGS__))
#define RAYC_NO_TSA RAYC__TSA(no_thread_safety_analysis)

/* A function TSan leaves uninstrumented: it reads memory others may be
 * writing, for the access alone (os_posix.c: touch_pages). */
#if defined(__clang__) || defined(__GNUC__)
#define RAYC__NO_SANITIZE_THREAD __attribute__((no_sanitize("thread")))
#else
#define RAYC__NO_SANITIZE_THREAD
#endif

/* The highest rayc_err (codes a peer sends are checked against it). */
#define RAYC__ERR_LAST RAYC_EPEERDIED

/* Records a detailed message for rayc_errmsg() on this thread and returns
 * err, so a failing path reads `return rayc__err(RAYC_EINVAL, "...")`. */
int rayc__err(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Clears the calling thread's message (a call that succeeded). */
void rayc__err_clear(void);

/* Logging through the embedder's logger (rayc_set_logger).  id is a
 * stable message id like "RAYC-STORE-FULL". */
void rayc__log(int level, const char *id, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void rayc__log_set_level(int level);
/* Whether a message at level would go anywhere (skip costly ones). */
bool rayc__log_enabled(int level);
int rayc__log_parse_level(const char *s); /* -1 if unknown */

/* The logger is user code: it must never run with a rayc lock held (a
 * logger that calls rayc_stats_get would deadlock).  The lock wrappers in
 * lib/os count the locks this thread holds; rayc__log under a lock only
 * formats the message and queues it, and the last unlock hands the queue
 * to the logger. */
extern _Thread_local int rayc__locks_held;
extern _Thread_local bool rayc__log_deferred;
void rayc__log_flush(void);
/* The same for other work that must not run under a lock (the net's
 * sends: a thread holding rt->mu only queues its frames): whoever defers
 * such work sets rayc__unlock_pending, and the thread's last unlock runs
 * the hook the higher room registered. */
extern _Thread_local bool rayc__unlock_pending;
void rayc__set_unlock_hook(void (*fn)(void));
void rayc__unlocked(void);
/* Work queued without any lock for whoever next lets go of its last
 * lock: tasks submitted, and batch runs to complete, while rt->mu was
 * busy (lib/sched/submit.c keeps its stack here, newest first; one
 * runtime per process); and objects whose last ref to let go
 * (lib/lineage, rayc__obj_unpin).  A submitter
 * pushes, then tries the lock; a holder lets go, then looks here: with a
 * full fence between on both sides, one of them sees the other. */
extern void *_Atomic rayc__handoff;
struct rayc__obj;
extern struct rayc__obj *_Atomic rayc__handoff_objs;
/* And a wake-up owed to an idle worker (lib/sched/direct.c: a direct
 * task queued while rt->mu was busy). */
extern _Atomic bool rayc__handoff_kick;
void rayc__set_handoff_hook(void (*fn)(void));
void rayc__handoff_run(void);
/* Whether any of them is pending, loaded with order mo. */
static inline bool rayc__handoff_pending(memory_order mo)
{
	return atomic_load_explicit(&rayc__handoff, mo) != NULL ||
	       atomic_load_explicit(&rayc__handoff_objs, mo) != NULL ||
	       atomic_load_explicit(&rayc__handoff_kick, mo);
}
/* The fence of that protocol.  On x86 the locked instruction that pushed
 * or unlocked is one already. */
static inline void rayc__fence_store_load(void)
{
#if defined(__x86_64__) || defined(__i386__)
	atomic_signal_fence(memory_order_seq_cst);
#else
	atomic_thread_fence(memory_order_seq_cst);
#endif
}
static inline void rayc__locks_enter(void)
{
	rayc__locks_held++;
}
/* Futex wake-ups put off to the last unlock (os.h:
 * rayc__event_set_after_unlock). */
extern _Thread_local int rayc__wakes_owed;
void rayc__event_wake_owed(void);
static inline void rayc__locks_exit(void)
{
	if (--rayc__locks_held == 0) {
		if (RAYC__UNLIKELY(rayc__wakes_owed != 0))
			rayc__event_wake_owed();
		if (RAYC__UNLIKELY(rayc__log_deferred || rayc__unlock_pending))
			rayc__unlocked();
		rayc__fence_store_load();
		if (RAYC__UNLIKELY(rayc__handoff_pending(memory_order_relaxed)))
			rayc__handoff_run();
	}
}

/* Fault injection (lib/testing.h names the sites): true if a test asked
 * this pass of site to fail.  One relaxed load when nothing is armed. */
extern _Atomic int rayc__faults[16];
bool rayc__fault_take(int site);
static inline bool rayc__fault(int site)
{
	return RAYC__UNLIKELY(atomic_load_explicit(&rayc__faults[site],
	                                           memory_order_relaxed) > 0) &&
	       rayc__fault_take(site);
}

/* Resource quantities are fixed point: 1000 units = 1.0. */
#define RAYC__RES_SCALE 1000
static inline int64_t rayc__res_from_double(double q)
{
	return (int64_t)(q * RAYC__RES_SCALE + 0.5);
}
static inline double rayc__res_to_double(int64_t q)
{
	return (double)q / RAYC__RES_SCALE;
}

/* Parses "GPU=1,disk=2.5" into at most max name/quantity pairs.  Names
 * are copied into buf (bufsize bytes).  Returns count or -1 on error. */
int rayc__parse_resources(const char *s, rayc_resource *out, int max,
                          char *buf, size_t bufsize);

static inline bool rayc__oid_eq(rayc_object_id a, rayc_object_id b)
{
	return a.hi == b.hi && a.lo == b.lo;
}

#endif /* RAYC_COMMON_H */
