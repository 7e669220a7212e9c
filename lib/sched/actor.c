/* actor.c -- actors on this peer (see actor.h for the shape).
 *
 * Life.  PENDING until the constructor has run, then ALIVE; a kill with a
 * restart allowed makes it RESTARTING, a kill without one, a failing
 * constructor, or its last hold going (not detached) make it DEAD.  What
 * has to happen for a change (calls running to finish, the destructor to
 * run, the constructor to run again) is driven by settle_locked, called
 * after every event: it never waits, it does the next step whose
 * conditions hold and returns; the event that ends the wait (a call
 * done, the destructor done) calls it again.
 *
 * Order.  Calls enter the mailbox in the order they are made (under
 * rt->mu) and leave it from the head only, when the head's arguments are
 * ready and fewer than max_concurrency calls have started: a call waiting
 * for an argument holds back the calls made after it, as in Ray. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "registry.h"
#include "sched/actor.h"
#include "sched/actor_int.h"
#include "sched/sched.h"



static void ctor_run(rayc_ctx *ctx)
{
	rayc__actor *a = ctx->task->actor;

	if (a->cls->init != NULL)
		a->cls->init(ctx);
}

static void fini_run(rayc_ctx *ctx)
{
	rayc__actor *a = ctx->task->actor;

	if (a->cls->fini != NULL)
		a->cls->fini(a->state);
}

static rayc__fn_entry ctor_entry = { .name = "actor constructor",
	                             .fn = ctor_run };
static rayc__fn_entry fini_entry = { .name = "actor destructor",
	                             .fn = fini_run };

rayc__actor *rayc__actor_find_locked(rayc__rt *rt, rayc_actor id)
{
	rayc__actor *a;

	HASH_FIND(hh, rt->actors, &id, sizeof(id), a);
	return a;
}

rayc__actor *rayc__actor_named_locked(rayc__rt *rt, const char *name)
{
	rayc__actor *a;

	HASH_FIND(hh_name, rt->actor_names, name, strlen(name), a);
	return a;
}

void rayc__actor_unname_locked(rayc__rt *rt, rayc__actor *a) RAYC_REQUIRES(rt->mu)
{
	if (a->name == NULL || rayc__actor_named_locked(rt, a->name) != a)
		return;
	HASH_DELETE(hh_name, rt->actor_names, a);
	if (a->name_global && rt->hooks != NULL)
		/* Given back in the cluster too, without waiting. */
		rt->hooks->name_gone(rt, a->name, a->id, a->cls->name);
}

rayc__actor *rayc__actor_calloc(void)
{
	rayc__actor *a = calloc(1, sizeof(*a));

	if (a != NULL)
		TAILQ_INIT(&a->mb);
	return a;
}

static void mb_unlink(rayc__actor *a, rayc__task *t)
{
	TAILQ_REMOVE(&a->mb, t, mb);
	t->in_mailbox = false;
	a->mb_n--;
}

/* Puts t in a's mailbox before at (NULL: at the tail). */
void rayc__actor_mb_insert(rayc__actor *a, rayc__task *t, rayc__task *at)
{
	if (at != NULL)
		TAILQ_INSERT_BEFORE(at, t, mb);
	else
		TAILQ_INSERT_TAIL(&a->mb, t, mb);
	t->in_mailbox = true;
	a->mb_n++;
}

void rayc__actor_mb_push(rayc__actor *a, rayc__task *t)
{
	t->mb_ready = false;
	rayc__actor_mb_insert(a, t, NULL);
}

static void release_res_locked(rayc__rt *rt, rayc__actor *a)
	RAYC_REQUIRES(rt->mu)
{
	if (!a->holds_res)
		return;
	a->holds_res = false;
	rayc__sched_unhold_locked(rt, a->demand);
}

static void free_locked(rayc__rt *rt, rayc__actor *a) RAYC_REQUIRES(rt->mu)
{
	rayc__obj *c = a->cobj;

	HASH_DELETE(hh, rt->actors, a);
	rayc__actor_unname_locked(rt, a);
	rt->nactors--;
	release_res_locked(rt, a);
	free(a->state);
	free(a->name);
	free(a);
	if (c != NULL)
		rayc__obj_unref_locked(rt, c); /* may free the constructor spec */
}

