/* wire.h -- rayc's one framing and its codec.
 *
 * Every message between peers is a frame: a 32-byte header (magic,
 * version, type, flags, payload length, sender peer id, xxh3 of the
 * payload, a spare 64-bit field) and the payload.  Integers are little
 * endian.  The writer grows a buffer; the reader never trusts a length:
 * each get checks what is left and marks the reader bad instead of
 * reading past the end, so a handler decodes everything first, checks
 * rd->bad once, and only then acts.
 */
#ifndef RAYC_NET_WIRE_H
#define RAYC_NET_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAYC__WIRE_MAGIC 0x31435952u /* "RYC1" */
#define RAYC__WIRE_VERSION 1
#define RAYC__WIRE_HDR 32
/* Largest payload an authenticated peer may send; before authentication
 * only handshake-sized frames are accepted. */
#define RAYC__WIRE_MAX_FRAME ((size_t)256 << 20)
#define RAYC__WIRE_MAX_PREAUTH 512

enum rayc__msg {
	RAYC__MSG_HELLO = 1, /* server: nonce */
	RAYC__MSG_AUTH,      /* client: nonce, mac, peer id, url */
	RAYC__MSG_WELCOME,   /* server: mac, ids, coordinator url */
	RAYC__MSG_REFUSED,   /* either side: reason, then close */
	RAYC__MSG_JOIN,      /* new peer -> coordinator */
	RAYC__MSG_JOINED,    /* coordinator -> new peer: its id */
	RAYC__MSG_MEMBERS,   /* coordinator -> all: live members' load */
	RAYC__MSG_HEARTBEAT, /* peer -> coordinator: free resources, counts */
	RAYC__MSG_LEAVE,     /* peer -> coordinator: clean exit */
	RAYC__MSG_SHUTDOWN,  /* coordinator -> all: the cluster ends */
	RAYC__MSG_TASK,      /* owner -> executor */
	RAYC__MSG_TASK_DONE, /* executor -> owner */
	RAYC__MSG_FETCH,     /* want an object's bytes */
	RAYC__MSG_CHUNK,     /* a piece of an object */
	RAYC__MSG_MISSING,   /* no copy here (maybe: try that peer) */
	RAYC__MSG_FREE,      /* owner -> holder: drop these copies */
	RAYC__MSG_BORROW_ADD,
	RAYC__MSG_BORROW_DEL,
	RAYC__MSG_KV_REQ,
	RAYC__MSG_KV_REP,
	RAYC__MSG_RAFT,      /* a Raft message of the control store */
	RAYC__MSG_REMOVED,   /* to a peer the cluster removed: you are out */
	RAYC__MSG_SHM_OFFER, /* holder -> fetcher on one host: the object is
	                        pinned at (offset, len) in my arena, reached
	                        as /proc/<pid>/fd/<fd> (samehost.c) */
	RAYC__MSG_SHM_SUM,   /* holder -> fetcher: that object's xxh3 */
	RAYC__MSG_SHM_DONE,  /* fetcher -> holder: copied (or not): unpin */
	RAYC__MSG_MAX_
};

typedef struct rayc__whdr {
	uint32_t magic;
	uint8_t version, type;
	uint16_t flags;
	uint32_t len;
	uint32_t sender;
	uint64_t sum;
	uint64_t spare;
} rayc__whdr;

/* Parses and checks a header (magic, version, type, len <= max). */
bool rayc__whdr_parse(const uint8_t *p, size_t max_len, rayc__whdr *h);

/* A growable output buffer.  On allocation failure it marks itself bad
 * and stops writing; the caller checks bad before sending. */
typedef struct rayc__wbuf {
	uint8_t *p;
	size_t len, cap;
	bool bad;
} rayc__wbuf;

void rayc__wbuf_fini(rayc__wbuf *b);
bool rayc__wbuf_reserve(rayc__wbuf *b, size_t more);
void rayc__w_bytes(rayc__wbuf *b, const void *p, size_t n);
void rayc__w_u8(rayc__wbuf *b, uint8_t v);
void rayc__w_u32(rayc__wbuf *b, uint32_t v);
void rayc__w_u64(rayc__wbuf *b, uint64_t v);
void rayc__w_str(rayc__wbuf *b, const char *s); /* u32 length + bytes */
void rayc__w_blob(rayc__wbuf *b, const void *p, size_t n); /* u64 len */
/* Starts a frame (header placeholder); returns its offset. */
size_t rayc__w_frame_begin(rayc__wbuf *b, int type, uint32_t sender);
/* Fills in length and checksum of the frame started at off. */
void rayc__w_frame_end(rayc__wbuf *b, size_t off);
/* The same for a frame whose payload goes on with n bytes at ext that
 * are sent from where they are (not copied into b). */
void rayc__w_frame_end_ext(rayc__wbuf *b, size_t off, const void *ext,
                           size_t n);
/* A frame's checksum: xxh3 of its payload (AVX2 where the CPU has it). */
uint64_t rayc__wire_sum(const void *p, size_t n);
/* The same over two byte ranges one after the other (a payload that
 * arrived in two places). */
uint64_t rayc__wire_sum2(const void *a, size_t an, const void *b,
                         size_t bn);

/* A bounds-checked reader over one payload. */
typedef struct rayc__rd {
	const uint8_t *p;
	size_t n, off;
	bool bad;
} rayc__rd;

static inline void rayc__rd_init(rayc__rd *r, const void *p, size_t n)
{
	r->p = p;
	r->n = n;
	r->off = 0;
	r->bad = false;
}
const void *rayc__r_bytes(rayc__rd *r, size_t n); /* NULL if short */
uint8_t rayc__r_u8(rayc__rd *r);
uint32_t rayc__r_u32(rayc__rd *r);
uint64_t rayc__r_u64(rayc__rd *r);
/* A string: copies at most cap-1 bytes into out, NUL-terminated; bad if
 * longer than cap-1 or if it holds a NUL. */
void rayc__r_str(rayc__rd *r, char *out, size_t cap);
/* A blob: pointer into the payload and its length. */
const void *rayc__r_blob(rayc__rd *r, size_t *n);
static inline size_t rayc__rd_left(const rayc__rd *r)
{
	return r->bad ? 0 : r->n - r->off;
}

#endif /* RAYC_NET_WIRE_H */
