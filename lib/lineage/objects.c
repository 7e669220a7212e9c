/* objects.c -- the object table: entries, reference counts, sealing,
 * failure propagation, lineage retention and release, reconstruction
 * (objcache.c: the cache of secondary copies).
 *
 * Design notes.  Cascades (freeing a chain of lineage, failing a chain of
 * dependents, rebuilding a chain of lost objects) run over explicit work
 * lists, never recursion: a pipeline of 100,000 steps must not overflow a
 * worker's stack.  Reconstruction follows Ray's ownership paper (Wang et
 * al., NSDI'21, section 4.3): the owner re-submits the producing task of a
 * lost object, and recursively of its lost arguments, and nothing else.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "sched/actor.h"
#include "sched/direct.h"
#include "sched/sched.h"

/* A growable stack of pointers for the cascades. */
typedef struct worklist {
	void **v;
	size_t n, cap;
	void *small[32];
} worklist;

static void wl_init(worklist *w)
{
	w->v = w->small;
	w->n = 0;
	w->cap = 32;
}

static void wl_push(worklist *w, void *p)
{
	if (w->n == w->cap) {
		void **nv = malloc(2 * w->cap * sizeof(void *));
		if (nv == NULL)
			abort(); /* cannot keep invariants without memory */
		memcpy(nv, w->v, w->n * sizeof(void *));
		if (w->v != w->small)
			free(w->v);
		w->v = nv;
		w->cap *= 2;
	}
	w->v[w->n++] = p;
}

static void *wl_pop(worklist *w)
{
	return w->n > 0 ? w->v[--w->n] : NULL;
}

static void wl_fini(worklist *w)
{
	if (w->v != w->small)
		free(w->v);
}

rayc__obj *rayc__obj_find_indexed_locked(rayc__rt *rt, rayc_object_id id)
{
	return rayc__idtab_find(&rt->objs, id.hi, id.lo);
}

rayc__obj *rayc__obj_find_locked(rayc__rt *rt, rayc_object_id id)
{
	rayc__obj *o = rayc__idtab_find(&rt->objs, id.hi, id.lo);

	/* Not in the table: a direct task's, taken in (sched/direct.h). */
	if (o == NULL && rt->direct != NULL)
		o = rayc__direct_adopt_locked(rt, id);
	return o;
}

/* ---- lookups without rt->mu ----
 *
 * rayc_get of a ready object and rayc_release that is not the last one
 * need not wait for rt->mu, which every thread of the peer wants (with
 * four threads submitting, getting and releasing, a profile found half
 * their time spent on it).  The idtab is not safe to read unlocked, so
 * each entry made is also noted in rt->hints, a direct-mapped array
 * indexed by a hash of its id (sequential task and put numbers map to
 * consecutive slots), with at least as many slots as entries.  A hint is
 * only a guess: the entry may have been freed since, and its block reused
 * for another object.  That is safe
 * because entries come from a slab that keeps its memory (keep_all) and
 * never writes an entry's first fields but with atomics; rayc__obj_pin
 * raises refcnt only from above zero (an entry at zero may be freed at
 * once), then checks the id: a pinned entry is never freed, so if the id
 * matches, it is the object. */

/* The hints: as many slots as entries, at least (grown, twice the size
 * each time, as the table passes its size; refilled from the table
 * then).  A pinner may still read the array it loaded: arrays grown out
 * of are kept until the runtime goes, at most as much memory again. */
struct rayc__hints {
	size_t mask;
	struct rayc__hints *older;
	rayc__obj *_Atomic slot[];
};

#define HINTS_MIN 4096

static size_t hint_of(const rayc__hints *h, rayc_object_id id)
{
	/* Task returns: lo = number << 16 | index + 1; puts: lo = number;
	 * hi: the job, or a hash (nested tasks).  7 is odd: consecutive
	 * puts take distinct slots too. */
	uint64_t x = (id.lo >> 16) + id.lo * 7 + (id.hi ^ id.hi >> 32);
	return (size_t)x & h->mask;
}

static rayc__hints *hints_new(size_t n, rayc__hints *older)
{
	rayc__hints *h = calloc(1, sizeof(*h) + n * sizeof(h->slot[0]));

	if (h != NULL) {
		h->mask = n - 1;
		h->older = older;
	}
	return h;
}

