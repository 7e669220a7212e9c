/* actor_api.c -- the public actor calls: create, call, names, handles,
 * kill, list; and resolving the ref and handle arguments of any call
 * (rayc__args_resolve_locked, api_int.h).  Each checks its input, then
 * does its work under rt->mu through sched/actor.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "lineage/lineage.h"
#include "net/net.h"
#include "registry.h"
#include "sched/actor.h"
#include "sched/sched.h"

#define ID_FMT "%016llx%016llx"
#define ID_ARGS(id) (unsigned long long)(id).hi, (unsigned long long)(id).lo
/* A name and the KV's prefix fit in a KV key (lib/net/names.c). */
#define NAME_MAX_LEN 240
/* What claim_name came to, apart from every RAYC_ code (all >= 0). */
enum { CLAIMED = -1, FOUND = -2 };

int rayc__args_resolve_locked(rayc__rt *rt, rayc__task *t,
                              const rayc_arg *args, size_t nargs)
{
	for (size_t i = 0; i < nargs; i++) {
		if (args[i].type == RAYC_TYPE_REF) {
			rayc__obj *o = rayc__obj_find_locked(rt,
			                                     args[i].v.ref.id);
			if (o == NULL) {
				rayc__actor_args_free_locked(rt, t);
				return rayc__err(RAYC_ENOTFOUND,
				                 "argument %zu: ref " ID_FMT
				                 " is not live", i,
				                 ID_ARGS(args[i].v.ref.id));
			}
			t->args[i].ref = o;
		} else if (args[i].type == RAYC_TYPE_ACTOR) {
			rayc_actor id = { args[i].v.ref.id.hi,
			                  args[i].v.ref.id.lo };
			rayc__actor *a = rayc__actor_handle_locked(rt, id);
			if (a == NULL || a->refcnt == 0) {
				rayc__actor_args_free_locked(rt, t);
				return rayc__err(RAYC_ENOTFOUND,
				                 "argument %zu: actor " ID_FMT
				                 " has no live handle here", i,
				                 ID_ARGS(id));
			}
			rayc__actor_hold_locked(a);
			t->args[i].v.ptr = a;
			t->has_actor_args = true;
		}
	}
	return RAYC_OK;
}

static int check_opts(const rayc_actor_opts *o)
{
	if (o->num_resources < 0 ||
	    (o->num_resources > 0 && o->resources == NULL))
		return rayc__err(RAYC_EINVAL, "bad resources array");
	if (o->name != NULL &&
	    (o->name[0] == '\0' || strlen(o->name) > NAME_MAX_LEN))
		return rayc__err(RAYC_EINVAL, "an actor name is 1..%d bytes",
		                 NAME_MAX_LEN);
	if (o->lifetime != RAYC_LIFETIME_DEFAULT &&
	    o->lifetime != RAYC_LIFETIME_DETACHED)
		return rayc__err(RAYC_EINVAL, "unknown lifetime %d",
		                 o->lifetime);
	if (o->max_restarts < -1 || o->max_task_retries < -1)
		return rayc__err(RAYC_EINVAL, "max_restarts and "
		                 "max_task_retries are -1 (unlimited) or more");
	if (o->max_concurrency < 0 || o->max_concurrency > 1024)
		return rayc__err(RAYC_EINVAL, "max_concurrency %d (0..1024)",
		                 o->max_concurrency);
	if (o->strategy < RAYC_STRATEGY_DEFAULT ||
	    o->strategy > RAYC_STRATEGY_NODE_AFFINITY)
		return rayc__err(RAYC_EINVAL, "unknown strategy %d",
		                 o->strategy);
	return RAYC_OK;
}

/* A proxy's first use by this process that may outlive the task using
 * it (a handle taken, a call made through it, a task or call given it
 * as an argument) registers this peer with its owner, which keeps the
 * actor alive for it until the proxy goes: returns the owner, to
 * register with (borrow_from) once rt->mu is let go; else 0.  Done
 * before the using task can end, so before the peer that gave it the
 * handle hears the task is done and lets go of its own hold. */
