/* lane_fetch.c -- the fetcher's end of a bulk lane (lane.c says what a
 * lane is): asking for a lane when a GO is due, dialing and proving the
 * connection's keys, GOs waiting at most RAYC__LANE_WAIT_MS for it, and
 * the thread that receives CHUNK frames straight into their transfers.
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

#include "net/lane_int.h"
#include "testing.h"

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

/* Receives exactly n bytes (a lane's frames, blocking): 1 once all are
 * in; 0 if the other end closed before the first; -1 on an error, or if
 * it closed part way. */
static int recv_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	size_t want = n;

	while (n > 0) {
		ssize_t r = recv(fd, b, n, MSG_WAITALL);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r == 0 && n == want ? 0 : -1;
		b += r;
		n -= (size_t)r;
	}
	return 1;
}

static bool recv_full(int fd, void *p, size_t n)
{
	return recv_all(fd, p, n) == 1;
}

/* The holder closed L between frames: it stops, or died.  L is dead from
 * here on (no new GO goes to it).  Only a transfer from that peer still
 * under way needs the connection closed (the fetcher then asks again);
 * otherwise closing it would throw away what it has received and not
 * yet read, such as the SHUTDOWN that came just before this end (the
 * member then stayed until it found itself without a coordinator, 3
 * heartbeat timeouts later).  A dead peer's connection ends by
 * itself. */
static bool closed_between_frames(rayc__net *net, rayc__lane *L)
{
	rayc__mutex_lock(&net->lanes->mu);
	atomic_store(&L->state, LANE_DEAD);
	rayc__mutex_unlock(&net->lanes->mu);
	return !rayc__remote_fetching_from(net, L->peer);
}

