/* ctl_io.c -- libraft's I/O backend (struct raft_io) over the mesh: the
 * queue of work posted to the loop thread, jobs run on threads of their
 * own (snapshots), raft's tick, its in-memory "persistent" state, sending
 * messages as RAFT frames and handing received ones to raft.  Snapshots
 * stored and sent: ctl_snap.c.  See ctl.c.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <raft.h>
#include <sodium.h>

#include "net/ctl_int.h"

/* ---- posting work to the loop thread ---- */

static void post(rayc__net *net, rayc__ctl_work *w,
                 void (*fn)(rayc__net *, void *), void *arg, bool once)
{
	rayc__ctl *ctl = net->ctl;

	rayc__mutex_lock(&ctl->mu);
	if (once && w->queued) {
		rayc__mutex_unlock(&ctl->mu);
		return;
	}
	w->fn = fn;
	w->arg = arg;
	w->next = NULL;
	if (ctl->inline_posts) {
		/* Shutting down, raft closed: the work only cleans up. */
		rayc__mutex_unlock(&ctl->mu);
		fn(net, arg);
		return;
	}
	w->queued = true;
	if (ctl->tail != NULL)
		ctl->tail->next = w;
	else
		ctl->head = w;
	ctl->tail = w;
	/* One wake-up at a time (see rayc__ctl_on_wake). */
	bool wake = !ctl->woken;
	ctl->woken = true;
	rayc__mutex_unlock(&ctl->mu);
	if (wake)
		event_active(ctl->wake, EV_READ, 0);
}

void rayc__ctl_post(rayc__net *net, rayc__ctl_work *w,
                    void (*fn)(rayc__net *, void *), void *arg)
{
	post(net, w, fn, arg, false);
}

void rayc__ctl_post_once(rayc__net *net, rayc__ctl_work *w,
                         void (*fn)(rayc__net *, void *), void *arg)
{
	post(net, w, fn, arg, true);
}

/* One piece at a time: a fixed piece may be posted again (and linked
 * anew) as soon as it is off the queue, and a piece's fn may free it.
 * With until (a rayc__now_ns time, 0: none) it stops there; true if
 * work is left (ctl->woken then stays set). */
static bool run_posted_until(rayc__net *net, bool then_inline, int64_t until)
{
	rayc__ctl *ctl = net->ctl;

	for (;;) {
		rayc__mutex_lock(&ctl->mu);
		rayc__ctl_work *w = ctl->head;
		if (w == NULL) {
			if (then_inline)
				ctl->inline_posts = true;
			ctl->woken = false;
			rayc__mutex_unlock(&ctl->mu);
			return false;
		}
		if (until != 0 && rayc__now_ns() > until) {
			rayc__mutex_unlock(&ctl->mu);
			return true;
		}
		ctl->head = w->next;
		if (ctl->head == NULL)
			ctl->tail = NULL;
		w->queued = false;
		void (*fn)(rayc__net *, void *) = w->fn;
		void *arg = w->arg;
		rayc__mutex_unlock(&ctl->mu);
		fn(net, arg);
	}
}

void rayc__ctl_run_posted(rayc__net *net, bool then_inline)
{
	(void)run_posted_until(net, then_inline, 0);
}

/* Posted work gets the loop a slice at a time (RAYC__CTL_SLICE_NS): a
 * follower sent megabytes of entries, or a coordinator given many KV
 * writes, has a queue that can take the loop for seconds, and the
 * loop's timers (this peer's heartbeats, raft's tick, which sends the
 * leader's) must not wait behind it, or a busy peer looks dead.
 *
 * libevent runs every callback activated while it runs callbacks before
 * it looks at its timers again, so an event activated by each post
 * (NNG's threads post every frame) would keep the timers waiting for as
 * long as posts come in.  Hence one wake-up at a time: ctl->woken is set
 * by the post that activates the event and cleared only when the queue
 * is found empty; a slice that leaves work arms the event as a timer
 * that expires now instead, and libevent runs it after the timers that
 * expired before it (a late heartbeat). */
