/* store.h -- the object store's interface to the rest of lib/: one
 * mmap-backed arena per peer with a TLSF allocator inside it.  The store
 * only holds bytes; which object owns a block is the object table's
 * business (lib/lineage). */
#ifndef RAYC_STORE_H
#define RAYC_STORE_H

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

#endif /* RAYC_STORE_H */