static void hint_put(rayc__hints *h, rayc__obj *o)
{
	/* release: after the entry's first fields. */
	atomic_store_explicit(&h->slot[hint_of(h, o->id)], o,
	                      memory_order_release);
}

/* The table passed the hints' size: twice as many slots, each entry's
 * hint put again.  Out of memory: the old ones stay (hints are only
 * guesses). */
static void hints_grow_locked(rayc__rt *rt, rayc__hints *h)
	RAYC_REQUIRES(rt->mu)
{
	rayc__hints *nh = hints_new(2 * (h->mask + 1), h);
	rayc__obj *o;

	if (nh == NULL)
		return;
	RAYC__IDTAB_EACH(&rt->objs, i, o)
		hint_put(nh, o);
	atomic_store_explicit(&rt->hints, nh, memory_order_release);
}

int rayc__objtab_init_locked(rayc__rt *rt)
{
	rt->obj_slab.keep_all = true;
	rayc__hints *h = hints_new(HINTS_MIN, NULL);
	if (h == NULL)
		return RAYC_ENOMEM;
	int rc = rayc__idtab_init(&rt->objs);
	if (rc != RAYC_OK)
		free(h);
	else
		atomic_store(&rt->hints, h);
	return rc;
}

void rayc__objtab_free_hints(rayc__rt *rt)
{
	rayc__hints *h = atomic_exchange(&rt->hints, NULL);

	while (h != NULL) {
		rayc__hints *older = h->older;
		free(h);
		h = older;
	}
}

void rayc__obj_init(rayc__obj *o, rayc_object_id id)
{
	/* The first fields with atomics (a pinner may read them, and this
	 * block may have been an entry it had a hint for); refcnt is 0
	 * already if it was, and the new one's holder raises it with a
	 * release, after these. */
	__atomic_store_n(&o->id.hi, id.hi, __ATOMIC_RELAXED);
	__atomic_store_n(&o->id.lo, id.lo, __ATOMIC_RELAXED);
	atomic_store_explicit(&o->state, RAYC__OBJ_PENDING,
	                      memory_order_relaxed);
	atomic_store_explicit(&o->refcnt, 0, memory_order_relaxed);
	atomic_store_explicit(&o->handles, 0, memory_order_relaxed);
	memset(&o->type, 0, sizeof(*o) - offsetof(rayc__obj, type));
}

int rayc__obj_index_locked(rayc__rt *rt, rayc__obj *o)
{
	if (rayc__idtab_add(&rt->objs, o->id.hi, o->id.lo, o) != RAYC_OK)
		return RAYC_ENOMEM;
	rayc__hints *h = atomic_load_explicit(&rt->hints, memory_order_relaxed);
	hint_put(h, o);
	if (++rt->nobjs > h->mask + 1)
		hints_grow_locked(rt, h);
	return RAYC_OK;
}

rayc__obj *rayc__obj_new_locked(rayc__rt *rt, rayc_object_id id)
{
	rayc__obj *o = rayc__slab_alloc_n(&rt->obj_slab, 0);

	if (o == NULL)
		return NULL;
	rayc__obj_init(o, id);
	if (rayc__obj_index_locked(rt, o) != RAYC_OK) {
		rayc__slab_free(o);
		return NULL;
	}
	return o;
}

rayc__obj *rayc__obj_pin(rayc__rt *rt, rayc_object_id id)
{
	rayc__obj *o = rayc__direct_pin(rt, id);

	if (o != NULL)
		return o;
	rayc__hints *h = atomic_load_explicit(&rt->hints, memory_order_acquire);
	o = atomic_load_explicit(&h->slot[hint_of(h, id)],
	                         memory_order_acquire);
	return o != NULL ? rayc__obj_pin_entry(rt, o, id) : NULL;
}

