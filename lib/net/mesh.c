/* mesh.c -- forming and keeping a cluster: the listener, joining through
 * any peer, token authentication, heartbeats and failure detection,
 * starting local peers, leaving and shutting the cluster down.
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

#include <event2/event.h>
#include <event2/thread.h>
#include <sodium.h>

#include "lineage/lineage.h"
#include "net/net_int.h"
#include "sched/sched.h"


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

/* ---- connections ---- */

static void conn_link_locked(rayc__net *net, rayc__conn *c)
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
	if (c == NULL) {
		c = rayc__conn_new(net);
		if (c != NULL) {
			c->want_peer = id;
			c->peer = id;
			if (rayc__conn_dial(c, p->url) != RAYC_OK) {
				rayc__conn_free(c);
				c = NULL;
			} else {
				conn_link_locked(net, c);
				p->conn = c;
			}
		}
	}
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
	rayc__conn_send(c, frame);
	rayc__conn_unref(c);
}

void rayc__net_conn_open(rayc__conn *c)
{
	rayc__net *net = c->net;

	rayc__mutex_lock(&net->mu);
	if (c->joining) {
		rayc__mutex_unlock(&net->mu);
		rayc__event_set(&net->join_ev);
		return;
	}
	if (c->peer != 0 && c->peer < RAYC__MAX_PEERS &&
	    net->peers[c->peer].conn == NULL)
		net->peers[c->peer].conn = c;
	rayc__mutex_unlock(&net->mu);
}

void rayc__net_conn_lost(rayc__conn *c)
{
	rayc__net *net = c->net;
	bool died = false;
	uint32_t id = c->peer;

	rayc__mutex_lock(&net->mu);
	if (id != 0 && id < RAYC__MAX_PEERS) {
		if (net->peers[id].conn == c)
			net->peers[id].conn = NULL;
		/* The coordinator takes a lost connection (or a refused
		 * dial) to a member as its death; others wait for the
		 * committed removal. */
		died = net->self == net->coord && net->peers[id].alive &&
		       id != net->self && !atomic_load(&net->leaving) &&
		       atomic_load(&c->state) == RAYC__CONN_CLOSED;
	}
	if (c->joining && !net->joined) {
		if (net->join_rc == RAYC_OK)
			net->join_rc = RAYC_ESYS;
		rayc__event_set(&net->join_ev);
	}
	rayc__mutex_unlock(&net->mu);
	if (died)
		rayc__ctl_peer_gone(net, id, false);
}

/* ---- membership ---- */

/* Writes this peer's resource names with the quantities given (avail
 * NULL: totals only); rayc__net_read_res reads them back. */
void rayc__net_write_res(const rayc__rt *rt, rayc__wbuf *b, const int64_t *total,
                      const int64_t *avail)
{
	int nres = atomic_load(&rt->nres);

	rayc__w_u8(b, (uint8_t)nres);
	for (int k = 0; k < nres; k++) {
		rayc__w_str(b, rt->res_names[k]);
		rayc__w_u64(b, (uint64_t)total[k]);
		if (avail != NULL)
			rayc__w_u64(b, (uint64_t)avail[k]);
	}
}

/* The cluster view, as the coordinator broadcasts it. */
static void encode_members_locked(rayc__net *net, rayc__wbuf *b)
	RAYC_REQUIRES(net->mu)
{
	rayc__rt *rt = net->rt;
	uint32_t n = 0;

	for (uint32_t i = 1; i < atomic_load(&net->top); i++)
		n += net->peers[i].known && net->peers[i].alive;
	size_t f = rayc__w_frame_begin(b, RAYC__MSG_MEMBERS, net->self);
	rayc__w_u32(b, n);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		if (!p->known || !p->alive)
			continue;
		rayc__w_u32(b, i);
		rayc__w_u64(b, p->executed);
		rayc__w_u64(b, p->queued);
		rayc__net_write_res(rt, b, p->total, p->avail);
	}
	rayc__w_frame_end(b, f);
}

static void self_stats(rayc__net *net, int64_t *avail, uint64_t *queued)
{
	rayc__rt *rt = net->rt;

	rayc__mutex_lock(&rt->mu);
	memcpy(avail, rt->res_avail, sizeof(int64_t) * RAYC__MAX_RES);
	*queued = rt->queued + rt->pending_args;
	rayc__mutex_unlock(&rt->mu);
}

/* This peer's own entry in the view, from stats read (with rt->mu)
 * before taking net->mu. */
static void update_self_locked(rayc__net *net, const int64_t *avail,
                               uint64_t queued) RAYC_REQUIRES(net->mu)
{
	rayc__peer *me = &net->peers[net->self];

	memcpy(me->avail, avail, sizeof(me->avail));
	memcpy(me->total, net->rt->res_total, sizeof(me->total));
	me->executed = atomic_load(&net->rt->n_executed);
	me->queued = queued;
}

static void broadcast_members(rayc__net *net)
{
	rayc__wbuf b = { 0 };
	uint32_t to[RAYC__MAX_PEERS];
	int n = 0;
	int64_t avail[RAYC__MAX_RES];
	uint64_t queued;

	self_stats(net, avail, &queued);
	rayc__mutex_lock(&net->mu);
	update_self_locked(net, avail, queued);
	encode_members_locked(net, &b);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++)
		if (net->peers[i].alive && i != net->self)
			to[n++] = i;
	rayc__mutex_unlock(&net->mu);
	for (int i = 0; i < n; i++)
		rayc__net_send_to(net, to[i], &b);
	rayc__wbuf_fini(&b);
}

/* Reads (name, total, avail) triples into local resource indices, adding
 * names this peer has not seen (with a local total of 0). */
