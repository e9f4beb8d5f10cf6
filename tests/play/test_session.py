"""The session store: bounded in number, and idle sessions dropped."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ivideogpt.play.session import Session, SessionStore


def session(key: str) -> Session:
    return Session(id=key, context=np.zeros((1, 4, 4, 3), np.uint8), context_actions=None, start={}, state=None)


def test_idle_sessions_are_dropped() -> None:
    store = SessionStore(max_sessions=4, idle_seconds=0.05)
    store.add(session("a"))
    assert store.get("a") is not None
    time.sleep(0.1)
    assert store.get("a") is None and len(store) == 0
    store.add(session("b"))
    time.sleep(0.1)
    assert store.prune() == 1


def test_the_least_recently_used_session_goes_when_full() -> None:
    store = SessionStore(max_sessions=2)
    store.add(session("a"))
    store.add(session("b"))
    store.get("a")  # a is used again: b is now the oldest
    store.add(session("c"))
    assert store.get("b") is None and store.get("a") is not None and store.get("c") is not None


def test_store_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="max_sessions"):
        SessionStore(max_sessions=0)


def test_recent_frames_come_with_the_actions_between_them() -> None:
    from ivideogpt.play.session import Step

    s = Session(id="s", context=np.zeros((2, 4, 4, 3), np.uint8), context_actions=np.ones((1, 2), np.float32),
                start={}, state=None)
    for value in (2, 3):
        s.steps.append(Step(action=np.full(2, value, np.float32), frame=np.full((4, 4, 3), value, np.uint8),
                            reward=None))
    frames, actions = s.recent(3)
    assert [int(f[0, 0, 0]) for f in frames] == [0, 2, 3] and actions[:, 0].tolist() == [2, 3]
    frames, actions = s.recent(1)
    assert len(frames) == 1 and actions is None


def test_recent_frames_reach_back_into_the_start_frames() -> None:
    from ivideogpt.play.session import Step

    s = Session(id="s", context=np.stack([np.full((4, 4, 3), v, np.uint8) for v in (7, 8)]),
                context_actions=np.full((1, 2), 5, np.float32), start={}, state=None)
    frames, actions = s.recent(2)
    assert [int(f[0, 0, 0]) for f in frames] == [7, 8] and actions[:, 0].tolist() == [5]
    s.steps.append(Step(action=np.full(2, 6, np.float32), frame=np.full((4, 4, 3), 9, np.uint8), reward=None))
    frames, actions = s.recent(3)
    assert [int(f[0, 0, 0]) for f in frames] == [7, 8, 9] and actions[:, 0].tolist() == [5, 6]
