/* lane_int.h -- what the files of bulk lanes share (lane.c: the
 * lanes' tables, keys and life cycle; lane_fetch.c: the fetcher's end;
 * lane_hold.c: the holder's end).  The design is at the top of lane.c.
 */
#ifndef RAYC_NET_LANE_INT_H
#define RAYC_NET_LANE_INT_H

#include <sys/socket.h>

#include "net/remote_int.h"

#define LANE_MAGIC "RAYCLANE"
#define TLANE_MAGIC "RAYCTASK" /* a dialer's hello for a task lane */
#define LANE_VERSION 1u
#define HELLO_H 32  /* magic, version, holder id, nonce_h */
#define HELLO_F 64  /* magic, fetcher id, holder id, nonce_f, mac */
#define NONCE 16
#define MAC 32

enum { LANE_SETUP, LANE_UP, LANE_DEAD };

struct rayc__lane {
	rayc__net *net;
	rayc__conn *c; /* the connection it is bound to (a ref), once known */
	uint32_t peer;
	int fd;
	_Atomic int state;
	_Atomic bool done; /* its thread ended: to join */
	bool started;
	rayc__thread th;
	rayc__wauth w; /* data frames: tx at the holder, rx at the fetcher */
	nng_sockaddr to; /* fetcher: the holder's address, port replaced */
	/* Fetcher: ids whose GO waits for the set-up (under lanes->mu), when
	 * it started, and whether it took too long (late: GOs go over the
	 * connection meanwhile). */
	rayc_object_id *pend;
	size_t npend, cap;
	int64_t born;
	bool late;
	/* Holder: transfers to write (under lanes->mu), and their wake-up. */
	rayc__xout *xhead, *xtail;
	rayc__event ev;
	/* Task lanes (tlane.c): the owner's end (it dialed; w seals its
	 * TASKs, rx checks the TASK_DONEs) or the executor's (accepted; w
	 * seals TASK_DONEs, rx checks TASKs).  tx_mu: w, tx and the socket's
	 * writes, taken under lanes->mu by a sender that found the lane in
	 * the tables. */
	bool task, owner_end;
	rayc__wauth rx;
	rayc__mutex tx_mu;
	rayc__wbuf tx;
	rayc__lane *next;
};

struct rayc__lanes {
	rayc__mutex mu;
	int lfd;          /* listener (-1: none) */
	_Atomic uint16_t port; /* its port (0: none) */
	rayc__thread acc;
	bool acc_started;
	_Atomic bool stop;
	rayc__lane *all;  /* every lane, to join and free */
	int setups;       /* accepted, not yet authenticated */
	rayc__lane *to[RAYC__MAX_PEERS];   /* ours, reading from peer */
	rayc__lane *from[RAYC__MAX_PEERS]; /* peer's, written to */
	uint16_t port_of[RAYC__MAX_PEERS]; /* peer's listener, as it said */
	int64_t no_lane_until[RAYC__MAX_PEERS];
	int fails[RAYC__MAX_PEERS]; /* set-ups failed or lanes broken in a row */
	/* Task lanes (tlane.c): ours to peer (TASKs out, TASK_DONEs in),
	 * and peer's to us; when the next may be tried after a failure. */
	rayc__lane *tto[RAYC__MAX_PEERS];
	rayc__lane *tfrom[RAYC__MAX_PEERS];
	int64_t no_tlane_until[RAYC__MAX_PEERS];
	int tfails[RAYC__MAX_PEERS];
};

/* Test counters and hooks (lane.c). */
extern _Atomic uint64_t rayc__lane_bytes_in, rayc__lane_bytes_out,
	rayc__lanes_up;
extern _Atomic int rayc__lane_tamper_once, rayc__lane_stall_ms;

/* Integers in the set-up are little endian, as on the wire (wire.h). */
static inline void rayc__lane_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t rayc__lane_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* lane.c: sockets */
bool rayc__lane_io_by(int fd, void *p, size_t n, bool rd, int64_t deadline);
bool rayc__lane_sockaddr(const nng_sockaddr *a, struct sockaddr_storage *ss,
                         socklen_t *len);
/* lane.c: keys */
void rayc__lane_hello_mac(const unsigned char key[32], const uint8_t *hello,
                          const uint8_t *nonce_h, uint8_t out[MAC]);
void rayc__lane_data_key(const unsigned char key[32], const char *label,
                         uint32_t fetcher, uint32_t holder,
                         const uint8_t *nonce_h, const uint8_t *nonce_f,
                         unsigned char out[32]);
#define LANE_KEY_DATA "rayc lane data"      /* holder -> fetcher */
#define LANE_KEY_TASK "rayc task lane"      /* owner -> executor */
#define LANE_KEY_DONE "rayc task lane done" /* executor -> owner */
void rayc__lane_confirm_mac(const unsigned char dkey[32], uint8_t out[MAC]);
/* The dialer's hello exchange, up to the confirmation (lane.c). */
bool rayc__lane_dialer_hello(rayc__net *net, rayc__lane *L, int fd,
                             const char *magic, int64_t by,
                             bool (*ready)(rayc__net *net, rayc__lane *L,
                                           int fd, int64_t by),
                             uint8_t hh[HELLO_H], uint8_t hf[HELLO_F],
                             uint8_t conf[MAC]);
/* lane.c: lanes */
rayc__lane *rayc__lane_new(rayc__net *net, uint32_t peer);
void rayc__lane_kill_locked(rayc__lane *L);
void rayc__lane_drop(rayc__net *net, rayc__lane *L);
void rayc__lane_end(rayc__net *net, rayc__lane *L);
void rayc__lane_broke(rayc__net *net, rayc__lane *L, const char *why);
/* lane_fetch.c: connects to L->to within RAYC__LANE_SETUP_MS (a blocking
 * socket, TCP_NODELAY), or -1. */
int rayc__lane_dial(rayc__net *net, rayc__lane *L);
/* Dials L (rayc__lane_dial) and runs setup on the socket: true once L is
 * up (SETUP to UP, under lanes->mu; not if it was killed meanwhile). */
bool rayc__lane_connect(rayc__net *net, rayc__lane *L,
                        bool (*setup)(rayc__net *net, rayc__lane *L, int fd));
/* lane_hold.c: the open connection from peer whose key made the hello's
 * MAC (a ref), or NULL. */
rayc__conn *rayc__lane_find_conn(rayc__net *net, uint32_t peer,
                                 const uint8_t *hf, const uint8_t *nonce_h);
/* tlane.c: the executor's end of a task lane, once the acceptor read a
 * hello with TLANE_MAGIC (hh: ours, hf: theirs): finishes the set-up,
 * then reads TASKs until the lane ends. */
void rayc__tlane_serve(rayc__net *net, rayc__lane *L, const uint8_t *hh,
                       const uint8_t *hf, int64_t by);

#endif /* RAYC_NET_LANE_INT_H */
