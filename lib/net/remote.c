/* remote.c -- tasks and objects between peers.
 *
 * Owner side.  A ready task goes through rayc__net_place_locked: the
 * placement policy (lib/sched/place.c) picks this peer or another from
 * the coordinator's view, corrected by the tasks this owner already has
 * in flight there (at most `cap` per peer; the rest wait here and are
 * pumped out as TASK_DONEs come back).  The TASK frame carries the spec:
 * function name, demand by resource name, and arguments by value; ref
 * arguments carry the object id, its owner, a peer holding a copy, and
 * the bytes themselves when small.  TASK_DONE brings small returns back
 * inline; large ones stay where they were made (the primary copy) and
 * the owner marks them REMOTE with that location.
 *
 * Executor side.  A TASK becomes an ordinary local task marked foreign:
 * its ref arguments become local entries, sealed from the inline bytes
 * or fetched (FETCH, then CHUNKs) from the peer named in the spec; it is
 * never placed again.  When it finishes, TASK_DONE goes to the owner and
 * the executor keeps only the large returns, for the owner, until FREE.
 *
 * Borrowers.  A task that hands out a ref to an object another peer owns
 * (rayc_arg_ref) registers this peer with the owner (BORROW_ADD); when
 * the entry's last local ref goes, BORROW_DEL.  The owner counts each
 * borrower as a reference, so the object lives while any peer holds it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "net/net_int.h"
#include "registry.h"
#include "sched/place.h"
#include "sched/sched.h"


#define PEER_CAP_MIN 32
#define PEER_CAP_PER_CPU 16

static void w_oid(rayc__wbuf *b, rayc_object_id id)
{
	rayc__w_u64(b, id.hi);
	rayc__w_u64(b, id.lo);
}

static rayc_object_id r_oid(rayc__rd *rd)
{
	rayc_object_id id;

	id.hi = rayc__r_u64(rd);
	id.lo = rayc__r_u64(rd);
	return id;
}

static void send_small(rayc__net *net, uint32_t peer, int type,
                       rayc_object_id id, uint32_t extra)
{
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, type, net->self);

	w_oid(&b, id);
	rayc__w_u32(&b, extra);
	rayc__w_frame_end(&b, f);
	rayc__net_send_to(net, peer, &b);
	rayc__wbuf_fini(&b);
}

/* ---- owner: placing and sending tasks ---- */

static void encode_task(rayc__rt *rt, rayc__net *net, rayc__wbuf *b,
                        rayc__task *t) RAYC_REQUIRES(rt->mu)
{
	size_t f = rayc__w_frame_begin(b, RAYC__MSG_TASK, net->self);

	rayc__w_u64(b, t->id.hi);
	rayc__w_u64(b, t->id.lo);
	rayc__w_str(b, t->fn->name);
	rayc__w_u32(b, (uint32_t)t->attempt);
	rayc__w_u32(b, (uint32_t)t->max_retries);
	rayc__w_u8(b, t->retry_exceptions);
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
		default: {
			rayc__obj *o = a->ref;
			int st = atomic_load(&o->state);
			bool here = st == RAYC__OBJ_READY;
			w_oid(b, o->id);
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
	rayc__w_frame_end(b, f);
}

static bool send_task_locked(rayc__rt *rt, rayc__net *net, rayc__task *t,
                             uint32_t peer) RAYC_REQUIRES(rt->mu)
{
	rayc__conn *c = rayc__net_conn_to(net, peer);

	if (c == NULL)
		return false;
	rayc__wbuf *b = rayc__conn_begin(c);
	size_t before = b->len;
	encode_task(rt, net, b, t);
	bool bad = b->bad;
	if (bad) {
		b->len = before;
		b->bad = false;
	}
	rayc__conn_end(c);
	rayc__conn_unref(c);
	if (bad)
		return false;
	t->state = RAYC__TASK_RUNNING;
	t->remote_peer = peer;
	rayc__tq_push(&net->peers[peer].inflight, t);
	return true;
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

	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		if (!p->alive)
			continue;
		rayc__place_peer *q = &pp[n++];
		q->id = i;
		q->self = i == net->self;
		q->total = q->self ? rt->res_total : p->total;
		q->avail = q->self ? rt->res_avail : p->avail;
		q->inflight = (int)p->inflight.n;
		q->cap = peer_cap(p);
		q->arg_bytes = 0;
	}
	uint32_t self = net->self;
	rayc__mutex_unlock(&net->mu);
	if (n <= 1 && t->strategy != RAYC_STRATEGY_NODE_AFFINITY)
		return 0;
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
	};
	int r = rayc__place(&rq, pp, n);
	if (r >= 0)
		return pp[r].id;
	return r == RAYC__PLACE_HERE ? 0 : r;
}

static void fail_task_locked(rayc__rt *rt, rayc__task *t, int err,
                             const char *msg) RAYC_REQUIRES(rt->mu)
{
	t->in_flight = true;
	for (uint32_t i = 0; i < t->nreturns; i++)
		if (t->returns[i] != NULL)
			rayc__obj_fail_locked(rt, t->returns[i], err, msg);
	atomic_fetch_add(&rt->n_failed, 1);
	rayc__task_done_locked(rt, t);
}

static void wait_push(rayc__rt *rt, rayc__task *t) RAYC_REQUIRES(rt->mu)
{
	t->state = RAYC__TASK_QUEUED;
	rayc__tq_push(&rt->rwait, t);
}

bool rayc__net_place_locked(rayc__rt *rt, rayc__task *t)
{
	rayc__net *net = rt->net;

	if (net == NULL || t->foreign || atomic_load(&net->stopping) ||
	    !net->joined)
		return false;
	int64_t where = decide_locked(rt, net, t);
	if (where == 0)
		return false;
	if (where == RAYC__PLACE_NOWHERE) {
		char msg[160];
		if (t->strategy == RAYC_STRATEGY_NODE_AFFINITY)
			snprintf(msg, sizeof(msg), "task %s: peer %u (hard node "
			         "affinity) is not alive or cannot run it",
			         t->fn->name, t->node_id);
		else
			snprintf(msg, sizeof(msg), "task %s: no live peer has "
			         "the resources it needs", t->fn->name);
		fail_task_locked(rt, t, RAYC_EINFEASIBLE, msg);
		return true;
	}
	if (where == RAYC__PLACE_WAIT) {
		wait_push(rt, t);
		return true;
	}
	if (send_task_locked(rt, net, t, (uint32_t)where))
		return true;
	/* Could not reach that peer: run here if we can, else wait. */
	if (rayc__sched_feasible(rt, t->sclass->demand))
		return false;
	wait_push(rt, t);
	return true;
}

