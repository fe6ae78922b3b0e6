"""Full-reference pixel metrics: PSNR and MS-SSIM on 8-bit RGB.

Both take torch tensors of shape (1, 3, H, W) (or (3, H, W)) with values in [0, 1]. Inputs are
first rounded to 8 bits (x*255, round, clamp to 0..255), so the scores are those of the PNG files
a user would see. Learned metrics (LPIPS, DISTS, FID/KID) live in their own modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ulic.errors import UlicError
from ulic.pixels import DATA_RANGE, mse, psnr, to_uint8_range  # noqa: F401 (re-exported)
from ulic.pixels import uint8_pair as _pair

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WIN_SIZE = 11
WIN_SIGMA = 1.5
K1, K2 = 0.01, 0.03


def _gauss_window(size: int = WIN_SIZE, sigma: float = WIN_SIGMA) -> torch.Tensor:
    c = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(c**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter applied to each channel (channels folded into the batch)."""
    n, c, h, w = x.shape
    y = F.conv2d(x.reshape(n * c, 1, h, w), g.view(1, 1, 1, -1))
    y = F.conv2d(y, g.view(1, 1, -1, 1))
    return y.view(n, c, *y.shape[2:])


def _ssim_cs(a: torch.Tensor, b: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean SSIM and contrast-structure term, shapes (N, C)."""
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    mu_a, mu_b = _filter(a, g), _filter(b, g)
    s_aa = _filter(a * a, g) - mu_a**2
    s_bb = _filter(b * b, g) - mu_b**2
    s_ab = _filter(a * b, g) - mu_a * mu_b
    cs = (2 * s_ab + c2) / (s_aa + s_bb + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
    return (lum * cs).flatten(2).mean(-1), cs.flatten(2).mean(-1)


def ms_ssim_scales(h: int, w: int) -> int:
    """Number of scales used for an H x W image: 5, or fewer when the image is too small.

    Scale j (0-based) has side min(H, W) / 2**j; it must be at least the 11-px window. Images of
    at least 161 px per side get all 5 scales; 128 px gets 4 (the weights are then renormalised).
    """
    side = min(h, w)
    n = 0
    while n < len(MS_SSIM_WEIGHTS) and side >= WIN_SIZE:
        n += 1
        side = (side + 1) // 2  # the padded 2x2 average pool
    if n < 2:
        raise UlicError(f"image {h}x{w} too small for MS-SSIM (needs at least {2 * WIN_SIZE - 1} px per side)")
    return n


def ms_ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """MS-SSIM (Wang et al. 2003) of one RGB image pair on the 8-bit scale, in [0, 1].

    Standard parameters: 11x11 Gaussian window (sigma 1.5), K1=0.01, K2=0.03, data range 255,
    5 scales with weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 2x2 average-pool downsampling
    (odd sides padded, as in pytorch_msssim). Per channel: prod_j relu(cs_j)**w_j * relu(ssim_M)**w_M,
    then the mean over R, G, B. Images below 161 px per side use fewer scales (see `ms_ssim_scales`)
    with the leading weights renormalised to sum to 1.
    """
    a, b = _pair(a, b)
    n = ms_ssim_scales(a.shape[2], a.shape[3])
    w = torch.tensor(MS_SSIM_WEIGHTS[:n], dtype=torch.float64)
    w = w / w.sum()
    g = _gauss_window()
    vals = []
    for j in range(n):
        ssim, cs = _ssim_cs(a, b, g)
        if j < n - 1:
            vals.append(torch.relu(cs))
            pad = [s % 2 for s in a.shape[2:]]
            a = F.avg_pool2d(a, 2, padding=pad)
            b = F.avg_pool2d(b, 2, padding=pad)
    vals.append(torch.relu(ssim))
    stack = torch.stack(vals, 0)  # (n, N, C)
    return float(torch.prod(stack ** w.view(-1, 1, 1), 0).mean())
