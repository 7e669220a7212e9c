/* ctl_fsm.c -- the control store's state machine (struct raft_fsm):
 * applying committed entries (members joining and dying, KV writes with
 * the table that answers retried ones) and snapshots of the whole state.
 */
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "net/ctl_int.h"

/* ---- the state machine ---- */

/* A committed entry this peer cannot apply (out of memory): its copy would
 * differ from every other peer's from here on, silently.  It leaves the
 * cluster instead, as if cut off; the others go on without it. */
static int cannot_apply(rayc__net *net, const char *what)
{
	rayc__log(RAYC_LOG_ERROR, "RAYC-CTL-CANNOT-APPLY",
	          "out of memory applying %s: this peer's copy of the "
	          "control store would differ from the others'; it leaves "
	          "the cluster", what);
	atomic_store(&net->cut_off, true);
	rayc__ctl_cluster_ends(net, "this peer could not apply the control "
	                            "store's log (out of memory)");
	return RAFT_NOMEM;
}

void rayc__ctl_cluster_ends(rayc__net *net, const char *why)
{
	if (atomic_exchange(&net->cluster_down, true))
		return;
	rayc__log(RAYC_LOG_INFO, "RAYC-NET-CLUSTER-ENDS", "%s", why);
	rayc__net_lost_cluster(net, why);
}

static int apply_add(rayc__net *net, rayc__rd *rd)
{
	rayc__peer tmp;

	memset(&tmp, 0, sizeof(tmp));
	uint32_t id = rayc__r_u32(rd);
	tmp.gen = rayc__r_u64(rd);
	tmp.worker = rayc__r_u8(rd) != 0;
	tmp.pid = (int)rayc__r_u32(rd);
	tmp.job_start_ms = (int64_t)rayc__r_u64(rd);
	rayc__r_str(rd, tmp.url, sizeof(tmp.url));
	if (rd->bad || id == 0 || id >= RAYC__MAX_PEERS || tmp.gen == 0 ||
	    !rayc__net_read_res(net, rd, tmp.total, tmp.avail, false))
		return RAYC_EPROTO;
	const unsigned char *pk = rayc__r_bytes(rd, RAYC__ID_PK);
	if (rd->bad)
		return RAYC_EPROTO;
	memcpy(tmp.pk, pk, RAYC__ID_PK);
	rayc__mutex_lock(&net->mu);
	rayc__peer *p = &net->peers[id];
	if (tmp.gen >= net->next_gen)
		net->next_gen = tmp.gen + 1;
	/* Applied already (JOINED or a snapshot brought it), or an older
	 * incarnation than the slot's. */
	if (p->known && (p->alive || p->gen >= tmp.gen)) {
		rayc__mutex_unlock(&net->mu);
		return RAYC_EEXIST;
	}
	/* A slot given again: nothing of its dead holder may stick to the
	 * newcomer (its connections closed when it was removed). */
	rayc__conn *keep = !p->known || (p->conn != NULL &&
	                                 p->conn->gen == tmp.gen)
	                           ? p->conn
	                           : NULL;
	if (p->known)
		rayc__net_slot_reset_locked(net, id);
	*p = tmp;
	p->conn = keep;
	rayc__net_know_locked(net, id)->alive = true;
	rayc__net_view_changed_locked(net, id);
	p->last_seen = rayc__now_ns();
	p->job_state = p->worker ? 0 : RAYC_JOB_RUNNING;
	if (id >= net->next_id)
		net->next_id = id + 1;
	bool me = id == net->self && net->self != 0;
	if (me)
		net->joined = true;
	bool lead = net->self == net->coord;
	rayc__mutex_unlock(&net->mu);
	rayc__log(lead ? RAYC_LOG_INFO : RAYC_LOG_DEBUG, "RAYC-NET-JOIN",
	          "peer %u joined from %s (%s)", id, tmp.url,
	          tmp.worker ? "worker" : "driver");
	if (me)
		rayc__event_set(&net->join_ev);
	rayc__net_settle_parked(net); /* a claim of this id may wait */
	return RAYC_OK;
}

