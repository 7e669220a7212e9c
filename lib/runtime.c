/* runtime.c -- rayc_init / rayc_shutdown: configuration from the struct
 * and RAYC_* variables, resources, the store, the workers; and the
 * introspection calls. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

#include "lineage/lineage.h"
#include "net/net.h"
#include "api_int.h"
#include "sched/actor.h"
#include "sched/direct.h"
#include "sched/sched.h"
#include "testing.h"

rayc__rt *rayc__g;
static atomic_flag init_lock = ATOMIC_FLAG_INIT;

static void lock_init(void)
{
	while (atomic_flag_test_and_set(&init_lock))
		rayc__yield();
}

static void unlock_init(void)
{
	atomic_flag_clear(&init_lock);
}

/* Limits of the configuration (README's table lists them).  A store
 * beyond 1 PiB leaves room to round its size up and to pass it as an
 * off_t; the heartbeat timeout is counted in ms and scaled to ns. */
#define STORE_MIN ((uint64_t)1 << 20)
#define STORE_MAX ((uint64_t)1 << 50)
#define HEARTBEAT_MIN_MS 50
#define HEARTBEAT_MAX_MS 3600000
#define RES_MAX 1e12 /* per resource: 1e15 milli-units fit an int64_t */

static const char *env_str(const char *name)
{
	const char *s = getenv(name);
	return s != NULL && *s != '\0' ? s : NULL;
}

/* Writes v as the largest unit that divides it ("1M", "1024T"). */
static const char *fmt_size(uint64_t v, char *buf, size_t n)
{
	static const char units[] = "KMGT";
	int u = 0;

	while (u < 4 && v != 0 && v % 1024 == 0) {
		v /= 1024;
		u++;
	}
	snprintf(buf, n, "%llu%.*s", (unsigned long long)v, u > 0,
	         u > 0 ? &units[u - 1] : "");
	return buf;
}

/* Decimal digits only (no sign, blank or base prefix), for a size
 * optionally followed by one of k, m, g, t (KiB .. TiB); false if the
 * string is anything else or the value overflows 64 bits. */
static bool parse_u64(const char *s, bool size, uint64_t *out)
{
	static const char units[] = "kmgt";
	unsigned shift = 0;
	char *end;

	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	if (size && *end != '\0') {
		const char *u = strchr(units, tolower((unsigned char)*end));
		if (u == NULL)
			return false;
		shift = 10 * (unsigned)(u - units + 1);
		end++;
	}
	if (*end != '\0' || v > (UINT64_MAX >> shift))
		return false;
	*out = (uint64_t)v << shift;
	return true;
}

/* The one reader of numeric RAYC_* variables: the whole value must parse
 * (parse_u64) and lie in [min, max].  Unset or empty leaves *out alone.
 * RAYC_EINVAL names the variable, its value and the range. */
static int env_num(const char *name, bool size, uint64_t min, uint64_t max,
                   uint64_t *out)
{
	const char *s = env_str(name);
	char a[32], b[32];
	uint64_t v;

	if (s == NULL)
		return RAYC_OK;
	if (parse_u64(s, size, &v) && v >= min && v <= max) {
		*out = v;
		return RAYC_OK;
	}
	if (size)
		return rayc__err(RAYC_EINVAL, "%s=%s: use a size in bytes from "
		                 "%s to %s (digits, then k, m, g or t for KiB "
		                 "to TiB)", name, s,
		                 fmt_size(min, a, sizeof(a)),
		                 fmt_size(max, b, sizeof(b)));
	return rayc__err(RAYC_EINVAL, "%s=%s: use a whole number from %llu "
	                 "to %llu", name, s, (unsigned long long)min,
	                 (unsigned long long)max);
}

/* A string the runtime must pass on whole: the store directory (with
 * the file name it must fit the 255 bytes of a path) and the token
 * (local peers get it in their environment).  The token is a secret:
 * only its length is named. */
static int check_len(const char *what, const char *s, size_t max,
                     bool secret)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n <= max)
		return RAYC_OK;
	if (secret)
		return rayc__err(RAYC_EINVAL, "%s is %zu bytes long: at most "
		                 "%zu", what, n, max);
	return rayc__err(RAYC_EINVAL, "%s=%s is %zu bytes long: at most %zu",
	                 what, s, n, max);
}

/* The effective configuration: struct fields win, then environment, then
 * defaults. */
