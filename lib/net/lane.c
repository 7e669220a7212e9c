/* lane.c -- bulk lanes: a plain TCP socket per pair of peers that carries
 * the bytes of large objects beside the NNG connection.
 *
 * Why.  Over NNG every completed read is handed from its poller thread
 * to one of its task threads (a futex wake-up and wait each), and NNG
 * 1.5 lets us size neither that hand-off nor the socket's low-water
 * mark: a warm 64 MiB fetch cost 12-16 syscalls per MiB, 9.9 of them
 * futex calls in NNG's task threads (docs/benchmarks.md).  A lane is a
 * blocking socket with one thread at each end: the holder writes each
 * piece from the pinned object with one sendmsg, the fetcher receives it
 * straight into the object's destination with one recv.
 *
 * Set-up.  The fetcher says in FETCH that it can use a lane
 * (RAYC__FETCH_LANE); a holder with a lane listener answers an object of
 * several pieces with LANE (its listener's port) before the object's
 * size.  Once the fetcher has made room, it dials that port at the
 * address its NNG connection reaches the holder on (its own thread),
 * and the two prove over it that they hold the keys of that
 * authenticated connection:
 *
 *   holder -> fetcher: "RAYCLANE", version, holder id, nonce_h (32 bytes)
 *   fetcher -> holder: "RAYCLANE", fetcher id, holder id, nonce_f,
 *                      BLAKE2b keyed with the fetcher->holder frame key
 *                      over all of it and nonce_h (64 bytes)
 *   holder -> fetcher: BLAKE2b keyed with the lane's data key (32 bytes)
 *
 * The holder looks for the fetcher's open connections and takes the one
 * whose key gives that MAC; the lane is bound to it.  The data key is
 * BLAKE2b keyed with the holder->fetcher frame key over both nonces, so
 * it is fresh for every lane.  Then the fetcher asks for the bytes (FETCH
 * with RAYC__FETCH_GO | RAYC__FETCH_LANE over NNG), and the holder writes
 * them on the lane as CHUNK frames: the same header, sub-header and
 * Poly1305 tag as on the connection (wire.h), numbered on the lane from 0
 * under the data key.  They go through the same rayc__remote_chunk_begin
 * / _end as CHUNKs that come over NNG.
 *
 * Failure.  A lane that fails to set up (no route, refused, timed out, a
 * MAC that does not match) costs nothing: the GOs waiting for it go over
 * NNG, and that peer gets no lane for RAYC__LANE_RETRY_NS, doubling with
 * each failure in a row (a lane that broke counts too) up to 16 times
 * that.  No GO waits
 * for a set-up longer than RAYC__LANE_WAIT_MS (a port that drops what
 * comes to it would hold it the whole connect deadline): then it goes
 * over NNG, and so do the next until the lane is up.  A lane that
 * breaks once up (a write or read error, a stalled reader past the send
 * timeout, a bad tag) closes the NNG connection it is bound to: the
 * fetcher then asks again for what was coming (relink.c), as for any
 * lost connection.  A connection that closes takes its lanes with it.
 * Not used on connections that encrypt (the bytes would need copying
 * anyway) or between peers of one host that map each other's arenas.
 *
 * Threads.  One accepting thread per peer with a listener; one thread per
 * lane at each end.  Accepted sockets not yet authenticated are capped
 * (RAYC__LANE_SETUPS; more wait in the kernel's backlog) and must finish
 * their whole set-up within RAYC__LANE_SETUP_MS.
 *
 * Two streams of one transfer.  A lane's pieces and a connection's may
 * meet on one transfer (a stale stream of an abandoned fetch of the same
 * object, still coming, beside the new one's).  Pieces that do not fit
 * (not the next offset, a transfer not started) are dropped without
 * touching it; a lane's piece that finds it busy waits a moment for the
 * other thread.  Objects do not change, so pieces of either stream are
 * the same bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "net/remote_int.h"
#include "testing.h"

#define LANE_MAGIC "RAYCLANE"
#define LANE_VERSION 1u
#define HELLO_H 32  /* magic, version, holder id, nonce_h */
#define HELLO_F 64  /* magic, fetcher id, holder id, nonce_f, mac */
#define NONCE 16
#define MAC 32

enum { LANE_SETUP, LANE_UP, LANE_DEAD };

typedef struct rayc__lane rayc__lane;
struct rayc__lane {
	rayc__net *net;
	rayc__conn *c; /* the connection it is bound to (a ref), once known */
	uint32_t peer;
	int fd;
	_Atomic int state;
	_Atomic bool done; /* its thread ended: to join */
	bool started;
	rayc__thread th;
	rayc__wauth w; /* data frames: tx at the holder, rx at the fetcher */
	nng_sockaddr to; /* fetcher: the holder's address, port replaced */
	/* Fetcher: ids whose GO waits for the set-up (under lanes->mu), when
	 * it started, and whether it took too long (late: GOs go over the
	 * connection meanwhile). */
	rayc_object_id *pend;
	size_t npend, cap;
	int64_t born;
	bool late;
	/* Holder: transfers to write (under lanes->mu), and their wake-up. */
	rayc__xout *xhead, *xtail;
	rayc__event ev;
	rayc__lane *next;
};

