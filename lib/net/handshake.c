/* handshake.c -- the connection handshake: CPace (cpace.h) with key
 * confirmation both ways, four frames.
 *
 *   acceptor                             dialer
 *   HELLO   na                     ->
 *                                  <-    AUTH     nd, Yd, id, gen, enc
 *   WELCOME Ya, hidden(id, gen,
 *           coordinator, url, pk,
 *           SIG(th1), enc),
 *           MAC(conf_a, th)        ->    (checks the MAC: the acceptor
 *                                         knows the token; and SIG: it
 *                                         is the member it says)
 *                                  <-    CONFIRM  MAC(conf_d, th), pk,
 *                                                 SIG(th)
 *   (checks them: the dialer knows the token and holds pk; opens once
 *    the committed view binds its id to pk)           (opens)
 *
 * th is the BLAKE2b-512 of every handshake payload so far (each with
 * its type and length), WELCOME's up to its MAC; the keys come from th1,
 * the same up to Ya.  Both MACs cover th, so they bind the ids,
 * generations and coordinator url of both sides to the session.  The
 * acceptor cannot know whether the dialer holds the token before
 * CONFIRM, so WELCOME's cluster fields go hidden under a key from the
 * exchange (cpace.h): a dialer without the token learns nothing but
 * "refused".  A side whose check fails says REFUSED and closes; the
 * dialer's join then fails with RAYC_EAUTH.  Only after this does the
 * connection open (conn.c) and carry other frames, each tagged with the
 * session keys (wire.h).  The acceptor opens only on CONFIRM, so its
 * first tagged frame never reaches a dialer that has not proven the
 * token.
 *
 * Identity: the token only says "one of us".  Each peer also has an
 * Ed25519 key pair of its own, made at start, whose public half (pk) is
 * committed with its admission (the ADD entry) and so known to every
 * member.  Each side signs the transcript of this session (the acceptor
 * th1, the dialer th: both cover the nonces and CPace shares, so no
 * signature serves in another session) and the other checks the
 * signature against the key committed for the id claimed: a member
 * holding the token cannot speak as another.  A joiner has no id yet: it
 * may only send JOIN, and its admission commits the key it proved here.
 * An acceptor that does not know the claimed id (or incarnation) yet,
 * because its admission is not applied here, parks the connection:
 * nothing more is read from it until the view settles the claim
 * (rayc__hs_settle), or the handshake deadline closes it.
 *
 * enc: whether that side encrypts (RAYC_ENCRYPT).  The connection
 * encrypts if either does; both flags are in the transcript the MACs
 * cover, so no one on the path can clear them.  A dialer told by the
 * acceptor that it encrypts encrypts from then on (a cluster set up to
 * encrypt at its founder stays so as peers join).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "net/cpace.h"
#include "net/net_int.h"

enum {
	HS_START,        /* acceptor: HELLO not out yet; dialer: wait HELLO */
	HS_HELLO_SENT,   /* acceptor: wait AUTH */
	HS_AUTH_SENT,    /* dialer: wait WELCOME */
	HS_WELCOME_SENT, /* acceptor: wait CONFIRM */
};

struct rayc__hs {
	int step;
	unsigned char n_mine[32];
	rayc__cpace cp;
	crypto_generichash_state th;
	unsigned char want[RAYC__CPACE_MAC]; /* acceptor: CONFIRM's MAC */
	unsigned char thf[RAYC__CPACE_TH];   /* acceptor: th CONFIRM signs */
};

static const char TH_LABEL[] = "rayc-handshake-v3";

_Static_assert(RAYC__ID_PK == crypto_sign_PUBLICKEYBYTES &&
                       RAYC__ID_SK == crypto_sign_SECRETKEYBYTES &&
                       RAYC__ID_SIG == crypto_sign_BYTES,
               "identity key sizes");

/* What each side signs: its role's label, then a transcript hash. */
static void id_msg(bool dialer, const unsigned char th[RAYC__CPACE_TH],
                   unsigned char m[16 + RAYC__CPACE_TH])
{
	memcpy(m, dialer ? "rayc-id-dialer\0\0" : "rayc-id-accept\0\0", 16);
	memcpy(m + 16, th, RAYC__CPACE_TH);
}

