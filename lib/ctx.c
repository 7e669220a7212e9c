/* ctx.c -- what a running task sees: its arguments (zero-copy) and the
 * rayc_return_* / rayc_fail calls.  ctx belongs to the task's thread, so
 * none of this takes the runtime lock except arena allocation. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lineage/lineage.h"
#include "net/net.h"
#include "rt.h"
#include "sched/actor.h"

static const rayc__targ *arg_at(rayc_ctx *ctx, size_t i)
{
	if (ctx == NULL || ctx->task == NULL || i >= ctx->task->nargs)
		return NULL;
	return &ctx->task->args[i];
}

/* The value an argument stands for: refs resolve to their object. */
static void arg_value(const rayc__targ *a, rayc_type *type, const void **p,
                      size_t *len)
{
	if (a->ref != NULL) {
		*type = a->ref->type;
		*p = a->ref->data;
		*len = a->ref->len;
	} else {
		*type = a->type;
		*p = a->type == RAYC_TYPE_I64   ? (const void *)&a->v.i64
		     : a->type == RAYC_TYPE_F64 ? (const void *)&a->v.f64
		                                : a->v.ptr;
		*len = a->len;
	}
}

size_t rayc_arg_count(rayc_ctx *ctx)
{
	return ctx != NULL && ctx->task != NULL ? ctx->task->nargs : 0;
}

rayc_type rayc_arg_type(rayc_ctx *ctx, size_t i)
{
	const rayc__targ *a = arg_at(ctx, i);
	rayc_type type;
	const void *p;
	size_t len;

	if (a == NULL)
		return RAYC_TYPE_NONE;
	arg_value(a, &type, &p, &len);
	return type;
}

static int arg_scalar(rayc_ctx *ctx, size_t i, rayc_type want, void *out)
{
	const rayc__targ *a = arg_at(ctx, i);
	rayc_type type;
	const void *p;
	size_t len;

	if (out == NULL)
		return rayc__err(RAYC_EINVAL, "NULL out pointer");
	if (a == NULL)
		return rayc__err(RAYC_ERANGE, "argument %zu of %zu", i,
		                 rayc_arg_count(ctx));
	arg_value(a, &type, &p, &len);
	if (type != want || len != 8)
		return rayc__err(RAYC_ETYPE, "argument %zu is type %d, not %d",
		                 i, (int)type, (int)want);
	memcpy(out, p, 8);
	return RAYC_OK;
}

int rayc_arg_i64(rayc_ctx *ctx, size_t i, int64_t *out)
{
	return arg_scalar(ctx, i, RAYC_TYPE_I64, out);
}

int rayc_arg_f64(rayc_ctx *ctx, size_t i, double *out)
{
	return arg_scalar(ctx, i, RAYC_TYPE_F64, out);
}

int rayc_arg_data(rayc_ctx *ctx, size_t i, const void **data, size_t *len)
{
	const rayc__targ *a = arg_at(ctx, i);
	rayc_type type;
	const void *p;
	size_t n;

	if (data == NULL || len == NULL)
		return rayc__err(RAYC_EINVAL, "NULL out pointer");
	if (a == NULL)
		return rayc__err(RAYC_ERANGE, "argument %zu of %zu", i,
		                 rayc_arg_count(ctx));
	arg_value(a, &type, &p, &n);
	if (type == RAYC_TYPE_ERROR || type == RAYC_TYPE_NONE ||
	    type == RAYC_TYPE_ACTOR)
		return rayc__err(RAYC_ETYPE, "argument %zu has no data", i);
	*data = p;
	*len = n;
	return RAYC_OK;
}

int rayc_arg_actor(rayc_ctx *ctx, size_t i, rayc_actor *out)
{
	const rayc__targ *a = arg_at(ctx, i);

	if (out == NULL)
		return rayc__err(RAYC_EINVAL, "NULL out pointer");
	if (a == NULL)
		return rayc__err(RAYC_ERANGE, "argument %zu of %zu", i,
		                 rayc_arg_count(ctx));
	if (a->type != RAYC_TYPE_ACTOR || a->v.ptr == NULL)
		return rayc__err(RAYC_ETYPE, "argument %zu is no actor handle",
		                 i);
	*out = ((const rayc__actor *)a->v.ptr)->id;
	return RAYC_OK;
}

int rayc_arg_ref(rayc_ctx *ctx, size_t i, rayc_ref *out)
{
	const rayc__targ *a = arg_at(ctx, i);

	if (out == NULL)
		return rayc__err(RAYC_EINVAL, "NULL out pointer");
	if (a == NULL)
		return rayc__err(RAYC_ERANGE, "argument %zu of %zu", i,
		                 rayc_arg_count(ctx));
	if (a->ref == NULL)
		return rayc__err(RAYC_ETYPE, "argument %zu was passed by value",
		                 i);
	out->id = a->ref->id;
	if (a->ref->owner != 0) {
		/* Another peer owns it: it must know we may keep it. */
		rayc__rt *rt = rayc__g;
		rayc__mutex_lock(&rt->mu);
		rayc__net_borrow_locked(rt, a->ref);
		rayc__mutex_unlock(&rt->mu);
	}
	return RAYC_OK;
}

