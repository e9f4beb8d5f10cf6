"""One browser tab's rollout: its model state, the frames so far, undo points, and the sessions' store."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ivideogpt.world_model import RolloutState


@dataclass
class Step:
    """What one step produced (and what undo takes back)."""

    action: np.ndarray
    """(A,) the raw action sent."""
    frame: np.ndarray
    """(H, W, 3) uint8 predicted frame."""
    reward: float | None
    real_frame: np.ndarray | None = None
    real_reward: float | None = None
    psnr: float | None = None


@dataclass
class Undo:
    """The state to go back to before a step: the model's rollout and the real simulator's bodies."""

    state: RolloutState
    real: Any = None


@dataclass
class Session:
    """A rollout from `context` (Tc frames) under the steps taken so far; `real` runs the simulator beside it."""

    id: str
    context: np.ndarray
    """(Tc, H, W, 3) uint8 start frames."""
    context_actions: np.ndarray | None
    """(Tc - 1, A) raw actions between the start frames."""
    start: dict[str, Any]
    state: RolloutState
    real: Any = None
    steps: list[Step] = field(default_factory=list)
    undo: list[Undo] = field(default_factory=list)
    first: Undo | None = None
    """the start itself, for reset."""
    last_seen: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """one request at a time per session (a double click steps twice, in order)."""

    def latest(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The newest predicted frame (H, W, 3) uint8 and the simulator's beside it (None without one)."""
        if not self.steps:
            return self.context[-1], None if self.real is None else self.context[-1]
        return self.steps[-1].frame, self.steps[-1].real_frame

    def frames(self) -> np.ndarray:
        """(Tc + steps, H, W, 3) uint8: the start frames, then every predicted frame."""
        return np.concatenate([self.context, np.stack([s.frame for s in self.steps])]) if self.steps else self.context

    def real_frames(self) -> np.ndarray | None:
        """(Tc + steps, H, W, 3) uint8 of the simulator beside the model, or None without one."""
        if self.real is None:
            return None
        if not self.steps:
            return self.context
        return np.concatenate([self.context, np.stack([s.real_frame for s in self.steps])])

    def recent(self, count: int) -> tuple[np.ndarray, np.ndarray | None]:
        """The newest `count` frames (count, H, W, 3) and the (count - 1, A) raw actions between them."""
        frames = [s.frame for s in self.steps[max(0, len(self.steps) - count):]] if count else []
        older = count - len(frames)  # the rest come from the start frames
        frames = list(self.context[max(0, len(self.context) - older):]) + frames if older else frames
        actions = [s.action for s in self.steps[max(0, len(self.steps) - (count - 1)):]] if count > 1 else []
        older = count - 1 - len(actions)
        if older > 0 and self.context_actions is not None:
            actions = list(self.context_actions[max(0, len(self.context_actions) - older):]) + actions
        return np.stack(frames), np.stack(actions) if actions else None


class SessionStore:
    """Sessions by id: at most `max_sessions` (the least recently used is dropped), none idle past `idle_seconds`."""

    def __init__(self, max_sessions: int = 16, idle_seconds: float = 600.0) -> None:
        if max_sessions < 1 or idle_seconds <= 0:
            raise ValueError(f"need max_sessions >= 1 and idle_seconds > 0, got {max_sessions} and {idle_seconds}")
        self.max_sessions, self.idle_seconds = max_sessions, idle_seconds
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(12)

    def add(self, session: Session) -> None:
        """Keep `session`, dropping idle ones and then the least recently used beyond `max_sessions`."""
        with self._lock:
            self._prune_locked()
            self._sessions[session.id] = session
            while len(self._sessions) > self.max_sessions:
                self._close(self._sessions.popitem(last=False)[1])

    def get(self, session_id: str) -> Session | None:
        """The session (marked as just used), or None when unknown or dropped."""
        with self._lock:
            self._prune_locked()
            session = self._sessions.get(session_id)
            if session is not None:
                session.last_seen = time.monotonic()
                self._sessions.move_to_end(session_id)
            return session

    def remove(self, session_id: str) -> bool:
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is not None:
            self._close(session)
        return session is not None

    def prune(self) -> int:
        """Drop the sessions idle for longer than `idle_seconds`; how many were dropped."""
        with self._lock:
            return self._prune_locked()

    def prune_every(self, seconds: float) -> threading.Thread:
        """Prune in a daemon thread every `seconds`, so idle sessions go even when no request comes."""
        def loop() -> None:
            while True:
                time.sleep(seconds)
                self.prune()

        thread = threading.Thread(target=loop, name="prune-sessions", daemon=True)
        thread.start()
        return thread

    def _prune_locked(self) -> int:
        now = time.monotonic()
        idle = [key for key, s in self._sessions.items() if now - s.last_seen > self.idle_seconds]
        for key in idle:
            self._close(self._sessions.pop(key))
        return len(idle)

    @staticmethod
    def _close(session: Session) -> None:
        if session.real is not None:
            session.real.close()