struct rayc__lanes {
	rayc__mutex mu;
	int lfd;          /* listener (-1: none) */
	_Atomic uint16_t port; /* its port (0: none) */
	rayc__thread acc;
	bool acc_started;
	_Atomic bool stop;
	rayc__lane *all;  /* every lane, to join and free */
	int setups;       /* accepted, not yet authenticated */
	rayc__lane *to[RAYC__MAX_PEERS];   /* ours, reading from peer */
	rayc__lane *from[RAYC__MAX_PEERS]; /* peer's, written to */
	uint16_t port_of[RAYC__MAX_PEERS]; /* peer's listener, as it said */
	int64_t no_lane_until[RAYC__MAX_PEERS];
	int fails[RAYC__MAX_PEERS]; /* set-ups failed or lanes broken in a row */
};

/* Test counters and hooks. */
static _Atomic uint64_t lane_bytes_in, lane_bytes_out, lanes_up;
static _Atomic int tamper_once;
static _Atomic int stall_ms;

void rayc__test_lane_stall(int ms)
{
	atomic_store(&stall_ms, ms);
}

void rayc__test_lane_counts(uint64_t *in, uint64_t *out, uint64_t *up)
{
	*in = atomic_load(&lane_bytes_in);
	*out = atomic_load(&lane_bytes_out);
	*up = atomic_load(&lanes_up);
}

void rayc__test_lane_tamper(void)
{
	atomic_store(&tamper_once, 1);
}

int rayc__test_lane_port(void)
{
	rayc__rt *rt = rayc__g;
	rayc__net *net = rt != NULL ? rayc__net_get(rt) : NULL;
	int port = net != NULL ? rayc__lane_port(net) : 0;

	if (net != NULL)
		rayc__net_put(net);
	return port;
}

bool rayc__lane_on(void)
{
	const char *e = getenv("RAYC_BULK_LANE");

	return e == NULL || strcmp(e, "0") != 0;
}

/* ---- sockets ---- */

