"""DrQ-v2 building blocks: random-shift augmentation, conv encoder, actor, twin critic.

Observations are uint8 frame stacks `(B, 3 * frame_stack, H, W)`; actions live in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class RandomShift(nn.Module):
    """Pad by `pad` pixels (edge replicate) and crop back at a random offset, per sample.

    The shift is an integer translation in [-pad, pad] on each axis; shapes are unchanged.
    """

    def __init__(self, pad: int = 4) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad == 0:
            return x
        b, _, h, w = x.shape
        padded = F.pad(x.float(), (self.pad,) * 4, mode="replicate")  # (B, C, H + 2p, W + 2p)
        dy = torch.randint(0, 2 * self.pad + 1, (b, 1), device=x.device)
        dx = torch.randint(0, 2 * self.pad + 1, (b, 1), device=x.device)
        rows = torch.arange(h, device=x.device)[None] + dy  # (B, H)
        cols = torch.arange(w, device=x.device)[None] + dx  # (B, W)
        batch = torch.arange(b, device=x.device)[:, None, None]
        out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
        return out.permute(0, 3, 1, 2).to(x.dtype)


def _init_weights(module: nn.Module) -> None:
    """Orthogonal weights, zero biases (ReLU gain for convs), as is standard for DrQ-style agents."""
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight.data)
        if module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.Conv2d):
        nn.init.orthogonal_(module.weight.data, nn.init.calculate_gain("relu"))
        if module.bias is not None:
            module.bias.data.zero_()


class Encoder(nn.Module):
    """`layers` 3x3 convs of `channels` (first with stride 2), ReLU; flattens to `repr_dim`."""

    def __init__(self, obs_shape: tuple[int, int, int], channels: int = 32, layers: int = 4) -> None:
        super().__init__()
        convs: list[nn.Module] = [nn.Conv2d(obs_shape[0], channels, 3, stride=2), nn.ReLU()]
        for _ in range(layers - 1):
            convs += [nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU()]
        self.convnet = nn.Sequential(*convs)
        with torch.no_grad():
            self.repr_dim = int(self.convnet(torch.zeros(1, *obs_shape)).numel())
        self.apply(_init_weights)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) pixels in [0, 255] -> (B, repr_dim)."""
        x = obs.float() / 255.0 - 0.5
        return self.convnet(x).flatten(1)


def _mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


def _trunk(repr_dim: int, feature_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())


class TruncatedNormal:
    """Gaussian around `mean` whose samples are clipped to [-1 + eps, 1 - eps].

    Gradients flow to `mean` through the clip (straight-through), so the actor can be
    trained by back-propagating the critic through a sampled action.
    """

    def __init__(self, mean: torch.Tensor, std: float, eps: float = 1e-6) -> None:
        self.mean, self.std, self.eps = mean, std, eps

    def sample(self, clip: float | None = None) -> torch.Tensor:
        noise = torch.randn_like(self.mean) * self.std
        if clip is not None:
            noise = noise.clamp(-clip, clip)
        x = self.mean + noise
        clamped = x.clamp(-1 + self.eps, 1 - self.eps)
        return x - x.detach() + clamped.detach()


class Actor(nn.Module):
    """Deterministic tanh policy head; exploration noise with a scheduled std is added outside."""

    def __init__(self, repr_dim: int, action_dim: int, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.trunk = _trunk(repr_dim, feature_dim)
        self.policy = _mlp(feature_dim, hidden_dim, action_dim)
        self.apply(_init_weights)

    def forward(self, features: torch.Tensor, std: float) -> TruncatedNormal:
        mean = torch.tanh(self.policy(self.trunk(features)))
        return TruncatedNormal(mean, std)


class Critic(nn.Module):
    """Two Q heads on a shared trunk (clipped double Q-learning)."""

    def __init__(self, repr_dim: int, action_dim: int, feature_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.trunk = _trunk(repr_dim, feature_dim)
        self.q1 = _mlp(feature_dim + action_dim, hidden_dim, 1)
        self.q2 = _mlp(feature_dim + action_dim, hidden_dim, 1)
        self.apply(_init_weights)

    def forward(self, features: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (q1, q2), each (B,)."""
        h = torch.cat([self.trunk(features), action], dim=-1)
        return self.q1(h).squeeze(-1), self.q2(h).squeeze(-1)
