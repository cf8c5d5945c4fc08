/* unit.h - a minimal test harness: CHECK() records failures, each test file's
 * main() ends with unit_summary(), which prints "N passed, N failed". */
#ifndef CRISP_UNIT_H
#define CRISP_UNIT_H
#include <stdio.h>

static int unit_pass, unit_fail;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (cond) {                                                            \
            unit_pass++;                                                       \
        } else {                                                               \
            unit_fail++;                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                      \
    } while (0)

static inline int unit_summary(const char *name)
{
    printf("%s: %d passed, %d failed\n", name, unit_pass, unit_fail);
    return unit_fail ? 1 : 0;
}
#endif
