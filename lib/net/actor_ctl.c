/* actor_ctl.c -- asking an actor's owner to act on it from another peer
 * (ACTOR_CTL, answered by ACTOR_CTL_REP), through a handle held here (a
 * proxy): kill it, with or without restart; register this peer's own
 * handles to it (BORROW: the owner then keeps it alive for them) and
 * drop them (UNBORROW).  The owner keeps the actor's record, so it alone
 * decides.  A kill or a BORROW waits for the answer (at most 5 s), so an
 * error is never lost; a kill is sent once (sent again after a lost
 * connection it could restart the actor twice).  An UNBORROW is sent
 * without waiting, and again from the loop's tick until answered (it is
 * idempotent); a BORROW of the same actor cancels one still pending, and
 * goes after it on the same connection. */
#include <stdlib.h>
#include <string.h>

#include "net/net_int.h"
#include "sched/actor.h"

#define CTL_TIMEOUT_NS ((int64_t)5 * 1000000000)
#define RESEND_NS ((int64_t)2 * 1000000000)

/* Sends the request; false if owner cannot be reached now (not in our
 * view yet, or its connection is down). */
static bool send_ctl(rayc__net *net, uint32_t owner, uint64_t rpc, int op,
                     rayc_actor id)
{
	rayc__conn *c = rayc__net_conn_to(net, owner);

	if (c == NULL)
		return false;
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_ACTOR_CTL, net->self);
	rayc__w_u64(&b, rpc);
	rayc__w_u8(&b, (uint8_t)op);
	rayc__w_u64(&b, id.hi);
	rayc__w_u64(&b, id.lo);
	rayc__w_frame_end(&b, f);
	bool ok = !b.bad;
	if (ok)
		rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
	rayc__conn_unref(c);
	return ok;
}

/* body: what the answer carries (LIST's actors), or NULL. */
static void reply(rayc__conn *c, uint64_t rpc, int rc, const rayc__wbuf *body)
{
	rayc__net *net = c->net;
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_ACTOR_CTL_REP, net->self);

	rayc__w_u64(&b, rpc);
	rayc__w_u32(&b, (uint32_t)rc);
	rayc__w_blob(&b, body != NULL ? body->p : NULL,
	             body != NULL ? body->len : 0);
	rayc__w_frame_end(&b, f);
	rayc__conn_send(c, &b);
	rayc__wbuf_fini(&b);
}

/* LIST: the actors this peer owns, as rayc_actor_info (at most
 * LIST_MAX of them; the count says how many there are). */
#define LIST_MAX 4096

static void write_info(rayc__wbuf *b, const rayc_actor_info *i)
{
	rayc__w_u64(b, i->id.hi);
	rayc__w_u64(b, i->id.lo);
	rayc__w_str(b, i->class_name);
	rayc__w_str(b, i->name);
	rayc__w_u8(b, (uint8_t)i->state);
	rayc__w_u32(b, i->peer);
	rayc__w_u32(b, (uint32_t)i->restarts);
	rayc__w_u64(b, i->queued_calls);
	rayc__w_u64(b, i->running_calls);
	rayc__w_str(b, i->death);
	rayc__w_u32(b, i->owner);
}

static bool read_info(rayc__rd *rd, rayc_actor_info *i)
{
	memset(i, 0, sizeof(*i));
	i->id.hi = rayc__r_u64(rd);
	i->id.lo = rayc__r_u64(rd);
	rayc__r_str(rd, i->class_name, sizeof(i->class_name));
	rayc__r_str(rd, i->name, sizeof(i->name));
	i->state = (rayc_actor_state_kind)rayc__r_u8(rd);
	i->peer = rayc__r_u32(rd);
	i->restarts = (int)rayc__r_u32(rd);
	i->queued_calls = rayc__r_u64(rd);
	i->running_calls = rayc__r_u64(rd);
	rayc__r_str(rd, i->death, sizeof(i->death));
	i->owner = rayc__r_u32(rd);
	return !rd->bad && i->state >= RAYC_ACTOR_PENDING &&
	       i->state <= RAYC_ACTOR_DEAD;
}

