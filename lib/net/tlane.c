/* tlane.c -- task lanes: TASK and TASK_DONE frames on a plain TCP socket
 * between an owner and an executor, beside their NNG connection, as bulk
 * lanes carry object bytes (lane.c).
 *
 * Why.  Over NNG a frame received goes from NNG's poller thread to one of
 * its task threads, and each receive posted costs a readv that finds
 * nothing and an epoll_ctl: a 64-byte round trip on NNG's stream API
 * alone took 23.5 syscalls and 8.3 context switches (both sides), 2.8x a
 * raw TCP round trip, more than issue 10's goal for a whole remote task
 * (16, 6, 2x).  The same round trip on a blocking socket with a thread
 * at each end that hands each message to another thread, as a task lane
 * does, took 10.5 syscalls, 5 context switches, 1.8x
 * (`rayc-bench baseline_lane_handoff_us`, docs/benchmarks.md).
 *
 * What goes on a lane.  TASK frames of plain tasks and of actors' method
 * calls (not constructor or destructor runs: the executor checks) sent
 * for the first time (a task sent again, after lost arguments were
 * rebuilt, goes over the connection, behind the FREEs said to that peer
 * meanwhile) while the executor has few of our tasks (fewer than
 * RAYC__TLANE_INFLIGHT and than owner.c's corking threshold: a burst
 * beyond goes corked over the connection, a write per batch instead of
 * per task); and TASK_DONE frames answering a TASK that came on the
 * lane and was not sent again, if this peer said BORROW_ADD to the owner
 * at no time since the TASK came (a borrow must reach the owner before
 * the answer that lets it drop the task's hold on the object; the two
 * streams are not ordered with each other).  Frames up to
 * RAYC__TLANE_FRAME_MAX (the owner checks before writing); larger ones,
 * and everything else, go over the connection.  Nothing else needs an
 * order with these: tasks are independent of each other, an answer is
 * matched to its dispatch, and a record still running ignores an older
 * dispatch that arrives late (xrec.c).  Except an actor's calls: its host
 * (or owner, for a call made through a proxy) queues them in the order
 * they arrive, and a lane and the connection are read by different
 * threads.  So a call goes on the lane only if its actor runs one call at
 * a time and is owned here (a call held back waits for calls that cannot
 * be waiting for it), none of that actor's calls in flight went over the
 * connection and none waits behind it (a burst goes corked over the
 * connection), and over the connection only if none in flight went on
 * the lane: else it waits in the mailbox for those to end (owner.c:
 * call_may_lane, RAYC__SEND_LATER; rayc__actor.lane_calls counts them).
 * A call sent again goes over the connection, behind the ones sent
 * before it, as any task does (rayc__remote_resend_locked).

 * Set-up.  An executor that receives a TASK over a connection says LANE
 * (its lane listener's port) on it once.  The owner's next TASK to it
 * dials that port (its own thread; the TASK and the ones after it go
 * over the connection until the lane is up), and the two prove over it
 * that they hold the keys of that connection, as for a bulk lane (lane.c)
 * with the dialer's magic "RAYCTASK".  Each direction has its own key,
 * BLAKE2b keyed with that direction's frame key over a label, both ids
 * and both nonces; frames carry the usual header and Poly1305 tag
 * (wire.h), numbered per direction from 0.
 *
 * Running where it is read.  The executor's lane thread hands the TASK on
 * as NNG's thread would (rayc__remote_on_task); if the function (or an
 * actor's method, when the mailbox starts the call) is quick (sched.h:
 * its runs took under RAYC__QUICK_NS so far) and a CPU is free,
 * it runs the task itself instead of waking a worker (sched.c:
 * rayc__sched_serve_end_locked), and writes its TASK_DONE: no hand-off at
 * either end of the executor (a 64-byte round trip so shaped took 7
 * syscalls, 3 context switches, 1.5x raw TCP: baseline_lane_inline_us).
 * Meanwhile the lane is not read, which a task that waits must not make
 * anyone wait for: calls nesting across two peers, each run on a lane
 * thread waiting for a call to the other, would wait for ever for a TASK
 * behind the waiting run on its own lane.  So a run here that waits (in
 * rayc_get or rayc_wait: sched.c, rayc__sched_block_locked) closes the
 * lane with its connection at once (rayc__tlane_on_block): what the owner
 * sent on it goes again over the next connection and is read by NNG's
 * threads, and that function never runs on a lane thread again.  At
 * shutdown the runtime tells waiters it stops (rayc__sched_wake_stop)
 * before the lanes' threads are joined.
 *
 * Writes never wait.  The sender (the thread sending the TASK, or ending
 * the task) writes the frame itself with one send(MSG_DONTWAIT) under the
 * lane's tx_mu.  What is in flight on a lane is bounded: a TASK goes on it
 * only while the peer has fewer than RAYC__TLANE_INFLIGHT of our tasks,
 * lanes and connection together, and each answer on it is to one of
 * those, so at most that many frames of at most RAYC__TLANE_FRAME_MAX are
 * unread each way, well within the send buffer (RAYC__TLANE_SNDBUF; a
 * kernel that gives less than twice that bound makes no lane): the
 * socket always takes a frame whole.  If it ever does not, the lane
 * broke (and the owner tries no lane to that peer for a while).
 *
 * Failure.  A lane that breaks (a short or failed write, a read error, a
 * bad tag, a frame it should not carry) closes the connection it is bound
 * to: the owner sends its tasks in flight again over the next one, and
 * the executor answers them from its records or runs them (xrec.c,
 * relink.c), as for any lost connection.  The owner's end closing
 * cleanly between frames closes the connection too while tasks are in
 * flight to that peer (one may have been on the lane); the executor's
 * end merely stops answering on it.  A lane that fails to set up costs
 * nothing: tasks keep going over the connection, and that peer gets no
 * task lane for RAYC__LANE_RETRY_NS, doubling with each failure in a row.
 * A connection that closes takes its lanes with it.  Not used on
 * connections that encrypt, or with RAYC_TASK_LANE=0.
 *
 * Threads.  One per lane at each end, blocked in recv(); the executor's
 * is the bulk lanes' acceptor's thread for that socket (lane_hold.c).
 * Lock order: rt->mu, then lanes->mu, then a lane's tx_mu.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include "net/lane_int.h"
#include "testing.h"

_Thread_local bool rayc__tlane_reading;
static _Thread_local rayc__lane *reading_lane; /* the executor's end */
static _Atomic uint64_t tasks_out, tasks_in, dones_out, dones_in;
static _Atomic int tamper_once;

