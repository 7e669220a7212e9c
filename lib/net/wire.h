/* wire.h -- rayc's one framing and its codec.
 *
 * Every message between peers is a frame: a 32-byte header and the
 * payload.  Integers are little endian.  The header:
 *
 *   0  magic "RYC1"     4  version   5  type   6  flags (u16)
 *   8  payload length (u32)          12 sender peer id (u32)
 *   16 check (16 bytes)
 *
 * The check depends on where the connection stands.  Handshake frames
 * (HELLO, AUTH, WELCOME, CONFIRM, REFUSED before the connection opens)
 * carry the xxh3 of the payload in bytes 16-23 and zeros in 24-31: it
 * catches accidents, not attackers, and nothing in them needs more
 * (cpace.h: the handshake's own MACs prove who is talking).  Every frame
 * after the handshake carries a Poly1305 tag in bytes 16-31, over header
 * bytes 0-15 and the payload, with a one-time key: the first 32 bytes
 * of block n mod 2^32 of ChaCha20(key of the direction, nonce = "otk"
 * and a zero byte, then n / 2^32 as u64 LE), n the frame's number.
 * (RFC 8439 2.6 takes block 0 of a stream per frame; one stream for
 * the keys of all frames gives the same keys' properties, and makes
 * them 16 at a time: one ChaCha20 block per frame on its own was 15%
 * of both peers' cycles in remote_tasks_async.)  The number is not sent: each
 * side counts the frames of a direction from 0, so a frame tampered
 * with, replayed, dropped or reordered fails its tag, and the
 * connection closes (the peers send again what was lost, relink.c).
 * A GROUP frame's payload is whole frames one after the other (their
 * own check bytes ignored), of the small data-plane types that come in
 * bursts (rayc__wire_groupable): one tag, one number, one one-time key
 * for all of them.  The receiver checks the GROUP's tag, then reads its
 * frames as if each had come alone; anything else in it (another type,
 * a length past its end, another sender) closes the connection.
 * The tag is computed over pieces in order (header, then the payload
 * where it lies: in the batch, or spliced from an object, or received
 * straight into its destination), so nothing is copied for it.  On a
 * connection that encrypts (RAYC_ENCRYPT, handshake.c) the payload is
 * first encrypted in place with ChaCha20(key of the direction, nonce = 4
 * zero bytes and the frame's number, u64 LE) from block 1 on (a nonce
 * the keys' stream never has; RFC 8439's AEAD construction without its
 * length block: the length is in the tagged header) and the tag covers
 * the ciphertext; payloads that
 * would be spliced are copied into the batch for it.  The header is
 * never encrypted.
 *
 * The writer grows a buffer; the reader never trusts a length: each get
 * checks what is left and marks the reader bad instead of reading past
 * the end, so a handler decodes everything first, checks
 * rd->bad once, and only then acts.
 */
#ifndef RAYC_NET_WIRE_H
#define RAYC_NET_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAYC__WIRE_MAGIC 0x31435952u /* "RYC1" */
/* 2: CPace, tagged frames; 3: peer keys; 4: SHM_OFFER carries the
 * object's fingerprint, no SHM_SUM; 5: TASK says what it is to an actor
 * (kind, actor id, concurrency); 6: KV_REQ and the control log have
 * put-if-absent and delete-if-equal (actor names), ACTOR_CTL; 7: bulk
 * lanes (LANE, RAYC__FETCH_LANE); 8: SHUTDOWN_ACK, the tags' one-time
 * keys from one stream per direction; 9: GROUP; 10: ACK. */
#define RAYC__WIRE_VERSION 10
#define RAYC__WIRE_HDR 32
/* Largest payload an authenticated peer may send; before authentication
 * only handshake-sized frames are accepted. */
#define RAYC__WIRE_MAX_FRAME ((size_t)256 << 20)
#define RAYC__WIRE_MAX_PREAUTH 512

enum rayc__msg {
	/* The handshake (handshake.c, cpace.h): */
	RAYC__MSG_HELLO = 1, /* server: nonce */
	RAYC__MSG_AUTH,      /* client: nonce, CPace share, peer id, gen */
	RAYC__MSG_WELCOME,   /* server: share, hidden ids and coordinator
	                        url, MAC */
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
	                        as /proc/<pid>/fd/<fd>, with this fingerprint
	                        (samehost.c) */
	RAYC__MSG_SHM_SUM,   /* retired (version 4): refused */
	RAYC__MSG_SHM_DONE,  /* fetcher -> holder: copied (or not): unpin */
	RAYC__MSG_CONFIRM,   /* client: its key confirmation MAC */
	RAYC__MSG_ACTOR_CTL, /* -> an actor's owner: kill it (actor_ctl.c) */
	RAYC__MSG_ACTOR_CTL_REP, /* owner -> asker: done, or not ours */
	RAYC__MSG_LANE,      /* holder -> fetcher: my bulk lane's port;
	                        executor -> owner: my task lane's (tlane.c) */
	RAYC__MSG_SHUTDOWN_ACK, /* -> whoever said SHUTDOWN: heard */
	RAYC__MSG_GROUP,     /* whole frames of the types below, under one
	                        tag (conn_tx.c: seal_locked) */
	RAYC__MSG_ACK,       /* owner -> executor: answers it has (xrec.c) */
	RAYC__MSG_MAX_
};