rayc__obj *rayc__obj_pin_entry(rayc__rt *rt, rayc__obj *o, rayc_object_id id)
{
	int32_t n = atomic_load_explicit(&o->refcnt, memory_order_relaxed);
	do {
		if (n <= 0)
			return NULL;
	/* acquire: the raise from 0 (a release) came after the id's
	 * stores, and every later change of refcnt is a read-modify-write,
	 * so the id read next is this entry's. */
	} while (!atomic_compare_exchange_weak_explicit(
		&o->refcnt, &n, n + 1, memory_order_acquire,
		memory_order_relaxed));
	if (__atomic_load_n(&o->id.hi, __ATOMIC_RELAXED) != id.hi ||
	    __atomic_load_n(&o->id.lo, __ATOMIC_RELAXED) != id.lo) {
		rayc__obj_unpin(rt, o);
		return NULL;
	}
	return o;
}

void rayc__obj_unpin(rayc__rt *rt, rayc__obj *o)
{
	int32_t n = atomic_load_explicit(&o->refcnt, memory_order_relaxed);

	/* release: what the holder read of the entry comes first. */
	while (n > 1)
		if (atomic_compare_exchange_weak_explicit(
			    &o->refcnt, &n, n - 1, memory_order_release,
			    memory_order_relaxed))
			return;
	/* A direct task's entry, sealed without the lock: it and its task
	 * go without it too (sched/direct.h).  An adopter pins before it
	 * moves DONE on, so at the last ref the phase read here holds. */
	if (atomic_load_explicit(&o->dstate, memory_order_acquire) ==
	    RAYC__D_DONE) {
		if (atomic_fetch_sub_explicit(&o->refcnt, 1,
		                              memory_order_acq_rel) == 1)
			rayc__direct_free(rt, o);
		return;
	}
	/* The last ref goes under rt->mu: now if it is free, else its
	 * holder lets go of it when it unlocks (as rayc__sched_submit hands
	 * over a task). */
	if (rayc__mutex_trylock(&rt->mu)) {
		rayc__obj_unref_locked(rt, o);
		rayc__mutex_unlock(&rt->mu);
		return;
	}
	rayc__obj *head = atomic_load_explicit(&rayc__handoff_objs,
	                                       memory_order_relaxed);
	do
		o->dead_next = head;
	while (!atomic_compare_exchange_weak_explicit(
		&rayc__handoff_objs, &head, o, memory_order_release,
		memory_order_relaxed));
	rayc__fence_store_load();
	if (rayc__mutex_trylock(&rt->mu)) {
		rayc__obj_drain_locked(rt);
		rayc__mutex_unlock(&rt->mu);
	}
	/* Else its holder drains when it lets go (rayc__locks_exit). */
}

void rayc__obj_drain_locked(rayc__rt *rt)
{
	rayc__obj *o = atomic_exchange_explicit(&rayc__handoff_objs, NULL,
	                                        memory_order_acquire);

	while (o != NULL) {
		rayc__obj *next = o->dead_next;
		if (next != NULL) {
			/* Another thread let go of them: fetched while o
			 * is let go of. */
			__builtin_prefetch(next);
			__builtin_prefetch((char *)next + 64);
		}
		rayc__obj_unref_locked(rt, o); /* may free o */
		o = next;
	}
}

void rayc__obj_free_data_locked(rayc__rt *rt, rayc__obj *o)
{
	if (o->view != NULL)
		rt->hooks->view_done(rt, o);
	else if (o->block != NULL)
		rayc__store_free(rt->store, o->block);
	else if (o->data != NULL && o->data != o->inline_buf) {
		if (o->type != RAYC_TYPE_ERROR)
			rt->inline_bytes -= o->len;
		free(o->data);
	}
	o->block = NULL;
	o->data = NULL;
	o->len = 0;
}

static bool obj_alive(const rayc__obj *o)
{
	return o->refcnt > 0 || o->lineage_cnt > 0 || o->cached ||
	       (o->task != NULL && o->task->in_flight);
}

static void task_free_locked(rayc__rt *rt, rayc__task *t, worklist *wl)
{
	if (t->has_actor_args)
		rayc__actor_args_free_locked(rt, t);
	for (uint32_t i = 0; i < t->nargs; i++) {
		rayc__obj *a = t->args[i].ref;
		if (a != NULL) {
			a->lineage_cnt--;
			wl_push(wl, a);
		}
	}
	rt->nlineage--;
	rayc__task_free(t);
}

/* Frees every entry on the list (and what they release) that nothing
 * needs any more. */
