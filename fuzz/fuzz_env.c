/* fuzz_env.c -- the configuration from RAYC_* variables (runtime.c: the
 * strict number and size parser, lengths, roles, addresses, resources),
 * checked as rayc_init would without starting anything.
 *
 * Input: values separated by newlines, given in order to the variables
 * of vars[] (fewer: the rest unset; an empty one is unset). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "rayc.h"
#include "testing.h"

extern char **environ;

static const char *const vars[] = {
	"RAYC_NUM_WORKERS", "RAYC_OBJECT_STORE_BYTES",
	"RAYC_STORE_PREFAULT_BYTES", "RAYC_HEARTBEAT_TIMEOUT_MS",
	"RAYC_LOCAL_PEERS", "RAYC_RESOURCES", "RAYC_LOG_LEVEL", "RAYC_ROLE",
	"RAYC_DRIVER_TASKS", "RAYC_ADDRESS", "RAYC_LISTEN", "RAYC_ADVERTISE",
	"RAYC_TOKEN", "RAYC_STORE_DIR",
};
#define NVARS (sizeof(vars) / sizeof(vars[0]))

static void seeds(const char *dir)
{
	static const char *const s[] = {
		"4\n64m\n1m\n1000\n0\nCPU=2,GPU=1\nwarn\ndriver\nauto\n\n"
		"tcp://127.0.0.1:0\n\nsecret\n/dev/shm",
		"18446744073709551616\n16t\n-5\n4294967346\n4abc\nCPU=1e300\n"
		"loud\nboss\nmaybe\nudp://x\n\n\n\n",
		"1\n1024k\n0\n50\n2\nGPU=0.5\ndebug\nworker\noff\n"
		"tcp://127.0.0.1:1\n",
	};
	static const char *const names[] = { "good", "bad", "worker" };

	for (int i = 0; i < 3; i++)
		fuzz_seed(dir, names[i], s[i], strlen(s[i]));
	fuzz_seed_done();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (fuzz_seed_dir() != NULL)
		seeds(fuzz_seed_dir());
	return 0;
}

/* The variables in an environment of the input's own: getenv reads
 * environ, so nothing is set (setenv keeps every value it was given). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *env[NVARS + 1];
	char *buf = malloc(size * 2 + NVARS * 32 + 1), *w = buf;
	size_t off = 0, k = 0;

	if (buf == NULL)
		return 0;
	for (size_t i = 0; i < NVARS && off <= size; i++) {
		const uint8_t *nl = memchr(data + off, '\n', size - off);
		size_t n = nl != NULL ? (size_t)(nl - data - off) : size - off;
		if (n > 0 && memchr(data + off, '\0', n) == NULL) {
			size_t vl = strlen(vars[i]);
			env[k++] = w;
			memcpy(w, vars[i], vl);
			w[vl] = '=';
			memcpy(w + vl + 1, data + off, n);
			w[vl + 1 + n] = '\0';
			w += vl + 2 + n;
		}
		off += n + 1;
	}
	env[k] = NULL;
	char **saved = environ;
	environ = env;
	(void)rayc__test_conf_check(NULL);
	environ = saved;
	free(buf);
	return 0;
}