/* Fails every call still in the mailbox with the actor's death. */
static void fail_mailbox_locked(rayc__rt *rt, rayc__actor *a)
	RAYC_REQUIRES(rt->mu)
{
	char msg[320];

	if (TAILQ_EMPTY(&a->mb))
		return;
	snprintf(msg, sizeof(msg), "actor %s " ID_FMT "%s%s%s is dead: %s",
	         a->cls->name, ID_ARGS(a->id), a->name != NULL ? " (\"" : "",
	         a->name != NULL ? a->name : "", a->name != NULL ? "\")" : "",
	         a->death);
	/* Each failure finishes the call, which unlinks it
	 * (rayc__actor_call_done_locked). */
	while (!TAILQ_EMPTY(&a->mb))
		rayc__task_fail_locked(rt, TAILQ_FIRST(&a->mb),
		                       RAYC_EACTORDIED, msg);
}

/* Its turn: queued here, or sent to the peer the actor lives on.  False
 * if it could not be sent (t is back at the head; the actor stalls, or,
 * RAYC__SEND_LATER, waits for its calls in flight on a task lane). */
static bool start_call_locked(rayc__rt *rt, rayc__actor *a, rayc__task *t)
	RAYC_REQUIRES(rt->mu)
{
	a->running++;
	if (a->loc == 0) {
		rayc__sched_enqueue_local_locked(rt, t);
		return true;
	}
	int sent = rt->hooks != NULL ? rt->hooks->send(rt, t, a->loc)
	                             : RAYC__SEND_NO;
	if (sent == RAYC__SEND_OK)
		return true;
	a->running--;
	rayc__actor_mb_insert(a, t, TAILQ_FIRST(&a->mb));
	/* Not yet: calls in flight on a task lane end first (each end
	 * dispatches again, rayc__actor_call_done_locked). */
	if (sent == RAYC__SEND_LATER)
		return false;
	/* Its peer (a proxy's: the owner) is gone or going, or not in this
	 * peer's view yet: wait for the verdict (back, or dead and the
	 * actor restarted elsewhere or dead with its owner;
	 * rayc__actors_retry_locked). */
	a->stalled = true;
	return false;
}

static void dispatch_locked(rayc__rt *rt, rayc__actor *a) RAYC_REQUIRES(rt->mu)
{
	/* Calls to an actor on another peer are sent ahead, up to a window:
	 * its host keeps them in its own mailbox, in the order they arrive
	 * (one path at a time, the connection or a task lane: net's
	 * owner.c, call_may_lane), and runs max_concurrency at once. */
	int limit = a->loc == 0 ? a->max_conc
	            : a->max_conc > RAYC__ACTOR_WINDOW ? a->max_conc
	                                                : RAYC__ACTOR_WINDOW;

	while (a->st == RAYC_ACTOR_ALIVE && !a->stalled && a->running < limit &&
	       !TAILQ_EMPTY(&a->mb) && TAILQ_FIRST(&a->mb)->mb_ready) {
		rayc__task *t = TAILQ_FIRST(&a->mb);
		mb_unlink(a, t);
		if (!start_call_locked(rt, a, t))
			break;
	}
}

static void queue_fini_locked(rayc__rt *rt, rayc__actor *a)
	RAYC_REQUIRES(rt->mu)
{
	rayc__task *t = rayc__task_alloc(NULL, 0, 0, 0);

	if (t == NULL) {
		/* The destructor cannot be queued: it is skipped, said. */
		rayc__log(RAYC_LOG_ERROR, "RAYC-ACTOR-FINI", "actor %s " ID_FMT
		          ": out of memory to run its destructor; skipped",
		          a->cls->name, ID_ARGS(a->id));
		a->ctor_ok = false;
		release_res_locked(rt, a);
		return;
	}
	/* An id of its own: a peer that ran the constructor keeps a record
	 * of that id, and would take this run for a repeat of it. */
	t->id.hi = rt->job;
	t->id.lo = atomic_fetch_add_explicit(&rt->next_task, 1,
	                                     memory_order_relaxed) << 16;
	t->fn = &fini_entry;
	t->actor = a;
	t->akind = RAYC__AK_FINI;
	t->in_flight = true; /* its answer from another peer is awaited */
	t->sclass = rt->call_class;
	if (a->loc != 0) {
		/* Run where the instance lives; its answer ends it here. */
		if (rt->hooks == NULL ||
		    rt->hooks->send(rt, t, a->loc) != RAYC__SEND_OK) {
			rayc__task_free(t); /* unreachable: gone with it */
			a->ctor_ok = false;
			return;
		}
		a->fini = t;
		a->fini_queued = true;
		return;
	}
	a->fini = t;
	a->fini_queued = true;
	rayc__sched_enqueue_local_locked(rt, t);
}

