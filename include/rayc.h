/*
 * rayc.h -- the one public header of rayc, Ray's architecture as an
 * embeddable C11 library.  If it is not declared here, it is not API.
 *
 * Conventions
 * - Every call returns a rayc_err (0 = RAYC_OK); results come back through
 *   out-parameters.  On error nothing is written to the out-parameters
 *   unless stated, and nothing is lost.
 * - rayc_errmsg() gives a human sentence about the calling thread's last
 *   failure (for example which function name was unknown).
 * - Every ref handed out (by rayc_call, rayc_put, ...) is released exactly
 *   once with rayc_release().  Every view filled by rayc_get() is released
 *   with rayc_view_release().
 * - Thread safety is stated on each call.  "Thread-safe" calls may be made
 *   from any thread, including from inside a running task.
 */
#ifndef RAYC_H
#define RAYC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define RAYC_API __attribute__((visibility("default")))
#else
#define RAYC_API
#endif

#define RAYC_VERSION_MAJOR 0
#define RAYC_VERSION_MINOR 1
#define RAYC_VERSION_PATCH 0

/* ------------------------------------------------------------------ */
/* Errors.  One table generates the enum and the messages.             */
/* ------------------------------------------------------------------ */
#define RAYC_ERR_MAP(X)                                                        \
	X(OK, 0, "success")                                                    \
	X(EINVAL, 1, "invalid argument")                                       \
	X(ENOMEM, 2, "out of memory")                                          \
	X(ENOFUNC, 3, "no function registered under that name")                \
	X(ETIMEDOUT, 4, "timed out")                                           \
	X(ETASK, 5, "the task failed (see the error object's message)")        \
	X(ELOST, 6, "object lost and cannot be reconstructed")                 \
	X(EOWNERDIED, 7, "the object's owner died")                            \
	X(EACTORDIED, 8, "the actor died")                                     \
	X(ESTOREFULL, 9, "object store full")                                  \
	X(EAUTH, 10, "authentication failed")                                  \
	X(EPROTO, 11, "protocol error")                                        \
	X(ESTATE, 12, "runtime not in the right state for this call")          \
	X(ERANGE, 13, "index out of range")                                    \
	X(ETYPE, 14, "wrong type")                                             \
	X(EINFEASIBLE, 15, "resource demand no peer can ever satisfy")         \
	X(ENOTFOUND, 16, "no such object")                                     \
	X(ETOOBIG, 17, "object larger than the object store")                  \
	X(ESYS, 18, "operating system error")                                  \
	X(EEXIST, 19, "already exists")                                        \
	X(EPEERDIED, 20, "the peer running the task died (no retries left, "  \
	                 "or it killed 3 peers)")

typedef enum rayc_err {
#define RAYC__ERR_ENUM(name, val, msg) RAYC_##name = val,
	RAYC_ERR_MAP(RAYC__ERR_ENUM)
#undef RAYC__ERR_ENUM
} rayc_err;

/* A static sentence for every code; never NULL, also for unknown codes.
 * Thread-safe. */
RAYC_API const char *rayc_strerror(int err);

/* The calling thread's last error in detail ("unknown function 'foo'").
 * Valid until the thread's next rayc call; never NULL.  Thread-safe. */
RAYC_API const char *rayc_errmsg(void);

/* ------------------------------------------------------------------ */
/* Identifiers and refs                                                 */
/* ------------------------------------------------------------------ */
/* 128-bit object id.  Task return ids are derived from the task id, so a
 * re-run of a task re-creates the same ids. */
typedef struct rayc_object_id {
	uint64_t hi, lo;
} rayc_object_id;

typedef struct rayc_task_id {
	uint64_t hi, lo;
} rayc_task_id;

/* A ref is a future for an object (Ray's ObjectRef).  It is a plain value
 * that names a counted reference held by this process; copy it freely but
 * call rayc_release() once for each ref rayc handed out (or rayc_ref_dup
 * made). */
typedef struct rayc_ref {
	rayc_object_id id;
} rayc_ref;

/* ------------------------------------------------------------------ */
/* Configuration                                                        */
/* ------------------------------------------------------------------ */
typedef struct rayc_resource {
	const char *name; /* "GPU", or any custom name */
	double quantity;  /* >= 0; fractions down to 0.001 */
} rayc_resource;

enum rayc_log_level {
	RAYC_LOG_ERROR = 0,
	RAYC_LOG_WARN = 1,
	RAYC_LOG_INFO = 2,
	RAYC_LOG_DEBUG = 3,
};

/* Zero-initialise, set what you need.  A zero or NULL field takes the
 * RAYC_* environment variable if set, else the default:
 *   num_workers       RAYC_NUM_WORKERS         online CPUs (also the CPU total)
 *   resources         RAYC_RESOURCES           none ("GPU=1,disk=2.5")
 *   store_bytes       RAYC_OBJECT_STORE_BYTES  30% of physical memory
 *   store_dir         RAYC_STORE_DIR           /dev/shm
 *   prefault_bytes    RAYC_STORE_PREFAULT_BYTES 32 MiB populated in background
 *   log_level         RAYC_LOG_LEVEL           warn (error|warn|info|debug)
 *   driver_tasks      RAYC_DRIVER_TASKS        auto (auto|on|off): see below
 * A value out of range (README's configuration table lists the ranges:
 * num_workers 1..512, store_bytes 1 MiB..1 PiB, a store_dir of at most
 * 228 bytes, a token of at most 1024, ...) makes rayc_init fail with
 * RAYC_EINVAL and rayc_errmsg() naming the field or variable and value.
 */
