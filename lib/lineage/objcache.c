/* objcache.c -- the cache of secondary copies (see below) and making room
 * for an object in the store by evicting them.  The object table itself
 * is objects.c. */
#include "lineage/lineage.h"

/* A copy of another peer's object, fetched for a task here, stays in the
 * store after its last local ref goes: the next task here that needs it
 * finds it READY and fetches nothing (Ray keeps secondary copies the same
 * way).  The cache holds at most half the store; beyond that, and
 * whenever the store is full, the least recently used copies go.  A
 * cached copy is never a borrow: the owner may free the object, and the
 * copy stays valid (objects never change) until evicted. */

static void lru_unlink(rayc__rt *rt, rayc__obj *o) RAYC_REQUIRES(rt->mu)
{
	TAILQ_REMOVE(&rt->cache, o, lru);
	o->cached = false;
	rt->cache_bytes -= o->len;
}

void rayc__cache_take_locked(rayc__obj *o)
{
	lru_unlink(rayc__g, o);
}

/* Evicts the least recently used copy; false if the cache is empty. */
static bool evict_one_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu)
{
	return !TAILQ_EMPTY(&rt->cache) &&
	       rayc__cache_drop_locked(rt, TAILQ_FIRST(&rt->cache));
}

/* o (a READY secondary copy in the store) lost its last ref: keep it. */
bool rayc__cache_put_locked(rayc__rt *rt, rayc__obj *o)
{
	if (rt->net == NULL || o->owner == 0 || o->block == NULL ||
	    o->held_remote || o->owner_died ||
	    atomic_load(&o->state) != RAYC__OBJ_READY ||
	    o->len > rt->cache_cap)
		return false;
	while (rt->cache_bytes + o->len > rt->cache_cap &&
	       evict_one_locked(rt))
		;
	o->cached = true;
	TAILQ_INSERT_TAIL(&rt->cache, o, lru);
	rt->cache_bytes += o->len;
	return true;
}

bool rayc__cache_drop_locked(rayc__rt *rt, rayc__obj *o)
{
	if (!o->cached)
		return false;
	lru_unlink(rt, o);
	rayc__obj_free_data_locked(rt, o);
	atomic_store(&o->state, RAYC__OBJ_LOST);
	rayc__obj_collect_one_locked(rt, o);
	return true;
}

int rayc__obj_alloc_block(rayc__rt *rt, size_t n, rayc__block **out)
{
	bool again = true;

	for (;;) {
		int rc = rayc__store_alloc(rt->store, n, out);
		if (rc != RAYC_ESTOREFULL)
			return rc;
		rayc__mutex_lock(&rt->mu);
		/* Objects whose last ref was handed over while the lock was
		 * busy (rayc__obj_unpin) go first: a release that returned
		 * before this call has made its room by the time the lock is
		 * ours, here or by the holder that let it go; so the store
		 * is tried once more after this even if nothing is evicted. */
		rayc__obj_drain_locked(rt);
		bool evicted = false;
		/* Free a bit more than asked: fragments of the arena need
		 * not join up. */
		size_t want = n + n / 4, got = 0;
		while (got < want && !TAILQ_EMPTY(&rt->cache)) {
			got += TAILQ_FIRST(&rt->cache)->len;
			evicted = evict_one_locked(rt);
		}
		rayc__mutex_unlock(&rt->mu);
		if (!evicted && !again)
			return rc;
		again = evicted;
	}
}
