/*
 * corral-agent: the guest half of Corral's host<->guest channel (protocol: docs/guest-agent.md).
 *
 * Runs as PID 1 (exec'd by /init). Talks length-prefixed binary frames over the virtio-serial port
 * named "corral.agent", starts container processes chrooted into /run/corral/shared/<id>/rootfs,
 * streams their stdout/stderr and reports their exit. One poll() loop, every fd non-blocking; the
 * port is never blocked on: output waits in a buffer, and while that buffer is over OUT_HIGH the
 * children's pipes are not read (the children block, the channel does not).
 *
 * The host may go away and come back (a restarted hypervisor worker re-attaching): EXIT records are kept
 * until the host ACKs them, a LIST answers with a STATE of every container still known, and on a hang-up
 * the rest of a half-sent frame is dropped so that the next host reads whole frames.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PORT_NAME "corral.agent"
#define SHARED "/run/corral/shared"
#define VERSION 2
#define MAX_FRAME (1u << 20)   /* largest host->guest frame accepted */
#define MAX_CT 64              /* processes running at once */
#define OUT_HIGH (256u << 10)  /* pending output above which children are not read */
#define CHUNK 32768            /* largest OUTPUT payload */
#define DRAIN_MS 500           /* after the main process exits, wait this long for its pipes to close */
#define MAX_GIDS 256

#define STATE_MAGIC 0x434f5252u /* "CORR": with the host's token, what a re-attaching host scans for */

enum { H_PING = 1, H_RUN = 2, H_SIGNAL = 3, H_LIST = 4, H_ACK = 5 };
enum { G_READY = 0x81, G_STARTED = 0x82, G_OUTPUT = 0x83, G_EXIT = 0x84, G_ERROR = 0x85, G_STATE = 0x86 };

struct ct {
  int used;
  char id[256];
  pid_t pid;
  int xfd;          /* exec-status pipe: EOF = exec succeeded, data = {errno, message}; -1 when done */
  int fd[2];        /* stdout, stderr read ends; -1 when closed */
  int failed;       /* exec failed: ERROR sent, no STARTED/EXIT */
  int exited, status;
  int reported;     /* EXIT sent: the slot is kept (for LIST) until the host ACKs it */
  long long drain_until;
};
static struct ct cts[MAX_CT];

struct buf { uint8_t *p; size_t len, cap; };
static struct buf out, in;
static int port = -1;
static long long port_retry_at; /* host side disconnected: leave the port out of poll until then */
static size_t out_partial;      /* bytes at the head of out that end a frame whose start was already written */

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}
static void logf_(const char *m) { fprintf(stderr, "corral-agent: %s: %s\n", m, strerror(errno)); }

/* ---- output frames: u32 BE length (type + payload), u8 type, payload ---- */
static void put(struct buf *b, const void *d, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    if (!(b->p = realloc(b->p, b->cap))) { logf_("realloc"); exit(1); }
  }
  memcpy(b->p + b->len, d, n);
  b->len += n;
}
static void put32(struct buf *b, uint32_t v) {
  uint8_t x[4] = { v >> 24, v >> 16, v >> 8, v };
  put(b, x, 4);
}
static void putstr(const char *s, size_t n) { put32(&out, n); put(&out, s, n); }
static size_t fstart(uint8_t type) {
  size_t at = out.len;
  put32(&out, 0);
  put(&out, &type, 1);
  return at;
}
static void fend(size_t at) {
  uint32_t n = out.len - at - 4;
  out.p[at] = n >> 24, out.p[at + 1] = n >> 16, out.p[at + 2] = n >> 8, out.p[at + 3] = n;
}