/* The constructor's spec ended without running (an argument failed):
 * the same as a constructor that failed. */
static void ctor_check_locked(rayc__rt *rt, rayc__actor *a)
	RAYC_REQUIRES(rt->mu)
{
	if (!a->ctor_running || a->cobj == NULL ||
	    atomic_load(&a->cobj->state) != RAYC__OBJ_ERROR)
		return;
	a->ctor_running = false;
	a->want = WANT_NONE;
	a->st = RAYC_ACTOR_DEAD;
	rayc__actor_unname_locked(rt, a);
	snprintf(a->death, sizeof(a->death), "an argument of its "
	         "constructor failed: %s",
	         a->cobj->data != NULL ? (char *)a->cobj->data : "?");
}

void rayc__actor_restart_locked(rayc__rt *rt, rayc__actor *a) RAYC_REQUIRES(rt->mu)
{
	memset(a->state, 0, a->cls->state_size);
	a->st = RAYC_ACTOR_RESTARTING;
	a->ctor_running = true;
	rayc__log(RAYC_LOG_INFO, "RAYC-ACTOR-RESTART", "restarting actor %s "
	          ID_FMT " (restart %d)", a->cls->name, ID_ARGS(a->id),
	          a->restarts);
	rayc__task_rerun_locked(rt, a->ctor);
	ctor_check_locked(rt, a);
}

/* One step; true if a was freed. */
static bool settle_once(rayc__rt *rt, rayc__actor *a) RAYC_REQUIRES(rt->mu)
{
	bool unowned = a->refcnt == 0 && !a->detached;

	if (a->proxy) {
		/* Sends calls on; goes with its last hold.  The actor's life
		 * is its owner's to decide. */
		if (a->st == RAYC_ACTOR_DEAD)
			fail_mailbox_locked(rt, a);
		dispatch_locked(rt, a);
		if (a->refcnt == 0 && a->running == 0 &&
		    TAILQ_EMPTY(&a->mb)) {
			/* Every call made through it is done: its owner need
			 * not keep the actor alive for this peer now. */
			if (a->borrowing && rt->hooks != NULL)
				rt->hooks->unborrow(rt, a->owner, a->id);
			HASH_DELETE(hh, rt->actor_proxies, a);
			free(a);
			return true;
		}
		return false;
	}

	if (unowned && a->want == WANT_NONE &&
	    (a->st == RAYC_ACTOR_ALIVE || a->st == RAYC_ACTOR_PENDING ||
	     a->st == RAYC_ACTOR_RESTARTING)) {
		a->want = WANT_DIE;
		rayc__actor_unname_locked(rt, a); /* the name is free at once */
		snprintf(a->death, sizeof(a->death),
		         "its last handle was released");
	}
	if (unowned && a->want == WANT_RESTART)
		a->want = WANT_DIE;
	if (a->st == RAYC_ACTOR_DEAD)
		fail_mailbox_locked(rt, a);
	if (a->ctor_running || a->fini_queued)
		return false;
	if (a->want != WANT_NONE) {
		if (a->running > 0)
			return false;
		if (a->ctor_ok) {
			queue_fini_locked(rt, a);
			if (a->fini_queued)
				return false;
		}
		if (a->want == WANT_RESTART) {
			a->want = WANT_NONE;
			rayc__actor_restart_locked(rt, a);
			if (a->ctor_running)
				return false;
		}
		a->want = WANT_NONE;
		a->st = RAYC_ACTOR_DEAD;
		rayc__actor_unname_locked(rt, a);
		fail_mailbox_locked(rt, a);
	}
	if (a->st == RAYC_ACTOR_DEAD) {
		if (a->refcnt == 0 && a->running == 0 &&
		    TAILQ_EMPTY(&a->mb)) {
			free_locked(rt, a);
			return true;
		}
		return false;
	}
	if (a->st == RAYC_ACTOR_ALIVE)
		dispatch_locked(rt, a);
	return false;
}

