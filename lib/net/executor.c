/* executor.c -- running tasks for other owners.
 *
 * Executor side.  A TASK becomes an ordinary local task marked foreign:
 * its ref arguments become local entries, sealed from the inline bytes
 * or fetched (FETCH, then CHUNKs) from the peer named in the spec; it is
 * never placed again.  When it finishes, TASK_DONE goes to the owner and
 * the executor keeps only the large returns, for the owner, until FREE.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "net/remote_int.h"
#include "registry.h"
#include "sched/actor.h"
#include "sched/sched.h"
#include "testing.h"


typedef struct refarg {
	rayc_object_id id;
	uint32_t owner, loc;
	bool inl;
	bool fetch; /* its bytes are to be fetched */
	rayc_type type; /* an inline ref's object type */
	const void *data;
	size_t len;
	const rayc__aclass *cls; /* an actor handle's class */
} refarg;

/* A TASK's arguments as read, until the task holds them: on the stack
 * for a few (no malloc and free per task), else from the heap. */
#define ARGS_ON_STACK 8

static void args_end(rayc_arg *args, refarg *refs, const rayc_arg *st)
{
	if (args == st)
		return;
	free(args);
	free(refs);
}

static void reply_error(rayc__net *net, uint32_t owner, rayc_task_id id,
                        uint32_t dispatch, int err, const char *msg)
{
	rayc__wbuf b = { 0 };

	rayc__w_u8(&b, 1);
	rayc__w_u32(&b, (uint32_t)err);
	rayc__w_str(&b, msg);
	rayc__xrec_send(net, owner, id, dispatch, b.p, b.len, false);
	rayc__wbuf_fini(&b);
}

/* An actor's constructor run again where it ran before (the actor was
 * killed with restart, its instance here gone, and its placement chose
 * this peer again): the record of the last run, and its creation object
 * if still held here for the owner, are stale, as if the owner had freed
 * them, so the constructor runs anew instead of being answered from
 * them.  The same dispatch sent again (a lost connection) is answered
 * from the record, as for any task. */
static void ctor_again_locked(rayc__rt *rt, rayc__net *net, uint32_t owner,
                              rayc_task_id id, uint32_t dispatch)
	RAYC_REQUIRES(rt->mu)
{
	rayc__xrec *rec = rayc__xrec_find_locked(net, id);
	rayc_actor aid = { id.hi, id.lo }; /* an actor's id is its ctor's */

	/* An instance still here: the constructor was placed here again
	 * while it lives (relink gave up on this peer, then it came back);
	 * the record of its run answers, as for any task. */
	if (rec == NULL || !rec->done || rec->owner != owner ||
	    rec->dispatch >= dispatch || rayc__actor_find_locked(rt, aid))
		return;
	rayc__xrec_drop_locked(net, rec);
	rayc__obj *o = rayc__obj_find_locked(rt, rayc__return_id(id, 0));
	if (o != NULL && o->held_remote && o->owner == owner) {
		o->held_remote = false;
		o->let_go = true;
		rayc__remote_unref_locked(rt, o);
	}
}

