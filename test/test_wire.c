/* test_wire.c -- the wire's cryptography without a network: CPace (the
 * handshake's key exchange) and the frame tags of open connections. */
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "net/cpace.h"
#include "net/wire.h"
#include "testing.h"

TestSuite(wire, .timeout = 60);

static void key_of(const char *token, unsigned char key[32])
{
	/* Any 32 bytes do; mesh_life.c uses BLAKE2b(token).  A plain fill keeps
	 * this test free of libsodium's headers. */
	memset(key, 0, 32);
	for (size_t i = 0; token[i] != '\0'; i++)
		key[i % 32] = (unsigned char)(key[i % 32] * 31 + token[i]);
}

/* One exchange: acceptor with token ta, dialer with token td. */
static bool exchange(const char *ta, const char *td, rayc__cpace_keys *ka,
                     rayc__cpace_keys *kd)
{
	unsigned char keya[32], keyd[32], na[32], nd[32];
	unsigned char th[RAYC__CPACE_TH];
	rayc__cpace a, d;

	key_of(ta, keya);
	key_of(td, keyd);
	memset(na, 0xa1, sizeof(na));
	memset(nd, 0xd1, sizeof(nd));
	memset(th, 0x77, sizeof(th));
	cr_assert(rayc__cpace_start(&a, keya, na, nd));
	cr_assert(rayc__cpace_start(&d, keyd, na, nd));
	cr_assert_neq(memcmp(a.share, d.share, sizeof(a.share)), 0);
	unsigned char sa[RAYC__CPACE_SHARE], sd[RAYC__CPACE_SHARE];
	memcpy(sa, a.share, sizeof(sa));
	memcpy(sd, d.share, sizeof(sd));
	bool oka = rayc__cpace_finish(&a, sd, th, ka);
	bool okd = rayc__cpace_finish(&d, sa, th, kd);
	return oka && okd;
}

Test(wire, cpace_same_token_gives_both_sides_the_same_keys)
{
	rayc__cpace_keys ka, kd;

	cr_assert(exchange("the-token", "the-token", &ka, &kd));
	cr_assert_eq(memcmp(&ka, &kd, sizeof(ka)), 0);
	/* Four different keys: directions and confirmations apart. */
	cr_assert_neq(memcmp(ka.a2d, ka.d2a, 32), 0);
	cr_assert_neq(memcmp(ka.conf_a, ka.conf_d, 32), 0);
	cr_assert_neq(memcmp(ka.a2d, ka.conf_a, 32), 0);
	/* The confirmation MACs agree. */
	unsigned char th[RAYC__CPACE_TH], m1[32], m2[32];
	memset(th, 1, sizeof(th));
	rayc__cpace_mac(ka.conf_a, th, m1);
	rayc__cpace_mac(kd.conf_a, th, m2);
	cr_assert(rayc__cpace_mac_ok(m1, m2));
}

Test(wire, cpace_different_tokens_give_different_keys)
{
	rayc__cpace_keys ka, kd;

	cr_assert(exchange("the-token", "not-the-token", &ka, &kd));
	cr_assert_neq(memcmp(ka.a2d, kd.a2d, 32), 0);
	cr_assert_neq(memcmp(ka.d2a, kd.d2a, 32), 0);
	unsigned char th[RAYC__CPACE_TH], m1[32], m2[32];
	memset(th, 1, sizeof(th));
	rayc__cpace_mac(ka.conf_a, th, m1);
	rayc__cpace_mac(kd.conf_a, th, m2);
	cr_assert(!rayc__cpace_mac_ok(m1, m2));
}

Test(wire, cpace_sessions_with_one_token_get_fresh_keys)
{
	rayc__cpace_keys k1a, k1d, k2a, k2d;

	cr_assert(exchange("t", "t", &k1a, &k1d));
	cr_assert(exchange("t", "t", &k2a, &k2d));
	cr_assert_neq(memcmp(k1a.a2d, k2a.a2d, 32), 0);
}

Test(wire, cpace_refuses_invalid_and_identity_shares)
{
	unsigned char key[32] = { 1 }, na[32] = { 2 }, nd[32] = { 3 };
	unsigned char th[RAYC__CPACE_TH] = { 0 }, zero[32] = { 0 };
	unsigned char bad[32];
	rayc__cpace s;
	rayc__cpace_keys k;

	cr_assert(rayc__cpace_start(&s, key, na, nd));
	cr_assert(!rayc__cpace_finish(&s, zero, th, &k)); /* the identity */
	memset(bad, 0xff, sizeof(bad));
	cr_assert(rayc__cpace_start(&s, key, na, nd));
	cr_assert(!rayc__cpace_finish(&s, bad, th, &k)); /* no point */
	static const unsigned char none[32];
	cr_assert_eq(memcmp(&k, none, sizeof(none)), 0, "keys left");
}

/* A frame with its length set, payload p (n bytes). */
static void frame(uint8_t *f, const char *p, size_t n)
{
	memset(f, 0, RAYC__WIRE_HDR);
	f[5] = RAYC__MSG_TASK;
	f[8] = (uint8_t)n;
	memcpy(f + RAYC__WIRE_HDR, p, n);
}

