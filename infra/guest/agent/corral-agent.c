/*
 * corral-agent: the guest half of Corral's host<->guest channel (protocol: docs/guest-agent.md, v3).
 *
 * Runs as PID 1 (exec'd by /init). Talks length-prefixed binary frames over the virtio-serial port
 * named "corral.agent". Starts containers' init processes (RUN) and execs (EXEC) in the container's
 * rootfs, mount namespace and cgroup (child.c, cgroup.c), streams their stdout/stderr (or terminal),
 * feeds their stdin under a per-process window, and reports their exit. One poll() loop, every fd
 * non-blocking; the port is never blocked on: output waits in a buffer, and while that buffer is over
 * OUT_HIGH the children's pipes are not read (the children block, the channel does not).
 *
 * The host may go away and come back (a restarted hypervisor worker re-attaching): EXIT records are kept
 * until the host ACKs them, a LIST answers with a STATE of every process still known, and on a hang-up
 * the rest of a half-sent frame is dropped so that the next host reads whole frames.
 *
 * A malformed host frame is answered (ERROR/RESULT) or dropped; it never ends the agent.
 */
#include "agent.h"
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

struct ct cts[MAX_CT];
static struct buf out, in;
static int port = -1;
static long long port_retry_at; /* host side disconnected: leave the port out of poll until then */
static size_t out_partial;      /* bytes at the head of out that end a frame whose start was already written */

long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1000LL + t.tv_nsec / 1000000;
}
void logf_(const char *m) { fprintf(stderr, "corral-agent: %s: %s\n", m, strerror(errno)); }

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
static void put8(uint8_t v) { put(&out, &v, 1); }
static void putstr(const char *s, size_t n) { put32(&out, n); put(&out, s, n); }
static void putz(const char *s) { putstr(s, strlen(s)); }
static size_t fstart(uint8_t type) {
  size_t at = out.len;
  put32(&out, 0);
  put(&out, &type, 1);
  return at;
}
static void patch32(size_t at, uint32_t n) {
  out.p[at] = n >> 24, out.p[at + 1] = n >> 16, out.p[at + 2] = n >> 8, out.p[at + 3] = n;
}
static void fend(size_t at) { patch32(at, out.len - at - 4); }

