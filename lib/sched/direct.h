/* direct.h -- direct tasks: plain tasks of a peer with no mesh that are
 * submitted, run, sealed, got and freed without rt->mu (issue 10).
 *
 * Every task that goes through rt->mu pays for it at each step: its
 * recording (an entry in the object table), its queueing, its completion
 * and its entry's freeing all meet the submitter, the workers and the
 * getters on one lock, which the profile of a single submitter found
 * busy most of the time (docs/benchmarks.md, eighteenth pass).  A
 * direct task is one rayc_call of a thread that is not running a task,
 * on a peer with no mesh, with one return, no ref or actor arguments and
 * the default demand (1 CPU).  It and its entry lie in one record
 * (rt.h: rayc__drec) where they fit; its entry is made by the submitter
 * and kept, not in the object table, but in a ring indexed by the
 * task's number (sequential numbers take consecutive slots: no probing,
 * no hashing); the task waits in a lock-free FIFO of its own, where a
 * worker holding the default demand takes it; the worker seals the
 * return (inline, at most RAYC__INLINE_BYTES) without the lock; the
 * getter pins it from the ring; and the last ref frees the entry and
 * the task without the lock.  A slot already taken (a task that number
 * apart is still live) sends the task the usual way.
 *
 * Adoption.  Whatever needs the object table's bookkeeping (a thread
 * that waits for the object, a task that takes it as an argument,
 * rayc_wait, rayc_ref_dup, a return that is not inline, a run that
 * failed) adopts the entry under rt->mu: it moves from the ring into the
 * object table and its task becomes an ordinary recorded task, in flight
 * or finished.  rayc__obj_find_locked adopts the entry of an id it does
 * not find, so no caller of it needs to know about direct tasks.  The
 * task's dstate settles the race between the adopter and the worker that
 * completes the run without the lock: DIRECT while queued or running,
 * DONE once the worker has sealed it, NONE once adopted (or never
 * direct).  The worker stores READY, then moves DIRECT to DONE; an
 * adopter moves DIRECT or DONE to NONE.  A worker that finds NONE has
 * been overtaken: it takes rt->mu and wakes whoever the adopter let wait
 * (the waiters and dependents linked under the lock), and completes the
 * task as an ordinary one.  Each direct entry holds one ref for its run
 * (dropped when the run is sealed), so it outlives its run, and the
 * last ref of an entry whose task is DONE frees both without the lock
 * (rayc__obj_unpin). */
#ifndef RAYC_DIRECT_H
#define RAYC_DIRECT_H

#include "rt.h"

typedef struct rayc__direct rayc__direct;
typedef struct rayc__hoard rayc__hoard;

/* Slots of the ring: live direct tasks at most (a task whose number's
 * slot is taken goes the usual way), and so queued ones too; and
 * records at most (rayc__drec, rt.h: a task's entry and spec in one
 * 512-byte block; a task that finds no free record takes its memory
 * from the slabs instead, still direct).  One reservation
 * (rayc__vm_reserve) holds them: 4 MiB for the ring, 8 MiB for the
 * queue, 256 MiB of address space for the records (an eighth of that,
 * or a 64th, or a 512th where the system refuses so much: a ulimit -v,
 * overcommit turned off; no direct tasks at all if it refuses even
 * those), made resident as they are first reached, in huge pages where
 * the system gives them.
 * Records are used in turn from the first RAYC__DIRECT_RECS0 (128
 * KiB), their number grown by half while more than 3/4 as many direct
 * tasks live (looked at as a thread takes its next 64): resident
 * records follow the most tasks in flight so far (twice as many at
 * most, 512 bytes each), and few tasks in flight reuse a few warm
 * ones. */
#define RAYC__DIRECT_SLOTS (1 << 19)
#define RAYC__DIRECT_RECS (1 << 19)
#define RAYC__DIRECT_RECS0 256

enum {
	RAYC__D_NONE = 0, /* an ordinary task (or adopted) */
	RAYC__D_DIRECT,   /* direct: queued or running */
	RAYC__D_SEALING,  /* direct: its worker writes the result */
	RAYC__D_DONE,     /* direct: sealed without the lock: ready */
};

/* Makes the ring and the queue (rayc_init, a peer with no mesh, before
 * any call).  RAYC_OK or RAYC_ENOMEM; without them nothing is direct. */
int rayc__direct_init(rayc__rt *rt);
/* Frees every direct entry and task left (shutdown, workers joined,
 * before the object table is: the ring names adopted entries in flight,
 * the table's, and skips them). */
void rayc__direct_destroy(rayc__rt *rt);

/* Releases what rayc__direct_destroy kept (rt_free: after the object
 * table, whose adopted entries and tasks may lie in records). */
void rayc__direct_fini(rayc__rt *rt);

