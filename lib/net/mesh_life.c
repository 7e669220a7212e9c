/* mesh_life.c -- a peer's mesh over time: the event-loop thread and its
 * timers (heartbeats, failure detection, reaping closed connections,
 * closing handshakes that take too long), starting the mesh, leaving and
 * shutting the cluster down (mesh.c has the connections and the
 * dispatcher, mesh_listen.c the listener). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <sodium.h>

#include "lineage/lineage.h"
#include "net/net_int.h"
#include "sched/sched.h"
#include "testing.h"

/* ---- the event loop ---- */

static void send_heartbeat(rayc__net *net)
{
	rayc__rt *rt = net->rt;
	int64_t avail[RAYC__MAX_RES];
	uint64_t queued;
	rayc__wbuf b = { 0 };

	rayc__net_self_stats(net, avail, &queued);
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_HEARTBEAT, net->self);
	rayc__w_u64(&b, atomic_load(&rt->n_executed));
	rayc__w_u64(&b, queued);
	rayc__net_write_res(rt, &b, rt->res_total, avail);
	rayc__w_frame_end(&b, f);
	rayc__mutex_lock(&net->mu);
	uint32_t coord = net->coord;
	rayc__mutex_unlock(&net->mu);
	rayc__net_send_to(net, coord, &b);
	rayc__wbuf_fini(&b);
}

/* Frees connections that closed and that nobody uses any more. */
static void reap_conns(rayc__net *net, bool all)
{
	rayc__conn *dead = NULL;

	rayc__mutex_lock(&net->mu);
	rayc__conn **pp = &net->conns;
	while (*pp != NULL) {
		rayc__conn *c = *pp;
		if ((all || atomic_load(&c->state) == RAYC__CONN_CLOSED) &&
		    atomic_load(&c->refs) == 0) {
			*pp = c->next;
			for (uint32_t i = 1; i < atomic_load(&net->top); i++)
				if (net->peers[i].conn == c)
					net->peers[i].conn = NULL;
			c->next = dead;
			dead = c;
		} else {
			pp = &c->next;
		}
	}
	rayc__mutex_unlock(&net->mu);
	while (dead != NULL) {
		rayc__conn *n = dead->next;
		rayc__conn_close(dead, NULL);
		rayc__relink_orphans(net, dead);
		rayc__conn_free(dead);
		dead = n;
	}
}

/* Up to max of the connections pick(c, arg) takes, each with a ref,
 * into v (chosen under net->mu; the caller acts on them outside it,
 * since closing or opening one takes it, and lets each go); how many.
 * The rest wait for the next tick. */
static int conns_where(rayc__net *net, bool (*pick)(rayc__conn *, void *),
                       void *arg, rayc__conn **v, int max)
{
	int n = 0;

	rayc__mutex_lock(&net->mu);
	for (rayc__conn *c = net->conns; c != NULL && n < max; c = c->next)
		if (pick(c, arg)) {
			atomic_fetch_add(&c->refs, 1);
			v[n++] = c;
		}
	rayc__mutex_unlock(&net->mu);
	return n;
}

struct stale_when {
	int64_t now, wait;
};

static bool is_stale(rayc__conn *c, void *arg)
{
	const struct stale_when *w = arg;
	int st = atomic_load(&c->state);
	bool hs = !c->dialed && st != RAYC__CONN_CLOSED &&
	          !atomic_load(&c->opened) && w->now - c->born > w->wait;
	bool dial = c->dialed && st == RAYC__CONN_DIALING &&
	            w->now - c->born > RAYC__DIAL_WAIT_NS;
	return hs || dial;
}

