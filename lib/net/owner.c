/* owner.c -- the owner side of tasks run on other peers.
 *
 * Owner side.  A ready task goes through rayc__net_place_locked: the
 * placement policy (lib/sched/place.c) picks this peer or another from
 * the coordinator's view, corrected by the tasks this owner already has
 * in flight there (at most `cap` per peer; the rest wait here and are
 * pumped out as TASK_DONEs come back, and at every tick to peers with
 * room, since a peer that joined after they were queued has no TASK_DONE
 * to send).  The TASK frame carries the spec:
 * function name, demand by resource name, and arguments by value; ref
 * arguments carry the object id, its owner, a peer holding a copy, and
 * the bytes themselves when small.  TASK_DONE brings small returns back
 * inline; large ones stay where they were made (the primary copy) and
 * the owner marks them REMOTE with that location.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "net/remote_int.h"
#include "registry.h"
#include "sched/actor.h"
#include "sched/place.h"
#include "sched/sched.h"


#define PEER_CAP_MIN 32
/* Times a task is sent again after losing arguments on the way. */
#define RAYC__ARG_REDO_MAX 16
#define PEER_CAP_PER_CPU 16

/* ---- owner: placing and sending tasks ---- */

/* The id a task goes by on the wire.  A call another peer made to an
 * actor owned here, sent on to the peer the actor lives on, goes by its
 * id with the top bit flipped: that peer may be the caller itself, whose
 * own entries for the call's returns have the call's ids. */
static rayc_task_id wire_id(const rayc__task *t)
{
	rayc_task_id id = t->id;

	if (t->foreign && t->akind == RAYC__AK_CALL)
		id.hi ^= (uint64_t)1 << 63;
	return id;
}

static void encode_task(rayc__rt *rt, rayc__net *net, rayc__wbuf *b,
                        rayc__task *t) RAYC_REQUIRES(rt->mu)
{
	size_t f = rayc__w_frame_begin(b, RAYC__MSG_TASK, net->self);
	rayc_task_id wid = wire_id(t);

	rayc__w_u64(b, wid.hi);
	rayc__w_u64(b, wid.lo);
	rayc__w_u32(b, t->dispatch);
	/* An actor's constructor and destructor run go by its class name;
	 * a call by "Class.method". */
	rayc__w_str(b, t->akind == RAYC__AK_CTOR || t->akind == RAYC__AK_FINI
	                       ? t->actor->cls->name
	                       : t->fn->name);
	rayc__w_u32(b, (uint32_t)t->attempt);
	rayc__w_u32(b, (uint32_t)t->max_retries);
	rayc__w_u8(b, t->retry_exceptions);
	rayc__w_u8(b, t->akind);
	if (t->akind != RAYC__AK_NONE) {
		rayc__w_u64(b, t->actor->id.hi);
		rayc__w_u64(b, t->actor->id.lo);
		rayc__w_u32(b, (uint32_t)t->actor->max_conc);
		/* A detached actor's host adopts it if its owner goes, and
		 * takes its name. */
		rayc__w_u8(b, t->actor->detached);
		rayc__w_str(b, t->akind == RAYC__AK_CTOR && t->actor->detached &&
		                       t->actor->name != NULL
		                       ? t->actor->name
		                       : "");
	}
	rayc__w_u32(b, t->nreturns);
	int nres = atomic_load(&rt->nres), nd = 0;
	for (int k = 0; k < nres; k++)
		nd += t->sclass->demand[k] != 0;
	rayc__w_u8(b, (uint8_t)nd);
	for (int k = 0; k < nres; k++)
		if (t->sclass->demand[k] != 0) {
			rayc__w_str(b, rt->res_names[k]);
			rayc__w_u64(b, (uint64_t)t->sclass->demand[k]);
		}
	rayc__w_u32(b, t->nargs);
	for (uint32_t i = 0; i < t->nargs; i++) {
		rayc__targ *a = &t->args[i];
		rayc__w_u8(b, (uint8_t)a->type);
		switch (a->type) {
		case RAYC_TYPE_I64:
		case RAYC_TYPE_F64:
			rayc__w_bytes(b, &a->v, 8);
			break;
		case RAYC_TYPE_STR:
		case RAYC_TYPE_BYTES:
			rayc__w_blob(b, a->v.ptr, a->len);
			break;
		case RAYC_TYPE_ACTOR: {
			/* A handle: the actor, its owner, its class. */
			const rayc__actor *h = a->v.ptr;
			rayc__w_u64(b, h->id.hi);
			rayc__w_u64(b, h->id.lo);
			rayc__w_u32(b, h->proxy ? h->owner : net->self);
			rayc__w_str(b, h->cls->name);
			break;
		}
		default: {
			rayc__obj *o = a->ref;
			int st = atomic_load(&o->state);
			bool here = st == RAYC__OBJ_READY;
			rayc__w_oid(b, o->id);
			rayc__w_u32(b, o->owner != 0 ? o->owner : net->self);
			rayc__w_u32(b, here ? net->self : o->loc);
			bool inl = here && o->len <= RAYC__NET_INLINE_MAX;
			rayc__w_u8(b, inl);
			if (inl) {
				rayc__w_u8(b, (uint8_t)o->type);
				rayc__w_blob(b, o->data, o->len);
			}
			break;
		}
		}
	}
	/* Its length only: queued on a connection, it gets a tag in place
	 * of the xxh3 handshake frames carry (wire.h). */
	rayc__w_frame_end_len(b, f, 0);
}