/* Capacity came free on peer: send it tasks waiting for remote room,
 * then queued local work while this peer is over the threshold. */
static void pump_locked(rayc__rt *rt, rayc__net *net, uint32_t peer)
	RAYC_REQUIRES(rt->mu)
{
	rayc__task *t = rt->rwait.head;

	while (t != NULL) {
		rayc__task *next = t->q_next;
		rayc__tq_remove(&rt->rwait, t);
		if (!rayc__net_place_locked(rt, t))
			rayc__sched_enqueue_local_locked(rt, t);
		if (t->state == RAYC__TASK_QUEUED && rt->rwait.tail == t)
			break; /* went back to waiting: no room anywhere */
		t = next;
	}
	rayc__peer *p = &net->peers[peer];
	int cap = peer_cap(p);
	for (rayc__sclass *c = rt->classes; c != NULL; c = c->next) {
		rayc__task *q = c->q.head;
		while (q != NULL && p->alive && (int)p->inflight.n < cap &&
		       local_util_locked(rt) >= RAYC__PLACE_UTIL) {
			rayc__task *next = q->q_next;
			if (!q->foreign && q->strategy == RAYC_STRATEGY_DEFAULT) {
				bool ok = true;
				for (int k = 0; k < atomic_load(&rt->nres); k++)
					if (c->demand[k] > p->total[k])
						ok = false;
				if (!ok)
					break;
				rayc__sched_dequeue_locked(rt, q);
				if (!send_task_locked(rt, net, q, peer)) {
					rayc__sched_enqueue_local_locked(rt, q);
					return;
				}
			}
			q = next;
		}
	}
}

/* ---- executor: running tasks for other owners ---- */

typedef struct refarg {
	rayc_object_id id;
	uint32_t owner, loc;
	bool inl;
	rayc_type type;
	const void *data;
	size_t len;
} refarg;

static void reply_error(rayc__net *net, uint32_t owner, rayc_task_id id,
                        int err, const char *msg)
{
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_TASK_DONE, net->self);

	rayc__w_u64(&b, id.hi);
	rayc__w_u64(&b, id.lo);
	rayc__w_u8(&b, 1);
	rayc__w_u32(&b, (uint32_t)err);
	rayc__w_str(&b, msg);
	rayc__w_frame_end(&b, f);
	rayc__net_send_to(net, owner, &b);
	rayc__wbuf_fini(&b);
}

/* Makes a local entry for a ref argument of a foreign task. */
static rayc__obj *arg_entry_locked(rayc__rt *rt, rayc__net *net,
                                   const refarg *ra, bool *fetch)
	RAYC_REQUIRES(rt->mu)
{
	rayc__obj *o = rayc__obj_find_locked(rt, ra->id);

	*fetch = false;
	if (o != NULL) {
		*fetch = atomic_load(&o->state) == RAYC__OBJ_REMOTE;
		return o;
	}
	if (ra->owner == net->self)
		return NULL; /* ours, and gone */
	o = rayc__obj_new_locked(rt, ra->id);
	if (o == NULL)
		return NULL;
	o->owner = ra->owner;
	o->loc = ra->loc;
	if (ra->inl) {
		o->type = ra->type;
		o->len = ra->len;
		if (ra->len <= RAYC__INLINE_BYTES) {
			memcpy(o->inline_buf, ra->data, ra->len);
			o->data = o->inline_buf;
		} else {
			o->data = malloc(ra->len);
			if (o->data == NULL)
				abort();
			memcpy(o->data, ra->data, ra->len);
			rt->inline_bytes += ra->len;
		}
		atomic_store(&o->state, RAYC__OBJ_READY);
	} else {
		*fetch = true;
	}
	return o;
}