void rayc__test_tlane_counts(uint64_t *task_out, uint64_t *task_in,
                             uint64_t *done_out, uint64_t *done_in)
{
	*task_out = atomic_load(&tasks_out);
	*task_in = atomic_load(&tasks_in);
	*done_out = atomic_load(&dones_out);
	*done_in = atomic_load(&dones_in);
}

void rayc__test_tlane_tamper(void)
{
	atomic_store(&tamper_once, 1);
}

void rayc__test_tlane_cut(void)
{
	rayc__rt *rt = rayc__g;
	rayc__net *net = rt != NULL ? rayc__net_get(rt) : NULL;

	if (net == NULL)
		return;
	rayc__lanes *ls = net->lanes;
	if (ls != NULL) {
		rayc__mutex_lock(&ls->mu);
		for (rayc__lane *L = ls->all; L != NULL; L = L->next)
			if (L->task && L->fd >= 0)
				(void)shutdown(L->fd, SHUT_RDWR);
		rayc__mutex_unlock(&ls->mu);
	}
	rayc__net_put(net);
}

bool rayc__tlane_on(void)
{
	const char *e = getenv("RAYC_TASK_LANE");

	return e == NULL || strcmp(e, "0") != 0;
}

/* Asks for the send buffer; false if what the kernel gives cannot hold
 * what may be in flight on a lane (net.core.wmem_max set very low): no
 * lane then. */
