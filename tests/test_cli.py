"""The `ivideogpt` command: every subcommand's parser prints its help, and bad input is one line, not a traceback."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest
import torch

from ivideogpt.cli import build_parser, main
from ivideogpt.data.report import DataError


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) for the parser and every subcommand below it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, (*path, name))


def test_every_subcommand_prints_its_help():
    paths = []
    for path, parser in _parsers(build_parser()):
        text = parser.format_help()  # raises where a help string is not valid for argparse's % formatting
        assert text.startswith("usage: ivideogpt"), path
        paths.append(path)
    assert ("demo",) in paths and ("plan",) in paths and ("data", "generate") in paths


def test_demo_help_shows_the_recipe_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--precision" in text and "(cpu recipe: 'bf16')" in text and "35%" in text


def test_bad_input_is_one_line_naming_the_command(tmp_path, capsys, monkeypatch):
    assert main(["describe", "no_such_preset"]) == 2
    assert capsys.readouterr().err.startswith("ivideogpt describe: unknown preset 'no_such_preset'; choose one of")
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(tmp_path / "empty"), str(tmp_path / "episode.npz"), "--out", str(tmp_path / "p.gif")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ivideogpt predict: ") and "Traceback" not in err
    monkeypatch.setenv("IVIDEOGPT_TRACEBACK", "1")  # for bug reports: the error itself
    with pytest.raises(ValueError, match="unknown preset"):
        main(["describe", "no_such_preset"])


def test_data_check_takes_overrides_in_the_forms_train_takes(tmp_path, capsys):
    config = str(tmp_path / "data.yaml")
    (tmp_path / "data.yaml").write_text("sources:\n  - {name: a, path: nowhere}\n")
    for given in (["root=/x"], ["--root=/x"], ["--quiet", "root=/x"], ["--root=/y", "--quiet", "root=/x"],
                  ["--root=/y", "root=/x"], ["root=/y", "--root=/x"]):  # the last one given wins
        assert main(["data", "check", config, *given]) == 2, given
        assert capsys.readouterr().err.splitlines() == [  # the override reached the config: the root is /x
            "ivideogpt data: none of the 1 data source path(s) exists (the first: /x/nowhere); check data.root='/x'"]
    for unknown in (["--root", "/x"], ["--jsn"], ["-q"]):  # a value apart from its key, or a mistyped flag
        with pytest.raises(SystemExit):
            main(["data", "check", config, *unknown])
        assert (f"unrecognized arguments: {' '.join(unknown)}; overrides are written key=value or --key=value"
                in capsys.readouterr().err)
    with pytest.raises(SystemExit):  # a command without overrides still refuses an unknown flag
        main(["describe", "--root=/x"])
    assert "unrecognized arguments: --root=/x" in capsys.readouterr().err


@pytest.mark.parametrize("config", ["sources:\n  - {name: a, path: nowhere}\n",  # a data config alone
                                    "data:\n  sources:\n    - {name: a, path: nowhere}\n"])  # an experiment's
def test_data_check_takes_an_override_copied_from_train_with_any_config(config, tmp_path, capsys):
    (tmp_path / "config.yaml").write_text(config)
    for given in (["--data.root=/x"], ["data.root=/x"], ["--data.root=/y", "root=/x"]):
        assert main(["data", "check", str(tmp_path / "config.yaml"), *given]) == 2, given
        assert capsys.readouterr().err.splitlines() == [  # the override reached the config: the root is /x
            "ivideogpt data: none of the 1 data source path(s) exists (the first: /x/nowhere); check data.root='/x'"]
    with pytest.raises(SystemExit):  # a value apart from its key
        main(["data", "check", str(tmp_path / "config.yaml"), "--data.root", "/x"])
    assert "unrecognized arguments: --data.root /x;" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("command, error", [
    (["train", "tokenizer", "--config"], "ivideogpt train tokenizer: error: argument --config: expected one argument"),
    (["trian"], "ivideogpt: error: argument COMMAND: invalid choice: 'trian' (choose from ")])
def test_a_usage_error_in_a_launch_is_said_once_with_status_2(command, error, launch, capsys):
    with pytest.raises(SystemExit) as exit_info:  # one process: argparse's own message and status
        main(command)
    assert exit_info.value.code == 2 and capsys.readouterr().err.splitlines()[-1].startswith(error)
    done = launch(["-m", "ivideogpt", *command], processes=2, timeout=120)
    said = [line for line in done.stderr.splitlines() if line.startswith(("usage: ", error.split(":")[0] + ":"))]
    assert len(said) == 2 and said[1].startswith(error), done.stderr[-3000:]  # usage line and error, once
    assert done.returncode != 0 and "exitcode  : 2" in done.stderr, done.stderr[-3000:]


def test_notes_of_the_package_reach_stderr(capsys):
    import logging

    assert main(["describe", "tokenizer_tiny"]) == 0
    capsys.readouterr()
    logging.getLogger("ivideogpt.train.trainer").info("resuming from runs/x at step 3")
    assert capsys.readouterr().err == "resuming from runs/x at step 3\n"
    main(["describe", "tokenizer_tiny"])  # every call keeps one handler
    logging.getLogger("ivideogpt").info("once")
    assert capsys.readouterr().err == "once\n"


def test_only_the_first_process_of_a_launch_shows_notes(capsys, monkeypatch):
    import logging

    from ivideogpt import cli

    logger = logging.getLogger("ivideogpt")
    monkeypatch.setattr(logger, "handlers", [])  # as in a fresh process
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    cli.show_notes()
    logging.getLogger("ivideogpt.train").info("token cache reused")
    logging.getLogger("ivideogpt.train").warning("a warning")
    assert capsys.readouterr().err == "a warning\n"


def test_a_bug_every_process_stops_with_keeps_its_traceback_and_waits_for_the_others(capsys, monkeypatch):
    import argparse

    from ivideogpt import cli, launch

    waited: list[BaseException] = []
    monkeypatch.setattr(launch, "said_together", waited.append)
    for error in (launch._stopping_all(TypeError("a bug")), launch._stopping_all(ValueError("bad input"))):
        def fail(args: argparse.Namespace, error: BaseException = error) -> int:
            raise error
        monkeypatch.setattr(cli, "parse", lambda argv: argparse.Namespace(command="describe", handler=fail))
        monkeypatch.setenv("IVIDEOGPT_TRACEBACK", "1" if isinstance(error, ValueError) else "0")
        assert cli.main([]) == 1  # as Python's own exit status for an uncaught error
        assert waited[-1] is error and "Traceback" in capsys.readouterr().err
    monkeypatch.setattr(cli, "parse", lambda argv: argparse.Namespace(command="describe", handler=lambda args: 1 / 0))
    with pytest.raises(ZeroDivisionError):
        cli.main([])
    assert len(waited) == 2  # a bug of this process alone: raised, no wait


def test_a_rank_left_set_outside_a_launch_still_says_a_usage_error(capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # e.g. inherited by a shell, with no launch of several processes
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(SystemExit) as stopped:
        main(["trian"])
    assert stopped.value.code == 2 and "invalid choice: 'trian'" in capsys.readouterr().err


GLOO_LOST = ("[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
             "[127.0.0.1]:14754. This is typically caused by a remote worker crashing.")  # as a collective raises it


def _failing(error: Exception) -> Callable[[argparse.Namespace], int]:
    """A command's `run` that raises `error`."""
    def run(args: argparse.Namespace) -> int:
        raise error
    return run