bool rayc__net_read_res(rayc__net *net, rayc__rd *rd, int64_t *total,
                     int64_t *avail, bool with_avail)
{
	rayc__rt *rt = net->rt;
	char name[64];
	int nres = rayc__r_u8(rd);

	memset(total, 0, sizeof(int64_t) * RAYC__MAX_RES);
	memset(avail, 0, sizeof(int64_t) * RAYC__MAX_RES);
	for (int k = 0; k < nres; k++) {
		rayc__r_str(rd, name, sizeof(name));
		uint64_t t = rayc__r_u64(rd);
		uint64_t a = with_avail ? rayc__r_u64(rd) : t;
		if (rd->bad)
			return false;
		int idx = rayc__res_find(rt, name);
		if (idx < 0) {
			rayc__mutex_lock(&rt->mu);
			idx = rayc__res_index_locked(rt, name, true);
			rayc__mutex_unlock(&rt->mu);
		}
		if (idx < 0)
			continue; /* more names than we track: ignore */
		total[idx] = (int64_t)t;
		avail[idx] = (int64_t)a;
	}
	return true;
}

/* The coordinator's resource view: free resources and counts of the
 * members (membership itself comes from the control store's log). */
static void on_members(rayc__net *net, rayc__rd *rd)
{
	uint32_t n = rayc__r_u32(rd);

	if (rd->bad || n > RAYC__MAX_PEERS)
		return;
	for (uint32_t i = 0; i < n; i++) {
		rayc__peer tmp;
		memset(&tmp, 0, sizeof(tmp));
		uint32_t id = rayc__r_u32(rd);
		tmp.executed = rayc__r_u64(rd);
		tmp.queued = rayc__r_u64(rd);
		if (rd->bad || id == 0 || id >= RAYC__MAX_PEERS ||
		    !rayc__net_read_res(net, rd, tmp.total, tmp.avail, true))
			return;
		rayc__mutex_lock(&net->mu);
		rayc__peer *p = &net->peers[id];
		if (p->known && id != net->self) {
			p->executed = tmp.executed;
			p->queued = tmp.queued;
			memcpy(p->avail, tmp.avail, sizeof(p->avail));
		}
		rayc__mutex_unlock(&net->mu);
	}
}

typedef struct join_arg {
	rayc__conn *c;
	rayc__peer tmp;
} join_arg;

/* The committed members as JOINED and snapshots carry them: the next id,
 * then each known peer (id, alive, role, pid, job, address, totals). */
void rayc__net_write_members_locked(rayc__net *net, rayc__wbuf *b)
{
	uint32_t n = 0;

	rayc__w_u32(b, net->next_id);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++)
		n += net->peers[i].known;
	rayc__w_u32(b, n);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		if (!p->known)
			continue;
		rayc__w_u32(b, i);
		rayc__w_u8(b, p->alive);
		rayc__w_u8(b, p->worker);
		rayc__w_u32(b, (uint32_t)p->pid);
		rayc__w_u8(b, (uint8_t)p->job_state);
		rayc__w_u64(b, (uint64_t)p->job_start_ms);
		rayc__w_u64(b, (uint64_t)p->job_end_ms);
		rayc__w_str(b, p->url);
		rayc__net_write_res(net->rt, b,
		                    i == net->self ? net->rt->res_total
		                                   : p->total,
		                    NULL);
	}
}

int rayc__net_read_members(rayc__net *net, rayc__rd *rd, bool apply,
                           rayc__gone *gone, int *ngone)
{
	uint32_t next = rayc__r_u32(rd);
	uint32_t n = rayc__r_u32(rd);

	*ngone = 0;
	if (rd->bad || n > RAYC__MAX_PEERS)
		return -1;
	for (uint32_t k = 0; k < n; k++) {
		rayc__peer tmp;
		memset(&tmp, 0, sizeof(tmp));
		uint32_t id = rayc__r_u32(rd);
		tmp.alive = rayc__r_u8(rd) != 0;
		tmp.worker = rayc__r_u8(rd) != 0;
		tmp.pid = (int)rayc__r_u32(rd);
		tmp.job_state = rayc__r_u8(rd);
		tmp.job_start_ms = (int64_t)rayc__r_u64(rd);
		tmp.job_end_ms = (int64_t)rayc__r_u64(rd);
		rayc__r_str(rd, tmp.url, sizeof(tmp.url));
		if (rd->bad || id == 0 || id >= RAYC__MAX_PEERS ||
		    !rayc__net_read_res(net, rd, tmp.total, tmp.avail, false))
			return -1;
		if (!apply)
			continue;
		/* Merge, never go back: entries already here may be newer
		 * than these; the log brings the rest in order. */
		rayc__mutex_lock(&net->mu);
		rayc__peer *p = &net->peers[id];
		if (!p->known) {
			rayc__conn *keep = p->conn;
			*p = tmp;
			p->conn = keep;
			rayc__net_know_locked(net, id);
			p->last_seen = rayc__now_ns();
		} else if (p->alive && !tmp.alive) {
			rayc__gone *g = &gone[(*ngone)++];
			g->id = id;
			g->left = tmp.job_state == RAYC_JOB_SUCCEEDED;
			g->end = tmp.job_end_ms;
		}
		rayc__mutex_unlock(&net->mu);
	}
	if (apply) {
		rayc__mutex_lock(&net->mu);
		if (next > net->next_id)
			net->next_id = next;
		rayc__mutex_unlock(&net->mu);
	}
	return 0;
}

/* JOINED: the new peer's id (0: not admitted, why says why) and the
 * committed membership as of its admission, so it knows every member
 * before the first task reaches it; the log it replays afterwards finds
 * those entries already in place (applying them twice changes nothing). */
