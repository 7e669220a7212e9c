/* mesh.c -- a cluster's connections: the table of them (one open
 * connection per peer, dialed on demand), opening and losing them, and
 * the frame dispatcher.  The loop thread, its timers, starting and
 * stopping are in mesh_life.c; the listener and addresses in
 * mesh_listen.c.  Membership and joining are in members.c, local peers in
 * local.c, the handshake (token authentication) in handshake.c, the
 * public cluster calls in cluster.c.
 *
 * Coordinator.  The leader of the control store (ctl.c, Raft over this
 * mesh) is the coordinator.  It admits joining peers (an ADD entry gives
 * each its id), collects heartbeats (free resources, queue lengths),
 * proposes the removal of peers that left or went silent, and broadcasts
 * the resource view every heartbeat.  Membership itself changes only when
 * those entries commit, on every peer.  The coordinator does not sit on
 * the data path: owners place tasks from the view and send them peer to
 * peer.  If it dies, the voters elect another and the cluster goes on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "net/net_int.h"


/* ---- connections ---- */

void rayc__net_conn_link_locked(rayc__net *net, rayc__conn *c)
	RAYC_REQUIRES(net->mu)
{
	c->next = net->conns;
	net->conns = c;
}

rayc__conn *rayc__net_conn_to(rayc__net *net, uint32_t id)
{
	rayc__conn *c = NULL;

	if (id == 0 || id >= RAYC__MAX_PEERS)
		return NULL;
	rayc__mutex_lock(&net->mu);
	rayc__peer *p = &net->peers[id];
	/* Dead peers get nothing.  A peer missing from our view (it joined
	 * after our last MEMBERS) is still reachable through a connection it
	 * authenticated on; dialing needs its address from the view. */
	bool dead = p->known && !p->alive;
	if (dead || atomic_load(&net->stopping) || id == net->self ||
	    (p->conn == NULL && !p->known)) {
		rayc__mutex_unlock(&net->mu);
		return NULL;
	}
	c = p->conn;
	if (c != NULL && atomic_load(&c->state) == RAYC__CONN_CLOSED) {
		/* Closed, and rayc__net_conn_lost not yet run (the closing
		 * thread was preempted between the two): a frame queued on
		 * it would be dropped, and nothing sends it again (a task
		 * answer was lost so when a task lane closed its connection
		 * while the task came again on a new one). */
		p->conn = NULL;
		c = NULL;
	}
	if (c == NULL) {
		c = rayc__conn_new(net);
		if (c != NULL) {
			c->want_peer = id;
			c->peer = id;
			if (rayc__conn_dial(c, p->url) != RAYC_OK) {
				rayc__conn_free(c);
				c = NULL;
			} else {
				rayc__net_conn_link_locked(net, c);
				p->conn = c;
			}
		}
	}
	if (c != NULL)
		atomic_fetch_add(&c->refs, 1);
	rayc__mutex_unlock(&net->mu);
	return c;
}

rayc__conn *rayc__net_conn_have(rayc__net *net, uint32_t id)
{
	rayc__conn *c = NULL;

	if (id == 0 || id >= RAYC__MAX_PEERS)
		return NULL;
	rayc__mutex_lock(&net->mu);
	c = net->peers[id].conn;
	if (c != NULL)
		atomic_fetch_add(&c->refs, 1);
	rayc__mutex_unlock(&net->mu);
	return c;
}

void rayc__net_send_to(rayc__net *net, uint32_t peer, rayc__wbuf *frame)
{
	rayc__conn *c = rayc__net_conn_to(net, peer);

	if (c == NULL)
		return;
	if (rayc__relink_test_lose(net, c))
		rayc__conn_close(c, "test: a frame lost with its connection");
	else
		rayc__conn_send(c, frame);
	rayc__conn_unref(c);
}

