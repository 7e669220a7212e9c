/* conn.c -- one connection to another peer over nng_stream (NNG's byte
 * stream API, aio driven; measured about 2.5x faster per round trip than
 * NNG's SP sockets here), with rayc's own framing on top.
 *
 * Sending (batches, the fast way, transfers fed in, tags): conn_tx.c.
 *
 * Receiving.  One receive is outstanding per connection; its callback
 * parses every complete frame in the buffer, checks header and tag (xxh3
 * in the handshake), and hands each to the frame handlers.  Before the
 * handshake ends only handshake frames of at most RAYC__WIRE_MAX_PREAUTH
 * bytes are accepted: an unauthenticated peer can make us do nothing
 * else.
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "net/net_int.h"
#include "testing.h"

static void recv_cb(void *arg);
static void dial_cb(void *arg);
static void rx_abort(rayc__conn *c);
static void rx_run(rayc__conn *c);
static void unpark_cb(void *arg);

static _Atomic int rx_pause_ms; /* rayc__test_rx_pause */

rayc__conn *rayc__conn_new(rayc__net *net)
{
	rayc__conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->net = net;
	c->born = rayc__now_ns();
	rayc__mutex_init(&c->mu);
	atomic_init(&c->refs, 0);
	atomic_init(&c->state, RAYC__CONN_DIALING);
	if (nng_aio_alloc(&c->raio, recv_cb, c) != 0 ||
	    nng_aio_alloc(&c->saio, rayc__conn_send_cb, c) != 0 ||
	    nng_aio_alloc(&c->daio, dial_cb, c) != 0 ||
	    nng_aio_alloc(&c->paio, unpark_cb, c) != 0 ||
	    nng_aio_alloc(&c->faio, NULL, NULL) != 0) {
		rayc__conn_free(c);
		return NULL;
	}
	c->fast = true;
	c->rcap = RAYC__RX_BASE;
	c->rbuf = malloc(c->rcap);
	c->hs = rayc__hs_new();
	if (c->rbuf == NULL || c->hs == NULL) {
		rayc__conn_free(c);
		return NULL;
	}
	return c;
}

void rayc__conn_free(rayc__conn *c)
{
	if (c == NULL)
		return;
	if (c->raio != NULL)
		nng_aio_stop(c->raio);
	if (c->saio != NULL)
		nng_aio_stop(c->saio);
	if (c->daio != NULL)
		nng_aio_stop(c->daio);
	if (c->paio != NULL)
		nng_aio_stop(c->paio);
	if (c->faio != NULL)
		nng_aio_stop(c->faio);
	if (c->s != NULL)
		nng_stream_close(c->s);
	/* The aios go before the stream and the dialer whose cancel
	 * routines they name: in NNG 1.5.2 only nng_aio_free waits for
	 * an expiry thread still in such a routine, nng_aio_stop does not
	 * (we set no aio timers now: rayc__conn_dial). */
	nng_aio_free(c->raio);
	nng_aio_free(c->saio);
	nng_aio_free(c->daio);
	nng_aio_free(c->paio);
	nng_aio_free(c->faio);
	if (c->s != NULL)
		nng_stream_free(c->s);
	if (c->dialer != NULL)
		nng_stream_dialer_free(c->dialer);
	rx_abort(c);
	if (c->rx_charged > 0)
		atomic_fetch_sub(&c->net->rx_held[c->rx_charged_to],
		                 c->rx_charged);
	while (c->xhead != NULL) {
		rayc__xout *x = c->xhead;
		c->xhead = x->next;
		rayc__remote_xout_done(c->net, x);
	}
	rayc__conn_finish_xouts(c, c->out_done);
	rayc__conn_finish_xouts(c, c->inflight_done);
	rayc__wbuf_fini(&c->out);
	rayc__wbuf_fini(&c->pend);
	rayc__wbuf_fini(&c->inflight);
	rayc__wbuf_fini(&c->seal);
	free(c->rbuf);
	rayc__hs_free(c->hs);
	sodium_memzero(&c->tx, sizeof(c->tx));
	sodium_memzero(&c->rx, sizeof(c->rx));
	rayc__mutex_fini(&c->mu);
	free(c);
}