static void on_task(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc__rt *rt = net->rt;
	rayc_task_id id;
	char fname[256];
	char msg[320];

	id.hi = rayc__r_u64(rd);
	id.lo = rayc__r_u64(rd);
	rayc__r_str(rd, fname, sizeof(fname));
	int attempt = (int)rayc__r_u32(rd);
	int max_retries = (int)rayc__r_u32(rd);
	bool retry_exc = rayc__r_u8(rd) != 0;
	uint32_t nret = rayc__r_u32(rd);
	int nd = rayc__r_u8(rd);
	int64_t demand[RAYC__MAX_RES] = { 0 };
	bool feasible = true;
	char rname[64];
	for (int k = 0; k < nd && !rd->bad; k++) {
		rayc__r_str(rd, rname, sizeof(rname));
		uint64_t q = rayc__r_u64(rd);
		int idx = rayc__res_find(rt, rname);
		if (idx < 0 || rt->res_total[idx] < (int64_t)q)
			feasible = false;
		else
			demand[idx] += (int64_t)q;
	}
	uint32_t nargs = rayc__r_u32(rd);
	if (rd->bad || nret == 0 || nret > 4096 ||
	    nargs > rayc__rd_left(rd) / 9 + 1) {
		rayc__conn_close(c, "bad TASK");
		return;
	}
	rayc_arg *args = calloc(nargs + 1, sizeof(rayc_arg));
	refarg *refs = calloc(nargs + 1, sizeof(refarg));
	size_t extra = 0;
	if (args == NULL || refs == NULL)
		abort();
	for (uint32_t i = 0; i < nargs && !rd->bad; i++) {
		rayc_arg *a = &args[i];
		a->type = (rayc_type)rayc__r_u8(rd);
		const void *p;
		size_t n;
		switch (a->type) {
		case RAYC_TYPE_I64:
		case RAYC_TYPE_F64:
			p = rayc__r_bytes(rd, 8);
			if (p != NULL)
				memcpy(&a->v, p, 8);
			break;
		case RAYC_TYPE_STR:
		case RAYC_TYPE_BYTES:
			p = rayc__r_blob(rd, &n);
			a->v.ptr = p != NULL ? p : "";
			a->len = n;
			if (a->type == RAYC_TYPE_STR) {
				/* by-value strings are copied NUL-terminated */
				if (p == NULL || memchr(p, '\0', n) != NULL)
					rd->bad = true;
				a->type = RAYC_TYPE_BYTES;
				refs[i].type = RAYC_TYPE_STR;
			}
			extra += ((n + 1 + 7) & ~(size_t)7);
			break;
		case RAYC_TYPE_REF: {
			refarg *ra = &refs[i];
			ra->id = r_oid(rd);
			ra->owner = rayc__r_u32(rd);
			ra->loc = rayc__r_u32(rd);
			ra->inl = rayc__r_u8(rd) != 0;
			if (ra->inl) {
				ra->type = (rayc_type)rayc__r_u8(rd);
				ra->data = rayc__r_blob(rd, &ra->len);
			}
			if (ra->owner == 0 || ra->owner >= RAYC__MAX_PEERS ||
			    ra->loc >= RAYC__MAX_PEERS)
				rd->bad = true;
			break;
		}
		default:
			rd->bad = true;
		}
	}
	if (rd->bad) {
		free(args);
		free(refs);
		rayc__conn_close(c, "bad TASK arguments");
		return;
	}
	const rayc__fn_entry *fn = rayc__registry_find(fname);
	if (fn == NULL || !feasible) {
		snprintf(msg, sizeof(msg),
		         fn == NULL ? "function '%s' is not registered on peer %u"
		                    : "task %s: peer %u lacks its resources",
		         fname, net->self);
		free(args);
		free(refs);
		reply_error(net, c->peer, id,
		            fn == NULL ? RAYC_ENOFUNC : RAYC_EINFEASIBLE, msg);
		return;
	}
	rayc__task *t = rayc__task_alloc(args, nargs, nret, extra);
	if (t == NULL)
		abort();
	for (uint32_t i = 0; i < nargs; i++)
		if (refs[i].type == RAYC_TYPE_STR) {
			/* restore the type; the copy is NUL-terminated */
			((char *)t->args[i].v.ptr)[t->args[i].len] = '\0';
			t->args[i].type = RAYC_TYPE_STR;
		}
	t->id = id;
	t->fn = fn;
	t->attempt = attempt;
	t->max_retries = max_retries;
	t->retry_exceptions = retry_exc;
	t->foreign = true;
	t->owner = c->peer;
	rayc__mutex_lock(&rt->mu);
	/* Cached copies of this task's returns (fetched before the owner lost
	 * them and ran the task again, here) make way for the new run. */
	bool dup = false;
	for (uint32_t i = 0; i < nret && !dup; i++) {
		rayc_object_id rid = rayc__return_id(id, i);
		rayc__obj *o = rayc__obj_find_locked(rt, rid);
		if (o != NULL && rayc__cache_drop_locked(rt, o))
			o = rayc__obj_find_locked(rt, rid); /* still lineage? */
		dup = o != NULL;
	}
	if (dup) {
		rayc__mutex_unlock(&rt->mu);
		free(t);
		free(args);
		free(refs);
		return; /* a duplicate of a task already here */
	}
	t->sclass = rayc__sched_class_locked(rt, demand);
	if (t->sclass == NULL)
		abort();
	bool lost = false;
	rayc__obj *tofetch[64];
	int nfetch = 0;
	for (uint32_t i = 0; i < nargs; i++) {
		if (args[i].type != RAYC_TYPE_REF)
			continue;
		bool fetch;
		rayc__obj *o = arg_entry_locked(rt, net, &refs[i], &fetch);
		if (o == NULL) {
			lost = true;
			continue;
		}
		t->args[i].ref = o;
		o->lineage_cnt++;
		if (fetch && nfetch < 64)
			tofetch[nfetch++] = o;
	}
	for (uint32_t i = 0; i < nret; i++) {
		rayc__obj *o = rayc__obj_new_locked(rt, rayc__return_id(id, i));
		if (o == NULL)
			abort();
		o->refcnt = 1;
		o->owner = c->peer;
		t->returns[i] = o;
	}
	t->live_returns = nret;
	t->in_flight = true;
	rt->nlineage++;
	if (lost) {
		fail_task_locked(rt, t, RAYC_ELOST,
		                 "an argument of this task was lost");
	} else {
		for (int i = 0; i < nfetch; i++)
			rayc__net_fetch_locked(rt, tofetch[i]);
		(void)rayc__task_resolve_args_locked(rt, t);
	}
	rayc__mutex_unlock(&rt->mu);
	free(args);
	free(refs);
}

