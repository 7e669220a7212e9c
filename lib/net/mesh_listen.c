/* mesh_listen.c -- the mesh's listener and addresses: accepting
 * connections (at most RAYC__HS_MAX handshaking at once; backing off after
 * an accept error), binding the listen address and choosing the address
 * other peers dial (the advertised one). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/net_int.h"

/* ---- accepting ---- */

/* Makes room for one more handshaking connection: with RAYC__HS_MAX of
 * them accepted and not yet open, the oldest is closed.  Whoever floods
 * us with idle connections then only pushes out their own (and a real
 * peer, whose handshake takes milliseconds, is rarely among them), and
 * never takes every descriptor. */
static void cap_handshakes(rayc__net *net)
{
	rayc__conn *oldest = NULL;
	int n = 0;

	rayc__mutex_lock(&net->mu);
	/* Newest first: the last one counted is the oldest. */
	for (rayc__conn *c = net->conns; c != NULL; c = c->next) {
		/* A joiner's open connection counts until it is admitted. */
		if (c->dialed || (atomic_load(&c->opened) && c->peer != 0) ||
		    atomic_load(&c->state) == RAYC__CONN_CLOSED)
			continue;
		n++;
		oldest = c;
	}
	if (n < RAYC__HS_MAX)
		oldest = NULL;
	if (oldest != NULL)
		atomic_fetch_add(&oldest->refs, 1);
	rayc__mutex_unlock(&net->mu);
	if (oldest != NULL) {
		rayc__conn_close(oldest, "too many handshakes at once");
		rayc__conn_unref(oldest);
	}
}

static void accept_next(rayc__net *net)
{
	if (!atomic_load(&net->stopping))
		nng_stream_listener_accept(net->lst, net->acc_aio);
}

/* The wait after an accept error ended. */
static void accept_sleep_cb(void *arg)
{
	rayc__nng_thread = true;
	rayc__net *net = arg;

	if (nng_aio_result(net->acc_sleep) == 0)
		accept_next(net);
}

static void accept_cb(void *arg)
{
	rayc__nng_thread = true;
	rayc__net *net = arg;
	int rv = nng_aio_result(net->acc_aio);

	if (rv != 0) {
		if (rv == NNG_ECLOSED || rv == NNG_ECANCELED ||
		    atomic_load(&net->stopping))
			return;
		/* Out of descriptors, say: the listener stays readable, so
		 * trying again at once spins.  Wait 100 ms, doubling to 1 s
		 * while it lasts; say so at most once a second. */
		int w = net->acc_wait_ms * 2;
		net->acc_wait_ms = w < 100 ? 100 : w > 1000 ? 1000 : w;
		net->acc_errs++;
		int64_t now = rayc__now_ns();
		if (now - net->acc_logged >= 1000000000) {
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-ACCEPT",
			          "accepting a connection failed (%llu times "
			          "since the last report): %s; waiting %d ms",
			          (unsigned long long)net->acc_errs,
			          nng_strerror(rv), net->acc_wait_ms);
			net->acc_errs = 0;
			net->acc_logged = now;
		}
		nng_sleep_aio(net->acc_wait_ms, net->acc_sleep);
		return;
	}
	net->acc_wait_ms = 0;
	nng_stream *s = nng_aio_get_output(net->acc_aio, 0);
	if (atomic_load(&net->stopping)) {
		nng_stream_free(s);
		return;
	}
	cap_handshakes(net);
	rayc__conn *c = rayc__conn_new(net);
	if (c == NULL) {
		nng_stream_free(s);
	} else {
		rayc__mutex_lock(&net->mu);
		rayc__net_conn_link_locked(net, c);
		rayc__mutex_unlock(&net->mu);
		rayc__conn_accepted(c, s);
	}
	accept_next(net);
}

/* Splits tcp://host:port (host may be [v6], empty or missing a port)
 * into host (brackets dropped) and port ("" if none). */
static bool url_split(const char *url, char *host, size_t hcap, char *port,
                      size_t pcap)
{
	const char *h, *end, *colon;

	if (strncmp(url, "tcp://", 6) != 0)
		return false;
	h = url + 6;
	if (*h == '[') {
		end = strchr(h, ']');
		if (end == NULL)
			return false;
		h++;
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] != '\0' && colon == NULL)
			return false;
	} else {
		colon = strrchr(h, ':');
		end = colon != NULL ? colon : h + strlen(h);
	}
	if ((size_t)(end - h) >= hcap ||
	    (colon != NULL && strlen(colon + 1) >= pcap))
		return false;
	memcpy(host, h, (size_t)(end - h));
	host[end - h] = '\0';
	snprintf(port, pcap, "%s", colon != NULL ? colon + 1 : "");
	/* A '/', '@' or space is not part of a host we dial or bind. */
	return strpbrk(host, "/@ ") == NULL && strpbrk(port, "/@ ") == NULL;
}

static bool host_is_any(const char *h)
{
	return *h == '\0' || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 ||
	       strcmp(h, "*") == 0;
}

/* True if url names only this host's loopback (resolved, not by its
 * spelling). */
