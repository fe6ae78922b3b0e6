"""Latent codec on a tiny seeded model: exact symbol round trips, rate estimate vs bytes."""
import pytest
import torch

from ulic.codec import model as codec_model
from ulic.codec.model import LatentCodec
from ulic.codec.store import load_model, save_model
from ulic.errors import WeightsError

from conftest import TINY, make_tiny_codec


def y_hat_of(codec: LatentCodec, data: bytes, hw, q):
    """Decode the y_hat the decoder sees (before g_s)."""
    captured = {}
    handle = codec.g_s.register_forward_pre_hook(lambda m, a: captured.setdefault("y", a[0].clone()))
    codec.decompress(data, hw, q)
    handle.remove()
    return captured["y"]


@pytest.mark.parametrize("q", [0, 100, 255])
def test_round_trip_matches_encoder(tiny_codec, q):
    torch.manual_seed(1)
    x = torch.randn(1, 32, 32, 48) * 0.85
    data, bits = tiny_codec.compress(x, q)
    z_c = tiny_codec.decompress(data, (32, 48), q)
    assert z_c.shape == x.shape
    # the encoder's own y_hat, recomputed the same way
    st = tiny_codec.coding
    y = tiny_codec.g_a(x)
    z_hat = torch.round(tiny_codec.h_a(y) * st.zgain[q][None, :, None, None]).clamp(-32, 32).long()
    mean_s, _ = tiny_codec._entropy_params(z_hat, q)
    sym = torch.round(y.double() * st.gain[q].double()[None, :, None, None] - mean_s).clamp(-64, 64)
    y_hat = (sym + mean_s) * st.igain[q].double()[None, :, None, None]
    assert torch.equal(y_hat_of(tiny_codec, data, (32, 48), q), y_hat.float())
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
    assert out["y_likelihoods"].shape == (2, 8, 8, 8)
    assert out["z_likelihoods"].shape == (2, 8, 2, 2)
    assert (out["y_likelihoods"] > 0).all() and (out["y_likelihoods"] <= 1).all()


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
