/*
 * bench_netbase.c -- the network baselines of the cross-peer figures and
 * the process at their other end: raw TCP round trips, a pipelined raw TCP
 * message stream sized like rayc's TASK and TASK_DONE frames, raw TCP bulk
 * transfers into fresh or reused memory, and NNG req/rep round trips.
 *
 * The other end is this executable started again with RAYC_BENCH_ECHO set
 * (bench_echo_main).  It stays up through all the cross-peer figures and
 * serves each connection on its own thread, so every baseline can run
 * alternately with the rayc repetitions it is compared with.  All sockets
 * of this side are close-on-exec: the rayc peers started meanwhile must
 * not hold them open.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "bench.h"

extern char **environ;

#define PING_BYTES 64
#define CHUNK_WRITE ((size_t)1 << 20) /* the bulk sender's write size */
#define MSG_READ (64 * 1024)          /* the message stream's read size */

/* A connection's first byte says what it is for. */
enum {
	MODE_PING = 'P',
	MODE_HANDOFF = 'H', /* pings answered by a worker thread */
	MODE_MSGS = 'M',
	MODE_SINK = 'S',
	MODE_QUIT = 'Q'
};

/* ------------------------------------------------------------------ */
/* Sockets                                                              */
/* ------------------------------------------------------------------ */
static int read_full(int fd, void *p, size_t n)
{
	size_t got = 0;

	while (got < n) {
		ssize_t r = read(fd, (char *)p + got, n - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += (size_t)r;
	}
	return 0;
}

static int write_full(int fd, const void *p, size_t n)
{
	size_t put = 0;

	while (put < n) {
		ssize_t r = write(fd, (const char *)p + put, n - put);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		put += (size_t)r;
	}
	return 0;
}

static void nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int listen_tcp(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof sa;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
	    listen(fd, 16) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &sl) != 0)
		bench_die("baseline: cannot listen: %s", strerror(errno));
	*port = ntohs(sa.sin_port);
	return fd;
}

static int dial_tcp(int port, char mode)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET,
		                  .sin_port = htons((uint16_t)port) };

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		bench_die("baseline: connect: %s", strerror(errno));
	nodelay(fd);
	if (write_full(fd, &mode, 1) != 0)
		bench_die("baseline: cannot start a connection");
	return fd;
}

