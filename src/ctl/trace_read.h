/* trace_read.h - reading crisp's trace files (the records of
 * src/trace/record.h): lines from a stream, and each line parsed and
 * checked into a struct. The parser does no I/O; the line reader reads a
 * FILE and caps a line's length (a longer line is skipped and reported). */
#ifndef CRISP_CTL_TRACE_READ_H
#define CRISP_CTL_TRACE_READ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

enum trace_rec_kind {
    TREC_CALL = 0,
    TREC_MSG,
    TREC_DROPPED,
};

struct trace_rec {
    enum trace_rec_kind kind;
    int64_t wall_us;
    uint64_t id, parent, conn;
    int32_t stream;
    int pid, uid;              /* -1: not given */
    /* strings point into root (NULL: not given) */
    const char *method, *service, *api, *backend, *handler, *status, *message;
    int code;                  /* -1: not given */
    int64_t latency_us, backend_us; /* backend_us -1: not given; msg: latency_us is at_us */
    uint64_t req_bytes, resp_bytes, bytes, count;
    unsigned msgs, n;
    int cut;
    const cJSON *request, *response; /* in root, or NULL */
    cJSON *root;
};

enum {
    TREC_E_JSON = -1,   /* not a JSON object */
    TREC_E_FIELD = -2,  /* a field of the wrong type or out of range */
    TREC_E_KIND = -3,   /* no "kind", or one this reader does not know */
};

/* Parses one record (n bytes, no newline needed). 0, or a TREC_E_* with
 * a reason in err; r is then empty. trace_rec_free releases it. */
int trace_rec_parse(const char *line, size_t n, struct trace_rec *r, char *err, size_t errlen);
void trace_rec_free(struct trace_rec *r);
/* "2025-01-02T03:04:05.000006Z" -> µs since the epoch. 0, or -1. */
int trace_parse_time(const char *ts, int64_t *wall_us);

struct trace_reader {
    FILE *f;
    char *buf;
    size_t len, cap, max;
    size_t consumed;    /* bytes of the line handed out last, newline included */
    int skipping;       /* inside a line over max */
    long lineno;
};

void trace_reader_init(struct trace_reader *rd, FILE *f, size_t max_line);
void trace_reader_free(struct trace_reader *rd);
/* The next whole line (without its newline, NUL-terminated in the
 * reader's buffer, valid until the next call): 1; 0 at the end of the file
 * (a partial last line stays for the next call: following a growing
 * file); -1 once for a line over the cap (the line is skipped; *n is how
 * much of it was read) or when out of memory. */
int trace_reader_next(struct trace_reader *rd, char **line, size_t *n);

#endif