/* Closes accepted connections whose handshake did not finish in time: an
 * idle or trickling dialer must not hold a descriptor and a buffer for
 * ever.  The deadline is never shorter than the heartbeat timeout, which
 * already bounds how long a live peer may stay silent.  Our own dials'
 * handshakes are left alone: their time may go waiting in a busy peer's
 * accept queue, and whoever dialed has its own deadline (a join's 15 s,
 * relink's).  A dial of ours not even connected after RAYC__DIAL_WAIT_NS
 * (a peer whose host does not answer) is given up here, the way NNG's
 * timer used to (conn.c, rayc__conn_dial). */
static void close_stale_handshakes(rayc__net *net)
{
	rayc__conn *stale[64];
	struct stale_when w = {
		.now = rayc__now_ns(),
		.wait = net->timeout_ns > RAYC__HS_DEADLINE_NS
		                ? net->timeout_ns
		                : RAYC__HS_DEADLINE_NS,
	};
	int n = conns_where(net, is_stale, &w, stale, 64);

	for (int i = 0; i < n; i++) {
		rayc__conn *c = stale[i];
		if (c->dialed)
			rayc__conn_give_up_dial(c);
		else
			rayc__conn_close(c, "handshake timed out");
		rayc__conn_unref(c);
	}
}

static bool is_parked(rayc__conn *c, void *arg)
{
	(void)arg;
	return atomic_load(&c->parking) &&
	       atomic_load(&c->state) != RAYC__CONN_CLOSED;
}

void rayc__net_settle_parked(rayc__net *net)
{
	rayc__conn *v[RAYC__HS_MAX + 8];
	int n = conns_where(net, is_parked, NULL, v, RAYC__HS_MAX + 8);

	for (int i = 0; i < n; i++) {
		(void)rayc__hs_settle(v[i]);
		rayc__conn_unref(v[i]);
	}
}

static bool is_serving(rayc__conn *c, void *arg)
{
	(void)arg;
	return (atomic_load(&c->rx_serve) & 1) != 0;
}

/* Connections whose reader has run its read's tasks for a while (one
 * turned slow): read again now (conn.c). */
static void unstall_readers(rayc__net *net)
{
	rayc__conn *v[64];
	int n = conns_where(net, is_serving, NULL, v, 64);
	int64_t now = rayc__now_ns();

	for (int i = 0; i < n; i++) {
		rayc__conn_rx_unstall(v[i], now);
		rayc__conn_unref(v[i]);
	}
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	rayc__net *net = arg;

	(void)fd;
	(void)what;
	if (atomic_load(&net->stopping))
		return;
	/* Failure detection and the no-coordinator deadline (ctl.c). */
	rayc__ctl_tick(net);
	/* Only a leader speaks as the coordinator: one that stepped down
	 * must not keep the others believing it lives. */
	bool coord = rayc__ctl_is_leader(net);
	if (coord)
		rayc__net_broadcast_members(net);
	else if (net->joined)
		send_heartbeat(net);
	rayc__net_settle_parked(net);
	close_stale_handshakes(net);
	reap_conns(net, false);
	rayc__relink_tick(net);
	rayc__lane_reap(net);
	rayc__names_tick(net);
	rayc__actor_ctl_tick(net);
	rayc__remote_actors_tick(net);
	rayc__remote_pump_idle(net);
	rayc__remote_acks_tick(net);
	unstall_readers(net);
	/* Runs of a batch that ended before one that turned slow: their
	 * answers are made now (sched/execute.c) and sent with those held
	 * (xrec.c: hold_back), and workers see to what is queued behind a
	 * reader's run that turned slow (sched.h: rayc__sched_serve_held). */
	rayc__rt_lock(net->rt);
	(void)rayc__sched_batch_finish_locked(net->rt);
	rayc__sched_kick_locked(net->rt);
	rayc__mutex_unlock(&net->rt->mu);
	rayc__remote_uncork_all(net);
}

