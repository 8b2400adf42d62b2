/*
 * unicloud-init: PID 1 of a unicloud VM image.
 *
 * The image has no shell, so this program does the few things a shell and an
 * init system would: mount the API filesystems, read the boot config the host
 * appended as a second cpio (/etc/unicloud/{env,cmd}), lock the root
 * filesystem read-only, drop to uid/gid 1000 and run the Procfile command with
 * nothing but $VAR / ${VAR} expansion.  It stays PID 1 to reap zombies and to
 * forward termination requests, then reports how the app ended on the console
 * ("unicloud-init: exit status N" / "unicloud-init: killed by signal S") and
 * restarts the machine, which makes QEMU (-no-reboot) exit.
 *
 * Termination requests reach init in two ways: as signals (SIGTERM, SIGINT,
 * SIGHUP, e.g. Ctrl-Alt-Del) and as lines ("TERM", "INT", "KILL", "HUP",
 * "QUIT", "USR1", "USR2") on the control serial port /dev/ttyS1, which the
 * host wires to a unix socket.  Either way the signal goes to the app's
 * process group.
 *
 * Build: musl-gcc -static -Os -s init.c -o init
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define APP_UID 1000
#define APP_GID 1000
#define APP_HOME "/app"
#define DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"
#define CONTROL_TTY "/dev/ttyS1"
#define MAX_CONFIG (1 << 20)

/* ------------------------------------------------------------------ logging */

static void logmsg(const char *fmt, ...) {
    char buf[1024];
    int n = snprintf(buf, sizeof buf, "unicloud-init: ");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(2, buf + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += w;
    }
}

static void *xalloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) { logmsg("out of memory"); _exit(1); }
    return p;
}

/* --------------------------------------------------------------- power off */

/* Flush the console, then restart: with "-no-reboot" QEMU exits.  A real
 * power-off needs ACPI, which the microvm kernel does not have. */
static void shutdown_machine(void) {
    tcdrain(1);
    tcdrain(2);
    sync();
    reboot(RB_AUTOBOOT);
    logmsg("reboot failed: %s", strerror(errno));
    for (;;) pause();
}

static void fatal(int status, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    logmsg("%s", msg);
    logmsg("exit status %d", status);
    if (getpid() == 1) shutdown_machine();
    _exit(status);
}

/* ------------------------------------------------------------- environment */

struct env { char **v; size_t n; };

static const char *env_get(const struct env *e, const char *key, size_t klen) {
    for (size_t i = 0; i < e->n; i++)
        if (!strncmp(e->v[i], key, klen) && e->v[i][klen] == '=') return e->v[i] + klen + 1;
    return NULL;
}

/* Add or replace KEY=VALUE (takes ownership of kv). */
static void env_put(struct env *e, char *kv) {
    size_t klen = strcspn(kv, "=");
    for (size_t i = 0; i < e->n; i++)
        if (!strncmp(e->v[i], kv, klen) && e->v[i][klen] == '=') {
            free(e->v[i]);
            e->v[i] = kv;
            return;
        }
    e->v = xalloc(e->v, (e->n + 2) * sizeof *e->v);
    e->v[e->n++] = kv;
    e->v[e->n] = NULL;
}

static void env_set(struct env *e, const char *k, const char *v) {
    char *kv = xalloc(NULL, strlen(k) + strlen(v) + 2);
    sprintf(kv, "%s=%s", k, v);
    env_put(e, kv);
}

static int valid_name(const char *s, size_t n) {
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_')) return 0;
    return 1;
}

