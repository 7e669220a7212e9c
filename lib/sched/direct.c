/* direct.c -- direct tasks (see direct.h): their records, their ring of
 * entries, their queue, their runs, adoption into the object table, and
 * freeing. */
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "os/os.h"
#include "sched/direct.h"
#include "sched/sched.h"
#include "testing.h"

#define SLOTS ((size_t)RAYC__DIRECT_SLOTS)
#define RECS ((size_t)RAYC__DIRECT_RECS)
#define RLIM0 ((size_t)RAYC__DIRECT_RECS0)
#define RBLOCK 64            /* records a thread takes at once */
static _Atomic bool off; /* rayc__test_set_direct */

/* Sets a flag other threads read often, writing its line only if it
 * changes. */
static void flag_to(_Atomic bool *f, bool v)
{
	if (atomic_load_explicit(f, memory_order_relaxed) != v)
		atomic_store(f, v);
}
/* Tasks a worker takes at once at most (run_turn). */
#define HOARD 8
/* Tasks waiting per worker running them past which a submitter wakes
 * one more (rayc__direct_submit). */
#define BACKLOG HOARD
/* A worker keeps this many tasks of a burst behind its submitter, and
 * waits for them at most HOLD_NS (run_turn). */
#define DISTANCE 256
#define HOLD_NS 20000

/* The queue: a ring of cells, any number of threads putting and taking
 * without a lock.  It never holds more than it has cells: every task in
 * it holds a slot of the ring (an adopted one too, until it has run),
 * and there are as many cells as slots.  So a putter needs no check
 * that its cell is free: it claims a position (tail), writes the task
 * and publishes it (seq = its position + 1; zeroed memory is "nothing
 * yet", so the cells' pages are touched as the queue first reaches
 * them).  A taker reads the task at head, published, and then claims it
 * (a compare-and-swap on head): no putter writes that cell again before
 * head has passed it, and the taker writes nothing in the cell, so the
 * cache line a submitter fills is not written back and forth with each
 * task a worker takes. */
typedef struct cell {
	_Atomic size_t seq;
	_Atomic uintptr_t t; /* the task, | BURST (tasks are 64-aligned) */
} cell;
#define BURST ((uintptr_t)1)

struct rayc__direct {
	rayc__obj *_Atomic *slot;
	cell *q;
	rayc__drec *rec; /* nrec of them (rayc__direct_task) */
	size_t nrec;
	size_t mask;
	uint64_t gen; /* tells this runtime's record blocks (rblk) apart */
	/* One reservation holds the records, the ring and the queue. */
	void *mem;
	size_t mem_len;
	/* Each written by its side with every task, on lines of their own;
	 * idle read by every submission, written by parking workers. */
	_Alignas(64) _Atomic size_t tail; /* next put */
	_Alignas(64) _Atomic size_t head; /* next take */
	_Alignas(64) _Atomic int idle;
	_Atomic int serving; /* workers in rayc__direct_run, not blocked */
	/* A submitter kicked because none ran direct tasks; cleared by a
	 * worker passing its loop's top (rayc__direct_woke). */
	_Atomic bool waking;
	/* A worker holds tasks back now (held_back), written as it starts
	 * and stops; a thread waits for a direct task's result while one
	 * does: no task is held back until the queue next runs dry (set by
	 * such waiters, cleared by a worker). */
	_Alignas(64) _Atomic bool holding;
	_Atomic bool hurry;
	_Alignas(64) _Atomic uint64_t live;
	/* Records are handed out in blocks of RBLOCK from rcur, taken
	 * modulo rlim, which grows by half (up to nrec) while more than
	 * 3/4 as many direct tasks live: memory in use follows the tasks
	 * in flight, and a program with few reuses a few, warm. */
	_Alignas(64) _Atomic size_t rcur;
	_Atomic size_t rlim;
	/* Tasks wait in the scheduler's queues (sched.c): a worker running
	 * direct tasks goes back to it after each. */
	_Alignas(64) _Atomic bool yield;
};

