"""FID/KID: patch protocol, the Frechet distance against scipy's sqrtm formula, and the real
Inception on a tiny set (self-distance ~ 0, monotone in a known perturbation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_eval_metrics import make_pair

from ulic.errors import UlicError, WeightsError
from ulic.evaluation.fid import (
    fid_kid,
    frechet_distance,
    kernel_inception_distance,
    patch_features,
    patches,
    tf_bilinear,
)


def test_patch_grid_counts():
    x = torch.rand(1, 3, 512, 768)
    assert patches(x, 256).shape == (6 + 2, 3, 256, 256)  # 3x2 grid + shifted 2x1 grid
    assert patches(x, 64).shape == (96 + 77, 3, 64, 64)  # 12x8 + shifted 11x7
    assert patches(torch.rand(1, 3, 300, 520), 256).shape[0] == 2  # < 384: no shifted pass
    with pytest.raises(UlicError):
        patches(torch.rand(1, 3, 100, 300), 256)


def test_patches_are_exact_crops():
    x = torch.rand(1, 3, 384, 384)
    p = patches(x, 256)
    assert torch.equal(p[0], x[0, :, :256, :256])
    assert torch.equal(p[1], x[0, :, 128:384, 128:384])


def test_resize_keeps_constant_images():
    x = torch.full((1, 3, 64, 64), 77.0)
    assert torch.allclose(tf_bilinear(x), torch.full((1, 3, 299, 299), 77.0))


def test_frechet_distance_matches_sqrtm_formula():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(0)
    f = rng.standard_normal((200, 16))
    g = f @ rng.uniform(0.5, 1.5, (16, 16)) / 4 + 0.2
    s1, s2 = np.cov(f, rowvar=False), np.cov(g, rowvar=False)
    ref = ((f.mean(0) - g.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy_linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(f, g) == pytest.approx(ref, rel=1e-6)
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(f, f + 0.5) == pytest.approx(16 * 0.25, rel=1e-9)
    few = rng.standard_normal((10, 40))  # fewer samples than dimensions: the nuclear-norm path
    g2 = few * 1.3 + 0.1
    s1, s2 = np.cov(few, rowvar=False), np.cov(g2, rowvar=False)
    ref2 = ((few.mean(0) - g2.mean(0)) ** 2).sum() + np.trace(s1 + s2) - 2 * np.trace(scipy_linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(few, g2) == pytest.approx(ref2, rel=1e-5)
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-9)


def test_kid_orders_shifts():
    rng = np.random.default_rng(1)
    f = rng.standard_normal((150, 32))
    k = [kernel_inception_distance(f, f + s, subsets=10)[0] for s in (0.0, 0.2, 0.5)]
    assert k[0] < k[1] < k[2]  # paired identical sets give a slightly negative unbiased estimate


def _inception_available() -> str | None:
    try:
        from ulic.evaluation.fid import inception

        inception()
    except WeightsError as e:
        return str(e)
    return None


_NO_INCEPTION = _inception_available()


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored after it (later tests must not inherit it)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.skipif(_NO_INCEPTION is not None, reason=f"Inception weights unavailable: {_NO_INCEPTION}")
def test_fid_real_inception_self_zero_and_monotone(one_thread):
    seeds = range(40, 46)
    ref = [patch_features(make_pair(s, 64, 64, 0.0)[0], 64) for s in seeds]
    assert fid_kid(ref, ref)["fid"] == pytest.approx(0.0, abs=1e-6)
    fids = []
    for noise in (0.03, 0.3):
        rec = [patch_features(make_pair(s, 64, 64, noise)[1], 64) for s in seeds]
        fids.append(fid_kid(ref, rec)["fid"])
    assert 0 < fids[0] < fids[1]
