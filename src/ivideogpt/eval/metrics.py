"""Video prediction metrics: PSNR, SSIM, LPIPS per frame and FVD over sets of videos.

All frame inputs are float `(..., 3, H, W)` in [-1, 1] (the model range); they are clipped to
[-1, 1] and mapped to [0, 1] before PSNR and SSIM, which are computed with data_range = 1.0.
Settings follow the paper's metric code (piqa PSNR with epsilon 1e-8, piqa/scikit-image SSIM with
an 11-tap Gaussian window of sigma 1.5 over the valid region only, LPIPS v0.1 VGG, and the
stylegan-v FVD: I3D features of Kinetics-400, Frechet distance with 1/N covariances).

FVD needs the TorchScript I3D detector ``i3d_torchscript.pt`` (the file used by stylegan-v and
most video-generation papers). It is looked up at the ``path`` argument, then
``$IVIDEOGPT_WEIGHTS_DIR/i3d_torchscript.pt``, then ``~/.cache/ivideogpt/weights/i3d_torchscript.pt``.
It is never downloaded; when it is missing, FVD is skipped and the other metrics still run.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from ivideogpt.perceptual import LPIPS
from ivideogpt.weights import not_a_weight_file, weight_dirs, where_to_put

logger = logging.getLogger(__name__)

PSNR_EPSILON = 1e-8  # MSE floor on [0, 1] frames: identical frames score 80 dB, not infinity
SSIM_SIGMA = 1.5
SSIM_PAD = 5  # the Gaussian window is 11 taps: 5 pixels each side are outside the valid region
I3D_FILENAME = "i3d_torchscript.pt"


def _unit(frames: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] float32, clipped."""
    return frames.detach().float().clamp(-1, 1).add(1).mul(0.5)


