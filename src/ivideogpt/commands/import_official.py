"""`ivideogpt import-official SNAPSHOT_DIR --out DIR`: a released iVideoGPT snapshot as a checkpoint of this project."""

from __future__ import annotations

import argparse

HELP = "convert a released iVideoGPT snapshot folder (tokenizer/ + transformer/) into a checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("snapshot", help="snapshot folder, e.g. a download of thuml/ivideogpt-bair-64-act-cond")
    parser.add_argument("--out", required=True, help="where to write the checkpoint (load_model(OUT) reads it)")


def run(args: argparse.Namespace) -> int:
    from ivideogpt.official import import_snapshot

    path = import_snapshot(args.snapshot, args.out)  # a SnapshotError is reported in one line by `ivideogpt.cli`
    print(f"wrote {path}")
    return 0
