"""`ivideogpt train tokenizer|transformer --config FILE [--resume [PATH]] [--section.field=value ...]`.

Every field of the experiment config can be overridden with a dotted flag, e.g.
`--train.lr=1e-4 --data.root=/datasets --tokenizer.codebook_size=512`; unknown keys and wrong
types are errors. `--resume` continues the run in `train.out_dir` from its latest valid
checkpoint; `--resume PATH` continues from a checkpoint or run directory, in that run directory, reading its
saved config (overrides still apply from the resumed step on, e.g. a larger `--train.max_steps` or
another `--train.lr`). Several processes:
`accelerate launch --multi_gpu --num_processes N -m ivideogpt train ...` (or torchrun).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "train the tokenizer or the transformer from a YAML recipe (see configs/)"
KINDS = ("tokenizer", "transformer")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="what to train")
    parser.add_argument("options", nargs=argparse.REMAINDER, metavar="...",
                        help="--config FILE, --resume [PATH], and dotted overrides such as --train.lr=1e-4")


def _options_parser(kind: str) -> argparse.ArgumentParser:
    from ivideogpt.cli import Parser

    parser = Parser(prog=f"ivideogpt train {kind}", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="experiment YAML (e.g. configs/tokenizer_cpu.yaml)")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="PATH",
                        help="continue the run in train.out_dir, or the one in the checkpoint / run directory PATH")
    return parser


def parse_options(kind: str, options: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Split `options` into --config/--resume and `key.sub=value` overrides; malformed flags raise ConfigError."""
    from ivideogpt.configuration import ConfigError

    known, rest = _options_parser(kind).parse_known_args(options)
    overrides = []
    for text in rest:
        body = text[2:] if text.startswith("--") else text
        if "=" not in body or not body.split("=", 1)[0]:
            raise ConfigError(f"cannot read option {text!r}: overrides look like --section.field=value "
                              f"(e.g. --train.lr=1e-4 or --preset=tokenizer_tiny)")
        overrides.append(body)
    return known, overrides


def load(kind: str, config: str | None, resume: str | None, overrides: list[str]) -> Any:
    """The experiment to run: from --config (or a resumed checkpoint's config.yaml) plus overrides."""
    from ivideogpt.configuration import ConfigError
    from ivideogpt.train import checkpoint as ckpt
    from ivideogpt.train.experiments import load_experiment

    if resume is None:
        if config is None:
            raise ConfigError("give --config FILE (see configs/), or --resume PATH to continue a run")
        return load_experiment(kind, config, overrides)
    if resume == "latest":
        if config is None:
            raise ConfigError("--resume without a PATH needs --config to know train.out_dir; "
                              "or pass the run directory: --resume runs/NAME")
        return load_experiment(kind, config, [*overrides, "train.resume=latest"])
    source = ckpt.resolve(resume)
    # The run continues in the folder it is resumed from, not wherever a config (the saved one, or --config) says
    # it began: a copied or moved run would write into the original, and its keep_last delete the original's
    # checkpoints. An explicit --train.out_dir still wins.
    run = ckpt.run_of(source)
    in_place = [] if run is None else [f"train.out_dir={json.dumps(str(run))}"]
    return load_experiment(kind, config or source / "config.yaml", [*in_place, *overrides, f"train.resume={source}"])


def run(args: argparse.Namespace) -> int:
    from ivideogpt.cli import first_process
    from ivideogpt.launch import failing_together, process_state
    from ivideogpt.train.run import train_experiment

    process_state()  # join the launch first: a bad option, found by every process, is then said once
    with failing_together():  # bad input: one line from `ivideogpt.cli`
        known, overrides = parse_options(args.kind, args.options)
        experiment = load(args.kind, known.config, known.resume, overrides)
    summary = train_experiment(experiment)
    if not first_process():  # one summary line per run, not per process
        return 0
    print(f"{args.kind}: trained to step {summary['step']}, {_losses(summary)}; "
          f"run directory {experiment.train.out_dir}")
    return 0


def _losses(summary: dict) -> str:
    """The last logged losses, or what explains their absence (a resumed run already at max_steps trains nothing)."""
    logged = [f"{split} loss {summary[f'{split}_loss']}" for split in ("train", "val")
              if summary[f"{split}_loss"] is not None]
    return ", ".join(logged) or "no loss logged in this launch"