static void on_parent(evutil_socket_t fd, short what, void *arg)
{
	rayc__net *net = arg;
	char buf[64];

	(void)what;
	if (rayc__read_fd(fd, buf, sizeof(buf)) > 0)
		return;
	rayc__log(RAYC_LOG_INFO, "RAYC-NET-PARENT-GONE",
	          "the peer that started this one is gone; stopping");
	event_del(net->pev);
	if (!atomic_exchange(&net->cluster_down, true))
		rayc__net_lost_cluster(net, "the peer that started this one "
		                            "is gone");
}

/* Whoever sets net->cluster_down first calls this: the peer is out of
 * its cluster for good (cut off, removed, the cluster ended, its parent
 * died), so nothing another peer owes it will come any more.  Fail what
 * waits on them now instead of leaving callers blocked for ever. */
void rayc__net_lost_cluster(rayc__net *net, const char *why)
{
	rayc__event_set(&net->down_ev);
	rayc__remote_cluster_lost(net, why);
	rayc__kv_wake_all(net);
}

/* The loop runs a pass at a time and looks at net->stopping between
 * passes: a loopbreak that comes before the thread first enters the loop
 * is forgotten by libevent (the loop clears it on entry), and then the
 * next tick, at most hb_ns later, still ends the thread. */
static void *loop_main(void *arg)
{
	rayc__net *net = arg;

	while (!atomic_load(&net->stopping))
		event_base_loop(net->base, EVLOOP_ONCE);
	return NULL;
}

/* ---- start and stop ---- */

static void net_free(rayc__net *net)
{
	if (net->th_started) {
		atomic_store(&net->stopping, true);
		event_base_loopbreak(net->base);
		rayc__thread_join(&net->th);
	}
	rayc__ctl_drain(net);
	/* Lanes let go of the connections they hold (lane.c). */
	rayc__lane_stop(net);
	/* No accept starts after this (accept_next); a wait after an
	 * accept error ends before the accept it would start is stopped. */
	atomic_store(&net->stopping, true);
	if (net->acc_sleep != NULL)
		nng_aio_stop(net->acc_sleep);
	if (net->lst != NULL)
		nng_stream_listener_close(net->lst);
	if (net->acc_aio != NULL) {
		nng_aio_stop(net->acc_aio);
		nng_aio_free(net->acc_aio);
	}
	if (net->acc_sleep != NULL) {
		nng_aio_stop(net->acc_sleep);
		nng_aio_free(net->acc_sleep);
	}
	if (net->lst != NULL)
		nng_stream_listener_free(net->lst);
	/* Connections still held (a dial or receive callback on its way)
	 * are stopped first: no callback of theirs may run once net is
	 * freed (one did, under ASan: a dial to a peer SIGKILLed just
	 * before the driver's shutdown ended after it). */
	rayc__mutex_lock(&net->mu);
	rayc__conn *held[256];
	int nheld = 0;
	for (rayc__conn *c = net->conns; c != NULL && nheld < 256; c = c->next)
		if (atomic_load(&c->refs) > 0) {
			atomic_fetch_add(&c->refs, 1);
			held[nheld++] = c;
		}
	rayc__mutex_unlock(&net->mu);
	for (int i = 0; i < nheld; i++) {
		rayc__conn_stop(held[i]);
		rayc__conn_unref(held[i]);
	}
	reap_conns(net, true);
	for (int waited = 0; net->conns != NULL && waited < 5000; waited++) {
		rayc__sleep_ms(1); /* refs dropped by callbacks ending */
		reap_conns(net, true);
	}
	rayc__bulk_stop(net); /* its jobs may still ask for a lane */
	rayc__lane_free(net);
	rayc__remote_fini(net);
	rayc__slab_fini(&net->xrec_slab);
	rayc__relink_fini(net);
	rayc__ctl_fini(net);
	rayc__names_free(net);
	rayc__actor_ctl_free(net);
	if (net->tick != NULL)
		event_free(net->tick);
	if (net->pev != NULL)
		event_free(net->pev);
	if (net->base != NULL)
		event_base_free(net->base);
	rayc__close_fd(net->parent_fd);
	rayc__close_fd(net->kid_pipe_w);
	if (net->token != NULL)
		sodium_memzero(net->token, strlen(net->token));
	free(net->token);
	sodium_memzero(net->id_sk, sizeof(net->id_sk));
	rayc__mutex_fini(&net->borrow_mu);
	rayc__mutex_fini(&net->mu);
	free(net);
}

