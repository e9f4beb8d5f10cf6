"""Metrics against independent references: scikit-image, closed-form and eigen-based Frechet distances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ivideogpt.eval import metrics

skimage_metrics = pytest.importorskip("skimage.metrics")


def _pair(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.rand(shape) * 2 - 1
    pred = (target + 0.2 * torch.randn(shape)).clamp(-1, 1)
    return pred, target


def _hwc01(frame: torch.Tensor) -> np.ndarray:
    return ((frame + 1) / 2).permute(1, 2, 0).double().numpy()


def test_psnr_matches_skimage() -> None:
    pred, target = _pair((2, 3, 3, 16, 16))  # (B, T, 3, H, W)
    values = metrics.psnr(pred, target)
    assert values.shape == (2, 3)
    for b in range(2):
        for t in range(3):
            expected = skimage_metrics.peak_signal_noise_ratio(_hwc01(target[b, t]), _hwc01(pred[b, t]), data_range=1.0)
            assert values[b, t].item() == pytest.approx(expected, abs=1e-3)


def test_psnr_identical_frames_is_finite() -> None:
    frames = torch.rand(2, 3, 8, 8) * 2 - 1
    assert torch.allclose(metrics.psnr(frames, frames), torch.full((2,), 80.0))


def test_ssim_matches_skimage() -> None:
    pred, target = _pair((3, 3, 24, 20))
    values = metrics.ssim(pred, target)
    for i in range(3):
        expected = skimage_metrics.structural_similarity(
            _hwc01(target[i]), _hwc01(pred[i]), data_range=1.0, channel_axis=2,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert values[i].item() == pytest.approx(expected, abs=1e-4)
    assert torch.allclose(metrics.ssim(target, target), torch.ones(3), atol=1e-5)


def test_frame_metrics_keys_and_shapes() -> None:
    pred, target = _pair((2, 4, 3, 16, 16))
    values = metrics.frame_metrics(pred, target)
    assert set(values) == {"psnr", "ssim"} and all(v.shape == (2, 4) for v in values.values())


def _eigen_frechet(mu1, s1, mu2, s2) -> float:
    """Tr sqrt(S1 S2) = Tr sqrt(R S2 R) with R = sqrt(S1) (symmetric PSD): eigenvalues only."""
    w, v = np.linalg.eigh(s1)
    root = v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root @ s2 @ root)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum())


def test_frechet_distance_diagonal_closed_form() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    d1, d2 = rng.uniform(0.1, 2, 5), rng.uniform(0.1, 2, 5)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert metrics.frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(expected, rel=1e-8)


def test_fvd_matches_eigen_reference() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(60, 6))
    fake = rng.normal(size=(90, 6)) @ rng.normal(size=(6, 6)) * 0.5 + 0.3
    ref = [(f.mean(0), np.cov(f, rowvar=False, bias=True)) for f in (real, fake)]
    assert metrics.fvd(real, fake) == pytest.approx(_eigen_frechet(*ref[0], *ref[1]), rel=1e-6)
    assert metrics.fvd(real, real) == pytest.approx(0.0, abs=1e-6)


def test_fvd_plumbing_with_scripted_detector(i3d_file) -> None:
    detector = metrics.load_i3d(required=True)
    real = torch.rand(10, 5, 3, 8, 8) * 2 - 1
    features = metrics.i3d_features(real, detector, batch_size=4)
    assert features.shape == (10, 8) and features.dtype == np.float64
    reference = torch.tanh(detector.proj((real.permute(0, 2, 1, 3, 4).mean(dim=(3, 4))[:, :, :4]).flatten(1)))
    np.testing.assert_allclose(features, reference.detach().double().numpy(), rtol=1e-5, atol=1e-6)
    fake = metrics.i3d_features((real + 0.5).clamp(-1, 1), detector)
    assert metrics.fvd(features, fake) > metrics.fvd(features, features) - 1e-9


def test_missing_i3d(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVIDEOGPT_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt"):
        metrics.load_i3d(required=True)
    assert metrics.load_i3d(required=False) is None


def test_missing_i3d_names_the_folders_searched(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVIDEOGPT_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError) as error:
        metrics.load_i3d(required=True)
    for folder in (tmp_path / "weights", tmp_path / "home" / ".cache" / "ivideogpt" / "weights"):
        assert str(folder / "i3d_torchscript.pt") in str(error.value)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 cut short", b"\x80\x02not a pickle"])
def test_a_corrupt_i3d_file_is_one_line_naming_it(tmp_path, content: bytes) -> None:
    path = tmp_path / "i3d_torchscript.pt"
    path.write_bytes(content)
    message = rf"{path} \({len(content)} bytes\) is not a TorchScript I3D detector"
    with pytest.raises(ValueError, match=message) as error:
        metrics.load_i3d(path)
    assert "\n" not in str(error.value)
