/* xfer.c -- objects between peers: FETCH, answered by CHUNKs (or
 * MISSING, perhaps naming a peer that holds a copy), and the transfers
 * coming in (rayc__xin; ownership rules in net_int.h).  A holder on the
 * same host may answer with SHM_OFFER instead (samehost.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "net/remote_int.h"
#include "testing.h"


enum { SRC_OK, SRC_WAIT, SRC_NONE };

/* o, ours, has no copy left that we can reach: LOST.  A rayc_get
 * waiting for it rebuilds it when woken; tasks waiting for it as an
 * argument (o->deps, a task run here whose argument was being fetched)
 * cannot, and nothing else would: rebuild it for them now, or they
 * wait in PENDING_ARGS for ever. */
static void mark_lost_locked(rayc__rt *rt, rayc__obj *o) RAYC_REQUIRES(rt->mu)
{
	o->loc = 0;
	atomic_store(&o->state, RAYC__OBJ_LOST);
	rayc__obj_wake_locked(rt, o);
	if (o->deps != NULL)
		rayc__obj_reconstruct_locked(rt, o);
}

/* Can we fetch from src?  A live member some connection reaches (relink.c
 * gives up on those none has reached for a heartbeat timeout): yes.  A
 * peer not in our view yet: wait, it joined moments ago (whoever named
 * it to us knows it; unknown is not dead).  Else no. */
static int src_state_locked(rayc__net *net, uint32_t src)
	RAYC_REQUIRES(net->mu)
{
	if (src == 0 || src >= RAYC__MAX_PEERS || src == net->self)
		return SRC_NONE;
	rayc__peer *p = &net->peers[src];
	if (!p->known)
		return SRC_WAIT;
	return p->alive && !rayc__relink_unreachable_locked(net, src)
	               ? SRC_OK
	               : SRC_NONE;
}

static uint32_t fetch_flags_locked(rayc__net *net, uint32_t src)
	RAYC_REQUIRES(net->mu)
{
	uint32_t f = rayc__remote_same_host_on() && !net->no_shm[src] &&
	                             rayc__remote_looks_local_locked(net, src)
	                     ? RAYC__FETCH_SAME_HOST
	                     : 0;
	if (net->lanes != NULL && rayc__lane_on() &&
	    !atomic_load(&net->encrypt))
		f |= RAYC__FETCH_LANE;
	return f;
}

void rayc__net_fetch_locked(rayc__rt *rt, rayc__obj *o)
{
	rayc__net *net = rt->net;

	if (o->fetching)
		return;
	rt->n_fetches++;
	uint32_t src = o->loc;
	bool alone = net != NULL && atomic_load(&net->cluster_down);
	int where = SRC_NONE;
	if (net != NULL && !alone) {
		rayc__mutex_lock(&net->mu);
		where = src_state_locked(net, src);
		rayc__mutex_unlock(&net->mu);
	}
	if (where == SRC_NONE) {
		/* Nowhere to get it from. */
		o->loc = 0;
		if (o->owner == 0) {
			mark_lost_locked(rt, o);
		} else {
			atomic_store(&o->state, RAYC__OBJ_PENDING);
			rayc__obj_fail_locked(rt, o, RAYC_ELOST,
			                      alone ? "object lost: this peer "
			                              "lost its cluster"
			                            : "object lost: no live "
			                              "peer holds it");
		}
		return;
	}
	rayc__xin *x = calloc(1, sizeof(*x));
	if (x == NULL) {
		atomic_store(&o->state, RAYC__OBJ_PENDING);
		rayc__obj_fail_locked(rt, o, RAYC_ENOMEM,
		                      "no memory to fetch the object");
		return;
	}
	x->id = o->id;
	x->src = src;
	if (where == SRC_WAIT) {
		x->wait_member = true;
		x->wait_until = rayc__now_ns() + net->timeout_ns;
	}
	rayc__mutex_lock(&net->mu);
	rayc__xin *old;
	bool free_old = false;
	HASH_FIND(hh, net->xins, &o->id, sizeof(o->id), old);
	if (old != NULL) {
		HASH_DEL(net->xins, old); /* superseded */
		free_old = !old->busy;
		old->dead = true; /* if busy, its receiver frees it */
	}
	HASH_ADD(hh, net->xins, id, sizeof(x->id), x);
	uint32_t flags = fetch_flags_locked(net, src);
	if (where == SRC_WAIT)
		net->fetch_waiting = true;
	rayc__mutex_unlock(&net->mu);
	if (free_old)
		rayc__remote_xin_release(net, old);
	o->fetching = true;
	atomic_store(&o->state, RAYC__OBJ_PENDING);
	if (where == SRC_WAIT)
		rayc__relink_soon(net);
	else
		rayc__remote_send_small(net, src, RAYC__MSG_FETCH, o->id, flags);
}