/* Receives exactly n bytes (a lane's frames, blocking). */
static bool recv_full(int fd, void *p, size_t n)
{
	uint8_t *b = p;

	while (n > 0) {
		ssize_t r = recv(fd, b, n, MSG_WAITALL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		b += r;
		n -= (size_t)r;
	}
	return true;
}

/* Receives or sends exactly n bytes of a set-up, all by deadline (ns):
 * trickling bytes do not extend it. */
static bool io_by(int fd, void *p, size_t n, bool rd, int64_t deadline)
{
	uint8_t *b = p;

	while (n > 0) {
		int64_t left = (deadline - rayc__now_ns()) / 1000000;
		struct pollfd q = { .fd = fd, .events = rd ? POLLIN : POLLOUT };
		if (left <= 0 || poll(&q, 1, (int)(left < 50 ? left : 50)) < 0)
			return false;
		if (q.revents == 0)
			continue;
		ssize_t r = rd ? recv(fd, b, n, MSG_DONTWAIT)
		               : send(fd, b, n, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (r < 0 && (errno == EINTR || errno == EAGAIN ||
		              errno == EWOULDBLOCK))
			continue;
		if (r <= 0)
			return false;
		b += r;
		n -= (size_t)r;
	}
	return true;
}

static bool sendv_full(int fd, struct iovec *iov, int n)
{
	while (n > 0) {
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t r = sendmsg(fd, &m, MSG_NOSIGNAL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		size_t left = (size_t)r;
		while (n > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return true;
}

static void set_timeouts(int fd, int64_t ms_rd, int64_t ms_wr)
{
	struct timeval r = { .tv_sec = ms_rd / 1000,
		             .tv_usec = (ms_rd % 1000) * 1000 };
	struct timeval w = { .tv_sec = ms_wr / 1000,
		             .tv_usec = (ms_wr % 1000) * 1000 };
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &r, sizeof(r));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &w, sizeof(w));
}

/* nng_sockaddr (TCP) to a socket address; false for anything else. */
static bool to_sockaddr(const nng_sockaddr *a, struct sockaddr_storage *ss,
                        socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (a->s_family == NNG_AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		s->sin_port = a->s_in.sa_port;
		memcpy(&s->sin_addr, &a->s_in.sa_addr, 4);
		*len = sizeof(*s);
		return true;
	}
	if (a->s_family == NNG_AF_INET6) {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
		s->sin6_family = AF_INET6;
		s->sin6_port = a->s_in6.sa_port;
		memcpy(&s->sin6_addr, a->s_in6.sa_addr, 16);
		s->sin6_scope_id = a->s_in6.sa_scope;
		*len = sizeof(*s);
		return true;
	}
	return false;
}

static void late_check(rayc__net *net, rayc__lane *L);

/* Connects within RAYC__LANE_SETUP_MS, giving up early once L is dead. */
static int dial(rayc__net *net, rayc__lane *L)
{
	const nng_sockaddr *a = &L->to;
	struct sockaddr_storage ss;
	socklen_t len;

	if (!to_sockaddr(a, &ss, &len))
		return -1;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	                0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
		if (errno != EINPROGRESS) {
			close(fd);
			return -1;
		}
		int r = 0;
		for (int waited = 0; r == 0 && waited < RAYC__LANE_SETUP_MS &&
		                     atomic_load(&L->state) != LANE_DEAD;
		     waited += 50) {
			struct pollfd p = { .fd = fd, .events = POLLOUT };
			r = poll(&p, 1, 50);
			if (r < 0 && errno == EINTR)
				r = 0;
			late_check(net, L);
		}
		int err = 0;
		socklen_t el = sizeof(err);
		if (r != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 ||
		    err != 0) {
			close(fd);
			return -1;
		}
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
		close(fd);
		return -1;
	}
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* ---- keys ---- */

/* Integers in the set-up are little endian, as on the wire (wire.h). */
static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* The fetcher's MAC over its hello's first 32 bytes and nonce_h, keyed
 * with the fetcher->holder frame key. */
static void hello_mac(const unsigned char key[32], const uint8_t *hello,
                      const uint8_t *nonce_h, uint8_t out[MAC])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, key, 32, MAC);
	crypto_generichash_update(&st, hello, HELLO_F - MAC);
	crypto_generichash_update(&st, nonce_h, NONCE);
	crypto_generichash_final(&st, out, MAC);
	sodium_memzero(&st, sizeof(st));
}

/* The lane's data key, from the holder->fetcher frame key and both
 * nonces; and the holder's confirmation under it. */
static void data_key(const unsigned char key[32], uint32_t fetcher,
                     uint32_t holder, const uint8_t *nonce_h,
                     const uint8_t *nonce_f, unsigned char out[32])
{
	crypto_generichash_state st;
	uint8_t ids[8];

	put32(ids, fetcher);
	put32(ids + 4, holder);
	crypto_generichash_init(&st, key, 32, 32);
	crypto_generichash_update(&st, (const uint8_t *)"rayc lane data",
	                          14);
	crypto_generichash_update(&st, ids, sizeof(ids));
	crypto_generichash_update(&st, nonce_h, NONCE);
	crypto_generichash_update(&st, nonce_f, NONCE);
	crypto_generichash_final(&st, out, 32);
	sodium_memzero(&st, sizeof(st));
}

static void confirm_mac(const unsigned char dkey[32], uint8_t out[MAC])
{
	crypto_generichash(out, MAC, (const uint8_t *)"rayc lane ok", 12,
	                   dkey, 32);
}

/* ---- lanes ---- */

static rayc__lane *lane_new(rayc__net *net, uint32_t peer)
{
	rayc__lane *L = calloc(1, sizeof(*L));

	if (L == NULL)
		return NULL;
	L->net = net;
	L->peer = peer;
	L->fd = -1;
	atomic_init(&L->state, LANE_SETUP);
	return L;
}

/* Wakes L's thread out of whatever it waits in (lanes->mu held). */
static void lane_kill_locked(rayc__lane *L)
{
	atomic_store(&L->state, LANE_DEAD);
	if (L->fd >= 0)
		(void)shutdown(L->fd, SHUT_RDWR);
	rayc__event_set(&L->ev);
}

/* After its thread ended (joined): lets go of what L holds. */
static void lane_free(rayc__net *net, rayc__lane *L)
{
	rayc__xout *x = L->xhead;

	while (x != NULL) {
		rayc__xout *n = x->next;
		rayc__remote_xout_done(net, x);
		x = n;
	}
	if (L->fd >= 0)
		close(L->fd);
	if (L->c != NULL)
		rayc__conn_unref(L->c);
	sodium_memzero(&L->w, sizeof(L->w));
	free(L->pend);
	free(L);
}

/* L's thread ends: it leaves the tables (it stays in the list until it
 * is joined). */
static void lane_end(rayc__net *net, rayc__lane *L)
{
	rayc__lanes *ls = net->lanes;

	rayc__mutex_lock(&ls->mu);
	atomic_store(&L->state, LANE_DEAD);
	if (ls->to[L->peer] == L)
		ls->to[L->peer] = NULL;
	if (ls->from[L->peer] == L)
		ls->from[L->peer] = NULL;
	rayc__mutex_unlock(&ls->mu);
	atomic_store(&L->done, true);
}

/* A lane that was up broke: the connection it is bound to closes too,
 * so the fetcher asks again for what was coming. */
static void lane_broke(rayc__net *net, rayc__lane *L, const char *why)
{
	if (atomic_load(&net->lanes->stop) || L->c == NULL ||
	    atomic_load(&L->c->state) == RAYC__CONN_CLOSED)
		return;
	rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-LANE",
	          "bulk lane with peer %u: %s", L->peer, why);
	rayc__conn_close(L->c, "its bulk lane broke");
}

/* ---- the fetcher's end ---- */

/* No lane to peer for a while: 30 s after a first failure, doubling
 * with each failure in a row up to 8 min (a lane port that a firewall
 * closes costs one RAYC__LANE_WAIT_MS wait each time). */
static void lane_failed_locked(rayc__lanes *ls, uint32_t peer)
{
	int f = ls->fails[peer] < 5 ? ls->fails[peer]++ : 4;

	ls->no_lane_until[peer] = rayc__now_ns() + (RAYC__LANE_RETRY_NS << f);
}