static void collect_locked(rayc__rt *rt, worklist *wl)
{
	rayc__obj *o;

	while ((o = wl_pop(wl)) != NULL) {
		if (obj_alive(o))
			continue;
		rayc__idtab_del(&rt->objs, o->id.hi, o->id.lo);
		rt->nobjs--;
		rayc__obj_free_data_locked(rt, o);
		rayc__task *t = o->task;
		if (t != NULL) {
			t->returns[o->ret_idx] = NULL;
			if (--t->live_returns == 0 && !t->in_flight)
				task_free_locked(rt, t, wl);
		}
		free(o->borrowers);
		rayc__obj_mem_free(o);
	}
}

void rayc__obj_collect_one_locked(rayc__rt *rt, rayc__obj *o)
{
	worklist wl;

	wl_init(&wl);
	wl_push(&wl, o);
	collect_locked(rt, &wl);
	wl_fini(&wl);
}

void rayc__obj_unref_locked(rayc__rt *rt, rayc__obj *o)
{
	/* acq_rel: after a view's reads, released without the lock. */
	if (atomic_fetch_sub_explicit(&o->refcnt, 1, memory_order_acq_rel) > 1)
		return;
	if ((o->loc != 0 || o->borrowed) && rt->hooks != NULL)
		rt->hooks->obj_released(rt, o);
	if (rayc__cache_put_locked(rt, o))
		return;
	int st = atomic_load(&o->state);
	if (st == RAYC__OBJ_READY) {
		rayc__obj_free_data_locked(rt, o);
		atomic_store(&o->state, RAYC__OBJ_LOST);
	} else if (st == RAYC__OBJ_REMOTE) {
		atomic_store(&o->state, RAYC__OBJ_LOST);
	}
	rayc__obj_collect_one_locked(rt, o);
}

static void wake_waiters_locked(rayc__obj *o)
{
	rayc__wnode *n = o->waiters;

	while (n != NULL) {
		rayc__wnode *next = n->next;
		rayc__waiter *w = n->w;
		n->prev = n->next = NULL;
		n->obj = NULL;
		if (++w->ready == w->needed)
			rayc__event_set_after_unlock(&w->ev);
		n = next;
	}
	o->waiters = NULL;
}

static void unlink_dep(rayc__targ *a)
{
	rayc__obj *o = a->ref;

	if (a->dep_prev != NULL)
		a->dep_prev->dep_next = a->dep_next;
	else
		o->deps = a->dep_next;
	if (a->dep_next != NULL)
		a->dep_next->dep_prev = a->dep_prev;
	a->dep_prev = a->dep_next = NULL;
	a->waiting = false;
}

void rayc__obj_seal_locked(rayc__rt *rt, rayc__obj *o, rayc__ret *r)
{
	if (atomic_load(&o->state) != RAYC__OBJ_PENDING || o->refcnt == 0) {
		/* Nobody can read it (released, or already rebuilt). */
		if (r->block != NULL)
			rayc__store_free(rt->store, r->block);
		else if (r->data != NULL && r->data != r->buf)
			free(r->data);
		if (atomic_load(&o->state) == RAYC__OBJ_PENDING)
			atomic_store(&o->state, RAYC__OBJ_LOST);
		return;
	}
	o->type = r->type;
	o->len = r->len;
	o->block = r->block;
	if (r->data == r->buf) {
		memcpy(o->inline_buf, r->buf, sizeof(o->inline_buf));
		o->data = o->inline_buf;
	} else {
		o->data = r->data;
		if (r->block == NULL && r->data != NULL)
			rt->inline_bytes += r->len;
	}
	rayc__obj_mark_ready_locked(rt, o);
}

void rayc__obj_wake_locked(rayc__rt *rt, rayc__obj *o)
{
	(void)rt;
	wake_waiters_locked(o);
}

void rayc__obj_mark_ready_locked(rayc__rt *rt, rayc__obj *o)
{
	rayc__obj_mark_available_locked(rt, o, RAYC__OBJ_READY);
}

