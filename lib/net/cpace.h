/* cpace.h -- the password-authenticated key exchange of the handshake:
 * CPace (draft-irtf-cfrg-cpace) over ristretto255, with libsodium.
 *
 * Both sides hold key = BLAKE2b(cluster token).  Each derives the same
 * generator G from key and both nonces (HELLO's and AUTH's), picks a
 * random scalar y and sends y*G (its share).  Each multiplies the
 * other's share by its own y: the same point K only if both used the
 * same G, that is the same token.  A passive observer sees two random
 * points: testing a token guess against them would need the
 * Diffie-Hellman of the two, so a captured handshake gives nothing to
 * guess against offline.  An active attacker who picks G from a guess
 * learns only whether that one guess was right (the key confirmation
 * fails otherwise): one guess per connection.
 *
 * From K and the hash of the handshake's transcript up to the acceptor's
 * share (th1) come five keys: one per direction for the frames (wire.h,
 * rayc__wauth), one per side to confirm the key (WELCOME's MAC from the
 * acceptor, CONFIRM's from the dialer, both over the whole transcript),
 * and one that hides what WELCOME says about the cluster from a dialer
 * without the token.  Functions here are pure (no network),
 * so they can be tested alone.
 */
#ifndef RAYC_NET_CPACE_H
#define RAYC_NET_CPACE_H

#include <stdbool.h>
#include <stddef.h>

#define RAYC__CPACE_SHARE 32 /* bytes of a share on the wire */
#define RAYC__CPACE_TH 64    /* bytes of the transcript hash */
#define RAYC__CPACE_MAC 32

typedef struct rayc__cpace {
	unsigned char y[32];                        /* secret scalar */
	unsigned char share[RAYC__CPACE_SHARE];     /* y * G */
} rayc__cpace;

typedef struct rayc__cpace_keys {
	unsigned char a2d[32], d2a[32];       /* frames: acceptor to dialer,
	                                         dialer to acceptor */
	unsigned char conf_a[32], conf_d[32]; /* key confirmation */
	unsigned char hide[32];               /* WELCOME's cluster fields */
} rayc__cpace_keys;

/* Derives G from key and the nonces of the acceptor (na, in HELLO) and
 * the dialer (nd, in AUTH), picks y, computes the share.  False only if
 * a point came out as the identity (never in practice). */
bool rayc__cpace_start(rayc__cpace *s, const unsigned char key[32],
                       const unsigned char na[32],
                       const unsigned char nd[32]);
/* K = y * theirs, then the keys from K and th (th1 above).  False
 * (keys zeroed) if theirs is not a valid ristretto255 encoding or K is
 * the identity (a hostile share).  Wipes s either way. */
bool rayc__cpace_finish(rayc__cpace *s, const unsigned char *theirs,
                        const unsigned char th[RAYC__CPACE_TH],
                        rayc__cpace_keys *k);
/* The key confirmation MAC: keyed BLAKE2b-256 of th under conf_a or
 * conf_d. */
void rayc__cpace_mac(const unsigned char ck[32],
                     const unsigned char th[RAYC__CPACE_TH],
                     unsigned char mac[RAYC__CPACE_MAC]);
/* Hides (or shows again) n bytes at p in place with the hide key:
 * ChaCha20 with nonce 0, used once per session. */
void rayc__cpace_hide(const unsigned char key[32], unsigned char *p,
                      size_t n);
/* Constant-time comparison of two MACs. */
bool rayc__cpace_mac_ok(const unsigned char *a, const unsigned char *b);
/* Wipes secrets (sodium_memzero). */
void rayc__cpace_wipe(void *p, size_t n);

#endif /* RAYC_NET_CPACE_H */
