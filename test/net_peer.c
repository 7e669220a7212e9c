/* net_peer.c -- a peer process for the multi-peer tests: it registers
 * the test functions and joins the cluster named by RAYC_ADDRESS as a
 * worker (RAYC_ROLE=worker).  rayc_init serves and exits 0 when the
 * cluster shuts down; if it returns, joining failed: exit 3 with the
 * reason on stderr. */
#include <stdio.h>

#include "net_funcs.h"

int main(void)
{
	int rc = rayc_init(NULL);

	fprintf(stderr, "net_peer: rayc_init: %s (%s)\n", rayc_strerror(rc),
	        rayc_errmsg());
	if (rc == RAYC_OK)
		rayc_shutdown();
	return 3;
}