static void send_ready(uint32_t token) { size_t f = fstart(G_READY); put32(&out, token); put32(&out, VERSION); fend(f); }
static void send_started(struct ct *c) { size_t f = fstart(G_STARTED); putz(c->key); put32(&out, c->pid); fend(f); }
static void send_exit(struct ct *c) { size_t f = fstart(G_EXIT); putz(c->key); put32(&out, c->status); fend(f); }
static void send_oom(const char *cid) { size_t f = fstart(G_OOM); putz(cid); fend(f); }
static void send_error(const char *key, int e, const char *msg) {
  size_t f = fstart(G_ERROR);
  putz(key);
  put32(&out, e);
  putz(msg);
  fend(f);
}
static void send_output(struct ct *c, int fd, const void *d, size_t n) {
  size_t f = fstart(G_OUTPUT);
  putz(c->key);
  put8(fd);
  put32(&out, n);
  put(&out, d, n);
  fend(f);
}
static void send_window(struct ct *c) {
  if (!c->credit) return;
  size_t f = fstart(G_WINDOW);
  putz(c->key);
  put32(&out, c->credit);
  fend(f);
  c->credit = 0;
}
static void send_window_for(const char *key, uint32_t n) {
  size_t f = fstart(G_WINDOW);
  putz(key);
  put32(&out, n);
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
static uint8_t get8(struct rd *r) {
  if (r->n < 1) { r->bad = 1; return 0; }
  r->n--;
  return *r->p++;
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

static struct ct *find(const char *key) {
  for (int i = 0; i < MAX_CT; i++) if (cts[i].used && !strcmp(cts[i].key, key)) return &cts[i];
  return NULL;
}
static int live(struct ct *c) { return c && !c->exited && !c->failed && c->xfd < 0; }
/* the running init of container cid */
static struct ct *init_of(const char *cid) {
  struct ct *c = find(cid);
  return c && !c->exec && !c->exited && !c->failed ? c : NULL;
}
static int valid_id(const char *s, size_t max) { return *s && strlen(s) <= max && !strchr(s, '/'); }
static void close_fd(int *fd) { if (*fd >= 0) close(*fd), *fd = -1; }

/* ---- RUN and EXEC ---- */
struct req {
  char *cid, *eid, *cwd, *hostname, **args, **env;
  uint32_t uid, gid, ng, nm, nl, rows, cols;
  uint8_t flags;
  gid_t gids[MAX_GIDS];
  struct mnt m[MAX_MOUNTS];
  struct limit l[MAX_LIMITS];
};
static void free_req(struct req *q) {
  free(q->cid), free(q->eid), free(q->cwd), free(q->hostname);
  if (q->args) freestrs(q->args);
  if (q->env) freestrs(q->env);
  for (uint32_t i = 0; i < q->nm; i++) free(q->m[i].src), free(q->m[i].dst), free(q->m[i].type), free(q->m[i].data);
  for (uint32_t i = 0; i < q->nl; i++) free(q->l[i].file), free(q->l[i].value);
}
static void get_proc(struct rd *r, struct req *q) {
  q->args = getstrs(r), q->env = getstrs(r), q->cwd = getstr(r);
  q->uid = get32(r), q->gid = get32(r), q->ng = get32(r);
  if (q->ng > MAX_GIDS) r->bad = 1, q->ng = 0;
  for (uint32_t i = 0; !r->bad && i < q->ng; i++) q->gids[i] = get32(r);
}
static void get_tty(struct rd *r, struct req *q) { q->flags = get8(r), q->rows = get32(r), q->cols = get32(r); }
/* RUN's v3 fields (absent in a v2 RUN) */
static void get_setup(struct rd *r, struct req *q) {
  get_tty(r, q);
  q->hostname = getstr(r);
  uint32_t n = get32(r);
  if (n > MAX_MOUNTS) { r->bad = 1; return; }
  for (; !r->bad && q->nm < n; q->nm++) {
    struct mnt *m = &q->m[q->nm];
    m->src = getstr(r), m->dst = getstr(r), m->type = getstr(r), m->flags = get32(r), m->data = getstr(r), m->file = get8(r);
  }
  if (r->bad) return;
  n = get32(r);
  if (n > MAX_LIMITS) { r->bad = 1; return; }
  for (; !r->bad && q->nl < n; q->nl++) q->l[q->nl].file = getstr(r), q->l[q->nl].value = getstr(r);
}

static void spawn(struct req *q, const char *key, struct ct *init) {
  struct ct *c = find(key);
  int o[2] = { -1, -1 }, e[2] = { -1, -1 }, i[2] = { -1, -1 }, x[2] = { -1, -1 };
  char msg[480] = "";
  if (c && !c->reported) { send_error(key, EEXIST, "a process with this key is running"); return; }
  /* a free slot, else the slot of this key's (or any) exit still waiting for its ACK */
  for (int k = 0; k < MAX_CT && !c; k++) if (!cts[k].used) c = &cts[k];
  for (int k = 0; k < MAX_CT && !c; k++) if (cts[k].reported) c = &cts[k];
  if (!c) { send_error(key, EAGAIN, "too many processes"); return; }
  int tty = q->flags & F_TERMINAL;
  if (!init) {
    int err = cg_setup(q->cid, q->l, q->nl, msg, sizeof msg);
    if (err) { send_error(key, err, msg); return; }
  }
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, x) ||
      (!tty && (pipe2(o, O_CLOEXEC) || pipe2(e, O_CLOEXEC) || ((q->flags & F_STDIN) && pipe2(i, O_CLOEXEC))))) {
    send_error(key, errno, "pipe failed");
    goto done;
  }
  struct spawn s = { .cid = q->cid, .cwd = q->cwd, .hostname = q->hostname ? q->hostname : "", .args = q->args,
                     .env = q->env, .uid = q->uid, .gid = q->gid, .ng = q->ng, .gids = q->gids, .flags = q->flags,
                     .rows = q->rows, .cols = q->cols, .nm = q->nm, .m = q->m, .join_pid = init ? init->pid : 0,
                     .xfd = x[1], .out = o[1], .err = e[1], .in = i[0] };
  uint64_t ooms = cg_oom_kills(q->cid);
  pid_t pid = fork();
  if (pid < 0) { send_error(key, errno, "fork failed"); goto done; }
  if (pid == 0) child_main(&s);
  free(c->ib.p);
  *c = (struct ct){ .used = 1, .exec = !!init, .pid = pid, .xfd = x[0], .fd = { o[0], e[0] }, .in = i[1],
                    .tty = tty, .oom_seen = ooms };
  snprintf(c->key, sizeof c->key, "%s", key);
  snprintf(c->cid, sizeof c->cid, "%s", q->cid);
  for (int k = 0; k < 2; k++) if (c->fd[k] >= 0) fcntl(c->fd[k], F_SETFL, O_NONBLOCK);
  if (c->in >= 0) fcntl(c->in, F_SETFL, O_NONBLOCK);
  else c->in_done = !tty;
  o[0] = e[0] = x[0] = i[1] = -1; /* owned by c now */
done:;
  int *fds[] = { &o[0], &o[1], &e[0], &e[1], &i[0], &i[1], &x[0], &x[1] };
  for (int k = 0; k < 8; k++) close_fd(fds[k]);
}

