"""The sessions behind the page: start, step (concurrent tabs in one forward), undo, reset and export.

Every use of the shared `WorldModel` goes through one `Batcher` and runs on its model thread, so
request threads never overlap on it. A step runs the transformer (`step(decode=False)`) and the
decoder (`decode_latest`) apart, so the latency log can say where the time goes. A session whose
rollout fills the training window (`RolloutState.fills`, the rule `WindowedRollout` re-anchors by) is
re-prefilled from its newest `context_frames` frames first: memory per session stays bounded.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ivideogpt.frames import to_model, to_uint8
from ivideogpt.play.batcher import Batcher
from ivideogpt.play.latency import LatencyLog
from ivideogpt.play.model import PlayModel
from ivideogpt.play.session import Session, SessionStore, Step, Undo
from ivideogpt.world_model import RolloutState


class PlayError(Exception):
    """A request the engine refuses, with the HTTP status that says why (4xx) and a message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(eq=False)
class _Prefill:
    frames: np.ndarray
    """(Tc, H, W, 3) uint8."""
    actions: np.ndarray | None
    """(Tc - 1, A) raw."""


@dataclass(eq=False)
class _Forward:
    session: Session
    action: np.ndarray
    """(A,) raw."""


@dataclass
class _Stepped:
    state: RolloutState
    frame: np.ndarray
    reward: float | None
    timings: dict[str, float]
    batch: int