static bool sndbuf(int fd)
{
	int n = RAYC__TLANE_SNDBUF;
	socklen_t len = sizeof(n);

	(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof(n));
	if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, &len) != 0)
		return false;
	return (size_t)n >= 2 * RAYC__TLANE_INFLIGHT * RAYC__TLANE_FRAME_MAX;
}

/* A TASK on the lane is a plain task's or an actor's call (its
 * constructor and destructor runs go over the connection). */
static bool lane_task(const uint8_t *p, size_t n)
{
	rayc__rd rd;

	rayc__rd_init(&rd, p, n);
	(void)rayc__r_u64(&rd);
	(void)rayc__r_u64(&rd);
	(void)rayc__r_u32(&rd);
	uint32_t name = rayc__r_u32(&rd); /* the function's name: skipped */
	(void)rayc__r_bytes(&rd, name);
	(void)rayc__r_u32(&rd);
	(void)rayc__r_u32(&rd);
	(void)rayc__r_u8(&rd);
	int akind = rayc__r_u8(&rd);
	return !rd.bad && (akind == RAYC__AK_NONE || akind == RAYC__AK_CALL);
}

void rayc__tlane_on_block(void)
{
	rayc__lane *L = reading_lane;

	if (L == NULL)
		return;
	reading_lane = NULL; /* once */
	rayc__lane_broke(L->net, L, "a task run on its thread waits");
}

/* ---- reading ---- */

/* Reads frames of type want from L's peer until the lane ends, handing
 * each to on (with L's connection).  True if it ended by a kill or by the
 * other end closing between frames; false if it broke. */