void rayc__obj_mark_available_locked(rayc__rt *rt, rayc__obj *o, int state)
{
	atomic_store_explicit(&o->state, state, memory_order_release);
	wake_waiters_locked(o);
	while (o->deps != NULL) {
		rayc__targ *a = o->deps;
		unlink_dep(a);
		if (--a->task->deps_pending == 0) {
			rt->pending_args--;
			rayc__sched_enqueue_locked(rt, a->task);
		}
	}
}

/* A task that will not run: mark it finished and queue its returns to be
 * failed.  Its argument holds are dropped later by rayc__task_done. */
static void task_abort_locked(rayc__rt *rt, rayc__task *t, worklist *fail)
{
	for (uint32_t i = 0; i < t->nargs; i++)
		if (t->args[i].waiting)
			unlink_dep(&t->args[i]);
	if (t->state == RAYC__TASK_PENDING_ARGS && t->deps_pending > 0)
		rt->pending_args--;
	t->deps_pending = 0;
	for (uint32_t i = 0; i < t->nreturns; i++)
		if (t->returns[i] != NULL)
			wl_push(fail, t->returns[i]);
}

static void fail_all_locked(rayc__rt *rt, worklist *fail, int err,
                            const char *msg)
{
	worklist done;
	rayc__obj *o;
	rayc__task *t;

	wl_init(&done);
	while ((o = wl_pop(fail)) != NULL) {
		int st = atomic_load(&o->state);
		if (st == RAYC__OBJ_READY || st == RAYC__OBJ_ERROR ||
		    st == RAYC__OBJ_REMOTE)
			continue;
		rayc__obj_free_data_locked(rt, o);
		o->data = strdup(msg);
		o->len = o->data != NULL ? strlen(msg) : 0;
		o->type = RAYC_TYPE_ERROR;
		o->err = err;
		atomic_store_explicit(&o->state, RAYC__OBJ_ERROR,
		                      memory_order_release);
		wake_waiters_locked(o);
		while (o->deps != NULL) {
			t = o->deps->task;
			task_abort_locked(rt, t, fail);
			wl_push(&done, t);
		}
	}
	while ((t = wl_pop(&done)) != NULL)
		rayc__task_done_locked(rt, t);
	wl_fini(&done);
}

void rayc__obj_fail_locked(rayc__rt *rt, rayc__obj *o, int err,
                           const char *msg)
{
	worklist fail;
	char *copy = strdup(msg); /* msg may belong to an entry we free */

	wl_init(&fail);
	wl_push(&fail, o);
	fail_all_locked(rt, &fail, err, copy != NULL ? copy : "out of memory");
	wl_fini(&fail);
	free(copy);
}

void rayc__obj_owner_died_msg(const rayc__obj *o, char *buf, size_t n)
{
	snprintf(buf, n, "object %016llx%016llx: its owner, peer %u, died; "
	         "an object does not outlive its owner",
	         (unsigned long long)o->id.hi, (unsigned long long)o->id.lo,
	         o->owner);
}

void rayc__obj_owner_died_locked(rayc__rt *rt, rayc__obj *o)
{
	char msg[160];
	int st = atomic_load(&o->state);

	o->owner_died = true;
	if (st == RAYC__OBJ_READY || st == RAYC__OBJ_ERROR)
		return; /* readers are refused in rayc_get and at task start */
	if (st == RAYC__OBJ_PENDING && !o->fetching)
		return; /* a return of a task running here: sealed, then
		           refused */
	rayc__obj_owner_died_msg(o, msg, sizeof(msg));
	rayc__obj_fail_locked(rt, o, RAYC_EOWNERDIED, msg);
}

/* Holds t's ref arguments and counts the pending ones; lost ones go on
 * rebuild.  Returns the first error argument (or one whose owner died),
 * or NULL. */
static rayc__obj *resolve_args_locked(rayc__rt *rt, rayc__task *t,
                                      worklist *rebuild)
{
	t->deps_pending = 0;
	for (uint32_t i = 0; i < t->nargs; i++) {
		rayc__targ *a = &t->args[i];
		rayc__obj *o = a->ref;
		if (o == NULL)
			continue;
		if (!a->held) {
			rayc__obj_ref_locked(o);
			a->held = true;
		}
		int st = atomic_load(&o->state);
		if (st == RAYC__OBJ_ERROR || o->owner_died)
			return o;
		if (st == RAYC__OBJ_READY || st == RAYC__OBJ_REMOTE)
			continue;
		if (st == RAYC__OBJ_LOST)
			wl_push(rebuild, o);
		a->task = t;
		a->dep_prev = NULL;
		a->dep_next = o->deps;
		if (o->deps != NULL)
			o->deps->dep_prev = a;
		o->deps = a;
		a->waiting = true;
		/* If a batch runs o's producer, that run now hands itself
		 * over as it ends (sched/execute.c). */
		rayc__sched_watch_locked(rt, o);
		t->deps_pending++;
	}
	return NULL;
}