void rayc__conn_stop(rayc__conn *c)
{
	rayc__conn_close(c, NULL);
	nng_aio *aios[] = { c->raio, c->saio, c->daio, c->paio, c->faio };
	for (size_t i = 0; i < sizeof(aios) / sizeof(aios[0]); i++)
		if (aios[i] != NULL)
			nng_aio_stop(aios[i]);
}

void rayc__conn_unref(rayc__conn *c)
{
	atomic_fetch_sub(&c->refs, 1);
}

/* Receives into the buffer, or, while a CHUNK's payload is landing in
 * place, into its destination and then the buffer (whatever follows). */
static void start_recv(rayc__conn *c)
{
	nng_iov iov[2];
	unsigned n = 0;

	if (c->rx_x != NULL) {
		iov[n].iov_buf = c->rx_dst + c->rx_got;
		iov[n++].iov_len = c->rx_n - c->rx_got;
	}
	iov[n].iov_buf = c->rbuf + c->rlen;
	iov[n++].iov_len = c->rcap - c->rlen;
	nng_aio_set_iov(c->raio, n, iov);
	nng_stream_recv(c->s, c->raio);
}

/* The payload received in place will not be completed. */
static void rx_abort(rayc__conn *c)
{
	if (c->rx_x != NULL) {
		rayc__remote_chunk_end(c, c->rx_x, 0, false);
		c->rx_x = NULL;
	}
}

void rayc__conn_close(rayc__conn *c, const char *why)
{
	rayc__mutex_lock(&c->mu);
	if (atomic_load(&c->state) == RAYC__CONN_CLOSED) {
		rayc__mutex_unlock(&c->mu);
		return;
	}
	atomic_store(&c->state, RAYC__CONN_CLOSED);
	rayc__mutex_unlock(&c->mu);
	if (why != NULL)
		rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-CLOSE",
		          "connection to peer %u closed: %s", c->peer, why);
	if (c->s != NULL)
		nng_stream_close(c->s);
	nng_aio_abort(c->daio, NNG_ECLOSED);
	rayc__net_conn_lost(c);
}

void rayc__conn_give_up_dial(rayc__conn *c)
{
	nng_aio_abort(c->daio, NNG_ETIMEDOUT);
	rayc__conn_close(c, "dial timed out");
}

static _Atomic uint64_t frames_refused;

uint64_t rayc__test_frames_refused(void)
{
	return atomic_load(&frames_refused);
}

/* A frame failed its tag or checksum: the connection closes. */
void rayc__conn_count_refused(void)
{
	atomic_fetch_add(&frames_refused, 1);
}

static void refused(rayc__conn *c, const char *what)
{
	rayc__conn_count_refused();
	rayc__log(RAYC_LOG_WARN, "RAYC-NET-BADFRAME",
	          "frame with a bad %s from peer %u: closing the connection",
	          what, c->peer);
}

/* A GROUP's frames (wire.h), its tag checked: each handed on as if it
 * had come alone.  False to drop the connection (a frame that does not
 * belong in a GROUP, or runs past its end: its sender is broken). */
static bool rx_group(rayc__conn *c, const uint8_t *p, size_t n)
{
	size_t off = 0;
	uint64_t k = 0;

	while (off < n) {
		rayc__whdr ih;
		rayc__rd rd;
		if (n - off < RAYC__WIRE_HDR ||
		    !rayc__whdr_parse(p + off, n - off - RAYC__WIRE_HDR, &ih) ||
		    !rayc__wire_groupable(ih.type) || ih.sender != c->peer) {
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-PROTO",
			          "malformed GROUP frame from peer %u: closing "
			          "the connection", c->peer);
			rayc__conn_count_refused();
			return false;
		}
		if (!rayc__remote_rx_keeps(ih.type, ih.len))
			rayc__remote_rx_let_go(); /* as rx_frames */
		rayc__rd_init(&rd, p + off + RAYC__WIRE_HDR, ih.len);
		rayc__net_handle(c, ih.type, &rd);
		if (atomic_load(&c->state) == RAYC__CONN_CLOSED)
			return false;
		if (c->close_after_send)
			return true; /* refused (REMOVED): read nothing more */
		off += RAYC__WIRE_HDR + ih.len;
		k++;
	}
	atomic_fetch_add_explicit(&rayc__grouped_in, k, memory_order_relaxed);
	atomic_fetch_add_explicit(&rayc__groups_in, 1, memory_order_relaxed);
	return true;
}

