/*
 * A tiny static HTTP server used as the "app" in hypervisor tests, so a VM can be booted
 * without a Python rootfs. It binds [::]:$PORT (dual stack) and answers:
 *
 *   GET /              -> 200 "hello <argv[1]>" (argv[1] shows $VAR expansion in the command)
 *   GET /env/NAME      -> 200 value of NAME, 404 if unset
 *   GET /id            -> 200 "uid=U gid=G groups=N"
 *   GET /write/PATH    -> 200 "ok" if PATH could be created, else "error: <strerror>"
 *   GET /connect/IP/P  -> 200 "connected" or "error: <strerror>" (TCP connect, 3 s timeout)
 *   GET /exit/N        -> 200, then exits with status N
 *
 * On SIGTERM it prints "httpd: got SIGTERM" and exits 0: the test for graceful stops
 * (with IGNORE_TERM=1 in the environment it ignores SIGTERM: the test for forced stops).
 * One request per connection, handled in a forked child, so a stalled client cannot block it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t terminated;
static void on_term(int sig) { (void)sig; terminated = 1; }

static void reply(int fd, int code, const char *body) {
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     code, code == 200 ? "OK" : "Not Found", strlen(body));
    if (write(fd, head, n) < 0 || write(fd, body, strlen(body)) < 0) return;
}

static void try_connect(const char *ip, int port, char *out, size_t cap) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) { snprintf(out, cap, "error: bad address"); return; }
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) && errno != EINPROGRESS) {
        snprintf(out, cap, "error: %s", strerror(errno));
        close(s);
        return;
    }
    struct pollfd p = {.fd = s, .events = POLLOUT};
    if (poll(&p, 1, 3000) != 1) { snprintf(out, cap, "error: timeout"); close(s); return; }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) snprintf(out, cap, "error: %s", strerror(err));
    else snprintf(out, cap, "connected");
    close(s);
}

/* Returns the exit status requested by /exit/N, or -1. */
static int handle(int fd, const char *greeting) {
    char req[2048];
    ssize_t n = read(fd, req, sizeof req - 1);
    if (n <= 0) return -1;
    req[n] = 0;
    char path[1024] = "/";
    sscanf(req, "GET %1023s", path);
    char body[1200];
    int code = 200, exit_with = -1;
    if (!strcmp(path, "/")) {
        snprintf(body, sizeof body, "hello %s", greeting);
    } else if (!strncmp(path, "/env/", 5)) {
        const char *v = getenv(path + 5);
        if (v) snprintf(body, sizeof body, "%s", v);
        else { code = 404; snprintf(body, sizeof body, "unset"); }
    } else if (!strcmp(path, "/id")) {
        snprintf(body, sizeof body, "uid=%d gid=%d groups=%d", getuid(), getgid(), getgroups(0, NULL));
    } else if (!strncmp(path, "/write/", 7)) {
        int f = open(path + 6, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (f >= 0) { snprintf(body, sizeof body, "ok"); close(f); }
        else snprintf(body, sizeof body, "error: %s", strerror(errno));
    } else if (!strncmp(path, "/connect/", 9)) {
        char ip[64];
        int port;
        if (sscanf(path + 9, "%63[^/]/%d", ip, &port) == 2) try_connect(ip, port, body, sizeof body);
        else { code = 404; snprintf(body, sizeof body, "usage: /connect/IP/PORT"); }
    } else if (!strncmp(path, "/exit/", 6)) {
        exit_with = atoi(path + 6);
        snprintf(body, sizeof body, "exiting with %d", exit_with);
    } else {
        code = 404;
        snprintf(body, sizeof body, "not found");
    }
    reply(fd, code, body);
    return exit_with;
}

int main(int argc, char **argv) {
    const char *port = getenv("PORT");
    const char *greeting = argc > 1 ? argv[1] : "world";
    if (!port) { fprintf(stderr, "httpd: PORT is not set\n"); return 2; }
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    if (getenv("IGNORE_TERM")) signal(SIGTERM, SIG_IGN);
    signal(SIGCHLD, SIG_IGN);
    int s = socket(AF_INET6, SOCK_STREAM, 0);
    int zero = 0, one = 1;
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_port = htons(atoi(port)), .sin6_addr = in6addr_any};
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) || listen(s, 64)) {
        perror("httpd: bind");
        return 1;
    }
    printf("httpd: listening on [::]:%s as uid %d\n", port, getuid());
    fflush(stdout);
    while (!terminated) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        char peek[16];
        if (recv(c, peek, sizeof peek, MSG_PEEK) > 0 && !strncmp(peek, "GET /exit/", 10)) {
            int status = handle(c, greeting); /* answered before exiting, in the main process */
            close(c);
            printf("httpd: exiting with %d\n", status);
            return status;
        }
        if (fork() == 0) {
            close(s);
            handle(c, greeting);
            _exit(0);
        }
        close(c);
    }
    printf("httpd: got SIGTERM\n");
    return 0;
}
