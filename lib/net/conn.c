/* conn.c -- one connection to another peer over nng_stream (NNG's byte
 * stream API, aio driven; measured about 2.5x faster per round trip than
 * NNG's SP sockets here), with rayc's own framing on top.
 *
 * Sending.  Frames are appended to conn->out under conn->mu; if no send
 * is in flight the caller swaps out into inflight and starts one.  The
 * send callback swaps again while frames keep coming, so everything
 * queued while a send runs goes out in one write (batching comes for
 * free under load).  A small batch is written by the thread that queued
 * it, without a send callback (kick, FAST_MAX): the callback would cost a
 * hand-off to one of NNG's task threads on every frame.  Object
 * transfers are fed in, a chunk at a time, only
 * while less than RAYC__NET_OUT_HIGH is queued: memory stays bounded and
 * small frames are not stuck behind a gigabyte.  A CHUNK's payload is
 * not copied: the batch is a buffer of frame bytes with the payloads
 * spliced in (out_ext) as extra iovs pointing into the pinned object,
 * and the object is let go only when its last piece has been sent.  A
 * control store snapshot (InstallSnapshot, up to 128 MiB) goes out the
 * same way (rayc__conn_send_ext), one frame from where it is held.
 *
 * Authentication (wire.h).  Once the handshake (handshake.c) opened the
 * connection, every frame carries a Poly1305 tag under the session key
 * of its direction and its number in that direction.  Frames are tagged
 * in the order they sit in out, under conn->mu, just before a batch goes
 * (seal_locked): CHUNKs as they are fed in (over their header, then the
 * object's bytes where they lie), the rest when the batch is swapped
 * into inflight.  The receiver checks each frame in the order it
 * arrives; a bad tag (tampered, replayed, reordered, dropped) closes the
 * connection, and relink.c sends again what was lost with it.
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
static void send_cb(void *arg);
static void dial_cb(void *arg);
static void finish_xouts(rayc__conn *c, rayc__xout *done);
static void rx_abort(rayc__conn *c);
static void rx_run(rayc__conn *c);
static void unpark_cb(void *arg);
static bool batch_sent(rayc__conn *c);

/* A batch of at most FAST_MAX bytes is first written by the thread that
 * queued it, through c->faio (no callback: NNG 1.5 then completes it
 * inline, without waking one of its task threads, and again when the
 * send callback would have run).  A socket too full to take it at once
 * holds that thread at most FAST_WAIT_MS (NNG's timer), then the send
 * goes the callback way; so does the rest of a batch written in part. */
#define FAST_MAX (64 * 1024)
#define FAST_WAIT_MS 10

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
	    nng_aio_alloc(&c->saio, send_cb, c) != 0 ||
	    nng_aio_alloc(&c->daio, dial_cb, c) != 0 ||
	    nng_aio_alloc(&c->paio, unpark_cb, c) != 0 ||
	    nng_aio_alloc(&c->faio, NULL, NULL) != 0) {
		rayc__conn_free(c);
		return NULL;
	}
	nng_aio_set_timeout(c->faio, FAST_WAIT_MS);
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
	if (c->s != NULL) {
		nng_stream_close(c->s);
		nng_stream_free(c->s);
	}
	if (c->dialer != NULL)
		nng_stream_dialer_free(c->dialer);
	nng_aio_free(c->raio);
	nng_aio_free(c->saio);
	nng_aio_free(c->daio);
	nng_aio_free(c->paio);
	nng_aio_free(c->faio);
	rx_abort(c);
	if (c->rx_charged > 0)
		atomic_fetch_sub(&c->net->rx_held[c->rx_charged_to],
		                 c->rx_charged);
	while (c->xhead != NULL) {
		rayc__xout *x = c->xhead;
		c->xhead = x->next;
		rayc__remote_xout_done(c->net, x);
	}
	finish_xouts(c, c->out_done);
	finish_xouts(c, c->inflight_done);
	rayc__wbuf_fini(&c->out);
	rayc__wbuf_fini(&c->pend);
	rayc__wbuf_fini(&c->inflight);
	free(c->rbuf);
	rayc__hs_free(c->hs);
	sodium_memzero(&c->tx, sizeof(c->tx));
	sodium_memzero(&c->rx, sizeof(c->rx));
	rayc__mutex_fini(&c->mu);
	free(c);
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