def _flat(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Size]:
    if pred.shape != target.shape or pred.ndim < 4 or pred.shape[-3] != 3:
        raise ValueError(f"expected two (..., 3, H, W) tensors of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    lead = pred.shape[:-3]
    return pred.reshape(-1, *pred.shape[-3:]), target.reshape(-1, *target.shape[-3:]), lead


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per frame: `(..., 3, H, W)` in [-1, 1] -> `(...)`, data_range 1.0 on [0, 1] frames."""
    p, t, lead = _flat(_unit(pred), _unit(target))
    mse = (p - t).square().mean(dim=(1, 2, 3))
    cap = float(-10 * np.log10(PSNR_EPSILON))
    value = peak_signal_noise_ratio(p, t, data_range=1.0, reduction="none", dim=(1, 2, 3))
    value = torch.where(mse > 0, value, torch.full_like(value, cap))
    return value.clamp(max=cap).reshape(lead)


def frame_scores(predicted: torch.Tensor, truth: torch.Tensor) -> dict[str, Any]:
    """PSNR and SSIM by predicted step (means over clips) and overall, of (B, H, 3, h, w) predictions."""
    return score_entry(psnr(predicted, truth), ssim(predicted, truth))


def score_entry(psnr_values: torch.Tensor, ssim_values: torch.Tensor) -> dict[str, Any]:
    """(B, H) per-frame PSNR and SSIM -> per-step means and their means, rounded for reports."""
    by_step = {"psnr": [round(v, 3) for v in psnr_values.mean(dim=0).tolist()],
               "ssim": [round(v, 4) for v in ssim_values.mean(dim=0).tolist()]}
    return {**by_step, "psnr_mean": round(float(np.mean(by_step["psnr"])), 3),
            "ssim_mean": round(float(np.mean(by_step["ssim"])), 4)}


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per frame: `(..., 3, H, W)` in [-1, 1] -> `(...)`, on [0, 1] frames, data_range 1.0.

    Gaussian window (11 taps, sigma 1.5), K1 = 0.01, K2 = 0.03, averaged over channels and the
    valid region (borders of 5 pixels dropped), as scikit-image and piqa do; frames must be at
    least 11 pixels wide.
    """
    p, t, lead = _flat(_unit(pred), _unit(target))
    if min(p.shape[-2:]) <= 2 * SSIM_PAD:
        raise ValueError(f"SSIM needs frames larger than {2 * SSIM_PAD} pixels, got {tuple(p.shape[-2:])}")
    _, full = structural_similarity_index_measure(
        p, t, data_range=1.0, sigma=SSIM_SIGMA, reduction="none", return_full_image=True)
    valid = full[..., SSIM_PAD:-SSIM_PAD, SSIM_PAD:-SSIM_PAD]  # (N, 3, H - 10, W - 10)
    return valid.mean(dim=(1, 2, 3)).reshape(lead)


@torch.no_grad()
def lpips(pred: torch.Tensor, target: torch.Tensor, model: LPIPS, batch_size: int = 64) -> torch.Tensor:
    """LPIPS per frame: `(..., 3, H, W)` in [-1, 1] -> `(...)`, computed in chunks of `batch_size` frames."""
    p, t, lead = _flat(pred.detach().clamp(-1, 1), target.detach().clamp(-1, 1))
    device = next(model.parameters()).device
    chunks = [model(p[i : i + batch_size].to(device), t[i : i + batch_size].to(device)).cpu()
              for i in range(0, p.shape[0], batch_size)]
    return torch.cat(chunks).reshape(lead)


def frame_metrics(pred: torch.Tensor, target: torch.Tensor, lpips_model: LPIPS | None = None) -> dict[str, torch.Tensor]:
    """`{"psnr", "ssim"[, "lpips"]}`, each shaped like `pred.shape[:-3]` (per frame)."""
    values = {"psnr": psnr(pred, target), "ssim": ssim(pred, target)}
    if lpips_model is not None:
        values["lpips"] = lpips(pred, target, lpips_model)
    return values


# ----------------------------------------------------------------------------------------- FVD


def i3d_candidates(path: str | Path | None = None) -> list[Path]:
    """Every place the I3D detector is looked for, in order."""
    if path is not None:
        return [Path(path).expanduser()]
    return [d / I3D_FILENAME for d in weight_dirs()]


def load_i3d(path: str | Path | None = None, *, required: bool = False) -> torch.jit.ScriptModule | None:
    """The TorchScript I3D detector from a local file; None (with one warning) when missing and not required."""
    found = next((p for p in i3d_candidates(path) if p.is_file()), None)
    if found is None:
        where = path if path is not None else where_to_put(I3D_FILENAME)
        message = f"FVD needs the I3D detector {I3D_FILENAME}, not found; put it at {where}"
        if required:
            raise FileNotFoundError(message)
        logger.warning("%s; FVD is skipped", message)
        return None
    with warnings.catch_warnings():  # TorchScript is deprecated, but it is the format this detector ships in
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return torch.jit.load(str(found), map_location="cpu").eval()
        except (RuntimeError, ValueError) as error:  # torch's own message runs to several lines
            raise not_a_weight_file(found, "TorchScript I3D detector") from error


@torch.no_grad()
def i3d_features(videos: torch.Tensor, detector: torch.jit.ScriptModule | torch.nn.Module,
                 batch_size: int = 16) -> np.ndarray:
    """I3D features of `(B, T, 3, H, W)` videos in [-1, 1] -> `(B, D)` float64.

    The detector gets `(B, 3, T, H, W)` in [-1, 1] with `rescale=False, resize=True,
    return_features=True` (the same input as stylegan-v's [0, 255] with `rescale=True`).
    """
    if videos.ndim != 5 or videos.shape[2] != 3:
        raise ValueError(f"expected videos shaped (B, T, 3, H, W), got {tuple(videos.shape)}")
    device = next(iter(detector.parameters()), torch.empty(0)).device
    out = []
    for i in range(0, videos.shape[0], batch_size):
        clip = videos[i : i + batch_size].float().clamp(-1, 1).permute(0, 2, 1, 3, 4).contiguous()  # (b, 3, T, H, W)
        out.append(detector(clip.to(device), rescale=False, resize=True, return_features=True).double().cpu())
    return torch.cat(out).numpy()


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean `(D,)` and covariance `(D, D)` with 1/N normalisation (as stylegan-v's FeatureStats)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] == 0:
        raise ValueError(f"expected features shaped (N, D) with N >= 1, got {features.shape}")
    mu = features.mean(axis=0)
    centered = features - mu
    return mu, centered.T @ centered / features.shape[0]


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)), the matrix root by scipy.linalg.sqrtm."""
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # near-singular product: regularise as pytorch-fid does
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    return float(np.square(mu1 - mu2).sum() + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fvd(real_features: np.ndarray, fake_features: np.ndarray) -> float:
    """Frechet distance between two sets of I3D features `(N, D)` and `(M, D)`."""
    return frechet_distance(*feature_stats(real_features), *feature_stats(fake_features))