static void send_pending(rayc__net *net, rayc__lane *L, bool up);

/* A set-up that takes longer than RAYC__LANE_WAIT_MS (a port that drops
 * what comes to it, a slow peer) holds no GO longer: those waiting go
 * over the connection, as do later ones until the lane is up. */
static void late_check(rayc__net *net, rayc__lane *L)
{
	rayc__lanes *ls = net->lanes;
	bool flush = false;

	rayc__mutex_lock(&ls->mu);
	if (!L->late && atomic_load(&L->state) == LANE_SETUP &&
	    rayc__now_ns() - L->born > (int64_t)RAYC__LANE_WAIT_MS * 1000000) {
		L->late = true;
		flush = true;
	}
	rayc__mutex_unlock(&ls->mu);
	if (flush)
		send_pending(net, L, false);
}

/* Waits until fd has something to read (by deadline, ns), seeing to
 * late GOs meanwhile; false if it never did. */
static bool wait_readable(rayc__net *net, rayc__lane *L, int fd,
                          int64_t deadline)
{
	while (rayc__now_ns() < deadline &&
	       atomic_load(&L->state) != LANE_DEAD) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, 50);
		late_check(net, L);
		if (r > 0)
			return true;
	}
	return false;
}

/* The GOs that waited for the set-up go: by the lane if up, else over
 * NNG alone. */
static void send_pending(rayc__net *net, rayc__lane *L, bool up)
{
	rayc__lanes *ls = net->lanes;

	rayc__mutex_lock(&ls->mu);
	rayc_object_id *p = L->pend;
	size_t n = L->npend;
	L->pend = NULL;
	L->npend = L->cap = 0;
	rayc__mutex_unlock(&ls->mu);
	for (size_t i = 0; i < n; i++)
		rayc__remote_send_small(net, L->peer, RAYC__MSG_FETCH, p[i],
		                        RAYC__FETCH_GO |
		                                (up ? RAYC__FETCH_LANE : 0));
	free(p);
}

static bool fetcher_setup(rayc__net *net, rayc__lane *L, int fd)
{
	uint8_t hh[HELLO_H], hf[HELLO_F], conf[MAC], want[MAC];
	unsigned char dkey[32];
	uint32_t v, id;
	int64_t by = rayc__now_ns() + (int64_t)RAYC__LANE_SETUP_MS * 1000000;

	if (!wait_readable(net, L, fd, by) || !io_by(fd, hh, sizeof(hh), true, by) ||
	    memcmp(hh, LANE_MAGIC, 8) != 0)
		return false;
	v = get32(hh + 8);
	id = get32(hh + 12);
	if (v != LANE_VERSION || id != L->peer)
		return false;
	memcpy(hf, LANE_MAGIC, 8);
	put32(hf + 8, net->self);
	put32(hf + 12, L->peer);
	randombytes_buf(hf + 16, NONCE);
	hello_mac(L->c->tx.key, hf, hh + 16, hf + HELLO_F - MAC);
	if (!io_by(fd, hf, sizeof(hf), false, by) ||
	    !wait_readable(net, L, fd, by) ||
	    !io_by(fd, conf, sizeof(conf), true, by))
		return false;
	data_key(L->c->rx.key, net->self, L->peer, hh + 16, hf + 16, dkey);
	confirm_mac(dkey, want);
	bool ok = sodium_memcmp(conf, want, MAC) == 0;
	if (ok) {
		memcpy(L->w.key, dkey, 32);
		L->w.ctr = 0;
		L->w.enc = false;
	}
	sodium_memzero(dkey, sizeof(dkey));
	return ok;
}

/* Receives CHUNK frames until the lane ends; false if it broke (not
 * merely shut down). */
