/* actor_peers.c -- actors between peers: the handle a peer holds for an
 * actor another peer owns (a proxy, whose calls go to the owner), the
 * instance a peer hosts for its owner (constructor, calls and destructor
 * arriving as TASK frames), and what a peer's death does to both. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "registry.h"
#include "sched/actor_int.h"
#include "sched/sched.h"

rayc__actor *rayc__actor_handle_locked(rayc__rt *rt, rayc_actor id)
{
	rayc__actor *a = rayc__actor_find_locked(rt, id);

	if (a != NULL && !a->hosted)
		return a;
	HASH_FIND(hh, rt->actor_proxies, &id, sizeof(id), a);
	return a;
}

rayc__actor *rayc__actor_proxy_locked(rayc__rt *rt, rayc_actor id,
                                      uint32_t owner, const rayc__aclass *cls,
                                      uint32_t self)
{
	rayc__actor *a;

	if (owner == self) {
		a = rayc__actor_find_locked(rt, id);
		return a != NULL && !a->hosted ? a : NULL;
	}
	HASH_FIND(hh, rt->actor_proxies, &id, sizeof(id), a);
	if (a != NULL)
		return a;
	a = rayc__actor_calloc();
	if (a == NULL)
		return NULL;
	a->id = id;
	a->cls = cls;
	a->proxy = true;
	a->owner = owner;
	a->loc = owner; /* its calls go there */
	a->st = RAYC_ACTOR_ALIVE;
	a->max_conc = 1;
	HASH_ADD(hh, rt->actor_proxies, id, sizeof(a->id), a);
	return a;
}

bool rayc__actor_host_locked(rayc__rt *rt, rayc__task *t, rayc_actor id,
                             const rayc__aclass *cls, int max_conc,
                             bool detached, const char *name, char *msg,
                             size_t n)
{
	rayc__actor *a = rayc__actor_find_locked(rt, id);

	if (t->akind == RAYC__AK_CTOR) {
		if (a != NULL) {
			snprintf(msg, n, "actor %s " ID_FMT ": an instance is "
			         "still on the peer asked to run it", cls->name,
			         ID_ARGS(id));
			return false;
		}
		a = rayc__actor_calloc();
		if (a == NULL ||
		    (a->state = calloc(1, cls->state_size + 1)) == NULL ||
		    (name != NULL && (a->name = strdup(name)) == NULL)) {
			if (a != NULL)
				free(a->state);
			free(a);
			snprintf(msg, n, "actor %s: no memory for it on the "
			         "peer asked to run it", cls->name);
			return false;
		}
		a->id = id;
		a->cls = cls;
		a->hosted = true;
		a->detached = detached;
		a->owner = t->owner;
		a->st = RAYC_ACTOR_PENDING;
		a->refcnt = 1; /* the owner's */
		a->max_conc = max_conc > 0 ? max_conc : 1;
		memcpy(a->demand, t->sclass->demand, sizeof(a->demand));
		a->ctor_running = true;
		HASH_ADD(hh, rt->actors, id, sizeof(a->id), a);
		rt->nactors++;
		t->actor = a;
		t->fn = rayc__actor_ctor_fn();
		return true;
	}
	if (a != NULL && !a->hosted && t->akind == RAYC__AK_CALL) {
		/* A call made on another peer through a handle it was given:
		 * this peer owns the actor, and the call takes its place in
		 * the mailbox in the order it arrives.  Its answer goes back
		 * from here (the usual answer of a task run for that peer). */
		t->actor = a;
		t->sclass = rt->call_class;
		a->refcnt++;
		t->qseq = a->next_seq++;
		rayc__actor_mb_push(a, t);
		return true;
	}
	if (a == NULL || !a->hosted || a->owner != t->owner ||
	    a->owner_gone || a->st != RAYC_ACTOR_ALIVE) {
		snprintf(msg, n, "actor " ID_FMT " is not on the peer the call "
		         "was sent to (restarted elsewhere, or gone)",
		         ID_ARGS(id));
		return false;
	}
	t->actor = a;
	t->sclass = rt->call_class;
	if (t->akind == RAYC__AK_FINI) {
		t->fn = rayc__actor_fini_fn();
	} else {
		a->refcnt++; /* until the call is done */
		rayc__actor_mb_push(a, t); /* in the order they arrive */
	}
	return true;
}

