/* api.c -- the public entry points for tasks and objects: rayc_call,
 * rayc_get, rayc_wait, rayc_put and friends.  Each validates its input,
 * then does its work under rt->mu through lib/lineage and lib/sched. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api_int.h"
#include "lineage/lineage.h"
#include "net/net.h"
#include "registry.h"
#include "sched/actor.h"
#include "sched/direct.h"
#include "sched/sched.h"

#define ID_FMT "%016llx%016llx"
#define ID_ARGS(id) (unsigned long long)(id).hi, (unsigned long long)(id).lo

/* Spin before parking: a driver waiting for a result that is microseconds
 * away should not pay a futex round trip; a blocked task frees its CPU so
 * it spins less. */
#define GET_SPIN_NS 50000
#define TASK_GET_SPIN_NS 5000

static rayc__rt *running(void)
{
	return rayc__g;
}

/* Builds the demand vector of opts.  In a cluster a demand no live peer
 * meets is not refused: the task waits for a peer that can run it
 * (lib/net: owner.c), and a resource name nobody has yet gets its index
 * here.  A one-peer cluster, which nobody can join, refuses it with
 * RAYC_EINFEASIBLE. */
int rayc__demand_of(rayc__rt *rt, const rayc_task_opts *o, int64_t *d)
{
	/* Set at init, before any call can come, and never changed after. */
	bool cluster = rt->net != NULL;

	memset(d, 0, sizeof(int64_t) * RAYC__MAX_RES);
	if (!(o->num_cpus >= 0) || !(o->num_gpus >= 0))
		return rayc__err(RAYC_EINVAL, "negative resource demand");
	d[RAYC__RES_CPU] = rayc__res_from_double(o->num_cpus);
	d[RAYC__RES_GPU] = rayc__res_from_double(o->num_gpus);
	for (int i = 0; i < o->num_resources; i++) {
		const rayc_resource *r = &o->resources[i];
		if (r->name == NULL || !(r->quantity >= 0))
			return rayc__err(RAYC_EINVAL, "bad resource demand %d", i);
		int k = rayc__res_find(rt, r->name);
		if (k < 0 && cluster) {
			rayc__mutex_lock(&rt->mu);
			k = rayc__res_index_locked(rt, r->name, true);
			rayc__mutex_unlock(&rt->mu);
		}
		if (k < 0)
			return rayc__err(RAYC_EINFEASIBLE,
			                 "no peer has resource '%s'%s", r->name,
			                 cluster ? " (and no room to name more)"
			                         : "");
		d[k] += rayc__res_from_double(r->quantity);
	}
	if (!cluster && !rayc__sched_feasible(rt, d)) {
		for (int k = 0; k < rt->nres; k++)
			if (d[k] > rt->res_total[k])
				return rayc__err(
					RAYC_EINFEASIBLE,
					"task needs %s=%g but the cluster has %g",
					rt->res_names[k], rayc__res_to_double(d[k]),
					rayc__res_to_double(rt->res_total[k]));
		return RAYC_EINFEASIBLE;
	}
	return RAYC_OK;
}

/* *sum += n rounded up to 8; false, leaving *sum, if that overflows. */
static bool add_copy_len(size_t *sum, size_t n)
{
	if (n > SIZE_MAX - 7)
		return false;
	n = (n + 7) & ~(size_t)7;
	if (*sum > SIZE_MAX - n)
		return false;
	*sum += n;
	return true;
}

/* Checks the arguments and sums the space their by-value copies take
 * (*extra), refusing lengths whose sum would overflow: they would wrap
 * to a small allocation and the copy would run past it. */
int rayc__check_args(const rayc_arg *args, size_t nargs, size_t *extra)
{
	*extra = 0;
	if (nargs > 0 && args == NULL)
		return rayc__err(RAYC_EINVAL, "NULL argument array");
	for (size_t i = 0; i < nargs; i++) {
		const rayc_arg *a = &args[i];
		switch (a->type) {
		case RAYC_TYPE_I64:
		case RAYC_TYPE_F64:
		case RAYC_TYPE_REF:
		case RAYC_TYPE_ACTOR:
			break;
		case RAYC_TYPE_STR:
			if (a->v.ptr == NULL)
				return rayc__err(RAYC_EINVAL,
				                 "argument %zu: NULL string", i);
			if (!add_copy_len(extra, strlen(a->v.ptr) + 1))
				return rayc__err(RAYC_EINVAL, "argument %zu: "
				                 "string too long", i);
			break;
		case RAYC_TYPE_BYTES:
			if (a->v.ptr == NULL && a->len > 0)
				return rayc__err(RAYC_EINVAL,
				                 "argument %zu: NULL bytes", i);
			if (!add_copy_len(extra, a->len))
				return rayc__err(
					RAYC_EINVAL, "argument %zu: %zu "
					"bytes (with the arguments before "
					"it, more than memory can hold)",
					i, a->len);
			break;
		default:
			return rayc__err(RAYC_EINVAL,
			                 "argument %zu: unknown type %d", i,
			                 (int)a->type);
		}
	}
	return RAYC_OK;
}

