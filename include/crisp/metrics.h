/* metrics.h - Prometheus metrics over HTTP (src/trace/metrics.c; README.md
 * "Metrics"): calls by method, backend and status, latency histograms,
 * calls in flight, backends up, client connections, trace records written
 * and dropped. Served by libevent's evhttp on the event loop; counted by
 * an observer of calls (observe.h), registered only with --metrics-listen. */
#ifndef CRISP_METRICS_H
#define CRISP_METRICS_H

#include <stddef.h>
#include <event2/event.h>

#include "crisp/opt.h"

/* --metrics-listen ADDR */
extern const struct crisp_opt_module crisp_metrics_module;

/* Listens when --metrics-listen was given (0 and nothing otherwise); -1
 * with a reason. */
int crisp_metrics_start(struct event_base *base, char *err, size_t errlen);
void crisp_metrics_stop(void);

#endif
