/* mux.h - the RuntimeClass router: one crisp socket, several backends
 * (private to src/mux).
 *
 * The mux is a backend whose engines are other backends ("children"). It
 * keeps nothing a restart could lose: a call that names a handler goes to
 * that handler's backend; a call that names an ID goes to the backend that
 * owns the ID, found in a soft-state cache (routes.c) learnt from the
 * answers it relays and, on a miss, by asking every backend (a status call
 * each, concurrently); lists, streams and Status are asked of every backend
 * and merged (merge.c, pure and unit-tested). The IDs are the engines' own:
 * nothing in them says where they live, so a node moves behind crisp (or
 * gains a backend) without any ID changing. */
#ifndef CRISP_MUX_H
#define CRISP_MUX_H

#include <stddef.h>
#include <stdint.h>

#include "crisp/backend.h"
#include "crisp/config.h"

/* ---- mux.c ---------------------------------------------------------------- */

/* A router over these children (not owned: the caller keeps them alive
 * while the mux or any call started on them lives). NULL and a reason on
 * failure. */
struct crisp_backend *crisp_mux_new(struct event_base *base, const struct crisp_config *cfg,
                                    struct crisp_backend *const *children, char *err,
                                    size_t errlen);

/* ---- routes.c: ID -> backend, soft state ---------------------------------- */

struct crisp_backend *mux_route_get(const char *id);
void mux_route_put(const char *id, struct crisp_backend *be);
void mux_route_del(const char *id);
/* Forgets every ID of a backend that goes away. */
void mux_route_drop_backend(const struct crisp_backend *be);
size_t mux_route_count(void);
void mux_routes_free(void);

/* ---- merge.c: answers of several backends into one (no I/O) --------------- */

/* One backend's answer: its name and the message bytes, or why it has
 * none (err: its status message; NULL when it answered). */
struct mux_part {
    const char *backend;
    const uint8_t *msg;
    size_t len;
    const char *err;
};

/* A configured handler as Status reports it: its name, the engine's
 * runtime name for it, and the part (backend) it lives on. */
struct mux_handler_view {
    const char *name;
    const char *runtime;
    size_t part;
};

/* Repeated-field answers (lists, ImageFsInfo, metrics): the encoded answers
 * one after the other are the merged answer. malloc'd; NULL when out of
 * memory. */
uint8_t *mux_concat(const struct mux_part *parts, size_t n, size_t *len);
/* StatusResponse: each condition is true only when it is on every backend
 * (the message names the backend where it is not, and its error when it did
 * not answer); the runtime handlers
 * are the configured ones, with the features their backend reports for
 * the engine's runtime; verbose info is merged with "backend/" prefixes. */
uint8_t *mux_merge_status(const struct mux_part *parts, size_t n,
                          const struct mux_handler_view *handlers, size_t nh, size_t *len);
/* ListImagesResponse: every image once (by ID), the first backend's entry. */
uint8_t *mux_merge_images(const struct mux_part *parts, size_t n, size_t *len);
/* Whether an ImageStatusResponse holds an image. -1: not a valid answer. */
int mux_image_present(const uint8_t *msg, size_t len);
/* RunPodSandboxRequest with runtime_handler set to runtime. */
uint8_t *mux_set_handler(const uint8_t *req, size_t len, const char *runtime, size_t *out_len);
/* PodSandboxStatusResponse or ListPodSandboxResponse with the engine's
 * runtime names put back to the handler names crisp's client knows
 * (from[i] -> to[i]). */
uint8_t *mux_unmap_handlers(const uint8_t *msg, size_t len, int is_list, const char *const *from,
                            const char *const *to, size_t n, size_t *out_len);

#endif
