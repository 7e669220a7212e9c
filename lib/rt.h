/* rt.h -- the runtime's core types: the peer (rayc__rt), object table
 * entries (rayc__obj), task specs (rayc__task) and waiters.  Every module
 * sees these; each module's own header declares what it does with them.
 *
 * Locking.  One mutex, rt->mu, guards the object table, task states,
 * ready queues, resources and the idle-worker stack (a ready entry is
 * also found, pinned and released without it: lineage/objects.c,
 * "lookups without rt->mu").  Critical sections
 * are short (no user code, no allocation of arena memory, no copying of
 * object data runs under it); functions that need it end in _locked.
 * The store has its own lock and is never called with rt->mu held except
 * for rayc__store_free, which is O(1).
 *
 * Object life.  An entry lives while refcnt > 0 (handles, pending task
 * arguments, views, the cluster's pins) or lineage_cnt > 0 (retained
 * task specs that take it as an argument) or its producing task is in
 * flight.  When refcnt drops
 * to zero the data is freed at once; the entry may stay as lineage only.
 * A task spec lives while any of its return entries lives (that is the
 * lineage) or while it is in flight.
 */
#ifndef RAYC_RT_H
#define RAYC_RT_H

#include <stdatomic.h>
#include <stdbool.h>

#define XXH_INLINE_ALL
#include <xxhash.h>
/* uthash with xxh3 instead of its default Jenkins hash. */
#define HASH_FUNCTION(keyptr, keylen, hashv)                                   \
	((hashv) = (unsigned)XXH3_64bits((keyptr), (keylen)))
#include <uthash.h>

#include <stdlib.h>
#include <sys/queue.h>

#include "common/common.h"
#include "common/idtab.h"
#include "common/slab.h"
#include "os/os.h"
#include "store/store.h"

#define RAYC__MAX_RES 16      /* CPU, GPU and up to 14 custom resources */
#define RAYC__RES_CPU 0
#define RAYC__RES_GPU 1
#define RAYC__INLINE_BYTES 16 /* kept inside the entry */
#define RAYC__SMALL_MAX 1024  /* <= this: heap, not arena */
#define RAYC__MAX_THREADS 1024
#define RAYC__INLINE_DEPTH 48 /* nested inline execution in blocked gets */

typedef struct rayc__rt rayc__rt;
typedef struct rayc__obj rayc__obj;
typedef struct rayc__hints rayc__hints;
typedef struct rayc__task rayc__task;
typedef struct rayc__targ rayc__targ;
typedef struct rayc__sclass rayc__sclass;
typedef struct rayc__worker rayc__worker;
typedef struct rayc__fn_entry rayc__fn_entry;
typedef struct rayc__kv rayc__kv;
typedef struct rayc__actor rayc__actor;
typedef struct rayc__aclass rayc__aclass;

/* Object states. */
enum {
	RAYC__OBJ_PENDING = 0, /* its task is queued or running; or unsealed */
	RAYC__OBJ_READY,       /* sealed: data readable */
	RAYC__OBJ_ERROR,       /* an error object: err + errmsg */
	RAYC__OBJ_LOST,        /* data gone; rebuild from lineage if any */
	RAYC__OBJ_REMOTE,      /* sealed; the bytes are on peer obj->loc */
};

/* Task states (named as in Ray's task_states). */
enum {
	RAYC__TASK_PENDING_ARGS = 0, /* waiting for ref arguments */
	RAYC__TASK_QUEUED,           /* ready, waiting for resources/worker */
	RAYC__TASK_RUNNING,
	RAYC__TASK_FINISHED, /* ran (or failed); kept only as lineage */
	RAYC__TASK_MAILBOX,  /* an actor call, ready, waiting for its turn */
	/* Its demand is more than any live peer has: it waits, on
	 * rt->infeasible, until a peer that can run it joins (lib/net). */
	RAYC__TASK_INFEASIBLE,
	/* Placed on another peer that has no room for it yet: it waits on
	 * rt->rwait or on that peer's own queue (lib/net/owner.c), not on a
	 * class's queue here, so a get never runs it inline. */
	RAYC__TASK_WAIT_PEER,
};

/* What a task is to an actor (sched/actor.c). */
enum {
	RAYC__AK_NONE = 0,
	RAYC__AK_CTOR, /* runs the class's constructor */
	RAYC__AK_CALL, /* a method call */
	RAYC__AK_FINI, /* runs the destructor (no returns, no lineage) */
};

