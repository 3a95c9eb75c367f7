#!/usr/bin/env bash
# Runs every test of webserver-exec-guard. On a fresh Debian/Ubuntu machine it first installs
# what the tests need: the real web servers the detection is tested against, strace (the
# reference the tracer is compared with), gcc and make (a real build). Services are kept from
# starting at install time with a policy-rc.d.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(nginx-light apache2 lighttpd busybox caddy php-cli strace gcc make)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
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

cargo test --locked "$@"