static void id_sign(const rayc__net *net, bool dialer,
                    const unsigned char th[RAYC__CPACE_TH],
                    unsigned char sig[RAYC__ID_SIG])
{
	unsigned char m[16 + RAYC__CPACE_TH];

	id_msg(dialer, th, m);
	crypto_sign_detached(sig, NULL, m, sizeof(m), net->id_sk);
}

static bool id_check(const unsigned char *pk, bool dialer,
                     const unsigned char th[RAYC__CPACE_TH],
                     const unsigned char *sig)
{
	unsigned char m[16 + RAYC__CPACE_TH];

	id_msg(dialer, th, m);
	return crypto_sign_verify_detached(sig, m, sizeof(m), pk) == 0;
}

rayc__hs *rayc__hs_new(void)
{
	rayc__hs *hs = calloc(1, sizeof(*hs));

	if (hs == NULL)
		return NULL;
	randombytes_buf(hs->n_mine, sizeof(hs->n_mine));
	crypto_generichash_init(&hs->th, NULL, 0, RAYC__CPACE_TH);
	crypto_generichash_update(&hs->th, (const unsigned char *)TH_LABEL,
	                          sizeof(TH_LABEL) - 1);
	return hs;
}

void rayc__hs_free(rayc__hs *hs)
{
	if (hs == NULL)
		return;
	sodium_memzero(hs, sizeof(*hs));
	free(hs);
}

/* The handshake is over (opened or failed): its secrets go. */
static void hs_done(rayc__conn *c)
{
	rayc__hs_free(c->hs);
	c->hs = NULL;
}

/* Adds one handshake payload to the transcript. */
static void th_add(rayc__hs *hs, int type, const void *p, size_t n)
{
	unsigned char t[5] = { (unsigned char)type, (unsigned char)n,
		               (unsigned char)(n >> 8),
		               (unsigned char)(n >> 16),
		               (unsigned char)(n >> 24) };

	crypto_generichash_update(&hs->th, t, sizeof(t));
	crypto_generichash_update(&hs->th, p, n);
}

/* The transcript hash so far, leaving the running one to go on. */
static void th_now(const rayc__hs *hs, unsigned char th[RAYC__CPACE_TH])
{
	crypto_generichash_state t = hs->th;

	crypto_generichash_final(&t, th, RAYC__CPACE_TH);
	sodium_memzero(&t, sizeof(t));
}

/* Tells the two parts of WELCOME apart in the transcript. */
#define TH_HIDDEN 0x80

/* The payload of the frame started at f in b, so far. */
static const uint8_t *payload(const rayc__wbuf *b, size_t f, size_t *n)
{
	*n = b->len - f - RAYC__WIRE_HDR;
	return b->p + f + RAYC__WIRE_HDR;
}

static void refuse(rayc__conn *c, const char *why)
{
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_REFUSED, 0);

	rayc__w_str(&b, why);
	rayc__w_frame_end(&b, f);
	/* The connection closes once REFUSED is out (send_cb); closing now
	 * could drop it. */
	rayc__conn_send_hs(c, &b, true);
	rayc__wbuf_fini(&b);
	hs_done(c);
}

/* Sets the frame keys of both directions from the CPace keys; enc: the
 * payloads are encrypted too (either side asked, and both said so
 * inside the transcript, so no one on the path can turn it off). */
static void set_keys(rayc__conn *c, const rayc__cpace_keys *k, bool enc)
{
	memcpy(c->tx.key, c->dialed ? k->d2a : k->a2d, 32);
	memcpy(c->rx.key, c->dialed ? k->a2d : k->d2a, 32);
	c->tx.ctr = 0;
	c->rx.ctr = 0;
	c->tx.enc = enc;
	c->rx.enc = enc;
}