void rayc__actor_task_lost_locked(rayc__rt *rt, rayc__task *t, uint32_t id)
{
	rayc__actor *a = t->actor;
	char msg[320];

	a->host_lost = true;
	rayc__actor_lane_off_locked(t);
	switch (t->akind) {
	case RAYC__AK_CTOR:
		a->ctor_running = false;
		break;
	case RAYC__AK_FINI:
		a->fini = NULL;
		a->fini_queued = false;
		a->ctor_ok = false;
		rayc__task_free(t);
		break;
	default:
		if (a->max_task_retries < 0 ||
		    t->attempt < a->max_task_retries) {
			/* Back in the mailbox, in the order made, ahead of the
			 * calls made after it; sent again once restarted. */
			t->attempt++;
			a->running--;
			rayc__task *at = TAILQ_FIRST(&a->mb);
			while (at != NULL && at->qseq < t->qseq)
				at = TAILQ_NEXT(at, mb);
			t->mb_ready = true;
			t->state = RAYC__TASK_MAILBOX;
			rayc__actor_mb_insert(a, t, at);
			break;
		}
		snprintf(msg, sizeof(msg), "actor %s " ID_FMT ": its peer %u "
		         "died while %s ran (max_task_retries %d)",
		         a->cls->name, ID_ARGS(a->id), id, t->fn->name,
		         a->max_task_retries);
		rayc__task_fail_locked(rt, t, RAYC_EACTORDIED, msg);
		break;
	}
}

/* Runs step(rt, a, arg) for each actor of table (rt->actors or
 * rt->actor_proxies) as it was on entry, finding each again by id: a
 * step may free actors (a failed call's spec letting go of the handles
 * it held), so the table is not walked while stepping. */
static void each_locked(rayc__rt *rt, rayc__actor **table,
                        void (*step)(rayc__rt *, rayc__actor *, void *),
                        void *arg) RAYC_REQUIRES(rt->mu)
{
	rayc__actor *a, *tmp;
	size_t n = HASH_COUNT(*table), k = 0;

	if (n == 0)
		return;
	rayc_actor *ids = malloc(n * sizeof(*ids));
	if (ids == NULL) {
		/* No memory for the list: one at a time, marked, looking
		 * again from the start after each. */
		uint32_t mark = ++rt->actor_walk;
		for (;;) {
			rayc__actor *next = NULL;
			HASH_ITER(hh, *table, a, tmp)
				if (a->walk != mark) {
					next = a;
					break;
				}
			if (next == NULL)
				return;
			next->walk = mark;
			step(rt, next, arg);
		}
	}
	HASH_ITER(hh, *table, a, tmp)
		ids[k++] = a->id;
	for (size_t i = 0; i < k; i++) {
		HASH_FIND(hh, *table, &ids[i], sizeof(ids[i]), a);
		if (a != NULL)
			step(rt, a, arg);
	}
	free(ids);
}

/* Proxy a's owner died: so did the actor (it dies with its owner). */
static void proxy_orphaned_locked(rayc__rt *rt, rayc__actor *a)
	RAYC_REQUIRES(rt->mu)
{
	a->stalled = false;
	if (a->st == RAYC_ACTOR_DEAD)
		return;
	a->st = RAYC_ACTOR_DEAD;
	snprintf(a->death, sizeof(a->death), "its owner, peer %u, died",
	         a->owner);
	rayc__actor_settle_locked(rt, a);
}

