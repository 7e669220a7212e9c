/* samples.c -- well-formed payloads of every message type (samples.h),
 * written with the codec where lib/net has an encoder for it and by
 * the layout its decoder reads otherwise. */
#include <string.h>

#include <raft.h>

#include "net/ctl_int.h"
#include "net/remote_int.h"
#include "rt.h"
#include "samples.h"

static void nop(rayc_ctx *ctx)
{
	(void)ctx;
}

static fuzz_sample *add(fuzz_sample *s, int *n, int max, int type,
                        const char *name)
{
	if (*n == max)
		return NULL;
	fuzz_sample *x = &s[(*n)++];
	memset(x, 0, sizeof(*x));
	x->type = type;
	x->name = name;
	return x;
}

/* A raft message as ctl_codec.c writes it, without its frame header. */
static void raft_msg(fuzz_sample *x, const struct raft_message *m)
{
	rayc__wbuf f = { 0 };

	if (rayc__ctl_encode_msg(&f, 1, m) && f.len >= RAYC__WIRE_HDR)
		rayc__w_bytes(&x->p, f.p + RAYC__WIRE_HDR,
		              f.len - RAYC__WIRE_HDR);
	rayc__wbuf_fini(&f);
}

/* A control store snapshot: magic, members, KV (one key), dedup. */
static void snapshot(rayc__net *net, rayc__wbuf *b)
{
	rayc__wbuf m = { 0 };

	rayc__mutex_lock(&net->mu);
	rayc__net_write_members_locked(net, &m);
	rayc__mutex_unlock(&net->mu);
	rayc__w_u32(b, 0x334e5352u);
	rayc__w_u64(b, m.len);
	rayc__w_bytes(b, m.p, m.len);
	rayc__w_u64(b, 4 + 4 + 3 + 8 + 5);
	rayc__w_u32(b, 1);
	rayc__w_u32(b, 3);
	rayc__w_bytes(b, "key", 3);
	rayc__w_blob(b, "value", 5);
	rayc__w_u32(b, 1); /* dedup: one write of client 2 */
	rayc__w_u32(b, 2);
	rayc__w_u64(b, 1);
	rayc__w_u32(b, 0);
	rayc__wbuf_fini(&m);
}