static void list_owned(rayc__net *net, rayc__wbuf *body)
{
	rayc__rt *rt = net->rt;
	size_t cap = 64, n;
	rayc_actor_info *v = NULL;

	for (;;) {
		rayc_actor_info *nv = realloc(v, cap * sizeof(*v));
		if (nv == NULL) {
			free(v);
			body->bad = true;
			return;
		}
		v = nv;
		rayc__mutex_lock(&rt->mu);
		n = rayc__actor_list_locked(rt, v, cap, net->self, true);
		rayc__mutex_unlock(&rt->mu);
		if (n <= cap || cap >= LIST_MAX)
			break;
		cap = n < LIST_MAX ? n : LIST_MAX;
	}
	rayc__w_u32(body, (uint32_t)n);
	rayc__w_u32(body, (uint32_t)(n < cap ? n : cap));
	for (size_t i = 0; i < n && i < cap; i++)
		write_info(body, &v[i]);
	free(v);
}

/* The asker died (that incarnation).  Under rt->mu: a death not yet
 * seen here is dealt with after us (rayc__remote_peer_died takes rt->mu
 * once the view says so), dropping what we record now. */
static bool asker_gone_locked(rayc__net *net, rayc__conn *c)
	RAYC_REQUIRES(net->rt->mu)
{
	rayc__mutex_lock(&net->mu);
	bool gone = rayc__net_gone_locked(net, c->peer, c->gen);
	rayc__mutex_unlock(&net->mu);
	return gone;
}

void rayc__actor_ctl_handle(rayc__conn *c, int type, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rayc__rt *rt = net->rt;
	uint64_t rpc = rayc__r_u64(rd);

	if (type == RAYC__MSG_ACTOR_CTL_REP) {
		int rc = (int)rayc__r_u32(rd);
		size_t len;
		const void *val = rayc__r_blob(rd, &len);
		if (rd->bad)
			return rayc__conn_close(c, "bad ACTOR_CTL_REP");
		if (rc != RAYC_OK && rc != RAYC_ENOTFOUND && rc != RAYC_ENOMEM)
			rc = RAYC_EPROTO;
		rayc__rpc_complete(net, rpc, rc, val, len);
		return;
	}
	int op = rayc__r_u8(rd);
	rayc_actor id;
	id.hi = rayc__r_u64(rd);
	id.lo = rayc__r_u64(rd);
	if (rd->bad || op < RAYC__ACTOR_CTL_KILL ||
	    op > RAYC__ACTOR_CTL_LIST || c->peer == 0 ||
	    c->peer >= RAYC__MAX_PEERS)
		return rayc__conn_close(c, "bad ACTOR_CTL");
	if (op == RAYC__ACTOR_CTL_LIST) {
		rayc__wbuf body = { 0 };
		list_owned(net, &body);
		reply(c, rpc, body.bad ? RAYC_ENOMEM : RAYC_OK, &body);
		rayc__wbuf_fini(&body);
		return;
	}
	rayc__mutex_lock(&rt->mu);
	/* Only an actor this peer owns (not an instance it hosts). */
	rayc__actor *a = rayc__actor_find_locked(rt, id);
	bool ours = a != NULL && !a->hosted;
	if (!ours)
		;
	else if (op == RAYC__ACTOR_CTL_BORROW && asker_gone_locked(net, c))
		ours = false; /* its death already dropped its holds */
	else if (op == RAYC__ACTOR_CTL_BORROW || op == RAYC__ACTOR_CTL_UNBORROW)
		ours = rayc__actor_borrow_locked(rt, id, c->peer,
		                                 op == RAYC__ACTOR_CTL_BORROW);
	else
		rayc__actor_kill_locked(rt, a,
		                        op == RAYC__ACTOR_CTL_KILL_NO_RESTART);
	rayc__mutex_unlock(&rt->mu);
	reply(c, rpc, ours ? RAYC_OK : RAYC_ENOTFOUND, NULL);
}

/* An UNBORROW waiting for its answer (net->unborrows). */
struct rayc__unborrow {
	rayc__unborrow *next;
	rayc_actor id;
	uint32_t owner;
	uint64_t rpc;
	int64_t sent_ns; /* 0: to send */
};