/* Member id (incarnation gen) is gone (it left, or died) as of wall
 * time t.  Its connections close: whatever it still says (a peer
 * removed while alive) comes on a new one, and is answered REMOVED. */
static int mark_dead(rayc__net *net, uint32_t id, uint64_t gen, bool left,
                     int64_t t)
{
	rayc__conn *close[8];
	int nclose = 0;

	rayc__mutex_lock(&net->mu);
	rayc__peer *p = &net->peers[id];
	if (!p->known || !p->alive || p->gen != gen) {
		rayc__mutex_unlock(&net->mu);
		return RAYC_ENOTFOUND;
	}
	p->alive = false;
	rayc__net_view_changed_locked(net, id);
	if (id != net->self)
		for (rayc__conn *c = net->conns; c != NULL && nclose < 8;
		     c = c->next)
			if (c->peer == id && c->gen <= gen &&
			    atomic_load(&c->state) != RAYC__CONN_CLOSED) {
				atomic_fetch_add(&c->refs, 1);
				close[nclose++] = c;
			}
	if (!p->worker) {
		p->job_state = left ? RAYC_JOB_SUCCEEDED : RAYC_JOB_FAILED;
		p->job_end_ms = t;
	}
	bool drivers = false;
	for (uint32_t i = 1; i < atomic_load(&net->top); i++)
		if (net->peers[i].alive && !net->peers[i].worker)
			drivers = true;
	bool me = id == net->self;
	rayc__mutex_unlock(&net->mu);
	for (int i = 0; i < nclose; i++) {
		rayc__conn_close(close[i], "peer removed");
		rayc__conn_unref(close[i]);
	}
	rayc__log(me || left ? RAYC_LOG_INFO : RAYC_LOG_WARN,
	          "RAYC-NET-PEER-DEAD", "peer %u (%s) left the cluster: %s", id,
	          p->url, left ? "left" : "died");
	if (me) {
		if (!atomic_load(&net->leaving)) {
			atomic_store(&net->cut_off, true);
			rayc__ctl_cluster_ends(net, "the cluster declared "
			                            "this peer dead");
		}
		return RAYC_OK;
	}
	rayc__remote_peer_died(net, id);
	if (!drivers)
		rayc__ctl_cluster_ends(net, "no driver is left: the "
		                            "cluster ends");
	return RAYC_OK;
}

static int apply_del(rayc__net *net, rayc__rd *rd)
{
	uint32_t id = rayc__r_u32(rd);
	uint64_t gen = rayc__r_u64(rd);
	bool left = rayc__r_u8(rd) != 0;
	int64_t t = (int64_t)rayc__r_u64(rd);

	if (rd->bad || id == 0 || id >= RAYC__MAX_PEERS)
		return RAYC_EPROTO;
	int rc = mark_dead(net, id, gen, left, t);
	/* The names that incarnation held are free: decided from the log
	 * alone (mark_dead's answer depends on this peer's view). */
	rayc__names_sweep(net, id, gen);
	return rc;
}

static bool dedup_find(rayc__ctl *ctl, const dedup_key *k, int *rc)
{
	dedup *d;

	HASH_FIND(hh, ctl->seen, k, sizeof(*k), d);
	if (d != NULL)
		*rc = d->rc;
	return d != NULL;
}

static void dedup_add(rayc__ctl *ctl, const dedup_key *k, int rc)
{
	dedup *d;

	if (ctl->ring_n == DEDUP_MAX) {
		d = &ctl->ring[ctl->ring_head];
		HASH_DEL(ctl->seen, d);
		ctl->ring_head = (ctl->ring_head + 1) % DEDUP_MAX;
		ctl->ring_n--;
	}
	d = &ctl->ring[(ctl->ring_head + ctl->ring_n) % DEDUP_MAX];
	memset(d, 0, sizeof(*d));
	d->k = *k;
	d->rc = rc;
	HASH_ADD(hh, ctl->seen, k, sizeof(d->k), d);
	ctl->ring_n++;
}

