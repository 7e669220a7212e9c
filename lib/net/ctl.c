/* ctl.c -- the control store: membership, resource totals, the job table
 * and the user KV, replicated with Raft (libraft) among up to 5 voter
 * peers.  The Raft leader is the coordinator.
 *
 * Raft runs on the mesh's event-loop thread, over the mesh itself: this
 * file is libraft's I/O backend (struct raft_io).  Raft messages travel
 * as RAFT frames on the same authenticated connections as everything
 * else, so the control plane needs no second port, no second transport
 * and no second trust model.  The log lives in memory only: a peer that
 * dies never comes back under the same id (a restarted process joins as
 * a new peer), so losing its log is the same as losing the server, which
 * Raft tolerates while a majority of voters lives; the leader removes
 * the dead voter and promotes a standby.
 *
 * Threads.  Only the loop thread touches struct raft.  Other threads
 * (NNG's completion threads, API callers) hand work over with
 * rayc__ctl_post, a locked FIFO drained by a libevent event.  Raft's
 * I/O callbacks (send and append done) are also posted, so they never
 * run inside the raft call that started them.
 *
 * Only committed state is acted on: a peer is a member, is dead, has a
 * KV key, when the entry saying so is applied (fsm_apply), on every peer
 * in log order.  Every peer is in the Raft configuration (voters, then
 * standbys, which replicate the log without voting), so every peer holds
 * the whole committed view.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <raft.h>
#include <sodium.h>

#include "net/net_int.h"
#include "testing.h"

#define CTL_MAX_VOTERS 5
#define RAFT_MSG_CAP ((size_t)64 << 20) /* log bytes in one AppendEntries */

enum { CMD_ADD = 1, CMD_DEL, CMD_KV_PUT, CMD_KV_DEL };

/* KV writes applied, by (client peer, request id): a write retried after
 * the coordinator died is answered with its first result instead of being
 * applied twice (Raft dissertation, 6.3).  The newest DEDUP_MAX are kept,
 * dropped oldest first in log order, so every peer keeps the same ones. */
#define DEDUP_MAX 4096

typedef struct dedup_key {
	uint64_t req;
	uint32_t client, pad;
} dedup_key;

typedef struct dedup {
	dedup_key k;
	int rc;
	UT_hash_handle hh;
} dedup;

typedef struct work {
	void (*fn)(rayc__net *net, void *arg);
	void *arg;
	struct work *next;
} work;

struct rayc__ctl {
	rayc__net *net;
	struct raft raft;
	struct raft_io io;
	struct raft_fsm fsm;
	bool inited, started, closing, close_called;
	struct event *wake, *rtick;
	raft_io_tick_cb tick_cb;
	raft_io_recv_cb recv_cb;
	raft_io_close_cb io_close_cb;
	/* "Persistent" state, kept only for load() after bootstrap. */
	struct raft_buffer boot;
	raft_term term;
	raft_id vote;
	/* The last snapshot stored (snapshot_put), for snapshot_get. */
	bool has_snap;
	struct raft_snapshot snap; /* one buffer */
	_Atomic uint64_t n_snapshots, n_restored;
	/* Applied KV writes (loop thread only). */
	dedup *seen;
	dedup *ring[DEDUP_MAX]; /* oldest at ring_head */
	unsigned ring_head, ring_n;
	/* Posted work. */
	rayc__mutex mu;
	work *head, *tail;
	bool inline_posts; /* the loop is gone: run posted work at once */
	/* Leader duties. */
	struct raft_change change;
	bool changing;
	struct raft_transfer transfer;
	_Atomic bool no_transfer;
	bool handing_over; /* leaving as the coordinator */
	raft_id handover_to; /* 0: any live peer */
	/* A new leader's state may trail what its predecessor committed and
	 * answered: it answers reads and admits peers only once a barrier
	 * of its own term is applied. */
	struct raft_barrier barrier;
	bool barrier_pending, ready;
	rayc__event closed_ev;
};

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- posting work to the loop thread ---- */

void rayc__ctl_post(rayc__net *net, void (*fn)(rayc__net *, void *),
                    void *arg)
{
	rayc__ctl *ctl = net->ctl;
	work *w = malloc(sizeof(*w));

	if (w == NULL) {
		/* Dropping control work is not safe to ignore silently. */
		rayc__log(RAYC_LOG_ERROR, "RAYC-CTL-NOMEM",
		          "out of memory posting control work; dropped");
		fn(net, NULL);
		return;
	}
	w->fn = fn;
	w->arg = arg;
	w->next = NULL;
	rayc__mutex_lock(&ctl->mu);
	if (ctl->inline_posts) {
		/* Shutting down, raft closed: the work only cleans up. */
		rayc__mutex_unlock(&ctl->mu);
		free(w);
		fn(net, arg);
		return;
	}
	if (ctl->tail != NULL)
		ctl->tail->next = w;
	else
		ctl->head = w;
	ctl->tail = w;
	rayc__mutex_unlock(&ctl->mu);
	event_active(ctl->wake, EV_READ, 0);
}

static void after(rayc__net *net);

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	rayc__net *net = arg;
	rayc__ctl *ctl = net->ctl;

	(void)fd;
	(void)what;
	for (;;) {
		rayc__mutex_lock(&ctl->mu);
		work *w = ctl->head;
		ctl->head = ctl->tail = NULL;
		rayc__mutex_unlock(&ctl->mu);
		if (w == NULL)
			break;
		while (w != NULL) {
			work *n = w->next;
			w->fn(net, w->arg);
			free(w);
			w = n;
		}
	}
	after(net);
}

/* ---- raft_io over the mesh ---- */

/* A raft I/O request completed, its callback to run on the loop. */
enum { DONE_SEND, DONE_APPEND, DONE_CLOSE, DONE_SNAP_PUT, DONE_SNAP_GET };

typedef struct done_arg {
	int kind;
	void *req;
	int status;
	struct raft_snapshot *snap; /* DONE_SNAP_GET */
} done_arg;

