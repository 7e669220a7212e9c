/* members.c -- membership: the resource view the coordinator broadcasts
 * and the heartbeats that feed it, the committed members as JOINED and
 * snapshots carry them, and joining (the coordinator admitting a peer
 * with an ADD entry, the joiner finding the coordinator and asking).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_int.h"
#include "sched/place.h"

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
	rayc__w_u64(b, net->coord_term);
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

void rayc__net_self_stats(rayc__net *net, int64_t *avail, uint64_t *queued)
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

/* Loop thread, this peer leading (rayc__ctl_after keeps coord_term at
 * its term). */
void rayc__net_broadcast_members(rayc__net *net)
{
	rayc__wbuf b = { 0 };
	uint32_t to[RAYC__MAX_PEERS];
	int n = 0;
	int64_t avail[RAYC__MAX_RES];
	uint64_t queued;

	rayc__net_self_stats(net, avail, &queued);
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
 * members (membership itself comes from the control store's log).
 *
 * It is also the coordinator's heartbeat to every member, those not (yet)
 * in the Raft configuration included: a peer being added, or waiting
 * behind another configuration change, hears from no leader through Raft
 * and would take itself for cut off.  The sender of the highest term is
 * the coordinator: a newer one (elected while this peer was not in the
 * configuration) is followed at once; a deposed one that does not know
 * it yet (an older term) is ignored. */
void rayc__net_on_members(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	uint64_t term = rayc__r_u64(rd);
	uint32_t n = rayc__r_u32(rd);

	if (rd->bad || n > RAYC__MAX_PEERS || c->peer >= RAYC__MAX_PEERS)
		return;
	rayc__mutex_lock(&net->mu);
	bool current = term > net->coord_term ||
	               (term == net->coord_term && c->peer == net->coord);
	if (current) {
		if (c->peer != net->coord) {
			net->coord = c->peer;
			rayc__kv_coord_changed_locked(net);
			snprintf(net->coord_url, sizeof(net->coord_url), "%s",
			         net->peers[c->peer].url);
		}
		net->coord_term = term;
		net->coord_seen = rayc__now_ns();
	}
	rayc__mutex_unlock(&net->mu);
	if (!current)
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
	rayc__ctl_work post;
	rayc__conn *c;
	rayc__peer tmp;
} join_arg;

/* The committed members as JOINED and snapshots carry them: the next
 * id and incarnation, then each known peer (id, gen, alive, role, pid,
 * job, address, totals). */
void rayc__net_write_members_locked(rayc__net *net, rayc__wbuf *b)
{
	uint32_t n = 0;

	rayc__w_u32(b, net->next_id);
	rayc__w_u64(b, net->next_gen);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++)
		n += net->peers[i].known;
	rayc__w_u32(b, n);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		if (!p->known)
			continue;
		rayc__w_u32(b, i);
		rayc__w_u64(b, p->gen);
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
		rayc__w_bytes(b, p->pk, RAYC__ID_PK);
	}
}

