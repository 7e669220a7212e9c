/* lineage.h -- the owner's object table: ids to entries, reference
 * counts, sealing and failing objects, lineage retention and release, and
 * reconstruction of lost objects by re-running their producing tasks.
 * All calls need rt->mu (they end in _locked). */
#ifndef RAYC_LINEAGE_H
#define RAYC_LINEAGE_H

#include "rt.h"

rayc__obj *rayc__obj_find_locked(rayc__rt *rt, rayc_object_id id)
	RAYC_REQUIRES(rt->mu);
/* The same in the table only (no direct task's entry is adopted). */
rayc__obj *rayc__obj_find_indexed_locked(rayc__rt *rt, rayc_object_id id)
	RAYC_REQUIRES(rt->mu);
/* Inserts a new PENDING entry with refcnt 0.  NULL on ENOMEM. */
rayc__obj *rayc__obj_new_locked(rayc__rt *rt, rayc_object_id id)
	RAYC_REQUIRES(rt->mu);
/* _new_locked's two halves: a block from rt->obj_slab made a PENDING
 * entry of id with refcnt 0 (no lock needed), and an entry put in the
 * table (RAYC_ENOMEM: it is not). */
void rayc__obj_init(rayc__obj *o, rayc_object_id id);
int rayc__obj_index_locked(rayc__rt *rt, rayc__obj *o) RAYC_REQUIRES(rt->mu);

/* A cached secondary copy wanted again leaves the cache. */
void rayc__cache_take_locked(rayc__obj *o);

/* Without rt->mu (objects.c, "lookups without rt->mu"): the entry of id
 * with one more ref, if it is live and its hint still names it; NULL
 * otherwise (look it up under the lock).  Drop the ref with
 * rayc__obj_unpin. */
rayc__obj *rayc__obj_pin(rayc__rt *rt, rayc_object_id id);
/* The same for o, a guess at id's entry read from an index. */
rayc__obj *rayc__obj_pin_entry(rayc__rt *rt, rayc__obj *o, rayc_object_id id);
/* Drops one ref without waiting for rt->mu: the last one goes under the
 * lock, taken now if free, else handed to its holder, who lets it go as
 * it unlocks (rayc__obj_drain_locked). */
void rayc__obj_unpin(rayc__rt *rt, rayc__obj *o);
/* Takes one of the program's handles off o (and not its ref): false if
 * it holds none.  Needs no lock. */
static inline bool rayc__obj_handle_take(rayc__obj *o)
{
	int32_t h = atomic_load_explicit(&o->handles, memory_order_relaxed);

	while (h > 0)
		if (atomic_compare_exchange_weak_explicit(
			    &o->handles, &h, h - 1, memory_order_relaxed,
			    memory_order_relaxed))
			return true;
	return false;
}
/* Lets go of the last refs handed over by rayc__obj_unpin. */
void rayc__obj_drain_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);

static inline void rayc__obj_ref_locked(rayc__obj *o)
{
	/* release: a raise from 0 is what rayc__obj_pin syncs with. */
	if (atomic_fetch_add_explicit(&o->refcnt, 1, memory_order_release) ==
	            0 &&
	    o->cached)
		rayc__cache_take_locked(o);
}

/* Allocates n bytes of the store for an object, evicting cached
 * secondary copies (least recently used first) if the store is full.
 * Called without rt->mu. */
int rayc__obj_alloc_block(rayc__rt *rt, size_t n, rayc__block **out);
/* If o is a cached secondary copy, evicts it (o may be freed) and
 * returns true. */
bool rayc__cache_drop_locked(rayc__rt *rt, rayc__obj *o) RAYC_REQUIRES(rt->mu);
/* o (a READY secondary copy in the store) lost its last ref: keeps it in
 * the cache if it may; false if not (objcache.c). */
bool rayc__cache_put_locked(rayc__rt *rt, rayc__obj *o) RAYC_REQUIRES(rt->mu);
/* Inside the table (objects.c): frees o's data; frees o itself if
 * nothing needs it any more (which may release lineage upstream). */
void rayc__obj_free_data_locked(rayc__rt *rt, rayc__obj *o)
	RAYC_REQUIRES(rt->mu);
void rayc__obj_collect_one_locked(rayc__rt *rt, rayc__obj *o)
	RAYC_REQUIRES(rt->mu);
