/* writer.h - the trace's writer thread: a bounded queue in, a file out.
 *
 * Regular files cannot be polled, and a slow disk must never stall the
 * event loop: the loop only queues jobs (one short mutex hold per job, no
 * wake-up below a quarter of the queue: the thread looks every 50 ms), and
 * drops a job (counted, and said in the trace by a "dropped" record) when
 * the queue is full. The thread formats the records (record.c: decoding
 * and JSON are its work, not the loop's), writes them in batches,
 * rotates the file by size (PATH -> PATH.1 -> ... PATH.N, at record
 * boundaries) and reopens it when asked (SIGHUP, for logrotate). The
 * thread touches nothing of crisp's but the queue, its own counters and
 * the read-only method table and descriptors. */
#ifndef CRISP_TRACE_WRITER_H
#define CRISP_TRACE_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "trace/job.h"

struct trace_writer_cfg {
    const char *path;  /* "-": stdout (no rotation, no reopen) */
    size_t max_size;   /* rotate past this many bytes (0: never) */
    unsigned keep;     /* rotated files kept (1..99) */
    size_t queue_max;  /* bytes of jobs queued at most */
};

struct trace_writer_stats {
    uint64_t records;      /* written */
    uint64_t dropped;      /* the queue was full */
    uint64_t filtered;     /* left out by the pod filter */
    uint64_t bytes;        /* written */
    uint64_t write_errors; /* failed writes (their records are lost) */
    uint64_t rotations;
    size_t queued;         /* bytes in the queue */
};

/* Opens the file (on the caller's thread, so a bad path fails at start; a
 * FIFO without a reader is refused rather than waited for) and starts the
 * thread. 0, or -1 with a reason in err. */
int trace_writer_start(const struct trace_writer_cfg *c, char *err, size_t errlen);
/* Queues a job; the writer owns it from now on. 0, or -1 when it was
 * dropped (the queue is full, or the writer is not running). */
int trace_writer_push(struct trace_job *j);
/* The file is closed and opened again (by the thread) before the next write. */
void trace_writer_reopen(void);
/* Writes what is queued and stops the thread (waits up to 2 s for a
 * write that hangs, then leaves it). */
void trace_writer_stop(void);
void trace_writer_get_stats(struct trace_writer_stats *s);

#endif
