"""Group commit for one model shared by many request threads: whoever finds it idle runs everything waiting.

A request thread queues its job; if no batch is running it takes every queued job and runs them as
one batch (one forward for all the tabs that asked meanwhile), else it waits for the running batch
to finish and looks again. Batches never overlap, so the model is used by one thread at a time.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

Job = TypeVar("Job")


@dataclass(eq=False)
class _Ticket:
    job: Any
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class Batcher(Generic[Job]):
    """Runs `run(jobs) -> results` (one result per job, in order) on batches of concurrently submitted jobs."""

    def __init__(self, run: Callable[[list[Job]], list[Any]]) -> None:
        self._run = run
        self._queue: list[_Ticket] = []
        self._running = False
        self._changed = threading.Condition()
        self.batch_sizes: list[int] = []
        """the size of every batch run so far (the last 1000)."""

    def submit(self, job: Job) -> Any:
        """Run `job` in the next batch and return its result (or raise the batch's error)."""
        ticket = _Ticket(job)
        with self._changed:
            self._queue.append(ticket)
            while not ticket.done:
                if self._running:
                    self._changed.wait()
                    continue
                batch, self._queue, self._running = self._queue, [], True
                self._changed.release()
                try:
                    self._run_batch(batch)
                finally:
                    self._changed.acquire()
                    self._running = False
                    self._changed.notify_all()
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def _run_batch(self, batch: list[_Ticket]) -> None:
        self.batch_sizes = self.batch_sizes[-999:] + [len(batch)]
        try:
            results = self._run([t.job for t in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} jobs returned {len(results)} results")
            for ticket, result in zip(batch, results):
                ticket.result = result
        except BaseException as error:  # every job of the batch reports the failure; the server keeps running
            for ticket in batch:
                ticket.error = error
        for ticket in batch:
            ticket.done = True
