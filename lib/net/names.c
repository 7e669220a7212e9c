/* names.c -- actor names, cluster-wide: one KV entry per named actor
 * (key RAYC__NAME_PREFIX + name; value: format, actor id, owner peer,
 * class name), so a name is found from any peer and survives the
 * coordinator with the rest of the control store.
 *
 * Claiming a name is a put-if-absent (KV_PUTNX) committed through Raft:
 * of two peers creating the same name at once one wins, the other gets
 * RAYC_EEXIST and the winner's record.  A name is given back with a
 * delete of exactly that record (KV_DELEQ, so a late delete never takes
 * a newer actor's name), sent when the actor dies without waiting for
 * it: the delete is queued here and re-sent on the loop's tick until the
 * coordinator answers (the same request id each time, applied once).
 * When the owner itself dies or leaves, every replica drops the names of
 * that incarnation (owner id and generation, both in the record) as it
 * applies the removal (rayc__names_sweep): a decision taken from the log
 * alone, so every replica takes the same one.  A claim that reaches the
 * log after its owner's removal (its request was under way) would not be
 * swept: whoever finds a record whose owner is dead treats it as absent
 * (a claim deletes it and tries again; a lookup says not found), so no
 * name outlives its owner.  A detached actor adopted by its host (its
 * owner gone) is claimed again by the host, through the same queue. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/ctl_int.h"
#include "net/net_int.h"

#define NAME_FORMAT 2
#define RESEND_NS ((int64_t)2 * 1000000000) /* no answer: send again */

/* A write waiting for the coordinator's answer (net->name_dels): a
 * name given back (KV_DELEQ) or claimed by an adopter (KV_PUTNX). */
struct rayc__name_del {
	rayc__name_del *next;
	int op;
	uint64_t rpc;    /* this send's id (0: not sent) */
	uint64_t req;    /* the write's id, the same in every send */
	int64_t sent_ns; /* when sent */
	size_t len;
	char key[RAYC__KV_KEY_MAX + 1];
	unsigned char val[];
};

static void name_key(char *key, const char *name)
{
	snprintf(key, RAYC__KV_KEY_MAX + 1, "%s%s", RAYC__NAME_PREFIX, name);
}

static void rec_write(rayc__wbuf *b, const rayc__name_rec *r)
{
	rayc__w_u8(b, NAME_FORMAT);
	rayc__w_u64(b, r->id.hi);
	rayc__w_u64(b, r->id.lo);
	rayc__w_u32(b, r->owner);
	rayc__w_u64(b, r->gen);
	rayc__w_str(b, r->cls);
}

static bool rec_read(const void *val, size_t len, rayc__name_rec *r)
{
	rayc__rd rd;

	rayc__rd_init(&rd, val, len);
	int format = rayc__r_u8(&rd);
	r->id.hi = rayc__r_u64(&rd);
	r->id.lo = rayc__r_u64(&rd);
	r->owner = rayc__r_u32(&rd);
	r->gen = rayc__r_u64(&rd);
	rayc__r_str(&rd, r->cls, sizeof(r->cls));
	return !rd.bad && format == NAME_FORMAT && rayc__rd_left(&rd) == 0 &&
	       r->owner != 0 && r->owner < RAYC__MAX_PEERS;
}

/* KV operation op (PUTNX, DELEQ) on name's key with record r as the
 * value, waiting for its answer. */
static int rec_call(int op, const char *name, const rayc__name_rec *r)
{
	char key[RAYC__KV_KEY_MAX + 1];
	rayc__wbuf b = { 0 };

	name_key(key, name);
	rec_write(&b, r);
	if (b.bad) {
		rayc__wbuf_fini(&b);
		return rayc__err(RAYC_ENOMEM, "actor name '%s'", name);
	}
	int rc = rayc__kv_call(op, key, b.p, b.len, NULL, NULL);
	rayc__wbuf_fini(&b);
	return rc;
}

/* This peer, as a record names its owner; false if not in a cluster. */
static bool self_of(rayc__rt *rt, uint32_t *id, uint64_t *gen)
{
	rayc__net *net = rayc__net_get(rt);

	if (net == NULL)
		return false;
	rayc__mutex_lock(&net->mu);
	*id = net->self;
	*gen = net->self != 0 ? net->peers[net->self].gen : 0;
	rayc__mutex_unlock(&net->mu);
	rayc__net_put(net);
	return *id != 0;
}