typedef struct conf {
	int workers;
	size_t store_bytes, prefault;
	const char *store_dir;
	int log_level;
	rayc_resource res[RAYC__MAX_RES];
	int nres;
	char names[512];
	rayc__net_conf net;
	bool use_net;
	bool no_tasks; /* a driver that keeps tasks off its process */
} conf;

/* Whether this driver runs tasks (enum rayc_driver_tasks).  Off by
 * default only where rayc_init itself starts the peers that run them
 * (local_peers): there the program is the driver, and a task that
 * crashes must not take it, and with it the whole local cluster, down. */
static int resolve_driver_tasks(const rayc_config *cfg, conf *c)
{
	const char *s;
	int v = cfg->driver_tasks;

	if (v < RAYC_DRIVER_TASKS_AUTO || v > RAYC_DRIVER_TASKS_OFF)
		return rayc__err(RAYC_EINVAL, "driver_tasks %d: use "
		                 "RAYC_DRIVER_TASKS_AUTO, _ON or _OFF", v);
	if (v == RAYC_DRIVER_TASKS_AUTO &&
	    (s = env_str("RAYC_DRIVER_TASKS")) != NULL) {
		if (strcmp(s, "on") == 0 || strcmp(s, "1") == 0)
			v = RAYC_DRIVER_TASKS_ON;
		else if (strcmp(s, "off") == 0 || strcmp(s, "0") == 0)
			v = RAYC_DRIVER_TASKS_OFF;
		else if (strcmp(s, "auto") != 0)
			return rayc__err(RAYC_EINVAL, "RAYC_DRIVER_TASKS=%s: "
			                 "use auto, on or off", s);
	}
	if (c->net.worker)
		return RAYC_OK; /* a worker peer is there to run tasks */
	c->no_tasks = v == RAYC_DRIVER_TASKS_OFF ||
	              (v == RAYC_DRIVER_TASKS_AUTO && c->net.local_peers > 1);
	if (c->no_tasks && !c->use_net)
		return rayc__err(RAYC_EINVAL, "driver_tasks off: a one-peer "
		                 "cluster has no other peer to run tasks (set "
		                 "local_peers, an address or a listen address)");
	return RAYC_OK;
}