int rayc__net_read_members(rayc__net *net, rayc__rd *rd, bool apply,
                           rayc__gone *gone, int *ngone)
{
	uint32_t next = rayc__r_u32(rd);
	uint64_t next_gen = rayc__r_u64(rd);
	uint32_t n = rayc__r_u32(rd);

	*ngone = 0;
	if (rd->bad || n > RAYC__MAX_PEERS)
		return -1;
	for (uint32_t k = 0; k < n; k++) {
		rayc__peer tmp;
		memset(&tmp, 0, sizeof(tmp));
		uint32_t id = rayc__r_u32(rd);
		tmp.gen = rayc__r_u64(rd);
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
		const unsigned char *pk = rayc__r_bytes(rd, RAYC__ID_PK);
		if (rd->bad)
			return -1;
		memcpy(tmp.pk, pk, RAYC__ID_PK);
		if (!apply)
			continue;
		/* Merge, never go back: entries already here may be newer
		 * than these; the log brings the rest in order. */
		rayc__mutex_lock(&net->mu);
		rayc__peer *p = &net->peers[id];
		bool newer = p->known && tmp.gen > p->gen;
		if (!p->known || (newer && !p->alive)) {
			/* New here, or a slot given again (its old holder
			 * is dead here already). */
			rayc__conn *keep = !p->known || (p->conn != NULL &&
			                                 p->conn->gen == tmp.gen)
			                           ? p->conn
			                           : NULL;
			if (p->known)
				rayc__net_slot_reset_locked(net, id);
			*p = tmp;
			p->conn = keep;
			rayc__net_know_locked(net, id);
			rayc__net_view_changed_locked(net, id);
			p->last_seen = rayc__now_ns();
		} else if (p->alive && (newer || (tmp.gen == p->gen &&
		                                  !tmp.alive))) {
			/* Gone there: marked dead by the caller (and a newer
			 * holder of the slot taken in on a second read). */
			rayc__gone *g = &gone[(*ngone)++];
			g->id = id;
			g->gen = p->gen;
			g->left = !newer && tmp.job_state == RAYC_JOB_SUCCEEDED;
			g->end = newer ? 0 : tmp.job_end_ms;
			g->reused = newer;
		}
		rayc__mutex_unlock(&net->mu);
	}
	if (apply) {
		rayc__mutex_lock(&net->mu);
		if (next > net->next_id)
			net->next_id = next;
		if (next_gen > net->next_gen)
			net->next_gen = next_gen;
		rayc__mutex_unlock(&net->mu);
		rayc__net_settle_parked(net);
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

/* Refuses a joiner for good: JOINED(0) with the reason and a rayc_err,
 * which its rayc_init returns (a JOINED(0) without one means: try
 * again). */
static void refuse_join(rayc__conn *c, rayc__net *net, int err,
                        const char *why)
{
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_JOINED, net->self);

	rayc__w_u32(&b, 0);
	rayc__w_str(&b, why);
	rayc__w_u32(&b, (uint32_t)err);
	rayc__w_frame_end(&b, f);
	rayc__conn_send_close(c, &b);
	rayc__wbuf_fini(&b);
}

/* The joiner's side: installs the membership JOINED carries (a fresh
 * peer has no members of its own that could be marked gone). */
bool rayc__net_on_joined_view(rayc__net *net, rayc__rd *rd)
{
	rayc__gone gone[RAYC__MAX_PEERS];
	int ngone;

	return rayc__net_read_members(net, rd, true, gone, &ngone) == 0 &&
	       rayc__rd_left(rd) == 0;
}

static _Atomic int join_gap_ms; /* rayc__test_join_gap */

void rayc__test_join_gap(int ms)
{
	atomic_store(&join_gap_ms, ms);
}

/* The ADD entry for a joiner committed (or did not). */
static void join_applied(int rc, void *arg)
{
	join_arg *j = arg;
	rayc__conn *c = j->c;
	rayc__net *net = c->net;
	uint32_t id = j->tmp.id;

	rayc__mutex_lock(&net->mu);
	net->slot_pending[id] = false;
	rayc__mutex_unlock(&net->mu);
	if (rc == RAYC_OK) {
		rayc__mutex_lock(&net->mu);
		/* Its key (proven in the handshake) is committed with id. */
		c->peer = id;
		c->gen = j->tmp.gen;
		c->verified = true;
		rayc__mutex_unlock(&net->mu);
		/* JOINED first: the joiner learns the members from it, and
		 * a task it ran before could not be answered (its owner
		 * unknown there: the answer was dropped and the owner
		 * waited for ever).  Only then may others send it frames on
		 * this connection; until then they dial it, and it reads
		 * what comes that way once it knows the dialer. */
		send_joined(c, net, id, "");
		int gap = atomic_load(&join_gap_ms);
		if (gap > 0)
			rayc__sleep_ms(gap);
		rayc__mutex_lock(&net->mu);
		if (net->peers[id].conn == NULL &&
		    atomic_load(&c->state) != RAYC__CONN_CLOSED)
			net->peers[id].conn = c;
		rayc__mutex_unlock(&net->mu);
	} else {
		send_joined(c, net, 0, "try again");
	}
	rayc__conn_unref(c);
	free(j);
}

/* Loop thread, coordinator: a slot for a joiner: one never used, else
 * the one whose dead holder joined longest ago among those free to give
 * again (rayc__ctl_slot_free).  0: none now; *later says whether one
 * frees soon (else every slot holds a member). */
static uint32_t pick_slot_locked(rayc__net *net, bool *later)
	RAYC_REQUIRES(net->mu)
{
	uint32_t best = 0;

	*later = false;
	if (net->next_id < RAYC__MAX_PEERS)
		return net->next_id++;
	for (uint32_t i = 1; i < RAYC__MAX_PEERS; i++) {
		rayc__peer *p = &net->peers[i];
		bool soon;
		if (!p->known || p->alive || i == net->self)
			continue;
		if (net->slot_pending[i] || !rayc__ctl_slot_free(net, i, &soon)) {
			*later |= net->slot_pending[i] || soon;
			continue;
		}
		if (best == 0 || p->gen < net->peers[best].gen)
			best = i;
	}
	return best;
}

/* Resets what this peer keeps per slot, for the slot's next holder. */
void rayc__net_slot_reset_locked(rayc__net *net, uint32_t id)
{
	rayc__link *l = &net->links[id];

	rayc__wbuf_fini(&l->orphan);
	memset(l, 0, sizeof(*l));
	net->no_shm[id] = false;
	net->slot_pending[id] = false;
	rayc__ctl_slot_reset(net, id);
}

/* Loop thread: admit a joiner with an ADD entry. */
static void run_join(rayc__net *net, void *arg)
{
	join_arg *j = arg;

	int rc = RAYC__RETRY;
	const char *why = "not the coordinator";
	if (rayc__ctl_ready(net)) {
		rayc__mutex_lock(&net->mu);
		bool later;
		uint32_t id = pick_slot_locked(net, &later);
		uint64_t gen = net->next_gen;
		if (id != 0) {
			net->next_gen++;
			net->slot_pending[id] = true;
		}
		rayc__mutex_unlock(&net->mu);
		if (id == 0 && later) {
			rc = RAYC__RETRY; /* a slot frees soon: try again */
			why = "no free place yet: try again";
		} else if (id == 0) {
			refuse_join(j->c, net, RAYC_ESTATE, "the cluster is "
			            "full: 255 peers are members (a place frees "
			            "once a member has left or died and is out "
			            "of the control store)");
			rc = RAYC_ESTATE;
		} else {
			j->tmp.id = id;
			j->tmp.gen = gen;
			rayc__wbuf b = { 0 };
			rayc__ctl_cmd_add(net, &b, id, gen, j->tmp.worker,
			                  j->tmp.pid, j->tmp.url, j->tmp.total,
			                  j->c->pk);
			rc = rayc__ctl_propose(net, &b, join_applied, j);
			rayc__wbuf_fini(&b);
			if (rc == RAYC_OK)
				return;
			rayc__mutex_lock(&net->mu);
			net->slot_pending[id] = false;
			rayc__mutex_unlock(&net->mu);
		}
	}
	if (rc == RAYC__RETRY || rc == RAYC_ENOMEM)
		send_joined(j->c, net, 0, why);
	rayc__conn_unref(j->c);
	free(j);
}

void rayc__net_on_join(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	join_arg *j = calloc(1, sizeof(*j));

	if (j == NULL) {
		/* The joiner starts over when the connection goes. */
		rayc__conn_close(c, "out of memory admitting a peer");
		return;
	}
	rayc__r_str(rd, j->tmp.url, sizeof(j->tmp.url));
	j->tmp.pid = (int)rayc__r_u32(rd);
	j->tmp.worker = rayc__r_u8(rd) != 0;
	if (rd->bad ||
	    !rayc__net_read_res(net, rd, j->tmp.total, j->tmp.avail, false)) {
		free(j);
		rayc__conn_close(c, "bad JOIN");
		return;
	}
	if (rayc__url_is_loopback(j->tmp.url) &&
	    !rayc__url_is_loopback(net->url)) {
		/* Other hosts would dial 127.0.0.1 and reach themselves. */
		char why[sizeof(net->join_why)];
		snprintf(why, sizeof(why), "this peer says it is reached at %s "
		         "(loopback), which other hosts of the cluster at %s "
		         "cannot dial: set RAYC_LISTEN or RAYC_ADVERTISE",
		         j->tmp.url, net->url);
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-JOIN-REFUSED",
		          "refused a joiner (pid %d): %s", j->tmp.pid, why);
		refuse_join(c, net, RAYC_EINVAL, why);
		free(j);
		return;
	}
	atomic_fetch_add(&c->refs, 1);
	j->c = c;
	rayc__ctl_post(net, &j->post, run_join, j);
}