/* What rt->hooks->send did (below). */
enum {
	RAYC__SEND_NO = 0,
	RAYC__SEND_OK,
	RAYC__SEND_LATER,
};

typedef struct rayc__waiter {
	rayc__event ev;
	size_t needed, ready;
} rayc__waiter;

/* One (waiter, object) link. */
typedef struct rayc__wnode {
	rayc__waiter *w;
	rayc__obj *obj;
	struct rayc__wnode *prev, *next;
} rayc__wnode;

struct rayc__obj {
	/* id, state and refcnt are read without rt->mu, maybe after the entry
	 * was freed and its block reused (rayc__obj_pin: the slab keeps its
	 * blocks mapped, and never writes them but to zero the rest of a new
	 * entry): written with atomics, first in the block.  The first 64
	 * bytes (entries are 64-byte aligned: runtime.c) hold what a get and
	 * a release read and what a run's completion writes, so a thread
	 * getting what another made misses once per entry. */
	rayc_object_id id;
	_Atomic int state;
	/* Handles + task-argument holds + views + pins.  Raised from 0 and
	 * dropped to 0 only under rt->mu; above that, rayc_view_release and
	 * the lock-free get and release (rayc__obj_pin) change it without
	 * the lock. */
	_Atomic int32_t refcnt;
	/* The refs the program holds (rayc_call, rayc_put, rayc_ref_dup),
	 * each also counted in refcnt: rayc_release drops only these, so a
	 * release too many is RAYC_ENOTFOUND instead of dropping a view's
	 * or a task's hold.  Dropped without rt->mu by rayc_release. */
	_Atomic int32_t handles;
	/* An entry in a direct task's record (in_rec): the record's holds
	 * (rayc__drec), here on the line its getter has made its own by the
	 * time it frees it, and before what rayc__obj_init zeroes.  Unused
	 * by every other entry. */
	_Atomic uint32_t rec_holds;
	rayc_type type;
	/* A direct task's return: its phase (sched/direct.h: RAYC__D_*);
	 * 0 for every other entry.  Read at the last ref of every entry. */
	_Atomic uint8_t dstate;
	size_t len;
	void *data;      /* inline_buf, heap, arena, or errmsg */
	rayc__wnode *waiters;

	rayc__task *task; /* producer (lineage); NULL for puts */
	/* On rayc__handoff_objs: its last ref to let go under rt->mu. */
	rayc__obj *dead_next;
	rayc__targ *deps;   /* task arguments waiting for this object */
	rayc__block *block;
	int err;         /* for ERROR: the rayc_err its readers get */
	int32_t lineage_cnt;
	uint32_t ret_idx;
	/* Cluster (lib/net).  owner: the peer that owns it (0: this one);
	 * loc: a peer with the primary copy when it is not here. */
	uint32_t owner, loc;
	/* Same host, zero-copy: data lies in peer view_src's arena, mapped
	 * read-only (view, held); that peer keeps it pinned until we say
	 * SHM_DONE, when this entry's data goes. */
	uint32_t view_src;
	/* Owner side: peers holding refs, one object ref each (a peer that
	 * dies lets go of its borrows). */
	uint32_t *borrowers;
	uint16_t nborrowers, borrowers_cap;
	bool is_put;        /* no lineage: loss is final */
	bool in_rec;        /* in a direct task's record (rayc__drec) */
	bool fetching;      /* bytes on their way here */
	bool borrowed;      /* we told the owner we hold a ref */
	bool held_remote;   /* a return kept here for its remote owner */

	bool let_go;        /* that owner said FREE: not worth caching */
	/* Its owner (another peer) died: nothing can rebuild it or say
	 * where copies are, so it is RAYC_EOWNERDIED to every new reader
	 * (views taken before stay valid: the data is freed as usual). */
	bool owner_died;
	/* A secondary copy (another peer owns it) kept after its last local
	 * ref went, in rt's LRU cache until evicted or wanted again. */
	bool cached;
	TAILQ_ENTRY(rayc__obj) lru;
	struct rayc__store_view *view; /* see view_src */
	_Alignas(8) unsigned char inline_buf[RAYC__INLINE_BYTES];
};

