"""ModelThread: all model work on one thread, whichever gRPC handler thread asks, one step at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import torch

from sahara_sidecar.server import ModelThread


def test_every_caller_runs_on_the_same_model_thread() -> None:
    worker = ModelThread()
    seen: list[int] = []
    callers = [threading.Thread(target=lambda: seen.append(worker.call(threading.get_ident))) for _ in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(set(seen)) == 1, "one thread ran every call"
    assert seen[0] not in {c.ident for c in callers} | {threading.get_ident()}, "and it is none of the callers"


def test_the_model_thread_uses_the_thread_count_set_before_it_started() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        worker = ModelThread()
        torch.set_num_threads(2)  # later changes on other threads do not reach it
        assert worker.call(torch.get_num_threads) == 1
    finally:
        torch.set_num_threads(before)


def test_steps_advance_an_iterator_on_the_model_thread_and_pass_errors_through() -> None:
    worker = ModelThread()

    def work() -> Iterator[int]:
        yield threading.get_ident()
        yield threading.get_ident()
        raise RuntimeError("out of memory in step 3")

    steps = worker.steps(work())
    first, second = next(steps), next(steps)
    assert first == second == worker.call(threading.get_ident) != threading.get_ident()
    with pytest.raises(RuntimeError, match="step 3"):
        next(steps)


def test_two_requests_interleave_step_by_step_without_running_at_once() -> None:
    worker = ModelThread()
    running = threading.Semaphore(1)
    overlaps: list[str] = []

    def work(name: str) -> Iterator[str]:
        for _ in range(20):
            if not running.acquire(blocking=False):  # another step is running right now
                overlaps.append(name)
                yield name
                continue
            time.sleep(0.001)  # a step that takes a while: a concurrent one would see the semaphore taken
            running.release()
            yield name

    results: dict[str, list[str]] = {}
    callers = [
        threading.Thread(target=lambda n=name: results.setdefault(n, list(worker.steps(work(n))))) for name in "ab"
    ]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert results == {"a": ["a"] * 20, "b": ["b"] * 20}
    assert overlaps == []


def test_a_request_ends_after_its_last_item_without_waiting_behind_other_requests() -> None:
    worker = ModelThread()
    ran_after_last: list[bool] = []

    def work() -> Iterator[int]:
        yield 1
        yield 2
        ran_after_last.append(True)

    steps = worker.steps(work(), last=lambda item: item == 2)
    assert [next(steps), next(steps)] == [1, 2]
    started, release = threading.Event(), threading.Event()
    other = threading.Thread(target=worker.call, args=(lambda: (started.set(), release.wait(5)),))
    other.start()
    assert started.wait(5), "another request's step occupies the model thread"
    with pytest.raises(StopIteration):
        next(steps)
    assert other.is_alive(), "the stream ended while the other step still ran: no step was queued behind it"
    assert ran_after_last == []
    release.set()
    other.join()
