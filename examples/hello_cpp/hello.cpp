// hello_cpp -- rayc from C++ through the same header: remote functions,
// rayc_call and rayc_call_opts with every kind of argument, refs passed
// on to other tasks.  Built as C++17 and as C++20 by the test suite.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <rayc.h>

// (x) -> x * x
static void square(rayc_ctx *ctx)
{
	int64_t x;
	if (rayc_arg_i64(ctx, 0, &x) != RAYC_OK) {
		rayc_fail(ctx, "square: argument 0 is not an i64");
		return;
	}
	rayc_return_i64(ctx, 0, x * x);
}
RAYC_REMOTE(square)

// (a, b, scale, label) -> a + b scaled, and the label's length
static void add(rayc_ctx *ctx)
{
	int64_t a, b;
	double scale;
	const void *label;
	size_t n;
	if (rayc_arg_i64(ctx, 0, &a) != RAYC_OK ||
	    rayc_arg_i64(ctx, 1, &b) != RAYC_OK ||
	    rayc_arg_f64(ctx, 2, &scale) != RAYC_OK ||
	    rayc_arg_data(ctx, 3, &label, &n) != RAYC_OK) {
		rayc_fail(ctx, "add: bad arguments");
		return;
	}
	rayc_return_f64(ctx, 0, (double)(a + b) * scale);
	rayc_return_i64(ctx, 1, (int64_t)n);
}
RAYC_REMOTE(add)

// () -> 42
static void answer(rayc_ctx *ctx)
{
	rayc_return_i64(ctx, 0, 42);
}
RAYC_REMOTE(answer)

static int fail(const char *what, int rc)
{
	std::fprintf(stderr, "hello_cpp: %s: %s (%s)\n", what,
	             rayc_strerror(rc), rayc_errmsg());
	return 1;
}

int main()
{
	int rc = rayc_init(nullptr);
	if (rc != RAYC_OK)
		return fail("rayc_init", rc);

	std::vector<rayc_ref> sq(10);
	for (int64_t i = 0; i < 10; i++)
		if ((rc = rayc_call(&sq[i], "square", RAYC_I64(i))) != RAYC_OK)
			return fail("rayc_call(square)", rc);

	// Refs as arguments: add(square(3), square(4), 0.5, "hypotenuse").
	rayc_task_opts o = RAYC_TASK_OPTS_DEFAULT;
	o.num_returns = 2;
	std::string label = "hypotenuse";
	rayc_ref sum[2];
	rc = rayc_call_opts(sum, "add", &o, RAYC_REF(sq[3]), RAYC_REF(sq[4]),
	                    RAYC_F64(0.5), RAYC_STR(label.c_str()));
	if (rc != RAYC_OK)
		return fail("rayc_call_opts(add)", rc);

	rayc_ref a;
	if ((rc = rayc_call(&a, "answer")) != RAYC_OK)
		return fail("rayc_call(answer)", rc);

	int64_t total = 0;
	for (auto &r : sq) {
		int64_t v;
		if ((rc = rayc_get_i64(r, &v, 30000)) != RAYC_OK)
			return fail("rayc_get_i64(square)", rc);
		total += v;
		rayc_release(r);
	}
	double half;
	int64_t len, ans;
	if ((rc = rayc_get_f64(sum[0], &half, 30000)) != RAYC_OK ||
	    (rc = rayc_get_i64(sum[1], &len, 30000)) != RAYC_OK ||
	    (rc = rayc_get_i64(a, &ans, 30000)) != RAYC_OK)
		return fail("rayc_get", rc);
	rayc_release(sum[0]);
	rayc_release(sum[1]);
	rayc_release(a);
	rayc_shutdown();

	std::printf("sum of squares 0..9 = %lld; (9 + 16) / 2 = %g; "
	            "len(\"%s\") = %lld; answer = %lld\n", (long long)total,
	            half, label.c_str(), (long long)len, (long long)ans);
	bool ok = total == 285 && half == 12.5 &&
	          len == (int64_t)label.size() && ans == 42;
	if (!ok)
		std::fprintf(stderr, "hello_cpp: wrong results\n");
	return ok ? 0 : 1;
}
