/* cluster.c -- the public cluster calls: this peer's id and address,
 * and the cluster's peers and jobs as this peer sees them.
 */
#include <stdio.h>
#include <string.h>

#include "net/net_int.h"

/* ---- public calls ---- */

uint32_t rayc_peer_id(void)
{
	rayc__rt *rt = rayc__g;

	return rt != NULL ? atomic_load(&rt->self_id) : 0;
}

const char *rayc_address(void)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL || rt->net == NULL)
		return NULL;
	return rt->net->url;
}

int rayc_cluster_token(char *out, size_t cap)
{
	rayc__rt *rt = rayc__g;

	if (out == NULL || cap == 0)
		return rayc__err(RAYC_EINVAL, "NULL or empty buffer");
	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL)
		return rayc__err(RAYC_ESTATE, "this peer is not in a cluster");
	size_t n = strlen(net->token);
	int rc = RAYC_OK;
	if (n + 1 > cap)
		rc = rayc__err(RAYC_EINVAL, "the token needs %zu bytes", n + 1);
	else
		memcpy(out, net->token, n + 1);
	rayc__net_put(net);
	return rc;
}

int rayc_cluster_peers(rayc_peer_info *out, size_t cap, size_t *n)
{
	rayc__rt *rt = rayc__g;
	size_t k = 0;

	if (n == NULL || (out == NULL && cap > 0))
		return rayc__err(RAYC_EINVAL, "NULL argument");
	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL) {
		if (cap > 0) {
			rayc_stats st;
			memset(&out[0], 0, sizeof(out[0]));
			rayc_stats_get(&st);
			out[0].id = 1;
			out[0].alive = 1;
			out[0].is_coordinator = 1;
			out[0].is_voter = 1;
			out[0].pid = (int)rayc__getpid();
			out[0].cpus_total = st.cpus_total;
			out[0].cpus_available = st.cpus_available;
			out[0].tasks_executed = st.tasks_executed;
		}
		*n = 1;
		return RAYC_OK;
	}
	int64_t avail[RAYC__MAX_RES];
	uint64_t queued;
	rayc__net_self_stats(net, avail, &queued);
	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		if (!p->known)
			continue;
		if (k < cap) {
			rayc_peer_info *o = &out[k];
			memset(o, 0, sizeof(*o));
			o->id = i;
			o->alive = p->alive;
			o->is_coordinator = i == net->coord;
			o->is_voter = p->voter;
			o->pid = p->pid;
			snprintf(o->address, sizeof(o->address), "%s", p->url);
			bool me = i == net->self;
			o->cpus_total = rayc__res_to_double(
				me ? rt->res_total[RAYC__RES_CPU]
				   : p->total[RAYC__RES_CPU]);
			o->cpus_available = rayc__res_to_double(
				me ? avail[RAYC__RES_CPU] : p->avail[RAYC__RES_CPU]);
			o->tasks_executed =
				me ? atomic_load(&rt->n_executed) : p->executed;
			o->tasks_queued = me ? queued : p->queued;
		}
		k++;
	}
	rayc__mutex_unlock(&net->mu);
	rayc__net_put(net);
	*n = k;
	return RAYC_OK;
}

int rayc_cluster_jobs(rayc_job_info *out, size_t cap, size_t *n)
{
	rayc__rt *rt = rayc__g;
	size_t k = 0;

	if (n == NULL || (out == NULL && cap > 0))
		return rayc__err(RAYC_EINVAL, "NULL argument");
	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL) {
		/* A one-peer cluster: this program is the one job. */
		if (cap > 0) {
			memset(&out[0], 0, sizeof(out[0]));
			out[0].job_id = 1;
			out[0].pid = (int)rayc__getpid();
			out[0].state = RAYC_JOB_RUNNING;
			out[0].start_ms = rt->start_wall_ms;
		}
		*n = 1;
		return RAYC_OK;
	}
	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		if (!p->known || p->worker)
			continue;
		if (k < cap) {
			rayc_job_info *o = &out[k];
			memset(o, 0, sizeof(*o));
			o->job_id = i;
			o->pid = p->pid;
			o->state = (rayc_job_state)p->job_state;
			o->start_ms = p->job_start_ms;
			o->end_ms = p->job_end_ms;
			snprintf(o->address, sizeof(o->address), "%s", p->url);
		}
		k++;
	}
	rayc__mutex_unlock(&net->mu);
	rayc__net_put(net);
	*n = k;
	return RAYC_OK;
}