static void run_done(rayc__net *net, void *arg)
{
	done_arg *d = arg;
	rayc__ctl *ctl = net->ctl;

	if (d == NULL)
		return;
	/* A send cancelled by close is fine to report; an append never
	 * fails (there is no disk), and libraft 0.15's leader append
	 * callback walks leader state that raft_close has already torn down
	 * when given an error, so appends always succeed. */
	int st = ctl->closing && d->kind == DONE_SEND ? RAFT_CANCELED
	                                              : d->status;
	if (d->kind == DONE_SEND) {
		struct raft_io_send *r = d->req;
		if (r->cb != NULL)
			r->cb(r, st);
	} else if (d->kind == DONE_APPEND) {
		struct raft_io_append *r = d->req;
		if (r->cb != NULL)
			r->cb(r, st);
	} else if (d->kind == DONE_SNAP_PUT) {
		struct raft_io_snapshot_put *r = d->req;
		if (r->cb != NULL)
			r->cb(r, st);
	} else if (d->kind == DONE_SNAP_GET) {
		struct raft_io_snapshot_get *r = d->req;
		if (r->cb != NULL)
			r->cb(r, d->snap, st);
	} else if (ctl->io_close_cb != NULL) {
		raft_io_close_cb cb = ctl->io_close_cb;
		ctl->io_close_cb = NULL;
		cb(&ctl->io);
	}
	free(d);
}

static int post_done(rayc__net *net, int kind, void *req, int status,
                     struct raft_snapshot *snap)
{
	done_arg *d = malloc(sizeof(*d));

	if (d == NULL)
		return RAFT_NOMEM;
	d->kind = kind;
	d->req = req;
	d->status = status;
	d->snap = snap;
	rayc__ctl_post(net, run_done, d);
	return 0;
}

static int io_init(struct raft_io *io, raft_id id, const char *address)
{
	(void)io;
	(void)id;
	(void)address;
	return 0;
}

static void io_close(struct raft_io *io, raft_io_close_cb cb)
{
	rayc__net *net = io->impl;
	rayc__ctl *ctl = net->ctl;

	if (ctl->rtick != NULL)
		event_del(ctl->rtick);
	ctl->io_close_cb = cb;
	if (post_done(net, DONE_CLOSE, NULL, 0, NULL) != 0 && cb != NULL) {
		ctl->io_close_cb = NULL;
		cb(io);
	}
}

static int io_load(struct raft_io *io, raft_term *term, raft_id *voted_for,
                   struct raft_snapshot **snapshot, raft_index *start_index,
                   struct raft_entry **entries, size_t *n_entries)
{
	rayc__net *net = io->impl;
	rayc__ctl *ctl = net->ctl;

	*term = ctl->term;
	*voted_for = ctl->vote;
	*snapshot = NULL;
	*start_index = 1;
	*entries = NULL;
	*n_entries = 0;
	if (ctl->boot.base == NULL)
		return 0;
	struct raft_entry *e = raft_malloc(sizeof(*e));
	void *buf = raft_malloc(ctl->boot.len);
	if (e == NULL || buf == NULL) {
		raft_free(e);
		raft_free(buf);
		return RAFT_NOMEM;
	}
	memcpy(buf, ctl->boot.base, ctl->boot.len);
	e->term = 1;
	e->type = RAFT_CHANGE;
	e->buf.base = buf;
	e->buf.len = ctl->boot.len;
	e->batch = buf;
	*entries = e;
	*n_entries = 1;
	return 0;
}

static void on_rtick(evutil_socket_t fd, short what, void *arg)
{
	rayc__net *net = arg;
	rayc__ctl *ctl = net->ctl;

	(void)fd;
	(void)what;
	if (ctl->tick_cb != NULL && !ctl->closing)
		ctl->tick_cb(&ctl->io);
	after(net);
}

static int io_start(struct raft_io *io, unsigned msecs, raft_io_tick_cb tick,
                    raft_io_recv_cb recv)
{
	rayc__net *net = io->impl;
	rayc__ctl *ctl = net->ctl;
	struct timeval tv = { (time_t)(msecs / 1000),
		              (suseconds_t)(msecs % 1000) * 1000 };

	ctl->tick_cb = tick;
	ctl->recv_cb = recv;
	ctl->rtick = event_new(net->base, -1, EV_PERSIST, on_rtick, net);
	if (ctl->rtick == NULL || event_add(ctl->rtick, &tv) != 0)
		return RAFT_NOMEM;
	return 0;
}

static int io_bootstrap(struct raft_io *io, const struct raft_configuration *conf)
{
	rayc__net *net = io->impl;
	rayc__ctl *ctl = net->ctl;

	if (ctl->term != 0)
		return RAFT_CANTBOOTSTRAP;
	int rv = raft_configuration_encode(conf, &ctl->boot);
	if (rv != 0)
		return rv;
	ctl->term = 1;
	return 0;
}

static int io_recover(struct raft_io *io, const struct raft_configuration *conf)
{
	(void)io;
	(void)conf;
	return RAFT_NOTFOUND;
}

static int io_set_term(struct raft_io *io, raft_term term)
{
	rayc__net *net = io->impl;

	net->ctl->term = term;
	net->ctl->vote = 0;
	return 0;
}

static int io_set_vote(struct raft_io *io, raft_id id)
{
	rayc__net *net = io->impl;

	net->ctl->vote = id;
	return 0;
}

