/* common.c -- the runtime, frames and seed files of the fuzz targets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rayc.h"

const unsigned char fuzz_key[32] = "rayc fuzz: the open conn's key.";

static int seed_errors;

void fuzz_runtime(void)
{
	static int up;
	/* One worker and a small store: the runtime only has to be there;
	 * quiet below errors, so the fuzzer's own output stays readable. */
	rayc_config c = { .num_workers = 1,
		          .store_bytes = (size_t)64 << 20,
		          .listen = "tcp://127.0.0.1:0",
		          .token = "rayc-fuzz-token",
		          .log_level = RAYC_LOG_ERROR + 1 };

	if (up)
		return;
	if (getenv("RAYC_FUZZ_VERBOSE") != NULL)
		c.log_level = 0;
	int rc = rayc_init(&c);
	if (rc != RAYC_OK) {
		fprintf(stderr, "fuzz: rayc_init: %s\n", rayc_errmsg());
		exit(1);
	}
	up = 1;
}

void fuzz_frame(rayc__wbuf *b, rayc__wauth *w, int type, uint32_t sender,
                const void *p, size_t n)
{
	size_t f = rayc__w_frame_begin(b, type, sender);

	rayc__w_bytes(b, p, n);
	rayc__w_frame_end(b, f);
	if (w != NULL && !b->bad)
		rayc__wire_seal(w, b->p + f, b->p + f + RAYC__WIRE_HDR, n,
		                NULL, 0);
}

const char *fuzz_seed_dir(void)
{
	return getenv("RAYC_FUZZ_SEEDS");
}

void fuzz_seed(const char *dir, const char *name, const void *p, size_t n)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(p, 1, n, f) != n) {
		fprintf(stderr, "fuzz: cannot write %s\n", path);
		seed_errors++;
	}
	if (f != NULL && fclose(f) != 0)
		seed_errors++;
}

void fuzz_seed_done(void)
{
	/* _exit: the runtime (if any) is left up, as after fuzzing. */
	fflush(NULL);
	_Exit(seed_errors == 0 ? 0 : 1);
}
