/* kv_table.c -- the cluster's key-value table.  Every peer holds a copy
 * (a uthash table, rt->kv, under its own lock rt->kv_mu, a leaf) that the
 * control store's log updates (ctl_fsm.c applies KV entries); a one-peer
 * cluster keeps its own.  Here: applying an operation, snapshots of the
 * table (taken under the lock, written without it) and installing one.
 * The calls that reach the coordinator are kv.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_int.h"
#include "testing.h"

#define KV_KEY_MAX RAYC__KV_KEY_MAX
#define KV_VAL_MAX ((size_t)1 << 20)
/* All keys and values together: a snapshot of the control store must fit
 * in one frame (256 MiB). */
#define KV_TOTAL_MAX ((size_t)128 << 20)
#define KV_PUT RAYC__KV_PUT
#define KV_GET RAYC__KV_GET
#define KV_DEL RAYC__KV_DEL
#define KV_PUTNX RAYC__KV_PUTNX
#define KV_DELEQ RAYC__KV_DELEQ

/* One key and its value in one block: the key, its NUL, then the value.
 * An entry never changes once in the table (a put makes a new one), so a
 * snapshot being written on another thread reads the entries it captured
 * without the lock.  refs (under rt->kv_mu) counts the table's hold on it
 * and each such snapshot's; whoever lets go last frees it. */
struct rayc__kv {
	UT_hash_handle hh;
	unsigned refs;
	uint32_t klen;
	size_t len;
	char key[];
};

static inline void *kv_val(rayc__kv *e)
{
	return e->key + e->klen + 1;
}

static rayc__kv *kv_new(const char *key, size_t klen, const void *val,
                        size_t len)
{
	rayc__kv *e = malloc(sizeof(*e) + klen + 1 + len);

	if (e == NULL)
		return NULL;
	memset(&e->hh, 0, sizeof(e->hh));
	e->refs = 1;
	e->klen = (uint32_t)klen;
	e->len = len;
	memcpy(e->key, key, klen);
	e->key[klen] = '\0';
	if (len > 0)
		memcpy(kv_val(e), val, len);
	return e;
}

/* Lets go of e; true if that was the last hold (the caller frees it,
 * with or without the lock). */
static bool kv_unref_locked(rayc__kv *e)
{
	return --e->refs == 0;
}

/* The operation itself on this peer's copy.  For GET a malloc'd copy
 * goes to *out. */
int rayc__kv_apply_locked(rayc__rt *rt, int op, const char *key,
                           const void *val, size_t len, void **out,
                           size_t *outlen) RAYC_REQUIRES(rt->kv_mu)
{
	rayc__kv *e;

	HASH_FIND_STR(rt->kv, key, e);
	size_t klen = strlen(key);
	switch (op) {
	case KV_PUTNX:
		if (e != NULL)
			return RAYC_EEXIST;
		/* fall through */
	case KV_PUT: {
		size_t was = e != NULL ? klen + e->len : 0;
		if (rt->kv_bytes - was + klen + len > KV_TOTAL_MAX)
			return RAYC_ESTOREFULL; /* the same on every peer */
		rayc__kv *n = rayc__fault(RAYC__FAULT_KV_APPLY)
		                      ? NULL
		                      : kv_new(key, klen, val, len);
		if (n == NULL)
			return RAYC_ENOMEM;
		if (e != NULL) {
			HASH_DEL(rt->kv, e);
			if (kv_unref_locked(e))
				free(e);
		}
		HASH_ADD_KEYPTR(hh, rt->kv, n->key, klen, n);
		rt->kv_bytes = rt->kv_bytes - was + klen + len;
		return RAYC_OK;
	}
	case KV_GET:
		if (e == NULL)
			return RAYC_ENOTFOUND;
		*out = malloc(e->len > 0 ? e->len : 1);
		if (*out == NULL)
			return RAYC_ENOMEM;
		if (e->len > 0)
			memcpy(*out, kv_val(e), e->len);
		*outlen = e->len;
		return RAYC_OK;
	case KV_DELEQ:
		/* Only the entry holding exactly this value. */
		if (e != NULL && (e->len != len ||
		                  (len > 0 && memcmp(kv_val(e), val, len) != 0)))
			return RAYC_ENOTFOUND;
		/* fall through */
	case KV_DEL:
		if (e == NULL)
			return RAYC_ENOTFOUND;
		rt->kv_bytes -= klen + e->len;
		HASH_DEL(rt->kv, e);
		if (kv_unref_locked(e))
			free(e);
		return RAYC_OK;
	default:
		return RAYC_EPROTO;
	}
}

void rayc__kv_del_matching_locked(rayc__rt *rt, const char *prefix,
                                  bool (*match)(const void *val, size_t len,
                                                void *arg),
                                  void *arg)
{
	rayc__kv *e, *tmp;
	size_t plen = strlen(prefix);

	HASH_ITER(hh, rt->kv, e, tmp) {
		if (e->klen < plen || memcmp(e->key, prefix, plen) != 0 ||
		    !match(kv_val(e), e->len, arg))
			continue;
		rt->kv_bytes -= e->klen + e->len;
		HASH_DEL(rt->kv, e);
		if (kv_unref_locked(e))
			free(e);
	}
}

static void (*_Atomic kv_write_hook)(void);

void rayc__test_set_kv_write_hook(void (*fn)(void))
{
	atomic_store(&kv_write_hook, fn);
}

/* The size of one entry in a snapshot: key (u32 length + bytes), value
 * (u64 length + bytes). */
static size_t kv_wire_size(const rayc__kv *e)
{
	return 4 + e->klen + 8 + e->len;
}

