/* observe.c - observers of calls (see observe.h). */
#include <stddef.h>

#include "crisp/call.h"
#include "crisp/observe.h"

unsigned crisp_obs_mask;

static struct crisp_observer *observers[CRISP_OBS_SLOTS];
static unsigned nobservers;

static void recompute_mask(void)
{
    unsigned m = 0;
    for (unsigned i = 0; i < nobservers; i++)
        m |= observers[i]->events;
    crisp_obs_mask = m;
}

int crisp_observe(struct crisp_observer *o)
{
    for (unsigned i = 0; i < nobservers; i++)
        if (observers[i] == o)
            return 0;
    if (nobservers == CRISP_OBS_SLOTS)
        return -1;
    o->slot = nobservers;
    observers[nobservers++] = o;
    recompute_mask();
    return 0;
}

void crisp_observe_events(struct crisp_observer *o, unsigned events)
{
    o->events = events;
    recompute_mask();
}

void crisp_obs_emit(struct crisp_call *call, unsigned ev, const uint8_t *p, size_t n)
{
    for (unsigned i = 0; i < nobservers; i++)
        if (observers[i]->events & ev)
            observers[i]->on_event(observers[i], ev, call, p, n);
}
