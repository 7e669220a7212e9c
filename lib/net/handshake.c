/* handshake.c -- the connection handshake.  The accepting side says
 * HELLO with a nonce (conn.c); the dialer answers AUTH: its own nonce
 * and an HMAC over both, keyed with the hash of the cluster token.  The
 * accepting side checks it and proves it knows the token too with
 * WELCOME, which also names itself and the coordinator, or says REFUSED.
 * Only then does the connection open (conn.c) and carry other frames.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "net/net_int.h"

/* ---- authentication ---- */

void rayc__net_hmac(const rayc__net *net, const char *tag,
                    const unsigned char *a, const unsigned char *b,
                    unsigned char out[32])
{
	unsigned char msg[4 + 64];

	memcpy(msg, tag, 4);
	memcpy(msg + 4, a, 32);
	memcpy(msg + 36, b, 32);
	crypto_auth_hmacsha256(out, msg, sizeof(msg), net->key);
}

bool rayc__net_hmac_ok(const rayc__net *net, const char *tag,
                       const unsigned char *a, const unsigned char *b,
                       const unsigned char *mac)
{
	unsigned char want[32];

	if (a == NULL || b == NULL || mac == NULL)
		return false;
	rayc__net_hmac(net, tag, a, b, want);
	return sodium_memcmp(want, mac, 32) == 0;
}

/* ---- the handshake ---- */

static void refuse(rayc__conn *c, const char *why)
{
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_REFUSED, 0);

	rayc__w_str(&b, why);
	rayc__w_frame_end(&b, f);
	rayc__conn_send_hs(c, &b, true);
	rayc__wbuf_fini(&b);
}

/* Server side of the handshake: we said HELLO, this should be AUTH. */
bool rayc__hs_on_auth(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	const unsigned char *nonce = rayc__r_bytes(rd, 32);
	const unsigned char *mac = rayc__r_bytes(rd, 32);
	uint32_t id = rayc__r_u32(rd);
	uint64_t gen = rayc__r_u64(rd);

	if (rd->bad || id >= RAYC__MAX_PEERS ||
	    !rayc__net_hmac_ok(net, "AUTH", c->n_mine, nonce, mac)) {
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-AUTH-REFUSED",
		          "refused a peer: authentication failed (wrong or "
		          "missing RAYC_TOKEN?)");
		/* The connection closes once REFUSED is out (send_cb);
		 * closing now could drop it. */
		refuse(c, "authentication failed");
		return true;
	}
	memcpy(c->n_theirs, nonce, 32);
	c->peer = id;
	c->gen = gen; /* an older one than its slot's is told REMOVED */
	rayc__wbuf b = { 0 };
	unsigned char mine[32];
	rayc__net_hmac(net, "WELC", c->n_theirs, c->n_mine, mine);
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_WELCOME, net->self);
	rayc__w_bytes(&b, mine, 32);
	rayc__mutex_lock(&net->mu);
	rayc__w_u32(&b, net->self);
	rayc__w_u64(&b, net->peers[net->self].gen);
	rayc__w_u32(&b, net->coord);
	rayc__w_str(&b, net->coord_url);
	rayc__mutex_unlock(&net->mu);
	rayc__w_frame_end(&b, f);
	rayc__conn_send_hs(c, &b, false);
	rayc__wbuf_fini(&b);
	rayc__conn_set_open(c);
	return true;
}

/* Client side: the server's HELLO carries its nonce; answer with AUTH. */
bool rayc__hs_on_hello(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	const unsigned char *nonce = rayc__r_bytes(rd, 32);

	if (rd->bad)
		return false;
	memcpy(c->n_theirs, nonce, 32);
	unsigned char mac[32];
	rayc__net_hmac(net, "AUTH", c->n_theirs, c->n_mine, mac);
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_AUTH, net->self);
	rayc__w_bytes(&b, c->n_mine, 32);
	rayc__w_bytes(&b, mac, 32);
	rayc__mutex_lock(&net->mu);
	rayc__w_u32(&b, net->self);
	rayc__w_u64(&b, net->self != 0 ? net->peers[net->self].gen : 0);
	rayc__mutex_unlock(&net->mu);
	rayc__w_frame_end(&b, f);
	rayc__conn_send_hs(c, &b, false);
	rayc__wbuf_fini(&b);
	return true;
}

bool rayc__hs_on_welcome(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	const unsigned char *mac = rayc__r_bytes(rd, 32);
	uint32_t id = rayc__r_u32(rd);
	uint64_t gen = rayc__r_u64(rd);
	uint32_t coord = rayc__r_u32(rd);
	char curl[RAYC__URL_MAX];

	rayc__r_str(rd, curl, sizeof(curl));
	if (rd->bad || id >= RAYC__MAX_PEERS || coord >= RAYC__MAX_PEERS ||
	    !rayc__net_hmac_ok(net, "WELC", c->n_mine, c->n_theirs, mac)) {
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-AUTH-BADPEER",
		          "a peer answered without knowing the cluster token");
		return false;
	}
	if (c->want_peer != 0 && id != c->want_peer) {
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-WRONG-PEER",
		          "dialed peer %u but peer %u answered", c->want_peer,
		          id);
		return false;
	}
	if (c->want_peer != 0) {
		/* The slot's holder we know, not an older one left at its
		 * address. */
		rayc__mutex_lock(&net->mu);
		uint64_t want = net->peers[id].gen;
		rayc__mutex_unlock(&net->mu);
		if (gen < want) {
			rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-WRONG-PEER",
			          "dialed peer %u but an older holder of its "
			          "slot answered", id);
			return false;
		}
	}
	c->peer = id;
	c->gen = gen;
	if (c->joining) {
		rayc__mutex_lock(&net->mu);
		net->coord = coord;
		snprintf(net->coord_url, sizeof(net->coord_url), "%s", curl);
		rayc__mutex_unlock(&net->mu);
	}
	rayc__conn_set_open(c);
	return true;
}
