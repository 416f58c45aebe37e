#!/usr/bin/env bash
# Generates a Python client from openapi/openapi.json with openapi-python-client (no warning
# allowed) and drives the used-by flows with it (tests/sdk/flows.py) against a fresh server.
#   tests/sdk/run.sh                 the embedded SQLite default
#   SDK_DATABASE_URL=postgres://… tests/sdk/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -c 'import openapi_python_client' 2>/dev/null || python3 -m pip install -q openapi-python-client

out=target/sdk
rm -rf "$out" && mkdir -p "$out"
generated=$(python3 -m openapi_python_client generate --path openapi/openapi.json --output-path "$out/logbook_client" \
  --meta none --config tests/sdk/generator.yml 2>&1)
echo "$generated"
if grep -qi "warning" <<<"$generated"; then
  echo "openapi-python-client warned about the document" >&2
  exit 1
fi

bin=${LOGBOOK_BIN:-target/debug/logbook}
data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ -n "${SDK_DATABASE_URL:-}" ]; then export DATABASE_URL=$SDK_DATABASE_URL; else unset DATABASE_URL; fi
LOGBOOK_DATA_DIR="$data" LOGBOOK_WEBHOOK_ALLOW_PRIVATE=true \
  LOGBOOK_WEBHOOK_RETRY_SCHEDULE=0s RUST_LOG=warn \
  "$bin" serve --listen "127.0.0.1:$port" >"$data/stdout.txt" 2>"$data/stderr.txt" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT

python3 - "$port" <<'PY' || { cat "$data/stderr.txt" >&2; exit 1; }
import sys, time, urllib.request
for _ in range(600):
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz").status == 200:
            sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit("the server did not get ready")
PY

key=$(sed -n 's/^ *server key: *//p' "$data/stdout.txt" | head -n 1)
[ -n "$key" ] || { echo "the first start printed no server key" >&2; cat "$data/stderr.txt" >&2; exit 1; }
PYTHONPATH="$out" python3 tests/sdk/flows.py "http://127.0.0.1:$port" "$key"
