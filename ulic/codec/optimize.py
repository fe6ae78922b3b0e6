"""Encode-time optimisation of what is sent (ResULIC's fidelity optimiser, for pixel fidelity).

The analysis transforms are amortised: y = g_a(x) is a good first guess for any image, not the
best y for this one. Knowing the image, the encoder descends on the training loss itself, for
this image and this q byte only:

    y, z  = g_a(x), h_a(g_a(x))               before gains, as `LatentCodec.analyse` gives them
    loss  = bits(y_hat, z_hat) / (H W) + lambda(q) * MSE(image, D(g_s(y_hat)))

with y_hat and z_hat rounded in the forward pass and passed straight through in the backward
pass, Adam with a cosine-decayed step. D is the frozen TAEF2 decoder: its full-resolution part
runs tile by tile (`ulic.vae.tiling`), so memory stays bounded at any image size. With hard
rounding in the forward pass the loss of each iterate is its real cost up to the coder's table
quantisation, so the lowest-loss iterate is kept (the start included). Only the encoder
changes: the decoder and the files' format do not.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ulic.codec.model import Q_STEPS, LatentCodec, lmbda_of
from ulic.runtime import native_bf16
from ulic.vae.taef2 import SCALE as S  # image pixels per latent position
from ulic.vae.taef2 import decode_pixels
from ulic.vae.tiling import DECODER_HALO, DECODER_SPLIT, TILE, tiles

LEARNING_RATE = 0.01  # Adam step on y and z (pre-gain units), decayed to 0 by a cosine
FIDELITY_STEPS = 20  # the step count LEARNING_RATE was chosen for (`ulic compress --optimize 20`)


def pixel_sse_grad(
    decoder: torch.nn.Sequential,
    z_c: torch.Tensor,
    image: torch.Tensor,
    bf16: bool,
    tile: int = TILE,
    grad: bool = True,
) -> tuple[float, torch.Tensor | None]:
    """Sum of squared errors of decoder(z_c) against image (1, 3, H, W), counting only pixels
    inside the image (z_c (1, 32, ceil(H/8), ceil(W/8))), and (if grad) its gradient with
    respect to z_c."""
    h, w = image.shape[2:]
    sse = 0.0
    with torch.set_grad_enabled(grad):
        z_leaf = z_c.detach().requires_grad_(grad)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):  # GroupNorm at 1/8, untiled
            feats = decoder[:DECODER_SPLIT](z_leaf).float()  # (1, 64, h/8, w/8)
        f = feats.detach().requires_grad_(grad)
        for (y0, y1, x0, x1), (ya, yb, xa, xb) in tiles(f.shape[2], f.shape[3], tile // S, DECODER_HALO):
            r1, c1 = min(S * y1, h), min(S * x1, w)
            if S * y0 >= h or S * x0 >= w:
                continue  # a tile of padding only
            pix = decode_pixels(decoder[DECODER_SPLIT:], f[:, :, ya:yb, xa:xb], bf16)  # (1, 3, 8(yb-ya), 8(xb-xa))
            pix = pix[:, :, S * (y0 - ya) : S * (y0 - ya) + r1 - S * y0, S * (x0 - xa) : S * (x0 - xa) + c1 - S * x0]
            err = (pix - image[:, :, S * y0 : r1, S * x0 : c1]).pow(2).sum()
            if grad:
                err.backward()  # into f.grad, one tile's graph at a time
            sse += err.item()
        if grad:
            feats.backward(f.grad)
    return sse, z_leaf.grad


# An objective scores a synthesised latent z_c (1, 32, ceil(H/8), ceil(W/8)) at optimisation step
# `step`: (distortion per image pixel in the units lambda(q) weighs, its gradient with respect to
# z_c, or None when grad is False).
Objective = Callable[[torch.Tensor, int, bool], tuple[float, "torch.Tensor | None"]]


def pixel_mse(decoder: torch.nn.Sequential, image: torch.Tensor, bf16: bool | None = None) -> Objective:
    """The fidelity mode's objective: MSE of the frozen TAEF2 decoder's image against image
    (1, 3, H, W) in [0, 1], decoded in tiles (bounded memory at any size)."""
    bf16 = native_bf16() if bf16 is None else bf16
    n = 3 * image.shape[2] * image.shape[3]

    def objective(z_c: torch.Tensor, step: int, grad: bool) -> tuple[float, torch.Tensor | None]:
        sse, g = pixel_sse_grad(decoder, z_c, image, bf16, grad=grad)
        return sse / n, (g / n if g is not None else None)

    return objective


def tune_latents(
    codec: LatentCodec,
    objective: Objective,
    size: tuple[int, int],
    y: torch.Tensor,
    z: torch.Tensor,
    q_byte: int,
    iterations: int,
    lr: float = LEARNING_RATE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tune y (1, M, Hp/32, Wp/32) and z (1, Cz, Hp/128, Wp/128) of an image of size (H, W) at
    q byte q_byte for bits / (H W) + lambda(q) * objective; returns the pair with the lowest loss
    seen (the given pair if none was lower)."""
    if iterations <= 0:
        return y, z
    gains = codec.byte_gains(q_byte)
    lam = float(lmbda_of(torch.tensor(q_byte / Q_STEPS), codec.cfg))
    pixels = size[0] * size[1]
    lh, lw = -(-size[0] // S), -(-size[1] // S)  # the latent decoding keeps
    y_t, z_t = y.detach().clone().requires_grad_(True), z.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([y_t, z_t], lr=lr)
    best = (math.inf, y, z)
    with torch.enable_grad():
        for i in range(iterations + 1):
            z_hat = codec.quantize(z_t * gains.z, "ste")
            mean_s, scale_s = codec.hyper(z_hat, gains)
            y_hat = codec.quantize(y_t * gains.y, "ste", mean_s)
            bits = codec.bits(y_hat, mean_s, scale_s, z_hat).sum()
            z_c = codec.g_s(y_hat * gains.y_inv)[:, :, :lh, :lw]  # (1, 32, ceil(H/8), ceil(W/8))
            last = i == iterations  # the last pass only scores the last step
            dist, grad = objective(z_c.detach(), i, not last)
            loss = bits.item() / pixels + lam * dist  # of y_t, z_t as they are
            if loss < best[0]:  # the start is kept as the given tensors themselves
                best = (loss, y, z) if i == 0 else (loss, y_t.detach().clone(), z_t.detach().clone())
            if last:
                break
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / iterations))
            opt.zero_grad()
            assert grad is not None  # computed by every pass but the last
            torch.autograd.backward([bits / pixels, z_c], [None, grad * lam])
            opt.step()
    return best[1], best[2]


def optimize_latents(
    codec: LatentCodec,
    decoder: torch.nn.Sequential,
    image: torch.Tensor,
    y: torch.Tensor,
    z: torch.Tensor,
    q_byte: int,
    iterations: int,
    lr: float = LEARNING_RATE,
    bf16: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fidelity mode (`--optimize N`): `tune_latents` for the pixel MSE through the frozen
    TAEF2 decoder of image (1, 3, H, W) in [0, 1]."""
    objective = pixel_mse(decoder, image, bf16)
    return tune_latents(codec, objective, (image.shape[2], image.shape[3]), y, z, q_byte, iterations, lr)
