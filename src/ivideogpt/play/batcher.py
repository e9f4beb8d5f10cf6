"""Group commit for one model shared by many request threads, run on a thread of its own.

A request thread queues its job and waits. The model thread takes every job queued meanwhile as one
batch (one forward for all the tabs that asked), runs it, and hands each job its result. Batches
never overlap, and every model call runs on that one long-lived thread: torch's per-thread state
(its OpenMP team, oneDNN's scratchpads) is set up once and warmed by `PlayEngine.warm_up`, instead
of in whichever short-lived request thread of the server's pool found the model idle.
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

    def __init__(self, run: Callable[[list[Job]], list[Any]], name: str = "model") -> None:
        self._run = run
        self._queue: list[_Ticket] = []
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._name = name
        self._closed = False
        self.batch_sizes: list[int] = []
        """the size of every batch run so far (the last 1000)."""

    def submit(self, job: Job) -> Any:
        """Run `job` in the next batch and return its result (or raise the batch's error)."""
        ticket = _Ticket(job)
        with self._changed:
            if self._closed:
                raise RuntimeError(f"the {self._name} batcher is closed")
            if self._thread is None:  # started on first use, so an unused batcher holds no thread
                self._thread = threading.Thread(target=self._serve, name=self._name, daemon=True)
                self._thread.start()
            self._queue.append(ticket)
            self._changed.notify_all()
            while not ticket.done:
                self._changed.wait()
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def close(self) -> None:
        """Stop the model thread once the jobs already queued have run; later submits are refused."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _serve(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._closed:
                    self._changed.wait()
                if not self._queue:  # closed and nothing left to run
                    return
                batch, self._queue = self._queue, []
            self._run_batch(batch)
            with self._changed:
                for ticket in batch:
                    ticket.done = True
                self._changed.notify_all()

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
