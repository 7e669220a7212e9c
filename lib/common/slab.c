/* slab.c -- fixed-size blocks from 64 KiB chunks (see slab.h).
 *
 * A chunk is one malloc: this header, the indexes of its free blocks (a
 * stack of uint16_t, per_chunk of them), then blocks of s->size bytes,
 * each a 16-byte header (its chunk) followed by the caller's bytes, which
 * the slab writes only to zero them on allocation.  Blocks are carved in
 * order as they are first needed (a chunk's untouched tail costs no page
 * faults), and a freed block's index goes on its chunk's stack.  The
 * stack, not a list linked through the free blocks, is what makes a
 * magazine refill cheap: taking 16 blocks reads 32 bytes of the chunk's
 * header instead of 16 cold blocks one after another (a dependent cache
 * miss each; 17% of a submitting thread's time in a profile of 80,000
 * tasks in flight).  s->partial lists the chunks with a free block, the
 * one freed into last first, so the next allocation reuses warm memory.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/slab.h"
#include "os/os.h"

#define CHUNK_BYTES (64 * 1024)
#define HDR 16 /* a block's header: its chunk */
#define WINDOW_NS (10 * 1000000000LL)

struct rayc__slab_chunk {
	rayc__slab *slab;
	rayc__slab_chunk *prev, *next;   /* s->all */
	rayc__slab_chunk *pprev, *pnext; /* s->partial */
	uint32_t used, carved, nfree;
	bool on_partial;
	uint16_t freed[]; /* indexes of the free blocks, last freed on top */
};

static void lock(rayc__slab *s)
{
	unsigned n = 0;

	while (atomic_flag_test_and_set_explicit(&s->lock,
	                                         memory_order_acquire)) {
		if (++n % 64 == 0)
			rayc__yield(); /* the holder may have been preempted */
		else
			rayc__cpu_relax();
	}
}

static void unlock(rayc__slab *s)
{
	atomic_flag_clear_explicit(&s->lock, memory_order_release);
}

/* This thread's magazines: blocks of the slabs it uses, freed to it or
 * taken from the slab MAG_BATCH at a time, one per slot (slab.h). */
#define MAG_SLOTS RAYC__SLAB_SLOTS
#define MAG_MAX 32
#define MAG_BATCH 16
typedef struct mag {
	rayc__slab *s;
	uint64_t gen;
	int n;
	void *b[MAG_MAX]; /* block headers */
} mag;
static _Thread_local mag mags[MAG_SLOTS];
static _Atomic uint64_t slab_gens;

/* s's magazine on this thread.  Each slab has its slot; a slot holding
 * another slab's blocks (one shut down, whose memory is gone: slabs live
 * at once have slots of their own) is emptied without looking at them. */
static mag *mag_of(rayc__slab *s)
{
	mag *m = &mags[s->slot];

	if (m->s != s || m->gen != s->gen) {
		m->s = s;
		m->gen = s->gen;
		m->n = 0;
	}
	return m;
}

void rayc__slab_init(rayc__slab *s, size_t size, size_t floor_bytes,
                     int slot, size_t align)
{
	memset(s, 0, sizeof(*s));
	s->gen = atomic_fetch_add(&slab_gens, 1) + 1;
	s->slot = (uint32_t)slot % MAG_SLOTS;
	atomic_flag_clear(&s->lock);
	if (align < HDR)
		align = HDR;
	s->align = (uint32_t)align;
	s->size = (uint32_t)((size + HDR + align - 1) & ~(align - 1));
	/* As many blocks as fit with their index each (at most 2047 of
	 * the smallest, 32 bytes: uint16_t holds every index); the
	 * caller's bytes of the first (after its header) on an align
	 * boundary, and so those of every block. */
	uint32_t per = (uint32_t)((CHUNK_BYTES - sizeof(rayc__slab_chunk)) /
	                          (s->size + sizeof(uint16_t)));
	for (;;) {
		s->first = (uint32_t)(((sizeof(rayc__slab_chunk) +
		                        per * sizeof(uint16_t) + HDR +
		                        align - 1) &
		                       ~(align - 1)) - HDR);
		if (s->first + (size_t)per * s->size <= CHUNK_BYTES)
			break;
		per--;
	}
	s->per_chunk = per;
	s->floor = floor_bytes / s->size;
	s->window_ns = rayc__now_ns();
}

void rayc__slab_fini(rayc__slab *s)
{
	rayc__slab_chunk *c = s->all;

	/* Other threads' magazines are told apart by gen; this one's goes. */
	for (int i = 0; i < MAG_SLOTS; i++)
		if (mags[i].s == s) {
			mags[i].s = NULL;
			mags[i].n = 0;
		}

	while (c != NULL) {
		rayc__slab_chunk *next = c->next;
		free(c);
		c = next;
	}
	s->all = s->partial = NULL;
	s->nchunks = s->used = 0;
}

static void partial_add(rayc__slab *s, rayc__slab_chunk *c)
{
	c->pprev = NULL;
	c->pnext = s->partial;
	if (s->partial != NULL)
		s->partial->pprev = c;
	s->partial = c;
	c->on_partial = true;
}