/* Makes a local entry for a ref argument of a foreign task. */
static rayc__obj *arg_entry_locked(rayc__rt *rt, rayc__net *net,
                                   const refarg *ra, bool *fetch)
	RAYC_REQUIRES(rt->mu)
{
	rayc__obj *o = rayc__obj_find_locked(rt, ra->id);

	*fetch = false;
	if (o != NULL && atomic_load(&o->state) == RAYC__OBJ_ERROR &&
	    (o->err == RAYC_ELOST || o->err == RAYC_ENOMEM) && o->owner != 0 &&
	    ra->owner == o->owner &&
	    (ra->inl || ra->loc != 0)) {
		/* Lost here before, and its owner has it again (rebuilt):
		 * this entry waits for the new copy. */
		free(o->data);
		o->data = NULL;
		o->len = 0;
		o->err = 0;
		o->fetching = false;
		atomic_store(&o->state, RAYC__OBJ_PENDING);
	} else if (o != NULL) {
		*fetch = atomic_load(&o->state) == RAYC__OBJ_REMOTE;
		return o;
	} else {
		o = rayc__obj_new_locked(rt, ra->id);
		if (o == NULL)
			return NULL;
	}
	if (ra->owner == net->self) {
		/* Ours, and gone: the task fails naming it (its owner, this
		 * peer, cannot rebuild it any more). */
		char msg[128];
		snprintf(msg, sizeof(msg), "object %016llx%016llx is lost: its "
		         "owner, peer %u, no longer has it",
		         (unsigned long long)ra->id.hi,
		         (unsigned long long)ra->id.lo, net->self);
		rayc__obj_fail_locked(rt, o, RAYC_ELOST, msg);
		return o;
	}
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
			if (o->data == NULL) {
				o->len = 0;
				rayc__obj_fail_locked(rt, o, RAYC_ENOMEM,
				                      "no memory for an argument "
				                      "sent with its task");
				return o;
			}
			memcpy(o->data, ra->data, ra->len);
			rt->inline_bytes += ra->len;
		}
		atomic_store(&o->state, RAYC__OBJ_READY);
	} else {
		*fetch = true;
	}
	return o;
}

