"""Admission control of `supertiny serve`: a bounded number of requests running, a bounded
queue waiting, a deadline per request, and generations that stop when nobody waits for them.

    admission = Admission(limits, metrics)
    slot = await admission.enter(request, Deadline(limits.request_timeout_s))  # 429: QueueFull
    with contextlib.closing(slot):
        generation = await slot.run(backend.chat, chat_request, slot.keep_going)

`enter` admits at once while fewer than `max_concurrency` requests run; otherwise the request
waits in a first-come-first-served queue of at most `max_queue`, and beyond that `QueueFull`
is raised (the app answers 429 with `Retry-After`). While it waits, and while its generation
runs, the client's connection and the deadline are polled every `POLL_S`: a client that hangs
up raises `ClientGone`, a deadline that passes `DeadlineExceeded`.

A `Slot` runs blocking backend calls in worker threads (one pool, as many threads as requests
may run). Its `keep_going` is the backend's `on_delta` callback: it turns False once the slot
is stopped, and the backends then end the generation at the next token (the same way a
streamed response ends when its client hangs up). The place is given back only when the last
worker has returned, so that a stopped generation still counts against `max_concurrency` until
it really ends: the bound holds for the model, not only for HTTP.

Everything here runs on the event loop thread except the workers, which touch only the slot's
stop flag (a `threading.Event`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from supertiny.serve.limits import Limits

POLL_S = 0.1
"""How often a waiting or running request checks its client and its deadline."""


class Client(Protocol):
    """What admission needs of the HTTP request (Starlette's `Request` has it)."""

    async def is_disconnected(self) -> bool: ...


class Gauges(Protocol):
    """Where admission reports its counts (`serve/metrics.py`'s `Metrics` has these)."""

    def admission(self, running: int, waiting: int) -> None: ...


class QueueFull(Exception):
    """Every running place is taken and the queue is full."""

    def __init__(self, running: int, waiting: int):
        super().__init__(f"{running} requests running and {waiting} waiting")
        self.running, self.waiting = running, waiting


class ClientGone(Exception):
    """The client closed its connection before the answer was ready."""


class DeadlineExceeded(Exception):
    """The request's deadline passed before the answer was ready."""


class Deadline:
    """`seconds` from now (None: never)."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.started = time.monotonic()

    def remaining(self) -> float | None:
        """Seconds left (at least 0), or None without a deadline."""
        if self.seconds is None:
            return None
        return max(0.0, self.started + self.seconds - time.monotonic())

    def expired(self) -> bool:
        return self.remaining() == 0.0

    def waited(self) -> float:
        return time.monotonic() - self.started


async def watch(future: asyncio.Future, client: Client, deadline: Deadline) -> None:
    """Wait until `future` is done; raise `ClientGone` or `DeadlineExceeded` first if the
    client hangs up or the deadline passes (the future itself is left alone)."""
    while not future.done():
        remaining = deadline.remaining()
        timeout = POLL_S if remaining is None else min(POLL_S, remaining)
        await asyncio.wait({future}, timeout=timeout)
        if future.done():
            return
        if await client.is_disconnected():
            raise ClientGone()
        if deadline.expired():
            raise DeadlineExceeded()


class Admission:
    """At most `max_concurrency` slots held, at most `max_queue` requests waiting for one."""

    def __init__(self, limits: Limits, gauges: Gauges):
        self.max_running = limits.max_concurrency
        self.max_waiting = limits.max_queue
        self.running = 0
        self._waiters: deque[asyncio.Future] = deque()
        self._gauges = gauges
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=limits.max_concurrency, thread_name_prefix="supertiny-generate"
        )

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def check_room(self) -> None:
        """`QueueFull` now if `enter` would refuse: a cheap early answer under overload,
        before the request's body is read and parsed."""
        if self.running >= self.max_running and len(self._waiters) >= self.max_waiting:
            raise QueueFull(self.running, len(self._waiters))

    async def enter(self, client: Client, deadline: Deadline) -> Slot:
        """A slot for this request, once one is free; `QueueFull` at once if none is free and
        the queue is full; `ClientGone` or `DeadlineExceeded` while it waits."""
        if self.running < self.max_running and not self._waiters:
            self.running += 1
            self._report()
            return Slot(self, client, deadline)
        if len(self._waiters) >= self.max_waiting:
            raise QueueFull(self.running, len(self._waiters))
        turn = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        self._report()
        try:
            await watch(turn, client, deadline)
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # admitted just as it gave up: pass the place on
            else:
                turn.cancel()
                self._waiters.remove(turn)
                self._report()
            raise
        return Slot(self, client, deadline)

    def release(self) -> None:
        """Give a place back: to the first request still waiting, if any."""
        self.running -= 1
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                self.running += 1
                turn.set_result(None)
                break
        self._report()

    def close(self) -> None:
        """Stop taking work; running workers finish on their own."""
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _report(self) -> None:
        self._gauges.admission(self.running, len(self._waiters))


class Slot:
    """One admitted request: runs its backend calls, one at a time, in worker threads."""

    def __init__(self, admission: Admission, client: Client, deadline: Deadline):
        self._admission = admission
        self._client = client
        self.deadline = deadline
        self.stopped = threading.Event()
        self._worker: asyncio.Future | None = None
        self._closed = False

    def keep_going(self, text: str = "", logprobs: Any = None) -> bool:
        """The backend's `on_delta`: False once the slot is stopped (the text is not kept)."""
        return not self.stopped.is_set()

    def start(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future:
        """Run `fn(*args)` in a worker thread; the slot is held until it returns."""
        loop = asyncio.get_running_loop()
        self._worker = loop.run_in_executor(self._admission.executor, fn, *args)
        return self._worker

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """`fn(*args)` in a worker thread, watched: if the client hangs up or the deadline
        passes, the slot is stopped (the backend ends the generation at its next token) and
        `ClientGone` or `DeadlineExceeded` is raised at once. Errors of `fn` are raised."""
        worker = self.start(fn, *args)
        try:
            await watch(worker, self._client, self.deadline)
        except BaseException:
            self.stopped.set()
            raise
        return worker.result()

    def close(self) -> None:
        """Stop what still runs and give the place back once the last worker has returned.
        Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.stopped.set()
        worker = self._worker
        if worker is not None and not worker.done():
            worker.add_done_callback(self._after_worker)
        else:
            self._admission.release()

    def _after_worker(self, worker: asyncio.Future) -> None:
        if not worker.cancelled():
            worker.exception()  # retrieved: nobody waits for this answer any more
        self._admission.release()