/* Whether a TASK frame to p may wait corked (conn_tx.c) for company.  A
 * burst of submissions then costs a write per batch, not per task (a
 * write was 0.7 syscalls per task of remote_tasks_async, most of the
 * submitting thread's time).  Only while p has at least twice as many of
 * our tasks as CPUs: it is busy with them, so the frame would wait
 * there anyway, and the answer to one of them, which sends it (see
 * rayc__remote_on_task_done), comes before p runs out of work.  A frame
 * whose answers never come (tasks that wait for what is corked behind
 * them) waits at most a tick (rayc__remote_uncork_all). */
static bool may_cork_locked(rayc__rt *rt, const rayc__peer *p)
	RAYC_REQUIRES(rt->mu)
{
	(void)rt; /* p->inflight is read under it */
	int64_t cpus = atomic_load_explicit(&p->cpus, memory_order_relaxed);

	return (int64_t)p->inflight.n >= 2 * (cpus > 1 ? cpus : 1);
}

void rayc__remote_uncork_peer(rayc__net *net, uint32_t peer)
{
	if (!atomic_load_explicit(&net->peers[peer].corked,
	                          memory_order_relaxed) ||
	    !atomic_exchange(&net->peers[peer].corked, false))
		return;
	rayc__conn *c = rayc__net_conn_have(net, peer);
	if (c != NULL) {
		rayc__conn_uncork(c);
		rayc__conn_unref(c);
	}
}

void rayc__remote_uncork_all(rayc__net *net)
{
	for (uint32_t i = 1; i < atomic_load(&net->top); i++)
		rayc__remote_uncork_peer(net, i);
}

/* Whether t's TASK is sure to fit a task lane's frame (checked before it
 * is written: a large argument is not copied twice). */
static bool fits_lane(const rayc__task *t)
{
	size_t n = 512 + strlen(t->fn->name);

	for (uint32_t i = 0; i < t->nargs; i++) {
		const rayc__targ *a = &t->args[i];
		if (a->type == RAYC_TYPE_STR || a->type == RAYC_TYPE_BYTES)
			n += a->len + 8;
		else if (a->ref != NULL)
			n += (a->ref->len <= RAYC__NET_INLINE_MAX ? a->ref->len
			                                         : 0) +
			     64; /* its bytes inline if ready and small */
		else
			n += 64;
	}
	return n <= RAYC__TLANE_FRAME_MAX;
}

/* Whether actor call t may go on a task lane: its actor runs one call at
 * a time and this peer owns it (a call held back, below, waits for calls
 * that cannot be waiting for it: with max_concurrency above 1 one could,
 * and a proxy does not know its actor's), none of its other calls in
 * flight went over the connection (t itself is counted in running
 * already: actor.c, start_call_locked), and no call waits behind it (a
 * burst goes over the connection, corked, instead of a few calls at a
 * time on the lane, each few waiting for the last to end). */
static bool call_may_lane(const rayc__task *t)
{
	const rayc__actor *a = t->actor;
	const rayc__task *next = TAILQ_FIRST(&a->mb);

	return a->max_conc == 1 && !a->proxy &&
	       a->lane_calls == a->running - 1 &&
	       (next == NULL || !next->mb_ready);
}

/* t goes on our task lane to p (tlane.c) if one is up and t may: a plain
 * task or an actor's call (call_may_lane), while p has few of our tasks
 * (a burst beyond goes corked over the connection).  False: send it over
 * the connection. */
static bool lane_task_locked(rayc__rt *rt, rayc__net *net, rayc__task *t,
                             uint32_t peer, bool cork) RAYC_REQUIRES(rt->mu)
{
	rayc__lane *L;
	bool call = t->akind == RAYC__AK_CALL && t->actor != NULL;

	/* A task sent before goes over the connection again: after FREEs
	 * this owner may have said to that peer since (the arguments it
	 * rebuilds, stale results), which it must read first. */
	if (cork || (t->akind != RAYC__AK_NONE && !call) ||
	    (call && !call_may_lane(t)) || t->dispatch != 0 ||
	    net->peers[peer].inflight.n >= RAYC__TLANE_INFLIGHT ||
	    !fits_lane(t))
		return false;
	rayc__wbuf *b = rayc__tlane_begin(net, peer, true, &L);
	if (b == NULL)
		return false;
	t->dispatch++; /* a new run: answers to earlier ones are stale */
	encode_task(rt, net, b, t);
	if (rayc__tlane_end(net, L)) {
		if (call) {
			t->on_lane = true;
			t->actor->lane_calls++;
		}
		return true;
	}
	t->dispatch--; /* not sent: the connection's send numbers it */
	return false;
}

static int send_task_locked(rayc__rt *rt, rayc__net *net, rayc__task *t,
                            uint32_t peer) RAYC_REQUIRES(rt->mu)
{
	rayc__peer *p = &net->peers[peer];
	bool cork = may_cork_locked(rt, p);

	if (lane_task_locked(rt, net, t, peer, cork))
		goto sent;
	/* Over the connection, this call could overtake its actor's calls
	 * in flight on the lane (the two are read by different threads):
	 * it waits for them to end. */
	if (t->akind == RAYC__AK_CALL && t->actor != NULL &&
	    t->actor->lane_calls > 0)
		return RAYC__SEND_LATER;
	rayc__conn *c = rayc__net_conn_to(net, peer);
	if (c == NULL)
		return RAYC__SEND_NO;
	rayc__wbuf *b = rayc__conn_begin(c);
	size_t before = b->len;
	t->dispatch++; /* a new run: answers to earlier ones are stale */
	encode_task(rt, net, b, t);
	bool bad = b->bad;
	if (bad) {
		b->len = before;
		b->bad = false;
	}
	if (!bad && cork) {
		/* Flagged first: an answer processed meanwhile sends it. */
		atomic_store(&p->corked, true);
		rayc__conn_end_corked(c);
	} else {
		rayc__conn_end(c);
	}
	rayc__conn_unref(c);
	if (bad)
		return RAYC__SEND_NO;
sent:
	t->state = RAYC__TASK_RUNNING;
	t->remote_peer = peer;
	rayc__tq_push(&net->peers[peer].inflight, t);
	return RAYC__SEND_OK;
}