bool rayc__actor_borrow_locked(rayc__rt *rt, rayc_actor id, uint32_t peer,
                               bool add)
{
	rayc__actor *a = rayc__actor_find_locked(rt, id);

	if (a == NULL || a->hosted || peer >= 64 * RAYC__ACTOR_PEER_WORDS)
		return false;
	uint64_t bit = (uint64_t)1 << (peer % 64);
	uint64_t *w = &a->borrowers[peer / 64];
	if (add) {
		if (a->st == RAYC_ACTOR_DEAD || a->want == WANT_DIE)
			return false;
		if ((*w & bit) == 0) {
			*w |= bit;
			rayc__actor_hold_locked(a);
		}
	} else if ((*w & bit) != 0) {
		*w &= ~bit;
		rayc__actor_unhold_locked(rt, a); /* may free it */
	}
	return true;
}

/* A detached actor hosted here whose owner died or left: this peer
 * takes it over as its own.  It lives on, same state, its owner's
 * queued calls still run; its name (if any) is claimed again in the
 * cluster with this peer as owner.  Its constructor and arguments were
 * the owner's: it cannot be restarted (max_restarts 0). */
void rayc__actor_adopt_locked(rayc__rt *rt, rayc__actor *a)
{
	uint32_t from = a->owner;

	a->hosted = false;
	a->owner = 0;
	a->owner_gone = false;
	a->adopt = false;
	a->loc = 0;
	a->max_restarts = 0;
	a->max_task_retries = 0;
	/* Handles this peer's program held through a proxy (to the dead
	 * owner) are handles to this actor now, which the handle's id
	 * finds first (rayc__actor_handle_locked); the proxy keeps only
	 * what task specs hold, and goes with them. */
	rayc__actor *p;
	HASH_FIND(hh, rt->actor_proxies, &a->id, sizeof(a->id), p);
	if (p != NULL && p->handles > 0) {
		int32_t n = p->handles;
		p->handles = 0;
		a->handles += n;
		a->refcnt += n;
		p->refcnt -= n;
		if (p->refcnt == 0)
			rayc__actor_settle_locked(rt, p); /* may free it */
	}
	if (a->name != NULL && rayc__actor_named_locked(rt, a->name) == NULL) {
		HASH_ADD_KEYPTR(hh_name, rt->actor_names, a->name,
		                strlen(a->name), a);
		if (rt->hooks != NULL) {
			a->name_global = true;
			rt->hooks->name_adopt(rt, a->name, a->id, a->cls->name);
		}
	}
	rayc__log(RAYC_LOG_INFO, "RAYC-ACTOR-ADOPTED", "detached actor %s "
	          ID_FMT "%s%s%s: its owner, peer %u, is gone; this peer owns "
	          "it now", a->cls->name, ID_ARGS(a->id),
	          a->name != NULL ? " (\"" : "", a->name != NULL ? a->name : "",
	          a->name != NULL ? "\")" : "", from);
	/* The owner's hold goes; detached, it lives on without one. */
	rayc__actor_unhold_locked(rt, a);
}

/* Peer id (*arg) died: its registered handles to a go. */
static void borrower_died_step(rayc__rt *rt, rayc__actor *a, void *arg)
	RAYC_REQUIRES(rt->mu)
{
	uint32_t id = *(const uint32_t *)arg;
	uint64_t bit = (uint64_t)1 << (id % 64);

	if (a->hosted || id >= 64 * RAYC__ACTOR_PEER_WORDS ||
	    (a->borrowers[id / 64] & bit) == 0)
		return;
	a->borrowers[id / 64] &= ~bit;
	rayc__actor_unhold_locked(rt, a); /* may free it, and others */
}

/* Peer id died: what that does to actor a (one this peer owns or
 * hosts). */
