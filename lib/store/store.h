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

/* Creates the arena file in dir (capacity bytes, sparse) and starts
 * populating its first prefault bytes in the background. */
int rayc__store_open(rayc__store **out, const char *dir, size_t capacity,
                     size_t prefault);
/* Unmaps and deletes the arena file.  Every block must have been freed
 * or is forgotten.  NULL-safe. */
void rayc__store_close(rayc__store *s);

/* Allocates n bytes (n > 0), 64-byte aligned, backed by real memory.
 * RAYC_ETOOBIG if n can never fit, RAYC_ESTOREFULL if not now.
 * Thread-safe (the store has its own lock). */
int rayc__store_alloc(rayc__store *s, size_t n, rayc__block **out);
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
	uint64_t used, capacity, populated, blocks;
} rayc__store_stats;
void rayc__store_stats_get(rayc__store *s, rayc__store_stats *st);
const char *rayc__store_path(const rayc__store *s);

/* Where another process on this host finds this store's arena: the
 * file's path, size and identity (device, inode). */
typedef struct rayc__store_ident {
	char path[256];
	uint64_t size, dev, ino;
} rayc__store_ident;
void rayc__store_ident_get(const rayc__store *s, rayc__store_ident *id);

/* Another peer's arena on this host, mapped read-only (view.c).  open:
 * RAYC_ESYS if the file is missing or is not the one id names.  The view
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