/* Acceptor: the connection came in; say HELLO with our nonce. */
void rayc__hs_hello(rayc__conn *c)
{
	rayc__hs *hs = c->hs;
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_HELLO, 0), n;

	rayc__w_bytes(&b, hs->n_mine, 32);
	rayc__w_frame_end(&b, f);
	if (!b.bad) {
		const uint8_t *p = payload(&b, f, &n);
		th_add(hs, RAYC__MSG_HELLO, p, n);
		hs->step = HS_HELLO_SENT;
	}
	rayc__conn_send_hs(c, &b, false);
	rayc__wbuf_fini(&b);
}

/* Dialer: the acceptor's HELLO carries its nonce; answer with AUTH. */
bool rayc__hs_on_hello(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc__hs *hs = c->hs;
	const unsigned char *nonce = rayc__r_bytes(rd, 32);

	if (rd->bad || hs == NULL || hs->step != HS_START)
		return false;
	th_add(hs, RAYC__MSG_HELLO, rd->p, rd->n);
	if (!rayc__cpace_start(&hs->cp, net->key, nonce, hs->n_mine))
		return false;
	rayc__mutex_lock(&net->mu);
	uint32_t me = c->probe ? c->claim : net->self;
	uint64_t gen = c->probe ? c->claim_gen
	                        : me != 0 ? net->peers[me].gen : 0;
	rayc__mutex_unlock(&net->mu);
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_AUTH, me), n;
	rayc__w_bytes(&b, hs->n_mine, 32);
	rayc__w_bytes(&b, hs->cp.share, RAYC__CPACE_SHARE);
	rayc__w_u32(&b, me);
	rayc__w_u64(&b, gen);
	rayc__w_u8(&b, atomic_load(&net->encrypt));
	rayc__w_frame_end(&b, f);
	if (b.bad) {
		rayc__wbuf_fini(&b);
		return false;
	}
	const uint8_t *p = payload(&b, f, &n);
	th_add(hs, RAYC__MSG_AUTH, p, n);
	hs->step = HS_AUTH_SENT;
	rayc__conn_send_hs(c, &b, false);
	rayc__wbuf_fini(&b);
	return true;
}

/* Acceptor: we said HELLO, this should be AUTH.  Answers WELCOME with
 * our share and MAC; the connection opens on the dialer's CONFIRM. */
bool rayc__hs_on_auth(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc__hs *hs = c->hs;
	const unsigned char *nonce = rayc__r_bytes(rd, 32);
	const unsigned char *share = rayc__r_bytes(rd, RAYC__CPACE_SHARE);
	uint32_t id = rayc__r_u32(rd);
	uint64_t gen = rayc__r_u64(rd);
	uint8_t enc = rayc__r_u8(rd);
	unsigned char th[RAYC__CPACE_TH], mac[RAYC__CPACE_MAC];
	rayc__cpace_keys k;

	if (rd->bad || rayc__rd_left(rd) != 0 || id >= RAYC__MAX_PEERS ||
	    enc > 1 || hs == NULL || hs->step != HS_HELLO_SENT)
		return false;
	th_add(hs, RAYC__MSG_AUTH, rd->p, rd->n);
	if (!rayc__cpace_start(&hs->cp, net->key, hs->n_mine, nonce))
		return false;
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_WELCOME, net->self);
	rayc__w_bytes(&b, hs->cp.share, RAYC__CPACE_SHARE);
	th_add(hs, RAYC__MSG_WELCOME, hs->cp.share, RAYC__CPACE_SHARE);
	th_now(hs, th);
	/* A share that is no valid point (or gives the identity) is
	 * hostile: no keys come of it. */
	if (!rayc__cpace_finish(&hs->cp, share, th, &k)) {
		rayc__wbuf_fini(&b);
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-AUTH-REFUSED",
		          "refused a peer: invalid key share");
		refuse(c, "authentication failed");
		return true;
	}
	size_t at = b.len;
	unsigned char sig[RAYC__ID_SIG];
	id_sign(net, false, th, sig);
	rayc__mutex_lock(&net->mu);
	rayc__w_u32(&b, net->self);
	rayc__w_u64(&b, net->peers[net->self].gen);
	rayc__w_u32(&b, net->coord);
	rayc__w_str(&b, net->coord_url);
	rayc__mutex_unlock(&net->mu);
	rayc__w_bytes(&b, net->id_pk, RAYC__ID_PK);
	rayc__w_bytes(&b, sig, sizeof(sig));
	bool mine = atomic_load(&net->encrypt);
	rayc__w_u8(&b, mine);
	if (b.bad) {
		rayc__cpace_wipe(&k, sizeof(k));
		rayc__wbuf_fini(&b);
		return false;
	}
	rayc__cpace_hide(k.hide, b.p + at, b.len - at);
	th_add(hs, RAYC__MSG_WELCOME | TH_HIDDEN, b.p + at, b.len - at);
	crypto_generichash_final(&hs->th, th, sizeof(th));
	memcpy(hs->thf, th, sizeof(th));
	rayc__cpace_mac(k.conf_a, th, mac);
	rayc__cpace_mac(k.conf_d, th, hs->want);
	set_keys(c, &k, mine || enc);
	rayc__cpace_wipe(&k, sizeof(k));
	rayc__w_bytes(&b, mac, sizeof(mac));
	rayc__w_frame_end(&b, f);
	c->peer = id;
	c->gen = gen; /* an older one than its slot's is told REMOVED */
	hs->step = HS_WELCOME_SENT;
	rayc__conn_send_hs(c, &b, false);
	rayc__wbuf_fini(&b);
	return true;
}

