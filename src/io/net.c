/* net.c - socket addresses from URLs. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "crisp/net.h"

static int parse_unix(const char *path, struct crisp_addr *a, char *err, size_t errlen)
{
    struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
    if (path[0] != '/') {
        snprintf(err, errlen, "unix socket path must be absolute: %s", path);
        return -1;
    }
    if (strlen(path) >= sizeof(un->sun_path)) {
        snprintf(err, errlen, "unix socket path too long (max %zu): %s",
                 sizeof(un->sun_path) - 1, path);
        return -1;
    }
    a->kind = CRISP_ADDR_UNIX;
    un->sun_family = AF_UNIX;
    strcpy(un->sun_path, path);
    strcpy(a->path, path);
    a->sslen = sizeof(*un);
    return 0;
}

static int parse_tcp(const char *hp, struct crisp_addr *a, char *err, size_t errlen)
{
    char host[256];
    const char *port;
    if (hp[0] == '[') {
        const char *end = strchr(hp, ']');
        if (!end || end[1] != ':' || (size_t)(end - hp - 1) >= sizeof(host)) {
            snprintf(err, errlen, "bad tcp address: %s", hp);
            return -1;
        }
        memcpy(host, hp + 1, (size_t)(end - hp - 1));
        host[end - hp - 1] = 0;
        port = end + 2;
    } else {
        const char *colon = strrchr(hp, ':');
        if (!colon || (size_t)(colon - hp) >= sizeof(host)) {
            snprintf(err, errlen, "tcp address needs host:port: %s", hp);
            return -1;
        }
        memcpy(host, hp, (size_t)(colon - hp));
        host[colon - hp] = 0;
        port = colon + 1;
    }
    char *end;
    long p = strtol(port, &end, 10);
    if (*port == 0 || *end != 0 || p < 0 || p > 65535) {
        snprintf(err, errlen, "bad tcp port in %s", hp);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rv = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rv != 0 || !res) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rv));
        return -1;
    }
    memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
    a->sslen = res->ai_addrlen;
    freeaddrinfo(res);
    a->kind = CRISP_ADDR_TCP;
    snprintf(a->host, sizeof(a->host), "%s", host);
    return 0;
}

int crisp_addr_parse(const char *url, struct crisp_addr *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    a->fd = -1;
    if (strncmp(url, "unix://", 7) == 0)
        return parse_unix(url + 7, a, err, errlen);
    if (strncmp(url, "tcp://", 6) == 0)
        return parse_tcp(url + 6, a, err, errlen);
    if (strncmp(url, "fd://", 5) == 0) {
        a->kind = CRISP_ADDR_FD;
        if (url[5]) {
            char *end;
            long fd = strtol(url + 5, &end, 10);
            if (*end || fd < 3 || fd > 65535) {
                snprintf(err, errlen, "bad fd:// listener: %s", url);
                return -1;
            }
            a->fd = (int)fd;
        }
        return 0;
    }
    if (url[0] == '/')
        return parse_unix(url, a, err, errlen);
    snprintf(err, errlen, "unsupported address %s (want unix:///path, tcp://host:port or fd://)",
             url);
    return -1;
}