static int ret_slot(rayc_ctx *ctx, size_t idx, rayc__ret **out)
{
	if (ctx == NULL || ctx->task == NULL)
		return rayc__err(RAYC_EINVAL, "not inside a task");
	if (idx >= ctx->task->nreturns)
		return rayc__err(RAYC_ERANGE, "return %zu of %u", idx,
		                 ctx->task->nreturns);
	rayc__ret *r = &ctx->rets[idx];
	if (r->block != NULL)
		rayc__store_free(rayc__g->store, r->block);
	else if (r->data != NULL && r->data != r->buf)
		free(r->data);
	memset(r, 0, sizeof(*r));
	*out = r;
	return RAYC_OK;
}

/* Space for n bytes of return data: in the ret itself, the heap, or the
 * arena for large objects. */
static int ret_space(rayc__ret *r, size_t n, void **p)
{
	if (n <= sizeof(r->buf)) {
		r->data = r->buf;
	} else if (n <= RAYC__SMALL_MAX) {
		r->data = malloc(n);
		if (r->data == NULL)
			return rayc__err(RAYC_ENOMEM, "return of %zu bytes", n);
	} else {
		int rc = rayc__obj_alloc_block(rayc__g, n, &r->block);
		if (rc != RAYC_OK)
			return rc;
		r->data = rayc__store_ptr(rayc__g->store, r->block);
		rayc__store_warm(rayc__g->store, r->data, n);
	}
	r->len = n;
	*p = r->data;
	return RAYC_OK;
}

static int ret_bytes(rayc_ctx *ctx, size_t idx, rayc_type type, const void *p,
                     size_t n)
{
	rayc__ret *r;
	void *dst;
	int rc = ret_slot(ctx, idx, &r);

	if (rc != RAYC_OK)
		return rc;
	if (p == NULL && n > 0)
		return rayc__err(RAYC_EINVAL, "NULL data with length %zu", n);
	rc = ret_space(r, n, &dst);
	if (rc != RAYC_OK)
		return rc;
	if (n > 0)
		memcpy(dst, p, n);
	r->type = type;
	r->set = true;
	return RAYC_OK;
}

int rayc_return_i64(rayc_ctx *ctx, size_t idx, int64_t v)
{
	return ret_bytes(ctx, idx, RAYC_TYPE_I64, &v, sizeof(v));
}

int rayc_return_f64(rayc_ctx *ctx, size_t idx, double v)
{
	return ret_bytes(ctx, idx, RAYC_TYPE_F64, &v, sizeof(v));
}

int rayc_return_bytes(rayc_ctx *ctx, size_t idx, const void *p, size_t n)
{
	return ret_bytes(ctx, idx, RAYC_TYPE_BYTES, p, n);
}

int rayc_return_str(rayc_ctx *ctx, size_t idx, const char *s)
{
	if (s == NULL)
		return rayc__err(RAYC_EINVAL, "NULL string");
	size_t n = strlen(s);
	rayc__ret *r;
	void *dst;
	int rc = ret_slot(ctx, idx, &r);
	if (rc != RAYC_OK)
		return rc;
	rc = ret_space(r, n + 1, &dst);
	if (rc != RAYC_OK)
		return rc;
	memcpy(dst, s, n + 1);
	r->len = n; /* the NUL is stored but not counted */
	r->type = RAYC_TYPE_STR;
	r->set = true;
	return RAYC_OK;
}

int rayc_return_alloc(rayc_ctx *ctx, size_t idx, size_t n, void **data)
{
	rayc__ret *r;
	int rc;

	if (data == NULL)
		return rayc__err(RAYC_EINVAL, "NULL data pointer");
	rc = ret_slot(ctx, idx, &r);
	if (rc != RAYC_OK)
		return rc;
	rc = ret_space(r, n, data);
	if (rc != RAYC_OK)
		return rc;
	r->type = RAYC_TYPE_BYTES;
	r->set = true;
	return RAYC_OK;
}

int rayc_fail(rayc_ctx *ctx, const char *fmt, ...)
{
	char buf[400];
	va_list ap;

	if (ctx == NULL || ctx->task == NULL)
		return rayc__err(RAYC_EINVAL, "not inside a task");
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt != NULL ? fmt : "(no message)", ap);
	va_end(ap);
	free(ctx->errmsg);
	size_t n = strlen(buf) + strlen(ctx->task->fn->name) + 32;
	ctx->errmsg = malloc(n);
	if (ctx->errmsg != NULL)
		snprintf(ctx->errmsg, n, "task %s failed: %s",
		         ctx->task->fn->name, buf);
	ctx->failed = true;
	return RAYC_OK;
}

rayc_task_id rayc_task_current_id(rayc_ctx *ctx)
{
	rayc_task_id none = { 0, 0 };
	return ctx != NULL && ctx->task != NULL ? ctx->task->id : none;
}

int rayc_task_attempt(rayc_ctx *ctx)
{
	return ctx != NULL && ctx->task != NULL ? ctx->task->attempt : 0;
}