/* Fresh anonymous memory: nothing of it is touched yet. */
static char *map_fresh(size_t n)
{
	void *p = mmap(NULL, n, PROT_READ | PROT_WRITE,
	               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		bench_die("baseline: mmap of %zu bytes: %s", n, strerror(errno));
	return p;
}

/* ------------------------------------------------------------------ */
/* The other process                                                    */
/* ------------------------------------------------------------------ */
/* 64-byte pings, echoed. */
static void serve_ping(int c)
{
	char buf[PING_BYTES];

	while (read_full(c, buf, sizeof buf) == 0)
		if (write_full(c, buf, sizeof buf) != 0)
			break;
}

/* A blocking socket with a thread at each end that hands what it reads to
 * another thread: a mutex, a flag and a condition variable, as rayc hands
 * a received task to a worker (a futex wake-up and wait when the other
 * thread sleeps).  Used by both ends of the lane baselines. */
struct handoff {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint64_t posted, taken;
	int failed;
};

static void handoff_init(struct handoff *h)
{
	memset(h, 0, sizeof *h);
	pthread_mutex_init(&h->mu, NULL);
	pthread_cond_init(&h->cv, NULL);
}

static void handoff_fini(struct handoff *h)
{
	pthread_mutex_destroy(&h->mu);
	pthread_cond_destroy(&h->cv);
}

static void handoff_post(struct handoff *h, int failed)
{
	pthread_mutex_lock(&h->mu);
	if (failed)
		h->failed = 1;
	else
		h->posted++;
	pthread_cond_signal(&h->cv);
	pthread_mutex_unlock(&h->mu);
}

/* Waits for a post not taken yet; false once the reader failed. */
static int handoff_take(struct handoff *h)
{
	int ok;

	pthread_mutex_lock(&h->mu);
	while (h->posted == h->taken && !h->failed)
		pthread_cond_wait(&h->cv, &h->mu);
	ok = h->posted != h->taken;
	if (ok)
		h->taken++;
	pthread_mutex_unlock(&h->mu);
	return ok;
}

struct hserver {
	int fd;
	struct handoff h;
};

/* The worker: answers each ping the reader hands over. */
static void *hserver_worker(void *arg)
{
	struct hserver *s = arg;
	char buf[PING_BYTES] = { 'a' };

	while (handoff_take(&s->h))
		if (write_full(s->fd, buf, sizeof buf) != 0)
			break;
	return NULL;
}

/* 64-byte pings read by this thread and answered by a worker. */
static void serve_handoff(int c)
{
	struct hserver s;
	char buf[PING_BYTES];
	pthread_t w;

	s.fd = c;
	handoff_init(&s.h);
	if (pthread_create(&w, NULL, hserver_worker, &s) != 0)
		bench_die("echo: no thread");
	while (read_full(c, buf, sizeof buf) == 0)
		handoff_post(&s.h, 0);
	handoff_post(&s.h, 1);
	pthread_join(w, NULL);
	handoff_fini(&s.h);
}

/* After a header (request and reply sizes, u32 each): reads whatever has
 * arrived, up to MSG_READ bytes, and answers every whole request in it
 * with one write of that many replies. */
static void serve_msgs(int c)
{
	uint32_t sz[2];
	size_t carry = 0;
	char *in, *out;

	if (read_full(c, sz, sizeof sz) != 0 || sz[0] == 0 || sz[1] == 0 ||
	    sz[0] > MSG_READ || sz[1] > MSG_READ)
		return;
	in = bench_xmalloc(MSG_READ);
	out = bench_xmalloc_touched((MSG_READ / sz[0] + 1) * sz[1], 0x44);
	for (;;) {
		ssize_t r = read(c, in, MSG_READ);
		size_t k;

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		carry += (size_t)r;
		k = carry / sz[0];
		carry -= k * sz[0];
		if (k > 0 && write_full(c, out, k * sz[1]) != 0)
			break;
	}
	free(out);
	free(in);
}

/* Per request (u64 length, u64 fresh): a destination of that length,
 * fresh anonymous memory (fresh != 0, unmapped afterwards) or one buffer
 * kept and reused (touched when made); 'r' when it is ready, then the
 * bytes are read straight into it, as much per read() as has arrived,
 * and 'k' after the last. */
static void serve_sink(int c)
{
	char *warm = NULL, *dst;
	size_t warm_n = 0;
	uint64_t h[2];

	while (read_full(c, h, sizeof h) == 0 && h[0] > 0) {
		size_t n = (size_t)h[0];

		if (h[1]) {
			dst = map_fresh(n);
		} else {
			if (warm_n != n) {
				if (warm != NULL)
					munmap(warm, warm_n);
				warm = map_fresh(n);
				memset(warm, 0x22, n);
				warm_n = n;
			}
			dst = warm;
		}
		if (write_full(c, "r", 1) != 0 || read_full(c, dst, n) != 0 ||
		    write_full(c, "k", 1) != 0)
			break;
		if (h[1])
			munmap(dst, n);
	}
	if (warm != NULL)
		munmap(warm, warm_n);
}

static void *serve_main(void *arg)
{
	int c = (int)(intptr_t)arg;
	char mode;

	if (read_full(c, &mode, 1) == 0) {
		if (mode == MODE_PING)
			serve_ping(c);
		else if (mode == MODE_HANDOFF)
			serve_handoff(c);
		else if (mode == MODE_MSGS)
			serve_msgs(c);
		else if (mode == MODE_SINK)
			serve_sink(c);
	}
	close(c);
	return NULL;
}

static void *rep_main(void *arg)
{
	nng_socket *s = arg;
	nng_msg *m;

	while (nng_recvmsg(*s, &m, 0) == 0)
		if (nng_sendmsg(*s, m, 0) != 0)
			nng_msg_free(m);
	return NULL;
}

/* NNG's stream API as an echo, as rayc's mesh uses it: every completion
 * is a callback on one of NNG's task threads, which answers from there
 * and posts the next receive.  One per accepted stream; it lives until
 * the stream fails. */
struct sconn {
	nng_stream *s;
	nng_aio *rx, *tx;
	size_t got, put;
	char buf[PING_BYTES];
};

/* Starts op (nng_stream_recv or _send) of the n bytes at p on aio. */
static void stream_post(nng_stream *s, nng_aio *aio, char *p, size_t n,
                        void (*op)(nng_stream *, nng_aio *))
{
	nng_iov iov = { p, n };

	(void)nng_aio_set_iov(aio, 1, &iov);
	op(s, aio);
}

static void sconn_recv(struct sconn *c)
{
	stream_post(c->s, c->rx, c->buf + c->got, sizeof c->buf - c->got,
	            nng_stream_recv);
}

static void sconn_send(struct sconn *c)
{
	stream_post(c->s, c->tx, c->buf + c->put, sizeof c->buf - c->put,
	            nng_stream_send);
}

static void sconn_rx_cb(void *arg)
{
	struct sconn *c = arg;

	if (nng_aio_result(c->rx) != 0)
		return; /* the stream is done: the process ends soon */
	c->got += nng_aio_count(c->rx);
	if (c->got < sizeof c->buf) {
		sconn_recv(c);
		return;
	}
	c->put = 0;
	sconn_send(c);
}

static void sconn_tx_cb(void *arg)
{
	struct sconn *c = arg;

	if (nng_aio_result(c->tx) != 0)
		return;
	c->put += nng_aio_count(c->tx);
	if (c->put < sizeof c->buf) {
		sconn_send(c);
		return;
	}
	c->got = 0;
	sconn_recv(c);
}

static void *stream_accept_main(void *arg)
{
	nng_stream_listener *l = arg;
	nng_aio *aio;

	if (nng_aio_alloc(&aio, NULL, NULL) != 0)
		bench_die("echo: no aio");
	for (;;) {
		nng_stream_listener_accept(l, aio);
		nng_aio_wait(aio);
		if (nng_aio_result(aio) != 0)
			break;
		struct sconn *c = bench_xmalloc(sizeof *c);
		memset(c, 0, sizeof *c);
		c->s = nng_aio_get_output(aio, 0);
		(void)nng_stream_set_bool(c->s, NNG_OPT_TCP_NODELAY, true);
		if (nng_aio_alloc(&c->rx, sconn_rx_cb, c) != 0 ||
		    nng_aio_alloc(&c->tx, sconn_tx_cb, c) != 0)
			bench_die("echo: no aio");
		sconn_recv(c);
	}
	nng_aio_free(aio);
	return NULL;
}

/* The other process: prints its TCP and NNG ports on stdout, then serves
 * each TCP connection on a thread of its own and NNG req/rep as an echo,
 * until a connection says MODE_QUIT. */
int bench_echo_main(void)
{
	int port, rport = 0, sport = 0, l = listen_tcp(&port);
	nng_socket rep;
	nng_listener lr;
	nng_stream_listener *sl;
	pthread_t th, sth;

	/* Ends with the benchmark, however that ends (a sanitizer's
	 * abort, say): it must not hold the caller's output open. */
	(void)prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() == 1)
		return 1;
	if (nng_rep0_open(&rep) != 0 ||
	    nng_listen(rep, "tcp://127.0.0.1:0", &lr, 0) != 0 ||
	    nng_listener_get_int(lr, NNG_OPT_TCP_BOUND_PORT, &rport) != 0)
		bench_die("echo: cannot serve NNG req/rep");
	if (pthread_create(&th, NULL, rep_main, &rep) != 0)
		bench_die("echo: no thread");
	if (nng_stream_listener_alloc(&sl, "tcp://127.0.0.1:0") != 0 ||
	    nng_stream_listener_listen(sl) != 0 ||
	    nng_stream_listener_get_int(sl, NNG_OPT_TCP_BOUND_PORT, &sport) !=
	            0)
		bench_die("echo: cannot serve an NNG stream");
	if (pthread_create(&sth, NULL, stream_accept_main, sl) != 0)
		bench_die("echo: no thread");
	printf("%d %d %d\n", port, rport, sport);
	fflush(stdout);
	for (;;) {
		int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
		char mode;
		pthread_t t;

		if (c < 0 && errno == EINTR)
			continue;
		if (c < 0)
			bench_die("echo: accept: %s", strerror(errno));
		nodelay(c);
		if (recv(c, &mode, 1, MSG_PEEK) == 1 && mode == MODE_QUIT) {
			close(c);
			break;
		}
		if (pthread_create(&t, NULL, serve_main, (void *)(intptr_t)c) != 0)
			bench_die("echo: no thread");
		pthread_detach(t);
	}
	nng_close(rep);
	pthread_join(th, NULL);
	nng_stream_listener_close(sl);
	pthread_join(sth, NULL);
	close(l);
	return 0;
}