int rayc__direct_init(rayc__rt *rt)
{
	rayc__direct *d = aligned_alloc(_Alignof(rayc__direct), sizeof(*d));

	if (d == NULL)
		return rayc__err(RAYC_ENOMEM, "no memory for direct tasks");
	memset(d, 0, sizeof(*d));
	d->mask = SLOTS - 1;
	/* Where address space is short (a ulimit -v, overcommit off), fewer
	 * records: a task finding none free takes slab memory. */
	for (d->nrec = RECS; d->nrec >= RLIM0; d->nrec /= 8) {
		d->mem_len = d->nrec * sizeof(d->rec[0]) +
		             SLOTS * (sizeof(d->slot[0]) + sizeof(d->q[0]));
		if ((d->mem = rayc__vm_reserve(d->mem_len)) != NULL)
			break;
	}
	if (d->mem == NULL) {
		free(d);
		return rayc__err(RAYC_ENOMEM, "no address space for direct "
		                 "tasks' ring (%zu bytes)",
		                 SLOTS * (sizeof(d->slot[0]) + sizeof(d->q[0])));
	}
	d->rec = d->mem;
	d->rlim = RLIM0;
	static _Atomic uint64_t gens;
	d->gen = atomic_fetch_add(&gens, 1) + 1;
	d->slot = (rayc__obj *_Atomic *)(void *)(d->rec + d->nrec);
	d->q = (cell *)(void *)(d->slot + SLOTS);
	rt->direct = d;
	return RAYC_OK;
}

void rayc__direct_fini(rayc__rt *rt)
{
	rayc__vm_release(rt->direct_mem, rt->direct_mem_len);
	rt->direct_mem = NULL;
}

rayc__task *rayc__direct_task(rayc__rt *rt, rayc_task_id id, size_t nargs)
{
	/* This thread's block: records [next, end) of the array. */
	static _Thread_local struct {
		uint64_t gen;
		size_t next, end;
	} rblk;
	rayc__direct *d = rt->direct;

	if (d == NULL || nargs > RAYC__DREC_ARGS ||
	    atomic_load_explicit(&off, memory_order_relaxed))
		return NULL;
	if (rblk.gen != d->gen || rblk.next == rblk.end) {
		size_t lim = atomic_load_explicit(&d->rlim,
		                                  memory_order_relaxed);
		if (lim < d->nrec &&
		    atomic_load_explicit(&d->live, memory_order_relaxed) >
		            lim / 4 * 3) {
			/* Half as many again (a multiple of RBLOCK, so no
			 * block straddles the end). */
			size_t more = lim + lim / 2 / RBLOCK * RBLOCK;
			if (more > d->nrec)
				more = d->nrec;
			if (atomic_compare_exchange_strong(&d->rlim, &lim, more))
				lim = more;
		}
		size_t at = atomic_fetch_add_explicit(&d->rcur, RBLOCK,
		                                      memory_order_relaxed);
		rblk.gen = d->gen;
		rblk.next = at % lim; /* both multiples of RBLOCK */
		rblk.end = rblk.next + RBLOCK;
	}
	rayc__drec *r = &d->rec[rblk.next++];
	/* acquire: the frees of its last entry and task (releases) came
	 * before this thread writes it. */
	uint32_t none = 0;
	if (!atomic_compare_exchange_strong_explicit(&r->o.rec_holds, &none, 2,
	                                             memory_order_acquire,
	                                             memory_order_relaxed))
		return NULL; /* an adopted task lives there, or many fly */
	rayc__task *t = &r->t;
	memset(t, 0, sizeof(*t) + sizeof(r->ret));
	memset(r->args, 0, nargs * sizeof(r->args[0]));
	t->mem = RAYC__MEM_REC;
	t->id = id;
	t->args = r->args;
	t->returns = &r->ret;
	t->nargs = (uint32_t)nargs;
	t->nreturns = 1;
	return t;
}

static rayc__obj *_Atomic *slot_of(const rayc__direct *d, rayc_object_id id)
{
	return &d->slot[(size_t)(id.lo >> 16) & d->mask];
}

static void clear_slot(rayc__direct *d, rayc__obj *o)
{
	rayc__obj *self = o;

	(void)atomic_compare_exchange_strong(slot_of(d, o->id), &self, NULL);
}

void rayc__direct_destroy(rayc__rt *rt)
{
	rayc__direct *d = rt->direct;

	if (d == NULL)
		return;
	for (size_t i = 0; i <= d->mask; i++) {
		rayc__obj *o = atomic_load_explicit(&d->slot[i],
		                                    memory_order_relaxed);
		if (o == NULL ||
		    atomic_load_explicit(&o->dstate, memory_order_relaxed) ==
		            RAYC__D_NONE)
			continue; /* adopted: the table frees it */
		rayc__task_free(o->task); /* data: inline, nothing to free */
		rayc__obj_mem_free(o);
	}
	/* The records stay until rt goes (rayc__direct_fini): the object
	 * table frees adopted entries and tasks in them after this. */
	rt->direct_mem = d->mem;
	rt->direct_mem_len = d->mem_len;
	free(d);
	rt->direct = NULL;
}

