"""What was skipped while indexing or reading data, and why: counted, logged and summarised."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

logger = logging.getLogger("ivideogpt.data")


class DataError(RuntimeError):
    """The data cannot serve the request at all (no usable episodes, inconsistent sources)."""


@dataclass
class DataReport:
    """Counts of episodes found and used, plus every skipped item with its reason.

    `skip(where, reason, kind)` logs a warning naming the file and records it, so a bad file is
    never a crash deep in a data worker and never silently dropped.
    """

    found: int = 0
    used: int = 0
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (where, kind, reason)
    notes: list[str] = field(default_factory=list)

    def skip(self, where: str, reason: str, kind: str = "unreadable") -> None:
        """Record (and log) one skipped file or episode."""
        reason = reason if len(reason) <= 300 else reason[:297] + "..."
        self.skipped.append((str(where), kind, reason))
        logger.warning("skipping %s (%s): %s", where, kind, reason)

    def note(self, message: str) -> None:
        """Record (and log) a decision the user should know about, e.g. actions dropped."""
        self.notes.append(message)
        logger.warning("%s", message)

    @property
    def counts(self) -> Counter:
        """Number of skipped items per kind."""
        return Counter(kind for _, kind, _ in self.skipped)

    def merge(self, other: "DataReport") -> None:
        self.found += other.found
        self.used += other.used
        self.skipped.extend(other.skipped)
        self.notes.extend(other.notes)

    def summary(self, limit: int = 10) -> str:
        """Human-readable report: totals, counts per reason, the first `limit` skipped items."""
        lines = [f"episodes found: {self.found}, used: {self.used}, skipped: {len(self.skipped)}"]
        for kind, count in sorted(self.counts.items()):
            lines.append(f"  {kind}: {count}")
        for where, kind, reason in self.skipped[:limit]:
            lines.append(f"  - {where} ({kind}): {reason}")
        if len(self.skipped) > limit:
            lines.append(f"  ... and {len(self.skipped) - limit} more")
        lines.extend(f"note: {message}" for message in self.notes)
        return "\n".join(lines)

    def log(self) -> None:
        """Log the summary: as a warning when anything was skipped, else as info."""
        level = logging.WARNING if self.skipped else logging.INFO
        logger.log(level, "data report\n%s", self.summary())
