"""A webhook receiver for the tests: verifies every delivery with the official Standard Webhooks
library and records what it saw, one JSON line per request.

    python3 receiver.py PORT RECORD_FILE

POST /_config {"secrets": [...], "fail_first": N, "status": 200, "delay": 0.0} sets the behaviour:
the first N deliveries answer 500 (with Retry-After: 0), later ones `status`, each after `delay`
seconds; with "echo": true a delivery's answer repeats its body.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

port, record_path = int(sys.argv[1]), sys.argv[2]
state = {"secrets": [], "fail_first": 0, "status": 200, "delay": 0.0, "seen": 0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    # Keep-alive, as a real receiver: a connection per delivery would be a SYN flood at scale.
    protocol_version = "HTTP/1.1"
    def log_message(self, *args):
        pass

    def do_POST(self):
        arrived = time.time()
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path == "/_config":
            with lock:
                state.update(json.loads(body))
            return self.answer(200, b"configured")
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified = []
        for i, secret in enumerate(state["secrets"]):
            try:
                Webhook(secret).verify(body, headers)
                verified.append(i)
            except Exception:
                pass
        with lock:
            n = state["seen"]
            state["seen"] += 1
            status = 500 if n < state["fail_first"] else state["status"]
            delay = state["delay"]
        time.sleep(delay)
        record = {
            "path": self.path,
            "webhook_id": headers.get("webhook-id"),
            "signature": headers.get("webhook-signature"),
            "verified_with": verified,
            "body": json.loads(body or b"null"),
            "status": status,
            "received_at": arrived,
        }
        with lock, open(record_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        answer = (body if state.get("echo") else b"received") if status < 300 else b"failing on purpose"
        self.answer(status, answer, retry_after=status >= 300)

    def answer(self, status, body, retry_after=False):
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("x-receiver", "test")
        if retry_after:
            self.send_header("retry-after", "0")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    # Hundreds of deliveries connect at once; the default backlog of 5 drops their SYNs, which
    # are retried only after a second or more.
    request_queue_size = 1024
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A sender killed mid-delivery (the cluster tests kill processes) is not the receiver's fault.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


Server(("127.0.0.1", port), Handler).serve_forever()