static void put(rayc__direct *d, rayc__task *t, uintptr_t burst)
{
	/* seq_cst: the submitter's look at idle workers comes after it
	 * (rayc__direct_submit). */
	size_t pos = atomic_fetch_add(&d->tail, 1);
	cell *c = &d->q[pos & d->mask];

	atomic_store_explicit(&c->t, (uintptr_t)t | burst,
	                      memory_order_relaxed);
	atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
}

/* Whether the task at position pos is published. */
static bool published(const rayc__direct *d, size_t pos)
{
	return atomic_load_explicit(&d->q[pos & d->mask].seq,
	                            memory_order_acquire) == pos + 1;
}

/* Whether a task waits at the head (or may soon: a put under way). */
static bool waiting(const rayc__direct *d)
{
	return published(d, atomic_load_explicit(&((rayc__direct *)d)->head,
	                                          memory_order_relaxed));
}

/* The oldest queued task, or NULL. */
static rayc__task *get(rayc__direct *d)
{
	size_t pos = atomic_load_explicit(&d->head, memory_order_relaxed);

	for (;;) {
		cell *c = &d->q[pos & d->mask];
		size_t seq = atomic_load_explicit(&c->seq,
		                                  memory_order_acquire);
		if (seq != pos + 1) {
			if ((intptr_t)(seq - (pos + 1)) < 0)
				return NULL; /* empty (or its putter is mid-put) */
			/* Put again a lap on: head moved past pos. */
			pos = atomic_load_explicit(&d->head,
			                           memory_order_relaxed);
			continue;
		}
		uintptr_t t = atomic_load_explicit(&c->t, memory_order_relaxed);
		if (atomic_compare_exchange_weak_explicit(
			    &d->head, &pos, pos + 1, memory_order_relaxed,
			    memory_order_relaxed))
			return (rayc__task *)(t & ~BURST);
	}
}

/* Tasks put and not taken (a put under way counts; a task given back
 * is put again at the tail). */
static uint64_t queued(const rayc__direct *d)
{
	/* seq_cst: a worker parks after counting itself idle and then
	 * finding this 0; a submitter reads idle after putting (submit). */
	size_t h = atomic_load(&((rayc__direct *)d)->head);
	size_t t = atomic_load(&((rayc__direct *)d)->tail);

	return t > h ? t - h : 0;
}

/* Whether more wait than `serving` workers running them take at once,
 * beyond twice the DISTANCE a burst's are kept behind their submitter
 * (held_back; more come while a worker holding them back looks away):
 * then another worker is worth waking. */
static bool backlog(const rayc__direct *d, int serving)
{
	size_t pos = atomic_load_explicit(&((rayc__direct *)d)->head,
	                                  memory_order_relaxed);
	uintptr_t head = atomic_load_explicit(&d->q[pos & d->mask].t,
	                                      memory_order_relaxed);

	return queued(d) > (uint64_t)serving * BACKLOG +
	                           ((head & BURST) ? 2 * DISTANCE : 0);
}

bool rayc__direct_backlog(const rayc__rt *rt)
{
	rayc__direct *d = rt->direct;

	return d != NULL && backlog(d, atomic_load(&d->serving) + 1);
}

uint64_t rayc__direct_head(const rayc__rt *rt)
{
	return rt->direct != NULL ? atomic_load(&rt->direct->head) : 0;
}

bool rayc__direct_moved(const rayc__rt *rt, uint64_t *seen)
{
	uint64_t h = rayc__direct_head(rt), was = *seen;

	*seen = h;
	return h != was && rayc__direct_serving(rt);
}

bool rayc__direct_pending(const rayc__rt *rt)
{
	return rt->direct != NULL && queued(rt->direct) != 0;
}

uint64_t rayc__direct_queued(const rayc__rt *rt)
{
	return rt->direct != NULL ? queued(rt->direct) : 0;
}

uint64_t rayc__direct_live(const rayc__rt *rt)
{
	return rt->direct != NULL ? atomic_load(&rt->direct->live) : 0;
}

void rayc__direct_yield(rayc__rt *rt, bool on)
{
	rayc__direct *d = rt->direct;

	if (d != NULL &&
	    atomic_load_explicit(&d->yield, memory_order_relaxed) != on)
		atomic_store_explicit(&d->yield, on, memory_order_relaxed);
}

void rayc__direct_woke(rayc__rt *rt)
{
	rayc__direct *d = rt->direct;

	if (d != NULL)
		flag_to(&d->waking, false);
}

bool rayc__direct_serving(const rayc__rt *rt)
{
	return rt->direct != NULL && atomic_load(&rt->direct->serving) > 0;
}

