/* samehost.c -- objects on one host: read in place in the holder's
 * arena.
 *
 * A fetcher that believes the holder shares its host (a loopback or
 * equal address) sets RAYC__FETCH_SAME_HOST in FETCH.  The holder, if
 * the connection really is local (rayc__remote_conn_local) and its
 * arena is a sealed memfd, pins the object and answers SHM_OFFER (where
 * the object lies in its arena; its pid and the arena's fd; the arena's
 * size and identity), then computes the xxh3 of the object and sends
 * it as SHM_SUM: the fetcher's check and
 * the holder's hashing run at the same time (both on the bulk thread,
 * bulk.c, never on a receive callback).  The fetcher maps the arena
 * read-only (one mapping per peer, held by every object read from it),
 * hashes the object where it lies, and once both sums are in, if they
 * agree, makes it its object's data: no copy at all.  When that entry's data
 * goes (rayc__net_view_done_locked) it says SHM_DONE and the holder
 * unpins (it also unpins when the fetcher dies).  A connection that is
 * not local, an arena that cannot be reached or is not the one
 * announced, or a sum that differs: the object is fetched again over
 * TCP, and that peer is not offered this path again.
 *
 * Trust: the offer names no path.  The fetcher builds /proc/<pid>/fd/<fd>
 * itself, looks at what it leads to without opening it (O_PATH), and
 * opens only a sealed memfd of its own user (rayc__shm_open_ro): a FIFO,
 * a device, a symlink or any named file is refused before any open, and
 * nobody can shrink the arena under the reader (SIGBUS).  "Same host"
 * comes from the connection's addresses, not from what the peer says.
 */
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "net/remote_int.h"


static void (*_Atomic shm_copy_hook)(void);
static _Atomic int offer_fd = -1; /* test: a hostile holder's fd */

void rayc__test_set_shm_copy_hook(void (*fn)(void))
{
	atomic_store(&shm_copy_hook, fn);
}

void rayc__test_set_offer_path(const char *path)
{
	int fd = path != NULL ? rayc__path_handle(path) : -1;

	rayc__close_fd(atomic_exchange(&offer_fd, fd));
}

/* RAYC_SAME_HOST_COPY=0 turns the path off, for asking and offering.
 * Read at each fetch, so one process can measure both paths. */
bool rayc__remote_same_host_on(void)
{
	const char *e = getenv("RAYC_SAME_HOST_COPY");

	return e == NULL || strcmp(e, "0") != 0;
}

/* The host part of "tcp://host:port". */
static bool url_host(const char *url, char *out, size_t cap)
{
	if (strncmp(url, "tcp://", 6) != 0)
		return false;
	const char *h = url + 6, *colon = strrchr(h, ':');
	size_t n = colon != NULL ? (size_t)(colon - h) : strlen(h);
	if (n == 0 || n >= cap)
		return false;
	memcpy(out, h, n);
	out[n] = '\0';
	return true;
}

/* Does the peer listen on a loopback address, or on our host? */
bool rayc__remote_looks_local_locked(rayc__net *net, uint32_t peer)
{
	char a[RAYC__URL_MAX], b[RAYC__URL_MAX];

	if (!url_host(net->peers[peer].url, a, sizeof(a)))
		return false;
	if (strncmp(a, "127.", 4) == 0 || strcmp(a, "localhost") == 0 ||
	    strcmp(a, "[::1]") == 0)
		return true;
	return url_host(net->url, b, sizeof(b)) && strcmp(a, b) == 0;
}

/* Is c's other end on this host?  Told by the connection itself, which
 * a peer on another host cannot forge: a loopback address, a unix
 * socket, or its address equal to ours (the kernel drops packets from
 * outside that carry one of our addresses as their source). */
bool rayc__remote_conn_local(rayc__conn *c)
{
	nng_sockaddr ra, la;

	if (c->s == NULL ||
	    nng_stream_get_addr(c->s, NNG_OPT_REMADDR, &ra) != 0)
		return false;
	if (ra.s_family == NNG_AF_IPC)
		return true;
	if (nng_stream_get_addr(c->s, NNG_OPT_LOCADDR, &la) != 0)
		la.s_family = NNG_AF_UNSPEC;
	if (ra.s_family == NNG_AF_INET) {
		const uint8_t *a = (const uint8_t *)&ra.s_in.sa_addr;
		return a[0] == 127 || (la.s_family == NNG_AF_INET &&
		                       la.s_in.sa_addr == ra.s_in.sa_addr);
	}
	if (ra.s_family == NNG_AF_INET6) {
		static const uint8_t lo[16] = { [15] = 1 };
		static const uint8_t v4[12] = { [10] = 0xff, [11] = 0xff };
		const uint8_t *a = ra.s_in6.sa_addr;
		return memcmp(a, lo, 16) == 0 ||
		       (memcmp(a, v4, 12) == 0 && a[12] == 127) ||
		       (la.s_family == NNG_AF_INET6 &&
		        memcmp(la.s_in6.sa_addr, a, 16) == 0);
	}
	return false;
}

