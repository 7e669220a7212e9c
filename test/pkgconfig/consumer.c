/* consumer -- an out-of-tree program built against an installed rayc
 * through pkg-config (see run.sh). */
#include <inttypes.h>
#include <stdio.h>

#include <rayc.h>

static void add(rayc_ctx *ctx)
{
	int64_t a, b;
	int rc;

	if ((rc = rayc_arg_i64(ctx, 0, &a)) != RAYC_OK ||
	    (rc = rayc_arg_i64(ctx, 1, &b)) != RAYC_OK) {
		rayc_fail(ctx, "add: %s", rayc_strerror(rc));
		return;
	}
	if ((rc = rayc_return_i64(ctx, 0, a + b)) != RAYC_OK)
		rayc_fail(ctx, "add: %s", rayc_strerror(rc));
}
RAYC_REMOTE(add)

static int fail(const char *what, int rc)
{
	fprintf(stderr, "consumer: %s: %s (%s)\n", what, rayc_strerror(rc),
	        rayc_errmsg());
	return 1;
}

int main(void)
{
	rayc_config cfg = { .num_workers = 2 };
	rayc_ref r;
	int64_t v = 0;
	int rc;

	if ((rc = rayc_init(&cfg)) != RAYC_OK)
		return fail("rayc_init", rc);
	if ((rc = rayc_call(&r, "add", RAYC_I64(40), RAYC_I64(2))) != RAYC_OK) {
		(void)rayc_shutdown();
		return fail("rayc_call", rc);
	}
	rc = rayc_get_i64(r, &v, 30000);
	(void)rayc_release(r);
	if (rc != RAYC_OK) {
		(void)rayc_shutdown();
		return fail("rayc_get_i64", rc);
	}
	if ((rc = rayc_shutdown()) != RAYC_OK)
		return fail("rayc_shutdown", rc);
	if (v != 42) {
		fprintf(stderr, "consumer: add(40, 2) = %" PRId64 "\n", v);
		return 1;
	}
	printf("consumer: rayc %d.%d.%d, add(40, 2) = %" PRId64 "\n",
	       RAYC_VERSION_MAJOR, RAYC_VERSION_MINOR, RAYC_VERSION_PATCH, v);
	return 0;
}
