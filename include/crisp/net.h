/* net.h - socket addresses from URLs: unix:///path, tcp://host:port. */
#ifndef CRISP_NET_H
#define CRISP_NET_H

#include <stddef.h>
#include <sys/socket.h>

enum crisp_addr_kind {
    CRISP_ADDR_UNIX = 0,
    CRISP_ADDR_TCP,
    CRISP_ADDR_FD,
};

struct crisp_addr {
    enum crisp_addr_kind kind;
    struct sockaddr_storage ss;
    socklen_t sslen;
    char path[108]; /* unix: socket path */
    char host[256]; /* tcp: host as given */
    int fd;         /* fd://N, or -1 for "all passed fds" */
};

/* Parses a URL; resolves tcp hosts (numeric or via getaddrinfo, at start-up
 * only). Returns 0, or -1 with a reason in err. */
int crisp_addr_parse(const char *url, struct crisp_addr *a, char *err, size_t errlen);

#endif