static void send_joined(rayc__conn *c, rayc__net *net, uint32_t id,
                        const char *why)
{
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_JOINED, net->self);

	rayc__w_u32(&b, id);
	rayc__w_str(&b, why);
	if (id != 0) {
		rayc__mutex_lock(&net->mu);
		rayc__net_write_members_locked(net, &b);
		rayc__mutex_unlock(&net->mu);
	}
	rayc__w_frame_end(&b, f);
	rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
}

/* The joiner's side: installs the membership JOINED carries (a fresh
 * peer has no members of its own that could be marked gone). */
static bool on_joined_view(rayc__net *net, rayc__rd *rd)
{
	rayc__gone gone[RAYC__MAX_PEERS];
	int ngone;

	return rayc__net_read_members(net, rd, true, gone, &ngone) == 0 &&
	       rayc__rd_left(rd) == 0;
}

/* The ADD entry for a joiner committed (or did not). */
static void join_applied(int rc, void *arg)
{
	join_arg *j = arg;
	rayc__conn *c = j->c;
	rayc__net *net = c->net;
	uint32_t id = j->tmp.id;

	if (rc == RAYC_OK) {
		rayc__mutex_lock(&net->mu);
		c->peer = id;
		if (net->peers[id].conn == NULL)
			net->peers[id].conn = c;
		rayc__mutex_unlock(&net->mu);
		send_joined(c, net, id, "");
	} else {
		send_joined(c, net, 0, "try again");
	}
	rayc__conn_unref(c);
	free(j);
}

/* Loop thread: admit a joiner with an ADD entry. */
static void run_join(rayc__net *net, void *arg)
{
	join_arg *j = arg;

	if (j == NULL)
		return;
	int rc = RAYC__RETRY;
	if (rayc__ctl_ready(net)) {
		rayc__mutex_lock(&net->mu);
		uint32_t id = net->next_id < RAYC__MAX_PEERS ? net->next_id++
		                                             : 0;
		rayc__mutex_unlock(&net->mu);
		if (id == 0) {
			send_joined(j->c, net, 0, "the cluster is full");
			rayc__conn_close(j->c, "cluster is full");
			rc = RAYC_EINVAL;
		} else {
			j->tmp.id = id;
			rayc__wbuf b = { 0 };
			rayc__ctl_cmd_add(net, &b, id, j->tmp.worker,
			                  j->tmp.pid, j->tmp.url, j->tmp.total);
			rc = rayc__ctl_propose(net, &b, join_applied, j);
			rayc__wbuf_fini(&b);
			if (rc == RAYC_OK)
				return;
		}
	}
	if (rc == RAYC__RETRY || rc == RAYC_ENOMEM)
		send_joined(j->c, net, 0, "not the coordinator");
	rayc__conn_unref(j->c);
	free(j);
}

static void on_join(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	join_arg *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return;
	rayc__r_str(rd, j->tmp.url, sizeof(j->tmp.url));
	j->tmp.pid = (int)rayc__r_u32(rd);
	j->tmp.worker = rayc__r_u8(rd) != 0;
	if (rd->bad ||
	    !rayc__net_read_res(net, rd, j->tmp.total, j->tmp.avail, false)) {
		free(j);
		rayc__conn_close(c, "bad JOIN");
		return;
	}
	atomic_fetch_add(&c->refs, 1);
	j->c = c;
	rayc__ctl_post(net, run_join, j);
}

static void on_heartbeat(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	uint64_t executed = rayc__r_u64(rd);
	uint64_t queued = rayc__r_u64(rd);
	int64_t total[RAYC__MAX_RES], avail[RAYC__MAX_RES];

	if (rd->bad || !rayc__net_read_res(net, rd, total, avail, true))
		return;
	rayc__mutex_lock(&net->mu);
	rayc__peer *p = &net->peers[c->peer];
	if (p->known) {
		p->executed = executed;
		p->queued = queued;
		memcpy(p->total, total, sizeof(total));
		memcpy(p->avail, avail, sizeof(avail));
		p->last_seen = rayc__now_ns();
	}
	rayc__mutex_unlock(&net->mu);
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
		 * or cut off): never come back under this id. */
		atomic_store(&net->cut_off, true);
		if (!atomic_load(&net->cluster_down)) {
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-REMOVED",
			          "peer %u says this peer was removed from the "
			          "cluster; stopping", c->peer);
			atomic_store(&net->cluster_down, true);
			rayc__event_set(&net->down_ev);
		}
		return;
	}
	if (c->peer < RAYC__MAX_PEERS && c->peer != net->self) {
		/* A frame from a peer the committed view removed: tell it. */
		rayc__mutex_lock(&net->mu);
		bool gone = net->peers[c->peer].known &&
		            !net->peers[c->peer].alive && net->joined;
		rayc__mutex_unlock(&net->mu);
		if (gone) {
			rayc__wbuf b = { 0 };
			size_t f = rayc__w_frame_begin(&b, RAYC__MSG_REMOVED,
			                               net->self);
			rayc__w_frame_end(&b, f);
			rayc__conn_send_close(c, &b);
			rayc__wbuf_fini(&b);
			return;
		}
	}
	switch (type) {
	case RAYC__MSG_JOIN:
		if (c->peer != 0 || c->dialed) {
			rayc__conn_close(c, "unexpected JOIN");
			return;
		}
		on_join(c, rd);
		return;
	case RAYC__MSG_JOINED: {
		/* Our id and the committed membership; the control
		 * store's log follows (ctl.c). */
		uint32_t id = rayc__r_u32(rd);
		char why[64];
		rayc__r_str(rd, why, sizeof(why));
		if (rd->bad || id >= RAYC__MAX_PEERS || !c->joining)
			return;
		rayc__mutex_lock(&net->mu);
		if (id == 0) {
			net->join_rc = RAYC__RETRY;
			rayc__mutex_unlock(&net->mu);
			rayc__event_set(&net->join_ev);
			return;
		}
		net->self = id;
		net->coord = c->peer;
		net->coord_seen = rayc__now_ns();
		net->peers[c->peer].conn = c;
		rayc__mutex_unlock(&net->mu);
		if (!on_joined_view(net, rd)) {
			rayc__conn_close(c, "bad JOINED");
			return;
		}
		rayc__mutex_lock(&net->mu);
		bool in = net->peers[id].known && net->peers[id].alive;
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
	case RAYC__MSG_RAFT:
		rayc__mutex_lock(&net->mu);
		if (c->peer == net->coord)
			net->coord_seen = rayc__now_ns();
		rayc__mutex_unlock(&net->mu);
		if (type == RAYC__MSG_MEMBERS)
			on_members(net, rd);
		else
			rayc__ctl_on_raft(c, rd);
		return;
	case RAYC__MSG_HEARTBEAT:
		on_heartbeat(c, rd);
		return;
	case RAYC__MSG_LEAVE:
		rayc__ctl_peer_gone(net, c->peer, true);
		return;
	case RAYC__MSG_SHUTDOWN:
		rayc__log(RAYC_LOG_INFO, "RAYC-NET-SHUTDOWN",
		          "the cluster is shutting down");
		atomic_store(&net->cluster_down, true);
		rayc__event_set(&net->down_ev);
		rayc__event_set(&net->join_ev); /* a join in progress ends */
		return;
	default:
		rayc__remote_handle(c, type, rd);
		return;
	}
}

