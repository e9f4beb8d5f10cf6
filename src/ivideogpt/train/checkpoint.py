"""Self-describing, atomically written checkpoints: safetensors + JSON + the resolved config YAML.

Layout of `<out_dir>/checkpoints/`:
  step_000123/  config.yaml, model.safetensors, optimizer.safetensors + optimizer.json (FSDP runs:
                optimizer/, one shard per process, see `sharding`), trainer_state.json,
                rng/rank<r>.json, manifest.json (written last)
  latest, best  one-line pointer files naming a checkpoint directory
A checkpoint is written into `.tmp-step_000123`, fsynced, then renamed; `manifest.json` lists
every file with its size and sha256, so a directory that lacks it or does not match it is
skipped and the previous good checkpoint is used instead.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from ivideogpt.files import as_new_file

MANIFEST = "manifest.json"
STATE = "trainer_state.json"
DATA_METADATA = "data_metadata.json"  # the training data's metadata.json, shipped with an exported model
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or no valid checkpoint could be read."""


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


def step_of(path: Path) -> int | None:
    """The step of a `step_000123` directory, or None for any other name."""
    match = _STEP_DIR.match(Path(path).name)
    return int(match.group(1)) if match else None


def run_of(checkpoint: str | Path) -> Path | None:
    """The run directory of a checkpoint `RUN/checkpoints/step_N` (None for any other folder, e.g. an export)."""
    checkpoint = Path(checkpoint)
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" and step_of(checkpoint) is not None \
        else None


def tmp_path(root: Path, step: int) -> Path:
    """Where step `step` is assembled before the rename (the same on every process)."""
    return Path(root) / f".tmp-{checkpoint_name(step)}"


def _fsync(path: Path) -> None:
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        if not path.is_dir():
            raise
    finally:
        os.close(fd)


def write_json(path: Path, data: Any) -> None:
    """Write JSON and fsync it."""
    with open(path, "w") as handle:
        json.dump(data, handle)
        handle.flush()
        os.fsync(handle.fileno())


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write tensors as safetensors (shared storage is cloned apart) and fsync."""
    seen: set[int] = set()
    plain: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu()
        storage = tensor.untyped_storage().data_ptr()
        shared = storage in seen and tensor.numel() > 0
        plain[name] = tensor.clone(memory_format=torch.contiguous_format) if shared else tensor.contiguous()
        seen.add(storage)
    try:
        save_file(plain, str(path))
    except SafetensorError as error:  # how safetensors reports a failed write (a full disk): an OSError to callers
        raise OSError(f"could not write {path}: {error}") from error
    as_new_file(path)  # safetensors writes 0600
    _fsync(Path(path))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def begin(root: Path, step: int) -> Path:
    """Create the empty temporary directory for `step`, clearing leftovers of interrupted writes."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = tmp_path(root, step)
    tmp.mkdir()
    return tmp


