/* table.c - crispctl's aligned text tables and small formatting helpers. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl/table.h"

#define MAX_COLS 12

void table_init(struct table *t, size_t ncols)
{
    *t = (struct table){.ncols = ncols < MAX_COLS ? ncols : MAX_COLS};
}

void table_add(struct table *t, ...)
{
    va_list ap;
    char **row = calloc(t->ncols, sizeof(char *));
    char ***rows = realloc(t->rows, (t->nrows + 1) * sizeof(*rows));
    if (!row || !rows) {
        free(row);
        if (rows)
            t->rows = rows;
        return; /* a row lost to memory: the table is still whole */
    }
    va_start(ap, t);
    for (size_t i = 0; i < t->ncols; i++) {
        const char *s = va_arg(ap, const char *);
        row[i] = strdup(s ? s : "");
    }
    va_end(ap);
    t->rows = rows;
    t->rows[t->nrows++] = row;
}

void table_print(struct table *t, FILE *f)
{
    size_t w[MAX_COLS] = {0};
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++)
            if (t->rows[r][c] && strlen(t->rows[r][c]) > w[c])
                w[c] = strlen(t->rows[r][c]);
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->rows[r][c] ? t->rows[r][c] : "";
            if (c + 1 < t->ncols)
                fprintf(f, "%-*s   ", (int)w[c], s);
            else
                fprintf(f, "%s\n", s);
        }
    }
}

void table_free(struct table *t)
{
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++)
            free(t->rows[r][c]);
        free(t->rows[r]);
    }
    free(t->rows);
    t->rows = NULL;
    t->nrows = 0;
}

const char *fmt_ago(int64_t ns, char *out, size_t cap)
{
    if (ns <= 0) {
        snprintf(out, cap, "-");
        return out;
    }
    int64_t s = (int64_t)time(NULL) - ns / 1000000000;
    if (s < 60)
        snprintf(out, cap, "%llds ago", (long long)(s < 0 ? 0 : s));
    else if (s < 3600)
        snprintf(out, cap, "%lldm ago", (long long)(s / 60));
    else if (s < 86400)
        snprintf(out, cap, "%lldh ago", (long long)(s / 3600));
    else
        snprintf(out, cap, "%lldd ago", (long long)(s / 86400));
    return out;
}

const char *fmt_bytes(uint64_t b, char *out, size_t cap)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
    double v = (double)b;
    unsigned u = 0;
    while (v >= 1000 && u < 4) {
        v /= 1000;
        u++;
    }
    snprintf(out, cap, u ? "%.3g%s" : "%.0f%s", v, units[u]);
    return out;
}

const char *fmt_id(const char *id, int full, char *out, size_t cap)
{
    const char *p = id ? id : "";
    if (strncmp(p, "sha256:", 7) == 0)
        p += 7;
    snprintf(out, cap, "%.*s", full ? (int)strlen(p) : 13, p);
    return out;
}
