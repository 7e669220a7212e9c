/* samehost.c -- objects on one host: read in place in the holder's
 * arena.
 *
 * A fetcher that believes the holder shares its host (a loopback or
 * equal address) sets RAYC__FETCH_SAME_HOST in FETCH.  The holder, if
 * the connection really is local (rayc__remote_conn_local) and its
 * arena is a sealed memfd, pins the object and answers SHM_OFFER: where
 * the object lies in its arena, its pid and the arena's fd, the arena's
 * size and identity, and the object's fingerprint (shm_print).  The
 * fetcher maps the arena read-only (one mapping per peer, held by every
 * object read from it), checks the fingerprint where the object lies,
 * and makes it its object's data: no copy and no pass over the bytes on
 * either side.  When that entry's data goes (rayc__net_view_done_locked)
 * it says SHM_DONE and the holder unpins (it also unpins when the
 * fetcher dies).  A connection that is not local, an arena that cannot
 * be reached or is not the one announced, or a fingerprint that differs:
 * the object is fetched again over TCP, and that peer is not offered
 * this path again.
 *
 * Trust: the offer names no path.  The fetcher builds /proc/<pid>/fd/<fd>
 * itself, looks at what it leads to without opening it (O_PATH), and
 * opens only a sealed memfd of its own user (rayc__shm_open_ro): a FIFO,
 * a device, a symlink or any named file is refused before any open, and
 * nobody can shrink the arena under the reader (SIGBUS).  "Same host"
 * comes from the connection's addresses, not from what the peer says.
 * So the bytes read are the announcing holder's own arena, at the range
 * it announced over the authenticated connection: what the object is
 * rests on that holder, as over TCP, where it could send any bytes under
 * a valid tag.
 *
 * Why a fingerprint and no checksum.  Until wire version 4 both sides
 * hashed the whole object on every fetch (xxh3; SHM_SUM carried the
 * holder's) and compared.  That dated from a copying version, where it
 * checked the copy.  Reading in place, it checked only that the bytes
 * the fetcher saw at one moment were the ones the holder hashed at
 * about the same moment; the holder could change them afterwards (the
 * fetcher reads them for as long as it holds the object), and no other
 * process can reach them (the identity checks above).  It cost a pass
 * over the object on each side per fetch: 2.3 GB/s for 64 MiB where no
 * pass gives 12-16 GB/s on the same loaded VM.  What it did catch, a
 * range that is not the object (a wrong offset, a mapping of the wrong
 * arena), the fingerprint catches at a fixed cost: xxh3 over the length
 * and 16 pieces of 256 bytes spread over the object, first and last
 * included.
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

static void send_oid(rayc__conn *c, int type, rayc_object_id id)
{
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, type, c->net->self);

	rayc__w_oid(&b, id);
	rayc__w_frame_end(&b, f);
	rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
}

/* The fingerprint of an object of len bytes at p (see the top). */
static uint64_t shm_print(const uint8_t *p, uint64_t len)
{
	enum { PIECES = 16, PIECE = 256 };
	uint8_t buf[8 + PIECES * PIECE];
	size_t n = 8;

	for (int i = 0; i < 8; i++)
		buf[i] = (uint8_t)(len >> (8 * i));
	if (len <= sizeof(buf) - 8)
		return rayc__wire_sum2(buf, n, p, (size_t)len);
	for (int i = 0; i < PIECES; i++) {
		uint64_t at = (len - PIECE) * (uint64_t)i / (PIECES - 1);
		memcpy(buf + n, p + at, PIECE);
		n += PIECE;
	}
	return rayc__wire_sum(buf, n);
}

static _Atomic int64_t offer_skew; /* test: a holder that misplaces */

void rayc__test_set_offer_skew(int64_t bytes)
{
	atomic_store(&offer_skew, bytes);
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
	rayc__w_u64(&b, off + (uint64_t)atomic_load(&offer_skew));
	rayc__w_u32(&b, (uint32_t)si.pid);
	rayc__w_u32(&b, (uint32_t)si.fd);
	rayc__w_u64(&b, si.size);
	rayc__w_u64(&b, si.dev);
	rayc__w_u64(&b, si.ino);
	rayc__w_u64(&b, shm_print(data, len));
	rayc__w_frame_end(&b, f);
	rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
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
	uint64_t print = rayc__r_u64(rd);
	if (rd->bad)
		return rayc__conn_close(c, "bad SHM_OFFER");
	rayc__mutex_lock(&net->mu);
	rayc__xin *x;
	HASH_FIND(hh, net->xins, &id, sizeof(id), x);
	if (x == NULL || x->src != c->peer || x->busy || x->started) {
		rayc__mutex_unlock(&net->mu);
		send_oid(c, RAYC__MSG_SHM_DONE, id); /* not wanted */
		return;
	}
	x->busy = true;
	rayc__mutex_unlock(&net->mu);
	rayc__store_view *v = NULL;
	const void *src = NULL;
	if (rayc__remote_conn_local(c) && len > 0 &&
	    (v = peer_view(net, c->peer, &si)) != NULL)
		src = rayc__store_view_range(v, off, len);
	if (src != NULL) {
		void (*hook)(void) = atomic_load(&shm_copy_hook);
		if (hook != NULL)
			hook();
		if (shm_print(src, len) != print) {
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-SAMEHOST-SUM",
			          "object offered in peer %u's arena does not "
			          "match its fingerprint; fetching it over TCP",
			          c->peer);
			src = NULL;
		}
	}
	if (src == NULL) {
		rayc__store_view_release(v);
		send_oid(c, RAYC__MSG_SHM_DONE, id);
		refetch_tcp(net, c->peer, x);
		return;
	}
	/* Zero-copy: the object is read where it lies, in the holder's
	 * arena, which keeps it pinned until we say SHM_DONE (when our entry
	 * lets go of it). */
	x->view = v; /* our hold */
	x->dst = (uint8_t *)(uintptr_t)src;
	x->total = len;
	x->type = type;
	x->started = true;
	(void)rayc__remote_xin_end(net, x, len, true); /* all of it is in */
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