/* ---- the event loop ---- */

static void send_heartbeat(rayc__net *net)
{
	rayc__rt *rt = net->rt;
	int64_t avail[RAYC__MAX_RES];
	uint64_t queued;
	rayc__wbuf b = { 0 };

	self_stats(net, avail, &queued);
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_HEARTBEAT, net->self);
	rayc__w_u64(&b, atomic_load(&rt->n_executed));
	rayc__w_u64(&b, queued);
	rayc__net_write_res(rt, &b, rt->res_total, avail);
	rayc__w_frame_end(&b, f);
	rayc__mutex_lock(&net->mu);
	uint32_t coord = net->coord;
	rayc__mutex_unlock(&net->mu);
	rayc__net_send_to(net, coord, &b);
	rayc__wbuf_fini(&b);
}

/* Frees connections that closed and that nobody uses any more. */
static void reap_conns(rayc__net *net, bool all)
{
	rayc__conn *dead = NULL;

	rayc__mutex_lock(&net->mu);
	rayc__conn **pp = &net->conns;
	while (*pp != NULL) {
		rayc__conn *c = *pp;
		if ((all || atomic_load(&c->state) == RAYC__CONN_CLOSED) &&
		    atomic_load(&c->refs) == 0) {
			*pp = c->next;
			for (uint32_t i = 1; i < atomic_load(&net->top); i++)
				if (net->peers[i].conn == c)
					net->peers[i].conn = NULL;
			c->next = dead;
			dead = c;
		} else {
			pp = &c->next;
		}
	}
	rayc__mutex_unlock(&net->mu);
	while (dead != NULL) {
		rayc__conn *n = dead->next;
		rayc__conn_close(dead, NULL);
		rayc__conn_free(dead);
		dead = n;
	}
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	rayc__net *net = arg;

	(void)fd;
	(void)what;
	if (atomic_load(&net->stopping))
		return;
	/* Failure detection and the no-coordinator deadline (ctl.c). */
	rayc__ctl_tick(net);
	rayc__mutex_lock(&net->mu);
	bool coord = net->self == net->coord && net->self != 0;
	rayc__mutex_unlock(&net->mu);
	if (coord)
		broadcast_members(net);
	else if (net->joined)
		send_heartbeat(net);
	reap_conns(net, false);
}

static void on_parent(evutil_socket_t fd, short what, void *arg)
{
	rayc__net *net = arg;
	char buf[64];

	(void)what;
	if (rayc__read_fd(fd, buf, sizeof(buf)) > 0)
		return;
	rayc__log(RAYC_LOG_INFO, "RAYC-NET-PARENT-GONE",
	          "the peer that started this one is gone; stopping");
	event_del(net->pev);
	atomic_store(&net->cluster_down, true);
	rayc__event_set(&net->down_ev);
}

/* The loop runs a pass at a time and looks at net->stopping between
 * passes: a loopbreak that comes before the thread first enters the loop
 * is forgotten by libevent (the loop clears it on entry), and then the
 * next tick, at most hb_ns later, still ends the thread. */
static void *loop_main(void *arg)
{
	rayc__net *net = arg;

	while (!atomic_load(&net->stopping))
		event_base_loop(net->base, EVLOOP_ONCE);
	return NULL;
}

/* ---- accepting ---- */

static void accept_cb(void *arg)
{
	rayc__net *net = arg;
	int rv = nng_aio_result(net->acc_aio);

	if (rv != 0) {
		if (rv != NNG_ECLOSED && rv != NNG_ECANCELED &&
		    !atomic_load(&net->stopping))
			nng_stream_listener_accept(net->lst, net->acc_aio);
		return;
	}
	nng_stream *s = nng_aio_get_output(net->acc_aio, 0);
	if (atomic_load(&net->stopping)) {
		nng_stream_free(s);
		return;
	}
	rayc__conn *c = rayc__conn_new(net);
	if (c == NULL) {
		nng_stream_free(s);
	} else {
		rayc__mutex_lock(&net->mu);
		conn_link_locked(net, c);
		rayc__mutex_unlock(&net->mu);
		rayc__conn_accepted(c, s);
	}
	nng_stream_listener_accept(net->lst, net->acc_aio);
}

static bool is_loopback(const char *url)
{
	const char *h = strstr(url, "://");

	if (h == NULL)
		return false;
	h += 3;
	return strncmp(h, "127.", 4) == 0 || strncmp(h, "localhost:", 10) == 0 ||
	       strncmp(h, "[::1]", 5) == 0;
}

