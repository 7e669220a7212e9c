/* kv.c -- the calls of the cluster's key-value store (the table each
 * peer holds is kv_table.c's).
 * Calls go to the coordinator (the Raft leader): a put or delete is a log
 * entry it proposes and answers once applied; a get is answered from its
 * copy once a quorum round begun after the get arrived has confirmed it
 * still leads (rayc__ctl_read), so a deposed coordinator that does not
 * know it yet never answers with a value that was since overwritten.
 * Other peers reach it with KV_REQ frames and wait for the matching
 * KV_REP; an API call is handed to the loop thread, which owns Raft. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_int.h"
#include "testing.h"

#define KV_KEY_MAX RAYC__KV_KEY_MAX
#define KV_VAL_MAX ((size_t)1 << 20)
#define KV_TIMEOUT_MS 5000
#define KV_PUT RAYC__KV_PUT
#define KV_GET RAYC__KV_GET
#define KV_DEL RAYC__KV_DEL
#define KV_PUTNX RAYC__KV_PUTNX
#define KV_DELEQ RAYC__KV_DELEQ

/* A call waiting for its answer: from this peer's API (conn NULL,
 * answered by rpc id) or from another peer's KV_REQ (answered on conn). */
typedef struct kv_work {
	rayc__ctl_work post;
	rayc__net *net;
	uint64_t rpc;
	uint32_t client; /* whose call (a peer id) */
	uint64_t req;    /* its id there, the same in every retry */
	rayc__conn *conn;
	int op;
	char key[KV_KEY_MAX + 1];
	void *val;
	size_t len;
	SLIST_ENTRY(kv_work) flight; /* in net->kv_flight while proposed */
} kv_work;

void rayc__rpc_add(rayc__net *net, rayc__rpc *r)
{
	memset(r, 0, sizeof(*r));
	rayc__mutex_lock(&net->mu);
	r->id = ++net->next_rpc;
	r->next = net->rpcs;
	net->rpcs = r;
	rayc__mutex_unlock(&net->mu);
}

void rayc__rpc_remove(rayc__net *net, rayc__rpc *r)
{
	rayc__mutex_lock(&net->mu);
	for (rayc__rpc **pp = &net->rpcs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	rayc__mutex_unlock(&net->mu);
}

void rayc__rpc_complete(rayc__net *net, uint64_t id, int rc, const void *val,
                        size_t len)
{
	if (id == 0)
		return; /* never one of ours (ids start at 1) */
	rayc__mutex_lock(&net->mu);
	for (rayc__rpc *r = net->rpcs; r != NULL; r = r->next) {
		if (r->id != id)
			continue;
		r->answered = true;
		r->rc = rc;
		if (rc == RAYC_OK && len > 0) {
			r->val = malloc(len);
			if (r->val == NULL)
				r->rc = RAYC_ENOMEM;
			else
				memcpy(r->val, val, len);
		}
		r->len = len;
		rayc__event_set(&r->ev);
		rayc__mutex_unlock(&net->mu);
		return;
	}
	/* No caller waits: an UNBORROW (actor_ctl.c) or an actor name's
	 * delete or claim (names.c). */
	if (!rayc__actor_ctl_answered_locked(net, id))
		(void)rayc__names_answered_locked(net, id, rc);
	rayc__mutex_unlock(&net->mu);
}

void rayc__kv_coord_changed_locked(rayc__net *net)
{
	for (rayc__rpc *r = net->rpcs; r != NULL; r = r->next)
		if (!r->answered) {
			r->rc = RAYC__RETRY;
			rayc__event_set(&r->ev);
		}
	rayc__names_resend_locked(net);
}

void rayc__kv_wake_all(rayc__net *net)
{
	rayc__mutex_lock(&net->mu);
	for (rayc__rpc *r = net->rpcs; r != NULL; r = r->next) {
		if (r->answered)
			continue; /* its answer stands */
		r->rc = RAYC__RETRY;
		rayc__event_set(&r->ev);
	}
	rayc__mutex_unlock(&net->mu);
}

static void kv_answer(rayc__net *net, kv_work *w, int rc, const void *val,
                      size_t len)
{
	if (w->conn == NULL) {
		rayc__rpc_complete(net, w->rpc, rc, val, len);
		return;
	}
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_KV_REP, net->self);
	rayc__w_u64(&b, w->rpc);
	rayc__w_u32(&b, (uint32_t)rc);
	rayc__w_blob(&b, rc == RAYC_OK ? val : NULL, rc == RAYC_OK ? len : 0);
	rayc__w_frame_end(&b, f);
	rayc__conn_send(w->conn, &b);
	rayc__wbuf_fini(&b);
}