void rayc__net_conn_open(rayc__conn *c)
{
	rayc__net *net = c->net;

	if (c->probe)
		return;
	rayc__mutex_lock(&net->mu);
	if (c->joining) {
		rayc__mutex_unlock(&net->mu);
		rayc__event_set(&net->join_ev);
		return;
	}
	if (c->peer != 0 && c->peer < RAYC__MAX_PEERS &&
	    net->peers[c->peer].conn == NULL &&
	    !rayc__net_gone_locked(net, c->peer, c->gen))
		net->peers[c->peer].conn = c;
	/* At most RAYC__CONN_PER_PEER accepted from one member: a member
	 * opening more (each could hold a frame's worth) loses its oldest,
	 * as a peer that reconnects does not need it. */
	rayc__conn *oldest = NULL;
	int n = 0;
	for (rayc__conn *o = net->conns; o != NULL && !c->dialed &&
	                                 c->peer != 0;
	     o = o->next) {
		if (o->dialed || o->peer != c->peer ||
		    !atomic_load(&o->opened) ||
		    atomic_load(&o->state) == RAYC__CONN_CLOSED)
			continue;
		n++;
		oldest = o; /* newest first: the last is the oldest */
	}
	if (n <= RAYC__CONN_PER_PEER || oldest == c)
		oldest = NULL;
	if (oldest != NULL)
		atomic_fetch_add(&oldest->refs, 1);
	rayc__mutex_unlock(&net->mu);
	if (oldest != NULL) {
		rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-CONN-LIMIT",
		          "peer %u has more than %d connections to this one: "
		          "closing its oldest", c->peer, RAYC__CONN_PER_PEER);
		rayc__conn_close(oldest, "too many connections from one peer");
		rayc__conn_unref(oldest);
	}
	rayc__relink_conn_open(net, c->peer);
}

void rayc__net_conn_lost(rayc__conn *c)
{
	rayc__net *net = c->net;
	bool died = false;
	uint32_t id = c->peer;

	if (c->probe)
		return;
	rayc__mutex_lock(&net->mu);
	if (id != 0 && id < RAYC__MAX_PEERS) {
		if (net->peers[id].conn == c)
			net->peers[id].conn = NULL;
		/* The coordinator takes a failed dial to a member as its
		 * death; others wait for the committed removal.  An open
		 * connection that closed says nothing about the peer:
		 * relink sends again what was on it, and the coordinator
		 * dials the peer, which tells. */
		died = net->self == net->coord && net->peers[id].alive &&
		       id != net->self && !atomic_load(&net->leaving) &&
		       c->dialed && !atomic_load(&c->opened) &&
		       !atomic_load(&c->answered_joining) &&
		       atomic_load(&c->state) == RAYC__CONN_CLOSED;
	}
	if (c->joining && !net->joined) {
		if (net->join_rc == RAYC_OK)
			net->join_rc = RAYC_ESYS;
		rayc__event_set(&net->join_ev);
	}
	rayc__mutex_unlock(&net->mu);
	rayc__lane_conn_lost(net, c);
	if (atomic_load(&c->opened))
		rayc__relink_conn_lost(net, c);
	if (died)
		rayc__ctl_peer_gone(net, id, false);
}

/* Sends c a frame with no payload (then closes it, with close). */
static void send_empty(rayc__conn *c, int type, bool close)
{
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, type, c->net->self);

	rayc__w_frame_end(&b, f);
	if (close)
		rayc__conn_send_close(c, &b);
	else
		rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
}

