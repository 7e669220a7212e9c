/* fuzz.h -- what rayc's libFuzzer targets share (README.md here). */
#ifndef RAYC_FUZZ_H
#define RAYC_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "net/wire.h"

/* The peer id the fake connections of fuzz_msgs come from: not this
 * peer (1), not a member. */
#define FUZZ_PEER 2

/* Brings up one single-peer runtime, networked on loopback, once per
 * process (later calls do nothing); exits if it cannot.  It stays up:
 * per input only a connection is made and freed. */
void fuzz_runtime(void);

/* The key the fake open connection checks frames against. */
extern const unsigned char fuzz_key[32];

/* Appends a frame of type from sender with payload p, n to b: checked by
 * xxh3 as during the handshake (w NULL), or tagged as on an open
 * connection with w's key and next number. */
void fuzz_frame(rayc__wbuf *b, rayc__wauth *w, int type, uint32_t sender,
                const void *p, size_t n);

/* Seed corpora come from the targets themselves: with RAYC_FUZZ_SEEDS
 * set to a directory, a target's LLVMFuzzerInitialize writes its seeds
 * there and the process exits (make_seeds.sh).  fuzz_seed_dir is that
 * directory or NULL. */
const char *fuzz_seed_dir(void);
void fuzz_seed(const char *dir, const char *name, const void *p, size_t n);
/* Ends a seed run: 0 if every seed was written. */
void fuzz_seed_done(void);

#endif