/* ------------------------------------------------------------------ */
/* This side                                                            */
/* ------------------------------------------------------------------ */
/* This side of the NNG stream round trip.  Its receives complete in a
 * callback on an NNG task thread too, which posts the next one and wakes
 * the waiting thread, as rayc's receive callback does for a caller. */
struct sclient {
	nng_stream *s;
	nng_aio *rx, *tx;
	size_t got;
	char in[PING_BYTES];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int answers, failed;
};

/* This side of a lane baseline: a reader thread hands each answer to the
 * thread that sent the ping. */
struct lclient {
	int fd;
	pthread_t reader;
	struct handoff h;
};

struct bench_net {
	pid_t pid;
	int port, nng_port, stream_port;
	int ping_fd, msgs_fd, sink_fd; /* -1 until first used */
	nng_socket req;
	int req_open;
	struct sclient *sc; /* NULL until first used */
	struct lclient *lc[2]; /* [inline]: lane baselines, NULL until used */
	char *src; /* the bulk sender's source, touched */
	size_t src_n;
	char *out; /* the message stream's requests */
	size_t out_n;
};

bench_net *bench_net_start(void)
{
	bench_net *n = bench_xmalloc(sizeof *n);
	int fds[2], k = 0;
	char self[4096], *env[64], *argv[2];
	ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
	posix_spawn_file_actions_t fa;
	FILE *f;

	memset(n, 0, sizeof *n);
	n->ping_fd = n->msgs_fd = n->sink_fd = -1;
	if (len <= 0 || pipe2(fds, O_CLOEXEC) != 0)
		bench_die("baseline: cannot start the echo process");
	self[len] = '\0';
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	for (char **p = environ; *p != NULL && k < 60; p++)
		if (strncmp(*p, "RAYC_", 5) != 0)
			env[k++] = *p;
	env[k++] = "RAYC_BENCH_ECHO=1";
	env[k] = NULL;
	argv[0] = self;
	argv[1] = NULL;
	if (posix_spawn(&n->pid, self, &fa, NULL, argv, env) != 0)
		bench_die("baseline: spawn failed");
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	f = fdopen(fds[0], "r");
	if (f == NULL || fscanf(f, "%d %d %d", &n->port, &n->nng_port,
	                        &n->stream_port) != 3)
		bench_die("baseline: the echo process gave no ports");
	fclose(f);
	return n;
}

