/* test_lineage.c -- lineage: lost objects rebuilt by re-running only the
 * tasks needed, put objects reported lost, lineage released when no
 * longer reachable. */
#include <stdatomic.h>
#include <stdlib.h>

#include "common/idtab.h"
#include "helpers.h"
#include "testing.h"

static atomic_int runs_a, runs_b, runs_c, runs_side;

static void step(rayc_ctx *c, atomic_int *counter)
{
	int64_t x = 0;
	atomic_fetch_add(counter, 1);
	if (rayc_arg_count(c) > 0)
		rayc_arg_i64(c, 0, &x);
	rayc_return_i64(c, 0, x * 10 + 1);
}

static void lin_a(rayc_ctx *c) { step(c, &runs_a); }
static void lin_b(rayc_ctx *c) { step(c, &runs_b); }
static void lin_c(rayc_ctx *c) { step(c, &runs_c); }
static void lin_side(rayc_ctx *c) { step(c, &runs_side); }
RAYC_REMOTE(lin_a)
RAYC_REMOTE(lin_b)
RAYC_REMOTE(lin_c)
RAYC_REMOTE(lin_side)

TestSuite(lineage, .init = rt_init2, .fini = rt_stop, .timeout = 60);

/* a -> b -> c, plus a side branch from a.  Intermediate refs released. */
static void build_chain(rayc_ref *c_out, rayc_ref *side_out)
{
	rayc_ref a, b;
	cr_assert_eq(rayc_call(&a, "lin_a"), RAYC_OK);
	cr_assert_eq(rayc_call(&b, "lin_b", RAYC_REF(a)), RAYC_OK);
	cr_assert_eq(rayc_call(c_out, "lin_c", RAYC_REF(b)), RAYC_OK);
	cr_assert_eq(rayc_call(side_out, "lin_side", RAYC_REF(a)), RAYC_OK);
	cr_assert_eq(get_i64(*c_out), 111);
	cr_assert_eq(get_i64(*side_out), 11);
	rayc_release(a);
	rayc_release(b);
}

Test(lineage, lost_object_three_levels_deep_reruns_only_needed)
{
	rayc_ref c, side;
	build_chain(&c, &side);
	cr_assert_eq(runs_a + runs_b + runs_c + runs_side, 4);
	/* a and b were released, so their data is gone; losing c means
	 * a, b and c must run again, and the side branch must not. */
	cr_assert_eq(rayc__test_lose(c), RAYC_OK);
	cr_assert_eq(get_i64(c), 111);
	cr_assert_eq(runs_a, 2);
	cr_assert_eq(runs_b, 2);
	cr_assert_eq(runs_c, 2);
	cr_assert_eq(runs_side, 1);
	rayc_stats st;
	rayc_stats_get(&st);
	cr_assert_eq(st.tasks_reconstructed, 3);
	rayc_release(c);
	rayc_release(side);
	rayc_stats_get(&st);
	cr_assert_eq(st.objects, 0);
	cr_assert_eq(st.lineage_tasks, 0);
}

Test(lineage, held_intermediate_stops_reconstruction)
{
	rayc_ref a, b, c;
	cr_assert_eq(rayc_call(&a, "lin_a"), RAYC_OK);
	cr_assert_eq(rayc_call(&b, "lin_b", RAYC_REF(a)), RAYC_OK);
	cr_assert_eq(rayc_call(&c, "lin_c", RAYC_REF(b)), RAYC_OK);
	cr_assert_eq(get_i64(c), 111);
	/* b is held (and ready): only c re-runs. */
	cr_assert_eq(rayc__test_lose(c), RAYC_OK);
	cr_assert_eq(get_i64(c), 111);
	cr_assert_eq(runs_a, 1);
	cr_assert_eq(runs_b, 1);
	cr_assert_eq(runs_c, 2);
	/* Lose b and c: two re-runs, a untouched. */
	rayc__test_lose(b);
	rayc__test_lose(c);
	cr_assert_eq(get_i64(c), 111);
	cr_assert_eq(runs_a, 1);
	cr_assert_eq(runs_b, 2);
	cr_assert_eq(runs_c, 3);
	rayc_release(a);
	rayc_release(b);
	rayc_release(c);
}