int rayc__kv_snap_take_locked(rayc__rt *rt, rayc__kv_snap *s)
{
	rayc__kv *e, *tmp;
	void (*hook)(void) = atomic_load(&kv_write_hook);
	size_t i = 0;

	if (hook != NULL)
		hook();
	s->n = HASH_COUNT(rt->kv);
	s->bytes = 4;
	s->e = malloc((s->n > 0 ? s->n : 1) * sizeof(*s->e));
	if (s->e == NULL) {
		s->n = 0;
		return RAYC_ENOMEM;
	}
	HASH_ITER(hh, rt->kv, e, tmp) {
		e->refs++;
		s->e[i++] = e;
		s->bytes += kv_wire_size(e);
	}
	return RAYC_OK;
}

bool rayc__kv_snap_write(const rayc__kv_snap *s, rayc__wbuf *b,
                         _Atomic bool *stop)
{
	rayc__w_u32(b, (uint32_t)s->n);
	for (size_t i = 0; i < s->n; i++) {
		if (atomic_load_explicit(stop, memory_order_relaxed))
			return false;
		rayc__kv *e = s->e[i];
		rayc__w_u32(b, e->klen);
		rayc__w_bytes(b, e->key, e->klen);
		rayc__w_blob(b, kv_val(e), e->len);
	}
	return !b->bad;
}

/* Lets go of n entries (takes the KV's lock); the ones that were only
 * held there are freed after it, so a big value's munmap does not hold
 * up the KV. */
static void kv_release(rayc__rt *rt, rayc__kv **e, size_t n)
	RAYC_EXCLUDES(rt->kv_mu)
{
	size_t dead = 0;

	rayc__mutex_lock(&rt->kv_mu);
	for (size_t i = 0; i < n; i++)
		if (kv_unref_locked(e[i]))
			e[dead++] = e[i];
	rayc__mutex_unlock(&rt->kv_mu);
	for (size_t i = 0; i < dead; i++)
		free(e[i]);
}

void rayc__kv_snap_release(rayc__rt *rt, rayc__kv_snap *s)
{
	if (s->e != NULL)
		kv_release(rt, s->e, s->n);
	free(s->e);
	s->e = NULL;
	s->n = 0;
}

int rayc__kv_table_read(rayc__rd *rd, rayc__kv_table *t)
{
	uint32_t n = rayc__r_u32(rd);

	t->h = NULL;
	t->bytes = 0;
	if (rd->bad)
		return RAYC_EPROTO;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t klen = rayc__r_u32(rd);
		const char *key = klen <= KV_KEY_MAX ? rayc__r_bytes(rd, klen)
		                                     : NULL;
		size_t len;
		const void *val = rayc__r_blob(rd, &len);
		rayc__kv *e = NULL;
		if (key != NULL && !rd->bad)
			HASH_FIND(hh, t->h, key, klen, e);
		if (key == NULL || rd->bad || klen == 0 ||
		    memchr(key, '\0', klen) != NULL || len > KV_VAL_MAX ||
		    e != NULL || t->bytes + klen + len > KV_TOTAL_MAX) {
			rayc__kv_table_free(t);
			return RAYC_EPROTO;
		}
		e = kv_new(key, klen, val, len);
		if (e == NULL) {
			rayc__kv_table_free(t);
			return RAYC_ENOMEM;
		}
		HASH_ADD_KEYPTR(hh, t->h, e->key, klen, e);
		t->bytes += klen + len;
	}
	return RAYC_OK;
}

void rayc__kv_table_swap_locked(rayc__rt *rt, rayc__kv_table *t)
{
	rayc__kv *h = rt->kv;
	size_t bytes = rt->kv_bytes;

	rt->kv = t->h;
	rt->kv_bytes = t->bytes;
	t->h = h;
	t->bytes = bytes;
}

void rayc__kv_table_release(rayc__rt *rt, rayc__kv_table *t)
{
	rayc__kv *e, *tmp;
	size_t n = HASH_COUNT(t->h), i = 0;
	rayc__kv **all = malloc((n > 0 ? n : 1) * sizeof(*all));

	if (all == NULL) {
		/* Let go one at a time, under the lock. */
		rayc__mutex_lock(&rt->kv_mu);
		HASH_ITER(hh, t->h, e, tmp) {
			HASH_DEL(t->h, e);
			if (kv_unref_locked(e))
				free(e);
		}
		rayc__mutex_unlock(&rt->kv_mu);
		t->bytes = 0;
		return;
	}
	HASH_ITER(hh, t->h, e, tmp) {
		HASH_DEL(t->h, e);
		all[i++] = e;
	}
	kv_release(rt, all, n);
	free(all);
	t->bytes = 0;
}

void rayc__kv_table_free(rayc__kv_table *t)
{
	rayc__kv *e, *tmp;

	HASH_ITER(hh, t->h, e, tmp) {
		HASH_DEL(t->h, e);
		free(e);
	}
	t->bytes = 0;
}

int rayc__test_kv_local(const char *key, void **val, size_t *len)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL)
		return RAYC_ESTATE;
	rayc__mutex_lock(&rt->kv_mu);
	int rc = rayc__kv_apply_locked(rt, KV_GET, key, NULL, 0, val, len);
	rayc__mutex_unlock(&rt->kv_mu);
	return rc;
}

void rayc__kv_free_locked(rayc__rt *rt)
{
	rayc__kv *e, *tmp;

	HASH_ITER(hh, rt->kv, e, tmp) {
		HASH_DEL(rt->kv, e);
		if (kv_unref_locked(e))
			free(e);
	}
	rt->kv_bytes = 0;
}