/* Acceptor: the dialer's key confirmation.  Right: the connection opens;
 * wrong: it did not derive our key, so it does not hold the token. */
enum { CLAIM_OK, CLAIM_JOINER, CLAIM_STALE, CLAIM_WRONG, CLAIM_WAIT };

/* Acceptor: what the committed view says of the id the dialer claims
 * (c->peer, c->gen) and the key it proved (c->pk). */
static int claim_of(rayc__conn *c)
{
	rayc__net *net = c->net;
	int r;

	if (c->peer == 0)
		return CLAIM_JOINER;
	rayc__mutex_lock(&net->mu);
	rayc__peer *p = &net->peers[c->peer];
	if (!p->known || c->gen > p->gen)
		r = CLAIM_WAIT; /* its admission is not applied here yet */
	else if (c->gen < p->gen)
		r = CLAIM_STALE; /* an older holder of the slot: gone */
	else if (sodium_memcmp(p->pk, c->pk, RAYC__ID_PK) == 0)
		r = CLAIM_OK;
	else
		r = CLAIM_WRONG;
	rayc__mutex_unlock(&net->mu);
	return r;
}

/* Acts on a settled claim: the connection opens (frames under the id
 * once it is bound; a joiner's only JOIN, a stale incarnation's only
 * REMOVED back) or is refused. */
static void claim_settled(rayc__conn *c, int r)
{
	if (r == CLAIM_WRONG) {
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-ID-REFUSED",
		          "refused a peer claiming to be peer %u: it does not "
		          "hold that member's key", c->peer);
		refuse(c, "identity refused");
		return;
	}
	atomic_store(&c->verified, r == CLAIM_OK);
	hs_done(c);
	rayc__conn_set_open(c);
}

bool rayc__hs_settle(rayc__conn *c)
{
	if (!rayc__conn_parked(c) || atomic_exchange(&c->settling, true))
		return false;
	int r = claim_of(c);
	if (r == CLAIM_WAIT) {
		atomic_store(&c->settling, false);
		return false;
	}
	claim_settled(c, r);
	if (r != CLAIM_WRONG)
		rayc__conn_unpark(c);
	return true;
}

/* Acceptor: the dialer's key confirmation and identity proof.  A wrong
 * MAC: it did not derive our key, so it does not hold the token.  Then
 * the id it claims must be bound to the key it proved. */
