/* handshake.c -- the connection handshake: CPace (cpace.h) with key
 * confirmation both ways, four frames.
 *
 *   acceptor                             dialer
 *   HELLO   na                     ->
 *                                  <-    AUTH     nd, Yd, id, gen
 *   WELCOME Ya, hidden(id, gen,
 *           coordinator, url),
 *           MAC(conf_a, th)        ->    (checks the MAC: the acceptor
 *                                         knows the token)
 *                                  <-    CONFIRM  MAC(conf_d, th)
 *   (checks it: the dialer knows the token; opens)  (opens)
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
};

static const char TH_LABEL[] = "rayc-handshake-v2";

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

/* Sets the frame keys of both directions from the CPace keys. */
static void set_keys(rayc__conn *c, const rayc__cpace_keys *k)
{
	memcpy(c->tx.key, c->dialed ? k->d2a : k->a2d, 32);
	memcpy(c->rx.key, c->dialed ? k->a2d : k->d2a, 32);
	c->tx.ctr = 0;
	c->rx.ctr = 0;
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
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_AUTH, net->self), n;
	rayc__w_bytes(&b, hs->n_mine, 32);
	rayc__w_bytes(&b, hs->cp.share, RAYC__CPACE_SHARE);
	rayc__mutex_lock(&net->mu);
	rayc__w_u32(&b, net->self);
	rayc__w_u64(&b, net->self != 0 ? net->peers[net->self].gen : 0);
	rayc__mutex_unlock(&net->mu);
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
	unsigned char th[RAYC__CPACE_TH], mac[RAYC__CPACE_MAC];
	rayc__cpace_keys k;

	if (rd->bad || id >= RAYC__MAX_PEERS || hs == NULL ||
	    hs->step != HS_HELLO_SENT)
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
	rayc__mutex_lock(&net->mu);
	rayc__w_u32(&b, net->self);
	rayc__w_u64(&b, net->peers[net->self].gen);
	rayc__w_u32(&b, net->coord);
	rayc__w_str(&b, net->coord_url);
	rayc__mutex_unlock(&net->mu);
	if (b.bad) {
		rayc__cpace_wipe(&k, sizeof(k));
		rayc__wbuf_fini(&b);
		return false;
	}
	rayc__cpace_hide(k.hide, b.p + at, b.len - at);
	th_add(hs, RAYC__MSG_WELCOME | TH_HIDDEN, b.p + at, b.len - at);
	crypto_generichash_final(&hs->th, th, sizeof(th));
	rayc__cpace_mac(k.conf_a, th, mac);
	rayc__cpace_mac(k.conf_d, th, hs->want);
	set_keys(c, &k);
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
bool rayc__hs_on_confirm(rayc__conn *c, rayc__rd *rd)
{
	rayc__hs *hs = c->hs;
	const unsigned char *mac = rayc__r_bytes(rd, RAYC__CPACE_MAC);

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
	hs_done(c);
	rayc__conn_set_open(c);
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
	unsigned char th[RAYC__CPACE_TH], want[RAYC__CPACE_MAC];
	unsigned char shown[RAYC__WIRE_MAX_PREAUTH];
	rayc__cpace_keys k;

	if (rd->bad || hs == NULL || hs->step != HS_AUTH_SENT)
		return false;
	th_add(hs, RAYC__MSG_WELCOME, share, RAYC__CPACE_SHARE);
	th_now(hs, th);
	bool ok = rayc__cpace_finish(&hs->cp, share, th, &k);
	th_add(hs, RAYC__MSG_WELCOME | TH_HIDDEN, hidden, hn);
	crypto_generichash_final(&hs->th, th, sizeof(th));
	if (ok) {
		rayc__cpace_mac(k.conf_a, th, want);
		ok = rayc__cpace_mac_ok(mac, want);
	}
	/* Only what the acceptor proved it said is shown and parsed. */
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
		if (sr.bad || rayc__rd_left(&sr) != 0 ||
		    id >= RAYC__MAX_PEERS || coord >= RAYC__MAX_PEERS) {
			rayc__cpace_wipe(&k, sizeof(k));
			return false; /* said by a peer with the token */
		}
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
	if (c->want_peer != 0 && id != c->want_peer) {
		rayc__cpace_wipe(&k, sizeof(k));
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-WRONG-PEER",
		          "dialed peer %u but peer %u answered", c->want_peer,
		          id);
		return false;
	}
	if (c->want_peer != 0) {
		/* The slot's holder we know, not an older one left at its
		 * address. */
		rayc__mutex_lock(&net->mu);
		uint64_t wgen = net->peers[id].gen;
		rayc__mutex_unlock(&net->mu);
		if (gen < wgen) {
			rayc__cpace_wipe(&k, sizeof(k));
			rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-WRONG-PEER",
			          "dialed peer %u but an older holder of its "
			          "slot answered", id);
			return false;
		}
	}
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_CONFIRM, net->self);
	rayc__cpace_mac(k.conf_d, th, want);
	rayc__w_bytes(&b, want, sizeof(want));
	rayc__w_frame_end(&b, f);
	set_keys(c, &k);
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