void rayc__net_task_finished_locked(rayc__rt *rt, rayc__task *t)
{
	rayc__net *net = rt->net;
	rayc__wbuf b = { 0 };
	bool keep[4096];
	rayc__obj *err = NULL;

	for (uint32_t i = 0; i < t->nreturns; i++) {
		rayc__obj *o = t->returns[i];
		keep[i] = false;
		if (o != NULL && atomic_load(&o->state) == RAYC__OBJ_ERROR &&
		    err == NULL)
			err = o;
	}
	if (net != NULL) {
		size_t f = rayc__w_frame_begin(&b, RAYC__MSG_TASK_DONE,
		                               net->self);
		rayc__w_u64(&b, t->id.hi);
		rayc__w_u64(&b, t->id.lo);
		rayc__w_u8(&b, err != NULL);
		if (err != NULL) {
			rayc__w_u32(&b, (uint32_t)err->err);
			rayc__w_str(&b, err->data != NULL ? (char *)err->data
			                                  : "task failed");
		} else {
			rayc__w_u32(&b, t->nreturns);
			for (uint32_t i = 0; i < t->nreturns; i++) {
				rayc__obj *o = t->returns[i];
				bool ok = o != NULL &&
				          atomic_load(&o->state) == RAYC__OBJ_READY;
				bool inl = !ok || o->len <= RAYC__NET_INLINE_MAX;
				rayc__w_u8(&b, inl);
				rayc__w_u8(&b, ok ? (uint8_t)o->type
				                  : (uint8_t)RAYC_TYPE_BYTES);
				if (inl)
					rayc__w_blob(&b, ok ? o->data : NULL,
					             ok ? o->len : 0);
				else
					rayc__w_u64(&b, o->len);
				keep[i] = !inl;
			}
		}
		rayc__w_frame_end(&b, f);
		rayc__net_send_to(net, t->owner, &b);
		rayc__wbuf_fini(&b);
	}
	/* An owner that died meanwhile will never say FREE. */
	bool owner_alive = rayc__net_peer_alive(rt, t->owner);
	for (uint32_t i = 0; i < t->nreturns; i++) {
		rayc__obj *o = t->returns[i];
		t->returns[i] = NULL;
		if (o == NULL)
			continue;
		if (keep[i] && owner_alive)
			o->held_remote = true; /* until the owner says FREE */
		else
			rayc__obj_unref_locked(rt, o);
	}
	t->live_returns = 0;
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

static void on_task_done(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc__rt *rt = net->rt;
	rayc_task_id id;
	char msg[1024];
	uint32_t frees[4096];
	int nfree = 0;

	id.hi = rayc__r_u64(rd);
	id.lo = rayc__r_u64(rd);
	bool failed = rayc__r_u8(rd) != 0;
	if (rd->bad)
		return;
	rayc__mutex_lock(&rt->mu);
	rayc__obj *o0 = rayc__obj_find_locked(rt, rayc__return_id(id, 0));
	rayc__task *t = o0 != NULL ? o0->task : NULL;
	if (t == NULL || !t->in_flight || t->remote_peer != c->peer) {
		rayc__mutex_unlock(&rt->mu);
		return; /* stale: retried elsewhere or released */
	}
	rayc__peer *p = &net->peers[c->peer];
	rayc__tq_remove(&p->inflight, t);
	t->remote_peer = 0;
	if (failed) {
		int err = (int)rayc__r_u32(rd);
		rayc__r_str(rd, msg, sizeof(msg));
		if (rd->bad)
			snprintf(msg, sizeof(msg), "task failed on peer %u",
			         c->peer);
		if (err <= 0 || err > RAYC_EEXIST)
			err = RAYC_ETASK;
		atomic_fetch_add(&rt->n_failed, 1);
		for (uint32_t i = 0; i < t->nreturns; i++)
			if (t->returns[i] != NULL)
				rayc__obj_fail_locked(rt, t->returns[i], err, msg);
	} else {
		uint32_t n = rayc__r_u32(rd);
		for (uint32_t i = 0; i < n && !rd->bad; i++) {
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
					if (r.data == NULL)
						abort();
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
		if (rd->bad)
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-PROTO",
			          "bad TASK_DONE from peer %u", c->peer);
	}
	rayc_task_id tid = t->id;
	rayc__task_done_locked(rt, t);
	pump_locked(rt, net, c->peer);
	rayc__mutex_unlock(&rt->mu);
	for (int i = 0; i < nfree; i++)
		send_small(net, c->peer, RAYC__MSG_FREE, rayc__return_id(tid, frees[i]), 0);
}

/* ---- objects: fetch, chunks, free ---- */

static void xin_release(rayc__net *net, rayc__xin *x);
static bool same_host_on(void);
static bool looks_local_locked(rayc__net *net, uint32_t peer)
	RAYC_REQUIRES(net->mu);
static void offer(rayc__conn *c, rayc__obj *o, rayc_object_id id,
                  const void *data, size_t len, rayc_type type,
                  uint64_t off);

void rayc__net_fetch_locked(rayc__rt *rt, rayc__obj *o)
{
	rayc__net *net = rt->net;

	if (o->fetching)
		return;
	rt->n_fetches++;
	uint32_t src = o->loc;
	if (net == NULL || src == 0 || src == net->self ||
	    !rayc__net_peer_alive(rt, src)) {
		/* Nowhere to get it from. */
		o->loc = 0;
		if (o->owner == 0) {
			atomic_store(&o->state, RAYC__OBJ_LOST);
		} else {
			atomic_store(&o->state, RAYC__OBJ_PENDING);
			rayc__obj_fail_locked(rt, o, RAYC_ELOST,
			                      "object lost: no live peer holds it");
		}
		return;
	}
	rayc__xin *x = calloc(1, sizeof(*x));
	if (x == NULL)
		abort();
	x->id = o->id;
	x->src = src;
	rayc__mutex_lock(&net->mu);
	rayc__xin *old;
	bool free_old = false;
	HASH_FIND(hh, net->xins, &o->id, sizeof(o->id), old);
	if (old != NULL) {
		HASH_DEL(net->xins, old); /* superseded */
		free_old = !old->busy;
		old->dead = true; /* if busy, its receiver frees it */
	}
	HASH_ADD(hh, net->xins, id, sizeof(x->id), x);
	uint32_t flags = same_host_on() && !net->no_shm[src] &&
	                                 looks_local_locked(net, src)
	                         ? RAYC__FETCH_SAME_HOST
	                         : 0;
	rayc__mutex_unlock(&net->mu);
	if (free_old)
		xin_release(net, old);
	o->fetching = true;
	atomic_store(&o->state, RAYC__OBJ_PENDING);
	send_small(net, src, RAYC__MSG_FETCH, o->id, flags);
}

static void on_fetch(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc__rt *rt = net->rt;
	rayc_object_id id = r_oid(rd);
	uint32_t flags = rayc__r_u32(rd);

	if (rd->bad)
		return;
	rayc__mutex_lock(&rt->mu);
	rayc__obj *o = rayc__obj_find_locked(rt, id);
	int st = o != NULL ? atomic_load(&o->state) : -1;
	if (st == RAYC__OBJ_READY && (flags & RAYC__FETCH_SAME_HOST) &&
	    o->block != NULL && o->len >= RAYC__NET_INLINE_MAX &&
	    same_host_on()) {
		/* A peer on this host: it copies straight out of our
		 * arena; pinned until it says SHM_DONE or dies. */
		rayc__obj_ref_locked(o);
		rayc__store *store = rt->store;
		uint64_t off = rayc__store_block_offset(o->block) +
		               (uint64_t)((const uint8_t *)o->data -
		                          (const uint8_t *)rayc__store_ptr(
		                                  store, o->block));
		rayc__mutex_unlock(&rt->mu);
		offer(c, o, id, o->data, o->len, o->type, off);
		return;
	}
	if (st == RAYC__OBJ_READY) {
		rayc__obj_ref_locked(o); /* pinned while we send */
		rayc__mutex_unlock(&rt->mu);
		rayc__xout *x = calloc(1, sizeof(*x));
		if (x == NULL)
			abort();
		x->id = id;
		x->obj = o;
		x->data = o->data;
		x->len = o->len;
		x->type = o->type;
		rayc__conn_add_xout(c, x);
		return;
	}
	uint32_t redirect = st == RAYC__OBJ_REMOTE ? o->loc : 0;
	rayc__mutex_unlock(&rt->mu);
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_MISSING, net->self);
	w_oid(&b, id);
	rayc__w_u32(&b, redirect);
	rayc__w_frame_end(&b, f);
	rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
}