static void kv_work_free(kv_work *w)
{
	if (w->conn != NULL)
		rayc__conn_unref(w->conn);
	free(w->val);
	free(w);
}

/* ---- KV writes in flight at the coordinator ----
 *
 * A caller that has no answer after a second asks again (kv_call_net),
 * with the same request id; while commits lag (a voter catching up, a
 * quorum slow to answer) the coordinator proposed the same value again
 * each time, up to 1 MiB more for the lagging voters at every ask, and
 * the copies were only dropped when applied (ctl_fsm.c's dedupe).  Now
 * an ask of a write still in flight takes over its answer instead. */

static kv_work *flight_find(rayc__net *net, uint32_t client, uint64_t req)
{
	kv_work *f;

	SLIST_FOREACH(f, &net->kv_flight, flight)
		if (f->client == client && f->req == req)
			return f;
	return NULL;
}

static void kv_applied(int rc, void *arg)
{
	kv_work *w = arg;

	SLIST_REMOVE(&w->net->kv_flight, w, kv_work, flight);
	kv_answer(w->net, w, rc, NULL, 0);
	kv_work_free(w);
}

/* A GET at the coordinator, confirmed by a quorum round (rc RAYC_OK):
 * our copy holds every write acknowledged before the read came in. */
static void kv_read(int rc, void *arg)
{
	kv_work *w = arg;
	void *out = NULL;
	size_t outlen = 0;

	if (rc == RAYC_OK) {
		rayc__rt *rt = w->net->rt;
		rayc__mutex_lock(&rt->kv_mu);
		rc = rayc__kv_apply_locked(rt, KV_GET, w->key, NULL, 0, &out,
		                           &outlen);
		rayc__mutex_unlock(&rt->kv_mu);
	}
	kv_answer(w->net, w, rc, out, outlen);
	free(out);
	kv_work_free(w);
}

/* On the loop thread. */
static void run_kv(rayc__net *net, void *arg)
{
	kv_work *w = arg;

	if (rayc__ctl_ready(net)) {
		if (w->op == KV_GET) {
			/* Not from our copy yet: we may have been deposed
			 * without knowing it (a stopped process, a cut
			 * link).  kv_read answers once a quorum confirmed. */
			int rc = rayc__ctl_read(net, kv_read, w);
			if (rc == RAYC_OK)
				return;
			kv_answer(net, w, rc, NULL, 0);
			kv_work_free(w);
			return;
		}
		atomic_fetch_add(&net->kv_asked, 1);
		kv_work *f = flight_find(net, w->client, w->req);
		if (f != NULL) {
			/* Asked again: the first ask's answer goes to this
			 * one (the caller waits for this one only). */
			f->rpc = w->rpc;
			rayc__conn *c = f->conn;
			f->conn = w->conn;
			w->conn = c;
			kv_work_free(w);
			return;
		}
		rayc__wbuf b = { 0 };
		rayc__ctl_cmd_kv(&b, w->op, w->client, w->req, w->key, w->val,
		                 w->len);
		/* Within the log's byte bound, or the writer waits. */
		int rc = rayc__ctl_log_room(net, b.len);
		if (rc == RAYC_OK) {
			SLIST_INSERT_HEAD(&net->kv_flight, w, flight);
			rc = rayc__ctl_propose(net, &b, kv_applied, w);
			if (rc != RAYC_OK)
				SLIST_REMOVE(&net->kv_flight, w, kv_work, flight);
		}
		rayc__wbuf_fini(&b);
		if (rc == RAYC_OK) {
			atomic_fetch_add(&net->kv_proposed, 1);
			return; /* kv_applied answers (and forgets it) */
		}
		kv_answer(net, w, rc, NULL, 0);
		kv_work_free(w);
		return;
	}
	rayc__mutex_lock(&net->mu);
	uint32_t coord = net->coord;
	rayc__mutex_unlock(&net->mu);
	if (w->conn != NULL || coord == 0 || coord == net->self) {
		/* Not the coordinator (any more): the caller asks again. */
		kv_answer(net, w, RAYC__RETRY, NULL, 0);
		kv_work_free(w);
		return;
	}
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_KV_REQ, net->self);
	rayc__w_u64(&b, w->rpc);
	rayc__w_u64(&b, w->req);
	rayc__w_u8(&b, (uint8_t)w->op);
	rayc__w_str(&b, w->key);
	rayc__w_blob(&b, w->val, w->len);
	rayc__w_frame_end(&b, f);
	rayc__net_send_to(net, coord, &b);
	rayc__wbuf_fini(&b);
	kv_work_free(w);
}