static void raft_samples(rayc__net *net, fuzz_sample *s, int *n, int max,
                         uint32_t from)
{
	struct raft_message m;
	struct raft_entry es[2];
	rayc__wbuf e1 = { 0 }, e2 = { 0 }, snap = { 0 };
	fuzz_sample *x;

	memset(&m, 0, sizeof(m));
	m.type = RAFT_IO_REQUEST_VOTE;
	m.request_vote = (struct raft_request_vote){ .term = 1,
		.candidate_id = from, .last_log_index = 1, .last_log_term = 1 };
	if ((x = add(s, n, max, RAYC__MSG_RAFT, "raft_vote")) != NULL)
		raft_msg(x, &m);
	m.type = RAFT_IO_REQUEST_VOTE_RESULT;
	m.request_vote_result = (struct raft_request_vote_result){ .term = 1 };
	if ((x = add(s, n, max, RAYC__MSG_RAFT, "raft_vote_result")) != NULL)
		raft_msg(x, &m);
	/* Two entries: a member added, a KV write. */
	int64_t total[RAYC__MAX_RES] = { 0 };
	unsigned char pk[RAYC__ID_PK] = { 1 };
	rayc__ctl_cmd_add(net, &e1, from, 9, true, 1, "tcp://127.0.0.1:9",
	                  total, pk);
	rayc__ctl_cmd_kv(&e2, RAYC__KV_PUT, from, 1, "key", "value", 5);
	memset(es, 0, sizeof(es));
	es[0] = (struct raft_entry){ .term = 1, .type = RAFT_COMMAND,
		.buf = { .base = e1.p, .len = e1.len } };
	es[1] = (struct raft_entry){ .term = 1, .type = RAFT_COMMAND,
		.buf = { .base = e2.p, .len = e2.len } };
	m.type = RAFT_IO_APPEND_ENTRIES;
	m.append_entries = (struct raft_append_entries){ .term = 1,
		.prev_log_index = 1, .prev_log_term = 1, .leader_commit = 3,
		.entries = es, .n_entries = 2 };
	if ((x = add(s, n, max, RAYC__MSG_RAFT, "raft_append")) != NULL)
		raft_msg(x, &m);
	m.type = RAFT_IO_APPEND_ENTRIES_RESULT;
	m.append_entries_result = (struct raft_append_entries_result){
		.term = 1, .last_log_index = 1 };
	if ((x = add(s, n, max, RAYC__MSG_RAFT, "raft_append_result")) != NULL)
		raft_msg(x, &m);
	m.type = RAFT_IO_TIMEOUT_NOW;
	m.timeout_now = (struct raft_timeout_now){ .term = 1 };
	if ((x = add(s, n, max, RAYC__MSG_RAFT, "raft_timeout_now")) != NULL)
		raft_msg(x, &m);
	snapshot(net, &snap);
	m.type = RAFT_IO_INSTALL_SNAPSHOT;
	memset(&m.install_snapshot, 0, sizeof(m.install_snapshot));
	m.install_snapshot.term = 1;
	m.install_snapshot.last_index = 5;
	m.install_snapshot.last_term = 1;
	m.install_snapshot.conf_index = 1;
	raft_configuration_init(&m.install_snapshot.conf);
	(void)raft_configuration_add(&m.install_snapshot.conf, 1,
	                             "tcp://127.0.0.1:1", RAFT_VOTER);
	m.install_snapshot.data.base = snap.p;
	m.install_snapshot.data.len = snap.len;
	if ((x = add(s, n, max, RAYC__MSG_RAFT, "raft_snapshot")) != NULL)
		raft_msg(x, &m);
	raft_configuration_close(&m.install_snapshot.conf);
	rayc__wbuf_fini(&e1);
	rayc__wbuf_fini(&e2);
	rayc__wbuf_fini(&snap);
}