int rayc__net_start(rayc__rt *rt, const rayc__net_conf *conf)
{
	char token_buf[65];
	const char *token = conf->token != NULL ? conf->token : "";
	const char *listen = conf->listen;
	int rc;

	if (sodium_init() < 0)
		return rayc__err(RAYC_ESYS, "libsodium failed to start");
	if (conf->worker && conf->address == NULL)
		return rayc__err(RAYC_EINVAL, "RAYC_ROLE=worker needs "
		                 "RAYC_ADDRESS (a peer to join)");
	if (listen == NULL || *listen == '\0')
		/* Joining a cluster beyond this host: listen where its peers
		 * can reach us (rayc__net_set_advertised says where). */
		listen = conf->address != NULL &&
		                         !rayc__url_is_loopback(conf->address)
		                 ? "tcp://0.0.0.0:0"
		                 : "tcp://127.0.0.1:0";
	if (!rayc__url_is_loopback(listen) && *token == '\0')
		return rayc__err(RAYC_EINVAL, "listening on %s (beyond "
		                 "loopback) needs a cluster token: set "
		                 "RAYC_TOKEN", listen);
	bool no_token = *token == '\0';
	if (conf->address == NULL && no_token) {
		/* Closed by default: a founder without a token makes a fresh
		 * one that nobody else knows; its local peers get it privately
		 * (their environment), the program by rayc_cluster_token. */
		unsigned char raw[16];
		randombytes_buf(raw, sizeof(raw));
		sodium_bin2hex(token_buf, sizeof(token_buf), raw, sizeof(raw));
		token = token_buf;
	}
	rayc__ignore_sigpipe();
	rayc__net *net = calloc(1, sizeof(*net));
	if (net == NULL)
		return RAYC_ENOMEM;
	net->rt = rt;
	/* Counts of view changes never repeat from one net to the next (a
	 * thread's cached answers are keyed by them: executor.c). */
	static _Atomic uint64_t view_base;
	atomic_store(&net->view_seq,
	             atomic_fetch_add(&view_base, (uint64_t)1 << 40));
	rayc__mutex_init(&net->mu);
	rayc__mutex_init(&net->borrow_mu);
	rayc__slab_init(&net->xrec_slab, sizeof(rayc__xrec), 0,
	                RAYC__SLAB_XREC, 16);
	TAILQ_INIT(&net->xrec_done_q);
	net->parent_fd = -1;
	net->kid_pipe_w = -1;
	net->next_id = 2;
	net->next_gen = 2; /* the founder is peer 1 of gen 1 */
	int tmo = conf->heartbeat_timeout_ms > 0 ? conf->heartbeat_timeout_ms
	                                         : 1000;
	net->timeout_ns = (int64_t)tmo * 1000000;
	net->hb_ns = net->timeout_ns / 5;
	crypto_generichash(net->key, sizeof(net->key),
	                   (const unsigned char *)token, strlen(token), NULL, 0);
	crypto_sign_keypair(net->id_pk, net->id_sk);
	atomic_init(&net->encrypt, conf->encrypt);
	net->rx_max = RAYC__PEER_RX_MAX;
	const char *rm = getenv("RAYC__PEER_RX_MAX"); /* tests only */
	if (rm != NULL && strtoull(rm, NULL, 10) > 0)
		net->rx_max = (size_t)strtoull(rm, NULL, 10);
	net->ack_off = getenv("RAYC__ACK_OFF") != NULL; /* tests only */
	const char *xm = getenv("RAYC__XREC_MAX"); /* tests only */
	net->xrec_max = xm != NULL ? (size_t)strtoull(xm, NULL, 10) : 0;
	const char *jd = getenv("RAYC__JOINED_DELAY_MS"); /* tests only */
	net->joined_delay_ms = jd != NULL ? atoi(jd) : 0;
	/* Its requests' ids start anywhere: a peer given a slot again after
	 * its holder died must not have its first KV writes taken for the
	 * old holder's (the coordinator dedupes by peer id and id). */
	randombytes_buf(&net->next_req, sizeof(net->next_req));
	net->next_req >>= 1; /* never near wrapping */
	if ((net->token = strdup(token)) == NULL) {
		net_free(net);
		return RAYC_ENOMEM;
	}
	rayc__set_unlock_hook(rayc__conn_flush_deferred);
	rc = rayc__bulk_start(net);
	if (rc != RAYC_OK) {
		net_free(net);
		return rc;
	}
	rc = rayc__lane_init(net);
	if (rc == RAYC_OK)
		rc = rayc__net_listen(net, listen, conf, no_token);
	if (rc != RAYC_OK) {
		net_free(net);
		return rc;
	}
	rayc__lane_listen(net);
	static bool ev_threads;
	if (!ev_threads) {
		evthread_use_pthreads();
		ev_threads = true;
	}
	net->base = event_base_new();
	/* libevent wants tv_usec below a second (it keeps flags in the high
	 * bits): heartbeats of 1 s and more need tv_sec. */
	struct timeval tv = { (time_t)(net->hb_ns / 1000000000),
		              (suseconds_t)(net->hb_ns % 1000000000 / 1000) };
	if (net->base == NULL ||
	    (net->tick = event_new(net->base, -1, EV_PERSIST, on_tick, net)) ==
	            NULL ||
	    event_add(net->tick, &tv) != 0 || rayc__ctl_init(net) != RAYC_OK ||
	    rayc__relink_init(net) != RAYC_OK) {
		net_free(net);
		return rayc__err(RAYC_ESYS, "libevent failed to start");
	}
	const char *pfd = getenv("RAYC__PARENT_FD");
	if (conf->worker && pfd != NULL && *pfd != '\0') {
		net->parent_fd = atoi(pfd);
		net->pev = event_new(net->base, net->parent_fd,
		                     EV_READ | EV_PERSIST, on_parent, net);
		if (net->pev != NULL)
			(void)event_add(net->pev, NULL);
	}
	if (conf->address == NULL) {
		/* Founder: peer 1, the control store's first voter; it is a
		 * member once its own ADD entry applies. */
		net->founder = true;
		net->self = 1;
	}
	net->worker = conf->worker;
	rc = rayc__thread_start(&net->th, loop_main, net);
	if (rc != RAYC_OK) {
		net_free(net);
		return rc;
	}
	net->th_started = true;
	rayc__mutex_lock(&rt->mu);
	rt->net = net;
	atomic_store(&rt->self_id, net->self);
	rayc__mutex_unlock(&rt->mu);
	/* A join may have to wait out a failover: the coordinator's death
	 * is noticed after a heartbeat timeout, then an election. */
	int64_t wait = 15 * (int64_t)1000000000;
	if (wait < 4 * net->timeout_ns)
		wait = 4 * net->timeout_ns;
	int64_t deadline = rayc__now_ns() + wait;
	if (conf->address != NULL) {
		rc = rayc__net_join(net, conf->address, deadline);
	} else {
		rayc__event_reset(&net->join_ev);
		rayc__ctl_start(net, 1);
		rc = rayc__net_wait_join(net, deadline);
		if (rc == RAYC_OK && !net->joined)
			rc = rayc__err(RAYC_ESYS, "the control store did not "
			               "start");
	}
	if (rc == RAYC_OK && conf->address == NULL && conf->local_peers > 1) {
		rc = rayc__net_start_local_peers(net, conf->local_peers - 1,
		                                 token);
		while (rc == RAYC_OK &&
		       rayc__net_count_alive(net) < conf->local_peers) {
			if (rayc__now_ns() > deadline)
				rc = rayc__err(RAYC_ETIMEDOUT,
				               "only %d of %d local peers joined",
				               rayc__net_count_alive(net),
				               conf->local_peers);
			else
				rayc__sleep_ms(1);
		}
	}
	if (rc != RAYC_OK) {
		int keep = rc;
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", rayc_errmsg());
		rayc__net_stop(rt);
		return rayc__err(keep, "%s", msg);
	}
	rayc__log(RAYC_LOG_INFO, "RAYC-NET-UP", "peer %u of the cluster at %s",
	          net->self, net->url);
	return RAYC_OK;
}

