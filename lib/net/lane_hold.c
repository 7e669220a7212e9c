/* lane_hold.c -- the holder's end of a bulk lane (lane.c says what a
 * lane is): the listener and its accepting thread, checking a dialer's
 * proof against our connections from it, and the thread that writes the
 * transfers queued on the lane as CHUNK frames.
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

/* Finds the open connection from peer whose fetcher->holder key made
 * mac; returns it with a ref, or NULL. */
rayc__conn *rayc__lane_find_conn(rayc__net *net, uint32_t peer,
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
			rayc__lane_hello_mac(v[i]->rx.key, hf, nonce_h, want);
			if (sodium_memcmp(want, hf + HELLO_F - MAC, MAC) == 0) {
				found = v[i];
				continue; /* keeps its ref */
			}
		}
		rayc__conn_unref(v[i]);
	}
	return found;
}

/* The hellos of an accepted lane (hh ours, hf the dialer's): 0 if they
 * failed, 1 for a bulk lane, 2 for a task lane (tlane.c). */
static int hellos(rayc__net *net, rayc__lane *L, uint8_t *hh, uint8_t *hf,
                  int64_t by)
{
	memcpy(hh, LANE_MAGIC, 8);
	rayc__lane_put32(hh + 8, LANE_VERSION);
	rayc__lane_put32(hh + 12, net->self);
	randombytes_buf(hh + 16, NONCE);
	if (!rayc__lane_io_by(L->fd, hh, HELLO_H, false, by) ||
	    !rayc__lane_io_by(L->fd, hf, HELLO_F, true, by))
		return 0;
	if (memcmp(hf, LANE_MAGIC, 8) == 0)
		return rayc__lane_on() ? 1 : 0;
	return memcmp(hf, TLANE_MAGIC, 8) == 0 && rayc__tlane_on() ? 2 : 0;
}

static bool holder_setup(rayc__net *net, rayc__lane *L, const uint8_t *hh,
                         const uint8_t *hf, int64_t by)
{
	rayc__lanes *ls = net->lanes;
	uint8_t conf[MAC];
	unsigned char dkey[32];
	uint32_t fid, hid;

	fid = rayc__lane_get32(hf + 8);
	hid = rayc__lane_get32(hf + 12);
	if (hid != net->self || fid == 0 || fid >= RAYC__MAX_PEERS ||
	    fid == net->self)
		return false;
	rayc__conn *c = rayc__lane_find_conn(net, fid, hf, hh + 16);
	if (c == NULL)
		return false;
	rayc__lane_data_key(c->tx.key, LANE_KEY_DATA, fid, net->self, hh + 16,
	                    hf + 16, dkey);
	rayc__lane_confirm_mac(dkey, conf);
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
			rayc__lane_kill_locked(old); /* a peer has one lane to us */
		ls->from[fid] = L;
		atomic_store(&L->state, LANE_UP);
		up = true;
	}
	rayc__mutex_unlock(&ls->mu);
	if (atomic_load(&c->state) == RAYC__CONN_CLOSED)
		return false;
	return up && rayc__lane_io_by(L->fd, conf, sizeof(conf), false, by);
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
		if (atomic_exchange(&rayc__lane_tamper_once, 0))
			b->p[f + RAYC__WIRE_TAG_AT] ^= 1;
		struct iovec iov[2] = {
			{ b->p + f, RAYC__WIRE_HDR + RAYC__CHUNK_SUB },
			{ (void *)(x->data + x->off), n },
		};
		if (!sendv_full(L->fd, iov, n > 0 ? 2 : 1))
			return false;
		atomic_fetch_add_explicit(&rayc__lane_bytes_out, n,
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

	uint8_t hh[HELLO_H], hf[HELLO_F];
	int64_t by = rayc__now_ns() + (int64_t)RAYC__LANE_SETUP_MS * 1000000;
	int kind = hellos(net, L, hh, hf, by);
	bool up = kind == 1 && holder_setup(net, L, hh, hf, by);
	rayc__mutex_lock(&ls->mu);
	ls->setups--;
	rayc__mutex_unlock(&ls->mu);
	if (kind == 2) {
		/* The rest of its set-up writes only (no wait on the dialer
		 * beyond the socket's buffer, by the same deadline). */
		rayc__tlane_serve(net, L, hh, hf, by);
		rayc__lane_end(net, L);
		return NULL;
	}
	if (!up) {
		rayc__lane_end(net, L);
		return NULL;
	}
	/* A reader that stops reading holds our pins no longer than this. */
	int64_t wr = net->timeout_ns / 1000000 * 2;
	if (wr < 10000)
		wr = 10000;
	struct timeval tv = { .tv_sec = wr / 1000,
		              .tv_usec = (wr % 1000) * 1000 };
	(void)setsockopt(L->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
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
		rayc__lane_broke(net, L, "write failed or timed out");
	rayc__lane_end(net, L); /* what is still queued goes in rayc__lane_drop */
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
		rayc__lane *L = rayc__lane_new(net, 0);
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
			rayc__lane_drop(net, L);
			continue;
		}
		ls->setups++;
		L->started = true;
		L->next = ls->all;
		ls->all = L;
		rayc__mutex_unlock(&ls->mu);
	}
}

void rayc__lane_listen(rayc__net *net)
{
	rayc__lanes *ls = net->lanes;
	nng_sockaddr a;
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if ((!rayc__lane_on() && !rayc__tlane_on()) || net->lst == NULL ||
	    nng_stream_listener_get_addr(net->lst, NNG_OPT_LOCADDR, &a) != 0)
		return;
	if (a.s_family == NNG_AF_INET)
		a.s_in.sa_port = 0;
	else if (a.s_family == NNG_AF_INET6)
		a.s_in6.sa_port = 0;
	if (!rayc__lane_sockaddr(&a, &ss, &len))
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
		          "no lane listener: objects and tasks go over the "
		          "mesh");
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
