"""Full batches across accounts: the listing and insights operations of every account that
shares a token.

A Graph batch holds up to 50 operations under one token. Each account alone fills its batches
with its own calls (20 stories x 3 calls: a full batch and one of 10); when many accounts of one
token (an agency's system user) are in flight, `Packer` puts their pending operations in one queue
per token and sends them as full batches of 50: their listings first (one POST for 50 accounts),
then their insights calls. A part-filled batch goes out as soon as every
account of its token that is still capturing (`member()`) waits on the packer and no batch of
theirs is out (whose answers would bring their next calls), since no one else can fill it; at the
latest after LINGER_SECONDS (an account still listing, or pausing, must not
hold the others back for long). Callers that are no member (one account alone) send at once.

What stays per account: pacing (an account paused by its usage headers or a throttle queues
nothing until its pause is over), the answer to each of its operations (errors classified per
operation by the caller), and its counters: every account counts the operations it sent, and the
HTTP request of a shared batch is counted once, by the account of its first operation, so that
the accounts' counters add up to the run's. An error of the batch POST as a whole (after the
client's retries) reaches every account in it, as it would have alone.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ig_story_metrics.graph.errors import GraphError

if TYPE_CHECKING:
    from ig_story_metrics.graph.client import Exchange, GraphClient, Session

MAX_BATCH = 50
LINGER_SECONDS = 0.3  # the longest a part-filled batch waits for operations of other accounts


@dataclass(slots=True)
class _Call:
    """One `batch()` call: its answers, and one future its account awaits (one per call, not per
    operation: a fleet's run has 61,000 operations). The account waits on the packer until its
    last operation is answered (not until its coroutine resumes: by then it may be about to send
    its next calls)."""

    session: Session
    queue: _Queue
    answers: list[Exchange | BaseException | None]  # None: not answered yet
    unanswered: int
    done: asyncio.Future[None]

    def settle(self, index: int, answer: Exchange | BaseException) -> None:
        if self.unanswered <= 0 or self.answers[index] is not None:
            return  # answered already, or the call was given up (cancelled)
        self.answers[index] = answer
        self.unanswered -= 1
        if self.unanswered == 0:
            self.queue.stop_waiting(self.session)
            if not self.done.done():
                self.done.set_result(None)

    def give_up(self) -> None:
        """Cancelled before its answers: it waits no more, later answers are dropped."""
        if self.unanswered > 0:
            self.unanswered = 0
            self.queue.stop_waiting(self.session)


@dataclass(slots=True)
class _Op:
    session: Session
    url: str
    call: _Call
    index: int  # in the call's answers

    def settle(self, answer: Exchange | BaseException) -> None:
        self.call.settle(self.index, answer)


@dataclass(slots=True)
class _Queue:
    ops: list[_Op] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    members: int = 0  # accounts of this token still capturing
    waiting: Counter[int] = field(default_factory=Counter)  # id(session) -> calls waiting here
    in_flight: int = 0  # batches sent, not yet answered

    def idle(self) -> bool:
        """Every member waits on the packer and no batch is out: no answer can bring more."""
        return self.in_flight == 0 and len(self.waiting) >= self.members

    def stop_waiting(self, session: Session) -> None:
        self.waiting[id(session)] -= 1
        if self.waiting[id(session)] <= 0:
            del self.waiting[id(session)]


class Packer:
    """One per client (one host): queues by token, sends full batches."""

    def __init__(self, client: GraphClient, linger: float = LINGER_SECONDS) -> None:
        self._client = client
        self._linger = linger
        self._queues: dict[str, _Queue] = {}
        self._sending: set[asyncio.Task[None]] = set()

    @contextmanager
    def member(self, session: Session) -> Iterator[None]:
        """While the block runs, part-filled batches of this token may wait for this account."""
        queue = self._queue(session)
        queue.members += 1
        try:
            yield
        finally:
            queue.members -= 1
            self._flush_if_idle(queue)

    def _queue(self, session: Session) -> _Queue:
        return self._queues.setdefault(session.token.get_secret_value(), _Queue())

    def _flush_if_idle(self, queue: _Queue) -> None:
        if queue.ops and queue.idle():
            self._send(queue, MAX_BATCH)

    async def batch(self, session: Session, relative_urls: Sequence[str]) -> list[Exchange]:
        """The answers to `relative_urls`, sent in batches shared with other accounts of the
        same token; raises the batch POST's GraphError when one of them failed as a whole."""
        await self._client.pace(session)
        if not relative_urls:
            return []
        loop = asyncio.get_running_loop()
        queue = self._queue(session)
        call = _Call(
            session, queue, [None] * len(relative_urls), len(relative_urls), loop.create_future()
        )
        ops = [_Op(session, url, call, i) for i, url in enumerate(relative_urls)]
        queue.ops.extend(ops)
        queue.waiting[id(session)] += 1
        while len(queue.ops) >= MAX_BATCH:
            self._send(queue, MAX_BATCH)
        # whether the others are all waiting too is seen once every account ready to run has run
        # (at the start of a run, the accounts after this one have not queued their listing yet)
        loop.call_soon(self._flush_if_idle, queue)
        if queue.ops and queue.timer is None:
            queue.timer = loop.call_later(self._linger, self._send, queue, MAX_BATCH)
        try:
            await call.done
        finally:
            call.give_up()  # when cancelled before its answers
            self._flush_if_idle(queue)
        answered: list[Exchange] = []
        for answer in call.answers:
            if isinstance(answer, BaseException):
                raise answer
            assert answer is not None  # noqa: S101 - done: every operation is answered
            answered.append(answer)
        return answered

    def _send(self, queue: _Queue, size: int) -> None:
        if queue.timer is not None:
            queue.timer.cancel()
            queue.timer = None
        taken, queue.ops = queue.ops[:size], queue.ops[size:]
        if taken:
            queue.in_flight += 1
            task = asyncio.ensure_future(self._post(queue, taken))
            self._sending.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._sending.discard)

    async def _post(self, queue: _Queue, ops: list[_Op]) -> None:
        try:
            await self._answer(ops)
        finally:
            queue.in_flight -= 1
            self._flush_if_idle(queue)

    async def _answer(self, ops: list[_Op]) -> None:
        lead = ops[0].session
        sent_before = lead.counters.http_requests
        own = sum(1 for op in ops if op.session is lead)
        try:
            answers = await self._client.post_batch(lead, [op.url for op in ops], operations=own)
        except GraphError as exc:
            _count_others(ops, lead, lead.counters.http_requests - sent_before)
            for op in ops:
                op.settle(exc)
            return
        except BaseException as exc:  # a bug, or cancellation: no account waits forever
            for op in ops:
                op.settle(exc)
            raise
        _count_others(ops, lead, lead.counters.http_requests - sent_before)
        for op, answer in zip(ops, answers, strict=True):
            op.settle(answer)


def _count_others(ops: Sequence[_Op], lead: Session, attempts: int) -> None:
    """The operations of the accounts other than the lead, once per attempt of the POST."""
    others: Counter[int] = Counter(id(op.session) for op in ops if op.session is not lead)
    sessions = {id(op.session): op.session for op in ops}
    for key, count in others.items():
        sessions[key].counters.operations += count * attempts