/* A task argument.  Values are copied into the task's allocation. */
struct rayc__targ {
	rayc_type type;
	size_t len;
	union {
		int64_t i64;
		double f64;
		const void *ptr;
	} v;
	rayc__obj *ref;        /* RAYC_TYPE_REF: the argument's object
	                          (RAYC_TYPE_ACTOR: v.ptr is the actor, held
	                          while the task spec lives) */
	rayc__task *task;      /* back pointer for dependency wake-ups */
	rayc__targ *dep_prev, *dep_next; /* in ref->deps while waiting */
	bool waiting;
	bool held;             /* holds a refcnt on ref */
};

struct rayc__task {
	/* The first 64 bytes: what the scheduler reads of a queued task
	 * under rt->mu (its queue links, class, state, whether it is
	 * quick), so that taking one from a queue another thread filled
	 * costs one cache miss, not three (task blocks are 64-byte
	 * aligned: runtime.c). */
	rayc__task *q_prev, *q_next; /* on one rayc__tq (below) */
	const rayc__fn_entry *fn;
	rayc__sclass *sclass;
	rayc__actor *actor;
	uint64_t qseq; /* when it was queued here: older runs first */
	int state;
	/* Actors: the actor a constructor, call or destructor run belongs
	 * to (akind, actor), its place in the actor's mailbox (calls made,
	 * not yet started, in order), and whether an argument is a
	 * handle. */
	uint8_t akind;
	bool in_flight;
	bool nested;  /* submitted by a running task (its ids repeat) */
	/* Where its block came from: malloc, rt->task_slab, or a direct
	 * task's record (rayc__drec). */
	uint8_t mem;
	uint32_t nargs, nreturns;

	rayc_task_id id;
	/* On rayc__handoff: a batch run to complete with this context
	 * (sched/execute.c); NULL: a submission to record. */
	rayc_ctx *done_ctx;
	rayc__targ *args;
	rayc__obj **returns;
	uint32_t live_returns;
	bool reconstruct;   /* this run rebuilds lost objects */
	int deps_pending;
	int attempt, max_retries;
	uint8_t deaths; /* peers that died running it (quarantine) */
	bool retry_exceptions;
	uint64_t child_counter; /* ids of nested submissions */
	/* Placement (lib/net): strategy, affinity target, where it runs
	 * now for its owner, and for a task run here for another peer
	 * (foreign) who owns it. */
	uint8_t strategy;
	bool soft;
	bool foreign;
	/* Owner: an actor's call in flight on a task lane (lib/net). */
	bool on_lane;
	uint32_t node_id;
	uint32_t remote_peer;
	uint32_t owner;
	uint64_t owner_gen; /* foreign: the owner's incarnation (lib/net) */
	/* Owner: counts the times it was sent (a TASK sent again after a
	 * lost connection keeps its number; an answer with an older one is
	 * stale).  Executor: the number of the TASK it runs. */
	uint32_t dispatch;
	/* Owner: times it was sent again because an argument was lost on
	 * the way (rebuilt from lineage first); bounded. */
	uint8_t arg_redo;
	/* Actors: its place in the mailbox (see akind). */
	bool mb_ready;   /* in the mailbox with its arguments ready */
	bool in_mailbox;
	bool has_actor_args;
	TAILQ_ENTRY(rayc__task) mb;
};

/* A FIFO of tasks linked through q_prev/q_next (a task is on at most one:
 * its class's ready queue, the wait for remote room, or a peer's
 * in-flight list).  n counts the tasks on it.  Written out rather than
 * sys/queue.h's TAILQ (the other lists' choice) because q_prev/q_next
 * double as the submission stack's link (sched/submit.c) and sit in the
 * task's first cache line, and a zeroed rayc__tq is a valid empty one
 * (classes and peers are made with calloc); utlist would keep the tail
 * in the head task, a line the workers taking from the head write. */
typedef struct rayc__tq {
	rayc__task *head, *tail;
	uint64_t n;
} rayc__tq;

static inline void rayc__tq_push(rayc__tq *q, rayc__task *t)
{
	t->q_next = NULL;
	t->q_prev = q->tail;
	if (q->tail != NULL)
		q->tail->q_next = t;
	else
		q->head = t;
	q->tail = t;
	q->n++;
}

static inline void rayc__tq_push_front(rayc__tq *q, rayc__task *t)
{
	t->q_prev = NULL;
	t->q_next = q->head;
	if (q->head != NULL)
		q->head->q_prev = t;
	else
		q->tail = t;
	q->head = t;
	q->n++;
}

