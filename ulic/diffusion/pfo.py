"""The perceptual fidelity optimiser (Pfo, ResULIC): encode-time tuning of what is sent, judged
through the decoding path the file will meet rather than through the frozen TAEF2 decoder.

Efforts 1 and 2 (latent objective). The encoder knows the image's own TAEF2 latent x_lat, which
the TAEF2 decoder turns into a sharp picture. It runs `ulic.codec.optimize.tune_latents` on

    bits / (H W) + lambda(q) * W_LATENT * mean (sample(z_c, one CDM step, R) - x_lat)^2

where sample(...) is the decoder's DRM and first DDIM step from the model's rate-matched
timestep (`ulic.diffusion.decode.sample`), the noise drawn from a generator seeded by the step
index (the encoder is deterministic), and R the model's default realism. No evaluation network
(AlexNet, VGG16, Inception) is in this objective, so LPIPS, DISTS and FID stay independent
judges.

Effort 3 (pixel objective), for a decoder with its own pixel decoder (stage 3):

    bits / (H W) + lambda(q) * [MSE(x_dec, x) + W_PERCEPTUAL * LPIPS-VGG(x_dec, x)]

with x_dec the image the whole default decoding path makes (DRM, the default CDM steps, the
pixel decoder at R; noise seeded by the step index). VGG16 is in this objective, as it is in
stage 3's training loss, so DISTS (the same backbone) does not judge it independently; LPIPS-Alex,
PSNR, MS-SSIM and FID do.

The decoder is not changed and the file format neither: a tuned file is an ordinary one. Large
latents are scored in windows of WINDOW x WINDOW positions with a MARGIN of context, one
window's graph at a time, so memory stays bounded; every step scores the whole latent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ulic.codec.optimize import Objective
from ulic.diffusion import MAX_EFFORT
from ulic.diffusion.decode import sample
from ulic.diffusion.networks import DiffusionDecoder
from ulic.runtime import native_bf16
from ulic.vae.taef2 import SCALE as S  # image pixels per latent position

W_LATENT = 1.0  # weight of the latent MSE against lambda(q)'s pixel-MSE units (tuned on training photos)
PATH_STEPS = 1  # CDM steps in the scored path: one step scores as well as four (training photos)
WINDOW = 96  # latent positions per side of a scored window (768 px)
MARGIN = 8  # context positions around a window that are run but not scored
W_PERCEPTUAL = 0.25  # effort 3: LPIPS-VGG's weight against the pixel MSE (tuned on training photos)


@dataclass(frozen=True)
class Effort:
    """One `--effort` level: optimisation steps, Adam's first step size (cosine-decayed) and the
    objective: the latent path (`latent_path_mse`) or, with pixel, the image the whole decoding
    path makes (`pixel_path_loss`, about 18x the time of a latent step: the pixel decoder and
    VGG16 at full resolution), with LPIPS-VGG at `weight` against the pixel MSE."""

    steps: int
    lr: float
    pixel: bool = False
    weight: float = W_PERCEPTUAL


# Tuned on training photos. Latent objective (runs of 4, 8, 12, 16 and 20 steps at step sizes
# 0.01-0.03 and weights 1-2): it saturates near 8 steps. Pixel objective (effort 3; 8 steps at
# LPIPS-VGG weights 0, 1/16, 1/4, 1/2 and 1): 1/4 gave the most PSNR for its LPIPS; it did not
# saturate at 8 steps (16 scored better on every metric, a step of 0.04 no better than 0.02).
EFFORTS = {1: Effort(steps=4, lr=0.02), 2: Effort(steps=8, lr=0.02), 3: Effort(steps=16, lr=0.02, pixel=True)}
assert sorted(EFFORTS) == list(range(1, MAX_EFFORT + 1))


def windows(h: int, w: int, size: int = WINDOW) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) windows of at most size x size covering an h x w latent."""
    ys = [(a, min(a + size, h)) for a in range(0, h, size)]
    xs = [(a, min(a + size, w)) for a in range(0, w, size)]
    return [(y0, y1, x0, x1) for y0, y1 in ys for x0, x1 in xs]