/* One frame (its header raw at hdr, parsed in h; payload at p):
 * returns false to drop the connection. */
static bool on_frame(rayc__conn *c, const uint8_t *hdr, const rayc__whdr *h,
                     const uint8_t *p)
{
	rayc__rd rd;
	int st = atomic_load(&c->state);

	if (st == RAYC__CONN_CLOSED)
		return false; /* closed meanwhile: nothing more is read */
	/* A dialer opens on sending CONFIRM; the acceptor may still refuse
	 * it (its claimed id, handshake.c), and does so, like any refusal
	 * in the handshake, untagged: as the first frame only. */
	bool refusal = st == RAYC__CONN_OPEN && c->dialed && c->rx.ctr == 0 &&
	               h->type == RAYC__MSG_REFUSED &&
	               rayc__wire_sum(p, h->len) == h->sum;
	if (st == RAYC__CONN_OPEN && !refusal) {
		if (!rayc__wire_open(&c->rx, hdr, (uint8_t *)p, h->len, NULL,
		                     0)) {
			refused(c, "tag");
			return false;
		}
	} else if (rayc__wire_sum(p, h->len) != h->sum) {
		refused(c, "checksum");
		return false;
	}
	rayc__rd_init(&rd, p, h->len);
	if (h->type == RAYC__MSG_REFUSED) {
		char why[128];
		rayc__r_str(&rd, why, sizeof(why));
		if (st == RAYC__CONN_HANDSHAKE && !c->dialed)
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-AUTH-REFUSED",
			          "refused a peer: authentication failed "
			          "(wrong or missing RAYC_TOKEN?)");
		else
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-REFUSED",
			          "peer refused us: %s", rd.bad ? "?" : why);
		if (c->joining) {
			rayc__mutex_lock(&c->net->mu);
			c->net->join_rc = RAYC_EAUTH;
			rayc__mutex_unlock(&c->net->mu);
			rayc__event_set(&c->net->join_ev);
		}
		return false;
	}
	if (st == RAYC__CONN_HANDSHAKE) {
		if (c->dialed && h->type == RAYC__MSG_HELLO)
			return rayc__hs_on_hello(c, &rd);
		if (c->dialed && h->type == RAYC__MSG_WELCOME)
			return rayc__hs_on_welcome(c, &rd);
		if (!c->dialed && h->type == RAYC__MSG_AUTH)
			return rayc__hs_on_auth(c, &rd);
		if (!c->dialed && h->type == RAYC__MSG_CONFIRM)
			return rayc__hs_on_confirm(c, &rd);
		return false;
	}
	if (st != RAYC__CONN_OPEN)
		return false;
	if (h->sender != c->peer && c->peer != 0)
		return false;
	if (c->probe)
		return true; /* a test's dial of its own: what it hears is no
		                news for this peer (rayc__test_send_as) */
	if (c->peer != 0 && !atomic_load(&c->verified)) {
		/* An older incarnation of a slot (handshake.c): it may only
		 * learn that it is gone. */
		rayc__wbuf b = { 0 };
		size_t f = rayc__w_frame_begin(&b, RAYC__MSG_REMOVED,
		                               c->net->self);
		rayc__w_frame_end(&b, f);
		rayc__conn_send_close(c, &b);
		rayc__wbuf_fini(&b);
		return true;
	}
	if (h->type == RAYC__MSG_GROUP)
		return rx_group(c, p, h->len);
	rayc__net_handle(c, h->type, &rd);
	return atomic_load(&c->state) != RAYC__CONN_CLOSED;
}