static void send_ready(uint32_t token) { size_t f = fstart(G_READY); put32(&out, token); put32(&out, VERSION); fend(f); }
static void send_started(struct ct *c) { size_t f = fstart(G_STARTED); putstr(c->id, strlen(c->id)); put32(&out, c->pid); fend(f); }
static void send_exit(struct ct *c) { size_t f = fstart(G_EXIT); putstr(c->id, strlen(c->id)); put32(&out, c->status); fend(f); }
static void send_error(const char *id, int e, const char *msg) {
  size_t f = fstart(G_ERROR);
  putstr(id, strlen(id));
  put32(&out, e);
  putstr(msg, strlen(msg));
  fend(f);
}
static void send_output(struct ct *c, int fd, const void *d, size_t n) {
  size_t f = fstart(G_OUTPUT);
  uint8_t b = fd;
  putstr(c->id, strlen(c->id));
  put(&out, &b, 1);
  put32(&out, n);
  put(&out, d, n);
  fend(f);
}

/* ---- input frames: a cursor over one payload; any overrun sets bad ---- */
struct rd { const uint8_t *p; size_t n; int bad; };
static uint32_t get32(struct rd *r) {
  if (r->n < 4) { r->bad = 1; return 0; }
  uint32_t v = (uint32_t)r->p[0] << 24 | r->p[1] << 16 | r->p[2] << 8 | r->p[3];
  r->p += 4, r->n -= 4;
  return v;
}
static char *getstr(struct rd *r) { /* malloc'd, NUL-terminated; embedded NULs are malformed */
  uint32_t n = get32(r);
  if (r->bad || n > r->n || memchr(r->p, 0, n)) { r->bad = 1; return strdup(""); }
  char *s = strndup((const char *)r->p, n);
  r->p += n, r->n -= n;
  return s;
}
static char **getstrs(struct rd *r) { /* NULL-terminated array */
  uint32_t n = get32(r);
  if (r->bad || n > r->n / 4) { r->bad = 1; n = 0; }
  char **v = calloc(n + 1, sizeof *v);
  for (uint32_t i = 0; i < n; i++) v[i] = getstr(r);
  return v;
}
static void freestrs(char **v) { for (char **s = v; *s; s++) free(*s); free(v); }

static struct ct *find(const char *id) {
  for (int i = 0; i < MAX_CT; i++) if (cts[i].used && !strcmp(cts[i].id, id)) return &cts[i];
  return NULL;
}

/* execve with a PATH search in the *child's* env, as a shell does; errno as execvp would leave it */
static void exec_path(char **argv, char **env) {
  const char *a = argv[0], *path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  if (strchr(a, '/')) { execve(a, argv, env); return; }
  for (char **e = env; *e; e++) if (!strncmp(*e, "PATH=", 5)) path = *e + 5;
  int eacces = 0;
  char file[PATH_MAX];
  for (const char *p = path;;) {
    const char *c = strchrnul(p, ':');
    int n = c - p;
    snprintf(file, sizeof file, "%.*s%s%s", n, p, n ? "/" : "", a);
    execve(file, argv, env);
    if (errno == EACCES) eacces = 1;
    else if (errno != ENOENT && errno != ENOTDIR) return;
    if (!*c) break;
    p = c + 1;
  }
  errno = eacces ? EACCES : ENOENT;
}

/* in the child: report {errno, "step: strerror"} on the exec-status pipe and die */
static void child_fail(int xfd, const char *step, const char *arg) {
  struct { int e; char m[480]; } r = { .e = errno };
  snprintf(r.m, sizeof r.m, "%s %s: %s", step, arg, strerror(errno));
  if (write(xfd, &r, sizeof r) < 0) {}
  _exit(127);
}