/* A raft message as a RAFT frame. */
static bool encode_msg(rayc__wbuf *b, uint32_t self,
                       const struct raft_message *m)
{
	size_t f = rayc__w_frame_begin(b, RAYC__MSG_RAFT, self);

	rayc__w_u8(b, (uint8_t)m->type);
	switch (m->type) {
	case RAFT_IO_REQUEST_VOTE: {
		const struct raft_request_vote *a = &m->request_vote;
		rayc__w_u64(b, a->term);
		rayc__w_u64(b, a->candidate_id);
		rayc__w_u64(b, a->last_log_index);
		rayc__w_u64(b, a->last_log_term);
		rayc__w_u8(b, a->disrupt_leader);
		rayc__w_u8(b, a->pre_vote);
		break;
	}
	case RAFT_IO_REQUEST_VOTE_RESULT: {
		const struct raft_request_vote_result *a =
			&m->request_vote_result;
		rayc__w_u64(b, a->term);
		rayc__w_u8(b, a->vote_granted);
		rayc__w_u8(b, (uint8_t)a->pre_vote);
		break;
	}
	case RAFT_IO_APPEND_ENTRIES: {
		const struct raft_append_entries *a = &m->append_entries;
		/* raft sends a lagging peer everything it lacks in one
		 * message; send the first 64 MiB of it (at least one
		 * entry).  The follower answers how far it got, and the
		 * leader sends on from there. */
		unsigned n = 0;
		size_t bytes = 0;
		while (n < a->n_entries &&
		       (n == 0 || bytes + a->entries[n].buf.len <= RAFT_MSG_CAP))
			bytes += a->entries[n++].buf.len;
		rayc__w_u64(b, a->term);
		rayc__w_u64(b, a->prev_log_index);
		rayc__w_u64(b, a->prev_log_term);
		rayc__w_u64(b, a->leader_commit);
		rayc__w_u32(b, n);
		for (unsigned i = 0; i < n; i++) {
			rayc__w_u64(b, a->entries[i].term);
			rayc__w_u8(b, (uint8_t)a->entries[i].type);
			rayc__w_blob(b, a->entries[i].buf.base,
			             a->entries[i].buf.len);
		}
		break;
	}
	case RAFT_IO_APPEND_ENTRIES_RESULT: {
		const struct raft_append_entries_result *a =
			&m->append_entries_result;
		rayc__w_u64(b, a->term);
		rayc__w_u64(b, a->rejected);
		rayc__w_u64(b, a->last_log_index);
		break;
	}
	case RAFT_IO_TIMEOUT_NOW: {
		const struct raft_timeout_now *a = &m->timeout_now;
		rayc__w_u64(b, a->term);
		rayc__w_u64(b, a->last_log_index);
		rayc__w_u64(b, a->last_log_term);
		break;
	}
	case RAFT_IO_INSTALL_SNAPSHOT: {
		const struct raft_install_snapshot *a = &m->install_snapshot;
		rayc__w_u64(b, a->term);
		rayc__w_u64(b, a->last_index);
		rayc__w_u64(b, a->last_term);
		rayc__w_u64(b, a->conf_index);
		rayc__w_u32(b, a->conf.n);
		for (unsigned i = 0; i < a->conf.n; i++) {
			rayc__w_u64(b, a->conf.servers[i].id);
			rayc__w_u8(b, (uint8_t)a->conf.servers[i].role);
			rayc__w_str(b, a->conf.servers[i].address);
		}
		rayc__w_blob(b, a->data.base, a->data.len);
		break;
	}
	default:
		return false;
	}
	rayc__w_frame_end(b, f);
	return !b->bad;
}

static int io_send(struct raft_io *io, struct raft_io_send *req,
                   const struct raft_message *m, raft_io_send_cb cb)
{
	rayc__net *net = io->impl;
	rayc__wbuf b = { 0 };
	int status = 0;

	req->cb = cb;
	if (!encode_msg(&b, net->self, m)) {
		status = RAFT_IOERR;
	} else {
		rayc__conn *c = m->server_id < RAYC__MAX_PEERS
		                        ? rayc__net_conn_to(net,
		                                            (uint32_t)m->server_id)
		                        : NULL;
		if (c == NULL) {
			status = RAFT_NOCONNECTION;
		} else {
			rayc__conn_send(c, &b);
			rayc__conn_unref(c);
		}
	}
	rayc__wbuf_fini(&b);
	return post_done(net, DONE_SEND, req, status, NULL);
}

static int io_append(struct raft_io *io, struct raft_io_append *req,
                     const struct raft_entry entries[], unsigned n,
                     raft_io_append_cb cb)
{
	(void)entries;
	(void)n;
	req->cb = cb;
	/* Raft keeps every entry in its own in-memory log; nothing else
	 * would ever read a copy (see the top of this file). */
	return post_done(io->impl, DONE_APPEND, req, 0, NULL);
}

