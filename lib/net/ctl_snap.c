/* ctl_snap.c -- the control store's snapshots in libraft's I/O backend
 * (ctl_io.c): the last one stored (snapshot_put), handed to raft to send
 * (snapshot_get) and sent (InstallSnapshot) from where it is, and one
 * sent by the leader installed.
 *
 * A snapshot holds the whole KV, up to 128 MiB, and every copy of that on
 * the loop thread (~0.4 s on a VM where first touches cost ~0.3 GB/s)
 * holds up heartbeats and Raft's messages.  So none is made there:
 *
 *  - One this peer took (ctl_fsm.c writes it on a job's thread) is kept
 *    as it is: its buffer (ctl->give) becomes the stored data.
 *  - The stored data is counted (sdata): a connection sending it to a
 *    peer behind (InstallSnapshot) holds it, from where it is, until the
 *    last byte is out, even if a newer snapshot replaced it meanwhile.
 *    raft only carries a snapshot from snapshot_get to send, so the one
 *    snapshot_get hands it has no data: io_send sends the stored data of
 *    that index and term instead (or fails, and raft sends the newer one
 *    next time), queued (and tagged) on a job's thread.
 *  - One sent by the leader (put with trailing 0) is noted, its KV read
 *    back on a job's thread (rayc__ctl_fsm_prepare) while the put is
 *    under way; fsm_restore then takes it, and its data becomes the
 *    stored data (rayc__ctl_snap_restored).
 */
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "net/ctl_int.h"
#include "testing.h"

struct rayc__ctl_sdata {
	_Atomic unsigned refs;
	void *base; /* raft_malloc'd */
	size_t len;
};

static rayc__ctl_sdata *sdata_new(void *base, size_t len)
{
	rayc__ctl_sdata *d = malloc(sizeof(*d));

	if (d == NULL)
		return NULL;
	atomic_init(&d->refs, 1);
	d->base = base;
	d->len = len;
	return d;
}

/* Any thread: the last holder frees it. */
static void sdata_unref(rayc__ctl_sdata *d)
{
	if (atomic_fetch_sub(&d->refs, 1) == 1) {
		raft_free(d->base);
		free(d);
	}
}

static int conf_copy(const struct raft_configuration *src,
                     struct raft_configuration *dst)
{
	raft_configuration_init(dst);
	for (unsigned i = 0; i < src->n; i++) {
		int rv = raft_configuration_add(dst, src->servers[i].id,
		                                src->servers[i].address,
		                                src->servers[i].role);
		if (rv != 0) {
			raft_configuration_close(dst);
			return rv;
		}
	}
	return 0;
}

/* A snapshot's description (index, term, its own copy of the
 * configuration), without buffers. */
static int snap_desc(const struct raft_snapshot *src, struct raft_snapshot *dst)
{
	memset(dst, 0, sizeof(*dst));
	if (conf_copy(&src->configuration, &dst->configuration) != 0)
		return RAFT_NOMEM;
	dst->index = src->index;
	dst->term = src->term;
	dst->configuration_index = src->configuration_index;
	return 0;
}

/* The snapshot stored now: desc (no buffers) and data. */
static void snap_store(rayc__ctl *ctl, struct raft_snapshot *desc,
                       rayc__ctl_sdata *data)
{
	rayc__ctl_snap_drop(ctl);
	ctl->snap = *desc;
	ctl->sdata = data;
	ctl->has_snap = true;
	ctl->n_snapshots++;
}

void rayc__ctl_snap_drop(rayc__ctl *ctl)
{
	if (!ctl->has_snap)
		return;
	raft_configuration_close(&ctl->snap.configuration);
	sdata_unref(ctl->sdata);
	ctl->sdata = NULL;
	ctl->has_snap = false;
}

/* A snapshot this peer took, with its buffers joined into one copy
 * (only if it is not the one written for this: see ctl->give). */
static rayc__ctl_sdata *data_copy(const struct raft_snapshot *s)
{
	size_t len = 0, off = 0;

	for (unsigned i = 0; i < s->n_bufs; i++)
		len += s->bufs[i].len;
	void *p = raft_malloc(len > 0 ? len : 1);
	rayc__ctl_sdata *d = p != NULL ? sdata_new(p, len) : NULL;
	if (d == NULL) {
		raft_free(p);
		return NULL;
	}
	for (unsigned i = 0; i < s->n_bufs; i++) {
		memcpy((uint8_t *)p + off, s->bufs[i].base, s->bufs[i].len);
		off += s->bufs[i].len;
	}
	return d;
}

/* ---- installing a snapshot from the leader ---- */

typedef struct inst_put {
	rayc__ctl_work post; /* without a job */
	struct raft_io_snapshot_put *req;
	struct raft_buffer data;
	struct raft_buffer *bufs; /* raft's array holding data */
} inst_put;

/* Tests only (rayc__test_hold_installs): the job holds an install until
 * the store closes. */
static _Atomic bool hold_installs;
static _Atomic uint64_t installs_held;

