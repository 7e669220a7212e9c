/* alloc.c -- TLSF allocator over the arena's offsets (see store_int.h). */
#include <stdlib.h>

#include "store/store_int.h"

static int fls64(uint64_t x)
{
	return 63 - __builtin_clzll(x);
}

static void mapping(size_t size, int *fl, int *sl)
{
	if (size < ((size_t)1 << RAYC__FL_SHIFT)) {
		*fl = 0;
		*sl = (int)(size >> RAYC__ALIGN_LOG2);
	} else {
		int f = fls64(size);
		*sl = (int)((size >> (f - RAYC__SL_LOG2)) ^ RAYC__SL_COUNT);
		*fl = f - RAYC__FL_SHIFT + 1;
	}
}

/* Rounds size up to the next list start so any block found fits. */
static void mapping_search(size_t size, int *fl, int *sl)
{
	if (size >= ((size_t)1 << RAYC__FL_SHIFT))
		size += ((size_t)1 << (fls64(size) - RAYC__SL_LOG2)) - 1;
	mapping(size, fl, sl);
}

static void free_insert(rayc__store *s, rayc__block *b) RAYC_REQUIRES(s->mu)
{
	int fl, sl;

	mapping(b->size, &fl, &sl);
	b->is_free = 1;
	b->free_prev = NULL;
	b->free_next = s->free[fl][sl];
	if (b->free_next != NULL)
		b->free_next->free_prev = b;
	s->free[fl][sl] = b;
	s->fl_map |= (uint64_t)1 << fl;
	s->sl_map[fl] |= 1u << sl;
}

static void free_remove(rayc__store *s, rayc__block *b) RAYC_REQUIRES(s->mu)
{
	int fl, sl;

	mapping(b->size, &fl, &sl);
	if (b->free_prev != NULL)
		b->free_prev->free_next = b->free_next;
	else
		s->free[fl][sl] = b->free_next;
	if (b->free_next != NULL)
		b->free_next->free_prev = b->free_prev;
	if (s->free[fl][sl] == NULL) {
		s->sl_map[fl] &= ~(1u << sl);
		if (s->sl_map[fl] == 0)
			s->fl_map &= ~((uint64_t)1 << fl);
	}
	b->is_free = 0;
}

static rayc__block *find_suitable(rayc__store *s, size_t size)
	RAYC_REQUIRES(s->mu)
{
	int fl, sl;

	mapping_search(size, &fl, &sl);
	if (fl >= RAYC__FL_COUNT)
		return NULL;
	uint32_t sl_map = s->sl_map[fl] & (~0u << sl);
	if (sl_map == 0) {
		uint64_t fl_map = fl + 1 < 64 ? s->fl_map & (~0ull << (fl + 1))
		                              : 0;
		if (fl_map == 0)
			return NULL;
		fl = __builtin_ctzll(fl_map);
		sl_map = s->sl_map[fl];
	}
	return s->free[fl][__builtin_ctz(sl_map)];
}

/* Splits b so it is exactly size; the rest becomes a free block. */
static void split(rayc__store *s, rayc__block *b, size_t size)
	RAYC_REQUIRES(s->mu)
{
	if (b->size - size < ((size_t)1 << RAYC__ALIGN_LOG2))
		return;
	rayc__block *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return; /* keep the slack; correctness is unaffected */
	r->off = b->off + size;
	r->size = b->size - size;
	r->phys_prev = b;
	r->phys_next = b->phys_next;
	if (r->phys_next != NULL)
		r->phys_next->phys_prev = r;
	else
		s->top = r;
	b->phys_next = r;
	b->size = size;
	s->nblocks++;
	free_insert(s, r);
}

rayc__block *rayc__alloc_locked(rayc__store *s, size_t size)
	RAYC_REQUIRES(s->mu)
{
	rayc__block *b = find_suitable(s, size);

	if (b == NULL)
		return NULL;
	free_remove(s, b);
	split(s, b, size);
	s->used += b->size;
	return b;
}

/* Merges b with its free neighbour n (n follows b), freeing n. */
static void absorb(rayc__store *s, rayc__block *b, rayc__block *n)
	RAYC_REQUIRES(s->mu)
{
	b->size += n->size;
	b->phys_next = n->phys_next;
	if (b->phys_next != NULL)
		b->phys_next->phys_prev = b;
	else
		s->top = b;
	s->nblocks--;
	free(n);
}

void rayc__free_locked(rayc__store *s, rayc__block *b) RAYC_REQUIRES(s->mu)
{
	s->used -= b->size;
	if (b->phys_next != NULL && b->phys_next->is_free) {
		free_remove(s, b->phys_next);
		absorb(s, b, b->phys_next);
	}
	if (b->phys_prev != NULL && b->phys_prev->is_free) {
		rayc__block *p = b->phys_prev;
		free_remove(s, p);
		absorb(s, p, b);
		b = p;
	}
	free_insert(s, b);
}

/* Adds [off, off+len) at the top of the heap as free memory. */
int rayc__extend_locked(rayc__store *s, size_t off, size_t len)
	RAYC_REQUIRES(s->mu)
{
	rayc__block *t = s->top;

	if (t != NULL && t->is_free) {
		free_remove(s, t);
		t->size += len;
		free_insert(s, t);
		return RAYC_OK;
	}
	rayc__block *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return RAYC_ENOMEM;
	b->off = off;
	b->size = len;
	b->phys_prev = t;
	if (t != NULL)
		t->phys_next = b;
	s->top = b;
	s->nblocks++;
	free_insert(s, b);
	return RAYC_OK;
}

void rayc__alloc_destroy_locked(rayc__store *s) RAYC_REQUIRES(s->mu)
{
	rayc__block *b = s->top;

	while (b != NULL) {
		rayc__block *p = b->phys_prev;
		free(b);
		b = p;
	}
	s->top = NULL;
}
