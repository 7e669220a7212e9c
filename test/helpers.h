/* helpers.h -- shared fixtures for rayc's Criterion suites: start and
 * stop a peer around each test, and check for leaks when built with a
 * sanitizer (LSan only fails a test if the test asks). */
#ifndef RAYC_TEST_HELPERS_H
#define RAYC_TEST_HELPERS_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <time.h>

#include "rayc.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RAYC_TEST_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define RAYC_TEST_ASAN 1
#endif

#ifdef RAYC_TEST_ASAN
#include <sanitizer/lsan_interface.h>
static inline void rt_leak_check(void)
{
	cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked");
}
#else
static inline void rt_leak_check(void)
{
}
#endif

static inline void rt_start(int workers)
{
	rayc_config c = { .num_workers = workers,
	                  .store_bytes = (size_t)256 << 20,
	                  .prefault_bytes = (size_t)4 << 20 };
	int rc = rayc_init(&c);
	cr_assert_eq(rc, RAYC_OK, "rayc_init: %s (%s)", rayc_strerror(rc),
	             rayc_errmsg());
}

static inline void rt_stop(void)
{
	cr_assert_eq(rayc_shutdown(), RAYC_OK);
	rt_leak_check();
}

static inline void rt_init2(void)
{
	rt_start(2);
}

static inline int64_t rt_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void rt_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	nanosleep(&ts, NULL);
}

/* Polls cond every millisecond until it holds or ms pass. */
#define RT_WAIT_FOR(cond, ms)                                                  \
	do {                                                                   \
		int64_t rt_deadline_ = rt_now_ms() + (ms);                     \
		while (!(cond) && rt_now_ms() < rt_deadline_) {                \
			struct timespec rt_ts_ = { 0, 1000000 };               \
			nanosleep(&rt_ts_, NULL);                              \
		}                                                              \
	} while (0)

static inline int64_t get_i64(rayc_ref r)
{
	int64_t v = -1;
	int rc = rayc_get_i64(r, &v, 30000);
	cr_assert_eq(rc, RAYC_OK, "get: %s (%s)", rayc_strerror(rc),
	             rayc_errmsg());
	return v;
}

#endif
