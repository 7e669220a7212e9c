/* debug.c -- a test hook: what this peer still waits for (tasks not
 * finished, objects not sealed, transfers in flight), for a test whose
 * wait timed out to show which wait has no one left to end it. */
#include <stdio.h>
#include <stdlib.h>

#include "net/lane_int.h"
#include "net/remote_int.h"
#include "testing.h"

static const char *const task_states[] = { "PENDING_ARGS", "QUEUED",
	                                   "RUNNING", "FINISHED" };
static const char *const obj_states[] = { "PENDING", "READY", "ERROR",
	                                  "LOST", "REMOTE" };

static const char *st_name(const char *const *v, int n, int s)
{
	return s >= 0 && s < n ? v[s] : "?";
}

static void dump_task(rayc__rt *rt, FILE *m, rayc__task *t)
	RAYC_REQUIRES(rt->mu)
{
	fprintf(m, "  task %016llx%016llx %s: %s in_flight %d reconstruct %d "
	        "foreign %d owner %u remote_peer %u deps_pending %d "
	        "dispatch %u arg_redo %u attempt %d deaths %u\n",
	        (unsigned long long)t->id.hi, (unsigned long long)t->id.lo,
	        t->fn->name, st_name(task_states, 4, t->state), t->in_flight,
	        t->reconstruct, t->foreign, t->owner, t->remote_peer,
	        t->deps_pending, t->dispatch, t->arg_redo, t->attempt,
	        t->deaths);
	for (uint32_t i = 0; i < t->nargs; i++) {
		rayc__obj *o = t->args[i].ref;
		if (o == NULL)
			continue;
		fprintf(m, "    arg %u %016llx%016llx %s loc %u owner %u "
		        "fetching %d waiting %d held %d task %s\n", i,
		        (unsigned long long)o->id.hi,
		        (unsigned long long)o->id.lo,
		        st_name(obj_states, 5, atomic_load(&o->state)), o->loc,
		        o->owner, o->fetching, t->args[i].waiting,
		        t->args[i].held,
		        o->task == NULL ? "-"
		                        : st_name(task_states, 4,
		                                  o->task->state));
	}
}

void rayc__test_dump_pending(const char *tag)
{
	rayc__rt *rt = rayc__g;
	char *buf = NULL;
	size_t len = 0;

	if (rt == NULL)
		return;
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL)
		return;
	FILE *m = open_memstream(&buf, &len);
	if (m == NULL) {
		rayc__net_put(net);
		return;
	}
	rayc__mutex_lock(&rt->mu);
	fprintf(m, "==== pending state of peer %u (%s): queued %llu "
	        "pending_args %llu rwait %llu objs %llu\n", net->self, tag,
	        (unsigned long long)rt->queued,
	        (unsigned long long)rt->pending_args,
	        (unsigned long long)rt->rwait.n,
	        (unsigned long long)rt->nobjs);
	uint64_t cnt[5] = { 0 };
	rayc__obj *o;
	RAYC__IDTAB_EACH(&rt->objs, i, o) {
		int st = atomic_load(&o->state);
		if (st >= 0 && st < 5)
			cnt[st]++;
		rayc__task *t = o->task;
		if (t != NULL && t->state != RAYC__TASK_FINISHED &&
		    o->ret_idx == 0)
			dump_task(rt, m, t);
		else if ((st == RAYC__OBJ_PENDING || st == RAYC__OBJ_LOST) &&
		         o->refcnt > 0) /* not lineage only */
			fprintf(m, "  obj %016llx%016llx %s loc %u owner %u "
			        "fetching %d refcnt %d task %s\n",
			        (unsigned long long)o->id.hi,
			        (unsigned long long)o->id.lo,
			        st_name(obj_states, 5, st), o->loc, o->owner,
			        o->fetching, o->refcnt,
			        t == NULL ? "-"
			                  : st_name(task_states, 4, t->state));
	}
	fprintf(m, "  objects: PENDING %llu READY %llu ERROR %llu LOST %llu "
	        "REMOTE %llu\n", (unsigned long long)cnt[0],
	        (unsigned long long)cnt[1], (unsigned long long)cnt[2],
	        (unsigned long long)cnt[3], (unsigned long long)cnt[4]);
	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		rayc__link *l = &net->links[i];
		if (!p->known && p->inflight.n == 0)
			continue;
		fprintf(m, "  peer %u gen %llu alive %d inflight %llu conn %d "
		        "link lost %d gave_up %d lost_since %lld\n", i,
		        (unsigned long long)p->gen, p->alive,
		        (unsigned long long)p->inflight.n, p->conn != NULL,
		        l->lost, l->gave_up, (long long)l->lost_since);
	}
	rayc__xin *x, *xt;
	HASH_ITER(hh, net->xins, x, xt)
		fprintf(m, "  xin %016llx%016llx src %u got %zu/%zu started %d "
		        "busy %d in place %d wait_member %d\n",
		        (unsigned long long)x->id.hi,
		        (unsigned long long)x->id.lo, x->src, x->got, x->total,
		        x->started, x->busy, x->view != NULL, x->wait_member);
	for (rayc__conn *c = net->conns; c != NULL; c = c->next) {
		size_t nx = 0;
		rayc__mutex_lock(&c->mu);
		for (rayc__xout *x = c->xhead; x != NULL; x = x->next)
			nx++;
		fprintf(m, "  conn to %u (want %u) state %d opened %d dialed %d "
		        "pend %zu xouts %zu\n", c->peer, c->want_peer,
		        atomic_load(&c->state), atomic_load(&c->opened),
		        c->dialed, c->pend.len, nx);
		rayc__mutex_unlock(&c->mu);
	}
	rayc__mutex_unlock(&net->mu);
	rayc__mutex_unlock(&rt->mu);
	rayc__lanes *ls = net->lanes;
	if (ls != NULL) {
		rayc__mutex_lock(&ls->mu);
		for (rayc__lane *L = ls->all; L != NULL; L = L->next) {
			size_t nx = 0;
			for (rayc__xout *x = L->xhead; x != NULL; x = x->next)
				nx++;
			fprintf(m, "  lane %s peer %u state %d done %d late %d "
			        "pend %zu xouts %zu conn state %d\n",
			        ls->to[L->peer] == L     ? "to"
			        : ls->from[L->peer] == L ? "from"
			                                 : "old",
			        L->peer, atomic_load(&L->state),
			        atomic_load(&L->done), L->late, L->npend, nx,
			        L->c != NULL ? atomic_load(&L->c->state) : -1);
		}
		rayc__mutex_unlock(&ls->mu);
	}
	rayc__net_put(net);
	fclose(m);
	if (buf != NULL)
		fputs(buf, stderr);
	free(buf);
}
