"""From a released snapshot's configs and tensor names to this project's configs and module parameters.

Tokenizer tensors keep their names (`OfficialTokenizer` is built with the checkpoint's names).
Transformer tensors are renamed: `model.*` -> `core.*` (the Llama core), `lm_head.*` stays,
`action_linear.*` -> `action_proj.*`, `reward_linear.*` -> `reward_head.*`; an action-conditioned
snapshot's `llm.` prefix is dropped. Any tensor that maps to nothing, any parameter left without a
tensor and any shape mismatch is refused, all of them named in one message.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ivideogpt.official.snapshot import SnapshotError
from ivideogpt.tokenizer.config import TokenizerConfig
from ivideogpt.transformer.config import TransformerConfig

RENAMES = (("model.", "core."), ("lm_head.", "lm_head."), ("action_linear.", "action_proj."),
           ("reward_linear.", "reward_head."))
DERIVED = ("rotary_emb.inv_freq",)  # buffers that older transformers versions saved; recomputed here


def tokenizer_config(raw: dict[str, Any]) -> TokenizerConfig:
    """The `TokenizerConfig` (kind "official") of a released tokenizer `config.json`."""
    expect = {"in_channels": 3, "out_channels": 3, "act_fn": "silu", "norm_type": "group"}
    wrong = {k: raw[k] for k, v in expect.items() if k in raw and raw[k] != v}
    if wrong:
        raise SnapshotError(f"tokenizer config: unsupported values {wrong} (the released models use {expect})")
    required = ("block_out_channels", "layers_per_block", "latent_channels", "num_vq_embeddings", "num_dyn_embeddings")
    absent = [k for k in required if k not in raw]
    if absent:
        raise SnapshotError(f"tokenizer config lacks {absent}: not a released compressive tokenizer config")
    if raw["num_vq_embeddings"] != raw["num_dyn_embeddings"]:
        raise SnapshotError(f"tokenizer config: context and future codebooks differ in size ({raw['num_vq_embeddings']}"
                            f" vs {raw['num_dyn_embeddings']}); the token layout needs them equal")
    if raw.get("vq_embed_dim") not in (None, raw["latent_channels"]):
        raise SnapshotError(f"tokenizer config: vq_embed_dim={raw['vq_embed_dim']} differs from latent_channels="
                            f"{raw['latent_channels']}, which the released models never do")
    channels = tuple(raw["block_out_channels"])
    resolution = int(raw.get("resolution", 256))  # the released class's default
    side = resolution // 2 ** (len(channels) - 1)
    patch = int(raw.get("patch_size", 4))
    if side % patch:
        raise SnapshotError(f"tokenizer config: patch_size={patch} does not divide the latent side {side}")
    try:
        return TokenizerConfig(
            kind="official", resolution=resolution, down_channels=channels, down_layers=int(raw["layers_per_block"]),
            up_layers=int(raw["layers_per_block"]) + 1, norm_groups=int(raw.get("norm_num_groups", 32)),
            embed_dim=int(raw["latent_channels"]), codebook_size=int(raw["num_vq_embeddings"]),
            context_tokens=side, future_tokens=side // patch,
            max_cross_attention_resolution=int(raw.get("max_att_resolution", 32)),
            context_frames=int(raw.get("context_length", 1)),
            mid_attention=bool(raw.get("mid_block_add_attention", True)),
            l2_normalized_codes=False, codebook_restart_steps=0, commitment_beta=1.0)
    except ValueError as error:
        raise SnapshotError(f"tokenizer config does not describe a buildable tokenizer: {error}") from error


def transformer_config(raw: dict[str, Any], tensors: dict[str, torch.Tensor], tokenizer: TokenizerConfig
                       ) -> TransformerConfig:
    """The `TransformerConfig` (layout "official") of a released Llama `config.json` and its weights."""
    if raw.get("model_type", "llama") != "llama":
        raise SnapshotError(f"transformer config: model_type {raw.get('model_type')!r} is not supported (llama only)")
    heads = int(raw["num_attention_heads"])
    if int(raw.get("num_key_value_heads", heads)) != heads or raw.get("attention_bias") or raw.get("rope_scaling"):
        raise SnapshotError("transformer config: grouped-query attention, attention biases and RoPE scaling are "
                            "not in the released models and not supported")
    if raw.get("tie_word_embeddings"):
        raise SnapshotError("transformer config: tied embeddings are not supported (the released models untie them)")
    names = {rename(name) for name in tensors}
    action = tensors.get("action_linear.weight")
    try:
        config = TransformerConfig(
            codebook_size=tokenizer.codebook_size, context_grid=(tokenizer.context_tokens,) * 2,
            future_grid=(tokenizer.future_tokens,) * 2, num_layers=int(raw["num_hidden_layers"]), num_heads=heads,
            hidden_size=int(raw["hidden_size"]), ffn_size=int(raw["intermediate_size"]),
            dropout=float(raw.get("attention_dropout", 0.0)), action_dim=0 if action is None else action.shape[1],
            reward_head="reward_head.weight" in names, rope_theta=float(raw.get("rope_theta", 10000.0)),
            rms_norm_eps=float(raw.get("rms_norm_eps", 1e-6)), layout="official")
    except (KeyError, ValueError, TypeError) as error:
        raise SnapshotError(f"transformer config does not describe a buildable transformer: {error!r}") from error
    if int(raw.get("vocab_size", config.vocab_size)) != config.vocab_size:
        raise SnapshotError(f"transformer vocab_size {raw['vocab_size']} != 2 x {tokenizer.codebook_size} + 2 "
                            f"= {config.vocab_size} of the tokenizer's codebooks and the two slots")
    return config


def rename(name: str) -> str | None:
    """Our parameter name for a released transformer tensor name, or None when nothing takes it."""
    name = name.removeprefix("llm.")
    for old, new in RENAMES:
        if name.startswith(old):
            return new + name[len(old):]
    return None


def transformer_state(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(renamed tensors, released names that map to nothing); derived RoPE buffers are dropped."""
    mapped, unmapped = {}, []
    for name, tensor in tensors.items():
        if name.endswith(DERIVED):
            continue
        new = rename(name)
        if new is None:
            unmapped.append(name)
        else:
            mapped[new] = tensor
    return mapped, unmapped


def load_checked(module: nn.Module, tensors: dict[str, torch.Tensor], what: str, unmapped: list[str] = ()) -> None:
    """Load `tensors` into `module` after checking that every name and shape fits; one SnapshotError lists all misfits."""
    own = module.state_dict()
    problems = [f"unmapped {what} tensors (nothing in this model takes them): {sorted(unmapped)}"] if unmapped else []
    extra = sorted(set(tensors) - set(own))
    if extra:
        problems.append(f"unmapped {what} tensors (nothing in this model takes them): {extra}")
    absent = sorted(set(own) - set(tensors))
    if absent:
        problems.append(f"missing {what} tensors (this model needs them): {absent}")
    shapes = [f"{k}: snapshot {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(tensors)) if tensors[k].shape != own[k].shape]
    if shapes:
        problems.append(f"{what} shape mismatches: {'; '.join(shapes)}")
    if problems:
        raise SnapshotError(" | ".join(problems))
    module.load_state_dict(tensors, strict=True)