Test(lineage, lost_put_object_is_an_explicit_error)
{
	int64_t v = 7;
	rayc_ref p, d;
	cr_assert_eq(rayc_put(&p, &v, sizeof(v)), RAYC_OK);
	cr_assert_eq(rayc__test_lose(p), RAYC_OK);
	rayc_view view;
	cr_assert_eq(rayc_get(p, &view, 1000), RAYC_ELOST);
	rayc_view_release(&view);
	/* A task depending on it fails with the same cause, no hang. */
	cr_assert_eq(rayc_call(&d, "lin_b", RAYC_REF(p)), RAYC_OK);
	int rc = rayc_get(d, &view, 5000);
	cr_assert_eq(rc, RAYC_ELOST, "%s", rayc_strerror(rc));
	cr_assert(strstr(view.data, "rayc_put") != NULL, "%s",
	          (const char *)view.data);
	rayc_view_release(&view);
	rayc_release(p);
	rayc_release(d);
}

/* A chain whose upstream is a lost put cannot be rebuilt: ELOST, not a
 * hang. */
Test(lineage, rebuild_needing_lost_put_fails_cleanly)
{
	int64_t v = 3;
	rayc_ref p, b, c;
	cr_assert_eq(rayc_put(&p, &v, sizeof(v)), RAYC_OK);
	cr_assert_eq(rayc_call(&b, "lin_b", RAYC_REF(p)), RAYC_OK);
	cr_assert_eq(rayc_call(&c, "lin_c", RAYC_REF(b)), RAYC_OK);
	/* A put is untyped bytes, so lin_b reads no i64 and starts at 0. */
	cr_assert_eq(get_i64(c), 11);
	rayc_release(p);
	rayc_release(b);
	rayc__test_lose(c);
	int64_t out;
	cr_assert_eq(rayc_get_i64(c, &out, 5000), RAYC_ELOST);
	rayc_release(c);
}

/* 20,000 dependent steps, each ref released once the next is submitted:
 * lineage stays reachable only from the tail, and everything is freed
 * at the end. */
Test(lineage, long_pipeline_releases_lineage)
{
	rayc_ref prev;
	cr_assert_eq(rayc_call(&prev, "lin_a"), RAYC_OK);
	rayc_stats st;
	for (int i = 0; i < 20000; i++) {
		rayc_ref next;
		cr_assert_eq(rayc_call(&next, "ident_plus", RAYC_REF(prev)),
		             RAYC_OK);
		rayc_release(prev);
		prev = next;
		if (i % 1000 == 999) {
			/* Drain so the run is a stream, then check that
			 * finished steps no longer hold data. */
			get_i64(prev);
			rayc_stats_get(&st);
			cr_assert_lt(st.inline_bytes + st.store_used_bytes, 4096);
		}
	}
	cr_assert_eq(get_i64(prev), 1 + 20000);
	rayc_release(prev);
	rayc_stats_get(&st);
	cr_assert_eq(st.objects, 0, "%lu objects", (unsigned long)st.objects);
	cr_assert_eq(st.lineage_tasks, 0);
}

static void ident_plus(rayc_ctx *c)
{
	int64_t x;
	rayc_arg_i64(c, 0, &x);
	rayc_return_i64(c, 0, x + 1);
}
RAYC_REMOTE(ident_plus)

/* Independent tasks whose refs are released: lineage does not grow. */
Test(lineage, released_independent_tasks_keep_memory_bounded)
{
	rayc_stats st;
	for (int round = 0; round < 50; round++) {
		rayc_ref r[1000];
		for (int i = 0; i < 1000; i++)
			cr_assert_eq(rayc_call(&r[i], "ident_plus",
			                       RAYC_I64(i)),
			             RAYC_OK);
		for (int i = 0; i < 1000; i++) {
			cr_assert_eq(get_i64(r[i]), i + 1);
			rayc_release(r[i]);
		}
		rayc_stats_get(&st);
		cr_assert_eq(st.objects, 0);
		cr_assert_eq(st.lineage_tasks, 0);
	}
}

/* ------------------------------------------------------------------ */
/* The object table's index (common/idtab.c), against a plain array: ids */
/* from two counters (runs that share slot groups), random ids (nested   */
/* tasks'), and deletes in every order, so that the back-shifts of a      */
/* delete meet runs of every shape, through several growths.             */
/* ------------------------------------------------------------------ */
#define IT_N 60000