/* Read a whole small file; NULL if it does not exist. */
static char *read_file(const char *path, size_t *len) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) logmsg("cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = xalloc(NULL, cap + 1);
    for (;;) {
        if (n == cap) {
            if (cap >= MAX_CONFIG) { logmsg("%s is larger than %d bytes", path, MAX_CONFIG); break; }
            cap *= 2;
            buf = xalloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += r;
    }
    close(fd);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* Load NUL-separated KEY=VALUE entries; later files override earlier ones. */
static void env_load(struct env *e, const char *path) {
    size_t len;
    char *buf = read_file(path, &len);
    if (!buf) return;
    for (size_t i = 0; i < len;) {
        char *entry = buf + i;
        size_t n = strnlen(entry, len - i);
        i += n + 1;
        if (n == 0) continue;
        size_t klen = strcspn(entry, "=");
        if (klen == n || !valid_name(entry, klen)) {
            logmsg("%s: ignoring malformed entry \"%.60s\"", path, entry);
            continue;
        }
        env_put(e, strndup(entry, n));
    }
    free(buf);
}

/* ------------------------------------------------------ command-line parser */

/* Splits the Procfile command like a shell would for the simple cases
 * (whitespace, '...', "...", backslash, $VAR, ${VAR}, ${VAR:-default},
 * leading NAME=value assignments, a leading "exec") and refuses everything
 * that needs a shell, so a command never silently means something else. */

struct buf { char *s; size_t n, cap; };

static void buf_add(struct buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = xalloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static char parse_error[256];

static int refuse(const char *what) {
    snprintf(parse_error, sizeof parse_error,
             "refusing command: shell syntax %s is not supported "
             "(the command runs without a shell; put pipelines in a script)", what);
    return -1;
}

/* Expand the reference starting after '$' at s; returns chars consumed or -1. */
static int expand(const char *s, const struct env *e, struct buf *out) {
    if (s[0] == '(') return refuse("'$('");
    if (s[0] == '{') {
        const char *end = strchr(s, '}');
        if (!end) {
            snprintf(parse_error, sizeof parse_error, "unterminated ${ in command");
            return -1;
        }
        size_t nlen = 0;
        while (s + 1 + nlen < end && (isalnum((unsigned char)s[1 + nlen]) || s[1 + nlen] == '_')) nlen++;
        const char *rest = s + 1 + nlen;
        if (!valid_name(s + 1, nlen) || (rest != end && strncmp(rest, ":-", 2))) {
            snprintf(parse_error, sizeof parse_error,
                     "unsupported expansion ${%.*s} (only $VAR, ${VAR} and ${VAR:-default})",
                     (int)(end - s - 1), s + 1);
            return -1;
        }
        const char *v = env_get(e, s + 1, nlen);
        if (rest != end && (!v || !*v)) buf_add(out, rest + 2, end - rest - 2);
        else if (v) buf_add(out, v, strlen(v));
        return (int)(end - s + 1);
    }
    size_t nlen = 0;
    while (isalnum((unsigned char)s[nlen]) || s[nlen] == '_') nlen++;
    if (!valid_name(s, nlen)) {
        buf_add(out, "$", 1); /* a lone '$' stays literal */
        return 0;
    }
    const char *v = env_get(e, s, nlen);
    if (v) buf_add(out, v, strlen(v));
    return (int)nlen;
}

/* Returns a NULL-terminated argv, or NULL with parse_error set. */
static char **parse_command(const char *s, struct env *e) {
    char **argv = NULL;
    size_t argc = 0;
    int assignments_done = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) break;
        struct buf w = {0};
        int quoted = 0;
        buf_add(&w, "", 0);
        for (; *s && *s != ' ' && *s != '\t'; s++) {
            char c = *s;
            int r;
            switch (c) {
            case '\n': case '\r': refuse("newline"); goto fail;
            case '|': refuse(s[1] == '|' ? "'||'" : "'|'"); goto fail;
            case '&': refuse(s[1] == '&' ? "'&&'" : "'&'"); goto fail;
            case ';': refuse("';'"); goto fail;
            case '>': refuse(s[1] == '>' ? "'>>'" : "'>'"); goto fail;
            case '<': refuse("'<'"); goto fail;
            case '`': refuse("'`'"); goto fail;
            case '(': refuse("'('"); goto fail;
            case ')': refuse("')'"); goto fail;
            case '\\':
                if (s[1]) s++;
                buf_add(&w, s, 1);
                break;
            case '$':
                if ((r = expand(s + 1, e, &w)) < 0) goto fail;
                s += r;
                break;
            case '\'': {
                const char *end = strchr(s + 1, '\'');
                if (!end) { snprintf(parse_error, sizeof parse_error, "unterminated ' in command"); goto fail; }
                buf_add(&w, s + 1, end - s - 1);
                s = end;
                quoted = 1;
                break;
            }
            case '"':
                quoted = 1;
                for (s++; *s != '"'; s++) {
                    if (!*s) { snprintf(parse_error, sizeof parse_error, "unterminated \" in command"); goto fail; }
                    if (*s == '`') { refuse("'`'"); goto fail; }
                    if (*s == '\\' && s[1] && strchr("$`\"\\", s[1])) { s++; buf_add(&w, s, 1); }
                    else if (*s == '$') { if ((r = expand(s + 1, e, &w)) < 0) goto fail; s += r; }
                    else buf_add(&w, s, 1);
                }
                break;
            default:
                buf_add(&w, s, 1);
            }
        }
        if (w.n == 0 && !quoted) { free(w.s); continue; } /* $EMPTY vanishes, as in sh */
        if (!assignments_done) {
            size_t klen = strcspn(w.s, "=");
            if (w.s[klen] == '=' && valid_name(w.s, klen)) { env_put(e, w.s); continue; }
            assignments_done = 1;
            if (!strcmp(w.s, "exec")) { free(w.s); continue; }
        }
        argv = xalloc(argv, (argc + 2) * sizeof *argv);
        argv[argc++] = w.s;
        argv[argc] = NULL;
        continue;
    fail:
        free(w.s);
        return NULL;
    }
    if (!argc) {
        snprintf(parse_error, sizeof parse_error, "empty command (nothing to run in /etc/unicloud/cmd)");
        return NULL;
    }
    return argv;
}

/* -------------------------------------------------------------- the child */

/* execvp with an explicit PATH and environment, reporting what failed. */
static void exec_app(char **argv, char **envp, const char *path) {
    if (strchr(argv[0], '/')) {
        execve(argv[0], argv, envp);
        int err = errno;
        logmsg("cannot execute %s: %s", argv[0], strerror(err));
        _exit(err == ENOENT ? 127 : 126);
    }
    int saw_eacces = 0;
    for (const char *p = path;;) {
        const char *end = strchrnul(p, ':');
        int dlen = (int)(end - p);
        char full[4096];
        /* an empty PATH entry means the working directory, as in execvp */
        int n = snprintf(full, sizeof full, "%.*s/%s", dlen ? dlen : 1, dlen ? p : ".", argv[0]);
        if (n > 0 && n < (int)sizeof full) {
            execve(full, argv, envp);
            if (errno == EACCES) saw_eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR) {
                logmsg("cannot execute %s: %s", full, strerror(errno));
                _exit(126);
            }
        }
        if (!*end) break;
        p = end + 1;
    }
    if (saw_eacces) {
        logmsg("cannot execute %s: permission denied", argv[0]);
        _exit(126);
    }
    logmsg("command not found: %s (PATH=%s)", argv[0], path);
    _exit(127);
}

