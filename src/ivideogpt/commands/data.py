"""`ivideogpt data`: generate embedded robot data, convert datasets, check a data config.

    ivideogpt data generate pusht --episodes 200 --out data/pusht
    ivideogpt data generate metaworld --task button-press-topdown --episodes 50 --out data/mw
    ivideogpt data convert bair softmotion30_44k/train --out data/bair/train
    ivideogpt data convert npz data/pusht --out data/pusht_shards --shards 8
    ivideogpt data check configs/data/my_mix.yaml root=/datasets          # or --root=/datasets, --data.root=/datasets
    ivideogpt data check configs/data/my_mix.yaml --deep --workers 4
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

HELP = "generate embedded robot data, convert datasets to episodes, check a data config"


def _option(text: str) -> tuple[str, Any]:
    """`key=value` with the value parsed as YAML (numbers, lists, null)."""
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"option {text!r} must look like key=value")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def _resolution(text: str) -> int:
    """A frame size in pixels: refused here when not a positive integer, rather than deep inside a resize."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive number of pixels, got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ivideogpt.data.formats import DATA_FORMATS

    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    generate = actions.add_parser("generate", help="roll out a simulator with a scripted policy")
    envs = generate.add_subparsers(dest="env", required=True, metavar="ENV")
    for name, text in (("pusht", "Push-T (gym-pusht)"), ("metaworld", "a Meta-World v3 task")):
        sub = envs.add_parser(name, help=f"episodes of {text}")
        sub.add_argument("--episodes", type=int, required=True, help="number of episodes to write")
        sub.add_argument("--out", required=True, help="output folder (episode_*.npz + metadata.json)")
        sub.add_argument("--resolution", type=_resolution, default=64, help="frame height and width (default 64)")
        sub.add_argument("--steps", type=int, default=100, help="agent steps per episode (frames = steps + 1)")
        sub.add_argument("--seed", type=int, default=0, help="seed; same seed, same data")
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
        sub.add_argument("--action-repeat", type=int, default=2 if name == "metaworld" else 1,
                         help="env steps per recorded frame, the action held for all (Meta-World default 2 as "
                              "in the paper; Push-T default 1)")
        if name == "pusht":
            sub.add_argument("--workers", type=int, default=1,
                             help="processes writing episodes in parallel (the files do not depend on it)")
        if name == "metaworld":
            sub.add_argument("--task", required=True, help="v3 task name, e.g. button-press-topdown (-v3 optional)")
            sub.add_argument("--noise", type=float, default=0.1, help="std of Gaussian noise on policy actions")
            sub.add_argument("--camera", default="corner2", help="MuJoCo camera name (default corner2)")
    convert = actions.add_parser("convert", help="convert a dataset to project episodes")
    convert.add_argument("kind", choices=list(DATA_FORMATS), help="source format (data/formats.py)")
    convert.add_argument("source", help="source file or folder")
    convert.add_argument("--out", required=True, help="output folder")
    convert.add_argument("--resolution", type=_resolution, default=None,
                         help="centre-crop and resize frames to this size")
    convert.add_argument("--option", type=_option, action="append", default=[], metavar="KEY=VALUE",
                         help="reader option, e.g. image_key=aux1_image or camera=main (repeatable)")
    convert.add_argument("--limit", type=int, default=None, help="convert at most this many episodes")
    convert.add_argument("--shards", type=int, default=None, metavar="N",
                         help="write N tar shards (episodes round-robin) for streamed training (data.stream=true) "
                              "instead of one .npz per episode")
    convert.add_argument("--quiet", action="store_true", help="no progress bar")
    check = actions.add_parser("check", help="index a data config and report what would be used")
    check.add_argument("config", help="YAML DataConfig, or an experiment config with a `data:` section")
    check.add_argument("overrides", nargs="*",
                       help="dotted overrides of the data config, e.g. root=/datasets segment_length=12, also as "
                            "flags (--root=/datasets) and, with any config, as ivideogpt train takes them "
                            "(--data.root=/datasets)")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument("--deep", action="store_true",
                       help="also decode every episode (finds broken videos and arrays; exit status 1 if any)")
    check.add_argument("--workers", type=int, default=1, help="processes decoding episodes with --deep (default 1)")
    check.add_argument("--quiet", action="store_true", help="no progress bar")
    check.set_defaults(flag_overrides=True)  # `--key=value` overrides reach `overrides` (see `ivideogpt.cli.parse`)


