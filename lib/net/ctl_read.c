/* ctl_read.c -- linearizable reads of the control store (Raft
 * dissertation 6.4, the read index): the coordinator answers a read from
 * its copy only once a barrier appended after the read came in has
 * committed in its term.  A majority of voters accepted this leader after
 * the read arrived, so no newer leader can have committed a write the
 * copy lacks; a deposed leader that does not know it yet (a stopped
 * process, a cut link) never gets there.  One barrier serves every read
 * that came in while the previous one was in flight.  Loop thread only.
 */
#include <stdlib.h>

#include <raft.h>

#include "net/ctl_int.h"

static void reads_answer(read_req *l, int rc)
{
	while (l != NULL) {
		read_req *n = l->next;
		l->done(rc, l->arg);
		free(l);
		l = n;
	}
}

static void read_barrier_cb(struct raft_barrier *req, int status)
{
	rayc__net *net = req->data;
	rayc__ctl *ctl = net->ctl;
	read_req *l = ctl->reads_wait;

	ctl->reads_wait = NULL;
	ctl->read_pending = false;
	/* Committed in our term: we led after every read in l arrived, and
	 * (the callback runs once the barrier is applied) our copy holds
	 * every write acknowledged before it. */
	reads_answer(l, status == 0 ? RAYC_OK : RAYC__RETRY);
}

void rayc__ctl_reads_step(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;

	if (ctl->reads_next == NULL || ctl->read_pending)
		return;
	read_req *l = ctl->reads_next;
	ctl->reads_next = NULL;
	int rv = RAFT_NOTLEADER;
	if (rayc__ctl_is_leader(net)) {
		ctl->reads_wait = l;
		ctl->read_pending = true;
		ctl->read_barrier.data = net;
		rv = raft_barrier(&ctl->raft, &ctl->read_barrier,
		                  read_barrier_cb);
		if (rv != 0) {
			ctl->reads_wait = NULL;
			ctl->read_pending = false;
		}
	}
	if (rv != 0)
		reads_answer(l, rv == RAFT_NOMEM ? RAYC_ENOMEM : RAYC__RETRY);
}

int rayc__ctl_read(rayc__net *net, rayc__ctl_done done, void *arg)
{
	rayc__ctl *ctl = net->ctl;

	if (!rayc__ctl_ready(net))
		return RAYC__RETRY;
	read_req *q = malloc(sizeof(*q));
	if (q == NULL)
		return RAYC_ENOMEM;
	q->done = done;
	q->arg = arg;
	q->next = ctl->reads_next;
	ctl->reads_next = q;
	return RAYC_OK; /* rayc__ctl_after starts the barrier */
}

/* raft_close fails the barrier in flight; these never got one. */
void rayc__ctl_reads_close(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	read_req *l = ctl->reads_next;

	ctl->reads_next = NULL;
	reads_answer(l, RAYC__RETRY);
}
