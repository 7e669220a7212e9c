/* idtab.h -- a map from 128-bit ids to pointers, by open addressing with
 * linear probing: the object table's index (lib/lineage).
 *
 * Why not uthash: its chains run through the entries themselves, so a
 * lookup touches every entry ahead of the one it looks for, each a cache
 * miss in a table of many thousands; and a table whose ids spread evenly
 * over its buckets grows only when chains reach 10, so they are 5-10
 * long.  Here a slot holds the id itself: a lookup reads one or two
 * neighbouring slots, then the one entry it finds (measured: rayc_get and
 * rayc_release spent a fifth of the submitting thread's time in uthash).
 *
 * The table holds at most half its slots, so probes stay short; deletion
 * shifts later slots back (no tombstones).  It shrinks, once at most 1/16
 * full, to what stays at most a quarter full at the most it held over the
 * last 10-20 s (windows move on every 256 adds and deletes), so bursts of
 * tasks do not fault its memory in anew each time.
 * Not thread-safe: its owner's lock guards it. */
#ifndef RAYC_IDTAB_H
#define RAYC_IDTAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct rayc__idtab_slot {
	uint64_t hi, lo;
	void *p; /* NULL: empty */
} rayc__idtab_slot;

typedef struct rayc__idtab {
	rayc__idtab_slot *s;
	size_t mask; /* slots - 1, a power of two minus one */
	size_t n;
	size_t hw, hw_prev; /* most held this window and the last */
	int64_t window_ns;
	uint32_t ops; /* adds and deletes: the clock is read every 256 */
} rayc__idtab;

/* RAYC_OK, or RAYC_ENOMEM. */
int rayc__idtab_init(rayc__idtab *t);
void rayc__idtab_fini(rayc__idtab *t);
/* The pointer stored under id, or NULL. */
void *rayc__idtab_find(const rayc__idtab *t, uint64_t hi, uint64_t lo);
/* Stores p (not NULL) under an id not in the table.  RAYC_OK, or
 * RAYC_ENOMEM (the table is unchanged). */
int rayc__idtab_add(rayc__idtab *t, uint64_t hi, uint64_t lo, void *p);
/* Removes id; a no-op if absent. */
void rayc__idtab_del(rayc__idtab *t, uint64_t hi, uint64_t lo);

/* Visits every stored pointer as p (the table must not change meanwhile):
 *   void *p; RAYC__IDTAB_EACH(&tab, i, p) { ... } */
#define RAYC__IDTAB_EACH(t, i, ptr)                                          \
	for (size_t i = 0; i <= (t)->mask; i++)                              \
		if (((ptr) = (t)->s[i].p) == NULL) {                         \
		} else

#endif /* RAYC_IDTAB_H */