void rayc__remote_on_task(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc__rt *rt = net->rt;
	rayc_task_id id;
	char fname[256];
	char msg[320];

	rayc__tlane_offer(c); /* came over c: a lane may carry the next */
	id.hi = rayc__r_u64(rd);
	id.lo = rayc__r_u64(rd);
	uint32_t dispatch = rayc__r_u32(rd);
	rayc__r_str(rd, fname, sizeof(fname));
	int attempt = (int)rayc__r_u32(rd);
	int max_retries = (int)rayc__r_u32(rd);
	bool retry_exc = rayc__r_u8(rd) != 0;
	/* An actor's task: its kind, actor and concurrency. */
	int akind = rayc__r_u8(rd);
	rayc_actor actor = { 0, 0 };
	int max_conc = 1;
	bool detached = false;
	char aname[256] = "";
	if (akind != RAYC__AK_NONE) {
		actor.hi = rayc__r_u64(rd);
		actor.lo = rayc__r_u64(rd);
		max_conc = (int)rayc__r_u32(rd);
		detached = rayc__r_u8(rd) != 0;
		rayc__r_str(rd, aname, sizeof(aname));
	}
	uint32_t nret = rayc__r_u32(rd);
	int nd = rayc__r_u8(rd);
	int64_t demand[RAYC__MAX_RES] = { 0 };
	bool feasible = true, no_class = false;
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
	if (!rayc__sched_feasible(rt, demand))
		feasible = false; /* this peer runs no tasks at all */
	uint32_t nargs = rayc__r_u32(rd);
	/* A task id leaves its low 16 bits to its returns' ids
	 * (rayc__return_id): with any set, returns would share an id, and
	 * the object table would hold one id many times (uthash then grew
	 * its buckets to 2 GiB: fuzz_msgs). */
	if (rd->bad || nret > 4096 || (id.lo & 0xffff) != 0 ||
	    nargs > rayc__rd_left(rd) / 9 + 1 || akind > RAYC__AK_FINI ||
	    max_conc < 1 || max_conc > 1024 ||
	    (akind == RAYC__AK_FINI && nret != 0)) {
		rayc__conn_close(c, "bad TASK");
		return;
	}
	/* nargs is bounded by the frame (an argument takes 9 bytes at
	 * least); memory for them may still run out. */
	rayc_arg args_st[ARGS_ON_STACK];
	refarg refs_st[ARGS_ON_STACK];
	bool small = nargs < ARGS_ON_STACK;
	rayc_arg *args = rayc__fault(RAYC__FAULT_TASK_IN) ? NULL
	                 : small ? memset(args_st, 0, sizeof(args_st))
	                         : calloc(nargs + 1, sizeof(rayc_arg));
	refarg *refs = args == NULL ? NULL
	               : small      ? memset(refs_st, 0, sizeof(refs_st))
	                            : calloc(nargs + 1, sizeof(refarg));
	size_t extra = 0;
	if (args == NULL || refs == NULL) {
		args_end(args, refs, args_st);
		snprintf(msg, sizeof(msg), "task %s: peer %u has no memory for "
		         "its %u arguments", fname, net->self, nargs);
		reply_error(net, c->peer, id, dispatch, RAYC_ENOMEM, msg);
		return;
	}
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
				a->type = RAYC__TYPE_STRN;
			}
			extra += ((n + 1 + 7) & ~(size_t)7);
			break;
		case RAYC_TYPE_ACTOR: {
			/* A handle: the actor, its owner, its class. */
			refarg *ra = &refs[i];
			char cn[256];
			ra->id.hi = rayc__r_u64(rd);
			ra->id.lo = rayc__r_u64(rd);
			ra->owner = rayc__r_u32(rd);
			rayc__r_str(rd, cn, sizeof(cn));
			if (ra->owner == 0 || ra->owner >= RAYC__MAX_PEERS)
				rd->bad = true;
			else if ((ra->cls = rayc__aclass_find(cn)) == NULL)
				no_class = true;
			break;
		}
		case RAYC_TYPE_REF: {
			refarg *ra = &refs[i];
			ra->id = rayc__r_oid(rd);
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
		args_end(args, refs, args_st);
		rayc__conn_close(c, "bad TASK arguments");
		return;
	}
	if (no_class) {
		args_end(args, refs, args_st);
		snprintf(msg, sizeof(msg), "task %.200s: an actor handle "
		         "argument's "
		         "class is not registered on peer %u", fname, net->self);
		reply_error(net, c->peer, id, dispatch, RAYC_ENOFUNC, msg);
		return;
	}
	const rayc__fn_entry *fn = NULL;
	const rayc__aclass *cls = NULL;
	if (akind == RAYC__AK_NONE) {
		fn = rayc__registry_find(fname);
	} else {
		/* "Class" for a constructor or destructor run, else
		 * "Class.method". */
		char cname[256];
		snprintf(cname, sizeof(cname), "%s", fname);
		char *dot = strchr(cname, '.');
		if (dot != NULL)
			*dot = '\0';
		cls = rayc__aclass_find(cname);
		if (cls != NULL)
			fn = akind == RAYC__AK_CTOR   ? rayc__actor_ctor_fn()
			     : akind == RAYC__AK_FINI ? rayc__actor_fini_fn()
			     : dot != NULL ? rayc__aclass_method(cls, dot + 1)
			                   : NULL;
	}
	if (fn == NULL || !feasible) {
		snprintf(msg, sizeof(msg),
		         fn == NULL ? "function '%s' is not registered on peer %u"
		                    : "task %s: peer %u lacks its resources",
		         fname, net->self);
		args_end(args, refs, args_st);
		reply_error(net, c->peer, id, dispatch,
		            fn == NULL ? RAYC_ENOFUNC : RAYC_EINFEASIBLE, msg);
		return;
	}
	rayc__task *t = rayc__task_alloc(args, nargs, nret, extra);
	if (t == NULL) {
		args_end(args, refs, args_st);
		snprintf(msg, sizeof(msg), "task %s: peer %u has no memory for "
		         "it", fname, net->self);
		reply_error(net, c->peer, id, dispatch, RAYC_ENOMEM, msg);
		return;
	}
	t->id = id;
	t->fn = fn;
	t->attempt = attempt;
	t->max_retries = max_retries;
	t->retry_exceptions = retry_exc;
	t->foreign = true;
	t->owner = c->peer;
	t->owner_gen = c->gen;
	t->dispatch = dispatch;
	t->akind = (uint8_t)akind;
	rayc__remote_rx_lock(rt);
	if (akind == RAYC__AK_CTOR)
		ctor_again_locked(rt, net, c->peer, id, dispatch);
	/* Sent again (a lost connection) or asked for anew: never two runs
	 * at once, never one run twice for one dispatch. */
	rayc__xrec *rec = rayc__xrec_find_locked(net, id);
	bool dup = rec != NULL &&
	           rayc__xrec_again_locked(rt, net, rec, c->peer, dispatch);
	/* Cached copies of this task's returns (fetched before the owner lost
	 * them and ran the task again, here) make way for the new run. */
	bool here = false;
	for (uint32_t i = 0; i < nret && !dup && !here; i++) {
		rayc_object_id rid = rayc__return_id(id, i);
		rayc__obj *o = rayc__obj_find_locked(rt, rid);
		if (o != NULL && rayc__cache_drop_locked(rt, o))
			o = rayc__obj_find_locked(rt, rid); /* still lineage? */
		here = o != NULL;
	}
	if (here && !rayc__xrec_answer_entries_locked(rt, net, c->peer, id,
	                                              dispatch, nret)) {
		/* Results of an earlier run still in use here, not all of
		 * them whole: a new run cannot have their ids. */
		snprintf(msg, sizeof(msg), "task %s: peer %u still holds "
		         "part of an earlier run's results", fname, net->self);
		reply_error(net, c->peer, id, dispatch, RAYC_ELOST, msg);
	}
	if (dup || here) {
		rayc__remote_rx_unlock(rt);
		rayc__task_free(t);
		args_end(args, refs, args_st);
		return;
	}
	rec = rayc__xrec_start_locked(net, id, c->peer, dispatch);
	if (rec == NULL) {
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-NOMEM", "no memory to "
		          "record task %s: if its owner sends it again it "
		          "runs again", fname);
	} else if (rayc__tlane_reading) {
		rec->lane = true;
		rec->bseq = net->borrow_seq[c->peer];
	}
	/* Out of memory from here on, the task fails with RAYC_ENOMEM
	 * through the usual path (its owner gets the answer). */
	t->sclass = rayc__sched_class_locked(rt, demand);
	bool oom = t->sclass == NULL;
	if (akind != RAYC__AK_NONE && !oom &&
	    !rayc__actor_host_locked(rt, t, actor, cls, max_conc, detached,
	                             aname[0] != '\0' ? aname : NULL, msg,
	                             sizeof(msg))) {
		/* Not here (any more): the owner hears why. */
		rayc__xrec *r = rayc__xrec_find_locked(net, id);
		if (r != NULL)
			rayc__xrec_drop_locked(net, r);
		rayc__remote_rx_unlock(rt);
		rayc__task_free(t);
		args_end(args, refs, args_st);
		reply_error(net, c->peer, id, dispatch, RAYC_EACTORDIED, msg);
		return;
	}
	for (uint32_t i = 0; i < nargs; i++) {
		if (args[i].type != RAYC_TYPE_REF)
			continue;
		rayc__obj *o = arg_entry_locked(rt, net, &refs[i],
		                                &refs[i].fetch);
		if (o == NULL) {
			oom = true;
			continue;
		}
		t->args[i].ref = o;
		o->lineage_cnt++;
	}
	/* Handles: the actor itself if we own it, else a proxy that sends
	 * its calls to the owner; held while the spec lives. */
	bool gone = false;
	for (uint32_t i = 0; i < nargs && !oom; i++) {
		if (args[i].type != RAYC_TYPE_ACTOR)
			continue;
		rayc_actor aid = { refs[i].id.hi, refs[i].id.lo };
		rayc__actor *h = rayc__actor_proxy_locked(rt, aid,
		                                          refs[i].owner,
		                                          refs[i].cls,
		                                          net->self);
		if (h == NULL) {
			gone = true;
			continue;
		}
		rayc__actor_hold_locked(h);
		t->args[i].v.ptr = h;
		t->has_actor_args = true;
	}
	uint32_t made = 0;
	for (uint32_t i = 0; i < nret; i++) {
		rayc__obj *o = rayc__obj_new_locked(rt, rayc__return_id(id, i));
		if (o == NULL) {
			oom = true;
			continue; /* answered as a failure (task_finished) */
		}
		atomic_store_explicit(&o->refcnt, 1, memory_order_release);
		o->owner = c->peer;
		t->returns[i] = o;
		made++;
	}
	t->live_returns = made;
	t->in_flight = true;
	rt->nlineage++;
	if (gone && !oom) {
		snprintf(msg, sizeof(msg), "task %.200s: an actor handle "
		         "argument names an actor peer %u no longer has", fname,
		         net->self);
		rayc__remote_fail_task_locked(rt, t, RAYC_EACTORDIED, msg);
	} else if (oom) {
		snprintf(msg, sizeof(msg), "task %s: peer %u ran out of memory "
		         "setting it up", fname, net->self);
		rayc__remote_fail_task_locked(rt, t, RAYC_ENOMEM, msg);
	} else {
		/* Every argument to fetch starts now (a fetch that fails at
		 * once fails only its entry; the task sees it below). */
		for (uint32_t i = 0; i < nargs; i++)
			if (refs[i].fetch && t->args[i].ref != NULL)
				rayc__net_fetch_locked(rt, t->args[i].ref);
		/* On a task lane's thread a quick task runs right here if a
		 * CPU is free (sched.h: no worker's wake-up to wait for). */
		if (rayc__tlane_reading)
			rayc__sched_serve_begin(rayc__tlane_on_block);
		(void)rayc__task_resolve_args_locked(rt, t);
		if (rayc__tlane_reading)
			rayc__sched_serve_end_locked(rt);
	}
	rayc__remote_rx_unlock(rt);
	args_end(args, refs, args_st);
}

