/* remote.c -- tasks and objects between peers: the dispatcher of their
 * frames, what a peer's death undoes, and small helpers the other files
 * share.  The work itself lives by side: owner.c (placing and sending
 * tasks, results coming back), executor.c (running tasks for other
 * owners), xfer.c (object transfers), samehost.c (reading objects in
 * place on one host), refs.c (FREE and borrowers).
 */
#include <stdio.h>
#include <stdlib.h>

#include "lineage/lineage.h"
#include "net/remote_int.h"
#include "sched/actor.h"
#include "sched/sched.h"


void rayc__remote_send_small(rayc__net *net, uint32_t peer, int type,
                             rayc_object_id id, uint32_t extra)
{
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, type, net->self);

	rayc__w_oid(&b, id);
	rayc__w_u32(&b, extra);
	rayc__w_frame_end(&b, f);
	rayc__net_send_to(net, peer, &b);
	rayc__wbuf_fini(&b);
}

void rayc__remote_handle(rayc__conn *c, int type, rayc__rd *rd)
{
	switch (type) {
	case RAYC__MSG_TASK:
		rayc__remote_on_task(c, rd);
		break;
	case RAYC__MSG_TASK_DONE:
		rayc__remote_on_task_done(c, rd);
		break;
	case RAYC__MSG_FETCH:
		rayc__remote_on_fetch(c, rd);
		break;
	case RAYC__MSG_CHUNK:
		rayc__remote_on_chunk(c, rd);
		break;
	case RAYC__MSG_MISSING:
		rayc__remote_on_missing(c, rd);
		break;
	case RAYC__MSG_LANE:
		rayc__lane_on_port(c, rd);
		break;
	case RAYC__MSG_ACK:
		rayc__xrec_on_ack(c, rd);
		break;
	case RAYC__MSG_FREE:
	case RAYC__MSG_BORROW_ADD:
	case RAYC__MSG_BORROW_DEL:
		rayc__remote_on_ref_msg(c, type, rd);
		break;
	case RAYC__MSG_KV_REQ:
	case RAYC__MSG_KV_REP:
		rayc__kv_handle(c, type, rd);
		break;
	case RAYC__MSG_ACTOR_CTL:
	case RAYC__MSG_ACTOR_CTL_REP:
		rayc__actor_ctl_handle(c, type, rd);
		break;
	case RAYC__MSG_SHM_OFFER:
		rayc__remote_on_shm_offer(c, rd);
		break;
	case RAYC__MSG_SHM_DONE: {
		rayc_object_id id = rayc__r_oid(rd);
		if (!rd->bad)
			rayc__remote_unpin(c->net, c->peer, &id);
		break;
	}
	default:
		rayc__conn_close(c, "unexpected frame");
	}
}

/* ---- one lock for a read's run of tasks and answers ---- */

/* A connection's reader (rx_begin to rx_end) keeps rt->mu from one TASK
 * or TASK_DONE frame to the next of the same read, up to RAYC__RX_HOLD
 * frames of at most RAYC__RX_HOLD_BYTES each (the next one's tag is
 * checked and its arguments copied under it): one lock for a burst
 * instead of one per task, taken from workers that would take it in
 * between.  What the last unlock does (workers woken, frames written,
 * handed-over work drained) waits for the let-go. */
#define RAYC__RX_HOLD 16
#define RAYC__RX_HOLD_BYTES 4096
static _Thread_local bool rx_in;
static _Thread_local rayc__rt *rx_held;
static _Thread_local int rx_frames;

bool rayc__remote_rx_keeps(int type, size_t len)
{
	return (type == RAYC__MSG_TASK || type == RAYC__MSG_TASK_DONE) &&
	       len <= RAYC__RX_HOLD_BYTES;
}

void rayc__remote_rx_begin(void)
{
	rx_in = true;
	rayc__sched_hold_begin();
}

void rayc__remote_rx_let_go(void) RAYC_NO_TSA
{
	rayc__rt *rt = rx_held;

	if (rt != NULL) {
		rx_held = NULL;
		rx_frames = 0;
		rayc__mutex_unlock(&rt->mu);
	}
}

int rayc__remote_rx_end(void)
{
	rayc__remote_rx_let_go();
	rx_in = false;
	return rayc__sched_hold_end();
}

/* Whether a reader is serving its read's tasks (rayc__remote_rx_serve). */
static _Atomic bool rx_serving;