void rayc__direct_idle_add(rayc__rt *rt, int k)
{
	if (rt->direct != NULL)
		atomic_fetch_add(&rt->direct->idle, k); /* seq_cst */
}

void rayc__test_set_direct(bool on)
{
	atomic_store(&off, !on);
}

int rayc__test_direct_phase(rayc_ref ref)
{
	rayc__rt *rt = rayc__g;
	rayc__obj *o = rt != NULL ? rayc__direct_pin(rt, ref.id) : NULL;

	if (o == NULL)
		return RAYC__D_NONE;
	int phase = atomic_load(&o->dstate);
	rayc__obj_unpin(rt, o);
	return phase;
}

int rayc__test_direct_in_rec(rayc_ref ref)
{
	rayc__rt *rt = rayc__g;
	rayc__obj *o = rt != NULL ? rayc__direct_pin(rt, ref.id) : NULL;
	int in = -1;

	if (o != NULL) {
		in = o->in_rec;
		rayc__obj_unpin(rt, o);
	} else if (rt != NULL) {
		/* In the table (adopted, or never direct): not adopted here. */
		rayc__rt_lock(rt);
		o = rayc__obj_find_indexed_locked(rt, ref.id);
		if (o != NULL)
			in = o->in_rec;
		rayc__mutex_unlock(&rt->mu);
	}
	return in;
}

/* rayc__test_direct_pause: 0 off, 1 armed, 2 a run waits. */
static _Atomic int pause_seal;

void rayc__test_direct_pause(bool on)
{
	if (on)
		atomic_store(&pause_seal, 1);
	else
		atomic_store(&pause_seal, 0);
}

bool rayc__test_direct_paused(void)
{
	return atomic_load(&pause_seal) == 2;
}

static void pause_if_armed(void)
{
	int armed = 1;

	if (RAYC__UNLIKELY(atomic_load_explicit(&pause_seal,
	                                        memory_order_relaxed) != 0) &&
	    atomic_compare_exchange_strong(&pause_seal, &armed, 2))
		while (atomic_load(&pause_seal) == 2)
			rayc__yield();
}

/* This thread's last call that may wait was a direct submission
 * (rayc__direct_waits clears it): the next quick one is a burst's. */
static _Thread_local bool streaming;

void rayc__direct_waits(rayc__rt *rt, bool hurry)
{
	rayc__direct *d = rt->direct;

	streaming = false;
	/* Only while a worker holds tasks back: a synchronous call's waits
	 * would otherwise write the line with every call, and its worker
	 * write it back as it runs dry. */
	if (hurry && d != NULL &&
	    atomic_load_explicit(&d->holding, memory_order_relaxed))
		flag_to(&d->hurry, true);
}