static void run(struct rd *r) {
  struct req q = { 0 };
  q.cid = getstr(r);
  get_proc(r, &q);
  if (!r->bad && r->n) get_setup(r, &q);
  if (r->bad || !valid_id(q.cid, MAX_ID) || !q.args[0]) send_error(q.cid, EINVAL, "malformed RUN frame");
  else spawn(&q, q.cid, NULL);
  free_req(&q);
}

static void exec_(struct rd *r) {
  struct req q = { 0 };
  char key[MAX_KEY];
  q.cid = getstr(r), q.eid = getstr(r);
  get_proc(r, &q);
  get_tty(r, &q);
  snprintf(key, sizeof key, "%.255s/%.128s", q.cid, q.eid);
  struct ct *init = init_of(q.cid);
  if (r->bad || !valid_id(q.cid, MAX_ID) || !valid_id(q.eid, MAX_EXEC_ID) || !q.args[0])
    send_error(key, EINVAL, "malformed EXEC frame");
  else if (!init || init->xfd >= 0) {
    char m[400];
    snprintf(m, sizeof m, "container %s is not running", q.cid);
    send_error(key, ENOENT, m);
  } else spawn(&q, key, init);
  free_req(&q);
}

/* ---- stdin ---- */
static void stdin_drop(struct ct *c) { /* what is buffered will never be written: credit it back */
  c->credit += c->ib.len;
  c->ib.len = 0;
  c->in_done = 1;
  if (!c->tty) close_fd(&c->in);
  send_window(c);
}

static void on_stdin(struct rd *r) {
  char *key = getstr(r);
  uint32_t n = get32(r);
  struct ct *c = find(key);
  if (r->bad || n > r->n || n > STDIN_MAX) fprintf(stderr, "corral-agent: malformed STDIN frame\n");
  else if (!c || c->failed || c->exited || c->in_done || c->in_eof) send_window_for(key, n); /* dropped */
  else if (c->ib.len + n > STDIN_WINDOW) {
    fprintf(stderr, "corral-agent: STDIN for %s past its window, dropped\n", key);
    send_window_for(key, n);
  } else put(&c->ib, r->p, n);
  free(key);
}

