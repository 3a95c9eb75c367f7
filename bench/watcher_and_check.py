#!/usr/bin/env python3
"""Workloads 3-6 of the benchmark suite (bench/run calls this; root is needed for 3, 4, 6).

  3. host watcher capture: bursts of short execs from 2 cores (two `execburst` processes
     spawning a static no-op binary), watcher on vs off, and vs the connector floors (a listener
     that reads the proc connector's events and nothing else: what the kernel side costs; the
     same reading each exec's executable and arguments from /proc, the least a record needs);
     every exec recorded or counted lost.
  4. watcher at rest for 60 s: CPU time and peak RSS of the watcher.
  5. `guard check` on synthetic traces of 10k, 100k, 1M execs (bench/gen_trace.py):
     time and peak RSS (/usr/bin/time), fitted per-record cost.
  8. the Action's steps: a step (make -j2 of a 200-file C project; the 2-core exec burst of 3)
     run by a stand-in for the runner's worker (a process that starts each step as its direct
     child), bare, beside the connector-plus-/proc floor, under the watcher without ptrace
     (what the door adds is the difference with the next), under the watcher with the door only
     (the Action's default: the worker followed with ptrace up to each step's first exec, then
     let go: `guard start --attach WORKER --let-go-at-exec`) and under the watcher following
     every step (input `ptrace: true`: `guard start --attach WORKER`).
  6. post-step latency for a job of 100k real execs recorded by the watcher: `guard stop`
     (drain + seal + check + JSON report), then the SARIF and text reports of the trace, each a
     separate `guard check` that reads the whole trace again (the Action's post step checks once
     and renders every report from that one outcome, so this is an upper bound).

Prints Markdown tables. Usage: watcher_and_check.py GUARD WORKDIR RUNS [REST_SECONDS]
"""
import json
import os
import statistics
import subprocess
import sys
import time

GUARD, WORK, RUNS = sys.argv[1], sys.argv[2], int(sys.argv[3])
REST = int(sys.argv[4]) if len(sys.argv) > 4 else 60
HERE = os.path.dirname(os.path.abspath(__file__))
STATE = os.path.join(WORK, "state")
BURST = os.path.join(WORK, "execburst")
TINY = os.path.join(WORK, "tiny")
FLOOR = os.path.join(WORK, "floor")


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def build_tools():
    sh("gcc", "-O2", "-o", BURST, os.path.join(HERE, "execburst.c"))
    sh("gcc", "-O2", "-o", FLOOR, os.path.join(HERE, "floor.c"))
    sh("gcc", "-O2", "-static", "-o", TINY, os.path.join(HERE, "tiny.c"))