static void send_oid(rayc__conn *c, int type, rayc_object_id id,
                     const uint64_t *val)
{
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, type, c->net->self);

	rayc__w_oid(&b, id);
	if (val != NULL)
		rayc__w_u64(&b, *val);
	rayc__w_frame_end(&b, f);
	rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
}

/* Holder: the sum of an offered object, sent as SHM_SUM. */
typedef struct sum_job {
	rayc__bulk_job job;
	uint32_t peer;
	rayc_object_id id;
	rayc__obj *obj; /* one ref of the job's own */
	const void *data;
	size_t len;
} sum_job;

static void sum_run(rayc__net *net, rayc__bulk_job *job, bool cancel)
{
	sum_job *j = (sum_job *)job;

	if (!cancel) {
		uint64_t sum = rayc__wire_sum(j->data, j->len);
		rayc__wbuf b = { 0 };
		size_t f = rayc__w_frame_begin(&b, RAYC__MSG_SHM_SUM, net->self);
		rayc__w_oid(&b, j->id);
		rayc__w_u64(&b, sum);
		rayc__w_frame_end(&b, f);
		rayc__net_send_to(net, j->peer, &b);
		rayc__wbuf_fini(&b);
	}
	rayc__mutex_lock(&net->rt->mu);
	rayc__remote_unref_locked(net->rt, j->obj);
	rayc__mutex_unlock(&net->rt->mu);
	free(j);
}

/* Holder: o is pinned for c's peer (one ref); data, len lie at off in
 * our arena. */
void rayc__remote_offer(rayc__conn *c, rayc__obj *o, rayc_object_id id,
                        const void *data, size_t len, rayc_type type,
                        uint64_t off)
{
	rayc__net *net = c->net;
	rayc__pin *p = malloc(sizeof(*p));
	rayc__store_ident si;

	if (p == NULL) {
		/* The fetcher asks again once this closes. */
		rayc__mutex_lock(&net->rt->mu);
		rayc__obj_unref_locked(net->rt, o);
		rayc__mutex_unlock(&net->rt->mu);
		rayc__conn_close(c, "out of memory");
		return;
	}
	p->peer = c->peer;
	p->id = id;
	p->obj = o;
	rayc__mutex_lock(&net->mu);
	p->next = net->pins;
	net->pins = p;
	rayc__mutex_unlock(&net->mu);
	rayc__store_ident_get(net->rt->store, &si);
	int hostile = atomic_load(&offer_fd);
	if (hostile >= 0) {
		si.fd = hostile;
		rayc__fd_ident(hostile, &si.size, &si.dev, &si.ino);
	}
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_SHM_OFFER, net->self);
	rayc__w_oid(&b, id);
	rayc__w_u8(&b, (uint8_t)type);
	rayc__w_u64(&b, len);
	rayc__w_u64(&b, off);
	rayc__w_u32(&b, (uint32_t)si.pid);
	rayc__w_u32(&b, (uint32_t)si.fd);
	rayc__w_u64(&b, si.size);
	rayc__w_u64(&b, si.dev);
	rayc__w_u64(&b, si.ino);
	rayc__w_frame_end(&b, f);
	rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
	/* While the fetcher hashes its view of it, on the bulk thread: the
	 * frames behind this FETCH must not wait for a gigabyte's hash. */
	sum_job *j = malloc(sizeof(*j));
	if (j == NULL) {
		uint64_t sum = rayc__wire_sum(data, len);
		send_oid(c, RAYC__MSG_SHM_SUM, id, &sum);
		return;
	}
	rayc__mutex_lock(&net->rt->mu);
	rayc__obj_ref_locked(o); /* the pin may go before the job ends */
	rayc__mutex_unlock(&net->rt->mu);
	j->job.fn = sum_run;
	j->peer = c->peer;
	j->id = id;
	j->obj = o;
	j->data = data;
	j->len = len;
	rayc__bulk_post(net, &j->job);
}

