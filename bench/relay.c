/* relay: the cheapest possible proxy hop, as a floor to compare crisp with.
 *
 *   relay LISTEN_SOCK BACKEND_SOCK
 *
 * Single-threaded epoll byte relay between unix sockets: every accepted
 * connection gets its own connection to BACKEND_SOCK and bytes are copied both
 * ways as they come (one read, then an immediate write; EPOLLOUT only when the
 * peer is full). It parses nothing: no HTTP/2, no gRPC. Whatever a real proxy
 * costs on top of this is the price of understanding the protocol. Exits on
 * SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BUFSZ (256 * 1024)

struct conn;
struct end {
	int fd;
	struct conn *c;
	struct end *peer;
	char *buf; /* bytes read from this end, waiting to be written to peer */
	size_t off, len;
	unsigned ev; /* current epoll interest */
};
struct conn {
	struct end e[2];
	int dead;
};

static int ep;
static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

static int sun_of(const char *path, struct sockaddr_un *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path))
		return -1;
	strcpy(sa->sun_path, path);
	return 0;
}

static void set_interest(struct end *e)
{
	unsigned want = 0;
	if (e->len == 0)
		want |= EPOLLIN; /* read more only when the previous chunk left */
	if (e->peer->len > 0)
		want |= EPOLLOUT; /* peer's bytes wait for us to become writable */
	if (want != e->ev) {
		struct epoll_event ev = {.events = want, .data.ptr = e};
		epoll_ctl(ep, EPOLL_CTL_MOD, e->fd, &ev);
		e->ev = want;
	}
}

static void kill_conn(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = 1;
	for (int i = 0; i < 2; i++) {
		epoll_ctl(ep, EPOLL_CTL_DEL, c->e[i].fd, NULL);
		close(c->e[i].fd);
		free(c->e[i].buf);
	}
	/* freed lazily: other events of this epoll_wait batch may still point here */
}

/* write e's pending bytes to its peer; returns -1 on a fatal error */
static int flush(struct end *e)
{
	while (e->len > 0) {
		ssize_t n = write(e->peer->fd, e->buf + e->off, e->len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				return 0;
			return -1;
		}
		e->off += n;
		e->len -= n;
	}
	e->off = 0;
	return 0;
}

static int on_readable(struct end *e)
{
	if (e->len > 0)
		return 0;
	ssize_t n = read(e->fd, e->buf, BUFSZ);
	if (n == 0)
		return -1;
	if (n < 0)
		return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
	e->off = 0;
	e->len = n;
	return flush(e);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: relay LISTEN_SOCK BACKEND_SOCK\n");
		return 2;
	}
	struct sockaddr_un lsa, bsa;
	if (sun_of(argv[1], &lsa) || sun_of(argv[2], &bsa)) {
		fprintf(stderr, "relay: socket path too long\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {.sa_handler = on_sig};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	unlink(argv[1]);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&lsa, sizeof(lsa)) || listen(lfd, 128)) {
		perror("relay: listen");
		return 1;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev);

	struct conn *graveyard[64];
	int ngrave = 0;
	while (!stop) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("relay: epoll_wait");
			break;
		}
		for (int i = 0; i < n; i++) {
			struct end *e = evs[i].data.ptr;
			if (!e) { /* listener */
				int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (cfd < 0)
					continue;
				int bfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
				if (bfd < 0 || connect(bfd, (struct sockaddr *)&bsa, sizeof(bsa))) {
					perror("relay: connect backend");
					close(cfd);
					if (bfd >= 0)
						close(bfd);
					continue;
				}
				fcntl(bfd, F_SETFL, O_NONBLOCK);
				struct conn *c = calloc(1, sizeof(*c));
				c->e[0].fd = cfd;
				c->e[1].fd = bfd;
				for (int k = 0; k < 2; k++) {
					c->e[k].c = c;
					c->e[k].peer = &c->e[1 - k];
					c->e[k].buf = malloc(BUFSZ);
					c->e[k].ev = EPOLLIN;
					struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->e[k]};
					epoll_ctl(ep, EPOLL_CTL_ADD, c->e[k].fd, &ev);
				}
				continue;
			}
			struct conn *c = e->c;
			if (c->dead)
				continue;
			int bad = 0;
			if (evs[i].events & EPOLLOUT)
				bad |= flush(e->peer);
			if (!bad && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
				bad |= on_readable(e);
			if (bad) {
				kill_conn(c);
				if (ngrave < 64)
					graveyard[ngrave++] = c;
				continue;
			}
			set_interest(&c->e[0]);
			set_interest(&c->e[1]);
		}
		for (int g = 0; g < ngrave; g++)
			free(graveyard[g]);
		ngrave = 0;
	}
	unlink(argv[1]);
	return 0;
}