static int io_truncate(struct raft_io *io, raft_index index)
{
	(void)io;
	(void)index;
	return 0;
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

/* A snapshot with its buffers joined into one, and its own copy of the
 * configuration; every piece from raft's allocator, as raft frees it. */
static int snap_copy(const struct raft_snapshot *src, struct raft_snapshot *dst)
{
	size_t len = 0, off = 0;

	memset(dst, 0, sizeof(*dst));
	for (unsigned i = 0; i < src->n_bufs; i++)
		len += src->bufs[i].len;
	dst->bufs = raft_malloc(sizeof(*dst->bufs));
	void *data = raft_malloc(len > 0 ? len : 1);
	if (dst->bufs == NULL || data == NULL ||
	    conf_copy(&src->configuration, &dst->configuration) != 0) {
		raft_free(dst->bufs);
		raft_free(data);
		return RAFT_NOMEM;
	}
	for (unsigned i = 0; i < src->n_bufs; i++) {
		memcpy((uint8_t *)data + off, src->bufs[i].base,
		       src->bufs[i].len);
		off += src->bufs[i].len;
	}
	dst->index = src->index;
	dst->term = src->term;
	dst->configuration_index = src->configuration_index;
	dst->bufs[0].base = data;
	dst->bufs[0].len = len;
	dst->n_bufs = 1;
	return 0;
}

static void snap_free(struct raft_snapshot *s)
{
	raft_configuration_close(&s->configuration);
	raft_free(s->bufs[0].base);
	raft_free(s->bufs);
}

/* Keeps a copy of the snapshot (raft frees its own when done); raft then
 * drops the log before it itself. */
static int io_snapshot_put(struct raft_io *io, unsigned trailing,
                           struct raft_io_snapshot_put *req,
                           const struct raft_snapshot *snapshot,
                           raft_io_snapshot_put_cb cb)
{
	rayc__net *net = io->impl;
	rayc__ctl *ctl = net->ctl;
	struct raft_snapshot s;

	(void)trailing;
	if (snap_copy(snapshot, &s) != 0)
		return RAFT_NOMEM;
	if (ctl->has_snap)
		snap_free(&ctl->snap);
	ctl->snap = s;
	ctl->has_snap = true;
	ctl->n_snapshots++;
	req->cb = cb;
	return post_done(net, DONE_SNAP_PUT, req, 0, NULL);
}

static int io_snapshot_get(struct raft_io *io, struct raft_io_snapshot_get *req,
                           raft_io_snapshot_get_cb cb)
{
	rayc__net *net = io->impl;
	rayc__ctl *ctl = net->ctl;

	if (!ctl->has_snap)
		return RAFT_NOTFOUND;
	struct raft_snapshot *s = raft_malloc(sizeof(*s));
	if (s == NULL || snap_copy(&ctl->snap, s) != 0) {
		raft_free(s);
		return RAFT_NOMEM;
	}
	req->cb = cb;
	if (post_done(net, DONE_SNAP_GET, req, 0, s) != 0) {
		snap_free(s);
		raft_free(s);
		return RAFT_NOMEM;
	}
	return 0;
}

static raft_time io_time(struct raft_io *io)
{
	(void)io;
	return (raft_time)(rayc__now_ns() / 1000000);
}

static int io_random(struct raft_io *io, int min, int max)
{
	(void)io;
	if (max <= min)
		return min;
	return min + (int)randombytes_uniform((uint32_t)(max - min));
}

/* ---- receiving raft messages ---- */

typedef struct rmsg {
	struct raft_message m;
} rmsg;

static void free_msg(struct raft_message *m)
{
	if (m->type == RAFT_IO_APPEND_ENTRIES &&
	    m->append_entries.entries != NULL) {
		if (m->append_entries.n_entries > 0)
			raft_free(m->append_entries.entries[0].batch);
		raft_free(m->append_entries.entries);
	}
	if (m->type == RAFT_IO_INSTALL_SNAPSHOT) {
		raft_configuration_close(&m->install_snapshot.conf);
		raft_free(m->install_snapshot.data.base);
		m->install_snapshot.data.base = NULL;
	}
}

/* InstallSnapshot's configuration and data (raft owns both after). */
static bool decode_snapshot(rayc__rd *rd, struct raft_install_snapshot *a)
{
	raft_configuration_init(&a->conf);
	a->data.base = NULL;
	a->data.len = 0;
	a->term = rayc__r_u64(rd);
	a->last_index = rayc__r_u64(rd);
	a->last_term = rayc__r_u64(rd);
	a->conf_index = rayc__r_u64(rd);
	uint32_t n = rayc__r_u32(rd);
	if (rd->bad || n > RAYC__MAX_PEERS)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		char addr[RAYC__URL_MAX];
		uint64_t id = rayc__r_u64(rd);
		int role = rayc__r_u8(rd);
		rayc__r_str(rd, addr, sizeof(addr));
		if (rd->bad || id == 0 || role > RAFT_SPARE ||
		    raft_configuration_add(&a->conf, id, addr, role) != 0)
			return false;
	}
	size_t len;
	const void *p = rayc__r_blob(rd, &len);
	if (rd->bad || (a->data.base = raft_malloc(len > 0 ? len : 1)) == NULL)
		return false;
	if (len > 0)
		memcpy(a->data.base, p, len);
	a->data.len = len;
	return true;
}

static void run_recv(rayc__net *net, void *arg)
{
	rmsg *r = arg;
	rayc__ctl *ctl = net->ctl;

	if (r == NULL)
		return;
	if (ctl->started && !ctl->closing && ctl->recv_cb != NULL) {
		/* raft owns the entries from here on. */
		ctl->recv_cb(&ctl->io, &r->m);
	} else {
		free_msg(&r->m);
	}
	free(r);
}

/* Decodes AppendEntries' entries into one raft_malloc'd batch (raft
 * frees entries[0].batch and the array). */
static bool decode_entries(rayc__rd *rd, struct raft_append_entries *a)
{
	uint32_t n = rayc__r_u32(rd);
	size_t start = rd->off, total = 0;

	a->entries = NULL;
	a->n_entries = 0;
	if (rd->bad || n > rayc__rd_left(rd) / 17)
		return false;
	if (n == 0)
		return true;
	for (uint32_t i = 0; i < n; i++) {
		size_t len;
		(void)rayc__r_u64(rd);
		(void)rayc__r_u8(rd);
		(void)rayc__r_blob(rd, &len);
		if (rd->bad)
			return false;
		total += len;
	}
	struct raft_entry *es = raft_calloc(n, sizeof(*es));
	uint8_t *batch = raft_malloc(total > 0 ? total : 1);
	if (es == NULL || batch == NULL) {
		raft_free(es);
		raft_free(batch);
		return false;
	}
	rd->off = start;
	size_t off = 0;
	for (uint32_t i = 0; i < n; i++) {
		size_t len;
		es[i].term = rayc__r_u64(rd);
		es[i].type = rayc__r_u8(rd);
		const void *p = rayc__r_blob(rd, &len);
		if (len > 0)
			memcpy(batch + off, p, len);
		es[i].buf.base = batch + off;
		es[i].buf.len = len;
		es[i].batch = batch;
		off += len;
	}
	a->entries = es;
	a->n_entries = n;
	return true;
}