static void write_stdin(struct ct *c) {
  if (c->ib.len) {
    ssize_t n = write(c->in, c->ib.p, c->ib.len);
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) stdin_drop(c); /* EPIPE: the process closed its stdin */
      return;
    }
    memmove(c->ib.p, c->ib.p + n, c->ib.len - n);
    c->ib.len -= n;
    c->credit += n;
    if (c->credit >= CREDIT_EVERY || !c->ib.len) send_window(c);
  }
  if (!c->ib.len && c->in_eof && !c->in_done) {
    if (c->tty) {
      char eot = 4; /* VEOF; the master stays open for output and resizes */
      if (write(c->in, &eot, 1) < 0 && (errno == EAGAIN || errno == EINTR)) return;
      c->in_done = 1;
    } else stdin_drop(c);
  }
}

/* ---- STATE, CTL ---- */
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
    putz(c->key);
    put32(&out, c->pid);
    put32(&out, c->reported);
    put32(&out, c->reported ? c->status : 0);
    n++;
  }
  patch32(at, n);
  fend(f);
}

static uint32_t result_n;
static void put_stat(const char *name, const char *content, size_t n) { putz(name), putstr(content, n), result_n++; }

static void ctl(struct rd *r) {
  uint32_t token = get32(r);
  uint8_t op = get8(r);
  char *cid = getstr(r), msg[480] = "";
  struct limit l[MAX_LIMITS];
  uint32_t n = get32(r), nl = 0;
  if (n > MAX_LIMITS) r->bad = 1;
  for (; !r->bad && nl < n; nl++) l[nl].file = getstr(r), l[nl].value = getstr(r);
  int e = 0;
  size_t f = fstart(G_RESULT);
  put32(&out, token);
  size_t at_errno = out.len;
  put32(&out, 0);
  if (r->bad || (*cid && !valid_id(cid, MAX_ID)) || (!*cid && op != CTL_FREEZE && op != CTL_THAW)) {
    e = EINVAL, snprintf(msg, sizeof msg, "malformed CTL frame");
  } else if (*cid && !find(cid)) {
    e = ENOENT, snprintf(msg, sizeof msg, "container %s has no process", cid);
  } else if (op == CTL_FREEZE || op == CTL_THAW) e = cg_freeze(cid, op == CTL_FREEZE, msg, sizeof msg);
  else if (op == CTL_UPDATE) e = cg_write_limits(cid, l, nl, msg, sizeof msg);
  else if (op != CTL_STATS) e = EINVAL, snprintf(msg, sizeof msg, "unknown CTL op %u", op);
  putz(msg);
  size_t at_n = out.len;
  put32(&out, 0);
  result_n = 0;
  if (!e && op == CTL_STATS && (e = cg_stats(cid, put_stat))) snprintf(msg, sizeof msg, "no cgroup: %s", strerror(e));
  if (e && op == CTL_STATS) { /* rewrite the answer without stats */
    out.len = at_errno + 4;
    putz(msg);
    put32(&out, 0);
  } else patch32(at_n, result_n);
  patch32(at_errno, e);
  fend(f);
  free(cid);
  for (uint32_t i = 0; i < nl; i++) free(l[i].file), free(l[i].value);
}

/*
 * virtio-fs: the guest's cached dentries and inodes of an ended container's files keep the host's virtiofsd
 * holding them open, so the host could not unmount that container's rootfs from the share (EBUSY until its
 * deadline); dropping the unused ones (FUSE FORGET) lets it go. 9p: nothing to do.
 */
static void share_release(void) {
  struct statfs s;
  if (statfs(SHARED, &s) || s.f_type != 0x65735546) return; /* FUSE_SUPER_MAGIC */
  int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "2", 1) != 1) logf_("drop_caches");
  if (fd >= 0) close(fd);
}

