"""The released checkpoints, imported, reproduce the paper code's own outputs (reference.npz) in fp32."""

import pytest
import torch
import torch.nn.functional as F

from ivideogpt.official import build_modules, read_snapshot

TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=["act-free", "act-cond"])
def imported(request, fixtures):
    tokenizer, transformer = build_modules(read_snapshot(fixtures / request.param))
    return request.param, tokenizer, transformer


def _inputs(reference, transformer):
    frames = reference["video"] * 2 - 1  # the project's pixel range; the tokenizer converts to [0, 1]
    actions = reference["actions"] if transformer.config.action_dim else None
    return frames, actions


@torch.no_grad()
def test_token_ids_and_labels_are_exact(imported, reference) -> None:
    _, tokenizer, transformer = imported
    frames, _ = _inputs(reference, transformer)
    context_ids, future_ids = tokenizer.encode(frames[:, :2], frames[:, 2:])
    ids = transformer.layout.build_ids(context_ids, future_ids)
    assert torch.equal(ids, reference["tokens"])
    labels = torch.full_like(ids, -100)
    mask = transformer.layout.target_mask(2, 6)
    labels[:, mask] = ids[:, mask]
    assert torch.equal(labels, reference["labels"])


@torch.no_grad()
def test_reconstruction(imported, reference) -> None:
    _, tokenizer, transformer = imported
    layout = transformer.layout
    ids = reference["tokens"]
    context_ids = torch.cat([torch.full((2, 1), layout.context_slot), ids[:, : layout.length(2, 0)]], dim=1)
    context_ids = context_ids.reshape(2, 2, 257)[:, :, 1:].reshape(2, 2, 16, 16)
    recon = torch.cat(tokenizer.decode(context_ids, layout.split_future(ids, 2)), dim=1)
    assert (((recon + 1) / 2) - reference["recon"]).abs().max() < TOLERANCE


@torch.no_grad()
def test_loss_logprobs_logits_and_rewards(imported, reference) -> None:
    name, tokenizer, transformer = imported
    key = "free" if name == "act-free" else "cond"
    frames, actions = _inputs(reference, transformer)
    context_ids, future_ids = tokenizer.encode(frames[:, :2], frames[:, 2:])
    out = transformer(context_ids, future_ids, actions)
    loss = F.cross_entropy(out.logits.flatten(0, 1), out.targets.flatten())
    assert abs(float(loss) - float(reference[f"{key}_loss"])) < TOLERANCE
    logprobs = out.logits.log_softmax(-1).gather(-1, out.targets[..., None]).flatten()
    assert (logprobs - reference[f"{key}_label_logprobs"]).abs().max() < TOLERANCE
    ids = transformer.layout.build_ids(context_ids, future_ids)
    hidden = transformer.backbone(transformer.embed(ids, transformer.check_actions(actions, 2, 8), 2), num_context=2)
    last = transformer.lm_head(hidden[:, -8:])
    assert (last - reference[f"{key}_last_logits"]).abs().max() < TOLERANCE
    if key == "cond":
        assert (out.rewards - reference["cond_reward"]).abs().max() < TOLERANCE
    else:
        assert out.rewards is None


def test_the_loss_method_gives_the_reference_loss(imported, reference) -> None:
    name, tokenizer, transformer = imported
    frames, actions = _inputs(reference, transformer)
    with torch.no_grad():
        context_ids, future_ids = tokenizer.encode(frames[:, :2], frames[:, 2:])
        _, logs = transformer.loss(context_ids, future_ids, actions)
    assert abs(float(logs["ce"]) - float(reference[f"{'free' if name == 'act-free' else 'cond'}_loss"])) < TOLERANCE


@torch.no_grad()
def test_training_forward_gives_the_same_ids_and_reconstruction(imported, reference) -> None:
    _, tokenizer, transformer = imported
    frames, _ = _inputs(reference, transformer)
    out = tokenizer(frames[:, :2], frames[:, 2:])
    assert torch.equal(transformer.layout.build_ids(out.context_ids, out.future_ids), reference["tokens"])
    assert (((out.reconstruction + 1) / 2) - reference["recon"]).abs().max() < TOLERANCE
    assert out.commitment >= 0 and out.codebook_loss >= 0