# Scores one window: (leaf, eps, window, origin) -> a scalar tensor, leaf and eps (1, 32, *) cut
# to the window with its context, window (y0, y1, x0, x1) the scored latent positions, origin
# (a0, b0) the context's top-left position.
WindowScore = Callable[[torch.Tensor, torch.Tensor, tuple[int, int, int, int], tuple[int, int]], torch.Tensor]


def windowed(score: WindowScore, window: int) -> Objective:
    """An Objective summing score over the windows of the latent (each run with MARGIN positions
    of context), and its gradient, one window's graph at a time; the sampler noise is drawn from
    a generator seeded by the step index, so the objective is deterministic."""

    def objective(z_c: torch.Tensor, step: int, grad: bool) -> tuple[float, torch.Tensor | None]:
        eps = torch.randn(z_c.shape, generator=torch.Generator().manual_seed(step), dtype=z_c.dtype)
        g = torch.zeros_like(z_c) if grad else None
        total = 0.0
        for y0, y1, x0, x1 in windows(z_c.shape[2], z_c.shape[3], window):
            a0, a1 = max(0, y0 - MARGIN), min(z_c.shape[2], y1 + MARGIN)  # the window with context
            b0, b1 = max(0, x0 - MARGIN), min(z_c.shape[3], x1 + MARGIN)
            with torch.set_grad_enabled(grad):
                leaf = z_c[:, :, a0:a1, b0:b1].detach().requires_grad_(grad)
                d = score(leaf, eps[:, :, a0:a1, b0:b1], (y0, y1, x0, x1), (a0, b0))
                if grad:  # the input's gradient only: the decoder's weights stay untouched
                    assert g is not None
                    g[:, :, a0:a1, b0:b1] += torch.autograd.grad(d, leaf)[0]
            total += d.item()
        return total, g

    return objective


def latent_path_mse(
    dec: DiffusionDecoder,
    target: torch.Tensor,
    q_byte: int,
    realism: float | None,
    weight: float = W_LATENT,
    window: int = WINDOW,
) -> Objective:
    """Pfo's objective for target, the image's own TAEF2 latent (1, 32, ceil(H/8), ceil(W/8)):
    the whole latent is scored, one window's graph at a time."""
    r = None if realism is None else torch.full((1,), float(realism))
    n = target.numel()

    def score(
        leaf: torch.Tensor, eps: torch.Tensor, win: tuple[int, int, int, int], origin: tuple[int, int]
    ) -> torch.Tensor:
        (y0, y1, x0, x1), (a0, b0) = win, origin
        out = sample(dec, leaf, q_byte, PATH_STEPS, eps, r)
        err = out[:, :, y0 - a0 : y1 - a0, x0 - b0 : x1 - b0] - target[:, :, y0:y1, x0:x1]  # (1, 32, y1 - y0, x1 - x0)
        return err.pow(2).sum() * (weight / n)

    return windowed(score, window)


