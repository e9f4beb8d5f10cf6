"""`ivideogpt rl`: DrQ-v2, model-free or inside MBPO with the world model as a drop-in environment.

    ivideogpt rl --env metaworld/hammer --steps 100000 --out runs/hammer           # MBPO, world model from scratch
    ivideogpt rl --env metaworld/hammer --world-model runs/pretrained --out runs/h  # from a pre-trained checkpoint
    ivideogpt rl --env pusht --model-free --tiny --steps 2000 --out runs/pusht-mf    # quick CPU run
    ivideogpt rl --env pusht --tiny agent.lr=3e-4 mbpo.horizon=5                    # dotted overrides (last,
    ivideogpt rl --env pusht --tiny --set agent.lr=3e-4 --out runs/x                # or anywhere with --set)
    ivideogpt rl --env metaworld/hammer --out runs/hammer --resume                   # continue after a kill

Writes config.json, metrics.jsonl, tensorboard/, videos/ (eval episodes, real vs imagined),
checkpoints/ (resumable, every `checkpoint_every` env steps at an episode end), summary.json and
agent.safetensors under --out.
"""

from __future__ import annotations

import argparse
from typing import Any

HELP = "train a DrQ-v2 agent, model-free or with MBPO inside the world model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="'pusht' or 'metaworld/<task>' (e.g. metaworld/plate-slide)")
    parser.add_argument("--world-model", metavar="DIR",
                        help="start the world model from this pre-trained checkpoint (default: from scratch)")
    parser.add_argument("--model-free", action="store_true", help="plain DrQ-v2, no world model")
    parser.add_argument("--steps", type=int, help="env (simulator) steps to train for")
    parser.add_argument("--out", default="runs/rl", help="output directory")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its newest checkpoint (same config; --steps may grow, "
                             "--device may change)")
    parser.add_argument("--tiny", action="store_true", help="tiny networks and schedules (tests, CPU smoke runs)")
    parser.add_argument("--tokenizer-preset", help="from-scratch tokenizer (default: tokenizer_64; --tiny: tokenizer_tiny)")
    parser.add_argument("--transformer-preset",
                        help="from-scratch transformer (default: transformer_small; --tiny: transformer_tiny)")
    parser.add_argument("--eval-every", type=int, help="env steps between evaluations")
    parser.add_argument("--eval-episodes", type=int, help="episodes per evaluation")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="torch device for the agent and the world model")
    parser.add_argument("--video-format", choices=["gif", "mp4"], default="gif")
    parser.add_argument("--no-tensorboard", action="store_true", help="only metrics.jsonl")
    parser.add_argument("--set", dest="set_overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="dotted config overrides (same as the positional ones; usable between other flags)")
    parser.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. agent.lr=3e-4 mbpo.horizon=5")


def build_config(args: argparse.Namespace) -> Any:
    """The resolved `RLConfig`: paper (or tiny) defaults, then flags, then dotted overrides."""
    from ivideogpt.configuration import ConfigError, config_to_dict, from_dict, parse_override
    from ivideogpt.envs.rl_wrappers import EnvConfig
    from ivideogpt.rl.trainer import RLConfig

    base = RLConfig.tiny(args.env) if args.tiny else RLConfig(env=EnvConfig.for_env(args.env))
    tree = config_to_dict(base)
    flags = {"total_env_steps": args.steps, "eval_every": args.eval_every, "eval_episodes": args.eval_episodes}
    tree.update({key: value for key, value in flags.items() if value is not None})
    tree.update(model_free=args.model_free, seed=args.seed, video_format=args.video_format,
                tensorboard=not args.no_tensorboard, device=args.device)
    world_model = {"world_model": args.world_model, "tokenizer_preset": args.tokenizer_preset,
                   "transformer_preset": args.transformer_preset}
    tree["mbpo"].update({key: value for key, value in world_model.items() if value is not None})
    for text in [*args.set_overrides, *args.overrides]:
        key, value = parse_override(text)
        node = tree
        *parents, leaf = key.split(".")
        for name in parents:
            if not isinstance(node.get(name), dict):
                raise ConfigError(f"unknown config key {key!r}: {name!r} is not a section of the RL config")
            node = node[name]
        node[leaf] = value
    config = from_dict(RLConfig, tree)
    if config.model_free and config.mbpo.world_model:
        raise ConfigError("--world-model has no use with --model-free (drop one of them)")
    return config


def make_world_model(config: Any) -> Any:
    """MBPO's world model for `config`: pre-trained (`mbpo.world_model`) or from scratch, then seeded by
    `config.seed` like everything else in the run, so two runs with one seed start from the same weights."""
    import torch

    from ivideogpt.envs.rl_wrappers import make_rl_env
    from ivideogpt.rl.world_models import build_world_model, load_world_model

    probe = make_rl_env(config.env, config.seed)
    action_dim = int(probe.action_space.shape[0])
    probe.close()
    torch.manual_seed(config.seed)
    common = dict(action_dim=action_dim, num_context=config.mbpo.num_context, lr=config.mbpo.model_lr,
                  weight_decay=config.mbpo.model_weight_decay, seed=config.seed, device=config.device,
                  window=config.mbpo.sequence_length)  # the clips it trains on: longer branches re-anchor
    if config.mbpo.world_model:
        return load_world_model(config.mbpo.world_model, action_repeat=config.env.action_repeat, **common)
    return build_world_model(tokenizer_preset=config.mbpo.tokenizer_preset,
                             transformer_preset=config.mbpo.transformer_preset, **common)


def run(args: argparse.Namespace) -> int:
    import json

    from ivideogpt.rl.trainer import RLTrainer

    config = build_config(args)
    model = None if config.model_free else make_world_model(config)
    trainer = RLTrainer(config, args.out, model=model, resume=args.resume)  # bad input: one line, via ivideogpt.cli
    summary = trainer.run()
    last = summary["evals"][-1] if summary["evals"] else {}
    print(json.dumps({k: v for k, v in summary.items() if k != "evals"} | {"last_eval": last}, indent=2))
    return 0