bool rayc__direct_submit(rayc__rt *rt, rayc__task *t)
{
	rayc__direct *d = rt->direct;
	rayc_object_id id = rayc__return_id(t->id, 0);
	bool in_rec = t->mem == RAYC__MEM_REC;

	if (atomic_load_explicit(&off, memory_order_relaxed))
		goto usual;
	rayc__obj *o = in_rec ? &rayc__drec_of_task(t)->o
	                      : rayc__slab_alloc_n(&rt->obj_slab, 0);
	if (o == NULL)
		return false;
	rayc__obj_init(o, id);
	o->in_rec = in_rec;
	o->task = t;
	t->returns[0] = o;
	t->live_returns = 1;
	atomic_store_explicit(&o->dstate, RAYC__D_DIRECT, memory_order_relaxed);
	atomic_store_explicit(&o->handles, 1, memory_order_relaxed);
	/* In the ring while its refcnt is 0 still: a pinner that reaches
	 * it now (nobody knows its id yet; a stale hint to the block)
	 * pins nothing, so a slot taken lets it go at once. */
	rayc__obj *none = NULL;
	/* acquire: after the slot's last holder let go of it (clear_slot),
	 * so after its task left the queue: the queue's cells are free by
	 * the time their tasks' slots are (put). */
	if (!atomic_compare_exchange_strong_explicit(
		    slot_of(d, id), &none, o, memory_order_acquire,
		    memory_order_relaxed)) {
		/* A live task a ring apart: the usual way. */
		atomic_store_explicit(&o->handles, 0, memory_order_relaxed);
		atomic_store_explicit(&o->dstate, RAYC__D_NONE,
		                      memory_order_relaxed);
		t->returns[0] = NULL;
		t->live_returns = 0;
		rayc__obj_mem_free(o);
		return false;
	}
	/* The handle's ref and the run's; release: a pinner reads the id
	 * and the fields above after it (rayc__obj_pin). */
	atomic_store_explicit(&o->refcnt, 2, memory_order_release);
	atomic_fetch_add_explicit(&d->live, 1, memory_order_relaxed);
	/* A quick task after another from this thread may wait in the queue
	 * until DISTANCE more follow it (run_turn); one after a wait, as a
	 * synchronous call's, never does. */
	bool burst = streaming && rayc__sched_quick(t);
	streaming = true;
	/* A worker parks after counting itself idle and then finding the
	 * queue empty (seq_cst both); this reads idle after queueing (the
	 * tail's move seq_cst, then seq_cst loads): one of the two sees
	 * the other. */
	put(d, t, burst ? BURST : 0);
	/* No worker runs direct tasks (idle, busy with other tasks, or
	 * blocked with its CPU lent back: the kick may start a thread, as
	 * queueing a task the usual way does); or, looked at every 64th
	 * time, more wait than the ones running them take at once, past
	 * those held back, while a worker is idle (backlog).  A worker
	 * whose queue runs dry lingers only if
	 * it is the last running them (run_turn): on a VM with as many
	 * CPUs as workers, more spinning would take the submitter's CPU. */
	static _Thread_local unsigned tick;
	int serving = atomic_load(&d->serving);
	bool kick;
	if (serving == 0)
		/* Once until a worker comes: the puts meanwhile (a woken
		 * worker takes tens of microseconds to run here) would each
		 * meet it on rt->mu, and wake the other idle ones too. */
		kick = !atomic_load_explicit(&d->waking, memory_order_relaxed) &&
		       !atomic_exchange(&d->waking, true);
	else
		kick = (++tick & 63) == 0 && atomic_load(&d->idle) > 0 &&
		       backlog(d, serving);
	if (kick) {
		/* No wait for rt->mu: its holder wakes one as it lets go
		 * (rayc__sched_drain_locked), as it records a submission. */
		atomic_store(&rayc__handoff_kick, true);
		if (rayc__rt_trylock(rt))
			rayc__mutex_unlock(&rt->mu);
	}
	return true;
usual:
	if (in_rec)
		rayc__drec_let_go(rayc__drec_of_task(t)); /* its entry's part */
	return false;
}

rayc__obj *rayc__direct_pin(rayc__rt *rt, rayc_object_id id)
{
	rayc__direct *d = rt->direct;

	/* Only a fresh task's first return can be direct. */
	if (d == NULL || id.hi != rt->job || (id.lo & 0xffff) != 1)
		return NULL;
	rayc__obj *o = atomic_load_explicit(slot_of(d, id),
	                                    memory_order_acquire);
	if (o == NULL || (o = rayc__obj_pin_entry(rt, o, id)) == NULL)
		return NULL;
	if (atomic_load_explicit(&o->dstate, memory_order_acquire) ==
	    RAYC__D_NONE) {
		/* Adopted, in flight: the table's (and the hints') now. */
		rayc__obj_unpin(rt, o);
		return NULL;
	}
	return o;
}

/* Takes t (its entry o, pinned or held by the caller) out of the direct
 * world into the object table: an ordinary task, in flight if it was
 * not sealed yet. */
static void adopt_locked(rayc__rt *rt, rayc__task *t, rayc__obj *o)
	RAYC_REQUIRES(rt->mu)
{
	rayc__direct *d = rt->direct;
	uint8_t s = atomic_load(&o->dstate);
	unsigned spins = 0;

	for (;;) {
		if (s == RAYC__D_NONE)
			return; /* adopted already */
		if (s == RAYC__D_SEALING) {
			/* Its worker writes the result: a few stores (unless
			 * it was preempted there). */
			if (++spins % 64 == 0)
				rayc__yield();
			else
				rayc__cpu_relax();
			s = atomic_load(&o->dstate);
			continue;
		}
		if (atomic_compare_exchange_weak(&o->dstate, &s, RAYC__D_NONE))
			break;
	}
	atomic_fetch_sub_explicit(&d->live, 1, memory_order_relaxed);
	if (rayc__obj_index_locked(rt, o) != RAYC_OK)
		abort(); /* out of memory for the table: as mid-submit */
	t->in_flight = s == RAYC__D_DIRECT;
	rt->nlineage++;
	if (t->in_flight) {
		/* Queued in the direct queue or running: no class queue holds
		 * it, and nothing here may take it from one.  It keeps its
		 * ring slot until its worker ends it (every task queued
		 * there holds one: the queue cannot fill).  Someone wants
		 * it: an idle worker is woken if the queue holds tasks (the
		 * worker running them may be held by a long run). */
		t->state = RAYC__TASK_RUNNING;
		rayc__sched_kick_locked(rt);
		/* Nor is it held back (held_back) any more, nor any before
		 * it: a get that spun for it may have looked for a hold
		 * before one began (rayc__direct_waits). */
		flag_to(&d->hurry, true);
		return;
	}
	/* Sealed by its worker (DONE): ready from now on under the lock
	 * too. */
	t->state = RAYC__TASK_FINISHED;
	atomic_store_explicit(&o->state, RAYC__OBJ_READY, memory_order_release);
	clear_slot(d, o);
}