/* A task for id with room for nargs arguments, zeroed but for its id,
 * args, returns, nargs and nreturns (1), in this thread's next record,
 * for rayc__direct_submit; NULL if that record is taken (an adopted
 * task, or as many as there are records, live) or nargs exceeds
 * RAYC__DREC_ARGS: allocate it the usual way.  The caller fills only
 * arguments of 8 bytes (no copies: there is no room). */
rayc__task *rayc__direct_task(rayc__rt *rt, rayc_task_id id, size_t nargs);

/* Submits t (its id, fn and args set, one return, no ref arguments, in
 * rt->dclass) directly: true; false if its ring slot is taken or no
 * memory (submit it the usual way). */
bool rayc__direct_submit(rayc__rt *rt, rayc__task *t);
/* Without rt->mu: the direct entry of id with one more ref, if it is in
 * the ring (rayc__obj_pin). */
rayc__obj *rayc__direct_pin(rayc__rt *rt, rayc_object_id id);
/* The entry of id adopted into the object table (see above); NULL if id
 * names no live direct entry. */
rayc__obj *rayc__direct_adopt_locked(rayc__rt *rt, rayc_object_id id)
	RAYC_REQUIRES(rt->mu);
/* The last ref of o, whose task is DONE, went: o and its task go. */
void rayc__direct_free(rayc__rt *rt, rayc__obj *o);

/* Workers (sched.c).  _pending: tasks wait in the queue.  _run: runs
 * them, rt->mu not held, the default demand held (cpu its CPU part),
 * until the queue has stayed empty a moment or RAYC__DIRECT_RUNS ran;
 * while many wait it takes a few at once, its hoard (_hoard: this
 * thread's, for rayc__worker.dhoard while it runs them).  The hoard's
 * tasks not started go back to the queue when a worker about to park
 * takes them (_steal_locked, under rt->mu, h that worker's hoard, which
 * lives while it is set) and when a run of this thread blocks in
 * rayc_get or rayc_wait (_return): one may be what it waits for; the
 * thread counts as running direct tasks again once that run goes on
 * (_unblocked). */
#define RAYC__DIRECT_RUNS 256
bool rayc__direct_pending(const rayc__rt *rt);
/* Whether the direct tasks waiting call for one more worker beside
 * those running them (sched.c, as a worker starts running them). */
bool rayc__direct_backlog(const rayc__rt *rt);
/* This thread is about to wait for an object (rayc_get of one not
 * ready, rayc_wait): its next direct task starts no burst.  hurry: it
 * waits for a direct task's result (or may): if a worker holds tasks
 * back now, none is until the queue runs dry (direct.c: held_back);
 * called again as the wait goes on (a hold may start meanwhile). */
void rayc__direct_waits(rayc__rt *rt, bool hurry);
uint64_t rayc__direct_queued(const rayc__rt *rt);
uint64_t rayc__direct_live(const rayc__rt *rt);
void rayc__direct_run(rayc__rt *rt, int64_t cpu) RAYC_EXCLUDES(rt->mu);
/* The scheduler gives this worker something other than a turn of
 * direct tasks (or it parks, or stops): it no longer counts as running
 * them (a turn that ran out left it counted). */
void rayc__direct_left(rayc__rt *rt);
rayc__hoard *rayc__direct_hoard(void);
bool rayc__direct_steal_locked(rayc__rt *rt, rayc__hoard *h)
	RAYC_REQUIRES(rt->mu);
void rayc__direct_return(rayc__rt *rt);
void rayc__direct_unblocked(rayc__rt *rt);
/* Workers idle (parked or about to), kept by sched.c under rt->mu and
 * read by submitters without it. */
void rayc__direct_idle_add(rayc__rt *rt, int d);
/* Whether a worker runs direct tasks now (not blocked); an idle worker
 * then looks at the queue every RAYC__DIRECT_POLL_NS, half as often each
 * time it finds them going on, down to RAYC__DIRECT_POLL_MAX_NS
 * (sched.c). */
bool rayc__direct_serving(const rayc__rt *rt);
/* A worker passes its loop's top (sched.c): a submitter that finds none
 * running direct tasks may kick again (it kicks once until then). */
void rayc__direct_woke(rayc__rt *rt);
#define RAYC__DIRECT_POLL_NS 1000000
#define RAYC__DIRECT_POLL_MAX_NS 8000000 /* while they get on (sched.c) */
/* The queue's head (tasks taken so far), and whether it moved since
 * *seen while a worker runs direct tasks (*seen updated): an idle
 * worker's look finds them going on. */
uint64_t rayc__direct_head(const rayc__rt *rt);
bool rayc__direct_moved(const rayc__rt *rt, uint64_t *seen);
/* Whether tasks wait in the scheduler's queues (sched.c, under rt->mu):
 * a worker running direct tasks then ends its turn after each, so that
 * a task needing more than they leave free is not passed by a whole
 * turn of them each time (sched.c: RAYC__STARVE_PASSES). */
void rayc__direct_yield(rayc__rt *rt, bool on);

#endif /* RAYC_DIRECT_H */
