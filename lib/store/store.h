/* store.h -- the object store's interface to the rest of lib/: one
 * mmap-backed arena per peer with a TLSF allocator inside it.  The store
 * only holds bytes; which object owns a block is the object table's
 * business (lib/lineage). */
#ifndef RAYC_STORE_H
#define RAYC_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

typedef struct rayc__store rayc__store;
typedef struct rayc__block rayc__block; /* one allocation in the arena */

/* Creates the arena (capacity bytes, sparse): a sealed memfd if dir is
 * tmpfs (the default /dev/shm), else an unnamed file in dir; and starts
 * populating its first prefault bytes in the background. */
int rayc__store_open(rayc__store **out, const char *dir, size_t capacity,
                     size_t prefault);
/* Unmaps and closes the arena (it has no name to delete).  Every
 * block must have been freed or is forgotten.  NULL-safe. */
void rayc__store_close(rayc__store *s);

/* Allocates n bytes (n > 0), 64-byte aligned, backed by memory the
 * file system has reserved (no SIGBUS later), warm unless the arena grew
 * by RAYC__WARM_LATER_MIN or more for it: then the store's thread is
 * warming it from its end, and the writer should call rayc__store_warm
 * for each range before writing it.  RAYC_ETOOBIG if n can never fit,
 * RAYC_ESTOREFULL if not now.  Thread-safe (the store has its own
 * lock). */
int rayc__store_alloc(rayc__store *s, size_t n, rayc__block **out);
/* Warms [p, p+len) of the arena where nobody has yet (store_int.h):
 * its first write then runs at memory speed instead of faulting page
 * by page.  Takes up to a few ms a 2 MiB step on a VM that charges for
 * first touches; nothing for memory already warm.  p outside the arena:
 * nothing. */
void rayc__store_warm(rayc__store *s, const void *p, size_t len);
/* The same from memory already populated only: never populates, never
 * waits for a thread that does (RAYC_ESTOREFULL then).  For threads that
 * must stay quick, such as a connection's receive callback. */
int rayc__store_try_alloc(rayc__store *s, size_t n, rayc__block **out);
void rayc__store_free(rayc__store *s, rayc__block *b);
void *rayc__store_ptr(const rayc__store *s, const rayc__block *b);
size_t rayc__store_block_size(const rayc__block *b);
/* Offset of the block in the arena file (for peers that map it). */
size_t rayc__store_block_offset(const rayc__block *b);

typedef struct rayc__store_stats {
	/* populated: handed to the allocator (reserved); warm: of that,
	 * warmed (rayc__store_warm). */
	uint64_t used, capacity, populated, warm, blocks;
} rayc__store_stats;
void rayc__store_stats_get(rayc__store *s, rayc__store_stats *st);
/* Where this process reaches its arena (/proc/self/fd/N). */
const char *rayc__store_path(const rayc__store *s);
/* True if peers on this host may map the arena (a sealed memfd). */
bool rayc__store_shareable(const rayc__store *s);

/* Where another process of our user on this host finds this store's
 * arena: our pid and the arena's fd (it opens /proc/pid/fd/fd), its
 * size and identity (device, inode). */
typedef struct rayc__store_ident {
	int32_t pid, fd;
	uint64_t size, dev, ino;
} rayc__store_ident;
void rayc__store_ident_get(const rayc__store *s, rayc__store_ident *id);

/* Another peer's arena on this host, mapped read-only (view.c).  open:
 * RAYC_ESYS unless id names a sealed arena of our user
 * (rayc__shm_open_ro: nothing else is even opened).  The view
 * starts with one reference; hold adds one, release drops one and
 * unmaps at the last.  Thread-safe. */
typedef struct rayc__store_view rayc__store_view;
int rayc__store_view_open(rayc__store_view **out,
                          const rayc__store_ident *id);
bool rayc__store_view_is(const rayc__store_view *v,
                         const rayc__store_ident *id);
/* [off, off+len) of the other arena (its pages asked for now), NULL if
 * outside it.  Valid while the view is held. */
const void *rayc__store_view_range(rayc__store_view *v, uint64_t off,
                                   uint64_t len);
void rayc__store_view_hold(rayc__store_view *v);
void rayc__store_view_release(rayc__store_view *v); /* NULL-safe */

#endif /* RAYC_STORE_H */
