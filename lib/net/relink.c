/* relink.c -- what a lost connection to a live peer leaves to do (the
 * design note is at rayc__relink_* in net_int.h).
 *
 * A connection closes for many reasons besides a death: a reset, a
 * peer's listener restarted, a frame we could not queue (out of memory
 * closes the connection rather than drop it), a test.  Whatever was
 * queued on it is gone, and nobody would send it again: owners waited
 * for ever on TASK_DONEs and fetchers on CHUNKs.  So each side sends
 * again what only it can know was lost:
 *   - both ends of an open connection see it close: the owner sends
 *     every task it has in flight there again (same dispatch number; the
 *     executor runs a task once and answers again from its record,
 *     xrec.c), and every transfer coming from that peer is asked for
 *     again;
 *   - frames queued on a dial that never opened are known only to their
 *     sender: they wait here (orphan) and go out on the next connection;
 *   - the peer is dialed again at once; the coordinator no longer takes
 *     a closed connection as a death: only its dial that fails is one.
 * A peer that no connection reaches for a heartbeat timeout, although
 * the cluster still has it as a member, gets no more waiting: its tasks
 * are placed elsewhere, transfers from it fail (owners rebuild), and
 * placement skips it until a connection to it opens again.
 *
 * Everything here runs on the loop thread (relink_ev), at most once per
 * RELINK_GAP per peer, so a peer that keeps refusing costs a dial per
 * gap, not a spin.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "net/remote_int.h"
#include "testing.h"

#define RELINK_GAP_NS ((int64_t)100 * 1000000)
#define MEMBER_POLL_NS ((int64_t)10 * 1000000)
#define ORPHAN_MAX ((size_t)64 << 20)

static _Atomic int test_lose_armed;

static void kick(rayc__net *net, int64_t delay_ns)
{
	if (net->relink_ev == NULL || atomic_load(&net->stopping))
		return;
	if (delay_ns <= 0) {
		event_active(net->relink_ev, EV_TIMEOUT, 0);
		return;
	}
	struct timeval tv = { (time_t)(delay_ns / 1000000000),
		              (suseconds_t)(delay_ns % 1000000000 / 1000) };
	(void)event_add(net->relink_ev, &tv);
}

/* Is some connection to peer open now? */
static bool open_to_locked(rayc__net *net, uint32_t peer)
	RAYC_REQUIRES(net->mu)
{
	for (rayc__conn *c = net->conns; c != NULL; c = c->next)
		if (c->peer == peer &&
		    atomic_load(&c->state) == RAYC__CONN_OPEN)
			return true;
	return false;
}

/* One peer's turn.  Returns how long until it wants another (0: not). */
static int64_t relink_one(rayc__net *net, uint32_t id, int64_t now)
{
	rayc__wbuf orphan = { 0 };
	bool run = false, give_up = false, probe = false;
	int64_t again = 0;

	rayc__mutex_lock(&net->mu);
	rayc__peer *p = &net->peers[id];
	rayc__link *l = &net->links[id];
	if ((p->known && !p->alive) || id == net->self) {
		/* Dead (its death undoes the rest) or us. */
		rayc__wbuf_fini(&l->orphan);
		memset(l, 0, sizeof(*l));
		rayc__mutex_unlock(&net->mu);
		return 0;
	}
	if (l->lost || l->orphan.len > 0) {
		int64_t wait = l->last_pass + RELINK_GAP_NS - now;
		if (wait > 0) {
			again = wait;
		} else {
			run = l->lost;
			l->lost = false;
			l->last_pass = now;
			orphan = l->orphan;
			memset(&l->orphan, 0, sizeof(l->orphan));
			probe = run;
		}
	}
	if (l->lost_since != 0 && !l->gave_up &&
	    now - l->lost_since > net->timeout_ns) {
		if (open_to_locked(net, id)) {
			l->lost_since = 0; /* another connection stayed */
		} else {
			l->gave_up = true;
			give_up = true;
		}
	}
	rayc__mutex_unlock(&net->mu);
	if (orphan.len > 0) {
		rayc__conn *c = rayc__net_conn_to(net, id);
		if (c != NULL) {
			rayc__conn_send(c, &orphan);
			rayc__conn_unref(c);
		}
	}
	rayc__wbuf_fini(&orphan);
	if (give_up)
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-UNREACHABLE",
		          "no connection to peer %u for %lld ms although it is "
		          "a member: its tasks go elsewhere, its objects are "
		          "rebuilt", id, (long long)(net->timeout_ns / 1000000));
	if (run || give_up)
		rayc__remote_relink(net, id, give_up);
	if (probe) {
		/* A connection again, with work to send or not: placement
		 * waits for one (see lost_since), and the coordinator's
		 * dial tells whether the peer lives. */
		rayc__conn *c = rayc__net_conn_to(net, id);
		if (c != NULL)
			rayc__conn_unref(c);
	}
	return again;
}

