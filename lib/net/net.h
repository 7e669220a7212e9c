/* net.h -- the peer mesh as the rest of lib/ sees it: start and stop,
 * placement of ready tasks on other peers, finishing tasks run for other
 * owners, fetching objects that live elsewhere, telling owners and
 * holders when refs go away, and the cluster view.  Implemented in
 * lib/net, one file per job (ARCHITECTURE.md's module map lists them). */
#ifndef RAYC_NET_H
#define RAYC_NET_H

#include "rt.h"

#define RAYC__MAX_PEERS 256
/* The longest cluster token: local peers get it in their environment
 * (local.c sizes its buffer from this), and rayc_init refuses a longer
 * one rather than hand them a token cut short. */
#define RAYC__TOKEN_MAX 1024
/* Objects up to this size travel inside TASK and TASK_DONE frames. */
#define RAYC__NET_INLINE_MAX ((size_t)64 << 10)
/* ... and results of actor calls relayed by the actor's owner, whose
 * caller fetches them from the owner (executor.c): in all, per call. */
#define RAYC__NET_RELAY_MAX ((size_t)8 << 20)

typedef struct rayc__net rayc__net;

typedef struct rayc__net_conf {
	const char *address; /* join through this peer; NULL: found a cluster */
	const char *listen;  /* our listen URL; NULL: tcp://127.0.0.1:0, or
	                        tcp://0.0.0.0:0 when joining beyond loopback */
	const char *advertise; /* what others dial; NULL: from listen */
	const char *token;   /* cluster token; NULL/"": none (loopback only) */
	int local_peers;     /* founder: start this many - 1 more peers */
	bool worker;         /* RAYC_ROLE=worker */
	int heartbeat_timeout_ms;
	bool encrypt;        /* RAYC_ENCRYPT=on */
} rayc__net_conf;

/* Starts the mesh (listener, loop thread), then founds or joins a
 * cluster and, for local_peers, starts and waits for the other peers.
 * Called by rayc_init after the scheduler is up. */
int rayc__net_start(rayc__rt *rt, const rayc__net_conf *conf);
/* Leaves the cluster (the founder ends it and waits for its children),
 * closes every connection and stops the loop.  Before the scheduler
 * stops. */
void rayc__net_stop(rayc__rt *rt);
/* Blocks until the cluster shuts down (worker peers). */
void rayc__net_serve(rayc__rt *rt);

/* The net's side of rayc__cluster_hooks (lib/net/hooks.c): the
 * calls below that sched and lineage make. */
extern const rayc__cluster_hooks rayc__net_hooks;

/* A ready task of this owner: run it on another peer?  Returns true if
 * the task was sent (or failed); false means queue it here. */
bool rayc__net_place_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);
/* A task run here for another owner is done (returns sealed or failed):
 * report to the owner.  Called from rayc__task_done_locked. */
void rayc__net_task_finished_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);
/* Sends the answers this thread held back while its batch ran on
 * (xrec.c). */
void rayc__net_answers_flush_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);
/* o is REMOTE (sealed on another peer) or a copy this peer needs: start
 * fetching its bytes; it becomes PENDING, then READY when they are in. */
void rayc__net_fetch_locked(rayc__rt *rt, rayc__obj *o) RAYC_REQUIRES(rt->mu);
/* o's last local ref is gone: tell the holder of its primary copy to
 * free it, or its owner that we no longer borrow it. */
void rayc__net_obj_released_locked(rayc__rt *rt, rayc__obj *o)
	RAYC_REQUIRES(rt->mu);
/* A task running here hands out a ref to an object another peer owns:
 * register this peer as a borrower with the owner (once per entry). */
void rayc__net_borrow_locked(rayc__rt *rt, rayc__obj *o) RAYC_REQUIRES(rt->mu);
/* Frees the KV this peer keeps (at shutdown). */
void rayc__kv_free_locked(rayc__rt *rt) RAYC_REQUIRES(rt->kv_mu);
/* The mesh for an API call made from any thread (a task, the user's), or
 * NULL (also for rt NULL: no runtime): rayc__net_stop waits for every get
 * to be put before freeing. */
rayc__net *rayc__net_get(rayc__rt *rt);
void rayc__net_put(rayc__net *net);
/* o's data lay in another peer's arena (same host, zero-copy) and goes
 * now: let go of the mapping and tell that peer to unpin it. */
