"""The reconcile queue: a key is queued once, never processed twice at once, never lost."""

from __future__ import annotations

import threading
import time
from collections import Counter

from kubesft.operator.workqueue import WorkQueue


def wait_until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_duplicate_keys_collapse_into_one_run() -> None:
    gate = threading.Event()
    runs: Counter[str] = Counter()

    def process(key: str) -> None:
        gate.wait(5)
        runs[key] += 1

    queue: WorkQueue[str] = WorkQueue(process, workers=1)
    queue.add("blocker")
    queue.start()
    wait_until(lambda: len(queue) == 0)  # the worker holds "blocker"
    for _ in range(50):
        queue.add("job-a")
    assert len(queue) == 1
    gate.set()
    wait_until(lambda: runs["job-a"] == 1)
    time.sleep(0.05)
    assert runs == {"blocker": 1, "job-a": 1}
    queue.stop()


def test_key_added_while_running_runs_again_but_never_concurrently() -> None:
    active: set[str] = set()
    overlaps: list[str] = []
    runs: Counter[str] = Counter()
    started = threading.Event()
    release = threading.Event()

    def process(key: str) -> None:
        if key in active:
            overlaps.append(key)
        active.add(key)
        runs[key] += 1
        if runs[key] == 1:
            started.set()
            release.wait(5)
        active.discard(key)

    queue: WorkQueue[str] = WorkQueue(process, workers=4)
    queue.start()
    queue.add("job-a")
    assert started.wait(5)
    queue.add("job-a")  # arrives while job-a is being reconciled: must not be lost
    queue.add("job-a")
    release.set()
    wait_until(lambda: runs["job-a"] == 2)
    time.sleep(0.05)
    assert runs["job-a"] == 2 and overlaps == []
    queue.stop()


def test_a_failing_key_does_not_stop_the_worker() -> None:
    done: list[str] = []

    def process(key: str) -> None:
        if key == "bad":
            raise RuntimeError("boom")
        done.append(key)

    queue: WorkQueue[str] = WorkQueue(process, workers=1)
    queue.start()
    queue.add("bad")
    queue.add("good")
    wait_until(lambda: done == ["good"])
    queue.stop()


def test_urgent_keys_run_first_and_a_queued_key_can_be_promoted() -> None:
    gate = threading.Event()
    order: list[str] = []

    def process(key: str) -> None:
        gate.wait(5)
        order.append(key)

    queue: WorkQueue[str] = WorkQueue(process, workers=1)
    queue.add("blocker")
    queue.start()
    wait_until(lambda: len(queue) == 0)  # the worker holds "blocker"
    for key in ("status-a", "status-b", "new-job", "status-c"):
        queue.add(key, urgent=key.startswith("new"))
    queue.add("status-b", urgent=True)  # its spec changed while it waited
    assert len(queue) == 4
    gate.set()
    wait_until(lambda: len(order) == 5)
    assert order == ["blocker", "new-job", "status-b", "status-a", "status-c"]
    queue.stop()
