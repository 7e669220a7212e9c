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
	return mark_dead(net, id, gen, left, t);
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

/* A KV write; a retry of one already applied gets its first result. */
static int apply_kv(rayc__net *net, rayc__rd *rd, bool put)
{
	char key[RAYC__KV_KEY_MAX + 1];
	size_t len = 0;
	const void *val = NULL;
	dedup_key k = { 0 };
	int rc;

	k.client = rayc__r_u32(rd);
	k.req = rayc__r_u64(rd);
	rayc__r_str(rd, key, sizeof(key));
	if (put)
		val = rayc__r_blob(rd, &len);
	if (rd->bad)
		return RAYC_EPROTO;
	if (dedup_find(net->ctl, &k, &rc))
		return rc;
	rayc__mutex_lock(&net->rt->kv_mu);
	rc = rayc__kv_apply_locked(net->rt, put ? RAYC__KV_PUT : RAYC__KV_DEL,
	                           key, val, len, NULL, NULL);
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

	rayc__rd_init(&rd, buf->base, buf->len);
	switch (rayc__r_u8(&rd)) {
	case CMD_ADD:
		rc = apply_add(net, &rd);
		break;
	case CMD_DEL:
		rc = apply_del(net, &rd);
		break;
	case CMD_KV_PUT:
		rc = apply_kv(net, &rd, true);
		break;
	case CMD_KV_DEL:
		rc = apply_kv(net, &rd, false);
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
 * Every RAYC__SNAPSHOT_ENTRIES applied entries (1024 by default) each peer
 * writes its state (members, jobs, the next id, the KV) into a snapshot and
 * raft drops the log before it (keeping a trailing half), so the log stays
 * bounded however many KV writes there are.  A peer too far behind, or one
 * that joins after the log was cut, gets the snapshot (InstallSnapshot)
 * and restores it. */

#define SNAP_MAGIC 0x324e5352u /* "RSN2" */

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[],
                        unsigned *n)
{
	rayc__net *net = fsm->data;
	rayc__rt *rt = net->rt;
	rayc__wbuf b = { 0 };

	rayc__w_u32(&b, SNAP_MAGIC);
	rayc__mutex_lock(&net->mu);
	rayc__net_write_members_locked(net, &b);
	rayc__mutex_unlock(&net->mu);
	/* The KV's own lock, not rt->mu: copying up to 128 MiB holds up
	 * only KV calls, not tasks. */
	rayc__mutex_lock(&rt->kv_mu);
	rayc__kv_write_all_locked(rt, &b);
	rayc__mutex_unlock(&rt->kv_mu);
	dedup_write(net->ctl, &b);
	struct raft_buffer *out = b.bad ? NULL : raft_malloc(sizeof(*out));
	void *data = out != NULL ? raft_malloc(b.len) : NULL;
	if (data == NULL) {
		raft_free(out);
		rayc__wbuf_fini(&b);
		return RAFT_NOMEM;
	}
	memcpy(data, b.p, b.len);
	out->base = data;
	out->len = b.len;
	rayc__wbuf_fini(&b);
	*bufs = out;
	*n = 1;
	return 0;
}

/* Reads (apply false: checks) a snapshot's members and KV. */
static bool restore_pass(rayc__net *net, const struct raft_buffer *buf,
                         bool apply)
{
	rayc__rt *rt = net->rt;
	rayc__rd rd;
	rayc__gone gone[RAYC__MAX_PEERS];
	int ngone = 0;

	rayc__rd_init(&rd, buf->base, buf->len);
	if (rayc__r_u32(&rd) != SNAP_MAGIC)
		return false;
	rayc__rd members = rd;
	if (rayc__net_read_members(net, &rd, apply, gone, &ngone) != 0)
		return false;
	rayc__mutex_lock(&rt->kv_mu);
	bool ok = rayc__kv_read_all_locked(rt, &rd, apply);
	rayc__mutex_unlock(&rt->kv_mu);
	if (!ok || !dedup_read(net->ctl, &rd, apply) || rayc__rd_left(&rd) != 0)
		return false;
	bool reused = false;
	for (int i = 0; i < ngone; i++) {
		(void)mark_dead(net, gone[i].id, gone[i].gen, gone[i].left,
		                gone[i].end);
		reused |= gone[i].reused;
	}
	/* Slots the snapshot gives to newer peers: now that their old
	 * holders are dead here, take the newcomers in. */
	if (reused && rayc__net_read_members(net, &members, true, gone,
	                                     &ngone) != 0)
		return false;
	return true;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
	rayc__net *net = fsm->data;

	/* Check it all before changing anything. */
	if (!restore_pass(net, buf, false)) {
		rayc__log(RAYC_LOG_ERROR, "RAYC-CTL-BAD-SNAPSHOT",
		          "a control store snapshot did not decode; refused");
		return RAFT_CORRUPT;
	}
	if (!restore_pass(net, buf, true))
		/* It decoded, so only memory can have run out. */
		return cannot_apply(net, "a snapshot");
	net->ctl->n_restored++;
	rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-RESTORE",
	          "restored the control store from a snapshot (%zu bytes)",
	          buf->len);
	raft_free(buf->base); /* ours on success */
	return 0;
}

/* libraft's state machine: the functions above (run_start, before
 * raft_init). */
void rayc__ctl_fsm_setup(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	ctl->fsm.version = 1;
	ctl->fsm.data = net;
	ctl->fsm.apply = fsm_apply;
	ctl->fsm.snapshot = fsm_snapshot;
	ctl->fsm.restore = fsm_restore;
}