typedef struct rayc__whdr {
	uint32_t magic;
	uint8_t version, type;
	uint16_t flags;
	uint32_t len;
	uint32_t sender;
	uint64_t sum;   /* handshake frames: xxh3 of the payload */
	uint64_t spare; /* (after it: sum and spare hold the tag) */
} rayc__whdr;

#define RAYC__WIRE_TAG 16   /* bytes of a frame's Poly1305 tag */
#define RAYC__WIRE_LEN_AT 8  /* where the payload length sits */
#define RAYC__WIRE_TAG_AT 16 /* where the tag sits in the header */

/* One direction of an open connection: its key (from the handshake)
 * and the number of the next frame. */
#define RAYC__WIRE_OTKS 16 /* one-time keys made at once */
typedef struct rayc__wauth {
	unsigned char key[32];
	uint64_t ctr;
	bool enc; /* payloads encrypted too (the handshake chose it) */
	/* The one-time keys of frames otk_from to otk_from + otk_n - 1
	 * (each wiped once used), made under otk_key (wire.c: otk_of). */
	uint64_t otk_from;
	uint32_t otk_n;
	unsigned char otk_key[32];
	unsigned char otk[RAYC__WIRE_OTKS][64];
} rayc__wauth;

/* Writes the tag of the frame whose header (length filled in) is at hdr
 * and whose payload is a (an bytes) followed by b (bn bytes) into the
 * header, and counts the frame. */
void rayc__wire_seal(rayc__wauth *w, uint8_t *hdr, const void *a,
                     size_t an, const void *b, size_t bn);
/* Checks a received frame the same way and counts it; false if its tag
 * is not the one its number and bytes give. */
bool rayc__wire_check(rayc__wauth *w, const uint8_t *hdr, const void *a,
                      size_t an, const void *b, size_t bn);

/* The same for a connection that may encrypt (w->enc): the payload is
 * encrypted in place (ChaCha20 under the direction's key, the frame's
 * number as nonce, from block 1: block 0 gives the tag's one-time key),
 * then tagged; all of it in one piece, a. */
void rayc__wire_seal_x(rayc__wauth *w, uint8_t *hdr, uint8_t *a, size_t an);
/* Checks a received frame (its payload a then b), counts it and, on a
 * connection that encrypts, decrypts both pieces in place. */
bool rayc__wire_open(rayc__wauth *w, const uint8_t *hdr, uint8_t *a,
                     size_t an, uint8_t *b, size_t bn);
/* Decrypts n bytes at p, which sit at offset off of the payload of the
 * next frame to be received (not counted, not checked: only to read a
 * CHUNK's sub-header before its payload arrives).  Nothing to do unless
 * w->enc. */
void rayc__wire_peek(const rayc__wauth *w, uint8_t *p, size_t n,
                     size_t off);

/* Whether a frame of this type may travel in a GROUP: TASK, TASK_DONE,
 * FREE, BORROW_ADD, BORROW_DEL, FETCH, MISSING. */
static inline bool rayc__wire_groupable(int type)
{
	return type == RAYC__MSG_TASK || type == RAYC__MSG_TASK_DONE ||
	       type == RAYC__MSG_FREE || type == RAYC__MSG_BORROW_ADD ||
	       type == RAYC__MSG_BORROW_DEL || type == RAYC__MSG_FETCH ||
	       type == RAYC__MSG_MISSING;
}

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
/* Writes a header at h (RAYC__WIRE_HDR bytes): this version, type,
 * payload length len, sender, check bytes zero. */
void rayc__whdr_put(uint8_t *h, int type, uint32_t sender, uint32_t len);
/* Starts a frame (header placeholder); returns its offset. */
size_t rayc__w_frame_begin(rayc__wbuf *b, int type, uint32_t sender);
/* Fills in length and checksum of the frame started at off. */
void rayc__w_frame_end(rayc__wbuf *b, size_t off);
/* Fills in only the length of a frame whose payload goes on with n bytes
 * sent from where they are (not copied into b), for a frame tagged
 * (rayc__wire_seal) over its pieces. */
void rayc__w_frame_end_len(rayc__wbuf *b, size_t off, size_t n);
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
