/* registry.h -- name to function lookup for task submission. */
#ifndef RAYC_REGISTRY_H
#define RAYC_REGISTRY_H

#include "rt.h"

/* NULL if no function has that name.  Thread-safe; never blocks long. */
const rayc__fn_entry *rayc__registry_find(const char *name);

#endif
