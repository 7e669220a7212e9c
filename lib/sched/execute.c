/* execute.c -- running one task on the calling thread and completing it:
 * sealing returns, failing them, or re-queueing the task for a retry; an
 * actor's constructor and destructor runs report to sched/actor.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "sched/actor.h"
#include "sched/sched.h"
#include "testing.h"

_Thread_local rayc_ctx *rayc__cur;

static void ret_free(rayc__rt *rt, rayc__ret *r)
{
	if (r->block != NULL)
		rayc__store_free(rt->store, r->block);
	else if (r->data != NULL && r->data != r->buf)
		free(r->data);
	memset(r, 0, sizeof(*r));
}

/* True if every ref argument still has its data (an object can be lost
 * between queueing and running, e.g. by the test hook).  If not, the task
 * goes back to waiting and the lost argument is rebuilt. */
static bool args_present_locked(rayc__rt *rt, rayc__task *t)
	RAYC_REQUIRES(rt->mu)
{
	bool ok = true;

	for (uint32_t i = 0; i < t->nargs; i++) {
		rayc__obj *o = t->args[i].ref;
		if (o == NULL)
			continue;
		int st = atomic_load(&o->state);
		if (st == RAYC__OBJ_REMOTE)
			rt->hooks->fetch(rt, o); /* bytes are elsewhere */
		if (st != RAYC__OBJ_READY)
			ok = false;
	}
	if (!ok)
		(void)rayc__task_resolve_args_locked(rt, t);
	return ok;
}

static void complete_locked(rayc__rt *rt, rayc__task *t, rayc_ctx *ctx)
	RAYC_REQUIRES(rt->mu)
{
	if (t->akind == RAYC__AK_FINI) {
		rayc__actor_fini_done_locked(rt, t);
		return;
	}
	if (t->akind == RAYC__AK_CTOR) /* fails its return itself */
		rayc__actor_ctor_done_locked(rt, t, !ctx->failed, ctx->errmsg,
		                             0);
	if (ctx->failed) {
		for (uint32_t i = 0; i < t->nreturns; i++)
			ret_free(rt, &ctx->rets[i]);
		if (t->retry_exceptions &&
		    (t->max_retries < 0 || t->attempt < t->max_retries) &&
		    !rt->stopping) {
			t->attempt++;
			t->child_counter = 0;
			atomic_fetch_add(&rt->n_retried, 1);
			rayc__log(RAYC_LOG_INFO, "RAYC-TASK-RETRY",
			          "retrying %s (attempt %d): %s", t->fn->name,
			          t->attempt, ctx->errmsg);
			rayc__sched_enqueue_locked(rt, t);
			return;
		}
		atomic_fetch_add(&rt->n_failed, 1);
		const char *msg = ctx->errmsg != NULL ? ctx->errmsg
		                                      : "task failed";
		for (uint32_t i = 0; i < t->nreturns; i++)
			if (t->returns[i] != NULL)
				rayc__obj_fail_locked(rt, t->returns[i],
				                      RAYC_ETASK, msg);
	} else {
		for (uint32_t i = 0; i < t->nreturns; i++) {
			rayc__ret *r = &ctx->rets[i];
			if (!r->set) {
				r->type = RAYC_TYPE_BYTES;
				r->len = 0;
				r->data = r->buf;
			}
			if (t->returns[i] != NULL)
				rayc__obj_seal_locked(rt, t->returns[i], r);
			else
				ret_free(rt, r);
		}
	}
	rayc__task_done_locked(rt, t);
}

void rayc__sched_execute_locked(rayc__rt *rt, rayc__task *t, int64_t cpu,
                                int depth)
{
	rayc_ctx ctx;

	if (!args_present_locked(rt, t))
		return;
	memset(&ctx, 0, sizeof(ctx));
	ctx.task = t;
	ctx.held_cpu = cpu;
	ctx.inline_depth = depth;
	ctx.rets = &ctx.ret0;
	if (t->nreturns > 1) {
		ctx.rets = rayc__fault(RAYC__FAULT_TASK_RETURNS)
		                   ? NULL
		                   : calloc(t->nreturns, sizeof(rayc__ret));
		if (ctx.rets == NULL) {
			/* Every return fails: one left pending would be
			 * waited on for ever. */
			char msg[160];
			snprintf(msg, sizeof(msg), "task %s: out of memory for "
			         "its %u returns", t->fn->name, t->nreturns);
			for (uint32_t i = 0; i < t->nreturns; i++)
				if (t->returns[i] != NULL)
					rayc__obj_fail_locked(rt, t->returns[i],
					                      RAYC_ENOMEM, msg);
			atomic_fetch_add(&rt->n_failed, 1);
			rayc__task_done_locked(rt, t);
			return;
		}
	}
	rayc__mutex_unlock(&rt->mu);

	rayc_ctx *prev = rayc__cur;
	rayc__cur = &ctx;
	t->fn->fn(&ctx);
	rayc__cur = prev;
	atomic_fetch_add_explicit(&rt->n_executed, 1, memory_order_relaxed);

	rayc__mutex_lock(&rt->mu);
	complete_locked(rt, t, &ctx);
	if (ctx.rets != &ctx.ret0)
		free(ctx.rets);
	free(ctx.errmsg);
}
