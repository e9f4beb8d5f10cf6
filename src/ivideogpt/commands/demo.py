"""`ivideogpt demo`: generate Push-T data, train a tiny world model on the CPU, roll it out, report."""

from __future__ import annotations

import argparse
import dataclasses

HELP = "end-to-end demo on embedded Push-T data: train a tiny world model and compare it to copying the last frame"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ivideogpt.demo import DemoConfig

    for field in dataclasses.fields(DemoConfig):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(field.default), default=field.default, dest=field.name,
                            help=f"(default: {field.default})")


def run(args: argparse.Namespace) -> int:
    from ivideogpt.demo import DemoConfig, run_demo, summary

    config = DemoConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DemoConfig)})
    metrics = run_demo(config)
    print(summary(metrics, config.out))
    return 0
