"""The `ivideogpt` command: one entry point, one module per subcommand.

Each module in `ivideogpt.commands` defines `HELP`, `add_arguments(parser)` and `run(args) -> int`,
and imports its heavy dependencies inside `run`, so `ivideogpt --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
import traceback
from typing import NoReturn, TextIO

COMMANDS = {
    "describe": "ivideogpt.commands.describe",
    "data": "ivideogpt.commands.data",
    "train": "ivideogpt.commands.train",
    "demo": "ivideogpt.commands.demo",
    "export": "ivideogpt.commands.export",
    "rl": "ivideogpt.commands.rl",
    "evaluate": "ivideogpt.commands.evaluate",
    "plan": "ivideogpt.commands.plan",
    "evaluate-policy": "ivideogpt.commands.evaluate_policy",
    "import-official": "ivideogpt.commands.import_official",
    "predict": "ivideogpt.commands.predict",
    "play": "ivideogpt.commands.play",
}


def first_process() -> bool:
    """Whether this process runs alone or is the first of a launch (global rank 0, from the launcher's environment:
    known before any process group exists). A RANK left set without a WORLD_SIZE above 1 is no launch."""
    return os.environ.get("RANK", "0") == "0" or int(os.environ.get("WORLD_SIZE", "1")) <= 1


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose usage error a launch of several processes shows once: the first process alone says
    it (every process has the same command line, so the same error); every process exits with status 2."""

    def error(self, message: str) -> NoReturn:
        if not first_process():
            time.sleep(1)  # the launcher ends every process once one exits: leave the first the time to say it
            self.exit(2)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="ivideogpt", description="iVideoGPT: an interactive video world model.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


TRACEBACK = "IVIDEOGPT_TRACEBACK"  # "1": let errors of bad input raise with their traceback (for bug reports)


def user_errors() -> tuple[type[BaseException], ...]:
    """What bad input (or a full disk, a missing file) raises: shown as one line naming the command, not as
    a traceback. Errors of other types are bugs and keep their traceback. The project's ConfigError,
    EpisodeError and SnapshotError are ValueErrors; these three are RuntimeErrors."""
    from ivideogpt.data.report import DataError
    from ivideogpt.train.checkpoint import CheckpointError
    from ivideogpt.train.trainer import NonFiniteLossError

    return (DataError, CheckpointError, NonFiniteLossError, OSError, ValueError)


class _StderrNow(logging.StreamHandler):
    """A handler writing to whatever `sys.stderr` is when a record arrives (as Python's own last-resort handler
    does), so a caller that swaps stderr (a test, a notebook) still gets the notes and never a closed stream."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def show_notes() -> None:
    """The package's notes (resuming from which step, a token cache reused, kernels compiling) reach stderr, one
    line each; without a handler Python would show only its warnings."""
    logger = logging.getLogger("ivideogpt")
    if not any(isinstance(handler, _StderrNow) for handler in logger.handlers):
        handler = _StderrNow()
        handler.setFormatter(logging.Formatter("%(message)s"))
        if not first_process():  # a launched process other than the first: its warnings only,
            handler.setLevel(logging.WARNING)  # not N copies of every note
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line's arguments. A subcommand whose parser sets `flag_overrides` also takes its dotted
    overrides written as flags (`--root=/x` beside `root=/x`), as `ivideogpt train` does: they join `overrides`
    in command-line order, so the last one given wins."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    args, unknown = parser.parse_known_args(argv)
    flags = getattr(args, "flag_overrides", False)
    refused = [token for token in unknown if not (flags and _override_like(token))]
    if refused:
        forms = "; overrides are written key=value or --key=value" if flags else ""
        parser.error(f"unrecognized arguments: {' '.join(refused)}{forms}")
    if unknown:
        given = {*args.overrides, *unknown}
        args.overrides = [token for token in argv if token in given]
    return args


def _override_like(token: str) -> bool:
    """`key=value` or `--key=value` (argparse leaves a positional override it has no place for among the unknown)."""
    return "=" in token and (token.startswith("--") or not token.startswith("-"))


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    show_notes()
    try:
        return int(args.handler(args) or 0)
    except Exception as error:
        shown = os.environ.get(TRACEBACK) != "1" and report(args.command, error)
        from ivideogpt.launch import said_together, stops_every_process  # torch: not before a command needs it

        if not shown and not stops_every_process(error):
            raise  # a bug of this process alone: its traceback, as Python shows it
        if not shown:
            traceback.print_exc()  # a bug that stops every process: shown before waiting for the others
        said_together(error)  # under a launch, no process ends before the others have said why they stop
        return 2 if shown else 1


def report(command: str, error: Exception) -> bool:
    """Show `error` as one line naming the command, or nothing where another process of the launch shows the reason;
    False for a bug, which keeps its traceback."""
    from ivideogpt.launch import StoppedWithOthers, lost_another_process

    if isinstance(error, StoppedWithOthers):
        return True
    if isinstance(error, user_errors()):
        print(f"ivideogpt {command}: {own_message(error)}", file=sys.stderr)
    elif lost_another_process(error):  # only a consequence: its traceback would bury the other's message
        print(f"ivideogpt {command}: stopped, another process of the launch failed; see its message above",
              file=sys.stderr)
    else:
        return False
    return True


WORKER_TRACEBACK = "\nOriginal Traceback (most recent call last):\n"  # torch's ExceptionWrapper.reraise


def own_message(error: BaseException) -> str:
    """The error's own message. An error raised in a DataLoader worker comes back with the worker's traceback
    put into its text by torch, which would bury the message: only what follows the traceback is kept."""
    text = str(error)
    if WORKER_TRACEBACK not in text:
        return text
    kind = type(error)  # named in the traceback's last entry as `traceback` names it: "module.Type: message"
    module = "" if kind.__module__ in ("builtins", "__main__") else f"{kind.__module__}."
    name = f"{module}{kind.__qualname__}"
    if text.endswith(f"\n{name}\n"):  # an error without a message
        return ""
    where = text.rfind(f"\n{name}: ")
    return text[where + len(name) + 3:].rstrip("\n") if where >= 0 else text


if __name__ == "__main__":
    sys.exit(main())
