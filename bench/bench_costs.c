/*
 * bench_costs.c -- rayc-bench --costs: syscalls, page faults and context
 * switches of the timed part of a figure's repetitions, so that a figure
 * says what it costs the kernel per unit of work, not only how long it
 * took.
 *
 * Syscalls come from one perf counter on the raw_syscalls:sys_enter
 * tracepoint, opened in main() before any thread or child exists, with
 * inherit=1: it then counts every thread of this process and every child
 * process started later (the echo process of the network baselines, the
 * local rayc peers), because inherited counters follow clone() and exec
 * and a read of the parent's counter sums its children's.  Page faults
 * and context switches of this process come from getrusage(RUSAGE_SELF)
 * (all threads, exited ones included; RUSAGE_THREAD would miss the
 * workers); those of child processes alive at the start of an interval
 * from /proc/<pid>/stat (faults, whole process) and
 * /proc/<pid>/task/<tid>/status (switches, per thread).
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <linux/perf_event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"

struct bench_cost *bench_cost_cur;

static int sys_fd = -1; /* the inherited sys_enter counter, or -1 */
static char sys_why[200] = "--costs not given";

/* ------------------------------------------------------------------ */
/* The syscall counter                                                  */
/* ------------------------------------------------------------------ */
static int read_id(const char *path, long *id)
{
	FILE *f = fopen(path, "r");
	int ok;

	if (f == NULL)
		return -1;
	ok = fscanf(f, "%ld", id) == 1;
	fclose(f);
	return ok ? 0 : -1;
}

/* The tracepoint's id: the usual tracefs mount points, then any tracefs
 * mounted elsewhere (a container may mount it where it likes). */
static int sys_enter_id(long *id)
{
	static const char *const dirs[] = { "/sys/kernel/tracing",
		                            "/sys/kernel/debug/tracing" };
	static const char rel[] = "/events/raw_syscalls/sys_enter/id";
	char path[512], dev[128], dir[300], type[64];
	FILE *m;
	size_t i;
	int found = -1;

	for (i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		snprintf(path, sizeof path, "%s%s", dirs[i], rel);
		if (read_id(path, id) == 0)
			return 0;
	}
	m = fopen("/proc/self/mounts", "r");
	if (m == NULL)
		return -1;
	while (found != 0 &&
	       fscanf(m, "%127s %299s %63s %*[^\n]", dev, dir, type) == 3) {
		if (strcmp(type, "tracefs") != 0)
			continue;
		snprintf(path, sizeof path, "%s%s", dir, rel);
		found = read_id(path, id);
	}
	fclose(m);
	return found;
}

void bench_costs_open(void)
{
	struct perf_event_attr a;
	long id;

	if (sys_enter_id(&id) != 0) {
		snprintf(sys_why, sizeof sys_why,
		         "no raw_syscalls/sys_enter/id under a mounted tracefs "
		         "(/sys/kernel/tracing, /sys/kernel/debug/tracing or "
		         "any in /proc/self/mounts)");
		goto none;
	}
	memset(&a, 0, sizeof a);
	a.type = PERF_TYPE_TRACEPOINT;
	a.size = sizeof a;
	a.config = (unsigned long long)id;
	a.inherit = 1; /* threads and child processes created after now */
	a.disabled = 0;
	sys_fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1,
	                      PERF_FLAG_FD_CLOEXEC);
	if (sys_fd < 0) {
		snprintf(sys_why, sizeof sys_why,
		         "perf_event_open(raw_syscalls:sys_enter, inherit) "
		         "failed: %s (perf_event_paranoid, CAP_PERFMON?)",
		         strerror(errno));
		goto none;
	}
	return;
none:
	fprintf(stderr, "rayc-bench: --costs: syscalls n/a: %s\n", sys_why);
}