static kv_work *kv_work_new(rayc__net *net, uint64_t rpc, int op, const char *key,
                            const void *val, size_t len)
{
	kv_work *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->net = net;
	w->rpc = rpc;
	w->op = op;
	snprintf(w->key, sizeof(w->key), "%s", key);
	if (len > 0) {
		w->val = malloc(len);
		if (w->val == NULL) {
			free(w);
			return NULL;
		}
		memcpy(w->val, val, len);
	}
	w->len = len;
	return w;
}

void rayc__kv_send_async(rayc__net *net, uint64_t rpc, uint64_t req, int op,
                         const char *key, const void *val, size_t len)
{
	kv_work *w = kv_work_new(net, rpc, op, key, val, len);

	if (w == NULL)
		return; /* the sender's tick tries again */
	w->client = net->self;
	w->req = req;
	rayc__ctl_post(net, &w->post, run_kv, w);
}

void rayc__kv_handle(rayc__conn *c, int type, rayc__rd *rd)
{
	rayc__net *net = c->net;
	uint64_t id = rayc__r_u64(rd);

	if (type == RAYC__MSG_KV_REQ) {
		uint64_t req = rayc__r_u64(rd);
		int op = rayc__r_u8(rd);
		char key[KV_KEY_MAX + 1];
		size_t len;
		rayc__r_str(rd, key, sizeof(key));
		const void *val = rayc__r_blob(rd, &len);
		if (rd->bad || op < KV_PUT || op > KV_DELEQ || len > KV_VAL_MAX ||
		    key[0] == '\0')
			return rayc__conn_close(c, "bad KV_REQ");
		kv_work *w = kv_work_new(net, id, op, key, val, len);
		if (w == NULL) {
			/* The caller gets the error rather than a silence. */
			kv_work nomem = { .rpc = id, .conn = c };
			kv_answer(net, &nomem, RAYC_ENOMEM, NULL, 0);
			return;
		}
		w->client = c->peer;
		w->req = req;
		atomic_fetch_add(&c->refs, 1);
		w->conn = c;
		rayc__ctl_post(net, &w->post, run_kv, w);
		return;
	}
	int rc = (int)rayc__r_u32(rd);
	size_t len;
	const void *val = rayc__r_blob(rd, &len);
	if (rd->bad)
		return rayc__conn_close(c, "bad KV_REP");
	if ((rc < 0 || rc > RAYC_EEXIST) && rc != RAYC__RETRY &&
	    rc != RAYC__BUSY)
		rc = RAYC_EPROTO;
	rayc__rpc_complete(net, id, rc, val, len);
}

static int kv_call_net(rayc__net *net, int op, const char *key,
                       const void *val, size_t len, void **out,
                       size_t *outlen, uint64_t req);

/* req: the write's id (0: a new one). */
static int kv_call(int op, const char *key, const void *val, size_t len,
                   void **out, size_t *outlen, uint64_t req)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	if (key == NULL || *key == '\0' || strlen(key) > KV_KEY_MAX)
		return rayc__err(RAYC_EINVAL, "KV key must be 1..%d bytes",
		                 KV_KEY_MAX);
	if (len > KV_VAL_MAX || (val == NULL && len > 0))
		return rayc__err(RAYC_EINVAL, "KV value must be 0..%zu bytes",
		                 KV_VAL_MAX);
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL && rt->hooks != NULL)
		/* This peer was in a cluster and has left it (rayc_shutdown
		 * is under way): its own table is a copy about to be thrown
		 * away, and a write acknowledged into it would be lost. */
		return rayc__err(RAYC_ESTATE, "KV '%s': this peer has left "
		                 "the cluster", key);
	if (net == NULL) {
		/* A one-peer cluster keeps its own table. */
		rayc__mutex_lock(&rt->kv_mu);
		int rc = rayc__kv_apply_locked(rt, op, key, val, len, out,
		                               outlen);
		rayc__mutex_unlock(&rt->kv_mu);
		return rc == RAYC_OK ? rc : rayc__err(rc, "KV '%s'", key);
	}
	int rc = kv_call_net(net, op, key, val, len, out, outlen, req);
	rayc__net_put(net);
	return rc;
}

/* RAYC_ESTATE if this peer cannot reach the cluster's KV any more: it is
 * leaving or left, was removed, is cut off from the voters, or the
 * cluster ended.  Its own copy may miss committed writes, and nothing it
 * holds would reach the cluster. */
static int kv_out_of_cluster(rayc__net *net, const char *key)
{
	if (atomic_load(&net->stopping))
		return rayc__err(RAYC_ESTATE, "KV '%s': the peer is shutting "
		                 "down", key);
	if (atomic_load(&net->cut_off))
		return rayc__err(RAYC_ESTATE, "KV '%s': this peer is out of "
		                 "the cluster (removed, or cut off from its "
		                 "coordinator)", key);
	if (atomic_load(&net->cluster_down))
		return rayc__err(RAYC_ESTATE, "KV '%s': the cluster has shut "
		                 "down", key);
	return RAYC_OK;
}