def finish(root: Path, step: int) -> Path:
    """Write the manifest, fsync, rename the temporary directory into place and point `latest` at it."""
    root, tmp = Path(root), tmp_path(root, step)
    files = {}
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        _fsync(path)
        files[path.relative_to(tmp).as_posix()] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    for sub in [p for p in tmp.rglob("*") if p.is_dir()] + [tmp]:
        _fsync(sub)
    write_json(tmp / MANIFEST, {"format": 1, "step": step, "files": files})
    _fsync(tmp)
    final = root / checkpoint_name(step)
    if final.exists():  # an older, possibly broken, copy of this step: move it out of the way first
        trash = root / f".tmp-old-{final.name}"
        shutil.rmtree(trash, ignore_errors=True)
        os.rename(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.rename(tmp, final)
    _fsync(root)
    write_pointer(root, "latest", final)
    return final


def abort(root: Path, step: int) -> None:
    """Remove the temporary directory of a failed write (best effort)."""
    shutil.rmtree(tmp_path(root, step), ignore_errors=True)


def write_pointer(root: Path, name: str, target: Path) -> None:
    """Atomically set pointer file `root/name` to the checkpoint directory `target`."""
    tmp = Path(root) / f".{name}.tmp"
    with open(tmp, "w") as handle:
        handle.write(Path(target).name + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, Path(root) / name)
    _fsync(Path(root))


def read_pointer(root: Path, name: str) -> Path | None:
    path = Path(root) / name
    if not path.is_file():
        return None
    target = path.read_text().strip()
    return Path(root) / target if target else None


def verify(path: Path, deep: bool = True) -> str | None:
    """None when `path` is a complete checkpoint; otherwise why not. `deep` also checks sha256."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        return f"{path} has no {MANIFEST} (an interrupted or foreign write)"
    try:
        files = read_json(path / MANIFEST)["files"]
    except (ValueError, KeyError, TypeError) as error:
        return f"{path / MANIFEST} is unreadable: {error}"
    for name, facts in files.items():
        file = path / name
        if not file.is_file():
            return f"{file} is missing"
        if file.stat().st_size != facts["bytes"]:
            return f"{file} has {file.stat().st_size} bytes, manifest says {facts['bytes']}"
        if deep and _sha256(file) != facts["sha256"]:
            return f"{file} does not match its sha256 in the manifest"
    return None


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root` (size-checked), oldest first."""
    return [p for p in _step_dirs(root) if verify(p, deep=False) is None]


def check_destination(dest: Path, ours: Callable[[Path], bool], verb: str) -> None:
    """Refuse (CheckpointError) a `dest` to write a model into that holds a training run's checkpoints, or entries
    `ours` does not accept: a run or data folder's own files would decide what `load_model(dest)` finds."""
    trained = [path for path in _step_dirs(dest) if (path / STATE).is_file()]
    if trained:
        raise CheckpointError(f"{dest} holds a training run's checkpoints ({trained[-1].name}); "
                              f"{verb} to a directory of its own")
    others = sorted(p.name for p in dest.iterdir() if not ours(p) and not p.name.startswith(".tmp-")) \
        if dest.is_dir() else []
    if others:
        raise CheckpointError(f"{dest} holds other files ({', '.join(others[:5])}); {verb} into a new or empty "
                              f"directory, or over an earlier {verb}")


def _step_dirs(root: Path) -> list[Path]:
    """Every step_* folder under `root`, complete or not, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and step_of(p) is not None), key=lambda p: step_of(p) or 0)


def find_latest(root: Path) -> Path | None:
    """The newest checkpoint that verifies, trying the `latest` pointer first, then older ones."""
    root = Path(root)
    pointed = read_pointer(root, "latest")
    if pointed is not None and pointed.is_dir() and verify(pointed) is None:
        newer = [p for p in list_checkpoints(root) if (step_of(p) or 0) > (step_of(pointed) or 0)]
        if not newer:
            return pointed
    for candidate in reversed(list_checkpoints(root)):
        if verify(candidate) is None:
            return candidate
    return None


def resolve(target: str | Path) -> Path:
    """A checkpoint directory from a checkpoint, checkpoints or run directory; raises if none is valid."""
    target = Path(target)
    if step_of(target) is not None:
        if not target.is_dir():
            kept = ", ".join(p.name for p in list_checkpoints(target.parent)) or "none"
            raise CheckpointError(f"cannot load {target}: no such checkpoint (valid ones beside it: {kept})")
        problem = verify(target)
        if problem:
            raise CheckpointError(f"cannot load {target}: {problem}")
        return target
    for root in (target / "checkpoints", target):
        found = find_latest(root)
        if found is not None:
            return found
    raise CheckpointError(f"no valid checkpoint under {target}: {_why_none(target)}")


def _why_none(target: Path) -> str:
    """Why `resolve` found nothing: the path is missing, holds no step_* folder, or each one's problem."""
    if not target.exists():
        return "the path does not exist"
    candidates = [*_step_dirs(target / "checkpoints"), *_step_dirs(target)]
    if not candidates:
        return "it holds no step_* checkpoint folder (a run directory, its checkpoints/ or one step_* folder)"
    return "; ".join(f"{p.name}: {verify(p)}" for p in candidates[-3:])


def apply_retention(root: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` checkpoints plus the best one (lowest val loss); point `best` at it."""
    checkpoints = list_checkpoints(root)
    scored = []
    for path in checkpoints:
        val = read_json(path / STATE).get("val_loss")
        if val is not None and math.isfinite(val):
            scored.append((val, -(step_of(path) or 0), path))
    keep = set(checkpoints[-keep_last:])
    if scored:
        best = min(scored)[2]
        keep.add(best)
        write_pointer(root, "best", best)
    for path in checkpoints:
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)


def optimizer_to_files(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and JSON metadata."""
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for index, entries in state["state"].items():
        plain = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}/{key}"] = value
            else:
                plain[key] = value
        meta["state"][str(index)] = plain
    return tensors, meta


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the optimizer state_dict written by `optimizer_to_files`."""
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in meta["state"].items()}
    for name, tensor in tensors.items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


def load_weights(module: nn.Module, checkpoint: Path) -> None:
    """Load `model.safetensors` of `checkpoint` into `module` (strict); another architecture (e.g. a resume given a
    changed model setting) is refused in one line by `check_fits`."""
    state = load_file(str(Path(checkpoint) / "model.safetensors"))
    check_fits(module, state, Path(checkpoint), strict=True)
    module.load_state_dict(state, strict=True)


def weights_for(module: nn.Module, checkpoint: str | Path, prefix: str) -> dict[str, torch.Tensor]:
    """`read_weights` of the checkpoint `checkpoint` resolves to, refused by `check_fits` where a tensor's shape
    differs from `module`'s."""
    path = resolve(checkpoint)
    state = read_weights(path, prefix)
    check_fits(module, state, path)
    return state


def check_fits(module: nn.Module, state: dict[str, torch.Tensor], path: Path, strict: bool = False) -> None:
    """Raise ValueError naming the first tensors of `state` that differ in shape from `module`'s (with `strict`,
    also those either lacks): the checkpoint at `path` is of another architecture."""
    own = module.state_dict()
    wrong = [f"{name} {tuple(tensor.shape)} there, {tuple(own[name].shape)} here" for name, tensor in state.items()
             if name in own and own[name].shape != tensor.shape]
    if strict:
        wrong += [f"{name} only there" for name in state if name not in own]
        wrong += [f"{name} only here" for name in own if name not in state]
    if wrong:
        more = f" and {len(wrong) - 3} more" if len(wrong) > 3 else ""
        raise ValueError(f"{path} does not fit this {type(module).__name__} (another architecture: compare its "
                         f"config.yaml with this run's settings): {'; '.join(wrong[:3])}{more}")


def read_weights(checkpoint: Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors of `checkpoint/model.safetensors` under `prefix` (e.g. "tokenizer."), the prefix removed."""
    state = load_file(str(Path(checkpoint) / "model.safetensors"))
    picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not picked:
        raise CheckpointError(f"{checkpoint} has no {prefix.rstrip('.')} weights")
    return picked