static void run(struct rd *r) {
  char *id = getstr(r), **args = getstrs(r), **env = getstrs(r), *cwd = getstr(r);
  uint32_t uid = get32(r), gid = get32(r), ng = get32(r);
  gid_t gids[MAX_GIDS];
  if (ng > MAX_GIDS) r->bad = 1;
  for (uint32_t i = 0; !r->bad && i < ng; i++) gids[i] = get32(r);
  struct ct *c = NULL;
  int o[2] = { -1, -1 }, e[2] = { -1, -1 }, x[2] = { -1, -1 };
  if (r->bad || !*id || strlen(id) >= sizeof c->id || strchr(id, '/') || !args[0]) {
    send_error(id, EINVAL, "malformed RUN frame");
    goto done;
  }
  if ((c = find(id)) && !c->reported) { c = NULL; send_error(id, EEXIST, "a process with this container id is running"); goto done; }
  /* a free slot, else the slot of this id's (or any) exit still waiting for its ACK */
  for (int i = 0; i < MAX_CT && !c; i++) if (!cts[i].used) c = &cts[i];
  for (int i = 0; i < MAX_CT && !c; i++) if (cts[i].reported) c = &cts[i];
  if (!c) { send_error(id, EAGAIN, "too many processes"); goto done; }
  if (pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC) || pipe2(x, O_CLOEXEC)) { send_error(id, errno, "pipe failed"); goto done; }
  pid_t pid = fork();
  if (pid < 0) { send_error(id, errno, "fork failed"); goto done; }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGPIPE, SIG_DFL);
    setsid(); /* own process group: killed as a whole when the main process exits */
    char root[PATH_MAX];
    snprintf(root, sizeof root, "%s/%s/rootfs", SHARED, id);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(o[1], 1) < 0 || dup2(e[1], 2) < 0) child_fail(x[1], "stdio", "");
    if (chroot(root) || chdir("/")) child_fail(x[1], "chroot", root);
    if (*cwd && chdir(cwd)) child_fail(x[1], "chdir", cwd);
    if (setgroups(ng, gids)) child_fail(x[1], "setgroups", "");
    if (setgid(gid)) child_fail(x[1], "setgid", "");
    if (setuid(uid)) child_fail(x[1], "setuid", "");
    exec_path(args, env);
    child_fail(x[1], "exec", args[0]);
  }
  *c = (struct ct){ .used = 1, .pid = pid, .xfd = x[0], .fd = { o[0], e[0] } };
  strcpy(c->id, id);
  fcntl(o[0], F_SETFL, O_NONBLOCK);
  fcntl(e[0], F_SETFL, O_NONBLOCK);
  o[0] = e[0] = x[0] = -1; /* owned by c now */
done:;
  int fds[] = { o[0], o[1], e[0], e[1], x[0], x[1] };
  for (int i = 0; i < 6; i++) if (fds[i] >= 0) close(fds[i]);
  free(id), free(cwd), freestrs(args), freestrs(env);
}

/* every container whose start succeeded: running (exited 0) or exited with its EXIT not yet ACKed (exited 1) */
static void send_state(uint32_t token) {
  size_t f = fstart(G_STATE), at;
  uint32_t n = 0;
  put32(&out, STATE_MAGIC);
  put32(&out, token);
  at = out.len;
  put32(&out, 0);
  for (int i = 0; i < MAX_CT; i++) {
    struct ct *c = &cts[i];
    if (!c->used || c->failed || c->xfd >= 0) continue;
    putstr(c->id, strlen(c->id));
    put32(&out, c->pid);
    put32(&out, c->reported);
    put32(&out, c->reported ? c->status : 0);
    n++;
  }
  out.p[at] = n >> 24, out.p[at + 1] = n >> 16, out.p[at + 2] = n >> 8, out.p[at + 3] = n;
  fend(f);
}

static void on_frame(uint8_t type, struct rd *r) {
  if (type == H_PING) { send_ready(get32(r)); return; }
  if (type == H_RUN) { run(r); return; }
  if (type == H_LIST) { send_state(get32(r)); return; }
  if (type == H_ACK) { /* the host has recorded this EXIT: forget the container */
    char *id = getstr(r);
    struct ct *c = find(id);
    if (!r->bad && c && c->reported) c->used = 0;
    free(id);
    return;
  }
  if (type == H_SIGNAL) { /* unknown or exited container: ignored (the host tracks what runs) */
    char *id = getstr(r);
    uint32_t sig = get32(r);
    /* optional u8 `all` (older hosts send none): the whole container, its process group (setsid above) */
    int all = r->n >= 1 && r->p[0];
    struct ct *c = find(id);
    if (!r->bad && c && !c->exited && !c->failed && kill(all ? -c->pid : c->pid, sig)) logf_("kill");
    free(id);
    return;
  }
  fprintf(stderr, "corral-agent: unknown frame type %u\n", type);
}