static void pass(rayc__net *net)
{
	int64_t now = rayc__now_ns(), next = 0;

	if (atomic_load(&net->stopping) || atomic_load(&net->leaving))
		return;
	for (uint32_t id = 1; id < atomic_load(&net->top); id++) {
		int64_t w = relink_one(net, id, now);
		if (w > 0 && (next == 0 || w < next))
			next = w;
	}
	if (rayc__remote_fetch_waiting(net) &&
	    (next == 0 || next > MEMBER_POLL_NS))
		next = MEMBER_POLL_NS;
	if (next > 0)
		kick(net, next);
}

static void on_relink(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pass(arg);
}

int rayc__relink_init(rayc__net *net)
{
	net->relink_ev = event_new(net->base, -1, 0, on_relink, net);
	return net->relink_ev != NULL ? RAYC_OK : RAYC_ENOMEM;
}

void rayc__relink_fini(rayc__net *net)
{
	if (net->relink_ev != NULL)
		event_free(net->relink_ev);
	net->relink_ev = NULL;
	for (uint32_t i = 0; i < RAYC__MAX_PEERS; i++)
		rayc__wbuf_fini(&net->links[i].orphan);
}

void rayc__relink_conn_lost(rayc__net *net, rayc__conn *c)
{
	uint32_t id = c->peer;

	if (id == 0 || id >= RAYC__MAX_PEERS || atomic_load(&net->stopping) ||
	    atomic_load(&net->leaving))
		return;
	rayc__mutex_lock(&net->mu);
	rayc__peer *p = &net->peers[id];
	bool live = !(p->known && !p->alive) && id != net->self;
	if (live) {
		net->links[id].lost = true;
		if (net->links[id].lost_since == 0)
			net->links[id].lost_since = rayc__now_ns();
	}
	rayc__mutex_unlock(&net->mu);
	if (live)
		kick(net, 0);
}

void rayc__relink_conn_open(rayc__net *net, uint32_t peer)
{
	if (peer == 0 || peer >= RAYC__MAX_PEERS)
		return;
	rayc__mutex_lock(&net->mu);
	net->links[peer].lost_since = 0;
	net->links[peer].gave_up = false;
	rayc__mutex_unlock(&net->mu);
}

void rayc__relink_soon(rayc__net *net)
{
	kick(net, MEMBER_POLL_NS);
}

void rayc__relink_retry(rayc__net *net, uint32_t peer)
{
	if (peer == 0 || peer >= RAYC__MAX_PEERS)
		return;
	rayc__mutex_lock(&net->mu);
	net->links[peer].lost = true;
	rayc__mutex_unlock(&net->mu);
	kick(net, RELINK_GAP_NS);
}

void rayc__relink_orphans(rayc__net *net, rayc__conn *c)
{
	uint32_t id = c->want_peer;
	bool kept = false, dropped = false;

	if (atomic_load(&c->opened) || !c->dialed || c->pend.len == 0 ||
	    id == 0 || id >= RAYC__MAX_PEERS || atomic_load(&net->stopping))
		return;
	rayc__mutex_lock(&net->mu);
	rayc__peer *p = &net->peers[id];
	rayc__link *l = &net->links[id];
	if ((p->known && !p->alive) || id == net->self) {
		/* dead: nothing it would have done with them matters */
	} else if (l->orphan.len + c->pend.len > ORPHAN_MAX) {
		dropped = true;
	} else {
		rayc__w_bytes(&l->orphan, c->pend.p, c->pend.len);
		if (l->orphan.bad) {
			rayc__wbuf_fini(&l->orphan);
			dropped = true;
		} else {
			kept = true;
		}
	}
	rayc__mutex_unlock(&net->mu);
	if (dropped)
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-FRAMES-DROPPED",
		          "frames for peer %u dropped: no connection reached it "
		          "and too many wait (or no memory)", id);
	if (kept)
		kick(net, 0);
}

