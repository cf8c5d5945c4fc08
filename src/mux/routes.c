/* routes.c - which backend owns an ID: soft state (see mux.h).
 *
 * An open-addressing hash table of ID -> backend, learnt from the answers
 * the router relays and from its probes. Losing it costs one probe per ID
 * (a restart); it is capped at ROUTES_MAX IDs, and when full it is emptied
 * rather than grown: the next calls probe again. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "mux.h"

#define ROUTES_MAX 65536
#define SLOTS (2 * ROUTES_MAX) /* a power of two, at most half full */

struct slot {
    char *id;       /* NULL: empty; TOMBSTONE: deleted */
    struct crisp_backend *be;
};

static char tombstone;
#define TOMBSTONE (&tombstone)

static struct slot *slots;
static size_t used; /* live entries */
static size_t dirty; /* live entries and tombstones */

static size_t hash(const char *s)
{
    size_t h = 1469598103934665603ull;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211ull;
    return h;
}

/* The slot holding id, or NULL. */
static struct slot *find(const char *id)
{
    if (!slots)
        return NULL;
    for (size_t i = hash(id) & (SLOTS - 1), k = 0; k < SLOTS; i = (i + 1) & (SLOTS - 1), k++) {
        if (!slots[i].id)
            return NULL;
        if (slots[i].id != TOMBSTONE && strcmp(slots[i].id, id) == 0)
            return &slots[i];
    }
    return NULL;
}

static void clear_all(void)
{
    for (size_t i = 0; slots && i < SLOTS; i++) {
        if (slots[i].id && slots[i].id != TOMBSTONE)
            free(slots[i].id);
        slots[i].id = NULL;
    }
    used = dirty = 0;
}

struct crisp_backend *mux_route_get(const char *id)
{
    struct slot *s = find(id);
    return s ? s->be : NULL;
}

void mux_route_put(const char *id, struct crisp_backend *be)
{
    struct slot *s = find(id);
    if (s) {
        s->be = be;
        return;
    }
    if (!slots && !(slots = calloc(SLOTS, sizeof(*slots))))
        return; /* soft state: without memory, probes do the work */
    if (used >= ROUTES_MAX || dirty >= SLOTS - SLOTS / 4)
        clear_all();
    char *copy = strdup(id);
    if (!copy)
        return;
    size_t i = hash(id) & (SLOTS - 1);
    while (slots[i].id && slots[i].id != TOMBSTONE)
        i = (i + 1) & (SLOTS - 1);
    dirty += slots[i].id == NULL;
    slots[i] = (struct slot){copy, be};
    used++;
}

void mux_route_del(const char *id)
{
    struct slot *s = find(id);
    if (!s)
        return;
    free(s->id);
    s->id = TOMBSTONE;
    s->be = NULL;
    assert(used > 0);
    used--;
}

void mux_route_drop_backend(const struct crisp_backend *be)
{
    for (size_t i = 0; slots && i < SLOTS; i++) {
        if (slots[i].id && slots[i].id != TOMBSTONE && slots[i].be == be) {
            free(slots[i].id);
            slots[i].id = TOMBSTONE;
            used--;
        }
    }
}

size_t mux_route_count(void)
{
    return used;
}

void mux_routes_free(void)
{
    clear_all();
    free(slots);
    slots = NULL;
}