/* A large CHUNK whose sub-header is in the buffer at off (its header
 * parsed into h) but whose payload is not all there: asks remote.c where
 * the payload goes and, if it has a place, receives it there instead of
 * into the buffer.  1: switched (the frame's bytes left the buffer); 0:
 * receive it into the buffer as usual; -1: bad frame. */
static int try_direct(rayc__conn *c, const rayc__whdr *h, size_t off)
{
	size_t have = c->rlen - off - RAYC__WIRE_HDR;
	const uint8_t *sub = c->rbuf + off + RAYC__WIRE_HDR;
	size_t n = h->len - RAYC__CHUNK_SUB;
	uint8_t *dst;
	rayc__xin *x;

	/* Encrypted, the sub-header is read from a decrypted copy; the
	 * frame is checked, and its payload decrypted where it landed, once
	 * it is all in (rx_finish). */
	uint8_t plain[RAYC__CHUNK_SUB];
	memcpy(plain, sub, sizeof(plain));
	rayc__wire_peek(&c->rx, plain, sizeof(plain), 0);
	int r = rayc__remote_chunk_begin(c, plain, n, NULL, &dst, &x);
	if (r != 1)
		return r < 0 ? -1 : 0; /* 2: taken, the rest is dropped */
	if (have > RAYC__CHUNK_SUB)
		memcpy(dst, sub + RAYC__CHUNK_SUB, have - RAYC__CHUNK_SUB);
	c->rx_x = x;
	c->rx_dst = dst;
	c->rx_n = n;
	c->rx_got = have - RAYC__CHUNK_SUB;
	memcpy(c->rx_hdr, c->rbuf + off, RAYC__WIRE_HDR);
	memcpy(c->rx_sub, sub, RAYC__CHUNK_SUB);
	return 1;
}

/* Is the incomplete frame at off (header h) a CHUNK to receive in place,
 * once its sub-header is in? */
static bool direct_candidate(rayc__conn *c, const rayc__whdr *h)
{
	return h->type == RAYC__MSG_CHUNK &&
	       atomic_load(&c->state) == RAYC__CONN_OPEN &&
	       (h->sender == c->peer || c->peer == 0) &&
	       h->len >= RAYC__CHUNK_SUB + RAYC__CHUNK_DIRECT_MIN;
}

/* The payload received in place is complete: checks the frame's tag
 * (header, sub-header, then the payload where it landed) and hands it
 * on.  False if the connection is closed. */
static bool rx_finish(rayc__conn *c)
{
	rayc__xin *x = c->rx_x;
	bool ok = rayc__wire_open(&c->rx, c->rx_hdr, c->rx_sub,
	                          RAYC__CHUNK_SUB, c->rx_dst, c->rx_n);

	c->rx_x = NULL;
	rayc__remote_chunk_end(c, x, c->rx_n, ok);
	if (!ok) {
		refused(c, "tag");
		rayc__conn_close(c, "protocol");
		return false;
	}
	return atomic_load(&c->state) != RAYC__CONN_CLOSED;
}

static void recv_run(rayc__conn *c);

/* A receive callback holds a ref on its connection while it runs: the
 * loop thread's reaper frees only connections nobody holds, and freeing
 * waits for the connection's callbacks to return (nng_aio_stop).  A
 * callback that ran long (a frame whose handling waits) held the loop,
 * and with it heartbeats, failure detection and the control store, for
 * as long. */
static void recv_cb(void *arg)
{
	rayc__conn *c = arg;

	atomic_fetch_add(&c->refs, 1);
	recv_run(c);
	rayc__conn_unref(c);
}

static void recv_run(rayc__conn *c)
{
	rayc__nng_thread = true;
	int rv = nng_aio_result(c->raio);

	if (rv != 0) {
		rx_abort(c);
		rayc__conn_close(c, nng_strerror(rv));
		return;
	}
	size_t got = nng_aio_count(c->raio);
	if (c->rx_x != NULL) {
		size_t take = c->rx_n - c->rx_got;
		if (take > got)
			take = got;
		c->rx_got += take;
		c->rlen += got - take; /* what followed, in the buffer */
		if (c->rx_got < c->rx_n) {
			start_recv(c);
			return;
		}
		if (!rx_finish(c))
			return;
	} else {
		c->rlen += got;
	}
	rx_run(c);
}