static bool read_frames(rayc__net *net, rayc__lane *L, int want,
                        void (*on)(rayc__conn *, rayc__rd *), bool *eof)
{
	size_t cap = 4 * RAYC__TLANE_FRAME_MAX, have = 0;
	uint8_t *buf = malloc(cap);

	*eof = false;
	if (buf == NULL)
		return false;
	for (;;) {
		ssize_t r = recv(L->fd, buf + have, cap - have, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (atomic_load(&L->state) == LANE_DEAD) {
			free(buf);
			return true;
		}
		if (r <= 0) {
			free(buf);
			*eof = r == 0 && have == 0;
			return *eof;
		}
		have += (size_t)r;
		size_t off = 0;
		while (have - off >= RAYC__WIRE_HDR) {
			uint8_t *hdr = buf + off;
			rayc__whdr h;
			if (!rayc__whdr_parse(hdr, RAYC__TLANE_FRAME_MAX, &h) ||
			    h.type != want || h.sender != L->peer ||
			    RAYC__WIRE_HDR + (size_t)h.len > RAYC__TLANE_FRAME_MAX) {
				free(buf);
				return false;
			}
			if (have - off < RAYC__WIRE_HDR + (size_t)h.len)
				break;
			uint8_t *p = hdr + RAYC__WIRE_HDR;
			if (!rayc__wire_check(&L->rx, hdr, p, h.len, NULL, 0)) {
				rayc__log(RAYC_LOG_WARN, "RAYC-NET-BADFRAME",
				          "frame with a bad tag on the task lane "
				          "with peer %u: closing its connection",
				          L->peer);
				rayc__conn_count_refused();
				free(buf);
				return false;
			}
			/* Its connection closed meanwhile (its lane is being
			 * killed): nothing more is read, as on the
			 * connection itself. */
			if (atomic_load(&L->c->state) == RAYC__CONN_CLOSED) {
				free(buf);
				return true;
			}
			if (want == RAYC__MSG_TASK && !lane_task(p, h.len)) {
				free(buf);
				return false; /* not for a lane */
			}
			atomic_fetch_add_explicit(want == RAYC__MSG_TASK
			                                  ? &tasks_in
			                                  : &dones_in,
			                          1, memory_order_relaxed);
			rayc__rd rd;
			rayc__rd_init(&rd, p, h.len);
			on(L->c, &rd);
			off += RAYC__WIRE_HDR + (size_t)h.len;
		}
		memmove(buf, buf + off, have - off);
		have -= off;
	}
}



/* ---- the executor's end ---- */

void rayc__tlane_serve(rayc__net *net, rayc__lane *L, const uint8_t *hh,
                       const uint8_t *hf, int64_t by)
{
	rayc__lanes *ls = net->lanes;
	uint32_t oid = rayc__lane_get32(hf + 8);
	uint8_t conf[MAC];

	if (!rayc__tlane_on() || rayc__lane_get32(hf + 12) != net->self ||
	    oid == 0 || oid >= RAYC__MAX_PEERS || oid == net->self)
		return;
	rayc__conn *c = rayc__lane_find_conn(net, oid, hf, hh + 16);
	if (c == NULL)
		return;
	rayc__lane_data_key(c->tx.key, LANE_KEY_DONE, oid, net->self, hh + 16,
	                    hf + 16, L->w.key);
	rayc__lane_data_key(c->rx.key, LANE_KEY_TASK, oid, net->self, hh + 16,
	                    hf + 16, L->rx.key);
	rayc__lane_confirm_mac(L->w.key, conf);
	if (!sndbuf(L->fd)) {
		rayc__conn_unref(c);
		return;
	}
	/* Bound to c under lanes->mu, and c looked at after: a close of c
	 * either finds the lane bound (rayc__lane_conn_lost) or is seen
	 * here.  Up, it is held (tx_mu) until the confirmation is written:
	 * an answer sent on it meanwhile would come before it. */
	rayc__mutex_lock(&ls->mu);
	L->c = c;
	L->peer = oid;
	L->task = true;
	bool up = false;
	if (!atomic_load(&ls->stop) && atomic_load(&L->state) == LANE_SETUP) {
		rayc__lane *old = ls->tfrom[oid];
		if (old != NULL)
			rayc__lane_kill_locked(old); /* one task lane per peer */
		ls->tfrom[oid] = L;
		atomic_store(&L->state, LANE_UP);
		rayc__mutex_lock(&L->tx_mu);
		up = true;
	}
	rayc__mutex_unlock(&ls->mu);
	if (!up)
		return;
	bool conf_ok = atomic_load(&c->state) != RAYC__CONN_CLOSED &&
	               rayc__lane_io_by(L->fd, conf, sizeof(conf), false, by);
	rayc__mutex_unlock(&L->tx_mu);
	if (!conf_ok) {
		/* Answers may have gone on it: its connection closes with
		 * it, and they are asked for again. */
		rayc__lane_broke(net, L, "its set-up failed");
		return;
	}
	reading_lane = L;
	rayc__tlane_reading = true;
	bool eof;
	if (!read_frames(net, L, RAYC__MSG_TASK, rayc__remote_on_task, &eof))
		rayc__lane_broke(net, L, "read failed or bad frame");
}

void rayc__tlane_offer(rayc__conn *c)
{
	rayc__net *net = c->net;
	uint16_t port = rayc__lane_port(net);

	if (rayc__tlane_reading || port == 0 || c->tx.enc ||
	    atomic_load_explicit(&c->tlane_offered, memory_order_relaxed) ||
	    atomic_exchange(&c->tlane_offered, true) || !rayc__tlane_on())
		return;
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_LANE, net->self);
	rayc__w_u32(&b, port);
	rayc__w_frame_end(&b, f);
	rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
}

/* ---- the owner's end ---- */