static int listen_on(rayc__net *net, const char *url)
{
	int rv, port = 0;

	if (strncmp(url, "tcp://", 6) != 0)
		return rayc__err(RAYC_EINVAL, "listen address '%s': only "
		                 "tcp://host:port is supported", url);
	rv = nng_stream_listener_alloc(&net->lst, url);
	if (rv == 0)
		/* Streams have no frame size of their own; set it where the
		 * transport takes it, and bound frames ourselves anyway. */
		(void)nng_stream_listener_set_size(net->lst, NNG_OPT_RECVMAXSZ,
		                                   RAYC__WIRE_MAX_FRAME);
	if (rv == 0)
		rv = nng_stream_listener_listen(net->lst);
	if (rv != 0)
		return rayc__err(RAYC_ESYS, "cannot listen on '%s': %s", url,
		                 nng_strerror(rv));
	(void)nng_stream_listener_get_int(net->lst, NNG_OPT_TCP_BOUND_PORT,
	                                  &port);
	/* Our address as others dial it: the host part, the bound port. */
	const char *h = url + 6;
	const char *colon = strrchr(h, ':');
	int hl = colon != NULL ? (int)(colon - h) : (int)strlen(h);
	if (hl == 0 || (hl == 7 && strncmp(h, "0.0.0.0", 7) == 0)) {
		char host[64] = "127.0.0.1";
		if (hl != 0)
			rayc__hostname(host, sizeof(host));
		snprintf(net->url, sizeof(net->url), "tcp://%s:%d", host, port);
	} else {
		snprintf(net->url, sizeof(net->url), "tcp://%.*s:%d", hl, h,
		         port);
	}
	if (nng_aio_alloc(&net->acc_aio, accept_cb, net) != 0)
		return RAYC_ENOMEM;
	nng_stream_listener_accept(net->lst, net->acc_aio);
	return RAYC_OK;
}

/* ---- joining ---- */

static int wait_join(rayc__net *net, int64_t deadline)
{
	if (!rayc__event_wait(&net->join_ev, deadline, 0))
		return rayc__err(RAYC_ETIMEDOUT, "joining the cluster timed out");
	rayc__mutex_lock(&net->mu);
	int rc = net->join_rc;
	rayc__mutex_unlock(&net->mu);
	return rc;
}

/* Joins through the peer at address: the handshake's WELCOME names the
 * coordinator; JOIN goes there.  While there is none (an election), or
 * the coordinator changed, start over after a pause. */
static int join(rayc__net *net, const char *address, int64_t deadline)
{
	rayc__rt *rt = net->rt;
	char url[RAYC__URL_MAX];
	int rc = RAYC_OK;

	snprintf(url, sizeof(url), "%s", address);
	for (;;) {
		if (rayc__now_ns() > deadline)
			return rayc__err(RAYC_ETIMEDOUT, "joining the cluster "
			                 "at %s timed out: no coordinator", address);
		rayc__conn *c = rayc__conn_new(net);
		if (c == NULL)
			return RAYC_ENOMEM;
		c->joining = true;
		rayc__event_reset(&net->join_ev);
		rayc__mutex_lock(&net->mu);
		net->join_rc = RAYC_OK;
		net->coord_url[0] = '\0';
		conn_link_locked(net, c);
		rayc__mutex_unlock(&net->mu);
		rc = rayc__conn_dial(c, url);
		if (rc != RAYC_OK)
			return rc;
		rc = wait_join(net, deadline);
		if (rc == RAYC_ESYS)
			return rayc__err(RAYC_ESYS, "cannot reach a peer at %s",
			                 url);
		if (rc == RAYC_EAUTH)
			return rayc__err(RAYC_EAUTH, "the cluster at %s refused "
			                 "this peer: wrong or missing RAYC_TOKEN",
			                 url);
		if (rc != RAYC_OK)
			return rc;
		if (atomic_load(&c->state) != RAYC__CONN_OPEN)
			return rayc__err(RAYC_EAUTH, "the peer at %s did not "
			                 "prove it knows the token", url);
		rayc__mutex_lock(&net->mu);
		bool at_coord = c->peer == net->coord;
		bool none = net->coord == 0 || net->coord_url[0] == '\0';
		if (!none)
			snprintf(url, sizeof(url), "%s", net->coord_url);
		rayc__mutex_unlock(&net->mu);
		if (!at_coord || none) {
			c->joining = false;
			rayc__conn_close(c, "redirected to the coordinator");
			if (none) {
				snprintf(url, sizeof(url), "%s", address);
				rayc__sleep_ms(50);
			}
			continue;
		}
		/* JOIN: our address, pid, role and resources. */
		rayc__wbuf b = { 0 };
		size_t f = rayc__w_frame_begin(&b, RAYC__MSG_JOIN, 0);
		rayc__w_str(&b, net->url);
		rayc__w_u32(&b, (uint32_t)rayc__getpid());
		rayc__w_u8(&b, net->worker);
		rayc__net_write_res(rt, &b, rt->res_total, NULL);
		rayc__w_frame_end(&b, f);
		rayc__event_reset(&net->join_ev);
		rayc__conn_send(c, &b);
		rayc__wbuf_fini(&b);
		rc = wait_join(net, deadline);
		if (atomic_load(&net->cluster_down) && !net->joined) {
			/* The cluster ended while we joined: a worker has
			 * nothing to serve (it exits 0); a driver fails. */
			c->joining = false;
			if (net->worker)
				return RAYC_OK;
			return rayc__err(RAYC_ESTATE, "the cluster shut down "
			                 "while this peer joined");
		}
		if (rc == RAYC__RETRY) {
			/* Not (or no longer) the coordinator: start over. */
			c->joining = false;
			rayc__conn_close(c, "join again");
			snprintf(url, sizeof(url), "%s", address);
			rayc__sleep_ms(50);
			continue;
		}
		c->joining = false;
		if (rc == RAYC_OK && !net->joined)
			rc = rayc__err(RAYC_EPROTO, "no JOINED reply");
		return rc;
	}
}