void rayc__net_on_heartbeat(rayc__conn *c, rayc__rd *rd)
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
		rayc__peer_cpus_sync(p);
		memcpy(p->avail, avail, sizeof(avail));
		p->last_seen = rayc__now_ns();
	}
	rayc__mutex_unlock(&net->mu);
}

/* ---- joining ---- */

int rayc__net_wait_join(rayc__net *net, int64_t deadline)
{
	if (!rayc__event_wait(&net->join_ev, deadline, 0))
		return rayc__err(RAYC_ETIMEDOUT, "joining the cluster timed out");
	rayc__mutex_lock(&net->mu);
	int rc = net->join_rc;
	char why[sizeof(net->join_why)];
	memcpy(why, net->join_why, sizeof(why));
	rayc__mutex_unlock(&net->mu);
	if (why[0] != '\0' && rc != RAYC_OK && rc != RAYC__RETRY)
		return rayc__err(rc, "the cluster refused this peer: %s", why);
	return rc;
}

/* Ends a join attempt's connection (it stays listed until reaped). */
static void join_drop(rayc__conn *c, const char *why)
{
	c->joining = false;
	rayc__conn_close(c, why);
}

/* Joins through the peer at address: the handshake's WELCOME names the
 * coordinator; JOIN goes there.  While there is none (an election), or
 * the coordinator changed, start over after a pause.  Once any peer of
 * the cluster has answered, a failure (the named coordinator is dead and
 * refuses the dial, a connection lost, no answer within a heartbeat
 * timeout) only means a failover is under way: start over from address
 * until the deadline.  Only an address that never answered fails at
 * once. */