void rayc__remote_rx_serve(rayc__net *net, int held, void (*on_block)(void))
{
	if (held == 0)
		return;
	bool mine = !atomic_exchange(&rx_serving, true);
	rayc__sched_serve_held(net->rt, mine ? held : 0, on_block);
	if (mine)
		atomic_store(&rx_serving, false);
}

void rayc__remote_rx_lock(rayc__rt *rt) RAYC_NO_TSA
{
	if (rx_held != rt)
		rayc__mutex_lock(&rt->mu);
}

void rayc__remote_rx_unlock(rayc__rt *rt) RAYC_NO_TSA
{
	if (rx_in && ++rx_frames < RAYC__RX_HOLD) {
		rx_held = rt;
		return;
	}
	rx_held = NULL;
	rx_frames = 0;
	rayc__mutex_unlock(&rt->mu);
}

/* ---- a peer died ---- */

/* A task is run again after the peer running it died at most this many
 * times in all, whatever its max_retries (-1 included): a task that
 * crashes its peer (a poison pill) would otherwise kill peer after peer,
 * and with them the cluster's majority.  Ray retries a crashed worker's
 * task max_retries times, then raises WorkerCrashedError. */
#define RAYC__TASK_MAX_DEATHS 3

/* What a peer's death did to the tasks it ran for us: one log line per
 * death, not one per task (a worker may die with thousands in flight). */
typedef struct death_tally {
	uint64_t retried, failed, quarantined;
	char failed_msg[256], quarantined_msg[256];
} death_tally;

/* t ran for us on peer id, which died: run it again elsewhere, or fail
 * it (RAYC_EPEERDIED) once its retries or the death limit are used up. */
static void task_peer_died_locked(rayc__rt *rt, rayc__task *t, uint32_t id,
                                  death_tally *n) RAYC_REQUIRES(rt->mu)
{
	char msg[256];

	if (t->deaths < UINT8_MAX)
		t->deaths++;
	bool quarantine = t->deaths >= RAYC__TASK_MAX_DEATHS;
	if (!quarantine &&
	    (t->max_retries < 0 || t->attempt < t->max_retries)) {
		t->attempt++;
		t->child_counter = 0;
		n->retried++;
		atomic_fetch_add(&rt->n_retried, 1);
		rayc__sched_enqueue_locked(rt, t);
		return;
	}
	if (quarantine)
		snprintf(msg, sizeof(msg), "task %s quarantined: %d peers died "
		         "while running it (the last was peer %u); it is not "
		         "run again", t->fn->name, t->deaths, id);
	else
		snprintf(msg, sizeof(msg), "task %s: peer %u died while "
		         "running it and no retries are left (max_retries %d, "
		         "%d peer deaths)", t->fn->name, id, t->max_retries,
		         t->deaths);
	n->failed++;
	if (quarantine && n->quarantined++ == 0)
		snprintf(n->quarantined_msg, sizeof(n->quarantined_msg), "%s",
		         msg);
	else if (!quarantine && n->failed - n->quarantined == 1)
		snprintf(n->failed_msg, sizeof(n->failed_msg), "%s", msg);
	atomic_fetch_add(&rt->n_failed, 1);
	for (uint32_t i = 0; i < t->nreturns; i++)
		if (t->returns[i] != NULL)
			rayc__obj_fail_locked(rt, t->returns[i], RAYC_EPEERDIED,
			                      msg);
	rayc__task_done_locked(rt, t);
}

static void log_tally(uint32_t id, const death_tally *n)
{
	uint64_t all = n->retried + n->failed;

	if (all == 0)
		return;
	if (n->failed == 0)
		rayc__log(RAYC_LOG_INFO, "RAYC-TASK-RETRY", "peer %u died "
		          "running %llu of this peer's tasks: all retried "
		          "elsewhere", id, (unsigned long long)all);
	else
		rayc__log(RAYC_LOG_WARN, "RAYC-TASK-RETRY", "peer %u died "
		          "running %llu of this peer's tasks: %llu retried "
		          "elsewhere, %llu failed (%llu quarantined)%s%s", id,
		          (unsigned long long)all,
		          (unsigned long long)n->retried,
		          (unsigned long long)n->failed,
		          (unsigned long long)n->quarantined,
		          n->failed_msg[0] != '\0' ? "; " : "", n->failed_msg);
	if (n->quarantined > 0)
		rayc__log(RAYC_LOG_WARN, "RAYC-TASK-QUARANTINE", "%s%s",
		          n->quarantined_msg,
		          n->quarantined > 1 ? " (and others like it)" : "");
}