static void fill_args(rayc__task *t, const rayc_arg *args, char *copy);

/* One allocation holds the task, its args, its return pointers and the
 * copies of by-value data.  NULL if out of memory, or if the size
 * overflows (callers check each argument's length first). */
rayc__task *rayc__task_alloc(const rayc_arg *args, size_t nargs,
                             uint32_t nret, size_t extra)
{
	size_t fixed = sizeof(rayc__task) + nret * sizeof(rayc__obj *);

	if (nargs > (SIZE_MAX - fixed) / sizeof(rayc__targ) ||
	    extra > SIZE_MAX - fixed - nargs * sizeof(rayc__targ))
		return NULL;
	size_t total = fixed + nargs * sizeof(rayc__targ) + extra;
	rayc__rt *rt = rayc__g;
	rayc__task *t;

	if (total <= RAYC__TASK_SLAB_BYTES && rt != NULL) {
		t = rayc__slab_alloc_n(&rt->task_slab, total);
		if (t != NULL)
			t->mem = RAYC__MEM_SLAB;
	} else {
		t = calloc(1, total);
	}
	if (t == NULL)
		return NULL;
	t->args = (rayc__targ *)(t + 1);
	t->returns = (rayc__obj **)(t->args + nargs);
	t->nargs = (uint32_t)nargs;
	t->nreturns = nret;
	fill_args(t, args, (char *)(t->returns + nret));
	return t;
}

/* Whether every argument is an 8-byte value (a direct task's record
 * has room for those only). */
static bool args_by_value(const rayc_arg *args, size_t nargs)
{
	for (size_t i = 0; i < nargs; i++)
		if (args[i].type != RAYC_TYPE_I64 &&
		    args[i].type != RAYC_TYPE_F64)
			return false;
	return true;
}

/* Copies t->nargs arguments into t->args, their bytes and strings to
 * copy on (room the caller sized with rayc__check_args). */
static void fill_args(rayc__task *t, const rayc_arg *args, char *copy)
{
	for (size_t i = 0; i < t->nargs; i++) {
		rayc__targ *a = &t->args[i];
		a->type = args[i].type;
		a->task = t;
		switch ((int)a->type) { /* RAYC__TYPE_STRN is no rayc_type */
		case RAYC_TYPE_I64:
			a->v.i64 = args[i].v.i64;
			a->len = 8;
			break;
		case RAYC_TYPE_F64:
			a->v.f64 = args[i].v.f64;
			a->len = 8;
			break;
		case RAYC__TYPE_STRN:
			/* A string of len bytes, not terminated (from the
			 * wire): copied and terminated. */
			a->type = RAYC_TYPE_STR;
			a->len = args[i].len;
			if (a->len > 0)
				memcpy(copy, args[i].v.ptr, a->len);
			copy[a->len] = '\0';
			a->v.ptr = copy;
			copy += (a->len + 1 + 7) & ~(size_t)7;
			break;
		case RAYC_TYPE_STR:
			a->len = strlen(args[i].v.ptr);
			memcpy(copy, args[i].v.ptr, a->len + 1);
			a->v.ptr = copy;
			copy += (a->len + 1 + 7) & ~(size_t)7;
			break;
		case RAYC_TYPE_BYTES:
			a->len = args[i].len;
			if (a->len > 0)
				memcpy(copy, args[i].v.ptr, a->len);
			a->v.ptr = copy;
			copy += (a->len + 7) & ~(size_t)7;
			break;
		default:
			break;
		}
	}
}

rayc_task_id rayc__next_task_id(rayc__rt *rt, bool fresh)
{
	rayc_task_id id;
	rayc_ctx *parent = rayc__cur;

	if (!fresh && parent != NULL && parent->task != NULL) {
		/* Deterministic: a re-run of the parent makes the same ids. */
		uint64_t key[3] = { parent->task->id.hi, parent->task->id.lo,
		                    parent->task->child_counter++ };
		XXH128_hash_t h = XXH3_128bits(key, sizeof(key));
		id.hi = h.high64;
		id.lo = h.low64 & ~(uint64_t)0xffff;
	} else {
		/* Numbers are taken 64 at a time: threads submitting at once
		 * do not all write one counter's cache line per task.  The
		 * job tells this runtime's block from an earlier one's. */
		static _Thread_local struct {
			uint64_t job, next, end;
		} blk;
		if (blk.job != rt->job || blk.next == blk.end) {
			blk.job = rt->job;
			blk.next = atomic_fetch_add_explicit(
				&rt->next_task, 64, memory_order_relaxed);
			blk.end = blk.next + 64;
		}
		id.hi = rt->job;
		id.lo = blk.next++ << 16;
	}
	return id;
}

