/* cpace.c -- CPace over ristretto255 for the handshake (see cpace.h). */
#include <string.h>

#include <sodium.h>

#include "net/cpace.h"

/* Domain separation: a version change makes old and new peers derive
 * different generators and keys, never the same ones by accident. */
static const char GEN_LABEL[] = "rayc-cpace-v2 generator";
static const char ISK_LABEL[] = "rayc-cpace-v2 session";
static const char KDF_CTX[crypto_kdf_CONTEXTBYTES] = "raycsess";

enum { KEY_A2D = 1, KEY_D2A, KEY_CONF_A, KEY_CONF_D, KEY_HIDE };

bool rayc__cpace_start(rayc__cpace *s, const unsigned char key[32],
                       const unsigned char na[32],
                       const unsigned char nd[32])
{
	crypto_generichash_state st;
	unsigned char h[crypto_core_ristretto255_HASHBYTES];
	unsigned char g[crypto_core_ristretto255_BYTES];
	bool ok;

	/* G = map(H_key(label || na || nd)): the token (through key) and
	 * this session's nonces, so G is new for every connection. */
	crypto_generichash_init(&st, key, 32, sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)GEN_LABEL,
	                          sizeof(GEN_LABEL) - 1);
	crypto_generichash_update(&st, na, 32);
	crypto_generichash_update(&st, nd, 32);
	crypto_generichash_final(&st, h, sizeof(h));
	crypto_core_ristretto255_from_hash(g, h);
	crypto_core_ristretto255_scalar_random(s->y);
	/* scalarmult fails if the result is the identity (a zero y). */
	ok = crypto_scalarmult_ristretto255(s->share, s->y, g) == 0;
	sodium_memzero(h, sizeof(h));
	sodium_memzero(g, sizeof(g));
	sodium_memzero(&st, sizeof(st));
	return ok;
}

bool rayc__cpace_finish(rayc__cpace *s, const unsigned char *theirs,
                        const unsigned char th[RAYC__CPACE_TH],
                        rayc__cpace_keys *k)
{
	unsigned char kp[crypto_scalarmult_ristretto255_BYTES];
	unsigned char isk[crypto_kdf_KEYBYTES];
	crypto_generichash_state st;
	bool ok = crypto_core_ristretto255_is_valid_point(theirs) &&
	          crypto_scalarmult_ristretto255(kp, s->y, theirs) == 0;

	sodium_memzero(s, sizeof(*s));
	memset(k, 0, sizeof(*k));
	if (!ok) {
		sodium_memzero(kp, sizeof(kp));
		return false;
	}
	/* ISK = H_K(label || th): K alone is the same in both directions
	 * of a session; th binds the keys to everything said (nonces,
	 * shares, ids, generations, the coordinator's url). */
	crypto_generichash_init(&st, kp, sizeof(kp), sizeof(isk));
	crypto_generichash_update(&st, (const unsigned char *)ISK_LABEL,
	                          sizeof(ISK_LABEL) - 1);
	crypto_generichash_update(&st, th, RAYC__CPACE_TH);
	crypto_generichash_final(&st, isk, sizeof(isk));
	crypto_kdf_derive_from_key(k->a2d, 32, KEY_A2D, KDF_CTX, isk);
	crypto_kdf_derive_from_key(k->d2a, 32, KEY_D2A, KDF_CTX, isk);
	crypto_kdf_derive_from_key(k->conf_a, 32, KEY_CONF_A, KDF_CTX, isk);
	crypto_kdf_derive_from_key(k->conf_d, 32, KEY_CONF_D, KDF_CTX, isk);
	crypto_kdf_derive_from_key(k->hide, 32, KEY_HIDE, KDF_CTX, isk);
	sodium_memzero(kp, sizeof(kp));
	sodium_memzero(isk, sizeof(isk));
	sodium_memzero(&st, sizeof(st));
	return true;
}

void rayc__cpace_mac(const unsigned char ck[32],
                     const unsigned char th[RAYC__CPACE_TH],
                     unsigned char mac[RAYC__CPACE_MAC])
{
	crypto_generichash(mac, RAYC__CPACE_MAC, th, RAYC__CPACE_TH, ck, 32);
}

void rayc__cpace_hide(const unsigned char key[32], unsigned char *p,
                      size_t n)
{
	static const unsigned char
		nonce[crypto_stream_chacha20_ietf_NONCEBYTES];

	crypto_stream_chacha20_ietf_xor(p, p, n, nonce, key);
}

bool rayc__cpace_mac_ok(const unsigned char *a, const unsigned char *b)
{
	return crypto_verify_32(a, b) == 0;
}

void rayc__cpace_wipe(void *p, size_t n)
{
	sodium_memzero(p, n);
}