/* Makes the receive buffer cap bytes (keeping what it holds), counting
 * what it takes beyond RAYC__RX_BASE against the member the connection
 * is bound to.  False (and the buffer as it was) if that member would
 * hold more than net->rx_max, or memory ran out. */
static bool rx_resize(rayc__conn *c, size_t cap)
{
	rayc__net *net = c->net;
	size_t want = cap > RAYC__RX_BASE ? cap - RAYC__RX_BASE : 0;
	uint32_t id = c->peer < RAYC__MAX_PEERS ? c->peer : 0;
	size_t add = want;

	if (c->rx_charged_to == id)
		add = want > c->rx_charged ? want - c->rx_charged : 0;
	if (add > 0 && id != 0) {
		size_t was = atomic_fetch_add(&net->rx_held[id], add);
		if (was + add > net->rx_max) {
			atomic_fetch_sub(&net->rx_held[id], add);
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-RX-LIMIT",
			          "peer %u would make this peer hold %zu bytes "
			          "of frames (at most %zu): closing that "
			          "connection", id, was + add, net->rx_max);
			return false;
		}
	}
	uint8_t *nb = realloc(c->rbuf, cap);
	if (nb == NULL) {
		if (add > 0 && id != 0)
			atomic_fetch_sub(&net->rx_held[id], add);
		return false;
	}
	c->rbuf = nb;
	c->rcap = cap;
	/* What was counted before (to this or an earlier id) goes back. */
	size_t back = c->rx_charged_to == id ? c->rx_charged + add - want
	                                     : c->rx_charged;
	if (back > 0 && c->rx_charged_to != 0)
		atomic_fetch_sub(&net->rx_held[c->rx_charged_to], back);
	c->rx_charged = id != 0 ? want : 0;
	c->rx_charged_to = id;
	return true;
}

/* The largest frame c may carry now. */
static size_t rx_max_frame(const rayc__conn *c)
{
	if (atomic_load(&c->state) != RAYC__CONN_OPEN)
		return RAYC__WIRE_MAX_PREAUTH;
	if (c->peer == 0 && !c->dialed)
		return RAYC__WIRE_MAX_JOIN; /* a joiner: JOIN only */
	return RAYC__WIRE_MAX_FRAME;
}

/* Hands on the whole frames in the receive buffer and moves them out of
 * it; false if the connection closed on one (or refused its peer). */
static bool rx_frames(rayc__conn *c)
{
	size_t off = 0;
	while (c->rlen - off >= RAYC__WIRE_HDR) {
		rayc__whdr h;
		if (!rayc__whdr_parse(c->rbuf + off, rx_max_frame(c), &h)) {
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-PROTO",
			          "malformed frame header from peer %u", c->peer);
			rayc__conn_close(c, "bad frame");
			return false;
		}
		/* Only small TASKs and answers are read under rt->mu kept
		 * from the last (remote.c: rayc__remote_rx_keeps). */
		if (!rayc__remote_rx_keeps(h.type, h.len))
			rayc__remote_rx_let_go();
		size_t need = RAYC__WIRE_HDR + h.len;
		if (c->rlen - off < need) {
			bool cand = direct_candidate(c, &h);
			if (cand && c->rlen - off >=
			                    RAYC__WIRE_HDR + RAYC__CHUNK_SUB) {
				int r = try_direct(c, &h, off);
				if (r < 0) {
					rayc__conn_close(c, "bad CHUNK");
					return false;
				}
				if (r == 1) {
					c->rlen = off; /* now at rx_dst */
					break;
				}
				cand = false; /* unwanted: into the buffer */
			}
			if (need > c->rcap && !cand) {
				/* Make room for the whole frame. */
				memmove(c->rbuf, c->rbuf + off, c->rlen - off);
				c->rlen -= off;
				off = 0;
				if (!rx_resize(c, need)) {
					rayc__conn_close(c, "no room for a frame");
					return false;
				}
			}
			break;
		}
		if (!on_frame(c, c->rbuf + off, &h,
		              c->rbuf + off + RAYC__WIRE_HDR)) {
			rayc__conn_close(c, "protocol");
			return false;
		}
		if (c->close_after_send)
			return false; /* refused: read nothing more */
		off += need;
		if (atomic_load(&c->parking))
			break; /* the rest waits for the claim (handshake.c) */
	}
	if (off > 0) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
	return true;
}

