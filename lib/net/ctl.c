/* ctl.c -- the control store: membership, resource totals, the job table
 * and the user KV, replicated with Raft (libraft) among up to 5 voter
 * peers.  The Raft leader is the coordinator.
 *
 * Raft runs on the mesh's event-loop thread, over the mesh itself:
 * ctl_io.c is libraft's I/O backend (struct raft_io).  Raft messages travel
 * as RAFT frames on the same authenticated connections as everything
 * else, so the control plane needs no second port, no second transport
 * and no second trust model.  The log lives in memory only: a peer that
 * dies never comes back under the same id (a restarted process joins as
 * a new peer), so losing its log is the same as losing the server, which
 * Raft tolerates while a majority of voters lives; the leader removes
 * the dead voter and promotes a standby.
 *
 * Threads.  Only the loop thread touches struct raft.  Other threads
 * (NNG's completion threads, API callers) hand work over with
 * rayc__ctl_post, a locked FIFO drained by a libevent event.  Raft's
 * I/O callbacks (send and append done) are also posted, so they never
 * run inside the raft call that started them.
 *
 * Only committed state is acted on: a peer is a member, is dead, has a
 * KV key, when the entry saying so is applied (fsm_apply), on every peer
 * in log order.  Every peer is in the Raft configuration (voters, then
 * standbys, which replicate the log without voting), so every peer holds
 * the whole committed view.
 *
 * Files.  ctl.c (this one): proposing, the leader's duties (the Raft
 * configuration follows membership, silent peers are declared dead).
 * ctl_leave.c: the role handed over before leaving, a leaving voter
 * staying until the others can commit without it.  ctl_life.c: start
 * and stop.  ctl_read.c:
 * linearizable reads.  ctl_io.c: the raft_io backend, the queue of
 * posted work and jobs off the loop thread.  ctl_snap.c: the snapshot
 * stored, sent and installed.  ctl_codec.c: raft messages as RAFT frames.
 * ctl_fsm.c: the state machine (fsm_apply) and its snapshots.
 * ctl_trace.c: the Raft state in the log.  ctl_int.h: what they share.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <raft.h>

#include "net/ctl_int.h"

#define CTL_MAX_VOTERS 5

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- proposing ---- */

typedef struct prop {
	struct raft_apply req;
	rayc__ctl_done done;
	void *arg;
	rayc__net *net;
	size_t len; /* counted in ctl->prop_bytes until it is done */
} prop;

static void prop_cb(struct raft_apply *req, int status, void *result)
{
	prop *p = req->data;

	p->net->ctl->prop_bytes -= p->len;
	if (p->done != NULL)
		p->done(status == 0 ? (int)(intptr_t)result : RAYC__RETRY,
		        p->arg);
	free(p);
}

int rayc__ctl_propose(rayc__net *net, const rayc__wbuf *cmd,
                      rayc__ctl_done done, void *arg)
{
	rayc__ctl *ctl = net->ctl;

	if (!ctl->started || ctl->closing ||
	    raft_state(&ctl->raft) != RAFT_LEADER)
		return RAYC__RETRY;
	if (cmd->bad)
		return RAYC_ENOMEM;
	prop *p = calloc(1, sizeof(*p));
	struct raft_buffer b = { raft_malloc(cmd->len), cmd->len };
	if (p == NULL || b.base == NULL) {
		free(p);
		raft_free(b.base);
		return RAYC_ENOMEM;
	}
	memcpy(b.base, cmd->p, cmd->len);
	p->req.data = p;
	p->done = done;
	p->arg = arg;
	p->net = net;
	p->len = cmd->len;
	int rv = raft_apply(&ctl->raft, &p->req, &b, 1, prop_cb);
	if (rv != 0) {
		raft_free(b.base);
		free(p);
		return rv == RAFT_NOTLEADER || rv == RAFT_LEADERSHIPLOST
		               ? RAYC__RETRY
		               : RAYC_ENOMEM;
	}
	ctl->prop_bytes += cmd->len;
	return RAYC_OK;
}

bool rayc__ctl_is_leader(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	return ctl != NULL && ctl->started && !ctl->closing &&
	       raft_state(&ctl->raft) == RAFT_LEADER;
}

bool rayc__ctl_ready(rayc__net *net)
{
	return rayc__ctl_is_leader(net) && net->ctl->ready;
}

