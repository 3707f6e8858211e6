"""`kassa sim` on a temporary data directory, and a small HTTP receiver for notifications.

`kassa sim` has no `--data-dir`: its data directory comes from `KASSA_DATA_DIR` (every other
`KASSA_*` variable of the caller is cleared, as interop/gateway/host.py does). The wallet
simulator keeps its books and `wallet-credentials.json` in `<data-dir>/sim/`
(crates/kassa/src/sim.rs, `wallet_sim_dir`).
"""

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 30.0
START_ATTEMPTS_MAX = 3
HTTP_TIMEOUT_S = 15.0


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SimHost:
    """`kassa sim --sim 127.0.0.1:<port>` with its output in DIR/kassa-sim.log."""

    def __init__(self, binary, data_dir):
        self.binary = binary
        self.data_dir = data_dir
        self.process = None
        self.addr = None
        self.log_path = os.path.join(data_dir, "kassa-sim.log")

    @property
    def base_url(self):
        return "http://%s:%d" % self.addr

    def start(self):
        # A port picked free may be taken before kassa binds it: kassa then exits with a
        # one-line reason, and another port is tried.
        for _attempt in range(START_ATTEMPTS_MAX):
            self.addr = ("127.0.0.1", free_port())
            env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
            env["KASSA_LOG"] = "info"
            env["KASSA_DATA_DIR"] = self.data_dir
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [self.binary, "sim", "--sim", "%s:%d" % self.addr],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                )
            if self.wait_ready():
                return
        raise RuntimeError(f"kassa sim did not become ready; see {self.log_path}:\n{self.log_tail()}")

    def wait_ready(self):
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                status, _ = self.get("/sim/v1/statements/alipay/2020-01-01")
                if status == 200 and os.path.exists(self.credentials_path()):
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        self.process.kill()
        self.process.wait()
        return False

    def credentials_path(self):
        return os.path.join(self.data_dir, "sim", "wallet-credentials.json")

    def credentials(self):
        with open(self.credentials_path(), encoding="utf-8") as file:
            return json.load(file)

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return ""

    def request(self, method, path, body=None, headers=None):
        connection = http.client.HTTPConnection(*self.addr, timeout=HTTP_TIMEOUT_S)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def get(self, path):
        return self.request("GET", path)

    def post_json(self, path, value):
        status, body = self.request("POST", path, json.dumps(value).encode(), {"Content-Type": "application/json"})
        try:
            return status, json.loads(body)
        except ValueError:
            return status, body.decode(errors="replace")

    def stop(self):
        """SIGTERM and a clean exit; returns the exit status."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None


class Receiver:
    """A notification receiver on a free loopback port. Each path has a queue of the requests it
    got (`(content_type, body_bytes)`), and a list of answers to give in turn (the last one is
    repeated)."""

    def __init__(self):
        self.received = {}
        self.answers = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver.lock:
                    answers = receiver.answers.get(self.path) or [(200, "text/plain", b"")]
                    status, content_type, answer = answers[0]
                    if len(answers) > 1:
                        answers.pop(0)
                    inbox = receiver.received.setdefault(self.path, queue.Queue())
                inbox.put((self.headers.get("Content-Type", ""), body))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self.server.shutdown()
        self.server.server_close()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.server.server_address[1], path)

    def answer(self, path, *answers):
        """`answers`: `(status, content_type, body_bytes)`, given in turn."""
        with self.lock:
            self.answers[path] = list(answers)

    def next(self, path, timeout_s):
        """The next request received on `path`, or None after `timeout_s`."""
        with self.lock:
            inbox = self.received.setdefault(path, queue.Queue())
        try:
            return inbox.get(timeout=timeout_s)
        except queue.Empty:
            return None
