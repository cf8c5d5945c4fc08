/* node.h - the backends of a configuration file (--config), and its reload
 * on SIGHUP (src/mux/node.c). */
#ifndef CRISP_NODE_H
#define CRISP_NODE_H

#include <stddef.h>
#include <event2/event.h>

/* Loads the file, makes its backends and their router, and makes the router
 * the default. 0, or -1 with a reason naming the file and the field. */
int crisp_node_load(struct event_base *base, const char *path, char *err, size_t errlen);
/* Reloads the same file (SIGHUP): calls in flight are not dropped; a bad
 * file keeps the running configuration and says why in the log. */
void crisp_node_reload(void);
/* "config:PATH" once loaded, or NULL. */
const char *crisp_node_describe(void);
/* Destroys every backend (shutdown). */
void crisp_node_free(void);

#endif