typedef struct rayc_config {
	int num_workers;
	const rayc_resource *resources;
	int num_resources;
	size_t store_bytes;
	const char *store_dir;
	size_t prefault_bytes;
	int log_level; /* 0 = take env/default; else enum rayc_log_level + 1 */
	/* Cluster (each NULL/0 takes the RAYC_* variable, then the default).
	 * With none of them set, the peer is a one-peer cluster and starts
	 * no networking at all. */
	const char *address; /* RAYC_ADDRESS: join through this peer */
	const char *listen;  /* RAYC_LISTEN: default tcp://127.0.0.1:0, or
	                        tcp://0.0.0.0:0 when joining an address
	                        beyond loopback */
	const char *token;   /* RAYC_TOKEN: cluster secret (required beyond
	                        loopback) */
	int local_peers;     /* RAYC_LOCAL_PEERS: start N-1 more copies of
	                        this executable as worker peers */
	int role;            /* RAYC_ROLE: enum rayc_role */
	int heartbeat_timeout_ms; /* RAYC_HEARTBEAT_TIMEOUT_MS (1000) */
	int driver_tasks;    /* RAYC_DRIVER_TASKS: enum rayc_driver_tasks */
	/* RAYC_ADVERTISE: the tcp://host[:port] other peers dial to reach
	 * this one (behind NAT, several interfaces).  Default: the listen
	 * address; a wildcard host (0.0.0.0, empty) becomes the address this
	 * host reaches the join address from.  Joining a cluster beyond
	 * loopback while other peers would be told a loopback address is a
	 * clear RAYC_EINVAL. */
	const char *advertise;
	/* RAYC_ENCRYPT (on|off, default off): enum rayc_encrypt.  Frames
	 * are always authenticated (tampering, replay and reordering are
	 * refused); on, their payloads are also encrypted (ChaCha20 under
	 * keys only the two ends of a connection hold).  A peer that meets
	 * a peer encrypting (joining its cluster) encrypts from then on, so
	 * setting it on the founder covers the cluster.  Costs a copy of
	 * each transfer and the cipher (docs/benchmarks.md). */
	int encrypt;
} rayc_config;

enum rayc_encrypt {
	RAYC_ENCRYPT_DEFAULT = 0, /* RAYC_ENCRYPT, else off */
	RAYC_ENCRYPT_ON = 1,
	RAYC_ENCRYPT_OFF = 2,
};

/* Whether a driver runs tasks in its own process.  Tasks run on threads
 * of the peer that runs them, so a task that crashes (SIGSEGV, abort)
 * takes that peer's whole process with it.  A driver that runs no tasks
 * survives its tasks' crashes: they kill worker peers, and are retried
 * or quarantined (see rayc_task_opts.max_retries).  Such a driver offers
 * no resources to the cluster (rayc_resource_get reports 0 here); its
 * tasks, and calls nested in them, run on other peers, and wait, as any
 * task no live peer can run yet, rather than run here.  Worker peers
 * always run tasks and ignore the setting. */
enum rayc_driver_tasks {
	/* Off with local_peers > 1 (rayc_init has started other peers to
	 * run them), on otherwise. */
	RAYC_DRIVER_TASKS_AUTO = 0,
	RAYC_DRIVER_TASKS_ON = 1,
	/* Needs a cluster: RAYC_EINVAL for a one-peer cluster. */
	RAYC_DRIVER_TASKS_OFF = 2,
};

enum rayc_role {
	RAYC_ROLE_DEFAULT = 0, /* rayc_init returns; the program drives */
	RAYC_ROLE_WORKER = 1,  /* rayc_init serves until the cluster shuts
	                          down, then exits the process */
};

/* Starts this process's peer: worker threads, object store, scheduler,
 * and (when an address, a listen address, local peers or the worker role
 * is configured) its place in a cluster.  NULL cfg: defaults and RAYC_*
 * environment.  Returns RAYC_ESTATE if the runtime is already running,
 * RAYC_EAUTH if the cluster refused our token, RAYC_ETIMEDOUT if it
 * could not be joined (or local peers did not come up) in 15 s, or
 * 4 heartbeat timeouts if that is longer (a join may wait out a failover).
 *
 * With local_peers = N, rayc_init starts N-1 copies of this executable
 * (same arguments) as worker peers and returns once all N serve.  In
 * those copies rayc_init never returns: it serves, then exits the
 * process when the cluster shuts down.  So call rayc_init first thing in
 * main, before side effects the copies should not repeat.
 * Thread-safe, but call it once, early. */
RAYC_API int rayc_init(const rayc_config *cfg);

/* A worker-only peer: serves other peers' tasks until the cluster shuts
 * down, then returns RAYC_OK.  The cluster shuts down when the peer that
 * founded it calls rayc_shutdown, when the founder is gone and the last
 * driver (a peer not started as a worker) leaves or dies, or, for a peer
 * cut off from a majority of the voters, when no coordinator could be
 * elected for 3 heartbeat timeouts (at least 3 s; a stretch this peer
 * itself stood still, stopped or not scheduled, counts as a fifth of
 * one).  The caller still calls rayc_shutdown. */
RAYC_API int rayc_serve(void);

/* Stops the peer: waits for running tasks to finish, discards queued ones,
 * frees every object, joins every thread, unmaps and deletes the store
 * file.  Refs and views still held become invalid.  Must not be called
 * from inside a task.  Returns RAYC_ESTATE if not running. */
RAYC_API int rayc_shutdown(void);

/* Replaces the logger (NULL restores the default, which writes to stderr
 * at or below the configured level).  The callback runs on any rayc
 * thread with no rayc lock held.  Thread-safe. */
typedef void (*rayc_log_fn)(int level, const char *id, const char *msg,
                            void *arg);
RAYC_API void rayc_set_logger(rayc_log_fn fn, void *arg);

/* ------------------------------------------------------------------ */
/* Remote functions                                                     */
/* ------------------------------------------------------------------ */
typedef struct rayc_ctx rayc_ctx; /* a running task's context */
typedef void (*rayc_fn)(rayc_ctx *ctx);

/* Registers fn under name (copied).  Works before or after rayc_init.
 * RAYC_EEXIST if the name is taken by another function.  Thread-safe. */
RAYC_API int rayc_register(const char *name, rayc_fn fn);

