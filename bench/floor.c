// The least work a tracer of this kind can do, to measure what the kernel's mechanism costs by
// itself (bench/run shows it beside guard):
//
//   floor ptrace CMD...   runs CMD seized with the ptrace options `guard run` uses (fork, vfork,
//                         clone and exec events) and resumes every stop at once; reads nothing.
//   floor connector       subscribes to the netlink proc connector as the host watcher does and
//                         reads every event until SIGTERM or SIGINT; reads no /proc. Prints the
//                         number of exec events seen. Needs root.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int ptrace_floor(char **cmd) {
  int gate[2];
  if (pipe(gate)) return 125;
  pid_t root = fork();
  if (root < 0) return 125;
  if (root == 0) {
    char c;
    close(gate[1]);
    if (read(gate[0], &c, 1) != 1) _exit(125);
    execvp(cmd[0], cmd);
    _exit(127);
  }
  long opts = PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE |
              PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL;
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
    else
      ptrace(PTRACE_CONT, pid, 0, event ? 0 : sig);  // signal-delivery-stops keep the signal
  }
  return code;
}

static volatile sig_atomic_t done;
static void on_signal(int s) { (void)s; done = 1; }

static int connector_floor(void) {
  int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_CONNECTOR);
  if (fd < 0) { perror("floor: socket"); return 1; }
  int size = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
  struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC, .nl_pid = 0};
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa)) { perror("floor: bind"); return 1; }
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
      if (errno == ENOBUFS) lost++;
      continue;
    }
    for (struct nlmsghdr *nl = (struct nlmsghdr *)buf; NLMSG_OK(nl, n); nl = NLMSG_NEXT(nl, n)) {
      struct cn_msg *cn = NLMSG_DATA(nl);
      struct proc_event *ev = (struct proc_event *)cn->data;
      if (ev->what == PROC_EVENT_EXEC) execs++;
    }
  }
  printf("%lu exec events, %lu overruns\n", execs, lost);
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "ptrace") == 0) return ptrace_floor(argv + 2);
  if (argc == 2 && strcmp(argv[1], "connector") == 0) return connector_floor();
  fprintf(stderr, "usage: floor ptrace CMD... | floor connector\n");
  return 2;
}
