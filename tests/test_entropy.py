import numpy as np
import pytest
import torch

from ulic.codec import range_coder
from ulic.codec.entropy_models import (
    PRECISION,
    FactorizedPrior,
    gaussian_likelihood,
    gaussian_tables,
    quantize_pmf,
    scale_table,
)


def test_quantize_pmf_sums_and_floor():
    rng = np.random.default_rng(0)
    pmf = rng.random((5, 129)) ** 8  # many tiny probabilities
    freq = quantize_pmf(pmf)
    assert (freq.sum(-1) == 1 << PRECISION).all()
    assert freq.min() >= 1
    assert (np.argmax(freq, -1) == np.argmax(pmf, -1)).all()


def test_gaussian_tables_known_values():
    t = gaussian_tables(torch.tensor([1.0], dtype=torch.float64), radius=8)[0].numpy()
    # P(round(N(0,1)) == 0) = erf(0.5 / sqrt 2) = 0.38292...
    assert abs(t[8] / (1 << PRECISION) - 0.38292) < 1e-3
    assert t[0] == t[-1] and t[7] == t[9]


def test_scale_table_endpoints():
    s = scale_table(64, 0.11, 48.0)
    assert s.dtype == torch.float64 and len(s) == 64
    assert abs(float(s[0]) - 0.11) < 1e-12 and abs(float(s[-1]) - 48.0) < 1e-9


def test_gaussian_likelihood_sums_to_one():
    v = torch.arange(-30, 31, dtype=torch.float64)
    p = gaussian_likelihood(v, torch.zeros(()), torch.tensor(2.0, dtype=torch.float64))
    assert abs(float(p.sum()) - 1) < 1e-6


def test_factorized_prior_tables_and_likelihood():
    torch.manual_seed(0)
    prior = FactorizedPrior(4)
    z = torch.arange(-200, 201, dtype=torch.float32).reshape(1, 1, 1, -1).expand(1, 4, 1, -1)
    p = prior.likelihood(z)
    assert torch.allclose(p.sum(-1), torch.ones(1, 4, 1), atol=1e-3)
    t = prior.tables(radius=20)
    assert t.shape == (4, 41) and (t.sum(-1) == 1 << PRECISION).all()


@pytest.mark.parametrize("seed", range(5))
def test_range_coder_exact_round_trip(seed):
    rng = np.random.default_rng(seed)
    tables = gaussian_tables(scale_table(), 64).numpy()
    enc, groups = range_coder.Encoder(), []
    for level in rng.integers(0, 64, size=6):
        s = np.clip(np.round(rng.normal(0, 3, size=rng.integers(0, 200))), -64, 64).astype(int) + 64
        enc.encode(s, tables[level])
        groups.append((level, s))
    data = enc.finish()
    dec = range_coder.Decoder(data)
    for level, s in groups:
        assert np.array_equal(dec.decode(len(s), tables[level]), s)


def test_word_bytes_round_trip():
    words = np.array([0x01020304, 0xA0B00000], dtype=np.uint32)
    b = range_coder.words_to_bytes(words)
    assert b == bytes([1, 2, 3, 4, 0xA0, 0xB0])
    assert np.array_equal(range_coder.bytes_to_words(b), words)