void rayc__ctl_on_raft(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;
	rmsg *r = calloc(1, sizeof(*r));

	if (r == NULL)
		return;
	struct raft_message *m = &r->m;
	m->type = rayc__r_u8(rd);
	m->server_id = c->peer;
	m->server_address = net->peers[c->peer].url;
	bool ok = true;
	switch (m->type) {
	case RAFT_IO_REQUEST_VOTE: {
		struct raft_request_vote *a = &m->request_vote;
		a->term = rayc__r_u64(rd);
		a->candidate_id = rayc__r_u64(rd);
		a->last_log_index = rayc__r_u64(rd);
		a->last_log_term = rayc__r_u64(rd);
		a->disrupt_leader = rayc__r_u8(rd) != 0;
		a->pre_vote = rayc__r_u8(rd) != 0;
		break;
	}
	case RAFT_IO_REQUEST_VOTE_RESULT: {
		struct raft_request_vote_result *a = &m->request_vote_result;
		a->term = rayc__r_u64(rd);
		a->vote_granted = rayc__r_u8(rd) != 0;
		uint8_t pv = rayc__r_u8(rd);
		a->pre_vote = pv <= raft_tribool_false ? (raft_tribool)pv
		                                       : raft_tribool_unknown;
		break;
	}
	case RAFT_IO_APPEND_ENTRIES: {
		struct raft_append_entries *a = &m->append_entries;
		a->term = rayc__r_u64(rd);
		a->prev_log_index = rayc__r_u64(rd);
		a->prev_log_term = rayc__r_u64(rd);
		a->leader_commit = rayc__r_u64(rd);
		ok = decode_entries(rd, a);
		break;
	}
	case RAFT_IO_APPEND_ENTRIES_RESULT: {
		struct raft_append_entries_result *a =
			&m->append_entries_result;
		a->term = rayc__r_u64(rd);
		a->rejected = rayc__r_u64(rd);
		a->last_log_index = rayc__r_u64(rd);
		break;
	}
	case RAFT_IO_TIMEOUT_NOW: {
		struct raft_timeout_now *a = &m->timeout_now;
		a->term = rayc__r_u64(rd);
		a->last_log_index = rayc__r_u64(rd);
		a->last_log_term = rayc__r_u64(rd);
		break;
	}
	case RAFT_IO_INSTALL_SNAPSHOT:
		ok = decode_snapshot(rd, &m->install_snapshot);
		break;
	default:
		ok = false;
	}
	if (!ok || rd->bad || rayc__rd_left(rd) != 0) {
		free_msg(m);
		free(r);
		rayc__conn_close(c, "bad RAFT frame");
		return;
	}
	rayc__ctl_post(net, run_recv, r);
}

/* ---- the state machine ---- */

static void cluster_ends(rayc__net *net, const char *why)
{
	if (atomic_load(&net->cluster_down))
		return;
	rayc__log(RAYC_LOG_INFO, "RAYC-NET-CLUSTER-ENDS", "%s", why);
	atomic_store(&net->cluster_down, true);
	rayc__event_set(&net->down_ev);
}

static int apply_add(rayc__net *net, rayc__rd *rd)
{
	rayc__peer tmp;

	memset(&tmp, 0, sizeof(tmp));
	uint32_t id = rayc__r_u32(rd);
	tmp.worker = rayc__r_u8(rd) != 0;
	tmp.pid = (int)rayc__r_u32(rd);
	tmp.job_start_ms = (int64_t)rayc__r_u64(rd);
	rayc__r_str(rd, tmp.url, sizeof(tmp.url));
	if (rd->bad || id == 0 || id >= RAYC__MAX_PEERS ||
	    !rayc__net_read_res(net, rd, tmp.total, tmp.avail, false))
		return RAYC_EPROTO;
	rayc__mutex_lock(&net->mu);
	rayc__peer *p = &net->peers[id];
	if (p->known) {
		rayc__mutex_unlock(&net->mu);
		return RAYC_EEXIST;
	}
	rayc__conn *keep = p->conn;
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

/* Member id is gone (it left, or died) as of wall time t. */
static int mark_dead(rayc__net *net, uint32_t id, bool left, int64_t t)
{
	rayc__mutex_lock(&net->mu);
	rayc__peer *p = &net->peers[id];
	if (!p->known || !p->alive) {
		rayc__mutex_unlock(&net->mu);
		return RAYC_ENOTFOUND;
	}
	p->alive = false;
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
	rayc__log(me || left ? RAYC_LOG_INFO : RAYC_LOG_WARN,
	          "RAYC-NET-PEER-DEAD", "peer %u (%s) left the cluster: %s", id,
	          p->url, left ? "left" : "died");
	if (me) {
		if (!atomic_load(&net->leaving)) {
			atomic_store(&net->cut_off, true);
			cluster_ends(net, "the cluster declared this peer dead");
		}
		return RAYC_OK;
	}
	rayc__remote_peer_died(net, id);
	if (!drivers)
		cluster_ends(net, "no driver is left: the cluster ends");
	return RAYC_OK;
}

static int apply_del(rayc__net *net, rayc__rd *rd)
{
	uint32_t id = rayc__r_u32(rd);
	bool left = rayc__r_u8(rd) != 0;
	int64_t t = (int64_t)rayc__r_u64(rd);

	if (rd->bad || id == 0 || id >= RAYC__MAX_PEERS)
		return RAYC_EPROTO;
	return mark_dead(net, id, left, t);
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
		d = ctl->ring[ctl->ring_head];
		HASH_DEL(ctl->seen, d);
		ctl->ring_head = (ctl->ring_head + 1) % DEDUP_MAX;
		ctl->ring_n--;
	} else if ((d = malloc(sizeof(*d))) == NULL) {
		return; /* forgotten: a retry of it would apply again */
	}
	memset(d, 0, sizeof(*d));
	d->k = *k;
	d->rc = rc;
	HASH_ADD(hh, ctl->seen, k, sizeof(d->k), d);
	ctl->ring[(ctl->ring_head + ctl->ring_n) % DEDUP_MAX] = d;
	ctl->ring_n++;
}

static void dedup_clear(rayc__ctl *ctl)
{
	HASH_CLEAR(hh, ctl->seen);
	for (unsigned i = 0; i < ctl->ring_n; i++)
		free(ctl->ring[(ctl->ring_head + i) % DEDUP_MAX]);
	ctl->ring_head = ctl->ring_n = 0;
}

/* In snapshots: oldest first, so a restore rebuilds the same ring. */
static void dedup_write(rayc__ctl *ctl, rayc__wbuf *b)
{
	rayc__w_u32(b, ctl->ring_n);
	for (unsigned i = 0; i < ctl->ring_n; i++) {
		dedup *d = ctl->ring[(ctl->ring_head + i) % DEDUP_MAX];
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
		dedup_clear(ctl);
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
	rayc__mutex_lock(&net->rt->mu);
	rc = rayc__kv_apply_locked(net->rt, put ? RAYC__KV_PUT : RAYC__KV_DEL,
	                           key, val, len, NULL, NULL);
	rayc__mutex_unlock(&net->rt->mu);
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
	rayc__mutex_lock(&rt->mu);
	rayc__kv_write_all_locked(rt, &b);
	rayc__mutex_unlock(&rt->mu);
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
	if (rayc__r_u32(&rd) != SNAP_MAGIC ||
	    rayc__net_read_members(net, &rd, apply, gone, &ngone) != 0)
		return false;
	rayc__mutex_lock(&rt->mu);
	bool ok = rayc__kv_read_all_locked(rt, &rd, apply);
	rayc__mutex_unlock(&rt->mu);
	if (!ok || !dedup_read(net->ctl, &rd, apply) || rayc__rd_left(&rd) != 0)
		return false;
	for (int i = 0; i < ngone; i++)
		(void)mark_dead(net, gone[i].id, gone[i].left, gone[i].end);
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
	(void)restore_pass(net, buf, true);
	net->ctl->n_restored++;
	rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-RESTORE",
	          "restored the control store from a snapshot (%zu bytes)",
	          buf->len);
	raft_free(buf->base); /* ours on success */
	return 0;
}

