/* test_frames.c -- every message type an open connection carries,
 * truncated at every length and with one or two bytes changed, through
 * the frame reader and the handlers of a one-peer runtime (the
 * connection is fed, not received: rayc__test_rx).  Each must be
 * refused or handled: under ASan this finds reads past a payload, and
 * leaks at exit. */
#include <stdlib.h>
#include <string.h>

#include "../fuzz/fuzz.h"
#include "../fuzz/samples.h"
#include "helpers.h"
#include "testing.h"

static void up(void)
{
	rayc_config c = { .num_workers = 1,
		          .store_bytes = (size_t)64 << 20,
		          .listen = "tcp://127.0.0.1:0",
		          .token = "rayc-frames-test",
		          .log_level = RAYC_LOG_ERROR + 1 };
	cr_assert_eq(rayc_init(&c), RAYC_OK, "rayc_init: %s", rayc_errmsg());
}

static void down(void)
{
	rayc_shutdown();
}

TestSuite(frames, .init = up, .fini = down, .timeout = 240);

/* One frame of type with payload p, n, tagged as FUZZ_PEER would;
 * whether the reader closed the connection. */
static int feed(int type, const void *p, size_t n)
{
	rayc__wauth tx = { .ctr = 0 };
	rayc__wbuf b = { 0 };

	memcpy(tx.key, fuzz_key, sizeof(tx.key));
	fuzz_frame(&b, &tx, type, FUZZ_PEER, p, n);
	cr_assert_not(b.bad);
	int rc = rayc__test_rx(RAYC__TEST_RX_OPEN, FUZZ_PEER, fuzz_key, b.p,
	                       b.len, 0);
	rayc__wbuf_fini(&b);
	cr_assert(rc == 0 || rc == 1, "rayc__test_rx: %d", rc);
	return rc;
}

/* The runtime still answers: nothing fed to it broke it. */
static void still_works(void)
{
	void *v = NULL;
	size_t len = 0;

	cr_assert_eq(rayc_kv_put("frames-test", "ok", 2), RAYC_OK, "%s",
	             rayc_errmsg());
	cr_assert_eq(rayc_kv_get("frames-test", &v, &len), RAYC_OK);
	cr_assert_eq(len, 2);
	free(v);
}


Test(frames, every_message_truncated_at_every_length_is_refused_or_handled)
{
	fuzz_sample s[64];
	int n = fuzz_samples(s, 64, FUZZ_PEER);

	cr_assert_gt(n, 20);
	for (int i = 0; i < n; i++) {
		for (size_t len = 0; len <= s[i].p.len; len++)
			(void)feed(s[i].type, s[i].p.p, len);
	}
	fuzz_samples_free(s, n);
	still_works();
}

Test(frames, every_message_with_bytes_changed_is_refused_or_handled)
{
	fuzz_sample s[64];
	int n = fuzz_samples(s, 64, FUZZ_PEER);
	static const uint8_t xors[] = { 0x01, 0x80, 0xff };

	for (int i = 0; i < n; i++) {
		size_t len = s[i].p.len;
		uint8_t *q = malloc(len + 1);
		cr_assert_not_null(q);
		for (size_t at = 0; at < len; at++) {
			for (int x = 0; x < 3; x++) {
				/* One byte, then that and the next. */
				memcpy(q, s[i].p.p, len);
				q[at] ^= xors[x];
				(void)feed(s[i].type, q, len);
				if (at + 1 < len) {
					q[at + 1] ^= xors[2 - x];
					(void)feed(s[i].type, q, len);
				}
			}
		}
		free(q);
	}
	fuzz_samples_free(s, n);
	still_works();
}

/* A frame whose tag does not check closes the connection before its
 * payload is looked at. */
Test(frames, a_frame_with_a_bad_tag_closes_the_connection)
{
	fuzz_sample s[64];
	int n = fuzz_samples(s, 64, FUZZ_PEER);
	rayc__wauth tx = { .ctr = 0 };

	memcpy(tx.key, fuzz_key, sizeof(tx.key));
	for (int i = 0; i < n; i++) {
		rayc__wbuf b = { 0 };
		fuzz_frame(&b, &tx, s[i].type, FUZZ_PEER, s[i].p.p, s[i].p.len);
		b.p[RAYC__WIRE_TAG_AT] ^= 1;
		tx.ctr = 0;
		cr_assert_eq(rayc__test_rx(RAYC__TEST_RX_OPEN, FUZZ_PEER,
		                           fuzz_key, b.p, b.len, 0), 1,
		             "%s", s[i].name);
		rayc__wbuf_fini(&b);
	}
	fuzz_samples_free(s, n);
}

/* A copy of the sample TASK's payload (free it), *len bytes. */
static uint8_t *task_sample(size_t *len)
{
	fuzz_sample s[64];
	int n = fuzz_samples(s, 64, FUZZ_PEER);
	uint8_t *q = NULL;

	for (int i = 0; i < n && q == NULL; i++) {
		if (strcmp(s[i].name, "task") != 0)
			continue;
		*len = s[i].p.len;
		q = malloc(*len);
		cr_assert_not_null(q);
		memcpy(q, s[i].p.p, *len);
	}
	fuzz_samples_free(s, n);
	cr_assert_not_null(q, "no sample TASK");
	return q;
}

/* A TASK whose id has any of the low 16 bits set (those of its returns'
 * ids) is refused: its returns would share one id, and the object table
 * held that id thousands of times (fuzz_msgs: uthash then doubled its
 * buckets up to a 2 GiB allocation).  Before, this TASK was run; the same
 * one with a proper id still is. */
Test(frames, a_task_whose_returns_would_share_an_id_is_refused)
{
	size_t len;
	uint8_t *q = task_sample(&len);

	cr_assert_eq(feed(RAYC__MSG_TASK, q, len), 0,
	             "a proper TASK was refused");
	/* Task id: hi (8 bytes), then lo: its lowest byte set. */
	q[8] = 0xff;
	cr_assert_eq(feed(RAYC__MSG_TASK, q, len), 1,
	             "a TASK whose returns share an id was taken");
	free(q);
	still_works();
}

/* A TASK whose argument is a ref sent inline with the type of a string:
 * before, the executor took it for a by-value string and wrote a
 * terminator through the ref's null pointer (fuzz_msgs: UBSan, then
 * SIGSEGV).  Now it is handled like any inline ref. */
Test(frames, a_task_with_an_inline_ref_typed_as_a_string_is_handled)
{
	size_t len;
	uint8_t *q = task_sample(&len);

	/* The sample ends with the inline ref: type, blob (u64, "inline"). */
	cr_assert_eq(q[len - 15], RAYC_TYPE_BYTES);
	q[len - 15] = RAYC_TYPE_STR;
	(void)feed(RAYC__MSG_TASK, q, len);
	free(q);
	still_works();
}