static bool owner_setup(rayc__net *net, rayc__lane *L, int fd)
{
	uint8_t hh[HELLO_H], hf[HELLO_F], conf[MAC], want[MAC];
	int64_t by = rayc__now_ns() + (int64_t)RAYC__LANE_SETUP_MS * 1000000;

	if (!rayc__lane_dialer_hello(net, L, fd, TLANE_MAGIC, by, NULL, hh, hf,
	                             conf))
		return false;
	rayc__lane_data_key(L->c->rx.key, LANE_KEY_DONE, net->self, L->peer,
	                    hh + 16, hf + 16, L->rx.key);
	rayc__lane_data_key(L->c->tx.key, LANE_KEY_TASK, net->self, L->peer,
	                    hh + 16, hf + 16, L->w.key);
	rayc__lane_confirm_mac(L->rx.key, want);
	return sodium_memcmp(conf, want, MAC) == 0 && sndbuf(fd);
}

static void failed_locked(rayc__lanes *ls, uint32_t peer)
{
	int f = ls->tfails[peer] < 5 ? ls->tfails[peer]++ : 4;

	ls->no_tlane_until[peer] = rayc__now_ns() + (RAYC__LANE_RETRY_NS << f);
}

static void *owner_main(void *arg)
{
	rayc__lane *L = arg;
	rayc__net *net = L->net;
	rayc__lanes *ls = net->lanes;
	bool up = rayc__lane_connect(net, L, owner_setup);

	rayc__mutex_lock(&ls->mu);
	if (up)
		ls->tfails[L->peer] = 0;
	else
		failed_locked(ls, L->peer);
	rayc__mutex_unlock(&ls->mu);
	if (!up) {
		rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-LANE",
		          "no task lane to peer %u: its tasks go over the "
		          "connection", L->peer);
	} else {
		bool eof;
		bool ok = read_frames(net, L, RAYC__MSG_TASK_DONE,
		                      rayc__remote_on_task_done, &eof);
		if (!ok) {
			rayc__mutex_lock(&ls->mu);
			failed_locked(ls, L->peer);
			rayc__mutex_unlock(&ls->mu);
			rayc__lane_broke(net, L, "read failed or bad frame");
		} else if (eof && rayc__remote_tasks_at(net, L->peer)) {
			/* Closed between frames (the executor's end went,
			 * with its connection, most likely): a TASK of ours
			 * may have been on it unread.  No failure of the
			 * lane's own: the next connection may have one at
			 * once. */
			rayc__lane_broke(net, L, "closed with tasks in flight");
		}
	}
	rayc__lane_end(net, L);
	return NULL;
}

/* Starts a task lane to peer if none is up or setting up and one may be
 * tried.  Under rt->mu (the sender's), not lanes->mu. */
static void start(rayc__net *net, uint32_t peer)
{
	rayc__lanes *ls = net->lanes;
	rayc__conn *c = rayc__net_conn_to(net, peer);
	nng_sockaddr a;

	if (c == NULL)
		return;
	if (c->s == NULL || atomic_load(&c->state) != RAYC__CONN_OPEN ||
	    c->tx.enc || nng_stream_get_addr(c->s, NNG_OPT_REMADDR, &a) != 0 ||
	    (a.s_family != NNG_AF_INET && a.s_family != NNG_AF_INET6)) {
		rayc__conn_unref(c);
		return;
	}
	rayc__lane *L = rayc__lane_new(net, peer);
	if (L == NULL) {
		rayc__conn_unref(c);
		return;
	}
	L->task = L->owner_end = true;
	L->c = c; /* our ref */
	rayc__mutex_lock(&ls->mu);
	uint16_t port = ls->port_of[peer];
	if (ls->tto[peer] != NULL || port == 0 || atomic_load(&ls->stop) ||
	    rayc__now_ns() < ls->no_tlane_until[peer]) {
		rayc__mutex_unlock(&ls->mu);
		rayc__lane_drop(net, L);
		return;
	}
	if (a.s_family == NNG_AF_INET)
		a.s_in.sa_port = htons(port);
	else
		a.s_in6.sa_port = htons(port);
	L->to = a;
	L->born = rayc__now_ns();
	if (rayc__thread_start(&L->th, owner_main, L) != 0) {
		failed_locked(ls, peer);
		rayc__mutex_unlock(&ls->mu);
		rayc__lane_drop(net, L);
		return;
	}
	L->started = true;
	L->next = ls->all;
	ls->all = L;
	ls->tto[peer] = L;
	/* Listed under lanes->mu, then c looked at: a close of c either
	 * finds the lane (rayc__lane_conn_lost) or is seen here. */
	if (atomic_load(&c->state) == RAYC__CONN_CLOSED)
		rayc__lane_kill_locked(L);
	rayc__mutex_unlock(&ls->mu);
}