/*
 * The host end hung up. QEMU drops what it had not passed on yet, and the next host reads from a fresh
 * connection: drop the rest of a half-written frame so it starts on a frame boundary, and any half-read
 * host frame. Then keep the port out of poll() for 100 ms at a time until a host connects.
 */
static void host_gone(void) {
  memmove(out.p, out.p + out_partial, out.len - out_partial);
  out.len -= out_partial;
  out_partial = 0;
  in.len = 0;
  port_retry_at = now_ms() + 100;
}

static void read_port(void) {
  uint8_t b[65536];
  ssize_t n = read(port, b, sizeof b);
  if (n == 0) { host_gone(); return; } /* host not connected */
  if (n < 0) { if (errno != EAGAIN && errno != EINTR) { logf_("read port"); port_retry_at = now_ms() + 100; } return; }
  put(&in, b, n);
  size_t off = 0;
  while (in.len - off >= 5) {
    uint32_t len = (uint32_t)in.p[off] << 24 | in.p[off + 1] << 16 | in.p[off + 2] << 8 | in.p[off + 3];
    if (len == 0 || len > MAX_FRAME) { fprintf(stderr, "corral-agent: bad frame length %u, resetting\n", len); off = in.len; break; }
    if (in.len - off - 4 < len) break;
    struct rd r = { in.p + off + 5, len - 1, 0 };
    on_frame(in.p[off + 4], &r);
    off += 4 + len;
  }
  memmove(in.p, in.p + off, in.len - off);
  in.len -= off;
}

static void write_port(void) {
  ssize_t n = write(port, out.p, out.len);
  if (n < 0) { if (errno != EAGAIN && errno != EINTR) { logf_("write port"); port_retry_at = now_ms() + 100; } return; }
  /* out holds whole frames after out_partial: walk the frame boundaries through the written bytes */
  for (size_t at = 0; at < (size_t)n;) {
    if (!out_partial) out_partial = 4 + ((uint32_t)out.p[at] << 24 | out.p[at + 1] << 16 | out.p[at + 2] << 8 | out.p[at + 3]);
    size_t t = out_partial < n - at ? out_partial : n - at;
    out_partial -= t, at += t;
  }
  memmove(out.p, out.p + n, out.len - n);
  out.len -= n;
}

static void close_fd(int *fd) { if (*fd >= 0) close(*fd), *fd = -1; }

/* a container slot is finished once its exec status is known, it was reaped and its pipes are done */
static void maybe_finish(struct ct *c) {
  if (!c->exited || c->xfd >= 0 || c->reported) return;
  if (!c->failed && (c->fd[0] >= 0 || c->fd[1] >= 0)) {
    if (out.len >= OUT_HIGH) c->drain_until = now_ms() + DRAIN_MS; /* pipes not being read: the grace restarts */
    if (now_ms() < c->drain_until) return;
  }
  close_fd(&c->fd[0]), close_fd(&c->fd[1]);
  if (c->failed) { c->used = 0; return; }
  send_exit(c);
  c->reported = 1;
}

static void read_exec_status(struct ct *c) {
  struct { int e; char m[480]; } r;
  ssize_t n = read(c->xfd, &r, sizeof r);
  if (n < 0 && errno == EINTR) return;
  close_fd(&c->xfd);
  if (n == (ssize_t)sizeof r) {
    r.m[sizeof r.m - 1] = 0;
    c->failed = 1;
    send_error(c->id, r.e, r.m);
    close_fd(&c->fd[0]), close_fd(&c->fd[1]);
  } else send_started(c);
}

