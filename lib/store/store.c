/* store.c -- the arena: file, growth warmed ahead or behind, the warmer
 * thread (prefault, then growths handed out cold), and the thread-safe
 * alloc/free entry points. */
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"

rayc__block *rayc__alloc_locked(rayc__store *s, size_t size);
void rayc__free_locked(rayc__store *s, rayc__block *b);
int rayc__extend_locked(rayc__store *s, size_t off, size_t len);
void rayc__alloc_destroy_locked(rayc__store *s);

#define STEP RAYC__WARM_STEP
/* The prefault's growths: a test's store of 4 MiB prefault grows once,
 * so a put that waited for it finds the arena grown for good. */
#define PREFAULT_STEP ((size_t)4 << 20)

static size_t round_up(size_t n, size_t a)
{
	return (n + a - 1) & ~(a - 1);
}

/* Claims step i for warming: true if nobody had. */
static bool claim(rayc__store *s, size_t i)
{
	_Atomic uint64_t *w = &s->warm[i / 64];
	uint64_t bit = (uint64_t)1 << (i % 64);

	if (atomic_load_explicit(w, memory_order_relaxed) & bit)
		return false;
	return (atomic_fetch_or_explicit(w, bit, memory_order_relaxed) &
	        bit) == 0;
}

static int warm_step(rayc__store *s, size_t i)
{
	if (!claim(s, i))
		return RAYC_OK;
	int rc = rayc__shm_populate(&s->shm, i * STEP, STEP,
	                            &s->stop_warmer);
	if (rc == RAYC_OK)
		atomic_fetch_add(&s->warmed, STEP);
	return rc;
}

void rayc__store_warm(rayc__store *s, const void *p, size_t len)
{
	uintptr_t base = (uintptr_t)s->shm.base, at = (uintptr_t)p;

	if (at < base || at - base >= s->shm.size || len == 0)
		return; /* not in the arena: the heap's */
	size_t off = at - base;
	size_t end = len < s->shm.size - off ? off + len : s->shm.size;
	for (size_t i = off / STEP; i * STEP < end; i++)
		(void)warm_step(s, i);
}

static void *warmer_main(void *arg);

/* Starts the warmer thread if it is not running: false if it cannot. */
static bool warmer_start(rayc__store *s) RAYC_REQUIRES(s->grow_mu)
{
	if (!s->warmer_running &&
	    rayc__thread_start(&s->warmer, warmer_main, s) == RAYC_OK)
		s->warmer_running = 1;
	return s->warmer_running;
}

/* Makes more of the file usable and hands it to the allocator.  Caller
 * holds grow_mu (not mu): warming can take a while and other
 * allocations from memory already populated go on meanwhile. */
static int grow(rayc__store *s, size_t want) RAYC_REQUIRES(s->grow_mu)
{
	size_t off = atomic_load(&s->populated);
	size_t len = round_up(want, STEP);

	if (off + len > s->shm.size)
		len = s->shm.size - off;
	if (len == 0)
		return RAYC_ESTOREFULL;
	int rc = rayc__shm_reserve(&s->shm, off, len);
	bool later = rc == RAYC_OK && len >= RAYC__WARM_LATER_MIN &&
	             warmer_start(s);
	size_t end = (off + len) / STEP; /* both are steps */
	for (size_t i = off / STEP; !later && rc == RAYC_OK && i < end; i++)
		rc = warm_step(s, i);
	if (rc == RAYC_ESTATE)
		return rc; /* the store is closing */
	if (rc != RAYC_OK) {
		rayc__log(RAYC_LOG_WARN, "RAYC-STORE-FULL", "%s", rayc_errmsg());
		return rc;
	}
	rayc__mutex_lock(&s->mu);
	rc = rayc__extend_locked(s, off, len);
	if (rc == RAYC_OK)
		atomic_store(&s->populated, off + len);
	rayc__mutex_unlock(&s->mu);
	if (rc == RAYC_OK && later)
		rayc__event_set(&s->warm_ev);
	return rc;
}

/* The store's own thread: populates the first prefault bytes, then
 * warms each growth handed out cold, from the top of the arena down
 * (from a growth's end towards its first writer), until the store
 * closes. */
static void *warmer_main(void *arg)
{
	rayc__store *s = arg;

	while (!atomic_load(&s->stop_warmer) &&
	       atomic_load(&s->populated) < s->prefault) {
		rayc__mutex_lock(&s->grow_mu);
		int rc = RAYC_OK;
		if (atomic_load(&s->populated) < s->prefault)
			rc = grow(s, PREFAULT_STEP);
		rayc__mutex_unlock(&s->grow_mu);
		if (rc != RAYC_OK)
			break;
	}
	while (!atomic_load(&s->stop_warmer)) {
		for (size_t i = atomic_load(&s->populated) / STEP;
		     i-- > 0 && !atomic_load(&s->stop_warmer);)
			(void)warm_step(s, i); /* a failure: writers fault */
		(void)rayc__event_wait(&s->warm_ev, -1, 0);
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
	capacity = round_up(capacity, STEP);
	s->warm = calloc(capacity / STEP / 64 + 1, sizeof(*s->warm));
	if (s->warm == NULL) {
		free(s);
		return RAYC_ENOMEM;
	}
	rc = rayc__shm_open(&s->shm, dir, capacity);
	if (rc != RAYC_OK) {
		free(s->warm);
		free(s);
		return rc;
	}
	rayc__mutex_init(&s->mu);
	rayc__mutex_init(&s->grow_mu);
	s->prefault = prefault < capacity ? prefault : capacity;
	if (s->prefault > 0) {
		rayc__mutex_lock(&s->grow_mu);
		(void)warmer_start(s);
		rayc__mutex_unlock(&s->grow_mu);
	}
	*out = s;
	return RAYC_OK;
}

void rayc__store_close(rayc__store *s)
{
	if (s == NULL)
		return;
	atomic_store(&s->stop_warmer, 1);
	rayc__event_set(&s->warm_ev);
	if (s->warmer_running)
		rayc__thread_join(&s->warmer);
	rayc__mutex_lock(&s->mu);
	rayc__alloc_destroy_locked(s);
	rayc__mutex_unlock(&s->mu);
	rayc__shm_close(&s->shm);
	rayc__mutex_fini(&s->mu);
	rayc__mutex_fini(&s->grow_mu);
	free(s->warm);
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
	st->warm = atomic_load(&s->warmed);
}

const char *rayc__store_path(const rayc__store *s)
{
	return s->shm.path;
}

bool rayc__store_shareable(const rayc__store *s)
{
	return s->shm.shared;
}