static void barrier_cb(struct raft_barrier *req, int status)
{
	rayc__net *net = req->data;
	rayc__ctl *ctl = net->ctl;

	ctl->barrier_pending = false;
	ctl->ready = status == 0 && rayc__ctl_is_leader(net);
}

void rayc__ctl_cmd_add(rayc__net *net, rayc__wbuf *b, uint32_t id,
                       uint64_t gen, bool worker, int pid, const char *url,
                       const int64_t *total, const unsigned char *pk)
{
	rayc__w_u8(b, CMD_ADD);
	rayc__w_u32(b, id);
	rayc__w_u64(b, gen);
	rayc__w_u8(b, worker);
	rayc__w_u32(b, (uint32_t)pid);
	rayc__w_u64(b, (uint64_t)wall_ms());
	rayc__w_str(b, url);
	rayc__net_write_res(net->rt, b, total, NULL);
	rayc__w_bytes(b, pk, RAYC__ID_PK);
}

static void propose_del(rayc__net *net, uint32_t id, bool left)
{
	rayc__wbuf b = { 0 };

	rayc__mutex_lock(&net->mu);
	uint64_t gen = net->peers[id].gen;
	rayc__mutex_unlock(&net->mu);
	rayc__w_u8(&b, CMD_DEL);
	rayc__w_u32(&b, id);
	rayc__w_u64(&b, gen); /* an old incarnation's DEL spares a newer one */
	rayc__w_u8(&b, left);
	rayc__w_u64(&b, (uint64_t)wall_ms());
	if (rayc__ctl_propose(net, &b, NULL, NULL) == RAYC_OK) {
		rayc__mutex_lock(&net->mu);
		net->peers[id].del_sent = true;
		rayc__mutex_unlock(&net->mu);
	}
	rayc__wbuf_fini(&b);
}

void rayc__ctl_cmd_kv(rayc__wbuf *b, int op, uint32_t client, uint64_t req,
                      const char *key, const void *val, size_t len)
{
	/* In one allocation (a value may be 1 MiB). */
	(void)rayc__wbuf_reserve(b, 1 + 4 + 8 + 4 + strlen(key) + 8 + len);
	rayc__w_u8(b, op == RAYC__KV_PUT     ? CMD_KV_PUT
	              : op == RAYC__KV_PUTNX ? CMD_KV_PUTNX
	              : op == RAYC__KV_DELEQ ? CMD_KV_DELEQ
	                                     : CMD_KV_DEL);
	rayc__w_u32(b, client);
	rayc__w_u64(b, req);
	rayc__w_str(b, key);
	if (op != RAYC__KV_DEL)
		rayc__w_blob(b, val, len);
}

/* ---- the leader's duties: the Raft configuration follows membership ---- */

void rayc__ctl_change_cb(struct raft_change *req, int status)
{
	rayc__net *net = req->data;
	rayc__ctl *ctl = net->ctl;

	if (status != 0) {
		rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-CHANGE",
		          "configuration change failed: %s",
		          raft_strerror(status));
		if (ctl->promoting != 0)
			ctl->promote_failed[ctl->promoting] = rayc__now_ns();
	}
	ctl->promoting = 0;
	ctl->changing = false;
}

void rayc__ctl_slot_reset(rayc__net *net, uint32_t id)
{
	if (net->ctl != NULL) {
		net->ctl->promote_failed[id] = 0;
		net->ctl->standby_since[id] = 0;
	}
}

bool rayc__ctl_slot_free(rayc__net *net, uint32_t id, bool *later)
{
	rayc__ctl *ctl = net->ctl;

	*later = true;
	if (ctl == NULL || !ctl->started || ctl->changing ||
	    ctl->raft.configuration_uncommitted_index != 0)
		return false;
	const struct raft_configuration *conf = &ctl->raft.configuration;
	for (unsigned i = 0; i < conf->n; i++)
		if (conf->servers[i].id == id)
			return false; /* reconcile removes it soon */
	*later = false;
	return true;
}

bool rayc__ctl_alive_member(rayc__net *net, raft_id id)
{
	if (id == 0 || id >= RAYC__MAX_PEERS)
		return false;
	rayc__mutex_lock(&net->mu);
	bool a = net->peers[id].known && net->peers[id].alive;
	rayc__mutex_unlock(&net->mu);
	return a;
}