void rayc__net_view_done_locked(rayc__rt *rt, rayc__obj *o)
	RAYC_REQUIRES(rt->mu);
/* Sends t (an actor's call or destructor run) to peer: rt->hooks->send
 * (RAYC__SEND_OK, _NO or, a call only, _LATER: rt.h). */
int rayc__net_send_task_locked(rayc__rt *rt, rayc__task *t, uint32_t peer)
	RAYC_REQUIRES(rt->mu);
/* Actor names across the cluster (names.c), for the API (actor_api.c):
 * a name's record says which actor it is, which peer owns it and its
 * class. */
typedef struct rayc__name_rec {
	rayc_actor id;
	uint32_t owner; /* the owner's peer id and incarnation */
	uint64_t gen;
	char cls[256];
} rayc__name_rec;
/* Claims name for mine (id and cls set; its owner, this peer, is filled
 * in): RAYC_OK; RAYC_EEXIST with the record that holds it in *theirs;
 * RAYC_ENOTFOUND if that record went before it could be read (try
 * again); else the KV's error.  Blocking (a KV round trip). */
int rayc__net_name_claim(rayc__rt *rt, const char *name, rayc__name_rec *mine,
                         rayc__name_rec *theirs);
/* The record of name: RAYC_OK, RAYC_ENOTFOUND (none, or one whose owner
 * is dead: then deleted), or the KV's error. */
int rayc__net_name_lookup(rayc__rt *rt, const char *name,
                          rayc__name_rec *out);
/* Gives name back if r still holds it, and waits for that. */
int rayc__net_name_drop(const char *name, const rayc__name_rec *r);
/* rt->hooks->name_gone: actor id (of class cls), owned here, died and
 * gives name back; sent at once, and again from the loop's tick until
 * the coordinator answers. */
void rayc__net_name_gone_locked(rayc__rt *rt, const char *name,
                                rayc_actor id, const char *cls)
	RAYC_REQUIRES(rt->mu);
/* rt->hooks->name_adopt: claims name for actor id, which this peer
 * adopted, the same way (a claim that finds the name taken meanwhile
 * is logged, and the name stays this peer's own). */
void rayc__net_name_adopt_locked(rayc__rt *rt, const char *name,
                                 rayc_actor id, const char *cls)
	RAYC_REQUIRES(rt->mu);
/* Asks owner, which owns actor id, to act on it (actor_ctl.c), and
 * waits for its answer: RAYC_OK; RAYC_ENOTFOUND (not an actor it owns
 * any more); RAYC_EACTORDIED (the owner died, and the actor with it);
 * RAYC_ETIMEDOUT (no answer in 5 s); RAYC_ESTATE (out of the cluster).
 * Blocking; no lock held. */
enum {
	RAYC__ACTOR_CTL_KILL = 1,
	RAYC__ACTOR_CTL_KILL_NO_RESTART,
	RAYC__ACTOR_CTL_BORROW,  /* this peer holds handles of its own */
	RAYC__ACTOR_CTL_UNBORROW, /* not any more (rayc__net_actor_unborrow) */
	RAYC__ACTOR_CTL_LIST      /* the actors it owns (rayc__net_actor_list) */
};
/* val, len: what the answer carries (a malloc'd copy; NULL: not
 * wanted). */
int rayc__net_actor_ctl(rayc__rt *rt, uint32_t owner, rayc_actor id, int op,
                        void **val, size_t *len);
/* The actors peer owns, as rayc_actor_list would say there: up to cap
 * into out, *n = how many it has.  Errors as rayc__net_actor_ctl's, and
 * RAYC_ETOOBIG if it has more than one answer carries (4096): *n then
 * counts those it sent. */
int rayc__net_actor_list(rayc__rt *rt, uint32_t peer, rayc_actor_info *out,
                         size_t cap, size_t *n);
/* rt->hooks->unborrow: this peer's proxy for actor id, which owner
 * owns, registered with it, goes (its last handle let go, every call
 * through it done): tells the owner, without waiting (sent again until
 * answered). */
void rayc__net_actor_unborrow_locked(rayc__rt *rt, uint32_t owner,
                                     rayc_actor id) RAYC_REQUIRES(rt->mu);
/* True if peer id is a live member. */
bool rayc__net_peer_alive(rayc__rt *rt, uint32_t id);

#endif /* RAYC_NET_H */