static void partial_del(rayc__slab *s, rayc__slab_chunk *c)
{
	if (c->pprev != NULL)
		c->pprev->pnext = c->pnext;
	else
		s->partial = c->pnext;
	if (c->pnext != NULL)
		c->pnext->pprev = c->pprev;
	c->pprev = c->pnext = NULL;
	c->on_partial = false;
}

/* Takes one block (its header) with s locked; may let go of the lock
 * around a malloc.  NULL when out of memory. */
static char *take_locked(rayc__slab *s)
{
	rayc__slab_chunk *c;
	char *b;

	if (s->partial == NULL) {
		unlock(s);
		/* no lock held across the malloc */
		c = aligned_alloc(s->align, CHUNK_BYTES);
		lock(s);
		if (c == NULL)
			return NULL;
		memset(c, 0, sizeof(*c));
		c->slab = s;
		c->prev = NULL;
		c->next = s->all;
		if (s->all != NULL)
			s->all->prev = c;
		s->all = c;
		s->nchunks++;
		partial_add(s, c);
	}
	c = s->partial;
	if (c->nfree > 0) {
		b = (char *)c + s->first +
		    (size_t)c->freed[--c->nfree] * s->size;
	} else {
		b = (char *)c + s->first + (size_t)c->carved * s->size;
		c->carved++;
		*(rayc__slab_chunk **)(void *)b = c;
	}
	if (++c->used == s->per_chunk)
		partial_del(s, c);
	if (++s->used > s->hw)
		s->hw = s->used;
	return b;
}

/* Gives block b (its header) back with s locked; true if it emptied a
 * chunk that goes back to malloc: *gone is then to be freed once s is
 * unlocked. */
static void give_locked(rayc__slab *s, char *b, rayc__slab_chunk **gone)
{
	rayc__slab_chunk *c = *(rayc__slab_chunk **)(void *)b;

	c->freed[c->nfree++] =
	        (uint16_t)((size_t)(b - ((char *)c + s->first)) / s->size);
	c->used--;
	s->used--;
	if (c->on_partial)
		partial_del(s, c);
	partial_add(s, c); /* warm: allocated from next */
	if (c->used == 0) {
		/* An empty chunk goes back only while the free blocks left
		 * would still cover the floor and the recent high-water
		 * mark (rare: the clock is read only here). */
		int64_t now = rayc__now_ns();
		if (now - s->window_ns > WINDOW_NS) {
			s->hw_prev = s->hw;
			s->hw = s->used;
			s->window_ns = now;
		}
		size_t keep = s->hw > s->hw_prev ? s->hw : s->hw_prev;
		if (keep < s->floor)
			keep = s->floor;
		if (!s->keep_all &&
		    (s->nchunks - 1) * (size_t)s->per_chunk >= keep) {
			partial_del(s, c);
			if (c->prev != NULL)
				c->prev->next = c->next;
			else
				s->all = c->next;
			if (c->next != NULL)
				c->next->prev = c->prev;
			s->nchunks--;
			c->next = *gone; /* freed by the caller, unlocked */
			*gone = c;
		}
	}
}

static void free_chunks(rayc__slab_chunk *gone)
{
	while (gone != NULL) {
		rayc__slab_chunk *next = gone->next;
		free(gone);
		gone = next;
	}
}

void *rayc__slab_alloc(rayc__slab *s)
{
	return rayc__slab_alloc_n(s, s->size - HDR);
}

void *rayc__slab_alloc_n(rayc__slab *s, size_t n)
{
	mag *m = mag_of(s);
	char *b;

	if (m->n > 0) {
		b = m->b[--m->n];
		if (m->n > 0) {
			/* The next one handed out: its lines fetched for
			 * writing while the caller fills this one (a block
			 * freed long ago is cold: each line a miss the
			 * caller's zeroing would wait for). */
			char *nx = m->b[m->n - 1];
			for (uint32_t off = 0; off < s->size && off < 256;
			     off += 64)
				__builtin_prefetch(nx + off, 1);
		}
	} else {
		lock(s);
		b = take_locked(s);
		/* Refill the magazine while the lock is held anyway. */
		while (b != NULL && m->n < MAG_BATCH) {
			char *x = take_locked(s);
			if (x == NULL)
				break;
			m->b[m->n++] = x;
		}
		unlock(s);
		if (b == NULL)
			return NULL;
	}
	memset(b + HDR, 0, n < s->size - HDR ? n : s->size - HDR);
	return b + HDR;
}

void rayc__slab_free(void *p)
{
	if (p == NULL)
		return;
	char *b = (char *)p - HDR;
	rayc__slab *s = (*(rayc__slab_chunk **)(void *)b)->slab;
	rayc__slab_chunk *gone = NULL;
	mag *m = mag_of(s);

	if (m->n < MAG_MAX) {
		m->b[m->n++] = b;
		return;
	}
	lock(s);
	give_locked(s, b, &gone);
	/* A full magazine gives back its older half too. */
	for (int i = 0; i < MAG_BATCH; i++)
		give_locked(s, m->b[i], &gone);
	memmove(m->b, m->b + MAG_BATCH,
	        (size_t)(m->n - MAG_BATCH) * sizeof(m->b[0]));
	m->n -= MAG_BATCH;
	unlock(s);
	free_chunks(gone);
}