void rayc__ctl_dedup_clear(rayc__ctl *ctl)
{
	HASH_CLEAR(hh, ctl->seen);
	ctl->ring_head = ctl->ring_n = 0;
}

/* In snapshots: oldest first, so a restore rebuilds the same ring. */
static void dedup_write(rayc__ctl *ctl, rayc__wbuf *b)
{
	rayc__w_u32(b, ctl->ring_n);
	for (unsigned i = 0; i < ctl->ring_n; i++) {
		dedup *d = &ctl->ring[(ctl->ring_head + i) % DEDUP_MAX];
		rayc__w_u32(b, d->k.client);
		rayc__w_u64(b, d->k.req);
		rayc__w_u32(b, (uint32_t)d->rc);
	}
}

static bool dedup_read(rayc__ctl *ctl, rayc__rd *rd, bool apply)
{
	uint32_t n = rayc__r_u32(rd);

	if (rd->bad || n > DEDUP_MAX)
		return false;
	if (apply)
		rayc__ctl_dedup_clear(ctl);
	for (uint32_t i = 0; i < n; i++) {
		dedup_key k = { 0 };
		k.client = rayc__r_u32(rd);
		k.req = rayc__r_u64(rd);
		int rc = (int)rayc__r_u32(rd);
		if (rd->bad)
			return false;
		if (apply)
			dedup_add(ctl, &k, rc);
	}
	return true;
}

/* A KV write (op: RAYC__KV_PUT, _DEL, _PUTNX, _DELEQ); a retry of one
 * already applied gets its first result. */
static int apply_kv(rayc__net *net, rayc__rd *rd, int op)
{
	char key[RAYC__KV_KEY_MAX + 1];
	size_t len = 0;
	const void *val = NULL;
	dedup_key k = { 0 };
	int rc;

	k.client = rayc__r_u32(rd);
	k.req = rayc__r_u64(rd);
	rayc__r_str(rd, key, sizeof(key));
	if (op != RAYC__KV_DEL)
		val = rayc__r_blob(rd, &len);
	if (rd->bad)
		return RAYC_EPROTO;
	if (dedup_find(net->ctl, &k, &rc))
		return rc;
	rayc__mutex_lock(&net->rt->kv_mu);
	rc = rayc__kv_apply_locked(net->rt, op, key, val, len, NULL, NULL);
	rayc__mutex_unlock(&net->rt->kv_mu);
	if (rc != RAYC_ENOMEM) /* not applied: the peer leaves (fsm_apply) */
		dedup_add(net->ctl, &k, rc);
	return rc;
}

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf,
                     void **result)
{
	rayc__net *net = fsm->data;
	rayc__rd rd;
	int rc;

	rayc__ctl_log_applied(net, buf->len); /* its byte bound */
	rayc__rd_init(&rd, buf->base, buf->len);
	switch (rayc__r_u8(&rd)) {
	case CMD_ADD:
		rc = apply_add(net, &rd);
		break;
	case CMD_DEL:
		rc = apply_del(net, &rd);
		break;
	case CMD_KV_PUT:
		rc = apply_kv(net, &rd, RAYC__KV_PUT);
		break;
	case CMD_KV_DEL:
		rc = apply_kv(net, &rd, RAYC__KV_DEL);
		break;
	case CMD_KV_PUTNX:
		rc = apply_kv(net, &rd, RAYC__KV_PUTNX);
		break;
	case CMD_KV_DELEQ:
		rc = apply_kv(net, &rd, RAYC__KV_DELEQ);
		break;
	default:
		rc = RAYC_EPROTO;
	}
	if (rc == RAYC_ENOMEM)
		/* Not applied: raft applies nothing after it either. */
		return cannot_apply(net, "a committed entry");
	if (rc == RAYC_EPROTO)
		rayc__log(RAYC_LOG_ERROR, "RAYC-CTL-BAD-ENTRY",
		          "a control log entry did not decode; skipped");
	*result = (void *)(intptr_t)rc;
	return 0;
}