/* t goes in before at (at the tail if at is NULL). */
static inline void rayc__tq_insert_before(rayc__tq *q, rayc__task *at,
                                          rayc__task *t)
{
	if (at == NULL) {
		rayc__tq_push(q, t);
		return;
	}
	t->q_next = at;
	t->q_prev = at->q_prev;
	if (at->q_prev != NULL)
		at->q_prev->q_next = t;
	else
		q->head = t;
	at->q_prev = t;
	q->n++;
}

static inline void rayc__tq_remove(rayc__tq *q, rayc__task *t)
{
	if (t->q_prev != NULL)
		t->q_prev->q_next = t->q_next;
	else
		q->head = t->q_next;
	if (t->q_next != NULL)
		t->q_next->q_prev = t->q_prev;
	else
		q->tail = t->q_prev;
	t->q_prev = t->q_next = NULL;
	q->n--;
}

/* Tasks with the same resource demand share a class and a FIFO. */
struct rayc__sclass {
	int64_t demand[RAYC__MAX_RES];
	bool cpu_only; /* only CPU demanded: may run inline in a blocked get */
	bool warned; /* its demand was said to be infeasible (once) */
	/* Its tasks run on this peer only, never offered to another: an
	 * actor's calls and destructor runs here (rt->call_class).  Never
	 * found by a plain demand lookup. */
	bool pinned;
	rayc__sclass *next;
	/* What workers change with every task, on a cache line of its own:
	 * the fields above are read by every submission
	 * (rayc__sched_class_find), which missed the cache each time when
	 * they shared a line with the queue. */
	_Alignas(64) rayc__tq q; /* its ready queue */
	/* Times a younger task of another class ran while this class's head
	 * waited for resources (reset when the head leaves); see pick_locked. */
	uint32_t passed;
	/* Its tasks on rt->rwait (lib/net/owner.c: pump_locked), under
	 * rt->mu. */
	uint64_t nrwait;
};

struct rayc__worker {
	rayc__thread th;
	rayc__event ev;
	rayc__spin spin;
	rayc__worker *next_idle;
	rayc__worker *next_all;
	bool idle;
	bool woken; /* counted in rt->nwaking */
	int index;
	unsigned turn; /* direct tasks or the queues first (sched.c) */
	/* Its batch while it runs one (sched/execute.c; set and cleared
	 * under rt->mu): an idle worker takes the runs not started, and a
	 * thread that waits for a run's results marks it there or completes
	 * it if it ended. */
	void *batch;
	/* Its hoard of direct tasks while it runs them (sched/direct.h;
	 * set and cleared under rt->mu). */
	struct rayc__hoard *dhoard;
};

struct rayc__fn_entry {
	char *name;
	rayc_fn fn;
	UT_hash_handle hh;
	/* How long a run of it takes on a worker, a moving average (0: not
	 * run yet); written by workers however the entry is reached
	 * (sched/execute.c decides from it which runs may share a batch). */
	_Atomic uint32_t run_ns;
	/* A run of it blocked (waited in rayc_get or rayc_wait) on a thread
	 * that is no worker and ran it itself (sched.c: serving): it never
	 * runs there again. */
	_Atomic bool blocked_served;
};

/* The running task's context (rayc_ctx). */
typedef struct rayc__ret {
	rayc_type type;
	size_t len;
	void *data; /* heap or arena */
	rayc__block *block;
	bool set;
	_Alignas(8) unsigned char buf[RAYC__INLINE_BYTES];
} rayc__ret;

struct rayc_ctx {
	rayc__task *task;
	int64_t held_cpu; /* CPU units held while running */
	int inline_depth;
	bool failed;
	char *errmsg;
	rayc__ret *rets;
	rayc__ret ret0; /* storage when nreturns == 1 */
};

struct rayc__rt {
	rayc__mutex mu;
	bool stopping RAYC_GUARDED_BY(mu);