void rayc__remote_xout_done(rayc__net *net, rayc__xout *x)
{
	rayc__rt *rt = net->rt;

	rayc__mutex_lock(&rt->mu);
	rayc__obj_unref_locked(rt, x->obj);
	rayc__mutex_unlock(&rt->mu);
	free(x);
}

/* We are done reading object id in peer's arena: it may unpin it. */
static void send_shm_done(rayc__net *net, uint32_t peer, rayc_object_id id)
{
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_SHM_DONE, net->self);

	w_oid(&b, id);
	rayc__w_frame_end(&b, f);
	rayc__net_send_to(net, peer, &b);
	rayc__wbuf_fini(&b);
}

/* Lets go of what x's destination is: a block, heap, or (same host) the
 * holder's arena. */
static void xin_free_dst(rayc__net *net, rayc__xin *x)
{
	if (x->view != NULL) {
		rayc__store_view_release(x->view);
		send_shm_done(net, x->src, x->id);
		x->view = NULL;
	} else if (x->block != NULL) {
		rayc__store_free(net->rt->store, x->block);
	} else {
		free(x->dst);
	}
	x->block = NULL;
	x->dst = NULL;
}

static void xin_release(rayc__net *net, rayc__xin *x)
{
	xin_free_dst(net, x);
	free(x);
}

void rayc__net_view_done_locked(rayc__rt *rt, rayc__obj *o)
{
	rayc__store_view_release(o->view);
	o->view = NULL;
	if (rt->net != NULL)
		send_shm_done(rt->net, o->view_src, o->id);
}

/* Takes x out of the table if it is still there: the caller then owns
 * its ending. */
static bool xin_take_locked(rayc__net *net, rayc__xin *x)
	RAYC_REQUIRES(net->mu)
{
	rayc__xin *cur;

	HASH_FIND(hh, net->xins, &x->id, sizeof(x->id), cur);
	if (cur != x)
		return false;
	HASH_DEL(net->xins, x);
	return true;
}

/* Frees x, taken out of the table, or leaves that to its receiver. */
static void xin_drop(rayc__net *net, rayc__xin *x)
{
	rayc__mutex_lock(&net->mu);
	bool busy = x->busy;
	x->dead = true;
	rayc__mutex_unlock(&net->mu);
	if (!busy)
		xin_release(net, x);
}

/* A transfer ended (all bytes in, or failed): hand the bytes to the
 * entry if it still wants them.  The caller took x out of the table. */
static void xin_finish(rayc__net *net, rayc__xin *x, bool ok, int err,
                       const char *msg)
{
	rayc__rt *rt = net->rt;

	rayc__mutex_lock(&rt->mu);
	rayc__obj *o = rayc__obj_find_locked(rt, x->id);
	if (o == NULL || !o->fetching ||
	    atomic_load(&o->state) != RAYC__OBJ_PENDING) {
		rayc__mutex_unlock(&rt->mu);
		xin_drop(net, x);
		return;
	}
	o->fetching = false;
	if (ok && x->view != NULL) {
		/* Read in place in the holder's arena. */
		o->type = x->type;
		o->len = x->total;
		o->block = NULL;
		o->data = x->dst;
		o->view = x->view;
		o->view_src = x->src;
		x->view = NULL;
		x->dst = NULL;
		rayc__obj_mark_available_locked(rt, o, RAYC__OBJ_READY);
	} else if (ok) {
		o->type = x->type;
		o->len = x->total;
		o->block = x->block;
		if (x->block == NULL && x->total <= RAYC__INLINE_BYTES) {
			if (x->total > 0)
				memcpy(o->inline_buf, x->dst, x->total);
			free(x->dst);
			o->data = o->inline_buf;
		} else {
			o->data = x->dst;
			if (x->block == NULL)
				rt->inline_bytes += x->total;
		}
		x->block = NULL;
		x->dst = NULL;
		rayc__obj_mark_available_locked(rt, o, RAYC__OBJ_READY);
	} else if (o->owner == 0 && err == RAYC_ELOST) {
		o->loc = 0;
		atomic_store(&o->state, RAYC__OBJ_LOST);
		/* Anyone waiting rebuilds it from lineage. */
		rayc__obj_wake_locked(rt, o);
	} else {
		rayc__obj_fail_locked(rt, o, err, msg);
	}
	rayc__mutex_unlock(&rt->mu);
	xin_drop(net, x);
}

/* Ends a busy transfer whose destination could not be had. */
static void xin_fail_busy(rayc__net *net, rayc__xin *x, int rc)
{
	rayc__mutex_lock(&net->mu);
	x->busy = false;
	bool dead = x->dead;
	bool mine = !dead && xin_take_locked(net, x);
	rayc__mutex_unlock(&net->mu);
	if (mine)
		xin_finish(net, x, false, rc,
		           "no room in this peer's object store for a fetched "
		           "object");
	else if (dead)
		xin_release(net, x);
}

/* Gives the destination of a transfer's first chunk: a block of our
 * store (small objects: the heap).  x is busy. */
static int xin_start(rayc__net *net, rayc__xin *x, uint64_t total,
                     rayc_type type)
{
	x->total = total;
	x->type = type;
	if (total <= RAYC__SMALL_MAX) {
		x->dst = malloc(total > 0 ? total : 1);
		if (x->dst == NULL)
			abort();
	} else {
		int rc = rayc__obj_alloc_block(net->rt, total, &x->block);
		if (rc != RAYC_OK) {
			x->block = NULL;
			x->total = 0;
			return rc;
		}
		x->dst = rayc__store_ptr(net->rt->store, x->block);
	}
	x->started = true;
	return RAYC_OK;
}

int rayc__remote_chunk_begin(rayc__conn *c, const uint8_t *sub, size_t n,
                             uint8_t **dst, rayc__xin **out)
{
	rayc__net *net = c->net;
	rayc__rd rd;

	rayc__rd_init(&rd, sub, RAYC__CHUNK_SUB);
	rayc_object_id id = r_oid(&rd);
	uint64_t total = rayc__r_u64(&rd);
	uint64_t off = rayc__r_u64(&rd);
	rayc_type type = (rayc_type)rayc__r_u8(&rd);
	if (rd.bad)
		return -1;
	rayc__mutex_lock(&net->mu);
	rayc__xin *x;
	HASH_FIND(hh, net->xins, &id, sizeof(id), x);
	if (x == NULL || x->src != c->peer || x->busy) {
		rayc__mutex_unlock(&net->mu);
		return 0; /* nobody wants it any more */
	}
	x->busy = true;
	rayc__mutex_unlock(&net->mu);
	int r = 1;
	if (!x->started) {
		if (off != 0) {
			r = 0; /* the tail of an abandoned transfer */
		} else {
			int rc = xin_start(net, x, total, type);
			if (rc != RAYC_OK) {
				xin_fail_busy(net, x, rc);
				return 0;
			}
		}
	}
	if (r == 1 && (total != x->total || off > x->total ||
	               n > x->total - x->got))
		r = -1;
	else if (r == 1 && off != x->got)
		r = 0; /* a piece of an earlier, abandoned transfer */
	if (r != 1) {
		rayc__remote_chunk_end(c, x, 0, false);
		return r;
	}
	*dst = x->dst + off;
	*out = x;
	return 1;
}

