/* probe.c -- test hooks that act as a hostile member would: dials of
 * their own, outside the mesh's bookkeeping (c->probe: never registered
 * as the connection to a peer, nothing resent when they close, nothing
 * they hear handled), claiming an id and sending what the test asks. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "net/net_int.h"
#include "testing.h"

/* Dials peer `to` claiming to be peer as of incarnation gen (0: the one
 * this peer's view has, waited for until until).  The connection holds a
 * ref for the caller. */
static rayc__conn *probe_dial(rayc__net *net, uint32_t to, uint32_t as,
                              uint64_t gen, int64_t until)
{
	char url[RAYC__URL_MAX];

	for (;;) {
		rayc__mutex_lock(&net->mu);
		snprintf(url, sizeof(url), "%s", net->peers[to].url);
		uint64_t g = as < RAYC__MAX_PEERS ? net->peers[as].gen : 0;
		rayc__mutex_unlock(&net->mu);
		if (gen != 0 || g != 0 || as == 0 || rayc__now_ns() > until) {
			gen = gen != 0 ? gen : g;
			break;
		}
		rayc__sleep_ms(10);
	}
	rayc__conn *c = rayc__conn_new(net);
	if (c == NULL)
		return NULL;
	c->probe = true;
	c->claim = as;
	c->claim_gen = gen;
	c->want_peer = to;
	c->peer = to;
	atomic_fetch_add(&c->refs, 1);
	rayc__mutex_lock(&net->mu);
	rayc__net_conn_link_locked(net, c);
	rayc__mutex_unlock(&net->mu);
	if (rayc__conn_dial(c, url) != RAYC_OK) {
		rayc__conn_close(c, "test: probe not dialed");
		rayc__conn_unref(c);
		return NULL;
	}
	return c;
}

/* Waits until want of the n probes closed or until passes; how many
 * the other side closed. */
static int probes_closed(rayc__conn **v, int n, int want, int64_t until)
{
	int closed;

	for (;;) {
		closed = 0;
		for (int i = 0; i < n; i++)
			closed += atomic_load(&v[i]->state) ==
			          RAYC__CONN_CLOSED;
		if (closed >= want || rayc__now_ns() > until)
			return closed;
		rayc__sleep_ms(10);
	}
}

int rayc__test_send_as(uint32_t to, uint32_t as, uint64_t gen, int type,
                       const void *p, size_t n, int wait_ms)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL || to == 0 || to >= RAYC__MAX_PEERS)
		return RAYC_EINVAL;
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL)
		return RAYC_ESTATE;
	int64_t ns = (int64_t)wait_ms * 1000000;
	rayc__conn *c = probe_dial(net, to, as, gen, rayc__now_ns() + ns);
	if (c == NULL) {
		rayc__net_put(net);
		return RAYC_ESYS;
	}
	/* Queued until the handshake ends, then sent under as. */
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, type, as);
	rayc__w_bytes(&b, p, n);
	rayc__w_frame_end(&b, f);
	rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
	int rc = probes_closed(&c, 1, 1, rayc__now_ns() + ns) == 1
	                 ? RAYC_OK
	                 : RAYC_ETIMEDOUT;
	rayc__conn_close(c, "test: probe done");
	rayc__conn_unref(c);
	rayc__net_put(net);
	return rc;
}

int rayc__test_hold_frames(uint32_t to, uint32_t as, int nconn,
                           size_t bytes, int want, int wait_ms)
{
	rayc__rt *rt = rayc__g;
	enum { MAXC = 16 };
	rayc__conn *v[MAXC];
	int n = 0;

	if (rt == NULL || to == 0 || to >= RAYC__MAX_PEERS ||
	    as >= RAYC__MAX_PEERS || nconn < 1 ||
	    nconn > MAXC || bytes == 0 || bytes > RAYC__WIRE_MAX_FRAME / 2)
		return RAYC_EINVAL;
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL)
		return RAYC_ESTATE;
	int64_t until = rayc__now_ns() + (int64_t)wait_ms * 1000000;
	rayc__wbuf b = { 0 };
	uint32_t me = as != 0 ? as : 0;
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_TASK, me);
	if (rayc__wbuf_reserve(&b, bytes)) {
		memset(b.p + b.len, 0, bytes);
		b.len += bytes;
	}
	rayc__w_frame_end(&b, f);
	/* The header claims twice what follows: the frame never ends. */
	uint32_t len = (uint32_t)(bytes * 2);
	for (int k = 0; k < 4 && !b.bad; k++)
		b.p[f + RAYC__WIRE_LEN_AT + k] = (uint8_t)(len >> (8 * k));
	for (int i = 0; i < nconn && !b.bad; i++) {
		rayc__conn *c = probe_dial(net, to, me, 0, until);
		if (c == NULL)
			break;
		rayc__conn_send(c, &b);
		v[n++] = c;
	}
	int rc = b.bad ? RAYC_ENOMEM : probes_closed(v, n, want, until);
	rayc__wbuf_fini(&b);
	for (int i = 0; i < n; i++) {
		rayc__conn_close(v[i], "test: probe done");
		rayc__conn_unref(v[i]);
	}
	rayc__net_put(net);
	return rc;
}

