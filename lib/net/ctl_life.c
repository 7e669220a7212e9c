/* ctl_life.c -- the control store's life cycle: starting Raft on the
 * loop thread, stopping and draining it, and the test hooks that look
 * into it (lib/testing.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <raft.h>

#include "net/ctl_int.h"
#include "testing.h"

/* ---- start and stop ---- */

static void close_cb(struct raft *r)
{
	rayc__net *net = r->data;

	rayc__event_set(&net->ctl->closed_ev);
}

static void run_start(rayc__net *net, void *arg)
{
	rayc__ctl *ctl = net->ctl;
	uint32_t id = (uint32_t)(uintptr_t)arg;
	struct raft *r = &ctl->raft;
	int rv;

	if (ctl->inited || ctl->closing)
		return;
	rayc__ctl_io_setup(net);
	rayc__ctl_fsm_setup(net);
	rv = raft_init(r, &ctl->io, &ctl->fsm, id, net->url);
	if (rv != 0)
		goto fail;
	r->data = net;
	ctl->inited = true;
	/* Election after a third of the heartbeat timeout (randomised up
	 * to twice that by raft; pre-vote keeps a slow follower from
	 * deposing a live leader), leader heartbeats five times as often.
	 * They are most of an idle cluster's frames, each about 20
	 * syscalls across both peers' threads: ten times as often (every
	 * 33 ms at the default timeout), an idle two-peer cluster made
	 * about 1,000 syscalls a second; this, about half. */
	unsigned et = (unsigned)(net->timeout_ns / 3000000);
	if (et < 100)
		et = 100;
	raft_set_election_timeout(r, et);
	raft_set_heartbeat_timeout(r, et / 5 > 10 ? et / 5 : 10);
	/* A standby being promoted that cannot finish a catch-up round in
	 * a heartbeat timeout is as good as dead: give up on it then (the
	 * default, 5 s, held every other configuration change up meanwhile,
	 * newer peers included). */
	unsigned timeout_ms = (unsigned)(net->timeout_ns / 1000000);
	raft_set_max_catch_up_round_duration(r, timeout_ms);
	/* An InstallSnapshot that got no answer is sent again after 5 s
	 * (or a heartbeat timeout, if longer), not libraft's 30.  A
	 * follower taking a snapshot of its own ignores one, unanswered
	 * (libraft's replicationInstallSnapshot: "the leader will
	 * eventually retry"): a stalled follower catching up under big KV
	 * writes went without one for 30 s (2 runs of 16 of
	 * ctl::big_kv_writes_to_a_stalling_follower_keep_its_memory_bounded
	 * beside the net suite took 29-31 s to catch up, the rest under
	 * 15 s). */
	raft_set_install_snapshot_timeout(r, timeout_ms > 5000 ? timeout_ms
	                                                       : 5000);
	/* Snapshots by entry count and by bytes (ctl_log.c). */
	rayc__ctl_log_setup(net);
	raft_set_pre_vote(r, true);
	if (id == 1) {
		struct raft_configuration conf;
		raft_configuration_init(&conf);
		rv = raft_configuration_add(&conf, id, net->url, RAFT_VOTER);
		if (rv == 0)
			rv = raft_bootstrap(r, &conf);
		raft_configuration_close(&conf);
		if (rv != 0)
			goto fail;
	}
	rv = raft_start(r);
	if (rv != 0)
		goto fail;
	ctl->started = true;
	return;
fail:
	rayc__log(RAYC_LOG_ERROR, "RAYC-CTL-START",
	          "the control store did not start: %s",
	          ctl->inited ? raft_errmsg(r) : raft_strerror(rv));
	rayc__ctl_cluster_ends(net, "the control store failed");
}

void rayc__ctl_start(rayc__net *net, uint32_t id)
{
	rayc__ctl_post_once(net, &net->ctl->start_work, run_start,
	                    (void *)(uintptr_t)id);
}

int rayc__ctl_init(rayc__net *net)
{
	rayc__ctl *ctl = calloc(1, sizeof(*ctl));

	if (ctl == NULL)
		return RAYC_ENOMEM;
	ctl->ring = calloc(DEDUP_MAX, sizeof(*ctl->ring));
	if (ctl->ring == NULL) {
		free(ctl);
		return RAYC_ENOMEM;
	}
	ctl->net = net;
	const char *deaf = getenv("RAYC__DEAF_RAFT"); /* tests only */
	ctl->deaf = deaf != NULL && *deaf == '1';
	const char *stall = getenv("RAYC__LEADER_STALL_MS"); /* tests only */
	if (stall != NULL && atoi(stall) > 0)
		ctl->stall_ms = atoi(stall);
	rayc__mutex_init(&ctl->mu);
	ctl->wake = event_new(net->base, -1, 0, rayc__ctl_on_wake, net);
	if (ctl->wake == NULL) {
		rayc__mutex_fini(&ctl->mu);
		free(ctl->ring);
		free(ctl);
		return RAYC_ENOMEM;
	}
	net->ctl = ctl;
	return RAYC_OK;
}