void rayc__remote_chunk_end(rayc__conn *c, rayc__xin *x, size_t n, bool ok)
{
	rayc__net *net = c->net;

	rayc__mutex_lock(&net->mu);
	x->busy = false;
	if (x->dead) {
		rayc__mutex_unlock(&net->mu);
		xin_release(net, x); /* taken out while we wrote */
		return;
	}
	if (ok)
		x->got += n;
	bool done = ok && x->got == x->total && xin_take_locked(net, x);
	rayc__mutex_unlock(&net->mu);
	if (done)
		xin_finish(net, x, true, RAYC_OK, NULL);
}

/* A CHUNK that arrived whole in the receive buffer. */
static void on_chunk(rayc__conn *c, rayc__rd *rd)
{
	const uint8_t *sub = rayc__r_bytes(rd, RAYC__CHUNK_SUB);
	size_t n = rayc__rd_left(rd);
	const uint8_t *data = rayc__r_bytes(rd, n);
	uint8_t *dst;
	rayc__xin *x;

	if (rd->bad)
		return rayc__conn_close(c, "bad CHUNK");
	int r = rayc__remote_chunk_begin(c, sub, n, &dst, &x);
	if (r < 0)
		return rayc__conn_close(c, "bad CHUNK");
	if (r == 0)
		return;
	if (n > 0)
		memcpy(dst, data, n);
	rayc__remote_chunk_end(c, x, n, true);
}

static void on_missing(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc__rt *rt = net->rt;
	rayc_object_id id = r_oid(rd);
	uint32_t redirect = rayc__r_u32(rd);

	if (rd->bad || redirect >= RAYC__MAX_PEERS)
		return;
	rayc__mutex_lock(&net->mu);
	rayc__xin *x;
	HASH_FIND(hh, net->xins, &id, sizeof(id), x);
	if (x == NULL || x->src != c->peer) {
		rayc__mutex_unlock(&net->mu);
		return;
	}
	HASH_DEL(net->xins, x); /* ours to end */
	rayc__mutex_unlock(&net->mu);
	if (redirect != 0 && redirect != c->peer) {
		rayc__mutex_lock(&rt->mu);
		rayc__obj *o = rayc__obj_find_locked(rt, id);
		if (o != NULL && o->fetching) {
			o->fetching = false;
			o->loc = redirect;
			rayc__net_fetch_locked(rt, o);
		}
		rayc__mutex_unlock(&rt->mu);
		xin_drop(net, x);
		return;
	}
	char msg[128];
	snprintf(msg, sizeof(msg), "object %016llx%016llx is lost: peer %u has "
	         "no copy", (unsigned long long)id.hi,
	         (unsigned long long)id.lo, c->peer);
	xin_finish(net, x, false, RAYC_ELOST, msg);
}

/* ---- objects on one host: read in place in the holder's arena ----
 *
 * A fetcher that believes the holder shares its host (a loopback or
 * equal address) sets RAYC__FETCH_SAME_HOST in FETCH.  The holder pins
 * the object and answers SHM_OFFER (where the object lies in its arena
 * file, the file's path and identity, its host name), then computes the
 * xxh3 of the object and sends it as SHM_SUM: the fetcher's check and
 * the holder's hashing run at the same time.  The fetcher maps the arena
 * read-only (one mapping per peer, held by every object read from it),
 * hashes the object where it lies, and on SHM_SUM, if the sums agree,
 * makes it its object's data: no copy at all.  When that entry's data
 * goes (rayc__net_view_done_locked) it says SHM_DONE and the holder
 * unpins (it also unpins when the fetcher dies).  A host name that
 * differs, a file that cannot be opened or is not the one announced, or
 * a sum that differs: the object is fetched again over TCP, and that
 * peer is not offered this path again. */

static void (*_Atomic shm_copy_hook)(void);

void rayc__test_set_shm_copy_hook(void (*fn)(void))
{
	atomic_store(&shm_copy_hook, fn);
}

/* RAYC_SAME_HOST_COPY=0 turns the path off, for asking and offering.
 * Read at each fetch, so one process can measure both paths. */
static bool same_host_on(void)
{
	const char *e = getenv("RAYC_SAME_HOST_COPY");

	return e == NULL || strcmp(e, "0") != 0;
}

/* The host part of "tcp://host:port". */
static bool url_host(const char *url, char *out, size_t cap)
{
	if (strncmp(url, "tcp://", 6) != 0)
		return false;
	const char *h = url + 6, *colon = strrchr(h, ':');
	size_t n = colon != NULL ? (size_t)(colon - h) : strlen(h);
	if (n == 0 || n >= cap)
		return false;
	memcpy(out, h, n);
	out[n] = '\0';
	return true;
}

/* Does the peer listen on a loopback address, or on our host? */
static bool looks_local_locked(rayc__net *net, uint32_t peer)
{
	char a[RAYC__URL_MAX], b[RAYC__URL_MAX];

	if (!url_host(net->peers[peer].url, a, sizeof(a)))
		return false;
	if (strncmp(a, "127.", 4) == 0 || strcmp(a, "localhost") == 0 ||
	    strcmp(a, "[::1]") == 0)
		return true;
	return url_host(net->url, b, sizeof(b)) && strcmp(a, b) == 0;
}

static void send_oid(rayc__conn *c, int type, rayc_object_id id,
                     const uint64_t *val)
{
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, type, c->net->self);

	w_oid(&b, id);
	if (val != NULL)
		rayc__w_u64(&b, *val);
	rayc__w_frame_end(&b, f);
	rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
}

/* Holder: o is pinned for c's peer (one ref); data, len lie at off in
 * our arena. */