def test_a_process_that_lost_another_in_a_collective_says_so_in_one_line(capsys, monkeypatch):
    from ivideogpt.commands import describe

    monkeypatch.setattr(describe, "run", _failing(RuntimeError(GLOO_LOST)))  # another process left mid-collective
    assert main(["describe", "tokenizer_tiny"]) == 2
    assert capsys.readouterr().err == ("ivideogpt describe: stopped, another process of the launch failed; "
                                       "see its message above\n")
    monkeypatch.setattr(describe, "run", _failing(RuntimeError("a bug")))  # anything else keeps its traceback
    with pytest.raises(RuntimeError, match="a bug"):
        main(["describe", "tokenizer_tiny"])


def test_a_process_stopped_with_others_leaves_the_message_to_the_one_that_failed(capsys, monkeypatch):
    from ivideogpt.commands import describe
    from ivideogpt.launch import StoppedWithOthers

    monkeypatch.setattr(describe, "run", _failing(StoppedWithOthers("process 1 failed")))
    assert main(["describe", "tokenizer_tiny"]) == 2
    assert capsys.readouterr().err == ""


class _Failing(torch.utils.data.Dataset):
    """A dataset whose every item raises `error` (in a DataLoader worker process)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> None:
        raise self.error


@pytest.mark.parametrize("error", [DataError("consumer 1 of 2 found no usable segment\nepisodes found: 1"),
                                   FileNotFoundError(2, "No such file", "shard-000001.tar"),
                                   ValueError()])  # no message: nothing of the worker's traceback either
def test_an_error_from_a_dataloader_worker_is_its_own_message_without_the_workers_traceback(capsys, monkeypatch,
                                                                                          error):
    from ivideogpt.commands import describe

    def run(args: argparse.Namespace) -> int:
        next(iter(torch.utils.data.DataLoader(_Failing(error), num_workers=1)))
        return 0

    monkeypatch.setattr(describe, "run", run)
    assert main(["describe", "tokenizer_tiny"]) == 2
    assert capsys.readouterr().err == f"ivideogpt describe: {error}\n"


def test_predict_stays_within_the_training_window_and_scales_actions_as_training_did(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    import numpy as np

    from ivideogpt.data.episode import Episode
    from ivideogpt.world_model import WorldModel

    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / "pusht"  # window 9: 1 context + 8 predicted
    rng = np.random.default_rng(0)
    Episode(frames=rng.integers(0, 256, (12, 64, 64, 3), dtype=np.uint8),
            actions=rng.uniform(0, 512, (12, 2)).astype(np.float32)).save(tmp_path / "episode.npz")
    held, largest_action = [], []
    step = WorldModel.step

    def spy(self, actions=None, decode=True):
        largest_action.append(float(abs(actions).max()))
        result = step(self, actions, decode)
        held.append(self.state.num_context + self.state.num_future)
        return result

    monkeypatch.setattr(WorldModel, "step", spy)
    command = ["predict", str(shipped), str(tmp_path / "episode.npz"), "--out", str(tmp_path / "p.gif")]
    assert main(command) == 0  # the rest of the episode: 11 frames, past the window
    assert capsys.readouterr().out.count("PSNR") == 11
    assert max(held) == 9 and held[8] == 2  # re-anchored before the 9th predicted frame
    assert max(largest_action) <= 1.0  # Push-T's [0, 512] targets, normalised as in training
    held.clear()
    assert main([*command, "--past-window", "extend"]) == 0 and max(held) == 12
    assert main([*command, "--past-window", "refuse"]) == 2
    assert "9-frame training window: pass --horizon 8 or less" in capsys.readouterr().err
    assert main([*command, "--past-window", "refuse", "--horizon", "8"]) == 0