/* Connects within RAYC__LANE_SETUP_MS, giving up early once L is dead. */
int rayc__lane_dial(rayc__net *net, rayc__lane *L)
{
	const nng_sockaddr *a = &L->to;
	struct sockaddr_storage ss;
	socklen_t len;

	if (!rayc__lane_sockaddr(a, &ss, &len))
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

static bool fetcher_setup(rayc__net *net, rayc__lane *L, int fd)
{
	uint8_t hh[HELLO_H], hf[HELLO_F], conf[MAC], want[MAC];
	unsigned char dkey[32];
	int64_t by = rayc__now_ns() + (int64_t)RAYC__LANE_SETUP_MS * 1000000;

	if (!rayc__lane_dialer_hello(net, L, fd, LANE_MAGIC, by, wait_readable,
	                             hh, hf, conf))
		return false;
	rayc__lane_data_key(L->c->rx.key, LANE_KEY_DATA, net->self, L->peer,
	                    hh + 16, hf + 16, dkey);
	rayc__lane_confirm_mac(dkey, want);
	bool ok = sodium_memcmp(conf, want, MAC) == 0;
	if (ok) {
		memcpy(L->w.key, dkey, 32);
		L->w.ctr = 0;
		L->w.enc = false;
	}
	sodium_memzero(dkey, sizeof(dkey));
	return ok;
}

static void (*_Atomic piece_hook)(uint32_t src);

void rayc__test_set_lane_piece_hook(void (*fn)(uint32_t src))
{
	atomic_store(&piece_hook, fn);
}

/* Receives CHUNK frames until the lane ends; false if it broke (not
 * merely shut down). */
static bool read_frames(rayc__net *net, rayc__lane *L)
{
	uint8_t hs[RAYC__WIRE_HDR + RAYC__CHUNK_SUB];
	const uint8_t *sub = hs + RAYC__WIRE_HDR;
	bool good = false;

	for (;;) {
		/* Killed: what its socket still holds was for transfers
		 * given up (chunk_begin refuses it anyway). */
		if (atomic_load(&L->state) == LANE_DEAD)
			return true;
		int got = recv_all(L->fd, hs, sizeof(hs));
		if (got != 1 && atomic_load(&L->state) == LANE_DEAD)
			return true;
		if (got == 0)
			return closed_between_frames(net, L);
		if (got < 0)
			return false;
		rayc__whdr h;
		if (!rayc__whdr_parse(hs, RAYC__WIRE_MAX_FRAME, &h) ||
		    h.type != RAYC__MSG_CHUNK || h.sender != L->peer ||
		    h.len < RAYC__CHUNK_SUB ||
		    h.len - RAYC__CHUNK_SUB > RAYC__LANE_FRAME_MAX)
			return false;
		size_t n = h.len - RAYC__CHUNK_SUB;
		uint8_t *dst = NULL;
		rayc__xin *x = NULL;
		int r = rayc__remote_lane_chunk_begin(L->c, L, sub, n, &dst,
		                                      &x);
		/* Its transfer is being written into by the connection's
		 * thread for a moment (a piece of another stream of it). */
		for (int64_t by = rayc__now_ns() + (int64_t)1000000000;
		     r == RAYC__CHUNK_BUSY && rayc__now_ns() < by;) {
			struct timespec ts = { 0, 50000 };
			(void)nanosleep(&ts, NULL);
			r = rayc__remote_lane_chunk_begin(L->c, L, sub, n,
			                                  &dst, &x);
		}
		if (r < 0 || r == RAYC__CHUNK_BUSY)
			return false;
		void (*hook)(uint32_t) = atomic_load_explicit(
		        &piece_hook, memory_order_relaxed);
		if (r == 1 && hook != NULL)
			hook(L->peer);
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
			atomic_fetch_add_explicit(&rayc__lane_bytes_in, n,
			                          memory_order_relaxed);
		if (!good) {
			good = true; /* the lane works: failures start over */
			rayc__mutex_lock(&net->lanes->mu);
			net->lanes->fails[L->peer] = 0;
			rayc__mutex_unlock(&net->lanes->mu);
		}
	}
}

bool rayc__lane_connect(rayc__net *net, rayc__lane *L,
                        bool (*setup)(rayc__net *net, rayc__lane *L, int fd))
{
	rayc__lanes *ls = net->lanes;
	int fd = rayc__lane_dial(net, L);
	bool up = false;

	if (fd >= 0) {
		rayc__mutex_lock(&ls->mu);
		L->fd = fd;
		bool dead = atomic_load(&L->state) == LANE_DEAD;
		rayc__mutex_unlock(&ls->mu);
		up = !dead && setup(net, L, fd);
	}
	if (up) {
		rayc__mutex_lock(&ls->mu);
		int want = LANE_SETUP;
		up = atomic_compare_exchange_strong(&L->state, &want, LANE_UP);
		rayc__mutex_unlock(&ls->mu);
	}
	return up;
}

static void *fetcher_main(void *arg)
{
	rayc__lane *L = arg;
	rayc__net *net = L->net;
	rayc__lanes *ls = net->lanes;
	bool up = false;

	/* Test (rayc__test_lane_stall): a set-up that takes this long. */
	for (int t = atomic_load(&rayc__lane_stall_ms);
	     t > 0 && atomic_load(&L->state) != LANE_DEAD; t -= 50) {
		rayc__sleep_ms(50);
		late_check(net, L);
	}
	up = rayc__lane_connect(net, L, fetcher_setup);
	if (!up) {
		rayc__mutex_lock(&ls->mu);
		lane_failed_locked(ls, L->peer);
		rayc__mutex_unlock(&ls->mu);
		rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-LANE",
		          "no bulk lane to peer %u: its objects come over the "
		          "connection", L->peer);
	} else {
		atomic_fetch_add(&rayc__lanes_up, 1);
	}
	/* A GO may be queued up to the moment the state left SETUP. */
	send_pending(net, L, up);
	if (up && !read_frames(net, L)) {
		rayc__mutex_lock(&ls->mu);
		lane_failed_locked(ls, L->peer);
		rayc__mutex_unlock(&ls->mu);
		rayc__lane_broke(net, L, "read failed or bad frame");
	}
	rayc__lane_end(net, L);
	send_pending(net, L, false); /* none: the state is no longer SETUP */
	return NULL;
}

bool rayc__lane_go(rayc__net *net, uint32_t src, rayc_object_id id)
{
	rayc__lanes *ls = net->lanes;
	rayc__conn *c = NULL;

	if (ls == NULL || src >= RAYC__MAX_PEERS ||
	    atomic_load(&net->encrypt) || !rayc__lane_on())
		return false; /* (a task lane's offer says the port too) */
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
		rayc__lane *nl = rayc__lane_new(net, src);
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
			rayc__lane_drop(net, nl);
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
				rayc__lane_drop(net, nl);
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
				rayc__lane_kill_locked(nl);
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