int rayc_call_array(rayc_ref *out, const char *fn_name,
                    const rayc_task_opts *opts, const rayc_arg *args,
                    size_t nargs)
{
	rayc__rt *rt = running();
	rayc_task_opts def = RAYC_TASK_OPTS_DEFAULT;
	int64_t demand[RAYC__MAX_RES];
	size_t extra;
	int rc;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	if (opts == NULL)
		opts = &def;
	if (opts->num_returns < 0 || opts->num_returns > 4096)
		return rayc__err(RAYC_EINVAL, "num_returns %d (0..4096)",
		                 opts->num_returns);
	if ((out == NULL && opts->num_returns > 0) || fn_name == NULL)
		return rayc__err(RAYC_EINVAL, "rayc_call needs out and a name");
	if (opts->num_resources < 0 ||
	    (opts->num_resources > 0 && opts->resources == NULL))
		return rayc__err(RAYC_EINVAL, "bad resources array");
	const rayc__fn_entry *fn = rayc__registry_find(fn_name);
	if (fn == NULL)
		return rayc__err(RAYC_ENOFUNC,
		                 "unknown function '%s' (register it with "
		                 "RAYC_REMOTE or rayc_register)", fn_name);
	rc = rayc__check_args(args, nargs, &extra);
	if (rc != RAYC_OK)
		return rc;
	/* The default demand's class, known feasible (rayc_init): a peer
	 * with no mesh skips working it out for each call. */
	bool dflt = rt->dclass != NULL && opts->num_cpus == 1.0 &&
	            opts->num_gpus == 0 && opts->num_resources == 0;
	if (!dflt && (rc = rayc__demand_of(rt, opts, demand)) != RAYC_OK)
		return rc;
	if (opts->strategy < RAYC_STRATEGY_DEFAULT ||
	    opts->strategy > RAYC_STRATEGY_NODE_AFFINITY)
		return rayc__err(RAYC_EINVAL, "unknown strategy %d",
		                 opts->strategy);
	if (opts->strategy == RAYC_STRATEGY_NODE_AFFINITY && !opts->soft &&
	    opts->node_id != rayc_peer_id() &&
	    !rayc__net_peer_alive(rt, opts->node_id))
		return rayc__err(RAYC_EINFEASIBLE,
		                 "node affinity: peer %u is not a live peer",
		                 opts->node_id);
	uint32_t nret = (uint32_t)opts->num_returns;
	bool refs = false;
	for (size_t i = 0; i < nargs && !refs; i++)
		refs = args[i].type == RAYC_TYPE_REF ||
		       args[i].type == RAYC_TYPE_ACTOR;
	rayc__sclass *sc = refs   ? NULL
	                   : dflt ? rt->dclass
	                          : rayc__sched_class_find(rt, demand);
	rayc__task *t = NULL;
	/* A direct task (sched/direct.h) lies in a record where it fits. */
	bool direct = sc != NULL && sc == rt->dclass && nret == 1 &&
	              rayc__cur == NULL;
	if (direct && args_by_value(args, nargs)) {
		rayc_task_id id = rayc__next_task_id(rt, false);
		if ((t = rayc__direct_task(rt, id, nargs)) != NULL)
			fill_args(t, args, NULL);
		else if ((t = rayc__task_alloc(args, nargs, nret, extra)) !=
		         NULL)
			t->id = id;
	} else if ((t = rayc__task_alloc(args, nargs, nret, extra)) != NULL) {
		t->id = rayc__next_task_id(rt, false);
	}
	if (t == NULL)
		return RAYC_ENOMEM;
	t->fn = fn;
	t->max_retries = opts->max_retries;
	t->retry_exceptions = opts->retry_exceptions != 0;
	t->strategy = (uint8_t)opts->strategy;
	t->node_id = opts->node_id;
	t->soft = opts->soft != 0;

	t->nested = rayc__cur != NULL;
	for (uint32_t i = 0; i < nret; i++)
		out[i].id = rayc__return_id(t->id, i);
	atomic_fetch_add_explicit(&rt->n_submitted, 1, memory_order_relaxed);

	if ((t->sclass = sc) != NULL) {
		/* No wait for rt->mu; a direct task meets it at no step. */
		if (!direct || !rayc__direct_submit(rt, t))
			rayc__sched_submit(rt, t);
		return RAYC_OK;
	}
	if ((rc = rayc__args_borrow(rt, args, nargs)) != RAYC_OK) {
		rayc__task_free(t);
		atomic_fetch_sub(&rt->n_submitted, 1);
		return rc;
	}
	rayc__rt_lock(rt); /* earlier submissions are recorded first */
	rc = rayc__args_resolve_locked(rt, t, args, nargs);
	if (rc != RAYC_OK) {
		rayc__mutex_unlock(&rt->mu);
		rayc__task_free(t);
		atomic_fetch_sub(&rt->n_submitted, 1);
		return rc;
	}
	t->sclass = dflt ? rt->dclass : rayc__sched_class_locked(rt, demand);
	if (t->sclass == NULL) {
		rayc__actor_args_free_locked(rt, t);
		rayc__mutex_unlock(&rt->mu);
		rayc__task_free(t);
		atomic_fetch_sub(&rt->n_submitted, 1);
		return RAYC_ENOMEM;
	}
	rayc__task_record_locked(rt, t);
	rayc__mutex_unlock(&rt->mu);
	return RAYC_OK;
}