#define RAYC__CTL_SLICE_NS ((int64_t)20 * 1000000)

void rayc__ctl_on_wake(evutil_socket_t fd, short what, void *arg)
{
	rayc__net *net = arg;
	rayc__ctl *ctl = net->ctl;
	static const struct timeval now = { 0, 0 };

	(void)fd;
	(void)what;
	if (run_posted_until(net, false, rayc__now_ns() + RAYC__CTL_SLICE_NS) &&
	    event_add(ctl->wake, &now) != 0) /* after the timers due */
		event_active(ctl->wake, EV_READ, 0); /* at once, rather */
	rayc__ctl_after(net);
}

/* ---- jobs: work off the loop thread ----
 *
 * A snapshot written out or read back (up to 128 MiB) runs on a thread of
 * its own, so the loop goes on sending heartbeats and Raft's messages.
 * Snapshots are rare (every 1024 entries), so a thread per job costs
 * nothing worth keeping a pool for.  The job's end is posted back to the
 * loop, where its done runs.  Raft never has two at once (it takes no
 * snapshot while installing one, and the reverse), but nothing here
 * relies on it. */

struct rayc__ctl_job {
	rayc__ctl_work post;
	rayc__net *net;
	rayc__thread th;
	bool joined;
	int (*work)(rayc__net *net, void *arg); /* on the job's thread */
	void (*done)(rayc__net *net, void *arg, int status); /* on the loop */
	void *arg;
	int status;
	rayc__ctl_job *next;
};

static void post_close(rayc__net *net);

