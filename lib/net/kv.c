/* kv.c -- the cluster's key-value store.  The coordinator keeps it (a
 * uthash table, rt->kv, under rt->mu); other peers reach it with KV_REQ
 * frames and wait for the matching KV_REP.  On the coordinator, and in a
 * one-peer cluster, the calls are local.  (Replicating it with Raft is the
 * control store's next step.) */
#include <stdlib.h>
#include <string.h>

#include "net/net_int.h"

#define KV_KEY_MAX 255
#define KV_VAL_MAX ((size_t)1 << 20)
#define KV_TIMEOUT_MS 5000

enum { KV_PUT = 1, KV_GET, KV_DEL };

struct rayc__kv {
	char *key;
	void *val;
	size_t len;
	UT_hash_handle hh;
};

/* The operation itself, on the coordinator.  For GET a malloc'd copy
 * goes to *out. */
static int kv_apply_locked(rayc__rt *rt, int op, const char *key,
                           const void *val, size_t len, void **out,
                           size_t *outlen) RAYC_REQUIRES(rt->mu)
{
	rayc__kv *e;

	HASH_FIND_STR(rt->kv, key, e);
	switch (op) {
	case KV_PUT: {
		void *copy = malloc(len > 0 ? len : 1);
		if (copy == NULL)
			return RAYC_ENOMEM;
		if (len > 0)
			memcpy(copy, val, len);
		if (e == NULL) {
			e = calloc(1, sizeof(*e));
			if (e == NULL || (e->key = strdup(key)) == NULL) {
				free(e);
				free(copy);
				return RAYC_ENOMEM;
			}
			HASH_ADD_KEYPTR(hh, rt->kv, e->key, strlen(e->key), e);
		} else {
			free(e->val);
		}
		e->val = copy;
		e->len = len;
		return RAYC_OK;
	}
	case KV_GET:
		if (e == NULL)
			return RAYC_ENOTFOUND;
		*out = malloc(e->len > 0 ? e->len : 1);
		if (*out == NULL)
			return RAYC_ENOMEM;
		if (e->len > 0)
			memcpy(*out, e->val, e->len);
		*outlen = e->len;
		return RAYC_OK;
	case KV_DEL:
		if (e == NULL)
			return RAYC_ENOTFOUND;
		HASH_DEL(rt->kv, e);
		free(e->key);
		free(e->val);
		free(e);
		return RAYC_OK;
	default:
		return RAYC_EPROTO;
	}
}

void rayc__kv_free_locked(rayc__rt *rt)
{
	rayc__kv *e, *tmp;

	HASH_ITER(hh, rt->kv, e, tmp) {
		HASH_DEL(rt->kv, e);
		free(e->key);
		free(e->val);
		free(e);
	}
}

void rayc__kv_handle(rayc__conn *c, int type, rayc__rd *rd)
{
	rayc__net *net = c->net;
	uint64_t id = rayc__r_u64(rd);

	if (type == RAYC__MSG_KV_REQ) {
		int op = rayc__r_u8(rd);
		char key[KV_KEY_MAX + 1];
		size_t len;
		rayc__r_str(rd, key, sizeof(key));
		const void *val = rayc__r_blob(rd, &len);
		if (rd->bad)
			return rayc__conn_close(c, "bad KV_REQ");
		void *out = NULL;
		size_t outlen = 0;
		rayc__rt *rt = net->rt;
		rayc__mutex_lock(&rt->mu);
		int rc = net->self == net->coord
		                 ? kv_apply_locked(rt, op, key, val, len, &out,
		                                   &outlen)
		                 : RAYC_ESTATE;
		rayc__mutex_unlock(&rt->mu);
		rayc__wbuf b = { 0 };
		size_t f = rayc__w_frame_begin(&b, RAYC__MSG_KV_REP, net->self);
		rayc__w_u64(&b, id);
		rayc__w_u32(&b, (uint32_t)rc);
		rayc__w_blob(&b, out, outlen);
		rayc__w_frame_end(&b, f);
		rayc__conn_send(c, &b);
		rayc__wbuf_fini(&b);
		free(out);
		return;
	}
	int rc = (int)rayc__r_u32(rd);
	size_t len;
	const void *val = rayc__r_blob(rd, &len);
	if (rd->bad)
		return rayc__conn_close(c, "bad KV_REP");
	rayc__mutex_lock(&net->mu);
	for (rayc__rpc *r = net->rpcs; r != NULL; r = r->next) {
		if (r->id != id)
			continue;
		r->rc = rc < 0 || rc > RAYC_EEXIST ? RAYC_EPROTO : rc;
		if (rc == RAYC_OK && len > 0) {
			r->val = malloc(len);
			if (r->val == NULL)
				r->rc = RAYC_ENOMEM;
			else
				memcpy(r->val, val, len);
		}
		r->len = len;
		rayc__event_set(&r->ev);
		break;
	}
	rayc__mutex_unlock(&net->mu);
}