static void fill_view(rayc_view *v, rayc__obj *o)
{
	v->data = o->data;
	v->len = o->len;
	v->type = o->type;
	v->priv_ = o;
}

static void unlink_wnode(rayc__wnode *n)
{
	rayc__obj *o = n->obj;

	if (o == NULL)
		return;
	if (n->prev != NULL)
		n->prev->next = n->next;
	else
		o->waiters = n->next;
	if (n->next != NULL)
		n->next->prev = n->prev;
	n->obj = NULL;
}

static void link_wnode(rayc__wnode *n, rayc__obj *o, rayc__waiter *w)
{
	n->w = w;
	n->obj = o;
	n->prev = NULL;
	n->next = o->waiters;
	if (o->waiters != NULL)
		o->waiters->prev = n;
	o->waiters = n;
}

static int64_t deadline_of(int timeout_ms)
{
	return timeout_ms < 0 ? -1
	                      : rayc__now_ns() + (int64_t)timeout_ms * 1000000;
}

/* Parks the caller until w is set or the deadline.  A task gives back its
 * CPU while parked. */
static bool park_locked(rayc__rt *rt, rayc__waiter *w, int64_t deadline)
	RAYC_REQUIRES(rt->mu)
{
	rayc_ctx *ctx = rayc__cur;

	if (ctx != NULL)
		rayc__sched_block_locked(rt, ctx);
	/* A batch's run that makes what we wait for: if it ended before
	 * this, it is completed here; if after, it was marked waited for
	 * when the wait was linked (rayc__sched_watch_locked) and hands
	 * itself over as it ends (sched/execute.c). */
	(void)rayc__sched_batch_finish_locked(rt);
	rayc__mutex_unlock(&rt->mu);
	static _Thread_local rayc__spin spin;
	bool ok = ctx != NULL
	                  ? rayc__event_wait(&w->ev, deadline, TASK_GET_SPIN_NS)
	                  : rayc__event_wait_learn(&w->ev, deadline,
	                                           GET_SPIN_NS, &spin);
	rayc__mutex_lock(&rt->mu);
	if (ctx != NULL)
		rayc__sched_unblock_locked(rt, ctx);
	return ok;
}

/* A ready object of this peer's, found and pinned without rt->mu (its
 * readers' common case); false: look it up under the lock. */
static bool get_fast(rayc__rt *rt, rayc_ref ref, rayc_view *view)
{
	rayc__obj *o = rayc__obj_pin(rt, ref.id);

	if (o == NULL)
		return false;
	if (o->in_rec)
		rayc__drec_prefetch_after(o);
	/* acquire: the data, and owner, were set before it became ready
	 * (a direct task's: before DONE, its state PENDING until adopted:
	 * sched/direct.h).
	 * A copy of another peer's object goes the slow way: its owner may
	 * die (owner_died is set under the lock).  So does an entry no
	 * handle names (a ref released, its last ref maybe handed over and
	 * not let go yet: under the lock it is gone, RAYC_ENOTFOUND). */
	if ((atomic_load_explicit(&o->state, memory_order_acquire) ==
	             RAYC__OBJ_READY ||
	     atomic_load_explicit(&o->dstate, memory_order_acquire) ==
	             RAYC__D_DONE) &&
	    o->owner == 0 &&
	    atomic_load_explicit(&o->handles, memory_order_relaxed) > 0) {
		fill_view(view, o); /* the pin is the view's */
		return true;
	}
	rayc__obj_unpin(rt, o);
	return false;
}

