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
	case RAYC__MSG_FREE:
	case RAYC__MSG_BORROW_ADD:
	case RAYC__MSG_BORROW_DEL:
		rayc__remote_on_ref_msg(c, type, rd);
		break;
	case RAYC__MSG_KV_REQ:
	case RAYC__MSG_KV_REP:
		rayc__kv_handle(c, type, rd);
		break;
	case RAYC__MSG_SHM_OFFER:
		rayc__remote_on_shm_offer(c, rd);
		break;
	case RAYC__MSG_SHM_SUM:
		rayc__remote_on_shm_sum(c, rd);
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

/* ---- a peer died ---- */

void rayc__remote_peer_died(rayc__net *net, uint32_t id)
{
	rayc__rt *rt = net->rt;
	char msg[160];

	rayc__mutex_lock(&rt->mu);
	rayc__peer *p = &net->peers[id];
	/* Tasks it ran for us: retry elsewhere, or fail. */
	while (p->inflight.head != NULL) {
		rayc__task *t = p->inflight.head;
		rayc__tq_remove(&p->inflight, t);
		t->remote_peer = 0;
		if (t->max_retries < 0 || t->attempt < t->max_retries) {
			t->attempt++;
			t->child_counter = 0;
			rayc__log(RAYC_LOG_INFO, "RAYC-TASK-RETRY",
			          "retrying %s: peer %u died", t->fn->name, id);
			rayc__sched_enqueue_locked(rt, t);
		} else {
			snprintf(msg, sizeof(msg), "task %s: peer %u died while "
			         "running it (no retries left)", t->fn->name, id);
			atomic_fetch_add(&rt->n_failed, 1);
			for (uint32_t i = 0; i < t->nreturns; i++)
				if (t->returns[i] != NULL)
					rayc__obj_fail_locked(rt, t->returns[i],
					                      RAYC_ELOST, msg);
			rayc__task_done_locked(rt, t);
		}
	}
	/* Tasks waiting for room: the dead peer may have been the only
	 * one that could run some of them (those fail now). */
	for (size_t n = rt->rwait.n; n > 0 && rt->rwait.head != NULL; n--) {
		rayc__task *t = rt->rwait.head;
		rayc__tq_remove(&rt->rwait, t);
		if (!rayc__net_place_locked(rt, t))
			rayc__sched_enqueue_local_locked(rt, t);
	}
	/* Objects whose only copy was there; copies held for it; its
	 * borrows of our objects.  Refs are dropped after the walk (a drop
	 * may free objects); a hold and a borrow are a ref each. */
	rayc__obj *o, *tmp;
	rayc__obj **drop = NULL;
	size_t ndrop = 0, cap = 0;
	HASH_ITER(hh, rt->objs, o, tmp) {
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
		while (refs-- > 0) {
			if (ndrop == cap) {
				size_t nc = cap ? cap * 2 : 64;
				rayc__obj **d = realloc(drop, nc * sizeof(*d));
				if (d == NULL)
					break; /* kept alive: a leak, not a crash */
				drop = d;
				cap = nc;
			}
			drop[ndrop++] = o;
		}
	}
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
		rayc__remote_unpin(net, i, NULL);
	}
}