static uint32_t borrow_first_locked(rayc__actor *a)
{
	/* Until the owner has answered: two threads using it for the
	 * first time at once both ask and wait (a repeated BORROW is
	 * harmless), and after a failed one the next use asks again. */
	if (!a->proxy || a->registered)
		return 0;
	a->borrowing = true; /* the proxy's end tells the owner */
	return a->owner;
}

/* One more handle of this process on a (and a hold); the owner to
 * register with, as borrow_first_locked. */
static uint32_t take_handle_locked(rayc__actor *a)
{
	rayc__actor_hold_locked(a);
	a->handles++;
	return borrow_first_locked(a);
}

/* Registers this peer with owner, which owns actor id: RAYC_OK (0
 * owner: nothing to do), RAYC_ENOTFOUND (the actor is dead), else the
 * error (no answer, out of the cluster). */
static int register_with(rayc__rt *rt, uint32_t owner, rayc_actor id)
{
	if (owner == 0)
		return RAYC_OK;
	int rc = rayc__net_actor_ctl(rt, owner, id, RAYC__ACTOR_CTL_BORROW, NULL,
	                             NULL);
	if (rc != RAYC_OK && rc != RAYC_ENOTFOUND && rc != RAYC_EACTORDIED)
		return rc; /* the next use asks again */
	/* Registered, or the actor is dead: nothing more to ask. */
	rayc__rt_lock(rt);
	rayc__actor *a = rayc__actor_handle_locked(rt, id);
	if (a != NULL && a->proxy)
		a->registered = true;
	rayc__mutex_unlock(&rt->mu);
	return rc == RAYC_OK ? RAYC_OK : RAYC_ENOTFOUND;
}

int rayc__args_borrow(rayc__rt *rt, const rayc_arg *args, size_t nargs)
{
	for (size_t i = 0; i < nargs; i++) {
		if (args[i].type != RAYC_TYPE_ACTOR)
			continue;
		rayc_actor id = { args[i].v.ref.id.hi, args[i].v.ref.id.lo };
		rayc__rt_lock(rt);
		rayc__actor *a = rayc__actor_handle_locked(rt, id);
		uint32_t owner = a != NULL && a->refcnt > 0
		                         ? borrow_first_locked(a)
		                         : 0;
		rayc__mutex_unlock(&rt->mu);
		int rc = register_with(rt, owner, id);
		if (rc != RAYC_OK && rc != RAYC_ENOTFOUND)
			return rayc__err(rc, "argument %zu: actor " ID_FMT ": "
			                 "registering with its owner: %s", i,
			                 ID_ARGS(id), rayc_errmsg());
	}
	return RAYC_OK;
}

/* Registers this peer's handles to id with its owner (take_handle_locked
 * said to).  RAYC_OK; RAYC_ENOTFOUND if the actor is dead (the handle
 * stays, its calls fail); else the error, and the handle just taken is
 * let go.  A proxy that asked stays marked borrowing whatever the
 * answer: the BORROW may have been applied without an answer coming
 * back, and the UNBORROW sent when the proxy goes is harmless if it was
 * not. */
static int borrow_from(rayc__rt *rt, uint32_t owner, rayc_actor id)
{
	int rc = register_with(rt, owner, id);

	if (rc == RAYC_OK || rc == RAYC_ENOTFOUND)
		return rc;
	rayc__rt_lock(rt);
	rayc__actor *a = rayc__actor_handle_locked(rt, id);
	if (a != NULL && a->handles > 0) {
		a->handles--;
		rayc__actor_unhold_locked(rt, a);
	}
	rayc__mutex_unlock(&rt->mu);
	return rc;
}

/* A handle to the actor of record r (rec's owner: self, or another
 * peer, then through a proxy), one more handle held.  RAYC_ENOTFOUND
 * for a record of ours whose actor is gone (its name being given back):
 * *stale then says so. */
