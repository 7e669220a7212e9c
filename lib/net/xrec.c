/* xrec.c -- the executor's record of tasks it runs or ran for other
 * owners, so that a TASK sent again is never run twice.
 *
 * An owner sends a task again, with the same dispatch number, when the
 * connection it went out on (or its answer came back on) was lost
 * (relink.c).  Here a record per task id says what became of it: still
 * running (the run answers when it ends, to the latest dispatch number
 * asked for), or done, with the TASK_DONE payload it answered, which is
 * sent again.  A TASK with a new dispatch number is the owner asking for
 * a new run (it lost the results, or an argument): a done record answers
 * it only if it was a success whose results are all still here.
 *
 * A done record goes as soon as its owner acknowledges the answer (ACK,
 * rayc__xrec_on_ack: the owner will never send that dispatch again).
 * One whose acknowledgement does not come (lost with a connection, or an
 * owner that died) is kept while young (RETAIN, at least twice the
 * heartbeat timeout: an owner sends again as soon as it sees the
 * connection close) and while they fit (RETAIN_BYTES, RETAIN_MAX); an
 * older TASK sent again finds none and runs again, as a retry would.
 * Before acknowledgements, under a steady load every record went by
 * RETAIN_MAX, 200,000 answers later (0.4 s at 500,000 tasks a second),
 * whatever its age: a connection lost for longer ran tasks twice.
 * All under rt->mu.  Records come from a slab of their own
 * (net->xrec_slab), as task specs do: no calloc and free per remote task.
 * A record costs about 110 bytes and its index slot; with
 * acknowledgements they number about what the owners have in flight
 * here, not the limits (an executing peer's peak resident memory over
 * 2,000,000 remote tasks: 47 MB, from 88 MB; docs/benchmarks.md,
 * twenty-fourth pass).
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "net/remote_int.h"
#include "sched/sched.h"

#define RETAIN_NS ((int64_t)10 * 1000000000)
#define RETAIN_BYTES ((size_t)32 << 20)
#define RETAIN_MAX ((size_t)200000)

rayc__xrec *rayc__xrec_find_locked(rayc__net *net, rayc_task_id id)
{
	if (net->xrecs.s == NULL) /* none made yet */
		return NULL;
	return rayc__idtab_find(&net->xrecs, id.hi, id.lo);
}

static void unlink_done(rayc__net *net, rayc__xrec *r)
{
	TAILQ_REMOVE(&net->xrec_done_q, r, link);
	net->xrec_bytes -= r->len;
	net->xrec_done--;
}

void rayc__xrec_drop_locked(rayc__net *net, rayc__xrec *r)
{
	if (r->done)
		unlink_done(net, r);
	else
		net->xrec_live--;
	rayc__idtab_del(&net->xrecs, r->id.hi, r->id.lo);
	if (r->body != r->small)
		free(r->body);
	rayc__slab_free(r);
}

rayc__xrec *rayc__xrec_start_locked(rayc__net *net, rayc_task_id id,
                                    uint32_t owner, uint32_t dispatch)
{
	if (net->xrecs.s == NULL && rayc__idtab_init(&net->xrecs) != RAYC_OK)
		return NULL;
	rayc__xrec *r = rayc__slab_alloc(&net->xrec_slab);
	if (r == NULL)
		return NULL;
	r->id = id;
	r->owner = owner;
	r->dispatch = dispatch;
	if (rayc__idtab_add(&net->xrecs, id.hi, id.lo, r) != RAYC_OK) {
		rayc__slab_free(r);
		return NULL;
	}
	if (++net->xrec_live > net->xrec_live_hw)
		net->xrec_live_hw = net->xrec_live;
	return r;
}

size_t rayc__test_xrec_peak(void)
{
	rayc__rt *rt = rayc__g;
	if (rt == NULL || rt->net == NULL)
		return 0;
	rayc__mutex_lock(&rt->mu);
	size_t n = rt->net->xrec_live_hw;
	rayc__mutex_unlock(&rt->mu);
	return n;
}

