/* diff.h - comparing a recorded answer with a replayed one (crispctl
 * replay): JSON trees compared with the IDs each runtime made mapped onto
 * each other, timestamps and other per-run values left aside. No I/O.
 *
 * An ID is a run of 12 or more lowercase hex digits inside a string (a
 * sandbox or container ID, an image's sha256:...). The first time a
 * recorded ID meets a replayed one in the same place of equal strings, the
 * pair is learned; from then on the recorded ID must meet that replayed
 * one, and requests have it rewritten. Values that differ from run to run
 * are compared for presence only: *At times, timestamps, IPs, PIDs, the
 * verbose info maps (their keys are compared) and resource usage figures.
 * Arrays are compared as multisets (runtimes list in any order). A
 * recorded "[redacted]" matches anything. */
#ifndef CRISP_CTL_DIFF_H
#define CRISP_CTL_DIFF_H

#include <stddef.h>

#include <cjson/cJSON.h>

#define DIFF_MAX_IDS 65536

struct idmap;

struct idmap *idmap_new(void);
void idmap_free(struct idmap *m);
size_t idmap_count(const struct idmap *m);
/* Rewrites the recorded IDs in every string of tree to their replayed
 * counterparts. 0, or -1 when out of memory. */
int idmap_rewrite(struct idmap *m, cJSON *tree);
/* Whether two strings are equal with the IDs mapped (learning new pairs). */
int idmap_str_equal(struct idmap *m, const char *rec, const char *rep);

/* Called for each difference: where (".containers[1].state") and what. */
typedef void (*diff_fn)(void *ud, const char *path, const char *what);

/* Compares a recorded tree with a replayed one; returns how many
 * differences it reported (at most max, then it stops looking). */
unsigned json_diff(struct idmap *m, const cJSON *rec, const cJSON *rep, unsigned max, diff_fn fn,
                   void *ud);

#endif