static _Atomic uint64_t frames_refused;

uint64_t rayc__test_frames_refused(void)
{
	return atomic_load(&frames_refused);
}

/* A frame failed its tag or checksum: the connection closes. */
static void refused(rayc__conn *c, const char *what)
{
	atomic_fetch_add(&frames_refused, 1);
	rayc__log(RAYC_LOG_WARN, "RAYC-NET-BADFRAME",
	          "frame with a bad %s from peer %u: closing the connection",
	          what, c->peer);
}

/* Test tampering (rayc__test_tamper_next), armed for one frame. */
static _Atomic int tamper_how;
static _Atomic uint32_t tamper_peer;
static _Atomic int tamper_type;

int rayc__test_tamper_next(uint32_t peer, int type, int how)
{
	atomic_store(&tamper_peer, peer);
	atomic_store(&tamper_type, type);
	atomic_store(&tamper_how, how);
	return RAYC_OK;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* Tampers with the frame just sealed at out[at] if a test asked for it
 * (after its tag: what an attacker on the path could do).  Returns the
 * bytes it added after the frame (a replayed copy). */
static size_t tamper_locked(rayc__conn *c, size_t at) RAYC_REQUIRES(c->mu)
{
	uint8_t *h = c->out.p + at;
	size_t len = le32(h + 8), end = at + RAYC__WIRE_HDR + len;
	int how = atomic_load(&tamper_how);

	if (c->peer != atomic_load(&tamper_peer) ||
	    h[5] != atomic_load(&tamper_type) || len == 0 ||
	    !atomic_compare_exchange_strong(&tamper_how, &how, 0))
		return 0;
	if (how == RAYC__TEST_FLIP) {
		/* Flip a bit, and fix the xxh3 frames carried before they
		 * had tags, as anyone could. */
		h[RAYC__WIRE_HDR + len - 1] ^= 1;
		uint64_t sum = rayc__wire_sum(h + RAYC__WIRE_HDR, len);
		for (int i = 0; i < 8; i++)
			h[16 + i] = (uint8_t)(sum >> (8 * i));
		return 0;
	}
	size_t n = RAYC__WIRE_HDR + len; /* replay: the same bytes again */
	if (!rayc__wbuf_reserve(&c->out, n))
		return 0;
	memmove(c->out.p + end + n, c->out.p + end, c->out.len - end);
	memcpy(c->out.p + end, c->out.p + at, n);
	c->out.len += n;
	return n;
}

/* Tags the frames in out that are not yet (see the top of the file):
 * whole frames in the buffer; CHUNKs with spliced payloads are tagged
 * in feed_locked, before any later frame. */
static void seal_locked(rayc__conn *c) RAYC_REQUIRES(c->mu)
{
	if (atomic_load(&c->state) != RAYC__CONN_OPEN)
		return;
	while (c->out.len - c->out_sealed >= RAYC__WIRE_HDR) {
		size_t at = c->out_sealed;
		uint8_t *h = c->out.p + at;
		size_t len = le32(h + 8);
		if (len > c->out.len - at - RAYC__WIRE_HDR)
			break; /* not whole: cannot happen */
		rayc__wire_seal_x(&c->tx, h, h + RAYC__WIRE_HDR, len);
		c->out_sealed = at + RAYC__WIRE_HDR + len;
		if (atomic_load_explicit(&tamper_how, memory_order_relaxed))
			c->out_sealed += tamper_locked(c, at);
	}
}

/* Tags the frame at f, the last in out, whose payload goes on with the n
 * bytes at ext: copied into out already (copy: the connection encrypts)
 * or, if not, sent from where they lie (spliced in as an out_ext piece
 * right after it). */
static void seal_ext_locked(rayc__conn *c, size_t f, const void *ext,
                            size_t n, bool copy) RAYC_REQUIRES(c->mu)
{
	uint8_t *h = c->out.p + f;
	size_t in = c->out.len - f - RAYC__WIRE_HDR;

	if (copy)
		rayc__wire_seal_x(&c->tx, h, h + RAYC__WIRE_HDR, in);
	else
		rayc__wire_seal(&c->tx, h, h + RAYC__WIRE_HDR, in, ext, n);
	c->out_sealed = c->out.len;
	if (n > 0 && !copy) {
		rayc__ext *e = &c->out_ext[c->n_out_ext++];
		e->at = c->out.len;
		e->p = ext;
		e->n = n;
		c->out_ext_bytes += n;
	}
}

/* Feeds chunks of pending transfers into out while it is short.  Only
 * each CHUNK's header is written into out; its payload is spliced in
 * from the object's memory (out_ext) and sent from there.  A transfer
 * whose last chunk is queued moves to out_done: it stays pinned until
 * that batch is sent (send_cb). */
static void feed_locked(rayc__conn *c) RAYC_REQUIRES(c->mu)
{
	while (c->xhead != NULL &&
	       c->out.len + c->out_ext_bytes < RAYC__NET_OUT_HIGH &&
	       c->n_out_ext < RAYC__CONN_EXT_MAX &&
	       atomic_load(&c->state) == RAYC__CONN_OPEN) {
		rayc__xout *x = c->xhead;
		size_t n = x->len - x->off;
		if (n > RAYC__NET_CHUNK)
			n = RAYC__NET_CHUNK;
		seal_locked(c); /* what came before it first */
		size_t f = rayc__w_frame_begin(&c->out, RAYC__MSG_CHUNK,
		                               c->net->self);
		rayc__w_u64(&c->out, x->id.hi);
		rayc__w_u64(&c->out, x->id.lo);
		rayc__w_u64(&c->out, x->len);
		rayc__w_u64(&c->out, x->off);
		rayc__w_u8(&c->out, (uint8_t)x->type);
		/* Encrypted, a payload cannot go out from the object's own
		 * memory: it is copied, and sealed with the rest. */
		bool copy = c->tx.enc;
		if (copy)
			rayc__w_bytes(&c->out, x->data + x->off, n);
		rayc__w_frame_end_len(&c->out, f, copy ? 0 : n);
		if (c->out.bad) {
			/* No memory for the header: the fetcher asks again
			 * once this connection is closed. */
			c->out.len = f;
			c->out.bad = false;
			c->oom = true;
			break;
		}
		seal_ext_locked(c, f, x->data + x->off, n, copy);
		x->off += n;
		if (x->off >= x->len) {
			c->xhead = x->next;
			if (c->xhead == NULL)
				c->xtail = NULL;
			x->next = c->out_done;
			c->out_done = x;
		}
	}
}

/* Test (rayc__test_tap): the bytes to look for in what is sent, and
 * how many batches held them. */
static _Atomic(const char *) tap_marker;
static _Atomic uint64_t tap_hits;

void rayc__test_tap(const char *marker)
{
	if (marker != NULL)
		atomic_store(&tap_hits, 0);
	atomic_store(&tap_marker, marker);
}

uint64_t rayc__test_tap_hits(void)
{
	return atomic_load(&tap_hits);
}

/* Test: does the batch about to be sent hold the marker?  In the buffer
 * or in a spliced piece (each searched alone). */
static void tap_locked(rayc__conn *c) RAYC_REQUIRES(c->mu)
{
	const char *m = atomic_load_explicit(&tap_marker,
	                                     memory_order_relaxed);
	if (m == NULL)
		return;
	size_t n = strlen(m);
	bool hit = memmem(c->inflight.p, c->inflight.len, m, n) != NULL;
	for (int i = 0; i < c->n_inflight_ext && !hit; i++)
		hit = memmem(c->inflight_ext[i].p, c->inflight_ext[i].n, m, n) !=
		      NULL;
	if (hit)
		atomic_fetch_add(&tap_hits, 1);
}

/* Decides under c->mu whether to start a send; the send itself starts
 * after unlocking (kick). */
static bool want_send_locked(rayc__conn *c) RAYC_REQUIRES(c->mu)
{
	if (c->sending || c->out.len == 0 ||
	    atomic_load(&c->state) == RAYC__CONN_CLOSED ||
	    atomic_load(&c->state) == RAYC__CONN_DIALING)
		return false;
	if (c->s == NULL)
		return false; /* no stream (rayc__conn_rx_feed): kept in out */
	seal_locked(c);
	rayc__wbuf t = c->inflight;
	c->inflight = c->out;
	c->out = t;
	c->out.len = 0;
	c->out_sealed = 0;
	c->inflight_off = 0;
	memcpy(c->inflight_ext, c->out_ext,
	       (size_t)c->n_out_ext * sizeof(rayc__ext));
	c->n_inflight_ext = c->n_out_ext;
	c->inflight_ext_bytes = c->out_ext_bytes;
	c->n_out_ext = 0;
	c->out_ext_bytes = 0;
	c->inflight_done = c->out_done; /* send_cb emptied it */
	c->out_done = NULL;
	c->sending = true;
	tap_locked(c);
	return true;
}

/* Adds one piece to iov unless it was sent already (*skip bytes of the
 * batch were).  False when iov is full. */
static bool iov_add(nng_iov *iov, unsigned *n, size_t *skip,
                    const uint8_t *p, size_t len)
{
	if (*skip >= len) {
		*skip -= len;
		return true;
	}
	if (*n == RAYC__CONN_IOV_MAX)
		return false;
	iov[*n].iov_buf = (void *)(p + *skip);
	iov[*n].iov_len = len - *skip;
	(*n)++;
	*skip = 0;
	return true;
}

static _Atomic uint64_t sends_locked;

uint64_t rayc__test_sends_under_lock(void)
{
	return atomic_load(&sends_locked);
}

static _Atomic uint64_t fast_sends, slow_sends, fast_parts, fast_timeouts;
static _Atomic bool fast_always;

void rayc__test_conn_sends(rayc__test_sends *s)
{
	s->fast = atomic_load(&fast_sends);
	s->slow = atomic_load(&slow_sends);
	s->parts = atomic_load(&fast_parts);
	s->timeouts = atomic_load(&fast_timeouts);
}

void rayc__test_fast_always(bool on)
{
	atomic_store(&fast_always, on);
}

/* Sends what is left of the batch in flight: the buffer with the arena
 * pieces spliced in, as many pieces as one aio takes.  A small batch
 * goes from this thread (FAST_MAX), then the next one queued meanwhile,
 * and so on; otherwise the send callback goes on with it. */
static void kick(rayc__conn *c)
{
	if (rayc__locks_held > 0)
		atomic_fetch_add_explicit(&sends_locked, 1,
		                          memory_order_relaxed);
	for (;;) {
		nng_iov iov[RAYC__CONN_IOV_MAX];
		unsigned n = 0;
		size_t skip = c->inflight_off, pos = 0;
		size_t total = c->inflight.len + c->inflight_ext_bytes;
		bool room = true;

		for (int i = 0; room && i <= c->n_inflight_ext; i++) {
			bool last = i == c->n_inflight_ext;
			size_t end = last ? c->inflight.len
			                  : c->inflight_ext[i].at;
			room = iov_add(iov, &n, &skip, c->inflight.p + pos,
			               end - pos);
			pos = end;
			if (room && !last)
				room = iov_add(iov, &n, &skip,
				               c->inflight_ext[i].p,
				               c->inflight_ext[i].n);
		}
		bool fast = c->fast && total - c->inflight_off <= FAST_MAX;
		if (atomic_load_explicit(&fast_always, memory_order_relaxed))
			fast = true;
		if (!fast || rayc__locks_held > 0) {
			atomic_fetch_add_explicit(&slow_sends, 1,
			                          memory_order_relaxed);
			(void)nng_aio_set_iov(c->saio, n, iov);
			nng_stream_send(c->s, c->saio);
			return;
		}
		atomic_fetch_add_explicit(&fast_sends, 1, memory_order_relaxed);
		(void)nng_aio_set_iov(c->faio, n, iov);
		nng_stream_send(c->s, c->faio);
		nng_aio_wait(c->faio);
		int rv = nng_aio_result(c->faio);
		if (rv == NNG_ETIMEDOUT) {
			/* Nothing written (NNG completes a stream send at
			 * its first bytes): the slow way. */
			atomic_fetch_add_explicit(&fast_timeouts, 1,
			                          memory_order_relaxed);
			c->fast = false;
			continue;
		}
		if (rv != 0) {
			rayc__mutex_lock(&c->mu);
			c->sending = false;
			rayc__mutex_unlock(&c->mu);
			rayc__conn_close(c, nng_strerror(rv));
			return;
		}
		c->inflight_off += nng_aio_count(c->faio);
		if (c->inflight_off < total) {
			atomic_fetch_add_explicit(&fast_parts, 1,
			                          memory_order_relaxed);
			c->fast = false; /* the socket is filling up */
			continue;
		}
		if (!batch_sent(c))
			return;
	}
}

static void finish_xouts(rayc__conn *c, rayc__xout *done)
{
	while (done != NULL) {
		rayc__xout *n = done->next;
		if (done->release != NULL)
			done->release(done);
		else
			rayc__remote_xout_done(c->net, done);
		done = n;
	}
}

/* Sends queued by a thread that holds another rayc lock (a rayc_call
 * holding rt->mu, say) are only queued: feeding transfers (hashing
 * their chunks) and the write itself wait for the thread's last unlock,
 * so no lock anybody else needs is held across them.  Per thread, each
 * conn with a ref and the net counted as used until then. */
#define DEFER_MAX 8
static _Thread_local rayc__conn *deferred[DEFER_MAX];
static _Thread_local int ndeferred;

static bool defer_locked(rayc__conn *c) RAYC_REQUIRES(c->mu)
{
	for (int i = 0; i < ndeferred; i++)
		if (deferred[i] == c)
			return true;
	if (ndeferred == DEFER_MAX)
		return false; /* send now */
	atomic_fetch_add(&c->refs, 1);
	atomic_fetch_add(&c->net->users, 1);
	deferred[ndeferred++] = c;
	rayc__unlock_pending = true;
	return true;
}

static bool flush_unlock(rayc__conn *c) RAYC_RELEASE(c->mu);

/* The unlock hook (rayc__set_unlock_hook): sends what this thread
 * queued while it held a lock. */
void rayc__conn_flush_deferred(void)
{
	while (ndeferred > 0) {
		rayc__conn *c = deferred[--ndeferred];
		rayc__net *net = c->net;
		rayc__mutex_lock(&c->mu);
		(void)flush_unlock(c);
		rayc__conn_unref(c);
		atomic_fetch_sub(&net->users, 1);
	}
}

/* Ends a critical section on c's send side: feeds pending transfers,
 * swaps in a batch to send if anything is queued and none runs, unlocks
 * (with another lock held: leaves that to the last unlock).  True if
 * the caller is to send it (kick). */
static bool settle_unlock(rayc__conn *c) RAYC_RELEASE(c->mu)
{
	if (rayc__locks_held > 1 && defer_locked(c)) {
		rayc__mutex_unlock(&c->mu);
		return false;
	}
	feed_locked(c);
	bool go = want_send_locked(c);
	bool oom = c->oom && atomic_load(&c->state) == RAYC__CONN_OPEN;

	rayc__mutex_unlock(&c->mu);
	if (oom) {
		rayc__log(RAYC_LOG_ERROR, "RAYC-NET-NOMEM", "no memory to queue "
		          "a frame for peer %u: closing the connection (each "
		          "side sends again what was lost with it)", c->peer);
		rayc__conn_close(c, "out of memory");
		return false;
	}
	return go;
}

/* settle_unlock, then the send.  True if a send started. */
static bool flush_unlock(rayc__conn *c) RAYC_RELEASE(c->mu)
{
	bool go = settle_unlock(c);

	if (go) {
		kick(c);
		/* Prepare the next batch (its checksums) while NNG sends
		 * this one, so the socket does not idle between batches. */
		rayc__mutex_lock(&c->mu);
		feed_locked(c);
		rayc__mutex_unlock(&c->mu);
	}
	return go;
}

/* The batch in flight went out: lets its transfers go and swaps in the
 * next one.  True if that one is for the caller to send (kick). */
static bool batch_sent(rayc__conn *c)
{
	rayc__mutex_lock(&c->mu);
	c->sending = false;
	c->inflight.len = 0;
	c->n_inflight_ext = 0;
	c->inflight_ext_bytes = 0;
	rayc__xout *done = c->inflight_done; /* every byte of them is out */
	c->inflight_done = NULL;
	bool close_after = c->close_after_send;
	bool go = settle_unlock(c);

	finish_xouts(c, done);
	if (!go && close_after)
		rayc__conn_close(c, "refused"); /* everything went out */
	return go;
}

static void send_cb(void *arg)
{
	rayc__conn *c = arg;
	int rv = nng_aio_result(c->saio);

	if (rv != 0) {
		/* The batch's transfers stay pinned until conn_free. */
		rayc__mutex_lock(&c->mu);
		c->sending = false;
		rayc__mutex_unlock(&c->mu);
		rayc__conn_close(c, nng_strerror(rv));
		return;
	}
	c->inflight_off += nng_aio_count(c->saio);
	size_t total = c->inflight.len + c->inflight_ext_bytes;
	if (c->inflight_off < total) {
		kick(c);
		return;
	}
	/* A small batch that went whole: the socket takes writes again. */
	c->fast = total <= FAST_MAX && nng_aio_count(c->saio) == total;
	if (batch_sent(c))
		kick(c);
}

/* Appends frame to dst, or nothing if out of memory (c->oom: an open
 * connection closes rather than go on without the frame). */
static bool append_locked(rayc__conn *c, rayc__wbuf *dst,
                          const rayc__wbuf *frame) RAYC_REQUIRES(c->mu)
{
	size_t before = dst->len;

	if (rayc__fault(RAYC__FAULT_CONN_SEND))
		dst->bad = true;
	else
		rayc__w_bytes(dst, frame->p, frame->len);
	if (!dst->bad)
		return true;
	dst->len = before;
	dst->bad = false;
	c->oom = true;
	return false;
}

void rayc__conn_send(rayc__conn *c, const rayc__wbuf *frame)
{
	if (frame->bad || frame->len == 0)
		return;
	rayc__mutex_lock(&c->mu);
	int st = atomic_load(&c->state);
	if (st == RAYC__CONN_CLOSED) {
		rayc__mutex_unlock(&c->mu);
		return;
	}
	bool ok = append_locked(c, st == RAYC__CONN_OPEN ? &c->out : &c->pend,
	                        frame);
	if (!ok && st != RAYC__CONN_OPEN)
		c->oom = false; /* not open: nothing was lost with it yet */
	(void)flush_unlock(c);
	if (!ok && st != RAYC__CONN_OPEN) {
		/* Only we know: send our own work there again. */
		rayc__log(RAYC_LOG_ERROR, "RAYC-NET-NOMEM", "no memory to queue "
		          "a frame for peer %u: it is lost; resending this "
		          "peer's tasks there",
		          c->peer != 0 ? c->peer : c->want_peer);
		rayc__relink_retry(c->net, c->peer != 0 ? c->peer
		                                        : c->want_peer);
	}
}

bool rayc__conn_send_ext(rayc__conn *c, const rayc__wbuf *head,
                         const void *ext, size_t n, rayc__xout *x)
{
	if (head->bad || head->len == 0)
		return false;
	rayc__mutex_lock(&c->mu);
	if (atomic_load(&c->state) != RAYC__CONN_OPEN ||
	    c->n_out_ext == RAYC__CONN_EXT_MAX) {
		rayc__mutex_unlock(&c->mu);
		return false;
	}
	seal_locked(c); /* what came before it first */
	size_t f = c->out.len;
	bool copy = c->tx.enc; /* encrypted: copied, as a CHUNK's payload */
	if (!append_locked(c, &c->out, head) ||
	    (copy && n > 0 && !rayc__wbuf_reserve(&c->out, n))) {
		(void)flush_unlock(c); /* closes it: a frame is lost */
		return false;
	}
	if (copy)
		rayc__w_bytes(&c->out, ext, n);
	/* Tagged now, over its bytes where they lie, like a CHUNK. */
	seal_ext_locked(c, f, ext, n, copy);
	/* Finished with the batch that sends it (send_cb). */
	x->next = c->out_done;
	c->out_done = x;
	(void)flush_unlock(c);
	return true;
}

/* Handshake frames go out before anything queued in pend. */
void rayc__conn_send_hs(rayc__conn *c, rayc__wbuf *frame, bool close_after)
{
	rayc__mutex_lock(&c->mu);
	bool ok = append_locked(c, &c->out, frame);
	c->close_after_send = close_after;
	(void)flush_unlock(c);
	if (!ok)
		rayc__conn_close(c, "out of memory"); /* cannot shake hands */
}

void rayc__conn_send_close(rayc__conn *c, rayc__wbuf *frame)
{
	rayc__conn_send_hs(c, frame, true);
}

rayc__wbuf *rayc__conn_begin(rayc__conn *c)
{
	rayc__mutex_lock(&c->mu);
	return atomic_load(&c->state) == RAYC__CONN_OPEN ? &c->out : &c->pend;
}

void rayc__conn_end(rayc__conn *c)
{
	(void)flush_unlock(c);
}

void rayc__conn_add_xout(rayc__conn *c, rayc__xout *x)
{
	rayc__mutex_lock(&c->mu);
	if (atomic_load(&c->state) == RAYC__CONN_CLOSED) {
		rayc__mutex_unlock(&c->mu);
		rayc__remote_xout_done(c->net, x);
		return;
	}
	x->next = NULL;
	if (c->xtail != NULL)
		c->xtail->next = x;
	else
		c->xhead = x;
	c->xtail = x;
	(void)flush_unlock(c);
}

/* The handshake finished: queued frames may go. */
void rayc__conn_set_open(rayc__conn *c)
{
	rayc__mutex_lock(&c->mu);
	atomic_store(&c->state, RAYC__CONN_OPEN);
	atomic_store(&c->opened, true);
	c->out_sealed = c->out.len; /* handshake frames: not tagged */
	if (c->pend.len > 0) {
		rayc__w_bytes(&c->out, c->pend.p, c->pend.len);
		c->pend.len = 0;
	}
	(void)flush_unlock(c);
	rayc__net_conn_open(c);
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

static void recv_cb(void *arg)
{
	rayc__conn *c = arg;
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

/* Reads the frames in the receive buffer, then receives more (unless
 * the connection closed or waits: rayc__conn_park).  The one reader: the
 * receive callback, or rayc__conn_unpark's while no receive is out. */
static void rx_run(rayc__conn *c)
{
	size_t off = 0;
	while (c->rlen - off >= RAYC__WIRE_HDR) {
		rayc__whdr h;
		if (!rayc__whdr_parse(c->rbuf + off, rx_max_frame(c), &h)) {
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-PROTO",
			          "malformed frame header from peer %u", c->peer);
			rayc__conn_close(c, "bad frame");
			return;
		}
		size_t need = RAYC__WIRE_HDR + h.len;
		if (c->rlen - off < need) {
			bool cand = direct_candidate(c, &h);
			if (cand && c->rlen - off >=
			                    RAYC__WIRE_HDR + RAYC__CHUNK_SUB) {
				int r = try_direct(c, &h, off);
				if (r < 0) {
					rayc__conn_close(c, "bad CHUNK");
					return;
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
					return;
				}
			}
			break;
		}
		if (!on_frame(c, c->rbuf + off, &h,
		              c->rbuf + off + RAYC__WIRE_HDR)) {
			rayc__conn_close(c, "protocol");
			return;
		}
		if (c->close_after_send)
			return; /* refused: read nothing more */
		off += need;
		if (atomic_load(&c->parking))
			break; /* the rest waits for the claim (handshake.c) */
	}
	if (off > 0) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
	if (c->rcap > (4u << 20) && c->rlen < RAYC__RX_BASE)
		/* Give back a buffer grown for one big frame. */
		(void)rx_resize(c, RAYC__RX_BASE);
	if (c->rcap - c->rlen < 4096 && !rx_resize(c, c->rcap * 2)) {
		rx_abort(c);
		rayc__conn_close(c, "no room for a frame");
		return;
	}
	if (atomic_load(&c->state) == RAYC__CONN_CLOSED) {
		rx_abort(c);
	} else if (atomic_load(&c->parking)) {
		rayc__mutex_lock(&c->mu);
		c->rx_parked = true;
		rayc__mutex_unlock(&c->mu);
		/* The view may have settled it meanwhile.  Last: settling
		 * may start the reader again on another thread. */
		(void)rayc__hs_settle(c);
	} else if (c->s != NULL) { /* NULL: fed by rayc__conn_rx_feed */
		start_recv(c);
	}
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

	if (nng_aio_result(c->paio) != 0 ||
	    atomic_load(&c->state) == RAYC__CONN_CLOSED)
		return;
	rx_run(c);
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
	nng_aio_set_timeout(c->daio, 5000);
	nng_stream_dialer_dial(c->dialer, c->daio);
	return RAYC_OK;
}