/* A FETCH that waited for its source to be in our view. */
typedef struct waited {
	rayc_object_id id;
	uint32_t src, flags;
	bool go;
	rayc__xin *x; /* !go: taken out of the table, to fail */
} waited;

bool rayc__remote_fetch_waiting(rayc__net *net)
{
	rayc__xin *x, *xt;
	waited *w = NULL;
	size_t n = 0, cap = 0;
	bool still = false;
	int64_t now = rayc__now_ns();
	char msg[160];

	rayc__mutex_lock(&net->mu);
	if (!net->fetch_waiting) {
		rayc__mutex_unlock(&net->mu);
		return false;
	}
	HASH_ITER(hh, net->xins, x, xt) {
		if (!x->wait_member)
			continue;
		int where = src_state_locked(net, x->src);
		if (where == SRC_WAIT && now < x->wait_until) {
			still = true;
			continue;
		}
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			waited *nw = realloc(w, nc * sizeof(*w));
			if (nw == NULL) {
				still = true; /* the next pass */
				break;
			}
			w = nw;
			cap = nc;
		}
		waited *e = &w[n++];
		e->id = x->id;
		e->src = x->src;
		e->go = where == SRC_OK;
		e->x = NULL;
		x->wait_member = false;
		if (e->go) {
			e->flags = fetch_flags_locked(net, x->src);
		} else {
			HASH_DEL(net->xins, x); /* ours to end */
			e->x = x;
		}
	}
	net->fetch_waiting = still;
	rayc__mutex_unlock(&net->mu);
	for (size_t i = 0; i < n; i++) {
		if (w[i].go) {
			rayc__remote_send_small(net, w[i].src, RAYC__MSG_FETCH,
			                        w[i].id, w[i].flags);
			continue;
		}
		snprintf(msg, sizeof(msg), "object lost: peer %u, which holds "
		         "it, is not a member (dead, or never heard of here "
		         "within the heartbeat timeout)", w[i].src);
		rayc__remote_xin_finish(net, w[i].x, false, RAYC_ELOST, msg);
	}
	free(w);
	return still;
}