/* The record's owner (that incarnation) is dead here. */
static bool rec_stale(rayc__rt *rt, const rayc__name_rec *r)
{
	rayc__net *net = rayc__net_get(rt);

	if (net == NULL)
		return false;
	rayc__mutex_lock(&net->mu);
	bool gone = rayc__net_gone_locked(net, r->owner, r->gen);
	rayc__mutex_unlock(&net->mu);
	rayc__net_put(net);
	return gone;
}

int rayc__net_name_claim(rayc__rt *rt, const char *name, rayc__name_rec *mine,
                         rayc__name_rec *theirs)
{
	if (!self_of(rt, &mine->owner, &mine->gen))
		return rayc__err(RAYC_ESTATE, "actor name '%s': this peer is "
		                 "not in a cluster (any more)", name);
	int rc = rec_call(RAYC__KV_PUTNX, name, mine);
	if (rc == RAYC_EEXIST) {
		rc = rayc__net_name_lookup(rt, name, theirs);
		return rc == RAYC_OK ? RAYC_EEXIST : rc;
	}
	if (rc == RAYC_ESTATE)
		return rayc__err(rc, "actor name '%s': this peer is not a "
		                 "member of the cluster (any more)", name);
	return rc;
}

int rayc__net_name_lookup(rayc__rt *rt, const char *name,
                          rayc__name_rec *out)
{
	char key[RAYC__KV_KEY_MAX + 1];
	void *val = NULL;
	size_t len = 0;

	name_key(key, name);
	int rc = rayc__kv_call(RAYC__KV_GET, key, NULL, 0, &val, &len);
	if (rc == RAYC_ENOTFOUND)
		return rayc__err(rc, "no live actor is named '%s'", name);
	if (rc != RAYC_OK)
		return rc;
	bool ok = rec_read(val, len, out);
	free(val);
	if (!ok)
		return rayc__err(RAYC_EPROTO, "actor name '%s': its record "
		                 "does not decode", name);
	if (rec_stale(rt, out)) {
		/* Claimed as its owner was removed: gone with it. */
		(void)rayc__net_name_drop(name, out);
		return rayc__err(RAYC_ENOTFOUND, "no live actor is named "
		                 "'%s' (its owner, peer %u, is gone)", name,
		                 out->owner);
	}
	return RAYC_OK;
}

int rayc__net_name_drop(const char *name, const rayc__name_rec *r)
{
	int rc = rec_call(RAYC__KV_DELEQ, name, r);

	return rc == RAYC_ENOTFOUND ? RAYC_OK : rc; /* gone either way */
}

static void name_write_locked(rayc__rt *rt, int op, const char *name,
                              rayc_actor id, const char *cls)
	RAYC_REQUIRES(rt->mu)
{
	rayc__net *net = rt->net;
	rayc__wbuf b = { 0 };
	rayc__name_rec r = { .id = id };

	if (net == NULL || atomic_load(&net->stopping))
		return; /* leaving: the removal sweeps our names */
	rayc__mutex_lock(&net->mu);
	r.owner = net->self;
	r.gen = net->peers[net->self].gen;
	rayc__mutex_unlock(&net->mu);
	snprintf(r.cls, sizeof(r.cls), "%s", cls);
	rec_write(&b, &r);
	rayc__name_del *d = b.bad || b.len > RAYC__NAME_REC_MAX
	                            ? NULL
	                            : malloc(sizeof(*d) + b.len);
	if (d == NULL) {
		rayc__wbuf_fini(&b);
		rayc__log(RAYC_LOG_WARN, "RAYC-ACTOR-NAME",
		          "no memory to give back the name '%s': it stays "
		          "taken until this peer leaves", name);
		return;
	}
	name_key(d->key, name);
	d->op = op;
	d->len = b.len;
	memcpy(d->val, b.p, b.len);
	rayc__wbuf_fini(&b);
	d->sent_ns = 0;
	rayc__mutex_lock(&net->mu);
	/* One rpc id for every send: the answer to any of them ends it. */
	d->rpc = ++net->next_rpc;
	d->req = ++net->next_req;
	d->next = net->name_dels;
	net->name_dels = d;
	rayc__mutex_unlock(&net->mu);
	rayc__names_tick(net); /* sent now, not at the next tick */
}

