/* local.c -- local peers: the founder of a local cluster (local_peers)
 * starts the other peers as child processes of its own program.  Each
 * watches a pipe from the founder (RAYC__PARENT_FD) and stops when it
 * closes, at the founder's stop or death; a stopping founder waits for
 * them (bounded) and kills those that do not end.
 */
#include <stdio.h>
#include <string.h>

#include "net/net_int.h"

/* ---- local peers ---- */

int rayc__net_start_local_peers(rayc__net *net, int n, const char *token)
{
	int fds[2];
	char a[RAYC__URL_MAX + 16], t[sizeof("RAYC_TOKEN=") + RAYC__TOKEN_MAX];
	char pfd[48], hb[64];

	if (strlen(token) > RAYC__TOKEN_MAX) /* rayc_init refused it */
		return rayc__err(RAYC_EINVAL, "the cluster token is %zu bytes "
		                 "long: at most %d", strlen(token),
		                 RAYC__TOKEN_MAX);
	if (rayc__pipe_for_children(fds) != RAYC_OK)
		return rayc__err(RAYC_ESYS, "pipe for local peers failed");
	snprintf(a, sizeof(a), "RAYC_ADDRESS=%s", net->url);
	snprintf(t, sizeof(t), "RAYC_TOKEN=%s", token);
	snprintf(pfd, sizeof(pfd), "RAYC__PARENT_FD=%d", fds[0]);
	snprintf(hb, sizeof(hb), "RAYC_HEARTBEAT_TIMEOUT_MS=%lld",
	         (long long)(net->timeout_ns / 1000000));
	const char *env[] = { "RAYC_ROLE=worker", "RAYC_LOCAL_PEERS=0", a, t,
		              pfd, hb, "RAYC_LISTEN=", NULL };
	for (int i = 0; i < n; i++) {
		int pid = rayc__spawn_self(env, fds[0]);
		if (pid < 0) {
			rayc__close_fd(fds[0]);
			rayc__close_fd(fds[1]);
			return rayc__err(RAYC_ESYS, "cannot start local peer");
		}
		net->kids[net->nkids++] = pid;
	}
	rayc__close_fd(fds[0]);
	net->kid_pipe_w = fds[1];
	return RAYC_OK;
}

void rayc__net_stop_kids(rayc__net *net)
{
	int64_t deadline = rayc__now_ns() + 10 * (int64_t)1000000000;

	rayc__close_fd(net->kid_pipe_w);
	net->kid_pipe_w = -1;
	for (int i = 0; i < net->nkids; i++) {
		int code = 0;
		if (!rayc__proc_wait(net->kids[i], deadline, &code)) {
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-KILL",
			          "local peer pid %d did not stop; killing it",
			          net->kids[i]);
			rayc__proc_kill(net->kids[i]);
			(void)rayc__proc_wait(net->kids[i], -1, &code);
		} else if (code != 0) {
			rayc__log(RAYC_LOG_WARN, "RAYC-NET-KID-EXIT",
			          "local peer pid %d exited with %d",
			          net->kids[i], code);
		}
	}
	net->nkids = 0;
}
