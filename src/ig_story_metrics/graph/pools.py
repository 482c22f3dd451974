"""The connections of one Graph client: several small httpx pools, used least loaded first.

httpx's pool scans all its connections for every request it places (and again as each one
finishes), so one pool of 32 connections costs far more CPU per request than eight of 4, and a
queue of a thousand waiting requests inside it costs quadratic time. Requests here wait at a pool's
own gate, and only as many as it has connections are inside httpx at once.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import httpx

# HTTP requests in flight per client (host). Meta answers a batch in one to a few seconds: 64 carry
# 1,000 accounts' 1,220 batches in about 40 s (32 took twice that); with 100 ms per request
# (the benchmark), the first round of 50 accounts goes out at once.
MAX_CONNECTIONS = 64
POOL_SIZE = 4  # connections per httpx pool
TLS_EXIT_WAIT_SECONDS = 10.0  # the longest an exit waits for the TLS context being built


_tls: list[Future[ssl.SSLContext]] = []  # the one being built, or built
_tls_lock = threading.Lock()


def prepare_tls_context() -> None:
    """Start building the TLS context of every client in a worker thread. Loading the CA bundle
    takes 30 to 40 ms, during which OpenSSL releases the interpreter: started well before the
    first client is made (the console script starts it before it imports the CLI, __main__.py),
    it costs that client nothing."""
    _tls_future(inline=False)


def tls_context() -> ssl.SSLContext:
    """The TLS settings of every client, built once per process (a warm function instance runs
    many runs): by the worker thread if it was started, here otherwise."""
    return _tls_future(inline=True).result()


def _tls_future(*, inline: bool) -> Future[ssl.SSLContext]:
    with _tls_lock:
        if not _tls:
            _tls.append(Future())
            if inline:
                _build_tls(_tls[0])
            else:
                thread = threading.Thread(target=_build_tls, args=(_tls[0],), daemon=True)
                thread.start()
                # A daemon ends with the process (`cli.leave()` need not wait for it), but a
                # normal exit must not tear the interpreter down under OpenSSL: it crashed with
                # SIGSEGV in 105 of 150 exits right after the start. The exit hooks wait for it.
                atexit.register(thread.join, TLS_EXIT_WAIT_SECONDS)
        return _tls[0]


def _build_tls(future: Future[ssl.SSLContext]) -> None:
    try:
        future.set_result(httpx.create_ssl_context())
    except BaseException as exc:  # the caller of tls_context() gets it, as if it built it
        future.set_exception(exc)


@dataclass(slots=True)
class _Pool:
    """One httpx client, made when first needed, and the requests it may carry at once."""

    make: Callable[[], httpx.AsyncClient]
    client: httpx.AsyncClient | None = None
    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(POOL_SIZE))
    load: int = 0  # requests sent or waiting to be

    def busy(self) -> int:
        return self.load

    @property
    def http(self) -> httpx.AsyncClient:
        if self.client is None:  # a few ms each: a run of five accounts needs two or three
            self.client = self.make()
        return self.client


class Pools:
    """`max_connections` connections to `base_url`, in pools of POOL_SIZE."""

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None,
        timeout: float,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        make = functools.partial(
            httpx.AsyncClient,
            base_url=base_url.rstrip("/") + "/",
            transport=transport,
            timeout=timeout,
            limits=httpx.Limits(max_connections=POOL_SIZE),
            headers={"User-Agent": "ig-story-metrics"},
            follow_redirects=False,
            verify=tls_context(),
        )
        self._pools = [_Pool(make) for _ in range(max(1, max_connections // POOL_SIZE))]
        self.sending = asyncio.Event()  # set by the first request sent (see GraphClient.sending)

    def build_request(self, method: str, url: str, **options: object) -> httpx.Request:
        return self._pools[0].http.build_request(method, url, **options)  # type: ignore[arg-type]

    async def carry(self, request: httpx.Request) -> tuple[httpx.Response, bytes]:
        """Send on the least loaded pool; the response and its body, read whole."""
        pool = min(self._pools, key=_Pool.busy)
        pool.load += 1
        self.sending.set()
        try:
            async with pool.gate:
                response = await pool.http.send(request)
                return response, response.content
        finally:
            pool.load -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            if pool.client is not None:
                await pool.client.aclose()