static void job_end(rayc__net *net, void *arg)
{
	rayc__ctl *ctl = net->ctl;
	rayc__ctl_job *j = arg;

	if (!j->joined)
		rayc__thread_join(&j->th); /* it is returning */
	for (rayc__ctl_job **pp = &ctl->jobs; *pp != NULL; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	j->done(net, j->arg, j->status);
	free(j);
	if (ctl->jobs == NULL && ctl->close_waits) {
		ctl->close_waits = false;
		post_close(net);
	}
}

static void *job_main(void *arg)
{
	rayc__ctl_job *j = arg;

	j->status = j->work(j->net, j->arg);
	/* Never run inline here: rayc__ctl_drain joins every job before
	 * posts run inline. */
	rayc__ctl_post(j->net, &j->post, job_end, j);
	return NULL;
}

int rayc__ctl_job_start(rayc__net *net, int (*work)(rayc__net *, void *),
                        void (*done)(rayc__net *, void *, int), void *arg)
{
	rayc__ctl *ctl = net->ctl;

	if (ctl->closing)
		return RAFT_CANCELED;
	rayc__ctl_job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return RAFT_NOMEM;
	j->net = net;
	j->work = work;
	j->done = done;
	j->arg = arg;
	j->next = ctl->jobs;
	ctl->jobs = j;
	if (rayc__thread_start(&j->th, job_main, j) != 0) {
		ctl->jobs = j->next;
		free(j);
		return RAFT_NOMEM;
	}
	return 0;
}

void rayc__ctl_jobs_join(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	atomic_store(&ctl->stop_jobs, true);
	for (rayc__ctl_job *j = ctl->jobs; j != NULL; j = j->next)
		if (!j->joined) {
			rayc__thread_join(&j->th);
			j->joined = true;
		}
}

/* ---- raft_io over the mesh ---- */

/* A raft I/O request completed (RAYC__DONE_*), its callback to run on
 * the loop. */
typedef struct done_arg {
	rayc__ctl_work post;
	int kind;
	void *req;
	int status;
	struct raft_snapshot *snap; /* RAYC__DONE_SNAP_GET */
	/* RAYC__DONE_SEND of an AppendEntries cut short (see cut_sent) to
	 * server cut_to (0: none) in term cut_term: the follower's next
	 * index raft set (cut_was), and the one to set (cut_next). */
	raft_id cut_to;
	raft_term cut_term;
	raft_index cut_was, cut_next;
} done_arg;

/* The leader's replication state of server id (NULL: none). */
static struct raft_progress *progress_of(rayc__ctl *ctl, raft_id id)
{
	struct raft *r = &ctl->raft;
	const struct raft_configuration *conf = &r->configuration;

	if (raft_state(r) != RAFT_LEADER || r->leader_state.progress == NULL)
		return NULL;
	for (unsigned i = 0; i < conf->n; i++)
		if (conf->servers[i].id == id)
			return &r->leader_state.progress[i];
	return NULL;
}

/* libraft 0.15's follower states (progress.h). */
#define PROGRESS_PROBE 0
#define PROGRESS_PIPELINE 1

/* raft streams entries to a follower that is keeping up (pipeline mode):
 * once io_send returns, it counts every entry it gave as sent and moves
 * the follower's next index past them.  ctl_codec.c sends only the first
 * 4 MiB; the follower answers how far it got, which leaves that index
 * where it is, so raft would send nothing more until its next entry or
 * heartbeat, which asks the follower for an entry it never got: refused,
 * raft probes it, once a heartbeat at most.  A follower behind caught up
 * 3 entries a heartbeat or two (6 MiB in 850 ms under ASan), slower than
 * 1 MiB writes came, and one made a voter while behind (a catch-up round
 * fast enough is enough) held every commit up for seconds
 * (ctl::big_kv_writes_to_a_stalling_follower_*, at 4 MiB: a put
 * unanswered past its 5 s deadline, 2 ASan runs of 5).
 *
 * So once the send is done, before any answer to it is taken in (posted
 * later), the next index goes back to the first entry not sent, if raft
 * has not moved it since: each answer, new entry or heartbeat then sends
 * the next piece.  Only what raft will send changes, never what it
 * counts as replicated.  An AppendEntries raft sends the follower
 * meanwhile (the writer a commit answered proposes its next write at
 * once) begins past the cut and would be refused: it fails instead
 * (gapped), raft probes the follower, and the answer to the cut one has
 * it stream on from there. */
static void cut_sent(rayc__ctl *ctl, const done_arg *d)
{
	if (ctl->cut_next[d->cut_to] == d->cut_next &&
	    ctl->cut_term[d->cut_to] == d->cut_term)
		ctl->cut_next[d->cut_to] = 0;
	struct raft_progress *p = progress_of(ctl, d->cut_to);
	if (ctl->closing || p == NULL || ctl->raft.current_term != d->cut_term)
		return;
	if (p->state == PROGRESS_PIPELINE && p->next_index == d->cut_was &&
	    d->cut_next > p->match_index)
		p->next_index = d->cut_next;
}

static void run_done(rayc__net *net, void *arg)
{
	done_arg *d = arg;
	rayc__ctl *ctl = net->ctl;

	/* A send cancelled by close is fine to report; an append never
	 * fails (there is no disk), and libraft 0.15's leader append
	 * callback walks leader state that raft_close has already torn down
	 * when given an error, so appends always succeed. */
	int st = ctl->closing && d->kind == RAYC__DONE_SEND ? RAFT_CANCELED
	                                                    : d->status;
	if (d->kind == RAYC__DONE_SEND) {
		struct raft_io_send *r = d->req;
		if (d->cut_to != 0)
			cut_sent(ctl, d);
		if (r->cb != NULL)
			r->cb(r, st);
	} else if (d->kind == RAYC__DONE_APPEND) {
		struct raft_io_append *r = d->req;
		if (r->cb != NULL)
			r->cb(r, st);
	} else if (d->kind == RAYC__DONE_SNAP_PUT) {
		struct raft_io_snapshot_put *r = d->req;
		if (r->cb != NULL)
			r->cb(r, st);
	} else if (d->kind == RAYC__DONE_SNAP_GET) {
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
                     struct raft_snapshot *snap, const done_arg *cut)
{
	done_arg *d = malloc(sizeof(*d));

	if (d == NULL)
		return RAFT_NOMEM;
	if (cut != NULL)
		*d = *cut;
	else
		memset(d, 0, sizeof(*d));
	d->kind = kind;
	d->req = req;
	d->status = status;
	d->snap = snap;
	rayc__ctl_post(net, &d->post, run_done, d);
	return 0;
}

int rayc__ctl_post_done(rayc__net *net, int kind, void *req, int status,
                        struct raft_snapshot *snap)
{
	return post_done(net, kind, req, status, snap, NULL);
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
	/* Raft's state lives on until cb: the jobs' ends (told to give up
	 * now) must come first. */
	atomic_store(&ctl->stop_jobs, true);
	if (ctl->jobs != NULL)
		ctl->close_waits = true;
	else
		post_close(net);
}

static void post_close(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	if (rayc__ctl_post_done(net, RAYC__DONE_CLOSE, NULL, 0, NULL) != 0 &&
	    ctl->io_close_cb != NULL) {
		raft_io_close_cb cb = ctl->io_close_cb;
		ctl->io_close_cb = NULL;
		cb(&ctl->io);
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

/* raft's clock runs with the real one while raft's timer runs on time,
 * but counts at most two of its periods from one run to the next.  A
 * peer (or a whole host) that stood still, busy, descheduled, stopped or
 * paused, has heard nothing meanwhile because it listened to nothing,
 * not because the others went quiet: on waking, its timer would
 * otherwise run before the messages that came meanwhile are read, and a
 * follower would start an election or a leader step down at once (a
 * cluster of three stopped together for 1.5 s did both).  It hears for
 * a raft heartbeat or two first.  A busy loop counts the same way, since
 * raft's messages wait for it: a loaded follower notices a dead leader
 * later.  Silence while the loop runs on time counts in full, so a dead
 * leader is still replaced within the election timeout. */
static int64_t clock_now(rayc__ctl *ctl, int64_t now)
{
	int64_t d = now - ctl->clock_at;

	if (d < 0)
		d = 0;
	return ctl->clock_base + (d < ctl->clock_step ? d : ctl->clock_step);
}

/* Raft's timer runs every raft heartbeat (a fifth of the election
 * timeout).  Two runs more than half an election timeout apart mean this
 * peer's loop was held up about that long (busy, blocked, not scheduled,
 * or the whole process or machine stopped): the others may have started
 * an election.  Told with what the loop thread did since the loop's last
 * tick (rayc__ctl_tick samples its usage), which says which; the thread's
 * usage is read only then, not on every run. */
static void check_late(rayc__ctl *ctl, int64_t now)
{
	int64_t gap = now - ctl->rtick_ns;
	int64_t late = (int64_t)ctl->raft.election_timeout * 500000;
	bool was = ctl->rtick_ns != 0;

	ctl->rtick_ns = now;
	if (!was || gap <= late)
		return;
	char use[256] = ""; /* none before the loop's first tick */
	if (ctl->tick_at != 0) {
		rayc__usage u;
		const rayc__usage *o = &ctl->tick_use;
		rayc__thread_usage(&u);
		snprintf(use, sizeof(use), "; in the last %lld ms the loop "
		         "thread ran %lld ms in user space and %lld ms in the "
		         "kernel, blocked %ld times, was preempted %ld times, "
		         "took %ld minor and %ld major page faults",
		         (long long)((now - ctl->tick_at) / 1000000),
		         (long long)((u.user_ns - o->user_ns) / 1000000),
		         (long long)((u.sys_ns - o->sys_ns) / 1000000),
		         u.vcsw - o->vcsw, u.ivcsw - o->ivcsw,
		         u.minflt - o->minflt, u.majflt - o->majflt);
	}
	rayc__log(RAYC_LOG_WARN, "RAYC-CTL-LATE",
	          "peer %u: the control store's timer ran %lld ms apart "
	          "(election timeout %u ms)%s", ctl->net->self,
	          (long long)(gap / 1000000), ctl->raft.election_timeout, use);
}

static void on_rtick(evutil_socket_t fd, short what, void *arg)
{
	rayc__net *net = arg;
	rayc__ctl *ctl = net->ctl;

	(void)fd;
	(void)what;
	int64_t now = rayc__now_ns();
	check_late(ctl, now);
	ctl->clock_base = clock_now(ctl, now);
	ctl->clock_at = now;
	if (ctl->tick_cb != NULL && !ctl->closing)
		ctl->tick_cb(&ctl->io);
	rayc__ctl_after(net);
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
	ctl->clock_at = rayc__now_ns();
	ctl->clock_base = clock_now(ctl, ctl->clock_at);
	ctl->clock_step = 2 * (int64_t)msecs * 1000000;
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

/* Bytes queued on c and not yet sent. */
static size_t conn_queued(rayc__conn *c)
{
	rayc__mutex_lock(&c->mu);
	size_t n = c->out.len + c->pend.len + c->out_ext_bytes;
	/* The whole batch being sent (how far it got is the send
	 * callback's alone to know). */
	if (c->sending)
		n += c->inflight.len + c->inflight_ext_bytes;
	rayc__mutex_unlock(&c->mu);
	return n;
}

/* Whether the leader probes server id. */
static bool probing(rayc__ctl *ctl, raft_id id)
{
	const struct raft_progress *p = progress_of(ctl, id);

	return p != NULL && p->state == PROGRESS_PROBE;
}

/* Whether AppendEntries m to c is not sent (the byte bound, ctl_log.c):
 * it carries entries and c has RAYC__CTL_SEND_BYTES queued already, or
 * four times that for a follower not being probed.  The send fails, as
 * if the message were lost; raft probes the follower (again) from what
 * it acknowledged.  A follower being probed is sent every entry from
 * there on, in each AppendEntries, every heartbeat until it answers, so
 * one slow to read would pile up copies of the log here; one being sent
 * only new entries piles up every entry committed without it.  Only
 * dropping a message is safe: one cut short would be answered with the
 * follower's last index (libraft 0.15), and a stale tail it still holds
 * beyond the cut would count as replicated. */
static bool backlogged(rayc__ctl *ctl, rayc__conn *c,
                       const struct raft_message *m)
{
	if (m->type != RAFT_IO_APPEND_ENTRIES ||
	    m->append_entries.n_entries == 0)
		return false; /* heartbeats go: a few bytes */
	size_t q = conn_queued(c);
	return q >= 4 * RAYC__CTL_SEND_BYTES ||
	       (q >= RAYC__CTL_SEND_BYTES && probing(ctl, m->server_id));
}

/* Whether AppendEntries m begins past the end of one cut short to the
 * same follower whose send is not done yet (cut_sent). */
static bool gapped(rayc__ctl *ctl, const struct raft_message *m)
{
	const struct raft_append_entries *a = &m->append_entries;
	raft_id id = m->server_id;

	return m->type == RAFT_IO_APPEND_ENTRIES && ctl->cut_next[id] != 0 &&
	       ctl->cut_term[id] == a->term &&
	       a->prev_log_index >= ctl->cut_next[id];
}

static int io_send(struct raft_io *io, struct raft_io_send *req,
                   const struct raft_message *m, raft_io_send_cb cb)
{
	rayc__net *net = io->impl;
	rayc__wbuf b = { 0 };
	int status = 0;

	req->cb = cb;
	rayc__conn *c = m->server_id < RAYC__MAX_PEERS
	                        ? rayc__net_conn_to(net, (uint32_t)m->server_id)
	                        : NULL;
	if (c == NULL)
		return rayc__ctl_post_done(net, RAYC__DONE_SEND, req,
		                           RAFT_NOCONNECTION, NULL);
	if (m->type == RAFT_IO_INSTALL_SNAPSHOT) {
		/* Its data is the stored snapshot's (ctl_snap.c).  Not
		 * while much is queued to the follower: an earlier snapshot
		 * still going out there (raft sends another once the first
		 * times out) holds its own data, up to 128 MiB, until
		 * sent. */
		status = conn_queued(c) >= RAYC__CTL_SEND_BYTES
		                 ? RAFT_NOCONNECTION
		                 : rayc__ctl_snap_send(net, req, m);
		rayc__conn_unref(c);
		if (status == 0)
			return 0;
		return rayc__ctl_post_done(net, RAYC__DONE_SEND, req, status,
		                           NULL);
	}
	rayc__ctl *ctl = net->ctl;
	struct raft_message mm;
	raft_index cap = ctl->answer_cap;
	if (cap != 0 && cap < ctl->raft.commit_index)
		cap = ctl->raft.commit_index; /* committed: the leader's too */
	if (m->type == RAFT_IO_APPEND_ENTRIES_RESULT && cap != 0 &&
	    m->server_id == ctl->answer_to &&
	    m->append_entries_result.rejected == 0 &&
	    m->append_entries_result.last_log_index > cap) {
		/* See run_recv: no further than what it was sent. */
		rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-ANSWER-CAPPED",
		          "told leader %llu this peer holds entries up to %llu, "
		          "not %llu: what it holds past them may be stale",
		          (unsigned long long)m->server_id,
		          (unsigned long long)cap,
		          (unsigned long long)m->append_entries_result
		                  .last_log_index);
		mm = *m;
		mm.append_entries_result.last_log_index = cap;
		m = &mm;
	}
	const struct raft_append_entries *a = &m->append_entries;
	done_arg cut = { 0 };
	if (gapped(ctl, m)) {
		status = RAFT_NOCONNECTION; /* refused, were it sent */
	} else if (backlogged(ctl, c, m)) {
		status = RAFT_NOCONNECTION;
	} else if (!rayc__ctl_encode_msg(&b, net->self, m)) {
		status = RAFT_IOERR;
	} else {
		const struct raft_progress *p = progress_of(ctl, m->server_id);
		unsigned n;
		if (m->type == RAFT_IO_APPEND_ENTRIES && p != NULL &&
		    p->state == PROGRESS_PIPELINE &&
		    (n = rayc__ctl_append_fit(a)) < a->n_entries) {
			cut.cut_to = m->server_id; /* see cut_sent */
			cut.cut_term = a->term;
			cut.cut_was = a->prev_log_index + a->n_entries + 1;
			cut.cut_next = a->prev_log_index + n + 1;
			ctl->cut_next[cut.cut_to] = cut.cut_next;
			ctl->cut_term[cut.cut_to] = cut.cut_term;
		}
	}
	/* The done is queued before the message goes: the answer, posted
	 * when it comes, runs after it (cut_sent relies on it). */
	int rv = post_done(net, RAYC__DONE_SEND, req, status, NULL,
	                   cut.cut_to != 0 ? &cut : NULL);
	if (rv != 0 && cut.cut_to != 0)
		ctl->cut_next[cut.cut_to] = 0;
	if (rv == 0 && status == 0)
		rayc__conn_send(c, &b);
	rayc__conn_unref(c);
	rayc__wbuf_fini(&b);
	return rv;
}

static int io_append(struct raft_io *io, struct raft_io_append *req,
                     const struct raft_entry entries[], unsigned n,
                     raft_io_append_cb cb)
{
	(void)entries;
	(void)n;
	req->cb = cb;
	/* Raft keeps every entry in its own in-memory log; nothing else
	 * would ever read a copy (see the top of ctl.c). */
	return rayc__ctl_post_done(io->impl, RAYC__DONE_APPEND, req, 0, NULL);
}

static int io_truncate(struct raft_io *io, raft_index index)
{
	(void)io;
	(void)index;
	return 0;
}

/* ---- raft's asynchronous work: a snapshot written out ---- */

static int async_run(rayc__net *net, void *arg)
{
	struct raft_io_async_work *req = arg;

	(void)net;
	return req->work(req);
}

static void async_done(rayc__net *net, void *arg, int status)
{
	struct raft_io_async_work *req = arg;

	/* Closing: raft only cleans up (nothing is put). */
	req->cb(req, net->ctl->closing ? RAFT_CANCELED : status);
}

static int io_async_work(struct raft_io *io, struct raft_io_async_work *req,
                         raft_io_async_work_cb cb)
{
	req->cb = cb;
	return rayc__ctl_job_start(io->impl, async_run, async_done, req);
}

static raft_time io_time(struct raft_io *io)
{
	rayc__net *net = io->impl;

	return (raft_time)(clock_now(net->ctl, rayc__now_ns()) / 1000000);
}

static int io_random(struct raft_io *io, int min, int max)
{
	(void)io;
	if (max <= min)
		return min;
	return min + (int)randombytes_uniform((uint32_t)(max - min));
}

/* ---- handing received raft messages to raft ---- */

/* A message decoded by rayc__ctl_on_raft (ctl_codec.c). */
void rayc__ctl_run_recv(rayc__net *net, void *arg)
{
	rmsg *r = arg;
	rayc__ctl *ctl = net->ctl;

	/* A leader hears only the servers of its configuration: a member
	 * outside it has nothing to tell a leader, and an AppendEntries from
	 * one crashed libraft (fuzz_msgs).  Others hear any member: a
	 * follower behind a configuration change that added the leader must
	 * still take its entries to learn of it. */
	bool live = ctl->started && !ctl->closing && ctl->recv_cb != NULL;
	const struct raft_configuration *conf = &ctl->raft.configuration;
	bool in = live && (conf->n == 0 ||
	                   raft_state(&ctl->raft) != RAFT_LEADER);
	for (unsigned i = 0; live && i < conf->n && !in; i++)
		in = conf->servers[i].id == r->m.server_id;
	atomic_fetch_sub(&ctl->rx_pending, r->bytes);
	if (live && in && r->bytes > 0 && rayc__ctl_log_full(net)) {
		/* Lost, as far as raft knows (ctl_log.c). */
		atomic_fetch_add(&ctl->n_rx_dropped, 1);
		in = false;
	}
	if (live && in) {
		/* A follower that holds every entry an AppendEntries brings
		 * answers at once with its last stored index (libraft
		 * 0.15), which may lie beyond them: a stale tail of an old
		 * term, which the leader would count as replicated (the
		 * message may be cut short, ctl_codec.c, and raft trusts
		 * the answer up to its own last index).  So that answer
		 * claims no more than the message's end (io_send); an
		 * answer sent later, once new entries are stored, ends
		 * there anyway.  Likewise an InstallSnapshot answered at
		 * once: no further than the snapshot.  (Nor less than what
		 * this follower has committed: the leader holds that.) */
		if (r->m.type == RAFT_IO_APPEND_ENTRIES)
			ctl->answer_cap = r->m.append_entries.prev_log_index +
			                  r->m.append_entries.n_entries;
		else if (r->m.type == RAFT_IO_INSTALL_SNAPSHOT)
			ctl->answer_cap = r->m.install_snapshot.last_index;
		ctl->answer_to = r->m.server_id;
		/* raft owns the entries from here on. */
		ctl->recv_cb(&ctl->io, &r->m);
		ctl->answer_cap = 0;
	} else {
		rayc__ctl_free_msg(&r->m);
	}
	free(r);
}

/* ---- the raft_io table ---- */

/* libraft's I/O backend: the functions above (run_start, before
 * raft_init). */
void rayc__ctl_io_setup(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	ctl->io.version = 2;
	ctl->io.impl = net;
	ctl->clock_at = ctl->clock_base = rayc__now_ns();
	ctl->clock_step = INT64_MAX / 2; /* real time until raft starts */
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
	ctl->io.snapshot_put = rayc__ctl_io_snapshot_put;
	ctl->io.snapshot_get = rayc__ctl_io_snapshot_get;
	ctl->io.time = io_time;
	ctl->io.random = io_random;
	ctl->io.async_work = io_async_work;
}