static int sys_read(uint64_t *v)
{
	if (sys_fd < 0)
		return -1;
	return read(sys_fd, v, sizeof *v) == (ssize_t)sizeof *v ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Child processes                                                      */
/* ------------------------------------------------------------------ */
/* Fields after the ")" of /proc/<pid>/stat: field 3 is the state. */
static int stat_fields(const char *path, long *ppid, uint64_t *faults)
{
	char buf[1024], *p;
	unsigned long long minflt, majflt;
	long pp;
	size_t n;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return -1;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	/* state ppid pgrp session tty tpgid flags minflt cminflt majflt */
	if (p == NULL || sscanf(p + 1, " %*c %ld %*d %*d %*d %*d %*u %llu "
	                        "%*u %llu", &pp, &minflt, &majflt) != 3)
		return -1;
	*ppid = pp;
	*faults = minflt + majflt;
	return 0;
}

/* Voluntary + involuntary switches of one thread of pid; -1 if it is
 * gone. */
static int thread_ctxsw(long pid, const char *tid, uint64_t *n)
{
	char path[96], line[256];
	unsigned long long v;
	FILE *f;

	snprintf(path, sizeof path, "/proc/%ld/task/%.20s/status", pid, tid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	*n = 0;
	while (fgets(line, sizeof line, f) != NULL)
		if (sscanf(line, "voluntary_ctxt_switches: %llu", &v) == 1 ||
		    sscanf(line, "nonvoluntary_ctxt_switches: %llu", &v) == 1)
			*n += v;
	fclose(f);
	return 0;
}

/* Switches of pid's threads, counted per thread (/proc/<pid>/status
 * gives its main thread's only, and a sum over the threads alive would
 * drop whatever a thread that ends took).  With before == NULL: the
 * counts now, recorded into *out (malloc'd; *nout of them).  Else the
 * switches since before: what each thread seen then did since, and all
 * of a thread started since.  A thread that ended in between loses its
 * last ones: /proc keeps them for no one. */
static uint64_t child_ctxsw(long pid, const struct bench_thr *before,
                            int nbefore, struct bench_thr **out, int *nout)
{
	char path[64];
	struct dirent *d;
	uint64_t sum = 0, n;
	int cap = 0, i;
	DIR *dir;

	if (out != NULL) {
		*out = NULL;
		*nout = 0;
	}
	snprintf(path, sizeof path, "/proc/%ld/task", pid);
	dir = opendir(path);
	if (dir == NULL)
		return 0;
	while ((d = readdir(dir)) != NULL) {
		long tid;

		if (!isdigit((unsigned char)d->d_name[0]) ||
		    thread_ctxsw(pid, d->d_name, &n) != 0)
			continue;
		tid = atol(d->d_name);
		if (out != NULL) {
			if (*nout == cap) {
				cap = cap ? 2 * cap : 32;
				*out = realloc(*out, (size_t)cap * sizeof **out);
				if (*out == NULL)
					bench_die("out of memory");
			}
			(*out)[(*nout)++] = (struct bench_thr){ tid, n };
			sum += n;
			continue;
		}
		for (i = 0; i < nbefore && before[i].tid != tid; i++)
			;
		if (i == nbefore)
			sum += n;
		else if (n > before[i].n)
			sum += n - before[i].n;
	}
	closedir(dir);
	return sum;
}

/* The children of this process now, and their counts. */
static void children_snap(struct bench_cost_snap *s)
{
	long me = (long)getpid(), pp;
	char path[64];
	struct dirent *d;
	uint64_t f;
	DIR *dir = opendir("/proc");

	s->nkids = 0;
	if (dir == NULL)
		return;
	while ((d = readdir(dir)) != NULL && s->nkids < BENCH_COST_KIDS) {
		long pid;

		if (!isdigit((unsigned char)d->d_name[0]))
			continue;
		pid = atol(d->d_name);
		snprintf(path, sizeof path, "/proc/%ld/stat", pid);
		if (stat_fields(path, &pp, &f) != 0 || pp != me)
			continue;
		s->kid[s->nkids] = pid;
		s->kid_faults[s->nkids] = f;
		(void)child_ctxsw(pid, NULL, 0, &s->kid_thr[s->nkids],
		                  &s->kid_nthr[s->nkids]);
		s->nkids++;
	}
	closedir(dir);
}

/* ------------------------------------------------------------------ */
/* Intervals                                                            */
/* ------------------------------------------------------------------ */
static void self_snap(uint64_t *faults, uint64_t *ctxsw)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	*faults = (uint64_t)ru.ru_minflt + (uint64_t)ru.ru_majflt;
	*ctxsw = (uint64_t)ru.ru_nvcsw + (uint64_t)ru.ru_nivcsw;
}

void bench_cost_begin(struct bench_cost *c)
{
	struct bench_cost_snap *s;

	if (!bench_g.costs || c == NULL)
		return;
	s = &c->at;
	/* The /proc reading first and the counter last, so that only the
	 * counter's own read() falls inside the interval. */
	children_snap(s);
	self_snap(&s->faults, &s->ctxsw);
	s->sys_ok = sys_read(&s->sys) == 0;
}

void bench_cost_end(struct bench_cost *c, double units)
{
	struct bench_cost_snap *s, e;
	int i, kids = 0;

	if (!bench_g.costs || c == NULL)
		return;
	s = &c->at;
	e.sys_ok = sys_read(&e.sys) == 0;
	self_snap(&e.faults, &e.ctxsw);
	if (c->intervals == 0)
		c->sys_ok = 1;
	if (s->sys_ok && e.sys_ok)
		/* Less one: the read() that took e.sys. */
		c->syscalls += (double)(e.sys - s->sys) - 1;
	else
		c->sys_ok = 0;
	c->faults += (double)(e.faults - s->faults);
	c->ctxsw += (double)(e.ctxsw - s->ctxsw);
	for (i = 0; i < s->nkids; i++) {
		char path[64];
		uint64_t f;
		long pp;

		/* A child gone since the start: its counts are lost.
		 * Faults in /proc/<pid>/stat include ended threads'. */
		snprintf(path, sizeof path, "/proc/%ld/stat", s->kid[i]);
		if (stat_fields(path, &pp, &f) == 0) {
			c->faults += (double)(f - s->kid_faults[i]);
			c->ctxsw += (double)child_ctxsw(s->kid[i],
			                                s->kid_thr[i],
			                                s->kid_nthr[i], NULL,
			                                NULL);
			kids++;
		}
		free(s->kid_thr[i]);
		s->kid_thr[i] = NULL;
	}
	if (kids > c->peers)
		c->peers = kids;
	c->units += units;
	c->intervals++;
}

/* ------------------------------------------------------------------ */
/* Output                                                               */
/* ------------------------------------------------------------------ */
static const struct bench_cost *next_fig, *next_base;
static const char *next_unit;

void bench_costs_next(const char *per, const struct bench_cost *fig,
                      const struct bench_cost *base)
{
	next_unit = per;
	next_fig = fig;
	next_base = base;
}

static double per_unit(const struct bench_cost *c, double v)
{
	if (c->intervals == 0 || c->units <= 0)
		return NAN;
	return v / c->units;
}

static const char *scope(const struct bench_cost *c)
{
	if (c == NULL || c->intervals == 0)
		return NULL;
	return c->peers > 0 ? "process+peers" : "process";
}

static void put_cost(const char *prefix, const struct bench_cost *c)
{
	static const struct bench_cost none;
	const char *sc = scope(c);

	if (c == NULL)
		c = &none;
	printf(",\"%ssyscalls_per_unit\":", prefix);
	bench_put_num(c->sys_ok ? per_unit(c, c->syscalls) : NAN);
	printf(",\"%spage_faults_per_unit\":", prefix);
	bench_put_num(per_unit(c, c->faults));
	printf(",\"%sctx_switches_per_unit\":", prefix);
	bench_put_num(per_unit(c, c->ctxsw));
	if (sc != NULL)
		printf(",\"%scost_scope\":\"%s\"", prefix, sc);
	else
		printf(",\"%scost_scope\":null", prefix);
}

static void say_cost(const char *what, const struct bench_cost *c,
                     const char *unit)
{
	char sys[32];

	if (c == NULL || c->intervals == 0) {
		fprintf(stderr, "    %s: costs not measured\n", what);
		return;
	}
	if (c->sys_ok)
		snprintf(sys, sizeof sys, "%.3g", c->syscalls / c->units);
	else
		snprintf(sys, sizeof sys, "n/a");
	fprintf(stderr, "    %s: %s syscalls, %.3g page faults, %.3g context "
	        "switches per %s (%s%s; %.4g %ss in %d timed intervals)\n",
	        what, sys, c->faults / c->units, c->ctxsw / c->units, unit,
	        scope(c), c->peers > 0 ? ", children alive at each start" : "",
	        c->units, unit, c->intervals);
}

/* Called by bench_emit, inside the JSON object, when --costs is on. */
void bench_costs_put(const char *name, const char *baseline,
                     const struct bench_extra *ex, int nex)
{
	const char *unit = next_unit != NULL ? next_unit : "unit";
	char prefix[64];
	int i;

	if (next_unit != NULL)
		printf(",\"cost_unit\":\"%s\"", next_unit);
	else
		fputs(",\"cost_unit\":null", stdout);
	put_cost("", next_fig);
	if (baseline != NULL)
		put_cost("baseline_", next_base);
	for (i = 0; i < nex; i++) {
		snprintf(prefix, sizeof prefix, "%s_", ex[i].key);
		put_cost(prefix, ex[i].cost);
	}
	fprintf(stderr, "  costs of %s:\n", name);
	say_cost(name, next_fig, unit);
	if (baseline != NULL)
		say_cost(baseline, next_base, unit);
	for (i = 0; i < nex; i++)
		if (ex[i].label != NULL)
			say_cost(ex[i].label, ex[i].cost, unit);
	next_unit = NULL;
	next_fig = next_base = NULL;
}