/* ---- snapshots: the whole state as one buffer ----
 *
 * Every RAYC__SNAPSHOT_ENTRIES applied entries (1024 by default), and every
 * 64 MiB of them (ctl_log.c), each peer writes its state (members, jobs,
 * the next id, the KV) into a snapshot and raft drops the log before it
 * (keeping a trailing half, or 16 MiB, whichever is less), so the log
 * stays bounded however many KV writes there are.  A peer too far behind,
 * or one that joins after the log was cut, gets the snapshot
 * (InstallSnapshot) and restores it.
 *
 * The KV may hold 128 MiB.  Copying that on the loop thread (1.2-1.7 s on
 * a VM where first touches of fresh memory cost ~0.3 GB/s) kept the
 * leader from sending Raft heartbeats past the election timeout and every
 * peer from sending its own: elections, and busy peers declared dead.  So
 * snapshots are asynchronous (libraft's fsm version 3): fsm_snapshot, on
 * the loop thread, only writes the small parts (members, the dedup table)
 * and takes a hold on each KV entry (entries never change: a put makes a
 * new one); fsm_snapshot_async writes it all into one buffer of the right
 * size on a job's thread (ctl_io.c) while the loop applies entries on, and
 * snapshot_put keeps that buffer rather than copying it.  Installing one
 * likewise reads its KV back on a job's thread (rayc__ctl_fsm_prepare)
 * while the put is under way; fsm_restore then swaps the table in.
 *
 * Layout: magic, members (u64 length first), KV (u64 length first: a
 * job's thread finds it without decoding the members), dedup table. */

#define SNAP_MAGIC 0x344e5352u /* "RSN4" */

/* On the loop thread: the state as of the last applied entry. */
static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n)
{
	rayc__net *net = fsm->data;
	rayc__rt *rt = net->rt;
	rayc__ctl_take *t = &net->ctl->take;
	int64_t t0 = rayc__now_ns();

	memset(t, 0, sizeof(*t));
	rayc__mutex_lock(&net->mu);
	rayc__net_write_members_locked(net, &t->members);
	rayc__mutex_unlock(&net->mu);
	dedup_write(net->ctl, &t->dedup);
	/* Holds, not copies: the loop never waits for the KV's bytes. */
	rayc__mutex_lock(&rt->kv_mu);
	int rc = rayc__kv_snap_take_locked(rt, &t->kv);
	rayc__mutex_unlock(&rt->kv_mu);
	struct raft_buffer *out = raft_malloc(sizeof(*out));
	if (rc != RAYC_OK || out == NULL || t->members.bad || t->dedup.bad) {
		raft_free(out);
		rayc__kv_snap_release(rt, &t->kv);
		rayc__wbuf_fini(&t->members);
		rayc__wbuf_fini(&t->dedup);
		return RAFT_NOMEM;
	}
	/* Filled in by fsm_snapshot_async. */
	out->base = NULL;
	out->len = 0;
	*bufs = out;
	*n = 1;
	t->loop_ns = rayc__now_ns() - t0;
	rayc__ctl_log_taking(net);
	return 0;
}

/* On a job's thread (the loop applies entries meanwhile): the snapshot
 * fsm_snapshot captured, written into one buffer of its exact size. */