void bench_net_stop(bench_net *n)
{
	int st;

	if (n == NULL)
		return;
	if (n->req_open)
		nng_close(n->req);
	if (n->sc != NULL) {
		nng_stream_close(n->sc->s);
		nng_aio_free(n->sc->rx); /* waits for its callback */
		nng_aio_free(n->sc->tx);
		nng_stream_free(n->sc->s);
		pthread_mutex_destroy(&n->sc->mu);
		pthread_cond_destroy(&n->sc->cv);
		free(n->sc);
	}
	for (int i = 0; i < 2; i++) {
		struct lclient *c = n->lc[i];
		if (c == NULL)
			continue;
		shutdown(c->fd, SHUT_RDWR); /* the reader's read ends */
		pthread_join(c->reader, NULL);
		close(c->fd);
		handoff_fini(&c->h);
		free(c);
	}
	if (n->ping_fd >= 0)
		close(n->ping_fd);
	if (n->msgs_fd >= 0)
		close(n->msgs_fd);
	if (n->sink_fd >= 0)
		close(n->sink_fd);
	close(dial_tcp(n->port, MODE_QUIT));
	if (waitpid(n->pid, &st, 0) != n->pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st) != 0)
		fprintf(stderr, "  WARNING: the baselines' echo process did "
		        "not exit cleanly (status %d)\n", st);
	free(n->src);
	free(n->out);
	free(n);
}

/* ---- round trips ---- */
static void tcp_ping(void *arg)
{
	int fd = *(int *)arg;
	char buf[PING_BYTES] = { 'p' };

	if (write_full(fd, buf, sizeof buf) != 0 ||
	    read_full(fd, buf, sizeof buf) != 0)
		bench_die("baseline: tcp ping failed");
}

double bench_net_tcp_rtt_us(bench_net *n)
{
	double el;
	uint64_t k;

	if (n->ping_fd < 0) {
		n->ping_fd = dial_tcp(n->port, MODE_PING);
		tcp_ping(&n->ping_fd);
	}
	k = bench_timed_loop(tcp_ping, &n->ping_fd, 16, bench_g.rep_s, &el);
	return el / (double)k * 1e6;
}