void rayc__remote_on_fetch(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc__rt *rt = net->rt;
	rayc_object_id id = rayc__r_oid(rd);
	uint32_t flags = rayc__r_u32(rd);

	if (rd->bad)
		return;
	rayc__mutex_lock(&rt->mu);
	rayc__obj *o = rayc__obj_find_locked(rt, id);
	int st = o != NULL ? atomic_load(&o->state) : -1;
	if (st == RAYC__OBJ_READY && (flags & RAYC__FETCH_SAME_HOST) &&
	    o->block != NULL && o->len >= RAYC__NET_INLINE_MAX &&
	    rayc__remote_same_host_on() &&
	    rayc__store_shareable(rt->store) && rayc__remote_conn_local(c)) {
		/* A peer on this host: it copies straight out of our
		 * arena; pinned until it says SHM_DONE or dies. */
		rayc__obj_ref_locked(o);
		rayc__store *store = rt->store;
		uint64_t off = rayc__store_block_offset(o->block) +
		               (uint64_t)((const uint8_t *)o->data -
		                          (const uint8_t *)rayc__store_ptr(
		                                  store, o->block));
		rayc__mutex_unlock(&rt->mu);
		rayc__remote_offer(c, o, id, o->data, o->len, o->type, off);
		return;
	}
	if (st == RAYC__OBJ_READY && o->len > RAYC__NET_CHUNK &&
	    !(flags & RAYC__FETCH_GO)) {
		/* Its size first: the fetcher makes room, then asks for the
		 * bytes (rayc__remote_chunk_begin).  Before it, where our
		 * bulk lane listens, if the fetcher can use one (lane.c). */
		size_t len = o->len;
		rayc_type type = o->type;
		rayc__mutex_unlock(&rt->mu);
		rayc__wbuf b = { 0 };
		uint16_t port = rayc__lane_port(net);
		if ((flags & RAYC__FETCH_LANE) && port != 0 && !c->tx.enc &&
		    rayc__lane_on()) {
			size_t l = rayc__w_frame_begin(&b, RAYC__MSG_LANE,
			                               net->self);
			rayc__w_u32(&b, port);
			rayc__w_frame_end(&b, l);
			rayc__conn_send(c, &b);
			b.len = 0;
		}
		size_t f = rayc__w_frame_begin(&b, RAYC__MSG_CHUNK, net->self);
		rayc__w_oid(&b, id);
		rayc__w_u64(&b, len);
		rayc__w_u64(&b, 0);
		rayc__w_u8(&b, (uint8_t)type);
		rayc__w_frame_end(&b, f);
		rayc__conn_send(c, &b);
		rayc__wbuf_fini(&b);
		return;
	}
	if (st == RAYC__OBJ_READY) {
		rayc__obj_ref_locked(o); /* pinned while we send */
		rayc__mutex_unlock(&rt->mu);
		rayc__xout *x = calloc(1, sizeof(*x));
		if (x == NULL) {
			/* The fetcher asks again once this closes. */
			rayc__mutex_lock(&rt->mu);
			rayc__obj_unref_locked(rt, o);
			rayc__mutex_unlock(&rt->mu);
			rayc__conn_close(c, "out of memory");
			return;
		}
		x->id = id;
		x->obj = o;
		x->data = o->data;
		x->len = o->len;
		x->type = o->type;
		if ((flags & RAYC__FETCH_LANE) && (flags & RAYC__FETCH_GO) &&
		    rayc__lane_send(net, c->peer, x))
			return; /* the lane's thread writes it */
		rayc__conn_add_xout(c, x);
		return;
	}
	uint32_t redirect = st == RAYC__OBJ_REMOTE ? o->loc : 0;
	rayc__mutex_unlock(&rt->mu);
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_MISSING, net->self);
	rayc__w_oid(&b, id);
	rayc__w_u32(&b, redirect);
	rayc__w_frame_end(&b, f);
	rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
}

void rayc__remote_xout_done(rayc__net *net, rayc__xout *x)
{
	rayc__rt *rt = net->rt;

	rayc__mutex_lock(&rt->mu);
	rayc__remote_unref_locked(rt, x->obj);
	rayc__mutex_unlock(&rt->mu);
	free(x);
}

/* Lets go of what x's destination is: a block, heap, or (same host) the
 * holder's arena. */
void rayc__remote_xin_free_dst(rayc__net *net, rayc__xin *x)
{
	if (x->view != NULL) {
		rayc__store_view_release(x->view);
		rayc__remote_send_shm_done(net, x->src, x->id);
		x->view = NULL;
	} else if (x->block != NULL) {
		rayc__store_free(net->rt->store, x->block);
	} else {
		free(x->dst);
	}
	x->block = NULL;
	x->dst = NULL;
}

void rayc__remote_xin_release(rayc__net *net, rayc__xin *x)
{
	rayc__remote_xin_free_dst(net, x);
	free(x);
}

/* Takes x out of the table if it is still there: the caller then owns
 * its ending. */
static bool xin_take_locked(rayc__net *net, rayc__xin *x)
	RAYC_REQUIRES(net->mu)
{
	rayc__xin *cur;

	HASH_FIND(hh, net->xins, &x->id, sizeof(x->id), cur);
	if (cur != x)
		return false;
	HASH_DEL(net->xins, x);
	return true;
}