static int fsm_snapshot_async(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                              unsigned *n)
{
	rayc__net *net = fsm->data;
	rayc__ctl *ctl = net->ctl;
	rayc__ctl_take *t = &ctl->take;
	int64_t t0 = rayc__now_ns();
	size_t total = 4 + 8 + t->members.len + 8 + t->kv.bytes + t->dedup.len;

	(void)n;
	/* A buffer with room for exactly this much never grows, so it
	 * stays raft_malloc's (that is, it never moves). */
	rayc__wbuf b = { .p = raft_malloc(total), .cap = total };
	if (b.p == NULL) {
		rayc__kv_snap_release(net->rt, &t->kv);
		return RAFT_NOMEM;
	}
	rayc__w_u32(&b, SNAP_MAGIC);
	rayc__w_u64(&b, t->members.len);
	rayc__w_bytes(&b, t->members.p, t->members.len);
	rayc__w_u64(&b, t->kv.bytes);
	bool ok = rayc__kv_snap_write(&t->kv, &b, &ctl->stop_jobs);
	rayc__w_bytes(&b, t->dedup.p, t->dedup.len);
	/* Replaced entries can go now rather than when the put is done. */
	rayc__kv_snap_release(net->rt, &t->kv);
	if (!ok || b.bad || b.len != total) {
		raft_free(b.p);
		return atomic_load(&ctl->stop_jobs) ? RAFT_CANCELED
		                                    : RAFT_NOMEM;
	}
	(*bufs)[0].base = b.p;
	(*bufs)[0].len = total;
	ctl->give = b.p;
	t->job_ns = rayc__now_ns() - t0;
	return 0;
}

/* On the loop thread, once the snapshot is stored (or failed). */
static int fsm_snapshot_finalize(struct raft_fsm *fsm,
                                 struct raft_buffer *bufs[], unsigned *n)
{
	rayc__net *net = fsm->data;
	rayc__ctl *ctl = net->ctl;
	rayc__ctl_take *t = &ctl->take;

	rayc__kv_snap_release(net->rt, &t->kv); /* if never written */
	if (*bufs != NULL) {
		if ((*bufs)[0].base != NULL) {
			rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-SNAPSHOT",
			          "took a snapshot of %zu bytes: %.1f ms on the "
			          "loop thread, %.1f ms on its own",
			          (*bufs)[0].len, (double)t->loop_ns / 1e6,
			          (double)t->job_ns / 1e6);
			/* Not kept by snapshot_put (it failed). */
			if ((*bufs)[0].base == ctl->give)
				raft_free((*bufs)[0].base);
		}
		raft_free(*bufs);
	}
	ctl->give = NULL;
	rayc__wbuf_fini(&t->members);
	rayc__wbuf_fini(&t->dedup);
	memset(t, 0, sizeof(*t));
	*bufs = NULL;
	*n = 0;
	return 0;
}

/* A snapshot's sections; false if they are not all there. */
static bool snap_split(const struct raft_buffer *buf, rayc__rd *members,
                       rayc__rd *kv, rayc__rd *dedup)
{
	rayc__rd rd;

	rayc__rd_init(&rd, buf->base, buf->len);
	if (rayc__r_u32(&rd) != SNAP_MAGIC)
		return false;
	size_t mlen = (size_t)rayc__r_u64(&rd);
	const void *m = rayc__r_bytes(&rd, mlen);
	size_t kvlen = (size_t)rayc__r_u64(&rd);
	const void *k = rayc__r_bytes(&rd, kvlen);
	if (rd.bad)
		return false;
	rayc__rd_init(members, m, mlen);
	rayc__rd_init(kv, k, kvlen);
	rayc__rd_init(dedup, rd.p + rd.off, rayc__rd_left(&rd));
	return true;
}

/* A snapshot's KV as a table of its own: RAYC_EPROTO, RAYC_ENOMEM. */
static int kv_read(const struct raft_buffer *buf, rayc__kv_table *t)
{
	rayc__rd m, k, d;

	t->h = NULL;
	t->bytes = 0;
	if (!snap_split(buf, &m, &k, &d))
		return RAYC_EPROTO;
	int rc = rayc__kv_table_read(&k, t);
	if (rc == RAYC_OK && rayc__rd_left(&k) != 0) {
		rayc__kv_table_free(t);
		rc = RAYC_EPROTO;
	}
	return rc;
}

int rayc__ctl_fsm_prepare(rayc__net *net, const struct raft_buffer *buf)
{
	rayc__ctl_prep *p = &net->ctl->prep;

	p->base = buf->base;
	p->len = buf->len;
	p->rc = kv_read(buf, &p->kv);
	p->ready = true;
	return 0;
}

