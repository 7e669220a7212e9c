/* wordcount -- map-reduce word count: map tasks over chunks in the object
 * store, a tree of merge tasks wired together by refs, checked serially. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rayc.h>

/*
 * Design notes
 * - A word is a maximal run of ASCII letters, digits and bytes >= 0x80
 *   (so UTF-8 letters stay inside words); ASCII letters are folded to
 *   lower case.  Chunks are cut only at non-word bytes, so no word spans
 *   two chunks.
 * - A table travels between tasks as text: one "word\tcount\n" line per
 *   word, sorted by word (bytewise).  Sorted tables merge in one linear
 *   pass, and a table is readable with `cat` when debugging.
 * - The whole reduce tree is submitted before anything finishes: each
 *   merge_tables task takes two RAYC_REF arguments, and the scheduler runs
 *   it once both inputs exist.  The driver only ever waits for the root.
 */

#define GEN_BYTES (4u << 20)       /* generated text when no file is given */
#define CHUNK_TARGET (128u << 10)  /* aim for chunks of about this size */
#define MAX_CHUNKS 256
#define TOP_N 10

/* ------------------------------------------------------------------ */
/* Words                                                                */
/* ------------------------------------------------------------------ */
static int is_word(unsigned char c)
{
	unsigned char l = c | 0x20;

	return (l >= 'a' && l <= 'z') || (c >= '0' && c <= '9') || c >= 0x80;
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

/* Compares two words as if both were folded to lower case. */
static int word_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
	size_t i, n = alen < blen ? alen : blen;

	for (i = 0; i < n; i++) {
		unsigned char x = lower((unsigned char)a[i]);
		unsigned char y = lower((unsigned char)b[i]);

		if (x != y)
			return x < y ? -1 : 1;
	}
	return alen < blen ? -1 : alen > blen;
}

/* Writes v in decimal to out (if not NULL); returns the digit count. */
static size_t put_u64(char *out, uint64_t v)
{
	char tmp[20];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	if (out != NULL)
		for (i = 0; i < n; i++)
			out[i] = tmp[n - 1 - i];
	return n;
}

/* ------------------------------------------------------------------ */
/* Counting table: open addressing, keys point into the counted text   */
/* ------------------------------------------------------------------ */
struct entry {
	const char *w; /* NULL: empty slot */
	size_t len;
	uint64_t hash;
	int64_t count;
};

struct table {
	struct entry *e;
	size_t cap; /* a power of two */
	size_t n;
	int64_t total;
};

static uint64_t word_hash(const char *w, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ lower((unsigned char)w[i])) * 0x100000001b3ull;
	return h;
}

static int table_init(struct table *t, size_t cap)
{
	t->e = calloc(cap, sizeof(*t->e));
	t->cap = cap;
	t->n = 0;
	t->total = 0;
	return t->e != NULL ? 0 : -1;
}

static void table_fini(struct table *t)
{
	free(t->e);
	t->e = NULL;
}

static struct entry *table_slot(struct entry *e, size_t cap, const char *w,
                                size_t len, uint64_t h)
{
	size_t i = (size_t)h & (cap - 1);

	while (e[i].w != NULL &&
	       (e[i].hash != h || word_cmp(e[i].w, e[i].len, w, len) != 0))
		i = (i + 1) & (cap - 1);
	return &e[i];
}

static int table_grow(struct table *t)
{
	size_t cap = t->cap * 2, i;
	struct entry *e = calloc(cap, sizeof(*e));

	if (e == NULL)
		return -1;
	for (i = 0; i < t->cap; i++)
		if (t->e[i].w != NULL)
			*table_slot(e, cap, t->e[i].w, t->e[i].len,
			            t->e[i].hash) = t->e[i];
	free(t->e);
	t->e = e;
	t->cap = cap;
	return 0;
}

