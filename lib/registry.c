/* registry.c -- functions and actor classes registered by name.  Entries
 * are never removed while the process lives, so pointers to them stay
 * valid and a per-thread cache can skip the lookup. */
#include <stdio.h>
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

/* Actor classes: copied in whole at registration, never changed or
 * freed after, so a class pointer needs no lock. */
static rayc__aclass *classes;

static bool same_class(const rayc__aclass *c, const rayc_actor_class *k)
{
	if (c->state_size != k->state_size || c->init != k->init ||
	    c->fini != k->fini || c->nmethods != k->nmethods)
		return false;
	size_t skip = strlen(c->name) + 1;

	for (size_t i = 0; i < k->nmethods; i++)
		if (c->methods[i].fn != k->methods[i].fn ||
		    strcmp(c->methods[i].name + skip, k->methods[i].name) != 0)
			return false;
	return true;
}

static void class_free(rayc__aclass *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; c->methods != NULL && i < c->nmethods; i++)
		free(c->methods[i].name);
	free(c->methods);
	free(c->name);
	free(c);
}

static rayc__aclass *class_copy(const rayc_actor_class *k)
{
	rayc__aclass *c = calloc(1, sizeof(*c));

	if (c == NULL || (c->name = strdup(k->name)) == NULL ||
	    (k->nmethods > 0 &&
	     (c->methods = calloc(k->nmethods, sizeof(*c->methods))) == NULL)) {
		class_free(c);
		return NULL;
	}
	c->state_size = k->state_size;
	c->init = k->init;
	c->fini = k->fini;
	for (size_t i = 0; i < k->nmethods; i++) {
		size_t n = strlen(k->name) + strlen(k->methods[i].name) + 2;
		char *full = malloc(n);
		if (full == NULL) {
			class_free(c);
			return NULL;
		}
		snprintf(full, n, "%s.%s", k->name, k->methods[i].name);
		c->methods[i].name = full;
		c->methods[i].fn = k->methods[i].fn;
		c->nmethods = i + 1;
	}
	return c;
}

int rayc_actor_class_register(const rayc_actor_class *k)
{
	rayc__aclass *c;

	if (k == NULL || k->name == NULL || k->name[0] == '\0' ||
	    strchr(k->name, '.') != NULL ||
	    (k->nmethods > 0 && k->methods == NULL))
		return rayc__err(RAYC_EINVAL, "an actor class needs a name "
		                 "without '.' and its methods");
	if (k->nmethods > 1024)
		return rayc__err(RAYC_EINVAL, "%zu methods (at most 1024)",
		                 k->nmethods);
	for (size_t i = 0; i < k->nmethods; i++) {
		const rayc_actor_method *m = &k->methods[i];
		if (m->name == NULL || m->name[0] == '\0' || m->fn == NULL)
			return rayc__err(RAYC_EINVAL, "class %s: method %zu "
			                 "needs a name and a function",
			                 k->name, i);
		for (size_t j = 0; j < i; j++)
			if (strcmp(k->methods[j].name, m->name) == 0)
				return rayc__err(RAYC_EINVAL, "class %s: method "
				                 "'%s' twice", k->name, m->name);
	}
	rayc__aclass *fresh = class_copy(k);
	if (fresh == NULL)
		return RAYC_ENOMEM;
	reg_lock_take();
	HASH_FIND_STR(classes, k->name, c);
	if (c == NULL)
		HASH_ADD_KEYPTR(hh, classes, fresh->name, strlen(fresh->name),
		                fresh);
	reg_lock_drop();
	if (c == NULL)
		return RAYC_OK;
	bool same = same_class(c, k);
	class_free(fresh);
	return same ? RAYC_OK
	            : rayc__err(RAYC_EEXIST, "actor class '%s' is already "
	                        "registered", k->name);
}

const rayc__aclass *rayc__aclass_find(const char *name)
{
	rayc__aclass *c;

	reg_lock_take();
	HASH_FIND_STR(classes, name, c);
	reg_lock_drop();
	return c;
}

const rayc__fn_entry *rayc__aclass_method(const rayc__aclass *c,
                                          const char *method)
{
	size_t skip = strlen(c->name) + 1;

	for (size_t i = 0; i < c->nmethods; i++)
		if (strcmp(c->methods[i].name + skip, method) == 0)
			return &c->methods[i];
	return NULL;
}