	/* Resources: index 0 CPU, 1 GPU, then custom names. */
	_Atomic int nres; /* grows (under mu) as peers name new resources */
	int64_t start_wall_ms; /* when rayc_init ran (the one-peer job) */
	/* Cached secondary copies, least recently used first (mu). */
	TAILQ_HEAD(rayc__obj_lru, rayc__obj) cache;
	size_t cache_bytes, cache_cap;
	uint64_t n_fetches;
	char *res_names[RAYC__MAX_RES];
	int64_t res_total[RAYC__MAX_RES];
	/* Apart from res_total, which every submission reads. */
	_Alignas(64) int64_t res_avail[RAYC__MAX_RES] RAYC_GUARDED_BY(mu);

	/* Entries and task specs of up to RAYC__TASK_SLAB_BYTES (most
	 * tasks) come from slabs: no malloc per task, memory kept warm. */
	rayc__slab obj_slab, task_slab;

	/* Object table (lib/lineage): entries by id (common/idtab.h). */
	rayc__idtab objs RAYC_GUARDED_BY(mu);
	/* Where each entry was made last, by a hash of its id: hints for
	 * lookups without rt->mu, checked after pinning (lineage/objects.c:
	 * rayc__obj_pin).  Grows with the table, never shrinks.
	 * It and rt->classes are read without the lock by every get and
	 * every submission, and change rarely: they have a cache line to
	 * themselves, apart from the fields whoever holds rt->mu writes
	 * with every task (a get missed on that line each time: 20% of
	 * rayc__obj_pin's samples, 93% of rayc__sched_class_find's). */
	_Alignas(64) rayc__hints *_Atomic hints;
	/* Task classes (lib/sched), appended under mu, never removed
	 * before shutdown. */
	rayc__sclass *classes RAYC_GUARDED_BY(mu);
	/* Direct tasks (sched/direct.h): their ring and queue, and the
	 * class they run in; both NULL on a peer with a mesh.  Set by
	 * rayc_init before any call, never changed after. */
	struct rayc__direct *direct;
	/* Its records, ring and queue, kept past rayc__direct_destroy
	 * until rt goes (rayc__direct_fini). */
	void *direct_mem;
	size_t direct_mem_len;
	rayc__sclass *dclass;
	_Alignas(64) uint64_t nobjs RAYC_GUARDED_BY(mu);
	uint64_t nlineage RAYC_GUARDED_BY(mu);
	uint64_t inline_bytes RAYC_GUARDED_BY(mu);

	/* Scheduler (lib/sched). */
	rayc__sclass *last_class RAYC_GUARDED_BY(mu);
	uint64_t queued RAYC_GUARDED_BY(mu);
	uint64_t qseq RAYC_GUARDED_BY(mu); /* next task's queue order */
	uint64_t pending_args RAYC_GUARDED_BY(mu);
	rayc__worker *idle RAYC_GUARDED_BY(mu);
	rayc__worker *workers RAYC_GUARDED_BY(mu);
	int nworkers RAYC_GUARDED_BY(mu);
	int nidle RAYC_GUARDED_BY(mu);
	int nwaking RAYC_GUARDED_BY(mu); /* woken or new, not yet picking */
	int nbase;
	int64_t spin_ns;

	/* Actors (sched/actor.c): by id and, the live named ones, by name;
	 * call_class is the pinned class of no demand their calls and
	 * destructors run in (the constructor held the resources). */
	rayc__actor *actors RAYC_GUARDED_BY(mu);
	rayc__actor *actor_names RAYC_GUARDED_BY(mu);
	/* Handles to actors other peers own, received as task arguments:
	 * their calls go to the owner (hh of rayc__actor). */
	rayc__actor *actor_proxies RAYC_GUARDED_BY(mu);
	rayc__sclass *call_class RAYC_GUARDED_BY(mu);
	uint64_t nactors RAYC_GUARDED_BY(mu);
	uint32_t actor_walk RAYC_GUARDED_BY(mu); /* actor_peers.c */
	/* In a cluster, named actors are made one at a time here (the
	 * name claimed in the control store, then the actor made; taken
	 * before mu, held across the KV's round trips: actor_api.c). */
	rayc__mutex name_mu;

	/* Ids. */
	uint64_t job;
	_Atomic uint64_t next_task, next_put;

	rayc__store *store;

