"""`ivideogpt train tokenizer|transformer` end to end on a few synthetic episodes: train, resume, load; and from
converted tar shards, streamed."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

import ivideogpt
from ivideogpt.cli import main as cli
from ivideogpt.data.episode import Episode
from ivideogpt.data.sources.webdataset import add_episode
from ivideogpt.train import load_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL_TOKENIZER = ["--preset=tokenizer_tiny", "--tokenizer.down_channels=[8,8,8]", "--tokenizer.norm_groups=4",
                   "--tokenizer.embed_dim=8", "--tokenizer.attention_head_dim=8", "--tokenizer.codebook_size=32"]
SHORT = ["--data.segment_length=4", "--data.val_fraction=0.25", "--train.batch_size=2", "--train.log_every=1",
         "--train.val_every=2", "--train.val_batches=1", "--train.save_every=2", "--train.progress=false"]


@pytest.fixture()
def workdir(tmp_path: Path, monkeypatch) -> Path:
    """8 episodes of a moving blue square with 2-d actions, under data/pusht (the CPU recipes' path)."""
    rng = np.random.default_rng(0)
    for i in range(8):
        frames = np.full((10, 64, 64, 3), 255, np.uint8)
        for t in range(10):
            x, y = 8 + 4 * t, 8 + 3 * i
            frames[t, y:y + 6, x:x + 6] = (0, 0, 255)
        Episode(frames=frames, actions=rng.uniform(-1, 1, (10, 2)).astype(np.float32)).save(
            tmp_path / "data" / "pusht" / f"episode_{i:03d}.npz")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _train_losses(run: Path) -> dict[int, float]:
    lines = (run / "losses.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r["split"] == "train"}


@pytest.mark.slow
def test_tokenizer_then_transformer_then_resume(workdir: Path, capsys) -> None:
    assert cli(["train", "tokenizer", "--config", str(CONFIGS / "tokenizer_cpu.yaml"), *SMALL_TOKENIZER, *SHORT,
                "--data.sampled_future=1", "--train.max_steps=2", "--train.sample_every=2",
                "--train.out_dir=runs/tok"]) == 0
    tokenizer = load_model("runs/tok")
    assert type(tokenizer).__name__ == "CompressiveTokenizer" and not tokenizer.training
    assert list((workdir / "runs/tok/samples").glob("step_000002_reconstruction.gif"))

    trm = ["train", "transformer", "--config", str(CONFIGS / "transformer_cpu.yaml"), *SHORT,
           "--tokenizer_checkpoint=runs/tok", "--transformer.hidden_size=32", "--transformer.ffn_size=64",
           "--transformer.num_layers=1", "--train.max_steps=4", "--train.out_dir=runs/trm",
           "--objective.history_sampling=0.5"]  # its draws too must resume exactly
    capsys.readouterr()
    assert cli(trm) == 0
    assert "encoding tokens" not in capsys.readouterr().err  # train.progress=false: the token cache's bar too
    world_model = load_model("runs/trm")
    assert world_model.num_context == 2 and world_model.transformer.config.action_dim == 2
    assert world_model.transformer.config.codebook_size == 32  # taken from the tokenizer

    # a copy of the run that "crashed" after step 2, resumed from its directory alone
    shutil.copytree(workdir / "runs/trm", workdir / "runs/crashed")
    shutil.rmtree(workdir / "runs/crashed/checkpoints/step_000004")
    assert cli(["train", "transformer", "--resume", "runs/crashed"]) == 0  # continues there, not in runs/trm
    assert _train_losses(workdir / "runs/crashed") == _train_losses(workdir / "runs/trm")
    assert list(_train_losses(workdir / "runs/crashed")) == [1, 2, 3, 4]
    # with --config too (which names another out_dir), the copy still continues in its own folder
    shutil.rmtree(workdir / "runs/crashed")
    shutil.copytree(workdir / "runs/trm", workdir / "runs/crashed")
    shutil.rmtree(workdir / "runs/crashed/checkpoints/step_000004")
    with_config = [option for option in trm if not option.startswith("--train.out_dir")]
    assert cli([*with_config, "--resume", "runs/crashed"]) == 0
    assert (workdir / "runs/crashed/checkpoints/step_000004").is_dir()
    assert _train_losses(workdir / "runs/crashed") == _train_losses(workdir / "runs/trm")


def test_bad_options_exit_with_a_clear_message(workdir: Path, capsys) -> None:
    config = str(CONFIGS / "tokenizer_cpu.yaml")
    assert cli(["train", "tokenizer", "--config", config, "--train.lrr=1"]) == 2
    assert "unknown config key(s) train.lrr" in capsys.readouterr().err
    assert cli(["train", "tokenizer", "--config", config, "--train.lr", "1e-4"]) == 2
    assert "--section.field=value" in capsys.readouterr().err
    assert cli(["train", "tokenizer", "--config", config, "--train.max_steps=many"]) == 2
    assert "train.max_steps: expected an integer" in capsys.readouterr().err
    assert cli(["train", "transformer", "--config", str(CONFIGS / "transformer_cpu.yaml"),
                "--tokenizer_checkpoint=runs/none"]) == 2
    assert "no valid checkpoint under runs/none" in capsys.readouterr().err
    assert cli(["train", "tokenizer", "--resume"]) == 2
    assert "needs --config" in capsys.readouterr().err
    assert cli(["train", "tokenizer", "--config", config, "--resume", "runs/none"]) == 2  # said before indexing
    assert capsys.readouterr().err.splitlines() == [
        "ivideogpt train: no valid checkpoint under runs/none: the path does not exist"]


def test_a_codebook_too_large_for_the_memory_is_refused_before_allocation(workdir: Path, capsys) -> None:
    assert cli(["train", "tokenizer", "--config", str(CONFIGS / "tokenizer_cpu.yaml"), *SMALL_TOKENIZER, *SHORT,
                "--tokenizer.quantizer=vq", "--tokenizer.future_residual=false", "--tokenizer.future_skip_threshold=0",
                "--tokenizer.codebook_size=1000000000000", "--train.max_steps=1"]) == 2
    assert re.fullmatch(r"ivideogpt train: tokenizer.codebook_size=1000000000000 needs 272,000.0 GB to train but "
                        r"[\d.,]+ GB is free on cpu; lower tokenizer.codebook_size",
                        capsys.readouterr().err.splitlines()[-1])


def test_a_mistyped_perceptual_weights_path_is_refused_not_skipped(workdir: Path, capsys) -> None:
    train = ["train", "tokenizer", "--config", str(CONFIGS / "tokenizer_cpu.yaml"), *SMALL_TOKENIZER, *SHORT,
             "--objective.perceptual_weight=1", "--train.max_steps=1", "--train.sample_every=0"]
    assert cli([*train, "--objective.perceptual_weights_path=weights/vgg16.pht"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "ivideogpt train: objective.perceptual_weights_path=weights/vgg16.pht: no such file; correct the path, "
        "or leave it unset to look for the VGG16 weights in the usual places")
    assert not (workdir / "runs").exists()


def test_a_resumed_run_reads_its_weights_once(workdir: Path, monkeypatch) -> None:
    from ivideogpt.train import checkpoint as ckpt
    from ivideogpt.train import state

    train = ["train", "tokenizer", "--config", str(CONFIGS / "tokenizer_cpu.yaml"), *SMALL_TOKENIZER, *SHORT,
             "--data.sampled_future=1", "--train.sample_every=0", "--train.out_dir=runs/tok"]
    assert cli([*train, "--train.max_steps=2"]) == 0
    reads: list[str] = []

    def counted(read):
        def wrapper(path, *args, **kwargs):
            reads.append(f"{read.__name__} {Path(path).as_posix().split('checkpoints/')[-1]}")
            return read(path, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(ckpt, "load_file", counted(ckpt.load_file))
    monkeypatch.setattr(state, "load_file", counted(state.load_file))
    monkeypatch.setattr(ckpt, "_sha256", counted(ckpt._sha256))  # verifying the checkpoint reads every file
    assert cli([*train, "--train.max_steps=3", "--resume"]) == 0
    resumed = [read for read in reads if "step_000002" in read]
    assert sorted(resumed) == ["_sha256 step_000002/config.yaml", "_sha256 step_000002/model.safetensors",
                               "_sha256 step_000002/optimizer.json", "_sha256 step_000002/optimizer.safetensors",
                               "_sha256 step_000002/rng/rank0.json", "_sha256 step_000002/trainer_state.json",
                               "load_file step_000002/model.safetensors",
                               "load_file step_000002/optimizer.safetensors"]


@pytest.mark.slow
def test_tokenizer_trains_from_converted_shards_and_resumes(workdir: Path, capsys) -> None:
    assert cli(["data", "convert", "npz", "data/pusht", "--out", "data/shards", "--shards", "3", "--quiet"]) == 0
    stream = ["train", "tokenizer", "--config", str(CONFIGS / "tokenizer_cpu.yaml"), *SMALL_TOKENIZER, *SHORT,
              "--data.stream=true", "--data.sources=[{name: pusht, path: data/shards}]", "--data.shuffle_buffer=8",
              "--data.sampled_future=1", "--train.out_dir=runs/stream"]
    assert cli([*stream, "--train.max_steps=2"]) == 0
    assert cli([*stream, "--train.max_steps=4", "--resume"]) == 0
    assert list(_train_losses(workdir / "runs/stream")) == [1, 2, 3, 4]
    capsys.readouterr()
    assert cli([*stream, "--train.max_steps=4", "--resume"]) == 0  # already there: nothing trained, no "None" loss
    assert "tokenizer: trained to step 4, no loss logged in this launch;" in capsys.readouterr().out
    assert cli(["train", "tokenizer", "--resume", "runs/stream", "--tokenizer.embed_dim=4"]) == 2  # another model
    last = capsys.readouterr().err.strip().splitlines()[-1]  # one line, not load_state_dict's traceback
    assert re.fullmatch(r"ivideogpt train: runs/stream/checkpoints/step_000004 does not fit this TokenizerObjective "
                        r"\(another architecture: .*\): .*\(8, 8, 3, 3\) there, \(4, 8, 3, 3\) here and \d+ more",
                        last)
    state = json.loads((workdir / "runs/stream/checkpoints/step_000004/trainer_state.json").read_text())
    assert state["data_position"]["stream"]["positions"]["0"]["draws"] == 4 * 2  # batch 2, one process


@pytest.mark.slow
def test_transformer_with_fsdp_on_two_processes_logs_the_losses_of_one(workdir: Path, run_processes) -> None:
    assert cli(["train", "tokenizer", "--config", str(CONFIGS / "tokenizer_cpu.yaml"), *SMALL_TOKENIZER, *SHORT,
                "--data.sampled_future=1", "--train.max_steps=1", "--train.out_dir=runs/tok"]) == 0
    trm = ["-m", "ivideogpt", "train", "transformer", "--config", CONFIGS / "transformer_cpu.yaml", *SHORT,
           "--train.batch_size=4", "--tokenizer_checkpoint=runs/tok", "--transformer.hidden_size=32",
           "--transformer.ffn_size=64", "--transformer.num_layers=2", "--train.max_steps=3"]
    run_processes([*trm, "--train.out_dir=runs/one"])
    run_processes([*trm, "--train.out_dir=runs/two", "--train.distributed=fsdp"], processes=2)
    one, two = _train_losses(workdir / "runs/one"), _train_losses(workdir / "runs/two")
    lines = (workdir / "runs/two/losses.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines))  # process 0 alone logs
    assert list(two) == list(one) == [1, 2, 3] and list(two.values()) == pytest.approx(list(one.values()), rel=1e-5)
    assert sorted(p.name for p in (workdir / "runs/two/checkpoints/step_000003/optimizer").iterdir()) == \
        [".metadata", "__0_0.distcp", "__1_0.distcp"]


def _shard(path: Path, damaged: bool) -> None:
    """One shard holding one episode of random pixels, then, if `damaged`, one whose headers read but whose pixels do
    not decode (its compressed frames overwritten in the middle)."""
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True)
    with tarfile.open(path, "w") as archive:
        add_episode(archive, "good", Episode(frames=rng.integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)))
        if damaged:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, frames=rng.integers(0, 256, (10, 64, 64, 3), dtype=np.uint8))
            data = bytearray(buffer.getvalue())
            data[len(data) // 2:len(data) // 2 + 64] = bytes(64)
            member = tarfile.TarInfo("bad.npz")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(bytes(data)))


def _tokenizer_on_two_processes(*options: str) -> subprocess.CompletedProcess:
    """`ivideogpt train tokenizer --config configs/tokenizer_cpu.yaml OPTIONS` as 2 torchrun processes. The launcher
    checks its processes every 3 s (not 0.1), so a process that another's failure stops has the time to show how it
    stops rather than being ended first."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "--monitor-interval", "3"]
    train = ["-m", "ivideogpt", "train", "tokenizer", "--config", str(CONFIGS / "tokenizer_cpu.yaml"), *options]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1",
           "PYTHONPATH": str(Path(ivideogpt.__file__).resolve().parents[1])}
    return subprocess.run([*launcher, *train], env=env, capture_output=True, text=True, timeout=120)


def _train_on_two_processes(shards: Path, out: Path) -> subprocess.CompletedProcess:
    """A streamed tokenizer run as 2 torchrun processes."""
    return _tokenizer_on_two_processes(
        *SMALL_TOKENIZER, "--data.sampled_future=1", "--data.segment_length=4", "--data.stream=true",
        f"--data.sources=[{{name: one, path: {shards}}}]", "--data.segments_per_episode=1", "--train.batch_size=2",
        "--train.max_steps=2", "--train.sample_every=0", "--train.progress=false", f"--train.out_dir={out}")


def _our_lines(stderr: str) -> list[str]:
    """The lines `ivideogpt train` wrote itself, beginning with the command's name."""
    return [line for line in stderr.splitlines() if line.startswith("ivideogpt train:")]


NO_DATA = "ivideogpt train: consumer 1 of 2 found no usable segment in epoch 0 of one: "


@pytest.mark.slow
def test_a_bad_option_in_a_launch_is_said_once(tmp_path: Path) -> None:
    done = _tokenizer_on_two_processes("--train.lrr=1", f"--train.out_dir={tmp_path / 'run'}")
    lines = _our_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("ivideogpt train: unknown config key(s) train.lrr;"), done.stderr
    assert done.returncode != 0 and "exitcode  : 2" in done.stderr  # each process's status, as in a single run


@pytest.mark.slow
def test_a_process_without_data_stops_every_process_with_one_message(tmp_path: Path) -> None:
    _shard(tmp_path / "shards" / "shard-000000.tar", damaged=False)  # 1 sample for 2 processes: none for process 1
    done = _train_on_two_processes(tmp_path / "shards", tmp_path / "run")
    assert done.returncode != 0
    lines = _our_lines(done.stderr)
    assert lines == [f"{NO_DATA}the 1 shard (fewer than the consumers: each takes one usable sample in 2) held "
                     "1 sample, 1 usable; use at most 1 consumer (processes x DataLoader workers), or more samples"], \
        done.stderr[-3000:]
    assert "[rank0]" not in done.stderr and "Connection closed by peer" not in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "run").exists()  # found before training: no process began


@pytest.mark.slow
def test_a_process_failing_mid_run_leaves_the_others_a_short_line(tmp_path: Path) -> None:
    _shard(tmp_path / "shards" / "shard-000000.tar", damaged=True)  # process 1's sample fails at its first batch
    done = _train_on_two_processes(tmp_path / "shards", tmp_path / "run")
    assert done.returncode != 0
    lines = _our_lines(done.stderr)
    assert lines == [f"{NO_DATA}its 1 usable sample failed to decode (see the warnings above)",
                     "ivideogpt train: stopped, another process of the launch failed; see its message above"], \
        done.stderr[-3000:]
    assert "[rank0]" not in done.stderr and "Connection closed by peer" not in done.stderr, done.stderr[-3000:]