/* Resolves t's arguments and queues it, fails it, or leaves it waiting.
 * Lost arguments are pushed on rebuild. */
static bool start_task_locked(rayc__rt *rt, rayc__task *t, worklist *rebuild)
{
	rayc__obj *bad = resolve_args_locked(rt, t, rebuild);

	if (bad != NULL) {
		worklist fail;
		char why[160] = "argument failed";
		int err = bad->err;
		if (atomic_load(&bad->state) != RAYC__OBJ_ERROR) {
			rayc__obj_owner_died_msg(bad, why, sizeof(why));
			err = RAYC_EOWNERDIED;
		} else if (bad->data != NULL) {
			snprintf(why, sizeof(why), "%s", (char *)bad->data);
		}
		char *msg = strdup(why);
		wl_init(&fail);
		t->state = RAYC__TASK_PENDING_ARGS;
		/* Counted as waiting for the arguments linked before the bad
		 * one, as task_abort_locked expects (it uncounts it). */
		if (t->deps_pending > 0)
			rt->pending_args++;
		task_abort_locked(rt, t, &fail);
		t->deps_pending = 0;
		fail_all_locked(rt, &fail, err, msg != NULL ? msg : "failed");
		wl_fini(&fail);
		free(msg);
		rayc__task_done_locked(rt, t);
		return false;
	}
	if (t->deps_pending > 0) {
		t->state = RAYC__TASK_PENDING_ARGS;
		rt->pending_args++;
	} else {
		rayc__sched_enqueue_locked(rt, t);
	}
	return true;
}

static void rebuild_all_locked(rayc__rt *rt, worklist *rebuild)
{
	rayc__obj *o;
	char msg[160];

	while ((o = wl_pop(rebuild)) != NULL) {
		if (atomic_load(&o->state) != RAYC__OBJ_LOST)
			continue;
		rayc__task *t = o->task;
		if (t != NULL && t->akind == RAYC__AK_CALL) {
			snprintf(msg, sizeof(msg), "a result of actor call %s "
			         "is lost; results of actor calls are not "
			         "rebuilt (the call changed the actor's state)",
			         t->fn->name);
			rayc__obj_fail_locked(rt, o, RAYC_ELOST, msg);
			continue;
		}
		if (t == NULL && o->owner_died) {
			rayc__obj_owner_died_msg(o, msg, sizeof(msg));
			rayc__obj_fail_locked(rt, o, RAYC_EOWNERDIED, msg);
			continue;
		}
		if (t == NULL) {
			if (o->owner != 0)
				snprintf(msg, sizeof(msg), "object "
				         "%016llx%016llx, borrowed from peer %u, "
				         "is lost here; only its owner could "
				         "rebuild it",
				         (unsigned long long)o->id.hi,
				         (unsigned long long)o->id.lo, o->owner);
			else
				snprintf(msg, sizeof(msg), "object "
				         "%016llx%016llx was made by rayc_put and "
				         "its data is lost; it cannot be "
				         "reconstructed",
				         (unsigned long long)o->id.hi,
				         (unsigned long long)o->id.lo);
			rayc__obj_fail_locked(rt, o, RAYC_ELOST, msg);
			continue;
		}
		atomic_store(&o->state, RAYC__OBJ_PENDING);
		if (t->in_flight)
			continue; /* its run in progress will seal o */
		for (uint32_t i = 0; i < t->nreturns; i++) {
			rayc__obj *r = t->returns[i];
			if (r != NULL && atomic_load(&r->state) == RAYC__OBJ_LOST)
				atomic_store(&r->state, RAYC__OBJ_PENDING);
		}
		t->in_flight = true;
		t->reconstruct = true;
		atomic_fetch_add(&rt->n_reconstructed, 1);
		rayc__log(RAYC_LOG_DEBUG, "RAYC-LINEAGE-REBUILD",
		          "re-running task %s to rebuild a lost object",
		          t->fn->name);
		start_task_locked(rt, t, rebuild);
	}
}

