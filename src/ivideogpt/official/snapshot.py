"""Reading a released iVideoGPT snapshot folder: its two configs and its safetensors files, with clear errors.

A snapshot holds `tokenizer/` (`config.json` of a diffusers-style `CompressiveVQModel` and
`diffusion_pytorch_model.safetensors`) and `transformer/` (`config.json` of a Llama and
`model.safetensors`: a `LlamaForCausalLM` state dict, or for action-conditioned snapshots the state
dict of a wrapper with `llm.*`, `action_linear.*` and `reward_linear.*`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

TOKENIZER_WEIGHTS = ("tokenizer", "diffusion_pytorch_model.safetensors")
TRANSFORMER_WEIGHTS = ("transformer", "model.safetensors")


class SnapshotError(ValueError):
    """A folder is not a readable released snapshot, or its contents do not fit the architecture."""


@dataclass
class Snapshot:
    """The configs (as parsed JSON) and tensors (float32, on the CPU) of one snapshot folder."""

    path: Path
    tokenizer_config: dict[str, Any]
    transformer_config: dict[str, Any]
    tokenizer_tensors: dict[str, torch.Tensor]
    transformer_tensors: dict[str, torch.Tensor]


def is_snapshot(path: str | Path) -> bool:
    """True when `path` has a released snapshot's transformer config and a tokenizer (a folder, or a link that
    `read_snapshot` then reports when what it names is missing)."""
    path = Path(path)
    return (part_dir(path, "transformer") / "config.json").is_file() and (path / "tokenizer").exists()


def link_target(path: Path, part: str) -> Path | None:
    """Where `path/part` points when it is a link stored as a small text file holding a relative path (git without
    symlinks), else None."""
    candidate = path / part
    if candidate.is_file() and candidate.stat().st_size < 4096:
        return path / candidate.read_text().strip()
    return None


def part_dir(path: Path, part: str) -> Path:
    """`path/part`, following a link stored as a small text file (`link_target`)."""
    target = link_target(path, part)
    return target if target is not None and target.is_dir() else path / part


def read_snapshot(path: str | Path) -> Snapshot:
    """Parse both configs and load both weight files; SnapshotError names the file and what is wrong."""
    path = Path(path)
    if not path.is_dir():
        raise SnapshotError(f"{path} is not a folder; expected a released snapshot with tokenizer/ and transformer/")
    for part in ("tokenizer", "transformer"):
        target = link_target(path, part)
        if target is not None and not target.is_dir():  # a snapshot copied without the folder its link names
            raise SnapshotError(f"{path / part} is a link to {target.relative_to(path)}, which does not exist: copy "
                                "or download that snapshot beside this one")
    missing = [f"{part}/{name}" for part, name in (("tokenizer", "config.json"), TOKENIZER_WEIGHTS,
                                                   ("transformer", "config.json"), TRANSFORMER_WEIGHTS)
               if not (part_dir(path, part) / name).is_file()]
    if missing:
        raise SnapshotError(f"{path} is not a released iVideoGPT snapshot: missing {', '.join(missing)} "
                            f"(expected tokenizer/config.json, tokenizer/{TOKENIZER_WEIGHTS[1]}, "
                            f"transformer/config.json, transformer/{TRANSFORMER_WEIGHTS[1]})")
    tokenizer, transformer = part_dir(path, "tokenizer"), part_dir(path, "transformer")
    return Snapshot(path, read_json(tokenizer / "config.json"), read_json(transformer / "config.json"),
                    read_tensors(tokenizer / TOKENIZER_WEIGHTS[1]), read_tensors(transformer / TRANSFORMER_WEIGHTS[1]))


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; SnapshotError if it is not one."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise SnapshotError(f"{path} is not readable JSON: {error}") from error
    if not isinstance(data, dict):
        raise SnapshotError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file as float32; SnapshotError for a truncated or corrupt file."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        size = path.stat().st_size if path.exists() else 0
        raise SnapshotError(f"{path} ({size} bytes) is not a complete safetensors file (truncated or corrupt "
                            f"download?): {error}") from error
    return {name: tensor.float() if tensor.is_floating_point() else tensor for name, tensor in tensors.items()}