/* Frees x, taken out of the table, or leaves that to its receiver. */
static void xin_drop(rayc__net *net, rayc__xin *x)
{
	rayc__mutex_lock(&net->mu);
	bool busy = x->busy;
	x->dead = true;
	rayc__mutex_unlock(&net->mu);
	if (!busy)
		rayc__remote_xin_release(net, x);
}

/* A transfer ended (all bytes in, or failed): hand the bytes to the
 * entry if it still wants them.  The caller took x out of the table. */
void rayc__remote_xin_finish(rayc__net *net, rayc__xin *x, bool ok, int err,
                             const char *msg)
{
	rayc__rt *rt = net->rt;

	rayc__mutex_lock(&rt->mu);
	rayc__obj *o = rayc__obj_find_locked(rt, x->id);
	if (o == NULL || !o->fetching ||
	    atomic_load(&o->state) != RAYC__OBJ_PENDING) {
		rayc__mutex_unlock(&rt->mu);
		xin_drop(net, x);
		return;
	}
	o->fetching = false;
	if (ok && x->view != NULL) {
		/* Read in place in the holder's arena. */
		o->type = x->type;
		o->len = x->total;
		o->block = NULL;
		o->data = x->dst;
		o->view = x->view;
		o->view_src = x->src;
		x->view = NULL;
		x->dst = NULL;
		rayc__obj_mark_available_locked(rt, o, RAYC__OBJ_READY);
	} else if (ok) {
		o->type = x->type;
		o->len = x->total;
		o->block = x->block;
		if (x->block == NULL && x->total <= RAYC__INLINE_BYTES) {
			if (x->total > 0)
				memcpy(o->inline_buf, x->dst, x->total);
			free(x->dst);
			o->data = o->inline_buf;
		} else {
			o->data = x->dst;
			if (x->block == NULL)
				rt->inline_bytes += x->total;
		}
		x->block = NULL;
		x->dst = NULL;
		rayc__obj_mark_available_locked(rt, o, RAYC__OBJ_READY);
	} else if (o->owner == 0 && err == RAYC_ELOST) {
		mark_lost_locked(rt, o); /* rebuilt from lineage */
	} else {
		rayc__obj_fail_locked(rt, o, err, msg);
	}
	rayc__mutex_unlock(&rt->mu);
	xin_drop(net, x);
}

/* Ends a busy transfer whose destination could not be had. */
static void xin_fail_busy(rayc__net *net, rayc__xin *x, int rc)
{
	rayc__mutex_lock(&net->mu);
	x->busy = false;
	bool dead = x->dead;
	bool mine = !dead && xin_take_locked(net, x);
	rayc__mutex_unlock(&net->mu);
	if (mine)
		rayc__remote_xin_finish(net, x, false, rc,
		                        "no room in this peer's object store "
		                        "for a fetched object");
	else if (dead)
		rayc__remote_xin_release(net, x);
}

/* Gives the destination of a transfer's first chunk: a block of our
 * store (small objects: the heap).  x is busy.  Unless wait, only from
 * memory the store has ready (RAYC_ESTOREFULL if it would have to
 * populate more, or evict): a receive callback must not wait for that. */
static int xin_start(rayc__net *net, rayc__xin *x, uint64_t total,
                     rayc_type type, bool wait)
{
	x->total = total;
	x->type = type;
	if (total <= RAYC__SMALL_MAX) {
		x->dst = malloc(total > 0 ? total : 1);
		if (x->dst == NULL) {
			x->total = 0;
			return RAYC_ENOMEM;
		}
	} else {
		int rc = wait ? rayc__obj_alloc_block(net->rt, total, &x->block)
		              : rayc__store_try_alloc(net->rt->store, total,
		                                      &x->block);
		if (rc != RAYC_OK) {
			x->block = NULL;
			x->total = 0;
			return rc;
		}
		x->dst = rayc__store_ptr(net->rt->store, x->block);
	}
	x->started = true;
	return RAYC_OK;
}

