/* fuzz_msgs.c -- every message an authenticated member can send, through
 * the frame reader of an open connection (lib/net/conn.c) into the
 * decoders and handlers behind the tag: membership, heartbeats, tasks
 * and their results, object transfers, references, same-host offers,
 * the KV, and Raft messages (ctl_codec.c), whose log entries and
 * snapshots raft then hands to the state machine (ctl_fsm.c) on the
 * loop thread.  The harness tags each frame as the peer would, so
 * payloads get past the tag; the fuzzer chooses everything else.
 *
 * Input: byte 0 is the size of the pieces the frames arrive in (0: at
 * once); then records [sel u8][len u16 LE][payload]: sel's low bits pick
 * the type (types[]), bit 7 spoils the frame's tag after sealing (the
 * connection must close there). */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rayc.h"
#include "samples.h"
#include "testing.h"

/* What the connection may carry; SHUTDOWN, REMOVED and LEAVE are left
 * out: each ends the one runtime every input shares. */
static const uint8_t types[] = {
	RAYC__MSG_HELLO, RAYC__MSG_AUTH, RAYC__MSG_WELCOME, RAYC__MSG_REFUSED,
	RAYC__MSG_JOIN, RAYC__MSG_JOINED, RAYC__MSG_MEMBERS,
	RAYC__MSG_HEARTBEAT, RAYC__MSG_TASK, RAYC__MSG_TASK_DONE,
	RAYC__MSG_FETCH, RAYC__MSG_CHUNK, RAYC__MSG_MISSING, RAYC__MSG_FREE,
	RAYC__MSG_BORROW_ADD, RAYC__MSG_BORROW_DEL, RAYC__MSG_KV_REQ,
	RAYC__MSG_KV_REP, RAYC__MSG_RAFT, RAYC__MSG_SHM_OFFER,
	RAYC__MSG_SHM_SUM, RAYC__MSG_SHM_DONE, RAYC__MSG_CONFIRM,
	RAYC__MSG_ACTOR_CTL, RAYC__MSG_ACTOR_CTL_REP, RAYC__MSG_LANE,
	RAYC__MSG_GROUP, RAYC__MSG_ACK,
};
#define NTYPES (sizeof(types) / sizeof(types[0]))

static int sel_of(int type)
{
	for (size_t i = 0; i < NTYPES; i++)
		if (types[i] == type)
			return (int)i;
	return 0;
}

static void record(rayc__wbuf *b, int type, const rayc__wbuf *p)
{
	size_t n = p->len > 0xffff ? 0xffff : p->len;

	rayc__w_u8(b, (uint8_t)sel_of(type));
	rayc__w_u8(b, (uint8_t)n);
	rayc__w_u8(b, (uint8_t)(n >> 8));
	rayc__w_bytes(b, p->p, n);
}

/* One seed per sample, and all of them in one input. */
static void seeds(const char *dir)
{
	fuzz_sample s[64];
	int n = fuzz_samples(s, 64, FUZZ_PEER);
	rayc__wbuf all = { 0 };

	rayc__w_u8(&all, 0);
	for (int i = 0; i < n; i++) {
		rayc__wbuf b = { 0 };
		rayc__w_u8(&b, 0);
		record(&b, s[i].type, &s[i].p);
		fuzz_seed(dir, s[i].name, b.p, b.len);
		if (s[i].type != RAYC__MSG_REFUSED)
			record(&all, s[i].type, &s[i].p);
		rayc__wbuf_fini(&b);
	}
	fuzz_seed(dir, "all", all.p, all.len);
	rayc__wbuf_fini(&all);
	/* One GROUP of every sample that may travel in one. */
	rayc__wbuf g = { 0 }, in = { 0 };
	for (int i = 0; i < n; i++) {
		if (!rayc__wire_groupable(s[i].type))
			continue;
		size_t f = rayc__w_frame_begin(&in, s[i].type, FUZZ_PEER);
		rayc__w_bytes(&in, s[i].p.p, s[i].p.len);
		rayc__w_frame_end(&in, f);
	}
	rayc__w_u8(&g, 0);
	record(&g, RAYC__MSG_GROUP, &in);
	fuzz_seed(dir, "group", g.p, g.len);
	rayc__wbuf_fini(&g);
	rayc__wbuf_fini(&in);
	fuzz_samples_free(s, n);
	fuzz_seed_done();
}


int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_sample s[64];

	(void)argc;
	(void)argv;
	fuzz_runtime();
	if (fuzz_seed_dir() != NULL)
		seeds(fuzz_seed_dir());
	/* Registers the function sample TASKs call. */
	fuzz_samples_free(s, fuzz_samples(s, 64, FUZZ_PEER));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rayc__wauth tx = { .ctr = 0 };
	rayc__wbuf b = { 0 };

	if (size == 0)
		return 0;
	memcpy(tx.key, fuzz_key, sizeof(tx.key));
	size_t piece = data[0], off = 1;
	while (off < size) {
		uint8_t sel = data[off++];
		size_t n = 0;
		if (size - off >= 2)
			n = (size_t)data[off] | (size_t)data[off + 1] << 8;
		off += size - off >= 2 ? 2 : size - off;
		if (n > size - off)
			n = size - off;
		int type = types[(sel & 0x7f) % NTYPES];
		size_t at = b.len;
		fuzz_frame(&b, &tx, type, FUZZ_PEER,
		           data + off, n);
		if (sel & 0x80 && !b.bad)
			b.p[at + RAYC__WIRE_TAG_AT] ^= 1;
		off += n;
	}
	if (!b.bad)
		(void)rayc__test_rx(RAYC__TEST_RX_OPEN, FUZZ_PEER, fuzz_key,
		                    b.p, b.len, piece);
	rayc__wbuf_fini(&b);
	return 0;
}
