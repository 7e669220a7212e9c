/* samples.h -- one well-formed payload per message type, written with
 * the codec (lib/net), for the fuzz targets' seeds and the wire test's
 * truncations and corruptions. */
#ifndef RAYC_FUZZ_SAMPLES_H
#define RAYC_FUZZ_SAMPLES_H

#include "net/wire.h"

typedef struct fuzz_sample {
	int type;         /* RAYC__MSG_ */
	const char *name; /* for seed files and test messages */
	rayc__wbuf p;     /* the payload */
} fuzz_sample;

/* The function a sample TASK calls; registered by fuzz_samples. */
#define FUZZ_TASK_FN "rayc_fuzz_nop"

/* Fills s (room for max) with samples of every type a member may send
 * an open connection (not SHUTDOWN, REMOVED, LEAVE: each ends this
 * peer's cluster or membership, and JOIN only before an id is known);
 * returns how many.  Needs a networked runtime (rayc_init).  The
 * samples come from peer `from`. */
int fuzz_samples(fuzz_sample *s, int max, uint32_t from);
void fuzz_samples_free(fuzz_sample *s, int n);

#endif