/* The last answer of owner_dead on this thread, good while the view has
 * not changed since (net->view_seq): one look-up under net->mu per batch
 * of one owner's tasks, not one a task. */
static _Thread_local struct {
	rayc__net *net;
	uint32_t owner;
	uint64_t gen, seq;
	bool dead;
} dead_seen;

/* A member that died.  An owner not in our view yet joined moments ago
 * (it reached us over a connection it authenticated): it is alive. */
static bool owner_dead(rayc__net *net, uint32_t owner, uint64_t gen)
{
	if (owner == 0 || owner >= RAYC__MAX_PEERS)
		return true;
	uint64_t seq = atomic_load_explicit(&net->view_seq,
	                                    memory_order_acquire) + 1;
	if (dead_seen.seq == seq && dead_seen.net == net &&
	    dead_seen.owner == owner && dead_seen.gen == gen)
		return dead_seen.dead;
	rayc__mutex_lock(&net->mu);
	bool dead = rayc__net_gone_locked(net, owner, gen);
	rayc__mutex_unlock(&net->mu);
	dead_seen.net = net;
	dead_seen.owner = owner;
	dead_seen.gen = gen;
	dead_seen.seq = seq;
	dead_seen.dead = dead;
	return dead;
}

static bool arg_lost(const rayc__targ *a)
{
	return a->type == RAYC_TYPE_REF && a->ref != NULL &&
	       atomic_load(&a->ref->state) == RAYC__OBJ_ERROR &&
	       a->ref->err == RAYC_ELOST;
}

