"""Drives the flows users generate an SDK for, through a client that openapi-python-client generated
from openapi/openapi.json: every response is parsed by the client's typed models, so a document that
says something other than what the server sends fails here.

    python3 flows.py BASE_URL SERVER_KEY

Upload an import and follow its task to the end; create an endpoint; publish an event; list, open and
retry its sendouts; list and open logs. A local receiver refuses the first delivery, so the sendout
fails and the retry delivers.
"""

import io
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from logbook_client import AuthenticatedClient
from logbook_client.api.events import publish_event
from logbook_client.api.imports import create_import, download_import_file, get_import
from logbook_client.api.logs import get_log, list_logs
from logbook_client.api.sendouts import get_sendout, list_sendouts, retry_sendout
from logbook_client.api.tasks import get_task, list_tasks
from logbook_client.api.webhooks import create_webhook
from logbook_client.models import (
    EventAcceptedOut,
    EventIn,
    EventInData,
    ImportOut,
    ImportUpload,
    ListOutLogSummaryOut,
    ListOutSendoutOut,
    ListOutTaskOut,
    LogDetailOut,
    LogStatus,
    SendoutOut,
    SendoutStatus,
    TaskOut,
    TaskStatus,
    TaskType,
    WebhookIn,
    WebhookOut,
)
from logbook_client.types import File

base, key = sys.argv[1], sys.argv[2]
client = AuthenticatedClient(base_url=base, token=key, raise_on_unexpected_status=True)
checks = 0


def expect(value, kind):
    """The call answered with its success model (not an error body, not None)."""
    global checks
    assert isinstance(value, kind), f"expected {kind.__name__}, got {type(value).__name__}: {value!r}"
    checks += 1
    return value


def until(what, fetch, done, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = fetch()
        if done(value):
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} did not happen in {seconds} s; last: {value!r}")


class Receiver(BaseHTTPRequestHandler):
    """Answers 500 to the first delivery and 204 to the rest."""

    seen = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with Receiver.lock:
            Receiver.seen += 1
            first = Receiver.seen == 1
        self.send_response(500 if first else 204)
        self.send_header("content-length", "0")
        self.end_headers()


receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=receiver.serve_forever, daemon=True).start()
receiver_url = f"http://127.0.0.1:{receiver.server_address[1]}/hook"

# 1. An import, uploaded as multipart, followed to the end.
csv = b"type,source_id,amount\norder.created,o1,10\norder.created,o2,20\nNot A Type,o3,30\n"
upload = ImportUpload(file=File(payload=io.BytesIO(csv), file_name="orders.csv", mime_type="text/csv"))
imported = expect(create_import.sync(client=client, body=upload), ImportOut)
task = until(
    "the import task finishing",
    lambda: expect(get_task.sync(imported.task_id, client=client), TaskOut),
    lambda t: t.status in (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED),
)
assert task.status == TaskStatus.DONE, task
assert task.type_ == TaskType.IMPORT, task
assert task.progress.processed == 3, task.progress
assert task.error_count == 1 and task.errors[0].line == 4, task.errors
imported = expect(get_import.sync(imported.id, client=client), ImportOut)
assert (imported.rows_imported, imported.rows_failed) == (2, 1), imported
downloaded = download_import_file.sync_detailed(imported.id, client=client)
assert downloaded.status_code == 200 and downloaded.content == csv, downloaded
tasks = expect(list_tasks.sync(client=client, status=[TaskStatus.DONE], type_=[TaskType.IMPORT]), ListOutTaskOut)
assert any(t.id == task.id for t in tasks.data), tasks

# 2. An endpoint, an event, and its sendout failed, then retried by hand.
webhook = expect(create_webhook.sync(client=client, body=WebhookIn(url=receiver_url, event_types=["invoice.*"])), WebhookOut)
assert webhook.secret.startswith("whsec_"), webhook
event = expect(publish_event.sync(client=client, body=EventIn(type_="invoice.paid", data=EventInData.from_dict({"amount": 5}))), EventAcceptedOut)
assert [s.webhook_id for s in event.sendouts] == [webhook.id], event
sendout_id = event.sendouts[0].id
failed = until(
    "the first delivery failing",
    lambda: expect(get_sendout.sync(sendout_id, client=client), SendoutOut),
    lambda s: s.status == SendoutStatus.FAILED,
)
assert failed.attempts and failed.attempts[0].http_status == 500, failed.attempts
listed = expect(list_sendouts.sync(client=client, status=[SendoutStatus.FAILED], webhook_id=[webhook.id]), ListOutSendoutOut)
assert [s.id for s in listed.data] == [sendout_id], listed
expect(retry_sendout.sync(sendout_id, client=client), SendoutOut)
delivered = until(
    "the retried sendout being delivered",
    lambda: expect(get_sendout.sync(sendout_id, client=client), SendoutOut),
    lambda s: s.status == SendoutStatus.DELIVERED,
)
assert len(delivered.attempts) == 2 and delivered.attempts[-1].http_status == 204, delivered.attempts

# 3. The requests above, in the request log.
logs = expect(list_logs.sync(client=client, endpoint=["POST /v1/imports"]), ListOutLogSummaryOut)
assert len(logs.data) == 1 and logs.data[0].status == LogStatus.SUCCESS, logs
detail = expect(get_log.sync(logs.data[0].id, client=client), LogDetailOut)
assert detail.http_status == 202 and any(r.id == imported.id for r in detail.related), detail
failures = expect(list_logs.sync(client=client, status=[LogStatus.FAILURE]), ListOutLogSummaryOut)
assert all(entry.http_status >= 400 for entry in failures.data), failures

receiver.shutdown()
print(f"sdk flows: {checks} typed responses parsed, every flow passed")