/* The reader running its read's tasks (rx_run): its connection and the
 * value of rx_serve it set. */
static _Thread_local rayc__conn *rx_serving_conn;
static _Thread_local uint64_t rx_serving_v;

/* Whether the caller is to start c's next receive, the read numbered v
 * being served (and not yet started again by anyone else). */
static bool rx_claim(rayc__conn *c, uint64_t v)
{
	return atomic_compare_exchange_strong(&c->rx_serve, &v, v - 1);
}

/* One of those tasks waits (in rayc_get or rayc_wait): the connection is
 * read again at once, on another thread, not after the task (what it
 * waits for may come on this connection). */
static void rx_on_block(void)
{
	rayc__conn *c = rx_serving_conn;

	rx_serving_conn = NULL;
	if (c != NULL && rx_claim(c, rx_serving_v))
		start_recv(c);
}

void rayc__conn_rx_unstall(rayc__conn *c, int64_t now)
{
	uint64_t v = atomic_load(&c->rx_serve);

	if ((v & 1) != 0 &&
	    now - atomic_load(&c->rx_serve_since) >= RAYC__RX_STALL_NS &&
	    rx_claim(c, v))
		start_recv(c);
}

/* Reads the frames in the receive buffer, then runs the tiny tasks they
 * queued (remote.c: rayc__remote_rx_serve), then receives more (unless
 * the connection closed or waits: rayc__conn_park).  The one reader: the
 * receive callback, or rayc__conn_unpark's while no receive is out. */
static void rx_run(rayc__conn *c)
{
	rayc__remote_rx_begin();
	bool go = rx_frames(c);
	int held = rayc__remote_rx_end();
	if (go && c->rcap > (4u << 20) && c->rlen < RAYC__RX_BASE)
		/* Give back a buffer grown for one big frame. */
		(void)rx_resize(c, RAYC__RX_BASE);
	if (go && c->rcap - c->rlen < 4096 && !rx_resize(c, c->rcap * 2)) {
		rx_abort(c);
		rayc__conn_close(c, "no room for a frame");
		go = false;
	}
	if (go && atomic_load(&c->state) == RAYC__CONN_CLOSED) {
		rx_abort(c);
		go = false;
	}
	if (!go || atomic_load(&c->parking) || c->s == NULL) {
		/* Not read again from here (c->s NULL: fed by
		 * rayc__conn_rx_feed). */
		rayc__remote_rx_serve(c->net, held, NULL);
		if (!go || !atomic_load(&c->parking))
			return;
		rayc__mutex_lock(&c->mu);
		c->rx_parked = true;
		rayc__mutex_unlock(&c->mu);
		/* The view may have settled it meanwhile.  Last: settling
		 * may start the reader again on another thread. */
		(void)rayc__hs_settle(c);
		return;
	}
	int pause = atomic_load_explicit(&rx_pause_ms, memory_order_relaxed);
	if (pause > 0)
		rayc__sleep_ms(pause); /* a test's slow reader */
	if (held == 0) {
		start_recv(c);
		return;
	}
	uint64_t v = (atomic_load(&c->rx_serve) | 1) + 2; /* odd: ours */
	atomic_store(&c->rx_serve_since, rayc__now_ns());
	atomic_store(&c->rx_serve, v);
	rx_serving_conn = c;
	rx_serving_v = v;
	rayc__remote_rx_serve(c->net, held, rx_on_block);
	rx_serving_conn = NULL;
	if (rx_claim(c, v)) /* no run blocked or stalled its reading */
		start_recv(c);
}

void rayc__test_rx_pause(int ms)
{
	atomic_store(&rx_pause_ms, ms);
}