static bool read_frames(rayc__net *net, rayc__lane *L)
{
	uint8_t hs[RAYC__WIRE_HDR + RAYC__CHUNK_SUB];
	const uint8_t *sub = hs + RAYC__WIRE_HDR;
	bool good = false;

	for (;;) {
		if (!recv_full(L->fd, hs, sizeof(hs)))
			return atomic_load(&L->state) == LANE_DEAD;
		rayc__whdr h;
		if (!rayc__whdr_parse(hs, RAYC__WIRE_MAX_FRAME, &h) ||
		    h.type != RAYC__MSG_CHUNK || h.sender != L->peer ||
		    h.len < RAYC__CHUNK_SUB ||
		    h.len - RAYC__CHUNK_SUB > RAYC__LANE_FRAME_MAX)
			return false;
		size_t n = h.len - RAYC__CHUNK_SUB;
		uint8_t *dst = NULL;
		rayc__xin *x = NULL;
		int r = rayc__remote_lane_chunk_begin(L->c, sub, n, &dst, &x);
		/* Its transfer is being written into by the connection's
		 * thread for a moment (a piece of another stream of it). */
		for (int64_t by = rayc__now_ns() + (int64_t)1000000000;
		     r == RAYC__CHUNK_BUSY && rayc__now_ns() < by;) {
			struct timespec ts = { 0, 50000 };
			(void)nanosleep(&ts, NULL);
			r = rayc__remote_lane_chunk_begin(L->c, sub, n, &dst,
			                                  &x);
		}
		if (r < 0 || r == RAYC__CHUNK_BUSY)
			return false;
		uint8_t *tmp = NULL;
		if (r != 1 && n > 0) {
			/* Nobody wants these bytes here any more: read and
			 * check them all the same (the lane's count). */
			tmp = malloc(n);
			if (tmp == NULL)
				return false;
			dst = tmp;
		}
		bool in = recv_full(L->fd, dst, n);
		bool ok = in && rayc__wire_check(&L->w, hs, sub,
		                                 RAYC__CHUNK_SUB, dst, n);
		free(tmp);
		if (r == 1)
			rayc__remote_chunk_end(L->c, x, ok ? n : 0, ok);
		if (in && !ok) {
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-BADFRAME",
			          "frame with a bad tag on the bulk lane from "
			          "peer %u: closing its connection", L->peer);
			rayc__conn_count_refused();
		}
		if (!ok)
			return in ? false : atomic_load(&L->state) == LANE_DEAD;
		if (r == 1)
			atomic_fetch_add_explicit(&lane_bytes_in, n,
			                          memory_order_relaxed);
		if (!good) {
			good = true; /* the lane works: failures start over */
			rayc__mutex_lock(&net->lanes->mu);
			net->lanes->fails[L->peer] = 0;
			rayc__mutex_unlock(&net->lanes->mu);
		}
	}
}

static void *fetcher_main(void *arg)
{
	rayc__lane *L = arg;
	rayc__net *net = L->net;
	rayc__lanes *ls = net->lanes;
	bool up = false;

	/* Test (rayc__test_lane_stall): a set-up that takes this long. */
	for (int t = atomic_load(&stall_ms);
	     t > 0 && atomic_load(&L->state) != LANE_DEAD; t -= 50) {
		rayc__sleep_ms(50);
		late_check(net, L);
	}
	int fd = dial(net, L);

	if (fd >= 0) {
		rayc__mutex_lock(&ls->mu);
		L->fd = fd;
		bool dead = atomic_load(&L->state) == LANE_DEAD;
		rayc__mutex_unlock(&ls->mu);
		up = !dead && fetcher_setup(net, L, fd);
	}
	if (up) {
		rayc__mutex_lock(&ls->mu);
		int want = LANE_SETUP;
		up = atomic_compare_exchange_strong(&L->state, &want, LANE_UP);
		rayc__mutex_unlock(&ls->mu);
	}
	if (!up) {
		rayc__mutex_lock(&ls->mu);
		lane_failed_locked(ls, L->peer);
		rayc__mutex_unlock(&ls->mu);
		rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-LANE",
		          "no bulk lane to peer %u: its objects come over the "
		          "connection", L->peer);
	} else {
		atomic_fetch_add(&lanes_up, 1);
		set_timeouts(fd, 0, RAYC__LANE_SETUP_MS);
	}
	/* A GO may be queued up to the moment the state left SETUP. */
	send_pending(net, L, up);
	if (up && !read_frames(net, L)) {
		rayc__mutex_lock(&ls->mu);
		lane_failed_locked(ls, L->peer);
		rayc__mutex_unlock(&ls->mu);
		lane_broke(net, L, "read failed or bad frame");
	}
	lane_end(net, L);
	send_pending(net, L, false); /* none: the state is no longer SETUP */
	return NULL;
}

