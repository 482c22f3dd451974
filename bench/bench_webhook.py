"""How quickly does the story_insights receiver answer a signed delivery (stored before answering)?

    .venv/bin/python bench/bench_webhook.py [--deliveries 200]

Serves main.py's `story_insights_webhook` with functions-framework on a free loopback port, with a
local lake in a temporary folder, POSTs `--deliveries` distinct signed deliveries (Meta's sample
payload, one story each) one after another, and prints the median and 95th percentile of the
answer time, then the time of a redelivery (the write-once no-op). No assertions on timing.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SECRET = secrets.token_hex(16)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body(n: int) -> bytes:
    value = {"media_id": str(18000000000000000 + n), "reach": 17, "impressions": 28, "exits": -1}
    entry = {
        "id": "17841400000000001",
        "time": 1547687043,
        "changes": [{"field": "story_insights", "value": value}],
    }
    return json.dumps({"object": "instagram", "entry": [entry]}).encode()


def headers(data: bytes) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), data, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deliveries", type=int, default=200)
    n = parser.parse_args().deliveries
    work = Path(tempfile.mkdtemp())
    (work / "accounts.toml").write_text('[accounts.NPI]\nig_user_id = "17841400000000001"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IG_", "STORAGE_"))}
    env.update(
        IG_ACCOUNTS_FILE=str(work / "accounts.toml"),
        STORAGE_URL=str(work / "lake"),
        IG_APP_SECRET=SECRET,
        IG_WEBHOOK_VERIFY_TOKEN=secrets.token_hex(8),
    )
    port = free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "functions-framework"),
            "--target",
            "story_insights_webhook",
            "--source",
            str(ROOT / "main.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        times = []
        with httpx.Client(timeout=30) as client:
            for i in range(n):
                data = body(i)
                start = time.perf_counter()
                client.post(url, content=data, headers=headers(data)).raise_for_status()
                times.append(time.perf_counter() - start)
            start = time.perf_counter()
            client.post(url, content=body(0), headers=headers(body(0))).raise_for_status()
            again = time.perf_counter() - start
        times.sort()
        p95 = times[max(int(len(times) * 0.95) - 1, 0)]
        print(
            f"{n} signed deliveries: median {statistics.median(times) * 1000:.1f} ms, "
            f"p95 {p95 * 1000:.1f} ms; a redelivery {again * 1000:.1f} ms"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