rayc__obj *rayc__direct_adopt_locked(rayc__rt *rt, rayc_object_id id)
{
	rayc__obj *o = rayc__direct_pin(rt, id);

	if (o == NULL)
		return NULL;
	adopt_locked(rt, o->task, o);
	rayc__obj_unref_locked(rt, o); /* the pin: may have been the last */
	return rayc__obj_find_indexed_locked(rt, id);
}

void rayc__direct_free(rayc__rt *rt, rayc__obj *o)
{
	rayc__direct *d = rt->direct;

	clear_slot(d, o);
	atomic_fetch_sub_explicit(&d->live, 1, memory_order_relaxed);
	if (o->in_rec && o->task == &rayc__drec_of_obj(o)->t) {
		/* Both of its record's holds at once. */
		atomic_fetch_sub_explicit(&o->rec_holds, 2,
		                          memory_order_release);
		return;
	}
	rayc__task_free(o->task);
	rayc__obj_mem_free(o);
}

/* Ends a run the usual way, under rt->mu: a failure, a return that is
 * not inline, or a task adopted before its worker could seal it. */
static void finish_locked(rayc__rt *rt, rayc__task *t, rayc_ctx *ctx)
	RAYC_REQUIRES(rt->mu)
{
	rayc__obj *o = t->returns[0];

	adopt_locked(rt, t, o);
	/* Its slot goes as it ends (adopt_locked kept it). */
	clear_slot(rt->direct, o);
	rayc__sched_batch_complete_locked(rt, t, ctx);
	rayc__obj_unref_locked(rt, o); /* the run's ref */
}

static void run_one(rayc__rt *rt, rayc__task *t, int64_t cpu)
{
	rayc_ctx ctx;

	memset(&ctx, 0, sizeof(ctx));
	ctx.task = t;
	ctx.held_cpu = cpu;
	ctx.rets = &ctx.ret0;
	rayc__sched_run_timed(rt, t, &ctx);
	rayc__obj *o = t->returns[0];
	rayc__ret *r = &ctx.ret0;
	pause_if_armed();
	/* The result is written without the lock only by a worker that
	 * took the entry from DIRECT to SEALING (an adopter waits while it
	 * is SEALING), and its state is never written without the lock:
	 * DONE is what says ready to readers without it. */
	uint8_t s = RAYC__D_DIRECT;
	if (ctx.failed || (r->set && r->data != r->buf) ||
	    !atomic_compare_exchange_strong(&o->dstate, &s,
	                                    RAYC__D_SEALING)) {
		rayc__rt_lock(rt);
		finish_locked(rt, t, &ctx);
		rayc__mutex_unlock(&rt->mu);
		return;
	}
	if (r->set) {
		o->type = r->type;
		o->len = r->len;
		memcpy(o->inline_buf, r->buf, sizeof(o->inline_buf));
	} else {
		o->type = RAYC_TYPE_BYTES;
		o->len = 0;
	}
	o->data = o->inline_buf;
	atomic_store_explicit(&o->dstate, RAYC__D_DONE, memory_order_release);
	rayc__obj_unpin(rt, o); /* the run's ref */
}

/* How long a worker whose queue ran dry looks for more before it goes
 * back to the scheduler (and may park): a submitter that outruns it
 * briefly would otherwise wake it, through rt->mu, again and again. */
#define LINGER_NS 20000

/* A worker takes several tasks at once while many wait (each take is a
 * compare-and-swap on the queue's head, a line the workers pass to and
 * fro): its hoard.  Its tasks not started stay takeable, as a batch's
 * runs do (execute.c): claim holds gen << 32 | n << 16 | next; the owner
 * starts `next` by moving next up, a taker ends the hoard at `next` by
 * moving n down to it and puts [next, n) back in the queue: a worker
 * about to park (rayc__direct_steal_locked), and the owner itself when a
 * run blocks (rayc__direct_return).  A taker reads the tasks before its
 * compare-and-swap (after it, the owner may fill the hoard anew); gen,
 * moved on by every fill, makes that swap fail if it did so meanwhile. */