static int handle_for(rayc__rt *rt, const char *name, const rayc__name_rec *r,
                      uint32_t self, rayc_actor *out, bool *stale)
{
	rayc__actor *a;
	int rc = RAYC_OK;
	uint32_t borrow = 0;

	*stale = false;
	const rayc__aclass *cls = rayc__aclass_find(r->cls);
	rayc__rt_lock(rt);
	if (r->owner == self) {
		a = rayc__actor_named_locked(rt, name);
		if (a == NULL || a->id.hi != r->id.hi || a->id.lo != r->id.lo) {
			*stale = true;
			a = NULL;
			rc = rayc__err(RAYC_ENOTFOUND, "no live actor is named "
			               "'%s'", name);
		}
	} else if (cls == NULL) {
		a = NULL;
		rc = rayc__err(RAYC_ENOFUNC, "actor '%s' is of class %s, "
		               "which this process has not registered", name,
		               r->cls);
	} else if ((a = rayc__actor_proxy_locked(rt, r->id, r->owner, cls,
	                                         self)) == NULL) {
		rc = rayc__err(RAYC_ENOMEM, "actor '%s'", name);
	}
	if (a != NULL) {
		borrow = take_handle_locked(a);
		*out = a->id;
	}
	rayc__mutex_unlock(&rt->mu);
	if (rc == RAYC_OK && (rc = borrow_from(rt, borrow, r->id)) != RAYC_OK) {
		if (rc == RAYC_ENOTFOUND) /* dead: not what a name finds */
			(void)rayc_actor_release(r->id);
		rc = rayc__err(rc, "actor '%s': %s", name,
		               rc == RAYC_ENOTFOUND ? "dead" : rayc_errmsg());
	}
	return rc;
}

/* In a cluster, with rt->name_mu held: claims name for the actor of
 * record *mine (id and class set; its owner, this peer, filled in) in
 * the control store (lib/net/names.c).  CLAIMED: make it; FOUND: *out is
 * a handle to the actor holding the name (get_if_exists); else an error
 * (RAYC_EEXIST: taken). */
static int claim_name(rayc__rt *rt, const char *name, rayc__name_rec *mine,
                      bool get_if_exists, rayc_actor *out)
{
	uint32_t self = rayc_peer_id();
	rayc__name_rec theirs;
	bool stale;
	int rc = RAYC_EEXIST;

	for (int tries = 0; tries < 8; tries++) {
		rc = rayc__net_name_claim(rt, name, mine, &theirs);
		if (rc == RAYC_OK)
			return CLAIMED;
		if (rc == RAYC_ENOTFOUND)
			continue; /* given back meanwhile */
		if (rc != RAYC_EEXIST)
			return rc;
		if (!get_if_exists && theirs.owner != self)
			return rayc__err(RAYC_EEXIST, "an actor named '%s' "
			                 "exists (class %s, owned by peer %u)",
			                 name, theirs.cls, theirs.owner);
		rc = handle_for(rt, name, &theirs, self, out, &stale);
		if (rc == RAYC_OK && get_if_exists)
			return FOUND;
		if (rc == RAYC_OK) { /* ours and alive: taken */
			rayc_actor_release(*out);
			return rayc__err(RAYC_EEXIST, "an actor named '%s' "
			                 "exists (class %s)", name, theirs.cls);
		}
		if (!stale)
			return rc;
		/* One of ours that died, its name still on its way back:
		 * give it back now. */
		if ((rc = rayc__net_name_drop(name, &theirs)) != RAYC_OK)
			return rc;
	}
	return rayc__err(rc, "actor name '%s': claimed and given back by "
	                 "others 8 times over; try again", name);
}