/* A standby is made a voter only once it has been a live standby for a
 * while: a peer that dies or leaves right after joining never enters the
 * voters (its death there would cost them a vote until it is removed). */
static int64_t settle_ns(rayc__net *net)
{
	int64_t t = net->timeout_ns / 4;

	return t < (int64_t)500000000 ? t : (int64_t)500000000;
}

/* Notes when each live standby was first seen as one (loop thread, on
 * every reconcile, so the time counts while no promotion is wanted). */
static void track_standbys(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	const struct raft_configuration *conf = &ctl->raft.configuration;
	int64_t now = rayc__now_ns();

	for (unsigned i = 0; i < conf->n; i++) {
		const struct raft_server *s = &conf->servers[i];
		if (s->id >= RAYC__MAX_PEERS)
			continue;
		if (s->role != RAFT_STANDBY || !rayc__ctl_alive_member(net, s->id))
			ctl->standby_since[s->id] = 0;
		else if (ctl->standby_since[s->id] == 0)
			ctl->standby_since[s->id] = now;
	}
}

/* The standby to make a voter, 0 for none now: a live one that has been
 * a standby for settle_ns() and has the whole log (then raft_assign
 * appends the new configuration at once, with no catch-up rounds that
 * would hold every other change up if it died meanwhile; one still
 * behind after a heartbeat timeout but answering goes through them, as
 * under a steady stream of writes), none whose promotion failed within
 * the last heartbeat timeout; of those, the one that has been a standby
 * longest.  Making the voters even (2 or 4) takes two such standbys, so
 * that the next promotion follows at once: two voters one of which dies
 * have no majority left, not even to remove it. */
static raft_id promotee(rayc__net *net, uint32_t voters)
{
	rayc__ctl *ctl = net->ctl;
	struct raft *r = &ctl->raft;
	const struct raft_configuration *conf = &r->configuration;
	const struct raft_progress *pr = r->leader_state.progress;
	raft_index last = raft_last_index(r);
	int64_t now = rayc__now_ns();
	raft_id best = 0;
	unsigned ready = 0;

	for (unsigned i = 0; i < conf->n && pr != NULL; i++) {
		const struct raft_server *s = &conf->servers[i];
		if (s->id >= RAYC__MAX_PEERS || s->role != RAFT_STANDBY)
			continue;
		int64_t since = ctl->standby_since[s->id];
		int64_t f = ctl->promote_failed[s->id];
		if (since == 0 || now - since < settle_ns(net) ||
		    (f != 0 && now - f < net->timeout_ns))
			continue;
		if (pr[i].match_index < last &&
		    (now - since < net->timeout_ns || !pr[i].recent_recv))
			continue;
		ready++;
		if (best == 0 || since < ctl->standby_since[best])
			best = s->id;
	}
	if (voters % 2 == 1 && ready < 2)
		return 0;
	return best;
}

/* The standby being promoted is dead (its removal is applied) while
 * libraft still waits for it to catch up: give the promotion up now, as
 * libraft itself would only after a catch-up round's limit, so that the
 * dead server's removal and every other change need not wait. */
static void drop_dead_promotion(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	struct raft *r = &ctl->raft;
	uint32_t id = atomic_load(&ctl->promoting);

	if (!ctl->changing || id == 0 || rayc__ctl_alive_member(net, id) ||
	    raft_state(r) != RAFT_LEADER ||
	    r->leader_state.promotee_id != id ||
	    r->leader_state.change != &ctl->change)
		return;
	/* What libraft's tickLeader does when a promotee is unresponsive
	 * (libraft 0.15): no entry was appended yet, nothing to undo. */
	r->leader_state.promotee_id = 0;
	r->leader_state.round_index = 0;
	r->leader_state.round_number = 0;
	r->leader_state.round_start = 0;
	r->leader_state.change = NULL;
	rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-CHANGE",
	          "promotion of server %u given up: it is dead", id);
	rayc__ctl_change_cb(&ctl->change, RAFT_NOCONNECTION);
}

/* One step towards: every live member in the configuration, dead ones
 * out, an odd number of voters (at most 5; an even count tolerates no
 * more failures than the odd one below it), the rest standbys.  In that
 * order of urgency: removals, then additions (as spares, libraft's
 * raft_add), then spares to standbys (a standby gets the log, so it has
 * caught up before it is promoted and a new peer hears from the leader
 * at once), then the voters' count. */
