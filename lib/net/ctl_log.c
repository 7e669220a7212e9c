/* ctl_log.c -- the byte bound on the control store's Raft log: what each
 * peer holds of it, however many large KV writes there are.  See ctl.c.
 *
 * libraft keeps the whole log in memory and snapshots by entry count
 * only (every RAYC__SNAPSHOT_ENTRIES, 1024), keeping half that many
 * entries behind each snapshot.  With 1 MiB KV values that was up to
 * 1.5 GiB of entries on every peer (1.1 GB measured after 1,500 writes)
 * while the KV itself is capped at 128 MiB.  So, on top of the count:
 *
 *  - A snapshot follows every RAYC__CTL_SNAP_BYTES of commands applied:
 *    fsm_apply counts them, and once past the mark lowers raft's entry
 *    threshold to 1, which libraft (0.15, replicationApply) checks after
 *    every batch it applies; taking the snapshot sets it back.
 *  - The entries kept behind a snapshot (raft's "trailing", read when the
 *    snapshot is put and when the log is cut) are as many as fit in
 *    RAYC__CTL_TRAIL_BYTES, at least one (a put with trailing 0 is how
 *    ctl_snap.c tells an installed snapshot).
 *  - The coordinator proposes a KV write only while the writes it has
 *    proposed and not yet applied stay within RAYC__CTL_PROP_BYTES and
 *    its log since the last snapshot it stored within twice the snapshot
 *    mark (a snapshot that falls behind slows writers rather than letting
 *    the log grow): otherwise the writer is told RAYC__BUSY and tries
 *    again (kv.c), until its deadline.
 *  - A follower cannot slow the leader's writers; one whose snapshots
 *    fall behind (a starved peer catching up) drops AppendEntries with
 *    entries, as if lost, while its log since the last snapshot it
 *    stored is past twice the mark and another is being stored
 *    (rayc__ctl_log_full, ctl_io.c), and ctl_codec.c drops them once
 *    RAYC__CTL_RX_BYTES of entries received wait for the loop thread.
 *    The leader sends them again from what the follower acknowledged.
 *  - ctl_io.c sends no AppendEntries with entries to a follower being
 *    probed that has RAYC__CTL_SEND_BYTES queued already (such a
 *    follower is sent the whole log from where it may be, every
 *    heartbeat until it answers), nor to any with four times that; and
 *    no InstallSnapshot to one with RAYC__CTL_SEND_BYTES queued (each
 *    snapshot going out holds its own data until sent).
 *
 * So each peer holds at most: the KV (128 MiB), the stored snapshot (its
 * size), one being taken or installed (the same), and a log of
 * RAYC__CTL_TRAIL_BYTES + 2 * RAYC__CTL_SNAP_BYTES + RAYC__CTL_PROP_BYTES
 * + one AppendEntries (4 MiB, ctl_codec.c) and RAYC__CTL_RX_BYTES
 * received; the coordinator also, per follower, 4 * RAYC__CTL_SEND_BYTES
 * and one AppendEntries queued.
 *
 * Loop thread only, like raft.
 */
#include <stdlib.h>

#include <raft.h>

#include "net/ctl_int.h"
#include "testing.h"

#define RAYC__CTL_SNAP_BYTES ((uint64_t)64 << 20)
#define RAYC__CTL_TRAIL_BYTES ((uint64_t)16 << 20)
#define RAYC__CTL_PROP_BYTES ((uint64_t)32 << 20)

void rayc__ctl_log_setup(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	struct raft *r = &ctl->raft;
	unsigned every = 1024;
	const char *se = getenv("RAYC__SNAPSHOT_ENTRIES"); /* tests only */
	const char *sb = getenv("RAYC__SNAPSHOT_BYTES");   /* tests only */
	const char *pb = getenv("RAYC__PROPOSE_BYTES");    /* tests only */

	if (se != NULL && atoi(se) > 0)
		every = (unsigned)atoi(se);
	ctl->snap_every = every;
	ctl->snap_bytes = RAYC__CTL_SNAP_BYTES;
	if (sb != NULL && atoll(sb) > 0)
		ctl->snap_bytes = (uint64_t)atoll(sb);
	ctl->prop_max = RAYC__CTL_PROP_BYTES;
	if (pb != NULL && atoll(pb) > 0)
		ctl->prop_max = (uint64_t)atoll(pb);
	raft_set_snapshot_threshold(r, every);
	raft_set_snapshot_trailing(r, every / 2 > 0 ? every / 2 : 1);
}