bool rayc__url_is_loopback(const char *url)
{
	char h[RAYC__URL_MAX], p[16];

	return url_split(url, h, sizeof(h), p, sizeof(p)) && !host_is_any(h) &&
	       rayc__host_is_loopback(h);
}

/* What other peers dial to reach us: the advertise address if given;
 * else the listen address, where a wildcard host (tcp://0.0.0.0:P,
 * tcp://:P) becomes the address this host reaches the join address from
 * (or, for a founder, its default route's source).  Port 0 or none: the
 * port bound. */
int rayc__net_set_advertised(rayc__net *net, const char *listen,
                             const char *adv, const char *join, int port)
{
	char h[RAYC__URL_MAX], p[16], jh[RAYC__URL_MAX], jp[16];
	const char *from = adv != NULL ? adv : listen;

	if (!url_split(from, h, sizeof(h), p, sizeof(p)))
		return rayc__err(RAYC_EINVAL, "%s address '%s': use "
		                 "tcp://host:port", adv != NULL ? "advertise"
		                 : "listen", from);
	if (host_is_any(h)) {
		if (adv != NULL)
			return rayc__err(RAYC_EINVAL, "advertise address '%s' "
			                 "must name a host others can dial", adv);
		bool j = join != NULL &&
		         url_split(join, jh, sizeof(jh), jp, sizeof(jp));
		if (!rayc__route_source(j ? jh : NULL, j ? jp : NULL, h,
		                        sizeof(h))) {
			if (j)
				return rayc__err(RAYC_ESYS, "no route to %s: "
				                 "cannot tell this peer's own "
				                 "address (set RAYC_ADVERTISE)",
				                 join);
			snprintf(h, sizeof(h), "127.0.0.1"); /* no network */
		}
	}
	int n = snprintf(net->url, sizeof(net->url),
	                 strchr(h, ':') != NULL ? "tcp://[%s]:%d" : "tcp://%s:%d",
	                 h, *p != '\0' && strcmp(p, "0") != 0 ? atoi(p) : port);
	if (n < 0 || (size_t)n >= sizeof(net->url))
		return rayc__err(RAYC_EINVAL, "address '%s' is too long", from);
	/* A peer others could not dial must not join them. */
	if (join != NULL && !rayc__url_is_loopback(join) &&
	    rayc__url_is_loopback(net->url))
		return rayc__err(RAYC_EINVAL, "this peer would tell the cluster "
		                 "at %s to reach it at %s (loopback), which no "
		                 "other host can dial: set RAYC_LISTEN to a "
		                 "routable address (or tcp://0.0.0.0:PORT), or "
		                 "RAYC_ADVERTISE", join, net->url);
	return RAYC_OK;
}

/* Is the address the listener actually bound loopback?  Decided from
 * the socket, not the URL's text (tcp://127.0.0.1@0.0.0.0:0 binds every
 * interface). */
static bool bound_loopback(nng_stream_listener *lst)
{
	nng_sockaddr sa;

	if (nng_stream_listener_get_addr(lst, NNG_OPT_LOCADDR, &sa) != 0)
		return false;
	if (sa.s_family == NNG_AF_INET) {
		const uint8_t *a = (const uint8_t *)&sa.s_in.sa_addr;
		return a[0] == 127; /* network byte order */
	}
	if (sa.s_family == NNG_AF_INET6) {
		static const uint8_t lo[16] = { [15] = 1 };
		return memcmp(sa.s_in6.sa_addr, lo, 16) == 0;
	}
	return false;
}

int rayc__net_listen(rayc__net *net, const char *url,
                     const rayc__net_conf *conf, bool no_token)
{
	int rv, port = 0;

	if (strncmp(url, "tcp://", 6) != 0)
		return rayc__err(RAYC_EINVAL, "listen address '%s': only "
		                 "tcp://host:port is supported", url);
	rv = nng_stream_listener_alloc(&net->lst, url);
	if (rv == 0)
		/* Streams have no frame size of their own; set it where the
		 * transport takes it, and bound frames ourselves anyway. */
		(void)nng_stream_listener_set_size(net->lst, NNG_OPT_RECVMAXSZ,
		                                   RAYC__WIRE_MAX_FRAME);
	if (rv == 0)
		rv = nng_stream_listener_listen(net->lst);
	if (rv != 0)
		return rayc__err(RAYC_ESYS, "cannot listen on '%s': %s", url,
		                 nng_strerror(rv));
	if (no_token && !bound_loopback(net->lst))
		return rayc__err(RAYC_EINVAL, "listen address '%s' is bound "
		                 "beyond loopback: that needs a cluster token "
		                 "(RAYC_TOKEN)", url);
	(void)nng_stream_listener_get_int(net->lst, NNG_OPT_TCP_BOUND_PORT,
	                                  &port);
	int rc = rayc__net_set_advertised(net, url, conf->advertise,
	                                  conf->address, port);
	if (rc != RAYC_OK)
		return rc;
	if (nng_aio_alloc(&net->acc_aio, accept_cb, net) != 0 ||
	    nng_aio_alloc(&net->acc_sleep, accept_sleep_cb, net) != 0)
		return RAYC_ENOMEM;
	nng_stream_listener_accept(net->lst, net->acc_aio);
	return RAYC_OK;
}