	/* The mesh (NULL for a one-peer cluster) and the tasks waiting for
	 * room on another peer (PENDING_RESOURCES). */
	struct rayc__net *net RAYC_GUARDED_BY(mu);
	/* What rayc_peer_id says, read without a lock: 1 without a mesh,
	 * else the mesh's own id (0 until it has one). */
	_Atomic uint32_t self_id;
	const struct rayc__cluster_hooks *hooks;
	rayc__tq rwait RAYC_GUARDED_BY(mu);
	/* Tasks waiting on peers' own queues for room there (lib/net/
	 * owner.c: a strategy named the peer), all of them together. */
	uint64_t nwait_peer RAYC_GUARDED_BY(mu);
	/* Tasks whose demand no live peer can meet (INFEASIBLE), placed
	 * again on the loop's tick while peers come and go. */
	rayc__tq infeasible RAYC_GUARDED_BY(mu);
	/* The cluster KV when this peer keeps it (lib/net/kv.c), under its
	 * own lock: a snapshot takes a hold on every entry under it (and
	 * writes them out, up to 128 MiB, on a thread of its own with no
	 * lock), and nothing else need wait for that.  kv_mu is a leaf:
	 * nothing else is taken under it. */
	rayc__mutex kv_mu;
	rayc__kv *kv RAYC_GUARDED_BY(kv_mu);
	size_t kv_bytes RAYC_GUARDED_BY(kv_mu); /* keys + values */

	/* Counters an HTTP page or rayc_stats_get can read.  The two that
	 * every task bumps, one on the submitting thread and one on the
	 * worker, each have a cache line of their own: sharing one with
	 * each other or with fields the workers write cost the submitter
	 * a cache miss per task (5% of its time, measured). */
	_Alignas(64) _Atomic uint64_t n_submitted;
	_Alignas(64) _Atomic uint64_t n_executed;
	_Alignas(64) _Atomic uint64_t n_reconstructed, n_failed, n_retried;
};

/* What the cluster layer (lib/net) does for the rooms below it, so that
 * lib/sched and lib/lineage never call into the net: installed by
 * rayc_init before the mesh starts (rt->hooks; NULL for a one-peer
 * cluster, and then nothing here ever needs them).  All run under
 * rt->mu. */
typedef struct rayc__cluster_hooks {
	/* A ready task of this owner: sent to another peer (or failed, or
	 * waiting for room there): true; run it here: false. */
	bool (*place)(rayc__rt *rt, rayc__task *t);
	/* A task run here for another owner (t->foreign) is done. */
	void (*task_finished)(rayc__rt *rt, rayc__task *t);
	/* o's bytes are on another peer (REMOTE): fetch them. */
	void (*fetch)(rayc__rt *rt, rayc__obj *o);
	/* o's last local ref went and it lives or is owned elsewhere (o->loc
	 * or o->borrowed): tell the holder or owner. */
	void (*obj_released)(rayc__rt *rt, rayc__obj *o);
	/* o's data lay in another peer's arena (o->view) and goes now. */
	void (*view_done)(rayc__rt *rt, rayc__obj *o);
	/* Sends t (an actor's call or destructor run) to peer, where its
	 * actor lives: RAYC__SEND_OK; RAYC__SEND_NO if that peer cannot be
	 * reached; RAYC__SEND_LATER (a call only) if it may not go yet
	 * without overtaking the actor's calls in flight on another path
	 * (lib/net/tlane.c): it waits in the mailbox for one of those to
	 * end. */
	int (*send)(rayc__rt *rt, rayc__task *t, uint32_t peer);
	/* Actor id (class cls), owned here, gives its cluster-wide name
	 * back (it died). */
	void (*name_gone)(rayc__rt *rt, const char *name, rayc_actor id,
	                  const char *cls);
	/* This peer adopted actor id (a detached actor whose owner went):
	 * claims its name in the cluster for it. */
	void (*name_adopt)(rayc__rt *rt, const char *name, rayc_actor id,
	                   const char *cls);
	/* A proxy registered with actor id's owner (handles of this
	 * peer's own) goes: the owner need not keep it alive for us. */
	void (*unborrow)(rayc__rt *rt, uint32_t owner, rayc_actor id);
	/* This thread's batch of runs, or a reader's runs of its read,
	 * ended or paused (a run blocks): answers held back go
	 * (rayc__sched_batch_more). */
	void (*batch_paused)(rayc__rt *rt);
} rayc__cluster_hooks;

extern rayc__rt *rayc__g;
extern _Thread_local rayc_ctx *rayc__cur;

/* Resource names (runtime.c).  Names are only ever appended, so finding
 * one needs no lock; _index_locked with add gives a name that only other
 * peers have an index here (total 0).  -1: unknown, or the table is
 * full. */