static int resolve_net(const rayc_config *cfg, conf *c)
{
	const char *s;
	rayc__net_conf *n = &c->net;
	uint64_t v;
	int rc;
	bool env_worker = (s = env_str("RAYC_ROLE")) != NULL &&
	                  strcmp(s, "worker") == 0;

	if (s != NULL && !env_worker && strcmp(s, "driver") != 0)
		return rayc__err(RAYC_EINVAL, "RAYC_ROLE=%s: use worker or "
		                 "driver", s);
	n->worker = env_worker || cfg->role == RAYC_ROLE_WORKER;
	/* A worker started by a founder takes its address from the
	 * environment the founder gave it. */
	n->address = env_worker && env_str("RAYC_ADDRESS") != NULL
	                     ? env_str("RAYC_ADDRESS")
	             : cfg->address != NULL ? cfg->address
	                                    : env_str("RAYC_ADDRESS");
	n->listen = cfg->listen != NULL && !env_worker ? cfg->listen
	                                               : env_str("RAYC_LISTEN");
	n->advertise = cfg->advertise != NULL && !env_worker
	                       ? cfg->advertise
	                       : env_str("RAYC_ADVERTISE");
	n->token = env_worker && env_str("RAYC_TOKEN") != NULL
	                   ? env_str("RAYC_TOKEN")
	           : cfg->token != NULL ? cfg->token
	                                : env_str("RAYC_TOKEN");
	rc = check_len(cfg->token != NULL && n->token == cfg->token
	                       ? "token" : "RAYC_TOKEN",
	               n->token, RAYC__TOKEN_MAX, true);
	if (rc != RAYC_OK)
		return rc;
	if (cfg->role != RAYC_ROLE_DEFAULT && cfg->role != RAYC_ROLE_WORKER)
		return rayc__err(RAYC_EINVAL, "role %d: use RAYC_ROLE_DEFAULT "
		                 "or RAYC_ROLE_WORKER", cfg->role);
	if (cfg->local_peers < 0 || cfg->local_peers > RAYC__MAX_PEERS - 1)
		return rayc__err(RAYC_EINVAL, "local_peers %d: use 0 to %d",
		                 cfg->local_peers, RAYC__MAX_PEERS - 1);
	v = (uint64_t)cfg->local_peers;
	if (v == 0 && (rc = env_num("RAYC_LOCAL_PEERS", false, 0,
	                            RAYC__MAX_PEERS - 1, &v)) != RAYC_OK)
		return rc;
	n->local_peers = (int)v;
	if (env_worker || n->address != NULL)
		n->local_peers = 0;
	if (cfg->heartbeat_timeout_ms != 0 &&
	    (cfg->heartbeat_timeout_ms < HEARTBEAT_MIN_MS ||
	     cfg->heartbeat_timeout_ms > HEARTBEAT_MAX_MS))
		return rayc__err(RAYC_EINVAL, "heartbeat_timeout_ms %d: use %d "
		                 "to %d", cfg->heartbeat_timeout_ms,
		                 HEARTBEAT_MIN_MS, HEARTBEAT_MAX_MS);
	v = (uint64_t)cfg->heartbeat_timeout_ms;
	if (v == 0 && (rc = env_num("RAYC_HEARTBEAT_TIMEOUT_MS", false,
	                            HEARTBEAT_MIN_MS, HEARTBEAT_MAX_MS, &v)) !=
	                      RAYC_OK)
		return rc;
	n->heartbeat_timeout_ms = (int)v;
	if (n->address != NULL && strncmp(n->address, "tcp://", 6) != 0)
		return rayc__err(RAYC_EINVAL, "address '%s': use tcp://host:port",
		                 n->address);
	c->use_net = n->worker || n->address != NULL || n->listen != NULL ||
	             n->local_peers > 1;
	if (cfg->encrypt < RAYC_ENCRYPT_DEFAULT || cfg->encrypt > RAYC_ENCRYPT_OFF)
		return rayc__err(RAYC_EINVAL, "encrypt %d: use "
		                 "RAYC_ENCRYPT_DEFAULT, _ON or _OFF",
		                 cfg->encrypt);
	n->encrypt = cfg->encrypt == RAYC_ENCRYPT_ON;
	if (cfg->encrypt == RAYC_ENCRYPT_DEFAULT &&
	    (s = env_str("RAYC_ENCRYPT")) != NULL) {
		if (strcmp(s, "on") == 0 || strcmp(s, "1") == 0)
			n->encrypt = true;
		else if (strcmp(s, "off") != 0 && strcmp(s, "0") != 0)
			return rayc__err(RAYC_EINVAL, "RAYC_ENCRYPT=%s: use on "
			                 "or off", s);
	}
	return resolve_driver_tasks(cfg, c);
}

/* Quantities a resource table can count (rayc__res_from_double). */
static int check_resources(const conf *c, const char *env)
{
	for (int i = 0; i < c->nres; i++) {
		const rayc_resource *r = &c->res[i];
		if (r->name != NULL && *r->name != '\0' &&
		    r->quantity >= 0 && r->quantity <= RES_MAX)
			continue;
		if (env != NULL)
			return rayc__err(RAYC_EINVAL,
			                 "RAYC_RESOURCES=%s: %s=%g: use "
			                 "quantities from 0 to %g", env,
			                 r->name, r->quantity, RES_MAX);
		return rayc__err(RAYC_EINVAL, "resources[%d] %s=%g: use a name "
		                 "and a quantity from 0 to %g", i,
		                 r->name != NULL ? r->name : "(null)",
		                 r->quantity, RES_MAX);
	}
	return RAYC_OK;
}

static int resolve_store(const rayc_config *cfg, conf *c)
{
	char a[32], b[32];
	uint64_t v = cfg->store_bytes;
	int rc;

	if (v != 0 && (v < STORE_MIN || v > STORE_MAX))
		return rayc__err(RAYC_EINVAL, "store_bytes %llu: use %s to %s",
		                 (unsigned long long)v,
		                 fmt_size(STORE_MIN, a, sizeof(a)),
		                 fmt_size(STORE_MAX, b, sizeof(b)));
	if (v == 0 && (rc = env_num("RAYC_OBJECT_STORE_BYTES", true, STORE_MIN,
	                            STORE_MAX, &v)) != RAYC_OK)
		return rc;
	if (v == 0)
		v = rayc__phys_mem() * 3 / 10;
	c->store_bytes = (size_t)(v < STORE_MIN ? STORE_MIN : v);
	/* More than the store populates all of it. */
	v = cfg->prefault_bytes;
	if (v == 0) {
		v = (uint64_t)32 << 20;
		if ((rc = env_num("RAYC_STORE_PREFAULT_BYTES", true, 0,
		                  STORE_MAX, &v)) != RAYC_OK)
			return rc;
	}
	c->prefault = (size_t)v;
	c->store_dir = cfg->store_dir;
	if (c->store_dir == NULL)
		c->store_dir = getenv("RAYC_STORE_DIR");
	if (c->store_dir == NULL || *c->store_dir == '\0')
		c->store_dir = "/dev/shm";
	return check_len(c->store_dir == cfg->store_dir ? "store_dir"
	                                                : "RAYC_STORE_DIR",
	                 c->store_dir, RAYC__SHM_DIR_MAX, false);
}