bool rayc__lane_go(rayc__net *net, uint32_t src, rayc_object_id id)
{
	rayc__lanes *ls = net->lanes;
	rayc__conn *c = NULL;

	if (ls == NULL || src >= RAYC__MAX_PEERS || atomic_load(&net->encrypt))
		return false;
	rayc__mutex_lock(&ls->mu);
	rayc__lane *L = ls->to[src];
	if (L == NULL && ls->port_of[src] != 0 && !atomic_load(&ls->stop) &&
	    rayc__now_ns() >= ls->no_lane_until[src]) {
		rayc__mutex_unlock(&ls->mu);
		/* A new lane: to the address our connection reaches src on. */
		c = rayc__net_conn_to(net, src);
		nng_sockaddr a;
		if (c == NULL || c->s == NULL ||
		    atomic_load(&c->state) != RAYC__CONN_OPEN ||
		    c->tx.enc ||
		    nng_stream_get_addr(c->s, NNG_OPT_REMADDR, &a) != 0 ||
		    (a.s_family != NNG_AF_INET && a.s_family != NNG_AF_INET6)) {
			if (c != NULL)
				rayc__conn_unref(c);
			return false;
		}
		rayc__lane *nl = lane_new(net, src);
		if (nl == NULL) {
			rayc__conn_unref(c);
			return false;
		}
		nl->c = c; /* our ref */
		rayc__mutex_lock(&ls->mu);
		uint16_t port = ls->port_of[src];
		if (ls->to[src] != NULL || port == 0 ||
		    atomic_load(&ls->stop)) {
			L = ls->to[src]; /* another thread made one */
			rayc__mutex_unlock(&ls->mu);
			lane_free(net, nl);
			rayc__mutex_lock(&ls->mu);
			if (L != ls->to[src])
				L = NULL;
		} else {
			if (a.s_family == NNG_AF_INET)
				a.s_in.sa_port = htons(port);
			else
				a.s_in6.sa_port = htons(port);
			nl->to = a;
			nl->born = rayc__now_ns();
			if (rayc__thread_start(&nl->th, fetcher_main, nl) !=
			    0) {
				rayc__mutex_unlock(&ls->mu);
				lane_free(net, nl);
				return false;
			}
			nl->started = true;
			nl->next = ls->all;
			ls->all = nl;
			ls->to[src] = nl;
			L = nl;
			/* Listed under lanes->mu, then c looked at: a close
			 * of c either finds the lane (rayc__lane_conn_lost)
			 * or is seen here. */
			if (atomic_load(&c->state) == RAYC__CONN_CLOSED) {
				lane_kill_locked(nl);
				L = NULL;
			}
		}
	}
	bool taken = false, go = false;
	if (L != NULL && atomic_load(&L->state) == LANE_SETUP && !L->late) {
		if (L->npend == L->cap) {
			size_t nc = L->cap ? L->cap * 2 : 8;
			rayc_object_id *np = realloc(L->pend, nc * sizeof(*np));
			if (np != NULL) {
				L->pend = np;
				L->cap = nc;
			}
		}
		if (L->npend < L->cap) {
			L->pend[L->npend++] = id;
			taken = true;
		}
	} else if (L != NULL && atomic_load(&L->state) == LANE_UP) {
		taken = go = true;
	}
	rayc__mutex_unlock(&ls->mu);
	if (go)
		rayc__remote_send_small(net, src, RAYC__MSG_FETCH, id,
		                        RAYC__FETCH_GO | RAYC__FETCH_LANE);
	return taken;
}

void rayc__lane_on_port(rayc__conn *c, rayc__rd *rd)
{
	rayc__lanes *ls = c->net->lanes;
	uint32_t port = rayc__r_u32(rd);

	if (rd->bad || port > 65535 || ls == NULL || c->peer == 0 ||
	    c->peer >= RAYC__MAX_PEERS)
		return;
	rayc__mutex_lock(&ls->mu);
	ls->port_of[c->peer] = (uint16_t)port;
	rayc__mutex_unlock(&ls->mu);
}

/* ---- the holder's end ---- */

/* Finds the open connection from peer whose fetcher->holder key made
 * mac; returns it with a ref, or NULL. */
static rayc__conn *find_conn(rayc__net *net, uint32_t peer,
                             const uint8_t *hf, const uint8_t *nonce_h)
{
	rayc__conn *v[RAYC__CONN_PER_PEER * 2 + 2];
	int n = 0;
	uint8_t want[MAC];

	rayc__mutex_lock(&net->mu);
	for (rayc__conn *c = net->conns; c != NULL; c = c->next) {
		if (n == (int)(sizeof(v) / sizeof(v[0])))
			break;
		if (c->peer == peer && !c->probe && atomic_load(&c->opened) &&
		    atomic_load(&c->verified) &&
		    atomic_load(&c->state) == RAYC__CONN_OPEN) {
			atomic_fetch_add(&c->refs, 1);
			v[n++] = c;
		}
	}
	rayc__mutex_unlock(&net->mu);
	rayc__conn *found = NULL;
	for (int i = 0; i < n; i++) {
		if (found == NULL && !v[i]->rx.enc) {
			hello_mac(v[i]->rx.key, hf, nonce_h, want);
			if (sodium_memcmp(want, hf + HELLO_F - MAC, MAC) == 0) {
				found = v[i];
				continue; /* keeps its ref */
			}
		}
		rayc__conn_unref(v[i]);
	}
	return found;
}

static bool holder_setup(rayc__net *net, rayc__lane *L)
{
	rayc__lanes *ls = net->lanes;
	uint8_t hh[HELLO_H], hf[HELLO_F], conf[MAC];
	unsigned char dkey[32];
	uint32_t v = LANE_VERSION, fid, hid;
	int64_t by = rayc__now_ns() + (int64_t)RAYC__LANE_SETUP_MS * 1000000;

	memcpy(hh, LANE_MAGIC, 8);
	put32(hh + 8, v);
	put32(hh + 12, net->self);
	randombytes_buf(hh + 16, NONCE);
	if (!io_by(L->fd, hh, sizeof(hh), false, by) ||
	    !io_by(L->fd, hf, sizeof(hf), true, by) ||
	    memcmp(hf, LANE_MAGIC, 8) != 0)
		return false;
	fid = get32(hf + 8);
	hid = get32(hf + 12);
	if (hid != net->self || fid == 0 || fid >= RAYC__MAX_PEERS ||
	    fid == net->self)
		return false;
	rayc__conn *c = find_conn(net, fid, hf, hh + 16);
	if (c == NULL)
		return false;
	data_key(c->tx.key, fid, net->self, hh + 16, hf + 16, dkey);
	confirm_mac(dkey, conf);
	memcpy(L->w.key, dkey, 32);
	L->w.ctr = 0;
	L->w.enc = false;
	sodium_memzero(dkey, sizeof(dkey));
	/* Registered before the confirmation: the fetcher's GO, sent once
	 * it has it, finds the lane.  Bound to c under lanes->mu, and c
	 * looked at after: a close of c either finds the lane bound
	 * (rayc__lane_conn_lost) or is seen here. */
	rayc__mutex_lock(&ls->mu);
	L->c = c;
	L->peer = fid;
	bool up = false;
	if (!atomic_load(&ls->stop) &&
	    atomic_load(&L->state) == LANE_SETUP) {
		rayc__lane *old = ls->from[fid];
		if (old != NULL)
			lane_kill_locked(old); /* a peer has one lane to us */
		ls->from[fid] = L;
		atomic_store(&L->state, LANE_UP);
		up = true;
	}
	rayc__mutex_unlock(&ls->mu);
	if (atomic_load(&c->state) == RAYC__CONN_CLOSED)
		return false;
	return up && io_by(L->fd, conf, sizeof(conf), false, by);
}