Test(wire, tag_catches_tampering_replay_and_reordering)
{
	rayc__wauth tx = { .ctr = 0 }, rx = { .ctr = 0 };
	uint8_t f1[64], f2[64];

	memset(tx.key, 9, 32);
	memcpy(rx.key, tx.key, 32);
	frame(f1, "first frame", 11);
	frame(f2, "second frame", 12);
	rayc__wire_seal(&tx, f1, f1 + RAYC__WIRE_HDR, 11, NULL, 0);
	rayc__wire_seal(&tx, f2, f2 + RAYC__WIRE_HDR, 5,
	                f2 + RAYC__WIRE_HDR + 5, 7); /* in two pieces */
	/* In order: both pass (pieces split anywhere). */
	rayc__wauth r = rx;
	cr_assert(rayc__wire_check(&r, f1, f1 + RAYC__WIRE_HDR, 3,
	                           f1 + RAYC__WIRE_HDR + 3, 8));
	cr_assert(rayc__wire_check(&r, f2, f2 + RAYC__WIRE_HDR, 12, NULL, 0));
	/* Replayed: the first again after both. */
	cr_assert(!rayc__wire_check(&r, f1, f1 + RAYC__WIRE_HDR, 11, NULL, 0));
	/* Reordered: the second first. */
	r = rx;
	cr_assert(!rayc__wire_check(&r, f2, f2 + RAYC__WIRE_HDR, 12, NULL, 0));
	/* A flipped payload bit, or header byte. */
	r = rx;
	f1[RAYC__WIRE_HDR + 4] ^= 1;
	cr_assert(!rayc__wire_check(&r, f1, f1 + RAYC__WIRE_HDR, 11, NULL, 0));
	f1[RAYC__WIRE_HDR + 4] ^= 1;
	r = rx;
	f1[5] ^= 1;
	cr_assert(!rayc__wire_check(&r, f1, f1 + RAYC__WIRE_HDR, 11, NULL, 0));
	f1[5] ^= 1;
	r = rx;
	cr_assert(rayc__wire_check(&r, f1, f1 + RAYC__WIRE_HDR, 11, NULL, 0));
	/* The other direction's key does not pass. */
	r = rx;
	r.key[0] ^= 1;
	cr_assert(!rayc__wire_check(&r, f1, f1 + RAYC__WIRE_HDR, 11, NULL, 0));
}

/* Big frames are tagged (and encrypted, if the connection encrypts)
 * with OpenSSL's Poly1305 (and ChaCha20) where rayc is built with
 * libcrypto, small ones with libsodium's: the same functions, so a frame
 * opens whichever library sealed it, on either side (a peer built
 * without libcrypto talks to one built with it), however its payload
 * lies in pieces. */
Test(wire, big_frame_tags_are_the_same_from_either_library)
{
	const size_t sizes[] = { 100, (16 << 10) - 17, 16 << 10,
		                 (16 << 10) + 1, (1 << 20) + 13 };
	const size_t big = (1 << 20) + 13;
	uint8_t *p = malloc(big);
	rayc__wauth key = { .ctr = 5 };

	cr_assert_not_null(p);
	memset(key.key, 0x5a, sizeof(key.key));
	for (size_t i = 0; i < big; i++)
		p[i] = (uint8_t)(i * 7 + (i >> 9));
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i], cut = n / 3 + 1;
		uint8_t h1[RAYC__WIRE_HDR] = { 0 }, h2[RAYC__WIRE_HDR] = { 0 };
		rayc__wauth t1 = key, t2 = key, r = key;
		h1[5] = h2[5] = RAYC__MSG_CHUNK;
		rayc__test_wire_big_mac(true);
		rayc__wire_seal(&t1, h1, p, cut, p + cut, n - cut);
		rayc__test_wire_big_mac(false);
		rayc__wire_seal(&t2, h2, p, n, NULL, 0);
		cr_assert_eq(memcmp(h1 + RAYC__WIRE_TAG_AT, h2 + RAYC__WIRE_TAG_AT,
		                    RAYC__WIRE_TAG),
		             0, "tags of %zu bytes differ", n);
		cr_assert(rayc__wire_check(&r, h1, p, n - 1, p + n - 1, 1));
		rayc__test_wire_big_mac(true);
		r = key;
		cr_assert(rayc__wire_check(&r, h2, p, 1, p + 1, n - 1));
		/* And a changed byte fails on the fast path too. */
		p[n / 2] ^= 0x10;
		r = key;
		cr_assert(!rayc__wire_check(&r, h2, p, n, NULL, 0));
		p[n / 2] ^= 0x10;
		/* Encrypting (ChaCha20 from OpenSSL for big payloads too):
		 * the same ciphertext and tag from either, and each opens
		 * with the other. */
		uint8_t *e1 = malloc(n), *e2 = malloc(n);
		cr_assert(e1 != NULL && e2 != NULL);
		memcpy(e1, p, n);
		memcpy(e2, p, n);
		t1 = t2 = key;
		t1.enc = t2.enc = true;
		rayc__test_wire_big_mac(true);
		rayc__wire_seal_x(&t1, h1, e1, n);
		rayc__test_wire_big_mac(false);
		rayc__wire_seal_x(&t2, h2, e2, n);
		cr_assert(memcmp(e1, e2, n) == 0, "ciphertexts of %zu bytes "
		          "differ", n);
		cr_assert(memcmp(h1 + RAYC__WIRE_TAG_AT, h2 + RAYC__WIRE_TAG_AT,
		                 RAYC__WIRE_TAG) == 0);
		r = key;
		r.enc = true;
		cr_assert(rayc__wire_open(&r, h1, e1, cut, e1 + cut, n - cut));
		cr_assert(memcmp(e1, p, n) == 0, "%zu bytes: not the plaintext",
		          n);
		rayc__test_wire_big_mac(true);
		r = key;
		r.enc = true;
		cr_assert(rayc__wire_open(&r, h2, e2, n, NULL, 0));
		cr_assert(memcmp(e2, p, n) == 0);
		free(e1);
		free(e2);
	}
	free(p);
}

