"""Fixtures that run the real `tern` binary for integration tests.

The binary is TERN_BIN, or the release build in .build/release/tern. Each broker gets free
ports and its own data directory, and is stopped (SIGTERM, then SIGKILL) after the test.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TERN = os.environ.get("TERN_BIN", os.path.join(ROOT, ".build", "release", "tern"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A running `tern serve`. `restart()` keeps the data directory; `kill()` is kill -9."""

    def __init__(self, data_dir, settings=None, extra_args=None):
        self.data_dir = data_dir
        self.settings = dict(settings or {})
        self.extra_args = list(extra_args or [])
        self.port = free_port()
        self.metrics_port = free_port()
        self.proc = None
        self.log_path = os.path.join(data_dir, "broker.log")

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def args(self):
        a = [TERN, "serve", "--data-dir", self.data_dir, "--listen", f"127.0.0.1:{self.port}",
             "--advertise", f"127.0.0.1:{self.port}", "--metrics-listen", f"127.0.0.1:{self.metrics_port}"]
        for k, v in self.settings.items():
            a += ["--set", f"{k}={v}"]
        return a + self.extra_args

    def start(self, timeout=30, attempts=3, poll=0.05):
        # free_port() releases the port before tern binds it, so another process can take it
        # in between: on a bind failure pick new ports and try again.
        for attempt in range(attempts):
            try:
                return self._start(timeout, poll)
            except RuntimeError as e:
                if "ddress already in use" not in str(e) or attempt == attempts - 1:
                    raise
                self.port, self.metrics_port = free_port(), free_port()

    def _start(self, timeout, poll):
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tern exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(poll)
        raise RuntimeError(f"tern did not become ready:\n{self.log()}")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name):
        """Sum of a metric's samples whose line starts with `name` (labels included)."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self, timeout=20):
        """SIGTERM and wait: a graceful shutdown flushes and exits 0."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode if self.proc else None

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, **kwargs):
        self.stop()
        return self.start(**kwargs)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def make_broker():
    """Factory: make_broker(settings={...}) starts a broker; all are stopped afterwards."""
    made = []
    dirs = []

    def make(settings=None, extra_args=None, data_dir=None, start=True):
        if data_dir is None:
            d = tempfile.mkdtemp(prefix="tern-test-")
            dirs.append(d)
            data_dir = d
        b = Broker(data_dir, settings, extra_args)
        made.append(b)
        return b.start() if start else b

    yield make
    for b in made:
        b.kill()
    # Data directories go with the test (they held 40 GB after a few hundred runs); set
    # TERN_KEEP_TEST_DIRS=1 to keep them for a look.
    if not os.environ.get("TERN_KEEP_TEST_DIRS"):
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def broker(make_broker):
    return make_broker()