void rayc__test_xrec_held(size_t *len, size_t *held)
{
	*len = *held = 0;
	rayc__rt *rt = rayc__g;
	if (rt == NULL || rt->net == NULL)
		return;
	rayc__mutex_lock(&rt->mu);
	rayc__xrec *r;
	TAILQ_FOREACH (r, &rt->net->xrec_done_q, link) {
		*len += r->len;
		*held += r->body == r->small ? sizeof(r->small)
		                             : malloc_usable_size(r->body);
	}
	rayc__mutex_unlock(&rt->mu);
}

/* Lets go of done records past their time or over the limits. */
void rayc__xrec_sweep_locked(rayc__net *net, int64_t now)
{
	int64_t keep = 2 * net->timeout_ns;
	rayc__xrec *r;

	if (keep < RETAIN_NS)
		keep = RETAIN_NS;
	size_t max = net->xrec_max > 0 ? net->xrec_max : RETAIN_MAX;

	while ((r = TAILQ_FIRST(&net->xrec_done_q)) != NULL &&
	       (net->xrec_bytes > RETAIN_BYTES || net->xrec_done > max ||
	        now - r->done_at > keep))
		rayc__xrec_drop_locked(net, r);
}

void rayc__xrec_on_ack(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc__rt *rt = net->rt;
	uint32_t n = rayc__r_u32(rd);

	if (rd->bad || rayc__rd_left(rd) != (size_t)n * RAYC__ACK_BYTES) {
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-PROTO", "malformed ACK "
		          "from peer %u", c->peer);
		return;
	}
	rayc__remote_rx_lock(rt);
	for (uint32_t i = 0; i < n; i++) {
		rayc_task_id id;
		id.hi = rayc__r_u64(rd);
		id.lo = rayc__r_u64(rd);
		uint32_t dispatch = rayc__r_u32(rd);
		rayc__xrec *r = rayc__xrec_find_locked(net, id);
		/* Only its owner's word for its own dispatch: a record of a
		 * newer run stays. */
		if (r != NULL && r->done && r->owner == c->peer &&
		    r->dispatch == dispatch)
			rayc__xrec_drop_locked(net, r);
	}
	rayc__remote_rx_unlock(rt);
}

void rayc__xrec_done_locked(rayc__net *net, rayc__xrec *r,
                            const void *body, size_t len)
{
	/* A copy of its size (the answer was built in a buffer grown by
	 * doubling, up to twice that), or for a small one (an empty
	 * task's) in the record itself: no malloc of its own. */
	r->body = len <= sizeof(r->small) ? r->small : malloc(len);
	if (r->body == NULL) {
		rayc__xrec_drop_locked(net, r); /* sent again: runs again */
		return;
	}
	memcpy(r->body, body, len);
	net->xrec_live--;
	r->done = true;
	r->len = len;
	r->done_at = rayc__now_ns();
	TAILQ_INSERT_TAIL(&net->xrec_done_q, r, link);
	net->xrec_bytes += r->len;
	net->xrec_done++;
	rayc__xrec_sweep_locked(net, r->done_at);
}

static void encode_done(rayc__net *net, rayc__wbuf *b, rayc_task_id id,
                        uint32_t dispatch, const void *body, size_t len)
{
	size_t f = rayc__w_frame_begin(b, RAYC__MSG_TASK_DONE, net->self);
	rayc__w_u64(b, id.hi);
	rayc__w_u64(b, id.lo);
	rayc__w_u32(b, dispatch);
	rayc__w_bytes(b, body, len);
	/* Its length only: queued on a connection or a lane, it gets a tag
	 * in place of the xxh3 handshake frames carry (wire.h). */
	rayc__w_frame_end_len(b, f, 0);
}