static int table_add(struct table *t, const char *w, size_t len)
{
	uint64_t h = word_hash(w, len);
	struct entry *s = table_slot(t->e, t->cap, w, len, h);

	if (s->w == NULL) {
		if (2 * (t->n + 1) > t->cap) {
			if (table_grow(t) != 0)
				return -1;
			s = table_slot(t->e, t->cap, w, len, h);
		}
		*s = (struct entry){ .w = w, .len = len, .hash = h };
		t->n++;
	}
	s->count++;
	t->total++;
	return 0;
}

static int table_count(struct table *t, const char *text, size_t len)
{
	size_t i = 0, start;

	while (i < len) {
		while (i < len && !is_word((unsigned char)text[i]))
			i++;
		start = i;
		while (i < len && is_word((unsigned char)text[i]))
			i++;
		if (i > start && table_add(t, text + start, i - start) != 0)
			return -1;
	}
	return 0;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct entry *x = *(const struct entry *const *)a;
	const struct entry *y = *(const struct entry *const *)b;

	return word_cmp(x->w, x->len, y->w, y->len);
}

/* The wire form of t: sorted "word\tcount\n" lines, words lower-cased.
 * With out == NULL only the size is computed.  Returns the size, or
 * (size_t)-1 when out of memory. */
static size_t table_serialize(const struct table *t, char *out)
{
	struct entry **v = malloc((t->n + 1) * sizeof(*v));
	size_t i, j, n = 0, size = 0;

	if (v == NULL)
		return (size_t)-1;
	for (i = 0; i < t->cap; i++)
		if (t->e[i].w != NULL)
			v[n++] = &t->e[i];
	if (out != NULL)
		qsort(v, n, sizeof(*v), entry_cmp);
	for (i = 0; i < n; i++) {
		if (out != NULL) {
			for (j = 0; j < v[i]->len; j++)
				out[size + j] = (char)lower(
					(unsigned char)v[i]->w[j]);
			out[size + v[i]->len] = '\t';
		}
		size += v[i]->len + 1;
		size += put_u64(out != NULL ? out + size : NULL,
		                (uint64_t)v[i]->count);
		if (out != NULL)
			out[size] = '\n';
		size++;
	}
	free(v);
	return size;
}

/* ------------------------------------------------------------------ */
/* Serialized tables                                                    */
/* ------------------------------------------------------------------ */
struct cursor {
	const char *p, *end;
};

/* Reads the next line.  Returns 1 with a line, 0 at the end, -1 when the
 * data is not a well-formed table. */
static int next_line(struct cursor *c, const char **w, size_t *len,
                     uint64_t *count)
{
	const char *tab;
	uint64_t v = 0;

	if (c->p == c->end)
		return 0;
	tab = memchr(c->p, '\t', (size_t)(c->end - c->p));
	if (tab == NULL || tab == c->p)
		return -1;
	*w = c->p;
	*len = (size_t)(tab - c->p);
	for (c->p = tab + 1; c->p < c->end && *c->p != '\n'; c->p++) {
		if (*c->p < '0' || *c->p > '9' || v > UINT64_MAX / 10 - 1)
			return -1;
		v = v * 10 + (uint64_t)(*c->p - '0');
	}
	if (c->p == c->end || c->p == tab + 1)
		return -1;
	c->p++; /* the '\n' */
	*count = v;
	return 1;
}

static size_t put_line(char *out, const char *w, size_t len, uint64_t count)
{
	size_t n;

	if (out != NULL) {
		memcpy(out, w, len);
		out[len] = '\t';
	}
	n = len + 1 + put_u64(out != NULL ? out + len + 1 : NULL, count);
	if (out != NULL)
		out[n] = '\n';
	return n + 1;
}

/* Merges two sorted tables, adding the counts of words found in both.
 * With out == NULL only *size is computed.  Returns 0, or -1 when an input
 * is malformed. */