bool rayc__remote_tasks_at(rayc__net *net, uint32_t peer)
{
	rayc__rt *rt = net->rt;

	rayc__mutex_lock(&rt->mu);
	bool any = net->peers[peer].inflight.head != NULL;
	rayc__mutex_unlock(&rt->mu);
	return any;
}

int rayc__net_send_task_locked(rayc__rt *rt, rayc__task *t, uint32_t peer)
{
	rayc__net *net = rt->net;

	if (net == NULL || peer == 0 || peer >= RAYC__MAX_PEERS ||
	    atomic_load(&net->stopping))
		return RAYC__SEND_NO;
	return send_task_locked(rt, net, t, peer);
}

static void peer_wait_send_locked(rayc__rt *rt, rayc__net *net,
                                  uint32_t peer) RAYC_REQUIRES(rt->mu);

void rayc__remote_resend_locked(rayc__rt *rt, rayc__net *net, uint32_t peer)
{
	rayc__peer *p = &net->peers[peer];

	if (p->inflight.head == NULL) {
		rayc__actors_peer_back_locked(rt, peer); /* calls waiting */
		peer_wait_send_locked(rt, net, peer);
		return;
	}
	rayc__conn *c = rayc__net_conn_to(net, peer);
	if (c == NULL)
		return; /* dead: its death retries them */
	rayc__wbuf *b = rayc__conn_begin(c);
	bool bad = false;
	for (rayc__task *t = p->inflight.head; t != NULL && !bad;
	     t = t->q_next) {
		/* Every one over the connection now, in the order sent. */
		if (t->on_lane)
			rayc__actor_lane_off_locked(t);
		size_t before = b->len;
		encode_task(rt, net, b, t);
		if (b->bad) {
			b->len = before;
			b->bad = false;
			bad = true;
		}
	}
	rayc__conn_end(c);
	rayc__conn_unref(c);
	if (bad) {
		rayc__relink_retry(net, peer); /* out of memory: later */
	} else { /* after those sent before them */
		rayc__actors_peer_back_locked(rt, peer);
		peer_wait_send_locked(rt, net, peer);
	}
}

void rayc__remote_replace_locked(rayc__rt *rt, rayc__net *net, uint32_t peer)
{
	rayc__peer *p = &net->peers[peer];
	rayc__task *t = p->inflight.head;

	while (t != NULL) {
		rayc__task *next = t->q_next;
		/* An actor's call or destructor run can only run where the
		 * actor is: it stays, sent again if the peer comes back, or
		 * dealt with by its death. */
		if (t->actor == NULL || t->akind == RAYC__AK_CTOR) {
			rayc__tq_remove(&p->inflight, t);
			t->remote_peer = 0;
			t->child_counter = 0;
			rayc__sched_enqueue_locked(rt, t);
		} else if (t->on_lane) {
			/* Its lane went with the connection: the calls
			 * after it are not held back for it. */
			rayc__actor_lane_off_locked(t);
		}
		t = next;
	}
	rayc__remote_wait_flush_locked(rt, net, peer, RAYC_OK, NULL);
}

static double local_util_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu)
{
	int64_t tot = rt->res_total[RAYC__RES_CPU];
	if (tot <= 0)
		return 1e9;
	int64_t busy = tot - rt->res_avail[RAYC__RES_CPU];
	return ((double)busy + (double)rt->queued * RAYC__RES_SCALE) /
	       (double)tot;
}

static int peer_cap(const rayc__peer *p)
{
	int cpus = (int)(p->total[RAYC__RES_CPU] / RAYC__RES_SCALE);
	int cap = cpus * PEER_CAP_PER_CPU;
	return cap < PEER_CAP_MIN ? PEER_CAP_MIN : cap;
}

/* Decides where t runs: returns the peer id, 0 for here, or a negative
 * RAYC__PLACE_ code. */
static int64_t decide_locked(rayc__rt *rt, rayc__net *net, rayc__task *t)
	RAYC_REQUIRES(rt->mu)
{
	rayc__place_peer pp[RAYC__MAX_PEERS];
	int n = 0;
	size_t rb = (size_t)atomic_load(&rt->nres) * sizeof(int64_t);

	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		if (!p->alive || rayc__relink_unreachable_locked(net, i))
			continue;
		rayc__place_peer *q = &pp[n];
		q->id = i;
		q->self = i == net->self;
		if (q->self) {
			q->total = rt->res_total;
			q->avail = rt->res_avail;
		} else {
			/* Copies: heartbeats rewrite a peer's under net->mu,
			 * let go of before placing. */
			memcpy(net->place_res[n][0], p->total, rb);
			memcpy(net->place_res[n][1], p->avail, rb);
			q->total = net->place_res[n][0];
			q->avail = net->place_res[n][1];
		}
		n++;
		q->inflight = (int)p->inflight.n;
		q->cap = peer_cap(p);
		q->arg_bytes = 0;
	}
	uint32_t self = net->self;
	rayc__mutex_unlock(&net->mu);
	if (n <= 1 && t->strategy != RAYC_STRATEGY_NODE_AFFINITY &&
	    rayc__sched_feasible(rt, t->sclass->demand))
		return 0; /* alone (a driver that runs no tasks, or a demand
		             this peer cannot meet: nowhere, for now) */
	/* Locality: where the large ref arguments are. */
	for (uint32_t i = 0; i < t->nargs; i++) {
		rayc__obj *o = t->args[i].ref;
		if (o == NULL || o->len < (64u << 10))
			continue;
		int st = atomic_load(&o->state);
		uint32_t at = st == RAYC__OBJ_READY ? self
		              : st == RAYC__OBJ_REMOTE ? o->loc : 0;
		for (int k = 0; k < n; k++)
			if (pp[k].id == at)
				pp[k].arg_bytes += o->len;
	}
	rayc__place_req rq = {
		.demand = t->sclass->demand,
		.nres = atomic_load(&rt->nres),
		.strategy = t->strategy,
		.node_id = t->node_id,
		.soft = t->soft,
		.local_util = local_util_locked(rt),
		.rr = &net->rr,
		/* A detached actor should outlive this peer: another that
		 * can hold it adopts it when this one goes. */
		.away = t->akind == RAYC__AK_CTOR && t->actor != NULL &&
		        t->actor->detached,
		.ctor = t->akind == RAYC__AK_CTOR,
	};
	int r = rayc__place(&rq, pp, n);
	if (r >= 0)
		return pp[r].id;
	return r == RAYC__PLACE_HERE ? 0 : r;
}