void rayc__ctl_fsm_prep_drop(rayc__net *net)
{
	rayc__ctl_prep *p = &net->ctl->prep;

	if (p->ready)
		rayc__kv_table_free(&p->kv);
	memset(p, 0, sizeof(*p));
}

/* Members and dedup table decode (changing nothing). */
static bool restore_check(rayc__net *net, rayc__rd m, rayc__rd d)
{
	rayc__gone gone[RAYC__MAX_PEERS];
	int ngone = 0;

	return rayc__net_read_members(net, &m, false, gone, &ngone) == 0 &&
	       rayc__rd_left(&m) == 0 && dedup_read(net->ctl, &d, false) &&
	       rayc__rd_left(&d) == 0;
}

/* The checked snapshot replaces this peer's state; *kv gets the table
 * it replaced. */
static void restore_apply(rayc__net *net, rayc__rd m, rayc__rd d,
                          rayc__kv_table *kv)
{
	rayc__rt *rt = net->rt;
	rayc__gone gone[RAYC__MAX_PEERS];
	int ngone = 0;
	rayc__rd members = m;

	(void)rayc__net_read_members(net, &m, true, gone, &ngone);
	rayc__mutex_lock(&rt->kv_mu);
	rayc__kv_table_swap_locked(rt, kv);
	rayc__mutex_unlock(&rt->kv_mu);
	(void)dedup_read(net->ctl, &d, true);
	bool reused = false;
	for (int i = 0; i < ngone; i++) {
		(void)mark_dead(net, gone[i].id, gone[i].gen, gone[i].left,
		                gone[i].end);
		reused |= gone[i].reused;
	}
	/* Slots the snapshot gives to newer peers: now that their old
	 * holders are dead here, take the newcomers in. */
	if (reused)
		(void)rayc__net_read_members(net, &members, true, gone, &ngone);
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	rayc__net *net = fsm->data;
	rayc__ctl *ctl = net->ctl;
	rayc__ctl_prep *p = &ctl->prep;
	rayc__kv_table kv = { 0 };
	rayc__rd m, k, d;
	int rc = RAYC_EPROTO;
	int64_t t0 = rayc__now_ns();

	/* Check it all before changing anything.  The KV was read on a
	 * job's thread while the snapshot was put, unless that failed. */
	bool prepared = p->ready && p->base == buf->base && p->len == buf->len;
	if (snap_split(buf, &m, &k, &d) && restore_check(net, m, d)) {
		if (prepared) {
			rc = p->rc;
			kv = p->kv;
			memset(p, 0, sizeof(*p));
		} else {
			rc = kv_read(buf, &kv);
		}
	}
	if (rc == RAYC_EPROTO) {
		rayc__log(RAYC_LOG_ERROR, "RAYC-CTL-BAD-SNAPSHOT",
		          "a control store snapshot did not decode; refused");
		return RAFT_CORRUPT;
	}
	if (rc != RAYC_OK)
		return cannot_apply(net, "a snapshot");
	restore_apply(net, m, d, &kv);
	rayc__kv_table_release(net->rt, &kv); /* the table it replaced */
	net->ctl->n_restored++;
	rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-RESTORE",
	          "restored the control store from a snapshot (%zu bytes) "
	          "in %.1f ms on the loop thread (its KV %s)", buf->len,
	          (double)(rayc__now_ns() - t0) / 1e6,
	          prepared ? "read on its own thread" : "read here");
	rayc__ctl_snap_restored(net, buf); /* ours on success */
	rayc__ctl_log_stored(net, true);   /* the log before it is gone */
	return 0;
}

/* libraft's state machine: the functions above (run_start, before
 * raft_init). */
void rayc__ctl_fsm_setup(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	ctl->fsm.version = 3;
	ctl->fsm.data = net;
	ctl->fsm.apply = fsm_apply;
	ctl->fsm.snapshot = fsm_snapshot;
	ctl->fsm.restore = fsm_restore;
	ctl->fsm.snapshot_finalize = fsm_snapshot_finalize;
	ctl->fsm.snapshot_async = fsm_snapshot_async;
}
