/* fuzz_decode.c -- the decoders of what the control store keeps, called
 * directly rather than behind a frame and raft (fuzz_msgs reaches them
 * that way too, but only as raft lets it): the committed membership as
 * JOINED and snapshots carry it (members.c rayc__net_read_members, only
 * checked, never applied) and a snapshot's KV table (kv.c
 * rayc__kv_table_read).
 *
 * Input: byte 0 picks the decoder (bit 0), the rest is what it reads. */
#include "fuzz.h"
#include "net/net_int.h"
#include "rayc.h"
#include "rt.h"

static rayc__net *net;

static void seeds(const char *dir)
{
	rayc__wbuf b = { 0 };

	rayc__w_u8(&b, 0);
	rayc__mutex_lock(&net->mu);
	rayc__net_write_members_locked(net, &b);
	rayc__mutex_unlock(&net->mu);
	fuzz_seed(dir, "members", b.p, b.len);
	b.len = 0;
	rayc__w_u8(&b, 1);
	rayc__w_u32(&b, 2);
	rayc__w_u32(&b, 3);
	rayc__w_bytes(&b, "key", 3);
	rayc__w_blob(&b, "value", 5);
	rayc__w_u32(&b, 4);
	rayc__w_bytes(&b, "key2", 4);
	rayc__w_blob(&b, "", 0);
	fuzz_seed(dir, "kv", b.p, b.len);
	rayc__wbuf_fini(&b);
	fuzz_seed_done();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_runtime();
	net = rayc__net_get(rayc__g); /* held for the process's life */
	if (net == NULL)
		return 1;
	if (fuzz_seed_dir() != NULL)
		seeds(fuzz_seed_dir());
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	rayc__rd rd;

	if (size == 0)
		return 0;
	rayc__rd_init(&rd, data + 1, size - 1);
	if (data[0] & 1) {
		rayc__kv_table t;
		if (rayc__kv_table_read(&rd, &t) == RAYC_OK)
			rayc__kv_table_free(&t);
	} else {
		rayc__gone gone[RAYC__MAX_PEERS];
		int ngone = 0;
		(void)rayc__net_read_members(net, &rd, false, gone, &ngone);
	}
	return 0;
}
