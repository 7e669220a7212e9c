/* hello -- the smallest rayc program: N parallel calls of a remote function. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <rayc.h>

#define DEFAULT_N 10
#define MAX_N 100000

/* The remote function: one i64 in, its square out. */
static void square(rayc_ctx *ctx)
{
	int64_t x;
	int rc = rayc_arg_i64(ctx, 0, &x);

	if (rc != RAYC_OK) {
		rayc_fail(ctx, "square: argument 0: %s", rayc_strerror(rc));
		return;
	}
	rc = rayc_return_i64(ctx, 0, x * x);
	if (rc != RAYC_OK)
		rayc_fail(ctx, "square: return: %s", rayc_strerror(rc));
}
RAYC_REMOTE(square)

static void report(const char *what, int rc)
{
	fprintf(stderr, "hello: %s: %s (%s)\n", what, rayc_strerror(rc),
	        rayc_errmsg());
}

/* Submits square(0..n-1) all at once, then collects the results in order.
 * Every ref handed out is released, also on the error path. */
static int run(long n)
{
	rayc_ref *refs = calloc((size_t)n, sizeof(*refs));
	long submitted = 0, i;
	int64_t sum = 0;
	int rc = RAYC_OK;

	if (refs == NULL) {
		fprintf(stderr, "hello: out of memory\n");
		return RAYC_ENOMEM;
	}
	for (; submitted < n; submitted++) {
		rc = rayc_call(&refs[submitted], "square", RAYC_I64(submitted));
		if (rc != RAYC_OK) {
			report("rayc_call(square)", rc);
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		int64_t v;

		rc = rayc_get_i64(refs[i], &v, -1);
		if (rc != RAYC_OK) {
			report("rayc_get_i64", rc);
			goto out;
		}
		printf("square(%ld) = %" PRId64 "\n", i, v);
		sum += v;
	}
	printf("sum of %ld squares = %" PRId64 "\n", n, sum);
out:
	for (i = 0; i < submitted; i++)
		(void)rayc_release(refs[i]);
	free(refs);
	return rc;
}

int main(int argc, char **argv)
{
	long n = DEFAULT_N;
	int rc, rc2;

	if (argc > 2 || (argc == 2 && ((n = strtol(argv[1], NULL, 10)) < 1 ||
	                               n > MAX_N))) {
		fprintf(stderr, "usage: %s [N]   (1 <= N <= %d, default %d)\n",
		        argv[0], MAX_N, DEFAULT_N);
		return 2;
	}
	rc = rayc_init(NULL);
	if (rc != RAYC_OK) {
		report("rayc_init", rc);
		return 1;
	}
	rc = run(n);
	rc2 = rayc_shutdown();
	if (rc2 != RAYC_OK)
		report("rayc_shutdown", rc2);
	return rc == RAYC_OK && rc2 == RAYC_OK ? 0 : 1;
}
