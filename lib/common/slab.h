/* slab.h -- fixed-size blocks carved from 64 KiB chunks, for what the
 * runtime allocates per task (object entries, task specs).
 *
 * Why not malloc: glibc hands a burst of tasks fresh heap and gives it back
 * (trims the top) when they are freed, so the next burst faults every page
 * in again (~0.1 page faults per task measured; a first touch costs ~12 us
 * per page on some VMs).  A slab keeps its memory: freed blocks go back to
 * their chunk, the chunk most recently freed into is allocated from first
 * (its memory is warm), and an empty chunk goes back to malloc only while
 * the slab holds more free blocks than the most it had in use lately (the
 * high-water mark of the last 10-20 s) and than its floor.
 *
 * Thread safety: each slab has its own spinlock (a leaf: nothing is called
 * under it), so blocks may be allocated on one thread and freed on
 * another, with or without other locks held.  Each thread keeps a few
 * blocks of the slabs it uses last (a magazine, taken and given back 16
 * at a time), so threads that allocate and free a block per task meet at
 * the lock once every 16 tasks.  Blocks in the magazine of a thread that
 * ended stay allocated until rayc__slab_fini. */
#ifndef RAYC_SLAB_H
#define RAYC_SLAB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct rayc__slab_chunk rayc__slab_chunk;

typedef struct rayc__slab {
	atomic_flag lock;
	uint32_t size;      /* block size with its header, a multiple of 16 */
	uint32_t per_chunk; /* blocks in a chunk */
	uint32_t first;     /* offset of a chunk's first block */
	rayc__slab_chunk *all;     /* every chunk */
	rayc__slab_chunk *partial; /* chunks with a free block, warm first */
	size_t nchunks, used;
	size_t floor;              /* free blocks always kept */
	size_t hw, hw_prev;        /* most used this window and the last */
	int64_t window_ns;         /* when this window began */
	uint64_t gen;              /* tells it from a slab once at its address */
	uint32_t slot;             /* its magazine on each thread */
	uint32_t align;            /* of the blocks the callers get */
	/* Chunks never go back to malloc before rayc__slab_fini: a block
	 * stays mapped, and a block of this slab, for its callers that read
	 * blocks they may no longer own (type-stable memory: the object
	 * table's lock-free lookups, lib/lineage). */
	bool keep_all;
} rayc__slab;

/* Blocks of size bytes (any size up to 16 KiB); floor_bytes of free
 * blocks are kept whatever the recent use.  slot: which of a thread's
 * magazines it uses, one of RAYC__SLAB_SLOTS; slabs in use at the same
 * time need slots of their own (one that finds its slot holding another
 * slab's blocks takes it over, and those blocks stay allocated until
 * their slab's rayc__slab_fini).  align: of every block handed out (a
 * power of two, 16 at least; 64 lays a struct out on cache lines). */
enum {
	RAYC__SLAB_OBJ,   /* the object table's entries (lib/lineage) */
	RAYC__SLAB_TASK,  /* task specs (lib/lineage) */
	RAYC__SLAB_XREC,  /* the executor's records (lib/net/xrec.c) */
	RAYC__SLAB_SLOTS
};
void rayc__slab_init(rayc__slab *s, size_t size, size_t floor_bytes,
                     int slot, size_t align);
/* Frees every chunk, blocks still allocated included. */
void rayc__slab_fini(rayc__slab *s);
/* A zeroed block; NULL when out of memory. */
void *rayc__slab_alloc(rayc__slab *s);
/* A block of which only the first n bytes (at most the block size) are
 * zeroed: a caller that uses less than a block leaves the rest of its
 * cache lines untouched. */
void *rayc__slab_alloc_n(rayc__slab *s, size_t n);
/* Gives back a block from rayc__slab_alloc (any slab; NULL is a no-op). */
void rayc__slab_free(void *p);

#endif /* RAYC_SLAB_H */