/* Has c sent all it was given?  (Or will it never: closed.) */
static bool sent_all(rayc__conn *c)
{
	rayc__mutex_lock(&c->mu);
	bool idle = !c->sending && c->out.len == 0 && c->pend.len == 0 &&
	            c->xhead == NULL;
	rayc__mutex_unlock(&c->mu);
	return idle;
}

#define SAY_TRIES 3

/* Says `type` (an empty frame) to every live member, or to the
 * coordinator only, and waits, for at most wait_ns, until each member
 * answered a SHUTDOWN (SHUTDOWN_ACK), or each LEAVE has left this
 * process.  A member with no connection is dialed.  A connection that
 * closes before then is dialed again, up to SAY_TRIES times: a member
 * the end does not reach would stay up until it found itself without a
 * coordinator, 3 heartbeat timeouts later.  Left this process is not
 * enough for the end: a member that had not read it yet when we closed
 * lost it, with its connection closed for a lane that ended first, or
 * with the rest of a connection reset (we had not read all it sent).  A
 * dial that never opens ends the attempts: nobody listens there. */
static void say_to_all(rayc__net *net, int type, bool only_coord,
                       int64_t wait_ns)
{
	rayc__wbuf b = { 0 };
	rayc__conn *cs[RAYC__MAX_PEERS] = { 0 };
	uint8_t tries[RAYC__MAX_PEERS] = { 0 };
	bool done[RAYC__MAX_PEERS] = { false };
	int64_t deadline = rayc__now_ns() + wait_ns;

	size_t f = rayc__w_frame_begin(&b, type, net->self);
	rayc__w_frame_end(&b, f);
	bool ack = type == RAYC__MSG_SHUTDOWN;
	for (uint32_t i = 1; i < RAYC__MAX_PEERS; i++)
		atomic_store(&net->peers[i].acked_end, false);
	for (;;) {
		bool more = false;
		for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
			if (done[i])
				continue;
			rayc__mutex_lock(&net->mu);
			bool want = net->peers[i].alive && i != net->self &&
			            (!only_coord || i == net->coord);
			rayc__mutex_unlock(&net->mu);
			if (want && cs[i] == NULL && tries[i] < SAY_TRIES) {
				tries[i]++;
				cs[i] = rayc__net_conn_to(net, i);
				if (cs[i] != NULL)
					rayc__conn_send(cs[i], &b);
			}
			rayc__conn *c = cs[i];
			if (!want || c == NULL) {
				done[i] = true;
			} else if (atomic_load(&c->state) ==
			           RAYC__CONN_CLOSED) {
				/* Closed before it opened: nobody there. */
				done[i] = !atomic_load(&c->opened);
				more = more || !done[i];
			} else if (ack ? atomic_load(&net->peers[i].acked_end)
			               : sent_all(c)) {
				done[i] = true;
			} else {
				more = true;
			}
			if (c != NULL && (done[i] || atomic_load(&c->state) ==
			                                     RAYC__CONN_CLOSED)) {
				rayc__conn_unref(c);
				cs[i] = NULL;
			}
		}
		if (!more || rayc__now_ns() > deadline)
			break;
		rayc__sleep_ms(1);
	}
	for (uint32_t i = 0; i < RAYC__MAX_PEERS; i++)
		if (cs[i] != NULL)
			rayc__conn_unref(cs[i]);
	rayc__wbuf_fini(&b);
}

