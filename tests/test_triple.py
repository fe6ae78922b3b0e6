"""The triple encoder: starts as the codec's own analysis, lives beside its codec in the model
folder, writes files any decoder of that codec reads, and trains against the frozen codec."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import make_tiny_codec, needs_vae
from test_eval_learned import needs_lpips
from test_realism import tiny_crops

from ulic.codec.triple import TripleAnalysis, TripleConfig
from ulic.errors import WeightsError
from ulic.model_store import ENCODER_FILES, load_encoder, load_model, save_encoder


def test_forward_latents_is_forward_from_the_analysis():
    codec = make_tiny_codec()
    x, q = torch.randn(2, 32, 32, 32), torch.tensor([0.2, 0.9])
    torch.manual_seed(1)
    a = codec(x, q)
    torch.manual_seed(1)
    b = codec.forward_latents(*codec.analyse(x), q)
    assert torch.equal(a["z_c"], b["z_c"]) and torch.equal(a["bits"], b["bits"])


@needs_lpips
@pytest.mark.parametrize("arm", [TripleConfig(), TripleConfig(pixel=True, semantic=False)])
def test_a_new_triple_encoder_is_the_codecs_own_analysis(arm):
    """The new branches start at exactly zero, so step 0 of training (and an untrained encoder
    in a folder) codes exactly what the codec's analysis codes."""
    codec = make_tiny_codec()
    enc = TripleAnalysis(codec, arm)
    x, image = torch.randn(1, 32, 16, 16), torch.rand(1, 3, 128, 128)
    y, z = enc(x, image)
    y0, z0 = codec.analyse(x)
    assert torch.equal(y, y0) and torch.equal(z, z0)
    with pytest.raises(ValueError, match="does not match"):
        enc(x, image[:, :, :64])


@needs_lpips
def test_the_extra_inputs_reach_y_and_get_gradients():
    codec = make_tiny_codec()
    enc = TripleAnalysis(codec, TripleConfig())
    assert enc.e_d is not None and enc.p_s is not None
    x, image = torch.randn(1, 32, 16, 16), torch.rand(1, 3, 128, 128)
    y, z = enc(x, image)
    (y.square().sum() + z.square().sum()).backward()
    # zero-initialised layers get gradients; the layers before them do not yet
    assert enc.e_d[-1].weight.grad.abs().sum() > 0 and enc.p_s.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in codec.parameters())  # the codec itself stays untouched
    with torch.no_grad():
        enc.p_s.weight.normal_(0, 0.1)
    y2, _ = enc(x, image)
    assert not torch.allclose(y2, y)


def _folder_with_encoder(tmp_path, tiny_model_dir, enc_of=None, perturb: bool = False):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    model = load_model(str(folder))
    enc = TripleAnalysis(enc_of or model.codec, TripleConfig(pixel=True, semantic=False))
    if perturb:
        with torch.no_grad():
            assert enc.e_d is not None
            torch.manual_seed(0)  # a fixed perturbation, large enough to move symbols of the tiny codec
            enc.e_d[-1].weight.normal_(0, 0.5)
            enc.e_d[-1].bias.fill_(1.0)
    save_encoder(enc, model, folder)
    return folder


@needs_vae
def test_files_from_the_triple_encoder_decode_with_the_plain_folder(tmp_path, tiny_model_dir, photo):
    """An untrained encoder writes the same bytes as the codec's analysis; a trained (here:
    perturbed) one writes other symbols under the same model id, which the folder without
    the encoder decodes: the decoder side does not change."""
    from ulic import api

    plain = api.encode(photo, quality=50, model=load_model(str(tiny_model_dir))).data
    same = _folder_with_encoder(tmp_path / "a", tiny_model_dir)
    assert api.encode(photo, quality=50, model=load_model(str(same))).data == plain
    other = _folder_with_encoder(tmp_path / "b", tiny_model_dir, perturb=True)
    data = api.encode(photo, quality=50, model=load_model(str(other))).data
    assert data != plain and data[:8] == plain[:8]  # same header (size, q, model id)
    img = api.decode(data, decoder="mse", model=load_model(str(tiny_model_dir))).image
    assert img.shape[2:] == photo.shape[:2]