/* ---- proposing ---- */

typedef struct prop {
	struct raft_apply req;
	rayc__ctl_done done;
	void *arg;
} prop;

static void prop_cb(struct raft_apply *req, int status, void *result)
{
	prop *p = req->data;

	if (p->done != NULL)
		p->done(status == 0 ? (int)(intptr_t)result : RAYC__RETRY,
		        p->arg);
	free(p);
}

int rayc__ctl_propose(rayc__net *net, const rayc__wbuf *cmd,
                      rayc__ctl_done done, void *arg)
{
	rayc__ctl *ctl = net->ctl;

	if (!ctl->started || ctl->closing ||
	    raft_state(&ctl->raft) != RAFT_LEADER)
		return RAYC__RETRY;
	if (cmd->bad)
		return RAYC_ENOMEM;
	prop *p = calloc(1, sizeof(*p));
	struct raft_buffer b = { raft_malloc(cmd->len), cmd->len };
	if (p == NULL || b.base == NULL) {
		free(p);
		raft_free(b.base);
		return RAYC_ENOMEM;
	}
	memcpy(b.base, cmd->p, cmd->len);
	p->req.data = p;
	p->done = done;
	p->arg = arg;
	int rv = raft_apply(&ctl->raft, &p->req, &b, 1, prop_cb);
	if (rv != 0) {
		raft_free(b.base);
		free(p);
		return rv == RAFT_NOTLEADER || rv == RAFT_LEADERSHIPLOST
		               ? RAYC__RETRY
		               : RAYC_ENOMEM;
	}
	return RAYC_OK;
}

bool rayc__ctl_is_leader(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	return ctl != NULL && ctl->started && !ctl->closing &&
	       raft_state(&ctl->raft) == RAFT_LEADER;
}

bool rayc__ctl_ready(rayc__net *net)
{
	return rayc__ctl_is_leader(net) && net->ctl->ready;
}

static void barrier_cb(struct raft_barrier *req, int status)
{
	rayc__net *net = req->data;
	rayc__ctl *ctl = net->ctl;

	ctl->barrier_pending = false;
	ctl->ready = status == 0 && rayc__ctl_is_leader(net);
}

void rayc__ctl_cmd_add(rayc__net *net, rayc__wbuf *b, uint32_t id,
                       bool worker, int pid, const char *url,
                       const int64_t *total)
{
	rayc__w_u8(b, CMD_ADD);
	rayc__w_u32(b, id);
	rayc__w_u8(b, worker);
	rayc__w_u32(b, (uint32_t)pid);
	rayc__w_u64(b, (uint64_t)wall_ms());
	rayc__w_str(b, url);
	rayc__net_write_res(net->rt, b, total, NULL);
}

static void propose_del(rayc__net *net, uint32_t id, bool left)
{
	rayc__wbuf b = { 0 };

	rayc__w_u8(&b, CMD_DEL);
	rayc__w_u32(&b, id);
	rayc__w_u8(&b, left);
	rayc__w_u64(&b, (uint64_t)wall_ms());
	if (rayc__ctl_propose(net, &b, NULL, NULL) == RAYC_OK) {
		rayc__mutex_lock(&net->mu);
		net->peers[id].del_sent = true;
		rayc__mutex_unlock(&net->mu);
	}
	rayc__wbuf_fini(&b);
}

void rayc__ctl_cmd_kv(rayc__wbuf *b, int op, uint32_t client, uint64_t req,
                      const char *key, const void *val, size_t len)
{
	rayc__w_u8(b, op == RAYC__KV_PUT ? CMD_KV_PUT : CMD_KV_DEL);
	rayc__w_u32(b, client);
	rayc__w_u64(b, req);
	rayc__w_str(b, key);
	if (op == RAYC__KV_PUT)
		rayc__w_blob(b, val, len);
}

/* ---- the leader's duties: the Raft configuration follows membership ---- */

static void change_cb(struct raft_change *req, int status)
{
	rayc__net *net = req->data;

	if (status != 0)
		rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-CHANGE",
		          "configuration change failed: %s",
		          raft_strerror(status));
	net->ctl->changing = false;
}

static bool alive_member(rayc__net *net, raft_id id)
{
	if (id == 0 || id >= RAYC__MAX_PEERS)
		return false;
	rayc__mutex_lock(&net->mu);
	bool a = net->peers[id].known && net->peers[id].alive;
	rayc__mutex_unlock(&net->mu);
	return a;
}

/* One step towards: every live member in the configuration, dead ones
 * out, an odd number of voters (at most 5; an even count tolerates no
 * more failures than the odd one below it), the rest standbys. */