static void become_app(const char *workdir) {
    if (setgroups(0, NULL) || setgid(APP_GID) || setuid(APP_UID)) {
        logmsg("cannot drop privileges to uid %d: %s", APP_UID, strerror(errno));
        _exit(126);
    }
    if (setuid(0) == 0) { logmsg("privileges were not dropped"); _exit(126); }
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (chdir(workdir)) {
        logmsg("cannot chdir to %s: %s", workdir, strerror(errno));
        _exit(126);
    }
}

/* --------------------------------------------------------------- PID 1 */

static volatile sig_atomic_t got_chld, got_sig;

static void on_signal(int sig) {
    if (sig == SIGCHLD) got_chld = 1;
    else got_sig = sig;
}

static void mount_fs(const char *src, const char *dir, const char *type,
                     unsigned long flags, const char *data) {
    mkdir(dir, 0755);
    if (mount(src, dir, type, flags, data) && errno != EBUSY)
        logmsg("mount %s on %s: %s", type, dir, strerror(errno));
}

static void ensure_console(void) {
    if (fcntl(2, F_GETFD) == -1 || fcntl(1, F_GETFD) == -1) {
        int fd = open("/dev/console", O_RDWR | O_NOCTTY);
        if (fd < 0) fd = open("/dev/null", O_RDWR);
        for (int i = 0; i < 3; i++)
            if (fcntl(i, F_GETFD) == -1) dup2(fd, i);
        if (fd > 2) close(fd);
    }
}

static int open_control(void) {
    int fd = open(CONTROL_TTY, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        t.c_cflag |= CLOCAL | CREAD; /* no modem lines: never a hangup */
        tcsetattr(fd, TCSANOW, &t);
    } else { /* no UART behind the node */
        close(fd);
        return -1;
    }
    return fd;
}

static int signal_by_name(const char *s) {
    static const struct { const char *name; int sig; } names[] = {
        {"TERM", SIGTERM}, {"INT", SIGINT}, {"KILL", SIGKILL}, {"HUP", SIGHUP},
        {"QUIT", SIGQUIT}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
    };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(s, names[i].name)) return names[i].sig;
    return 0;
}

static void forward(pid_t app, int sig) {
    if (kill(-app, sig) && kill(app, sig))
        logmsg("cannot forward signal %d: %s", sig, strerror(errno));
}

/* Read complete lines from the control port and forward each named signal. */
static void read_control(int fd, pid_t app, char *line, size_t *len, size_t cap) {
    char c;
    while (read(fd, &c, 1) == 1) {
        if (c == '\n' || c == '\r') {
            line[*len] = 0;
            if (*len) {
                int sig = signal_by_name(line);
                if (sig) forward(app, sig);
                else logmsg("ignoring unknown control request \"%.40s\"", line);
            }
            *len = 0;
        } else if (*len < cap - 1) {
            line[(*len)++] = c;
        }
    }
}

/* Outside PID 1 the program never touches the system: `init --check CMD` parses CMD against
 * the current environment and prints the resulting argv, NUL-terminated (exit 0), or the
 * refusal (exit 2). The host uses it to test and to vet Procfile commands before booting. */
