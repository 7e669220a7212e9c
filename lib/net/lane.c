/* lane.c -- bulk lanes: a plain TCP socket per pair of peers that carries
 * the bytes of large objects beside the NNG connection.  This file: the
 * lanes' tables and life cycle, the set-up's keys and socket helpers;
 * lane_fetch.c the fetcher's end, lane_hold.c the holder's (lane_int.h).
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

#include "net/lane_int.h"
#include "testing.h"

_Atomic uint64_t rayc__lane_bytes_in, rayc__lane_bytes_out, rayc__lanes_up;
_Atomic int rayc__lane_tamper_once, rayc__lane_stall_ms;

void rayc__test_lane_stall(int ms)
{
	atomic_store(&rayc__lane_stall_ms, ms);
}

void rayc__test_lane_counts(uint64_t *in, uint64_t *out, uint64_t *up)
{
	*in = atomic_load(&rayc__lane_bytes_in);
	*out = atomic_load(&rayc__lane_bytes_out);
	*up = atomic_load(&rayc__lanes_up);
}

void rayc__test_lane_tamper(void)
{
	atomic_store(&rayc__lane_tamper_once, 1);
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

/* Receives or sends exactly n bytes of a set-up, all by deadline (ns):
 * trickling bytes do not extend it. */
bool rayc__lane_io_by(int fd, void *p, size_t n, bool rd, int64_t deadline)
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

/* nng_sockaddr (TCP) to a socket address; false for anything else. */
bool rayc__lane_sockaddr(const nng_sockaddr *a, struct sockaddr_storage *ss,
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

/* ---- keys ---- */

/* The fetcher's MAC over its hello's first 32 bytes and nonce_h, keyed
 * with the fetcher->holder frame key. */
void rayc__lane_hello_mac(const unsigned char key[32], const uint8_t *hello,
                      const uint8_t *nonce_h, uint8_t out[MAC])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, key, 32, MAC);
	crypto_generichash_update(&st, hello, HELLO_F - MAC);
	crypto_generichash_update(&st, nonce_h, NONCE);
	crypto_generichash_final(&st, out, MAC);
	sodium_memzero(&st, sizeof(st));
}

/* The dialer's half of a set-up, up to the listener's confirmation
 * (lane.c's comment): the listener's hello read into hh (its version and
 * id checked), ours made in hf (magic, our id, its id, a fresh nonce,
 * rayc__lane_hello_mac) and written, its confirmation read into conf,
 * all by deadline `by`.  ready, if not NULL, is called before each read
 * (false: give up).  The caller derives its keys and checks conf. */
bool rayc__lane_dialer_hello(rayc__net *net, rayc__lane *L, int fd,
                             const char *magic, int64_t by,
                             bool (*ready)(rayc__net *net, rayc__lane *L,
                                           int fd, int64_t by),
                             uint8_t hh[HELLO_H], uint8_t hf[HELLO_F],
                             uint8_t conf[MAC])
{
	if ((ready != NULL && !ready(net, L, fd, by)) ||
	    !rayc__lane_io_by(fd, hh, HELLO_H, true, by) ||
	    memcmp(hh, LANE_MAGIC, 8) != 0 ||
	    rayc__lane_get32(hh + 8) != LANE_VERSION ||
	    rayc__lane_get32(hh + 12) != L->peer)
		return false;
	memcpy(hf, magic, 8);
	rayc__lane_put32(hf + 8, net->self);
	rayc__lane_put32(hf + 12, L->peer);
	randombytes_buf(hf + 16, NONCE);
	rayc__lane_hello_mac(L->c->tx.key, hf, hh + 16, hf + HELLO_F - MAC);
	return rayc__lane_io_by(fd, hf, HELLO_F, false, by) &&
	       (ready == NULL || ready(net, L, fd, by)) &&
	       rayc__lane_io_by(fd, conf, MAC, true, by);
}

/* The lane's data key, from the holder->fetcher frame key and both
 * nonces; and the holder's confirmation under it. */
