/* store.c -- the arena: file, populate-ahead growth, background prefault,
 * and the thread-safe alloc/free entry points. */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

rayc__block *rayc__alloc_locked(rayc__store *s, size_t size);
void rayc__free_locked(rayc__store *s, rayc__block *b);
int rayc__extend_locked(rayc__store *s, size_t off, size_t len);
void rayc__alloc_destroy_locked(rayc__store *s);

#define PREFAULT_STEP ((size_t)4 << 20)

static size_t round_up(size_t n, size_t a)
{
	return (n + a - 1) & ~(a - 1);
}

/* Populates more of the file and hands it to the allocator.  Caller holds
 * grow_mu (not mu): populating can take a while and other allocations
 * from memory already populated go on meanwhile. */
static int grow(rayc__store *s, size_t want) RAYC_REQUIRES(s->grow_mu)
{
	size_t off = atomic_load(&s->populated);
	size_t len = round_up(want, (size_t)2 << 20);

	if (off + len > s->shm.size)
		len = s->shm.size - off;
	if (len == 0)
		return RAYC_ESTOREFULL;
	int rc = rayc__shm_populate(&s->shm, off, len);
	if (rc != RAYC_OK) {
		rayc__log(RAYC_LOG_WARN, "RAYC-STORE-FULL", "%s", rayc_errmsg());
		return rc;
	}
	rayc__mutex_lock(&s->mu);
	rc = rayc__extend_locked(s, off, len);
	if (rc == RAYC_OK)
		atomic_store(&s->populated, off + len);
	rayc__mutex_unlock(&s->mu);
	return rc;
}

static void *prefault_main(void *arg)
{
	rayc__store *s = arg;

	while (!atomic_load(&s->stop_prefault) &&
	       atomic_load(&s->populated) < s->prefault) {
		rayc__mutex_lock(&s->grow_mu);
		int rc = RAYC_OK;
		if (atomic_load(&s->populated) < s->prefault)
			rc = grow(s, PREFAULT_STEP);
		rayc__mutex_unlock(&s->grow_mu);
		if (rc != RAYC_OK)
			break;
	}
	return NULL;
}

int rayc__store_open(rayc__store **out, const char *dir, size_t capacity,
                     size_t prefault)
{
	rayc__store *s = calloc(1, sizeof(*s));
	int rc;

	if (s == NULL)
		return RAYC_ENOMEM;
	capacity = round_up(capacity, (size_t)2 << 20);
	rc = rayc__shm_open(&s->shm, dir, capacity);
	if (rc != RAYC_OK) {
		free(s);
		return rc;
	}
	rayc__mutex_init(&s->mu);
	rayc__mutex_init(&s->grow_mu);
	s->prefault = prefault < capacity ? prefault : capacity;
	if (s->prefault > 0 &&
	    rayc__thread_start(&s->prefault_thread, prefault_main, s) ==
	            RAYC_OK)
		s->prefault_running = 1;
	*out = s;
	return RAYC_OK;
}

void rayc__store_close(rayc__store *s)
{
	if (s == NULL)
		return;
	atomic_store(&s->stop_prefault, 1);
	if (s->prefault_running)
		rayc__thread_join(&s->prefault_thread);
	rayc__mutex_lock(&s->mu);
	rayc__alloc_destroy_locked(s);
	rayc__mutex_unlock(&s->mu);
	rayc__shm_close(&s->shm);
	rayc__mutex_fini(&s->mu);
	rayc__mutex_fini(&s->grow_mu);
	free(s);
}

int rayc__store_alloc(rayc__store *s, size_t n, rayc__block **out)
{
	size_t size = round_up(n == 0 ? 1 : n,
	                       (size_t)1 << RAYC__ALIGN_LOG2);

	if (n > s->shm.size || size > s->shm.size)
		return rayc__err(RAYC_ETOOBIG,
		                 "object of %zu bytes exceeds the %zu-byte store",
		                 n, s->shm.size);
	for (;;) {
		rayc__mutex_lock(&s->mu);
		rayc__block *b = rayc__alloc_locked(s, size);
		size_t seen = atomic_load(&s->populated);
		size_t used = s->used;
		rayc__mutex_unlock(&s->mu);
		if (b != NULL) {
			*out = b;
			return RAYC_OK;
		}
		rayc__mutex_lock(&s->grow_mu);
		int rc = RAYC_OK;
		if (atomic_load(&s->populated) == seen) /* nobody grew it */
			rc = grow(s, size > RAYC__GROW_MIN ? size
			                                   : RAYC__GROW_MIN);
		rayc__mutex_unlock(&s->grow_mu);
		if (rc == RAYC_ESTOREFULL || rc == RAYC_ENOMEM)
			return rayc__err(RAYC_ESTOREFULL,
			                 "object store full: %zu bytes wanted, "
			                 "%zu of %zu in use",
			                 n, used, s->shm.size);
		if (rc != RAYC_OK)
			return rc;
	}
}

int rayc__store_try_alloc(rayc__store *s, size_t n, rayc__block **out)
{
	size_t size = round_up(n == 0 ? 1 : n,
	                       (size_t)1 << RAYC__ALIGN_LOG2);

	if (n > s->shm.size || size > s->shm.size)
		return RAYC_ETOOBIG;
	rayc__mutex_lock(&s->mu);
	rayc__block *b = rayc__alloc_locked(s, size);
	rayc__mutex_unlock(&s->mu);
	if (b == NULL)
		return RAYC_ESTOREFULL;
	*out = b;
	return RAYC_OK;
}

void rayc__store_free(rayc__store *s, rayc__block *b)
{
	if (b == NULL)
		return;
	rayc__mutex_lock(&s->mu);
	rayc__free_locked(s, b);
	rayc__mutex_unlock(&s->mu);
}

void *rayc__store_ptr(const rayc__store *s, const rayc__block *b)
{
	return (char *)s->shm.base + b->off;
}

size_t rayc__store_block_size(const rayc__block *b)
{
	return b->size;
}

size_t rayc__store_block_offset(const rayc__block *b)
{
	return b->off;
}

void rayc__store_stats_get(rayc__store *s, rayc__store_stats *st)
{
	rayc__mutex_lock(&s->mu);
	st->used = s->used;
	st->blocks = s->nblocks;
	rayc__mutex_unlock(&s->mu);
	st->capacity = s->shm.size;
	st->populated = atomic_load(&s->populated);
}

const char *rayc__store_path(const rayc__store *s)
{
	return s->shm.path;
}

bool rayc__store_shareable(const rayc__store *s)
{
	return s->shm.shared;
}
