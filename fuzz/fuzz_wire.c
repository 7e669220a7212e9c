/* fuzz_wire.c -- the wire codec (lib/net/wire.c): the header parser, the
 * bounds-checked reader driven by a program of reads over the input, the
 * writer reading back what it wrote, and frame tags over split pieces.
 *
 * Input: byte 0 is the number of reads k (mod 64), the next k bytes the
 * reads, the rest the payload they read (the first 32 bytes of the
 * input also go to the header parser). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"

enum { OP_U8, OP_U32, OP_U64, OP_STR, OP_BLOB, OP_BYTES, OP_N };

/* What one read got, to write it back. */
typedef struct got {
	int op;
	uint64_t v;
	const void *p;
	size_t n;
	char s[64];
} got;

static void check_header(const uint8_t *p, size_t n)
{
	rayc__whdr h;

	if (n < RAYC__WIRE_HDR)
		return;
	size_t max = p[7] & 1 ? RAYC__WIRE_MAX_FRAME : RAYC__WIRE_MAX_PREAUTH;
	if (rayc__whdr_parse(p, max, &h) &&
	    (h.len > max || h.type == 0 || h.type >= RAYC__MSG_MAX_))
		abort(); /* accepted what it must refuse */
}

/* Runs the reads; each result is checked against the reader's rules. */
static size_t run_reads(rayc__rd *rd, const uint8_t *ops, size_t k,
                        got *g)
{
	size_t ng = 0;

	for (size_t i = 0; i < k; i++) {
		int op = ops[i] % OP_N;
		size_t before = rd->off, cap = (size_t)(ops[i] >> 3) % 64 + 1;
		got *x = &g[ng];
		x->op = op;
		switch (op) {
		case OP_U8:
			x->v = rayc__r_u8(rd);
			break;
		case OP_U32:
			x->v = rayc__r_u32(rd);
			break;
		case OP_U64:
			x->v = rayc__r_u64(rd);
			break;
		case OP_STR:
			memset(x->s, 0x5a, sizeof(x->s));
			rayc__r_str(rd, x->s, cap);
			if (!rd->bad && (memchr(x->s, 0, cap) == NULL))
				abort(); /* not terminated within cap */
			x->n = cap;
			break;
		case OP_BLOB:
			x->p = rayc__r_blob(rd, &x->n);
			if (!rd->bad && x->n > 0 &&
			    ((const uint8_t *)x->p < rd->p ||
			     (const uint8_t *)x->p + x->n > rd->p + rd->n))
				abort(); /* outside the payload */
			break;
		default:
			x->n = ops[i] >> 3;
			x->p = rayc__r_bytes(rd, x->n);
			if ((x->p == NULL) != rd->bad)
				abort();
			break;
		}
		if (rd->off > rd->n || (rd->bad && rayc__rd_left(rd) != 0) ||
		    (!rd->bad && rd->off < before))
			abort();
		if (rd->bad)
			break;
		ng++;
	}
	return ng;
}