void rayc__net_handle(rayc__conn *c, int type, rayc__rd *rd)
{
	rayc__net *net = c->net;

	if (c->peer == 0 && type != RAYC__MSG_JOIN) {
		rayc__conn_close(c, "frame before JOIN");
		return;
	}
	if (type == RAYC__MSG_REMOVED) {
		/* The cluster went on without us (we were silent too long,
		 * or cut off): never come back under this id.  While we
		 * leave, it only confirms our LEAVE: frames we sent after
		 * it met our committed removal. */
		atomic_store(&net->cut_off, true);
		if (atomic_load(&net->leaving)) {
			rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-LEFT", "peer %u "
			          "confirms this peer left the cluster",
			          c->peer);
		} else if (!atomic_exchange(&net->cluster_down, true)) {
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-REMOVED",
			          "peer %u says this peer was removed from the "
			          "cluster; stopping", c->peer);
			rayc__net_lost_cluster(net, "this peer was removed "
			                            "from the cluster");
		}
		return;
	}
	/* A frame from a peer the committed view removed: tell it.  Looked
	 * up under net->mu once per change of the view, not per frame: the
	 * lock is the submitting threads' too (placing, sending). */
	uint64_t seq = atomic_load_explicit(&net->view_seq,
	                                    memory_order_acquire) + 1;
	if (c->peer < RAYC__MAX_PEERS && c->peer != net->self &&
	    atomic_load_explicit(&c->view_ok, memory_order_relaxed) != seq) {
		rayc__mutex_lock(&net->mu);
		bool joined = net->joined;
		bool gone = joined &&
		            rayc__net_gone_locked(net, c->peer, c->gen);
		rayc__mutex_unlock(&net->mu);
		if (gone) {
			send_empty(c, RAYC__MSG_REMOVED, true);
			return;
		}
		if (joined)
			atomic_store_explicit(&c->view_ok, seq,
			                      memory_order_relaxed);
	}
	switch (type) {
	case RAYC__MSG_JOIN:
		/* One per connection: a second would be admitted again
		 * (another ADD, another id for the same peer). */
		if (c->peer != 0 || c->dialed || c->join_seen) {
			rayc__conn_close(c, "unexpected JOIN");
			return;
		}
		c->join_seen = true;
		rayc__net_on_join(c, rd);
		return;
	case RAYC__MSG_JOINED: {
		if (net->joined_delay_ms > 0) /* test: slow to read it */
			rayc__sleep_ms(net->joined_delay_ms);
		/* Our id and the committed membership; the control
		 * store's log follows (ctl.c). */
		uint32_t id = rayc__r_u32(rd);
		char why[sizeof(net->join_why)];
		rayc__r_str(rd, why, sizeof(why));
		/* A refusal for good carries a rayc_err after the reason. */
		int err = id == 0 && !rd->bad && rayc__rd_left(rd) >= 4
		                  ? (int)rayc__r_u32(rd)
		                  : 0;
		if (!rd->bad && id != 0)
			atomic_fetch_add(&rayc__joined_ids, 1);
		if (rd->bad || id >= RAYC__MAX_PEERS || !c->joining)
			return;
		rayc__mutex_lock(&net->mu);
		if (id == 0) {
			net->join_rc = RAYC__RETRY;
			if (err > 0 && err < RAYC__RETRY) {
				net->join_rc = err;
				memcpy(net->join_why, why, sizeof(why));
			}
			rayc__mutex_unlock(&net->mu);
			rayc__event_set(&net->join_ev);
			return;
		}
		net->coord = c->peer;
		net->coord_seen = rayc__now_ns();
		net->peers[c->peer].conn = c;
		rayc__mutex_unlock(&net->mu);
		if (!rayc__net_on_joined_view(net, rd)) {
			rayc__conn_close(c, "bad JOINED");
			return;
		}
		rayc__mutex_lock(&net->mu);
		/* Our id only with its incarnation in the view: a dial made
		 * in between claims (id, gen 0), which others take for a
		 * dead holder of the slot and answer REMOVED. */
		net->self = id;
		atomic_store(&net->rt->self_id, id);
		bool in = net->peers[id].known && net->peers[id].alive;
		/* The peer that admitted us proved a key in the handshake:
		 * it must be the one the cluster committed for its id. */
		bool coord_ok = sodium_memcmp(net->peers[c->peer].pk, c->pk,
		                              RAYC__ID_PK) == 0;
		if (!coord_ok)
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-WRONG-PEER",
			          "the peer that admitted this one does not hold "
			          "the key the cluster has for peer %u", c->peer);
		in = in && coord_ok;
		net->joined = in;
		if (!in)
			net->join_rc = RAYC_EPROTO;
		rayc__mutex_unlock(&net->mu);
		if (in)
			rayc__ctl_start(net, id);
		rayc__event_set(&net->join_ev);
		return;
	}
	case RAYC__MSG_MEMBERS:
		rayc__net_on_members(c, rd);
		return;
	case RAYC__MSG_RAFT:
		rayc__mutex_lock(&net->mu);
		if (c->peer == net->coord)
			net->coord_seen = rayc__now_ns();
		rayc__mutex_unlock(&net->mu);
		rayc__ctl_on_raft(c, rd);
		return;
	case RAYC__MSG_HEARTBEAT:
		rayc__net_on_heartbeat(c, rd);
		return;
	case RAYC__MSG_LEAVE:
		rayc__ctl_peer_gone(net, c->peer, true);
		return;
	case RAYC__MSG_SHUTDOWN: {
		rayc__log(RAYC_LOG_INFO, "RAYC-NET-SHUTDOWN",
		          "the cluster is shutting down");
		atomic_store(&net->heard_end, true);
		if (!atomic_exchange(&net->cluster_down, true))
			rayc__net_lost_cluster(net, "the cluster shut down");
		rayc__event_set(&net->join_ev); /* a join in progress ends */
		/* Heard: the sayer waits for this before it closes (a frame
		 * left unread when it closes may never be read here). */
		send_empty(c, RAYC__MSG_SHUTDOWN_ACK, false);
		return;
	}
	case RAYC__MSG_SHUTDOWN_ACK:
		if (c->peer != 0 && c->peer < RAYC__MAX_PEERS)
			atomic_store(&net->peers[c->peer].acked_end, true);
		return;
	default:
		rayc__remote_handle(c, type, rd);
		return;
	}
}