static _Atomic int leave_linger_ms;

void rayc__test_set_leave_linger(int ms)
{
	atomic_store(&leave_linger_ms, ms);
}

void rayc__net_stop(rayc__rt *rt)
{
	rayc__net *net = rt->net;

	if (net == NULL)
		return;
	/* The founder ends the cluster; so does the last driver once the
	 * founder is gone.  Anyone else leaves, handing the coordinator's
	 * role on first if it holds it. */
	bool drivers = false;
	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++)
		if (i != net->self && net->peers[i].alive &&
		    !net->peers[i].worker)
			drivers = true;
	rayc__mutex_unlock(&net->mu);
	bool out = atomic_load(&net->cut_off);
	bool end = net->joined && !out &&
	           (net->founder || (!net->worker && !drivers));
	if (out) {
		/* Cut off: the others have gone on without us. */
	} else if (end || atomic_load(&net->heard_end)) {
		/* Ending the cluster, or the end came and is passed on, for a
		 * member the one that ended it could not reach (members that
		 * heard it already ignore it).  Ending waits longer for a
		 * slow member (up to 3 s) where the heartbeat timeout
		 * allows. */
		int64_t wait = (int64_t)1000000000;
		if (end && net->timeout_ns > wait)
			wait = net->timeout_ns < 3 * wait ? net->timeout_ns
			                                  : 3 * wait;
		atomic_store(&net->leaving, true);
		say_to_all(net, RAYC__MSG_SHUTDOWN, false, wait);
	} else if (net->joined && !atomic_load(&net->cluster_down)) {
		rayc__ctl_hand_over(net);
		atomic_store(&net->leaving, true);
		say_to_all(net, RAYC__MSG_LEAVE, true, 1000000000);
		rayc__ctl_leave_wait(net);
		int linger = atomic_load(&leave_linger_ms);
		if (linger > 0)
			rayc__sleep_ms(linger);
	}
	atomic_store(&net->leaving, true);
	rayc__ctl_stop(net);
	atomic_store(&net->stopping, true);
	if (net->nkids > 0)
		rayc__net_stop_kids(net);
	rayc__mutex_lock(&rt->mu);
	rt->net = NULL;
	atomic_store(&rt->self_id, 1);
	rayc__mutex_unlock(&rt->mu);
	/* API calls still using it (a task's KV call, a cluster query) see
	 * stopping and return; wait for them (bounded) before freeing. */
	int64_t deadline = rayc__now_ns() + 10 * (int64_t)1000000000;
	while (atomic_load(&net->users) > 0 && rayc__now_ns() < deadline)
		rayc__sleep_ms(1);
	/* A task lane's thread may be in a task that waits (tlane.c): it
	 * returns, seeing the runtime stop, before net_free joins it. */
	rayc__sched_wake_stop(rt);
	net_free(net);
}

rayc__net *rayc__net_get(rayc__rt *rt)
{
	if (rt == NULL)
		return NULL;
	rayc__mutex_lock(&rt->mu);
	rayc__net *net = rt->net;
	if (net != NULL)
		atomic_fetch_add(&net->users, 1);
	rayc__mutex_unlock(&rt->mu);
	return net;
}

void rayc__net_put(rayc__net *net)
{
	if (net != NULL)
		atomic_fetch_sub(&net->users, 1);
}

void rayc__net_serve(rayc__rt *rt)
{
	rayc__net *net = rt->net;

	if (net == NULL)
		return;
	while (!atomic_load(&net->cluster_down))
		(void)rayc__event_wait(&net->down_ev, -1, 0);
}
