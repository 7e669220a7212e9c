/* ctl_codec.c -- raft messages as RAFT frames: encoding what raft sends
 * (for io_send in ctl_io.c) and decoding what arrives (rayc__ctl_on_raft,
 * which posts the message to raft).
 */
#include <stdlib.h>
#include <string.h>

#include <raft.h>

#include "net/ctl_int.h"

#define RAFT_MSG_CAP ((size_t)4 << 20) /* log bytes in one AppendEntries */

/* InstallSnapshot up to its data. */
static void snapshot_head(rayc__wbuf *b, const struct raft_install_snapshot *a)
{
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
}

bool rayc__ctl_encode_snapshot_head(rayc__wbuf *b, uint32_t self,
                                    const struct raft_message *m, size_t n)
{
	size_t f = rayc__w_frame_begin(b, RAYC__MSG_RAFT, self);

	rayc__w_u8(b, (uint8_t)m->type);
	snapshot_head(b, &m->install_snapshot);
	rayc__w_u64(b, n);
	rayc__w_frame_end_len(b, f, n);
	return !b->bad;
}

/* raft sends a lagging peer everything it lacks in one message; send
 * the first 4 MiB of it (at least one entry).  The follower answers how
 * far it got, and the leader sends on from there (io_send, ctl_io.c,
 * keeps libraft from counting the rest as sent).  Each MiB is copied
 * here and twice more by the follower (libraft's copy of what it
 * receives, the KV's), all on loop threads, mostly into memory never
 * touched: one 16 MiB message held a loop for up to 250 ms (13,000 page
 * faults) while the KV filled with 1 MiB values; 4 MiB, ~110 ms. */
unsigned rayc__ctl_append_fit(const struct raft_append_entries *a)
{
	unsigned n = 0;
	size_t bytes = 0;

	while (n < a->n_entries &&
	       (n == 0 || bytes + a->entries[n].buf.len <= RAFT_MSG_CAP))
		bytes += a->entries[n++].buf.len;
	return n;
}

/* A raft message as a RAFT frame. */
bool rayc__ctl_encode_msg(rayc__wbuf *b, uint32_t self,
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
		unsigned n = rayc__ctl_append_fit(a);
		size_t bytes = 0;
		for (unsigned i = 0; i < n; i++)
			bytes += a->entries[i].buf.len;
		/* In one allocation: a buffer grown by doubling copies
		 * megabytes of entries over and over (on the loop). */
		(void)rayc__wbuf_reserve(b, 8 * 4 + 4 + (size_t)n * 17 + bytes);
		rayc__w_u64(b, a->term);
		rayc__w_u64(b, a->prev_log_index);
		rayc__w_u64(b, a->prev_log_term);
		/* A follower commits up to leader_commit within what it
		 * stores, which past the entries sent may be a stale tail
		 * of an old term: with fewer entries sent, commit no
		 * further than the last of them. */
		uint64_t commit = a->leader_commit;
		if (n < a->n_entries && commit > a->prev_log_index + n)
			commit = a->prev_log_index + n;
		rayc__w_u64(b, commit);
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
		snapshot_head(b, a);
		rayc__w_blob(b, a->data.base, a->data.len);
		break;
	}
	default:
		return false;
	}
	rayc__w_frame_end(b, f);
	return !b->bad;
}

/* ---- receiving raft messages ---- */

void rayc__ctl_free_msg(struct raft_message *m)
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

/* Decodes AppendEntries' entries into one raft_malloc'd batch (raft
 * frees entries[0].batch and the array), of *bytes in all. */
static bool decode_entries(rayc__rd *rd, struct raft_append_entries *a,
                           size_t *bytes)
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
	*bytes = total;
	return true;
}

void rayc__ctl_on_raft(rayc__conn *c, rayc__rd *rd)
{
	rayc__net *net = c->net;

	if (net->ctl->deaf)
		return; /* a test's stuck peer (RAYC__DEAF_RAFT) */
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
		ok = decode_entries(rd, a, &r->bytes);
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
	/* A candidate votes for itself under the id it proved, and only
	 * members (c->peer is bound to one) speak Raft at all. */
	if (ok && m->type == RAFT_IO_REQUEST_VOTE &&
	    m->request_vote.candidate_id != c->peer)
		ok = false;
	rayc__mutex_lock(&net->mu);
	bool member = c->peer != 0 && net->peers[c->peer].known &&
	              atomic_load(&c->verified);
	rayc__mutex_unlock(&net->mu);
	if (!ok || !member || rd->bad || rayc__rd_left(rd) != 0) {
		rayc__ctl_free_msg(m);
		free(r);
		rayc__conn_close(c, "bad RAFT frame");
		return;
	}
	if (m->type == RAFT_IO_APPEND_ENTRIES) {
		/* The loop thread is behind (a starved peer catching
		 * up): lost, like a message the network dropped; the
		 * leader sends it again. */
		size_t was = atomic_fetch_add(&net->ctl->rx_pending, r->bytes);
		if (r->bytes > 0 && was + r->bytes > RAYC__CTL_RX_BYTES &&
		    was > 0) {
			atomic_fetch_sub(&net->ctl->rx_pending, r->bytes);
			atomic_fetch_add(&net->ctl->n_rx_dropped, 1);
			rayc__ctl_free_msg(m);
			free(r);
			return;
		}
	}
	rayc__ctl_post(net, &r->post, rayc__ctl_run_recv, r);
}