/* A reader over no bytes at all (NULL, 0), as over an empty buffer that
 * was never allocated: a read of nothing succeeds, any more fails, and
 * nothing is computed from the NULL pointer (UBSan: "applying zero
 * offset to null pointer", found by fuzz_wire). */
Test(wire, reader_over_no_bytes_reads_nothing)
{
	rayc__rd rd;

	rayc__rd_init(&rd, NULL, 0);
	cr_assert_not_null(rayc__r_bytes(&rd, 0));
	cr_assert_not(rd.bad);
	cr_assert_null(rayc__r_bytes(&rd, 1));
	cr_assert(rd.bad);
}

/* Encrypted frames: the payload sent is not the plaintext; the receiver
 * gets the plaintext back whether the payload arrives in one piece or
 * split anywhere (a CHUNK's sub-header, then its payload where it lands:
 * pieces that start inside a keystream block); the sub-header can be
 * read ahead of the check (rayc__wire_peek); a flipped bit fails the
 * tag; and frames of one connection never share a keystream. */
Test(wire, encrypted_frames_round_trip_in_any_pieces)
{
	enum { N = 300 };
	uint8_t plain[N], f[RAYC__WIRE_HDR + N], g[RAYC__WIRE_HDR + N];
	rayc__wauth tx = { .ctr = 5, .enc = true };

	for (size_t i = 0; i < N; i++)
		plain[i] = (uint8_t)(i * 7 + 1);
	memset(tx.key, 3, 32);
	rayc__wauth rx0 = tx;
	memset(f, 0, RAYC__WIRE_HDR);
	f[5] = RAYC__MSG_CHUNK;
	f[8] = (uint8_t)(N & 0xff);
	f[9] = (uint8_t)(N >> 8);
	memcpy(f + RAYC__WIRE_HDR, plain, N);
	rayc__wire_seal_x(&tx, f, f + RAYC__WIRE_HDR, N);
	cr_assert(memcmp(f + RAYC__WIRE_HDR, plain, N) != 0);
	size_t same = 0;
	for (size_t i = 0; i < N; i++)
		same += f[RAYC__WIRE_HDR + i] == plain[i];
	cr_assert_lt(same, 16, "%zu of %d bytes went out as they were", same,
	             N);
	/* The next frame with the same payload: another keystream. */
	memcpy(g, f, RAYC__WIRE_HDR);
	memcpy(g + RAYC__WIRE_HDR, plain, N);
	rayc__wire_seal_x(&tx, g, g + RAYC__WIRE_HDR, N);
	cr_assert(memcmp(f + RAYC__WIRE_HDR, g + RAYC__WIRE_HDR, N) != 0);
	size_t cuts[] = { 0, 1, 33, 63, 64, 65, 127, 200, N };
	for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
		uint8_t c[RAYC__WIRE_HDR + N];
		memcpy(c, f, sizeof(c));
		rayc__wauth r = rx0;
		if (cuts[k] >= 33) {
			uint8_t sub[33];
			memcpy(sub, c + RAYC__WIRE_HDR, 33);
			rayc__wire_peek(&r, sub, 33, 0);
			cr_assert(memcmp(sub, plain, 33) == 0);
		}
		size_t a = cuts[k];
		cr_assert(rayc__wire_open(&r, c, c + RAYC__WIRE_HDR, a,
		                          c + RAYC__WIRE_HDR + a, N - a),
		          "cut at %zu", a);
		cr_assert(memcmp(c + RAYC__WIRE_HDR, plain, N) == 0,
		          "cut at %zu: not the plaintext", a);
	}
	/* One flipped bit of ciphertext: refused, nothing decrypted. */
	rayc__wauth r = rx0;
	f[RAYC__WIRE_HDR + 100] ^= 4;
	cr_assert(!rayc__wire_open(&r, f, f + RAYC__WIRE_HDR, N, NULL, 0));
}
