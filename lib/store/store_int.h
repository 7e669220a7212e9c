/* store_int.h -- structures only lib/store sees.
 *
 * Layout.  The arena is one file, mapped MAP_SHARED, sparse at first: a
 * memfd sealed against shrinking and growing when the store directory is
 * tmpfs (the default /dev/shm; no name to squat or reap, and no one can
 * truncate it under a peer that maps it), else an unnamed O_TMPFILE file
 * in the directory (not shared).  Only [0, populated) is handed out: that
 * prefix has been fallocate'd (no SIGBUS later), and is warm or being
 * warmed: populated (MADV_POPULATE_WRITE) and each page read from user
 * space and from the kernel (rayc__shm_populate says why), because a
 * first touch costs ~14 us per 4 KiB page on our VMs while warm memory
 * copies at ~17 GB/s.  The prefix grows on demand (at least GROW_MIN at
 * a time) and in the background at start-up; it never shrinks, so freed
 * memory is reused warm.  A growth under WARM_LATER_MIN is warmed
 * before it is handed out.  A larger one is handed out at once and the
 * store's warmer thread warms it from its end, while its first writer,
 * which calls rayc__store_warm for each range before writing it, warms
 * from the start: they meet in the middle.  A bit per WARM_STEP says it
 * has been claimed, so no step is warmed twice.  Allocation metadata
 * lives outside the arena (block descriptors in malloc'd memory), so a
 * peer that maps the arena read-only, or a task that writes past its
 * buffer, cannot corrupt the allocator.
 *
 * Allocator: TLSF (Masmano et al., "TLSF: a new dynamic memory allocator
 * for real-time systems", ECRTS 2004): two-level segregated free lists
 * indexed by bitmaps, O(1) alloc and free, immediate coalescing with the
 * physical neighbours.  Granule 64 bytes, 16 second-level lists.
 */
#ifndef RAYC_STORE_INT_H
#define RAYC_STORE_INT_H

#include "os/os.h"
#include "store/store.h"

#define RAYC__ALIGN_LOG2 6
#define RAYC__SL_LOG2 4
#define RAYC__SL_COUNT (1 << RAYC__SL_LOG2)
#define RAYC__FL_SHIFT (RAYC__SL_LOG2 + RAYC__ALIGN_LOG2)
#define RAYC__FL_COUNT 56
#define RAYC__GROW_MIN ((size_t)16 << 20)
/* The arena grows, and is warmed, in steps of this (store.c). */
#define RAYC__WARM_STEP ((size_t)2 << 20)
/* A growth this large is handed out before it is warm. */
#define RAYC__WARM_LATER_MIN ((size_t)32 << 20)

struct rayc__block {
	size_t off, size;
	rayc__block *phys_prev, *phys_next; /* address order */
	rayc__block *free_prev, *free_next; /* segregated list, when free */
	int is_free;
};

struct rayc__store {
	rayc__shm shm;
	rayc__mutex mu; /* guards everything below but grow_mu's fields */
	uint64_t fl_map RAYC_GUARDED_BY(mu);
	uint32_t sl_map[RAYC__FL_COUNT] RAYC_GUARDED_BY(mu);
	rayc__block *free[RAYC__FL_COUNT][RAYC__SL_COUNT] RAYC_GUARDED_BY(mu);
	rayc__block *top RAYC_GUARDED_BY(mu); /* highest block */
	size_t used RAYC_GUARDED_BY(mu);
	uint64_t nblocks RAYC_GUARDED_BY(mu);
	_Atomic size_t populated; /* written under mu, read anywhere */
	rayc__mutex grow_mu; /* one grower at a time; held while populating */
	size_t prefault;
	/* A bit per RAYC__WARM_STEP of the arena: claimed by whoever warms
	 * it (rayc__shm_populate), once. */
	_Atomic uint64_t *warm;
	_Atomic size_t warmed; /* bytes warmed so far */
	rayc__event warm_ev; /* set: a growth to warm from its end */
	_Atomic int stop_warmer;
	int warmer_running RAYC_GUARDED_BY(grow_mu);
	rayc__thread warmer;
};

#endif /* RAYC_STORE_INT_H */