static int resolve_conf(const rayc_config *cfg, conf *c)
{
	static const rayc_config zero;
	const char *s;
	uint64_t v;
	int rc;

	if (cfg == NULL)
		cfg = &zero;
	memset(c, 0, sizeof(*c));
	if (cfg->num_workers < 0 || cfg->num_workers > RAYC__MAX_THREADS / 2)
		return rayc__err(RAYC_EINVAL, "num_workers %d: use 1 to %d",
		                 cfg->num_workers, RAYC__MAX_THREADS / 2);
	v = (uint64_t)cfg->num_workers;
	if (v == 0 && (rc = env_num("RAYC_NUM_WORKERS", false, 1,
	                            RAYC__MAX_THREADS / 2, &v)) != RAYC_OK)
		return rc;
	c->workers = v != 0 ? (int)v : rayc__ncpus();
	if ((rc = resolve_store(cfg, c)) != RAYC_OK)
		return rc;
	if (cfg->log_level < 0 || cfg->log_level > RAYC_LOG_DEBUG + 1)
		return rayc__err(RAYC_EINVAL, "log_level %d: use 0 (the "
		                 "environment) or a rayc_log_level + 1",
		                 cfg->log_level);
	c->log_level = cfg->log_level - 1;
	if (c->log_level < 0 && (s = env_str("RAYC_LOG_LEVEL")) != NULL) {
		c->log_level = rayc__log_parse_level(s);
		if (c->log_level < 0)
			return rayc__err(RAYC_EINVAL, "RAYC_LOG_LEVEL=%s: use "
			                 "error|warn|info|debug", s);
	}
	if (c->log_level < 0)
		c->log_level = RAYC_LOG_WARN;
	if ((rc = resolve_net(cfg, c)) != RAYC_OK)
		return rc;
	s = NULL;
	if (cfg->num_resources > 0) {
		if (cfg->resources == NULL || cfg->num_resources > RAYC__MAX_RES - 2)
			return rayc__err(RAYC_EINVAL,
			                 "resources: %d of at most %d",
			                 cfg->num_resources,
			                 RAYC__MAX_RES - 2);
		memcpy(c->res, cfg->resources,
		       (size_t)cfg->num_resources * sizeof(rayc_resource));
		c->nres = cfg->num_resources;
	} else if ((s = env_str("RAYC_RESOURCES")) != NULL) {
		c->nres = rayc__parse_resources(s, c->res, RAYC__MAX_RES - 2,
		                                c->names, sizeof(c->names));
		if (c->nres < 0)
			return rayc__err(RAYC_EINVAL, "RAYC_RESOURCES=%s: use "
			                 "name=qty,name=qty", s);
	}
	return check_resources(c, s);
}

int rayc__test_conf_check(const rayc_config *cfg)
{
	conf c;

	return resolve_conf(cfg, &c);
}

int rayc__res_find(const rayc__rt *rt, const char *name)
{
	int n = atomic_load(&rt->nres);

	for (int k = 0; k < n; k++)
		if (strcmp(rt->res_names[k], name) == 0)
			return k;
	return -1;
}

/* Appends a name with a total of 0 (at init, or under rt->mu).  -1 if
 * the table is full or out of memory. */
static int res_append(rayc__rt *rt, const char *name)
{
	int n = atomic_load(&rt->nres);

	if (n == RAYC__MAX_RES || (rt->res_names[n] = strdup(name)) == NULL)
		return -1;
	rt->res_total[n] = 0;
	rt->res_avail[n] = 0;
	atomic_store(&rt->nres, n + 1);
	return n;
}