/* Drops one reference; frees the data at zero and the entry when nothing
 * needs it (which may release lineage upstream). */
void rayc__obj_unref_locked(rayc__rt *rt, rayc__obj *o) RAYC_REQUIRES(rt->mu);

/* Seals o with the value in r (ownership of r's data moves to o) and
 * wakes waiters and dependent tasks.  If o is not pending (already
 * rebuilt or released) r's data is freed instead. */
void rayc__obj_seal_locked(rayc__rt *rt, rayc__obj *o, rayc__ret *r)
	RAYC_REQUIRES(rt->mu);
/* Seals o with the data already in it (rayc_put_seal) and wakes waiters
 * and dependent tasks. */
void rayc__obj_mark_ready_locked(rayc__rt *rt, rayc__obj *o)
	RAYC_REQUIRES(rt->mu);
/* Marks o available in state READY or REMOTE (sealed elsewhere) and
 * wakes waiters and dependent tasks. */
void rayc__obj_mark_available_locked(rayc__rt *rt, rayc__obj *o, int state)
	RAYC_REQUIRES(rt->mu);
/* Wakes o's waiters (they look at its state again). */
void rayc__obj_wake_locked(rayc__rt *rt, rayc__obj *o) RAYC_REQUIRES(rt->mu);
/* Makes o an error object (err: RAYC_ETASK, RAYC_ELOST, ...; msg copied)
 * and fails every task that depends on it, transitively. */
void rayc__obj_fail_locked(rayc__rt *rt, rayc__obj *o, int err,
                           const char *msg) RAYC_REQUIRES(rt->mu);

/* o's owner, peer o->owner, died (o is a borrowed ref or a copy of
 * another peer's object, not a return of a task here): marks it
 * owner_died, and fails it with RAYC_EOWNERDIED now unless its data is
 * here (readers already holding a view keep it). */
void rayc__obj_owner_died_locked(rayc__rt *rt, rayc__obj *o)
	RAYC_REQUIRES(rt->mu);
/* The message a reader of an owner_died object gets. */
void rayc__obj_owner_died_msg(const rayc__obj *o, char *buf, size_t n);

/* Makes a LOST object PENDING again by re-submitting the tasks needed,
 * recursively.  A lost object without lineage becomes an ELOST error
 * (EOWNERDIED if it was borrowed from a peer that died).
 * No-op for objects that are not LOST. */
void rayc__obj_reconstruct_locked(rayc__rt *rt, rayc__obj *o)
	RAYC_REQUIRES(rt->mu);

/* Runs a finished task again on purpose (an actor's constructor, for a
 * restart): its returns become PENDING, their data freed. */
void rayc__task_rerun_locked(rayc__rt *rt, rayc__task *t) RAYC_REQUIRES(rt->mu);
/* Fails a task that is not running (waiting for arguments, or for its
 * turn): its returns become errors (err, msg) and it is finished. */
void rayc__task_fail_locked(rayc__rt *rt, rayc__task *t, int err,
                            const char *msg) RAYC_REQUIRES(rt->mu);

/* Test hook: drops o's data as if its memory were lost. */
void rayc__obj_drop_data_locked(rayc__rt *rt, rayc__obj *o)
	RAYC_REQUIRES(rt->mu);

/* A task finished (ran or failed): drop its argument holds and let its
 * spec go if none of its returns is still alive. */
void rayc__task_done_locked(rayc__rt *rt, rayc__task *t) RAYC_REQUIRES(rt->mu);

/* Hooks a task's ref arguments to their objects: holds each, counts the
 * ones not ready (task->deps_pending; their producers' runs in batches
 * are marked waited for, and ended ones completed: sched/execute.c),
 * starts reconstruction of lost ones.
 * Returns false if an argument is already an error (the task has then
 * been failed and finished). */
bool rayc__task_resolve_args_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);

/* Sets up the object table at init: RAYC_OK or RAYC_ENOMEM. */
int rayc__objtab_init_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);
/* Frees the hints (rt_free, after the table is destroyed). */
void rayc__objtab_free_hints(rayc__rt *rt);
/* Frees every entry and task at shutdown. */
void rayc__objtab_destroy_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);

#endif /* RAYC_LINEAGE_H */