/* A task that failed with RAYC_ELOST names the arguments that were lost
 * (none: its own failure): their owner may rebuild them and send the
 * task again. */
static void write_lost_args(rayc__wbuf *b, const rayc__task *t, int err)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < t->nargs && err == RAYC_ELOST; i++)
		n += arg_lost(&t->args[i]);
	rayc__w_u32(b, n);
	for (uint32_t i = 0; i < t->nargs && n > 0; i++)
		if (arg_lost(&t->args[i]))
			rayc__w_oid(b, t->args[i].ref->id);
}

void rayc__net_task_finished_locked(rayc__rt *rt, rayc__task *t)
{
	rayc__net *net = rt->net;
	rayc__wbuf b = { 0 };
	bool keep[4096];
	rayc__obj *err = NULL;
	rayc__xrec *rec = net != NULL ? rayc__xrec_find_locked(net, t->id)
	                              : NULL;

	bool missing = false; /* a return we had no memory for */
	/* A call another peer made to an actor, which its owner forwarded
	 * here (its id has the top bit flipped, owner.c: wire_id; a job id
	 * never has it): the owner answers the caller from what we send it,
	 * and cannot fetch from us by the id the caller knows, so results
	 * go inline, RAYC__NET_RELAY_MAX in all (the answer is kept for a
	 * resend, xrec.c, within its 32 MiB). */
	bool relayed = t->foreign && t->akind == RAYC__AK_CALL &&
	               (t->id.hi >> 63) != 0;
	size_t inline_max = relayed ? RAYC__NET_RELAY_MAX : RAYC__NET_INLINE_MAX;
	size_t relay_bytes = 0; /* all of them, in one answer */
	/* A call forwarded to the peer its actor lives on, whose result
	 * stayed there: not relayed. */
	bool far = false;
	for (uint32_t i = 0; i < t->nreturns; i++) {
		rayc__obj *o = t->returns[i];
		keep[i] = false;
		missing |= o == NULL;
		far |= o != NULL && atomic_load(&o->state) == RAYC__OBJ_REMOTE;
		if (o != NULL && atomic_load(&o->state) == RAYC__OBJ_ERROR &&
		    err == NULL)
			err = o;
		if (relayed && o != NULL &&
		    atomic_load(&o->state) == RAYC__OBJ_READY)
			relay_bytes += o->len;
	}
	bool too_big = relay_bytes > RAYC__NET_RELAY_MAX;
	if (net != NULL) {
		/* The answer's body; the record keeps it for a resend. */
		rayc__w_u8(&b, err != NULL || missing || far || too_big);
		if (err == NULL && missing) {
			rayc__w_u32(&b, RAYC_ENOMEM);
			rayc__w_str(&b, "no memory for the task's returns");
			rayc__w_u32(&b, 0);
		} else if (err == NULL && (far || too_big)) {
			rayc__w_u32(&b, RAYC_ETOOBIG);
			rayc__w_str(&b, "the results of an actor call made "
			            "on another peer than the actor's owner and "
			            "host are over 8 MiB in all: not relayed "
			            "(call it from its owner's peer)");
			rayc__w_u32(&b, 0);
		} else if (err != NULL) {
			rayc__w_u32(&b, (uint32_t)err->err);
			rayc__w_str(&b, err->data != NULL ? (char *)err->data
			                                  : "task failed");
			write_lost_args(&b, t, err->err);
		} else {
			rayc__w_u32(&b, t->nreturns);
			for (uint32_t i = 0; i < t->nreturns; i++) {
				rayc__obj *o = t->returns[i];
				bool ok = o != NULL &&
				          atomic_load(&o->state) == RAYC__OBJ_READY;
				bool inl = !ok || o->len <= inline_max;
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
		uint32_t dispatch = rec != NULL ? rec->dispatch : t->dispatch;
		if (b.len > 1 && rayc__fault(RAYC__FAULT_ANSWER_CUT))
			b.len--; /* a test's malformed answer */
		if (b.bad) {
			/* No memory for the answer: say so (small), or the
			 * owner would wait for ever. */
			rayc__wbuf_fini(&b);
			rayc__w_u8(&b, 1);
			rayc__w_u32(&b, RAYC_ENOMEM);
			rayc__w_str(&b, "no memory for the task's answer");
			for (uint32_t i = 0; i < t->nreturns; i++)
				keep[i] = false;
		}
		/* Back on the task lane it came on, unless a BORROW_ADD
		 * went to the owner meanwhile (it must come first). */
		bool lane = rec != NULL && rec->lane &&
		            rec->bseq == net->borrow_seq[t->owner];
		rayc__xrec_send(net, t->owner, t->id, dispatch, b.p, b.len,
		                lane);
		if (rec != NULL && !b.bad)
			rayc__xrec_done_locked(net, rec, b.p, b.len);
		else if (rec != NULL)
			rayc__xrec_drop_locked(net, rec);
		rayc__wbuf_fini(&b);
	}
	/* An owner that died meanwhile will never say FREE. */
	bool owner_alive = net != NULL && !owner_dead(net, t->owner, t->owner_gen);
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