static int add_resource(rayc__rt *rt, const char *name, double qty)
{
	if (name == NULL || *name == '\0' || !(qty >= 0))
		return rayc__err(RAYC_EINVAL, "bad resource");
	/* CPU from resources overrides the worker count's. */
	int k = rayc__res_find(rt, name);
	if (k < 0 && atomic_load(&rt->nres) == RAYC__MAX_RES)
		return rayc__err(RAYC_EINVAL, "more than %d resources",
		                 RAYC__MAX_RES);
	if (k < 0 && (k = res_append(rt, name)) < 0)
		return RAYC_ENOMEM;
	rt->res_total[k] = rayc__res_from_double(qty);
	return RAYC_OK;
}

int rayc__res_index_locked(rayc__rt *rt, const char *name, bool add)
{
	int k = rayc__res_find(rt, name);

	if (k >= 0 || !add || *name == '\0')
		return k;
	return res_append(rt, name);
}

static void rt_free(rayc__rt *rt)
{
	rayc__direct_destroy(rt); /* a failed rayc_init's */
	for (int k = 0; k < atomic_load(&rt->nres); k++)
		free(rt->res_names[k]);
	rayc__store_close(rt->store);
	rayc__slab_fini(&rt->task_slab);
	rayc__slab_fini(&rt->obj_slab);
	rayc__direct_fini(rt);
	rayc__idtab_fini(&rt->objs);
	rayc__objtab_free_hints(rt);
	rayc__mutex_fini(&rt->kv_mu);
	rayc__mutex_fini(&rt->name_mu);
	rayc__mutex_fini(&rt->mu);
	free(rt);
}

/* Direct tasks (sched/direct.h) on a peer with no mesh: their ring and
 * queue, and the class of the default demand they run in, if this peer
 * can run it at all. */
static int direct_init(rayc__rt *rt)
{
	rayc_task_opts def = RAYC_TASK_OPTS_DEFAULT;
	int64_t demand[RAYC__MAX_RES];
	int rc;

	if (rayc__demand_of(rt, &def, demand) != RAYC_OK) {
		rayc__err_clear(); /* infeasible here: nothing is direct */
		return RAYC_OK;
	}
	if ((rc = rayc__direct_init(rt)) != RAYC_OK) {
		/* Only a speed-up: tasks go through rt->mu instead. */
		rayc__log(RAYC_LOG_WARN, "RAYC-DIRECT-OFF", "%s: tasks take "
		          "the scheduler's lock", rayc_errmsg());
		rayc__err_clear();
		return RAYC_OK;
	}
	rayc__mutex_lock(&rt->mu);
	rt->dclass = rayc__sched_class_locked(rt, demand);
	rayc__mutex_unlock(&rt->mu);
	return rt->dclass != NULL ? RAYC_OK : RAYC_ENOMEM;
}

/* Stops and frees a runtime whose scheduler started: the mesh first,
 * then the workers, then every object, task and class. */
static void rt_teardown(rayc__rt *rt)
{
	rayc__net_stop(rt);
	rayc__sched_stop(rt);
	rayc__actors_teardown(rt);
	/* Direct tasks' entries first: the ring still names adopted ones
	 * in flight (the table's, freed next). */
	rayc__direct_destroy(rt);
	rayc__mutex_lock(&rt->mu);
	rayc__sched_drain_locked(rt); /* submitted at the last moment */
	rayc__objtab_destroy_locked(rt);
	rayc__sched_destroy_locked(rt);
	rayc__mutex_unlock(&rt->mu);
	rayc__mutex_lock(&rt->kv_mu);
	rayc__kv_free_locked(rt);
	rayc__mutex_unlock(&rt->kv_mu);
	rayc__g = NULL;
	rt_free(rt);
}