static void reconcile(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	struct raft *r = &ctl->raft;
	const struct raft_configuration *conf = &r->configuration;
	int rv = 0;

	if (ctl->changing || ctl->handing_over || !rayc__ctl_is_leader(net) ||
	    r->configuration_uncommitted_index != 0)
		return;
	ctl->change.data = net;
	/* Dead servers out. */
	for (unsigned i = 0; i < conf->n; i++) {
		raft_id id = conf->servers[i].id;
		if (id != r->id && !alive_member(net, id)) {
			rv = raft_remove(r, &ctl->change, id, change_cb);
			goto done;
		}
	}
	/* Live members in. */
	uint32_t live = 0, add = 0;
	rayc__mutex_lock(&net->mu);
	for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
		rayc__peer *p = &net->peers[i];
		if (!p->known || !p->alive)
			continue;
		live++;
		bool in = false;
		for (unsigned k = 0; k < conf->n && !in; k++)
			in = conf->servers[k].id == i;
		if (!in && add == 0)
			add = i;
	}
	char url[RAYC__URL_MAX];
	if (add != 0)
		snprintf(url, sizeof(url), "%s", net->peers[add].url);
	rayc__mutex_unlock(&net->mu);
	if (add != 0) {
		rv = raft_add(r, &ctl->change, add, url, change_cb);
		goto done;
	}
	uint32_t want = live > CTL_MAX_VOTERS ? CTL_MAX_VOTERS : live;
	if (want % 2 == 0 && want > 0)
		want--;
	if (want == 0)
		want = 1;
	uint32_t voters = 0;
	for (unsigned i = 0; i < conf->n; i++)
		voters += conf->servers[i].role == RAFT_VOTER;
	for (unsigned i = 0; i < conf->n; i++) {
		const struct raft_server *s = &conf->servers[i];
		if (voters < want && s->role != RAFT_VOTER) {
			rv = raft_assign(r, &ctl->change, s->id, RAFT_VOTER,
			                 change_cb);
			goto done;
		}
		if (voters > want && s->role == RAFT_VOTER && s->id != r->id) {
			rv = raft_assign(r, &ctl->change, s->id, RAFT_STANDBY,
			                 change_cb);
			goto done;
		}
		if (s->role == RAFT_SPARE) {
			rv = raft_assign(r, &ctl->change, s->id, RAFT_STANDBY,
			                 change_cb);
			goto done;
		}
	}
	return;
done:
	if (rv == 0)
		ctl->changing = true;
	else
		rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-CHANGE",
		          "configuration change refused: %s", raft_strerror(rv));
}

static void hand_over_step(rayc__net *net);

/* Called after every batch of raft work: follow the leader. */
static void after(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	raft_id lid = 0;
	const char *laddr = NULL;

	if (!ctl->started || ctl->closing)
		return;
	raft_leader(&ctl->raft, &lid, &laddr);
	int64_t now = rayc__now_ns();
	rayc__mutex_lock(&net->mu);
	if (lid == 0) {
		if (net->no_leader_since == 0)
			net->no_leader_since = now;
	} else {
		net->no_leader_since = 0;
	}
	/* Mirror the configuration's voters for rayc_cluster_peers. */
	const struct raft_configuration *conf = &ctl->raft.configuration;
	for (uint32_t i = 1; i < atomic_load(&net->top); i++)
		net->peers[i].voter = false;
	for (unsigned i = 0; i < conf->n; i++)
		if (conf->servers[i].id < RAYC__MAX_PEERS &&
		    conf->servers[i].role == RAFT_VOTER)
			net->peers[conf->servers[i].id].voter = true;
	bool became = false;
	if (lid != 0 && lid < RAYC__MAX_PEERS && lid != net->coord) {
		net->coord = (uint32_t)lid;
		net->coord_seen = now;
		snprintf(net->coord_url, sizeof(net->coord_url), "%s",
		         laddr != NULL ? laddr : "");
		became = lid == net->self;
		if (became) {
			/* A fresh leader gives everyone a full timeout to
			 * send it a heartbeat. */
			for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
				net->peers[i].last_seen = now;
				net->peers[i].del_sent = false;
			}
		}
	}
	bool admit_self = became && net->founder && !net->joined;
	rayc__mutex_unlock(&net->mu);
	if (raft_state(&ctl->raft) != RAFT_LEADER) {
		ctl->ready = false;
	} else if (!ctl->ready && !ctl->barrier_pending) {
		ctl->barrier.data = net;
		if (raft_barrier(&ctl->raft, &ctl->barrier, barrier_cb) == 0)
			ctl->barrier_pending = true;
	}
	if (became)
		rayc__log(RAYC_LOG_INFO, "RAYC-NET-COORD",
		          "this peer (%u) is the coordinator now (term %llu)",
		          net->self, (unsigned long long)ctl->raft.current_term);
	hand_over_step(net);
	if (admit_self) {
		/* The founder's own entry: it is a member like any other. */
		rayc__wbuf b = { 0 };
		rayc__ctl_cmd_add(net, &b, net->self, net->worker,
		                  (int)rayc__getpid(), net->url,
		                  net->rt->res_total);
		if (rayc__ctl_propose(net, &b, NULL, NULL) != RAYC_OK)
			cluster_ends(net, "the control store did not accept "
			                  "the founder");
		rayc__wbuf_fini(&b);
	}
	reconcile(net);
}

/* ---- the loop's side of the mesh ---- */

void rayc__ctl_tick(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	int64_t now = rayc__now_ns();
	uint32_t dead[RAYC__MAX_PEERS];
	int n = 0;

	if (ctl == NULL || !ctl->started || ctl->closing)
		return;
	after(net);
	rayc__mutex_lock(&net->mu);
	bool lead = net->self == net->coord && rayc__ctl_is_leader(net);
	if (lead) {
		for (uint32_t i = 1; i < atomic_load(&net->top); i++) {
			rayc__peer *p = &net->peers[i];
			if (p->alive && i != net->self && !p->del_sent &&
			    now - p->last_seen > net->timeout_ns)
				dead[n++] = i;
		}
	}
	int64_t lost = net->no_leader_since;
	/* A standby or a peer still being added never starts an election,
	 * so raft keeps naming a leader that may be long gone: silence from
	 * the coordinator counts as much as having none. */
	int64_t seen = net->coord_seen;
	bool silent = !lead && net->coord != net->self && seen != 0;
	rayc__mutex_unlock(&net->mu);
	for (int i = 0; i < n; i++) {
		rayc__log(RAYC_LOG_WARN, "RAYC-NET-SILENT",
		          "no heartbeat from peer %u for %lld ms", dead[i],
		          (long long)(net->timeout_ns / 1000000));
		propose_del(net, dead[i], false);
	}
	int64_t limit = 3 * net->timeout_ns;
	if (limit < (int64_t)3000000000)
		limit = 3000000000;
	if (net->joined && !atomic_load(&net->leaving) &&
	    ((lost != 0 && now - lost > limit) ||
	     (silent && now - seen > limit))) {
		atomic_store(&net->cut_off, true);
		cluster_ends(net, "no coordinator for 3 heartbeat timeouts (a "
		                  "majority of the voters is gone, or this peer "
		                  "is cut off from it)");
	}
}

