#!/usr/bin/env bash
# Property-based fuzzing of the HTTP API from its OpenAPI document, with Schemathesis: every
# operation gets generated valid and invalid input (bodies, queries, paths, headers, methods), and
# every response must match the document (status, content type, schema, the error body included),
# with no 5xx. One of each resource is seeded first so the id routes reach real data.
#   tests/fuzz/run.sh                   the embedded SQLite default
#   FUZZ_DATABASE_URL=postgres://… tests/fuzz/run.sh
#   FUZZ_EXAMPLES=200 tests/fuzz/run.sh  more cases per operation (default 25)
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -c 'import schemathesis' 2>/dev/null || python3 -m pip install -q schemathesis

bin=${LOGBOOK_BIN:-target/debug/logbook}
data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
admin="adm_$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
if [ -n "${FUZZ_DATABASE_URL:-}" ]; then export DATABASE_URL=$FUZZ_DATABASE_URL; else unset DATABASE_URL; fi
# Private addresses stay refused: generated endpoints must never reach this machine's services.
LOGBOOK_DATA_DIR="$data" LOGBOOK_ADMIN_TOKEN="$admin" LOGBOOK_WEBHOOK_TIMEOUT=2s RUST_LOG=warn \
  "$bin" serve --listen "127.0.0.1:$port" >"$data/stdout.txt" 2>"$data/stderr.txt" &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true; rm -rf "$data"' EXIT

# Seeds a project with one resource of each kind and prints their ids as shell assignments.
ids=$(python3 tests/fuzz/seed.py "http://127.0.0.1:$port" "$admin") || { cat "$data/stderr.txt" >&2; exit 1; }
eval "$ids"
export FUZZ_WEBHOOK_ID FUZZ_SENDOUT_ID FUZZ_EVENT_ID FUZZ_LOG_ID FUZZ_IMPORT_ID FUZZ_EXPORT_ID FUZZ_TASK_ID FUZZ_PROJECT_ID

base="http://127.0.0.1:$port"
run() {
  schemathesis --config-file tests/fuzz/schemathesis.toml run "$base/openapi.json" --no-color \
    --max-examples "${FUZZ_EXAMPLES:-25}" --seed "${FUZZ_SEED:-20261201}" --workers 1 "$@"
}
status=0
# A project's server key on the project's operations (the live stream never ends, so it is left out).
run -H "Authorization: Bearer $FUZZ_SERVER_KEY" --exclude-tag projects --exclude-operation-id stream_changes \
  || status=$?
# The admin token on the admin's operations.
run -H "Authorization: Bearer $admin" --include-tag projects --exclude-operation-id get_current_project || status=$?
if [ "$status" -ne 0 ]; then
  echo "the server's errors:" >&2
  grep -E "ERROR|panicked" "$data/stderr.txt" | tail -n 20 >&2 || true
fi
if grep -q "panicked" "$data/stderr.txt"; then
  echo "the server panicked:" >&2
  grep -A5 "panicked" "$data/stderr.txt" >&2
  status=1
fi
exit $status