int rayc_init(const rayc_config *cfg)
{
	conf c;
	int rc;

	lock_init();
	if (rayc__g != NULL) {
		unlock_init();
		return rayc__err(RAYC_ESTATE, "rayc_init: already running");
	}
	rc = resolve_conf(cfg, &c);
	if (rc != RAYC_OK) {
		unlock_init();
		return rc;
	}
	rayc__log_set_level(c.log_level);
	/* Aligned as its counters' cache lines are (rt.h); sizeof is a
	 * multiple of the alignment. */
	rayc__rt *rt = aligned_alloc(_Alignof(rayc__rt), sizeof(*rt));
	if (rt == NULL) {
		unlock_init();
		return RAYC_ENOMEM;
	}
	memset(rt, 0, sizeof(*rt));
	rayc__mutex_init(&rt->mu);
	rayc__mutex_init(&rt->kv_mu);
	rayc__mutex_init(&rt->name_mu);
	TAILQ_INIT(&rt->cache);
	/* Kept warm: 4 MiB of each whatever the recent use.  On cache
	 * lines: rt.h lays entries and specs out by what is read together
	 * (an entry's block is 192 bytes, three lines). */
	rayc__slab_init(&rt->obj_slab, sizeof(rayc__obj), 4u << 20,
	                RAYC__SLAB_OBJ, 64);
	rayc__slab_init(&rt->task_slab, RAYC__TASK_SLAB_BYTES, 4u << 20,
	                RAYC__SLAB_TASK, 64);
	rayc__sched_submit_init();
	rt->spin_ns = 50000;
	atomic_store(&rt->self_id, 1);
	{
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		rt->start_wall_ms = (int64_t)ts.tv_sec * 1000 +
		                    ts.tv_nsec / 1000000;
	}
	rc = add_resource(rt, "CPU", c.workers);
	if (rc == RAYC_OK)
		rc = add_resource(rt, "GPU", 0);
	for (int i = 0; i < c.nres && rc == RAYC_OK; i++)
		rc = add_resource(rt, c.res[i].name, c.res[i].quantity);
	if (rc == RAYC_OK)
		rc = rayc__store_open(&rt->store, c.store_dir, c.store_bytes,
		                      c.prefault);
	rt->cache_cap = c.store_bytes / 2;
	if (c.no_tasks) {
		/* A driver that runs no tasks offers nothing: every peer
		 * (placement, feasibility, other owners through the
		 * membership and heartbeats) sees a peer with no resources,
		 * and such a peer runs no task at all. */
		for (int k = 0; k < atomic_load(&rt->nres); k++)
			rt->res_total[k] = 0;
	}
	if (rc != RAYC_OK) {
		rt_free(rt);
		unlock_init();
		return rc;
	}
	memcpy(rt->res_avail, rt->res_total, sizeof(rt->res_avail));
	rayc__mutex_lock(&rt->mu);
	rc = rayc__objtab_init_locked(rt); /* rt_free frees it */
	if (rc == RAYC_OK) /* last: nothing to undo after it */
		rc = rayc__actors_init_locked(rt);
	rayc__mutex_unlock(&rt->mu);
	if (rc != RAYC_OK) {
		rt_free(rt);
		unlock_init();
		return rc;
	}
	rt->job = ((uint64_t)getpid() << 32) ^ (uint64_t)rayc__now_ns();
	atomic_init(&rt->next_task, 1);
	atomic_init(&rt->next_put, 1);
	if (!c.use_net)
		rc = direct_init(rt);
	if (rc != RAYC_OK) {
		rt_free(rt);
		unlock_init();
		return rc;
	}
	rayc__g = rt;
	rc = rayc__sched_start(rt, c.workers);
	if (rc == RAYC_OK && c.use_net) {
		rt->hooks = &rayc__net_hooks;
		rc = rayc__net_start(rt, &c.net);
	}
	if (rc != RAYC_OK) {
		rt_teardown(rt);
		unlock_init();
		return rc;
	}
	rayc__log(RAYC_LOG_INFO, "RAYC-INIT",
	          "peer up: %d workers, store %zu bytes at %s", c.workers,
	          c.store_bytes, rayc__store_path(rt->store));
	unlock_init();
	rayc__err_clear();
	if (c.use_net && c.net.worker) {
		/* A worker peer: serve, then end the process. */
		rayc__net_serve(rt);
		rayc_shutdown();
		exit(0);
	}
	return RAYC_OK;
}

int rayc_serve(void)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	if (rt->net == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_serve: this peer is not "
		                 "in a cluster (set RAYC_ADDRESS)");
	rayc__net_serve(rt);
	return RAYC_OK;
}

int rayc_shutdown(void)
{
	lock_init();
	rayc__rt *rt = rayc__g;
	if (rt == NULL) {
		unlock_init();
		return rayc__err(RAYC_ESTATE, "rayc_shutdown: not running");
	}
	if (rayc__cur != NULL) {
		unlock_init();
		return rayc__err(RAYC_ESTATE, "rayc_shutdown inside a task");
	}
	rt_teardown(rt);
	unlock_init();
	return RAYC_OK;
}

