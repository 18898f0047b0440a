"""Keys of objects to reconcile: each queued at most once, never worked on twice at once.

The shape of client-go's workqueue. kopf calls a handler for every watch event, and while
one runs it queues the object's further events, each with its whole body. Handing just
the key to this queue returns at once instead: memory stays at one entry per object, and
a burst of events for one object (a pod and its Job changing together) becomes one
reconcile, which reads everything afresh and so sees what each of those events announced.

Urgent keys (a new object or a new spec) are served before the others (children's status
changes, resyncs): under a burst of applies, every new SFTJob gets its trainer Job before
the operator goes back to mirroring pod phases.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger("kubesft.operator")
K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    """Two FIFOs (urgent first) of distinct keys processed by ``workers`` threads."""

    def __init__(self, process: Callable[[K], object], workers: int) -> None:
        self._process = process
        self._workers = workers
        self._queue: deque[K] = deque()
        self._urgent: deque[K] = deque()
        self._queued: set[K] = set()
        self._active: set[K] = set()
        self._again: set[K] = set()  # added while being processed: run once more after
        self._cond = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for i in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Workers finish what they are doing and exit; queued keys are dropped."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def add(self, key: K, *, urgent: bool = False) -> None:
        with self._cond:
            if key in self._queued:
                if urgent and key in self._queue:  # promote: O(n), only under bursts
                    self._queue.remove(key)
                    self._urgent.append(key)
                return
            if key in self._active:
                self._again.add(key)
                return
            self._queued.add(key)
            (self._urgent if urgent else self._queue).append(key)
            self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._queue) + len(self._urgent)

    def _next(self) -> K | None:
        with self._cond:
            while not (self._queue or self._urgent) and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            key = (self._urgent or self._queue).popleft()
            self._queued.discard(key)
            self._active.add(key)
            return key

    def _done(self, key: K) -> None:
        with self._cond:
            self._active.discard(key)
            if key in self._again:
                self._again.discard(key)
                self._queued.add(key)
                self._queue.append(key)
                self._cond.notify()

    def _work(self) -> None:
        while (key := self._next()) is not None:
            try:
                self._process(key)
            except Exception:  # one object's bug must not take a worker down
                log.exception("reconcile of %s failed", key)
            finally:
                self._done(key)
