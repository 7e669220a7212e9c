/* pi -- Monte Carlo estimate of pi over many tasks, with rayc_wait progress. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rayc.h>

#define DEFAULT_TASKS 200
#define DEFAULT_SAMPLES 200000
#define WAIT_TIMEOUT_MS 60000 /* no task should take a minute: report it */

/* splitmix64: turns a task's seed into a well-mixed xorshift state. */
static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* xorshift64*: per-task state, so tasks never share an RNG. */
static uint64_t xorshift64s(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* A uniform double in [0, 1) from the top 53 bits. */
static double uniform(uint64_t *s)
{
	return (double)(xorshift64s(s) >> 11) * 0x1.0p-53;
}

/* The remote function: args (seed, samples), returns the i64 number of
 * points of the unit square that fall inside the quarter circle. */
static void pi_hits(rayc_ctx *ctx)
{
	int64_t seed, samples, hits = 0, i;
	uint64_t s;
	int rc;

	if ((rc = rayc_arg_i64(ctx, 0, &seed)) != RAYC_OK ||
	    (rc = rayc_arg_i64(ctx, 1, &samples)) != RAYC_OK) {
		rayc_fail(ctx, "pi_hits: bad arguments: %s", rayc_strerror(rc));
		return;
	}
	s = splitmix64((uint64_t)seed);
	if (s == 0)
		s = 1; /* xorshift's one fixed point */
	for (i = 0; i < samples; i++) {
		double x = uniform(&s), y = uniform(&s);

		hits += x * x + y * y < 1.0;
	}
	if ((rc = rayc_return_i64(ctx, 0, hits)) != RAYC_OK)
		rayc_fail(ctx, "pi_hits: return: %s", rayc_strerror(rc));
}
RAYC_REMOTE(pi_hits)

static void report(const char *what, int rc)
{
	fprintf(stderr, "\npi: %s: %s (%s)\n", what, rayc_strerror(rc),
	        rayc_errmsg());
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Collects every ready ref out of pending[0..*n), adding its hits, and
 * compacts the array.  Returns the first error. */
static int collect(rayc_ref *pending, size_t *n, const uint8_t *ready,
                   int64_t *hits)
{
	size_t i, keep = 0;
	int rc = RAYC_OK;

	for (i = 0; i < *n; i++) {
		int64_t h;

		if (!ready[i] || rc != RAYC_OK) {
			pending[keep++] = pending[i];
			continue;
		}
		rc = rayc_get_i64(pending[i], &h, 0);
		if (rc != RAYC_OK) {
			report("rayc_get_i64", rc);
			pending[keep++] = pending[i]; /* ours to release */
			continue;
		}
		*hits += h;
		(void)rayc_release(pending[i]);
	}
	*n = keep;
	return rc;
}

static int run(long tasks, long samples)
{
	rayc_ref *pending = calloc((size_t)tasks, sizeof(*pending));
	uint8_t *ready = calloc((size_t)tasks, 1);
	size_t n = 0, i;
	int64_t hits = 0;
	double t0 = now_s(), est;
	int rc = RAYC_OK;

	if (pending == NULL || ready == NULL) {
		fprintf(stderr, "pi: out of memory\n");
		rc = RAYC_ENOMEM;
		goto out;
	}
	for (; n < (size_t)tasks; n++) {
		rc = rayc_call(&pending[n], "pi_hits", RAYC_I64((int64_t)n + 1),
		               RAYC_I64(samples));
		if (rc != RAYC_OK) {
			report("rayc_call(pi_hits)", rc);
			goto out;
		}
	}
	while (n > 0) {
		long done;

		rc = rayc_wait(pending, n, 1, WAIT_TIMEOUT_MS, ready, NULL);
		if (rc != RAYC_OK) {
			report("rayc_wait", rc);
			goto out;
		}
		rc = collect(pending, &n, ready, &hits);
		if (rc != RAYC_OK)
			goto out;
		done = tasks - (long)n;
		printf("\r[pi] %ld/%ld tasks done, pi ~ %.4f", done, tasks,
		       4.0 * (double)hits / ((double)done * (double)samples));
		fflush(stdout);
	}
	est = 4.0 * (double)hits / ((double)tasks * (double)samples);
	printf("\npi ~ %.6f  (M_PI %.6f, error %+.2e) from %.3g samples in "
	       "%.2f s\n",
	       est, M_PI, est - M_PI, (double)tasks * (double)samples,
	       now_s() - t0);
out:
	for (i = 0; i < n; i++)
		(void)rayc_release(pending[i]);
	free(pending);
	free(ready);
	return rc;
}

int main(int argc, char **argv)
{
	long tasks = DEFAULT_TASKS, samples = DEFAULT_SAMPLES;
	int rc, rc2;

	if (argc > 3 ||
	    (argc > 1 && (tasks = strtol(argv[1], NULL, 10)) < 1) ||
	    (argc > 2 && (samples = strtol(argv[2], NULL, 10)) < 1)) {
		fprintf(stderr, "usage: %s [tasks [samples-per-task]]   "
		        "(default %d x %d)\n",
		        argv[0], DEFAULT_TASKS, DEFAULT_SAMPLES);
		return 2;
	}
	rc = rayc_init(NULL);
	if (rc != RAYC_OK) {
		report("rayc_init", rc);
		return 1;
	}
	rc = run(tasks, samples);
	rc2 = rayc_shutdown();
	if (rc2 != RAYC_OK)
		report("rayc_shutdown", rc2);
	return rc == RAYC_OK && rc2 == RAYC_OK ? 0 : 1;
}