/* Sends the UNBORROWs due (never sent, or unanswered for 2 s); drops
 * those whose owner died (the actor went with it). */
static void unborrow_send_due(rayc__net *net)
	RAYC_EXCLUDES(net->mu)
{
	struct {
		rayc_actor id;
		uint32_t owner;
		uint64_t rpc;
	} due[16];
	int n = 0;
	int64_t now = rayc__now_ns();

	/* Copied and sent under borrow_mu: a BORROW cancelling one of
	 * these goes wholly before or after (never an UNBORROW copied
	 * before the cancel and sent after the BORROW). */
	rayc__mutex_lock(&net->borrow_mu);
	rayc__mutex_lock(&net->mu);
	for (rayc__unborrow **pp = &net->unborrows; *pp != NULL;) {
		rayc__unborrow *u = *pp;
		rayc__peer *p = &net->peers[u->owner];
		if (p->known && !p->alive) {
			*pp = u->next;
			free(u);
			continue;
		}
		if (n < 16 && (u->sent_ns == 0 || now - u->sent_ns > RESEND_NS)) {
			u->sent_ns = now;
			due[n].id = u->id;
			due[n].owner = u->owner;
			due[n++].rpc = u->rpc;
		}
		pp = &u->next;
	}
	rayc__mutex_unlock(&net->mu);
	for (int i = 0; i < n; i++)
		(void)send_ctl(net, due[i].owner, due[i].rpc,
		               RAYC__ACTOR_CTL_UNBORROW, due[i].id);
	rayc__mutex_unlock(&net->borrow_mu);
}

void rayc__net_actor_unborrow_locked(rayc__rt *rt, uint32_t owner,
                                     rayc_actor id)
{
	rayc__net *net = rt->net;

	if (net == NULL || atomic_load(&net->stopping) || owner == 0 ||
	    owner >= RAYC__MAX_PEERS)
		return; /* leaving: our death or departure drops our holds */
	rayc__unborrow *u = calloc(1, sizeof(*u));
	if (u == NULL) {
		rayc__log(RAYC_LOG_WARN, "RAYC-ACTOR-HANDLE", "no memory to tell "
		          "peer %u that this peer let go of its handles to "
		          "actor %016llx%016llx: it lives on until this peer "
		          "leaves", owner, (unsigned long long)id.hi,
		          (unsigned long long)id.lo);
		return;
	}
	u->id = id;
	u->owner = owner;
	rayc__mutex_lock(&net->mu);
	u->rpc = ++net->next_rpc; /* every send's: any answer ends it */
	u->next = net->unborrows;
	net->unborrows = u;
	rayc__mutex_unlock(&net->mu);
	unborrow_send_due(net);
}

/* A BORROW of id: an UNBORROW of it still pending is void (sent before
 * it on the same connection, or lost with an earlier one). */
static void unborrow_cancel(rayc__net *net, uint32_t owner, rayc_actor id)
{
	rayc__mutex_lock(&net->mu);
	for (rayc__unborrow **pp = &net->unborrows; *pp != NULL;) {
		rayc__unborrow *u = *pp;
		if (u->owner == owner && u->id.hi == id.hi &&
		    u->id.lo == id.lo) {
			*pp = u->next;
			free(u);
			continue;
		}
		pp = &u->next;
	}
	rayc__mutex_unlock(&net->mu);
}

bool rayc__actor_ctl_answered_locked(rayc__net *net, uint64_t rpc)
{
	for (rayc__unborrow **pp = &net->unborrows; *pp != NULL;
	     pp = &(*pp)->next) {
		rayc__unborrow *u = *pp;
		if (u->rpc == rpc) {
			*pp = u->next;
			free(u);
			return true;
		}
	}
	return false;
}

void rayc__actor_ctl_tick(rayc__net *net)
{
	unborrow_send_due(net);
}

void rayc__actor_ctl_free(rayc__net *net)
{
	while (net->unborrows != NULL) {
		rayc__unborrow *u = net->unborrows;
		net->unborrows = u->next;
		free(u);
	}
}

