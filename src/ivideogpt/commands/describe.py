"""`ivideogpt describe PRESET`: architecture facts and parameter count of a named preset."""

from __future__ import annotations

import argparse
import json

HELP = "print a preset's architecture and parameter count"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", nargs="?", help="preset name; omit to list them")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from ivideogpt.presets import PRESETS, describe_preset

    if args.preset is None:
        print("\n".join(PRESETS))
        return 0
    info = describe_preset(args.preset)
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:>24}: {value}")
    return 0
