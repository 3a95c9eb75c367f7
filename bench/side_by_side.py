#!/usr/bin/env python3
"""Runs commands side by side: one warm-up run each, then RUNS rounds in which every command
runs once, in an order rotated from round to round, so that a machine whose speed drifts weighs
on all of them alike (hyperfine runs all the runs of one command before the next command's).
Each command is started without a shell, its output discarded; the time is the wall-clock time
from start to exit. Prints a Markdown table: min / median / max seconds and the median's ratio
to the first command's median.

usage: side_by_side.py RUNS LABEL CMD [LABEL CMD ...]
       (CMD: one command line, split as a POSIX shell would split it)
"""
import shlex
import statistics
import subprocess
import sys
import time


def once(label, argv):
    t0 = time.perf_counter()
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    t = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"side_by_side: {label}: exit status {done.returncode}: {shlex.join(argv)}")
    return t


def main():
    if len(sys.argv) < 4 or len(sys.argv) % 2 != 0:
        sys.exit(__doc__)
    runs = int(sys.argv[1])
    pairs = sys.argv[2:]
    commands = [(pairs[i], shlex.split(pairs[i + 1])) for i in range(0, len(pairs), 2)]
    for label, argv in commands:
        once(label, argv)
    times = {label: [] for label, _ in commands}
    for r in range(runs):
        k = r % len(commands)
        for label, argv in commands[k:] + commands[:k]:
            times[label].append(once(label, argv))
    base = statistics.median(times[commands[0][0]])
    print("| command | min (s) | median (s) | max (s) | median / " + commands[0][0] + " |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, _ in commands:
        t = times[label]
        med = statistics.median(t)
        print(f"| {label} | {min(t):.3f} | {med:.3f} | {max(t):.3f} | {med / base:.3f}x |")


if __name__ == "__main__":
    main()