typedef struct gone_arg {
	uint32_t id;
	bool left;
} gone_arg;

static void run_gone(rayc__net *net, void *arg)
{
	gone_arg *g = arg;

	if (g == NULL)
		return;
	rayc__mutex_lock(&net->mu);
	rayc__peer *p = &net->peers[g->id];
	bool want = p->known && p->alive && !p->del_sent && g->id != net->self;
	rayc__mutex_unlock(&net->mu);
	if (want && rayc__ctl_is_leader(net))
		propose_del(net, g->id, g->left);
	free(g);
}

void rayc__ctl_peer_gone(rayc__net *net, uint32_t id, bool left)
{
	gone_arg *g;

	if (net->ctl == NULL || id == 0 || id >= RAYC__MAX_PEERS ||
	    (g = malloc(sizeof(*g))) == NULL)
		return;
	g->id = id;
	g->left = left;
	rayc__ctl_post(net, run_gone, g);
}

/* ---- handing the coordinator's role over before leaving ---- */

static void transfer_cb(struct raft_transfer *req)
{
	(void)req;
}

/* One step of handing over (loop thread, from after()): transfer to
 * another voter; if this peer is the only one (2 live peers keep 1),
 * first make a live standby a voter, so the peers that stay keep a
 * majority. */
static void hand_over_step(rayc__net *net)
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
		if (id == r->id || !alive_member(net, id) ||
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
		rv = raft_assign(r, &ctl->change, standby, RAFT_VOTER, change_cb);
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
	hand_over_step(net);
}

void rayc__ctl_hand_over(rayc__net *net)
{
	int64_t deadline = rayc__now_ns() + 2 * (int64_t)1000000000;

	if (net->ctl == NULL)
		return;
	rayc__ctl_post(net, run_transfer, NULL);
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
	ctl->io.version = 1;
	ctl->io.impl = net;
	ctl->io.init = io_init;
	ctl->io.close = io_close;
	ctl->io.load = io_load;
	ctl->io.start = io_start;
	ctl->io.bootstrap = io_bootstrap;
	ctl->io.recover = io_recover;
	ctl->io.set_term = io_set_term;
	ctl->io.set_vote = io_set_vote;
	ctl->io.send = io_send;
	ctl->io.append = io_append;
	ctl->io.truncate = io_truncate;
	ctl->io.snapshot_put = io_snapshot_put;
	ctl->io.snapshot_get = io_snapshot_get;
	ctl->io.time = io_time;
	ctl->io.random = io_random;
	ctl->fsm.version = 1;
	ctl->fsm.data = net;
	ctl->fsm.apply = fsm_apply;
	ctl->fsm.snapshot = fsm_snapshot;
	ctl->fsm.restore = fsm_restore;
	rv = raft_init(r, &ctl->io, &ctl->fsm, id, net->url);
	if (rv != 0)
		goto fail;
	r->data = net;
	ctl->inited = true;
	/* Election after a third of the heartbeat timeout (randomised up
	 * to twice that by raft; pre-vote keeps a slow follower from
	 * deposing a live leader), leader heartbeats ten times as often. */
	unsigned et = (unsigned)(net->timeout_ns / 3000000);
	if (et < 100)
		et = 100;
	raft_set_election_timeout(r, et);
	raft_set_heartbeat_timeout(r, et / 10 > 10 ? et / 10 : 10);
	unsigned every = 1024;
	const char *se = getenv("RAYC__SNAPSHOT_ENTRIES"); /* tests only */
	if (se != NULL && atoi(se) > 0)
		every = (unsigned)atoi(se);
	raft_set_snapshot_threshold(r, every);
	raft_set_snapshot_trailing(r, every / 2 > 0 ? every / 2 : 1);
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
	cluster_ends(net, "the control store failed");
}

void rayc__ctl_start(rayc__net *net, uint32_t id)
{
	rayc__ctl_post(net, run_start, (void *)(uintptr_t)id);
}

int rayc__ctl_init(rayc__net *net)
{
	rayc__ctl *ctl = calloc(1, sizeof(*ctl));

	if (ctl == NULL)
		return RAYC_ENOMEM;
	ctl->net = net;
	rayc__mutex_init(&ctl->mu);
	ctl->wake = event_new(net->base, -1, 0, on_wake, net);
	if (ctl->wake == NULL) {
		rayc__mutex_fini(&ctl->mu);
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
	rayc__ctl_post(net, run_close, NULL);
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
	 * connections are let go), run what is left until nothing is, and
	 * from now on run posted work at once (connections may still deliver
	 * frames until they are freed). */
	run_close(net, NULL);
	for (;;) {
		rayc__mutex_lock(&ctl->mu);
		work *w = ctl->head;
		ctl->head = ctl->tail = NULL;
		if (w == NULL)
			ctl->inline_posts = true;
		rayc__mutex_unlock(&ctl->mu);
		if (w == NULL)
			break;
		while (w != NULL) {
			work *n = w->next;
			w->fn(net, w->arg);
			free(w);
			w = n;
		}
	}
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
	if (ctl->has_snap)
		snap_free(&ctl->snap);
	dedup_clear(ctl);
	rayc__mutex_fini(&ctl->mu);
	free(ctl);
	net->ctl = NULL;
}

/* ---- test hooks (lib/testing.h) ---- */

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

static void run_test_transfer(rayc__net *net, void *arg)
{
	rayc__ctl *ctl = net->ctl;

	if (!rayc__ctl_is_leader(net))
		return;
	ctl->handing_over = true;
	ctl->handover_to = (raft_id)(uintptr_t)arg;
	hand_over_step(net);
}

int rayc__test_ctl_transfer(uint32_t to)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL || rt->net == NULL || rt->net->ctl == NULL)
		return RAYC_ESTATE;
	rayc__ctl_post(rt->net, run_test_transfer, (void *)(uintptr_t)to);
	return RAYC_OK;
}