/* Appends o to a growable list; false if out of memory. */
static bool obj_push(rayc__obj ***v, size_t *n, size_t *cap, rayc__obj *o)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		rayc__obj **d = realloc(*v, nc * sizeof(*d));
		if (d == NULL)
			return false;
		*v = d;
		*cap = nc;
	}
	(*v)[(*n)++] = o;
	return true;
}

static bool peer_dead(rayc__rt *rt, uint32_t id) RAYC_REQUIRES(rt->mu)
{
	rayc__net *net = rt->net;

	if (net == NULL || id == 0 || id >= RAYC__MAX_PEERS)
		return true;
	rayc__mutex_lock(&net->mu);
	bool dead = net->peers[id].known && !net->peers[id].alive;
	rayc__mutex_unlock(&net->mu);
	return dead;
}

void rayc__remote_actors_tick(rayc__net *net)
{
	rayc__rt *rt = net->rt;

	rayc__mutex_lock(&rt->mu);
	rayc__actors_retry_locked(rt, peer_dead);
	rayc__mutex_unlock(&rt->mu);
}

void rayc__remote_peer_died(rayc__net *net, uint32_t id)
{
	rayc__rt *rt = net->rt;
	char msg[160];
	death_tally tally = { 0 };

	rayc__mutex_lock(&rt->mu);
	rayc__peer *p = &net->peers[id];
	/* Tasks it ran for us: retry elsewhere, or fail. */
	while (p->inflight.head != NULL) {
		rayc__task *t = p->inflight.head;
		rayc__tq_remove(&p->inflight, t);
		t->remote_peer = 0;
		if (t->actor != NULL) { /* its actor restarts, or dies */
			rayc__actor_task_lost_locked(rt, t, id);
			continue;
		}
		task_peer_died_locked(rt, t, id, &tally);
	}
	/* Ours that waited for room there: placed again. */
	rayc__remote_wait_flush_locked(rt, net, id, RAYC_OK, NULL);
	rayc__remote_acks_drop_locked(net, id);
	/* Actors that lived there restart elsewhere or die; those run
	 * here for it (its own) go. */
	rayc__actors_peer_died_locked(rt, id);
	/* Tasks waiting for room: the dead peer may have been the only
	 * one that could run some of them (those wait for another). */
	for (size_t n = rt->rwait.n; n > 0 && rt->rwait.head != NULL; n--) {
		rayc__task *t = rt->rwait.head;
		rayc__remote_rwait_take_locked(rt, t);
		if (!rayc__net_place_locked(rt, t))
			rayc__sched_enqueue_local_locked(rt, t);
	}
	/* Objects whose only copy was there; copies held for it; its
	 * borrows of our objects; its objects we borrow or hold copies of
	 * (orphans: they fail with RAYC_EOWNERDIED).  Refs are dropped and
	 * orphans failed after the walk (either may free objects); a hold
	 * and a borrow are a ref each, and each orphan is held meanwhile. */
	rayc__obj *o;
	rayc__obj **drop = NULL, **orphans = NULL;
	size_t ndrop = 0, cap = 0, norphans = 0, ocap = 0;
	RAYC__IDTAB_EACH(&rt->objs, slot, o) {
		if (o->loc == id) {
			o->loc = 0;
			if (atomic_load(&o->state) == RAYC__OBJ_REMOTE)
				atomic_store(&o->state, RAYC__OBJ_LOST);
		}
		int refs = 0;
		if (o->owner == id && o->held_remote) {
			o->held_remote = false;
			refs++;
		}
		for (uint16_t i = 0; i < o->nborrowers; i++) {
			if (o->borrowers[i] == id) {
				o->borrowers[i] = o->borrowers[--o->nborrowers];
				refs++;
				break;
			}
		}
		while (refs-- > 0)
			if (!obj_push(&drop, &ndrop, &cap, o))
				break; /* kept alive: a leak, not a crash */
		if (o->owner == id && o->task == NULL && !o->owner_died) {
			if (obj_push(&orphans, &norphans, &ocap, o))
				rayc__obj_ref_locked(o);
			else
				o->owner_died = true; /* refused when read */
		}
	}
	for (size_t i = 0; i < norphans; i++) {
		rayc__obj_owner_died_locked(rt, orphans[i]);
		rayc__obj_unref_locked(rt, orphans[i]);
	}
	free(orphans);
	for (size_t i = 0; i < ndrop; i++)
		rayc__obj_unref_locked(rt, drop[i]);
	free(drop);
	rayc__mutex_unlock(&rt->mu);
	/* Transfers from it will not finish. */
	rayc__xin *x, *xt, *failed = NULL;
	rayc__mutex_lock(&net->mu);
	HASH_ITER(hh, net->xins, x, xt) {
		if (x->src == id) {
			HASH_DEL(net->xins, x); /* ours to end */
			x->next_dead = failed;
			failed = x;
		}
	}
	rayc__mutex_unlock(&net->mu);
	while (failed != NULL) {
		x = failed;
		failed = x->next_dead;
		snprintf(msg, sizeof(msg), "peer %u died while sending an "
		         "object", id);
		rayc__remote_xin_finish(net, x, false, RAYC_ELOST, msg);
	}
	/* Its arena, and our objects it was copying. */
	rayc__mutex_lock(&net->mu);
	rayc__store_view *v = net->views[id];
	net->views[id] = NULL;
	rayc__mutex_unlock(&net->mu);
	rayc__store_view_release(v); /* a copy running keeps its own hold */
	rayc__remote_unpin(net, id, NULL);
	log_tally(id, &tally);
}

