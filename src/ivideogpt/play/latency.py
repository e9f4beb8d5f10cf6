"""Click-to-frame latency: the page's measurement beside the server's split (transformer, decoder, the rest)."""

from __future__ import annotations

import statistics
import threading
from collections import deque

PARTS = ("click_to_frame", "server", "transformer", "decoder", "prefill", "simulator")


class LatencyLog:
    """The last `keep` samples (milliseconds) of each part; medians on demand.

    click_to_frame: from the click to the frame shown, measured by the page; server: from the request
    to the reply; transformer / decoder: the forward that sampled the frame's tokens / turned them into
    pixels (per batch: concurrent tabs share them); prefill: re-prefilling the window; simulator: the real Push-T.
    """

    def __init__(self, keep: int = 200) -> None:
        self._samples = {part: deque(maxlen=keep) for part in PARTS}
        self._lock = threading.Lock()

    def add(self, **parts: float) -> None:
        """Record one step's parts (those given)."""
        with self._lock:
            for part, milliseconds in parts.items():
                self._samples[part].append(float(milliseconds))

    def clear(self) -> None:
        with self._lock:
            for samples in self._samples.values():
                samples.clear()

    def medians(self) -> dict[str, float | None]:
        """The median of each part in milliseconds (None before its first sample), and the sample counts."""
        with self._lock:
            return {part: statistics.median(s) if s else None for part, s in self._samples.items()}

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {part: len(s) for part, s in self._samples.items()}

    def summary(self) -> str:
        """One line for the terminal, e.g. `click-to-frame median 92 ms (transformer 51, decoder 22, ...)`."""
        med, counts = self.medians(), self.counts()
        shown = ", ".join(f"{part} {med[part]:.0f}" for part in PARTS[1:] if med[part] is not None)
        head = ("click-to-frame median " + (f"{med['click_to_frame']:.0f} ms over {counts['click_to_frame']} steps"
                                            if med["click_to_frame"] is not None else "not measured yet"))
        return f"{head} (medians in ms: {shown})" if shown else head