/* ---- local peers ---- */

static int start_local_peers(rayc__net *net, int n, const char *token)
{
	int fds[2];
	char a[RAYC__URL_MAX + 16], t[160], pfd[48], hb[64];

	if (rayc__pipe_for_children(fds) != RAYC_OK)
		return rayc__err(RAYC_ESYS, "pipe for local peers failed");
	snprintf(a, sizeof(a), "RAYC_ADDRESS=%s", net->url);
	snprintf(t, sizeof(t), "RAYC_TOKEN=%s", token);
	snprintf(pfd, sizeof(pfd), "RAYC__PARENT_FD=%d", fds[0]);
	snprintf(hb, sizeof(hb), "RAYC_HEARTBEAT_TIMEOUT_MS=%lld",
	         (long long)(net->timeout_ns / 1000000));
	const char *env[] = { "RAYC_ROLE=worker", "RAYC_LOCAL_PEERS=0", a, t,
		              pfd, hb, "RAYC_LISTEN=", NULL };
	for (int i = 0; i < n; i++) {
		int pid = rayc__spawn_self(env, fds[0]);
		if (pid < 0) {
			rayc__close_fd(fds[0]);
			rayc__close_fd(fds[1]);
			return rayc__err(RAYC_ESYS, "cannot start local peer");
		}
		net->kids[net->nkids++] = pid;
	}
	rayc__close_fd(fds[0]);
	net->kid_pipe_w = fds[1];
	return RAYC_OK;
}

static int count_alive(rayc__net *net)
{
	int n = 0;

	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++)
		n += net->peers[i].alive;
	rayc__mutex_unlock(&net->mu);
	return n;
}

/* ---- start and stop ---- */

static void net_free(rayc__net *net)
{
	if (net->th_started) {
		atomic_store(&net->stopping, true);
		event_base_loopbreak(net->base);
		rayc__thread_join(&net->th);
	}
	rayc__ctl_drain(net);
	if (net->lst != NULL)
		nng_stream_listener_close(net->lst);
	if (net->acc_aio != NULL) {
		nng_aio_stop(net->acc_aio);
		nng_aio_free(net->acc_aio);
	}
	if (net->lst != NULL)
		nng_stream_listener_free(net->lst);
	reap_conns(net, true);
	rayc__remote_fini(net);
	rayc__ctl_fini(net);
	if (net->tick != NULL)
		event_free(net->tick);
	if (net->pev != NULL)
		event_free(net->pev);
	if (net->base != NULL)
		event_base_free(net->base);
	rayc__close_fd(net->parent_fd);
	rayc__close_fd(net->kid_pipe_w);
	rayc__mutex_fini(&net->mu);
	free(net);
}

static void stop_kids(rayc__net *net)
{
	int64_t deadline = rayc__now_ns() + 10 * (int64_t)1000000000;

	rayc__close_fd(net->kid_pipe_w);
	net->kid_pipe_w = -1;
	for (int i = 0; i < net->nkids; i++) {
		int code = 0;
		if (!rayc__proc_wait(net->kids[i], deadline, &code)) {
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-KILL",
			          "local peer pid %d did not stop; killing it",
			          net->kids[i]);
			rayc__proc_kill(net->kids[i]);
			(void)rayc__proc_wait(net->kids[i], -1, &code);
		} else if (code != 0) {
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-KID-EXIT",
			          "local peer pid %d exited with %d",
			          net->kids[i], code);
		}
	}
	net->nkids = 0;
}