/* Writes x's bytes as CHUNK frames; false if the lane failed. */
static bool write_xout(rayc__net *net, rayc__lane *L, rayc__xout *x,
                       rayc__wbuf *b)
{
	while (x->off < x->len) {
		size_t n = x->len - x->off;
		if (n > RAYC__NET_CHUNK)
			n = RAYC__NET_CHUNK;
		b->len = 0;
		size_t f = rayc__w_frame_begin(b, RAYC__MSG_CHUNK, net->self);
		rayc__w_oid(b, x->id);
		rayc__w_u64(b, x->len);
		rayc__w_u64(b, x->off);
		rayc__w_u8(b, (uint8_t)x->type);
		rayc__w_frame_end_len(b, f, n);
		if (b->bad)
			return false;
		rayc__wire_seal(&L->w, b->p + f, b->p + f + RAYC__WIRE_HDR,
		                RAYC__CHUNK_SUB, x->data + x->off, n);
		if (atomic_exchange(&tamper_once, 0))
			b->p[f + RAYC__WIRE_TAG_AT] ^= 1;
		struct iovec iov[2] = {
			{ b->p + f, RAYC__WIRE_HDR + RAYC__CHUNK_SUB },
			{ (void *)(x->data + x->off), n },
		};
		if (!sendv_full(L->fd, iov, n > 0 ? 2 : 1))
			return false;
		atomic_fetch_add_explicit(&lane_bytes_out, n,
		                          memory_order_relaxed);
		x->off += n;
	}
	return true;
}

static void *holder_main(void *arg)
{
	rayc__lane *L = arg;
	rayc__net *net = L->net;
	rayc__lanes *ls = net->lanes;
	rayc__wbuf b = { 0 };
	bool broke = false;

	bool up = holder_setup(net, L);
	rayc__mutex_lock(&ls->mu);
	ls->setups--;
	rayc__mutex_unlock(&ls->mu);
	if (!up) {
		lane_end(net, L);
		return NULL;
	}
	/* A reader that stops reading holds our pins no longer than this. */
	int64_t wr = net->timeout_ns / 1000000 * 2;
	set_timeouts(L->fd, 0, wr > 10000 ? wr : 10000);
	for (;;) {
		rayc__mutex_lock(&ls->mu);
		rayc__xout *x = L->xhead;
		if (x != NULL) {
			L->xhead = x->next;
			if (L->xhead == NULL)
				L->xtail = NULL;
		}
		bool dead = atomic_load(&L->state) == LANE_DEAD;
		rayc__mutex_unlock(&ls->mu);
		if (x == NULL) {
			if (dead)
				break;
			(void)rayc__event_wait(&L->ev, -1, 0);
			continue;
		}
		bool ok = !dead && write_xout(net, L, x, &b);
		rayc__remote_xout_done(net, x);
		if (!ok) {
			broke = !dead;
			break;
		}
	}
	rayc__wbuf_fini(&b);
	if (broke)
		lane_broke(net, L, "write failed or timed out");
	lane_end(net, L); /* what is still queued goes in lane_free */
	return NULL;
}

bool rayc__lane_send(rayc__net *net, uint32_t peer, rayc__xout *x)
{
	rayc__lanes *ls = net->lanes;

	if (ls == NULL || peer == 0 || peer >= RAYC__MAX_PEERS)
		return false;
	rayc__mutex_lock(&ls->mu);
	rayc__lane *L = ls->from[peer];
	bool ok = L != NULL && atomic_load(&L->state) == LANE_UP;
	if (ok) {
		x->next = NULL;
		if (L->xtail != NULL)
			L->xtail->next = x;
		else
			L->xhead = x;
		L->xtail = x;
		/* Under the lock: once it is let go, L may end and be
		 * reaped. */
		rayc__event_set(&L->ev);
	}
	rayc__mutex_unlock(&ls->mu);
	return ok;
}

