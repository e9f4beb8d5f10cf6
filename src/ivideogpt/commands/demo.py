"""`ivideogpt demo`: generate Push-T data, train a tiny world model, roll it out, report.

`--recipe cpu` (the default) fits 15 minutes on 2 CPU cores; `--recipe reference` trains the reference
recipe's model (256k transformer samples, ~1.5 h on one CPU core) and exports it to `checkpoints/pusht`,
where the shipped model is that one trained further (docs/training.md). Any other flag overrides the
recipe's value.
"""

from __future__ import annotations

import argparse
import dataclasses

HELP = "end-to-end demo on embedded Push-T data: train a tiny world model and compare it to copying the last frame"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ivideogpt.configuration import field_docs
    from ivideogpt.demo import RECIPES, DemoConfig

    parser.add_argument("--recipe", choices=list(RECIPES), default="cpu",
                        help="starting values: cpu (2 CPU cores, 15 minutes) or reference (the shipped model: a GPU, "
                             "or ~1.5 h on one CPU core)")
    defaults, docs = DemoConfig(), field_docs(DemoConfig)  # help from the dataclass's own field comments
    for field in dataclasses.fields(DemoConfig):
        flag = "--" + field.name.replace("_", "-")
        default = f"(cpu recipe: {getattr(defaults, field.name)!r})"
        text = f"{docs[field.name]} {default}" if field.name in docs else default
        parser.add_argument(flag, type=type(getattr(defaults, field.name)), default=None, dest=field.name,
                            help=text.replace("%", "%%"))  # argparse formats help with %: a literal % must be doubled


def run(args: argparse.Namespace) -> int:
    from ivideogpt.demo import DemoConfig, recipe, run_demo, summary

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(DemoConfig) if getattr(args, f.name) is not None}
    config = recipe(args.recipe, **given)
    metrics = run_demo(config)
    print(summary(metrics, config.out))
    return 0