static void reconcile(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	struct raft *r = &ctl->raft;
	const struct raft_configuration *conf = &r->configuration;
	int rv = 0;

	if (ctl->changing)
		drop_dead_promotion(net);
	if (!rayc__ctl_is_leader(net))
		return;
	track_standbys(net);
	if (ctl->changing || ctl->handing_over ||
	    r->configuration_uncommitted_index != 0)
		return;
	ctl->change.data = net;
	/* Dead servers out. */
	for (unsigned i = 0; i < conf->n; i++) {
		raft_id id = conf->servers[i].id;
		if (id != r->id && !rayc__ctl_alive_member(net, id)) {
			rv = raft_remove(r, &ctl->change, id, rayc__ctl_change_cb);
			rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-CHANGE",
			          "removing server %llu", (unsigned long long)id);
			goto done;
		}
	}
	/* Live members in. */
	uint32_t live = 0, add = 0;
	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		if (!p->known || !p->alive)
			continue;
		live++;
		bool in = false;
		for (unsigned k = 0; k < conf->n && !in; k++)
			in = conf->servers[k].id == i;
		if (!in && add == 0)
			add = i;
	}
	char url[RAYC__URL_MAX];
	if (add != 0)
		snprintf(url, sizeof(url), "%s", net->peers[add].url);
	rayc__mutex_unlock(&net->mu);
	if (add != 0) {
		rv = raft_add(r, &ctl->change, add, url, rayc__ctl_change_cb);
		rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-CHANGE", "adding server %u",
		          add);
		goto done;
	}
	/* Spares get the log. */
	for (unsigned i = 0; i < conf->n; i++) {
		if (conf->servers[i].role == RAFT_SPARE) {
			rv = raft_assign(r, &ctl->change, conf->servers[i].id,
			                 RAFT_STANDBY, rayc__ctl_change_cb);
			goto done;
		}
	}
	uint32_t want = live > CTL_MAX_VOTERS ? CTL_MAX_VOTERS : live;
	if (want % 2 == 0 && want > 0)
		want--;
	if (want == 0)
		want = 1;
	uint32_t voters = 0;
	for (unsigned i = 0; i < conf->n; i++)
		voters += conf->servers[i].role == RAFT_VOTER;
	if (voters < want) {
		raft_id id = promotee(net, voters);
		if (id == 0)
			return;
		rv = raft_assign(r, &ctl->change, id, RAFT_VOTER, rayc__ctl_change_cb);
		rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-CHANGE",
		          "promoting server %llu", (unsigned long long)id);
		if (rv == 0)
			ctl->promoting = (uint32_t)id;
		goto done;
	}
	for (unsigned i = 0; i < conf->n && voters > want; i++) {
		const struct raft_server *s = &conf->servers[i];
		if (s->role == RAFT_VOTER && s->id != r->id) {
			rv = raft_assign(r, &ctl->change, s->id, RAFT_STANDBY,
			                 rayc__ctl_change_cb);
			rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-CHANGE",
			          "demoting server %llu",
			          (unsigned long long)s->id);
			goto done;
		}
	}
	return;
done:
	if (rv == 0)
		ctl->changing = true;
	else
		rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-CHANGE",
		          "configuration change refused: %s", raft_strerror(rv));
}


