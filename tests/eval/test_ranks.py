"""`ivideogpt evaluate` on 2 processes (torchrun, gloo on the CPU) writes what 1 process writes, and says bad input
once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ivideogpt.data.episode import Episode
from ivideogpt.eval.ranks import Ranks

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "pusht"  # a 64x64, 2-d action world model


def _evaluate(run_processes, out: Path, data: Path, i3d: Path, processes: int) -> str:
    """Run the command as `processes` processes; returns what they printed."""
    command = ["-m", "ivideogpt", "evaluate", "--checkpoint", SHIPPED, "--data", data, "--protocol", "custom",
               "--context-frames", "1", "--horizon", "3", "--action-conditioned", "--samples", "3",
               "--seeds", "0", "1", "2", "--i3d", i3d, "--output", out, "--no-progress"]
    return run_processes(command, processes=processes)


@pytest.mark.slow
def test_two_processes_write_what_one_writes(tmp_path: Path, i3d_file: Path, run_processes) -> None:
    rng = np.random.default_rng(0)
    for number in range(3):  # 3 videos x 3 seeds: 9 evaluations, the last round is one process's alone
        Episode(frames=rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8),
                actions=rng.uniform(-1, 1, (4, 2)).astype(np.float32)).save(tmp_path / "data" / f"ep{number}.npz")
    one, two = tmp_path / "one", tmp_path / "two"
    assert "(1 process)" in _evaluate(run_processes, one, tmp_path / "data", i3d_file, processes=1)
    printed = _evaluate(run_processes, two, tmp_path / "data", i3d_file, processes=2)
    assert printed.count("wrote") == 1 and "(2 processes)" in printed  # process 0 alone reports

    summary = json.loads((two / "results.json").read_text())
    assert summary["videos"] == 3 and summary["metrics"]["fvd"]["per_seed"][2] > 0
    for name in ("results.json", "videos.jsonl", "protocol.json", "results.md"):
        assert (two / name).read_bytes() == (one / name).read_bytes(), name  # identical, to the last digit
    arrays = sorted(p.relative_to(one) for p in one.rglob("*.npz"))
    assert arrays == sorted(p.relative_to(two) for p in two.rglob("*.npz")) and len(arrays) == 2 * 9
    for path in arrays:
        with np.load(one / path) as first, np.load(two / path) as second:
            assert all(np.array_equal(first[key], second[key]) for key in first.files), path


def _said(launch, *options: object) -> list[str]:
    """The lines `ivideogpt evaluate --baseline copy-last-frame --protocol custom --horizon 3 OPTIONS` wrote itself
    as 2 processes, which failed with status 2, as a single process would (the launcher then ends the other)."""
    done = launch(["-m", "ivideogpt", "evaluate", "--baseline", "copy-last-frame", "--protocol", "custom",
                   "--context-frames", "1", "--horizon", "3", "--no-progress", *options], processes=2, timeout=120)
    assert done.returncode != 0 and "exitcode  : 2" in done.stderr, done.stderr[-3000:]
    return [line for line in done.stderr.splitlines() if line.startswith("ivideogpt evaluate:")]


@pytest.mark.slow
def test_bad_input_found_by_every_process_is_said_once(tmp_path: Path, launch, no_weights) -> None:
    assert _said(launch, "--data", tmp_path / "nowhere") == [
        f"ivideogpt evaluate: {tmp_path / 'nowhere'} does not exist: give a folder of episode files (*.npz)"]


@pytest.mark.slow
def test_a_protocol_error_of_process_0_is_said_once(tmp_path: Path, launch, no_weights) -> None:
    Episode(frames=np.zeros((4, 16, 16, 3), np.uint8)).save(tmp_path / "data" / "ep0.npz")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "protocol.json").write_text('{"predictor": "another"}')  # another evaluation's results
    said = _said(launch, "--data", tmp_path / "data", "--output", tmp_path / "out")
    assert len(said) == 1 and said[0].startswith(f"ivideogpt evaluate: {tmp_path / 'out'} holds results of "), said


def test_one_process_shares_with_itself() -> None:
    ranks = Ranks.current()
    assert (ranks.rank, ranks.size, ranks.main) == (0, 1, True)
    assert ranks.share({"a": 1}) == {"a": 1} and ranks.collect(3) == [3]
