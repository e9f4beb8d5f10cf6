"""LPIPS (v0.1, VGG16 variant) without torchvision, and its local weight files.

Two weight files are needed; nothing is ever downloaded:

* the VGG16 trunk: the standard torchvision ``vgg16`` ImageNet state dict
  (``vgg16-397923af.pth``, or a safetensors export of it), looked up in this order:
  1. the ``weights_path`` argument of :func:`load_lpips`;
  2. ``$IVIDEOGPT_WEIGHTS_DIR/vgg16.pth`` (or ``vgg16.safetensors``);
  3. ``~/.cache/ivideogpt/weights/vgg16.pth`` (or ``vgg16.safetensors``);
  4. the torch hub cache, ``~/.cache/torch/hub/checkpoints/vgg16-397923af.pth``
     (``$TORCH_HOME/hub/checkpoints/`` when ``TORCH_HOME`` is set).
  Only the ``features.*`` tensors are read; ``classifier.*`` is ignored.
* the LPIPS linear layers: ``lpips/weights/v0.1/vgg.pth`` shipped inside the ``lpips``
  package (install it with ``pip install lpips --no-deps``; it is located, not imported,
  because importing it pulls torchvision).
"""

from __future__ import annotations

import importlib.util
import logging
import pickle
from pathlib import Path

import torch
from torch import nn

from ivideogpt.weights import not_a_weight_file, weight_dirs, where_to_put

logger = logging.getLogger(__name__)

VGG16_FILENAMES = ("vgg16.pth", "vgg16.safetensors")
TORCH_HUB_VGG16 = "vgg16-397923af.pth"
LPIPS_CHANNELS = (64, 128, 256, 512, 512)

# torchvision vgg16 "D" layout: channel counts, "M" = 2x2 max pool.
_VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# indices in `features` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
_VGG16_TAPS = (3, 8, 15, 22, 29)

_warned_missing = False


class VGG16Features(nn.Module):
    """The VGG16 conv trunk, named like torchvision's ``vgg16().features`` (``features.0.weight``, ...).

    `forward(x)` takes ImageNet-normalised `(N, 3, H, W)` and returns the five LPIPS taps
    (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3); the last max pool is not needed and omitted.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for item in _VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1), nn.ReLU()]
                in_channels = int(item)
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _VGG16_TAPS:
                taps.append(x)
        return taps

    def load_torchvision(self, path: str | Path) -> None:
        """Load the ``features.*`` tensors of a torchvision vgg16 state dict (.pth or .safetensors)."""
        state = _read_state_dict(Path(path))
        features = {k: v for k, v in state.items() if k.startswith("features.")}
        if not features:
            raise ValueError(f"{path} holds no 'features.*' tensors; expected a torchvision vgg16 state dict")
        missing, unexpected = self.load_state_dict(features, strict=False)
        if missing or unexpected:
            raise ValueError(f"{path} does not match the VGG16 trunk: missing {missing}, unexpected {unexpected}")


class LPIPS(nn.Module):
    """LPIPS v0.1 distance with a VGG16 trunk; frozen and always in eval mode.

    `forward(x, y)` takes two `(N, 3, H, W)` batches in [-1, 1] and returns `(N,)` distances.
    Gradients flow to the inputs (for perceptual losses), never to the weights.
    """

    def __init__(self, trunk: VGG16Features, linear_weights: str | Path | None = None) -> None:
        super().__init__()
        self.trunk = trunk
        # LPIPS scaling layer: [-1, 1] -> roughly ImageNet-normalised inputs.
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in LPIPS_CHANNELS)
        self._load_linear(Path(linear_weights) if linear_weights is not None else lpips_linear_weights_path())
        self.requires_grad_(False)
        self.eval()

    def _load_linear(self, path: Path) -> None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        for k, lin in enumerate(self.lins):
            weight = state[f"lin{k}.model.1.weight"]
            if weight.shape != lin.weight.shape:
                raise ValueError(f"{path}: lin{k} has shape {tuple(weight.shape)}, expected {tuple(lin.weight.shape)}")
            lin.weight.data.copy_(weight)

    def train(self, mode: bool = True) -> "LPIPS":
        """Stays in eval mode whatever `mode` is (a frozen metric inside a trained model)."""
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected two (N, 3, H, W) batches, got {tuple(x.shape)} and {tuple(y.shape)}")
        n = x.shape[0]
        both = torch.cat([x, y]).to(self.shift.dtype)  # one trunk pass for both: (2N, 3, H, W)
        taps = self.trunk((both - self.shift) / self.scale)
        distance = x.new_zeros(n, dtype=self.shift.dtype)
        for feats, lin in zip(taps, self.lins):
            fx, fy = _unit_normalize(feats[:n]), _unit_normalize(feats[n:])
            distance = distance + lin((fx - fy).square()).mean(dim=(1, 2, 3))  # spatial average
        return distance


def _unit_normalize(feats: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Divide each spatial position's feature vector by its L2 norm (as LPIPS does)."""
    return feats / (feats.square().sum(dim=1, keepdim=True).sqrt() + eps)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .pth or .safetensors file; a ValueError naming it when it is corrupt or holds no state dict."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path)) if path.suffix == ".safetensors" else \
            torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, SafetensorError):
        state = None  # torch's own message runs to several lines; refused below like any file without a state dict
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise not_a_weight_file(path, "torchvision vgg16 state dict (.pth or .safetensors)")
    return state


def lpips_linear_weights_path() -> Path:
    """Path of ``lpips/weights/v0.1/vgg.pth`` in the installed lpips package (not imported)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("LPIPS linear weights need the lpips package: pip install lpips --no-deps")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / "vgg.pth"
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS linear weights missing at {path}; reinstall: pip install lpips --no-deps")
    return path


def vgg16_candidates(weights_path: str | Path | None = None) -> list[Path]:
    """Every place the VGG16 trunk file is looked for, in order."""
    if weights_path is not None:
        return [Path(weights_path).expanduser()]
    candidates = [d / name for d in weight_dirs() for name in VGG16_FILENAMES]
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / TORCH_HUB_VGG16)
    return candidates


def find_vgg16_weights(weights_path: str | Path | None = None) -> Path | None:
    """The first existing VGG16 trunk file among :func:`vgg16_candidates`, or None."""
    return next((p for p in vgg16_candidates(weights_path) if p.is_file()), None)


def _missing_message(weights_path: str | Path | None) -> str:
    if weights_path is not None:
        return f"VGG16 weights for LPIPS not found at {weights_path}"
    return f"VGG16 weights for LPIPS not found: put torchvision's vgg16-397923af.pth as {where_to_put('vgg16.pth')}"


def load_lpips(weights_path: str | Path | None = None, *, required: bool) -> LPIPS | None:
    """LPIPS with pretrained VGG16 weights from a local file (see the module docstring).

    When a weight file is missing: `required=True` raises FileNotFoundError; `required=False`
    logs one warning per process and returns None.
    """
    global _warned_missing
    path = find_vgg16_weights(weights_path)
    try:
        if path is None:
            raise FileNotFoundError(_missing_message(weights_path))
        linear = lpips_linear_weights_path()
    except FileNotFoundError as error:
        if required:
            raise
        if not _warned_missing:
            logger.warning("%s; LPIPS is skipped", error)
            _warned_missing = True
        return None
    trunk = VGG16Features()
    trunk.load_torchvision(path)
    return LPIPS(trunk, linear)
