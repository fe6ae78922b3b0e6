"""Latent codec on a tiny seeded model: exact symbol round trips, rate estimate vs bytes."""

import pytest
import torch
from conftest import TINY, make_tiny_codec

from ulic.codec import model as codec_model
from ulic.codec.model import LATENT_PER_Z, LatentCodec
from ulic.errors import WeightsError
from ulic.model_store import load_model, save_model


def y_hat_of(codec: LatentCodec, data: bytes, hw, q):
    """Decode the y_hat the decoder sees (before g_s)."""
    return codec.decompress_latents(data, (hw[0] // LATENT_PER_Z, hw[1] // LATENT_PER_Z), q)


@pytest.mark.parametrize("q", [0, 100, 255])
def test_round_trip_matches_encoder(tiny_codec, q):
    torch.manual_seed(1)
    x = torch.randn(1, 32, 32, 48) * 0.85
    data, bits = tiny_codec.compress(x, q)
    z_c = tiny_codec.decompress(data, (32, 48), q)
    assert z_c.shape == x.shape
    # the encoder's own symbols, through the public quantise-and-code object
    _, sym, mean_s, _ = tiny_codec.symbols(*tiny_codec.analyse(x), q)
    y_hat = (sym.double() + mean_s) * tiny_codec.coding_state.igain[q].double()[None, :, None, None]
    assert torch.equal(y_hat_of(tiny_codec, data, (32, 48), q), y_hat.float())
    assert sym.abs().max() <= tiny_codec.cfg.radius_y
    # the real byte count is the model's estimate plus at most a few bytes of coder flush
    assert 0 <= 8 * len(data) - bits < 64


def test_decoding_is_repeatable_and_thread_independent(tiny_codec):
    x = torch.randn(1, 32, 16, 32) * 0.85
    data, _ = tiny_codec.compress(x, 128)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = tiny_codec.decompress(data, (16, 32), 128)
        b = y_hat_of(tiny_codec, data, (16, 32), 128)
        torch.set_num_threads(2)
        c = tiny_codec.decompress(data, (16, 32), 128)
        d = y_hat_of(tiny_codec, data, (16, 32), 128)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(b, d)  # entropy-decoded values identical
    assert float((a - c).abs().max()) < 1e-4


def test_rate_grows_with_quality(tiny_codec):
    x = torch.randn(1, 32, 32, 32) * 0.85
    sizes = [len(tiny_codec.compress(x, q)[0]) for q in (0, 128, 255)]
    assert sizes[0] <= sizes[1] <= sizes[2]


def test_training_forward_shapes(tiny_codec):
    codec = LatentCodec(TINY)
    out = codec(torch.randn(2, 32, 32, 32), torch.tensor([0.0, 1.0]))
    assert out["z_c"].shape == (2, 32, 32, 32)
    assert out["bits"].shape == (2,) and (out["bits"] > 0).all()
    assert out["bits"][1] > out["bits"][0]  # q = 1 spends more bits than q = 0 (same x)


def test_gain_interpolation_hits_levels():
    rows = torch.log(torch.tensor([[1.0], [4.0], [16.0]]))
    g = codec_model.interp_rows(rows, torch.tensor([0.0, 0.25, 0.5, 1.0]))
    assert torch.allclose(g[:, 0], torch.tensor([1.0, 2.0, 4.0, 16.0]))


def test_save_load_round_trip_same_bytes(tmp_path, tiny_codec):
    save_model(make_tiny_codec(), tmp_path, "tiny")
    m1 = load_model(str(tmp_path))
    x = torch.randn(1, 32, 16, 16)
    a, _ = m1.codec.compress(x, 40)
    load_model.cache_clear()
    m2 = load_model(str(tmp_path))
    assert m2.codec.compress(x, 40)[0] == a
    assert m1.fingerprint == m2.fingerprint


def test_load_rejects_tampered_weights(tmp_path):
    save_model(make_tiny_codec(), tmp_path, "tiny")
    blob = bytearray((tmp_path / "model.safetensors").read_bytes())
    blob[-1] ^= 1
    (tmp_path / "model.safetensors").write_bytes(bytes(blob))
    load_model.cache_clear()
    with pytest.raises(WeightsError, match="sha256"):
        load_model(str(tmp_path))


def test_load_missing_folder(tmp_path):
    with pytest.raises(WeightsError, match="cannot read"):
        load_model(str(tmp_path / "nope"))
