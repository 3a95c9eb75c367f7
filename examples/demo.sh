#!/bin/sh
# A build step gone wrong: it starts a real web server on 127.0.0.1, fetches one page, stops it.
# Run it under guard (`cargo run -q -- run -- examples/demo.sh`): guard reports the server and
# exits 3.
set -eu
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo '<h1>hello from a build step</h1>' > "$dir/index.html"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$dir" "$port" >/dev/null 2>&1 &
server=$!
i=0
until python3 -c "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:$port/').read().decode())" 2>/dev/null; do
  i=$((i + 1))
  [ "$i" -lt 100 ] || { echo "demo: the server did not answer" >&2; kill "$server"; exit 1; }
  sleep 0.1
done
kill "$server"
wait "$server" 2>/dev/null || true
echo "demo: build finished"