int rayc_stats_get(rayc_stats *st)
{
	rayc__rt *rt = rayc__g;
	rayc__store_stats ss;

	if (st == NULL)
		return rayc__err(RAYC_EINVAL, "NULL stats");
	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	memset(st, 0, sizeof(*st));
	rayc__rt_lock(rt);
	st->tasks_pending = rt->queued + rt->pending_args + rt->rwait.n +
	                    rt->nwait_peer +
	                    rt->infeasible.n + rayc__direct_queued(rt);
	st->objects = rt->nobjs + rayc__direct_live(rt);
	st->lineage_tasks = rt->nlineage;
	st->inline_bytes = rt->inline_bytes;
	st->cached_copy_bytes = rt->cache_bytes;
	st->objects_fetched = rt->n_fetches;
	st->num_workers = rt->nworkers;
	st->cpus_total = rayc__res_to_double(rt->res_total[RAYC__RES_CPU]);
	st->cpus_available = rayc__res_to_double(rt->res_avail[RAYC__RES_CPU]);
	rayc__mutex_unlock(&rt->mu);
	st->tasks_submitted = atomic_load(&rt->n_submitted);
	st->tasks_executed = atomic_load(&rt->n_executed);
	st->tasks_reconstructed = atomic_load(&rt->n_reconstructed);
	st->tasks_failed = atomic_load(&rt->n_failed);
	st->tasks_retried = atomic_load(&rt->n_retried);
	rayc__store_stats_get(rt->store, &ss);
	st->store_used_bytes = ss.used;
	st->store_capacity_bytes = ss.capacity;
	st->store_populated_bytes = ss.populated;
	st->store_warm_bytes = ss.warm;
	return RAYC_OK;
}

int rayc_resource_get(const char *name, double *total, double *available)
{
	rayc__rt *rt = rayc__g;

	if (name == NULL)
		return rayc__err(RAYC_EINVAL, "NULL name");
	if (rt == NULL)
		return rayc__err(RAYC_ESTATE, "rayc_init has not been called");
	int k = rayc__res_find(rt, name);
	if (k < 0)
		return rayc__err(RAYC_ENOTFOUND, "no resource '%s'", name);
	rayc__mutex_lock(&rt->mu);
	if (total != NULL)
		*total = rayc__res_to_double(rt->res_total[k]);
	if (available != NULL)
		*available = rayc__res_to_double(rt->res_avail[k]);
	rayc__mutex_unlock(&rt->mu);
	return RAYC_OK;
}

int rayc__test_lose(rayc_ref ref)
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL)
		return RAYC_ESTATE;
	rayc__rt_lock(rt);
	rayc__obj *o = rayc__obj_find_locked(rt, ref.id);
	if (o != NULL)
		rayc__obj_drop_data_locked(rt, o);
	rayc__mutex_unlock(&rt->mu);
	return o != NULL ? RAYC_OK : RAYC_ENOTFOUND;
}

int rayc__test_hold_lock(bool hold) RAYC_NO_TSA
{
	rayc__rt *rt = rayc__g;

	if (rt == NULL)
		return RAYC_ESTATE;
	if (hold)
		rayc__mutex_lock(&rt->mu);
	else
		rayc__mutex_unlock(&rt->mu);
	return RAYC_OK;
}

uint64_t rayc__test_entries(void)
{
	rayc__rt *rt = rayc__g;
	uint64_t n;

	if (rt == NULL)
		return 0;
	rayc__mutex_lock(&rt->mu); /* lets nothing handed over go first */
	n = rt->nobjs;
	rayc__mutex_unlock(&rt->mu);
	return n;
}

void rayc__test_slab_chunks(size_t *tasks, size_t *objs)
{
	rayc__rt *rt = rayc__g;

	*tasks = *objs = 0;
	if (rt == NULL)
		return;
	while (atomic_flag_test_and_set(&rt->task_slab.lock))
		;
	*tasks = rt->task_slab.nchunks;
	atomic_flag_clear(&rt->task_slab.lock);
	while (atomic_flag_test_and_set(&rt->obj_slab.lock))
		;
	*objs = rt->obj_slab.nchunks;
	atomic_flag_clear(&rt->obj_slab.lock);
}

const char *rayc__test_store_path(void)
{
	return rayc__g != NULL ? rayc__store_path(rayc__g->store) : NULL;
}

unsigned long rayc__test_rss(void)
{
	return (unsigned long)rayc__rss_bytes();
}