bool rayc__hs_on_confirm(rayc__conn *c, rayc__rd *rd)
{
	rayc__hs *hs = c->hs;
	const unsigned char *mac = rayc__r_bytes(rd, RAYC__CPACE_MAC);
	const unsigned char *pk = rayc__r_bytes(rd, RAYC__ID_PK);
	const unsigned char *sig = rayc__r_bytes(rd, RAYC__ID_SIG);

	if (rd->bad || rayc__rd_left(rd) != 0 || hs == NULL ||
	    hs->step != HS_WELCOME_SENT)
		return false;
	if (!rayc__cpace_mac_ok(mac, hs->want)) {
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-AUTH-REFUSED",
		          "refused a peer: authentication failed (wrong or "
		          "missing RAYC_TOKEN?)");
		refuse(c, "authentication failed");
		return true;
	}
	if (!id_check(pk, true, hs->thf, sig)) {
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-ID-REFUSED",
		          "refused a peer claiming to be peer %u: its identity "
		          "signature is not valid", c->peer);
		refuse(c, "identity refused");
		return true;
	}
	memcpy(c->pk, pk, RAYC__ID_PK);
	int r = claim_of(c);
	if (r == CLAIM_WAIT) {
		/* The reader stops after this frame (conn.c) and the claim
		 * is settled once the view can (rayc__net_settle_parked). */
		rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-ID-WAIT",
		          "a peer claims id %u (incarnation %llu), not known "
		          "here yet: waiting for its admission", c->peer,
		          (unsigned long long)c->gen);
		atomic_store(&c->parking, true);
		return true;
	}
	claim_settled(c, r);
	return true;
}

/* Dialer: WELCOME names the acceptor and the coordinator and proves the
 * acceptor derived our key.  Answers CONFIRM and opens. */
