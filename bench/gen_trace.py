#!/usr/bin/env python3
"""Writes a synthetic, sealed guard trace of N execs for the `guard check` benchmark.

Shaped like a large build: a shell forks a child per command; the child execs a compiler (or,
once in a while, `nginx -t`, so that the checker also has findings to fold); the child exits.
That is three records (fork, exec, exit) per exec, each line as guard writes it, the SHA-256
hash (BLAKE3, by `b3sum` from Debian) and the seal computed as src/trace/mod.rs specifies
(format 2).

    bench/gen_trace.py N OUT
"""
import hashlib
import json
import struct
import subprocess
import sys


def main():
    n, out = int(sys.argv[1]), sys.argv[2]
    records = 0
    seq = 0
    t = "2026-11-28T12:00:00.000000Z"
    programs = [
        ("/usr/bin/x86_64-linux-gnu-gcc-12", ["cc", "-O2", "-c", "-o", "obj/f{i}.o", "src/f{i}.c"]),
        ("/usr/libexec/gcc/x86_64-linux-gnu/12/cc1", ["/usr/libexec/gcc/x86_64-linux-gnu/12/cc1", "-quiet", "src/f{i}.c", "-O2", "-o", "/tmp/cc{i}.s"]),
        ("/usr/bin/x86_64-linux-gnu-as", ["as", "--64", "-o", "obj/f{i}.o", "/tmp/cc{i}.s"]),
        ("/usr/bin/dash", ["/bin/sh", "-c", "test -f obj/f{i}.o"]),
    ]
    with open(out, "wb") as f:
        def line(obj):
            f.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")

        line({"type": "header", "format": 2, "tool": "webserver-exec-guard", "version": "0.1.0",
              "watcher": "run", "started": t, "command": ["make", "-j2"], "root": 100})
        seq += 1
        line({"type": "exec", "seq": seq, "time": t, "pid": 100, "tgid": 100, "ppid": 99, "uid": 1000,
              "exe": "/usr/bin/make", "execfn": "/usr/bin/make", "argv": ["make", "-j2"],
              "cwd": "/work/project", "comm": "make", "source": "ptrace"})
        records += 1
        for i in range(n - 1):
            pid = 1000 + (i % 4_000_000)
            seq += 1
            line({"type": "fork", "seq": seq, "time": t, "pid": pid, "ppid": 100, "source": "ptrace"})
            if i % 1000 == 999:
                exe, argv = "/usr/sbin/nginx", ["nginx", "-t", "-c", "/work/project/nginx.conf"]
            else:
                exe, argv = programs[i % len(programs)]
                argv = [a.replace("{i}", str(i)) for a in argv]
            seq += 1
            line({"type": "exec", "seq": seq, "time": t, "pid": pid, "tgid": pid, "ppid": 100,
                  "uid": 1000, "exe": exe, "execfn": exe, "argv": argv, "cwd": "/work/project",
                  "comm": exe.rsplit("/", 1)[1][:15], "source": "ptrace"})
            seq += 1
            line({"type": "exit", "seq": seq, "time": t, "pid": pid, "status": {"code": 0}})
            records += 3
        seq += 1
        line({"type": "end", "seq": seq, "time": t, "status": {"code": 0}, "outlived": []})
        records += 1
        f.flush()
        digest = subprocess.run(["b3sum", "--no-names", out], check=True, capture_output=True,
                               text=True).stdout.split()[0]
        seal = hashlib.sha256(bytes.fromhex(digest) + struct.pack("<QQ", records, 0) + t.encode()).hexdigest()
        f.write(json.dumps({"type": "seal", "time": t, "records": records, "lost": 0,
                            "chain": seal}, separators=(",", ":")).encode() + b"\n")


if __name__ == "__main__":
    main()
