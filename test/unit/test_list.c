/* Unit tests for list.h. */
#include <stdlib.h>

#include "crisp/list.h"
#include "unit.h"

struct item {
    int v;
    struct crisp_list link;
};

static int sum(struct crisp_list *anchor)
{
    int s = 0;
    crisp_list_for_each(anchor, it) s = s * 10 + crisp_container_of(it, struct item, link)->v;
    return s;
}

int main(void)
{
    struct crisp_list l;
    struct item a = {1, {0}}, b = {2, {0}}, c = {3, {0}};
    crisp_list_init(&l);
    CHECK(crisp_list_empty(&l) && crisp_list_first(&l) == NULL && crisp_list_count(&l) == 0);
    CHECK(!crisp_list_is_linked(&a.link));
    crisp_list_push_back(&l, &a.link);
    crisp_list_push_back(&l, &b.link);
    crisp_list_push_front(&l, &c.link);
    CHECK(sum(&l) == 312 && crisp_list_count(&l) == 3);
    CHECK(crisp_list_first(&l) == &c.link);
    crisp_list_unlink(&a.link);
    crisp_list_unlink(&a.link); /* twice: harmless */
    CHECK(sum(&l) == 32 && !crisp_list_is_linked(&a.link));
    crisp_list_for_each(&l, it) crisp_list_unlink(it); /* unlink while iterating */
    CHECK(crisp_list_empty(&l));
    crisp_list_insert(&l, &b.link);
    crisp_list_insert(&b.link, &a.link); /* before b */
    CHECK(sum(&l) == 12);
    return unit_summary("test_list");
}