/* A direct task's result not sealed yet (sched/direct.h): looked at
 * again for up to DIRECT_SPIN_NS, a short task's run, before the wait
 * under rt->mu, which takes the entry into the table (its worker then
 * seals it there) and parks.  A synchronous call of an empty task went
 * that way every time. */
#define DIRECT_SPIN_NS 5000

static bool direct_soon(rayc__rt *rt, rayc_ref ref, rayc_view *view)
{
	rayc__obj *o = rayc__direct_pin(rt, ref.id);
	int64_t end = -1;
	bool ok = false;

	if (o == NULL)
		return false;
	for (unsigned i = 1;; i++) {
		uint8_t s = atomic_load_explicit(&o->dstate,
		                                 memory_order_acquire);
		if (s == RAYC__D_DONE) {
			ok = true;
			break;
		}
		if (s == RAYC__D_NONE)
			break; /* adopted meanwhile */
		if (i % 32 == 0) {
			int64_t now = rayc__now_ns();
			rayc__direct_waits(rt, true); /* if held back */
			if (end < 0)
				end = now + DIRECT_SPIN_NS;
			else if (now >= end)
				break;
		}
		rayc__cpu_relax();
	}
	if (!ok || atomic_load_explicit(&o->handles, memory_order_relaxed) <= 0) {
		rayc__obj_unpin(rt, o);
		return false;
	}
	fill_view(view, o); /* the pin is the view's */
	return true;
}

int rayc_get(rayc_ref ref, rayc_view *view, int timeout_ms)
{
	rayc__rt *rt = running();
	int64_t deadline;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	if (view == NULL)
		return rayc__err(RAYC_EINVAL, "NULL view");
	memset(view, 0, sizeof(*view)); /* releasing it after an error is safe */
	if (get_fast(rt, ref, view))
		return RAYC_OK;
	/* Read the clock only for a get that may wait: a clock read is
	 * 26 ns on a KVM guest (kvm-clock), a tenth of a ready get. */
	deadline = deadline_of(timeout_ms);
	if (timeout_ms != 0) {
		rayc__direct_waits(rt, false);
		if (direct_soon(rt, ref, view))
			return RAYC_OK;
	}
	rayc__rt_lock(rt);
	rayc__obj *o = rayc__obj_find_locked(rt, ref.id);
	if (o == NULL) {
		rayc__mutex_unlock(&rt->mu);
		return rayc__err(RAYC_ENOTFOUND, "ref " ID_FMT " is not live",
		                 ID_ARGS(ref.id));
	}
	rayc__obj_ref_locked(o); /* keeps o while we wait */
	for (;;) {
		int st = atomic_load(&o->state);
		if (st == RAYC__OBJ_READY && o->owner_died) {
			char msg[160];
			rayc__obj_owner_died_msg(o, msg, sizeof(msg));
			rayc__obj_unref_locked(rt, o);
			rayc__mutex_unlock(&rt->mu);
			return rayc__err(RAYC_EOWNERDIED, "%s", msg);
		}
		if (st == RAYC__OBJ_READY || st == RAYC__OBJ_ERROR) {
			fill_view(view, o); /* our ref becomes the pin */
			int err = st == RAYC__OBJ_READY ? RAYC_OK : o->err;
			rayc__mutex_unlock(&rt->mu);
			if (err != RAYC_OK)
				return rayc__err(err, "%s", (char *)o->data);
			return RAYC_OK;
		}
		if (rt->stopping) {
			rayc__obj_unref_locked(rt, o);
			rayc__mutex_unlock(&rt->mu);
			return rayc__err(RAYC_ESTATE, "runtime shutting down");
		}
		if (st == RAYC__OBJ_LOST) {
			rayc__obj_reconstruct_locked(rt, o);
			continue;
		}
		if (st == RAYC__OBJ_REMOTE) {
			rayc__net_fetch_locked(rt, o); /* bytes are elsewhere */
			continue;
		}
		if (timeout_ms == 0 ||
		    (deadline >= 0 && rayc__now_ns() >= deadline)) {
			/* Its producer may have ended in a batch, not
			 * completed yet (sched/execute.c; a wait does this
			 * in park_locked). */
			if (rayc__sched_batch_finish_locked(rt))
				continue;
			rayc__obj_unref_locked(rt, o);
			rayc__mutex_unlock(&rt->mu);
			return rayc__err(RAYC_ETIMEDOUT, "object not ready");
		}
		if (rayc__cur != NULL &&
		    rayc__sched_try_inline_locked(rt, rayc__cur, o))
			continue;
		rayc__waiter w = { .needed = 1 };
		rayc__wnode n;
		link_wnode(&n, o, &w);
		rayc__sched_watch_locked(rt, o);
		rayc__direct_waits(rt, true); /* before a direct task's? */
		(void)park_locked(rt, &w, deadline);
		unlink_wnode(&n);
	}
}

