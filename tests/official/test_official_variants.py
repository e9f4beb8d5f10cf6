"""Every released variant's layout: the paper's full-size configs map to the paper's sizes, and snapshots written
in the released layout from those configs at small width (64 and 256 resolution, small and medium depth,
action-free, action-conditioned, goal-conditioned) load and roll out."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ivideogpt.official.mapping import RENAMES, tokenizer_config, transformer_config
from ivideogpt.train import load_model


def _paper(fixtures: Path, name: str) -> dict:
    return json.loads((fixtures / "paper-configs" / f"{name}_config.json").read_text())


@pytest.mark.parametrize("name, params, encoder_blocks, decoder_blocks", [
    ("tokenizer_64", 114_159_174, [1, 2], [0]),  # paper, Table 2: 114M
    ("tokenizer_256", 310_472_774, [2, 3, 4], [0, 1]),  # paper: 310M
])
def test_paper_tokenizer_configs_give_the_paper_sizes(fixtures, name, params, encoder_blocks, decoder_blocks) -> None:
    config = tokenizer_config(_paper(fixtures, name))
    assert (config.context_tokens, config.future_tokens, config.context_frames) == (16, 4, 2)
    with torch.device("meta"):
        tokenizer = config.build()
    assert tokenizer.num_params == params
    assert tokenizer.cond_encoder.attends == encoder_blocks and tokenizer.cond_decoder.attends == decoder_blocks


def test_fixture_sizes_match_the_reference(fixtures) -> None:
    facts = json.loads((fixtures / "reference.json").read_text())
    model = load_model(fixtures / "act-cond")
    assert model.tokenizer.num_params == facts["tokenizer_params"]
    assert model.transformer.num_params == facts["transformer_params"]
    assert model.layout.length(2, 6) == facts["sequence_length"]


def _released_name(name: str, wrapped: bool) -> str:
    for old, new in RENAMES:
        if name.startswith(new):
            name = old + name[len(new):]
    return f"llm.{name}" if wrapped and not name.startswith(("action_linear", "reward_linear")) else name


def _write_snapshot(root: Path, tokenizer_raw: dict, llama_raw: dict, action_dim: int) -> Path:
    """A snapshot in the released layout: configs as given, random weights named as the released files name them."""
    (root / "tokenizer").mkdir(parents=True)
    (root / "transformer").mkdir()
    (root / "tokenizer" / "config.json").write_text(json.dumps(tokenizer_raw))
    (root / "transformer" / "config.json").write_text(json.dumps(llama_raw))
    tok_config = tokenizer_config(tokenizer_raw)
    tokenizer = tok_config.build()
    state = {k: v + 0.02 * torch.randn_like(v) for k, v in tokenizer.state_dict().items()}  # positions not all zero
    save_file(state, str(root / "tokenizer" / "diffusion_pytorch_model.safetensors"))
    tensors = {"action_linear.weight": torch.zeros(32, action_dim)} if action_dim else {}
    config = transformer_config(llama_raw, tensors, tok_config)
    transformer = dataclasses.replace(config, reward_head=bool(action_dim)).build()
    save_file({_released_name(k, bool(action_dim)): v.contiguous() for k, v in transformer.state_dict().items()},
              str(root / "transformer" / "model.safetensors"))
    return root


def _narrow_tokenizer(fixtures: Path, name: str, **changes) -> dict:
    raw = _paper(fixtures, name)
    blocks = len(raw["block_out_channels"])
    return {**raw, "block_out_channels": [32] * (blocks - 1) + [64], "layers_per_block": 1, "latent_channels": 8,
            "norm_num_groups": 16, **changes}


def _narrow_llama(fixtures: Path, layers: int, heads: int) -> dict:
    return {**_paper(fixtures, "transformer_small"), "architectures": ["LlamaForCausalLM"], "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": heads, "vocab_size": 16386}


@pytest.mark.parametrize("variant, tokenizer_name, layers, heads, action_dim, context", [
    ("oxe-64-act-free", "tokenizer_64", 12, 4, 0, 2),  # small depth
    ("oxe-64-act-free-medium", "tokenizer_64", 24, 16, 0, 2),  # medium depth and heads
    ("oxe-64-goal-cond", "tokenizer_64", 12, 4, 0, 3),  # the goal frame is one more context frame
    ("bair-64-act-cond", "tokenizer_64", 12, 4, 4, 1),  # BAIR: one context frame
    ("oxe-256-act-free", "tokenizer_256", 12, 4, 0, 2),
])
def test_released_layouts_load_and_roll_out(fixtures, tmp_path, variant, tokenizer_name, layers, heads, action_dim,
                                            context) -> None:
    tokenizer_raw = _narrow_tokenizer(fixtures, tokenizer_name, context_length=context)
    snapshot = _write_snapshot(tmp_path / variant, tokenizer_raw, _narrow_llama(fixtures, layers, heads), action_dim)
    model = load_model(snapshot)
    resolution = model.tokenizer.config.resolution
    assert resolution == (256 if "256" in variant else 64) and model.num_context == context
    assert model.transformer.config.num_layers == layers and model.action_dim == action_dim
    frames = torch.rand(1, 2, 3, resolution, resolution) * 2 - 1
    if variant.endswith("goal-cond"):  # the goal frame goes first, as one more context frame
        frames = torch.cat([torch.rand(1, 1, 3, resolution, resolution) * 2 - 1, frames], dim=1)
    frames = frames[:, :context]
    actions = torch.randn(1, 2, action_dim) if action_dim else None
    predicted, rewards = model.rollout(frames, actions, horizon=2, seed=0)
    assert predicted.shape == (1, 2, 3, resolution, resolution)
    assert model.state.length == 257 * context - 1 + 2 * 17  # the released prelude, then two future frames
    assert (rewards is not None) == bool(action_dim)
    with pytest.raises(ValueError, match=f"trained with {context} context frames"):
        model.reset(torch.zeros(1, context + 1, 3, resolution, resolution))