void rayc__test_hold_installs(bool hold)
{
	atomic_store(&hold_installs, hold);
}

uint64_t rayc__test_installs_held(void)
{
	return atomic_load(&installs_held);
}

static int inst_work(rayc__net *net, void *arg)
{
	inst_put *ip = arg;

	return rayc__ctl_fsm_prepare(net, &ip->data);
}

/* On the job's thread. */
static int inst_job(rayc__net *net, void *arg)
{
	if (atomic_load(&hold_installs)) {
		atomic_fetch_add(&installs_held, 1);
		while (!atomic_load(&net->ctl->stop_jobs))
			rayc__sleep_ms(1);
	}
	return inst_work(net, arg);
}

static void inst_drop(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	if (ctl->has_inst)
		raft_configuration_close(&ctl->inst.configuration);
	ctl->has_inst = false;
	rayc__ctl_fsm_prep_drop(net);
}

/* libraft before 0.17.1 (which brought RAFT_VERSION_NUMBER too) lets go
 * of an installed snapshot's array of buffers (one, 16 bytes) only when
 * the restore succeeds: a put that fails or is cancelled (closing), or a
 * restore that fails, drops the data and the configuration and leaks
 * the array (src/replication.c, installSnapshotCb; fixed in
 * canonical/raft 2a38d3d).  So then it is freed here, once the callback
 * has run: LeakSanitizer saw it when a peer stopped mid-install. */
#ifdef RAFT_VERSION_NUMBER
#define RAYC__RAFT_LEAKS_INST_BUFS 0
#else
#define RAYC__RAFT_LEAKS_INST_BUFS 1
#endif

static void inst_done(rayc__net *net, void *arg, int status)
{
	rayc__ctl *ctl = net->ctl;
	inst_put *ip = arg;
	struct raft_io_snapshot_put *req = ip->req;
	struct raft_buffer *bufs = ip->bufs;
	uint64_t restored = ctl->n_restored; /* fsm_restore succeeded */

	free(ip);
	if (ctl->closing)
		status = RAFT_CANCELED;
	if (req->cb != NULL) {
		req->cb(req, status); /* restores it (or drops it) */
		if (RAYC__RAFT_LEAKS_INST_BUFS && ctl->n_restored == restored)
			raft_free(bufs);
	}
	inst_drop(net); /* what the restore did not take */
}

static void inst_posted(rayc__net *net, void *arg)
{
	inst_done(net, arg, 0);
}

static int inst_start(rayc__net *net, struct raft_io_snapshot_put *req,
                      const struct raft_snapshot *snapshot,
                      raft_io_snapshot_put_cb cb)
{
	rayc__ctl *ctl = net->ctl;

	if (snapshot->n_bufs != 1)
		return RAFT_INVALID; /* raft sends one */
	inst_drop(net);
	inst_put *ip = malloc(sizeof(*ip));
	if (ip == NULL || snap_desc(snapshot, &ctl->inst) != 0) {
		free(ip);
		return RAFT_NOMEM;
	}
	ctl->inst_base = snapshot->bufs[0].base;
	ctl->has_inst = true;
	ip->req = req;
	ip->data = snapshot->bufs[0];
	ip->bufs = snapshot->bufs;
	req->cb = cb;
	if (rayc__ctl_job_start(net, inst_job, inst_done, ip) != 0) {
		/* No thread: read it here (done never runs inside the
		 * put). */
		(void)inst_work(net, ip);
		rayc__ctl_post(net, &ip->post, inst_posted, ip);
	}
	return 0;
}

void rayc__ctl_snap_restored(rayc__net *net, struct raft_buffer *buf)
{
	rayc__ctl *ctl = net->ctl;
	rayc__ctl_sdata *d = NULL;

	if (ctl->has_inst && ctl->inst_base == buf->base &&
	    (d = sdata_new(buf->base, buf->len)) != NULL) {
		ctl->has_inst = false;
		snap_store(ctl, &ctl->inst, d);
		return;
	}
	raft_free(buf->base); /* the last one stored stays */
}

/* ---- raft_io: storing, getting, sending ---- */

/* Keeps the snapshot (raft lets go of its own when done); raft then
 * drops the log before it itself. */
int rayc__ctl_io_snapshot_put(struct raft_io *io, unsigned trailing,
                              struct raft_io_snapshot_put *req,
                              const struct raft_snapshot *snapshot,
                              raft_io_snapshot_put_cb cb)
{
	rayc__net *net = io->impl;
	rayc__ctl *ctl = net->ctl;
	struct raft_snapshot desc;
	rayc__ctl_sdata *d;

	if (trailing == 0) /* from the leader: replaces everything */
		return inst_start(net, req, snapshot, cb);
	if (snap_desc(snapshot, &desc) != 0)
		return RAFT_NOMEM;
	if (snapshot->n_bufs == 1 && ctl->give != NULL &&
	    snapshot->bufs[0].base == ctl->give)
		d = sdata_new(ctl->give, snapshot->bufs[0].len);
	else
		d = data_copy(snapshot);
	if (d == NULL) {
		raft_configuration_close(&desc.configuration);
		return RAFT_NOMEM;
	}
	if (d->base == ctl->give)
		ctl->give = NULL; /* ours now: finalize leaves it */
	snap_store(ctl, &desc, d);
	rayc__ctl_log_stored(net, false);
	req->cb = cb;
	return rayc__ctl_post_done(net, RAYC__DONE_SNAP_PUT, req, 0, NULL);
}