void rayc__remote_fail_task_locked(rayc__rt *rt, rayc__task *t, int err,
                                   const char *msg)
{
	t->in_flight = true;
	atomic_fetch_add(&rt->n_failed, 1);
	rayc__task_fail_locked(rt, t, err, msg);
}

static void wait_push(rayc__rt *rt, rayc__task *t) RAYC_REQUIRES(rt->mu)
{
	t->state = RAYC__TASK_WAIT_PEER;
	rayc__tq_push(&rt->rwait, t);
	t->sclass->nrwait++;
}

void rayc__remote_rwait_take_locked(rayc__rt *rt, rayc__task *t)
{
	rayc__tq_remove(&rt->rwait, t);
	t->sclass->nrwait--;
}

/* t, placed on peer by its strategy, waits on the peer's own queue for
 * room there (RAYC__PEER_WINDOW): held here, not in that peer's memory,
 * as Ray's owners hold a task until a worker is leased for it. */
static void peer_wait_push(rayc__rt *rt, rayc__net *net, rayc__task *t,
                           uint32_t peer) RAYC_REQUIRES(rt->mu)
{
	t->state = RAYC__TASK_WAIT_PEER;
	rayc__tq_push(&net->peers[peer].wait, t);
	rt->nwait_peer++;
}

static rayc__task *peer_wait_pop(rayc__rt *rt, rayc__peer *p)
	RAYC_REQUIRES(rt->mu)
{
	rayc__task *t = p->wait.head;

	if (t != NULL) {
		rayc__tq_remove(&p->wait, t);
		rt->nwait_peer--;
	}
	return t;
}

size_t rayc__test_peer_window(void)
{
	return RAYC__PEER_WINDOW;
}

/* Whether what waits on p's own queue may go: once a quarter of the
 * window is free, so that answers coming one by one do not send one
 * task each (a write each: TASKs corked behind an answer go with its
 * uncork, rayc__remote_on_task_done), but a quarter of a window at a
 * time. */
static bool peer_wait_room(const rayc__peer *p)
{
	return p->wait.head != NULL &&
	       p->inflight.n + RAYC__PEER_WINDOW / 4 <= RAYC__PEER_WINDOW;
}

/* Sends what waits on peer's own queue, in order, while it has room.  A
 * task that cannot go (no connection) goes back to the front: a
 * connection opening (rayc__remote_resend_locked), the tick
 * (rayc__remote_pump_idle) or the peer's death deals with it. */
static void peer_wait_send_locked(rayc__rt *rt, rayc__net *net,
                                  uint32_t peer) RAYC_REQUIRES(rt->mu)
{
	rayc__peer *p = &net->peers[peer];

	if (!peer_wait_room(p))
		return;
	while (p->wait.head != NULL && p->inflight.n < RAYC__PEER_WINDOW) {
		rayc__task *t = peer_wait_pop(rt, p);
		if (send_task_locked(rt, net, t, peer) != RAYC__SEND_OK) {
			rayc__tq_push_front(&p->wait, t);
			rt->nwait_peer++;
			return;
		}
	}
}

void rayc__remote_wait_flush_locked(rayc__rt *rt, rayc__net *net,
                                    uint32_t peer, int err, const char *why)
{
	rayc__peer *p = &net->peers[peer];
	rayc__tq w = p->wait;
	char msg[512];

	rt->nwait_peer -= w.n;
	memset(&p->wait, 0, sizeof(p->wait));
	while (w.head != NULL) {
		rayc__task *t = w.head;
		rayc__tq_remove(&w, t);
		if (err == RAYC_OK) {
			if (!rayc__net_place_locked(rt, t))
				rayc__sched_enqueue_local_locked(rt, t);
			continue;
		}
		snprintf(msg, sizeof(msg), "task %s: %s while the task waited "
		         "for room on peer %u", t->fn->name, why, peer);
		rayc__remote_fail_task_locked(rt, t, err, msg);
	}
}

/* No live peer can meet t's demand: t waits, visibly, for one that can
 * (Ray's infeasible tasks); said once per demand. */