int rayc_actor_create_array(rayc_actor *out, const char *cls_name,
                            const rayc_actor_opts *opts, const rayc_arg *args,
                            size_t nargs)
{
	rayc__rt *rt = rayc__g;
	rayc_actor_opts def;
	int64_t demand[RAYC__MAX_RES];
	size_t extra;
	int rc;

	memset(&def, 0, sizeof(def));
	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	if (out == NULL || cls_name == NULL)
		return rayc__err(RAYC_EINVAL, "rayc_actor_create needs out "
		                 "and a class name");
	if (opts == NULL)
		opts = &def;
	if ((rc = check_opts(opts)) != RAYC_OK)
		return rc;
	const rayc__aclass *cls = rayc__aclass_find(cls_name);
	if (cls == NULL)
		return rayc__err(RAYC_ENOFUNC, "unknown actor class '%s' "
		                 "(register it with RAYC_ACTOR_CLASS or "
		                 "rayc_actor_class_register)", cls_name);
	if ((rc = rayc__check_args(args, nargs, &extra)) != RAYC_OK ||
	    (rc = rayc__args_borrow(rt, args, nargs)) != RAYC_OK)
		return rc;
	rayc_task_opts t_opts = RAYC_TASK_OPTS_DEFAULT;
	t_opts.num_cpus = opts->num_cpus;
	t_opts.num_gpus = opts->num_gpus;
	t_opts.resources = opts->resources;
	t_opts.num_resources = opts->num_resources;
	if ((rc = rayc__demand_of(rt, &t_opts, demand)) != RAYC_OK)
		return rc;
	if (opts->strategy == RAYC_STRATEGY_NODE_AFFINITY && !opts->soft &&
	    opts->node_id != rayc_peer_id() &&
	    !rayc__net_peer_alive(rt, opts->node_id))
		return rayc__err(RAYC_EINFEASIBLE, "node affinity: peer %u is "
		                 "not a live peer", opts->node_id);
	rayc__task *t = rayc__task_alloc(args, nargs, 1, extra);
	if (t == NULL)
		return RAYC_ENOMEM;
	t->id = rayc__next_task_id(rt, true);
	t->strategy = (uint8_t)opts->strategy;
	t->node_id = opts->node_id;
	t->soft = opts->soft != 0;

	/* In a cluster a name is the cluster's: claimed before the actor
	 * is made, one named creation at a time on this peer (so that a
	 * record of ours found here with no live actor is a stale one). */
	bool global = opts->name != NULL && rt->hooks != NULL;
	rayc__name_rec mine = { .id = { t->id.hi, t->id.lo } }; /* its id */
	snprintf(mine.cls, sizeof(mine.cls), "%s", cls->name);
	if (global) {
		rayc__mutex_lock(&rt->name_mu);
		rc = claim_name(rt, opts->name, &mine,
		                opts->get_if_exists != 0, out);
		if (rc != CLAIMED) {
			rayc__mutex_unlock(&rt->name_mu);
			rayc__task_free(t);
			return rc == FOUND ? RAYC_OK : rc;
		}
	}
	rayc__actor_params p = {
		.cls = cls,
		.name = opts->name,
		.name_global = global,
		.get_if_exists = opts->get_if_exists != 0,
		.detached = opts->lifetime == RAYC_LIFETIME_DETACHED,
		.max_restarts = opts->max_restarts,
		.max_task_retries = opts->max_task_retries,
		.max_conc = opts->max_concurrency,
		.demand = demand,
	};
	rayc__actor *a = NULL;
	rayc__rt_lock(rt);
	rc = rayc__args_resolve_locked(rt, t, args, nargs);
	if (rc != RAYC_OK)
		rayc__task_free(t);
	else
		rc = rayc__actor_create_locked(rt, t, &p, &a);
	if (rc == RAYC_OK)
		*out = a->id;
	rayc__mutex_unlock(&rt->mu);
	if (global && rc != RAYC_OK) {
		/* Not made: the name goes back (rayc_errmsg keeps why). */
		char why[256];
		snprintf(why, sizeof(why), "%s", rayc_errmsg());
		if (rayc__net_name_drop(opts->name, &mine) != RAYC_OK)
			rayc__log(RAYC_LOG_WARN, "RAYC-ACTOR-NAME",
			          "actor '%s' was not made and its name could "
			          "not be given back: %s", opts->name,
			          rayc_errmsg());
		(void)rayc__err(rc, "%s", why);
	}
	if (global)
		rayc__mutex_unlock(&rt->name_mu);
	return rc;
}

/* The actor of handle h with a hold the caller may count on; NULL
 * (rayc_errmsg set) if none. */
static rayc__actor *held_locked(rayc__rt *rt, rayc_actor h)
	RAYC_REQUIRES(rt->mu)
{
	rayc__actor *a = rayc__actor_handle_locked(rt, h);

	if (a == NULL || a->refcnt == 0) {
		(void)rayc__err(RAYC_ENOTFOUND, "actor " ID_FMT " has no live "
		                "handle here", ID_ARGS(h));
		return NULL;
	}
	return a;
}