static int kv_call_net(rayc__net *net, int op, const char *key,
                       const void *val, size_t len, void **out,
                       size_t *outlen, uint64_t req)
{
	int64_t deadline = rayc__now_ns() + (int64_t)KV_TIMEOUT_MS * 1000000;
	bool busy = false;
	rayc__mutex_lock(&net->mu);
	if (req == 0)
		req = ++net->next_req;
	rayc__mutex_unlock(&net->mu);
	for (;;) {
		int rc = kv_out_of_cluster(net, key);
		if (rc != RAYC_OK)
			return rc;
		rayc__rpc r;
		rayc__rpc_add(net, &r);
		kv_work *w = kv_work_new(net, r.id, op, key, val, len);
		bool ok = false;
		if (w != NULL) {
			w->client = net->self;
			w->req = req;
			rayc__ctl_post(net, &w->post, run_kv, w);
			/* A new coordinator wakes us (ask it again at once);
			 * an old one that died with our request and no new
			 * one yet: ask again after a second. */
			int64_t until = rayc__now_ns() + 1000000000;
			ok = rayc__event_wait(&r.ev, until < deadline ? until
			                                              : deadline,
			                      20000);
		}
		rayc__rpc_remove(net, &r);
		if (w == NULL)
			return rayc__err(RAYC_ENOMEM, "KV '%s'", key);
		busy = ok && r.rc == RAYC__BUSY;
		if (ok && r.rc != RAYC__RETRY && !busy) {
			if (r.rc != RAYC_OK) {
				free(r.val);
				return rayc__err(r.rc, "KV '%s'", key);
			}
			if (out != NULL) {
				*out = r.val != NULL ? r.val : malloc(1);
				*outlen = r.len;
				if (*out == NULL)
					return rayc__err(RAYC_ENOMEM, "KV '%s'",
					                 key);
			} else {
				free(r.val);
			}
			return RAYC_OK;
		}
		free(r.val);
		if (kv_out_of_cluster(net, key) != RAYC_OK)
			continue; /* says why at the top */
		if (rayc__now_ns() > deadline && busy)
			return rayc__err(RAYC_ETIMEDOUT, "KV '%s': the "
			                 "coordinator's control log stayed "
			                 "full (too many bytes of writes "
			                 "waiting to commit or to be "
			                 "snapshotted)", key);
		if (rayc__now_ns() > deadline)
			return rayc__err(RAYC_ETIMEDOUT, "KV '%s': no answer "
			                 "from a coordinator", key);
		if (ok)
			rayc__sleep_ms(20); /* no coordinator yet, or busy */
	}
}

int rayc__kv_call(int op, const char *key, const void *val, size_t len,
                  void **out, size_t *outlen)
{
	return kv_call(op, key, val, len, out, outlen, 0);
}

/* Keys under RAYC__KV_OWN are the library's (actor names): a program
 * may read them, not write them. */
static int kv_own(const char *key)
{
	if (key != NULL &&
	    strncmp(key, RAYC__KV_OWN, strlen(RAYC__KV_OWN)) == 0)
		return rayc__err(RAYC_EINVAL, "KV '%s': keys beginning with "
		                 "\"%s\" are rayc's own", key, RAYC__KV_OWN);
	return RAYC_OK;
}

int rayc_kv_put(const char *key, const void *val, size_t len)
{
	int rc = kv_own(key);

	return rc != RAYC_OK ? rc : kv_call(KV_PUT, key, val, len, NULL, NULL, 0);
}

int rayc_kv_get(const char *key, void **val, size_t *len)
{
	if (val == NULL || len == NULL)
		return rayc__err(RAYC_EINVAL, "NULL out pointer");
	*val = NULL;
	*len = 0;
	return kv_call(KV_GET, key, NULL, 0, val, len, 0);
}

int rayc_kv_del(const char *key)
{
	int rc = kv_own(key);

	return rc != RAYC_OK ? rc : kv_call(KV_DEL, key, NULL, 0, NULL, NULL, 0);
}

int rayc__test_kv_write(bool put, const char *key, const void *val,
                        size_t len, uint64_t req)
{
	return kv_call(put ? KV_PUT : KV_DEL, key, val, len, NULL, NULL, req);
}

uint64_t rayc__test_kv_proposed(uint64_t *asked)
{
	rayc__rt *rt = rayc__g;

	*asked = 0;
	if (rt == NULL || rt->net == NULL)
		return 0;
	*asked = atomic_load(&rt->net->kv_asked);
	return atomic_load(&rt->net->kv_proposed);
}