/* Holder: lets go of the pins for peer (of object *id only, or all). */
void rayc__remote_unpin(rayc__net *net, uint32_t peer,
                        const rayc_object_id *id)
{
	rayc__pin *got = NULL;

	rayc__mutex_lock(&net->mu);
	rayc__pin **pp = &net->pins;
	while (*pp != NULL) {
		rayc__pin *p = *pp;
		if (p->peer == peer &&
		    (id == NULL || (p->id.hi == id->hi && p->id.lo == id->lo))) {
			*pp = p->next;
			p->next = got;
			got = p;
			if (id != NULL)
				break;
		} else {
			pp = &p->next;
		}
	}
	rayc__mutex_unlock(&net->mu);
	if (got == NULL)
		return;
	rayc__mutex_lock(&net->rt->mu);
	for (rayc__pin *p = got; p != NULL; p = p->next)
		rayc__remote_unref_locked(net->rt, p->obj);
	rayc__mutex_unlock(&net->rt->mu);
	while (got != NULL) {
		rayc__pin *n = got->next;
		free(got);
		got = n;
	}
}

/* Fetcher: the read-only mapping of peer's arena (held for the caller),
 * opened or reopened if it is not the one si names; NULL if it cannot
 * be mapped. */
static rayc__store_view *peer_view(rayc__net *net, uint32_t peer,
                                   const rayc__store_ident *si)
{
	rayc__mutex_lock(&net->mu);
	rayc__store_view *v = net->views[peer];
	if (v != NULL && rayc__store_view_is(v, si)) {
		rayc__store_view_hold(v);
		rayc__mutex_unlock(&net->mu);
		return v;
	}
	rayc__mutex_unlock(&net->mu);
	if (rayc__store_view_open(&v, si) != RAYC_OK) {
		rayc__log(RAYC_LOG_INFO, "RAYC-NET-SAMEHOST-OFF",
		          "cannot map peer %u's arena, objects from it come over "
		          "TCP: %s", peer, rayc_errmsg());
		return NULL;
	}
	rayc__mutex_lock(&net->mu);
	rayc__store_view *old = NULL;
	if (net->peers[peer].alive) { /* dropped when it dies */
		old = net->views[peer];
		net->views[peer] = v;
		rayc__store_view_hold(v);
	}
	rayc__mutex_unlock(&net->mu);
	rayc__store_view_release(old);
	return v;
}

/* Fetcher: x (busy, not started) is fetched over TCP instead. */
static void refetch_tcp(rayc__net *net, uint32_t peer, rayc__xin *x)
{
	rayc__mutex_lock(&net->mu);
	net->no_shm[peer] = true;
	x->busy = false;
	bool dead = x->dead;
	rayc__mutex_unlock(&net->mu);
	if (dead) {
		rayc__remote_xin_release(net, x);
		return;
	}
	rayc__remote_send_small(net, peer, RAYC__MSG_FETCH, x->id, 0);
}

/* Fetcher: both sums of x are in (net->mu held, x not busy, in the
 * table): the object is ours if they agree, else it comes over TCP. */
static void shm_settle(rayc__net *net, rayc__xin *x) RAYC_RELEASE(net->mu)
{
	uint32_t src = x->src;

	x->shm_wait = false;
	bool ok = x->shm_sum == x->shm_peer_sum;
	if (ok) {
		x->got = x->total;
		HASH_DEL(net->xins, x); /* ours to end */
	} else {
		x->busy = true; /* ours to reset */
	}
	rayc__mutex_unlock(&net->mu);
	if (ok) {
		rayc__remote_xin_finish(net, x, true, RAYC_OK, NULL);
		return;
	}
	rayc__log(RAYC_LOG_WARN, "RAYC-NET-SAMEHOST-SUM",
	          "object copied from peer %u's arena has the wrong checksum; "
	          "fetching it over TCP", src);
	rayc__remote_xin_free_dst(net, x);
	x->started = false;
	x->total = x->got = 0;
	refetch_tcp(net, src, x);
}

/* Fetcher: the sum of the object where it lies in the holder's arena. */
typedef struct check_job {
	rayc__bulk_job job;
	rayc__xin *x; /* busy: ours until the job ends */
} check_job;

static void check_run(rayc__net *net, rayc__bulk_job *job, bool cancel)
{
	rayc__xin *x = ((check_job *)job)->x;
	uint64_t sum = cancel ? 0 : rayc__wire_sum(x->dst, x->total);

	free(job);
	rayc__mutex_lock(&net->mu);
	x->busy = false;
	if (x->dead) {
		rayc__mutex_unlock(&net->mu);
		rayc__remote_xin_release(net, x); /* taken out meanwhile */
		return;
	}
	rayc__xin *cur;
	HASH_FIND(hh, net->xins, &x->id, sizeof(x->id), cur);
	if (cancel || cur != x) {
		/* Stopping (the table frees it), or taken out of the table
		 * by a thread that has not marked it dead yet: that thread
		 * ends it, and frees it now that it is not busy. */
		rayc__mutex_unlock(&net->mu);
		return;
	}
	x->shm_sum = sum;
	x->shm_have_mine = true;
	if (x->shm_have_peer)
		shm_settle(net, x);
	else
		rayc__mutex_unlock(&net->mu);
}

