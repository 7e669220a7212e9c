/* fuzz.c -- this peer's frame reader over bytes given, not received: the
 * fuzz targets (fuzz/) and the wire tests hand it what a hostile peer
 * could send.  The connection has no stream (c->s NULL), so conn.c
 * neither sends (replies stay in its out buffer and go with it) nor
 * starts a receive; it is never in net->conns, so only this file frees
 * it. */
#include <string.h>

#include "net/net_int.h"
#include "testing.h"

/* A connection in the state how asks for (testing.h). */
static rayc__conn *rx_conn(rayc__net *net, int how, uint32_t peer,
                           const unsigned char key[32])
{
	rayc__conn *c = rayc__conn_new(net);

	if (c == NULL)
		return NULL;
	atomic_store(&c->state, RAYC__CONN_HANDSHAKE);
	switch (how) {
	case RAYC__TEST_RX_ACCEPTOR:
		rayc__hs_hello(c); /* its nonce is in the transcript */
		break;
	case RAYC__TEST_RX_DIALER:
		c->dialed = true;
		c->want_peer = peer;
		break;
	default:
		/* As the acceptor once CONFIRM checked: the dialer's id is
		 * known, frames from it are tagged under key. */
		rayc__hs_free(c->hs);
		c->hs = NULL;
		c->peer = peer;
		atomic_store(&c->verified, true); /* its key proven */
		memcpy(c->rx.key, key, sizeof(c->rx.key));
		atomic_store(&c->state, RAYC__CONN_OPEN);
		break;
	}
	return c;
}

/* Frees c once nobody else holds it: a handler may have kept a ref for
 * an answer made on another thread (a KV request, on the loop thread),
 * which, c being closed, sends nothing and lets go. */
static void rx_conn_free(rayc__net *net, rayc__conn *c)
{
	int64_t deadline = rayc__now_ns() + (int64_t)10 * 1000000000;

	rayc__conn_close(c, NULL);
	while (atomic_load(&c->refs) > 0) {
		if (rayc__now_ns() > deadline) {
			rayc__log(RAYC_LOG_ERROR, "RAYC-TEST-RX",
			          "a fed connection is still held after 10 s: "
			          "left allocated");
			return;
		}
		rayc__sleep_ms(1);
	}
	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < RAYC__MAX_PEERS; i++)
		if (net->peers[i].conn == c)
			net->peers[i].conn = NULL;
	rayc__mutex_unlock(&net->mu);
	rayc__conn_free(c);
}

int rayc__test_rx(int how, uint32_t peer, const unsigned char key[32],
                  const void *p, size_t n, size_t piece)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL || how < RAYC__TEST_RX_ACCEPTOR ||
	    how > RAYC__TEST_RX_OPEN || peer >= RAYC__MAX_PEERS)
		return RAYC_ESTATE;
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL)
		return RAYC_ESTATE;
	rayc__conn *c = rx_conn(net, how, peer, key);
	if (c == NULL) {
		rayc__net_put(net);
		return RAYC_ENOMEM;
	}
	bool open = true;
	for (size_t off = 0; open && off < n;) {
		size_t step = piece == 0 || piece > n - off ? n - off : piece;
		open = rayc__conn_rx_feed(c, (const uint8_t *)p + off, step);
		off += step;
	}
	rx_conn_free(net, c);
	rayc__net_put(net);
	return open ? 0 : 1;
}