class PlayEngine:
    """Sessions of one `PlayModel`: at most `max_steps` steps each, the last `max_undo` of them undoable."""

    def __init__(self, model: PlayModel, store: SessionStore | None = None, max_undo: int = 32,
                 max_steps: int = 1000, on_step: Callable[[int], None] | None = None) -> None:
        self.model, self.store = model, SessionStore() if store is None else store  # an empty store is falsy
        self.max_undo, self.max_steps = max_undo, max_steps
        self.on_step = on_step
        """called with the number of steps served so far after each one (the command prints the latency)."""
        self.steps_served = 0
        self.latency = LatencyLog()
        self.batcher: Batcher[_Prefill | _Forward] = Batcher(self._run, name="play-model")

    # --- requests ---------------------------------------------------------------------------
    def create(self, start: str = "reset", seed: int | None = None, clip: int = 0, real: bool = False) -> Session:
        """A new session from a fresh simulator reset (Push-T) or from held-out clip number `clip`."""
        starts = self.model.describe()["starts"]
        if start not in starts:
            raise PlayError(422, f"start must be one of {starts} for this model, got {start!r}")
        if real and not self.model.is_pusht:
            raise PlayError(422, "the real simulator runs only beside a Push-T model")
        if seed is not None and seed < 0:
            raise PlayError(422, f"seed must be >= 0 (a simulator reset seed), got {seed}")
        seed = int(np.random.default_rng().integers(2**31)) if seed is None else seed
        simulator = self._simulator() if real or start == "reset" else None
        try:
            if start == "reset":
                context, actions = self._simulator_start(simulator, seed)
                details: dict[str, Any] = {"start": start, "seed": seed}
            else:
                context, actions = self._clip_start(clip, simulator)
                details = {"start": start, "clip": clip, "episode": self.model.clips[clip].stem}
        except BaseException:
            if simulator is not None:
                simulator.close()
            raise
        if not real and simulator is not None:
            simulator.close()
            simulator = None
        state = self.batcher.submit(_Prefill(context, actions))
        session = Session(id=self.store.new_id(), context=context, context_actions=actions, start=details,
                          state=state, real=simulator)
        session.first = Undo(state, None if simulator is None else simulator.snapshot())
        self.store.add(session)
        return session

    def session(self, session_id: str) -> Session:
        """The live session `session_id`, else a 404 that says it may have been dropped."""
        session = self.store.get(session_id)
        if session is None:
            raise PlayError(404, f"unknown session {session_id!r}: it never existed, was closed, or was dropped "
                                 f"(idle over {self.store.idle_seconds:.0f} s, or the least recently used of more than "
                                 f"{self.store.max_sessions}); start a new one")
        return session

    def step(self, session_id: str, action: Any, click_to_frame_ms: float | None = None) -> tuple[Session, Step]:
        """Advance a session by one frame under raw `action` (A,) (and the real simulator beside it)."""
        begun = time.perf_counter()
        raw = self.check_action(action)
        session = self.session(session_id)
        with session.lock:
            if len(session.steps) >= self.max_steps:
                raise PlayError(409, f"this session reached {self.max_steps} steps: reset it or start a new one")
            stepped = self.batcher.submit(_Forward(session, raw))
            step = Step(action=raw, frame=stepped.frame, reward=stepped.reward)
            undo = Undo(session.state)
            if session.real is not None:
                undo.real = session.real.snapshot()
                sim_begun = time.perf_counter()
                step.real_frame, step.real_reward = session.real.step(raw)
                stepped.timings["simulator"] = 1000 * (time.perf_counter() - sim_begun)
                step.psnr = frame_psnr(step.frame, step.real_frame)
            session.undo = (session.undo + [undo])[-self.max_undo:] if self.max_undo > 0 else []
            session.state = stepped.state
            session.steps.append(step)
        if click_to_frame_ms is not None and math.isfinite(click_to_frame_ms) and click_to_frame_ms >= 0:
            stepped.timings["click_to_frame"] = click_to_frame_ms
        self.latency.add(server=1000 * (time.perf_counter() - begun), **stepped.timings)
        self.steps_served += 1
        if self.on_step is not None:
            self.on_step(self.steps_served)
        return session, step

    def undo(self, session_id: str) -> Session:
        """Take back the newest step (up to `max_undo` of them)."""
        session = self.session(session_id)
        with session.lock:
            if not session.steps:
                raise PlayError(409, "nothing to undo: the session is at its start")
            if not session.undo:
                raise PlayError(409, f"only the last {self.max_undo} steps can be undone")
            back = session.undo.pop()
            session.steps.pop()
            session.state = back.state
            if session.real is not None:
                session.real.restore(back.real)
        return session

    def restart(self, session_id: str) -> Session:
        """Back to the session's start frames (the same start, every step dropped)."""
        session = self.session(session_id)
        with session.lock:
            session.steps, session.undo, session.state = [], [], session.first.state
            if session.real is not None:
                session.real.restore(session.first.real)
        return session

    def remove(self, session_id: str) -> None:
        if not self.store.remove(session_id):
            raise PlayError(404, f"unknown session {session_id!r}")

    def video(self, session_id: str, suffix: str) -> bytes:
        """The session so far as a GIF or MP4 (dream beside real when the simulator runs), 4x nearest upscaled."""
        from ivideogpt.media import side_by_side, write_video

        if suffix not in ("gif", "mp4"):
            raise PlayError(422, f"export format must be gif or mp4, got {suffix!r}")
        session = self.session(session_id)
        with session.lock:
            dream, real = session.frames(), session.real_frames()
        video = side_by_side(dream, real, scale=4, labels=None if real is None else ["dream", "real"])
        with tempfile.TemporaryDirectory() as folder:
            path = write_video(Path(folder) / f"session.{suffix}", video, fps=5)
            return path.read_bytes()

    def warm_up(self, steps: int = 3) -> None:
        """Step a throwaway session a few times, so the first click does not pay for lazy initialisation
        (the model thread's included)."""
        session = self.create(self.model.describe()["starts"][0], seed=0, real=self.model.is_pusht)
        low, high = self.model.action_box()
        for _ in range(steps):
            self.step(session.id, (np.asarray(low) + np.asarray(high)) / 2)
        self.remove(session.id)
        self.latency.clear()
        self.steps_served = 0

    def close(self) -> None:
        """Stop the model thread (after the steps already asked for); later requests are refused."""
        self.batcher.close()

    def check_action(self, action: Any) -> np.ndarray:
        """A raw action as (A,) float32, or a 422 saying what is wrong with it."""
        dim = self.model.action_dim
        meaning = " (the pusher's target x, y in board pixels)" if self.model.is_pusht else ""
        try:
            raw = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise PlayError(422, f"action must be a list of {dim} numbers{meaning}, got {action!r}") from None
        if raw.shape != (dim,):
            raise PlayError(422, f"action must be a list of {dim} numbers{meaning}, got shape {list(raw.shape)}")
        if not np.all(np.isfinite(raw)):
            raise PlayError(422, f"action must hold finite numbers, got {raw.tolist()}")
        low, high = self.model.action_box()
        if np.any(raw < low) or np.any(raw > high):
            raise PlayError(422, f"action {raw.tolist()} is outside the action bounds low {low} high {high}")
        return raw.astype(np.float32)

    # --- starts -----------------------------------------------------------------------------
    def _simulator(self) -> Any:
        from ivideogpt.play.real import RealPushT

        return RealPushT(self.model.resolution, self.model.action_repeat)

    def _simulator_start(self, simulator: Any, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Start frames of a simulator reset: the first, then the pusher held still for the rest of the context."""
        frames, actions = [simulator.reset(seed=seed)], []
        for _ in range(self.model.context_frames - 1):
            actions.append(simulator.hold_still())
            frames.append(simulator.step(actions[-1])[0])
        return np.stack(frames), np.stack(actions).astype(np.float32) if actions else None

    def _clip_start(self, clip: int, simulator: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """Start frames of held-out clip `clip` (its first frames and actions); the simulator, if any, put there."""
        from ivideogpt.data import load_episode

        clips, tc = self.model.clips, self.model.context_frames
        if not 0 <= clip < len(clips):
            raise PlayError(422, f"clip must be in [0, {len(clips) - 1}], got {clip}")
        episode = load_episode(clips[clip])
        if len(episode) < tc or (tc > 1 and episode.actions is None):
            raise PlayError(422, f"{clips[clip].name} is too short or has no actions for {tc} start frames")
        if simulator is not None:
            if episode.states is None or episode.states.shape[1] < 5:
                raise PlayError(422, f"{clips[clip].name} records no Push-T state to start the real simulator from")
            simulator.reset(state=episode.states[tc - 1])
        actions = None if tc == 1 else episode.actions[: tc - 1].astype(np.float32)
        return episode.frames[:tc], actions

    # --- the model: every call below runs inside a batch --------------------------------------
    def _run(self, jobs: list[_Prefill | _Forward]) -> list[RolloutState | _Stepped]:
        """Prefills one by one, then the steps: sessions at the same point in one forward."""
        results: dict[int, Any] = {}
        for i, job in enumerate(jobs):
            if isinstance(job, _Prefill):
                results[i] = self._prefill(job.frames, job.actions)
        forwards = [(i, job) for i, job in enumerate(jobs) if isinstance(job, _Forward)]
        states, prefill_ms = {}, {}
        for i, job in forwards:
            states[i] = job.session.state
            if states[i].fills(self.model.window):
                begun = time.perf_counter()
                states[i] = self._prefill(*job.session.recent(self.model.context_frames))
                prefill_ms[i] = 1000 * (time.perf_counter() - begun)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, _ in forwards:
            groups.setdefault((states[i].length, states[i].num_context), []).append(i)
        for rows in groups.values():
            stepped = self._forward([states[i] for i in rows], np.stack([jobs[i].action for i in rows]))
            for i, result in zip(rows, stepped):
                if i in prefill_ms:
                    result.timings["prefill"] = prefill_ms[i]
                results[i] = result
        return [results[i] for i in range(len(jobs))]

    def _prefill(self, frames: np.ndarray, actions: np.ndarray | None) -> RolloutState:
        """A batch-1 rollout state from (Tc, H, W, 3) uint8 frames and (Tc - 1, A) raw actions."""
        world_model = self.model.world_model
        model_actions = None if actions is None else self.model.to_model_actions(actions)[None]
        return world_model.reset(to_model(frames)[None].to(world_model.device), model_actions)

    def _forward(self, states: list[RolloutState], actions: np.ndarray) -> list[_Stepped]:
        """One transformer forward and one decode for all `states` (B rows, same length); the new states apart."""
        world_model = self.model.world_model
        # a fresh state to advance: the sessions' own ones stay as they were (undo keeps them)
        world_model.set_state(RolloutState.concat(states) if len(states) > 1 else states[0].repeat(1))
        begun = time.perf_counter()
        _, rewards = world_model.step(self.model.to_model_actions(actions), decode=False)
        decoding = time.perf_counter()
        frames = to_uint8(world_model.decode_latest())  # (B, H, W, 3)
        timings = {"transformer": 1000 * (decoding - begun), "decoder": 1000 * (time.perf_counter() - decoding)}
        state = world_model.state
        return [_Stepped(state.index([row]) if len(states) > 1 else state, frames[row],
                         None if rewards is None else float(rewards[row]), dict(timings), len(states))
                for row in range(len(states))]


def frame_psnr(predicted: np.ndarray, real: np.ndarray) -> float:
    """PSNR in dB between two (H, W, 3) uint8 frames (the evaluation's definition)."""
    from ivideogpt.eval.metrics import psnr

    return float(psnr(to_model(predicted)[None], to_model(real)[None])[0])