int rayc__res_find(const rayc__rt *rt, const char *name);
int rayc__res_index_locked(rayc__rt *rt, const char *name, bool add)
	RAYC_REQUIRES(rt->mu);

/* One allocation for a task, its args, return pointers and by-value
 * copies (api.c); also used for tasks arriving from other peers, whose
 * strings come as RAYC__TYPE_STRN: len bytes, not NUL-terminated, copied
 * and terminated into len + 1 of extra (rounded up to 8). */
#define RAYC__TYPE_STRN ((rayc_type)100)
#define RAYC__TASK_SLAB_BYTES 416 /* a task, one return, three arguments */
rayc__task *rayc__task_alloc(const rayc_arg *args, size_t nargs,
                             uint32_t nret, size_t extra);

/* A direct task's record (sched/direct.c): its entry, its task, its
 * return's pointer and room for RAYC__DREC_ARGS arguments of 8 bytes,
 * one block of an array taken in turn, so that a submitter writes, a
 * worker reads and a getter reads and frees memory in the order the
 * tasks were submitted (a slab's blocks come back in an order that, with
 * many tasks in flight, is a cache miss each).  Its holds (o.rec_holds):
 * one for the entry and one for the task while each lives (they may go
 * apart once the entry is adopted into the object table); the record is
 * taken again only when both went (a compare-and-swap from 0, acquire;
 * each hold let go with release). */
#define RAYC__DREC_ARGS 2
enum { RAYC__MEM_HEAP, RAYC__MEM_SLAB, RAYC__MEM_REC };
typedef struct rayc__drec {
	_Alignas(64) rayc__obj o;
	rayc__task t;
	rayc__obj *ret;
	rayc__targ args[RAYC__DREC_ARGS];
} rayc__drec;

/* The record a task or an entry lies in (t->mem == RAYC__MEM_REC,
 * o->in_rec). */
static inline rayc__drec *rayc__drec_of_task(rayc__task *t)
{
	return (rayc__drec *)(void *)((char *)t - offsetof(rayc__drec, t));
}

static inline rayc__drec *rayc__drec_of_obj(rayc__obj *o)
{
	return (rayc__drec *)(void *)o; /* first in it */
}

/* Asks for the record RAYC__DREC_AHEAD on from o's (lying in one) to be
 * fetched, its first line to write and the line with its value to read:
 * a program getting its results in the order it made them gets them
 * from records taken in turn, and with many in flight each would be a
 * miss to memory (on a 2-vCPU EPYC VM, 245,000 in flight: a get of a
 * ready result 73-89 ns instead of 100-165).  A prefetch never faults:
 * past the array it asks for nothing useful, no more. */
#define RAYC__DREC_AHEAD 4
static inline void rayc__drec_prefetch_after(const rayc__obj *o)
{
	uintptr_t p = (uintptr_t)o + RAYC__DREC_AHEAD * sizeof(rayc__drec);

	__builtin_prefetch((const void *)p, 1, 3);
	__builtin_prefetch((const void *)(p + offsetof(rayc__obj, inline_buf)),
	                   0, 3);
}

static inline void rayc__drec_let_go(rayc__drec *r)
{
	atomic_fetch_sub_explicit(&r->o.rec_holds, 1, memory_order_release);
}

/* Frees a task from rayc__task_alloc (its args, returns and copies share
 * the allocation) or from a direct task's record. */
static inline void rayc__task_free(rayc__task *t)
{
	if (t != NULL && t->mem == RAYC__MEM_REC)
		rayc__drec_let_go(rayc__drec_of_task(t));
	else if (t != NULL && t->mem == RAYC__MEM_SLAB)
		rayc__slab_free(t);
	else
		free(t);
}

/* Frees an entry's block (rt->obj_slab's or a direct task's record). */
static inline void rayc__obj_mem_free(rayc__obj *o)
{
	if (o->in_rec)
		rayc__drec_let_go(rayc__drec_of_obj(o));
	else
		rayc__slab_free(o);
}

/* The id of return i of task t: re-running t re-creates the same ids. */
static inline rayc_object_id rayc__return_id(rayc_task_id t, uint32_t i)
{
	rayc_object_id id = { t.hi, t.lo | (i + 1) };
	return id;
}

#endif /* RAYC_RT_H */
