/* metrics_priv.h - metrics.c's counting and text, for its unit test. */
#ifndef CRISP_TRACE_METRICS_PRIV_H
#define CRISP_TRACE_METRICS_PRIV_H

#include "crisp/call.h"
#include "trace/jbuf.h"

/* Counts a finished client call. */
void metrics_count(const struct crisp_call *call);
/* The Prometheus text of everything counted, and the live state. */
void metrics_render(struct jbuf *out);
/* Forgets every count. */
void metrics_reset(void);

#endif
