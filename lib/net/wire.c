/* wire.c -- frame header and the bounds-checked codec (see wire.h). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#ifdef RAYC_HAVE_LIBCRYPTO
#include <openssl/evp.h>
#endif

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "net/wire.h"
#include "testing.h"

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

bool rayc__whdr_parse(const uint8_t *p, size_t max_len, rayc__whdr *h)
{
	h->magic = (uint32_t)get_le(p, 4);
	h->version = p[4];
	h->type = p[5];
	h->flags = (uint16_t)get_le(p + 6, 2);
	h->len = (uint32_t)get_le(p + 8, 4);
	h->sender = (uint32_t)get_le(p + 12, 4);
	h->sum = get_le(p + 16, 8);
	h->spare = get_le(p + 24, 8);
	return h->magic == RAYC__WIRE_MAGIC && h->version == RAYC__WIRE_VERSION &&
	       h->type > 0 && h->type < RAYC__MSG_MAX_ && h->len <= max_len;
}

void rayc__wbuf_fini(rayc__wbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

bool rayc__wbuf_reserve(rayc__wbuf *b, size_t more)
{
	if (b->bad)
		return false;
	if (b->len + more <= b->cap)
		return true;
	/* Doubled for many small appends; one big one gets what it asks
	 * for, not up to twice that (a 17 MiB frame is not 32 MiB).  The
	 * first 512 bytes: most frames fit, and glibc serves that size from
	 * its per-thread cache. */
	size_t cap = b->cap ? 2 * b->cap : 512;
	if (cap < b->len + more)
		cap = b->len + more;
	uint8_t *p = realloc(b->p, cap);
	if (p == NULL) {
		b->bad = true;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void rayc__w_bytes(rayc__wbuf *b, const void *p, size_t n)
{
	if (n == 0 || !rayc__wbuf_reserve(b, n))
		return;
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

void rayc__w_u8(rayc__wbuf *b, uint8_t v)
{
	rayc__w_bytes(b, &v, 1);
}

void rayc__w_u32(rayc__wbuf *b, uint32_t v)
{
	uint8_t t[4];

	put_le(t, v, 4);
	rayc__w_bytes(b, t, 4);
}

void rayc__w_u64(rayc__wbuf *b, uint64_t v)
{
	uint8_t t[8];

	put_le(t, v, 8);
	rayc__w_bytes(b, t, 8);
}

void rayc__w_str(rayc__wbuf *b, const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	rayc__w_u32(b, (uint32_t)n);
	rayc__w_bytes(b, s, n);
}

void rayc__w_blob(rayc__wbuf *b, const void *p, size_t n)
{
	rayc__w_u64(b, n);
	rayc__w_bytes(b, p, n);
}

void rayc__whdr_put(uint8_t *h, int type, uint32_t sender, uint32_t len)
{
	memset(h, 0, RAYC__WIRE_HDR);
	put_le(h, RAYC__WIRE_MAGIC, 4);
	h[4] = RAYC__WIRE_VERSION;
	h[5] = (uint8_t)type;
	put_le(h + 8, len, 4);
	put_le(h + 12, sender, 4);
}

size_t rayc__w_frame_begin(rayc__wbuf *b, int type, uint32_t sender)
{
	size_t off = b->len;
	uint8_t h[RAYC__WIRE_HDR];

	rayc__whdr_put(h, type, sender, 0);
	rayc__w_bytes(b, h, sizeof(h));
	return off;
}

void rayc__w_frame_end(rayc__wbuf *b, size_t off)
{
	if (b->bad)
		return;
	uint8_t *h = b->p + off;
	size_t len = b->len - off - RAYC__WIRE_HDR;
	if (len > RAYC__WIRE_MAX_FRAME) {
		b->bad = true;
		return;
	}
	put_le(h + 8, len, 4);
	put_le(h + 16, rayc__wire_sum(h + RAYC__WIRE_HDR, len), 8);
}

void rayc__w_frame_end_len(rayc__wbuf *b, size_t off, size_t n)
{
	if (b->bad)
		return;
	uint8_t *h = b->p + off;
	size_t in = b->len - off - RAYC__WIRE_HDR;
	if (in > RAYC__WIRE_MAX_FRAME || n > RAYC__WIRE_MAX_FRAME - in) {
		b->bad = true;
		return;
	}
	put_le(h + 8, in + n, 4);
}

/* ---- frame tags (see the top of wire.h) ---- */

/* Poly1305 over big frames (a CHUNK's 1 MiB, a snapshot) with OpenSSL's
 * libcrypto where rayc is built with it: libsodium 1.0.18's Poly1305
 * runs at 1.0-1.7 GB/s here, OpenSSL 3's (AVX2, AVX-512 IFMA) at 6-8
 * GB/s, and every byte of a transfer is tagged once on each side: it was
 * most of what a 64 MiB transfer cost (0.8 GB/s with libsodium, 1.3-1.5
 * with libcrypto, same machine and run).  The same function (RFC 8439),
 * so a tag is the same whichever library computes it and each side
 * chooses alone.  Small frames keep libsodium: no context to set up.
 * The same for ChaCha20 over big payloads of encrypting connections
 * (libsodium 1.0 GB/s, OpenSSL 2.5 GB/s here). */
#define BIG_MAC ((size_t)16 << 10)

static _Atomic bool big_mac_off; /* test: libsodium for every frame */

void rayc__test_wire_big_mac(bool on)
{
	atomic_store(&big_mac_off, !on);
}

#ifdef RAYC_HAVE_LIBCRYPTO
/* OpenSSL's ChaCha20 (RFC 8439's: a 32-bit block counter, then the
 * 96-bit nonce), fetched once; NULL if this OpenSSL has none. */
static EVP_CIPHER *big_cipher(void)
{
	static EVP_CIPHER *_Atomic ciph;
	static _Atomic bool none;
	EVP_CIPHER *e = atomic_load(&ciph), *was = NULL;

	if (e != NULL || atomic_load(&none))
		return e;
	e = EVP_CIPHER_fetch(NULL, "ChaCha20", NULL);
	if (e == NULL) {
		atomic_store(&none, true);
		return NULL;
	}
	if (!atomic_compare_exchange_strong(&ciph, &was, e)) {
		EVP_CIPHER_free(e);
		e = was;
	}
	return e;
}

/* XORs n bytes at p with the keystream of key and nonce from block blk
 * on, in pieces of whole blocks; returns how many bytes it did (all of
 * them, unless OpenSSL could not). */
static size_t xor_big(const unsigned char *key, const unsigned char *nonce,
                      uint32_t blk, uint8_t *p, size_t n)
{
	EVP_CIPHER *e = big_cipher();
	EVP_CIPHER_CTX *x = e != NULL ? EVP_CIPHER_CTX_new() : NULL;
	unsigned char iv[16];
	size_t done = 0;

	put_le(iv, blk, 4);
	memcpy(iv + 4, nonce, 12);
	if (x != NULL && EVP_EncryptInit_ex2(x, e, key, iv, NULL) == 1) {
		while (done < n) {
			int k = n - done > ((size_t)1 << 30) ? 1 << 30
			                                      : (int)(n - done);
			int out = 0;
			/* In place: a stream cipher's output may be its
			 * input. */
			if (EVP_EncryptUpdate(x, p + done, &out, p + done,
			                      k) != 1 ||
			    out != k)
				break;
			done += (size_t)k;
		}
	}
	EVP_CIPHER_CTX_free(x); /* clears the key schedule */
	return done;
}

/* OpenSSL's Poly1305, fetched once; NULL if this OpenSSL has none (a
 * FIPS-only configuration, say): libsodium then. */
static EVP_MAC *big_mac(void)
{
	static EVP_MAC *_Atomic mac;
	static _Atomic bool none;
	EVP_MAC *m = atomic_load(&mac), *was = NULL;

	if (m != NULL || atomic_load(&none))
		return m;
	m = EVP_MAC_fetch(NULL, "POLY1305", NULL);
	if (m == NULL) {
		atomic_store(&none, true);
		return NULL;
	}
	if (!atomic_compare_exchange_strong(&mac, &was, m)) {
		EVP_MAC_free(m); /* another thread's is kept */
		m = was;
	}
	return m;
}

static bool tag_big(const unsigned char *otk, const uint8_t *hdr,
                    const void *a, size_t an, const void *b, size_t bn,
                    unsigned char tag[RAYC__WIRE_TAG])
{
	EVP_MAC *m = big_mac();
	EVP_MAC_CTX *x = m != NULL ? EVP_MAC_CTX_new(m) : NULL;
	size_t n = 0;
	bool ok = x != NULL &&
	          EVP_MAC_init(x, otk, crypto_onetimeauth_poly1305_KEYBYTES,
	                       NULL) == 1 &&
	          EVP_MAC_update(x, hdr, RAYC__WIRE_TAG_AT) == 1 &&
	          (an == 0 || EVP_MAC_update(x, a, an) == 1) &&
	          (bn == 0 || EVP_MAC_update(x, b, bn) == 1) &&
	          EVP_MAC_final(x, tag, &n, RAYC__WIRE_TAG) == 1 &&
	          n == RAYC__WIRE_TAG;

	EVP_MAC_CTX_free(x); /* clears the key it was given */
	return ok;
}
#else
static size_t xor_big(const unsigned char *key, const unsigned char *nonce,
                      uint32_t blk, uint8_t *p, size_t n)
{
	return 0;
}

static bool tag_big(const unsigned char *otk, const uint8_t *hdr,
                    const void *a, size_t an, const void *b, size_t bn,
                    unsigned char tag[RAYC__WIRE_TAG])
{
	return false;
}
#endif

/* Frame n's one-time key (wire.h), made with the next RAYC__WIRE_OTKS - 1
 * unless w holds it already.  Blocks of one stream come several at a
 * time from ChaCha20's wide code (8 blocks a pass with AVX2). */
static unsigned char *otk_of(rayc__wauth *w, uint64_t n)
{
	static const unsigned char zeros[sizeof(w->otk)];

	if (w->otk_n == 0 || n < w->otk_from || n - w->otk_from >= w->otk_n ||
	    memcmp(w->otk_key, w->key, sizeof(w->key)) != 0) {
		unsigned char nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = {
			'o', 't', 'k', 0
		};
		put_le(nonce + 4, n >> 32, 8);
		uint32_t blk = (uint32_t)n;
		uint64_t k = RAYC__WIRE_OTKS;
		if (k > ((uint64_t)1 << 32) - blk)
			k = ((uint64_t)1 << 32) - blk; /* the next stream's */
		crypto_stream_chacha20_ietf_xor_ic(&w->otk[0][0], zeros, k * 64,
		                                   nonce, blk, w->key);
		memcpy(w->otk_key, w->key, sizeof(w->key));
		w->otk_from = n;
		w->otk_n = (uint32_t)k;
	}
	return w->otk[n - w->otk_from];
}

static void tag_of(rayc__wauth *w, const uint8_t *hdr, const void *a,
                   size_t an, const void *b, size_t bn,
                   unsigned char tag[RAYC__WIRE_TAG])
{
	unsigned char *otk = otk_of(w, w->ctr++);
	crypto_onetimeauth_poly1305_state st;

	if (an + bn >= BIG_MAC && !atomic_load(&big_mac_off) &&
	    tag_big(otk, hdr, a, an, b, bn, tag)) {
		sodium_memzero(otk, 64);
		return;
	}
	crypto_onetimeauth_poly1305_init(&st, otk);
	crypto_onetimeauth_poly1305_update(&st, hdr, RAYC__WIRE_TAG_AT);
	if (an > 0)
		crypto_onetimeauth_poly1305_update(&st, a, an);
	if (bn > 0)
		crypto_onetimeauth_poly1305_update(&st, b, bn);
	crypto_onetimeauth_poly1305_final(&st, tag);
	sodium_memzero(otk, 64);
}

void rayc__wire_seal(rayc__wauth *w, uint8_t *hdr, const void *a,
                     size_t an, const void *b, size_t bn)
{
	tag_of(w, hdr, a, an, b, bn, hdr + RAYC__WIRE_TAG_AT);
}

bool rayc__wire_check(rayc__wauth *w, const uint8_t *hdr, const void *a,
                      size_t an, const void *b, size_t bn)
{
	unsigned char tag[RAYC__WIRE_TAG];

	tag_of(w, hdr, a, an, b, bn, tag);
	return crypto_verify_16(tag, hdr + RAYC__WIRE_TAG_AT) == 0;
}

/* XORs n bytes at p, which sit at offset off of the payload of frame
 * number ctr, with that frame's keystream (ChaCha20 from block 1). */
static void xor_at(const unsigned char key[32], uint64_t ctr, uint8_t *p,
                   size_t n, size_t off)
{
	unsigned char nonce[crypto_stream_chacha20_ietf_NONCEBYTES] = { 0 };

	put_le(nonce + 4, ctr, 8);
	size_t skip = off % 64;
	uint64_t blk = 1 + off / 64;
	if (skip != 0 && n > 0) {
		/* A piece that starts inside a block: that block first. */
		uint8_t ks[64] = { 0 };
		crypto_stream_chacha20_ietf_xor_ic(ks, ks, sizeof(ks), nonce,
		                                   (uint32_t)blk, key);
		size_t k = 64 - skip < n ? 64 - skip : n;
		for (size_t i = 0; i < k; i++)
			p[i] ^= ks[skip + i];
		sodium_memzero(ks, sizeof(ks));
		p += k;
		n -= k;
		blk++;
	}
	if (n >= BIG_MAC && !atomic_load(&big_mac_off)) {
		/* Whole pieces of 2^30 bytes, a multiple of the block. */
		size_t k = xor_big(key, nonce, (uint32_t)blk, p, n);
		p += k;
		n -= k;
		blk += k / 64;
	}
	if (n > 0)
		crypto_stream_chacha20_ietf_xor_ic(p, p, n, nonce, (uint32_t)blk,
		                                   key);
}

void rayc__wire_seal_x(rayc__wauth *w, uint8_t *hdr, uint8_t *a, size_t an)
{
	if (w->enc)
		xor_at(w->key, w->ctr, a, an, 0);
	tag_of(w, hdr, a, an, NULL, 0, hdr + RAYC__WIRE_TAG_AT);
}

bool rayc__wire_open(rayc__wauth *w, const uint8_t *hdr, uint8_t *a,
                     size_t an, uint8_t *b, size_t bn)
{
	uint64_t ctr = w->ctr;

	if (!rayc__wire_check(w, hdr, a, an, b, bn))
		return false;
	if (w->enc) {
		xor_at(w->key, ctr, a, an, 0);
		xor_at(w->key, ctr, b, bn, an);
	}
	return true;
}

void rayc__wire_peek(const rayc__wauth *w, uint8_t *p, size_t n, size_t off)
{
	if (w->enc)
		xor_at(w->key, w->ctr, p, n, off);
}

/* In wire_sum.c: the same built for AVX2. */
bool rayc__wire_have_avx2(void);
uint64_t rayc__wire_sum2_avx2(const void *a, size_t an, const void *b,
                              size_t bn);

uint64_t rayc__wire_sum2(const void *a, size_t an, const void *b,
                         size_t bn)
{
	XXH3_state_t st;

	if (an + bn >= 4096 && rayc__wire_have_avx2())
		return rayc__wire_sum2_avx2(a, an, b, bn);
	if (bn == 0)
		return XXH3_64bits(a, an);
	(void)XXH3_64bits_reset(&st);
	(void)XXH3_64bits_update(&st, a, an);
	(void)XXH3_64bits_update(&st, b, bn);
	return XXH3_64bits_digest(&st);
}

uint64_t rayc__wire_sum(const void *p, size_t n)
{
	return rayc__wire_sum2(p, n, NULL, 0);
}

const void *rayc__r_bytes(rayc__rd *r, size_t n)
{
	static const uint8_t none[1];

	if (r->bad || n > r->n - r->off) {
		r->bad = true;
		return NULL;
	}
	/* A reader over no buffer (NULL, 0) reads nothing from somewhere:
	 * NULL + 0 is undefined, and NULL means "short" to callers. */
	const void *p = r->p != NULL ? r->p + r->off : none;
	r->off += n;
	return p;
}

uint8_t rayc__r_u8(rayc__rd *r)
{
	const uint8_t *p = rayc__r_bytes(r, 1);
	return p != NULL ? p[0] : 0;
}

uint32_t rayc__r_u32(rayc__rd *r)
{
	const uint8_t *p = rayc__r_bytes(r, 4);
	return p != NULL ? (uint32_t)get_le(p, 4) : 0;
}

uint64_t rayc__r_u64(rayc__rd *r)
{
	const uint8_t *p = rayc__r_bytes(r, 8);
	return p != NULL ? get_le(p, 8) : 0;
}

void rayc__r_str(rayc__rd *r, char *out, size_t cap)
{
	uint32_t n = rayc__r_u32(r);
	const char *p;

	out[0] = '\0';
	if (r->bad)
		return;
	if (n >= cap) {
		r->bad = true;
		return;
	}
	p = rayc__r_bytes(r, n);
	if (p == NULL || memchr(p, '\0', n) != NULL) {
		r->bad = true;
		return;
	}
	memcpy(out, p, n);
	out[n] = '\0';
}

const void *rayc__r_blob(rayc__rd *r, size_t *n)
{
	uint64_t len = rayc__r_u64(r);

	*n = 0;
	if (r->bad || len > r->n - r->off) {
		r->bad = true;
		return NULL;
	}
	*n = (size_t)len;
	return rayc__r_bytes(r, (size_t)len);
}