int rayc__net_start(rayc__rt *rt, const rayc__net_conf *conf)
{
	char token_buf[65];
	const char *token = conf->token != NULL ? conf->token : "";
	const char *listen = conf->listen;
	int rc;

	if (sodium_init() < 0)
		return rayc__err(RAYC_ESYS, "libsodium failed to start");
	if (conf->worker && conf->address == NULL)
		return rayc__err(RAYC_EINVAL, "RAYC_ROLE=worker needs "
		                 "RAYC_ADDRESS (a peer to join)");
	if (listen == NULL || *listen == '\0')
		listen = "tcp://127.0.0.1:0";
	if (!is_loopback(listen) && *token == '\0')
		return rayc__err(RAYC_EINVAL, "listening on %s (beyond "
		                 "loopback) needs a cluster token: set "
		                 "RAYC_TOKEN", listen);
	if (conf->local_peers > 1 && *token == '\0') {
		/* A local cluster gets a fresh token nobody else knows. */
		unsigned char raw[16];
		randombytes_buf(raw, sizeof(raw));
		sodium_bin2hex(token_buf, sizeof(token_buf), raw, sizeof(raw));
		token = token_buf;
	}
	rayc__ignore_sigpipe();
	rayc__net *net = calloc(1, sizeof(*net));
	if (net == NULL)
		return RAYC_ENOMEM;
	net->rt = rt;
	rayc__mutex_init(&net->mu);
	net->parent_fd = -1;
	net->kid_pipe_w = -1;
	net->next_id = 2;
	int tmo = conf->heartbeat_timeout_ms > 0 ? conf->heartbeat_timeout_ms
	                                         : 1000;
	net->timeout_ns = (int64_t)tmo * 1000000;
	net->hb_ns = net->timeout_ns / 5;
	crypto_generichash(net->key, sizeof(net->key),
	                   (const unsigned char *)token, strlen(token), NULL, 0);
	rc = listen_on(net, listen);
	if (rc != RAYC_OK) {
		net_free(net);
		return rc;
	}
	static bool ev_threads;
	if (!ev_threads) {
		evthread_use_pthreads();
		ev_threads = true;
	}
	net->base = event_base_new();
	/* libevent wants tv_usec below a second (it keeps flags in the high
	 * bits): heartbeats of 1 s and more need tv_sec. */
	struct timeval tv = { (time_t)(net->hb_ns / 1000000000),
		              (suseconds_t)(net->hb_ns % 1000000000 / 1000) };
	if (net->base == NULL ||
	    (net->tick = event_new(net->base, -1, EV_PERSIST, on_tick, net)) ==
	            NULL ||
	    event_add(net->tick, &tv) != 0 || rayc__ctl_init(net) != RAYC_OK) {
		net_free(net);
		return rayc__err(RAYC_ESYS, "libevent failed to start");
	}
	const char *pfd = getenv("RAYC__PARENT_FD");
	if (conf->worker && pfd != NULL && *pfd != '\0') {
		net->parent_fd = atoi(pfd);
		net->pev = event_new(net->base, net->parent_fd,
		                     EV_READ | EV_PERSIST, on_parent, net);
		if (net->pev != NULL)
			(void)event_add(net->pev, NULL);
	}
	if (conf->address == NULL) {
		/* Founder: peer 1, the control store's first voter; it is a
		 * member once its own ADD entry applies. */
		net->founder = true;
		net->self = 1;
	}
	net->worker = conf->worker;
	rc = rayc__thread_start(&net->th, loop_main, net);
	if (rc != RAYC_OK) {
		net_free(net);
		return rc;
	}
	net->th_started = true;
	rayc__mutex_lock(&rt->mu);
	rt->net = net;
	rayc__mutex_unlock(&rt->mu);
	int64_t deadline = rayc__now_ns() + 15 * (int64_t)1000000000;
	if (conf->address != NULL) {
		rc = join(net, conf->address, deadline);
	} else {
		rayc__event_reset(&net->join_ev);
		rayc__ctl_start(net, 1);
		rc = wait_join(net, deadline);
		if (rc == RAYC_OK && !net->joined)
			rc = rayc__err(RAYC_ESYS, "the control store did not "
			               "start");
	}
	if (rc == RAYC_OK && conf->address == NULL && conf->local_peers > 1) {
		rc = start_local_peers(net, conf->local_peers - 1, token);
		while (rc == RAYC_OK && count_alive(net) < conf->local_peers) {
			if (rayc__now_ns() > deadline)
				rc = rayc__err(RAYC_ETIMEDOUT,
				               "only %d of %d local peers joined",
				               count_alive(net), conf->local_peers);
			else
				rayc__sleep_ms(1);
		}
	}
	if (rc != RAYC_OK) {
		int keep = rc;
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", rayc_errmsg());
		rayc__net_stop(rt);
		return rayc__err(keep, "%s", msg);
	}
	rayc__log(RAYC_LOG_INFO, "RAYC-NET-UP", "peer %u of the cluster at %s",
	          net->self, net->url);
	return RAYC_OK;
}

/* Waits (bounded) until c has nothing left to send. */
static void drain(rayc__conn *c, int64_t deadline)
{
	for (;;) {
		rayc__mutex_lock(&c->mu);
		bool idle = !c->sending && c->out.len == 0 && c->xhead == NULL;
		rayc__mutex_unlock(&c->mu);
		if (idle || atomic_load(&c->state) == RAYC__CONN_CLOSED ||
		    rayc__now_ns() > deadline)
			return;
		rayc__sleep_ms(1);
	}
}

static void say_to_all(rayc__net *net, int type, bool only_coord)
{
	rayc__wbuf b = { 0 };
	rayc__conn *cs[RAYC__MAX_PEERS];
	int n = 0;

	size_t f = rayc__w_frame_begin(&b, type, net->self);
	rayc__w_frame_end(&b, f);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__mutex_lock(&net->mu);
		bool want = net->peers[i].alive && i != net->self &&
		            (!only_coord || i == net->coord);
		rayc__mutex_unlock(&net->mu);
		if (!want)
			continue;
		rayc__conn *c = rayc__net_conn_to(net, i);
		if (c == NULL)
			continue;
		rayc__conn_send(c, &b);
		cs[n++] = c;
	}
	int64_t deadline = rayc__now_ns() + 1000000000;
	for (int i = 0; i < n; i++) {
		drain(cs[i], deadline);
		rayc__conn_unref(cs[i]);
	}
	rayc__wbuf_fini(&b);
}

void rayc__net_stop(rayc__rt *rt)
{
	rayc__net *net = rt->net;

	if (net == NULL)
		return;
	/* The founder ends the cluster; so does the last driver once the
	 * founder is gone.  Anyone else leaves, handing the coordinator's
	 * role on first if it holds it. */
	bool drivers = false;
	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++)
		if (i != net->self && net->peers[i].alive &&
		    !net->peers[i].worker)
			drivers = true;
	rayc__mutex_unlock(&net->mu);
	bool out = atomic_load(&net->cut_off);
	bool end = net->joined && !out &&
	           (net->founder || (!net->worker && !drivers));
	if (out) {
		/* Cut off: the others have gone on without us. */
	} else if (end) {
		atomic_store(&net->leaving, true);
		say_to_all(net, RAYC__MSG_SHUTDOWN, false);
	} else if (net->joined && !atomic_load(&net->cluster_down)) {
		rayc__ctl_hand_over(net);
		atomic_store(&net->leaving, true);
		say_to_all(net, RAYC__MSG_LEAVE, true);
	}
	atomic_store(&net->leaving, true);
	rayc__ctl_stop(net);
	atomic_store(&net->stopping, true);
	if (net->nkids > 0)
		stop_kids(net);
	rayc__mutex_lock(&rt->mu);
	rt->net = NULL;
	rayc__mutex_unlock(&rt->mu);
	/* API calls still using it (a task's KV call, a cluster query) see
	 * stopping and return; wait for them (bounded) before freeing. */
	int64_t deadline = rayc__now_ns() + 10 * (int64_t)1000000000;
	while (atomic_load(&net->users) > 0 && rayc__now_ns() < deadline)
		rayc__sleep_ms(1);
	net_free(net);
}