def _generate(args: argparse.Namespace) -> int:
    if args.env == "pusht":
        from ivideogpt.envs.pusht_data import generate_pusht

        stats = generate_pusht(args.out, args.episodes, args.resolution, args.steps, args.seed, progress=not args.quiet,
                               action_repeat=args.action_repeat, workers=args.workers)
    else:
        from ivideogpt.envs.metaworld_data import generate_metaworld

        stats = generate_metaworld(args.task, args.out, args.episodes, args.resolution, args.steps, args.seed,
                                   args.action_repeat, args.noise, args.camera, progress=not args.quiet)
    print(json.dumps(stats))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from ivideogpt.data.convert import convert

    report = convert(args.kind, args.source, args.out, options=dict(args.option), resolution=args.resolution,
                     limit=args.limit, progress=not args.quiet, shards=args.shards)
    print(report.summary())
    return 0 if report.used else 1


def _within_data(override: str) -> str:
    """An override of `data check`, relative to the data config: `--data.root=/x`, as `ivideogpt train` takes it, is
    read as `--root=/x` (never ambiguous: a DataConfig has no field `data`)."""
    return re.sub(r"^(--)?data\.(?=[^=]+=)", r"\1", override)


def _check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ivideogpt.configuration import expand_includes, from_dict, read_tree
    from ivideogpt.data.config import DataConfig
    from ivideogpt.data.index import SPLITS, build_index

    path = Path(args.config)
    tree = read_tree(path)
    tree = tree if isinstance(tree.get("data"), dict) else {"data": tree}  # an experiment, or a data config alone
    section = expand_includes(tree, path.parent)["data"]
    index = build_index(from_dict(DataConfig, read_tree(None, list(map(_within_data, args.overrides)), base=section)))
    counts = {s: {} for s in SPLITS}
    for split in SPLITS:
        for episode in index.splits[split]:
            name = index.config.sources[episode.source].name
            counts[split][name] = counts[split].get(name, 0) + 1
    notes = list(index.report.notes)
    if index.config.stream:  # training streams the shards whole: no split is held out of them
        merged: dict[str, int] = {}
        for split in SPLITS:
            for name, count in counts[split].items():
                merged[name] = merged.get(name, 0) + count
        counts = {split: merged if split == "train" else {} for split in SPLITS}
        notes.append("stream: true: training streams every episode of the shards; no validation or held-out split")
    result = {"episodes": counts, "action_dim": index.action_dim, "rewards": index.with_rewards,
              "found": index.report.found, "used": index.report.used, "skipped": dict(index.report.counts),
              "notes": notes}
    deep = None
    if args.deep:
        from ivideogpt.data.verify import decode_all

        deep = decode_all(index, args.workers, progress=not args.quiet)
        result["deep"] = {"decoded": deep.used, "broken": [{"episode": w, "reason": r} for w, _, r in deep.skipped]}
    if args.json:
        print(json.dumps(result))
    else:
        print(index.report.summary())
        for note in notes[len(index.report.notes):]:
            print(f"note: {note}")
        for split in SPLITS:
            print(f"{split}: {sum(counts[split].values())} episodes {counts[split]}")
        print(f"actions: {index.action_dim if index.with_actions else 'none'}; rewards: {index.with_rewards}")
        if deep is not None:
            print(f"deep check: decoded {deep.used} of {deep.found} episodes")
            for where, _, reason in deep.skipped:
                print(f"  - {where} (undecodable): {reason}")
    return 0 if index.splits["train"] and not (deep and deep.skipped) else 1


def run(args: argparse.Namespace) -> int:
    return {"generate": _generate, "convert": _convert, "check": _check}[args.action](args)
