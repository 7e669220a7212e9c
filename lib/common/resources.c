/* resources.c -- parsing of "name=qty,name=qty" resource lists (used by
 * RAYC_RESOURCES). */
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

int rayc__parse_resources(const char *s, rayc_resource *out, int max,
                          char *buf, size_t bufsize)
{
	int n = 0;
	size_t used = 0;

	while (*s != '\0') {
		const char *eq = strchr(s, '=');
		const char *end = strchr(s, ',');
		char *qend;

		if (end == NULL)
			end = s + strlen(s);
		if (eq == NULL || eq > end || eq == s || n == max)
			return -1;
		size_t nl = (size_t)(eq - s);
		if (used + nl + 1 > bufsize)
			return -1;
		memcpy(buf + used, s, nl);
		buf[used + nl] = '\0';
		double q = strtod(eq + 1, &qend);
		if (qend == eq + 1 || qend != end || !(q >= 0))
			return -1;
		out[n].name = buf + used;
		out[n].quantity = q;
		used += nl + 1;
		n++;
		s = *end == ',' ? end + 1 : end;
	}
	return n;
}
