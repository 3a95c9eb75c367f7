// The least work a tracer of this kind can do, to measure what the kernel's mechanism costs by
// itself (bench/run shows it beside guard):
//
//   floor ptrace CMD...   runs CMD seized with the ptrace options `guard run` uses (fork, vfork,
//                         clone and exec events) and resumes every stop at once; reads nothing.
//   floor ptrace-attempts CMD...
//                         the same, with exec attempts traced as `guard run --attempts` and
//                         `--mode enforce` trace them: a seccomp filter in CMD stops every
//                         execve/execveat (SECCOMP_RET_TRACE), and the stop is resumed to the
//                         system call's exit (PTRACE_SYSCALL; an exec that succeeds ends that at
//                         its exec stop). x86_64 only.
//   floor connector       subscribes to the netlink proc connector as the host watcher does and
//                         reads every event until SIGTERM or SIGINT; reads no /proc. Prints the
//                         number of exec events seen. Needs root.
//   floor connector-proc  the same, and for each exec reads what any exec record needs at the
//                         least: the executable (readlink of /proc/PID/exe) and the arguments
//                         (/proc/PID/cmdline) — not the working directory, ids, cgroup, step.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <linux/audit.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* The exec part of guard's filter: a seccomp stop for execve and execveat, nothing else. */
static int trace_execs(void) {
#ifdef __x86_64__
  struct sock_filter f[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 4),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execve, 3, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_execveat, 2, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE),
  };
  struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
  if (geteuid() != 0) prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_SPEC_ALLOW, &prog);
#else
  errno = ENOSYS;
  return -1;
#endif
}

static int ptrace_floor(char **cmd, int attempts) {
  int gate[2];
  if (pipe(gate)) return 125;
  pid_t root = fork();
  if (root < 0) return 125;
  if (root == 0) {
    char c;
    close(gate[1]);
    if (read(gate[0], &c, 1) != 1) _exit(125);
    if (attempts && trace_execs()) { perror("floor: seccomp"); _exit(125); }
    execvp(cmd[0], cmd);
    _exit(127);
  }
  long opts = PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE |
              PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL;
  if (attempts) opts |= PTRACE_O_TRACESECCOMP | PTRACE_O_TRACESYSGOOD;
  if (ptrace(PTRACE_SEIZE, root, 0, opts)) {
    perror("floor: PTRACE_SEIZE");
    return 125;
  }
  close(gate[0]);
  if (write(gate[1], "x", 1) != 1) return 125;
  close(gate[1]);
  int code = 125;
  for (;;) {
    int st;
    pid_t pid = waitpid(-1, &st, __WALL);
    if (pid < 0) break;
    if (WIFEXITED(st) || WIFSIGNALED(st)) {
      if (pid == root) code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      continue;
    }
    if (!WIFSTOPPED(st)) continue;
    int sig = WSTOPSIG(st), event = st >> 16;
    if (event == PTRACE_EVENT_STOP &&
        (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU))
      ptrace(PTRACE_LISTEN, pid, 0, 0);  // group-stop
    else if (event == PTRACE_EVENT_SECCOMP)
      ptrace(PTRACE_SYSCALL, pid, 0, 0);  // to the exit of an exec that fails
    else if (event == 0 && sig == (SIGTRAP | 0x80))
      ptrace(PTRACE_CONT, pid, 0, 0);  // that exit
    else
      // Signal-delivery-stops keep their signal.
      ptrace(PTRACE_CONT, pid, 0, (void *)(long)(event ? 0 : sig));
  }
  return code;
}

static volatile sig_atomic_t done;
static void on_signal(int s) { (void)s; done = 1; }

/* The executable and the arguments of a process that has just exec'd, read and dropped. */
static void read_least(unsigned pid) {
  static char buf[1 << 16];
  char path[64];
  snprintf(path, sizeof path, "/proc/%u/exe", pid);
  if (readlink(path, buf, sizeof buf) < 0) return;
  snprintf(path, sizeof path, "/proc/%u/cmdline", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  while (read(fd, buf, sizeof buf) > 0) {
  }
  close(fd);
}

static int connector_floor(int with_proc) {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
  if (fd < 0) { perror("floor: socket"); return 1; }
  int size = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC, .nl_pid = 0};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa)) { perror("floor: bind"); return 1; }
  // recv wakes up now and then, so that a SIGTERM arriving just before it is not missed.
  struct timeval tick = {.tv_sec = 0, .tv_usec = 100000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof tick);
  struct {
    struct nlmsghdr nl;
    struct cn_msg cn;
    enum proc_cn_mcast_op op;
  } __attribute__((packed)) req;
  memset(&req, 0, sizeof req);
  req.nl.nlmsg_len = sizeof req;
  req.nl.nlmsg_type = NLMSG_DONE;
  req.cn.id.idx = CN_IDX_PROC;
  req.cn.id.val = CN_VAL_PROC;
  req.cn.len = sizeof req.op;
  req.op = PROC_CN_MCAST_LISTEN;
  if (send(fd, &req, sizeof req, 0) < 0) { perror("floor: send"); return 1; }
  struct sigaction act = {.sa_handler = on_signal};  // no SA_RESTART: recv returns EINTR
  sigaction(SIGTERM, &act, NULL);
  sigaction(SIGINT, &act, NULL);
  unsigned long execs = 0, lost = 0;
  static char buf[1 << 16];
  while (!done) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == ENOBUFS) lost++;  // events were dropped: counted, the rest goes on
      else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) { perror("floor: recv"); return 1; }
      continue;
    }
    for (struct nlmsghdr *nl = (struct nlmsghdr *)buf; NLMSG_OK(nl, n); nl = NLMSG_NEXT(nl, n)) {
      struct cn_msg *cn = NLMSG_DATA(nl);
      struct proc_event *ev = (struct proc_event *)cn->data;
      if (ev->what == PROC_EVENT_EXEC) {
        execs++;
        if (with_proc) read_least(ev->event_data.exec.process_tgid);
      }
    }
  }
  printf("%lu exec events, %lu overruns\n", execs, lost);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "ptrace") == 0) return ptrace_floor(argv + 2, 0);
  if (argc >= 3 && strcmp(argv[1], "ptrace-attempts") == 0) return ptrace_floor(argv + 2, 1);
  if (argc == 2 && strcmp(argv[1], "connector") == 0) return connector_floor(0);
  if (argc == 2 && strcmp(argv[1], "connector-proc") == 0) return connector_floor(1);
  fprintf(stderr,
          "usage: floor ptrace CMD... | floor ptrace-attempts CMD... | floor connector | "
          "floor connector-proc\n");
  return 2;
}