void rayc__actor_settle_locked(rayc__rt *rt, rayc__actor *a)
{
	if (a->settling) {
		a->resettle = true;
		return;
	}
	a->settling = true;
	do {
		a->resettle = false;
		if (settle_once(rt, a))
			return; /* freed */
	} while (a->resettle);
	a->settling = false;
}

void rayc__actor_hold_locked(rayc__actor *a)
{
	a->refcnt++;
}

void rayc__actor_unhold_locked(rayc__rt *rt, rayc__actor *a)
{
	if (--a->refcnt == 0)
		rayc__actor_settle_locked(rt, a);
}

int rayc__actor_create_locked(rayc__rt *rt, rayc__task *ctor,
                              const rayc__actor_params *p, rayc__actor **out)
{
	rayc__actor *a;

	if (p->name != NULL && (a = rayc__actor_named_locked(rt, p->name))) {
		if (p->get_if_exists) {
			a->refcnt++;
			a->handles++;
			*out = a;
			rayc__actor_args_free_locked(rt, ctor);
			rayc__task_free(ctor);
			return RAYC_OK;
		}
		rayc__actor_args_free_locked(rt, ctor);
		rayc__task_free(ctor);
		return rayc__err(RAYC_EEXIST, "an actor named '%s' exists "
		                 "(class %s)", p->name, a->cls->name);
	}
	/* Its constructor is placed like a task of its demand (here, on
	 * another peer, or waiting for one that can hold it). */
	rayc__sclass *c = rayc__sched_class_locked(rt, p->demand);
	a = rayc__actor_calloc();
	if (c == NULL || a == NULL ||
	    (a->state = calloc(1, p->cls->state_size + 1)) == NULL ||
	    (p->name != NULL && (a->name = strdup(p->name)) == NULL)) {
		if (a != NULL)
			free(a->state);
		free(a);
		rayc__actor_args_free_locked(rt, ctor);
		rayc__task_free(ctor);
		return RAYC_ENOMEM;
	}
	a->id.hi = ctor->id.hi;
	a->id.lo = ctor->id.lo;
	a->cls = p->cls;
	a->st = RAYC_ACTOR_PENDING;
	a->refcnt = a->handles = 1;
	a->detached = p->detached;
	a->name_global = p->name_global && a->name != NULL;
	a->max_restarts = p->max_restarts;
	a->max_task_retries = p->max_task_retries;
	a->max_conc = p->max_conc > 0 ? p->max_conc : 1;
	memcpy(a->demand, p->demand, sizeof(a->demand));
	HASH_ADD(hh, rt->actors, id, sizeof(a->id), a);
	if (a->name != NULL)
		HASH_ADD_KEYPTR(hh_name, rt->actor_names, a->name,
		                strlen(a->name), a);
	rt->nactors++;

	ctor->fn = &ctor_entry;
	ctor->actor = a;
	ctor->akind = RAYC__AK_CTOR;
	ctor->sclass = c;
	ctor->max_retries = 0;
	ctor->retry_exceptions = false;
	ctor->nested = false;
	a->ctor = ctor;
	a->ctor_running = true;
	rayc__task_record_locked(rt, ctor);
	/* The creation object: the actor's hold only (no handle a program
	 * could release), keeping the spec a restart runs again. */
	a->cobj = ctor->returns[0];
	a->cobj->handles = 0;
	ctor_check_locked(rt, a);
	*out = a;
	return RAYC_OK;
}

void rayc__actor_call_locked(rayc__rt *rt, rayc__actor *a, rayc__task *t)
{
	t->actor = a;
	t->akind = RAYC__AK_CALL;
	t->sclass = rt->call_class;
	t->max_retries = 0;
	t->retry_exceptions = false;
	t->nested = false;
	a->refcnt++;
	t->qseq = a->next_seq++;
	rayc__actor_mb_push(a, t);
	rayc__task_record_locked(rt, t);
	rayc__actor_settle_locked(rt, a);
}