/* Registers fn under its own name at load time, before main runs. */
#define RAYC_REMOTE(fn)                                                        \
	__attribute__((constructor)) static void rayc__register_##fn(void)    \
	{                                                                      \
		(void)rayc_register(#fn, fn);                                  \
	}

/* ------------------------------------------------------------------ */
/* Task arguments                                                       */
/* ------------------------------------------------------------------ */
typedef enum rayc_type {
	RAYC_TYPE_NONE = 0,
	RAYC_TYPE_I64 = 1,
	RAYC_TYPE_F64 = 2,
	RAYC_TYPE_STR = 3,   /* bytes ending in a NUL not counted in len */
	RAYC_TYPE_BYTES = 4,
	RAYC_TYPE_REF = 5,   /* only as a call argument */
	RAYC_TYPE_ERROR = 6, /* an error object: data is the message */
	RAYC_TYPE_ACTOR = 7, /* an actor handle, only as a call argument */
} rayc_type;

typedef struct rayc_arg {
	rayc_type type;
	size_t len;
	union {
		int64_t i64;
		double f64;
		const void *ptr;
		rayc_ref ref;
	} v;
} rayc_arg;

#ifndef __cplusplus
#define RAYC_I64(x) ((rayc_arg){ .type = RAYC_TYPE_I64, .v.i64 = (x) })
#define RAYC_F64(x) ((rayc_arg){ .type = RAYC_TYPE_F64, .v.f64 = (x) })
#define RAYC_STR(s)                                                            \
	((rayc_arg){ .type = RAYC_TYPE_STR, .len = (size_t)-1, .v.ptr = (s) })
#define RAYC_BYTES(p, n)                                                       \
	((rayc_arg){ .type = RAYC_TYPE_BYTES, .len = (n), .v.ptr = (p) })
#define RAYC_REF(r) ((rayc_arg){ .type = RAYC_TYPE_REF, .v.ref = (r) })
#else
/* C++ (11 and later) has neither compound literals nor nested
 * designators: the same values from inline functions. */
static inline rayc_arg rayc__arg(rayc_type type, size_t len)
{
	rayc_arg a = {};
	a.type = type;
	a.len = len;
	return a;
}
static inline rayc_arg rayc__arg_i64(int64_t x)
{
	rayc_arg a = rayc__arg(RAYC_TYPE_I64, 0);
	a.v.i64 = x;
	return a;
}
static inline rayc_arg rayc__arg_f64(double x)
{
	rayc_arg a = rayc__arg(RAYC_TYPE_F64, 0);
	a.v.f64 = x;
	return a;
}
static inline rayc_arg rayc__arg_ptr(rayc_type type, const void *p, size_t n)
{
	rayc_arg a = rayc__arg(type, n);
	a.v.ptr = p;
	return a;
}
static inline rayc_arg rayc__arg_ref(rayc_ref r)
{
	rayc_arg a = rayc__arg(RAYC_TYPE_REF, 0);
	a.v.ref = r;
	return a;
}
#define RAYC_I64(x) rayc__arg_i64(x)
#define RAYC_F64(x) rayc__arg_f64(x)
#define RAYC_STR(s) rayc__arg_ptr(RAYC_TYPE_STR, (s), (size_t)-1)
#define RAYC_BYTES(p, n) rayc__arg_ptr(RAYC_TYPE_BYTES, (p), (n))
#define RAYC_REF(r) rayc__arg_ref(r)
#endif

/* ------------------------------------------------------------------ */
/* Task options                                                         */
/* ------------------------------------------------------------------ */
/* SPREAD and NODE_AFFINITY send a peer at most 4,096 of one owner's
 * tasks at once; the rest wait at the owner, in order, counted in its
 * tasks_pending, and go as that peer finishes tasks.  An actor's
 * constructor never waits for room (tasks there may wait for it). */
enum rayc_strategy {
	RAYC_STRATEGY_DEFAULT = 0, /* local first, spill back when busy */
	RAYC_STRATEGY_SPREAD = 1,
	RAYC_STRATEGY_NODE_AFFINITY = 2,
};

typedef struct rayc_task_opts {
	int num_returns;  /* 0..4096; out must hold this many refs (0: a
	                     task run for its effect, returning nothing;
	                     out may be NULL) */
	double num_cpus;  /* CPU demand; 0 allowed */
	double num_gpus;  /* GPU demand */
	const rayc_resource *resources; /* custom demands */
	int num_resources;
	int max_retries;      /* re-runs allowed; -1 = unlimited.  Whatever
	                         it says, a task is not run again once 3
	                         peers died running it (a poison pill):
	                         its refs give RAYC_EPEERDIED */
	int retry_exceptions; /* also re-run on rayc_fail */
	int strategy;         /* enum rayc_strategy */
	uint32_t node_id;     /* NODE_AFFINITY: the peer (rayc_peer_id) */
	int soft;             /* NODE_AFFINITY: fall back to DEFAULT if that
	                         peer is gone or cannot run it */
} rayc_task_opts;

/* Ray's defaults: one return, one CPU, three retries for system failures,
 * application errors not retried. */
#ifndef __cplusplus
#define RAYC_TASK_OPTS_DEFAULT                                                 \
	((rayc_task_opts){ .num_returns = 1, .num_cpus = 1.0, .max_retries = 3 })
#else
static inline rayc_task_opts rayc__task_opts_default(void)
{
	rayc_task_opts o = {};
	o.num_returns = 1;
	o.num_cpus = 1.0;
	o.max_retries = 3;
	return o;
}
#define RAYC_TASK_OPTS_DEFAULT rayc__task_opts_default()
#endif

/* ------------------------------------------------------------------ */
/* Submitting tasks                                                     */
/* ------------------------------------------------------------------ */
/* Submits a call of the function registered as fn_name.  opts may be NULL
 * (defaults).  out receives opts->num_returns refs, each released by the
 * caller.  Argument values (I64, F64, STR, BYTES) are copied; REF
 * arguments are resolved to their object's value before the task runs and
 * the task waits, without holding a worker, until they are ready.
 * Errors: RAYC_ENOFUNC (unknown name), RAYC_EINVAL (NULL, bad args,
 * by-value lengths whose sum overflows a size_t, bad opts), RAYC_ENOTFOUND
 * (a REF argument that is not a live ref), RAYC_EINFEASIBLE (a one-peer
 * cluster, which no peer can join, asked for more than it has; or hard
 * node affinity to a peer that is not alive), RAYC_ESTATE (not
 * initialised).  In a cluster, a demand no live peer can meet is not an
 * error (Ray's rule): the task waits, counted in tasks_pending, with one
 * warning (RAYC-TASK-INFEASIBLE) per demand in the log, until a peer that
 * can run it joins; the caller's own rayc_get timeout bounds the wait.
 * Thread-safe; may be called from inside tasks. */
RAYC_API int rayc_call_array(rayc_ref *out, const char *fn_name,
                             const rayc_task_opts *opts, const rayc_arg *args,
                             size_t nargs);

/* rayc_call(&ref, "fn", RAYC_I64(1), RAYC_REF(r), ...); the same in C
 * and in C++ (11 and later: a std::initializer_list there, see the end
 * of this header). */
#ifdef __cplusplus
#define rayc_call(out, fn_name, ...)                                           \
	rayc__call_list((out), (fn_name), NULL, { __VA_ARGS__ })
#define rayc_call_opts(out, fn_name, opts, ...)                                \
	rayc__call_list((out), (fn_name), (opts), { __VA_ARGS__ })
#else
#define rayc_call(out, fn_name, ...)                                           \
	rayc_call_array((out), (fn_name), NULL,                                \
	                (const rayc_arg[]){ { RAYC_TYPE_NONE, 0, { 0 } },      \
	                                    __VA_ARGS__ } + 1,                 \
	                sizeof((const rayc_arg[]){ { RAYC_TYPE_NONE, 0, { 0 } }, \
	                                           __VA_ARGS__ }) /             \
	                                sizeof(rayc_arg) - 1)

#define rayc_call_opts(out, fn_name, opts, ...)                                \
	rayc_call_array((out), (fn_name), (opts),                              \
	                (const rayc_arg[]){ { RAYC_TYPE_NONE, 0, { 0 } },      \
	                                    __VA_ARGS__ } + 1,                 \
	                sizeof((const rayc_arg[]){ { RAYC_TYPE_NONE, 0, { 0 } }, \
	                                           __VA_ARGS__ }) /             \
	                                sizeof(rayc_arg) - 1)
#endif

/* ------------------------------------------------------------------ */
/* Objects                                                              */
/* ------------------------------------------------------------------ */
/* A read-only, zero-copy view of a sealed object.  The object stays
 * pinned in the store until rayc_view_release(). */
typedef struct rayc_view {
	const void *data; /* for RAYC_TYPE_ERROR: the NUL-terminated message */
	size_t len;
	rayc_type type;
	void *priv_; /* private */
} rayc_view;

/* Waits up to timeout_ms (-1 = forever, 0 = poll) for the object and
 * fills view.  A lost object with lineage is rebuilt first, transparently.
 * Returns RAYC_OK; a failed object's code, with the view holding its
 * message: RAYC_ETASK, RAYC_ELOST (a lost rayc_put object),
 * RAYC_EPEERDIED (the peers running its task died), RAYC_EOWNERDIED (a
 * ref this peer borrowed from another peer, which died, even if a copy
 * is here; views taken before stay valid); or RAYC_ETIMEDOUT,
 * RAYC_ENOTFOUND, RAYC_EINVAL.  Release the view after any return:
 * where it holds nothing it is zeroed, and releasing it is harmless.
 * Inside a task, a blocked get gives the task's CPU back while it waits.
 * Thread-safe. */
RAYC_API int rayc_get(rayc_ref ref, rayc_view *view, int timeout_ms);

/* Unpins the object.  Zeroes the view; NULL or released views are a
 * harmless no-op.  Thread-safe. */
RAYC_API void rayc_view_release(rayc_view *view);

/* Convenience: get and copy out a scalar.  RAYC_ETYPE if the object does
 * not hold that type.  Thread-safe. */
RAYC_API int rayc_get_i64(rayc_ref ref, int64_t *out, int timeout_ms);
RAYC_API int rayc_get_f64(rayc_ref ref, double *out, int timeout_ms);

/* Waits until at least num_ready of the n refs are ready (sealed or
 * failed), or timeout.  As ray.wait, at most num_ready are reported:
 * ready_flags (may be NULL) gets 1 for the first num_ready ready refs in
 * the order given, 0 for the others; *out_ready (may be NULL) gets how
 * many were flagged.  RAYC_ETIMEDOUT if fewer were ready in time (those
 * flagged, all of them).  RAYC_EINVAL if a ref is given twice or
 * num_ready > n.  Thread-safe. */
RAYC_API int rayc_wait(const rayc_ref *refs, size_t n, size_t num_ready,
                       int timeout_ms, uint8_t *ready_flags,
                       size_t *out_ready);

/* Copies n bytes into the store as a new immutable object.  Small objects
 * are kept inline.  RAYC_ESTOREFULL when it cannot fit now, RAYC_ETOOBIG
 * when it can never fit.  Thread-safe. */
RAYC_API int rayc_put(rayc_ref *out, const void *data, size_t n);

/* Create + write in place + seal, for large objects with no extra copy.
 * *data points at n writable bytes until rayc_put_seal(); other callers'
 * rayc_get waits until sealed.  rayc_put_abort() drops an unsealed object.
 * Thread-safe. */
RAYC_API int rayc_put_create(rayc_ref *out, size_t n, void **data);
RAYC_API int rayc_put_seal(rayc_ref ref);
RAYC_API int rayc_put_abort(rayc_ref ref);

/* Takes one more reference on ref (to hand to another thread that will
 * release it).  Thread-safe. */
RAYC_API int rayc_ref_dup(rayc_ref ref);

/* Drops one reference.  When no ref, pending task argument or view needs
 * the object it is freed.  RAYC_ENOTFOUND, changing nothing, for a ref
 * this process holds no reference on: unknown, released as many times as
 * it was handed out already, or borrowed (rayc_arg_ref) and never
 * rayc_ref_dup'ed.  Thread-safe. */
RAYC_API int rayc_release(rayc_ref ref);

/* ------------------------------------------------------------------ */
/* Inside a task (ctx is valid only during the call)                   */
/* ------------------------------------------------------------------ */
RAYC_API size_t rayc_arg_count(rayc_ctx *ctx);
/* Type of argument i; REF arguments report their object's type. */
RAYC_API rayc_type rayc_arg_type(rayc_ctx *ctx, size_t i);
/* RAYC_ERANGE for a bad index, RAYC_ETYPE for the wrong type. */
RAYC_API int rayc_arg_i64(rayc_ctx *ctx, size_t i, int64_t *out);
RAYC_API int rayc_arg_f64(rayc_ctx *ctx, size_t i, double *out);
/* Zero-copy pointer to a STR/BYTES argument (or object); valid during the
 * task. */
RAYC_API int rayc_arg_data(rayc_ctx *ctx, size_t i, const void **data,
                           size_t *len);
/* The ref an argument was passed as (RAYC_ETYPE if passed by value).  The
 * ref is borrowed; rayc_ref_dup it to keep it past the task. */
RAYC_API int rayc_arg_ref(rayc_ctx *ctx, size_t i, rayc_ref *out);

/* Set return value idx (0 .. num_returns-1).  A return never set is an
 * empty BYTES object.  Setting one twice replaces it. */
RAYC_API int rayc_return_i64(rayc_ctx *ctx, size_t idx, int64_t v);
RAYC_API int rayc_return_f64(rayc_ctx *ctx, size_t idx, double v);
RAYC_API int rayc_return_bytes(rayc_ctx *ctx, size_t idx, const void *p,
                               size_t n);
RAYC_API int rayc_return_str(rayc_ctx *ctx, size_t idx, const char *s);
/* Allocates n bytes in the store for return idx and gives a pointer to
 * write in place (no extra copy).  RAYC_ESTOREFULL if it cannot fit. */
RAYC_API int rayc_return_alloc(rayc_ctx *ctx, size_t idx, size_t n,
                               void **data);

/* Fails the task: every return becomes an error object carrying this
 * message (printf-style), and tasks that depend on it fail with the same
 * root cause.  Retried if the task was submitted with retry_exceptions.
 * Return from the task function after calling it. */
RAYC_API int rayc_fail(rayc_ctx *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* This task's id and attempt number (0 on the first run). */
RAYC_API rayc_task_id rayc_task_current_id(rayc_ctx *ctx);
RAYC_API int rayc_task_attempt(rayc_ctx *ctx);

/* ------------------------------------------------------------------ */
/* Actors                                                               */
/* ------------------------------------------------------------------ */
/* An actor is a stateful instance of a registered class (Ray's actor):
 * memory rayc allocates (state_size bytes, zeroed), set up by the
 * constructor, handed to every method, and torn down by the destructor.
 * Methods are rayc_fn functions: they read arguments and set returns
 * exactly as a task does, and find the state with rayc_actor_state.
 *
 * Order (Ray's rule for actors): calls made through one peer run in the
 * order they were made, one at a time.  A call whose REF arguments are not
 * ready yet waits for them, and the calls made after it wait behind it
 * (as in Ray, a call never overtakes an earlier one from its caller).
 * With max_concurrency = N > 1, up to N calls run at once on different
 * threads, started in that order but finishing in any: the methods then
 * share the state and must synchronise their own access to it.
 *
 * Where it runs: its constructor is placed like a task of the actor's
 * resources and strategy (this peer, another one, or, in a cluster where
 * no live peer has them, waiting until one that does joins); the
 * resources stay reserved there until the actor dies, and its calls and
 * destructor run on that peer's worker threads (a call from another
 * peer to a method whose runs took under 1 us so far, or under 2 us for
 * a call made one at a time to an actor of max_concurrency 1, which
 * travels on a task lane, may run on the thread of that peer that read
 * it, as a quick task may; never two of one actor's calls at once beyond
 * its max_concurrency, in either case).  The peer that created
 * it (its owner) keeps its handles, order and life; names are the
 * cluster's (kept in its control store); the actor dies with its owner
 * (unless detached: RAYC_LIFETIME_DETACHED).  A handle given to a task
 * that runs on another peer works there too: that peer's calls, in its
 * order, go through the owner, which queues them with the others (when
 * the actor lives on a third peer, their results come back through the
 * owner, up to 8 MiB in all per call: RAYC_ETOOBIG beyond).  If the
 * peer it lives on dies, it is restarted on another while max_restarts
 * allows (constructor again, fresh state), and calls that were running
 * there are sent again while max_task_retries allows, else fail with
 * RAYC_EACTORDIED. */
typedef struct rayc_actor {
	uint64_t hi, lo;
} rayc_actor;

typedef struct rayc_actor_method {
	const char *name;
	rayc_fn fn;
} rayc_actor_method;

typedef struct rayc_actor_class {
	const char *name;     /* unique among classes */
	size_t state_size;    /* bytes of state (0 allowed), zeroed */
	/* Runs with the creation arguments and the fresh state; rayc_fail
	 * in it kills the actor: every call then fails with
	 * RAYC_EACTORDIED and its message.  NULL: nothing to set up. */
	rayc_fn init;
	/* Runs once, when the actor goes (its last handle released, killed,
	 * before a restart, or at rayc_shutdown), never while a method
	 * runs, and only if init succeeded.  NULL: nothing to tear down. */
	void (*fini)(void *state);
	const rayc_actor_method *methods;
	size_t nmethods;
} rayc_actor_class;

/* Registers a class (the name, methods and sizes are copied).
 * RAYC_EEXIST if another class has the name; registering the same class
 * again is RAYC_OK.  Works before or after rayc_init.  Thread-safe. */
RAYC_API int rayc_actor_class_register(const rayc_actor_class *cls);

/* Registers cls (a rayc_actor_class variable) at load time. */
#define RAYC_ACTOR_CLASS(cls)                                                  \
	__attribute__((constructor)) static void rayc__register_class_##cls(  \
		void)                                                          \
	{                                                                      \
		(void)rayc_actor_class_register(&(cls));                       \
	}

enum rayc_actor_lifetime {
	/* Destroyed once every handle is released (and the calls made
	 * before have run), as Ray's default. */
	RAYC_LIFETIME_DEFAULT = 0,
	/* Lives until rayc_actor_kill, handles or not; find it again by
	 * name.  With the default strategy it is placed on another peer
	 * than its creator's if one can hold it.  Running on another peer
	 * than its creator's, it outlives its creator: when the creator
	 * leaves or dies, the peer it runs on adopts it (same instance
	 * and state, calls already made still run, its name now leads
	 * there; it can no longer be restarted, and handles taken before
	 * through the creator fail with RAYC_EACTORDIED: look it up
	 * again).  Running on its creator's peer, it ends with that peer
	 * (rayc_shutdown or death). */
	RAYC_LIFETIME_DETACHED = 1,
};

typedef struct rayc_actor_opts {
	double num_cpus; /* reserved while the actor lives; Ray's default 0 */
	double num_gpus;
	const rayc_resource *resources; /* custom, reserved likewise */
	int num_resources;
	const char *name;  /* NULL: anonymous; else 1..240 bytes, unique in
	                      the cluster (RAYC_EEXIST) */
	int get_if_exists; /* name taken: a handle to that actor instead */
	int lifetime;      /* enum rayc_actor_lifetime */
	int max_restarts;  /* restarts allowed (-1 = unlimited), default 0 */
	int max_task_retries; /* re-sends of a call whose peer died while it
	                         ran (-1 = unlimited), default 0 */
	int max_concurrency;  /* calls running at once; 0 means 1 */
	int strategy;      /* enum rayc_strategy, as for tasks */
	uint32_t node_id;
	int soft;
} rayc_actor_opts;

/* Creates an actor of class cls_name with constructor arguments (copied
 * as rayc_call's; REF arguments are waited for).  Returns at once: the
 * constructor runs on a worker thread, and calls made meanwhile wait
 * for it.  *out is a handle to release with rayc_actor_release.
 * Errors: RAYC_ENOFUNC (no such class), RAYC_EEXIST (the name is taken,
 * without get_if_exists), RAYC_EINFEASIBLE (as rayc_call: a one-peer
 * cluster without the resources, hard affinity to a dead peer),
 * RAYC_EINVAL, RAYC_ENOTFOUND (a REF argument not live), RAYC_ESTATE.
 * In a cluster a name is claimed in the control store first (a round
 * trip to the coordinator; its errors, e.g. RAYC_ETIMEDOUT, come back);
 * with get_if_exists the actor found may be another peer's.
 * Thread-safe; may be called from inside tasks and methods. */
RAYC_API int rayc_actor_create_array(rayc_actor *out, const char *cls_name,
                                     const rayc_actor_opts *opts,
                                     const rayc_arg *args, size_t nargs);

typedef struct rayc_method_opts {
	int num_returns; /* 0 .. 4096; 0: no returns (out may be NULL) */
} rayc_method_opts;

#ifndef __cplusplus
#define RAYC_METHOD_OPTS_DEFAULT ((rayc_method_opts){ .num_returns = 1 })
#else
static inline rayc_method_opts rayc__method_opts_default(void)
{
	rayc_method_opts o = {};
	o.num_returns = 1;
	return o;
}
#define RAYC_METHOD_OPTS_DEFAULT rayc__method_opts_default()
#endif

/* Calls method on the actor h: out gets num_returns refs (one with NULL
 * opts; none with 0, as Ray's num_returns=0), usable as any ref (rayc_get, rayc_wait, as task arguments),
 * each released by the caller.  A method that fails (rayc_fail) fails
 * its own call only (RAYC_ETASK); a call to an actor that is dead, or
 * dies before the call runs, fails with RAYC_EACTORDIED and a message
 * saying why.  Errors at the call itself: RAYC_ENOTFOUND (no live handle
 * h here), RAYC_ENOFUNC (no such method), RAYC_EINVAL, RAYC_ESTATE, and
 * for a first use on another peer than the owner's, RAYC_ETIMEDOUT (see
 * RAYC_ACTOR).
 * Thread-safe; may be called from inside tasks and methods. */
RAYC_API int rayc_actor_call_array(rayc_ref *out, rayc_actor h,
                                   const char *method,
                                   const rayc_method_opts *opts,
                                   const rayc_arg *args, size_t nargs);

/* A handle to the live actor named name (one more handle: release it),
 * wherever in the cluster it was made: names are kept in the replicated
 * control store.  RAYC_ENOTFOUND if none (or it is dead); RAYC_ENOFUNC
 * if its class is not registered in this process; in a cluster the KV's
 * errors (RAYC_ETIMEDOUT, RAYC_ESTATE, RAYC_ENOMEM, RAYC_EPROTO) and
 * those of registering the handle with its owner (as rayc_actor_dup's).
 * Blocking (round trips to the coordinator and the owner for an actor
 * another peer made).  Thread-safe. */
RAYC_API int rayc_actor_get_named(rayc_actor *out, const char *name);

/* One more handle on h / one handle less.  The last release of an actor
 * that is not detached destroys it once the calls already made have
 * run.  RAYC_ENOTFOUND for a handle this process holds no more of.  The
 * first handle this process takes on an actor another peer owns is
 * registered with that owner, and rayc_actor_dup then waits for its
 * answer: RAYC_ETIMEDOUT (none in 5 s) or RAYC_ESTATE (out of the
 * cluster), the handle not taken.  Thread-safe. */
RAYC_API int rayc_actor_dup(rayc_actor h);
RAYC_API int rayc_actor_release(rayc_actor h);

/* Kills the actor (Ray's ray.kill).  Calls not yet started fail with
 * RAYC_EACTORDIED, or, with no_restart = 0 while max_restarts allows,
 * wait for the restarted actor (its constructor runs again on fresh
 * state).  Calls already running finish (a thread is not interrupted);
 * then the destructor runs.  Handles stay valid and must still be
 * released.  From inside one of its own methods, the actor goes once
 * that method returns.  Works from any peer holding a handle: from
 * another peer than the actor's owner it asks the owner and waits for
 * its answer (RAYC_ETIMEDOUT after 5 s without one; an actor already
 * dead, or dead with its owner, is RAYC_OK).  Thread-safe. */
RAYC_API int rayc_actor_kill(rayc_actor h, int no_restart);

/* Inside a constructor or method: the actor's state; NULL in a task. */
RAYC_API void *rayc_actor_state(rayc_ctx *ctx);

/* A handle as a call argument: the receiver gets it with rayc_arg_actor
 * (borrowed for the call; rayc_actor_dup it to keep it), on any peer.
 * A task spec that takes a handle keeps the actor alive while the spec
 * lives (its results, which a rebuild would need).  On another peer than
 * the actor's owner, whatever a program does with a handle keeps the
 * actor alive as long as it needs it, as Ray's borrowing does: the first
 * use there that may outlive the task using it (a handle taken with
 * rayc_actor_dup or rayc_actor_get_named, a call through it, a task or
 * call given it as an argument) registers that peer with the owner and
 * waits for its answer (RAYC_ETIMEDOUT after 5 s, RAYC_ESTATE out of the
 * cluster); once no handle, call or task there holds it any more, the
 * owner is told, and the peer's death counts the same. */
#ifndef __cplusplus
#define RAYC_ACTOR(h)                                                          \
	((rayc_arg){ .type = RAYC_TYPE_ACTOR,                                  \
	             .v.ref = { .id = { (h).hi, (h).lo } } })
#else
static inline rayc_arg rayc__arg_actor(rayc_actor h)
{
	rayc_arg a = rayc__arg(RAYC_TYPE_ACTOR, 0);
	a.v.ref.id.hi = h.hi;
	a.v.ref.id.lo = h.lo;
	return a;
}
#define RAYC_ACTOR(h) rayc__arg_actor(h)
#endif
RAYC_API int rayc_arg_actor(rayc_ctx *ctx, size_t i, rayc_actor *out);

typedef enum rayc_actor_state_kind {
	RAYC_ACTOR_PENDING = 1, /* constructor not run yet */
	RAYC_ACTOR_ALIVE,
	RAYC_ACTOR_RESTARTING,
	RAYC_ACTOR_DEAD,
} rayc_actor_state_kind;

typedef struct rayc_actor_info {
	rayc_actor id;
	char class_name[64];
	char name[248]; /* "" if anonymous (names are at most 240 bytes) */
	rayc_actor_state_kind state;
	uint32_t peer;     /* where it lives */
	int restarts;
	uint64_t queued_calls;  /* made, not yet started */
	uint64_t running_calls;
	char death[160];   /* why it died; "" while not dead */
	uint32_t owner;    /* the peer that made it and keeps its record */
} rayc_actor_info;

/* The actors this peer knows (those it made, and those it runs for
 * other peers; live ones and dead ones still held by a handle), up to
 * cap, and *n = how many there are.  Thread-safe. */
RAYC_API int rayc_actor_list(rayc_actor_info *out, size_t cap, size_t *n);

/* Every actor in the cluster, each once, as its owner sees it (state,
 * the peer it lives on, restarts, queued calls), up to cap, and *n = how
 * many there are.  Asks each live peer in turn (a round trip each, 5 s
 * at most for one that does not answer): RAYC_ETIMEDOUT, with what the
 * others said filled in, if one did not answer; RAYC_ETOOBIG if a peer
 * owns more than 4096 (its first 4096 are counted).  The actors of a
 * peer that dies meanwhile died with it and are left out.  In a
 * one-peer cluster, the actors rayc_actor_list lists.  Thread-safe;
 * blocking. */
RAYC_API int rayc_cluster_actors(rayc_actor_info *out, size_t cap, size_t *n);

#ifdef __cplusplus
#define rayc_actor_create(out, cls_name, opts, ...)                            \
	rayc__actor_create_list((out), (cls_name), (opts), { __VA_ARGS__ })
#define rayc_actor_call(out, h, method, ...)                                   \
	rayc__actor_call_list((out), (h), (method), NULL, { __VA_ARGS__ })
#define rayc_actor_call_opts(out, h, method, opts, ...)                        \
	rayc__actor_call_list((out), (h), (method), (opts), { __VA_ARGS__ })
#else
#define RAYC__ARGV(...)                                                        \
	(const rayc_arg[]){ { RAYC_TYPE_NONE, 0, { 0 } }, __VA_ARGS__ } + 1,   \
		sizeof((const rayc_arg[]){ { RAYC_TYPE_NONE, 0, { 0 } },       \
		                           __VA_ARGS__ }) /                    \
				sizeof(rayc_arg) - 1
#define rayc_actor_create(out, cls_name, opts, ...)                            \
	rayc_actor_create_array((out), (cls_name), (opts),                     \
	                        RAYC__ARGV(__VA_ARGS__))
#define rayc_actor_call(out, h, method, ...)                                   \
	rayc_actor_call_array((out), (h), (method), NULL,                      \
	                      RAYC__ARGV(__VA_ARGS__))
#define rayc_actor_call_opts(out, h, method, opts, ...)                        \
	rayc_actor_call_array((out), (h), (method), (opts),                    \
	                      RAYC__ARGV(__VA_ARGS__))
#endif

/* ------------------------------------------------------------------ */
/* Introspection                                                        */
/* ------------------------------------------------------------------ */
typedef struct rayc_stats {
	uint64_t tasks_submitted;
	uint64_t tasks_executed;      /* function runs, retries included */
	uint64_t tasks_reconstructed; /* runs made to rebuild lost objects */
	uint64_t tasks_failed;
	uint64_t tasks_pending;       /* waiting for arguments or resources,
	                                 or here for room on the peer they
	                                 were placed on */
	uint64_t objects;             /* live object table entries */
	uint64_t lineage_tasks;       /* task specs retained for lineage */
	uint64_t store_used_bytes;    /* arena bytes allocated to objects */
	uint64_t store_capacity_bytes;
	uint64_t store_populated_bytes; /* arena bytes the file system has
	                                   reserved, ready for objects */
	uint64_t inline_bytes;        /* bytes of small objects kept inline */
	int num_workers;              /* worker threads alive now */
	double cpus_total, cpus_available;
	uint64_t objects_fetched;     /* fetches of objects from other peers */
	uint64_t cached_copy_bytes;   /* other peers' objects kept here for
	                                 reuse, evicted when room is needed */
	uint64_t tasks_retried;       /* of this peer's tasks, runs started
	                                 again after a failure (retry_exceptions)
	                                 or the death of the peer running them */
	uint64_t store_warm_bytes;    /* of store_populated_bytes, those made
	                                 quick to write (faulted in ahead);
	                                 a growth of 32 MiB or more is warmed
	                                 from its end while its first writer
	                                 warms from the start */
} rayc_stats;

/* Thread-safe. */
RAYC_API int rayc_stats_get(rayc_stats *out);

/* ------------------------------------------------------------------ */
/* Cluster                                                              */
/* ------------------------------------------------------------------ */
/* This peer's id in its cluster (1 for the founder and for a one-peer
 * cluster; 0 before rayc_init).  Inside a task: the peer running it. */
RAYC_API uint32_t rayc_peer_id(void);
/* The address other peers join through (RAYC_ADDRESS=...), or NULL for
 * a one-peer cluster without networking.  Valid until rayc_shutdown. */
RAYC_API const char *rayc_address(void);

typedef struct rayc_peer_info {
	uint32_t id;
	int alive;
	int is_coordinator;
	int is_voter; /* votes in the control store (else a standby) */
	int pid;
	char address[128];
	double cpus_total, cpus_available; /* as of its last heartbeat */
	uint64_t tasks_executed;           /* as of its last heartbeat */
	uint64_t tasks_queued;
} rayc_peer_info;

/* The cluster's token, NUL-terminated, into out (cap bytes; 65 is enough
 * for one rayc made).  A founder started without RAYC_TOKEN makes a
 * random one, so nobody who does not know it can join (closed by
 * default); give it to the peers that should join.  RAYC_ESTATE outside
 * a cluster, RAYC_EINVAL if cap is too small.  Thread-safe. */
RAYC_API int rayc_cluster_token(char *out, size_t cap);

/* The cluster view (every peer ever seen, dead ones with alive = 0):
 * fills up to cap entries and sets *n to the number there are. */
RAYC_API int rayc_cluster_peers(rayc_peer_info *out, size_t cap, size_t *n);

/* The job table: every driver (a peer not started as a worker) is a job,
 * with the driver's peer id as its id.  Kept in the replicated control
 * store, so it survives the coordinator. */
typedef enum rayc_job_state {
	RAYC_JOB_RUNNING = 1,
	RAYC_JOB_SUCCEEDED, /* its driver left cleanly */
	RAYC_JOB_FAILED,    /* its driver died */
} rayc_job_state;

typedef struct rayc_job_info {
	uint32_t job_id; /* = the driver's peer id */
	int pid;
	rayc_job_state state;
	int64_t start_ms, end_ms; /* wall clock, ms since the epoch; end 0 */
	char address[128];
} rayc_job_info;

/* Fills up to cap jobs, oldest first, and sets *n to the number there
 * are.  Thread-safe. */
RAYC_API int rayc_cluster_jobs(rayc_job_info *out, size_t cap, size_t *n);

/* The cluster's key-value store, kept in the replicated control store
 * (Raft) and visible from every peer.  Keys beginning with "rayc." are
 * the library's own (actor names): rayc_kv_put and rayc_kv_del refuse
 * them (RAYC_EINVAL).  Keys are strings up to 255 bytes,
 * values up to 1 MiB, 128 MiB in all (RAYC_ESTOREFULL beyond).
 * rayc_kv_get returns a malloc'd copy (free it with free());
 * RAYC_ENOTFOUND if the key is absent.  Each call is a round
 * trip to the coordinator; a put returns once the entry is committed on
 * a majority of voters.  During a coordinator election calls wait (5 s
 * in all: RAYC_ETIMEDOUT); a put or delete retried after the coordinator
 * died is applied once.  Puts and deletes also wait while the
 * coordinator's log is at its bound (32 MiB of writes not yet committed,
 * or 128 MiB not yet in a snapshot): RAYC_ETIMEDOUT if that lasts 5 s. */
RAYC_API int rayc_kv_put(const char *key, const void *val, size_t len);
RAYC_API int rayc_kv_get(const char *key, void **val, size_t *len);
RAYC_API int rayc_kv_del(const char *key);

/* Total and available quantity of a resource by name ("CPU", "GPU", or a
 * custom one).  RAYC_ENOTFOUND if this cluster has none.  Thread-safe. */
RAYC_API int rayc_resource_get(const char *name, double *total,
                               double *available);

#ifdef __cplusplus
}

#include <initializer_list>

/* rayc_call and rayc_call_opts in C++: the arguments as a list. */
inline int rayc__call_list(rayc_ref *out, const char *fn_name,
                           const rayc_task_opts *opts,
                           std::initializer_list<rayc_arg> args)
{
	return rayc_call_array(out, fn_name, opts, args.begin(), args.size());
}

/* The actor calls in C++: the arguments as a list. */
inline int rayc__actor_create_list(rayc_actor *out, const char *cls_name,
                                   const rayc_actor_opts *opts,
                                   std::initializer_list<rayc_arg> args)
{
	return rayc_actor_create_array(out, cls_name, opts, args.begin(),
	                               args.size());
}
inline int rayc__actor_call_list(rayc_ref *out, rayc_actor h,
                                 const char *method,
                                 const rayc_method_opts *opts,
                                 std::initializer_list<rayc_arg> args)
{
	return rayc_actor_call_array(out, h, method, opts, args.begin(),
	                             args.size());
}
#endif
#endif /* RAYC_H */