rayc__net *rayc__net_get(rayc__rt *rt)
{
	rayc__mutex_lock(&rt->mu);
	rayc__net *net = rt->net;
	if (net != NULL)
		atomic_fetch_add(&net->users, 1);
	rayc__mutex_unlock(&rt->mu);
	return net;
}

void rayc__net_put(rayc__net *net)
{
	if (net != NULL)
		atomic_fetch_sub(&net->users, 1);
}

void rayc__net_serve(rayc__rt *rt)
{
	rayc__net *net = rt->net;

	if (net == NULL)
		return;
	while (!atomic_load(&net->cluster_down))
		(void)rayc__event_wait(&net->down_ev, -1, 0);
}

bool rayc__net_peer_alive(rayc__rt *rt, uint32_t id)
{
	rayc__net *net = rt->net;

	if (net == NULL || id == 0 || id >= RAYC__MAX_PEERS)
		return false;
	rayc__mutex_lock(&net->mu);
	bool alive = net->peers[id].alive;
	rayc__mutex_unlock(&net->mu);
	return alive;
}

bool rayc__net_feasible(rayc__rt *rt, const int64_t *d)
{
	rayc__net *net = rt->net;
	bool ok = false;

	if (net == NULL)
		return false;
	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top) && !ok; i++) {
		rayc__peer *p = &net->peers[i];
		if (!p->alive)
			continue;
		const int64_t *tot = i == net->self ? rt->res_total : p->total;
		ok = true;
		for (int k = 0; k < RAYC__MAX_RES; k++)
			if (d[k] > 0 && tot[k] < d[k])
				ok = false;
	}
	rayc__mutex_unlock(&net->mu);
	return ok;
}

/* ---- public calls ---- */

uint32_t rayc_peer_id(void)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL)
		return 0;
	rayc__net *net = rayc__net_get(rt);
	uint32_t id = net != NULL ? net->self : 1;
	rayc__net_put(net);
	return id;
}

const char *rayc_address(void)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL || rt->net == NULL)
		return NULL;
	return rt->net->url;
}

int rayc_cluster_peers(rayc_peer_info *out, size_t cap, size_t *n)
{
	rayc__rt *rt = rayc__g;
	size_t k = 0;

	if (n == NULL || (out == NULL && cap > 0))
		return rayc__err(RAYC_EINVAL, "NULL argument");
	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL) {
		if (cap > 0) {
			rayc_stats st;
			memset(&out[0], 0, sizeof(out[0]));
			rayc_stats_get(&st);
			out[0].id = 1;
			out[0].alive = 1;
			out[0].is_coordinator = 1;
			out[0].is_voter = 1;
			out[0].pid = (int)rayc__getpid();
			out[0].cpus_total = st.cpus_total;
			out[0].cpus_available = st.cpus_available;
			out[0].tasks_executed = st.tasks_executed;
		}
		*n = 1;
		return RAYC_OK;
	}
	int64_t avail[RAYC__MAX_RES];
	uint64_t queued;
	self_stats(net, avail, &queued);
	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		if (!p->known)
			continue;
		if (k < cap) {
			rayc_peer_info *o = &out[k];
			memset(o, 0, sizeof(*o));
			o->id = i;
			o->alive = p->alive;
			o->is_coordinator = i == net->coord;
			o->is_voter = p->voter;
			o->pid = p->pid;
			snprintf(o->address, sizeof(o->address), "%s", p->url);
			bool me = i == net->self;
			o->cpus_total = rayc__res_to_double(
				me ? rt->res_total[RAYC__RES_CPU]
				   : p->total[RAYC__RES_CPU]);
			o->cpus_available = rayc__res_to_double(
				me ? avail[RAYC__RES_CPU] : p->avail[RAYC__RES_CPU]);
			o->tasks_executed =
				me ? atomic_load(&rt->n_executed) : p->executed;
			o->tasks_queued = me ? queued : p->queued;
		}
		k++;
	}
	rayc__mutex_unlock(&net->mu);
	rayc__net_put(net);
	*n = k;
	return RAYC_OK;
}

int rayc_cluster_jobs(rayc_job_info *out, size_t cap, size_t *n)
{
	rayc__rt *rt = rayc__g;
	size_t k = 0;

	if (n == NULL || (out == NULL && cap > 0))
		return rayc__err(RAYC_EINVAL, "NULL argument");
	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL) {
		/* A one-peer cluster: this program is the one job. */
		if (cap > 0) {
			memset(&out[0], 0, sizeof(out[0]));
			out[0].job_id = 1;
			out[0].pid = (int)rayc__getpid();
			out[0].state = RAYC_JOB_RUNNING;
			out[0].start_ms = rt->start_wall_ms;
		}
		*n = 1;
		return RAYC_OK;
	}
	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		if (!p->known || p->worker)
			continue;
		if (k < cap) {
			rayc_job_info *o = &out[k];
			memset(o, 0, sizeof(*o));
			o->job_id = i;
			o->pid = p->pid;
			o->state = (rayc_job_state)p->job_state;
			o->start_ms = p->job_start_ms;
			o->end_ms = p->job_end_ms;
			snprintf(o->address, sizeof(o->address), "%s", p->url);
		}
		k++;
	}
	rayc__mutex_unlock(&net->mu);
	rayc__net_put(net);
	*n = k;
	return RAYC_OK;
}
