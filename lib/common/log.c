/* log.c -- the replaceable logger.  The library never prints except through
 * it; the default writes to stderr at or below the configured level. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"

static _Atomic int log_level = RAYC_LOG_WARN;
static _Atomic(rayc_log_fn) log_fn;
static void *_Atomic log_arg;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void rayc_set_logger(rayc_log_fn fn, void *arg)
{
	atomic_store(&log_arg, arg);
	atomic_store(&log_fn, fn);
}

void rayc__log_set_level(int level)
{
	atomic_store(&log_level, level);
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

void rayc__log(int level, const char *id, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	rayc_log_fn fn = atomic_load(&log_fn);

	if (fn == NULL && level > atomic_load(&log_level))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (fn != NULL) {
		fn(level, id, msg, atomic_load(&log_arg));
		return;
	}
	fprintf(stderr, "rayc %s %s: %s\n",
	        level_names[level < 0 ? 0 : level > 3 ? 3 : level], id, msg);
}