static void infeasible_push(rayc__rt *rt, rayc__task *t) RAYC_REQUIRES(rt->mu)
{
	rayc__sclass *c = t->sclass;

	if (!c->warned) {
		char need[256];
		size_t o = 0;
		need[0] = '\0';
		for (int k = 0; k < atomic_load(&rt->nres) && o < sizeof(need);
		     k++)
			if (c->demand[k] > 0)
				o += (size_t)snprintf(need + o, sizeof(need) - o,
				                      "%s%s=%g", o > 0 ? "," : "",
				                      rt->res_names[k],
				                      rayc__res_to_double(
				                              c->demand[k]));
		c->warned = true;
		bool ctor = t->akind == RAYC__AK_CTOR;
		rayc__log(RAYC_LOG_WARN, "RAYC-TASK-INFEASIBLE", "%s %s "
		          "needs %s, which no live peer has: it waits until a "
		          "peer that can run it joins (tasks of the same demand "
		          "are not reported again)", ctor ? "actor" : "task",
		          ctor ? t->actor->cls->name : t->fn->name,
		          need[0] != '\0' ? need : "a peer that runs tasks");
	}
	t->state = RAYC__TASK_INFEASIBLE;
	rayc__tq_push(&rt->infeasible, t);
}

bool rayc__net_place_locked(rayc__rt *rt, rayc__task *t)
{
	rayc__net *net = rt->net;

	if (net == NULL || t->foreign || atomic_load(&net->stopping) ||
	    !net->joined)
		return false;
	if (atomic_load(&net->cluster_down)) {
		/* Out of the cluster: only this peer is left to run it. */
		bool elsewhere = t->strategy == RAYC_STRATEGY_NODE_AFFINITY &&
		                 !t->soft && t->node_id != net->self;
		if (!elsewhere && rayc__sched_feasible(rt, t->sclass->demand))
			return false;
		char msg[160];
		snprintf(msg, sizeof(msg), "task %s: this peer lost its "
		         "cluster and cannot run it itself", t->fn->name);
		rayc__remote_fail_task_locked(rt, t, RAYC_ELOST, msg);
		return true;
	}
	int64_t where = decide_locked(rt, net, t);
	if (where == 0)
		return false;
	if (where == RAYC__PLACE_NOWHERE &&
	    t->strategy == RAYC_STRATEGY_NODE_AFFINITY && !t->soft) {
		char msg[160];
		snprintf(msg, sizeof(msg), "task %s: peer %u (hard node "
		         "affinity) is not alive or cannot run it",
		         t->fn->name, t->node_id);
		rayc__remote_fail_task_locked(rt, t, RAYC_EINFEASIBLE, msg);
		return true;
	}
	if (where == RAYC__PLACE_NOWHERE) {
		infeasible_push(rt, t);
		return true;
	}
	if (where == RAYC__PLACE_WAIT) {
		wait_push(rt, t);
		return true;
	}
	rayc__peer *p = &net->peers[where];
	bool hard = t->strategy == RAYC_STRATEGY_NODE_AFFINITY && !t->soft;
	/* An actor's constructor does not wait for room: tasks in flight
	 * there may be waiting for this very actor (a restart). */
	if (t->strategy != RAYC_STRATEGY_DEFAULT &&
	    t->akind != RAYC__AK_CTOR &&
	    (p->wait.head != NULL || p->inflight.n >= RAYC__PEER_WINDOW)) {
		peer_wait_push(rt, net, t, (uint32_t)where);
		return true;
	}
	if (send_task_locked(rt, net, t, (uint32_t)where) == RAYC__SEND_OK)
		return true;
	/* Could not reach that peer: a task that must run there waits for
	 * a connection (or its death); others run here if they can, else
	 * wait. */
	if (hard) {
		peer_wait_push(rt, net, t, (uint32_t)where);
		return true;
	}
	if (rayc__sched_feasible(rt, t->sclass->demand))
		return false;
	wait_push(rt, t);
	return true;
}

typedef struct pump_arg {
	rayc__net *net;
	uint32_t peer;
} pump_arg;

/* A task queued here, offered by the scheduler: send it to a->peer while
 * that peer has room and this one is over the threshold. */
static int pump_one(rayc__rt *rt, rayc__task *q, const int64_t *demand,
                    void *arg) RAYC_REQUIRES(rt->mu)
{
	pump_arg *a = arg;
	rayc__peer *p = &a->net->peers[a->peer];

	/* p's view (alive, totals) under net->mu, which rewrites it. */
	rayc__mutex_lock(&a->net->mu);
	bool stop = !p->alive || (int)p->inflight.n >= peer_cap(p) ||
	            local_util_locked(rt) < RAYC__PLACE_UTIL;
	bool fits = true;
	for (int k = 0; k < atomic_load(&rt->nres) && !stop; k++)
		fits &= demand[k] <= p->total[k];
	rayc__mutex_unlock(&a->net->mu);
	if (stop)
		return RAYC__OFFER_STOP;
	if (q->foreign || q->strategy != RAYC_STRATEGY_DEFAULT)
		return RAYC__OFFER_NEXT;
	if (!fits)
		return RAYC__OFFER_NEXT_CLASS;
	rayc__sched_dequeue_locked(rt, q);
	if (send_task_locked(rt, a->net, q, a->peer) != RAYC__SEND_OK) {
		rayc__sched_enqueue_local_locked(rt, q);
		return RAYC__OFFER_STOP;
	}
	return RAYC__OFFER_NEXT;
}

/* Whether every task the walk has left to visit (left of them) is of a
 * class it passes over: stuck[k] has sclass->nrwait tasks waiting, seen[k]
 * of them visited. */
static bool only_stuck_left(rayc__sclass *const *stuck, const uint64_t *seen,
                            int nstuck, uint64_t left)
{
	uint64_t s = 0;

	for (int k = 0; k < nstuck; k++)
		if (stuck[k]->nrwait > seen[k])
			s += stuck[k]->nrwait - seen[k];
	return s >= left;
}

