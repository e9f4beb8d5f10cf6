"""The engine behind the page: batched steps equal single ones, bounded windows, undo and reset, clip starts."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ivideogpt.play.engine import PlayEngine, PlayError, _Forward
from ivideogpt.play.session import SessionStore


def test_sessions_stepped_in_one_forward_match_sessions_stepped_alone(slider_engine: PlayEngine) -> None:
    first = slider_engine.create("clip")
    second = slider_engine.create("clip")
    actions = np.asarray([[0.9, -0.9, 0.5], [-0.9, 0.9, -0.5]], np.float32)
    together = slider_engine._run([_Forward(first, actions[0]), _Forward(second, actions[1])])
    assert [r.batch for r in together] == [2, 2]
    for session, action, joint in zip((first, second), actions, together):
        alone = slider_engine._run([_Forward(session, action)])[0]
        assert alone.batch == 1
        assert np.abs(alone.frame.astype(int) - joint.frame.astype(int)).max() <= 1
        assert np.array_equal(alone.state.ids, joint.state.ids)
    assert not np.array_equal(together[0].frame, together[1].frame)  # the actions matter


def test_concurrent_tabs_share_forwards(slider_engine: PlayEngine) -> None:
    sessions = [slider_engine.create("clip") for _ in range(4)]
    barrier = threading.Barrier(len(sessions))

    def play(session_id: str) -> None:
        for _ in range(5):
            barrier.wait()
            slider_engine.step(session_id, [0.1, 0.2, 0.3])

    threads = [threading.Thread(target=play, args=(s.id,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(len(s.steps) == 5 for s in sessions)
    assert max(slider_engine.batcher.batch_sizes) > 1


def test_the_window_is_re_prefilled_so_memory_stays_bounded(slider_engine: PlayEngine) -> None:
    model = slider_engine.model
    session = slider_engine.create("clip")
    longest = model.world_model.layout.length(model.context_frames, model.window - model.context_frames)
    for _ in range(3 * model.window):
        slider_engine.step(session.id, [0.0, 0.5, -0.5])
        assert session.state.length <= longest
        assert session.state.num_context + session.state.num_future <= model.window
    assert slider_engine.latency.counts()["prefill"] > 0
    assert len(session.undo) <= slider_engine.max_undo


def test_undo_and_reset_bring_back_the_model_and_the_simulator(pusht_engine: PlayEngine) -> None:
    pytest.importorskip("gym_pusht")
    session = pusht_engine.create("reset", seed=2, real=True)
    start_agent = session.real.snapshot().agent_pos
    pusht_engine.step(session.id, [100.0, 100.0])
    after_one = (session.state.ids.clone(), session.real.snapshot())
    pusht_engine.step(session.id, [400.0, 400.0])
    pusht_engine.undo(session.id)
    assert np.array_equal(session.state.ids, after_one[0]) and session.real.snapshot() == after_one[1]
    pusht_engine.restart(session.id)
    assert not session.steps and session.real.snapshot().agent_pos == start_agent
    again = pusht_engine.step(session.id, [100.0, 100.0])[1]
    assert again.psnr is not None and again.real_frame is not None


def test_limits_and_refusals(slider_engine: PlayEngine) -> None:
    with pytest.raises(PlayError, match="only beside a Push-T model"):
        slider_engine.create("clip", real=True)
    with pytest.raises(PlayError, match=r"clip must be in \[0, 0\]"):
        slider_engine.create("clip", clip=3)
    with pytest.raises(PlayError, match="start must be one of"):
        slider_engine.create("reset")  # not a Push-T model: no simulator to reset
    limited = PlayEngine(slider_engine.model, max_steps=2, max_undo=1)
    session = limited.create("clip")
    limited.step(session.id, [0, 0, 0])
    limited.step(session.id, [0, 0, 0])
    with pytest.raises(PlayError, match="reached 2 steps") as refused:
        limited.step(session.id, [0, 0, 0])
    assert refused.value.status == 409
    limited.undo(session.id)
    with pytest.raises(PlayError, match="only the last 1 steps"):
        limited.undo(session.id)
    limited.close()


def test_the_engine_keeps_the_store_it_is_given(slider_model) -> None:
    store = SessionStore(max_sessions=1, idle_seconds=60.0)  # empty, so falsy: `--max-sessions` was ignored
    engine = PlayEngine(slider_model, store)
    try:
        first, second = engine.create("clip"), engine.create("clip")
        assert engine.store is store and len(store) == 1
        with pytest.raises(PlayError, match="unknown session") as dropped:
            engine.step(first.id, [0, 0, 0])
        assert dropped.value.status == 404 and engine.session(second.id) is second
    finally:
        engine.close()


def test_a_clip_start_uses_the_clip_frames_and_actions(slider_engine: PlayEngine) -> None:
    from ivideogpt.data import load_episode

    episode = load_episode(slider_engine.model.clips[0])
    session = slider_engine.create("clip")
    assert np.array_equal(session.context, episode.frames[:2])
    assert np.allclose(session.context_actions, episode.actions[:1])
    assert slider_engine.model.describe()["starts"] == ["clip"] and not slider_engine.model.is_pusht