struct rayc__hoard {
	rayc__task *_Atomic t[HOARD];
	_Atomic uint64_t claim;
};
static _Thread_local rayc__hoard mine;
/* This thread runs direct tasks (rayc__direct_run), and one of them is
 * blocked (rayc__direct_return, _unblocked). */
static _Thread_local bool in_run;
static _Thread_local int blocks; /* nested: a run inline in a blocked one */

#define C_NEXT(v) ((uint32_t)(v) & 0xffff)
#define C_N(v) ((uint32_t)((v) >> 16) & 0xffff)

/* Puts the hoard's tasks not started back in the queue; true if any. */
static bool give_back(rayc__direct *d, rayc__hoard *h)
{
	uint64_t v = atomic_load(&h->claim);
	rayc__task *t[HOARD];
	uint32_t i, n;

	do {
		i = C_NEXT(v);
		n = C_N(v);
		if (i >= n)
			return false;
		for (uint32_t k = i; k < n; k++)
			t[k] = atomic_load_explicit(&h->t[k],
			                            memory_order_relaxed);
	} while (!atomic_compare_exchange_weak(
		&h->claim, &v, (v & ~(uint64_t)0xffff0000) | (uint64_t)i << 16));
	for (; i < n; i++)
		put(d, t[i], 0);
	return true;
}

bool rayc__direct_steal_locked(rayc__rt *rt, rayc__hoard *h)
{
	return rt->direct != NULL && h != NULL && give_back(rt->direct, h);
}

void rayc__direct_return(rayc__rt *rt)
{
	if (rt->direct == NULL || !in_run)
		return;
	(void)give_back(rt->direct, &mine);
	if (blocks++ == 0)
		atomic_fetch_sub(&rt->direct->serving, 1);
}

void rayc__direct_unblocked(rayc__rt *rt)
{
	if (rt->direct == NULL || !in_run || blocks == 0)
		return;
	if (--blocks == 0)
		atomic_fetch_add(&rt->direct->serving, 1);
}

rayc__hoard *rayc__direct_hoard(void)
{
	return &mine;
}

/* The hoard's next task not started, or NULL. */
static rayc__task *next_of(rayc__hoard *h)
{
	uint64_t v = atomic_load_explicit(&h->claim, memory_order_relaxed);

	do {
		if (C_NEXT(v) >= C_N(v))
			return NULL;
	} while (!atomic_compare_exchange_weak(&h->claim, &v, v + 1));
	return atomic_load_explicit(&h->t[C_NEXT(v)], memory_order_relaxed);
}

/* Fills the hoard: up to HOARD tasks, about half of those waiting (the
 * other workers' share: it takes another while as many as it holds wait
 * behind), one at least, and more than one only while they
 * are quick (their function's runs took under RAYC__QUICK_NS so far, as
 * a batch's must: execute.c): a task that is not ends it, so none waits
 * behind one that may run long.  Its count. */
static uint32_t fill(rayc__direct *d, rayc__hoard *h)
{
	uint64_t gen = (atomic_load_explicit(&h->claim, memory_order_relaxed) >>
	                32) + 1;
	uint32_t n = 0;
	rayc__task *t;

	while (n < HOARD && (t = get(d)) != NULL) {
		atomic_store_explicit(&h->t[n++], t, memory_order_relaxed);
		if (!rayc__sched_quick(t))
			break;
		/* Another only while as many as it holds wait behind (the
		 * cells, not the tail: the line a submitter writes with
		 * every task is not read here). */
		if (!published(d, atomic_load_explicit(&d->head,
		                                       memory_order_relaxed) +
		                          n - 1))
			break;
	}
	/* release: a taker reads t[] after it */
	atomic_store_explicit(&h->claim, gen << 32 | (uint64_t)n << 16,
	                      memory_order_release);
	return n;
}

/* How long a worker holds a task back at most (tests may change it). */
static _Atomic int64_t hold_ns = HOLD_NS;

static void unhold(rayc__direct *d, int64_t *held)
{
	if (*held >= 0)
		atomic_store(&d->holding, false);
	*held = -1;
}

void rayc__test_direct_hold(int64_t ns)
{
	atomic_store(&hold_ns, ns > 0 ? ns : HOLD_NS);
}

bool rayc__test_direct_holding(void)
{
	rayc__rt *rt = rayc__g;

	return rt != NULL && rt->direct != NULL &&
	       atomic_load(&rt->direct->holding);
}

bool rayc__test_direct_hurry(void)
{
	rayc__rt *rt = rayc__g;

	return rt != NULL && rt->direct != NULL &&
	       atomic_load(&rt->direct->hurry);
}

