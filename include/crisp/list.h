/* list.h - the one list type of crisp: an intrusive, circular, doubly linked
 * list with an anchor (as h2o's linklist.h).
 *
 * An element embeds a `struct crisp_list` and is found back from it with
 * crisp_container_of(). The anchor is a `struct crisp_list` that belongs to
 * no element; an empty list is an anchor pointing at itself. A node that is
 * in no list has next == prev == NULL (crisp_list_unlink leaves it so), which
 * makes unlinking twice harmless and "is it linked?" a cheap question.
 *
 *     struct conn { struct crisp_list link; ... };
 *     struct crisp_list conns;               anchor
 *     crisp_list_init(&conns);
 *     crisp_list_push_back(&conns, &c->link);
 *     crisp_list_for_each(&conns, it) { struct conn *c = crisp_container_of(it, struct conn, link); }
 *     crisp_list_unlink(&c->link);
 */
#ifndef CRISP_LIST_H
#define CRISP_LIST_H

#include <assert.h>
#include <stddef.h>

struct crisp_list {
    struct crisp_list *next, *prev;
};

#define crisp_container_of(ptr, type, member)                                  \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

static inline void crisp_list_init(struct crisp_list *anchor)
{
    anchor->next = anchor->prev = anchor;
}

static inline int crisp_list_empty(const struct crisp_list *anchor)
{
    return anchor->next == anchor;
}

static inline int crisp_list_is_linked(const struct crisp_list *node)
{
    return node->next != NULL;
}

/* Inserts node before pos (pos may be the anchor: append). */
static inline void crisp_list_insert(struct crisp_list *pos, struct crisp_list *node)
{
    assert(!crisp_list_is_linked(node));
    node->prev = pos->prev;
    node->next = pos;
    node->prev->next = node;
    node->next->prev = node;
}

static inline void crisp_list_push_back(struct crisp_list *anchor, struct crisp_list *node)
{
    crisp_list_insert(anchor, node);
}

static inline void crisp_list_push_front(struct crisp_list *anchor, struct crisp_list *node)
{
    crisp_list_insert(anchor->next, node);
}

/* Removes node from its list; a node in no list is left alone. */
static inline void crisp_list_unlink(struct crisp_list *node)
{
    if (!crisp_list_is_linked(node))
        return;
    node->next->prev = node->prev;
    node->prev->next = node->next;
    node->next = node->prev = NULL;
}

/* The first node, or NULL when the list is empty. */
static inline struct crisp_list *crisp_list_first(const struct crisp_list *anchor)
{
    return crisp_list_empty(anchor) ? NULL : anchor->next;
}

static inline size_t crisp_list_count(const struct crisp_list *anchor)
{
    size_t n = 0;
    for (const struct crisp_list *it = anchor->next; it != anchor; it = it->next)
        n++;
    return n;
}

/* Iterates; `it` may be unlinked (and its element freed) inside the body. */
#define crisp_list_for_each(anchor, it)                                        \
    for (struct crisp_list *it = (anchor)->next, *it##_next = it->next;        \
         it != (anchor); it = it##_next, it##_next = it->next)

#endif
