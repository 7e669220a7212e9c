/* log.c -- the replaceable logger.  The library never prints except through
 * it; the default writes to stderr at or below the configured level. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"

static _Atomic int log_level = RAYC_LOG_WARN;
static _Atomic(rayc_log_fn) log_fn;
static void *_Atomic log_arg;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

_Thread_local int rayc__locks_held;
_Thread_local bool rayc__log_deferred;
_Thread_local bool rayc__unlock_pending;
static void (*_Atomic unlock_hook)(void);

void rayc__set_unlock_hook(void (*fn)(void))
{
	atomic_store(&unlock_hook, fn);
}

void *_Atomic rayc__handoff;
struct rayc__obj *_Atomic rayc__handoff_objs;
_Atomic bool rayc__handoff_kick;
static void (*_Atomic handoff_hook)(void);

void rayc__set_handoff_hook(void (*fn)(void))
{
	atomic_store(&handoff_hook, fn);
}

void rayc__handoff_run(void)
{
	static _Thread_local bool running;
	void (*fn)(void) = atomic_load(&handoff_hook);

	if (running || fn == NULL)
		return; /* the hook's own unlocks */
	running = true;
	fn();
	running = false;
}

/* This thread's last rayc lock was let go: what waited for that. */
void rayc__unlocked(void)
{
	if (rayc__unlock_pending) {
		rayc__unlock_pending = false;
		void (*fn)(void) = atomic_load(&unlock_hook);
		if (fn != NULL)
			fn();
	}
	if (rayc__log_deferred)
		rayc__log_flush();
}

/* Messages logged under a lock, oldest first, until the last unlock.  ids
 * are string literals, so only the message is copied. */
#define DEFER_MAX 64
typedef struct deferred {
	struct deferred *next;
	int level;
	const char *id;
	char msg[];
} deferred;
static _Thread_local deferred *defer_head, *defer_tail;
static _Thread_local int defer_n, defer_dropped;

void rayc_set_logger(rayc_log_fn fn, void *arg)
{
	atomic_store(&log_arg, arg);
	atomic_store(&log_fn, fn);
}

void rayc__log_set_level(int level)
{
	atomic_store(&log_level, level);
}

bool rayc__log_enabled(int level)
{
	return atomic_load(&log_fn) != NULL || level <= atomic_load(&log_level);
}

int rayc__log_parse_level(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return i;
	if (s[0] >= '0' && s[0] <= '3' && s[1] == '\0')
		return s[0] - '0';
	return -1;
}

static void emit(int level, const char *id, const char *msg)
{
	rayc_log_fn fn = atomic_load(&log_fn);

	if (fn != NULL) {
		fn(level, id, msg, atomic_load(&log_arg));
		return;
	}
	fprintf(stderr, "rayc %s %s: %s\n",
	        level_names[level < 0 ? 0 : level > 3 ? 3 : level], id, msg);
}

static void defer(int level, const char *id, const char *msg)
{
	size_t n = strlen(msg) + 1;
	deferred *d = defer_n < DEFER_MAX ? malloc(sizeof(*d) + n) : NULL;

	rayc__log_deferred = true;
	if (d == NULL) {
		defer_dropped++;
		return;
	}
	d->next = NULL;
	d->level = level;
	d->id = id;
	memcpy(d->msg, msg, n);
	if (defer_tail != NULL)
		defer_tail->next = d;
	else
		defer_head = d;
	defer_tail = d;
	defer_n++;
}

void rayc__log_flush(void)
{
	/* Take the queue first: the logger may log, or take rayc locks. */
	deferred *d = defer_head;
	int dropped = defer_dropped;

	defer_head = defer_tail = NULL;
	defer_n = defer_dropped = 0;
	rayc__log_deferred = false;
	while (d != NULL) {
		deferred *next = d->next;
		emit(d->level, d->id, d->msg);
		free(d);
		d = next;
	}
	if (dropped > 0)
		rayc__log(RAYC_LOG_WARN, "RAYC-LOG-DROPPED",
		          "%d log messages dropped (more than %d while a lock "
		          "was held)", dropped, DEFER_MAX);
}

void rayc__log(int level, const char *id, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (atomic_load(&log_fn) == NULL && level > atomic_load(&log_level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (rayc__locks_held > 0)
		defer(level, id, msg); /* the last unlock emits it */
	else
		emit(level, id, msg);
}
