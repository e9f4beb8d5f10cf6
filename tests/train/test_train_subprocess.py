"""Runs in real processes: SIGKILL then --resume matches an uninterrupted run; 2 processes match 1."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_toy import ENV, read_losses

from ivideogpt.train import checkpoint as ckpt

SCRIPT = Path(__file__).with_name("train_toy.py")


@pytest.mark.slow
def test_sigkill_then_resume_reproduces_every_loss(tmp_path: Path, run_processes) -> None:
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_processes([SCRIPT, straight, "--steps", "16", "--save-every", "4"])

    process = subprocess.Popen([sys.executable, str(SCRIPT), str(killed), "--steps", "16", "--save-every", "4",
                                "--sleep", "0.1"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while ckpt.find_latest(killed / "checkpoints") is None:
        assert process.poll() is None, process.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists()
    stopped_at = ckpt.step_of(ckpt.find_latest(killed / "checkpoints"))
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