/* Asks src for the bytes of an object we have made room for: by a bulk
 * lane where src has one (lane.c), else over the connection. */
static void send_go(rayc__net *net, uint32_t src, rayc_object_id id)
{
	if (rayc__lane_go(net, src, id))
		return;
	rayc__remote_send_small(net, src, RAYC__MSG_FETCH, id,
	                        RAYC__FETCH_GO);
}

bool rayc__remote_xin_end(rayc__net *net, rayc__xin *x, size_t n, bool ok)
{
	rayc__mutex_lock(&net->mu);
	x->busy = false;
	if (x->dead) {
		rayc__mutex_unlock(&net->mu);
		rayc__remote_xin_release(net, x); /* taken out while we wrote */
		return false;
	}
	if (ok)
		x->got += n;
	bool done = ok && x->got == x->total && xin_take_locked(net, x);
	rayc__mutex_unlock(&net->mu);
	if (done)
		rayc__remote_xin_finish(net, x, true, RAYC_OK, NULL);
	return !done;
}

/* Making room for an incoming object on the bulk thread: populating
 * the arena for it, or evicting cached copies, can take seconds. */
typedef struct room_job {
	rayc__bulk_job job;
	rayc__xin *x; /* busy: ours until the job ends */
	uint64_t total;
	rayc_type type;
	uint8_t *bytes; /* the whole object, if it came in one frame */
	size_t n;
} room_job;

static void room_run(rayc__net *net, rayc__bulk_job *job, bool cancel)
{
	room_job *r = (room_job *)job;
	rayc__xin *x = r->x;
	rayc_object_id id = x->id;
	uint32_t src = x->src;

	if (cancel) {
		/* Stopping: the table (rayc__remote_fini) frees x. */
		(void)rayc__remote_xin_end(net, x, 0, false);
	} else {
		int rc = xin_start(net, x, r->total, r->type, true);
		if (rc != RAYC_OK) {
			xin_fail_busy(net, x, rc);
		} else {
			if (r->n > 0)
				memcpy(x->dst, r->bytes, r->n);
			if (rayc__remote_xin_end(net, x, r->n, true) && r->n == 0)
				send_go(net, src, id);
		}
	}
	free(r->bytes);
	free(r);
}

/* Hands x (busy, not started) to the bulk thread to make room for it;
 * bytes (n, may be NULL) are the whole object, copied.  False if out of
 * memory (x is still busy). */
static bool post_room(rayc__net *net, rayc__xin *x, uint64_t total,
                      rayc_type type, const uint8_t *bytes, size_t n)
{
	room_job *r = calloc(1, sizeof(*r));
	if (r == NULL || (n > 0 && (r->bytes = malloc(n)) == NULL)) {
		free(r);
		return false;
	}
	if (n > 0)
		memcpy(r->bytes, bytes, n);
	r->job.fn = room_run;
	r->x = x;
	r->total = total;
	r->type = type;
	r->n = n;
	rayc__bulk_post(net, &r->job);
	return true;
}