#define STUCK_MAX 16

/* Capacity came free on peer: send it tasks waiting for remote room,
 * then queued local work while this peer is over the threshold.
 *
 * The waiting tasks are walked in order, but a class one of whose tasks
 * found no room anywhere is passed over from then on, its tasks left
 * where they are, in order: tasks of other classes behind them still go
 * where there is room for them (Ray queues by scheduling class as well).
 * A task placed no better in this walk than one of its class just was
 * (placing others takes room, frees none).  The walk ends once it has
 * only tasks of classes passed over left (each class counts its waiting
 * tasks, sclass->nrwait), or STUCK_MAX classes are. */
static void pump_locked(rayc__rt *rt, rayc__net *net, uint32_t peer)
	RAYC_REQUIRES(rt->mu)
{
	rayc__sclass *stuck[STUCK_MAX];
	uint64_t seen[STUCK_MAX];
	int nstuck = 0;
	uint64_t left = rt->rwait.n;

	peer_wait_send_locked(rt, net, peer);
	for (rayc__task *t = rt->rwait.head, *next; t != NULL && left > 0;
	     t = next) {
		next = t->q_next;
		left--;
		int k = 0;
		while (k < nstuck && stuck[k] != t->sclass)
			k++;
		if (k < nstuck) {
			seen[k]++;
		} else {
			rayc__sclass *sc = t->sclass;
			rayc__remote_rwait_take_locked(rt, t);
			if (!rayc__net_place_locked(rt, t))
				rayc__sched_enqueue_local_locked(rt, t);
			if (t->state != RAYC__TASK_WAIT_PEER ||
			    rt->rwait.tail != t)
				continue; /* placed, run here, or failed */
			/* No room anywhere for it: back where it was. */
			rayc__tq_remove(&rt->rwait, t);
			rayc__tq_insert_before(&rt->rwait, next, t);
			if (nstuck == STUCK_MAX)
				break;
			stuck[nstuck] = sc;
			seen[nstuck++] = 1;
		}
		if (only_stuck_left(stuck, seen, nstuck, left))
			break;
	}
	pump_arg a = { net, peer };
	rayc__sched_offer_locked(rt, pump_one, &a);
}

/* Infeasible tasks placed again (a peer that can run them may have
 * joined): one try per demand class each tick, the rest of a class that
 * is still infeasible left waiting in order. */
static void replace_infeasible_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu)
{
	rayc__sclass *stuck[16];
	int nstuck = 0;
	rayc__tq again = { 0 };

	while (rt->infeasible.head != NULL) {
		rayc__task *t = rt->infeasible.head;
		rayc__tq_remove(&rt->infeasible, t);
		bool skip = false;
		for (int i = 0; i < nstuck && !skip; i++)
			skip = stuck[i] == t->sclass;
		if (skip) {
			rayc__tq_push(&again, t);
			continue;
		}
		size_t before = rt->infeasible.n;
		if (!rayc__net_place_locked(rt, t))
			rayc__sched_enqueue_local_locked(rt, t);
		if (rt->infeasible.n > before) {
			/* Back on the list (its tail): still nowhere. */
			rayc__tq_remove(&rt->infeasible, t);
			rayc__tq_push(&again, t);
			if (nstuck < 16)
				stuck[nstuck++] = t->sclass;
		}
	}
	rt->infeasible = again;
}

void rayc__remote_pump_idle(rayc__net *net)
{
	rayc__rt *rt = net->rt;
	uint32_t want[RAYC__MAX_PEERS];
	int n = 0;

	rayc__mutex_lock(&rt->mu);
	if ((rt->queued == 0 && rt->rwait.head == NULL &&
	     rt->infeasible.head == NULL && rt->nwait_peer == 0) ||
	    atomic_load(&net->stopping) || !net->joined ||
	    atomic_load(&net->cluster_down)) {
		rayc__mutex_unlock(&rt->mu);
		return;
	}
	replace_infeasible_locked(rt);
	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		bool room = p->total[RAYC__RES_CPU] > 0 &&
		            (int)p->inflight.n < peer_cap(p);
		bool waiting = peer_wait_room(p);
		if (i != net->self && p->alive && (room || waiting) &&
		    !rayc__relink_unreachable_locked(net, i))
			want[n++] = i;
	}
	rayc__mutex_unlock(&net->mu);
	for (int k = 0; k < n; k++)
		pump_locked(rt, net, want[k]);
	rayc__mutex_unlock(&rt->mu);
}

/* ---- owner: results coming back ---- */

static void mark_remote_locked(rayc__rt *rt, rayc__obj *o, uint32_t at,
                               rayc_type type, size_t len)
	RAYC_REQUIRES(rt->mu)
{
	o->type = type;
	o->len = len;
	o->loc = at;
	rayc__obj_mark_available_locked(rt, o, RAYC__OBJ_REMOTE);
}

/* A stale answer's large returns, kept for us on peer: the ones we do
 * not have there (frees[], as return indices) are freed. */
static int stale_frees_locked(rayc__rt *rt, uint32_t peer, rayc_task_id id,
                              rayc__rd *rd, uint32_t *frees)
	RAYC_REQUIRES(rt->mu)
{
	uint32_t n = rayc__r_u32(rd);
	int nfree = 0;

	for (uint32_t i = 0; i < n && !rd->bad && nfree < 4096; i++) {
		bool inl = rayc__r_u8(rd) != 0;
		(void)rayc__r_u8(rd);
		size_t len;
		if (inl) {
			(void)rayc__r_blob(rd, &len);
			continue;
		}
		(void)rayc__r_u64(rd);
		rayc__obj *o = rayc__obj_find_locked(rt, rayc__return_id(id, i));
		if (!rd->bad && (o == NULL || o->loc != peer))
			frees[nfree++] = i;
	}
	return nfree;
}