static uint64_t it_rand(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

Test(idtab, finds_what_it_holds_and_nothing_else_through_growth_and_deletes)
{
	static uint64_t hi[IT_N], lo[IT_N];
	static bool in[IT_N];
	rayc__idtab t;
	uint64_t seed = 0x9e3779b97f4a7c15ull;
	size_t held = 0;

	cr_assert_eq(rayc__idtab_init(&t), RAYC_OK);
	for (int i = 0; i < IT_N; i++) {
		switch (i % 3) {
		case 0: /* job A's counter, return 0 */
			hi[i] = 0x1234;
			lo[i] = ((uint64_t)(i / 3) << 16) | 1;
			break;
		case 1: /* job B's counter, returns 0 and 1 */
			hi[i] = 0x5678;
			lo[i] = ((uint64_t)(i / 6) << 16) | (uint64_t)(1 + i % 2);
			break;
		default: /* nested: xxh3-like */
			hi[i] = it_rand(&seed);
			lo[i] = (it_rand(&seed) & ~(uint64_t)0xffff) | 1;
		}
	}
	/* Rounds of adds, then deletes of a random half, then checks. */
	for (int round = 0; round < 4; round++) {
		for (int i = 0; i < IT_N; i++)
			if (!in[i] && it_rand(&seed) % 4 != 0) {
				cr_assert_eq(rayc__idtab_add(&t, hi[i], lo[i],
				                             &in[i]),
				             RAYC_OK);
				in[i] = true;
				held++;
			}
		cr_assert_eq(t.n, held);
		cr_assert_leq(2 * t.n, t.mask + 1, "at most half full");
		for (int i = 0; i < IT_N; i++)
			if (in[i] && it_rand(&seed) % 2 == 0) {
				rayc__idtab_del(&t, hi[i], lo[i]);
				in[i] = false;
				held--;
			}
		rayc__idtab_del(&t, 0xdead, 0xbeef); /* absent: no-op */
		cr_assert_eq(t.n, held);
		for (int i = 0; i < IT_N; i++)
			cr_assert_eq(rayc__idtab_find(&t, hi[i], lo[i]),
			             in[i] ? (void *)&in[i] : NULL,
			             "round %d id %d (%s)", round, i,
			             in[i] ? "held" : "deleted");
		size_t seen = 0;
		void *p;
		RAYC__IDTAB_EACH(&t, k, p) {
			cr_assert(*(bool *)p, "a deleted id walked");
			seen++;
		}
		cr_assert_eq(seen, held);
	}
	for (int i = 0; i < IT_N; i++)
		if (in[i])
			rayc__idtab_del(&t, hi[i], lo[i]);
	cr_assert_eq(t.n, 0);
	cr_assert_null(rayc__idtab_find(&t, hi[0], lo[0]));
	rayc__idtab_fini(&t);
}

/* After a burst the index keeps its size while the burst is recent (no
 * page faults for the next one), and gives the memory back once two
 * windows of little use have passed (the clock is simulated by moving
 * the window's start back). */
Test(idtab, shrinks_after_a_burst_only_once_it_is_not_recent)
{
	enum { BURST = 100000 };
	rayc__idtab t;
	static bool slot[BURST];

	cr_assert_eq(rayc__idtab_init(&t), RAYC_OK);
	for (uint64_t i = 0; i < BURST; i++)
		cr_assert_eq(rayc__idtab_add(&t, 7, (i << 16) | 1, &slot[i]),
		             RAYC_OK);
	size_t big = t.mask + 1;
	cr_assert_geq(big, 2 * BURST);
	for (uint64_t i = 0; i < BURST; i++)
		rayc__idtab_del(&t, 7, (i << 16) | 1);
	cr_assert_eq(t.mask + 1, big, "shrank while the burst is recent");
	/* Two windows pass with 100 ids held and one coming and going. */
	for (uint64_t i = 0; i < 100; i++)
		cr_assert_eq(rayc__idtab_add(&t, 8, (i << 16) | 1, &slot[i]),
		             RAYC_OK);
	for (int w = 0; w < 2; w++) {
		t.window_ns -= (int64_t)11 * 1000000000;
		for (uint64_t i = 0; i < 300; i++) {
			cr_assert_eq(rayc__idtab_add(&t, 9, (i << 16) | 1,
			                             &slot[i]),
			             RAYC_OK);
			rayc__idtab_del(&t, 9, (i << 16) | 1);
		}
	}
	cr_assert_leq(t.mask + 1, 4096, "still %zu slots after two quiet "
	              "windows", (size_t)(t.mask + 1));
	cr_assert_eq(t.n, 100);
	for (uint64_t i = 0; i < 100; i++)
		cr_assert_eq(rayc__idtab_find(&t, 8, (i << 16) | 1), &slot[i]);
	rayc__idtab_fini(&t);
}
