"""A tiny transformer learns a toy task that can only be solved by using actions and rewards."""

import torch

from ivideogpt.transformer import TransformerConfig


def toy_batch(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Action class c (one-hot) makes the next frame's codes [c, c+4, c+8, c+12] and its reward c - 1.5."""
    ctx = torch.randint(0, 16, (batch, 1, 2, 2), generator=generator)
    classes = torch.randint(0, 4, (batch, 3), generator=generator)  # action t leads to future frame t
    fut = (classes[..., None] + torch.arange(0, 16, 4)).reshape(batch, 3, 2, 2)
    actions = torch.nn.functional.one_hot(classes, 4).float()  # (B, 3, 4): leads from frame t to t+1
    return ctx, fut, actions, classes.float() - 1.5, classes


def test_learns_to_use_actions_and_rewards() -> None:
    generator = torch.Generator().manual_seed(0)
    config = TransformerConfig(codebook_size=16, context_grid=(2, 2), future_grid=(2, 2), num_layers=2, num_heads=2,
                               hidden_size=64, ffn_size=128, dropout=0.0, action_dim=4, reward_head=True)
    model = config.build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for step in range(150):
        ctx, fut, actions, rewards, _ = toy_batch(32, generator)
        loss, logs = model.loss(ctx, fut, actions, rewards)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first = first if first is not None else (float(logs["ce"]), float(logs["reward_mse"]))
    # Without actions the best cross-entropy is log(4)/4 = 0.35 per token and the reward MSE 1.25.
    assert first[0] > 2.0 and float(logs["ce"]) < 0.1, (first, logs)
    assert float(logs["reward_mse"]) < 0.1, (first, logs)

    model.eval()
    ctx, fut, actions, rewards, classes = toy_batch(64, generator)
    with torch.no_grad():
        out = model(ctx, fut, actions)
        first_code = out.logits[:, ::4].argmax(-1) - 16  # (B, 3): first code of each future frame
        assert (first_code == classes).float().mean() > 0.95  # predictions follow the actions
        flipped = model(ctx, fut, actions.roll(1, dims=-1)).logits[:, ::4].argmax(-1) - 16
        assert (flipped == (classes + 1) % 4).float().mean() > 0.95  # other actions, other predictions
        torch.testing.assert_close(out.rewards, rewards, atol=0.3, rtol=0)
