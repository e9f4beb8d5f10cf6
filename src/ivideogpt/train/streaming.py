"""Training from a resumable stream (`data/stream.py`): where every consumer is, kept per batch and checkpointed.

A stream's consumer is one DataLoader worker of one process. Each of its batches arrives with
the consumer's position after its last item; the Trainer records the position of every batch it
actually trains on (not those the workers prefetched), so a checkpoint holds exactly where each
consumer stands, and `start` on resume continues every consumer there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from accelerate.utils import gather_object
from torch.utils.data import default_collate

log = logging.getLogger(__name__)
STREAM_KEYS = ("position", "consumer")  # item entries that describe the stream, not the sample


def check_share(stream: Any, rank: int, world_size: int, workers: int) -> None:
    """Raise the stream's DataError now when a consumer of process `rank` (one per DataLoader worker) has no data:
    found at its first batch instead, it would stop this process alone while the others wait for it mid-step."""
    per_process = max(1, workers)
    for consumer in range(rank * per_process, (rank + 1) * per_process):
        stream.check(consumer, world_size * per_process)


class PositionedCollate:
    """`collate_fn` over stream items, returning (batch, consumer, that consumer's position after the batch)."""

    def __init__(self, collate_fn: Callable[[list[Any]], Any] | None) -> None:
        self.collate_fn = collate_fn or default_collate

    def __call__(self, items: list[dict[str, Any]]) -> tuple[Any, int, Any]:
        samples = [{k: v for k, v in item.items() if k not in STREAM_KEYS} for item in items]
        return self.collate_fn(samples), items[-1]["consumer"], items[-1]["position"]


class StreamState:
    """The positions of a run's consumers: from the checkpoint, then updated by every batch trained on.

    Saved positions of another layout (number of processes x workers) cannot continue exactly:
    every consumer then begins where the stream's `restart` says (with a warning).
    """

    def __init__(self, stream: Any, consumers: int, saved: dict[str, Any] | None) -> None:
        self.stream, self.consumers, self.positions = stream, consumers, {}
        if saved and saved["consumers"] != consumers:
            log.warning("the stream was saved with %d consumers (processes x DataLoader workers), now %d: the "
                        "data order differs from an uninterrupted run", saved["consumers"], consumers)
            begin = stream.restart(list(saved["positions"].values()))
            self.positions = {str(c): begin for c in range(consumers)}
        elif saved:
            self.positions = dict(saved["positions"])

    def start(self, rank: int, world_size: int, taken: int) -> None:
        """Have the stream continue every consumer of process `rank` from its recorded position, after the
        `taken` batches this process has trained on (so its workers keep their turns)."""
        self.stream.start(rank, world_size, self.saved(), taken)

    def unpack(self, loaded: tuple[Any, int, Any]) -> Any:
        """The batch of a `PositionedCollate` result, recording its consumer's new position."""
        batch, consumer, position = loaded
        self.positions[str(consumer)] = position
        return batch

    def saved(self) -> dict[str, Any]:
        """This process's positions as `start` and checkpoints take them."""
        return {"consumers": self.consumers, "positions": dict(self.positions)}

    def gathered(self) -> dict[str, Any]:
        """Every process's positions (a collective call: all processes, at the same step)."""
        everyone = gather_object([self.positions])
        per_process = self.consumers // len(everyone)  # consumer c belongs to process c // per_process
        merged = {c: p for rank, positions in enumerate(everyone) for c, p in positions.items()
                  if int(c) // per_process == rank}
        return {"consumers": self.consumers, "positions": merged}
