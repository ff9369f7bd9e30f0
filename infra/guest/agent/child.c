/*
 * corral-agent: the child side of RUN and EXEC, between fork and execve. Each failure is reported as
 * {errno, "step arg: strerror"} on the exec-status socket and the child exits 127; a terminal's master is
 * sent on the same socket (SCM_RIGHTS) before execve; execve closes the socket (O_CLOEXEC): success.
 */
#include "agent.h"
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <termios.h>
#include <unistd.h>

static int xfd = -1;

static void fail(const char *step, const char *arg) {
  struct { int e; char m[480]; } r = { .e = errno };
  snprintf(r.m, sizeof r.m, "%s%s%s: %s", step, *arg ? " " : "", arg, strerror(errno));
  if (write(xfd, &r, sizeof r) < 0) {}
  _exit(127);
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

/* mkdir -p of path's components below root (root itself exists) */
static int mkdirs(const char *root, const char *path) {
  char p[PATH_MAX];
  size_t rl = strlen(root);
  if (snprintf(p, sizeof p, "%s%s", root, path) >= (int)sizeof p) { errno = ENAMETOOLONG; return -1; }
  for (char *s = p + rl + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    if (mkdir(p, 0755) && errno != EEXIST) return -1;
    *s = '/';
  }
  return mkdir(p, 0755) && errno != EEXIST ? -1 : 0;
}

/* a ".." component would lead out of the container root */
static int dotdot(const char *p) {
  for (const char *s = p; (s = strstr(s, "..")); s += 2)
    if ((s == p || s[-1] == '/') && (s[2] == 0 || s[2] == '/')) return 1;
  return 0;
}

static void do_mount(const char *root, struct mnt *m) {
  char t[PATH_MAX];
  if (m->dst[0] != '/' || dotdot(m->dst)) { errno = EINVAL; fail("mount target", m->dst); }
  snprintf(t, sizeof t, "%s%s", root, m->dst);
  int bind = m->flags & MS_BIND;
  if (m->file) {
    char *slash = strrchr(m->dst, '/');
    *slash = 0;
    if (*m->dst && mkdirs(root, m->dst)) fail("mkdir", m->dst);
    *slash = '/';
    int fd = open(t, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) fail("create", m->dst);
    close(fd);
  } else if (mkdirs(root, m->dst)) fail("mkdir", m->dst);
  unsigned long fl = m->flags;
  if (bind) fl &= ~(unsigned long)MS_RDONLY;
  if (mount(m->src, t, *m->type ? m->type : NULL, fl, *m->data ? m->data : NULL)) fail("mount", m->dst);
  if (bind && (m->flags & MS_RDONLY) &&
      mount(NULL, t, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | (m->flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC)), NULL))
    fail("remount read-only", m->dst);
}

/* remount the root's own bind read-only, keeping the nosuid, nodev and noexec it has */
static void root_readonly(const char *root) {
  struct statvfs v;
  if (statvfs(root, &v)) fail("statvfs", root);
  unsigned long keep = (v.f_flag & ST_NOSUID ? MS_NOSUID : 0) | (v.f_flag & ST_NODEV ? MS_NODEV : 0) |
                       (v.f_flag & ST_NOEXEC ? MS_NOEXEC : 0);
  if (mount(NULL, root, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | keep, NULL)) fail("remount read-only", "/");
}

static void enter_ns(pid_t pid, const char *ns, int type) {
  char p[64];
  snprintf(p, sizeof p, "/proc/%d/ns/%s", pid, ns);
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || setns(fd, type)) fail("setns", p);
  close(fd);
}

/* a pty from the container's devpts when it mounted one, else the guest's; the master goes to the agent */
static int open_terminal(const char *root, uint32_t rows, uint32_t cols) {
  char p[PATH_MAX + 16];
  snprintf(p, sizeof p, "%s/dev/pts/ptmx", root);
  int m = open(p, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0) m = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0) fail("open", "/dev/ptmx");
  int unlock = 0;
  if (ioctl(m, TIOCSPTLCK, &unlock)) fail("unlockpt", "");
  if (rows && cols) {
    struct winsize ws = { .ws_row = rows, .ws_col = cols };
    if (ioctl(m, TIOCSWINSZ, &ws)) fail("resize", "");
  }
  int s = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY);
  if (s < 0) fail("open", "pty peer");
  char c[CMSG_SPACE(sizeof(int))] = { 0 }, one = 'P';
  struct iovec io = { &one, 1 };
  struct msghdr mh = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = c, .msg_controllen = sizeof c };
  struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET, cm->cmsg_type = SCM_RIGHTS, cm->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(cm), &m, sizeof m);
  if (sendmsg(xfd, &mh, 0) < 0) fail("send pty", "");
  close(m);
  return s;
}

void child_main(struct spawn *s) {
  xfd = s->xfd;
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  signal(SIGPIPE, SIG_DFL);
  setsid(); /* own session and process group */
  char root[PATH_MAX], p[PATH_MAX];
  snprintf(root, sizeof root, "%s/%s/rootfs", SHARED, s->cid);
  snprintf(p, sizeof p, CGROOT "/%s/cgroup.procs", s->cid);
  int fd = open(p, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, "0", 1) != 1) fail("join cgroup", s->cid);
  close(fd);
  if (s->join_pid) {
    enter_ns(s->join_pid, "mnt", CLONE_NEWNS);
    enter_ns(s->join_pid, "uts", CLONE_NEWUTS);
  } else {
    if (unshare(CLONE_NEWNS | (*s->hostname ? CLONE_NEWUTS : 0))) fail("unshare", "");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) fail("make / private", "");
    if (*s->hostname && sethostname(s->hostname, strlen(s->hostname))) fail("sethostname", s->hostname);
    /* a read-only root (the host shares it writable): its own mount, read-only once the mount targets are made */
    if ((s->flags & F_ROOT_RO) && mount(root, root, NULL, MS_BIND | MS_REC, NULL)) fail("bind root", root);
    for (uint32_t i = 0; i < s->nm; i++) do_mount(root, &s->m[i]);
    if (s->flags & F_ROOT_RO) root_readonly(root);
  }
  if (s->flags & F_TERMINAL) {
    int t = open_terminal(root, s->rows, s->cols);
    if (ioctl(t, TIOCSCTTY, 0)) fail("set controlling terminal", "");
    if (dup2(t, 0) < 0 || dup2(t, 1) < 0 || dup2(t, 2) < 0) fail("stdio", "");
    if (t > 2) close(t);
  } else {
    int in = s->in >= 0 ? s->in : open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in < 0 || dup2(in, 0) < 0 || dup2(s->out, 1) < 0 || dup2(s->err, 2) < 0) fail("stdio", "");
  }
  if (chroot(root) || chdir("/")) fail("chroot", root);
  if (*s->cwd && chdir(s->cwd)) fail("chdir", s->cwd);
  if (setgroups(s->ng, s->gids)) fail("setgroups", "");
  if (setgid(s->gid)) fail("setgid", "");
  if (setuid(s->uid)) fail("setuid", "");
  exec_path(s->args, s->env);
  fail("exec", s->args[0]);
}