static void run_close(rayc__net *net, void *arg)
{
	rayc__ctl *ctl = net->ctl;

	(void)arg;
	if (ctl->close_called)
		return;
	ctl->close_called = true;
	ctl->closing = true;
	rayc__ctl_reads_close(net);
	if (ctl->inited)
		raft_close(&ctl->raft, close_cb);
	else
		rayc__event_set(&ctl->closed_ev);
}

void rayc__ctl_stop(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	if (ctl == NULL)
		return;
	rayc__ctl_post_once(net, &ctl->close_work, run_close, NULL);
	if (!rayc__event_wait(&ctl->closed_ev,
	                      rayc__now_ns() + 2 * (int64_t)1000000000, 0))
		rayc__log(RAYC_LOG_WARN, "RAYC-CTL-STOP",
		          "the control store did not close in 2 s");
}

void rayc__ctl_drain(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	if (ctl == NULL)
		return;
	/* The loop has stopped.  Close raft if ctl_stop could not (its
	 * callbacks then fail what was pending: proposals answer, their
	 * connections are let go), wait for the jobs' threads, run what is
	 * left until nothing is, and from now on run posted work at once
	 * (connections may still deliver frames until they are freed). */
	run_close(net, NULL);
	rayc__ctl_jobs_join(net);
	rayc__ctl_run_posted(net, true);
}

void rayc__ctl_fini(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	if (ctl == NULL)
		return;
	rayc__ctl_drain(net);
	if (ctl->rtick != NULL)
		event_free(ctl->rtick);
	event_free(ctl->wake);
	raft_free(ctl->boot.base);
	rayc__ctl_snap_drop(ctl);
	rayc__ctl_fsm_prep_drop(net);
	rayc__ctl_dedup_clear(ctl);
	free(ctl->ring);
	rayc__mutex_fini(&ctl->mu);
	free(ctl);
	net->ctl = NULL;
}

/* ---- test hooks (lib/testing.h) ---- */

uint64_t rayc__test_ctl_term(void)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL || rt->net == NULL || rt->net->ctl == NULL)
		return 0;
	return atomic_load(&rt->net->ctl->term_seen);
}

uint32_t rayc__test_ctl_promoting(void)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL || rt->net == NULL || rt->net->ctl == NULL)
		return 0;
	return atomic_load(&rt->net->ctl->promoting);
}

bool rayc__test_ctl_in_conf(uint32_t id)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL || rt->net == NULL || rt->net->ctl == NULL ||
	    id >= RAYC__MAX_PEERS)
		return false;
	return atomic_load(&rt->net->ctl->conf_seen[id / 32]) >> (id % 32) & 1;
}

uint64_t rayc__test_ctl_snapshots(uint64_t *restored)
{
	rayc__rt *rt = rayc__g;
	uint64_t n = 0;

	if (restored != NULL)
		*restored = 0;
	if (rt == NULL || rt->net == NULL || rt->net->ctl == NULL)
		return 0;
	/* Read racily on purpose: counters only grow. */
	n = rt->net->ctl->n_snapshots;
	if (restored != NULL)
		*restored = rt->net->ctl->n_restored;
	return n;
}

typedef struct test_transfer {
	rayc__ctl_work post;
	raft_id to;
} test_transfer;

static void run_test_transfer(rayc__net *net, void *arg)
{
	rayc__ctl *ctl = net->ctl;
	test_transfer *t = arg;

	if (rayc__ctl_is_leader(net)) {
		ctl->handing_over = true;
		ctl->handover_to = t->to;
		rayc__ctl_hand_over_step(net);
	}
	free(t);
}

int rayc__test_ctl_transfer(uint32_t to)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL || rt->net == NULL || rt->net->ctl == NULL)
		return RAYC_ESTATE;
	test_transfer *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return RAYC_ENOMEM;
	t->to = to;
	rayc__ctl_post(rt->net, &t->post, run_test_transfer, t);
	return RAYC_OK;
}