/* Called after every batch of raft work: follow the leader. */
void rayc__ctl_after(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	raft_id lid = 0;
	const char *laddr = NULL;

	if (!ctl->started || ctl->closing)
		return;
	rayc__ctl_trace(net);
	raft_leader(&ctl->raft, &lid, &laddr);
	uint64_t term = ctl->raft.current_term;
	atomic_store(&ctl->term_seen, term);
	int64_t now = rayc__now_ns();
	rayc__mutex_lock(&net->mu);
	/* Mirror the configuration's voters for rayc_cluster_peers. */
	const struct raft_configuration *conf = &ctl->raft.configuration;
	for (uint32_t i = 1; i < atomic_load(&net->top); i++)
		net->peers[i].voter = false;
	uint32_t has[RAYC__MAX_PEERS / 32] = { 0 };
	for (unsigned i = 0; i < conf->n; i++) {
		raft_id id = conf->servers[i].id;
		if (id >= RAYC__MAX_PEERS)
			continue;
		has[id / 32] |= (uint32_t)1 << (id % 32);
		if (conf->servers[i].role == RAFT_VOTER)
			net->peers[id].voter = true;
	}
	for (unsigned i = 0; i < RAYC__MAX_PEERS / 32; i++)
		atomic_store(&ctl->conf_seen[i], has[i]);
	bool became = false;
	/* raft names the leader it last heard of in its current term; a
	 * MEMBERS broadcast may already have told of a newer one. */
	bool current = lid != 0 && lid < RAYC__MAX_PEERS &&
	               term >= net->coord_term;
	if (current && lid != net->coord) {
		net->coord = (uint32_t)lid;
		rayc__kv_coord_changed_locked(net);
		net->coord_seen = now;
		snprintf(net->coord_url, sizeof(net->coord_url), "%s",
		         laddr != NULL ? laddr : "");
		became = lid == net->self;
		if (became) {
			/* A fresh leader gives everyone a full timeout to
			 * send it a heartbeat. */
			for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
				net->peers[i].last_seen = now;
				net->peers[i].del_sent = false;
			}
		}
	}
	if (current)
		net->coord_term = term;
	/* Leading is a sign of life: libraft steps a leader down once it has
	 * not heard from a majority for an election timeout. */
	if (lid == net->self && raft_state(&ctl->raft) == RAFT_LEADER)
		net->coord_seen = now;
	bool admit_self = became && net->founder && !net->joined;
	rayc__mutex_unlock(&net->mu);
	if (raft_state(&ctl->raft) != RAFT_LEADER) {
		ctl->ready = false;
	} else if (!ctl->ready && !ctl->barrier_pending) {
		ctl->barrier.data = net;
		if (raft_barrier(&ctl->raft, &ctl->barrier, barrier_cb) == 0)
			ctl->barrier_pending = true;
	}
	if (became)
		rayc__log(RAYC_LOG_INFO, "RAYC-NET-COORD",
		          "this peer (%u) is the coordinator now (term %llu)",
		          net->self, (unsigned long long)ctl->raft.current_term);
	if (became && ctl->stall_ms > 0)
		rayc__sleep_ms(ctl->stall_ms); /* tests only: a loaded host */
	rayc__ctl_reads_step(net);
	rayc__ctl_hand_over_step(net);
	if (admit_self) {
		/* The founder's own entry: it is a member like any other. */
		rayc__wbuf b = { 0 };
		rayc__ctl_cmd_add(net, &b, net->self, 1, net->worker,
		                  (int)rayc__getpid(), net->url,
		                  net->rt->res_total, net->id_pk);
		if (rayc__ctl_propose(net, &b, NULL, NULL) != RAYC_OK)
			rayc__ctl_cluster_ends(net, "the control store did not "
			                            "accept the founder");
		rayc__wbuf_fini(&b);
	}
	reconcile(net);
	rayc__ctl_leave_check(net);
}

/* ---- the loop's side of the mesh ---- */

/* A tick that comes late (over two periods) with the loop thread idle
 * for most of the gap means this peer stood still: the whole process
 * or host stopped (SIGSTOP, a paused VM), or it was not scheduled.  A
 * loop that was busy instead is no such sign: the receiving threads
 * note heartbeats meanwhile (rayc__net_on_heartbeat), so live peers are
 * fresh and the gap must count, or a dead peer would be found later. */
static bool stood_still(const rayc__ctl *ctl, int64_t now,
                        const rayc__usage *u)
{
	int64_t gap = now - ctl->tick_at;
	const rayc__usage *o = &ctl->tick_use;

	if (ctl->tick_at == 0 || gap <= 2 * ctl->net->hb_ns)
		return false;
	int64_t cpu = (u->user_ns - o->user_ns) + (u->sys_ns - o->sys_ns);
	return cpu < gap / 2;
}

/* Moves t on by skip, never past now nor back. */
static void skip_stamp(int64_t *t, int64_t skip, int64_t now)
{
	if (*t == 0)
		return;
	int64_t moved = *t + skip < now ? *t + skip : now;
	if (moved > *t)
		*t = moved;
}

/* What this peer did not hear while it stood still is no sign of
 * anyone's death: the gap counts as one tick's period (as for raft's
 * clock, ctl_io.c) for the heartbeat timeout, the no-coordinator
 * deadline and a lost link's; silence before and after counts in
 * full. */