static void nng_ping(void *arg)
{
	nng_socket s = *(nng_socket *)arg;
	char buf[PING_BYTES] = { 'p' };
	nng_msg *m;

	if (nng_msg_alloc(&m, 0) != 0 || nng_msg_append(m, buf, sizeof buf) ||
	    nng_sendmsg(s, m, 0) != 0 || nng_recvmsg(s, &m, 0) != 0)
		bench_die("baseline: nng req failed");
	nng_msg_free(m);
}

double bench_net_nng_rtt_us(bench_net *n)
{
	char url[64];
	double el;
	uint64_t k;

	if (!n->req_open) {
		snprintf(url, sizeof url, "tcp://127.0.0.1:%d", n->nng_port);
		if (nng_req0_open(&n->req) != 0 ||
		    nng_dial(n->req, url, NULL, 0) != 0)
			bench_die("baseline: nng dial failed");
		n->req_open = 1;
		nng_ping(&n->req);
	}
	k = bench_timed_loop(nng_ping, &n->req, 16, bench_g.rep_s, &el);
	return el / (double)k * 1e6;
}

static void sclient_recv(struct sclient *c)
{
	stream_post(c->s, c->rx, c->in + c->got, sizeof c->in - c->got,
	            nng_stream_recv);
}

static void sclient_rx_cb(void *arg)
{
	struct sclient *c = arg;
	int rv = nng_aio_result(c->rx);

	if (rv == 0) {
		c->got += nng_aio_count(c->rx);
		if (c->got < sizeof c->in) {
			sclient_recv(c);
			return;
		}
		c->got = 0;
	}
	pthread_mutex_lock(&c->mu);
	if (rv != 0)
		c->failed = rv;
	else
		c->answers++;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (rv == 0)
		sclient_recv(c);
}