static int check_mode(int argc, char **argv) {
    if (argc != 3 || strcmp(argv[1], "--check")) {
        logmsg("must run as PID 1 (or: init --check 'COMMAND')");
        return 2;
    }
    struct env e = {0};
    extern char **environ;
    for (char **p = environ; *p; p++) env_put(&e, strdup(*p));
    char **args = parse_command(argv[2], &e);
    if (!args) {
        logmsg("%s", parse_error);
        return 2;
    }
    for (char **a = args; *a; a++) fwrite(*a, 1, strlen(*a) + 1, stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (getpid() != 1) return check_mode(argc, argv);

    mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755");
    ensure_console();
    mount_fs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_fs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    mount_fs("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    umask(022);

    /* Ctrl-Alt-Del becomes SIGINT for init, which it forwards. */
    reboot(RB_DISABLE_CAD);

    size_t hlen;
    char *hostname = read_file("/etc/hostname", &hlen);
    if (hostname) {
        hlen = strcspn(hostname, "\r\n");
        if (hlen && sethostname(hostname, hlen)) logmsg("sethostname: %s", strerror(errno));
        free(hostname);
    }

    struct env env = {0};
    env_load(&env, "/etc/unicloud/image-env");
    env_load(&env, "/etc/unicloud/env");
    env_set(&env, "HOME", APP_HOME);
    if (!env_get(&env, "PATH", 4)) env_set(&env, "PATH", DEFAULT_PATH);

    char *workdir = read_file("/etc/unicloud/workdir", NULL);
    if (workdir) workdir[strcspn(workdir, "\r\n")] = 0;
    if (!workdir || !*workdir) workdir = APP_HOME;
    env_set(&env, "PWD", workdir);

    char *cmd = read_file("/etc/unicloud/cmd", NULL);
    if (!cmd) fatal(2, "no command: /etc/unicloud/cmd is missing from the boot config");
    size_t clen = strlen(cmd);
    while (clen && isspace((unsigned char)cmd[clen - 1])) cmd[--clen] = 0;
    char **app_argv = parse_command(cmd, &env);
    if (!app_argv) fatal(2, "%s", parse_error);

    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY, NULL))
        fatal(1, "cannot remount / read-only: %s", strerror(errno));

    struct rlimit nofile = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &nofile);

    sigset_t block, empty;
    sigemptyset(&empty);
    sigemptyset(&block);
    int handled[] = {SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    struct sigaction sa = {.sa_handler = on_signal};
    for (size_t i = 0; i < sizeof handled / sizeof *handled; i++) {
        sigaddset(&block, handled[i]);
        sigaction(handled[i], &sa, NULL);
    }
    sigprocmask(SIG_BLOCK, &block, NULL);

    int control = open_control();

    pid_t app = fork();
    if (app < 0) fatal(1, "fork: %s", strerror(errno));
    if (app == 0) {
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        for (size_t i = 0; i < sizeof handled / sizeof *handled; i++) sigaction(handled[i], &dfl, NULL);
        sigprocmask(SIG_SETMASK, &empty, NULL);
        setsid();
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0 && null != 0) { dup2(null, 0); close(null); }
        become_app(workdir);
        exec_app(app_argv, env.v, env_get(&env, "PATH", 4));
    }

    char line[64];
    size_t linelen = 0;
    int status = 0;
    for (;;) {
        struct pollfd pfd = {.fd = control, .events = POLLIN};
        int r = ppoll(&pfd, control >= 0 ? 1 : 0, NULL, &empty);
        if (r > 0 && (pfd.revents & POLLIN)) {
            read_control(control, app, line, &linelen, sizeof line);
        } else if (r > 0 && (pfd.revents & (POLLHUP | POLLERR | POLLNVAL))) {
            logmsg("control channel failed; signals still reach the app via init");
            close(control); /* never spin on a dead descriptor */
            control = -1;
        }
        if (got_sig) {
            int sig = got_sig;
            got_sig = 0;
            forward(app, sig);
        }
        if (got_chld) {
            got_chld = 0;
            pid_t p;
            int st;
            int done = 0;
            while ((p = waitpid(-1, &st, WNOHANG)) > 0)
                if (p == app) { status = st; done = 1; }
            if (done) break;
        }
    }

    /* The app is gone: stop whatever it left behind, then report. */
    kill(-1, SIGKILL);
    while (waitpid(-1, NULL, 0) > 0) {}
    if (WIFEXITED(status)) logmsg("exit status %d", WEXITSTATUS(status));
    else logmsg("killed by signal %d", WTERMSIG(status));
    shutdown_machine();
    return 0;
}
