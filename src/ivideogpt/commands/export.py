"""`ivideogpt export RUN DEST`: copy a trained model (a tokenizer or a world model) out of its run, as it is shipped.

DEST receives the model's weights, config and training-data metadata (no optimizer state, RNG or
logs), so `load_model(DEST)`, `ivideogpt plan --checkpoint DEST` and `ivideogpt play --checkpoint DEST`
work from it alone. An earlier export in DEST is replaced; a DEST holding anything else is refused.
"""

from __future__ import annotations

import argparse

HELP = "copy a trained model (weights, config, data metadata; no optimizer or logs) to a directory of its own"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="a run, checkpoints or checkpoint directory (its latest valid checkpoint)")
    parser.add_argument("dest", help="where the model goes, e.g. checkpoints/pusht")


def run(args: argparse.Namespace) -> int:
    from ivideogpt.train import export_model

    exported = export_model(args.run, args.dest)  # bad input: one line and status 2, via ivideogpt.cli
    size = sum(path.stat().st_size for path in exported.iterdir() if path.is_file())
    print(f"exported {exported} ({size / 2**20:.1f} MB)")
    return 0