/* t failed on peer because arguments (listed in rd) were lost there.
 * If they are all ours, rebuild the lost ones from lineage and send t
 * again once they are back, as a local rayc_get would; true if so. */
static bool rebuild_args_locked(rayc__rt *rt, rayc__net *net, rayc__task *t,
                                rayc__rd *rd, uint32_t peer)
	RAYC_REQUIRES(rt->mu)
{
	uint32_t n = rayc__r_u32(rd);

	if (rd->bad || n == 0 || n > t->nargs ||
	    t->arg_redo >= RAYC__ARG_REDO_MAX)
		return false;
	for (uint32_t k = 0; k < n; k++) {
		rayc_object_id id = rayc__r_oid(rd);
		rayc__obj *o = NULL;
		for (uint32_t i = 0; i < t->nargs && o == NULL && !rd->bad; i++)
			if (t->args[i].ref != NULL &&
			    t->args[i].ref->id.hi == id.hi &&
			    t->args[i].ref->id.lo == id.lo)
				o = t->args[i].ref;
		if (o == NULL || o->owner != 0)
			return false; /* not ours to rebuild */
		if (atomic_load(&o->state) != RAYC__OBJ_REMOTE)
			continue; /* here, lost already, or being rebuilt */
		/* The executor found no copy where we thought one was. */
		uint32_t at = o->loc;
		o->loc = 0;
		atomic_store(&o->state, RAYC__OBJ_LOST);
		if (at != 0 && at != net->self)
			rayc__remote_send_small(net, at, RAYC__MSG_FREE, o->id, 0);
	}
	t->arg_redo++;
	rayc__log(RAYC_LOG_DEBUG, "RAYC-TASK-ARG-LOST", "task %s: an argument "
	          "was lost on peer %u; rebuilding it and sending the task "
	          "again", t->fn->name, peer);
	(void)rayc__task_resolve_args_locked(rt, t);
	return true;
}

/* The task of id on a peer's in-flight list (the tasks sent to it and not
 * answered): how a task of no returns, which has no entry to find it by,
 * is found, and a call another peer made to an actor owned here and sent
 * on to the peer it lives on (its returns are that peer's, with no
 * lineage here). */
static rayc__task *inflight_find_locked(rayc__tq *q, rayc_task_id id)
{
	for (rayc__task *t = q->head; t != NULL; t = t->q_next) {
		rayc_task_id w = wire_id(t);
		if (w.hi == id.hi && w.lo == id.lo)
			return t;
	}
	return NULL;
}

/* Acknowledgements (wire.h: ACK): the answers we have from a peer, so
 * that it lets go of its records of them (xrec.c) at once, instead of
 * keeping each 10 s or until 200,000 newer push it out.  Kept per peer
 * and sent ACK_BATCH at a time, corked (with what the same answers make
 * room for), the rest by the loop's next tick.  One lost (with its
 * connection) leaves a record to go by age, as before. */
#define ACK_BATCH 256

static void acks_send_locked(rayc__net *net, uint32_t peer, bool cork)
	RAYC_REQUIRES(net->rt->mu)
{
	rayc__peer *p = &net->peers[peer];
	rayc__conn *c = p->nacks > 0 ? rayc__net_conn_have(net, peer) : NULL;

	if (c != NULL) {
		rayc__wbuf *b = rayc__conn_begin(c);
		size_t before = b->len;
		size_t f = rayc__w_frame_begin(b, RAYC__MSG_ACK, net->self);
		rayc__w_u32(b, p->nacks);
		rayc__w_bytes(b, p->acks.p, p->acks.len);
		rayc__w_frame_end_len(b, f, 0);
		if (cork) {
			/* Flagged first: the uncork after this answer (or
			 * the tick's) sends it. */
			atomic_store(&p->corked, true);
			rayc__conn_end_frame_corked(c, b, before);
		} else {
			rayc__conn_end_frame(c, b, before);
		}
		rayc__conn_unref(c);
	}
	rayc__remote_acks_drop_locked(net, peer);
}

static void ack_locked(rayc__net *net, uint32_t peer, rayc_task_id id,
                       uint32_t dispatch) RAYC_REQUIRES(net->rt->mu)
{
	if (net->ack_off)
		return;
	rayc__peer *p = &net->peers[peer];
	size_t before = p->acks.len;

	rayc__w_u64(&p->acks, id.hi);
	rayc__w_u64(&p->acks, id.lo);
	rayc__w_u32(&p->acks, dispatch);
	if (p->acks.bad) { /* no memory: its record goes by age */
		p->acks.len = before;
		p->acks.bad = false;
		return;
	}
	if (++p->nacks >= ACK_BATCH)
		acks_send_locked(net, peer, true);
}

void rayc__remote_acks_tick(rayc__net *net)
{
	rayc__rt *rt = net->rt;

	rayc__mutex_lock(&rt->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++)
		if (net->peers[i].nacks > 0)
			acks_send_locked(net, i, false);
	rayc__mutex_unlock(&rt->mu);
}

void rayc__remote_acks_drop_locked(rayc__net *net, uint32_t peer)
{
	net->peers[peer].acks.len = 0;
	net->peers[peer].nacks = 0;
}

static void task_done(rayc__conn *c, rayc__rd *rd);

void rayc__remote_on_task_done(rayc__conn *c, rayc__rd *rd)
{
	task_done(c, rd);
	/* Whatever waits corked for this peer goes now (and with it what
	 * this answer made room for). */
	rayc__remote_uncork_peer(c->net, c->peer);
}