static void offer(rayc__conn *c, rayc__obj *o, rayc_object_id id,
                  const void *data, size_t len, rayc_type type,
                  uint64_t off)
{
	rayc__net *net = c->net;
	rayc__pin *p = malloc(sizeof(*p));
	rayc__store_ident si;
	char host[256];

	if (p == NULL)
		abort();
	p->peer = c->peer;
	p->id = id;
	p->obj = o;
	rayc__mutex_lock(&net->mu);
	p->next = net->pins;
	net->pins = p;
	rayc__mutex_unlock(&net->mu);
	rayc__store_ident_get(net->rt->store, &si);
	rayc__hostname(host, sizeof(host));
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_SHM_OFFER, net->self);
	w_oid(&b, id);
	rayc__w_u8(&b, (uint8_t)type);
	rayc__w_u64(&b, len);
	rayc__w_u64(&b, off);
	rayc__w_str(&b, si.path);
	rayc__w_u64(&b, si.size);
	rayc__w_u64(&b, si.dev);
	rayc__w_u64(&b, si.ino);
	rayc__w_str(&b, host);
	rayc__w_frame_end(&b, f);
	rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
	/* While the fetcher copies. */
	uint64_t sum = rayc__wire_sum(data, len);
	send_oid(c, RAYC__MSG_SHM_SUM, id, &sum);
}

/* Holder: lets go of the pins for peer (of object *id only, or all). */
static void unpin(rayc__net *net, uint32_t peer, const rayc_object_id *id)
{
	rayc__pin *got = NULL;

	rayc__mutex_lock(&net->mu);
	rayc__pin **pp = &net->pins;
	while (*pp != NULL) {
		rayc__pin *p = *pp;
		if (p->peer == peer &&
		    (id == NULL || (p->id.hi == id->hi && p->id.lo == id->lo))) {
			*pp = p->next;
			p->next = got;
			got = p;
			if (id != NULL)
				break;
		} else {
			pp = &p->next;
		}
	}
	rayc__mutex_unlock(&net->mu);
	if (got == NULL)
		return;
	rayc__mutex_lock(&net->rt->mu);
	for (rayc__pin *p = got; p != NULL; p = p->next)
		rayc__obj_unref_locked(net->rt, p->obj);
	rayc__mutex_unlock(&net->rt->mu);
	while (got != NULL) {
		rayc__pin *n = got->next;
		free(got);
		got = n;
	}
}

/* Fetcher: the read-only mapping of peer's arena (held for the caller),
 * opened or reopened if it is not the one si names; NULL if it cannot
 * be mapped. */
static rayc__store_view *peer_view(rayc__net *net, uint32_t peer,
                                   const rayc__store_ident *si)
{
	rayc__mutex_lock(&net->mu);
	rayc__store_view *v = net->views[peer];
	if (v != NULL && rayc__store_view_is(v, si)) {
		rayc__store_view_hold(v);
		rayc__mutex_unlock(&net->mu);
		return v;
	}
	rayc__mutex_unlock(&net->mu);
	if (rayc__store_view_open(&v, si) != RAYC_OK) {
		rayc__log(RAYC_LOG_INFO, "RAYC-NET-SAMEHOST-OFF",
		          "cannot map peer %u's arena, objects from it come over "
		          "TCP: %s", peer, rayc_errmsg());
		return NULL;
	}
	rayc__mutex_lock(&net->mu);
	rayc__store_view *old = NULL;
	if (net->peers[peer].alive) { /* dropped when it dies */
		old = net->views[peer];
		net->views[peer] = v;
		rayc__store_view_hold(v);
	}
	rayc__mutex_unlock(&net->mu);
	rayc__store_view_release(old);
	return v;
}

/* Fetcher: x (busy, not started) is fetched over TCP instead. */
static void refetch_tcp(rayc__conn *c, rayc__xin *x)
{
	rayc__net *net = c->net;

	rayc__mutex_lock(&net->mu);
	net->no_shm[c->peer] = true;
	x->busy = false;
	bool dead = x->dead;
	rayc__mutex_unlock(&net->mu);
	if (dead) {
		xin_release(net, x);
		return;
	}
	send_small(net, c->peer, RAYC__MSG_FETCH, x->id, 0);
}

static void on_shm_offer(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc_object_id id = r_oid(rd);
	rayc_type type = (rayc_type)rayc__r_u8(rd);
	uint64_t len = rayc__r_u64(rd);
	uint64_t off = rayc__r_u64(rd);
	rayc__store_ident si;
	char host[256], me[256];

	rayc__r_str(rd, si.path, sizeof(si.path));
	si.size = rayc__r_u64(rd);
	si.dev = rayc__r_u64(rd);
	si.ino = rayc__r_u64(rd);
	rayc__r_str(rd, host, sizeof(host));
	if (rd->bad)
		return rayc__conn_close(c, "bad SHM_OFFER");
	rayc__mutex_lock(&net->mu);
	rayc__xin *x;
	HASH_FIND(hh, net->xins, &id, sizeof(id), x);
	if (x == NULL || x->src != c->peer || x->busy || x->started) {
		rayc__mutex_unlock(&net->mu);
		send_oid(c, RAYC__MSG_SHM_DONE, id, NULL); /* not wanted */
		return;
	}
	x->busy = true;
	rayc__mutex_unlock(&net->mu);
	rayc__store_view *v = NULL;
	const void *src = NULL;
	rayc__hostname(me, sizeof(me));
	if (strcmp(me, host) == 0 && len > 0 &&
	    (v = peer_view(net, c->peer, &si)) != NULL)
		src = rayc__store_view_range(v, off, len);
	if (src == NULL) {
		rayc__store_view_release(v);
		send_oid(c, RAYC__MSG_SHM_DONE, id, NULL);
		refetch_tcp(c, x);
		return;
	}
	/* Zero-copy: the object will be read where it lies, in the holder's
	 * arena, which keeps it pinned until we say SHM_DONE (when our entry
	 * lets go of it).  Check it first: hash it in place. */
	void (*hook)(void) = atomic_load(&shm_copy_hook);
	if (hook != NULL)
		hook();
	x->view = v; /* our hold */
	x->dst = (uint8_t *)(uintptr_t)src;
	x->total = len;
	x->type = type;
	x->started = true;
	x->shm_sum = rayc__wire_sum(src, len);
	x->shm_wait = true;
	rayc__mutex_lock(&net->mu);
	x->busy = false;
	bool dead = x->dead;
	rayc__mutex_unlock(&net->mu);
	if (dead)
		xin_release(net, x); /* taken out while we copied */
}

