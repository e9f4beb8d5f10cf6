"""Runs in real processes: SIGKILL then --resume matches an uninterrupted run; 2 processes match 1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_toy import ENV, read_losses, write_toy_shards

from ivideogpt.train import checkpoint as ckpt

SCRIPT = Path(__file__).with_name("train_toy.py")


def _kill_after_first_checkpoint(out: Path, *args: str) -> int:
    """Start the toy script, SIGKILL it once a checkpoint exists; returns that checkpoint's step."""
    process = subprocess.Popen([sys.executable, str(SCRIPT), str(out), *args], env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while ckpt.find_latest(out / "checkpoints") is None:
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not (out / "summary.json").exists()
    return ckpt.step_of(ckpt.find_latest(out / "checkpoints"))


@pytest.mark.slow
def test_sigkill_then_resume_reproduces_every_loss(tmp_path: Path, run_processes) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_processes([SCRIPT, straight, "--steps", "16", "--save-every", "4"])

    stopped_at = _kill_after_first_checkpoint(killed, "--steps", "16", "--save-every", "4", "--sleep", "0.1")
    assert stopped_at is not None and stopped_at < 16

    run_processes([SCRIPT, killed, "--steps", "16", "--save-every", "4", "--resume", "latest"])
    assert list(read_losses(killed)) == list(range(1, 17))
    assert read_losses(killed) == read_losses(straight)  # exactly, dropout and data order included
    assert read_losses(killed, "val") == read_losses(straight, "val")


@pytest.mark.slow
def test_two_processes_agree_with_one(tmp_path: Path, run_processes) -> None:
    single, double = tmp_path / "single", tmp_path / "double"
    run_processes([SCRIPT, double, "--steps", "6", "--save-every", "3", "--dropout", "0", "--grad-accum", "2"],
                  processes=2)
    run_processes([SCRIPT, single, "--steps", "6", "--save-every", "3", "--dropout", "0"])

    assert json.loads((double / "summary.json").read_text())["world_size"] == 2
    assert json.loads((single / "summary.json").read_text())["world_size"] == 1
    one, two = read_losses(single), read_losses(double)
    assert list(one) == list(two) == list(range(1, 7))
    assert list(two.values()) == pytest.approx(list(one.values()), rel=1e-5)
    assert read_losses(double, "val").values() == pytest.approx(list(read_losses(single, "val").values()), rel=1e-5)
    assert sorted(p.name for p in (double / "checkpoints" / "step_000006" / "rng").iterdir()) == \
        ["rank0.json", "rank1.json"]


@pytest.mark.slow
def test_two_processes_with_two_workers_stream_each_sample_once_per_epoch(tmp_path: Path, run_processes) -> None:
    names = write_toy_shards(tmp_path / "shards")
    out = tmp_path / "run"
    run_processes([SCRIPT, out, "--stream", tmp_path / "shards", "--workers", "2", "--steps", "24", "--save-every",
                   "24"], processes=2)
    assert json.loads((out / "summary.json").read_text())["world_size"] == 2
    ranks = [json.loads((out / f"keys_rank{r}.json").read_text()) for r in range(2)]
    assert [len(keys) for keys in ranks] == [24 * 4, 24 * 4]  # micro-batch 4 per process per step
    seen = [key.split("|") for keys in ranks for key in keys]
    for epoch in ("0", "1"):  # every consumer got past both (the 3:1 weights give "small" a quarter of the draws)
        for source, keys in names.items():
            got = sorted((key, segment) for e, key, segment in seen if e == epoch and key.startswith(source + "/"))
            assert got == sorted((key, segment) for key in keys for segment in ("0", "1")), (epoch, source)
    share = sum(key.startswith("big/") for _, key, _ in seen) / len(seen)
    assert share == pytest.approx(0.75, abs=0.1)  # 3 standard deviations of 192 draws
    state = json.loads((out / "checkpoints" / "step_000024" / "trainer_state.json").read_text())
    assert sorted(state["data_position"]["stream"]["positions"]) == ["0", "1", "2", "3"]


@pytest.mark.slow
def test_streamed_run_killed_and_resumed_trains_on_the_same_samples(tmp_path: Path, run_processes) -> None:
    write_toy_shards(tmp_path / "shards")
    stream = ("--stream", str(tmp_path / "shards"), "--workers", "2", "--steps", "8", "--save-every", "3")
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_processes([SCRIPT, straight, *stream])
    stopped_at = _kill_after_first_checkpoint(killed, *stream, "--sleep", "0.1")
    assert stopped_at is not None and stopped_at < 8
    run_processes([SCRIPT, killed, *stream, "--resume", "latest"])
    assert read_losses(killed) == read_losses(straight) and list(read_losses(killed)) == list(range(1, 9))
    after = json.loads((killed / "keys_rank0.json").read_text())
    assert after == json.loads((straight / "keys_rank0.json").read_text())[stopped_at * 8:]