static void task_done(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc__rt *rt = net->rt;
	rayc_task_id id;
	char msg[1024];
	uint32_t frees[4096];
	int nfree = 0;

	id.hi = rayc__r_u64(rd);
	id.lo = rayc__r_u64(rd);
	uint32_t dispatch = rayc__r_u32(rd);
	bool failed = rayc__r_u8(rd) != 0;
	if (rd->bad)
		return;
	rayc__remote_rx_lock(rt);
	/* Whatever becomes of it, this dispatch is never sent again. */
	ack_locked(net, c->peer, id, dispatch);
	rayc__obj *o0 = rayc__obj_find_locked(rt, rayc__return_id(id, 0));
	rayc__task *t = o0 != NULL ? o0->task : NULL;
	if (t == NULL) /* no returns, or a call sent on (see above) */
		t = inflight_find_locked(&net->peers[c->peer].inflight, id);
	if (t == NULL || !t->in_flight || t->remote_peer != c->peer ||
	    t->dispatch != dispatch) {
		/* Stale: an answer sent again, or to an earlier dispatch
		 * (placed elsewhere since, or released). */
		if (!failed && !(t != NULL && t->in_flight &&
		                 t->remote_peer == c->peer))
			nfree = stale_frees_locked(rt, c->peer, id, rd, frees);
		rayc__remote_rx_unlock(rt);
		for (int i = 0; i < nfree; i++)
			rayc__remote_send_small(net, c->peer, RAYC__MSG_FREE,
			                        rayc__return_id(id, frees[i]),
			                        0);
		return;
	}
	rayc__peer *p = &net->peers[c->peer];
	rayc__tq_remove(&p->inflight, t);
	t->remote_peer = 0;
	if (t->on_lane)
		rayc__actor_lane_off_locked(t);
	if (t->akind == RAYC__AK_FINI) {
		/* An actor's destructor ran there: the instance is gone. */
		rayc__actor_fini_done_locked(rt, t);
		rayc__remote_rx_unlock(rt);
		return;
	}
	if (failed) {
		int err = (int)rayc__r_u32(rd);
		rayc__r_str(rd, msg, sizeof(msg));
		if (rd->bad)
			snprintf(msg, sizeof(msg), "task failed on peer %u",
			         c->peer);
		if (err <= 0 || err > RAYC__ERR_LAST)
			err = RAYC_ETASK;
		if (err == RAYC_ELOST && !rd->bad &&
		    rebuild_args_locked(rt, net, t, rd, c->peer)) {
			pump_locked(rt, net, c->peer);
			rayc__remote_rx_unlock(rt);
			return;
		}
		if (t->akind == RAYC__AK_CTOR)
			rayc__actor_ctor_done_locked(rt, t, false, msg, c->peer);
		atomic_fetch_add(&rt->n_failed, 1);
		for (uint32_t i = 0; i < t->nreturns; i++)
			if (t->returns[i] != NULL)
				rayc__obj_fail_locked(rt, t->returns[i], err, msg);
	} else {
		if (t->akind == RAYC__AK_CTOR)
			rayc__actor_ctor_done_locked(rt, t, true, NULL, c->peer);
		uint32_t n = rayc__r_u32(rd), i;
		for (i = 0; i < n && !rd->bad; i++) {
			bool inl = rayc__r_u8(rd) != 0;
			rayc_type type = (rayc_type)rayc__r_u8(rd);
			rayc__obj *o = i < t->nreturns ? t->returns[i] : NULL;
			if (inl) {
				size_t len;
				const void *d = rayc__r_blob(rd, &len);
				if (rd->bad || o == NULL)
					break;
				rayc__ret r;
				memset(&r, 0, sizeof(r));
				r.type = type;
				r.len = len;
				r.set = true;
				if (len <= RAYC__INLINE_BYTES) {
					memcpy(r.buf, d, len);
					r.data = r.buf;
				} else {
					r.data = malloc(len);
					if (r.data == NULL) {
						rayc__obj_fail_locked(
						        rt, o, RAYC_ENOMEM,
						        "no memory for a value "
						        "a task returned");
						continue;
					}
					memcpy(r.data, d, len);
				}
				rayc__obj_seal_locked(rt, o, &r);
			} else {
				uint64_t len = rayc__r_u64(rd);
				if (rd->bad || o == NULL)
					break;
				if (o->refcnt == 0 ||
				    atomic_load(&o->state) != RAYC__OBJ_PENDING)
					frees[nfree++] = i;
				else
					mark_remote_locked(rt, o, c->peer, type,
					                   (size_t)len);
			}
		}
		if (rd->bad || n < t->nreturns) {
			/* Returns the answer did not cover (from the one being
			 * decoded on) would stay pending for ever: they fail. */
			snprintf(msg, sizeof(msg), "task %s: peer %u sent a "
			         "malformed answer", t->fn->name, c->peer);
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-PROTO", "%s", msg);
			for (; i < t->nreturns; i++) {
				rayc__obj *o = t->returns[i];
				if (o != NULL && atomic_load(&o->state) ==
				                         RAYC__OBJ_PENDING)
					rayc__obj_fail_locked(rt, o, RAYC_EPROTO,
					                      msg);
			}
		}
	}
	rayc_task_id tid = wire_id(t); /* the ids the peer knows */
	rayc__task_done_locked(rt, t);
	pump_locked(rt, net, c->peer);
	rayc__remote_rx_unlock(rt);
	for (int i = 0; i < nfree; i++)
		rayc__remote_send_small(net, c->peer, RAYC__MSG_FREE,
		                        rayc__return_id(tid, frees[i]), 0);
}
