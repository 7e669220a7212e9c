/* place.c -- the placement policy (see place.h). */
#include "rayc.h"
#include "sched/place.h"

bool rayc__place_offers(const int64_t *total, int nres)
{
	for (int k = 0; k < nres; k++)
		if (total[k] > 0)
			return true;
	return false;
}

static bool feasible(const rayc__place_req *rq, const rayc__place_peer *p)
{
	if (!rayc__place_offers(p->total, rq->nres))
		return false;
	for (int k = 0; k < rq->nres; k++)
		if (rq->demand[k] > 0 && p->total[k] < rq->demand[k])
			return false;
	return true;
}

static bool room(const rayc__place_req *rq, const rayc__place_peer *p)
{
	return p->self || rq->ctor || p->inflight < p->cap;
}

static double util(const rayc__place_req *rq, const rayc__place_peer *p)
{
	if (p->self)
		return rq->local_util;
	double tot = (double)p->total[0];
	if (tot <= 0)
		return 1e9;
	double busy = (double)(p->total[0] - p->avail[0]);
	double mine = (double)p->inflight * 1000.0; /* fixed point: 1 CPU */
	return (busy > mine ? busy : mine) / tot;
}

static int place_default(const rayc__place_req *rq,
                         const rayc__place_peer *peers, int n)
{
	int here = -1, best = -1, any = -1, loc = -1;
	uint64_t loc_bytes = 0;

	for (int i = 0; i < n; i++) {
		const rayc__place_peer *p = &peers[i];
		if (!feasible(rq, p))
			continue;
		if (p->self)
			here = i;
		/* Locality wins only where there is room: an overloaded
		 * holder of the data still spills, as in Ray. */
		bool free_here = p->self ? rq->local_util < RAYC__PLACE_UTIL
		                         : room(rq, p);
		if (p->arg_bytes >= RAYC__PLACE_LOCALITY &&
		    p->arg_bytes > loc_bytes && free_here) {
			loc = i;
			loc_bytes = p->arg_bytes;
		}
		if (p->self)
			continue;
		any = i;
		if (room(rq, p) &&
		    (best < 0 || util(rq, p) < util(rq, &peers[best])))
			best = i;
	}
	if (rq->away && best >= 0)
		return best;
	if (rq->away && any >= 0)
		return RAYC__PLACE_WAIT; /* another can: until it has room */
	if (loc >= 0)
		return peers[loc].self ? RAYC__PLACE_HERE : loc;
	if (here >= 0 && rq->local_util < RAYC__PLACE_UTIL)
		return RAYC__PLACE_HERE;
	if (best >= 0 && (here < 0 || util(rq, &peers[best]) < rq->local_util))
		return best;
	if (here >= 0)
		return RAYC__PLACE_HERE;
	return any >= 0 ? RAYC__PLACE_WAIT : RAYC__PLACE_NOWHERE;
}

int rayc__place(const rayc__place_req *rq, const rayc__place_peer *peers,
                int n)
{
	if (rq->strategy == RAYC_STRATEGY_NODE_AFFINITY) {
		for (int i = 0; i < n; i++)
			if (peers[i].id == rq->node_id && feasible(rq, &peers[i]))
				return peers[i].self ? RAYC__PLACE_HERE : i;
		if (!rq->soft)
			return RAYC__PLACE_NOWHERE;
	} else if (rq->strategy == RAYC_STRATEGY_SPREAD) {
		int cand[256], nc = 0;
		for (int i = 0; i < n && nc < 256; i++)
			if (feasible(rq, &peers[i]))
				cand[nc++] = i;
		if (nc == 0)
			return RAYC__PLACE_NOWHERE;
		int i = cand[(*rq->rr)++ % (uint32_t)nc];
		return peers[i].self ? RAYC__PLACE_HERE : i;
	}
	return place_default(rq, peers, n);
}
