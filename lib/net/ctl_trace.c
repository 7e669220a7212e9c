/* ctl_trace.c -- the Raft state told in the log: at debug level, every
 * change of term, role, leader or configuration on this peer (what an
 * election that does not happen needs explained: who votes, in whose
 * view, with which change in flight); and the configuration in words for
 * the message of a peer that finds itself cut off.  Loop thread only.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <raft.h>

#include "net/ctl_int.h"

static const char *state_name(int s)
{
	switch (s) {
	case RAFT_FOLLOWER: return "follower";
	case RAFT_CANDIDATE: return "candidate";
	case RAFT_LEADER: return "leader";
	default: return "unavailable";
	}
}

static void add(char *buf, size_t len, size_t *o, const char *fmt, ...)
{
	va_list ap;

	if (*o >= len)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(buf + *o, len - *o, fmt, ap);
	va_end(ap);
	if (n > 0)
		*o += (size_t)n;
}

/* "voters 2,3,4(dead) standbys 5 spares 6": the configuration as this
 * peer holds it (committed or not), the members it knows dead, or does
 * not know, marked. */
void rayc__ctl_conf_desc(rayc__net *net, char *buf, size_t len)
{
	const struct raft_configuration *conf = &net->ctl->raft.configuration;
	static const int roles[3] = { RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE };
	static const char *const names[3] = { "voters", "standbys", "spares" };
	size_t o = 0;

	buf[0] = '\0';
	for (int k = 0; k < 3; k++) {
		bool first = true;
		for (unsigned i = 0; i < conf->n; i++) {
			const struct raft_server *s = &conf->servers[i];
			if (s->role != roles[k])
				continue;
			bool alive = false;
			if (s->id < RAYC__MAX_PEERS) {
				rayc__mutex_lock(&net->mu);
				alive = net->peers[s->id].known &&
				        net->peers[s->id].alive;
				rayc__mutex_unlock(&net->mu);
			}
			if (first)
				add(buf, len, &o, "%s%s ", o > 0 ? " " : "",
				    names[k]);
			add(buf, len, &o, "%s%llu%s", first ? "" : ",",
			    (unsigned long long)s->id, alive ? "" : "(dead)");
			first = false;
		}
	}
	if (o == 0)
		snprintf(buf, len, "none");
}

/* From rayc__ctl_after: tells what changed since the last call.  The
 * time is CLOCK_MONOTONIC's, the same in every process of a host, so the
 * lines of several peers' logs fall in order. */
void rayc__ctl_trace(rayc__net *net)
{
	rayc__ctl *ctl = net->ctl;
	struct raft *r = &ctl->raft;
	raft_id lid = 0;
	const char *laddr = NULL;

	if (!rayc__log_enabled(RAYC_LOG_DEBUG))
		return;
	raft_leader(r, &lid, &laddr);
	rayc__ctl_seen *t = &ctl->traced;
	if (t->term == r->current_term && t->state == raft_state(r) &&
	    t->leader == lid && t->conf == r->configuration_index &&
	    t->unc == r->configuration_uncommitted_index &&
	    t->changing == ctl->changing)
		return;
	t->term = r->current_term;
	t->state = raft_state(r);
	t->leader = lid;
	t->conf = r->configuration_index;
	t->unc = r->configuration_uncommitted_index;
	t->changing = ctl->changing;
	char desc[256];
	rayc__ctl_conf_desc(net, desc, sizeof(desc));
	rayc__log(RAYC_LOG_DEBUG, "RAYC-CTL-STATE",
	          "peer %u at %lld ms: term %llu, %s, leader %llu, voted "
	          "for %llu; configuration %s (committed at %llu, "
	          "uncommitted at %llu%s); commit %llu, applied %llu, last "
	          "log %llu",
	          net->self, (long long)(rayc__now_ns() / 1000000),
	          (unsigned long long)r->current_term,
	          state_name(raft_state(r)), (unsigned long long)lid,
	          (unsigned long long)r->voted_for, desc,
	          (unsigned long long)r->configuration_index,
	          (unsigned long long)r->configuration_uncommitted_index,
	          ctl->changing ? ", a change of ours in flight" : "",
	          (unsigned long long)r->commit_index,
	          (unsigned long long)r->last_applied,
	          (unsigned long long)raft_last_index(r));
}