void rayc_view_release(rayc_view *view)
{
	rayc__rt *rt = running();

	if (view == NULL || view->priv_ == NULL || rt == NULL)
		return;
	rayc__obj_unpin(rt, view->priv_); /* after the view's reads */
	memset(view, 0, sizeof(*view));
}

static int get_scalar(rayc_ref ref, rayc_type type, void *out, int timeout_ms)
{
	rayc_view v = { 0 };
	int rc;

	if (out == NULL)
		return rayc__err(RAYC_EINVAL, "NULL out pointer");
	rc = rayc_get(ref, &v, timeout_ms);
	if (rc == RAYC_OK && (v.type != type || v.len != 8))
		rc = rayc__err(RAYC_ETYPE, "object holds type %d, not %d",
		               (int)v.type, (int)type);
	else if (rc == RAYC_OK)
		memcpy(out, v.data, 8);
	rayc_view_release(&v);
	return rc;
}

int rayc_get_i64(rayc_ref ref, int64_t *out, int timeout_ms)
{
	return get_scalar(ref, RAYC_TYPE_I64, out, timeout_ms);
}

int rayc_get_f64(rayc_ref ref, double *out, int timeout_ms)
{
	return get_scalar(ref, RAYC_TYPE_F64, out, timeout_ms);
}

static bool is_done(const rayc__obj *o)
{
	int st = atomic_load(&o->state);
	return st == RAYC__OBJ_READY || st == RAYC__OBJ_ERROR ||
	       st == RAYC__OBJ_REMOTE;
}

