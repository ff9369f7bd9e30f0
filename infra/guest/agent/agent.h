/* corral-agent: what its parts share (protocol: docs/guest-agent.md, version 3). */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PORT_NAME "corral.agent"
#define SHARED "/run/corral/shared"
#define CGROOT "/sys/fs/cgroup/corral"
#define VERSION 3
#define MAX_FRAME (1u << 20)     /* largest host->guest frame accepted */
#define MAX_CT 256               /* processes (inits and execs) at once */
#define MAX_ID 255               /* container id bytes */
#define MAX_EXEC_ID 128          /* exec id bytes */
#define MAX_KEY (MAX_ID + 1 + MAX_EXEC_ID + 1)
#define OUT_HIGH (256u << 10)    /* pending output above which children are not read */
#define CHUNK 32768              /* largest OUTPUT payload */
#define DRAIN_MS 500             /* after the main process exits, wait this long for its pipes to close */
#define MAX_GIDS 256
#define MAX_MOUNTS 64
#define MAX_LIMITS 16
#define STDIN_WINDOW (256u << 10) /* stdin bytes the host may have in flight per process */
#define STDIN_MAX 65536u          /* largest STDIN payload */
#define CREDIT_EVERY (32u << 10)  /* WINDOW is sent at least this often while stdin drains */
#define STATE_MAGIC 0x434f5252u   /* "CORR": with the host's token, what a re-attaching host scans for */

enum { H_PING = 1, H_RUN, H_SIGNAL, H_LIST, H_ACK, H_EXEC, H_STDIN, H_CLOSE_STDIN, H_RESIZE, H_CTL };
enum { G_READY = 0x81, G_STARTED, G_OUTPUT, G_EXIT, G_ERROR, G_STATE, G_WINDOW, G_RESULT, G_OOM };
enum { F_TERMINAL = 1, F_STDIN = 2, F_ROOT_RO = 4 }; /* F_ROOT_RO: RUN only */
enum { CTL_FREEZE = 1, CTL_THAW, CTL_UPDATE, CTL_STATS };

struct buf { uint8_t *p; size_t len, cap; };

struct ct {
  int used;
  char key[MAX_KEY]; /* containerId, or containerId/execId */
  char cid[MAX_ID + 1];
  int exec;          /* an exec, not the container's init */
  pid_t pid;
  int xfd;           /* exec-status socket: a pty master (SCM_RIGHTS), then EOF = exec'd or {errno, message} */
  int fd[2];         /* stdout, stderr (a terminal: fd[0] is the pty master) */
  int in;            /* stdin: a pipe's write end, or (terminal) a dup of the pty master; -1 */
  int tty;
  int in_eof;        /* CLOSE_STDIN: close the pipe (terminal: write ^D) once ib is written */
  int in_done;       /* nothing more goes to stdin */
  struct buf ib;     /* stdin bytes waiting for the process */
  uint32_t credit;   /* stdin bytes written (or dropped) not yet credited with WINDOW */
  uint64_t oom_seen; /* memory.events oom_kill when last looked */
  int failed;        /* exec failed: ERROR sent, no STARTED/EXIT */
  int exited, status;
  int reported;      /* EXIT sent: the slot is kept (for LIST) until the host ACKs it */
  long long drain_until;
};
extern struct ct cts[MAX_CT];

struct mnt { char *src, *dst, *type, *data; uint32_t flags; uint8_t file; };
struct limit { char *file, *value; };

/* What a child needs to become a container's init (join_pid 0) or one of its execs. */
struct spawn {
  const char *cid, *cwd, *hostname;
  char **args, **env;
  uint32_t uid, gid, ng;
  gid_t *gids;
  uint8_t flags;
  uint32_t rows, cols;
  uint32_t nm;
  struct mnt *m;
  pid_t join_pid;    /* exec: enter this process's mount and UTS namespaces */
  int xfd, out, err, in; /* the child's ends; in -1 = /dev/null (ignored with a terminal) */
};

/* corral-agent.c */
long long now_ms(void);
void logf_(const char *m);

/* child.c: never returns */
void child_main(struct spawn *s);

/* cgroup.c */
int cg_setup(const char *cid, struct limit *l, uint32_t n, char *msg, size_t msz); /* 0 or errno */
int cg_write_limits(const char *cid, struct limit *l, uint32_t n, char *msg, size_t msz);
int cg_allowed(const char *file);
void cg_remove(const char *cid);
void cg_kill(const char *cid, pid_t fallback_pgid);
int cg_signal_all(const char *cid, int sig);
int cg_freeze(const char *cid, int on, char *msg, size_t msz);
uint64_t cg_oom_kills(const char *cid);
/* stats: calls put(name, content, n) for each file read */
int cg_stats(const char *cid, void (*put)(const char *name, const char *content, size_t n));
