/* err.c -- the error table's messages and the per-thread detail message. */
#include <stdatomic.h>
#include <stdio.h>

#include "testing.h"

#include "common/common.h"

static _Thread_local char errbuf[512];

const char *rayc_strerror(int err)
{
	switch (err) {
#define RAYC__ERR_STR(name, val, msg)                                          \
	case val:                                                              \
		return msg;
		RAYC_ERR_MAP(RAYC__ERR_STR)
#undef RAYC__ERR_STR
	default:
		return "unknown rayc error";
	}
}

const char *rayc_errmsg(void)
{
	return errbuf[0] != '\0' ? errbuf : "no error";
}

int rayc__err(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	return err;
}

void rayc__err_clear(void)
{
	errbuf[0] = '\0';
}

_Atomic int rayc__faults[16];

bool rayc__fault_take(int site)
{
	int n = atomic_load(&rayc__faults[site]);

	while (n > 0)
		if (atomic_compare_exchange_weak(&rayc__faults[site], &n, n - 1))
			return true;
	return false;
}

void rayc__test_fault(int site, int count)
{
	if (site >= 0 && site < 16)
		atomic_store(&rayc__faults[site], count);
}