static int kv_call(int op, const char *key, const void *val, size_t len,
                   void **out, size_t *outlen)
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
	rayc__mutex_lock(&rt->mu);
	rayc__net *net = rt->net;
	if (net == NULL || net->self == net->coord) {
		/* The table is here (a one-peer cluster keeps its own). */
		int rc = kv_apply_locked(rt, op, key, val, len, out, outlen);
		rayc__mutex_unlock(&rt->mu);
		return rc == RAYC_OK ? rc : rayc__err(rc, "KV '%s'", key);
	}
	rayc__mutex_unlock(&rt->mu);
	rayc__mutex_lock(&net->mu);
	rayc__rpc r;
	memset(&r, 0, sizeof(r));
	r.id = ++net->next_rpc;
	r.next = net->rpcs;
	net->rpcs = &r;
	uint32_t coord = net->coord;
	rayc__mutex_unlock(&net->mu);
	rayc__wbuf b = { 0 };
	size_t f = rayc__w_frame_begin(&b, RAYC__MSG_KV_REQ, net->self);
	rayc__w_u64(&b, r.id);
	rayc__w_u8(&b, (uint8_t)op);
	rayc__w_str(&b, key);
	rayc__w_blob(&b, val, len);
	rayc__w_frame_end(&b, f);
	rayc__net_send_to(net, coord, &b);
	rayc__wbuf_fini(&b);
	bool ok = rayc__event_wait(&r.ev,
	                           rayc__now_ns() +
	                                   (int64_t)KV_TIMEOUT_MS * 1000000,
	                           20000);
	rayc__mutex_lock(&net->mu);
	for (rayc__rpc **pp = &net->rpcs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == &r) {
			*pp = r.next;
			break;
		}
	rayc__mutex_unlock(&net->mu);
	if (!ok) {
		free(r.val);
		return rayc__err(RAYC_ETIMEDOUT, "KV '%s': no reply from the "
		                 "coordinator", key);
	}
	if (r.rc != RAYC_OK) {
		free(r.val);
		return rayc__err(r.rc, "KV '%s'", key);
	}
	if (out != NULL) {
		*out = r.val != NULL ? r.val : malloc(1);
		*outlen = r.len;
	} else {
		free(r.val);
	}
	return RAYC_OK;
}

int rayc_kv_put(const char *key, const void *val, size_t len)
{
	return kv_call(KV_PUT, key, val, len, NULL, NULL);
}

int rayc_kv_get(const char *key, void **val, size_t *len)
{
	if (val == NULL || len == NULL)
		return rayc__err(RAYC_EINVAL, "NULL out pointer");
	*val = NULL;
	*len = 0;
	return kv_call(KV_GET, key, NULL, 0, val, len);
}

int rayc_kv_del(const char *key)
{
	return kv_call(KV_DEL, key, NULL, 0, NULL, NULL);
}