static int cmp_id(const void *a, const void *b)
{
	const rayc_object_id *x = a, *y = b;

	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* RAYC_EINVAL if a ref comes twice (ray.wait refuses that too); tmp
 * holds n ids. */
static int check_distinct(const rayc_ref *refs, size_t n, rayc_object_id *tmp)
{
	for (size_t i = 0; i < n; i++)
		tmp[i] = refs[i].id;
	qsort(tmp, n, sizeof(*tmp), cmp_id);
	for (size_t i = 1; i < n; i++)
		if (cmp_id(&tmp[i - 1], &tmp[i]) == 0)
			return rayc__err(RAYC_EINVAL, "rayc_wait: ref " ID_FMT
			                 " given twice", ID_ARGS(tmp[i]));
	return RAYC_OK;
}

int rayc_wait(const rayc_ref *refs, size_t n, size_t num_ready,
              int timeout_ms, uint8_t *ready_flags, size_t *out_ready)
{
	rayc__rt *rt = running();
	int64_t deadline = deadline_of(timeout_ms);
	rayc__obj **objs;
	rayc__wnode *nodes;
	size_t ready = 0;
	int rc = RAYC_OK;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	if ((refs == NULL && n > 0) || num_ready > n)
		return rayc__err(RAYC_EINVAL, "rayc_wait: %zu of %zu refs",
		                 num_ready, n);
	objs = malloc(n * (sizeof(*objs) + sizeof(*nodes)) + 1);
	if (objs == NULL)
		return RAYC_ENOMEM;
	nodes = (rayc__wnode *)(objs + n);
	rc = check_distinct(refs, n, (rayc_object_id *)(void *)nodes);
	if (rc != RAYC_OK) {
		free(objs);
		return rc;
	}
	rayc__rt_lock(rt);
	for (size_t i = 0; i < n; i++) {
		objs[i] = rayc__obj_find_locked(rt, refs[i].id);
		if (objs[i] == NULL) {
			for (size_t k = 0; k < i; k++)
				rayc__obj_unref_locked(rt, objs[k]);
			rayc__mutex_unlock(&rt->mu);
			free(objs);
			return rayc__err(RAYC_ENOTFOUND,
			                 "ref %zu is not live", i);
		}
		rayc__obj_ref_locked(objs[i]);
		if (atomic_load(&objs[i]->state) == RAYC__OBJ_LOST)
			rayc__obj_reconstruct_locked(rt, objs[i]);
	}
	for (;;) {
		ready = 0;
		for (size_t i = 0; i < n; i++)
			ready += is_done(objs[i]);
		if (ready >= num_ready)
			break;
		if (rt->stopping) {
			rc = rayc__err(RAYC_ESTATE, "runtime shutting down");
			break;
		}
		if (timeout_ms == 0 ||
		    (deadline >= 0 && rayc__now_ns() >= deadline)) {
			if (rayc__sched_batch_finish_locked(rt))
				continue; /* as in rayc_get */
			rc = rayc__err(RAYC_ETIMEDOUT, "%zu of %zu ready", ready,
			               num_ready);
			break;
		}
		rayc__waiter w = { .needed = num_ready - ready };
		for (size_t i = 0; i < n; i++)
			if (!is_done(objs[i])) {
				link_wnode(&nodes[i], objs[i], &w);
				rayc__sched_watch_locked(rt, objs[i]);
			} else
				nodes[i].obj = NULL;
		rayc__direct_waits(rt, true); /* before a direct task's? */
		(void)park_locked(rt, &w, deadline);
		for (size_t i = 0; i < n; i++)
			unlink_wnode(&nodes[i]);
	}
	/* As ray.wait: at most num_ready reported, the first ready ones in
	 * the order given (all that are ready when fewer). */
	size_t told = 0, most = rc == RAYC_OK ? num_ready : n;
	for (size_t i = 0; i < n; i++) {
		bool r = told < most && is_done(objs[i]);
		told += r;
		if (ready_flags != NULL)
			ready_flags[i] = r;
		rayc__obj_unref_locked(rt, objs[i]);
	}
	rayc__mutex_unlock(&rt->mu);
	free(objs);
	if (out_ready != NULL)
		*out_ready = told;
	return rc;
}

static rayc_object_id next_put_id(rayc__rt *rt)
{
	rayc_object_id id = {
		rt->job ^ 0x8000000000000000ull,
		atomic_fetch_add_explicit(&rt->next_put, 1,
		                          memory_order_relaxed)
	};
	return id;
}

/* Space for a put: the entry's inline buffer is chosen later; heap for
 * small objects, arena for the rest. */
static int put_space(rayc__rt *rt, size_t n, void **p, rayc__block **b)
{
	*b = NULL;
	if (n <= RAYC__INLINE_BYTES) {
		*p = NULL;
		return RAYC_OK;
	}
	if (n <= RAYC__SMALL_MAX) {
		*p = malloc(n);
		return *p != NULL ? RAYC_OK : RAYC_ENOMEM;
	}
	int rc = rayc__obj_alloc_block(rt, n, b);
	if (rc == RAYC_OK) {
		*p = rayc__store_ptr(rt->store, *b);
		rayc__store_warm(rt->store, *p, n);
	}
	return rc;
}

static int put_new(rayc__rt *rt, rayc_ref *out, size_t n, void **data,
                   int state)
{
	void *p;
	rayc__block *b;
	int rc = put_space(rt, n, &p, &b);

	if (rc != RAYC_OK)
		return rc;
	rayc__mutex_lock(&rt->mu);
	rayc__obj *o = rayc__obj_new_locked(rt, next_put_id(rt));
	if (o == NULL) {
		rayc__mutex_unlock(&rt->mu);
		if (b != NULL)
			rayc__store_free(rt->store, b);
		else
			free(p);
		return RAYC_ENOMEM;
	}
	o->is_put = true;
	atomic_store_explicit(&o->handles, 1, memory_order_relaxed);
	/* release: rayc__obj_pin reads the id after this */
	atomic_store_explicit(&o->refcnt, 1, memory_order_release);
	o->type = RAYC_TYPE_BYTES;
	o->len = n;
	o->block = b;
	o->data = p != NULL ? p : o->inline_buf;
	if (b == NULL && p != NULL)
		rt->inline_bytes += n;
	*data = o->data;
	atomic_store(&o->state, state);
	out->id = o->id;
	rayc__mutex_unlock(&rt->mu);
	return RAYC_OK;
}

int rayc_put(rayc_ref *out, const void *data, size_t n)
{
	rayc__rt *rt = running();
	rayc_ref r;
	void *dst;
	int rc;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	if (out == NULL || (data == NULL && n > 0))
		return rayc__err(RAYC_EINVAL, "rayc_put needs out and data");
	/* Created pending, filled outside the lock, then sealed. */
	rc = put_new(rt, &r, n, &dst, RAYC__OBJ_PENDING);
	if (rc != RAYC_OK)
		return rc;
	if (n > 0)
		memcpy(dst, data, n);
	rc = rayc_put_seal(r);
	if (rc == RAYC_OK)
		*out = r;
	return rc;
}

int rayc_put_create(rayc_ref *out, size_t n, void **data)
{
	rayc__rt *rt = running();

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	if (out == NULL || data == NULL)
		return rayc__err(RAYC_EINVAL, "rayc_put_create needs out/data");
	return put_new(rt, out, n, data, RAYC__OBJ_PENDING);
}

/* Takes rt->mu and finds the unsealed rayc_put_create object of ref; on
 * error the lock is dropped again. */
static int find_unsealed(rayc__rt *rt, rayc_ref ref, rayc__obj **out)
	RAYC_NO_TSA
{
	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	rayc__rt_lock(rt);
	rayc__obj *o = rayc__obj_find_locked(rt, ref.id);
	if (o == NULL || !o->is_put ||
	    atomic_load(&o->state) != RAYC__OBJ_PENDING) {
		rayc__mutex_unlock(&rt->mu);
		return rayc__err(o == NULL ? RAYC_ENOTFOUND : RAYC_ESTATE,
		                 "not an unsealed rayc_put_create object");
	}
	*out = o;
	return RAYC_OK;
}

int rayc_put_seal(rayc_ref ref)
{
	rayc__rt *rt = running();
	rayc__obj *o;
	int rc = find_unsealed(rt, ref, &o);

	if (rc != RAYC_OK)
		return rc;
	rayc__obj_mark_ready_locked(rt, o);
	rayc__mutex_unlock(&rt->mu);
	return RAYC_OK;
}

int rayc_put_abort(rayc_ref ref)
{
	rayc__rt *rt = running();
	rayc__obj *o;
	int rc = find_unsealed(rt, ref, &o);

	if (rc != RAYC_OK)
		return rc;
	rayc__obj_fail_locked(rt, o, RAYC_ELOST, "rayc_put_abort: aborted");
	if (rayc__obj_handle_take(o)) /* the creator's ref goes with it */
		rayc__obj_unref_locked(rt, o);
	rayc__mutex_unlock(&rt->mu);
	return RAYC_OK;
}

int rayc_ref_dup(rayc_ref ref)
{
	rayc__rt *rt = running();

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	rayc__rt_lock(rt);
	rayc__obj *o = rayc__obj_find_locked(rt, ref.id);
	if (o != NULL) {
		rayc__obj_ref_locked(o);
		atomic_fetch_add_explicit(&o->handles, 1,
		                          memory_order_relaxed);
	}
	rayc__mutex_unlock(&rt->mu);
	return o != NULL ? RAYC_OK
	                 : rayc__err(RAYC_ENOTFOUND, "ref is not live");
}

int rayc_release(rayc_ref ref)
{
	rayc__rt *rt = running();
	bool held;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	/* Views, task arguments and the cluster hold it too, but only a
	 * handle is the program's to drop: an entry kept for those, or
	 * only as lineage, holds none. */
	rayc__obj *o = rayc__direct_pin(rt, ref.id);

	if (o != NULL) {
		/* A direct task's entry (sched/direct.h): no lock at all. */
		held = rayc__obj_handle_take(o);
		if (held)
			atomic_fetch_sub_explicit(&o->refcnt, 1,
			                          memory_order_release);
		rayc__obj_unpin(rt, o);
		if (held)
			return RAYC_OK;
		o = NULL;
	}
	bool locked = rayc__rt_trylock(rt);
	/* rt->mu busy: no wait for it unless this is the last ref. */
	if (!locked && (o = rayc__obj_pin(rt, ref.id)) != NULL &&
	    rayc__obj_handle_take(o)) {
		held = true;
		/* The handle's ref: o keeps our pin. */
		atomic_fetch_sub_explicit(&o->refcnt, 1, memory_order_release);
		rayc__obj_unpin(rt, o);
	} else {
		/* No handle on it: the answer is the locked one's, after
		 * submissions handed over are recorded (a nested call made
		 * again may be about to hand this entry out anew). */
		if (o != NULL)
			rayc__obj_unpin(rt, o);
		if (!locked)
			rayc__rt_lock(rt);
		o = rayc__obj_find_locked(rt, ref.id);
		held = o != NULL && rayc__obj_handle_take(o);
		if (held)
			rayc__obj_unref_locked(rt, o);
		rayc__mutex_unlock(&rt->mu);
	}
	return held ? RAYC_OK
	            : rayc__err(RAYC_ENOTFOUND, "ref " ID_FMT " is not held "
	                        "(released already, or borrowed: "
	                        "rayc_ref_dup a borrowed ref to keep it)",
	                        ID_ARGS(ref.id));
}