static void got_free(struct raft_snapshot *s)
{
	raft_configuration_close(&s->configuration);
	raft_free(s->bufs);
	raft_free(s);
}

/* The stored snapshot without its data, which io_send puts back. */
int rayc__ctl_io_snapshot_get(struct raft_io *io,
                              struct raft_io_snapshot_get *req,
                              raft_io_snapshot_get_cb cb)
{
	rayc__net *net = io->impl;
	rayc__ctl *ctl = net->ctl;

	if (!ctl->has_snap)
		return RAFT_NOTFOUND;
	struct raft_snapshot *s = raft_malloc(sizeof(*s));
	if (s == NULL)
		return RAFT_NOMEM;
	if (snap_desc(&ctl->snap, s) != 0) {
		raft_free(s);
		return RAFT_NOMEM;
	}
	s->bufs = raft_malloc(sizeof(*s->bufs));
	if (s->bufs == NULL) {
		got_free(s);
		return RAFT_NOMEM;
	}
	s->bufs[0].base = NULL;
	s->bufs[0].len = 0;
	s->n_bufs = 1;
	req->cb = cb;
	if (rayc__ctl_post_done(net, RAYC__DONE_SNAP_GET, req, 0, s) != 0) {
		got_free(s);
		return RAFT_NOMEM;
	}
	return 0;
}

/* A connection sending stored data holds it. */
typedef struct snap_xout {
	rayc__xout x;
	rayc__ctl_sdata *d;
} snap_xout;

static void snap_xout_release(rayc__xout *x)
{
	snap_xout *sx = (snap_xout *)x;

	sdata_unref(sx->d);
	free(sx);
}

/* InstallSnapshot being sent: the frame up to its data, built on the
 * loop (raft's message lives only for the call); queueing it, with its
 * tag over up to 128 MiB, is a job's. */
typedef struct snap_send {
	struct raft_io_send *req;
	rayc__ctl_sdata *d; /* held */
	uint32_t to;
	rayc__wbuf b;
} snap_send;

static int send_work(rayc__net *net, void *arg)
{
	snap_send *ss = arg;
	rayc__ctl_sdata *d = ss->d;

	rayc__conn *c = rayc__net_conn_to(net, ss->to);
	if (c == NULL)
		return RAFT_NOCONNECTION;
	snap_xout *sx = calloc(1, sizeof(*sx));
	int rv = 0;
	if (sx == NULL) {
		rv = RAFT_NOMEM;
	} else {
		sx->x.release = snap_xout_release;
		sx->d = d;
		atomic_fetch_add(&d->refs, 1);
		if (!rayc__conn_send_ext(c, &ss->b, d->base, d->len, &sx->x)) {
			atomic_fetch_sub(&d->refs, 1); /* ss's stays */
			free(sx);
			rv = RAFT_NOCONNECTION;
		}
	}
	rayc__conn_unref(c);
	return rv;
}

static void send_end(snap_send *ss)
{
	sdata_unref(ss->d);
	rayc__wbuf_fini(&ss->b);
	free(ss);
}

static void send_done(rayc__net *net, void *arg, int status)
{
	snap_send *ss = arg;
	struct raft_io_send *req = ss->req;

	send_end(ss);
	if (req->cb != NULL)
		req->cb(req, net->ctl->closing ? RAFT_CANCELED : status);
}

int rayc__ctl_snap_send(rayc__net *net, struct raft_io_send *req,
                        const struct raft_message *m)
{
	rayc__ctl *ctl = net->ctl;
	const struct raft_install_snapshot *a = &m->install_snapshot;

	if (!ctl->has_snap || ctl->snap.index != a->last_index ||
	    ctl->snap.term != a->last_term)
		return RAFT_NOCONNECTION; /* replaced: raft sends that next */
	if (m->server_id == 0 || m->server_id >= RAYC__MAX_PEERS)
		return RAFT_NOCONNECTION;
	snap_send *ss = calloc(1, sizeof(*ss));
	if (ss == NULL)
		return RAFT_NOMEM;
	ss->req = req;
	ss->d = ctl->sdata;
	atomic_fetch_add(&ss->d->refs, 1);
	ss->to = (uint32_t)m->server_id;
	if (!rayc__ctl_encode_snapshot_head(&ss->b, net->self, m,
	                                    ss->d->len)) {
		send_end(ss);
		return RAFT_NOMEM;
	}
	int rv = rayc__ctl_job_start(net, send_work, send_done, ss);
	if (rv != 0)
		send_end(ss);
	return rv;
}