static void skip_gap_locked(rayc__net *net, int64_t skip, int64_t now)
	RAYC_REQUIRES(net->mu)
{
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		skip_stamp(&net->peers[i].last_seen, skip, now);
		skip_stamp(&net->links[i].lost_since, skip, now);
	}
	skip_stamp(&net->coord_seen, skip, now);
}

void rayc__ctl_tick(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	int64_t now = rayc__now_ns();
	uint32_t dead[RAYC__MAX_PEERS];
	int n = 0;

	if (ctl == NULL || !ctl->started || ctl->closing)
		return;
	rayc__ctl_after(net);
	rayc__usage use;
	rayc__thread_usage(&use);
	rayc__mutex_lock(&net->mu);
	if (stood_still(ctl, now, &use))
		skip_gap_locked(net, now - ctl->tick_at - net->hb_ns, now);
	ctl->tick_at = now;
	ctl->tick_use = use;
	bool lead = net->self == net->coord && rayc__ctl_is_leader(net);
	if (lead) {
		for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
			rayc__peer *p = &net->peers[i];
			if (p->alive && i != net->self && !p->del_sent &&
			    now - p->last_seen > net->timeout_ns)
				dead[n++] = i;
		}
	}
	/* Cut off when no sign of a live coordinator came for 3 heartbeat
	 * timeouts.  Raft alone cannot tell: a standby never starts an
	 * election, so raft keeps naming a leader that may be long gone,
	 * and a peer not yet in the configuration (being added, or waiting
	 * behind another change) hears of no leader at all while the
	 * coordinator lives and broadcasts MEMBERS to it. */
	int64_t seen = net->coord_seen;
	rayc__mutex_unlock(&net->mu);
	for (int i = 0; i < n; i++) {
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-SILENT",
		          "no heartbeat from peer %u for %lld ms", dead[i],
		          (long long)(net->timeout_ns / 1000000));
		propose_del(net, dead[i], false);
	}
	int64_t limit = 3 * net->timeout_ns;
	if (limit < (int64_t)3000000000)
		limit = 3000000000;
	if (net->joined && !atomic_load(&net->leaving) && seen != 0 &&
	    now - seen > limit) {
		if (!atomic_load(&net->cluster_down)) {
			/* Which voters this peer waited for, and which of
			 * them it knows dead: a majority was gone, or
			 * unreachable from here. */
			char conf[256];
			rayc__ctl_conf_desc(net, conf, sizeof(conf));
			rayc__log(RAYC_LOG_INFO, "RAYC-CTL-CUT-OFF",
			          "peer %u: no coordinator for %lld ms (term "
			          "%llu); its configuration: %s", net->self,
			          (long long)((now - seen) / 1000000),
			          (unsigned long long)ctl->raft.current_term,
			          conf);
		}
		atomic_store(&net->cut_off, true);
		rayc__ctl_cluster_ends(net, "no coordinator for 3 heartbeat "
		                            "timeouts (a majority of the voters "
		                            "is gone, or this peer is cut off "
		                            "from it)");
	}
}

typedef struct gone_arg {
	rayc__ctl_work post;
	uint32_t id;
	bool left;
} gone_arg;

static void run_gone(rayc__net *net, void *arg)
{
	gone_arg *g = arg;

	rayc__mutex_lock(&net->mu);
	rayc__peer *p = &net->peers[g->id];
	bool want = p->known && p->alive && !p->del_sent && g->id != net->self;
	rayc__mutex_unlock(&net->mu);
	if (want && rayc__ctl_is_leader(net))
		propose_del(net, g->id, g->left);
	free(g);
}

void rayc__ctl_peer_gone(rayc__net *net, uint32_t id, bool left)
{
	gone_arg *g;

	if (net->ctl == NULL || id == 0 || id >= RAYC__MAX_PEERS)
		return;
	if ((g = malloc(sizeof(*g))) == NULL) {
		/* Not lost: the coordinator's failure detection removes a
		 * peer that left or died once it has been silent for a
		 * heartbeat timeout. */
		rayc__log(RAYC_LOG_WARN, "RAYC-CTL-NOMEM", "out of memory: "
		          "peer %u's end is left to failure detection", id);
		return;
	}
	g->id = id;
	g->left = left;
	rayc__ctl_post(net, &g->post, run_gone, g);
}