void rayc__actor_route_locked(rayc__rt *rt, rayc__task *t)
{
	rayc__actor *a = t->actor;

	if (t->akind == RAYC__AK_CTOR && !t->foreign && rt->hooks != NULL) {
		/* Placed like a task: here, on another peer, or waiting for
		 * one that can hold it; or failed (then the actor is dead). */
		if (rt->hooks->place(rt, t)) {
			ctor_check_locked(rt, a);
			return;
		}
	}
	if (t->akind == RAYC__AK_CALL && !t->in_mailbox && a->loc != 0) {
		/* A call that had its turn, sent to the peer its actor lives
		 * on, answered that an argument was lost on the way (lib/net
		 * rebuilt it): its turn again, still counted in running (which
		 * start_call_locked counts it in anew), back at the mailbox's
		 * head if it cannot go now. */
		a->running--;
		t->mb_ready = true;
		t->state = RAYC__TASK_MAILBOX;
		(void)start_call_locked(rt, a, t);
		return;
	}
	if (t->akind != RAYC__AK_CALL || !t->in_mailbox) {
		/* A constructor or destructor run, or a call that had its
		 * turn and went back to wait for an argument lost on the way
		 * (execute.c): queued at once. */
		rayc__sched_enqueue_local_locked(rt, t);
		return;
	}
	t->mb_ready = true;
	t->state = RAYC__TASK_MAILBOX;
	if (a->loc == 0 && !a->proxy)
		rayc__sched_hold_note(t); /* run here: a reader may serve it */
	rayc__actor_settle_locked(rt, a);
}

void rayc__actor_ctor_done_locked(rayc__rt *rt, rayc__task *t, bool ok,
                                  const char *msg, uint32_t host)
{
	rayc__actor *a = t->actor;
	char why[320];

	a->ctor_running = false;
	if (a->hosted) {
		if (!ok) {
			/* Its owner hears of it from the task's answer and
			 * sends no destructor run: its hold goes now. */
			a->st = RAYC_ACTOR_DEAD;
			snprintf(a->death, sizeof(a->death), "its constructor "
			         "failed");
			if (!a->owner_gone) {
				a->owner_gone = true;
				rayc__actor_unhold_locked(rt, a);
			}
			return;
		}
		a->ctor_ok = true;
		a->holds_res = true;
		rayc__sched_hold_locked(rt, a->demand);
		a->st = RAYC_ACTOR_ALIVE;
		if (a->adopt)
			rayc__actor_adopt_locked(rt, a);
		return;
	}
	if (!ok) {
		snprintf(a->death, sizeof(a->death), "its constructor failed: "
		         "%s", msg != NULL ? msg : "rayc_fail");
		snprintf(why, sizeof(why), "actor %s " ID_FMT ": %s",
		         a->cls->name, ID_ARGS(a->id), a->death);
		a->want = WANT_NONE;
		a->st = RAYC_ACTOR_DEAD;
		rayc__actor_unname_locked(rt, a);
		rayc__obj_fail_locked(rt, a->cobj, RAYC_EACTORDIED, why);
	} else {
		a->ctor_ok = true;
		a->loc = host;
		if (host == 0) { /* here: its resources are held here */
			a->holds_res = true;
			rayc__sched_hold_locked(rt, a->demand);
		}
		if (a->want == WANT_NONE)
			a->st = RAYC_ACTOR_ALIVE;
	}
	rayc__actor_settle_locked(rt, a);
}

void rayc__actor_fini_done_locked(rayc__rt *rt, rayc__task *t)
{
	rayc__actor *a = t->actor;

	if (t->foreign) {
		/* Hosted: the owner's destructor run.  Answer it, then drop
		 * the owner's hold (the instance goes with it). */
		a->ctor_ok = false;
		a->st = RAYC_ACTOR_DEAD;
		release_res_locked(rt, a);
		rayc__task_done_locked(rt, t);
		if (!a->owner_gone) {
			a->owner_gone = true;
			rayc__actor_unhold_locked(rt, a);
		}
		return;
	}
	rayc__task_free(t);
	a->fini = NULL;
	a->fini_queued = false;
	a->ctor_ok = false;
	release_res_locked(rt, a);
	rayc__actor_settle_locked(rt, a);
}

void rayc__actor_lane_off_locked(rayc__task *t)
{
	if (!t->on_lane)
		return;
	t->on_lane = false;
	t->actor->lane_calls--;
}

void rayc__actor_call_done_locked(rayc__rt *rt, rayc__task *t)
{
	rayc__actor *a = t->actor;

	rayc__actor_lane_off_locked(t);
	if (t->in_mailbox)
		mb_unlink(a, t);
	else /* it had its turn (dispatch_locked) */
		a->running--;
	rayc__actor_settle_locked(rt, a); /* the next call's turn */
	rayc__actor_unhold_locked(rt, a);
}

