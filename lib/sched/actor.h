/* actor.h -- actors: the owner's record of each actor it created (handles,
 * mailbox: calls in the order made, each started once its arguments are
 * ready and its turn has come; life: constructor, restarts, destructor;
 * where it lives), the instance a peer hosts for another peer's actor,
 * and proxies for handles to actors other peers own.
 *
 * Every task of an actor is an ordinary task spec with t->actor set:
 * the constructor run (RAYC__AK_CTOR, placed like a task; its one
 * return, the creation object, is held by the actor and keeps the spec
 * as the lineage a restart re-runs), method calls (RAYC__AK_CALL, owned
 * like any task: their returns are ordinary objects) and the destructor
 * run (RAYC__AK_FINI, no returns, no lineage).  Calls and destructor runs
 * run on the worker threads of the peer the actor lives on, in its
 * pinned class rt->call_class, or are sent there (lib/net, through
 * rt->hooks->send).  All calls need rt->mu. */
#ifndef RAYC_SCHED_ACTOR_H
#define RAYC_SCHED_ACTOR_H

#include "rt.h"

/* Words of a borrower bitmap: one bit per peer id (RAYC__MAX_PEERS). */
#define RAYC__ACTOR_PEER_WORDS 4

struct rayc__actor {
	rayc_actor id;
	UT_hash_handle hh;      /* rt->actors */
	UT_hash_handle hh_name; /* rt->actor_names, while named and alive */
	const rayc__aclass *cls;
	char *name;
	void *state;
	int st;      /* rayc_actor_state_kind */
	int want;    /* what settle_locked is bringing about (actor.c) */
	/* Holds: the program's handles, each call made and not finished,
	 * each task spec taking it as an argument.  handles is the part
	 * rayc_actor_release may drop. */
	int32_t refcnt, handles;
	bool detached;
	bool name_global; /* its name is claimed in the cluster's KV */
	bool ctor_running; /* the constructor is queued or running */
	bool ctor_ok;      /* it succeeded and the destructor is owed */
	bool fini_queued;
	bool holds_res;
	bool settling, resettle;
	/* Placement: the peer the instance lives on (0: this one); set when
	 * its constructor has run.  host_lost: that peer died (set while its
	 * death is being dealt with). */
	uint32_t loc;
	bool host_lost;
	/* A call could not be sent to loc: calls wait in the mailbox until
	 * that peer is back (rayc__actors_peer_back_locked) or its death
	 * restarts the actor elsewhere. */
	bool stalled;
	/* A hosted instance: this peer runs the actor for its owner, peer
	 * owner, which keeps the record (handles, mailbox, life); the owner
	 * holds one hold until it sends the destructor run or dies. */
	bool hosted;
	bool owner_gone; /* hosted: its owner died (its hold dropped) */
	bool adopt; /* hosted, detached: its owner died while its
	               constructor ran: adopted once that succeeds */
	uint32_t walk; /* actor_peers.c: each_locked's mark */
	/* A proxy: a handle here to an actor peer owner owns (in
	 * rt->actor_proxies); its calls, in this peer's order, go to the
	 * owner (loc = owner), which puts them in the actor's mailbox. */
	bool proxy;
	uint32_t owner;
	/* Owner: the peers holding handles of their own to it (a proxy's
	 * program handles registered here, rayc__actor_borrow_locked),
	 * one hold each, dropped when that peer lets go or dies.  A
	 * proxy: borrowing says it asked the owner to (so its end tells
	 * the owner), registered that the owner answered. */
	uint64_t borrowers[RAYC__ACTOR_PEER_WORDS];
	bool borrowing, registered;
	uint64_t next_seq; /* calls' order (t->qseq), for resending */
	int max_restarts, restarts, max_task_retries, max_conc;
	int running; /* calls started (queued on call_class or running) */
	/* Of those, sent to loc on a task lane and not answered (lib/net
	 * keeps it): while any is, the next call goes on the lane too or
	 * waits (RAYC__SEND_LATER), so that none overtakes another. */
	int lane_calls;
	int64_t demand[RAYC__MAX_RES];
	/* Its mailbox, in order (rayc__task.mb). */
	TAILQ_HEAD(rayc__mailbox, rayc__task) mb;
	uint64_t mb_n;
	rayc__task *ctor; /* the constructor's spec (kept by cobj) */
	rayc__obj *cobj;  /* its return, held by the actor */
	rayc__task *fini; /* the destructor run while queued */
	char death[160];
};

/* An actor record by id (owned here, or hosted here); NULL if none. */
rayc__actor *rayc__actor_find_locked(rayc__rt *rt, rayc_actor id)
	RAYC_REQUIRES(rt->mu);
/* What a handle with this id names here: an actor this peer owns, else
 * a proxy to another peer's; NULL if neither (a hosted instance is
 * never called directly). */
rayc__actor *rayc__actor_handle_locked(rayc__rt *rt, rayc_actor id)
	RAYC_REQUIRES(rt->mu);
/* The handle here for an actor peer owner owns, of class cls (from a
 * task's argument): the actor itself if this is its owner, else a
 * proxy, made if need be.  NULL when out of memory. */
rayc__actor *rayc__actor_proxy_locked(rayc__rt *rt, rayc_actor id,
                                      uint32_t owner, const rayc__aclass *cls,
                                      uint32_t self) RAYC_REQUIRES(rt->mu);
/* The live actor named name, or NULL. */
rayc__actor *rayc__actor_named_locked(rayc__rt *rt, const char *name)
	RAYC_REQUIRES(rt->mu);

