/*
 * corral-agent: one cgroup v2 per container, /sys/fs/cgroup/corral/<containerId> (/init mounts cgroup2 and
 * enables +cpu +memory +pids for its children). Limits from an allow-list, freeze/thaw, stats, OOM counts, kill.
 */
#include "agent.h"
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *ALLOWED[] = { "memory.max", "memory.high", "memory.swap.max", "cpu.max",
                                 "cpu.weight", "pids.max", "cpuset.cpus", NULL };
static const char *STATS[] = { "cpu.stat", "memory.current", "memory.max", "memory.stat",
                               "memory.events", "pids.current", "pids.max", NULL };

int cg_allowed(const char *file) {
  for (const char **a = ALLOWED; *a; a++) if (!strcmp(*a, file)) return 1;
  return 0;
}

static void cg_path(char *p, size_t n, const char *cid, const char *file) {
  if (*cid) snprintf(p, n, CGROOT "/%s%s%s", cid, file ? "/" : "", file ? file : "");
  else snprintf(p, n, CGROOT "%s%s", file ? "/" : "", file ? file : "");
}

static int write_file(const char *path, const char *v) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  ssize_t n = write(fd, v, strlen(v));
  int e = n < 0 ? errno : 0;
  close(fd);
  return e;
}

/* at most cap-1 bytes, NUL-terminated; -1 on error */
static ssize_t read_file(const char *path, char *b, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t got = 0;
  ssize_t n;
  while (got < cap - 1 && (n = read(fd, b + got, cap - 1 - got)) > 0) got += n;
  close(fd);
  b[got] = 0;
  return got;
}

int cg_write_limits(const char *cid, struct limit *l, uint32_t n, char *msg, size_t msz) {
  char p[PATH_MAX];
  for (uint32_t i = 0; i < n; i++) {
    if (!cg_allowed(l[i].file)) { snprintf(msg, msz, "cgroup file %s is not allowed", l[i].file); return EINVAL; }
    cg_path(p, sizeof p, cid, l[i].file);
    int e = write_file(p, l[i].value);
    if (e == ENOENT && !strcmp(l[i].file, "memory.swap.max")) continue; /* no swap accounting in this kernel */
    if (e) { snprintf(msg, msz, "write %s=%s: %s", l[i].file, l[i].value, strerror(e)); return e; }
  }
  return 0;
}

int cg_setup(const char *cid, struct limit *l, uint32_t n, char *msg, size_t msz) {
  char p[PATH_MAX];
  cg_path(p, sizeof p, cid, NULL);
  int made = mkdir(p, 0755) == 0;
  if (!made && errno != EEXIST) { int e = errno; snprintf(msg, msz, "mkdir cgroup %s: %s", p, strerror(e)); return e; }
  int e = cg_write_limits(cid, l, n, msg, msz);
  if (e && made) rmdir(p);
  return e;
}

void cg_remove(const char *cid) {
  char p[PATH_MAX];
  cg_path(p, sizeof p, cid, NULL);
  rmdir(p); /* best effort: busy while processes remain */
}

int cg_signal_all(const char *cid, int sig) {
  char p[PATH_MAX], b[65536];
  cg_path(p, sizeof p, cid, "cgroup.procs");
  if (read_file(p, b, sizeof b) < 0) return -1;
  int n = 0;
  for (char *s = b, *end; *s; s = end) {
    long pid = strtol(s, &end, 10);
    if (end == s) break;
    if (pid > 1 && !kill(pid, sig)) n++;
  }
  return n;
}

void cg_kill(const char *cid, pid_t fallback_pgid) {
  char p[PATH_MAX];
  cg_path(p, sizeof p, cid, "cgroup.kill");
  if (write_file(p, "1")) {
    kill(-fallback_pgid, SIGKILL);
    cg_signal_all(cid, SIGKILL);
  }
}

int cg_freeze(const char *cid, int on, char *msg, size_t msz) {
  char p[PATH_MAX], b[512];
  cg_path(p, sizeof p, cid, "cgroup.freeze");
  int e = write_file(p, on ? "1" : "0");
  if (e) { snprintf(msg, msz, "write %s: %s", p, strerror(e)); return e; }
  if (!on) return 0;
  cg_path(p, sizeof p, cid, "cgroup.events");
  for (long long until = now_ms() + 2000; now_ms() < until; usleep(1000)) {
    if (read_file(p, b, sizeof b) < 0) break;
    if (strstr(b, "frozen 1")) return 0;
  }
  snprintf(msg, msz, "cgroup %s did not freeze within 2 s", *cid ? cid : "corral");
  return ETIMEDOUT;
}

uint64_t cg_oom_kills(const char *cid) {
  char p[PATH_MAX], b[1024];
  cg_path(p, sizeof p, cid, "memory.events");
  if (read_file(p, b, sizeof b) < 0) return 0;
  char *k = strstr(b, "oom_kill ");
  return k ? strtoull(k + 9, NULL, 10) : 0;
}

int cg_stats(const char *cid, void (*put)(const char *name, const char *content, size_t n)) {
  char p[PATH_MAX], d[PATH_MAX];
  static char b[16384];
  cg_path(d, sizeof d, cid, NULL);
  struct stat st;
  if (stat(d, &st)) return errno;
  for (const char **f = STATS; *f; f++) {
    cg_path(p, sizeof p, cid, *f);
    ssize_t n = read_file(p, b, sizeof b);
    if (n >= 0) put(*f, b, n);
  }
  return 0;
}
