/* param_server.c -- a parameter server: an actor holding a model's
 * weights, updated by gradient tasks that run across the peers of a
 * local cluster (this process and 2 copies of it that rayc_init starts).
 *
 *   The model is linear least squares, y = X w, with data in 8 shards
 *   made from a seed on whichever peer needs them.  Each round, the
 *   driver gets the weights from the server (a ref), hands that ref to
 *   one gradient task per shard (they run on the worker peers), and hands
 *   the 8 gradient refs to the server's apply method, which averages them
 *   and takes a step (Ray's synchronous parameter server).  Refs flow
 *   between the actor and the tasks without the driver reading them.
 *   The driver checks the weights reach the ones the data was made from.
 *
 * Usage: param_server [rounds]   (default 300; from 300 on, exits 1 unless
 *                                 the largest error is under 1e-6)
 * RAYC_LOCAL_PEERS sets the number of peers (default 3 here).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rayc.h"

#define DIM 16
#define SHARDS 8
#define ROWS 512

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

/* A number in [-1, 1) from (a, b). */
static double unit(uint64_t a, uint64_t b)
{
	return (double)(mix(a * 0x9e3779b97f4a7c15ULL + b) >> 11) /
	               (double)(1ULL << 52) - 1.0;
}

static double w_true(int j)
{
	return unit(1000, (uint64_t)j) * 3.0;
}

/* (weights: DIM doubles, shard) -> the shard's mean squared error
 * gradient, DIM doubles. */
static void gradient(rayc_ctx *ctx)
{
	const double *w;
	size_t len;
	int64_t shard;
	double g[DIM] = { 0 }, x[DIM];

	if (rayc_arg_data(ctx, 0, (const void **)&w, &len) != RAYC_OK ||
	    len != sizeof(double) * DIM ||
	    rayc_arg_i64(ctx, 1, &shard) != RAYC_OK) {
		rayc_fail(ctx, "gradient(weights, shard)");
		return;
	}
	for (int r = 0; r < ROWS; r++) {
		uint64_t row = (uint64_t)shard * ROWS + (uint64_t)r;
		double y = 0, err = 0;
		for (int j = 0; j < DIM; j++) {
			x[j] = unit(row, (uint64_t)j);
			y += x[j] * w_true(j);
			err += x[j] * w[j];
		}
		err -= y;
		for (int j = 0; j < DIM; j++)
			g[j] += 2.0 * err * x[j] / ROWS;
	}
	rayc_return_bytes(ctx, 0, g, sizeof(g));
}
RAYC_REMOTE(gradient)

/* The server's state: the weights, how many steps were taken. */
typedef struct server {
	double w[DIM];
	double lr;
	int64_t steps;
} server;

/* ParamServer(lr) */
static void ps_init(rayc_ctx *ctx)
{
	server *s = rayc_actor_state(ctx);

	if (rayc_arg_f64(ctx, 0, &s->lr) != RAYC_OK || !(s->lr > 0)) {
		rayc_fail(ctx, "ParamServer needs a learning rate > 0");
		return;
	}
}

static void ps_get(rayc_ctx *ctx)
{
	server *s = rayc_actor_state(ctx);

	rayc_return_bytes(ctx, 0, s->w, sizeof(s->w));
}

/* apply(gradient refs...) -> the new weights */
static void ps_apply(rayc_ctx *ctx)
{
	server *s = rayc_actor_state(ctx);
	size_t n = rayc_arg_count(ctx);
	double mean[DIM] = { 0 };

	for (size_t i = 0; i < n; i++) {
		const double *g;
		size_t len;
		if (rayc_arg_data(ctx, i, (const void **)&g, &len) != RAYC_OK ||
		    len != sizeof(mean)) {
			rayc_fail(ctx, "apply: argument %zu is no gradient", i);
			return;
		}
		for (int j = 0; j < DIM; j++)
			mean[j] += g[j] / (double)n;
	}
	for (int j = 0; j < DIM; j++)
		s->w[j] -= s->lr * mean[j];
	s->steps++;
	rayc_return_bytes(ctx, 0, s->w, sizeof(s->w));
}

