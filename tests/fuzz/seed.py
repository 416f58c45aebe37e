"""Seeds a fuzzing server: a project and one resource of each kind. Prints shell assignments of
their ids (and the project's server key) for tests/fuzz/run.sh."""

import json
import sys
import time
import urllib.request

base, admin = sys.argv[1], sys.argv[2]


def call(method, path, token, body=None, content_type="application/json"):
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req) as response:
        return json.loads(response.read() or b"null")


for _ in range(600):
    try:
        if urllib.request.urlopen(base + "/readyz").status == 200:
            break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("the server did not get ready")

project = call("POST", "/v1/projects", admin, {"name": "Fuzz", "time_zone": "Europe/Berlin"})
key = project["server_key"]
webhook = call("POST", "/v1/webhooks", key, {"url": "http://192.0.2.1/hook", "event_types": ["*"]})
event = call("POST", "/v1/events", key, {"type": "order.created", "data": {"n": 1}})
log = call("POST", "/v1/logs", key, {"logs": [{"occurred_at": "2026-11-20T10:00:00Z", "channel": "shop", "method": "GET",
                                                "path": "/orders", "http_status": 200, "duration_ms": 3}]})
boundary = "fuzzseed"
upload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"orders.csv\"\r\n"
          f"Content-Type: text/csv\r\n\r\ntype,source_id\r\norder.created,o1\r\n--{boundary}--\r\n").encode()
imported = call("POST", "/v1/imports", key, upload, f"multipart/form-data; boundary={boundary}")
export = call("POST", "/v1/exports", key, {"resource": "logs"})
for _ in range(600):
    if call("GET", f"/v1/tasks/{export['task_id']}", key)["status"] in ("done", "failed"):
        break
    time.sleep(0.1)
ids = {
    "FUZZ_SERVER_KEY": key,
    "FUZZ_PROJECT_ID": project["id"],
    "FUZZ_WEBHOOK_ID": webhook["id"],
    "FUZZ_EVENT_ID": event["id"],
    "FUZZ_SENDOUT_ID": event["sendouts"][0]["id"],
    "FUZZ_LOG_ID": log["ids"][0],
    "FUZZ_IMPORT_ID": imported["id"],
    "FUZZ_TASK_ID": imported["task_id"],
    "FUZZ_EXPORT_ID": export["id"],
}
for name, value in ids.items():
    print(f"{name}={value}")
