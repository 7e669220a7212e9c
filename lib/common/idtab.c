/* idtab.c -- the id-to-pointer map (see idtab.h). */
#include <stdbool.h>
#include <stdlib.h>

#include "common/common.h"
#include "common/idtab.h"
#include "os/os.h"

#define MIN_SLOTS 64
#define WINDOW_NS (10 * 1000000000LL)

/* An id's home slot.  Ids made from a counter (rayc.h's task ids: the
 * counter in lo's bits 16 and up, the return index below) come in runs:
 * eight in a row share a group of eight neighbouring slots (three cache
 * lines), so a burst of submissions and the gets that follow touch a
 * third of the lines they would if every id went anywhere.  Groups, and
 * ids made otherwise (nested tasks' are xxh3 output), are spread by a
 * multiply-xorshift. */
static size_t slot_of(const rayc__idtab *t, uint64_t hi, uint64_t lo)
{
	uint64_t k = lo >> 16;
	uint64_t x = (lo & 0xffff) ^ ((k >> 3) * 0x9e3779b97f4a7c15ull) ^
	             (hi * 0xc2b2ae3d27d4eb4full);

	x ^= x >> 29;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 32;
	return ((size_t)(x & ~(uint64_t)7) + (size_t)(k & 7)) & t->mask;
}

static int alloc_slots(rayc__idtab *t, size_t nslots)
{
	rayc__idtab_slot *s = calloc(nslots, sizeof(*s));

	if (s == NULL)
		return RAYC_ENOMEM;
	t->s = s;
	t->mask = nslots - 1;
	return RAYC_OK;
}

int rayc__idtab_init(rayc__idtab *t)
{
	t->n = t->hw = t->hw_prev = 0;
	t->ops = 0;
	t->window_ns = rayc__now_ns();
	return alloc_slots(t, MIN_SLOTS);
}

void rayc__idtab_fini(rayc__idtab *t)
{
	free(t->s);
	t->s = NULL;
	t->mask = 0;
	t->n = 0;
}

void *rayc__idtab_find(const rayc__idtab *t, uint64_t hi, uint64_t lo)
{
	for (size_t i = slot_of(t, hi, lo);; i = (i + 1) & t->mask) {
		const rayc__idtab_slot *s = &t->s[i];
		if (s->p == NULL)
			return NULL;
		if (s->lo == lo && s->hi == hi)
			return s->p;
	}
}

static void put(rayc__idtab *t, uint64_t hi, uint64_t lo, void *p)
{
	size_t i = slot_of(t, hi, lo);

	while (t->s[i].p != NULL)
		i = (i + 1) & t->mask;
	t->s[i].hi = hi;
	t->s[i].lo = lo;
	t->s[i].p = p;
}

/* Moves every entry into nslots new slots; false (unchanged) on ENOMEM. */
static bool resize(rayc__idtab *t, size_t nslots)
{
	rayc__idtab_slot *old = t->s;
	size_t oldn = t->mask + 1;

	if (alloc_slots(t, nslots) != RAYC_OK)
		return false;
	for (size_t i = 0; i < oldn; i++)
		if (old[i].p != NULL)
			put(t, old[i].hi, old[i].lo, old[i].p);
	free(old);
	return true;
}

/* Every 256 adds and deletes: the high-water window moves on when 10 s
 * have passed (the clock is read only here). */
static void tick(rayc__idtab *t)
{
	int64_t now = rayc__now_ns();

	if (now - t->window_ns > WINDOW_NS) {
		t->hw_prev = t->hw;
		t->hw = t->n;
		t->window_ns = now;
	}
}

int rayc__idtab_add(rayc__idtab *t, uint64_t hi, uint64_t lo, void *p)
{
	if ((t->n + 1) * 2 > t->mask + 1 && !resize(t, 2 * (t->mask + 1)))
		return RAYC_ENOMEM;
	put(t, hi, lo, p);
	if (++t->n > t->hw)
		t->hw = t->n;
	if ((++t->ops & 255) == 0)
		tick(t);
	return RAYC_OK;
}

/* With the table at most 1/16 full: halves it while it would stay at
 * most a quarter full at the recent high-water mark. */
static void maybe_shrink(rayc__idtab *t)
{
	size_t keep = t->hw > t->hw_prev ? t->hw : t->hw_prev;
	size_t nslots = t->mask + 1;

	while (nslots / 2 >= MIN_SLOTS && nslots / 2 >= 4 * keep)
		nslots /= 2;
	if (nslots != t->mask + 1)
		(void)resize(t, nslots); /* on ENOMEM it stays big */
}

void rayc__idtab_del(rayc__idtab *t, uint64_t hi, uint64_t lo)
{
	size_t i = slot_of(t, hi, lo);

	for (;; i = (i + 1) & t->mask) {
		if (t->s[i].p == NULL)
			return;
		if (t->s[i].lo == lo && t->s[i].hi == hi)
			break;
	}
	/* Backward shift: move up each later entry of the run that may sit
	 * in the hole, i.e. whose home slot is not between the hole and
	 * it (cyclically). */
	size_t hole = i;
	for (size_t j = (i + 1) & t->mask; t->s[j].p != NULL;
	     j = (j + 1) & t->mask) {
		size_t home = slot_of(t, t->s[j].hi, t->s[j].lo);
		if (((j - home) & t->mask) >= ((j - hole) & t->mask)) {
			t->s[hole] = t->s[j];
			hole = j;
		}
	}
	t->s[hole].p = NULL;
	t->n--;
	if ((++t->ops & 255) == 0) {
		tick(t);
		if (t->n * 16 <= t->mask + 1 && t->mask + 1 > MIN_SLOTS)
			maybe_shrink(t);
	}
}
