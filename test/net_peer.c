/* net_peer.c -- a peer process for the multi-peer tests: it registers
 * the test functions and joins the cluster named by RAYC_ADDRESS as a
 * worker (RAYC_ROLE=worker).  rayc_init serves and exits 0 when the
 * cluster shuts down; if it returns, joining failed: exit 3 with the
 * reason on stderr.
 *
 * With NET_PEER_ADDR_FILE set it is a founder instead (a driver that
 * serves): it founds a cluster on RAYC_LISTEN, writes its address to
 * that file, serves until the cluster ends and exits 0. */
#include <execinfo.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actor_funcs.h"
#include "crash_funcs.h"
#include "net_funcs.h"
#include "recover_funcs.h"

/* SIGUSR1: prints what this peer still waits for (a test whose wait
 * timed out asks its peers). */
static void *dump_main(void *arg)
{
	sigset_t *set = arg;
	int sig;

	while (sigwait(set, &sig) == 0)
		rayc__test_dump_pending("SIGUSR1");
	return NULL;
}

/* SIGABRT: the aborting thread's stack on stderr, then the abort.  A
 * library the sanitizers do not see (NNG) panics with a message only;
 * this says where (offsets in a shared library resolve with addr2line
 * against the same build). */
static void abort_handler(int sig)
{
	static const char head[] = "net_peer: SIGABRT, the aborting thread's "
	                           "stack:\n";
	void *pc[64];
	int n = backtrace(pc, 64);

	(void)!write(2, head, sizeof(head) - 1);
	backtrace_symbols_fd(pc, n, 2);
	signal(sig, SIG_DFL);
	raise(sig);
}

int main(void)
{
	const char *file = getenv("NET_PEER_ADDR_FILE");
	static sigset_t set;
	pthread_t th;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	{
		void *pc[1];
		struct sigaction sa;
		(void)backtrace(pc, 1); /* loads libgcc now, not in the handler */
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = abort_handler;
		sigaction(SIGABRT, &sa, NULL);
	}
	if (pthread_create(&th, NULL, dump_main, &set) == 0)
		pthread_detach(th);
	int rc = rayc_init(NULL);

	if (rc == RAYC_OK && file != NULL) {
		char tmp[512];
		snprintf(tmp, sizeof(tmp), "%s.tmp", file);
		FILE *f = fopen(tmp, "w");
		if (f == NULL || fprintf(f, "%s\n", rayc_address()) < 0 ||
		    fclose(f) != 0 || rename(tmp, file) != 0) {
			perror("net_peer: address file");
			return 4;
		}
		rayc_serve();
		rayc_shutdown();
		return 0;
	}
	fprintf(stderr, "net_peer: rayc_init: %s (%s)\n", rayc_strerror(rc),
	        rayc_errmsg());
	if (rc == RAYC_OK)
		rayc_shutdown();
	return 3;
}