void rayc__lane_data_key(const unsigned char key[32], const char *label,
                         uint32_t fetcher, uint32_t holder,
                         const uint8_t *nonce_h, const uint8_t *nonce_f,
                         unsigned char out[32])
{
	crypto_generichash_state st;
	uint8_t ids[8];

	rayc__lane_put32(ids, fetcher);
	rayc__lane_put32(ids + 4, holder);
	crypto_generichash_init(&st, key, 32, 32);
	/* The label with its NUL: no label is a prefix of another. */
	crypto_generichash_update(&st, (const uint8_t *)label,
	                          strlen(label) + 1);
	crypto_generichash_update(&st, ids, sizeof(ids));
	crypto_generichash_update(&st, nonce_h, NONCE);
	crypto_generichash_update(&st, nonce_f, NONCE);
	crypto_generichash_final(&st, out, 32);
	sodium_memzero(&st, sizeof(st));
}

void rayc__lane_confirm_mac(const unsigned char dkey[32], uint8_t out[MAC])
{
	crypto_generichash(out, MAC, (const uint8_t *)"rayc lane ok", 12,
	                   dkey, 32);
}

/* ---- lanes ---- */

rayc__lane *rayc__lane_new(rayc__net *net, uint32_t peer)
{
	rayc__lane *L = calloc(1, sizeof(*L));

	if (L == NULL)
		return NULL;
	L->net = net;
	L->peer = peer;
	L->fd = -1;
	atomic_init(&L->state, LANE_SETUP);
	rayc__mutex_init(&L->tx_mu);
	return L;
}

bool rayc__lane_dead(rayc__lane *L)
{
	return atomic_load(&L->state) == LANE_DEAD;
}

/* Wakes L's thread out of whatever it waits in (lanes->mu held). */
void rayc__lane_kill_locked(rayc__lane *L)
{
	atomic_store(&L->state, LANE_DEAD);
	if (L->fd >= 0)
		(void)shutdown(L->fd, SHUT_RDWR);
	rayc__event_set(&L->ev);
}

/* After its thread ended (joined): lets go of what L holds. */
void rayc__lane_drop(rayc__net *net, rayc__lane *L)
{
	rayc__xout *x = L->xhead;

	while (x != NULL) {
		rayc__xout *n = x->next;
		rayc__remote_xout_done(net, x);
		x = n;
	}
	/* A sender that found a task lane in the tables before it left
	 * them may still be writing (it holds tx_mu). */
	rayc__mutex_lock(&L->tx_mu);
	rayc__mutex_unlock(&L->tx_mu);
	rayc__mutex_fini(&L->tx_mu);
	rayc__wbuf_fini(&L->tx);
	if (L->fd >= 0)
		close(L->fd);
	if (L->c != NULL)
		rayc__conn_unref(L->c);
	sodium_memzero(&L->w, sizeof(L->w));
	sodium_memzero(&L->rx, sizeof(L->rx));
	free(L->pend);
	free(L);
}

/* L's thread ends: it leaves the tables (it stays in the list until it
 * is joined). */
void rayc__lane_end(rayc__net *net, rayc__lane *L)
{
	rayc__lanes *ls = net->lanes;

	rayc__mutex_lock(&ls->mu);
	atomic_store(&L->state, LANE_DEAD);
	if (ls->to[L->peer] == L)
		ls->to[L->peer] = NULL;
	if (ls->from[L->peer] == L)
		ls->from[L->peer] = NULL;
	if (ls->tto[L->peer] == L)
		ls->tto[L->peer] = NULL;
	if (ls->tfrom[L->peer] == L)
		ls->tfrom[L->peer] = NULL;
	rayc__mutex_unlock(&ls->mu);
	atomic_store(&L->done, true);
}

/* A lane that was up broke: the connection it is bound to closes too,
 * so the fetcher asks again for what was coming. */
void rayc__lane_broke(rayc__net *net, rayc__lane *L, const char *why)
{
	if (atomic_load(&net->lanes->stop) || L->c == NULL ||
	    atomic_load(&L->c->state) == RAYC__CONN_CLOSED)
		return;
	rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-LANE",
	          "bulk lane with peer %u: %s", L->peer, why);
	rayc__conn_close(L->c, "its bulk lane broke");
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
			rayc__lane_kill_locked(L);
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
		rayc__lane_drop(net, dead);
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
		rayc__lane_kill_locked(L);
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
