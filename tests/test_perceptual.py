"""LPIPS with random VGG16 trunk weights: properties, weight files, and the lpips package as reference."""

from __future__ import annotations

import importlib.util
import logging
import sys
import types

import pytest
import torch

from ivideogpt import perceptual
from ivideogpt.perceptual import LPIPS, VGG16Features, load_lpips

needs_lpips = pytest.mark.skipif(importlib.util.find_spec("lpips") is None, reason="lpips package not installed")


@pytest.fixture(scope="module")
def lpips_model() -> LPIPS:
    torch.manual_seed(0)
    return LPIPS(VGG16Features())


def _images(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size) * 2 - 1


def test_vgg16_names_match_torchvision_layout() -> None:
    state = VGG16Features().state_dict()
    convs = sorted({int(k.split(".")[1]) for k in state})
    assert convs == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert state["features.0.weight"].shape == (64, 3, 3, 3)
    assert state["features.28.weight"].shape == (512, 512, 3, 3)
    taps = VGG16Features()(torch.zeros(1, 3, 32, 32))
    assert [t.shape[1:] for t in taps] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]


@needs_lpips
def test_linear_weights_come_from_package(lpips_model: LPIPS) -> None:
    reference = torch.load(perceptual.lpips_linear_weights_path(), map_location="cpu", weights_only=True)
    for k, lin in enumerate(lpips_model.lins):
        assert lin.weight.shape == (1, perceptual.LPIPS_CHANNELS[k], 1, 1)
        torch.testing.assert_close(lin.weight, reference[f"lin{k}.model.1.weight"])
    assert not any(p.requires_grad for p in lpips_model.parameters())
    assert not lpips_model.train().training


@needs_lpips
def test_lpips_properties(lpips_model: LPIPS) -> None:
    x, y = _images(), _images()
    assert torch.allclose(lpips_model(x, x), torch.zeros(2), atol=1e-6)
    d_xy, d_yx = lpips_model(x, y), lpips_model(y, x)
    assert d_xy.shape == (2,)
    torch.testing.assert_close(d_xy, d_yx)
    assert (d_xy > 0).all()
    small = lpips_model(x, (x + 0.05 * torch.randn_like(x)).clamp(-1, 1))
    assert (small < d_xy).all()


@needs_lpips
def test_gradients_reach_inputs(lpips_model: LPIPS) -> None:
    x = _images(1).requires_grad_(True)
    lpips_model(x, _images(1)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@needs_lpips
def test_matches_lpips_package(lpips_model: LPIPS, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lpips package's own forward, its torchvision trunk replaced by our random trunk."""
    trunk = lpips_model.trunk
    fake_models = types.SimpleNamespace(vgg16=lambda **_: types.SimpleNamespace(features=trunk.features))
    monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(models=fake_models))
    saved = {name: mod for name, mod in sys.modules.items() if name == "lpips" or name.startswith("lpips.")}
    try:
        import lpips

        reference = lpips.LPIPS(net="vgg", verbose=False)
        x, y = _images(), _images()
        with torch.no_grad():
            expected = reference(x, y).flatten()
        torch.testing.assert_close(lpips_model(x, y), expected, rtol=1e-4, atol=1e-6)
    finally:
        for name in [n for n in sys.modules if n == "lpips" or n.startswith("lpips.")]:
            del sys.modules[name]
        sys.modules.update(saved)


@needs_lpips
def test_load_from_local_files(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(1)
    vgg = VGG16Features()
    state = {**vgg.state_dict(), "classifier.0.weight": torch.zeros(2, 2)}  # torchvision files carry these
    torch.save(state, tmp_path / "vgg16.pth")
    monkeypatch.setenv("IVIDEOGPT_WEIGHTS_DIR", str(tmp_path))
    model = load_lpips(required=True)
    assert model is not None
    torch.testing.assert_close(model.trunk.features[28].weight, vgg.features[28].weight)

    from safetensors.torch import save_file

    save_file(vgg.state_dict(), str(tmp_path / "export.safetensors"))
    model = load_lpips(tmp_path / "export.safetensors", required=True)
    torch.testing.assert_close(model.trunk.features[0].bias, vgg.features[0].bias)


def test_missing_weights(tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("IVIDEOGPT_WEIGHTS_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(perceptual, "_warned_missing", False)
    with pytest.raises(FileNotFoundError, match="vgg16"):
        load_lpips(required=True)
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_lpips(tmp_path / "nowhere.pth", required=True)
    with caplog.at_level(logging.WARNING, logger="ivideogpt.perceptual"):
        assert load_lpips(required=False) is None
        assert load_lpips(required=False) is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()


def test_missing_weights_name_the_folders_searched(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVIDEOGPT_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(FileNotFoundError, match="VGG16 weights for LPIPS not found") as error:
        load_lpips(required=True)
    for folder in (tmp_path / "weights", tmp_path / "home" / ".cache" / "ivideogpt" / "weights"):
        assert str(folder / "vgg16.pth") in str(error.value)


@needs_lpips
@pytest.mark.parametrize("name, content", [("vgg16.pth", b"\x80\x02not a pickle"), ("vgg16.pth", b""),
                                           ("vgg16.pth", None), ("vgg16.safetensors", b"cut short")])
def test_a_corrupt_weight_file_is_one_line_naming_it(tmp_path, name: str, content: bytes | None) -> None:
    path = tmp_path / name
    if content is None:  # a readable torch file that is no state dict
        torch.save(torch.zeros(3), path)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"{path} \(\d+ bytes\) is not a torchvision vgg16 state dict") as error:
        load_lpips(path, required=False)
    assert "\n" not in str(error.value)