/* ---- this peer lost its cluster ----
 *
 * From then on it works alone: what other peers owed it fails with
 * RAYC_ELOST saying so; what it can do by itself it still does (a new
 * task runs here if it can, an object of its own whose bytes were
 * elsewhere is rebuilt here from lineage, see xfer.c and owner.c). */

void rayc__remote_cluster_lost(rayc__net *net, const char *why)
{
	rayc__rt *rt = net->rt;
	char msg[512];

	rayc__mutex_lock(&rt->mu);
	/* Tasks other peers run for us: no TASK_DONE will come back.  They
	 * fail rather than run again here: the peer may well be alive on
	 * the other side of the cut, still running them. */
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		while (p->inflight.head != NULL) {
			rayc__task *t = p->inflight.head;
			rayc__tq_remove(&p->inflight, t);
			t->remote_peer = 0;
			snprintf(msg, sizeof(msg), "task %s: this peer lost its "
			         "cluster while peer %u ran it (%s)", t->fn->name,
			         i, why);
			rayc__remote_fail_task_locked(rt, t, RAYC_ELOST, msg);
		}
		snprintf(msg, sizeof(msg), "this peer lost its cluster (%s)",
		         why);
		rayc__remote_wait_flush_locked(rt, net, i, RAYC_ELOST, msg);
	}
	/* Tasks waiting for room on other peers. */
	while (rt->rwait.head != NULL) {
		rayc__task *t = rt->rwait.head;
		rayc__remote_rwait_take_locked(rt, t);
		snprintf(msg, sizeof(msg), "task %s: this peer lost its cluster "
		         "while the task waited for room on another peer (%s)",
		         t->fn->name, why);
		rayc__remote_fail_task_locked(rt, t, RAYC_ELOST, msg);
	}
	/* Tasks waiting for a peer that can run them. */
	while (rt->infeasible.head != NULL) {
		rayc__task *t = rt->infeasible.head;
		rayc__tq_remove(&rt->infeasible, t);
		snprintf(msg, sizeof(msg), "task %s: this peer lost its cluster "
		         "while the task waited for a peer that can run it "
		         "(%s)", t->fn->name, why);
		rayc__remote_fail_task_locked(rt, t, RAYC_ELOST, msg);
	}
	rayc__mutex_unlock(&rt->mu);
	/* Transfers from other peers will not finish. */
	rayc__xin *x, *xt, *failed = NULL;
	rayc__mutex_lock(&net->mu);
	HASH_ITER(hh, net->xins, x, xt) {
		HASH_DEL(net->xins, x); /* ours to end */
		x->next_dead = failed;
		failed = x;
	}
	rayc__mutex_unlock(&net->mu);
	snprintf(msg, sizeof(msg), "this peer lost its cluster while fetching "
	         "an object (%s)", why);
	while (failed != NULL) {
		x = failed;
		failed = x->next_dead;
		rayc__remote_xin_finish(net, x, false, RAYC_ELOST, msg);
	}
}

void rayc__remote_fini(rayc__net *net)
{
	rayc__xin *x, *xt;

	rayc__xrec_fini(net);
	/* Every connection is freed: no receiver writes into these. */
	HASH_ITER(hh, net->xins, x, xt) {
		HASH_DEL(net->xins, x);
		rayc__remote_xin_release(net, x);
	}
	for (uint32_t i = 0; i < RAYC__MAX_PEERS; i++) {
		rayc__store_view_release(net->views[i]);
		net->views[i] = NULL;
		rayc__wbuf_fini(&net->peers[i].acks);
		net->peers[i].nacks = 0;
		rayc__remote_unpin(net, i, NULL);
	}
}