def test_the_store_refuses_an_encoder_of_another_codec(tmp_path, tiny_model_dir):
    folder = _folder_with_encoder(tmp_path, tiny_model_dir)
    assert isinstance(load_encoder(str(folder)), TripleAnalysis)
    assert load_encoder(str(tiny_model_dir)) is None
    cfg = json.loads((folder / ENCODER_FILES[0]).read_text())
    (folder / ENCODER_FILES[0]).write_text(json.dumps({**cfg, "codec_sha256": "0" * 64}))
    load_encoder.cache_clear()
    with pytest.raises(WeightsError, match="another codec"):
        load_encoder(str(folder))
    other = _folder_with_encoder(tmp_path / "c", tiny_model_dir, enc_of=make_tiny_codec(seed=1))
    assert isinstance(load_encoder(str(other)), TripleAnalysis)  # same shapes: only the hash tells
    (other / ENCODER_FILES[1]).write_bytes(b"not weights")
    load_encoder.cache_clear()
    with pytest.raises(WeightsError, match="sha256"):
        load_encoder(str(other))


@needs_vae
@needs_lpips
def test_encoder_training_steps_resume_and_export(tmp_path):
    """Two steps of the triple arm against the shipped codec, a resume to step 3, the export
    into a model folder, and that folder's encoder is the trained one."""
    from ulic.train.common import checkpoint_meta
    from ulic.train.export import main as export_main
    from ulic.train.train_encoder import main

    crops = tmp_path / "crops.safetensors"
    tiny_crops(crops, vocabulary=None)
    run = tmp_path / "run"
    args = ["--crops", str(crops), "--run", str(run), "--batch", "2", "--ckpt-every", "1", "--bf16", "off"]
    assert main(args + ["--steps", "2"]) == 0
    assert main(args + ["--steps", "3"]) == 0
    assert checkpoint_meta(run / "checkpoint.safetensors")["step"] == 3
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert "val_q0.5_bpp" in log[0] and log[-1]["step"] == 3
    out = tmp_path / "model"
    assert export_main(["--encoder-checkpoint", str(run / "checkpoint.safetensors"), "--out", str(out)]) == 0
    enc = load_encoder(str(out))
    assert enc is not None and enc.e_d is not None and enc.p_s is not None
    assert enc.e_d[-1].weight.abs().sum() > 0  # trained away from zero
    assert load_model(str(out)).fingerprint == load_model().fingerprint


@needs_lpips
def test_dense_features_by_tiles_equal_one_pass():
    """Large images run VGG16 by tiles with a halo wider than relu5_3's receptive field: the
    same features as one pass (float rounding aside), every 8 x 8 block one vector."""
    from ulic.semantics.encoder import DENSE_DIM, DENSE_TILE, _dense, dense_features

    image = torch.rand(1, 3, DENSE_TILE + 64, DENSE_TILE + 128, generator=torch.Generator().manual_seed(0))
    tiled = dense_features(image)
    assert tiled.shape == (1, DENSE_DIM, image.shape[2] // 8, image.shape[3] // 8)
    torch.testing.assert_close(tiled, _dense(image, False), atol=1e-3, rtol=1e-3)


@needs_vae
@needs_lpips
def test_encoder_training_through_the_decoding_path(tmp_path):
    """`--target path`: the plain arm trains against the shipped folder's whole default decoding
    path, logs LPIPS-VGG (in the loss) and LPIPS-Alex (not) and leaves the decoder untouched."""
    from ulic.model_store import load_decoder
    from ulic.train.common import checkpoint_meta
    from ulic.train.train_encoder import main

    crops = tmp_path / "crops.safetensors"
    tiny_crops(crops, vocabulary=None)
    run = tmp_path / "run"
    dec, _ = load_decoder(str(load_model().folder))
    before = {k: v.clone() for k, v in dec.state_dict().items()}
    args = ["--crops", str(crops), "--run", str(run), "--batch", "2", "--bf16", "off", "--arm", "plain"]
    assert main(args + ["--target", "path", "--steps", "2", "--ckpt-every", "1", "--w-latent", "0"]) == 0
    meta = checkpoint_meta(run / "checkpoint.safetensors")
    assert meta["step"] == 2 and meta["target"] == "path" and meta["path_steps"] == 4 and meta["realism"] == 1.0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert {"val_q0.5_lpips_alex", "val_q0.5_lpips_vgg", "val_q0.5_bpp"} <= set(log[0])
    assert all(torch.equal(v, dec.state_dict()[k]) for k, v in before.items())  # the decoder is frozen