bool rayc__conn_parked(rayc__conn *c)
{
	rayc__mutex_lock(&c->mu);
	bool parked = c->rx_parked;
	rayc__mutex_unlock(&c->mu);
	return parked;
}

void rayc__conn_unpark(rayc__conn *c)
{
	rayc__mutex_lock(&c->mu);
	bool was = c->rx_parked;
	c->rx_parked = false;
	atomic_store(&c->parking, false);
	rayc__mutex_unlock(&c->mu);
	if (was)
		nng_sleep_aio(0, c->paio); /* rx_run, on an NNG thread */
}

static void unpark_cb(void *arg)
{
	rayc__conn *c = arg;

	rayc__nng_thread = true;

	if (nng_aio_result(c->paio) != 0 ||
	    atomic_load(&c->state) == RAYC__CONN_CLOSED)
		return;
	atomic_fetch_add(&c->refs, 1); /* as recv_cb's */
	rx_run(c);
	rayc__conn_unref(c);
}

bool rayc__conn_rx_feed(rayc__conn *c, const void *p, size_t n)
{
	if (c->rcap - c->rlen < n && !rx_resize(c, c->rlen + n)) {
		rayc__conn_close(c, "no room for a frame");
		return false;
	}
	memcpy(c->rbuf + c->rlen, p, n);
	c->rlen += n;
	rx_run(c);
	return atomic_load(&c->state) != RAYC__CONN_CLOSED;
}

static void set_nodelay(nng_stream *s)
{
	(void)nng_stream_set_bool(s, NNG_OPT_TCP_NODELAY, true);
}

void rayc__conn_accepted(rayc__conn *c, nng_stream *s)
{
	c->s = s;
	set_nodelay(s);
	atomic_store(&c->state, RAYC__CONN_HANDSHAKE);
	rayc__hs_hello(c);
	start_recv(c);
}

static void dial_cb(void *arg)
{
	rayc__conn *c = arg;

	rayc__nng_thread = true;
	int rv = nng_aio_result(c->daio);

	if (rv != 0) {
		rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-DIAL",
		          "dial to peer %u failed: %s", c->want_peer,
		          nng_strerror(rv));
		if (c->joining) {
			rayc__mutex_lock(&c->net->mu);
			c->net->join_rc = RAYC_ESYS;
			rayc__mutex_unlock(&c->net->mu);
			rayc__event_set(&c->net->join_ev);
		}
		rayc__conn_close(c, nng_strerror(rv));
		return;
	}
	c->s = nng_aio_get_output(c->daio, 0);
	set_nodelay(c->s);
	rayc__mutex_lock(&c->mu);
	if (atomic_load(&c->state) == RAYC__CONN_CLOSED) {
		rayc__mutex_unlock(&c->mu);
		nng_stream_close(c->s);
		return;
	}
	atomic_store(&c->state, RAYC__CONN_HANDSHAKE);
	rayc__mutex_unlock(&c->mu);
	start_recv(c);
}

int rayc__conn_dial(rayc__conn *c, const char *url)
{
	int rv = nng_stream_dialer_alloc(&c->dialer, url);

	if (rv != 0)
		return rayc__err(RAYC_EINVAL, "cannot dial '%s': %s", url,
		                 nng_strerror(rv));
	/* As on the listener: streams frame nothing themselves, our
	 * reader bounds every frame, and the transport gets the limit too. */
	(void)nng_stream_dialer_set_size(c->dialer, NNG_OPT_RECVMAXSZ,
	                                 RAYC__WIRE_MAX_FRAME);
	c->dialed = true;
	/* No NNG timeout on the dial (nor on any aio of ours): NNG 1.5.2's
	 * expiry thread calls a dial's cancel routine after letting go of
	 * its lock, and a dial that completes meanwhile lets us free the
	 * dialer under it ("panic: pthread_mutex_lock: Invalid argument",
	 * docs/reliability.md).  The loop closes a dial still pending after
	 * RAYC__DIAL_WAIT_NS instead (mesh_life.c), aborting it on our own
	 * thread. */
	nng_stream_dialer_dial(c->dialer, c->daio);
	return RAYC_OK;
}