static void actor_died_step(rayc__rt *rt, rayc__actor *a, void *arg)
	RAYC_REQUIRES(rt->mu)
{
	uint32_t id = *(const uint32_t *)arg;

	if (a->hosted) {
		if (a->owner != id || a->owner_gone)
			return;
		if (a->detached && a->st == RAYC_ACTOR_ALIVE &&
		    a->want == WANT_NONE) {
			rayc__actor_adopt_locked(rt, a);
			return;
		}
		if (a->detached && a->ctor_running && a->want == WANT_NONE) {
			/* Adopted once its constructor succeeds
			 * (rayc__actor_ctor_done_locked). */
			a->adopt = true;
			return;
		}
		/* Bound to its owner: it goes (destructor, then
		 * freed once no call of the owner's runs). */
		a->owner_gone = true;
		if (a->want == WANT_NONE && a->st != RAYC_ACTOR_DEAD) {
			a->want = WANT_DIE;
			snprintf(a->death, sizeof(a->death), "its owner, "
			         "peer %u, died", id);
		}
		rayc__actor_unhold_locked(rt, a);
		return;
	}
	if (a->loc == id && a->loc != 0)
		a->host_lost = true;
	if (a->loc == id)
		a->stalled = false;
	if (!a->host_lost)
		return;
	a->host_lost = false;
	a->loc = 0;
	a->ctor_ok = false; /* the instance went with its peer */
	if (a->want == WANT_DIE || a->st == RAYC_ACTOR_DEAD ||
	    (a->refcnt == 0 && !a->detached)) {
		a->want = WANT_NONE;
		a->st = RAYC_ACTOR_DEAD;
		rayc__actor_unname_locked(rt, a);
	} else if (a->want == WANT_RESTART || a->max_restarts < 0 ||
	           a->restarts < a->max_restarts) {
		if (a->want != WANT_RESTART)
			a->restarts++;
		a->want = WANT_NONE;
		rayc__log(RAYC_LOG_WARN, "RAYC-ACTOR-PEER-DIED", "actor "
		          "%s " ID_FMT ": its peer %u died; restarting it "
		          "(restart %d)", a->cls->name, ID_ARGS(a->id), id,
		          a->restarts);
		rayc__actor_restart_locked(rt, a);
	} else {
		a->st = RAYC_ACTOR_DEAD;
		rayc__actor_unname_locked(rt, a);
		snprintf(a->death, sizeof(a->death), "its peer %u died "
		         "(max_restarts %d)", id, a->max_restarts);
	}
	rayc__actor_settle_locked(rt, a);
}

static void proxy_died_step(rayc__rt *rt, rayc__actor *a, void *arg)
	RAYC_REQUIRES(rt->mu)
{
	if (a->owner == *(const uint32_t *)arg)
		proxy_orphaned_locked(rt, a);
}

void rayc__actors_peer_died_locked(rayc__rt *rt, uint32_t id)
{
	each_locked(rt, &rt->actors, borrower_died_step, &id);
	each_locked(rt, &rt->actor_proxies, proxy_died_step, &id);
	each_locked(rt, &rt->actors, actor_died_step, &id);
}

static void back_step(rayc__rt *rt, rayc__actor *a, void *arg)
	RAYC_REQUIRES(rt->mu)
{
	if (!a->stalled || a->loc != *(const uint32_t *)arg)
		return;
	a->stalled = false;
	rayc__actor_settle_locked(rt, a);
}

void rayc__actors_peer_back_locked(rayc__rt *rt, uint32_t id)
{
	each_locked(rt, &rt->actors, back_step, &id);
	each_locked(rt, &rt->actor_proxies, back_step, &id);
}

static void retry_step(rayc__rt *rt, rayc__actor *a, void *arg)
	RAYC_REQUIRES(rt->mu)
{
	bool (*const *dead)(rayc__rt *, uint32_t) = arg;

	if (!a->stalled || a->running > 0)
		return;
	if ((*dead)(rt, a->owner)) {
		proxy_orphaned_locked(rt, a);
		return;
	}
	a->stalled = false;
	rayc__actor_settle_locked(rt, a);
}

void rayc__actors_retry_locked(rayc__rt *rt,
                               bool (*dead)(rayc__rt *rt, uint32_t peer))
{
	rayc__actor *a, *tmp;
	bool any = false;

	HASH_ITER(hh, rt->actor_proxies, a, tmp)
		any |= a->stalled;
	if (!any)
		return;
	each_locked(rt, &rt->actor_proxies, retry_step, &dead);
}