int rayc__test_dial_until_closed(const char *url, int wait_ms,
                                 int64_t *open_ms, bool *connected)
{
	rayc__net *net = rayc__net_get(rayc__g);

	*open_ms = -1;
	*connected = false;
	if (net == NULL)
		return RAYC_ESTATE;
	rayc__conn *c = rayc__conn_new(net);
	if (c == NULL) {
		rayc__net_put(net);
		return RAYC_ENOMEM;
	}
	c->probe = true;
	atomic_fetch_add(&c->refs, 1);
	rayc__mutex_lock(&net->mu);
	rayc__net_conn_link_locked(net, c);
	rayc__mutex_unlock(&net->mu);
	int64_t t0 = rayc__now_ns();
	int64_t until = t0 + (int64_t)wait_ms * 1000000;
	int rc = rayc__conn_dial(c, url);
	if (rc == RAYC_OK) {
		int st;
		while ((st = atomic_load(&c->state)) == RAYC__CONN_DIALING &&
		       rayc__now_ns() < until)
			rayc__sleep_ms(10);
		*open_ms = (rayc__now_ns() - t0) / 1000000;
		*connected = st != RAYC__CONN_CLOSED &&
		             st != RAYC__CONN_DIALING;
		rc = st == RAYC__CONN_DIALING ? RAYC_ETIMEDOUT : RAYC_OK;
	}
	rayc__conn_close(c, "test: dial done");
	rayc__conn_unref(c);
	rayc__net_put(net);
	return rc;
}

typedef struct storm {
	rayc__net *net;
	const char *const *urls;
	int nurls, deadline_ms, seed;
	int64_t until;
	_Atomic uint64_t *dials, *given_up;
	_Atomic int *rc;
} storm;

/* Dials, then frees each connection as the mesh does: given up as the
 * loop gives a dial up (rayc__conn_give_up_dial, on this thread) when its
 * deadline passes, closed, freed at once. */
static void *storm_main(void *arg)
{
	storm *s = arg;
	uint32_t r = (uint32_t)s->seed * 2654435761u + 1;

	for (int i = 0; rayc__now_ns() < s->until; i++) {
		rayc__conn *c = rayc__conn_new(s->net);
		if (c == NULL) {
			atomic_store(s->rc, RAYC_ENOMEM);
			return NULL;
		}
		c->probe = true;
		r = r * 1103515245u + 12345u;
		int64_t wait_ns =
			(int64_t)(1 + (r >> 8) % (unsigned)s->deadline_ms) *
			1000000;
		if (rayc__conn_dial(c, s->urls[i % s->nurls]) == RAYC_OK) {
			int64_t end = rayc__now_ns() + wait_ns;
			while (atomic_load(&c->state) == RAYC__CONN_DIALING &&
			       rayc__now_ns() < end) {
				struct timespec ts = { 0, 200000 };
				nanosleep(&ts, NULL);
			}
			if (atomic_load(&c->state) == RAYC__CONN_DIALING) {
				rayc__conn_give_up_dial(c);
				atomic_fetch_add(s->given_up, 1);
			}
			atomic_fetch_add(s->dials, 1);
		}
		rayc__conn_close(c, NULL);
		rayc__conn_free(c);
	}
	return NULL;
}

int rayc__test_dial_storm(const char *const *urls, int nurls, int threads,
                          int ms, int deadline_ms, uint64_t *dials,
                          uint64_t *given_up)
{
	enum { MAX = 32 };
	pthread_t th[MAX];
	storm s[MAX];
	_Atomic uint64_t nd = 0, ng = 0;
	_Atomic int rc = RAYC_OK;
	int n = 0;

	if (threads < 1 || threads > MAX || nurls < 1 || deadline_ms < 1)
		return RAYC_EINVAL;
	rayc__net *net = rayc__net_get(rayc__g);
	if (net == NULL)
		return RAYC_ESTATE;
	for (; n < threads; n++) {
		s[n] = (storm){ net, urls, nurls, deadline_ms, n,
			        rayc__now_ns() + (int64_t)ms * 1000000, &nd,
			        &ng, &rc };
		if (pthread_create(&th[n], NULL, storm_main, &s[n]) != 0)
			break;
	}
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	rayc__net_put(net);
	*dials = atomic_load(&nd);
	*given_up = atomic_load(&ng);
	return n < threads ? RAYC_ESYS : atomic_load(&rc);
}