/* Writes back what was read: reading that gives the same values. */
static void write_back(const got *g, size_t ng)
{
	rayc__wbuf b = { 0 };
	rayc__rd rd;

	for (size_t i = 0; i < ng; i++) {
		switch (g[i].op) {
		case OP_U8: rayc__w_u8(&b, (uint8_t)g[i].v); break;
		case OP_U32: rayc__w_u32(&b, (uint32_t)g[i].v); break;
		case OP_U64: rayc__w_u64(&b, g[i].v); break;
		case OP_STR: rayc__w_str(&b, g[i].s); break;
		case OP_BLOB: rayc__w_blob(&b, g[i].p, g[i].n); break;
		default: rayc__w_bytes(&b, g[i].p, g[i].n); break;
		}
	}
	if (b.bad)
		abort();
	rayc__rd_init(&rd, b.p, b.len);
	for (size_t i = 0; i < ng; i++) {
		char s[64];
		size_t n;
		const void *p;
		switch (g[i].op) {
		case OP_U8: if (rayc__r_u8(&rd) != g[i].v) abort(); break;
		case OP_U32: if (rayc__r_u32(&rd) != g[i].v) abort(); break;
		case OP_U64: if (rayc__r_u64(&rd) != g[i].v) abort(); break;
		case OP_STR:
			rayc__r_str(&rd, s, g[i].n);
			if (rd.bad || strcmp(s, g[i].s) != 0)
				abort();
			break;
		case OP_BLOB:
			p = rayc__r_blob(&rd, &n);
			if (rd.bad || n != g[i].n ||
			    (n > 0 && memcmp(p, g[i].p, n) != 0))
				abort();
			break;
		default:
			p = rayc__r_bytes(&rd, g[i].n);
			if (p == NULL || memcmp(p, g[i].p, g[i].n) != 0)
				abort();
			break;
		}
	}
	if (rd.bad || rayc__rd_left(&rd) != 0)
		abort();
	rayc__wbuf_fini(&b);
}

/* A tag over the payload split in two anywhere checks over another
 * split, the sums likewise; one changed byte fails the check. */
static void check_tags(const uint8_t *p, size_t n)
{
	rayc__wauth tx = { .ctr = 7 }, rx = { .ctr = 7 }, rx2 = { .ctr = 7 };
	uint8_t hdr[RAYC__WIRE_HDR] = { 0 };
	size_t a = n > 0 ? p[0] % (n + 1) : 0, b = n > 1 ? p[1] % (n + 1) : 0;

	memcpy(tx.key, fuzz_key, 32);
	memcpy(rx.key, fuzz_key, 32);
	memcpy(rx2.key, fuzz_key, 32);
	if (rayc__wire_sum(p, n) != rayc__wire_sum2(p, a, p + a, n - a))
		abort();
	rayc__wire_seal(&tx, hdr, p, a, p + a, n - a);
	if (!rayc__wire_check(&rx, hdr, p, b, p + b, n - b))
		abort();
	if (n == 0)
		return;
	uint8_t *q = malloc(n);
	if (q == NULL)
		return;
	memcpy(q, p, n);
	q[b % n] ^= (uint8_t)(p[n - 1] | 1);
	if (rayc__wire_check(&rx2, hdr, q, n, NULL, 0))
		abort();
	free(q);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *dir = fuzz_seed_dir();

	(void)argc;
	(void)argv;
	if (dir == NULL)
		return 0;
	/* A frame header, then reads of every kind over what a writer
	 * wrote. */
	rayc__wbuf b = { 0 };
	uint8_t ops[] = { 6, OP_U8, OP_U32, OP_U64, OP_STR | 8 << 3, OP_BLOB,
		          OP_BYTES | 4 << 3 };
	rayc__w_bytes(&b, ops, sizeof(ops));
	rayc__w_u8(&b, 7);
	rayc__w_u32(&b, 0x01020304);
	rayc__w_u64(&b, 1ull << 40);
	rayc__w_str(&b, "peer");
	rayc__w_blob(&b, "blob", 4);
	rayc__w_bytes(&b, "four", 4);
	fuzz_seed(dir, "reads", b.p, b.len);
	b.len = 0;
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_HELLO, 0);
	rayc__w_bytes(&b, fuzz_key, 32);
	rayc__w_frame_end(&b, f);
	fuzz_seed(dir, "header", b.p, b.len);
	rayc__wbuf_fini(&b);
	fuzz_seed_done();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	got g[64];

	check_header(data, size);
	check_tags(data, size);
	if (size == 0)
		return 0;
	size_t k = data[0] % 64;
	if (k > size - 1)
		k = size - 1;
	rayc__rd rd;
	rayc__rd_init(&rd, data + 1 + k, size - 1 - k);
	size_t ng = run_reads(&rd, data + 1, k, g);
	write_back(g, ng);
	return 0;
}