/* A piece on c, or on lane L (NULL: on c itself). */
static int chunk_begin(rayc__conn *c, rayc__lane *L, const uint8_t *sub,
                       size_t n, const uint8_t *payload, uint8_t **dst,
                       rayc__xin **out)
{
	bool lane = L != NULL;
	rayc__net *net = c->net;
	rayc__rd rd;

	rayc__rd_init(&rd, sub, RAYC__CHUNK_SUB);
	rayc_object_id id = rayc__r_oid(&rd);
	uint64_t total = rayc__r_u64(&rd);
	uint64_t off = rayc__r_u64(&rd);
	rayc_type type = (rayc_type)rayc__r_u8(&rd);
	if (rd.bad || (lane && n == 0))
		return -1;
	rayc__mutex_lock(&net->mu);
	rayc__xin *x;
	HASH_FIND(hh, net->xins, &id, sizeof(id), x);
	if (x == NULL || x->src != c->peer) {
		rayc__mutex_unlock(&net->mu);
		return 0; /* nobody wants it any more */
	}
	/* A piece still coming on a stream that ended (a closed
	 * connection's last callback, a killed lane draining what its
	 * socket had) belongs to a transfer that was given up: the fetch
	 * asked again when it ended (relink.c), after the end was marked,
	 * so what is in the table now may be the new transfer, whose pieces
	 * come on another stream.  Counting this one there could let it
	 * step past a piece the new stream has already sent, and refused
	 * as not next: the transfer would wait for it for ever. */
	if (atomic_load(&c->state) == RAYC__CONN_CLOSED ||
	    (lane && rayc__lane_dead(L))) {
		rayc__mutex_unlock(&net->mu);
		return 0;
	}
	if (x->busy) {
		rayc__mutex_unlock(&net->mu);
		return RAYC__CHUNK_BUSY;
	}
	/* Nothing to do, and x left alone (not busy: a piece that counts
	 * may be arriving on another thread, by lane or connection): a
	 * size sent again, a piece of another stream of the same object
	 * (an abandoned transfer's, still coming), or, on a lane, any
	 * piece of a transfer not started (lanes carry only what a GO
	 * asked for, and a GO follows the start). */
	if ((x->started && (n == 0 || off != x->got)) ||
	    (lane && !x->started)) {
		rayc__mutex_unlock(&net->mu);
		return 0;
	}
	x->busy = true;
	rayc__mutex_unlock(&net->mu);
	int r = 1;
	bool go = false;
	if (!x->started && off != 0) {
		r = 0; /* the tail of an abandoned transfer */
	} else if (!x->started) {
		/* The first frame: the whole object (n == total), or, for
		 * one of several chunks, its size alone (n == 0), after
		 * which the holder waits for FETCH with RAYC__FETCH_GO. */
		if (n > total)
			r = -1;
		else if (xin_start(net, x, total, type, false) == RAYC_OK)
			go = n == 0 && total > 0;
		else if (n > 0 && n == total && payload == NULL)
			r = 0; /* into the receive buffer; here again then */
		else if (post_room(net, x, total, type, payload,
		                   n == total ? n : 0))
			return 2; /* the bulk thread's now */
		else
			r = -2;
	}
	if (r == -2) {
		xin_fail_busy(net, x, RAYC_ENOMEM);
		return 0;
	}
	if (r == 1 && (total != x->total || off > x->total ||
	               n > x->total - x->got))
		r = -1;
	else if (r == 1 && off != x->got)
		r = 0; /* a piece of an earlier, abandoned transfer */
	if (r != 1) {
		rayc__remote_chunk_end(c, x, 0, false);
		return r;
	}
	if (go) {
		/* x stops being busy before the bytes are asked for: they
		 * may come on a lane's thread, which would find it busy
		 * and drop them. */
		(void)rayc__remote_xin_end(net, x, 0, true);
		send_go(net, c->peer, id);
		return 0;
	}
	*dst = x->dst + off;
	*out = x;
	if (x->block != NULL) /* warmed just ahead of the bytes */
		rayc__store_warm(net->rt->store, *dst, n);
	return 1;
}

int rayc__remote_chunk_begin(rayc__conn *c, const uint8_t *sub, size_t n,
                             const uint8_t *payload, uint8_t **dst,
                             rayc__xin **out)
{
	int r = chunk_begin(c, NULL, sub, n, payload, dst, out);

	return r == RAYC__CHUNK_BUSY ? 0 : r;
}

int rayc__remote_lane_chunk_begin(rayc__conn *c, rayc__lane *L,
                                  const uint8_t *sub, size_t n, uint8_t **dst,
                                  rayc__xin **out)
{
	return chunk_begin(c, L, sub, n, NULL, dst, out);
}

static void (*_Atomic chunk_hook)(uint32_t src);

void rayc__test_set_chunk_hook(void (*fn)(uint32_t src))
{
	atomic_store(&chunk_hook, fn);
}

void rayc__remote_chunk_end(rayc__conn *c, rayc__xin *x, size_t n, bool ok)
{
	void (*hook)(uint32_t) = atomic_load(&chunk_hook);

	(void)rayc__remote_xin_end(c->net, x, n, ok);
	if (ok && n > 0 && hook != NULL)
		hook(c->peer);
}

