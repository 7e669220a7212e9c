/* conn_tx.c -- the sending side of a connection (conn.c): frames queued,
 * tagged and written in batches.
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
 */
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "net/net_int.h"
#include "testing.h"

static bool batch_sent(rayc__conn *c);

/* A batch of at most FAST_MAX bytes is first written by the thread that
 * queued it, unless that is one of NNG's (rayc__nng_thread), through
 * c->faio (no callback: NNG 1.5 then completes it inline, without waking
 * one of its task threads, and again when the send callback would have
 * run).  A socket too full to take it at once turns it away: the send is
 * cancelled at once, on this thread, and goes the callback way; so does
 * the rest of a batch written in part.  (It once waited up to 10 ms for
 * room on NNG's timer; an aio timer of NNG 1.5.2 can call its cancel
 * routine on the expiry thread after the stream is freed: conn.c,
 * rayc__conn_dial.) */
#define FAST_MAX (64 * 1024)

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

/* Frames sent and received in GROUPs, and the GROUPs. */
static _Atomic uint64_t grouped_out, groups_out;
_Atomic uint64_t rayc__grouped_in, rayc__groups_in;

void rayc__test_groups(uint64_t *frames_out, uint64_t *out,
                       uint64_t *frames_in, uint64_t *in)
{
	*frames_out = atomic_load(&grouped_out);
	*out = atomic_load(&groups_out);
	*frames_in = atomic_load(&rayc__grouped_in);
	*in = atomic_load(&rayc__groups_in);
}

/* The end of the run of whole groupable frames (wire.h) from at, at most
 * GROUP_MAX bytes, and how many (*n). */
#define GROUP_MAX ((size_t)60 << 10)
static size_t group_run_locked(rayc__conn *c, size_t at, int *n)
	RAYC_REQUIRES(c->mu)
{
	size_t end = at;

	*n = 0;
	while (c->out.len - end >= RAYC__WIRE_HDR) {
		const uint8_t *h = c->out.p + end;
		size_t len = le32(h + 8);
		if (len > c->out.len - end - RAYC__WIRE_HDR ||
		    !rayc__wire_groupable(h[5]) ||
		    end + RAYC__WIRE_HDR + len - at > GROUP_MAX)
			break;
		end += RAYC__WIRE_HDR + len;
		(*n)++;
	}
	return end;
}

/* The frames of out not tagged yet (whole ones: no frame is queued in
 * part), each tagged alone, a test's tampering applied. */