static void on_frame(uint8_t type, struct rd *r) {
  if (type == H_PING) { uint32_t t = get32(r); if (!r->bad) send_ready(t); return; }
  if (type == H_RUN) { run(r); return; }
  if (type == H_EXEC) { exec_(r); return; }
  if (type == H_LIST) { uint32_t t = get32(r); if (!r->bad) send_state(t); return; }
  if (type == H_STDIN) { on_stdin(r); return; }
  if (type == H_CTL) { ctl(r); return; }
  char *key = getstr(r);
  struct ct *c = r->bad ? NULL : find(key);
  if (type == H_ACK) { /* the host has recorded this EXIT: forget the process; an empty container's cgroup goes */
    if (c && c->reported) {
      c->used = 0;
      int left = 0;
      for (int i = 0; i < MAX_CT; i++) left |= cts[i].used && !strcmp(cts[i].cid, c->cid);
      if (!left) {
        cg_remove(c->cid);
        share_release(); /* its execs have gone too */
      }
    }
  } else if (type == H_SIGNAL) { /* unknown or exited process: ignored (the host tracks what runs) */
    uint32_t sig = get32(r);
    int all = r->n >= 1 && r->p[0]; /* optional u8 `all`: every process of the container (init) or the exec's group */
    if (!r->bad && live(c)) {
      if (all && !c->exec) { if (cg_signal_all(c->cid, sig) < 0) kill(-c->pid, sig); }
      else if (kill(all ? -c->pid : c->pid, sig)) logf_("kill");
    }
  } else if (type == H_CLOSE_STDIN) {
    if (c && !c->failed) c->in_eof = 1;
    if (c && (c->exited || (c->in < 0 && !c->tty))) stdin_drop(c);
  } else if (type == H_RESIZE) {
    struct winsize ws = { .ws_row = get32(r), .ws_col = get32(r) };
    if (!r->bad && live(c) && c->tty && c->in >= 0 && ioctl(c->in, TIOCSWINSZ, &ws)) logf_("resize");
  } else fprintf(stderr, "corral-agent: unknown frame type %u\n", type);
  free(key);
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

/* a process slot is finished once its exec status is known, it was reaped and its output is done */
static void maybe_finish(struct ct *c) {
  if (!c->exited || c->xfd >= 0 || c->reported) return;
  if (!c->failed && (c->fd[0] >= 0 || c->fd[1] >= 0)) {
    if (out.len >= OUT_HIGH) c->drain_until = now_ms() + DRAIN_MS; /* pipes not being read: the grace restarts */
    if (now_ms() < c->drain_until) return;
  }
  close_fd(&c->fd[0]), close_fd(&c->fd[1]);
  if (!c->in_done || c->ib.len) stdin_drop(c);
  close_fd(&c->in);
  if (c->failed) {
    c->used = 0;
    if (!c->exec && !find(c->cid)) cg_remove(c->cid);
    return;
  }
  if (!c->exec) share_release(); /* before its EXIT: the host unmounts its rootfs next */
  send_exit(c);
  c->reported = 1;
}

static void read_exec_status(struct ct *c) {
  struct { int e; char m[480]; } r;
  char cb[CMSG_SPACE(sizeof(int))];
  struct iovec io = { &r, sizeof r };
  struct msghdr mh = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = cb, .msg_controllen = sizeof cb };
  ssize_t n = recvmsg(c->xfd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&mh) : NULL;
  if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) { /* the terminal's master */
    int m;
    memcpy(&m, CMSG_DATA(cm), sizeof m);
    close_fd(&c->fd[0]), close_fd(&c->in);
    c->fd[0] = m;
    c->in = fcntl(m, F_DUPFD_CLOEXEC, 3);
    fcntl(m, F_SETFL, O_NONBLOCK);
    return;
  }
  close_fd(&c->xfd);
  if (n == (ssize_t)sizeof r) {
    r.m[sizeof r.m - 1] = 0;
    c->failed = 1;
    send_error(c->key, r.e, r.m);
    close_fd(&c->fd[0]), close_fd(&c->fd[1]), close_fd(&c->in);
  } else send_started(c);
}