static _Atomic bool join_twice;
_Atomic int rayc__joined_ids;

void rayc__test_join_twice(void)
{
	atomic_store(&join_twice, true);
}

int rayc__test_joined_ids(void)
{
	return atomic_load(&rayc__joined_ids);
}

int rayc__net_join(rayc__net *net, const char *address, int64_t deadline)
{
	rayc__rt *rt = net->rt;
	char url[RAYC__URL_MAX], last[RAYC__URL_MAX + 64] = "no coordinator";
	bool reached = false;
	int rc = RAYC_OK;

	snprintf(url, sizeof(url), "%s", address);
	for (;;) {
		if (rayc__now_ns() > deadline)
			return rayc__err(RAYC_ETIMEDOUT, "joining the cluster "
			                 "at %s timed out: %s", address, last);
		rayc__conn *c = rayc__conn_new(net);
		if (c == NULL)
			return RAYC_ENOMEM;
		c->joining = true;
		rayc__event_reset(&net->join_ev);
		rayc__mutex_lock(&net->mu);
		net->join_rc = RAYC_OK;
		net->coord_url[0] = '\0';
		rayc__net_conn_link_locked(net, c);
		rayc__mutex_unlock(&net->mu);
		bool given = strcmp(url, address) == 0;
		rc = rayc__conn_dial(c, url);
		if (rc != RAYC_OK && given)
			return rc;
		/* A peer that may be dead gets a heartbeat timeout to answer. */
		int64_t until = deadline;
		if (reached || !given) {
			int64_t t = rayc__now_ns() + net->timeout_ns;
			until = t < deadline ? t : deadline;
		}
		if (rc == RAYC_OK)
			rc = rayc__net_wait_join(net, until);
		if (rc == RAYC_EAUTH)
			return rayc__err(RAYC_EAUTH, "the cluster at %s refused "
			                 "this peer: wrong or missing RAYC_TOKEN",
			                 url);
		if (rc == RAYC_OK && atomic_load(&c->state) != RAYC__CONN_OPEN)
			return rayc__err(RAYC_EAUTH, "the peer at %s did not "
			                 "prove it knows the token", url);
		if (rc != RAYC_OK && !reached && given) {
			if (rc == RAYC_ESYS)
				return rayc__err(RAYC_ESYS, "cannot reach a peer "
				                 "at %s", url);
			return rc;
		}
		if (rc != RAYC_OK) {
			/* Failing over: the coordinator named may be dead. */
			snprintf(last, sizeof(last), "no answer from %s", url);
			join_drop(c, "no answer");
			snprintf(url, sizeof(url), "%s", address);
			rayc__sleep_ms(50);
			continue;
		}
		reached = true;
		rayc__mutex_lock(&net->mu);
		bool at_coord = c->peer == net->coord;
		bool none = net->coord == 0 || net->coord_url[0] == '\0';
		if (!none)
			snprintf(url, sizeof(url), "%s", net->coord_url);
		rayc__mutex_unlock(&net->mu);
		if (!at_coord || none) {
			join_drop(c, "redirected to the coordinator");
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
		if (atomic_exchange(&join_twice, false) &&
		    rayc__wbuf_reserve(&b, b.len)) {
			/* Both in one write: read in one go. */
			memcpy(b.p + b.len, b.p, b.len);
			b.len *= 2;
		}
		rayc__event_reset(&net->join_ev);
		rayc__conn_send(c, &b);
		rayc__wbuf_fini(&b);
		rc = rayc__net_wait_join(net, deadline);
		if (atomic_load(&net->cluster_down) && !net->joined) {
			/* The cluster ended while we joined: a worker has
			 * nothing to serve (it exits 0); a driver fails. */
			c->joining = false;
			if (net->worker)
				return RAYC_OK;
			return rayc__err(RAYC_ESTATE, "the cluster shut down "
			                 "while this peer joined");
		}
		if (rc == RAYC__RETRY || rc == RAYC_ESYS) {
			/* Not (or no longer) the coordinator, or it died
			 * before answering: start over. */
			snprintf(last, sizeof(last), "the coordinator at %s "
			         "did not admit this peer", url);
			join_drop(c, "join again");
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

/* ---- asking the view ---- */

int rayc__net_count_alive(rayc__net *net)
{
	int n = 0;

	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++)
		n += net->peers[i].alive;
	rayc__mutex_unlock(&net->mu);
	return n;
}

bool rayc__net_peer_alive(rayc__rt *rt, uint32_t id)
{
	rayc__net *net = rt->net;

	if (net == NULL || id == 0 || id >= RAYC__MAX_PEERS)
		return false;
	return (atomic_load_explicit(&net->alive_bits[id / 64],
	                             memory_order_acquire) >>
	        (id % 64)) & 1;
}