static void *accept_main(void *arg)
{
	rayc__net *net = arg;
	rayc__lanes *ls = net->lanes;

	for (;;) {
		int fd = accept4(ls->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (atomic_load(&ls->stop)) {
			if (fd >= 0)
				close(fd);
			return NULL;
		}
		if (fd < 0) {
			if (errno != EINTR && errno != ECONNABORTED)
				rayc__sleep_ms(10); /* out of descriptors */
			continue;
		}
		/* Full: the next wait in the kernel's backlog (each set-up
		 * ends by its deadline). */
		for (;;) {
			rayc__mutex_lock(&ls->mu);
			bool full = ls->setups >= RAYC__LANE_SETUPS;
			rayc__mutex_unlock(&ls->mu);
			if (!full || atomic_load(&ls->stop))
				break;
			rayc__sleep_ms(20);
		}
		int one = 1;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		                 sizeof(one));
		rayc__lane *L = lane_new(net, 0);
		rayc__mutex_lock(&ls->mu);
		if (L == NULL || atomic_load(&ls->stop)) {
			rayc__mutex_unlock(&ls->mu);
			close(fd);
			free(L);
			continue;
		}
		L->fd = fd;
		if (rayc__thread_start(&L->th, holder_main, L) != 0) {
			rayc__mutex_unlock(&ls->mu);
			lane_free(net, L);
			continue;
		}
		ls->setups++;
		L->started = true;
		L->next = ls->all;
		ls->all = L;
		rayc__mutex_unlock(&ls->mu);
	}
}

/* ---- the net's lanes ---- */

int rayc__lane_init(rayc__net *net)
{
	rayc__lanes *ls = calloc(1, sizeof(*ls));

	if (ls == NULL)
		return RAYC_ENOMEM;
	ls->lfd = -1;
	rayc__mutex_init(&ls->mu);
	net->lanes = ls;
	return RAYC_OK;
}

void rayc__lane_listen(rayc__net *net)
{
	rayc__lanes *ls = net->lanes;
	nng_sockaddr a;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (!rayc__lane_on() || net->lst == NULL ||
	    nng_stream_listener_get_addr(net->lst, NNG_OPT_LOCADDR, &a) != 0)
		return;
	if (a.s_family == NNG_AF_INET)
		a.s_in.sa_port = 0;
	else if (a.s_family == NNG_AF_INET6)
		a.s_in6.sa_port = 0;
	if (!to_sockaddr(&a, &ss, &len))
		return;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	len = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
	                              : sizeof(struct sockaddr_in6);
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, len) != 0 ||
	    listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
		if (fd >= 0)
			close(fd);
		rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-LANE",
		          "no bulk lane listener: objects go over the mesh");
		return;
	}
	ls->lfd = fd;
	if (rayc__thread_start(&ls->acc, accept_main, net) != 0) {
		close(fd);
		ls->lfd = -1;
		return;
	}
	ls->acc_started = true;
	atomic_store(&ls->port,
	             ntohs(ss.ss_family == AF_INET
	                           ? ((struct sockaddr_in *)&ss)->sin_port
	                           : ((struct sockaddr_in6 *)&ss)->sin6_port));
}

uint16_t rayc__lane_port(rayc__net *net)
{
	return net->lanes != NULL ? atomic_load(&net->lanes->port) : 0;
}

void rayc__lane_conn_lost(rayc__net *net, rayc__conn *c)
{
	rayc__lanes *ls = net->lanes;

	if (ls == NULL)
		return;
	rayc__mutex_lock(&ls->mu);
	for (rayc__lane *L = ls->all; L != NULL; L = L->next)
		if (L->c == c)
			lane_kill_locked(L);
	rayc__mutex_unlock(&ls->mu);
}

void rayc__lane_reap(rayc__net *net)
{
	rayc__lanes *ls = net->lanes;
	rayc__lane *dead = NULL;

	if (ls == NULL)
		return;
	rayc__mutex_lock(&ls->mu);
	rayc__lane **pp = &ls->all;
	while (*pp != NULL) {
		rayc__lane *L = *pp;
		if (atomic_load(&L->done)) {
			*pp = L->next;
			L->next = dead;
			dead = L;
		} else {
			pp = &L->next;
		}
	}
	rayc__mutex_unlock(&ls->mu);
	while (dead != NULL) {
		rayc__lane *n = dead->next;
		rayc__thread_join(&dead->th);
		lane_free(net, dead);
		dead = n;
	}
}

void rayc__lane_stop(rayc__net *net)
{
	rayc__lanes *ls = net->lanes;

	if (ls == NULL)
		return;
	atomic_store(&ls->stop, true);
	if (ls->lfd >= 0)
		(void)shutdown(ls->lfd, SHUT_RDWR); /* accept returns */
	if (ls->acc_started)
		rayc__thread_join(&ls->acc);
	ls->acc_started = false;
	rayc__mutex_lock(&ls->mu);
	for (rayc__lane *L = ls->all; L != NULL; L = L->next) {
		lane_kill_locked(L);
		atomic_store(&L->done, true); /* joined just below */
	}
	rayc__mutex_unlock(&ls->mu);
	rayc__lane_reap(net);
}

void rayc__lane_free(rayc__net *net)
{
	rayc__lanes *ls = net->lanes;

	if (ls == NULL)
		return;
	if (ls->lfd >= 0)
		close(ls->lfd);
	rayc__mutex_fini(&ls->mu);
	free(ls);
	net->lanes = NULL;
}
