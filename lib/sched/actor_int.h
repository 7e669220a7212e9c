/* actor_int.h -- what actor.c (an actor's record, mailbox and life)
 * and actor_peers.c (hosted instances, proxies, peers dying) share.  All
 * need rt->mu. */
#ifndef RAYC_SCHED_ACTOR_INT_H
#define RAYC_SCHED_ACTOR_INT_H

#include "sched/actor.h"

#define ID_FMT "%016llx%016llx"
#define ID_ARGS(id) (unsigned long long)(id).hi, (unsigned long long)(id).lo
/* Calls in flight to an actor on another peer (actor.c: dispatch).  Its
 * host keeps them in the actor's mailbox (under a kilobyte each: spec, entry, record).
 * 1,024, not 64 as before the twenty-second pass: a burst of calls then
 * travels and is answered hundreds at a time instead of a few dozen
 * (1_1_actor_calls_async_across_peers: 0.26-0.35 syscalls a call instead
 * of 1.1-1.2; 4,096 did no better).  Ray holds back no actor calls by
 * default (max_pending_calls -1). */
#define RAYC__ACTOR_WINDOW 1024

/* What rayc__actor_settle_locked is bringing about (rayc__actor.want). */
enum {
	WANT_NONE = 0,
	WANT_RESTART, /* destructor, then the constructor again */
	WANT_DIE,     /* destructor, then dead */
};

/* Runs the next steps of a's life whose conditions hold (actor.c). */
void rayc__actor_settle_locked(rayc__rt *rt, rayc__actor *a)
	RAYC_REQUIRES(rt->mu);
/* Its name is free again. */
void rayc__actor_unname_locked(rayc__rt *rt, rayc__actor *a)
	RAYC_REQUIRES(rt->mu);
/* A zeroed actor record with an empty mailbox; NULL on ENOMEM. */
rayc__actor *rayc__actor_calloc(void);
/* Puts t in a's mailbox before at (NULL: at the tail); _push: at the
 * tail, not ready yet. */
void rayc__actor_mb_insert(rayc__actor *a, rayc__task *t, rayc__task *at);
void rayc__actor_mb_push(rayc__actor *a, rayc__task *t);
/* A detached actor hosted here whose owner went: this peer owns it now
 * (actor_peers.c). */
void rayc__actor_adopt_locked(rayc__rt *rt, rayc__actor *a)
	RAYC_REQUIRES(rt->mu);
/* The constructor again, on zeroed state. */
void rayc__actor_restart_locked(rayc__rt *rt, rayc__actor *a)
	RAYC_REQUIRES(rt->mu);

#endif