static void read_output(struct ct *c, int i) {
  uint8_t b[CHUNK];
  ssize_t n = read(c->fd[i], b, sizeof b);
  if (n > 0) send_output(c, i + 1, b, n);
  else if (n == 0 || (errno != EAGAIN && errno != EINTR)) close_fd(&c->fd[i]); /* a terminal: EIO once it hangs up */
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
      uint64_t ooms = cg_oom_kills(c->cid);
      if (ooms > c->oom_seen) { /* reported before this process's EXIT */
        send_oom(c->cid);
        for (int j = 0; j < MAX_CT; j++) if (cts[j].used && !strcmp(cts[j].cid, c->cid)) cts[j].oom_seen = ooms;
      }
      if (c->exec) kill(-pid, SIGKILL); /* what is left of the exec goes with it */
      else cg_kill(c->cid, pid);        /* the container (its execs too) goes with its init */
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

#define NPF (2 + 3 * MAX_CT)
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
  fprintf(stderr, "corral-agent: ready (protocol %d)\n", VERSION);
  static struct pollfd pf[NPF];
  static struct ct *who[NPF];
  static int what[NPF];
  for (;;) {
    int n = 0, timeout = -1, pi = -1;
    long long now = now_ms();
    pf[n++] = (struct pollfd){ sfd, POLLIN, 0 };
    if (now >= port_retry_at) pi = n, pf[n++] = (struct pollfd){ port, POLLIN | (out.len ? POLLOUT : 0), 0 };
    else timeout = port_retry_at - now;
    for (int i = 0; i < MAX_CT; i++) {
      struct ct *c = &cts[i];
      if (!c->used) continue;
      if (c->xfd >= 0) { who[n] = c, what[n] = 2, pf[n++] = (struct pollfd){ c->xfd, POLLIN, 0 }; continue; }
      for (int j = 0; j < 2 && out.len < OUT_HIGH; j++)
        if (c->fd[j] >= 0) who[n] = c, what[n] = j, pf[n++] = (struct pollfd){ c->fd[j], POLLIN, 0 };
      if (c->in >= 0 && !c->in_done && (c->ib.len || c->in_eof))
        who[n] = c, what[n] = 3, pf[n++] = (struct pollfd){ c->in, POLLOUT, 0 };
      if (c->exited && (c->fd[0] >= 0 || c->fd[1] >= 0)) {
        int left = c->drain_until > now ? c->drain_until - now : 0;
        if (timeout < 0 || left < timeout) timeout = left;
      }
    }
    if (poll(pf, n, timeout) < 0 && errno != EINTR) { logf_("poll"); return 1; }
    for (int i = 0; i < n; i++) {
      short re = pf[i].revents;
      if (!re) continue;
      if (i == 0) reap(sfd);
      else if (i == pi) {
        if (re & POLLIN) read_port();
        if ((re & POLLOUT) && out.len) write_port();
        if ((re & POLLHUP) && !(re & POLLIN)) host_gone();
      } else if (!who[i]->used) continue;
      else if (what[i] == 2) { if (who[i]->xfd == pf[i].fd) read_exec_status(who[i]); }
      else if (what[i] == 3) {
        if (who[i]->in != pf[i].fd || who[i]->in_done) continue;
        if (re & (POLLERR | POLLHUP) && !who[i]->tty) stdin_drop(who[i]);
        else write_stdin(who[i]);
      } else if (who[i]->fd[what[i]] == pf[i].fd) read_output(who[i], what[i]);
    }
    for (int i = 0; i < MAX_CT; i++) if (cts[i].used) maybe_finish(&cts[i]);
  }
}
