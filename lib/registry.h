/* registry.h -- name to function lookup for task submission, and actor
 * classes by name. */
#ifndef RAYC_REGISTRY_H
#define RAYC_REGISTRY_H

#include "rt.h"

/* NULL if no function has that name.  Thread-safe; never blocks long. */
const rayc__fn_entry *rayc__registry_find(const char *name);

/* An actor class as registered (copied; never freed while the process
 * lives).  Its methods are function entries named "Class.method". */
struct rayc__aclass {
	char *name;
	size_t state_size;
	rayc_fn init;
	void (*fini)(void *state);
	rayc__fn_entry *methods;
	size_t nmethods;
	UT_hash_handle hh;
};

/* NULL if no class has that name.  Thread-safe. */
const rayc__aclass *rayc__aclass_find(const char *name);
/* The method's entry, or NULL.  No lock (classes never change). */
const rayc__fn_entry *rayc__aclass_method(const rayc__aclass *c,
                                          const char *method);

#endif