static void ps_steps(rayc_ctx *ctx)
{
	server *s = rayc_actor_state(ctx);

	rayc_return_i64(ctx, 0, s->steps);
}

static const rayc_actor_method ps_methods[] = {
	{ "get", ps_get },
	{ "apply", ps_apply },
	{ "steps", ps_steps },
};
static rayc_actor_class ps_class = {
	.name = "ParamServer",
	.state_size = sizeof(server),
	.init = ps_init,
	.methods = ps_methods,
	.nmethods = 3,
};
RAYC_ACTOR_CLASS(ps_class)

static int fail(const char *what, int rc)
{
	fprintf(stderr, "param_server: %s: %s (%s)\n", what,
	        rayc_strerror(rc), rayc_errmsg());
	return 1;
}

int main(int argc, char **argv)
{
	rayc_config cfg = { 0 };
	int rounds = argc > 1 ? atoi(argv[1]) : 300;
	int rc;

	if (getenv("RAYC_LOCAL_PEERS") == NULL)
		cfg.local_peers = 3;
	/* Copies started as peers serve inside rayc_init and never return. */
	if ((rc = rayc_init(&cfg)) != RAYC_OK)
		return fail("rayc_init", rc);
	if (rounds < 1)
		rounds = 1;

	rayc_actor ps;
	if ((rc = rayc_actor_create(&ps, "ParamServer", NULL,
	                            RAYC_F64(0.2))) != RAYC_OK)
		return fail("create the server", rc);
	rayc_ref w;
	if ((rc = rayc_actor_call(&w, ps, "get")) != RAYC_OK)
		return fail("get", rc);
	for (int round = 0; round < rounds; round++) {
		rayc_arg grads[SHARDS];
		rayc_ref g[SHARDS];
		for (int i = 0; i < SHARDS; i++) {
			if ((rc = rayc_call(&g[i], "gradient", RAYC_REF(w),
			                    RAYC_I64(i))) != RAYC_OK)
				return fail("gradient", rc);
			grads[i] = RAYC_REF(g[i]);
		}
		rayc_release(w);
		/* The gradients go to the server as refs: it fetches them
		 * from the peers that made them. */
		if ((rc = rayc_actor_call_array(&w, ps, "apply", NULL, grads,
		                                SHARDS)) != RAYC_OK)
			return fail("apply", rc);
		for (int i = 0; i < SHARDS; i++)
			rayc_release(g[i]);
	}
	rayc_view v;
	if ((rc = rayc_get(w, &v, 120000)) != RAYC_OK)
		return fail("the final weights", rc);
	double err = 0;
	const double *wf = v.data;
	for (int j = 0; j < DIM; j++)
		err = fmax(err, fabs(wf[j] - w_true(j)));
	rayc_view_release(&v);
	rayc_release(w);

	int64_t steps = 0;
	rayc_ref r;
	if (rayc_actor_call(&r, ps, "steps") != RAYC_OK ||
	    rayc_get_i64(r, &steps, 60000) != RAYC_OK)
		return fail("steps", RAYC_ESTATE);
	rayc_release(r);
	rayc_actor_info info;
	size_t n = 0, npeers = 0;
	rayc_actor_list(&info, 1, &n);
	rayc_peer_info peers[16];
	rayc_cluster_peers(peers, 16, &npeers);
	printf("param_server: %lld steps of %d gradients on %zu peers; the "
	       "server lived on peer %u (this is peer %u); largest weight "
	       "error %.3g\n", (long long)steps, SHARDS, npeers,
	       n > 0 ? info.peer : 0, rayc_peer_id(), err);
	rayc_actor_release(ps);
	rayc_shutdown();
	/* 300 rounds reach the weights to 1e-6 and beyond; fewer may not. */
	return steps == rounds && (rounds < 300 || err < 1e-6) ? 0 : 1;
}