static void stream_ping(void *arg)
{
	struct sclient *c = arg;
	char out[PING_BYTES] = { 'p' };
	size_t put = 0;
	int want;

	pthread_mutex_lock(&c->mu);
	want = c->answers + 1;
	pthread_mutex_unlock(&c->mu);
	while (put < sizeof out) {
		stream_post(c->s, c->tx, out + put, sizeof out - put,
		            nng_stream_send);
		nng_aio_wait(c->tx);
		if (nng_aio_result(c->tx) != 0)
			bench_die("baseline: nng stream send: %s",
			          nng_strerror(nng_aio_result(c->tx)));
		put += nng_aio_count(c->tx);
	}
	pthread_mutex_lock(&c->mu);
	while (c->answers < want && c->failed == 0)
		pthread_cond_wait(&c->cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
	if (c->failed != 0)
		bench_die("baseline: nng stream receive: %s",
		          nng_strerror(c->failed));
}

double bench_net_nng_stream_rtt_us(bench_net *n)
{
	char url[64];
	double el;
	uint64_t k;

	if (n->sc == NULL) {
		struct sclient *c = bench_xmalloc(sizeof *c);
		nng_stream_dialer *d;
		nng_aio *aio;
		memset(c, 0, sizeof *c);
		pthread_mutex_init(&c->mu, NULL);
		pthread_cond_init(&c->cv, NULL);
		snprintf(url, sizeof url, "tcp://127.0.0.1:%d", n->stream_port);
		if (nng_stream_dialer_alloc(&d, url) != 0 ||
		    nng_aio_alloc(&aio, NULL, NULL) != 0)
			bench_die("baseline: nng stream dialer");
		nng_stream_dialer_dial(d, aio);
		nng_aio_wait(aio);
		if (nng_aio_result(aio) != 0)
			bench_die("baseline: nng stream dial failed");
		c->s = nng_aio_get_output(aio, 0);
		nng_aio_free(aio);
		nng_stream_dialer_free(d);
		(void)nng_stream_set_bool(c->s, NNG_OPT_TCP_NODELAY, true);
		if (nng_aio_alloc(&c->rx, sclient_rx_cb, c) != 0 ||
		    nng_aio_alloc(&c->tx, NULL, NULL) != 0)
			bench_die("baseline: no aio");
		n->sc = c;
		sclient_recv(c);
		stream_ping(c);
	}
	k = bench_timed_loop(stream_ping, n->sc, 16, bench_g.rep_s, &el);
	return el / (double)k * 1e6;
}

/* ---- the lane baselines ---- */
static void *lclient_reader(void *arg)
{
	struct lclient *c = arg;
	char buf[PING_BYTES];

	while (read_full(c->fd, buf, sizeof buf) == 0)
		handoff_post(&c->h, 0);
	handoff_post(&c->h, 1);
	return NULL;
}

static void lane_ping(void *arg)
{
	struct lclient *c = arg;
	char buf[PING_BYTES] = { 'p' };

	if (write_full(c->fd, buf, sizeof buf) != 0 || !handoff_take(&c->h))
		bench_die("baseline: lane ping failed");
}

double bench_net_lane_rtt_us(bench_net *n, int inline_answer)
{
	struct lclient *c = n->lc[inline_answer != 0];
	double el;
	uint64_t k;

	if (c == NULL) {
		c = bench_xmalloc(sizeof *c);
		handoff_init(&c->h);
		c->fd = dial_tcp(n->port, inline_answer ? MODE_PING
		                                        : MODE_HANDOFF);
		if (pthread_create(&c->reader, NULL, lclient_reader, c) != 0)
			bench_die("baseline: no thread");
		n->lc[inline_answer != 0] = c;
		lane_ping(c);
	}
	k = bench_timed_loop(lane_ping, c, 16, bench_g.rep_s, &el);
	return el / (double)k * 1e6;
}

/* ---- the pipelined message stream ---- */
double bench_net_tcp_msgs(bench_net *n, size_t count, int window)
{
	uint32_t sz[2] = { BENCH_TASK_FRAME_BYTES, BENCH_DONE_FRAME_BYTES };
	size_t req = sz[0], rep = sz[1], sent, got = 0, carry = 0, first;
	char in[MSG_READ];
	double t0, t;

	if (window < 1)
		window = 1;
	if (n->msgs_fd < 0) {
		n->msgs_fd = dial_tcp(n->port, MODE_MSGS);
		if (write_full(n->msgs_fd, sz, sizeof sz) != 0)
			bench_die("baseline: message stream failed");
	}
	if (n->out_n < (size_t)window * req) {
		free(n->out);
		n->out_n = (size_t)window * req;
		n->out = bench_xmalloc_touched(n->out_n, 0x33);
	}
	bench_cost_begin(bench_cost_cur);
	t0 = bench_now();
	first = count < (size_t)window ? count : (size_t)window;
	if (write_full(n->msgs_fd, n->out, first * req) != 0)
		bench_die("baseline: message stream write failed");
	sent = first;
	while (got < count) {
		ssize_t r = read(n->msgs_fd, in, sizeof in);
		size_t k, more;

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			bench_die("baseline: message stream read failed");
		carry += (size_t)r;
		k = carry / rep;
		carry -= k * rep;
		got += k;
		more = k < count - sent ? k : count - sent;
		if (more > 0 &&
		    write_full(n->msgs_fd, n->out, more * req) != 0)
			bench_die("baseline: message stream write failed");
		sent += more;
	}
	t = bench_now() - t0;
	bench_cost_end(bench_cost_cur, (double)count);
	return (double)count / t;
}

/* ---- bulk ---- */
double bench_net_tcp_bulk(bench_net *n, size_t bytes, int fresh)
{
	uint64_t h[2] = { bytes, fresh != 0 };
	size_t off;
	char k;
	double t0, t;

	if (n->sink_fd < 0)
		n->sink_fd = dial_tcp(n->port, MODE_SINK);
	if (n->src_n != bytes) {
		free(n->src);
		n->src = bench_xmalloc_touched(bytes, 0x11);
		n->src_n = bytes;
	}
	if (write_full(n->sink_fd, h, sizeof h) != 0 ||
	    read_full(n->sink_fd, &k, 1) != 0 || k != 'r')
		bench_die("baseline: tcp sink not ready");
	bench_cost_begin(bench_cost_cur);
	t0 = bench_now();
	for (off = 0; off < bytes; off += CHUNK_WRITE) {
		size_t w = bytes - off < CHUNK_WRITE ? bytes - off : CHUNK_WRITE;

		if (write_full(n->sink_fd, n->src + off, w) != 0)
			bench_die("baseline: tcp write failed");
	}
	if (read_full(n->sink_fd, &k, 1) != 0 || k != 'k')
		bench_die("baseline: tcp sink ack missing");
	t = bench_now() - t0;
	bench_cost_end(bench_cost_cur, (double)bytes / (1 << 20));
	return (double)bytes / t / 1e9;
}
