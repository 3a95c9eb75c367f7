/* A burst of short execs for the watcher benchmark: runs PROG N times, one after the other,
 * with posix_spawn (vfork + exec), waiting for each. Two of these in parallel keep both cores
 * busy with exec. */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: execburst N PROG [ARGS...]\n");
        return 2;
    }
    long n = strtol(argv[1], NULL, 10);
    for (long i = 0; i < n; i++) {
        pid_t pid;
        if (posix_spawn(&pid, argv[2], NULL, NULL, argv + 2, environ) != 0) {
            perror("posix_spawn");
            return 1;
        }
        int status;
        if (waitpid(pid, &status, 0) < 0) {
            perror("waitpid");
            return 1;
        }
    }
    return 0;
}
