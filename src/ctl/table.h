/* table.h - crispctl's aligned text tables and small formatting helpers. */
#ifndef CRISP_CTL_TABLE_H
#define CRISP_CTL_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct table {
    size_t ncols, nrows;
    char ***rows;
};

void table_init(struct table *t, size_t ncols);
/* A row of ncols strings (NULL: empty), copied. */
void table_add(struct table *t, ...);
/* The rows in columns three spaces apart (the last one unpadded). */
void table_print(struct table *t, FILE *f);
void table_free(struct table *t);

/* "5m ago" for a time in ns since the epoch. */
const char *fmt_ago(int64_t ns, char *out, size_t cap);
/* "72.4kB" (powers of 1000, as crictl). */
const char *fmt_bytes(uint64_t b, char *out, size_t cap);
/* An ID as tables show it: without "sha256:", 13 characters unless full. */
const char *fmt_id(const char *id, int full, char *out, size_t cap);

#endif