/* Answers of a worker's batch, or of a reader's runs of its read
 * (rayc__sched_batch_more), wait corked on their connection while runs
 * are left to start, and go together when they end or pause
 * (rayc__net_answers_flush_locked, through rt->hooks): one write for the batch instead of one per answer (with
 * one worker, each answer went alone: about 3 syscalls and a context
 * switch per task, docs/benchmarks.md).  A run that turns slow holds
 * those before it at most until the loop's next tick
 * (rayc__remote_uncork_all).  The owners this thread holds answers for: */
#define HELD_MAX 8
static _Thread_local uint32_t held[HELD_MAX];
/* ... and a ref on the connection each one's answers went on, kept until
 * the batch's answers go: the next answer to that owner needs no look-up
 * under net->mu (one lock and two atomic counts a task). */
static _Thread_local rayc__conn *held_conn[HELD_MAX];
static _Thread_local int nheld;

static bool hold_back(uint32_t owner, rayc__conn *c)
{
	if (!rayc__sched_batch_more())
		return false;
	int i = 0;
	while (i < nheld && held[i] != owner)
		i++;
	if (i == nheld) {
		if (nheld == HELD_MAX)
			return false;
		held[nheld] = owner;
		held_conn[nheld++] = NULL;
	}
	if (held_conn[i] == NULL) {
		atomic_fetch_add(&c->refs, 1);
		held_conn[i] = c;
	}
	return true;
}

/* The connection to owner this thread's batch holds, with a ref of the
 * caller's, if it is still open; else the usual look-up. */
static rayc__conn *conn_to(rayc__net *net, uint32_t owner)
{
	for (int i = 0; i < nheld; i++) {
		rayc__conn *c = held_conn[i];
		if (held[i] != owner || c == NULL)
			continue;
		if (c->net != net ||
		    atomic_load(&c->state) == RAYC__CONN_CLOSED)
			break;
		atomic_fetch_add(&c->refs, 1);
		return c;
	}
	return rayc__net_conn_to(net, owner);
}

void rayc__xrec_send(rayc__net *net, uint32_t owner, rayc_task_id id,
                     uint32_t dispatch, const void *body, size_t len,
                     bool lane)
{
	rayc__conn *c = conn_to(net, owner);

	if (c == NULL) {
		/* Dead (its death undid the task) or not known here: the
		 * record answers the task when the owner sends it again. */
		rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-DONE-UNSENT",
		          "the answer to a task of peer %u is not sent: no "
		          "connection to it (dead or not known here)", owner);
		return;
	}
	if (rayc__relink_test_lose(net, c)) {
		rayc__conn_close(c, "test: a frame lost with its connection");
		rayc__conn_unref(c);
		return;
	}
	rayc__lane *L;
	rayc__wbuf *lb = lane && len + 64 <= RAYC__TLANE_FRAME_MAX
	                         ? rayc__tlane_begin(net, owner, false, &L)
	                         : NULL;
	if (lb != NULL) {
		encode_done(net, lb, id, dispatch, body, len);
		if (rayc__tlane_end(net, L)) {
			rayc__conn_unref(c);
			return;
		}
	}
	/* Written where it is queued (no buffer of its own to fill, copy
	 * and free per task). */
	rayc__wbuf *b = rayc__conn_begin(c);
	size_t before = b->len;
	encode_done(net, b, id, dispatch, body, len);
	if (hold_back(owner, c)) {
		rayc__conn_end_frame_corked(c, b, before);
		/* After it is corked: the tick's uncork may clear it. */
		atomic_store(&net->peers[owner].corked, true);
	} else {
		rayc__conn_end_frame(c, b, before);
	}
	rayc__conn_unref(c);
}

void rayc__net_answers_flush_locked(rayc__rt *rt)
{
	rayc__net *net = rt->net;

	for (int i = 0; i < nheld; i++) {
		if (net != NULL)
			rayc__remote_uncork_peer(net, held[i]);
		if (held_conn[i] != NULL)
			rayc__conn_unref(held_conn[i]);
		held_conn[i] = NULL;
	}
	nheld = 0;
}