/* The data plane's messages, by the layouts their decoders read. */
static void data_samples(rayc__rt *rt, fuzz_sample *s, int *n, int max,
                         uint32_t from)
{
	rayc_object_id id = { .hi = (uint64_t)from << 48 | 1, .lo = 7 };
	fuzz_sample *x;

	if ((x = add(s, n, max, RAYC__MSG_TASK, "task")) != NULL) {
		rayc__w_u64(&x->p, 11); /* task id (its low 16 bits clear) */
		rayc__w_u64(&x->p, (uint64_t)12 << 16);
		rayc__w_u32(&x->p, 1);  /* dispatch */
		rayc__w_str(&x->p, FUZZ_TASK_FN);
		rayc__w_u32(&x->p, 0);  /* attempt */
		rayc__w_u32(&x->p, 0);  /* max retries */
		rayc__w_u8(&x->p, 0);
		rayc__w_u8(&x->p, 0);   /* not an actor's */
		rayc__w_u32(&x->p, 1);  /* returns */
		rayc__w_u8(&x->p, 1);   /* demands */
		rayc__w_str(&x->p, "CPU");
		rayc__w_u64(&x->p, 1000);
		rayc__w_u32(&x->p, 3);  /* args: i64, bytes, ref */
		rayc__w_u8(&x->p, RAYC_TYPE_I64);
		rayc__w_u64(&x->p, 42);
		rayc__w_u8(&x->p, RAYC_TYPE_BYTES);
		rayc__w_blob(&x->p, "arg", 3);
		rayc__w_u8(&x->p, RAYC_TYPE_REF);
		rayc__w_oid(&x->p, id);
		rayc__w_u32(&x->p, from); /* owner */
		rayc__w_u32(&x->p, from); /* where it is */
		rayc__w_u8(&x->p, 1);     /* inline */
		rayc__w_u8(&x->p, RAYC_TYPE_BYTES);
		rayc__w_blob(&x->p, "inline", 6);
	}
	if ((x = add(s, n, max, RAYC__MSG_TASK_DONE, "task_done")) != NULL) {
		rayc__w_u64(&x->p, 11);
		rayc__w_u64(&x->p, 12);
		rayc__w_u32(&x->p, 1);
		rayc__w_u8(&x->p, 0); /* not failed */
		rayc__w_u32(&x->p, 1);
		rayc__w_u8(&x->p, 1); /* inline */
		rayc__w_u8(&x->p, RAYC_TYPE_I64);
		rayc__w_blob(&x->p, "\x2a\0\0\0\0\0\0\0", 8);
	}
	if ((x = add(s, n, max, RAYC__MSG_TASK_DONE, "task_failed")) != NULL) {
		rayc__w_u64(&x->p, 11);
		rayc__w_u64(&x->p, 12);
		rayc__w_u32(&x->p, 1);
		rayc__w_u8(&x->p, 1); /* failed */
		rayc__w_u32(&x->p, RAYC_ELOST);
		rayc__w_str(&x->p, "lost");
	}
	if ((x = add(s, n, max, RAYC__MSG_ACK, "ack")) != NULL) {
		rayc__w_u32(&x->p, 2);
		rayc__w_u64(&x->p, 11); /* the task above, */
		rayc__w_u64(&x->p, (uint64_t)12 << 16);
		rayc__w_u32(&x->p, 1);
		rayc__w_u64(&x->p, 11); /* and one never sent */
		rayc__w_u64(&x->p, 99);
		rayc__w_u32(&x->p, 7);
	}
	if ((x = add(s, n, max, RAYC__MSG_FETCH, "fetch")) != NULL) {
		rayc__w_oid(&x->p, id);
		rayc__w_u32(&x->p, RAYC__FETCH_GO);
	}
	if ((x = add(s, n, max, RAYC__MSG_CHUNK, "chunk")) != NULL) {
		rayc__w_oid(&x->p, id);
		rayc__w_u64(&x->p, 5); /* total */
		rayc__w_u64(&x->p, 0); /* offset */
		rayc__w_u8(&x->p, RAYC_TYPE_BYTES);
		rayc__w_bytes(&x->p, "bytes", 5);
	}
	if ((x = add(s, n, max, RAYC__MSG_MISSING, "missing")) != NULL) {
		rayc__w_oid(&x->p, id);
		rayc__w_u32(&x->p, 0); /* no redirect */
	}
	static const int refs[] = { RAYC__MSG_FREE, RAYC__MSG_BORROW_ADD,
		                    RAYC__MSG_BORROW_DEL, RAYC__MSG_SHM_DONE };
	static const char *const ref_names[] = { "free", "borrow_add",
		                                 "borrow_del", "shm_done" };
	for (int i = 0; i < 4; i++)
		if ((x = add(s, n, max, refs[i], ref_names[i])) != NULL)
			rayc__w_oid(&x->p, id);
	if ((x = add(s, n, max, RAYC__MSG_SHM_OFFER, "shm_offer")) != NULL) {
		rayc__w_oid(&x->p, id);
		rayc__w_u8(&x->p, RAYC_TYPE_BYTES);
		rayc__w_u64(&x->p, 5);      /* len */
		rayc__w_u64(&x->p, 4096);   /* offset */
		rayc__w_u32(&x->p, 999999); /* pid, fd: nobody's */
		rayc__w_u32(&x->p, 3);
		rayc__w_u64(&x->p, 1 << 20); /* size, dev, ino */
		rayc__w_u64(&x->p, 1);
		rayc__w_u64(&x->p, 1);
		rayc__w_u64(&x->p, 0x1234); /* fingerprint */
	}
	(void)rt;
}