/* Whether the task at the head is a burst's with fewer than DISTANCE
 * queued behind it, and nobody waits for a direct task: its worker lets
 * the submitter get further ahead before it takes it.  A worker right
 * behind its submitter reads each record as it is written, and its
 * core's prefetchers ask for the lines the submitter writes next: on a
 * 2-vCPU EPYC VM one submitter with one worker took 176-477 ns a task
 * that way, 82-150 with the worker 256 behind. */
static bool held_back(rayc__direct *d)
{
	size_t pos = atomic_load_explicit(&d->head, memory_order_relaxed);
	const cell *c = &d->q[pos & d->mask];

	return atomic_load_explicit(&c->seq, memory_order_acquire) == pos + 1 &&
	       (atomic_load_explicit(&c->t, memory_order_relaxed) & BURST) &&
	       !published(d, pos + DISTANCE - 1) &&
	       !atomic_load_explicit(&d->hurry, memory_order_relaxed);
}

static bool run_turn(rayc__rt *rt, int64_t cpu, int64_t *held);

/* This thread's turn ended after RAYC__DIRECT_RUNS runs with tasks
 * still coming: it stays counted in serving until the scheduler gives it
 * another turn or something else to do (rayc__direct_left), so that a
 * submitter does not wake another worker for the moment between. */
static _Thread_local bool counted;

void rayc__direct_run(rayc__rt *rt, int64_t cpu)
{
	rayc__direct *d = rt->direct;
	int64_t held = -1; /* when it started holding tasks back */

	in_run = true;
	if (!counted)
		atomic_fetch_add(&d->serving, 1);
	counted = run_turn(rt, cpu, &held);
	unhold(d, &held);
	/* seq_cst: before the scheduler looks at the queue again (a
	 * submitter puts, then reads serving). */
	if (!counted)
		atomic_fetch_sub(&d->serving, 1);
	in_run = false;
}

void rayc__direct_left(rayc__rt *rt)
{
	if (counted) { /* only ever set where rt->direct is */
		counted = false;
		atomic_fetch_sub(&rt->direct->serving, 1); /* as above */
	}
}

/* Runs direct tasks; true if it ended for RAYC__DIRECT_RUNS. */
static bool run_turn(rayc__rt *rt, int64_t cpu, int64_t *held)
{
	rayc__direct *d = rt->direct;
	rayc__hoard *h = &mine;
	int64_t dry = -1;

	for (int ran = 0; ran < RAYC__DIRECT_RUNS;) {
		/* Once per task, not per spin: rt->stopping shares rt->mu's
		 * line. */
		if (__atomic_load_n(&rt->stopping, __ATOMIC_RELAXED)) {
			(void)give_back(d, h);
			return false;
		}
		rayc__task *t = next_of(h);
		/* Only the one worker running direct tasks holds any back:
		 * a second one came for a backlog, or for a run holding the
		 * first one (sched.c: it looks every RAYC__DIRECT_POLL_NS). */
		if (t == NULL && atomic_load(&d->serving) == 1 &&
		    held_back(d)) {
			int64_t now = rayc__now_ns();
			if (*held < 0) {
				*held = now;
				/* Seen by a waiter at its next look (it
				 * looks again while it spins, and before it
				 * parks: rayc__direct_waits); then held_back
				 * sees its hurry. */
				atomic_store(&d->holding, true);
				continue;
			}
			if (now - *held < atomic_load_explicit(
			                         &hold_ns, memory_order_relaxed)) {
				for (int j = 0; j < 64; j++)
					rayc__cpu_relax();
				continue;
			}
			/* Held long enough: taken, and the next ones, until
			 * the queue runs dry. */
		} else if (t == NULL) {
			unhold(d, held);
		}
		if (t == NULL && fill(d, h) > 0)
			t = next_of(h);
		if (t == NULL) {
			unhold(d, held);
			flag_to(&d->hurry, false); /* all taken */
			if (atomic_load(&d->serving) > 1)
				return false; /* another lingers */
			int64_t now = rayc__now_ns();
			if (dry < 0)
				dry = now;
			else if (now - dry >= LINGER_NS)
				return false;
			for (int k = 0; k < 256 && !waiting(d); k += 16)
				for (int j = 0; j < 16; j++)
					rayc__cpu_relax();
			continue;
		}
		dry = -1;
		run_one(rt, t, cpu);
		ran++;
		if (atomic_load_explicit(&d->yield, memory_order_relaxed)) {
			(void)give_back(d, h); /* the queues' turn (sched.c) */
			return false;
		}
	}
	(void)give_back(d, h);
	return true;
}