def burst(total):
    """Two processes, total/2 execs each; returns the wall time."""
    half = total // 2
    t0 = time.perf_counter()
    procs = [subprocess.Popen([BURST, str(half), TINY]) for _ in range(2)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("execburst failed")
    return time.perf_counter() - t0


def start(trace):
    sh(GUARD, "start", "--state-dir", STATE, "--trace", trace, stdout=subprocess.DEVNULL,
       stderr=subprocess.DEVNULL)
    with open(os.path.join(STATE, "watcher.json")) as f:
        return json.load(f)["pid"]


def stop(report):
    t0 = time.perf_counter()
    subprocess.run([GUARD, "stop", "--state-dir", STATE, "--report", report],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def recorded(trace, exe):
    """Exec records of `exe` in a trace — with its path, or partial (the process was gone
    before it could be read: a static no-op lives for microseconds) — and the seal's lost
    count. Partial records of other programs that ran meanwhile are counted too (few: the
    machine is otherwise idle)."""
    full, partial, lost = 0, 0, None
    with open(trace, "rb") as f:
        for line in f:
            if line.startswith(b'{"type":"exec"'):
                rec = json.loads(line)
                if rec.get("exe") == exe:
                    full += 1
                elif rec.get("partial"):
                    partial += 1
            elif line.startswith(b'{"type":"seal"'):
                lost = json.loads(line)["lost"]
    return full, partial, lost


def stats(xs):
    return min(xs), statistics.median(xs), max(xs)


def row(name, xs, base=None, unit="s"):
    lo, med, hi = stats(xs)
    ratio = f"{med / base:.3f}x" if base else ""
    return f"| {name} | {lo:.3f} | {med:.3f} | {hi:.3f} | {ratio} |"


def floor_burst(total, mode):
    """A burst while a floor of bench/floor.c listens: `connector` reads every event and
    nothing else, `connector-proc` also reads each exec's executable and arguments."""
    floor = subprocess.Popen([FLOOR, mode], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)  # subscribed
    t = burst(total)
    floor.terminate()
    out = floor.communicate(timeout=30)[0].strip()
    if floor.returncode != 0:
        raise SystemExit(f"{mode} floor failed: {out!r}")
    # Other programs may exec meanwhile (more events); fewer only if the socket overran.
    seen, overruns = int(out.split()[0]), int(out.split()[3])
    if seen < total and overruns == 0:
        raise SystemExit(f"{mode} floor: {out!r} for {total} execs")
    return t


def workload3(total=20000):
    off, on, floor, floor_proc, rates, lines = [], [], [], [], [], []
    for i in range(RUNS):
        off.append(burst(total))
        floor.append(floor_burst(total, "connector"))
        floor_proc.append(floor_burst(total, "connector-proc"))
        trace = os.path.join(WORK, f"w3-{i}.jsonl")
        start(trace)
        t = burst(total)
        time.sleep(0.5)  # the watcher drains its socket before it stops
        stop(os.path.join(WORK, "w3.json"))
        on.append(t)
        full, partial, lost = recorded(trace, TINY)
        rates.append(total / t)
        lines.append((full, partial, lost))
        os.remove(trace)
    base = statistics.median(off)
    print(f"\n### 3. Host watcher capture: {total:,} execs from 2 processes, {RUNS} runs\n")
    print("| run | wall (s) min | median | max | median / watcher off |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(row("watcher off", off, base))
    print(row("watcher on", on, base))
    print(row("connector floor (events read, no /proc)", floor, base))
    print(row("connector floor + exe and cmdline from /proc", floor_proc, base))
    print()
    print("| run | execs started | recorded with path and argv | recorded partial (process already gone) | lost (counted) | recorded + lost | rate (execs/s) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for i, ((full, partial, lost), rate) in enumerate(zip(lines, rates)):
        print(f"| {i + 1} | {total:,} | {full:,} | {partial:,} | {lost} | "
              f"{full + partial + (lost or 0):,} | {rate:,.0f} |")


def workload4():
    pid = start(os.path.join(WORK, "w4.jsonl"))
    hz = os.sysconf("SC_CLK_TCK")

    def cpu():
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / hz

    time.sleep(2)
    c0, t0 = cpu(), time.perf_counter()
    time.sleep(REST)
    c1, t1 = cpu(), time.perf_counter()
    with open(f"/proc/{pid}/status") as f:
        hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    stop(os.path.join(WORK, "w4.json"))
    share = 100 * (c1 - c0) / (t1 - t0)
    print(f"\n### 4. Watcher at rest for {REST} s\n")
    print("| CPU time | share of one core | peak RSS (VmHWM) |")
    print("| ---: | ---: | ---: |")
    print(f"| {c1 - c0:.2f} s over {t1 - t0:.0f} s | {share:.2f}% | {hwm / 1024:.1f} MiB |")


def timed(cmd):
    """(seconds, peak RSS KiB) of a command, from /usr/bin/time."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M"] + cmd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    secs, rss = out.stderr.strip().splitlines()[-1].split()
    return float(secs), int(rss)


def workload5():
    print(f"\n### 5. `guard check` on synthetic traces, {RUNS} runs each\n")
    print("| execs (records) | trace size | min (s) | median (s) | max (s) | peak RSS |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    points = []
    for n in (10_000, 100_000, 1_000_000):
        trace = os.path.join(WORK, f"t{n}.jsonl")
        sh(sys.executable, os.path.join(HERE, "gen_trace.py"), str(n), trace)
        size = os.path.getsize(trace)
        runs = [timed([GUARD, "check", "--trace", trace, "--format", "json", "--output",
                       os.devnull]) for _ in range(RUNS)]
        secs = [r[0] for r in runs]
        rss = max(r[1] for r in runs)
        records = 3 * n
        points.append((records, statistics.median(secs)))
        lo, med, hi = stats(secs)
        print(f"| {n:,} ({records:,}) | {size / 1e6:.0f} MB | {lo:.2f} | {med:.2f} | {hi:.2f} | "
              f"{rss / 1024:.1f} MiB |")
        os.remove(trace)
    # Least squares fit t = a + b * records.
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    print(f"\nFitted: {b * 1e9:.0f} ns per record (+ {a * 1000:.0f} ms fixed); "
          f"residuals {', '.join(f'{y - (a + b * x):+.3f} s' for x, y in points)}.")


def workload6(total=100_000):
    trace = os.path.join(WORK, "w6.jsonl")
    start(trace)
    burst(total)
    time.sleep(0.5)
    report = os.path.join(WORK, "w6.json")
    t_stop = stop(report)
    with open(report) as f:
        execs = json.load(f)["stats"]["execs"]
    rows = [("guard stop (drain, seal, check, JSON report, terminal report)", t_stop)]
    for fmt in ("sarif", "text"):
        t0 = time.perf_counter()
        out = subprocess.run([GUARD, "check", "--trace", trace, "--format", fmt, "--output",
                              os.path.join(WORK, f"w6.{fmt}")], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        if out.returncode not in (0, 3):
            raise SystemExit(f"guard check --format {fmt} failed: {out.returncode}")
        rows.append((f"guard check --format {fmt} (re-reads the trace)", time.perf_counter() - t0))
    print(f"\n### 6. Post-step latency: a job of {execs:,} execs recorded by the watcher\n")
    print("| step | seconds |")
    print("| --- | ---: |")
    for name, t in rows:
        print(f"| {name} | {t:.3f} |")
    print(f"| **all** | **{sum(t for _, t in rows):.3f}** |")
    os.remove(trace)


# The runner's worker, standing in: starts each command it reads as its direct child (Python's
# subprocess, like .NET's Process.Start, vforks and execs) and prints its wall time.
WORKER = r"""
import subprocess, sys, time
for line in sys.stdin:
    t0 = time.perf_counter()
    code = subprocess.run(["sh", "-c", line.strip()]).returncode
    print(f"{time.perf_counter() - t0:.6f} {code}", flush=True)
"""


def make_project():
    proj = os.path.join(WORK, "proj")
    os.makedirs(proj, exist_ok=True)
    for i in range(1, 201):
        with open(os.path.join(proj, f"f{i}.c"), "w") as f:
            f.write(f"int f{i}(int x) {{ int s = 0; for (int i = 0; i < x; i++) s += i * {i}; return s; }}\n")
    with open(os.path.join(proj, "main.c"), "w") as f:
        f.write("int main(void) { int s = 0;\n")
        for i in range(1, 201):
            f.write(f"  extern int f{i}(int); s += f{i}({i});\n")
        f.write("  return s & 1; }\n")
    with open(os.path.join(proj, "Makefile"), "w") as f:
        f.write("SRCS := $(wildcard *.c)\nOBJS := $(SRCS:.c=.o)\nprog: $(OBJS)\n\t$(CC) -o $@ $^\n"
                "%.o: %.c\n\t$(CC) -O1 -c -o $@ $<\nclean:\n\trm -f $(OBJS) prog\n")
    return proj


def workload8(total=10000):
    proj = make_project()
    steps = {
        "make -j2, 200 C files": f"make -s -C {proj} clean && make -s -j2 -C {proj}",
        f"exec burst, {total:,} execs from 2 processes":
            f"{BURST} {total // 2} {TINY} & {BURST} {total // 2} {TINY} & wait",
    }
    modes = ["bare", "connector floor + /proc", "watcher, no ptrace (connector only)",
             "watcher, door only (default)", "watcher, every step followed (ptrace: true)"]
    times = {(s, m): [] for s in steps for m in modes}
    for _ in range(RUNS):
        for mode in modes:
            worker = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
            floor = None
            if mode.startswith("connector"):
                floor = subprocess.Popen([FLOOR, "connector-proc"], stdout=subprocess.PIPE,
                                         text=True)
                time.sleep(0.3)
            elif mode.startswith("watcher"):
                extra = {"door": ["--attach", str(worker.pid), "--let-go-at-exec"],
                         "every": ["--attach", str(worker.pid)]}
                which = next((k for k in extra if k in mode), None)
                sh(GUARD, "start", "--state-dir", STATE, "--trace",
                   os.path.join(WORK, "w8.jsonl"), *extra.get(which, []),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, cmd in steps.items():
                worker.stdin.write(cmd + "\n")
                worker.stdin.flush()
                secs, code = worker.stdout.readline().split()
                if code != "0":
                    raise SystemExit(f"step {name!r} failed under {mode}: {code}")
                times[(name, mode)].append(float(secs))
            worker.stdin.close()
            worker.wait()
            if floor:
                floor.terminate()
                floor.communicate(timeout=30)
            elif mode.startswith("watcher"):
                stop(os.path.join(WORK, "w8.json"))
                os.remove(os.path.join(WORK, "w8.jsonl"))
    print(f"\n### 8. The Action's steps, run by a stand-in worker, {RUNS} runs (modes alternated)\n")
    for name in steps:
        base = statistics.median(times[(name, "bare")])
        floor = statistics.median(times[(name, "connector floor + /proc")])
        print(f"\n{name}:\n")
        print("| run | wall (s) min | median | max | median / bare | median / floor |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for mode in modes:
            xs = times[(name, mode)]
            lo, med, hi = stats(xs)
            print(f"| {mode} | {lo:.3f} | {med:.3f} | {hi:.3f} | {med / base:.3f}x | "
                  f"{med / floor:.3f}x |")


if __name__ == "__main__":
    os.makedirs(WORK, exist_ok=True)
    build_tools()
    which = os.environ.get("WORKLOADS", "34568")
    if os.geteuid() != 0:
        print("\n(workloads 3, 4, 6 and 8 need root: skipped)")
        which = which.translate(str.maketrans("", "", "3468"))
    for w in which:
        {"3": workload3, "4": workload4, "5": workload5, "6": workload6, "8": workload8}[w]()
