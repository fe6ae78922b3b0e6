"""Encode-time optimisation: tiled pixel gradients equal the one-pass ones, and tuning helps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import needs_vae

from ulic import api
from ulic.codec.model import lmbda_of
from ulic.codec.optimize import optimize_latents, pixel_sse_grad
from ulic.errors import UlicError
from ulic.vae.taef2 import make_decoder


def test_tiled_pixel_gradient_equals_one_pass():
    torch.manual_seed(0)
    decoder = make_decoder().requires_grad_(False)
    z_c = torch.randn(1, 32, 20, 18)
    image = torch.rand(1, 3, 155, 141)  # smaller than 8 * latent: the decoder's extra is cropped
    sse, grad = pixel_sse_grad(decoder, z_c, image, bf16=False, tile=64)  # 3 x 3 tiles
    ref = z_c.clone().requires_grad_(True)
    ref_sse = (decoder(ref)[:, :, :155, :141] - image).pow(2).sum()
    ref_sse.backward()
    assert sse == pytest.approx(ref_sse.item(), rel=1e-5)
    torch.testing.assert_close(grad, ref.grad, rtol=1e-4, atol=1e-6 * ref.grad.abs().max().item())
    score_only = pixel_sse_grad(decoder, z_c, image, bf16=False, tile=64, grad=False)
    assert score_only == (pytest.approx(sse, rel=1e-6), None)


@needs_vae
def test_optimize_lowers_the_real_cost(tiny_model, photo):
    """At a fixed q, the tuned latents' real bytes + lambda * MSE is not above the start's."""

    def cost(r: api.EncodeResult) -> float:
        x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
        y = api.decode(r.data, tiny_model, decoder="mse").image
        lam = float(lmbda_of(torch.tensor(r.quality / 255), tiny_model.codec.cfg))
        return r.bpp + lam * float((y - x).pow(2).mean())

    plain = api.encode(photo, quality=50, model=tiny_model, optimize=0)
    tuned = api.encode(photo, quality=50, model=tiny_model, optimize=8)
    assert tuned.quality == plain.quality
    assert cost(tuned) <= cost(plain) * 1.01
    assert tuned.seconds["optimize"] > plain.seconds["optimize"]


def test_zero_steps_returns_the_given_latents(tiny_model):
    y, z = torch.zeros(1, 8, 2, 2), torch.zeros(1, 8, 1, 1)
    image = torch.rand(1, 3, 64, 64)
    out = optimize_latents(tiny_model.codec, make_decoder(), image, y, z, 100, 0)
    assert out[0] is y and out[1] is z


def test_no_better_iterate_returns_the_given_latents(tiny_model):
    """With a zero step nothing improves on the start, which comes back as the same tensors."""
    codec = tiny_model.codec
    y, z = codec.analyse(torch.randn(1, 32, 16, 16))
    out = optimize_latents(codec, make_decoder(), torch.rand(1, 3, 100, 90), y, z, 128, 2, lr=0.0)
    assert out[0] is y and out[1] is z


@needs_vae
def test_optimized_bpp_target_still_within_tolerance(tiny_model, photo):
    target = 8 * len(api.encode(photo, quality=70, model=tiny_model, optimize=0).data) / photo[..., 0].size
    r = api.encode(photo, bpp=target, model=tiny_model, optimize=6)
    assert abs(r.bpp / target - 1) <= api.BPP_TOLERANCE


@pytest.mark.parametrize("bad", [-1, 1001, 2.5])
def test_bad_optimize_values(tiny_model, photo, bad):
    with pytest.raises(UlicError, match="optimize"):
        api.encode(np.asarray(photo), quality=50, model=tiny_model, optimize=bad)