int rayc_actor_call_array(rayc_ref *out, rayc_actor h, const char *method,
                          const rayc_method_opts *opts, const rayc_arg *args,
                          size_t nargs)
{
	rayc__rt *rt = rayc__g;
	size_t extra;
	int rc;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	int nret = opts != NULL ? opts->num_returns : 1;
	if (nret < 0 || nret > 4096)
		return rayc__err(RAYC_EINVAL, "num_returns %d (0..4096)", nret);
	if ((out == NULL && nret > 0) || method == NULL)
		return rayc__err(RAYC_EINVAL, "rayc_actor_call needs out and "
		                 "a method name");
	if ((rc = rayc__check_args(args, nargs, &extra)) != RAYC_OK)
		return rc;
	rayc__task *t = rayc__task_alloc(args, nargs, (uint32_t)nret, extra);
	if (t == NULL)
		return RAYC_ENOMEM;
	t->id = rayc__next_task_id(rt, true);
	if ((rc = rayc__args_borrow(rt, args, nargs)) != RAYC_OK) {
		rayc__task_free(t);
		return rc;
	}

	rayc__rt_lock(rt);
	rayc__actor *a = held_locked(rt, h);
	uint32_t owner = a != NULL ? borrow_first_locked(a) : 0;
	if (owner != 0) {
		/* Its first call from here: registered first (a call made
		 * here may outlive the task making it). */
		rayc__mutex_unlock(&rt->mu);
		rc = register_with(rt, owner, h);
		if (rc != RAYC_OK && rc != RAYC_ENOTFOUND) {
			rayc__task_free(t);
			return rc;
		}
		rayc__rt_lock(rt);
		a = held_locked(rt, h);
	}
	if (a == NULL) {
		rayc__mutex_unlock(&rt->mu);
		rayc__task_free(t);
		return RAYC_ENOTFOUND;
	}
	t->fn = rayc__aclass_method(a->cls, method);
	if (t->fn == NULL) {
		const char *cname = a->cls->name;
		rayc__mutex_unlock(&rt->mu);
		rayc__task_free(t);
		return rayc__err(RAYC_ENOFUNC, "actor class %s has no method "
		                 "'%s'", cname, method);
	}
	rc = rayc__args_resolve_locked(rt, t, args, nargs);
	if (rc != RAYC_OK) {
		rayc__mutex_unlock(&rt->mu);
		rayc__task_free(t);
		return rc;
	}
	for (int i = 0; i < nret; i++)
		out[i].id = rayc__return_id(t->id, (uint32_t)i);
	atomic_fetch_add_explicit(&rt->n_submitted, 1, memory_order_relaxed);
	rayc__actor_call_locked(rt, a, t);
	rayc__mutex_unlock(&rt->mu);
	return RAYC_OK;
}

int rayc_actor_get_named(rayc_actor *out, const char *name)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	if (out == NULL || name == NULL)
		return rayc__err(RAYC_EINVAL, "rayc_actor_get_named needs out "
		                 "and a name");
	rayc__rt_lock(rt);
	rayc__actor *a = rayc__actor_named_locked(rt, name);
	if (a != NULL) {
		(void)take_handle_locked(a); /* one of ours: no owner to ask */
		*out = a->id;
	}
	rayc__mutex_unlock(&rt->mu);
	if (a != NULL)
		return RAYC_OK;
	if (rt->hooks == NULL || strlen(name) > NAME_MAX_LEN)
		return rayc__err(RAYC_ENOTFOUND, "no live actor is named '%s'",
		                 name);
	/* Not one of ours: the cluster's registry. */
	rayc__name_rec r;
	bool stale;
	int rc = rayc__net_name_lookup(rt, name, &r);
	if (rc != RAYC_OK)
		return rc;
	return handle_for(rt, name, &r, rayc_peer_id(), out, &stale);
}

int rayc_actor_dup(rayc_actor h)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	uint32_t borrow = 0;
	rayc__rt_lock(rt);
	rayc__actor *a = held_locked(rt, h);
	if (a != NULL)
		borrow = take_handle_locked(a);
	rayc__mutex_unlock(&rt->mu);
	if (a == NULL)
		return RAYC_ENOTFOUND;
	int rc = borrow_from(rt, borrow, h);
	return rc == RAYC_ENOTFOUND ? RAYC_OK : rc; /* a dead actor's */
}

