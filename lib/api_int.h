/* api_int.h -- what the public entry points share (api.c, actor_api.c):
 * checking arguments, demands, task ids, resolving ref and handle
 * arguments. */
#ifndef RAYC_API_INT_H
#define RAYC_API_INT_H

#include "rt.h"

/* Checks the arguments and sums the space their by-value copies take. */
int rayc__check_args(const rayc_arg *args, size_t nargs, size_t *extra);
/* Builds the demand vector of opts; RAYC_EINFEASIBLE if no live peer
 * could meet it. */
int rayc__demand_of(rayc__rt *rt, const rayc_task_opts *o, int64_t *d);
/* A new task id: derived from the running parent's (a re-run makes the
 * same ids) unless fresh. */
rayc_task_id rayc__next_task_id(rayc__rt *rt, bool fresh);
/* Before rayc__args_resolve_locked, with no lock held: each ACTOR
 * argument that is a proxy used here for the first time is registered
 * with its owner (actor_api.c: borrow_first_locked).  RAYC_OK, or why it
 * could not be (RAYC_ETIMEDOUT, RAYC_ESTATE). */
int rayc__args_borrow(rayc__rt *rt, const rayc_arg *args, size_t nargs);
/* Points t's REF arguments at their entries and holds the actors of its
 * ACTOR arguments.  RAYC_ENOTFOUND (nothing held) for one not live. */
int rayc__args_resolve_locked(rayc__rt *rt, rayc__task *t,
                              const rayc_arg *args, size_t nargs)
	RAYC_REQUIRES(rt->mu);

#endif