void rayc__actor_args_free_locked(rayc__rt *rt, rayc__task *t)
{
	for (uint32_t i = 0; i < t->nargs; i++) {
		rayc__targ *g = &t->args[i];
		if (g->type == RAYC_TYPE_ACTOR && g->v.ptr != NULL) {
			rayc__actor *a = (rayc__actor *)g->v.ptr;
			g->v.ptr = NULL;
			rayc__actor_unhold_locked(rt, a);
		}
	}
	t->has_actor_args = false;
}

void rayc__actor_kill_locked(rayc__rt *rt, rayc__actor *a, bool no_restart)
{
	if (a->st == RAYC_ACTOR_DEAD || a->want == WANT_DIE)
		return;
	bool restart = !no_restart &&
	               (a->max_restarts < 0 || a->restarts < a->max_restarts);
	if (restart) {
		if (a->want == WANT_RESTART)
			return; /* one is under way */
		a->want = WANT_RESTART;
		a->restarts++;
		a->st = RAYC_ACTOR_RESTARTING;
	} else {
		a->want = WANT_DIE;
		a->st = RAYC_ACTOR_DEAD;
		rayc__actor_unname_locked(rt, a);
		snprintf(a->death, sizeof(a->death), "killed by "
		         "rayc_actor_kill%s", no_restart ? "" :
		         " (no restarts left)");
	}
	rayc__actor_settle_locked(rt, a);
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src != NULL ? src : "");
}

size_t rayc__actor_list_locked(rayc__rt *rt, rayc_actor_info *out, size_t cap,
                               uint32_t self, bool owned)
{
	rayc__actor *a, *tmp;
	size_t n = 0;

	HASH_ITER(hh, rt->actors, a, tmp) {
		if (owned && a->hosted)
			continue;
		if (n < cap) {
			rayc_actor_info *i = &out[n];
			memset(i, 0, sizeof(*i));
			i->id = a->id;
			copy_str(i->class_name, sizeof(i->class_name),
			         a->cls->name);
			copy_str(i->name, sizeof(i->name), a->name);
			i->state = (rayc_actor_state_kind)a->st;
			i->peer = a->loc != 0 ? a->loc : self;
			i->restarts = a->restarts;
			i->queued_calls = a->mb_n;
			i->running_calls = (uint64_t)a->running;
			i->owner = a->hosted ? a->owner : self;
			if (a->st == RAYC_ACTOR_DEAD)
				copy_str(i->death, sizeof(i->death), a->death);
		}
		n++;
	}
	return n;
}

const rayc__fn_entry *rayc__actor_ctor_fn(void)
{
	return &ctor_entry;
}

const rayc__fn_entry *rayc__actor_fini_fn(void)
{
	return &fini_entry;
}

int rayc__actors_init_locked(rayc__rt *rt)
{
	int64_t none[RAYC__MAX_RES] = { 0 };

	rt->call_class = rayc__sched_class_ex_locked(rt, none, true);
	return rt->call_class != NULL ? RAYC_OK : RAYC_ENOMEM;
}

void rayc__actors_teardown(rayc__rt *rt)
{
	rayc__actor *all = NULL, *a, *tmp;

	rayc__mutex_lock(&rt->mu);
	HASH_ITER(hh, rt->actor_proxies, a, tmp) {
		HASH_DELETE(hh, rt->actor_proxies, a);
		free(a);
	}
	HASH_ITER(hh, rt->actors, a, tmp) {
		HASH_DELETE(hh, rt->actors, a);
		rayc__actor_unname_locked(rt, a);
		a->hh.next = all; /* a list of our own from here */
		all = a;
	}
	rt->nactors = 0;
	rayc__mutex_unlock(&rt->mu);
	/* No worker runs any more: the destructors owed run here, with no
	 * lock held (one may call rayc_release on refs its state kept). */
	while (all != NULL) {
		a = all;
		all = a->hh.next;
		if (a->ctor_ok && a->loc == 0 && a->cls->fini != NULL)
			a->cls->fini(a->state); /* an instance here */
		rayc__task_free(a->fini);
		free(a->state);
		free(a->name);
		free(a);
	}
}