static void on_shm_sum(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc_object_id id = r_oid(rd);
	uint64_t sum = rayc__r_u64(rd);

	if (rd->bad)
		return rayc__conn_close(c, "bad SHM_SUM");
	rayc__mutex_lock(&net->mu);
	rayc__xin *x;
	HASH_FIND(hh, net->xins, &id, sizeof(id), x);
	if (x == NULL || x->src != c->peer || x->busy || !x->shm_wait) {
		rayc__mutex_unlock(&net->mu);
		return;
	}
	x->shm_wait = false;
	bool ok = x->shm_sum == sum;
	if (ok) {
		x->got = x->total;
		HASH_DEL(net->xins, x); /* ours to end */
	} else {
		x->busy = true; /* ours to reset */
	}
	rayc__mutex_unlock(&net->mu);
	if (ok) {
		xin_finish(net, x, true, RAYC_OK, NULL);
		return;
	}
	rayc__log(RAYC_LOG_WARN, "RAYC-NET-SAMEHOST-SUM",
	          "object copied from peer %u's arena has the wrong checksum; "
	          "fetching it over TCP", c->peer);
	xin_free_dst(net, x);
	x->started = false;
	x->total = x->got = 0;
	refetch_tcp(c, x);
}

void rayc__net_obj_released_locked(rayc__rt *rt, rayc__obj *o)
{
	rayc__net *net = rt->net;

	if (net == NULL)
		return;
	if (o->loc != 0 && o->owner == 0 && o->loc != net->self)
		send_small(net, o->loc, RAYC__MSG_FREE, o->id, 0);
	if (o->borrowed) {
		send_small(net, o->owner, RAYC__MSG_BORROW_DEL, o->id, 0);
		o->borrowed = false;
	}
	o->loc = 0;
}

void rayc__net_borrow_locked(rayc__rt *rt, rayc__obj *o)
{
	rayc__net *net = rt->net;

	if (net == NULL || o->owner == 0 || o->owner == net->self ||
	    o->borrowed)
		return;
	o->borrowed = true;
	send_small(net, o->owner, RAYC__MSG_BORROW_ADD, o->id, 0);
}

/* Owner side: peer starts or stops borrowing o (one ref per borrower). */
static void borrow_add_locked(rayc__rt *rt, rayc__obj *o, uint32_t peer)
	RAYC_REQUIRES(rt->mu)
{
	for (uint16_t i = 0; i < o->nborrowers; i++)
		if (o->borrowers[i] == peer)
			return;
	if (o->nborrowers == o->borrowers_cap) {
		uint16_t cap = o->borrowers_cap ? o->borrowers_cap * 2 : 4;
		uint32_t *b = realloc(o->borrowers, cap * sizeof(*b));
		if (b == NULL)
			return; /* not counted: freed when the owner lets go */
		o->borrowers = b;
		o->borrowers_cap = cap;
	}
	o->borrowers[o->nborrowers++] = peer;
	rayc__obj_ref_locked(o);
}

static void borrow_del_locked(rayc__rt *rt, rayc__obj *o, uint32_t peer)
	RAYC_REQUIRES(rt->mu)
{
	for (uint16_t i = 0; i < o->nborrowers; i++) {
		if (o->borrowers[i] != peer)
			continue;
		o->borrowers[i] = o->borrowers[--o->nborrowers];
		rayc__obj_unref_locked(rt, o);
		return;
	}
}

static void on_ref_msg(rayc__conn *c, int type, rayc__rd *rd)
{
	rayc__rt *rt = c->net->rt;
	rayc_object_id id = r_oid(rd);

	if (rd->bad)
		return;
	rayc__mutex_lock(&rt->mu);
	rayc__obj *o = rayc__obj_find_locked(rt, id);
	if (o != NULL) {
		if (type == RAYC__MSG_FREE && o->held_remote) {
			o->held_remote = false;
			rayc__obj_unref_locked(rt, o);
		} else if (type == RAYC__MSG_BORROW_ADD) {
			borrow_add_locked(rt, o, c->peer);
		} else if (type == RAYC__MSG_BORROW_DEL) {
			borrow_del_locked(rt, o, c->peer);
		}
	}
	rayc__mutex_unlock(&rt->mu);
}

void rayc__remote_handle(rayc__conn *c, int type, rayc__rd *rd)
{
	switch (type) {
	case RAYC__MSG_TASK:
		on_task(c, rd);
		break;
	case RAYC__MSG_TASK_DONE:
		on_task_done(c, rd);
		break;
	case RAYC__MSG_FETCH:
		on_fetch(c, rd);
		break;
	case RAYC__MSG_CHUNK:
		on_chunk(c, rd);
		break;
	case RAYC__MSG_MISSING:
		on_missing(c, rd);
		break;
	case RAYC__MSG_FREE:
	case RAYC__MSG_BORROW_ADD:
	case RAYC__MSG_BORROW_DEL:
		on_ref_msg(c, type, rd);
		break;
	case RAYC__MSG_KV_REQ:
	case RAYC__MSG_KV_REP:
		rayc__kv_handle(c, type, rd);
		break;
	case RAYC__MSG_SHM_OFFER:
		on_shm_offer(c, rd);
		break;
	case RAYC__MSG_SHM_SUM:
		on_shm_sum(c, rd);
		break;
	case RAYC__MSG_SHM_DONE: {
		rayc_object_id id = r_oid(rd);
		if (!rd->bad)
			unpin(c->net, c->peer, &id);
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
		xin_finish(net, x, false, RAYC_ELOST, msg);
	}
	/* Its arena, and our objects it was copying. */
	rayc__mutex_lock(&net->mu);
	rayc__store_view *v = net->views[id];
	net->views[id] = NULL;
	rayc__mutex_unlock(&net->mu);
	rayc__store_view_release(v); /* a copy running keeps its own hold */
	unpin(net, id, NULL);
}

void rayc__remote_fini(rayc__net *net)
{
	rayc__xin *x, *xt;

	/* Every connection is freed: no receiver writes into these. */
	HASH_ITER(hh, net->xins, x, xt) {
		HASH_DEL(net->xins, x);
		xin_release(net, x);
	}
	for (uint32_t i = 0; i < RAYC__MAX_PEERS; i++) {
		rayc__store_view_release(net->views[i]);
		net->views[i] = NULL;
		unpin(net, i, NULL);
	}
}
