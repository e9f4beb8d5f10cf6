"""TransformerObjective in each mode, and its sample videos."""

import pytest
import torch

from ivideogpt.data.batch import Batch
from ivideogpt.tokenizer import tokenizer_tiny
from ivideogpt.transformer import TransformerObjective, TransformerObjectiveConfig, transformer_tiny


def make_batch(actions: bool = True, rewards: bool = True) -> Batch:
    frames = torch.rand(2, 3, 3, 64, 64) * 2 - 1
    return Batch(frames=frames, actions=torch.randn(2, 3, 2) if actions else None,
                 rewards=torch.randn(2, 3) if rewards else None, num_context=1)


def grads(module: torch.nn.Module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_transformer_mode_trains_only_the_transformer() -> None:
    tokenizer = tokenizer_tiny().build()
    transformer = transformer_tiny(action_dim=2, reward_head=True).build()
    objective = TransformerObjective(transformer, tokenizer)
    objective.train()
    assert not tokenizer.training and transformer.training  # frozen tokenizer stays in eval
    loss, logs = objective.compute_loss(make_batch(), step=0)
    loss.backward()
    assert {"ce", "accuracy", "reward_mse", "loss"} <= set(logs)
    assert all(not v.requires_grad and v.ndim == 0 for v in logs.values())
    assert grads(transformer) and not any(p.requires_grad for p in tokenizer.parameters())
    with pytest.raises(ValueError, match="action-conditioned"):
        objective.compute_loss(make_batch(actions=False), step=0)
    with pytest.raises(ValueError, match="no rewards"):
        objective.compute_loss(make_batch(rewards=False), step=0)


def test_action_free_pretraining_ignores_batch_actions() -> None:
    objective = TransformerObjective(transformer_tiny().build(), tokenizer_tiny().build())
    loss, logs = objective.compute_loss(make_batch(), step=0)
    assert torch.isfinite(loss) and "reward_mse" not in logs


def test_full_and_tokenizer_modes() -> None:
    tokenizer, transformer = tokenizer_tiny().build(), transformer_tiny().build()
    full = TransformerObjective(transformer, tokenizer, TransformerObjectiveConfig(mode="full"))
    loss, logs = full.compute_loss(make_batch(), step=0)
    loss.backward()
    assert grads(tokenizer) and grads(transformer) and "tokenizer/loss" in logs
    tokenizer.zero_grad(), transformer.zero_grad()

    adapt = TransformerObjective(transformer, tokenizer, TransformerObjectiveConfig(mode="tokenizer"))
    adapt.train()
    assert not transformer.training and tokenizer.training
    loss, logs = adapt.compute_loss(make_batch(), step=0)
    loss.backward()
    assert grads(tokenizer) and not grads(transformer) and "ce" in logs  # ce: monitored, not trained
    torch.testing.assert_close(logs["loss"], logs["tokenizer/loss"])


def test_make_samples_shapes_and_mode_restored() -> None:
    objective = TransformerObjective(transformer_tiny(action_dim=2).build(), tokenizer_tiny().build())
    objective.train()
    samples = objective.make_samples(make_batch())
    assert set(samples) == {"prediction", "reconstruction"}
    assert all(v.shape == (2, 3, 3, 64, 64) and v.abs().max() <= 1 for v in samples.values())
    assert objective.transformer.training


def test_history_sampling_reads_the_models_own_predictions_only_in_training() -> None:
    torch.manual_seed(0)
    tokenizer = tokenizer_tiny().build()
    transformer = transformer_tiny(action_dim=2, reward_head=True).build()
    torch.nn.init.normal_(transformer.lm_head.weight, std=1.0)  # argmax predictions differ from the codes
    batch = make_batch()
    plain = TransformerObjective(transformer, tokenizer)
    swapped = TransformerObjective(transformer, tokenizer, TransformerObjectiveConfig(history_sampling=1.0))
    context_ids, future_ids = tokenizer.encode(batch.context_frames, batch.future_frames)
    with torch.no_grad():
        own = transformer(context_ids, future_ids, batch.actions, future_only=True).logits.argmax(-1)
    expected, _ = transformer.loss(context_ids, future_ids, batch.actions, batch.rewards[:, 1:],
                                   future_inputs=own.reshape(future_ids.shape))
    loss, logs = swapped.compute_loss(batch, step=0)
    torch.testing.assert_close(loss, expected)
    assert logs["history_swapped"] > 0
    swapped.eval()  # validation scores the model on true histories, as plain training would
    torch.testing.assert_close(swapped.compute_loss(batch, step=0)[0], plain.compute_loss(batch, step=0)[0])
    none = TransformerObjective(transformer, tokenizer, TransformerObjectiveConfig(history_sampling=0.0))
    torch.testing.assert_close(none.compute_loss(batch, step=0)[0], plain.compute_loss(batch, step=0)[0])
    with pytest.raises(ValueError, match="history_sampling must be in"):
        TransformerObjectiveConfig(history_sampling=1.5)