static int merge(const char *a, size_t alen, const char *b, size_t blen,
                 char *out, size_t *size)
{
	struct cursor ca = { a, a + alen }, cb = { b, b + blen };
	const char *wa = NULL, *wb = NULL;
	size_t la = 0, lb = 0, n = 0;
	uint64_t na = 0, nb = 0;
	int ra = next_line(&ca, &wa, &la, &na);
	int rb = next_line(&cb, &wb, &lb, &nb);

	while (ra > 0 || rb > 0) {
		int c = ra <= 0 ? 1 : rb <= 0 ? -1 : word_cmp(wa, la, wb, lb);

		if (c < 0) {
			n += put_line(out != NULL ? out + n : NULL, wa, la, na);
			ra = next_line(&ca, &wa, &la, &na);
		} else if (c > 0) {
			n += put_line(out != NULL ? out + n : NULL, wb, lb, nb);
			rb = next_line(&cb, &wb, &lb, &nb);
		} else {
			n += put_line(out != NULL ? out + n : NULL, wa, la,
			              na + nb);
			ra = next_line(&ca, &wa, &la, &na);
			rb = next_line(&cb, &wb, &lb, &nb);
		}
	}
	if (ra < 0 || rb < 0)
		return -1;
	*size = n;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Remote functions                                                     */
/* ------------------------------------------------------------------ */
/* Map: arg 0 is a chunk of text (a ref to a rayc_put object); returns its
 * word table, written straight into the store with rayc_return_alloc. */
static void count_words(rayc_ctx *ctx)
{
	const void *text;
	size_t len, size;
	struct table t;
	void *out;
	int rc;

	if ((rc = rayc_arg_data(ctx, 0, &text, &len)) != RAYC_OK) {
		rayc_fail(ctx, "count_words: argument 0: %s",
		          rayc_strerror(rc));
		return;
	}
	if (table_init(&t, 1024) != 0) {
		rayc_fail(ctx, "count_words: out of memory");
		return;
	}
	if (table_count(&t, text, len) != 0 ||
	    (size = table_serialize(&t, NULL)) == (size_t)-1) {
		rayc_fail(ctx, "count_words: out of memory");
		goto out;
	}
	if (size == 0)
		goto out; /* an unset return is an empty table */
	if ((rc = rayc_return_alloc(ctx, 0, size, &out)) != RAYC_OK) {
		rayc_fail(ctx, "count_words: %zu-byte return: %s", size,
		          rayc_strerror(rc));
		goto out;
	}
	if (table_serialize(&t, out) != size)
		rayc_fail(ctx, "count_words: out of memory");
out:
	table_fini(&t);
}
RAYC_REMOTE(count_words)

/* Reduce: args 0 and 1 are two tables (refs to earlier tasks' results);
 * returns their sum.  Two passes: size it, then write it in place. */
static void merge_tables(rayc_ctx *ctx)
{
	const void *a, *b;
	size_t alen, blen, size;
	void *out;
	int rc;

	if ((rc = rayc_arg_data(ctx, 0, &a, &alen)) != RAYC_OK ||
	    (rc = rayc_arg_data(ctx, 1, &b, &blen)) != RAYC_OK) {
		rayc_fail(ctx, "merge_tables: arguments: %s",
		          rayc_strerror(rc));
		return;
	}
	if (merge(a, alen, b, blen, NULL, &size) != 0) {
		rayc_fail(ctx, "merge_tables: malformed input table");
		return;
	}
	if (size == 0)
		return;
	if ((rc = rayc_return_alloc(ctx, 0, size, &out)) != RAYC_OK) {
		rayc_fail(ctx, "merge_tables: %zu-byte return: %s", size,
		          rayc_strerror(rc));
		return;
	}
	(void)merge(a, alen, b, blen, out, &size);
}
RAYC_REMOTE(merge_tables)

/* ------------------------------------------------------------------ */
/* Input                                                                */
/* ------------------------------------------------------------------ */
/* Fry's 100 most common English words, most frequent first. */
static const char *const vocab[] = {
	"the", "of", "and", "a", "to", "in", "is", "you", "that", "it",
	"he", "was", "for", "on", "are", "as", "with", "his", "they", "I",
	"at", "be", "this", "have", "from", "or", "one", "had", "by", "word",
	"but", "not", "what", "all", "were", "we", "when", "your", "can",
	"said", "there", "use", "an", "each", "which", "she", "do", "how",
	"their", "if", "will", "up", "other", "about", "out", "many", "then",
	"them", "these", "so", "some", "her", "would", "make", "like", "him",
	"into", "time", "has", "look", "two", "more", "write", "go", "see",
	"number", "no", "way", "could", "people", "my", "than", "first",
	"water", "been", "call", "who", "oil", "its", "now", "find", "long",
	"down", "day", "did", "get", "come", "made", "may", "part",
};
#define NVOCAB (sizeof(vocab) / sizeof(vocab[0]))

static uint64_t xorshift64s(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* About `bytes` of sentences whose words follow Zipf's law (the k-th word
 * has weight 1/k), from a fixed seed: the same text on every run. */
static char *generate(size_t bytes, size_t *len)
{
	double cdf[NVOCAB], sum = 0;
	char *buf = malloc(bytes + 256); /* a sentence is < 100 bytes */
	uint64_t s = 0x5eed5eed5eedull;
	size_t n = 0, k;

	if (buf == NULL)
		return NULL;
	for (k = 0; k < NVOCAB; k++)
		cdf[k] = sum += 1.0 / (double)(k + 1);
	while (n < bytes) {
		int words = 4 + (int)(xorshift64s(&s) % 11), i;

		for (i = 0; i < words; i++) {
			double u = (double)(xorshift64s(&s) >> 11) * 0x1.0p-53 *
			           sum;
			size_t lo = 0, hi = NVOCAB - 1, wl;

			while (lo < hi) { /* first k with cdf[k] > u */
				size_t mid = (lo + hi) / 2;

				if (cdf[mid] > u)
					hi = mid;
				else
					lo = mid + 1;
			}
			wl = strlen(vocab[lo]);
			memcpy(buf + n, vocab[lo], wl);
			if (i == 0)
				buf[n] = (char)(buf[n] & ~0x20); /* Capital */
			n += wl;
			buf[n++] = i + 1 < words ? ' ' : '.';
		}
		buf[n++] = xorshift64s(&s) % 5 == 0 ? '\n' : ' ';
	}
	*len = n;
	return buf;
}

/* Reads a whole file; "-" is standard input. */
static char *slurp(const char *path, size_t *len)
{
	int is_stdin = strcmp(path, "-") == 0;
	FILE *f = is_stdin ? stdin : fopen(path, "rb");
	size_t cap = 1 << 20, n = 0, r;
	char *buf = NULL, *nb;

	if (f == NULL)
		return NULL;
	for (;;) {
		if ((nb = realloc(buf, cap)) == NULL)
			goto fail;
		buf = nb;
		r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (n < cap)
			break;
		cap *= 2;
	}
	if (ferror(f))
		goto fail;
	if (!is_stdin)
		fclose(f);
	*len = n;
	return buf;
fail:
	free(buf);
	if (!is_stdin)
		fclose(f);
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Driver                                                               */
/* ------------------------------------------------------------------ */
static void report(const char *what, int rc)
{
	fprintf(stderr, "wordcount: %s: %s (%s)\n", what, rayc_strerror(rc),
	        rayc_errmsg());
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void release_all(rayc_ref *refs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		(void)rayc_release(refs[i]);
}

/* Cuts text into at most MAX_CHUNKS pieces of about CHUNK_TARGET bytes,
 * only at non-word bytes.  ends[i] is where chunk i stops. */
static size_t split(const char *text, size_t len, size_t *ends)
{
	size_t want = len / CHUNK_TARGET, step, pos = 0, n = 0;

	want = want < 1 ? 1 : want > MAX_CHUNKS ? MAX_CHUNKS : want;
	step = (len + want - 1) / want;
	while (pos < len) {
		pos = pos + step < len ? pos + step : len;
		while (pos < len && is_word((unsigned char)text[pos]))
			pos++;
		ends[n++] = pos;
	}
	return n;
}

/* Map: rayc_put each chunk, submit count_words on its ref.  The chunk
 * refs are dropped at once: a pending task argument keeps its object. */
static int submit_maps(const char *text, const size_t *ends, size_t n,
                       rayc_ref *maps)
{
	size_t i, start = 0;
	rayc_ref chunk;
	int rc;

	for (i = 0; i < n; start = ends[i++]) {
		if ((rc = rayc_put(&chunk, text + start, ends[i] - start)) !=
		    RAYC_OK) {
			report("rayc_put(chunk)", rc);
			break;
		}
		rc = rayc_call(&maps[i], "count_words", RAYC_REF(chunk));
		(void)rayc_release(chunk);
		if (rc != RAYC_OK) {
			report("rayc_call(count_words)", rc);
			break;
		}
	}
	if (i < n)
		release_all(maps, i);
	return i < n ? rc : RAYC_OK;
}

/* One level of the reduce tree, in place: refs[j] = merge(refs[2j],
 * refs[2j+1]); an odd last ref moves up unmerged.  On error every ref is
 * released and *n is 0. */
static int reduce_level(rayc_ref *refs, size_t *n, size_t *merges)
{
	size_t i, j = 0;
	rayc_ref r;
	int rc;

	for (i = 0; i + 1 < *n; i += 2) {
		rc = rayc_call(&r, "merge_tables", RAYC_REF(refs[i]),
		               RAYC_REF(refs[i + 1]));
		if (rc != RAYC_OK) {
			report("rayc_call(merge_tables)", rc);
			release_all(refs, j);
			release_all(refs + i, *n - i);
			*n = 0;
			return rc;
		}
		(void)rayc_release(refs[i]);
		(void)rayc_release(refs[i + 1]);
		refs[j++] = r;
		(*merges)++;
	}
	if (i < *n)
		refs[j++] = refs[i];
	*n = j;
	return RAYC_OK;
}

struct word {
	const char *w;
	size_t len;
	uint64_t count;
};

static int by_count(const void *a, const void *b)
{
	const struct word *x = a, *y = b;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return word_cmp(x->w, x->len, y->w, y->len);
}

/* Prints the top words of a final table; returns the distinct-word count,
 * or (size_t)-1 if the table is malformed or memory runs out. */
static size_t print_top(const char *tab, size_t len, uint64_t *total)
{
	struct cursor c = { tab, tab + len };
	struct word *v = NULL, *nv;
	size_t n = 0, cap = 0, i;
	int r = 0;

	*total = 0;
	for (;;) {
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL)
				goto fail;
			v = nv;
		}
		if ((r = next_line(&c, &v[n].w, &v[n].len, &v[n].count)) <= 0)
			break;
		*total += v[n++].count;
	}
	if (r < 0)
		goto fail;
	qsort(v, n, sizeof(*v), by_count);
	printf("\n   #  %-16s %10s  %6s\n", "word", "count", "share");
	for (i = 0; i < n && i < TOP_N; i++)
		printf("  %2zu  %-16.*s %10" PRIu64 "  %5.1f%%\n", i + 1,
		       (int)v[i].len, v[i].w, v[i].count,
		       100.0 * (double)v[i].count / (double)*total);
	free(v);
	return n;
fail:
	free(v);
	return (size_t)-1;
}

/* Counts the whole text on this thread and compares with the result. */
static int check(const char *text, size_t len, const rayc_view *view,
                 uint64_t total)
{
	double t0 = now_s();
	struct table t;
	size_t size;
	char *buf = NULL;
	int ok = 0;

	if (table_init(&t, 1024) != 0)
		return 0;
	if (table_count(&t, text, len) == 0 &&
	    (size = table_serialize(&t, NULL)) != (size_t)-1 &&
	    (buf = malloc(size + 1)) != NULL &&
	    table_serialize(&t, buf) == size) {
		ok = (uint64_t)t.total == total && size == view->len &&
		     memcmp(buf, view->data, size) == 0;
		printf("check against a single-threaded count (%" PRId64
		       " words, %.3f s): %s\n",
		       t.total, now_s() - t0, ok ? "OK" : "MISMATCH");
	} else {
		fprintf(stderr, "wordcount: out of memory in the check\n");
	}
	free(buf);
	table_fini(&t);
	return ok;
}

/* Map, reduce, get, print, check.  Returns 0 when the counts agree. */
static int run(const char *text, size_t len)
{
	size_t ends[MAX_CHUNKS], nchunks = split(text, len, ends), n;
	size_t merges = 0, depth = 0, distinct;
	rayc_ref refs[MAX_CHUNKS];
	rayc_view view = { 0 };
	rayc_stats st;
	uint64_t total = 0;
	double t0 = now_s(), t1;
	int rc, ok;

	if ((rc = submit_maps(text, ends, nchunks, refs)) != RAYC_OK)
		return 1;
	for (n = nchunks; n > 1; depth++)
		if (reduce_level(refs, &n, &merges) != RAYC_OK)
			return 1;
	rc = rayc_get(refs[0], &view, -1);
	t1 = now_s();
	if (rc != RAYC_OK) {
		report("rayc_get(result)", rc);
		if (rc == RAYC_ETASK && view.data != NULL)
			fprintf(stderr, "wordcount: task error: %s\n",
			        (const char *)view.data);
		rayc_view_release(&view);
		(void)rayc_release(refs[0]);
		return 1;
	}
	printf("  %zu chunks put in the store -> %zu count_words tasks -> "
	       "%zu merge_tables tasks (tree depth %zu)\n",
	       nchunks, nchunks, merges, depth);
	if (rayc_stats_get(&st) == RAYC_OK)
		printf("  %g CPUs, %.3f s from first put to final table\n",
		       st.cpus_total, t1 - t0);
	distinct = print_top(view.data, view.len, &total);
	if (distinct == (size_t)-1) {
		fprintf(stderr, "wordcount: the final table is malformed\n");
		ok = 0;
	} else {
		printf("\ntotal %" PRIu64 " words, %zu distinct\n", total,
		       distinct);
		ok = check(text, len, &view, total);
	}
	rayc_view_release(&view);
	(void)rayc_release(refs[0]);
	return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : NULL;
	char *text;
	size_t len = 0;
	int rc, ret;

	if (argc > 2 || (path != NULL && path[0] == '-' && path[1] != '\0')) {
		fprintf(stderr, "usage: %s [FILE]   (no FILE: %u MiB of "
		        "generated text)\n", argv[0], GEN_BYTES >> 20);
		return 2;
	}
	if ((rc = rayc_init(NULL)) != RAYC_OK) {
		report("rayc_init", rc);
		return 1;
	}
	text = path != NULL ? slurp(path, &len) : generate(GEN_BYTES, &len);
	if (text == NULL) {
		fprintf(stderr, "wordcount: %s: %s\n",
		        path != NULL ? path : "generating text",
		        strerror(errno));
		ret = 1;
	} else if (len == 0) {
		fprintf(stderr, "wordcount: %s is empty\n",
		        path != NULL ? path : "the text");
		ret = 1;
	} else {
		printf("wordcount: %.1f MiB of %s\n", (double)len / (1 << 20),
		       path != NULL ? path :
		                      "generated text (Zipf over 100 words)");
		ret = run(text, len);
	}
	free(text);
	if ((rc = rayc_shutdown()) != RAYC_OK) {
		report("rayc_shutdown", rc);
		ret = 1;
	}
	return ret;
}
