/* bulk.c -- the bulk thread: work whose time grows with an object's
 * size, kept off the connections' receive callbacks.
 *
 * A receive callback parses every frame of its connection in order, so
 * whatever one frame's handler costs, the frames behind it wait: making
 * room for a 1 GiB object (populating the arena: seconds on a VM that
 * charges for first touches) or hashing one in place held up that
 * peer's heartbeats and Raft messages past the heartbeat timeout, and a
 * busy peer was taken for dead.  Such handlers post a job here instead
 * and return; the job ends the work and sends what follows (FETCH to
 * go on).  One thread, jobs in posting order. */
#include "net/net_int.h"

static void *bulk_main(void *arg)
{
	rayc__net *net = arg;

	for (;;) {
		rayc__mutex_lock(&net->bulk_mu);
		rayc__bulk_job *j = net->bulk_head;
		net->bulk_head = net->bulk_tail = NULL;
		rayc__mutex_unlock(&net->bulk_mu);
		if (j == NULL) {
			if (atomic_load(&net->bulk_stop))
				return NULL;
			(void)rayc__event_wait(&net->bulk_ev, -1, 0);
			continue;
		}
		while (j != NULL) {
			rayc__bulk_job *next = j->next;
			/* Stopping: connections may be gone, send nothing. */
			j->fn(net, j, atomic_load(&net->bulk_stop) ||
			                      atomic_load(&net->stopping));
			j = next;
		}
	}
}

int rayc__bulk_start(rayc__net *net)
{
	rayc__mutex_init(&net->bulk_mu);
	int rc = rayc__thread_start(&net->bulk_th, bulk_main, net);
	if (rc != RAYC_OK) {
		rayc__mutex_fini(&net->bulk_mu);
		return rc;
	}
	net->bulk_started = true;
	return RAYC_OK;
}

void rayc__bulk_post(rayc__net *net, rayc__bulk_job *job)
{
	job->next = NULL;
	rayc__mutex_lock(&net->bulk_mu);
	if (net->bulk_tail != NULL)
		net->bulk_tail->next = job;
	else
		net->bulk_head = job;
	net->bulk_tail = job;
	rayc__mutex_unlock(&net->bulk_mu);
	rayc__event_set(&net->bulk_ev);
}

void rayc__bulk_stop(rayc__net *net)
{
	if (!net->bulk_started)
		return;
	atomic_store(&net->bulk_stop, true);
	rayc__event_set(&net->bulk_ev);
	rayc__thread_join(&net->bulk_th);
	net->bulk_started = false;
	rayc__mutex_fini(&net->bulk_mu);
}
