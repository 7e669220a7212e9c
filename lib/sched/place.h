/* place.h -- the placement policy for a ready task, as a pure function
 * of a cluster view: Ray's hybrid policy (local first until this peer's
 * utilisation passes 0.5, then the least loaded feasible peer), data
 * locality (the peer holding the most argument bytes), SPREAD and
 * NODE_AFFINITY (hard or soft).  lib/net feeds it the coordinator's view
 * (free resources from heartbeats) corrected by the tasks this owner has
 * in flight on each peer. */
#ifndef RAYC_SCHED_PLACE_H
#define RAYC_SCHED_PLACE_H

#include <stdbool.h>
#include <stdint.h>

#define RAYC__PLACE_HERE (-1)     /* queue on this peer */
#define RAYC__PLACE_NOWHERE (-2)  /* no live peer can run it: fail */
#define RAYC__PLACE_WAIT (-3)     /* feasible elsewhere, all busy: wait */
#define RAYC__PLACE_UTIL 0.5      /* Ray's spillback threshold */
#define RAYC__PLACE_LOCALITY ((uint64_t)1 << 20)

typedef struct rayc__place_peer {
	uint32_t id;
	bool self;
	const int64_t *total, *avail; /* by local resource index */
	int inflight, cap;            /* our tasks there, and the most we keep */
	uint64_t arg_bytes;           /* bytes of the task's ref args held there */
} rayc__place_peer;

typedef struct rayc__place_req {
	const int64_t *demand;
	int nres;
	int strategy; /* enum rayc_strategy */
	uint32_t node_id;
	bool soft;
	double local_util; /* (busy + queued CPU) / CPU total of this peer */
	uint32_t *rr;      /* SPREAD's position */
	bool away; /* default strategy: another peer if one can run it
	              (a detached actor, to outlive this one) */
	/* An actor's constructor: placed by resources alone, whatever the
	 * owner has in flight there (cap): tasks there may be waiting for
	 * this very actor. */
	bool ctor;
} rayc__place_req;

/* True if a peer with these totals (nres of them) offers any resource.
 * A peer that offers none (a driver that keeps tasks off its process)
 * runs no task at all, not even one that demands nothing. */
bool rayc__place_offers(const int64_t *total, int nres);

/* Index into peers, or one of RAYC__PLACE_*. */
int rayc__place(const rayc__place_req *rq, const rayc__place_peer *peers,
                int n);

#endif /* RAYC_SCHED_PLACE_H */