/* A success whose large results are all still kept here for the owner. */
static bool still_good_locked(rayc__rt *rt, const rayc__xrec *r)
	RAYC_REQUIRES(rt->mu)
{
	rayc__rd rd;

	rayc__rd_init(&rd, r->body, r->len);
	if (rayc__r_u8(&rd) != 0)
		return false;
	uint32_t n = rayc__r_u32(&rd);
	for (uint32_t i = 0; i < n && !rd.bad; i++) {
		bool inl = rayc__r_u8(&rd) != 0;
		size_t len;
		(void)rayc__r_u8(&rd);
		if (inl) {
			(void)rayc__r_blob(&rd, &len);
			continue;
		}
		(void)rayc__r_u64(&rd);
		rayc__obj *o = rayc__obj_find_locked(rt,
		                                     rayc__return_id(r->id, i));
		if (o == NULL || !o->held_remote ||
		    atomic_load(&o->state) != RAYC__OBJ_READY)
			return false;
	}
	return !rd.bad;
}

bool rayc__xrec_again_locked(rayc__rt *rt, rayc__net *net, rayc__xrec *r,
                             uint32_t owner, uint32_t dispatch)
{
	if (r->owner != owner)
		return true; /* not its owner's: ignore it */
	/* Sent again: answered over the connection (the lane it first came
	 * on may be gone with the connection that was lost). */
	r->lane = false;
	if (!r->done) {
		/* The run answers this one; an older dispatch arriving late
		 * (it came over the connection, a newer one on a lane) is
		 * stale. */
		if ((int32_t)(dispatch - r->dispatch) > 0)
			r->dispatch = dispatch;
		return true;
	}
	if (dispatch == r->dispatch || still_good_locked(rt, r)) {
		r->dispatch = dispatch;
		rayc__xrec_send(net, owner, r->id, dispatch, r->body, r->len,
		                false);
		return true;
	}
	rayc__xrec_drop_locked(net, r); /* a new run is wanted */
	return false;
}

void rayc__xrec_fini(rayc__net *net)
{
	rayc__xrec *r;

	/* The records themselves go with their slab (net_free, next). */
	if (net->xrecs.s != NULL) {
		RAYC__IDTAB_EACH(&net->xrecs, i, r) {
			if (r->body != r->small)
				free(r->body);
		}
		rayc__idtab_fini(&net->xrecs);
	}
	TAILQ_INIT(&net->xrec_done_q);
	net->xrec_bytes = net->xrec_done = 0;
}

bool rayc__xrec_answer_entries_locked(rayc__rt *rt, rayc__net *net,
                                      uint32_t owner, rayc_task_id id,
                                      uint32_t dispatch, uint32_t nret)
{
	for (uint32_t i = 0; i < nret; i++) {
		rayc__obj *o = rayc__obj_find_locked(rt, rayc__return_id(id, i));
		if (o != NULL && atomic_load(&o->state) == RAYC__OBJ_PENDING)
			return true; /* running here: that run answers */
		if (o == NULL || atomic_load(&o->state) != RAYC__OBJ_READY)
			return false;
	}
	rayc__wbuf b = { 0 };
	rayc__w_u8(&b, 0);
	rayc__w_u32(&b, nret);
	for (uint32_t i = 0; i < nret; i++) {
		rayc__obj *o = rayc__obj_find_locked(rt, rayc__return_id(id, i));
		rayc__w_u8(&b, 0);
		rayc__w_u8(&b, (uint8_t)o->type);
		rayc__w_u64(&b, o->len);
	}
	if (b.bad) {
		rayc__wbuf_fini(&b);
		return false;
	}
	for (uint32_t i = 0; i < nret; i++) {
		rayc__obj *o = rayc__obj_find_locked(rt, rayc__return_id(id, i));
		if (!o->held_remote) {
			rayc__obj_ref_locked(o); /* until the owner says FREE */
			o->held_remote = true;
			o->let_go = false;
		}
	}
	rayc__xrec_send(net, owner, id, dispatch, b.p, b.len, false);
	rayc__wbuf_fini(&b);
	return true;
}
