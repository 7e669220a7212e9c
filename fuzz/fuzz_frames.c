/* fuzz_frames.c -- the frame reader (lib/net/conn.c rx_run) of a
 * connection before it opens, over raw bytes: what anyone who can reach
 * the port can send.  Frame headers, the 512-byte cap before
 * authentication, xxh3 checks, frames split across receives, and the
 * handshake's decoders (lib/net/handshake.c) on either side, up to the
 * key confirmation MACs a fuzzer cannot forge.
 *
 * Input: byte 0 picks the side (bit 0: accepted or dialed) and the
 * size of the pieces the bytes arrive in (the rest of it; 0: at once);
 * the rest is what arrives. */
#include <string.h>

#include "fuzz.h"
#include "net/cpace.h"
#include "rayc.h"
#include "testing.h"

/* A valid CPace share (any key and nonces): a handshake frame carrying
 * it gets past the share's checks to the MAC. */
static void share(unsigned char out[RAYC__CPACE_SHARE])
{
	unsigned char key[32] = { 1 }, na[32] = { 2 }, nd[32] = { 3 };
	rayc__cpace cp;

	if (!rayc__cpace_start(&cp, key, na, nd))
		memset(out, 0, RAYC__CPACE_SHARE);
	else
		memcpy(out, cp.share, RAYC__CPACE_SHARE);
}

/* What a dialer sends an acceptor (AUTH, CONFIRM) and an acceptor a
 * dialer (HELLO, WELCOME), with their real layouts; the MACs are wrong,
 * as a fuzzer's always are. */
static void seeds(const char *dir)
{
	unsigned char nonce[32], sh[RAYC__CPACE_SHARE], mac[RAYC__CPACE_MAC];
	rayc__wbuf b = { 0 }, p = { 0 };

	memset(nonce, 0x4e, sizeof(nonce));
	memset(mac, 0x4d, sizeof(mac));
	share(sh);
	/* Accepted: AUTH (nonce, share, id, gen, encryption), CONFIRM (MAC,
	 * key, signature). */
	rayc__w_u8(&b, 0);
	rayc__w_bytes(&p, nonce, 32);
	rayc__w_bytes(&p, sh, sizeof(sh));
	rayc__w_u32(&p, 0);
	rayc__w_u64(&p, 0);
	rayc__w_u8(&p, 0);
	fuzz_frame(&b, NULL, RAYC__MSG_AUTH, 0, p.p, p.len);
	fuzz_seed(dir, "acceptor_auth", b.p, b.len);
	unsigned char confirm[RAYC__CPACE_MAC + 32 + 64];
	memset(confirm, 0x4d, sizeof(confirm));
	fuzz_frame(&b, NULL, RAYC__MSG_CONFIRM, 0, confirm, sizeof(confirm));
	fuzz_seed(dir, "acceptor_auth_confirm", b.p, b.len);
	b.p[0] = 6; /* the same in pieces of 3 bytes */
	fuzz_seed(dir, "acceptor_pieces", b.p, b.len);
	/* Dialed: HELLO (nonce), WELCOME (share, hidden fields, MAC). */
	b.len = 0;
	rayc__w_u8(&b, 1);
	fuzz_frame(&b, NULL, RAYC__MSG_HELLO, 0, nonce, 32);
	fuzz_seed(dir, "dialer_hello", b.p, b.len);
	p.len = 0;
	rayc__w_bytes(&p, sh, sizeof(sh));
	rayc__w_bytes(&p, nonce, 24); /* hidden id, gen, coord, url */
	rayc__w_bytes(&p, mac, sizeof(mac));
	fuzz_frame(&b, NULL, RAYC__MSG_WELCOME, 1, p.p, p.len);
	fuzz_seed(dir, "dialer_hello_welcome", b.p, b.len);
	/* Either side: REFUSED. */
	b.len = 0;
	rayc__w_u8(&b, 0);
	p.len = 0;
	rayc__w_str(&p, "wrong token");
	fuzz_frame(&b, NULL, RAYC__MSG_REFUSED, 0, p.p, p.len);
	fuzz_seed(dir, "refused", b.p, b.len);
	rayc__wbuf_fini(&b);
	rayc__wbuf_fini(&p);
	fuzz_seed_done();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (fuzz_seed_dir() != NULL)
		seeds(fuzz_seed_dir());
	fuzz_runtime();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	int how = data[0] & 1 ? RAYC__TEST_RX_DIALER : RAYC__TEST_RX_ACCEPTOR;
	size_t piece = data[0] >> 1;
	(void)rayc__test_rx(how, 3, NULL, data + 1, size - 1,
	                    piece);
	return 0;
}
