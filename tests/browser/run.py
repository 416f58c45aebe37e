"""Browser tests of the console: headless Chromium driven over WebDriver (Selenium), against the real
server on a fresh database, seeded through the public API.

    python3 tests/browser/run.py [--binary target/debug/logbook] [--screenshots DIR]

DATABASE_URL, when set, is used as the server's database (PostgreSQL in CI's second run).
Exits non-zero on the first failed check; every page's console errors fail the run, and axe-core
(vendored in tests/browser/vendor) must find no serious or critical violation on any tab.
"""

import argparse
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
ADMIN = "adm_browser_test_token_0123456789abcdef"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A webhook endpoint on loopback whose answer the test sets (500 until told otherwise)."""

    def __init__(self):
        self.status = 500
        self.received = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                receiver.received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(receiver.status)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if receiver.status < 300 else b"receiver is down for maintenance")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"


class Api:
    def __init__(self, base, token):
        self.base, self.token = base, token

    def call(self, method, path, body=None, token=None, raw=None, content_type="application/json"):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {token or self.token}")
        if data is not None:
            request.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read()
                return response.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def ok(self, method, path, body=None, **kw):
        status, data = self.call(method, path, body, **kw)
        assert 200 <= status < 300, f"{method} {path}: {status} {data}"
        return data


def start_server(binary, data_dir, port):
    env = dict(os.environ)
    env.update({
        "LOGBOOK_DATA_DIR": data_dir,
        "LOGBOOK_ADMIN_TOKEN": ADMIN,
        "LOGBOOK_WEBHOOK_ALLOW_PRIVATE": "true",
        "LOGBOOK_WEBHOOK_RETRY_SCHEDULE": "0s,1s",
        "RUST_LOG": "warn",
    })
    process = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    break
        except Exception:
            time.sleep(0.2)
    else:
        process.kill()
        raise SystemExit("the server did not become ready")
    threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True).start()
    return process, lines


def seed(api, receiver, down_url):
    """A small project like a user's first day: requests of every kind, two endpoints (one down),
    an import, and logs of an integration with bodies to search."""
    api.ok("POST", "/v1/webhooks", {"url": receiver.url, "event_types": ["order.*"], "description": "Order service"})
    api.ok("POST", "/v1/webhooks", {"url": down_url, "event_types": ["order.*"], "description": "Legacy ERP (down)"})
    now = time.time()
    logs = []
    for i in range(60):
        failed = i % 5 == 0
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600 * 20 + i * 1100))
        logs.append({
            "occurred_at": at, "channel": "shopify" if i % 2 else "stripe", "method": "POST", "path": f"/orders/{1000 + i}",
            "endpoint": "POST /orders/{id}", "http_status": 502 if failed else 201, "duration_ms": 20 + i,
            "customer_id": f"cus_{i % 4}", "request_body": {"order": 1000 + i, "sku": "TEA-GREEN" if i % 3 else "COFFEE-DARK"},
            "response_body": {"error": "upstream timeout"} if failed else {"ok": True, "id": f"ord_{i}"},
        })
    api.ok("POST", "/v1/logs", {"logs": logs})
    for i in range(3):
        api.ok("POST", "/v1/events", {"type": "order.created", "source_id": f"ord_{i}", "data": {"order": i, "total": 10 + i}})
    csv = "type,source_id,customer.email\n" + "".join(f"order.imported,imp_{i},c{i}@example.com\n" for i in range(40)) + "badrow\n"
    imported = api.ok("POST", "/v1/imports", raw=csv.encode(), content_type="text/csv")
    for _ in range(200):
        task = api.ok("GET", f"/v1/tasks/{imported['task_id']}")
        if task["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    # Wait until every sendout has settled (the down endpoint and the failing receiver end failed).
    for _ in range(300):
        pending = api.ok("GET", "/v1/webhook-sendouts?status=pending&status=retrying&limit=1")["data"]
        if not pending:
            break
        time.sleep(0.2)
    return imported


class Browser:
    def __init__(self, base, shots):
        options = webdriver.ChromeOptions()
        options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        for arg in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--window-size=1440,1000", "--disable-dev-shm-usage"]:
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = webdriver.ChromeService(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
        self.driver = webdriver.Chrome(options=options, service=service)
        self.driver.set_script_timeout(30)
        self.base, self.shots = base, shots
        self.wait = WebDriverWait(self.driver, 15)
        self.axe = (HERE / "vendor" / "axe.min.js").read_text()

    def go(self, hash_):
        self.driver.get(f"{self.base}/{hash_}")

    def find(self, css):
        return self.wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))

    def visible(self, css):
        return self.wait.until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)))

    def click(self, css):
        # A live change may draw the element again between finding and clicking it.
        for attempt in range(5):
            try:
                return self.wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR, css))).click()
            except StaleElementReferenceException:
                if attempt == 4:
                    raise

    def text_in(self, css, text, timeout=15):
        WebDriverWait(self.driver, timeout).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))

    def rows(self, css="#list tbody tr[data-id]"):
        return [r for r in self.driver.find_elements(By.CSS_SELECTOR, css) if r.get_attribute("data-id")]

    def shot(self, name):
        if self.shots:
            time.sleep(0.3)
            self.driver.save_screenshot(str(pathlib.Path(self.shots) / f"{name}.png"))

    def console_errors(self):
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def accessibility(self, name):
        self.driver.execute_script(self.axe)
        result = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))));")
        bad = [v for v in result if v["impact"] in ("serious", "critical")]
        check(not bad, f"{name}: accessibility violations {json.dumps(bad, indent=1)}")


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def step(name):
    print(f"  ✓ {name}", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default=str(ROOT / "target" / "debug" / "logbook"))
    parser.add_argument("--screenshots", default=os.environ.get("BROWSER_SCREENSHOTS"))
    args = parser.parse_args()
    if args.screenshots:
        os.makedirs(args.screenshots, exist_ok=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir:
        server, output = start_server(args.binary, data_dir, port)
        browser = None
        try:
            admin = Api(base, ADMIN)
            project = admin.ok("POST", "/v1/projects", {"name": "Tea Shop", "time_zone": "Europe/Berlin"})
            user = admin.ok("POST", f"/v1/projects/{project['id']}/users", {"name": "Ada Lovelace", "email": "ada@example.com"})
            api = Api(base, project["server_key"])
            receiver = Receiver()
            down_url = f"http://127.0.0.1:{free_port()}/hooks"
            imported = seed(api, receiver, down_url)
            browser = Browser(base, args.screenshots)
            run(browser, api, user, receiver, down_url, imported)
            errors = browser.console_errors()
            check(not errors, f"console errors: {errors}")
            step("no console errors")
        except Exception:
            if browser:
                browser.shot("failure")
                print("browser console:", browser.driver.get_log("browser"), file=sys.stderr)
            print("".join(output[-40:]), file=sys.stderr)
            raise
        finally:
            if browser:
                browser.driver.quit()
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:  # open streams hold a graceful stop; the test is over
                server.kill()
    print("browser tests passed")


def run(b, api, user, receiver, down_url, imported):
    d = b.driver
    # Sign in.
    b.go("")
    b.find("input[name=token]").send_keys(user["token"])
    b.shot("00-sign-in")
    b.click("#signin")
    b.find("#tabs a[aria-current=page]")
    b.text_in("#who", "Tea Shop")
    b.find("#list tbody tr")
    step("sign in with a user token")
    b.accessibility("sign-in and logs")

    # Logs: the seeded rows, a filter that narrows them, the histogram.
    b.go("#/logs?range=24h")
    b.find("#chart svg.histogram")
    WebDriverWait(d, 15).until(lambda _: len(b.rows()) >= 50)
    all_rows = len(b.rows())
    b.shot("01-logs")
    Select(b.find("#filter-attr")).select_by_value("status")
    value = b.find("#filter-value")
    value.send_keys("failure")
    b.click("#filter-add")
    b.click("#filter-apply")
    b.find(".chips [data-filter=status]")
    WebDriverWait(d, 15).until(lambda _: 0 < len(b.rows()) < all_rows)
    failures = b.rows()
    check(all(r.find_elements(By.CSS_SELECTOR, ".b-failure") for r in failures), "every row is a failure")
    check("status=failure" in d.current_url, "the filter is in the URL")
    step(f"a filter narrows the logs ({all_rows} → {len(failures)})")
    # Body search through the builder, as a user types it.
    Select(b.find("#filter-attr")).select_by_value("request_body_contains")
    b.find("#filter-value").send_keys("coffee-dark", Keys.ENTER)
    WebDriverWait(d, 15).until(lambda _: "request_body_contains" in d.current_url)
    WebDriverWait(d, 15).until(lambda _: 0 < len(b.rows()) < len(failures) + 1)
    b.shot("02-logs-filtered")
    b.accessibility("logs filtered")

    # A log's JSON, and the chain from a publishing request to its sendouts.
    published = api.ok("GET", "/v1/logs?endpoint=POST%20/v1/events&limit=1")["data"][0]
    b.go(f"#/logs?endpoint=POST%20/v1/events&open={published['id']}")
    b.visible("#drawer")
    b.text_in("#drawer-title", published["id"])
    b.find("#drawer .json .k")
    b.text_in("#chain", "Sendout")
    b.text_in("#chain", "order.created")
    check(b.driver.find_elements(By.CSS_SELECTOR, "#copy-curl"), "copy as cURL is offered")
    b.shot("03-log-detail")
    sendout_link = b.find("#chain a[href*='open=snd_']")
    sendout_id = sendout_link.text
    sendout_link.click()
    b.text_in("#drawer-title", sendout_id)
    b.find("#drawer a[href*='open=log_']")  # and back to the request that caused it
    step("a log's JSON opens and its chain reaches the sendout (and back)")

    # A failed sendout retried by hand turns delivered live.
    failed = api.ok("GET", f"/v1/webhook-sendouts?status=failed&limit=100")["data"]
    at_receiver = [s for s in failed if s["url"] == receiver.url]
    check(at_receiver, "seeded failures at the receiver")
    receiver.status = 200
    target = at_receiver[0]["id"]
    b.go(f"#/sendouts?status=failed&open={target}")
    b.text_in("#sendout-status", "failed")
    b.find("#failure-groups")
    b.shot("04-sendouts")
    b.accessibility("sendouts")
    b.click("#sendout-retry")
    b.text_in("#sendout-status", "delivered", timeout=20)
    b.text_in(f"#list tr[data-id='{target}']", "delivered", timeout=20)
    step("a failed sendout is retried and turns delivered live")

    # A group retry: dry run first, then a task whose progress is followed.
    expected = [g for g in api.ok("GET", "/v1/webhook-sendouts/failure-groups")["data"] if g["url"] == receiver.url][0]["count"]
    b.go("#/sendouts?status=failed")
    b.find("#failure-groups")

    def group_row(_):
        rows = [r for r in d.find_elements(By.CSS_SELECTOR, "#failure-groups tbody tr") if receiver.url in r.text]
        return rows[0] if rows and rows[0].find_elements(By.CSS_SELECTOR, "td")[2].text == str(expected) else None

    row = WebDriverWait(d, 15).until(group_row)  # the groups follow the retry above live
    row.find_element(By.CSS_SELECTOR, ".retry-group").click()
    b.text_in("#retry-count", f"{expected} sendout")
    b.shot("05-retry-preview")
    b.click("#retry-confirm")
    b.text_in("#drawer-title", "Task task_")
    b.text_in("#drawer", "done", timeout=20)
    for _ in range(100):
        left = [s for s in api.ok("GET", "/v1/webhook-sendouts?status=failed&limit=100")["data"] if s["url"] == receiver.url]
        if not left:
            break
        time.sleep(0.2)
    check(not left, f"the group's sendouts were all sent again: {left}")
    step(f"a group retry of {expected} sendouts runs as a task")

    # Background tasks: the import with its errors.
    b.go(f"#/tasks?open={imported['task_id']}")
    b.find(f"#list tr[data-id='{imported['task_id']}']")
    b.text_in("#drawer", "has 1 fields, the header has 3")
    b.shot("06-tasks")
    b.accessibility("tasks")
    step("the tasks tab shows the import and its row error")

    # Export the filtered logs from the Logs tab, then browse it with a search.
    b.go("#/logs?range=24h&status=failure")
    b.find("#list tbody tr")
    b.click("#export-logs")
    b.find("input[name=field][value=request_body]").click()
    b.click("#export-submit")
    b.text_in("#drawer-title", "Export exp_")
    b.text_in("#drawer", "done", timeout=30)
    b.text_in("#export-browse-status", "ready", timeout=30)
    b.shot("07-export")
    b.click("#export-browse")
    b.find("#browse table")
    b.find("#browse-q").send_keys("COFFEE", Keys.ENTER)
    WebDriverWait(d, 15).until(lambda _: "q=COFFEE" in d.current_url)
    b.find("#browse tbody tr")
    browse_rows = [r for r in d.find_elements(By.CSS_SELECTOR, "#browse tbody tr") if "No row" not in r.text]
    check(browse_rows, "the search finds rows")
    browse_rows[0].find_element(By.CSS_SELECTOR, ".json-cell").click()
    b.visible("#modal")
    b.text_in("#modal-body", "COFFEE-DARK")
    b.shot("08-browse")
    b.accessibility("browse")
    d.find_element(By.CSS_SELECTOR, "#modal-close").click()
    step(f"an export is browsed with a search ({len(browse_rows)} rows)")

    # A shared URL reopens the same view in a fresh session.
    shared = d.current_url
    d.execute_script("sessionStorage.clear()")
    d.get(shared)
    b.find("input[name=token]").send_keys(user["token"], Keys.ENTER)
    b.find("#browse tbody tr")
    check(b.find("#browse-q").get_attribute("value") == "COFFEE", "the search is restored")
    step("a shared URL reopens the same view")

    # Webhooks page, keyboard shortcuts.
    b.go("#/webhooks")
    b.text_in("#list", "Legacy ERP")
    b.shot("09-webhooks")
    b.accessibility("webhooks")
    b.go("#/logs?range=24h")
    b.find("#list tbody tr[data-id]")
    d.find_element(By.TAG_NAME, "body").send_keys("j")
    d.switch_to.active_element.send_keys(Keys.ENTER)
    b.visible("#drawer")
    WebDriverWait(d, 5).until(lambda _: "open=log_" in d.current_url)
    d.switch_to.active_element.send_keys(Keys.ESCAPE)
    WebDriverWait(d, 5).until(lambda _: not d.find_element(By.ID, "drawer").is_displayed())
    step("webhooks page; j / Enter / Esc work")


if __name__ == "__main__":
    main()
