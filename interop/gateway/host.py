"""A `kassa up` on a temporary data directory, and a TMS client signing like a terminal.

The TMS signature (crates/kassa-tms/src/signature.rs): lowercase hex HMAC-SHA256 under the
terminal's `tms_credential` (as bytes) over
``KASSA-TMS-V1\\n{method}\\n{path}\\n{terminal}\\n{timestamp_ms}\\n{nonce}\\n{session}\\n{sha256(body)}``.
"""

import hashlib
import hmac
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import time

START_DEADLINE_S = 180.0
STOP_DEADLINE_S = 60.0
START_ATTEMPTS_MAX = 3


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class KassaHost:
    """`kassa up --data-dir DIR --http … --iso … --sim …` with its output in DIR/kassa.log."""

    def __init__(self, binary, data_dir):
        self.binary = binary
        self.data_dir = data_dir
        self.process = None
        self.log_path = os.path.join(data_dir, "kassa.log")

    def start(self):
        # A port picked free may be taken before kassa binds it: kassa then exits with a
        # one-line reason, and another set of ports is tried.
        for _attempt in range(START_ATTEMPTS_MAX):
            self.http = ("127.0.0.1", free_port())
            self.iso = ("127.0.0.1", free_port())
            self.sim = ("127.0.0.1", free_port())
            env = {k: v for k, v in os.environ.items() if not k.startswith("KASSA_")}
            env["KASSA_LOG"] = "info"
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [self.binary, "up", "--data-dir", self.data_dir,
                     "--http", "%s:%d" % self.http, "--iso", "%s:%d" % self.iso, "--sim", "%s:%d" % self.sim],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                )
            if self.wait_ready():
                return
        raise RuntimeError(f"kassa up did not become ready; see {self.log_path}:\n{self.log_tail()}")

    def wait_ready(self):
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                connection = http.client.HTTPConnection(*self.http, timeout=2)
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200:
                    return True
            except OSError:
                pass
            time.sleep(0.2)
        self.process.kill()
        self.process.wait()
        return False

    def log_tail(self, lines=30):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except OSError:
            return ""

    def credentials(self):
        with open(os.path.join(self.data_dir, "demo", "credentials.json"), encoding="utf-8") as file:
            return json.load(file)

    def alive(self):
        return self.process is not None and self.process.poll() is None

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


class Tms:
    """A terminal's signed TMS client."""

    def __init__(self, http_addr, terminal_id, credential):
        self.http = http_addr
        self.terminal_id = terminal_id
        self.credential = credential.encode()

    def call(self, path, session="", body=None, method="POST"):
        payload = json.dumps(body if body is not None else {}).encode()
        timestamp_ms = int(time.time() * 1000)
        nonce = "py-" + secrets.token_hex(12)
        canonical = "\n".join([
            "KASSA-TMS-V1", method, path, self.terminal_id, str(timestamp_ms), nonce, session,
            hashlib.sha256(payload).hexdigest(),
        ])
        signature = hmac.new(self.credential, canonical.encode(), hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-Kassa-Terminal": self.terminal_id,
            "X-Kassa-Timestamp": str(timestamp_ms),
            "X-Kassa-Nonce": nonce,
            "X-Kassa-Signature": signature,
        }
        if session:
            headers["X-Kassa-Session"] = session
        connection = http.client.HTTPConnection(*self.http, timeout=30)
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        text = response.read()
        try:
            answer = json.loads(text) if text else None
        except ValueError:
            answer = text.decode(errors="replace")
        return response.status, answer