/* Makes an actor around its constructor spec ctor (args resolved, class
 * and demand set; its id gives the actor's) and records ctor.  *out gets
 * the actor, holding one handle.  RAYC_EEXIST for a name taken (out gets
 * that actor if get_if_exists, holding one more handle, and ctor is
 * freed).  On any error ctor is freed. */
typedef struct rayc__actor_params {
	const rayc__aclass *cls;
	const char *name;
	bool get_if_exists, detached;
	bool name_global; /* name claimed in the cluster (actor_api.c) */
	int max_restarts, max_task_retries, max_conc;
	const int64_t *demand;
} rayc__actor_params;
int rayc__actor_create_locked(rayc__rt *rt, rayc__task *ctor,
                              const rayc__actor_params *p, rayc__actor **out)
	RAYC_REQUIRES(rt->mu);

/* Appends call t (args resolved, akind CALL) to a's mailbox and records
 * it; the call holds a until it finishes. */
void rayc__actor_call_locked(rayc__rt *rt, rayc__actor *a, rayc__task *t)
	RAYC_REQUIRES(rt->mu);

/* Holds: one more / one less (the last one of an actor that is not
 * detached brings it down). */
void rayc__actor_hold_locked(rayc__actor *a);
void rayc__actor_unhold_locked(rayc__rt *rt, rayc__actor *a)
	RAYC_REQUIRES(rt->mu);

/* rayc_actor_kill. */
void rayc__actor_kill_locked(rayc__rt *rt, rayc__actor *a, bool no_restart)
	RAYC_REQUIRES(rt->mu);

/* From the scheduler: a task of an actor has its arguments ready. */
void rayc__actor_route_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);
/* From execute.c: constructor run t ended (ok, or msg says why not),
 * before its return is sealed or failed; a destructor run t ended (t is
 * freed). */
void rayc__actor_ctor_done_locked(rayc__rt *rt, rayc__task *t, bool ok,
                                  const char *msg, uint32_t host)
	RAYC_REQUIRES(rt->mu);
void rayc__actor_fini_done_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);
/* From lineage: call t is finished (ran, failed, or failed unrun). */
void rayc__actor_call_done_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);
/* Call t, sent on a task lane (t->on_lane), is not in flight there any
 * more (answered, sent again over the connection, or its peer died):
 * it leaves its actor's lane_calls.  Under rt->mu. */
void rayc__actor_lane_off_locked(rayc__task *t);
/* From lineage: spec t, which takes handles as arguments, is freed. */
void rayc__actor_args_free_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu);

/* lib/net, on the peer that runs an actor for its owner: a task of the
 * actor arrived (t->foreign, akind set): a constructor makes the hosted
 * instance (detached, and its name if any: this peer adopts it if the
 * owner goes); a call or destructor run finds it.  False, msg set, if
 * it is not here. */
bool rayc__actor_host_locked(rayc__rt *rt, rayc__task *t, rayc_actor id,
                             const rayc__aclass *cls, int max_conc,
                             bool detached, const char *name, char *msg,
                             size_t n) RAYC_REQUIRES(rt->mu);
/* The function entries a constructor and destructor run use. */
const rayc__fn_entry *rayc__actor_ctor_fn(void);
const rayc__fn_entry *rayc__actor_fini_fn(void);
/* lib/net, on the owner: task t of an actor was in flight on peer id,
 * which died (call: sent again after the restart while max_task_retries
 * allows, else failed).  Then rayc__actors_peer_died_locked decides for
 * every actor: those living there restart or die, instances hosted here
 * for an owner that died go. */
void rayc__actor_task_lost_locked(rayc__rt *rt, rayc__task *t, uint32_t id)
	RAYC_REQUIRES(rt->mu);
void rayc__actors_peer_died_locked(rayc__rt *rt, uint32_t id)
	RAYC_REQUIRES(rt->mu);
/* lib/net, on the owner: peer registers (add) or drops its own handles
 * to actor id.  False if id is not an actor owned here, or (add) it is
 * dead. */
bool rayc__actor_borrow_locked(rayc__rt *rt, rayc_actor id, uint32_t peer,
                               bool add) RAYC_REQUIRES(rt->mu);
/* lib/net: peer id can be sent to again (a connection came back). */
void rayc__actors_peer_back_locked(rayc__rt *rt, uint32_t id)
	RAYC_REQUIRES(rt->mu);
/* lib/net, on its tick: proxies whose calls wait because their owner
 * could not be reached (not in this peer's view yet, say) try again,
 * or, their owner dead (dead says so), die with it. */
void rayc__actors_retry_locked(rayc__rt *rt,
                               bool (*dead)(rayc__rt *rt, uint32_t peer))
	RAYC_REQUIRES(rt->mu);

/* Fills up to cap entries and returns how many actors there are (self:
 * this peer's id, taken before rt->mu); owned: only those this peer
 * owns (not the instances it hosts for others). */
size_t rayc__actor_list_locked(rayc__rt *rt, rayc_actor_info *out, size_t cap,
                               uint32_t self, bool owned)
	RAYC_REQUIRES(rt->mu);

/* Sets up the pinned call class (init). */
int rayc__actors_init_locked(rayc__rt *rt) RAYC_REQUIRES(rt->mu);
/* At shutdown, with every worker stopped and no lock held: runs the
 * destructors owed and frees every actor (their task specs go with the
 * object table after). */
void rayc__actors_teardown(rayc__rt *rt);

#endif /* RAYC_SCHED_ACTOR_H */
