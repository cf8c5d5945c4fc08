/* opt.h - command-line options a module declares itself (tracing, metrics),
 * which main.c offers without knowing them, as backend kinds declare
 * theirs (backend.h). */
#ifndef CRISP_OPT_H
#define CRISP_OPT_H

#include <stddef.h>

struct crisp_opt {
    const char *name;  /* "trace-level" */
    const char *arg;   /* what the value is, for --help ("LEVEL"); NULL: a flag */
    const char *help;  /* the rest of the --help line(s), '\n' between lines */
};

struct crisp_opt_module {
    const char *title;               /* the --help section's heading */
    const struct crisp_opt *opts;    /* ends with a NULL name */
    /* One option as given (value NULL for a flag). 0, or -1 with a
     * reason in err. */
    int (*set)(const char *name, const char *value, char *err, size_t errlen);
};

#endif