def pixel_path_loss(
    dec: DiffusionDecoder,
    image: torch.Tensor,
    q_byte: int,
    realism: float | None,
    steps: int,
    perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    weight: float = W_PERCEPTUAL,
    window: int = WINDOW,
) -> Objective:
    """Effort 3's objective for image (1, 3, H, W) in [0, 1]: MSE + weight x perceptual(image the
    whole decoding path makes, image), the path being the DRM, `steps` CDM steps and the pixel
    decoder at R (what `ulic decompress` runs), perceptual an (N, 3, h, w) x 2 -> (N,) distance
    (LPIPS-VGG). Scored window by window, each window weighted by its share of the image's
    pixels, so memory stays bounded at any size."""
    if dec.pixel is None:
        raise ValueError("effort 3 needs a decoder with its own pixel decoder (stage 3)")
    pixel = dec.pixel
    r = torch.full((1,), 0.0 if realism is None else float(realism))
    h, w = image.shape[2:]
    bf16 = native_bf16()

    def score(
        leaf: torch.Tensor, eps: torch.Tensor, win: tuple[int, int, int, int], origin: tuple[int, int]
    ) -> torch.Tensor:
        (y0, y1, x0, x1), (a0, b0) = win, origin
        p0, p1, c0, c1 = S * y0, min(S * y1, h), S * x0, min(S * x1, w)  # the window's pixels in the image
        ref = image[:, :, p0:p1, c0:c1]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            img = pixel(sample(dec, leaf, q_byte, steps, eps, r), r)  # (1, 3, 8 leaf height, 8 leaf width)
            img = img[:, :, p0 - S * a0 : p1 - S * a0, c0 - S * b0 : c1 - S * b0].float()
            dist = path_distortion(img, ref, perceptual, weight)
        return dist.float()[0] * (ref.shape[2] * ref.shape[3] / (h * w))

    return windowed(score, window)


def path_distortion(
    img: torch.Tensor,
    ref: torch.Tensor,
    perceptual: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    weight: float = W_PERCEPTUAL,
) -> torch.Tensor:
    """Effort 3's distortion per image (B,): MSE + weight x perceptual(img clamped to [0, 1], ref),
    img and ref (B, 3, H, W); also what `ulic.train.train_encoder --target path` trains on."""
    return (img - ref).pow(2).mean((1, 2, 3)) + weight * perceptual(img.clamp(0, 1), ref)


# -- concept ids (SRC) ---------------------------------------------------------------------------
CANDIDATES = 3  # nearest centroids tried per region


def concept_candidates(centroids: torch.Tensor, embeddings: torch.Tensor, k: int = CANDIDATES) -> torch.Tensor:
    """(regions, DIM) unit-norm embeddings -> (regions, k) ids of the k nearest of centroids
    (K, DIM) in cosine, nearest first (column 0: the plain encoder's choice)."""
    return (embeddings.float() @ centroids.float().T).topk(min(k, centroids.shape[0]), dim=1).indices


@torch.no_grad()
def choose_concepts(
    dec: DiffusionDecoder,
    z_c: torch.Tensor,
    target: torch.Tensor,
    q_byte: int,
    realism: float | None,
    size: tuple[int, int],
    candidates: torch.Tensor,
) -> torch.Tensor:
    """Pfo over the SRC section: the concept id per region (regions,) among its candidates
    (regions, k) whose decoding path (DRM and PATH_STEPS CDM steps, fixed noise) lands closest to
    the image's own TAEF2 latent target (1, 32, ceil(H/8), ceil(W/8)) within that region.

    One pass per candidate rank puts every region at its j-th candidate at once and sums the
    squared error per region; each region then keeps its best rank (k passes, not regions x k;
    regions interact only across their borders). Ties keep the nearest centroid."""
    from ulic.semantics.encoder import GRID, concept_map

    r = None if realism is None else torch.full((1,), float(realism))
    eps = torch.randn(z_c.shape, generator=torch.Generator().manual_seed(0), dtype=z_c.dtype)
    h, w = target.shape[2:]
    hw = (int(z_c.shape[2]), int(z_c.shape[3]))
    region = concept_map(torch.arange(GRID * GRID)[None], size, (h, w))[0].flatten()  # (h * w,) region of each position
    errors = []
    for j in range(candidates.shape[1]):
        cmap = concept_map(candidates[:, j][None], size, hw)  # (1, h_pad, w_pad)
        out = sample(dec, z_c, q_byte, PATH_STEPS, eps, r, concepts=cmap)[:, :, :h, :w]
        err = (out - target).pow(2).sum(1).flatten()  # (h * w,)
        errors.append(torch.zeros(GRID * GRID, dtype=err.dtype).index_add_(0, region, err))
    best = torch.stack(errors, 1).argmin(1)  # (regions,): the first minimum, so ties keep rank 0
    return candidates[torch.arange(len(best)), best]
