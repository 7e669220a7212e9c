/* registry.c -- functions registered by name.  Entries are never removed
 * while the process lives, so pointers to them stay valid and a
 * per-thread cache can skip the lookup. */
#include <stdlib.h>
#include <string.h>

#include "registry.h"

static rayc__fn_entry *registry;
static atomic_flag reg_lock = ATOMIC_FLAG_INIT; /* usable before main */

static void reg_lock_take(void)
{
	while (atomic_flag_test_and_set_explicit(&reg_lock,
	                                         memory_order_acquire))
		rayc__cpu_relax();
}

static void reg_lock_drop(void)
{
	atomic_flag_clear_explicit(&reg_lock, memory_order_release);
}

int rayc_register(const char *name, rayc_fn fn)
{
	rayc__fn_entry *e;

	if (name == NULL || fn == NULL || name[0] == '\0')
		return rayc__err(RAYC_EINVAL, "rayc_register needs a name and "
		                              "a function");
	reg_lock_take();
	HASH_FIND_STR(registry, name, e);
	if (e != NULL) {
		int same = e->fn == fn;
		reg_lock_drop();
		return same ? RAYC_OK
		            : rayc__err(RAYC_EEXIST,
		                        "function name '%s' is already "
		                        "registered", name);
	}
	e = calloc(1, sizeof(*e));
	if (e == NULL || (e->name = strdup(name)) == NULL) {
		reg_lock_drop();
		free(e);
		return RAYC_ENOMEM;
	}
	e->fn = fn;
	HASH_ADD_KEYPTR(hh, registry, e->name, strlen(e->name), e);
	reg_lock_drop();
	return RAYC_OK;
}

const rayc__fn_entry *rayc__registry_find(const char *name)
{
	static _Thread_local const rayc__fn_entry *last;
	rayc__fn_entry *e;

	if (last != NULL && strcmp(last->name, name) == 0)
		return last;
	reg_lock_take();
	HASH_FIND_STR(registry, name, e);
	reg_lock_drop();
	if (e != NULL)
		last = e;
	return e;
}