static void read_output(struct ct *c, int i) {
  uint8_t b[CHUNK];
  ssize_t n = read(c->fd[i], b, sizeof b);
  if (n > 0) send_output(c, i + 1, b, n);
  else if (n == 0 || (errno != EAGAIN && errno != EINTR)) close_fd(&c->fd[i]);
}

static void reap(int sfd) {
  struct signalfd_siginfo si;
  while (read(sfd, &si, sizeof si) > 0) {}
  int st;
  pid_t pid;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    for (int i = 0; i < MAX_CT; i++) {
      struct ct *c = &cts[i];
      if (!c->used || c->pid != pid || c->exited) continue;
      c->exited = 1;
      c->status = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
      c->drain_until = now_ms() + DRAIN_MS;
      kill(-pid, SIGKILL); /* what is left of the container goes with its main process */
    }
  }
}

static int open_port(void) {
  for (int tries = 0; tries < 200; tries++, usleep(50000)) {
    DIR *d = opendir("/sys/class/virtio-ports");
    struct dirent *de;
    while (d && (de = readdir(d))) {
      char p[300], name[64] = "";
      snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", de->d_name);
      FILE *f = fopen(p, "r");
      if (!f) continue;
      if (!fgets(name, sizeof name, f)) name[0] = 0;
      fclose(f);
      name[strcspn(name, "\n")] = 0;
      if (strcmp(name, PORT_NAME)) continue;
      snprintf(p, sizeof p, "/dev/%s", de->d_name);
      closedir(d);
      return open(p, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    }
    if (d) closedir(d);
  }
  errno = ENOENT;
  return -1;
}

int main(void) {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, NULL);
  signal(SIGPIPE, SIG_IGN);
  int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sfd < 0) { logf_("signalfd"); return 1; }
  if ((port = open_port()) < 0) { logf_("open port " PORT_NAME); return 1; }
  send_ready(0);
  fprintf(stderr, "corral-agent: ready\n");
  for (;;) {
    struct pollfd pf[2 + 3 * MAX_CT];
    struct ct *who[2 + 3 * MAX_CT];
    int what[2 + 3 * MAX_CT], n = 0, timeout = -1;
    long long now = now_ms();
    pf[n++] = (struct pollfd){ sfd, POLLIN, 0 };
    if (now >= port_retry_at) pf[n++] = (struct pollfd){ port, POLLIN | (out.len ? POLLOUT : 0), 0 };
    else timeout = port_retry_at - now;
    for (int i = 0; i < MAX_CT; i++) {
      struct ct *c = &cts[i];
      if (!c->used) continue;
      if (c->xfd >= 0) { who[n] = c, what[n] = 2, pf[n++] = (struct pollfd){ c->xfd, POLLIN, 0 }; continue; }
      for (int j = 0; j < 2 && out.len < OUT_HIGH; j++)
        if (c->fd[j] >= 0) who[n] = c, what[n] = j, pf[n++] = (struct pollfd){ c->fd[j], POLLIN, 0 };
      if (c->exited && (c->fd[0] >= 0 || c->fd[1] >= 0)) {
        int left = c->drain_until > now ? c->drain_until - now : 0;
        if (timeout < 0 || left < timeout) timeout = left;
      }
    }
    if (poll(pf, n, timeout) < 0 && errno != EINTR) { logf_("poll"); return 1; }
    for (int i = 0; i < n; i++) {
      short re = pf[i].revents;
      if (!re) continue;
      if (pf[i].fd == sfd) reap(sfd);
      else if (pf[i].fd == port) {
        if (re & POLLIN) read_port();
        if ((re & POLLOUT) && out.len) write_port();
        if ((re & POLLHUP) && !(re & POLLIN)) host_gone();
      } else if (what[i] == 2) read_exec_status(who[i]);
      else if (who[i]->fd[what[i]] == pf[i].fd) read_output(who[i], what[i]);
    }
    for (int i = 0; i < MAX_CT; i++) if (cts[i].used) maybe_finish(&cts[i]);
  }
}
