"""Group commit: jobs that arrive while a batch runs go together into the next one; a failure is contained."""

from __future__ import annotations

import threading

import pytest

from ivideogpt.play.batcher import Batcher


def test_jobs_waiting_on_a_running_batch_run_together_in_order() -> None:
    release, started = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def run(jobs: list[int]) -> list[int]:
        batches.append(list(jobs))
        if len(batches) == 1:
            started.set()
            release.wait(5)
        return [job * 10 for job in jobs]

    batcher: Batcher[int] = Batcher(run)
    results: dict[int, int] = {}
    first = threading.Thread(target=lambda: results.update({0: batcher.submit(0)}))
    first.start()
    started.wait(5)
    waiting = [threading.Thread(target=lambda j=j: results.update({j: batcher.submit(j)})) for j in (1, 2, 3)]
    for thread in waiting:
        thread.start()
    while len(batcher._queue) < 3:  # all three queued behind the running batch
        threading.Event().wait(0.01)
    release.set()
    for thread in [first, *waiting]:
        thread.join(5)
    assert results == {0: 0, 1: 10, 2: 20, 3: 30}
    assert batches[0] == [0] and sorted(batches[1]) == [1, 2, 3] and batcher.batch_sizes == [1, 3]


def test_a_failing_batch_fails_its_jobs_and_the_next_batch_runs() -> None:
    def run(jobs: list[int]) -> list[int]:
        if -1 in jobs:
            raise RuntimeError("bad job")
        return jobs

    batcher: Batcher[int] = Batcher(run)
    with pytest.raises(RuntimeError, match="bad job"):
        batcher.submit(-1)
    assert batcher.submit(4) == 4


def test_every_batch_runs_on_the_model_thread_and_close_stops_it() -> None:
    threads: list[threading.Thread] = []

    def run(jobs: list[int]) -> list[int]:
        threads.append(threading.current_thread())
        return jobs

    batcher: Batcher[int] = Batcher(run, name="test-model")
    submitters = [threading.Thread(target=batcher.submit, args=(j,)) for j in range(4)]
    for thread in submitters:
        thread.start()
    for thread in submitters:
        thread.join(5)
    assert batcher.submit(9) == 9
    assert {t.name for t in threads} == {"test-model"} and len(set(threads)) == 1  # one thread, none of the callers'
    model_thread = threads[0]
    batcher.close()
    assert not model_thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(1)