bool rayc__hs_on_welcome(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc__hs *hs = c->hs;
	const unsigned char *share = rayc__r_bytes(rd, RAYC__CPACE_SHARE);
	size_t hn = rayc__rd_left(rd) >= RAYC__CPACE_MAC
	                    ? rayc__rd_left(rd) - RAYC__CPACE_MAC
	                    : 0;
	const unsigned char *hidden = rayc__r_bytes(rd, hn);
	const unsigned char *mac = rayc__r_bytes(rd, RAYC__CPACE_MAC);
	unsigned char th[RAYC__CPACE_TH], th1[RAYC__CPACE_TH];
	unsigned char want[RAYC__CPACE_MAC];
	unsigned char shown[RAYC__WIRE_MAX_PREAUTH];
	unsigned char pk[RAYC__ID_PK], sig[RAYC__ID_SIG];
	rayc__cpace_keys k;

	if (rd->bad || hs == NULL || hs->step != HS_AUTH_SENT)
		return false;
	th_add(hs, RAYC__MSG_WELCOME, share, RAYC__CPACE_SHARE);
	th_now(hs, th1);
	bool ok = rayc__cpace_finish(&hs->cp, share, th1, &k);
	th_add(hs, RAYC__MSG_WELCOME | TH_HIDDEN, hidden, hn);
	crypto_generichash_final(&hs->th, th, sizeof(th));
	if (ok) {
		rayc__cpace_mac(k.conf_a, th, want);
		ok = rayc__cpace_mac_ok(mac, want);
	}
	/* Only what the acceptor proved it said is shown and parsed. */
	uint8_t their_enc = 0;
	uint32_t id = 0, coord = 0;
	uint64_t gen = 0;
	char curl[RAYC__URL_MAX];
	if (ok) {
		rayc__rd sr;
		memcpy(shown, hidden, hn);
		rayc__cpace_hide(k.hide, shown, hn);
		rayc__rd_init(&sr, shown, hn);
		id = rayc__r_u32(&sr);
		gen = rayc__r_u64(&sr);
		coord = rayc__r_u32(&sr);
		rayc__r_str(&sr, curl, sizeof(curl));
		const unsigned char *kp = rayc__r_bytes(&sr, RAYC__ID_PK);
		const unsigned char *ks = rayc__r_bytes(&sr, RAYC__ID_SIG);
		their_enc = rayc__r_u8(&sr);
		if (sr.bad || rayc__rd_left(&sr) != 0 || their_enc > 1 ||
		    id >= RAYC__MAX_PEERS || coord >= RAYC__MAX_PEERS) {
			rayc__cpace_wipe(&k, sizeof(k));
			return false; /* said by a peer with the token */
		}
		memcpy(pk, kp, sizeof(pk));
		memcpy(sig, ks, sizeof(sig));
	}
	if (!ok) {
		rayc__cpace_wipe(&k, sizeof(k));
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-AUTH-BADPEER",
		          "authentication with the peer at the other end "
		          "failed: one of us has a wrong or missing "
		          "RAYC_TOKEN");
		if (c->joining) {
			rayc__mutex_lock(&net->mu);
			net->join_rc = RAYC_EAUTH;
			rayc__mutex_unlock(&net->mu);
		}
		refuse(c, "authentication failed");
		return true;
	}
	if (c->want_peer != 0 && id == 0) {
		/* A newcomer dialed between its admission and its reading
		 * of JOINED: alive; what was queued goes on a later dial
		 * (relink.c: orphans). */
		rayc__cpace_wipe(&k, sizeof(k));
		atomic_store(&c->answered_joining, true);
		rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-NOT-JOINED-YET",
		          "dialed peer %u, which has not read its admission "
		          "yet: dialing again later", c->want_peer);
		return false;
	}
	if (c->want_peer != 0 && id != c->want_peer) {
		rayc__cpace_wipe(&k, sizeof(k));
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-WRONG-PEER",
		          "dialed peer %u but peer %u answered", c->want_peer,
		          id);
		return false;
	}
	if (!id_check(pk, false, th1, sig)) {
		rayc__cpace_wipe(&k, sizeof(k));
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-WRONG-PEER",
		          "peer %u's identity signature is not valid", id);
		return false;
	}
	if (c->want_peer != 0) {
		/* The slot's holder we know, with the key committed for it:
		 * not an older holder left at its address, nor a member
		 * posing as it.  One newer than our view knows is dialed
		 * again once the view has it. */
		rayc__mutex_lock(&net->mu);
		rayc__peer *p = &net->peers[id];
		uint64_t wgen = p->gen;
		bool same = p->known &&
		            sodium_memcmp(p->pk, pk, RAYC__ID_PK) == 0;
		rayc__mutex_unlock(&net->mu);
		if (gen != wgen || !same) {
			rayc__cpace_wipe(&k, sizeof(k));
			rayc__log(gen != wgen ? RAYC_LOG_DEBUG : RAYC_LOG_WARN,
			          "RAYC-NET-WRONG-PEER",
			          "dialed peer %u but %s answered", id,
			          gen < wgen   ? "an older holder of its slot"
			          : gen > wgen ? "a newer holder of its slot"
			                       : "a peer without its key");
			return false;
		}
	}
	/* A joiner knows no keys yet: it keeps this one and checks it
	 * against the view its JOINED brings (mesh.c). */
	memcpy(c->pk, pk, RAYC__ID_PK);
	atomic_store(&c->verified, true);
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_CONFIRM, net->self);
	rayc__cpace_mac(k.conf_d, th, want);
	rayc__w_bytes(&b, want, sizeof(want));
	id_sign(net, true, th, sig);
	rayc__w_bytes(&b, net->id_pk, RAYC__ID_PK);
	rayc__w_bytes(&b, sig, sizeof(sig));
	rayc__w_frame_end(&b, f);
	/* A cluster that encrypts makes every peer that meets it encrypt
	 * all its connections from then on. */
	if (their_enc)
		atomic_store(&net->encrypt, true);
	set_keys(c, &k, their_enc || atomic_load(&net->encrypt));
	rayc__cpace_wipe(&k, sizeof(k));
	c->peer = id;
	c->gen = gen;
	if (c->joining) {
		rayc__mutex_lock(&net->mu);
		net->coord = coord;
		snprintf(net->coord_url, sizeof(net->coord_url), "%s", curl);
		rayc__mutex_unlock(&net->mu);
	}
	/* CONFIRM goes out before anything the open connection sends. */
	rayc__conn_send_hs(c, &b, false);
	rayc__wbuf_fini(&b);
	hs_done(c);
	rayc__conn_set_open(c);
	return true;
}