bool rayc__task_resolve_args_locked(rayc__rt *rt, rayc__task *t)
{
	worklist rebuild;

	wl_init(&rebuild);
	bool ok = start_task_locked(rt, t, &rebuild);
	rebuild_all_locked(rt, &rebuild);
	wl_fini(&rebuild);
	/* It waits for arguments: a batch's run that made one and ended
	 * before it was marked is completed here (sched/execute.c). */
	if (ok && t->state == RAYC__TASK_PENDING_ARGS)
		(void)rayc__sched_batch_finish_locked(rt);
	return ok;
}

void rayc__task_rerun_locked(rayc__rt *rt, rayc__task *t)
{
	for (uint32_t i = 0; i < t->nreturns; i++) {
		rayc__obj *r = t->returns[i];
		if (r == NULL)
			continue;
		rayc__obj_free_data_locked(rt, r);
		r->type = RAYC_TYPE_NONE;
		r->err = 0;
		atomic_store(&r->state, RAYC__OBJ_PENDING);
	}
	t->in_flight = true;
	(void)rayc__task_resolve_args_locked(rt, t);
}

void rayc__task_fail_locked(rayc__rt *rt, rayc__task *t, int err,
                            const char *msg)
{
	worklist fail;
	char *copy = strdup(msg);

	wl_init(&fail);
	task_abort_locked(rt, t, &fail);
	fail_all_locked(rt, &fail, err, copy != NULL ? copy : "out of memory");
	wl_fini(&fail);
	free(copy);
	rayc__task_done_locked(rt, t);
}

void rayc__obj_reconstruct_locked(rayc__rt *rt, rayc__obj *o)
{
	worklist rebuild;

	wl_init(&rebuild);
	wl_push(&rebuild, o);
	rebuild_all_locked(rt, &rebuild);
	wl_fini(&rebuild);
}

void rayc__obj_drop_data_locked(rayc__rt *rt, rayc__obj *o)
{
	if (atomic_load(&o->state) != RAYC__OBJ_READY)
		return;
	rayc__obj_free_data_locked(rt, o);
	atomic_store(&o->state, RAYC__OBJ_LOST);
}

void rayc__task_done_locked(rayc__rt *rt, rayc__task *t)
{
	worklist wl;

	if (t->foreign)
		rt->hooks->task_finished(rt, t);
	if (t->akind == RAYC__AK_CALL && t->actor != NULL)
		rayc__actor_call_done_locked(rt, t);
	t->in_flight = false;
	t->reconstruct = false;
	t->state = RAYC__TASK_FINISHED;
	for (uint32_t i = 0; i < t->nargs; i++) {
		rayc__targ *a = &t->args[i];
		if (a->held) {
			a->held = false;
			rayc__obj_unref_locked(rt, a->ref);
		}
	}
	wl_init(&wl);
	bool any = false;
	for (uint32_t i = 0; i < t->nreturns; i++)
		if (t->returns[i] != NULL) {
			wl_push(&wl, t->returns[i]);
			any = true;
		}
	if (!any)
		task_free_locked(rt, t, &wl);
	collect_locked(rt, &wl);
	wl_fini(&wl);
}

void rayc__objtab_destroy_locked(rayc__rt *rt)
{
	rayc__obj *o;
	worklist tasks;

	wl_init(&tasks);
	RAYC__IDTAB_EACH(&rt->objs, i, o) {
		rayc__obj_free_data_locked(rt, o);
		rayc__task *t = o->task;
		if (t != NULL && --t->live_returns == 0)
			wl_push(&tasks, t);
		free(o->borrowers);
		rayc__obj_mem_free(o);
	}
	rayc__task *t;
	while ((t = wl_pop(&tasks)) != NULL) {
		rt->nlineage--;
		rayc__task_free(t);
	}
	wl_fini(&tasks);
	rayc__idtab_fini(&rt->objs);
	rt->nobjs = 0;
}
