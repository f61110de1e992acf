#!/usr/bin/env bash
# python-caldav's own integration suite (TestForServer) against Portside as an external server
# (../shared/VERIFIERS.md §7.2 #2). Too slow and too dependency-heavy for the test command, so it is run by hand:
#
#   tests/verifiers/caldav_suite.sh            # uses $WORK (default /tmp/portside-caldav-suite)
#
# It builds its own venv (the suite's extra packages stay out of the project's), downloads the caldav sdist,
# starts `portside serve` on port 0 from this checkout with a fresh SQLite database, creates a user, switches
# `caldav.enable` on, asks caldav-server-tester for Portside's feature profile (so the suite skips what
# Portside does not claim: scheduling, ...), and runs the suite. Exit code: the suite's.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="${WORK:-/tmp/portside-caldav-suite}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=/work/main/.venv/bin/python
mkdir -p "$WORK"
if [ ! -x "$WORK/vv/bin/caldav-server-tester" ]; then
  [ -x "$WORK/vv/bin/python" ] || python3 -m venv "$WORK/vv"
  "$WORK/vv/bin/pip" install -q caldav==3.6.0 caldav-server-tester pytest pytest-asyncio manuel proxy.py tzlocal \
    pyfakefs httpxyz pyyaml
fi
SRC="$WORK/src/caldav-3.6.0"
if [ ! -d "$SRC" ]; then
  "$WORK/vv/bin/pip" download -q caldav==3.6.0 --no-deps --no-binary :all: -d "$WORK/src"
  tar xzf "$WORK/src/caldav-3.6.0.tar.gz" -C "$WORK/src"
fi
DATA="$(mktemp -d)"
LOG="$DATA/serve.log"
PYTHONPATH="$ROOT/src" "$PY" -m portside.cli.main serve --port 0 --data-dir "$DATA" --log-level warning >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 1 100); do grep -q "http listening on" "$LOG" 2>/dev/null && break; sleep 0.2; done
URL="$(sed -n 's/.*portside: http listening on \(http[^ ]*\).*/\1/p' "$LOG" | head -1)"
EMAIL="suite-$RANDOM@example.com"
PASS="suite-secret-1"
"$PY" - "$URL" "$EMAIL" "$PASS" <<'PYEOF'
import json, sys, urllib.request
url, email, password = sys.argv[1:]
def call(path, body, token=None, raw=False):
    data = body.encode() if raw else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method="POST")
    req.add_header("Content-Type", "text/plain" if raw else "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")
call("/action/user_account/signup", {"attributes": {"name": "Suite", "email": email, "password": password, "passwordConfirm": password}})
out = call("/action/user_account/signin", {"attributes": {"email": email, "password": password}})
token = next(x for x in out if x["ResponseType"] == "client.store.set")["Attributes"]["value"]
call("/action/world/become_an_administrator", {}, token)
call("/_config/backend/caldav.enable", "true", token, raw=True)
PYEOF
"$WORK/vv/bin/caldav-server-tester" --caldav-url "$URL/caldav/" --caldav-username "$EMAIL" --caldav-password "$PASS" \
  --format yaml > "$WORK/features.yaml" 2>/dev/null
"$WORK/vv/bin/python" - "$WORK/features.yaml" "$SRC/tests/caldav_test_servers.yaml" "$URL/caldav/" "$EMAIL" "$PASS" <<'PYEOF'
import sys, yaml
features_file, out, url, user, password = sys.argv[1:]
features = yaml.safe_load(open(features_file))
features = features.get("features", features) if isinstance(features, dict) else {}
config = {"test-servers": {
    "radicale": {"type": "embedded", "enabled": False},
    "xandikos": {"type": "embedded", "enabled": False},
    "portside": {"type": "external", "enabled": True, "url": url, "username": user, "password": password,
                 "features": features},
}}
yaml.safe_dump(config, open(out, "w"))
PYEOF
cd "$SRC"
PYTHON_CALDAV_TEST_DOCKER=0 PYTHON_CALDAV_TEST_EMBEDDED=0 "$WORK/vv/bin/python" -m pytest tests/test_caldav.py \
  -k TestForServer -q -p no:cacheprovider -o asyncio_default_fixture_loop_scope=function -W ignore::DeprecationWarning \
  "$@"