void rayc__relink_tick(rayc__net *net)
{
	rayc__rt *rt = net->rt;

	pass(net);
	rayc__mutex_lock(&rt->mu);
	rayc__xrec_sweep_locked(net, rayc__now_ns());
	rayc__mutex_unlock(&rt->mu);
}

bool rayc__relink_test_lose(rayc__net *net, rayc__conn *c)
{
	bool lose = false;

	if (atomic_load_explicit(&test_lose_armed, memory_order_relaxed) == 0)
		return false;
	rayc__mutex_lock(&net->mu);
	if (c->peer < RAYC__MAX_PEERS && net->links[c->peer].lose > 0 &&
	    atomic_load(&c->state) == RAYC__CONN_OPEN) {
		net->links[c->peer].lose--;
		atomic_fetch_sub(&test_lose_armed, 1);
		lose = true;
	}
	rayc__mutex_unlock(&net->mu);
	return lose;
}

/* ---- test hooks ---- */

static _Atomic int test_blocks;

bool rayc__relink_test_blocked(rayc__net *net, uint32_t peer)
{
	if (atomic_load_explicit(&test_blocks, memory_order_relaxed) == 0 ||
	    peer == 0 || peer >= RAYC__MAX_PEERS)
		return false;
	rayc__mutex_lock(&net->mu);
	bool b = net->links[peer].blocked;
	rayc__mutex_unlock(&net->mu);
	return b;
}

int rayc__test_block_peer(uint32_t peer, bool block)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL || peer == 0 || peer >= RAYC__MAX_PEERS)
		return RAYC_EINVAL;
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL)
		return RAYC_ESTATE;
	rayc__mutex_lock(&net->mu);
	if (net->links[peer].blocked != block)
		atomic_fetch_add(&test_blocks, block ? 1 : -1);
	net->links[peer].blocked = block;
	rayc__mutex_unlock(&net->mu);
	rayc__net_put(net);
	return block ? rayc__test_drop_conn(peer, 0) : RAYC_OK;
}

int rayc__test_drop_conn(uint32_t peer, int lose)
{
	rayc__rt *rt = rayc__g;
	rayc__conn *cs[64];
	int n = 0;

	if (rt == NULL)
		return RAYC_ESTATE;
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL)
		return RAYC_ESTATE;
	if (peer == 0 || peer >= RAYC__MAX_PEERS || lose < 0) {
		rayc__net_put(net);
		return RAYC_EINVAL;
	}
	rayc__mutex_lock(&net->mu);
	for (rayc__conn *c = net->conns; c != NULL && n < 64; c = c->next)
		if ((c->peer == peer || c->want_peer == peer) &&
		    atomic_load(&c->state) != RAYC__CONN_CLOSED) {
			atomic_fetch_add(&c->refs, 1);
			cs[n++] = c;
		}
	net->links[peer].lose += lose;
	atomic_fetch_add(&test_lose_armed, lose);
	rayc__mutex_unlock(&net->mu);
	for (int i = 0; i < n; i++) {
		rayc__conn_close(cs[i], "test: connection dropped");
		rayc__conn_unref(cs[i]);
	}
	rayc__net_put(net);
	return RAYC_OK;
}

int rayc__test_send_raw(uint32_t peer, int type, const void *p, size_t n)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL)
		return RAYC_ESTATE;
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL)
		return RAYC_ESTATE;
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, type, net->self);
	rayc__w_bytes(&b, p, n);
	rayc__w_frame_end(&b, f);
	int rc = b.bad ? RAYC_ENOMEM : RAYC_OK;
	rayc__net_send_to(net, peer, &b);
	rayc__wbuf_fini(&b);
	rayc__net_put(net);
	return rc;
}

bool rayc__test_conn_open(uint32_t peer)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL || peer >= RAYC__MAX_PEERS)
		return false;
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL)
		return false;
	rayc__mutex_lock(&net->mu);
	bool open = open_to_locked(net, peer);
	rayc__mutex_unlock(&net->mu);
	rayc__net_put(net);
	return open;
}

void rayc__remote_relink(rayc__net *net, uint32_t id, bool give_up)
{
	rayc__rt *rt = net->rt;

	rayc__mutex_lock(&rt->mu);
	if (give_up)
		rayc__remote_replace_locked(rt, net, id);
	else
		rayc__remote_resend_locked(rt, net, id);
	rayc__mutex_unlock(&rt->mu);
	rayc__remote_refetch(net, id, give_up);
}