int rayc__net_actor_ctl(rayc__rt *rt, uint32_t owner, rayc_actor id, int op,
                        void **val, size_t *len)
{
	rayc__net *net = rayc__net_get(rt);

	if (net == NULL)
		return rayc__err(RAYC_ESTATE, "this peer has left the cluster");
	int64_t deadline = rayc__now_ns() + CTL_TIMEOUT_NS;
	rayc__rpc r;
	rayc__rpc_add(net, &r);
	/* A kill is sent once; the others may go again (lost with a
	 * connection): a second BORROW or LIST changes nothing. */
	bool again = op != RAYC__ACTOR_CTL_KILL &&
	             op != RAYC__ACTOR_CTL_KILL_NO_RESTART;
	bool sent = false;
	int64_t sent_at = 0;
	int rc;
	for (;;) {
		if (atomic_load(&net->stopping) || atomic_load(&net->cut_off) ||
		    atomic_load(&net->cluster_down)) {
			rc = rayc__err(RAYC_ESTATE, "this peer is out of the "
			               "cluster");
			break;
		}
		int64_t now = rayc__now_ns();
		if (again && sent && now - sent_at > RESEND_NS / 2)
			sent = false; /* unanswered for a second */
		bool was = sent;
		if (!sent && op == RAYC__ACTOR_CTL_BORROW) {
			/* An UNBORROW still pending goes before it, or not
			 * at all (unborrow_send_due). */
			rayc__mutex_lock(&net->borrow_mu);
			unborrow_cancel(net, owner, id);
			sent = send_ctl(net, owner, r.id, op, id);
			rayc__mutex_unlock(&net->borrow_mu);
		} else if (!sent) {
			sent = send_ctl(net, owner, r.id, op, id);
		}
		if (sent && !was)
			sent_at = now;
		(void)rayc__event_wait(&r.ev, rayc__now_ns() + 20000000, 0);
		rayc__mutex_lock(&net->mu);
		bool answered = r.answered;
		bool dead = net->peers[owner].known && !net->peers[owner].alive;
		rayc__mutex_unlock(&net->mu);
		if (answered) {
			rc = r.rc == RAYC__RETRY ? RAYC_ESTATE : r.rc;
			if (rc == RAYC_OK && val != NULL) {
				*val = r.val;
				*len = r.len;
				r.val = NULL;
			}
			break;
		}
		if (dead) {
			/* The actor died with its owner. */
			rc = RAYC_EACTORDIED;
			break;
		}
		if (rayc__now_ns() > deadline) {
			rc = rayc__err(RAYC_ETIMEDOUT, "actor " "%016llx%016llx"
			               ": no answer from its owner, peer %u, "
			               "in 5 s", (unsigned long long)id.hi,
			               (unsigned long long)id.lo, owner);
			break;
		}
	}
	rayc__rpc_remove(net, &r);
	free(r.val);
	rayc__net_put(net);
	return rc;
}

int rayc__net_actor_list(rayc__rt *rt, uint32_t peer, rayc_actor_info *out,
                         size_t cap, size_t *n)
{
	void *val = NULL;
	size_t len = 0;
	rayc_actor none = { 0, 0 };
	rayc__rd rd;

	int rc = rayc__net_actor_ctl(rt, peer, none, RAYC__ACTOR_CTL_LIST, &val,
	                             &len);
	if (rc != RAYC_OK) {
		free(val);
		return rc;
	}
	rayc__rd_init(&rd, val, len);
	uint32_t total = rayc__r_u32(&rd), sent = rayc__r_u32(&rd);
	for (uint32_t i = 0; i < sent && i < cap && !rd.bad; i++)
		if (!read_info(&rd, &out[i]))
			rd.bad = true;
	free(val);
	if (rd.bad || sent > total)
		return rayc__err(RAYC_EPROTO, "peer %u: its list of actors "
		                 "does not decode", peer);
	if (total > sent) {
		*n = sent;
		return rayc__err(RAYC_ETOOBIG, "peer %u owns %u actors: listed "
		                 "the first %u", peer, total, sent);
	}
	*n = total;
	return RAYC_OK;
}