static void seal_each_locked(rayc__conn *c) RAYC_REQUIRES(c->mu)
{
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

/* The same with runs of two or more groupable frames as GROUPs, written
 * into c->seal (kept for the next time) in one pass, which then takes
 * out's place: a header put in front of each run in place would move
 * what follows it once per GROUP, the square of a long queue (50 MiB of
 * small frames: 0.7 s under c->mu).  False, nothing done, if no GROUP
 * would form, a test armed tampering with another type, or there is no
 * memory for it. */
static bool seal_grouped_locked(rayc__conn *c) RAYC_REQUIRES(c->mu)
{
	size_t from = c->out_sealed, groups = 0, at;
	int n, armed = atomic_load_explicit(&tamper_how, memory_order_relaxed)
	                       ? atomic_load(&tamper_type) : -1;

	if (armed >= 0 && armed != RAYC__MSG_GROUP)
		return false;
	for (at = from; c->out.len - at >= RAYC__WIRE_HDR;) {
		size_t end = group_run_locked(c, at, &n);
		if (n >= 2) {
			groups++;
			at = end;
			continue;
		}
		size_t len = le32(c->out.p + at + 8);
		if (len > c->out.len - at - RAYC__WIRE_HDR)
			return false; /* not whole: cannot happen */
		at += RAYC__WIRE_HDR + len;
	}
	rayc__wbuf *g = &c->seal;
	g->len = 0;
	if (groups == 0 || at != c->out.len ||
	    !rayc__wbuf_reserve(g, c->out.len + groups * RAYC__WIRE_HDR))
		return false;
	memcpy(g->p, c->out.p, from); /* tagged, spliced pieces' offsets */
	g->len = from;
	for (at = from; at < c->out.len;) {
		uint8_t *h = g->p + g->len;
		size_t end = group_run_locked(c, at, &n), len;
		if (n >= 2) {
			len = end - at;
			rayc__whdr_put(h, RAYC__MSG_GROUP, c->net->self,
			               (uint32_t)len);
			memcpy(h + RAYC__WIRE_HDR, c->out.p + at, len);
			atomic_fetch_add_explicit(&grouped_out, (uint64_t)n,
			                          memory_order_relaxed);
			atomic_fetch_add_explicit(&groups_out, 1,
			                          memory_order_relaxed);
		} else {
			len = le32(c->out.p + at + 8);
			memcpy(h, c->out.p + at, RAYC__WIRE_HDR + len);
		}
		at += n >= 2 ? len : RAYC__WIRE_HDR + len;
		rayc__wire_seal_x(&c->tx, h, h + RAYC__WIRE_HDR, len);
		g->len += RAYC__WIRE_HDR + len;
	}
	rayc__wbuf t = c->out;
	c->out = *g;
	*g = t;
	g->len = 0;
	for (at = from; armed >= 0 && at < c->out.len;) {
		size_t len = le32(c->out.p + at + 8);
		size_t more = tamper_locked(c, at); /* a GROUP, if any */
		at += RAYC__WIRE_HDR + len + more;
	}
	c->out_sealed = c->out.len;
	return true;
}

/* Tags the frames in out that are not yet (see the top of the file):
 * whole frames in the buffer; CHUNKs with spliced payloads are tagged
 * in feed_locked, before any later frame.  A run of two or more small
 * frames of the types that come in bursts goes as one GROUP frame (one
 * tag instead of one each, which cost 10% of both peers' CPU in
 * remote_tasks_async).  Spliced pieces all lie before the frames not
 * yet tagged, so rewriting those moves none of them. */
static void seal_locked(rayc__conn *c) RAYC_REQUIRES(c->mu)
{
	if (atomic_load(&c->state) != RAYC__CONN_OPEN)
		return;
	if (!seal_grouped_locked(c))
		seal_each_locked(c);
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
	c->corked = 0;
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

/* A send failed: the connection closes (the batch's transfers stay
 * pinned until conn_free; relink.c sends again what was lost). */
static void send_failed(rayc__conn *c, int rv)
{
	rayc__mutex_lock(&c->mu);
	c->sending = false;
	rayc__mutex_unlock(&c->mu);
	rayc__conn_close(c, nng_strerror(rv));
}

_Thread_local bool rayc__nng_thread;

static _Atomic uint64_t fast_sends, slow_sends, fast_parts, fast_turned_away;
static _Atomic bool fast_always;

void rayc__test_conn_sends(rayc__test_sends *s)
{
	s->fast = atomic_load(&fast_sends);
	s->slow = atomic_load(&slow_sends);
	s->parts = atomic_load(&fast_parts);
	s->turned_away = atomic_load(&fast_turned_away);
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
	bool turned_away = false; /* even the test hook goes slow then */

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
		if (atomic_load_explicit(&fast_always, memory_order_relaxed) &&
		    !turned_away)
			fast = true;
		if (!fast || rayc__locks_held > 0 || rayc__nng_thread) {
			atomic_fetch_add_explicit(&slow_sends, 1,
			                          memory_order_relaxed);
			(void)nng_aio_set_iov(c->saio, n, iov);
			nng_stream_send(c->s, c->saio);
			return;
		}
		atomic_fetch_add_explicit(&fast_sends, 1, memory_order_relaxed);
		(void)nng_aio_set_iov(c->faio, n, iov);
		nng_stream_send(c->s, c->faio);
		/* Written inline, or waiting for room: no longer. */
		nng_aio_cancel(c->faio);
		nng_aio_wait(c->faio);
		int rv = nng_aio_result(c->faio);
		if (rv == NNG_ECANCELED) {
			/* Nothing written (NNG completes a stream send at
			 * its first bytes): the slow way. */
			atomic_fetch_add_explicit(&fast_turned_away, 1,
			                          memory_order_relaxed);
			c->fast = false;
			turned_away = true;
			continue;
		}
		if (rv != 0) {
			send_failed(c, rv);
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

void rayc__conn_finish_xouts(rayc__conn *c, rayc__xout *done)
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
	bool go = settle_unlock(c), went = go;

	while (go) {
		kick(c);
		/* Prepare the next batch (its checksums) while NNG sends
		 * this one, so the socket does not idle between batches;
		 * if this one went already (the fast way), send it. */
		rayc__mutex_lock(&c->mu);
		feed_locked(c);
		go = want_send_locked(c);
		rayc__mutex_unlock(&c->mu);
	}
	return went;
}

/* The batch in flight went out: lets its transfers go and swaps in the
 * next one.  True if that one is for the caller to send (kick). */
static bool batch_sent(rayc__conn *c)
{
	rayc__mutex_lock(&c->mu);
	c->sending = false;
	c->inflight.len = 0;
	if (c->inflight.cap > 2 * RAYC__NET_OUT_HIGH)
		/* Give back a buffer grown for a few big frames (raft's
		 * AppendEntries, copied chunks): kept, it would hold as much
		 * on every connection that ever sent them. */
		rayc__wbuf_fini(&c->inflight);
	c->n_inflight_ext = 0;
	c->inflight_ext_bytes = 0;
	rayc__xout *done = c->inflight_done; /* every byte of them is out */
	c->inflight_done = NULL;
	bool close_after = c->close_after_send;
	bool go = settle_unlock(c);

	rayc__conn_finish_xouts(c, done);
	if (!go && close_after)
		rayc__conn_close(c, "refused"); /* everything went out */
	return go;
}

void rayc__conn_send_cb(void *arg)
{
	rayc__conn *c = arg;
	int rv = nng_aio_result(c->saio);

	rayc__nng_thread = true;
	if (rv != 0) {
		send_failed(c, rv);
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

/* A frame that could not be queued on c, not open (an open one closes:
 * flush_unlock): only we know; send our own work there again. */
static void lost_unqueued(rayc__conn *c)
{
	rayc__log(RAYC_LOG_ERROR, "RAYC-NET-NOMEM", "no memory to queue "
	          "a frame for peer %u: it is lost; resending this "
	          "peer's tasks there",
	          c->peer != 0 ? c->peer : c->want_peer);
	rayc__relink_retry(c->net, c->peer != 0 ? c->peer : c->want_peer);
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
	if (!ok && st != RAYC__CONN_OPEN)
		lost_unqueued(c);
}

void rayc__conn_end_frame(rayc__conn *c, rayc__wbuf *b, size_t before)
{
	int st = atomic_load(&c->state);
	bool bad = b->bad || rayc__fault(RAYC__FAULT_CONN_SEND);

	if (bad) {
		b->len = before;
		b->bad = false;
		if (b == &c->out)
			c->oom = true; /* flush_unlock closes it */
	}
	(void)flush_unlock(c);
	if (bad && b != &c->out && st != RAYC__CONN_CLOSED)
		lost_unqueued(c);
}

void rayc__conn_end_frame_corked(rayc__conn *c, rayc__wbuf *b,
                                 size_t before)
{
	if (b == &c->out && !b->bad && !rayc__fault(RAYC__FAULT_CONN_SEND)) {
		rayc__conn_end_corked(c);
		return;
	}
	if (b == &c->out)
		b->bad = true; /* the fault was taken here */
	rayc__conn_end_frame(c, b, before);
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

void rayc__conn_end_corked(rayc__conn *c)
{
	/* A send under way takes what follows with its next batch anyway;
	 * a connection not open yet sends nothing now. */
	if (atomic_load(&c->state) == RAYC__CONN_OPEN && !c->sending &&
	    !c->oom && c->corked + 1 < RAYC__CONN_CORK_MAX &&
	    c->out.len + c->out_ext_bytes <= RAYC__CONN_CORK_BYTES) {
		c->corked++;
		rayc__mutex_unlock(&c->mu);
		return;
	}
	(void)flush_unlock(c);
}

void rayc__conn_uncork(rayc__conn *c)
{
	rayc__mutex_lock(&c->mu);
	c->corked = 0;
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
	/* Test: a blocked peer's connection closes as it opens, before
	 * anything queued on it goes out. */
	if (rayc__relink_test_blocked(c->net, c->peer)) {
		atomic_store(&c->opened, true);
		rayc__conn_close(c, "test: peer blocked");
		return;
	}
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

