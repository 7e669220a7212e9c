/* view.c -- another peer's arena on this host, mapped read-only, so a
 * fetch can copy an object in one memcpy instead of streaming it over
 * TCP (lib/net/remote.c, the same-host path).  A view is shared by the
 * transfers that use it and unmapped at its last release. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

struct rayc__store_view {
	rayc__shm shm;
	rayc__store_ident id;
	_Atomic int refs;
};

void rayc__store_ident_get(const rayc__store *s, rayc__store_ident *id)
{
	memset(id, 0, sizeof(*id));
	id->pid = rayc__getpid();
	id->fd = s->shm.fd;
	id->size = s->shm.size;
	rayc__shm_ident(&s->shm, &id->dev, &id->ino);
}

int rayc__store_view_open(rayc__store_view **out, const rayc__store_ident *id)
{
	rayc__store_view *v = calloc(1, sizeof(*v));

	if (v == NULL)
		return RAYC_ENOMEM;
	int rc = rayc__shm_open_ro(&v->shm, id->pid, id->fd, (size_t)id->size,
	                           id->dev, id->ino);
	if (rc != RAYC_OK) {
		free(v);
		return rc;
	}
	v->id = *id;
	atomic_init(&v->refs, 1);
	*out = v;
	return RAYC_OK;
}

bool rayc__store_view_is(const rayc__store_view *v,
                         const rayc__store_ident *id)
{
	return v->id.size == id->size && v->id.dev == id->dev &&
	       v->id.ino == id->ino && v->id.pid == id->pid &&
	       v->id.fd == id->fd;
}

const void *rayc__store_view_range(rayc__store_view *v, uint64_t off,
                                   uint64_t len)
{
	if (off > v->shm.size || len > v->shm.size - off)
		return NULL;
	if (len > 0)
		rayc__shm_prefetch(&v->shm, (size_t)off, (size_t)len);
	return (const char *)v->shm.base + off;
}

void rayc__store_view_hold(rayc__store_view *v)
{
	atomic_fetch_add(&v->refs, 1);
}

void rayc__store_view_release(rayc__store_view *v)
{
	if (v == NULL || atomic_fetch_sub(&v->refs, 1) != 1)
		return;
	rayc__shm_close_ro(&v->shm);
	free(v);
}