/* A CHUNK that arrived whole in the receive buffer. */
void rayc__remote_on_chunk(rayc__conn *c, rayc__rd *rd)
{
	const uint8_t *sub = rayc__r_bytes(rd, RAYC__CHUNK_SUB);
	size_t n = rayc__rd_left(rd);
	const uint8_t *data = rayc__r_bytes(rd, n);
	uint8_t *dst;
	rayc__xin *x;

	if (rd->bad)
		return rayc__conn_close(c, "bad CHUNK");
	int r = rayc__remote_chunk_begin(c, sub, n, data, &dst, &x);
	if (r < 0)
		return rayc__conn_close(c, "bad CHUNK");
	if (r != 1)
		return;
	if (n > 0)
		memcpy(dst, data, n);
	rayc__remote_chunk_end(c, x, n, true);
}

void rayc__remote_on_missing(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc__rt *rt = net->rt;
	rayc_object_id id = rayc__r_oid(rd);
	uint32_t redirect = rayc__r_u32(rd);

	if (rd->bad || redirect >= RAYC__MAX_PEERS)
		return;
	rayc__mutex_lock(&net->mu);
	rayc__xin *x;
	HASH_FIND(hh, net->xins, &id, sizeof(id), x);
	if (x == NULL || x->src != c->peer) {
		rayc__mutex_unlock(&net->mu);
		return;
	}
	HASH_DEL(net->xins, x); /* ours to end */
	rayc__mutex_unlock(&net->mu);
	if (redirect != 0 && redirect != c->peer) {
		rayc__mutex_lock(&rt->mu);
		rayc__obj *o = rayc__obj_find_locked(rt, id);
		if (o != NULL && o->fetching) {
			o->fetching = false;
			o->loc = redirect;
			rayc__net_fetch_locked(rt, o);
		}
		rayc__mutex_unlock(&rt->mu);
		xin_drop(net, x);
		return;
	}
	char msg[128];
	snprintf(msg, sizeof(msg), "object %016llx%016llx is lost: peer %u has "
	         "no copy", (unsigned long long)id.hi,
	         (unsigned long long)id.lo, c->peer);
	rayc__remote_xin_finish(net, x, false, RAYC_ELOST, msg);
}

void rayc__remote_refetch(rayc__net *net, uint32_t peer, bool fail)
{
	rayc__rt *rt = net->rt;
	rayc__xin *x, *xt, *list = NULL;
	char msg[128];

	rayc__mutex_lock(&net->mu);
	HASH_ITER(hh, net->xins, x, xt) {
		if (x->src == peer) {
			HASH_DEL(net->xins, x); /* ours to end */
			x->next_dead = list;
			list = x;
		}
	}
	rayc__mutex_unlock(&net->mu);
	snprintf(msg, sizeof(msg), "object lost: peer %u, which holds it, "
	         "cannot be reached", peer);
	while (list != NULL) {
		x = list;
		list = x->next_dead;
		if (fail) {
			rayc__remote_xin_finish(net, x, false, RAYC_ELOST, msg);
			continue;
		}
		/* What was coming went with the connection: ask again. */
		rayc__mutex_lock(&rt->mu);
		rayc__obj *o = rayc__obj_find_locked(rt, x->id);
		if (o != NULL && o->fetching &&
		    atomic_load(&o->state) == RAYC__OBJ_PENDING) {
			o->fetching = false;
			o->loc = peer;
			rt->n_fetches--; /* the same fetch */
			rayc__net_fetch_locked(rt, o);
		}
		rayc__mutex_unlock(&rt->mu);
		xin_drop(net, x);
	}
}

bool rayc__remote_fetching_from(rayc__net *net, uint32_t src)
{
	rayc__xin *x, *xt;
	bool any = false;

	rayc__mutex_lock(&net->mu);
	HASH_ITER(hh, net->xins, x, xt) {
		if (x->src == src) {
			any = true;
			break;
		}
	}
	rayc__mutex_unlock(&net->mu);
	return any;
}