/* ---- writing ---- */

rayc__wbuf *rayc__tlane_begin(rayc__net *net, uint32_t peer, bool owner,
                              rayc__lane **Lp)
{
	rayc__lanes *ls = net->lanes;

	*Lp = NULL;
	if (ls == NULL || peer == 0 || peer >= RAYC__MAX_PEERS)
		return NULL;
	rayc__mutex_lock(&ls->mu);
	rayc__lane *L = owner ? ls->tto[peer] : ls->tfrom[peer];
	bool up = L != NULL && atomic_load(&L->state) == LANE_UP;
	bool dial = owner && L == NULL && ls->port_of[peer] != 0 &&
	           !atomic_load(&ls->stop) &&
	           rayc__now_ns() >= ls->no_tlane_until[peer];
	if (up)
		rayc__mutex_lock(&L->tx_mu);
	rayc__mutex_unlock(&ls->mu);
	if (!up) {
		if (dial && rayc__tlane_on() && !atomic_load(&net->encrypt))
			start(net, peer);
		return NULL;
	}
	*Lp = L;
	L->tx.len = 0;
	L->tx.bad = false;
	return &L->tx;
}

bool rayc__tlane_end(rayc__net *net, rayc__lane *L)
{
	rayc__wbuf *b = &L->tx;

	if (b->bad || b->len < RAYC__WIRE_HDR || b->len > RAYC__TLANE_FRAME_MAX) {
		rayc__mutex_unlock(&L->tx_mu);
		return false; /* over the connection */
	}
	rayc__wire_seal(&L->w, b->p, b->p + RAYC__WIRE_HDR,
	                b->len - RAYC__WIRE_HDR, NULL, 0);
	if (atomic_exchange(&tamper_once, 0))
		b->p[RAYC__WIRE_TAG_AT] ^= 1;
	int type = b->p[5];
	ssize_t r;
	do
		r = send(L->fd, b->p, b->len, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r == (ssize_t)b->len) {
		rayc__mutex_unlock(&L->tx_mu);
		atomic_fetch_add_explicit(type == RAYC__MSG_TASK ? &tasks_out
		                                                 : &dones_out,
		                          1, memory_order_relaxed);
		return true;
	}
	/* Short, or refused: the frame may be cut, so the lane is done
	 * for, and its connection with it (what it carried is sent again
	 * over the next).  c is let go of only after L's lock: L may be
	 * reaped as soon as it is unlocked. */
	rayc__conn *c = L->c;
	uint32_t peer = L->peer;
	bool owner = L->owner_end;
	atomic_fetch_add(&c->refs, 1);
	rayc__mutex_unlock(&L->tx_mu);
	if (owner) { /* a lane to it may keep failing so: not at once */
		rayc__mutex_lock(&net->lanes->mu);
		failed_locked(net->lanes, peer);
		rayc__mutex_unlock(&net->lanes->mu);
	}
	rayc__log(RAYC_LOG_DEBUG, "RAYC-NET-LANE",
	          "task lane write to peer %u %s: closing its connection",
	          c->peer, r < 0 ? "failed" : "was short");
	rayc__conn_close(c, "its task lane broke");
	rayc__conn_unref(c);
	return true;
}
