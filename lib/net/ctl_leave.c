/* ctl_leave.c -- a leaving peer's part in the control store: handing the
 * coordinator's role over before it goes, and a leaving voter staying
 * until the others can commit without it. */
#include <raft.h>

#include "net/ctl_int.h"

/* ---- handing the coordinator's role over before leaving ---- */

static void transfer_cb(struct raft_transfer *req)
{
	(void)req;
}

/* One step of handing over (loop thread, from rayc__ctl_after()):
 * transfer to another voter; if this peer is the only one (2 live peers
 * keep 1), first make a live standby a voter, so the peers that stay keep
 * a majority. */
void rayc__ctl_hand_over_step(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	struct raft *r = &ctl->raft;
	const struct raft_configuration *conf = &r->configuration;
	raft_id voter = 0, standby = 0;
	int rv;

	if (!ctl->handing_over || ctl->changing ||
	    r->configuration_uncommitted_index != 0)
		return;
	if (!rayc__ctl_is_leader(net) || r->transfer != NULL) {
		/* Not the leader any more (handed over), or a transfer of
		 * raft's own is under way: nothing more to do here. */
		ctl->handing_over = false;
		return;
	}
	for (unsigned i = 0; i < conf->n; i++) {
		raft_id id = conf->servers[i].id;
		if (id == r->id || !rayc__ctl_alive_member(net, id) ||
		    (ctl->handover_to != 0 && id != ctl->handover_to))
			continue;
		if (conf->servers[i].role == RAFT_VOTER && voter == 0)
			voter = id;
		else if (standby == 0)
			standby = id;
	}
	if (voter != 0) {
		ctl->handing_over = false;
		rv = raft_transfer(r, &ctl->transfer, voter, transfer_cb);
	} else if (standby != 0) {
		ctl->change.data = net;
		rv = raft_assign(r, &ctl->change, standby, RAFT_VOTER, rayc__ctl_change_cb);
		if (rv == 0) {
			ctl->changing = true;
			return; /* transfer once it is a voter */
		}
		ctl->handing_over = false;
	} else {
		ctl->handing_over = false;
		rv = RAFT_NOTFOUND;
	}
	if (rv != 0) {
		atomic_store(&ctl->no_transfer, true);
		rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-TRANSFER",
		          "cannot hand the coordinator's role over: %s",
		          raft_strerror(rv));
	}
}

static void run_transfer(rayc__net *net, void *arg)
{
	rayc__ctl *ctl = net->ctl;

	(void)arg;
	if (!rayc__ctl_is_leader(net)) {
		atomic_store(&ctl->no_transfer, true);
		return;
	}
	ctl->handing_over = true;
	ctl->handover_to = 0;
	rayc__ctl_hand_over_step(net);
}

void rayc__ctl_hand_over(rayc__net *net)
{
	int64_t deadline = rayc__now_ns() + 2 * (int64_t)1000000000;

	if (net->ctl == NULL)
		return;
	rayc__ctl_post_once(net, &net->ctl->transfer_work, run_transfer, NULL);
	/* Bounded: if no voter takes over, the others elect one after we
	 * are gone. */
	while (rayc__now_ns() < deadline) {
		rayc__mutex_lock(&net->mu);
		bool still = net->coord == net->self;
		rayc__mutex_unlock(&net->mu);
		if (!still || atomic_load(&net->ctl->no_transfer))
			return;
		rayc__sleep_ms(2);
	}
}

/* ---- staying a voter until the others can do without it ---- */

/* Whether the peers that stay need this one, leaving, to go on answering
 * Raft (loop thread): it is a voter and the live voters besides it are
 * no majority, so without it they commit nothing, not even its removal.
 * The usual case is the hand-over above: the other of two voters leads
 * now, and until it has made this peer a standby it needs this peer's
 * acknowledgements (libraft 0.15 counts a new leader's copies of older
 * entries only at its last stored index, so once its barrier is stored
 * not even the promotion commits without us).  Not needed once this
 * peer's demotion or removal is committed, or its own DEL is applied
 * (the leader then removes it with a configuration that does not count
 * it); nor when no other live member is there to strand, nor while it
 * leads with no hand-over under way (then nothing would change). */
static bool still_needed(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	struct raft *r = &ctl->raft;
	const struct raft_configuration *conf = &r->configuration;
	unsigned voters = 0, others = 0;
	bool in = false, voter = false, anyone = false;

	if (!ctl->started || ctl->closing || !rayc__ctl_alive_member(net, r->id))
		return false;
	if (raft_state(r) == RAFT_LEADER && !ctl->handing_over &&
	    r->transfer == NULL)
		return false;
	for (unsigned i = 0; i < conf->n; i++) {
		const struct raft_server *s = &conf->servers[i];
		bool self = s->id == r->id;
		bool live = !self && rayc__ctl_alive_member(net, s->id);
		in = in || self;
		anyone = anyone || live;
		if (s->role != RAFT_VOTER)
			continue;
		voters++;
		voter = voter || self;
		others += live;
	}
	if (!in)
		return false;
	if (!voter)
		return r->configuration_uncommitted_index != 0;
	return anyone && others * 2 <= voters;
}

void rayc__ctl_leave_check(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	if (ctl->leave_wait)
		atomic_store(&ctl->needed, still_needed(net));
}

static void run_leave_wait(rayc__net *net, void *arg)
{
	(void)arg;
	net->ctl->leave_wait = true;
	rayc__ctl_leave_check(net);
}

void rayc__ctl_leave_wait(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	if (ctl == NULL)
		return;
	/* At most a heartbeat timeout: the others wait that long for a
	 * silent peer anyway before they declare it dead. */
	int64_t t0 = rayc__now_ns(), deadline = t0 + net->timeout_ns;
	atomic_store(&ctl->needed, true); /* until the loop has looked */
	rayc__ctl_post_once(net, &ctl->leave_work, run_leave_wait, NULL);
	while (rayc__now_ns() < deadline) {
		/* Also done when a peer answered REMOVED (our removal is
		 * committed there), or when the cluster is gone. */
		if (!atomic_load(&ctl->needed) || atomic_load(&net->cut_off) ||
		    atomic_load(&net->cluster_down)) {
			rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-LEAVE",
			          "the peers that stay can do without this "
			          "one (waited %lld ms)",
			          (long long)((rayc__now_ns() - t0) / 1000000));
			return;
		}
		rayc__sleep_ms(2);
	}
	rayc__log(RAYC_LOG_WARN, "RAYC-CTL-LEAVE",
	          "leaving while the peers that stay may still need this "
	          "peer's vote (no demotion or removal committed in %lld ms)",
	          (long long)(net->timeout_ns / 1000000));
}