/* Membership and KV. */
static void member_samples(rayc__net *net, fuzz_sample *s, int *n, int max)
{
	rayc__rt *rt = net->rt;
	fuzz_sample *x;

	if ((x = add(s, n, max, RAYC__MSG_JOINED, "joined")) != NULL) {
		rayc__w_u32(&x->p, 0);
		rayc__w_str(&x->p, "try again");
		rayc__w_u32(&x->p, RAYC_EINVAL);
	}
	if ((x = add(s, n, max, RAYC__MSG_MEMBERS, "members")) != NULL) {
		rayc__w_u64(&x->p, 1); /* term */
		rayc__mutex_lock(&net->mu);
		rayc__net_write_members_locked(net, &x->p);
		rayc__mutex_unlock(&net->mu);
	}
	if ((x = add(s, n, max, RAYC__MSG_HEARTBEAT, "heartbeat")) != NULL) {
		rayc__w_u64(&x->p, 3); /* executed */
		rayc__w_u64(&x->p, 1); /* queued */
		rayc__net_write_res(rt, &x->p, rt->res_total, rt->res_total);
	}
	if ((x = add(s, n, max, RAYC__MSG_KV_REQ, "kv_put")) != NULL) {
		rayc__w_u64(&x->p, 1); /* rpc */
		rayc__w_u64(&x->p, 1); /* req */
		rayc__w_u8(&x->p, RAYC__KV_PUT);
		rayc__w_str(&x->p, "key");
		rayc__w_blob(&x->p, "value", 5);
	}
	if ((x = add(s, n, max, RAYC__MSG_KV_REQ, "kv_get")) != NULL) {
		rayc__w_u64(&x->p, 2);
		rayc__w_u64(&x->p, 0);
		rayc__w_u8(&x->p, RAYC__KV_GET);
		rayc__w_str(&x->p, "key");
		rayc__w_blob(&x->p, "", 0);
	}
	if ((x = add(s, n, max, RAYC__MSG_KV_REP, "kv_rep")) != NULL) {
		rayc__w_u64(&x->p, 1);
		rayc__w_u32(&x->p, RAYC_OK);
		rayc__w_blob(&x->p, "value", 5);
	}
	if ((x = add(s, n, max, RAYC__MSG_KV_REQ, "kv_putnx")) != NULL) {
		rayc__w_u64(&x->p, 3);
		rayc__w_u64(&x->p, 2);
		rayc__w_u8(&x->p, RAYC__KV_PUTNX);
		rayc__w_str(&x->p, RAYC__NAME_PREFIX "n");
		rayc__w_blob(&x->p, "value", 5);
	}
	if ((x = add(s, n, max, RAYC__MSG_ACTOR_CTL, "actor_ctl")) != NULL) {
		rayc__w_u64(&x->p, 1); /* rpc */
		rayc__w_u8(&x->p, RAYC__ACTOR_CTL_KILL);
		rayc__w_u64(&x->p, 1); /* actor id */
		rayc__w_u64(&x->p, 2);
	}
	if ((x = add(s, n, max, RAYC__MSG_ACTOR_CTL_REP, "actor_ctl_rep")) !=
	    NULL) {
		rayc__w_u64(&x->p, 1);
		rayc__w_u32(&x->p, RAYC_OK);
	}
	if ((x = add(s, n, max, RAYC__MSG_REFUSED, "refused")) != NULL)
		rayc__w_str(&x->p, "no");
}

int fuzz_samples(fuzz_sample *s, int max, uint32_t from)
{
	rayc__rt *rt = rayc__g;
	int n = 0;

	if (rt == NULL)
		return 0;
	rayc__net *net = rayc__net_get(rt);
	if (net == NULL)
		return 0;
	(void)rayc_register(FUZZ_TASK_FN, nop);
	raft_samples(net, s, &n, max, from);
	data_samples(rt, s, &n, max, from);
	member_samples(net, s, &n, max);
	rayc__net_put(net);
	return n;
}

void fuzz_samples_free(fuzz_sample *s, int n)
{
	for (int i = 0; i < n; i++)
		rayc__wbuf_fini(&s[i].p);
}