int rayc_actor_release(rayc_actor h)
{
	rayc__rt *rt = rayc__g;
	int rc = RAYC_OK;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	rayc__rt_lock(rt);
	rayc__actor *a = rayc__actor_handle_locked(rt, h);
	if (a == NULL || a->handles == 0) {
		rc = rayc__err(RAYC_ENOTFOUND, "actor " ID_FMT ": this "
		               "process holds no handle to release",
		               ID_ARGS(h));
	} else {
		/* A proxy registered with the owner tells it when it goes
		 * (settle_once), after the calls made through it. */
		a->handles--;
		rayc__actor_unhold_locked(rt, a);
	}
	rayc__mutex_unlock(&rt->mu);
	return rc;
}

int rayc_actor_kill(rayc_actor h, int no_restart)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	rayc__rt_lock(rt);
	rayc__actor *a = held_locked(rt, h);
	int rc = a != NULL ? RAYC_OK : RAYC_ENOTFOUND;
	uint32_t owner = 0;
	if (a != NULL && a->proxy)
		owner = a->owner; /* its owner decides: asked below */
	else if (a != NULL)
		rayc__actor_kill_locked(rt, a, no_restart != 0);
	rayc__mutex_unlock(&rt->mu);
	if (owner == 0)
		return rc;
	rc = rayc__net_actor_ctl(rt, owner, h,
	                         no_restart ? RAYC__ACTOR_CTL_KILL_NO_RESTART
	                                    : RAYC__ACTOR_CTL_KILL,
	                         NULL, NULL);
	if (rc == RAYC_EACTORDIED || rc == RAYC_ENOTFOUND)
		return RAYC_OK; /* dead already (with its owner, or gone) */
	return rc;
}

void *rayc_actor_state(rayc_ctx *ctx)
{
	if (ctx == NULL || ctx->task == NULL || ctx->task->actor == NULL)
		return NULL;
	return ctx->task->actor->state;
}

int rayc_actor_list(rayc_actor_info *out, size_t cap, size_t *n)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	if ((out == NULL && cap > 0) || n == NULL)
		return rayc__err(RAYC_EINVAL, "rayc_actor_list needs n");
	uint32_t self = rayc_peer_id();
	rayc__rt_lock(rt);
	*n = rayc__actor_list_locked(rt, out, cap, self, false);
	rayc__mutex_unlock(&rt->mu);
	return RAYC_OK;
}

int rayc_cluster_actors(rayc_actor_info *out, size_t cap, size_t *n)
{
	rayc__rt *rt = rayc__g;
	rayc_peer_info *peers = NULL;
	size_t np = 0, total = 0;
	int rc = RAYC_OK;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	if ((out == NULL && cap > 0) || n == NULL)
		return rayc__err(RAYC_EINVAL, "rayc_cluster_actors needs n");
	uint32_t self = rayc_peer_id();
	rayc__rt_lock(rt);
	total = rayc__actor_list_locked(rt, out, cap, self, rt->hooks != NULL);
	rayc__mutex_unlock(&rt->mu);
	if (rt->hooks != NULL) {
		peers = malloc(RAYC__MAX_PEERS * sizeof(*peers));
		if (peers == NULL)
			return rayc__err(RAYC_ENOMEM, "rayc_cluster_actors");
		rc = rayc_cluster_peers(peers, RAYC__MAX_PEERS, &np);
		if (rc != RAYC_OK) {
			free(peers);
			*n = total < cap ? total : cap;
			return rc; /* out of the cluster: only ours known */
		}
	}
	for (size_t k = 0; k < np && k < RAYC__MAX_PEERS; k++) {
		if (!peers[k].alive || peers[k].id == self)
			continue;
		size_t got = 0;
		int prc = rayc__net_actor_list(rt, peers[k].id,
		                               total < cap ? out + total : NULL,
		                               total < cap ? cap - total : 0,
		                               &got);
		if (prc == RAYC_EACTORDIED)
			continue; /* it died: its actors with it */
		if (prc == RAYC_ETOOBIG) {
			rc = prc; /* got: those it listed */
		} else if (prc != RAYC_OK) {
			rc = rayc__err(prc, "peer %u did not list its actors: "
			               "%s", peers[k].id, rayc_errmsg());
			continue;
		}
		total += got;
	}
	free(peers);
	*n = total;
	return rc;
}