void rayc__net_name_gone_locked(rayc__rt *rt, const char *name,
                                rayc_actor id, const char *cls)
{
	name_write_locked(rt, RAYC__KV_DELEQ, name, id, cls);
}

void rayc__net_name_adopt_locked(rayc__rt *rt, const char *name,
                                 rayc_actor id, const char *cls)
{
	name_write_locked(rt, RAYC__KV_PUTNX, name, id, cls);
}

void rayc__names_tick(rayc__net *net)
{
	/* Copies: an answer may free a delete as soon as net->mu is let
	 * go, and the send (which may run inline while the loop stops, and
	 * take net->mu) must not hold it. */
	struct {
		uint64_t rpc, req;
		int op;
		size_t len;
		char key[RAYC__KV_KEY_MAX + 1];
		unsigned char val[RAYC__NAME_REC_MAX];
	} send[8];
	int n = 0;
	int64_t now = rayc__now_ns();

	rayc__mutex_lock(&net->mu);
	for (rayc__name_del *d = net->name_dels; d != NULL && n < 8;
	     d = d->next) {
		if (d->sent_ns != 0 && now - d->sent_ns < RESEND_NS)
			continue;
		d->sent_ns = now;
		send[n].rpc = d->rpc;
		send[n].req = d->req;
		send[n].op = d->op;
		send[n].len = d->len;
		memcpy(send[n].key, d->key, sizeof(d->key));
		memcpy(send[n++].val, d->val, d->len);
	}
	rayc__mutex_unlock(&net->mu);
	for (int i = 0; i < n; i++)
		rayc__kv_send_async(net, send[i].rpc, send[i].req, send[i].op,
		                    send[i].key, send[i].val, send[i].len);
}

bool rayc__names_answered_locked(rayc__net *net, uint64_t rpc, int rc)
{
	for (rayc__name_del **pp = &net->name_dels; *pp != NULL;
	     pp = &(*pp)->next) {
		rayc__name_del *d = *pp;
		if (d->rpc != rpc)
			continue;
		/* Applied, or the name was no longer this actor's (a
		 * delete), or taken meanwhile (a claim): done.  Anything
		 * else (no coordinator, busy, out of memory there): again
		 * at the next tick. */
		bool done = rc == RAYC_OK || rc == RAYC_ENOTFOUND ||
		            (d->op == RAYC__KV_PUTNX &&
		             (rc == RAYC_EEXIST || rc == RAYC_ESTATE));
		if (!done) {
			d->sent_ns = 0;
			return true;
		}
		if (d->op == RAYC__KV_PUTNX && rc != RAYC_OK)
			rayc__log(RAYC_LOG_WARN, "RAYC-ACTOR-NAME", "an adopted "
			          "actor's name %s could not be claimed again "
			          "(%s): only this peer finds it by that name",
			          d->key + strlen(RAYC__NAME_PREFIX),
			          rayc_strerror(rc));
		*pp = d->next;
		free(d);
		return true;
	}
	return false;
}

void rayc__names_resend_locked(rayc__net *net)
{
	for (rayc__name_del *d = net->name_dels; d != NULL; d = d->next)
		d->sent_ns = 0;
}

void rayc__names_free(rayc__net *net)
{
	while (net->name_dels != NULL) {
		rayc__name_del *d = net->name_dels;
		net->name_dels = d->next;
		free(d);
	}
}

struct owner_key {
	uint32_t id;
	uint64_t gen;
};

static bool owned_by(const void *val, size_t len, void *arg)
{
	const struct owner_key *k = arg;
	rayc__name_rec r;

	/* A record that does not decode has no owner to give it back. */
	return !rec_read(val, len, &r) || (r.owner == k->id && r.gen == k->gen);
}

void rayc__names_sweep(rayc__net *net, uint32_t dead, uint64_t gen)
{
	rayc__rt *rt = net->rt;
	struct owner_key k = { dead, gen };

	rayc__mutex_lock(&rt->kv_mu);
	rayc__kv_del_matching_locked(rt, RAYC__NAME_PREFIX, owned_by, &k);
	rayc__mutex_unlock(&rt->kv_mu);
}