void rayc__remote_on_shm_offer(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc_object_id id = rayc__r_oid(rd);
	rayc_type type = (rayc_type)rayc__r_u8(rd);
	uint64_t len = rayc__r_u64(rd);
	uint64_t off = rayc__r_u64(rd);
	rayc__store_ident si;

	si.pid = (int32_t)rayc__r_u32(rd);
	si.fd = (int32_t)rayc__r_u32(rd);
	si.size = rayc__r_u64(rd);
	si.dev = rayc__r_u64(rd);
	si.ino = rayc__r_u64(rd);
	if (rd->bad)
		return rayc__conn_close(c, "bad SHM_OFFER");
	rayc__mutex_lock(&net->mu);
	rayc__xin *x;
	HASH_FIND(hh, net->xins, &id, sizeof(id), x);
	if (x == NULL || x->src != c->peer || x->busy || x->started) {
		rayc__mutex_unlock(&net->mu);
		send_oid(c, RAYC__MSG_SHM_DONE, id, NULL); /* not wanted */
		return;
	}
	x->busy = true;
	rayc__mutex_unlock(&net->mu);
	rayc__store_view *v = NULL;
	const void *src = NULL;
	if (rayc__remote_conn_local(c) && len > 0 &&
	    (v = peer_view(net, c->peer, &si)) != NULL)
		src = rayc__store_view_range(v, off, len);
	if (src == NULL) {
		rayc__store_view_release(v);
		send_oid(c, RAYC__MSG_SHM_DONE, id, NULL);
		refetch_tcp(net, c->peer, x);
		return;
	}
	/* Zero-copy: the object will be read where it lies, in the holder's
	 * arena, which keeps it pinned until we say SHM_DONE (when our entry
	 * lets go of it).  Check it first: hash it in place. */
	void (*hook)(void) = atomic_load(&shm_copy_hook);
	if (hook != NULL)
		hook();
	x->view = v; /* our hold */
	x->dst = (uint8_t *)(uintptr_t)src;
	x->total = len;
	x->type = type;
	x->started = true;
	x->shm_have_mine = false;
	rayc__mutex_lock(&net->mu);
	x->shm_wait = true;
	rayc__mutex_unlock(&net->mu);
	/* Hashed on the bulk thread (x stays busy until then): the frames
	 * behind this one must not wait for a gigabyte's hash. */
	check_job *j = malloc(sizeof(*j));
	if (j != NULL) {
		j->job.fn = check_run;
		j->x = x;
		rayc__bulk_post(net, &j->job);
		return;
	}
	rayc__mutex_lock(&net->mu);
	x->busy = false;
	bool dead = x->dead;
	rayc__mutex_unlock(&net->mu);
	if (dead) {
		rayc__remote_xin_release(net, x);
		return;
	}
	rayc__conn_close(c, "out of memory"); /* the fetch is asked again */
}

void rayc__remote_on_shm_sum(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc_object_id id = rayc__r_oid(rd);
	uint64_t sum = rayc__r_u64(rd);

	if (rd->bad)
		return rayc__conn_close(c, "bad SHM_SUM");
	rayc__mutex_lock(&net->mu);
	rayc__xin *x;
	HASH_FIND(hh, net->xins, &id, sizeof(id), x);
	if (x == NULL || x->src != c->peer) {
		rayc__mutex_unlock(&net->mu);
		return;
	}
	/* The holder's bulk thread sends this on whichever connection
	 * reaches us, so it may come before its SHM_OFFER: kept either
	 * way, and settled once ours is in. */
	x->shm_peer_sum = sum;
	x->shm_have_peer = true;
	if (x->shm_wait && !x->busy && x->shm_have_mine)
		shm_settle(net, x);
	else
		rayc__mutex_unlock(&net->mu);
}

/* We are done reading object id in peer's arena: it may unpin it. */
void rayc__remote_send_shm_done(rayc__net *net, uint32_t peer,
                                rayc_object_id id)
{
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_SHM_DONE, net->self);

	rayc__w_oid(&b, id);
	rayc__w_frame_end(&b, f);
	rayc__net_send_to(net, peer, &b);
	rayc__wbuf_fini(&b);
}

void rayc__net_view_done_locked(rayc__rt *rt, rayc__obj *o)
{
	rayc__store_view_release(o->view);
	o->view = NULL;
	if (rt->net != NULL)
		rayc__remote_send_shm_done(rt->net, o->view_src, o->id);
}