void rayc__ctl_log_applied(rayc__net *net, size_t len)
{
	rayc__ctl *ctl = net->ctl;
	struct raft *r = &ctl->raft;
	unsigned i;

	/* raft sets last_applied once fsm_apply returns. */
	if (ctl->recent_n < RAYC__CTL_RECENT)
		i = (ctl->recent_head + ctl->recent_n++) % RAYC__CTL_RECENT;
	else
		i = ctl->recent_head++ % RAYC__CTL_RECENT;
	ctl->recent_head %= RAYC__CTL_RECENT;
	ctl->recent[i].index = r->last_applied + 1;
	ctl->recent[i].len = len;
	ctl->applied_bytes += len;
	if (ctl->applied_bytes - ctl->taken_mark >= ctl->snap_bytes)
		raft_set_snapshot_threshold(r, 1); /* after this batch */
}

/* How many entries up to index last fit in RAYC__CTL_TRAIL_BYTES: the
 * commands' sizes are in recent (other entries are a few bytes); an
 * index it no longer holds ends the count. */
static unsigned trail_for(rayc__ctl *ctl, raft_index last)
{
	uint64_t bytes = 0;
	unsigned n = 0, max = ctl->snap_every / 2 > 0 ? ctl->snap_every / 2 : 1;
	unsigned k = ctl->recent_n;
	raft_index oldest = last + 1;

	if (k > 0)
		oldest = ctl->recent[ctl->recent_head].index;
	while (n < max && last - n >= 1 && last - n >= oldest) {
		raft_index idx = last - n;
		/* Newest first: recent is in index order. */
		while (k > 0 &&
		       ctl->recent[(ctl->recent_head + k - 1) %
		                   RAYC__CTL_RECENT].index > idx)
			k--;
		const rayc__ctl_sized *s =
		        k > 0 ? &ctl->recent[(ctl->recent_head + k - 1) %
		                             RAYC__CTL_RECENT]
		              : NULL;
		uint64_t len = s != NULL && s->index == idx ? s->len : 0;
		if (n > 0 && bytes + len > RAYC__CTL_TRAIL_BYTES)
			break;
		bytes += len;
		n++;
	}
	return n > 0 ? n : 1;
}

void rayc__ctl_log_taking(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	struct raft *r = &ctl->raft;

	raft_set_snapshot_trailing(r, trail_for(ctl, r->last_applied));
	raft_set_snapshot_threshold(r, ctl->snap_every);
	ctl->taken_mark = ctl->applied_bytes;
}

void rayc__ctl_log_stored(rayc__net *net, bool installed)
{
	rayc__ctl *ctl = net->ctl;

	if (installed) {
		/* The log before it is gone; so is what we knew of it. */
		ctl->recent_n = 0;
		ctl->recent_head = 0;
		ctl->taken_mark = ctl->applied_bytes;
		ctl->stored_mark = ctl->applied_bytes;
		raft_set_snapshot_threshold(&ctl->raft, ctl->snap_every);
		return;
	}
	ctl->stored_mark = ctl->taken_mark; /* raft takes one at a time */
}

bool rayc__ctl_log_full(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	/* Only while one is being stored: once it is, the next batch
	 * applied takes another (the threshold is 1 by then), which only
	 * entries taken in can bring about. */
	return ctl->taken_mark > ctl->stored_mark &&
	       ctl->applied_bytes - ctl->stored_mark > 2 * ctl->snap_bytes;
}

int rayc__ctl_log_room(rayc__net *net, size_t len)
{
	rayc__ctl *ctl = net->ctl;
	uint64_t behind = ctl->applied_bytes - ctl->stored_mark;

	if ((ctl->prop_bytes > 0 && ctl->prop_bytes + len > ctl->prop_max) ||
	    behind > 2 * ctl->snap_bytes) {
		atomic_fetch_add(&ctl->n_busy, 1);
		return RAYC__BUSY;
	}
	return RAYC_OK;
}

uint64_t rayc__test_ctl_busy(void)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL || rt->net == NULL || rt->net->ctl == NULL)
		return 0;
	return atomic_load(&rt->net->ctl->n_busy);
}
