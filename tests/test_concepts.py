"""The decoder reads the SRC section's concepts: region geometry, the zero-initialised concept
input, the store's vocabulary check, decoding and stage-3 training with concept maps."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from conftest import make_tiny_codec, needs_vae
from test_eval_learned import needs_lpips
from test_realism import TINY_R, TINY_RUN, _randomise, tiny_crops
from test_semantics import _semantics

from ulic import api
from ulic.diffusion.decode import sample
from ulic.diffusion.networks import DiffusionDecoder
from ulic.errors import WeightsError
from ulic.model_store import load_decoder, load_model, load_semantics, save_decoder, save_model, save_semantics
from ulic.semantics.encoder import GRID, concept_map
from ulic.train.pixel_crops import Placement, crop_concepts

K = 8  # concepts of the test vocabulary (test_semantics._semantics)


def test_concept_map_follows_the_region_grid_and_padding_takes_the_last_region():
    ids = torch.arange(GRID * GRID)[None]  # region r has id r
    m = concept_map(ids, (96, 128), (16, 16))  # 12 x 16 positions cover the image, 4 rows of padding
    assert m.shape == (1, 16, 16)
    assert m[0, 0, 0] == 0 and m[0, 0, 15] == GRID - 1 and m[0, 11, 0] == GRID * (GRID - 1)
    assert m[0, 2, 0] == 0 and m[0, 3, 0] == GRID  # rows of 24 px: position 3 (centre 28 px) is in row 1
    assert (m[0, 12:] == m[0, 11]).all()  # padding below the image: the last row of regions
    two = concept_map(torch.stack([ids[0], ids[0].flip(0)]), (96, 128), (12, 16))
    assert torch.equal(two[1], GRID * GRID - 1 - two[0])


def test_crop_concepts_map_each_position_back_to_its_region_and_follow_the_flip():
    ids = np.arange(GRID * GRID)
    where = Placement(scale=0.5, x0=0, y0=0, flipped=False)  # the top-left 256 x 256 of a 256 x 512 photo
    m = crop_concepts(ids, (256, 512), where, 128)
    assert m.shape == (16, 16) and m.dtype == np.uint8
    assert m[0, 0] == 0 and m[-1, 0] == GRID * (GRID - 1) and m[0, -1] == 1 and m[-1, -1] == GRID * (GRID - 1) + 1
    flipped = crop_concepts(ids, (256, 512), dataclasses.replace(where, flipped=True), 128)
    assert np.array_equal(flipped, m[:, ::-1])


def _concept_decoder(seed: int = 0, vocabulary: int = 0) -> tuple[DiffusionDecoder, DiffusionDecoder]:
    """A trained-looking stage-3 decoder and the same with a zero-initialised concept input."""
    plain = DiffusionDecoder(TINY_R).eval()
    _randomise(plain, seed)
    withc = DiffusionDecoder(dataclasses.replace(TINY_R, concepts=K, vocabulary=vocabulary)).eval()
    missing, unexpected = withc.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and sorted(missing) == [
        "drm.concept_emb.weight",
        "drm.concept_in.bias",
        "drm.concept_in.weight",
    ]
    return plain, withc


def test_concept_input_starts_as_identity_and_unknown_means_the_none_id():
    plain, withc = _concept_decoder()
    z_c, eps, r = torch.randn(2, 32, 4, 6), torch.randn(2, 32, 4, 6), torch.ones(2)
    some = torch.randint(0, K, (2, 4, 6))
    with torch.no_grad():
        ref = sample(plain, z_c, 100, 2, eps, r)
        assert torch.allclose(sample(withc, z_c, 100, 2, eps, r, concepts=some), ref, atol=1e-6)
        assert torch.allclose(sample(withc, z_c, 100, 2, eps, r), ref, atol=1e-6)
        torch.nn.init.normal_(withc.drm.concept_in.weight, std=0.5)
        a = sample(withc, z_c, 100, 2, eps, r, concepts=some)
        b = sample(withc, z_c, 100, 2, eps, r, concepts=(some + 1) % K)
        none = sample(withc, z_c, 100, 2, eps, r, concepts=torch.full_like(some, K))
        assert (a - b).abs().max() > 1e-3  # the ids now matter
        assert torch.equal(sample(withc, z_c, 100, 2, eps, r), none)  # None = the id K everywhere


def test_store_refuses_a_concept_decoder_beside_another_vocabulary(tmp_path):
    sem = _semantics(k=K)
    save_semantics(sem, tmp_path)
    _, dec = _concept_decoder(vocabulary=sem.vocabulary_id)
    save_decoder(dec, tmp_path)
    load_semantics.cache_clear()
    load_decoder.cache_clear()
    loaded = load_decoder(str(tmp_path))
    assert loaded is not None and loaded[0].cfg.concepts == K
    _, other = _concept_decoder(vocabulary=(sem.vocabulary_id + 1) % 256)
    save_decoder(other, tmp_path)
    load_decoder.cache_clear()
    with pytest.raises(WeightsError, match="vocabulary"):
        load_decoder(str(tmp_path))
    load_decoder.cache_clear()


@needs_vae
@needs_lpips
def _concept_model(folder):
    """A tiny model folder: codec, test vocabulary and a decoder whose concept input matters."""
    sem = _semantics(k=K)
    save_model(make_tiny_codec(), folder, "tiny-test")
    save_semantics(sem, folder)
    _, dec = _concept_decoder(vocabulary=sem.vocabulary_id)
    torch.nn.init.normal_(dec.drm.concept_in.weight, std=0.5)
    save_decoder(dec, folder, {"default_decoder": "diffusion", "default_steps": 2, "default_realism": 1.0})
    for f in (load_semantics, load_decoder, load_model):
        f.cache_clear()
    return load_model(str(folder))


@needs_vae
@needs_lpips
def test_src_files_drive_a_concept_decoder_and_batches_keep_each_files_concepts(tmp_path, photo):
    m = _concept_model(tmp_path)
    img = photo[:96, :128].copy()
    src = api.encode(img, quality=50, model=m, src=True).data
    plain = api.encode(img, quality=50, model=m).data
    d = api.decode(src, model=m)
    assert d.concepts is not None and len(d.concepts) == GRID * GRID
    batch = api.decode_batch([src, plain], model=m)
    # compared on the refined latents: the random test decoder saturates its pixels, where one
    # kernel's rounding can flip a pixel between 0 and 1 (ATEN_CPU_CAPABILITY=default)
    assert torch.allclose(batch[0].z_c, d.z_c, atol=1e-4)
    assert torch.allclose(batch[1].z_c, api.decode(plain, model=m).z_c, atol=1e-4)
    # the same file with its SRC section's ids read as unknown decodes differently
    parsed = api._entropy_decode(src, m, api.StageTimer())
    q = parsed.header.quality
    unknown = api._run_decoder(parsed.z_c, q, m, None, None, [0])[0]
    known = api._run_decoder(parsed.z_c, q, m, None, None, [0], None, None, ((96, 128), [d.concepts]))[0]
    assert (known - unknown).abs().max() > 1e-3
    for f in (load_semantics, load_decoder, load_model):
        f.cache_clear()


@needs_vae
def test_stage3_training_with_concepts_adds_the_input_and_validates_with_and_without(tmp_path):
    """A decoder without the concept input (the shipped one stripped of it) gains it at zero, so
    step 0 decodes alike with and without concepts; the shipped decoder, which reads them, trains
    on without --concepts; crops without maps are refused."""
    import shutil

    from ulic.train.train_realism import main

    shipped = load_model()
    sem = load_semantics(str(shipped.folder))
    assert sem is not None and shipped.folder is not None
    folder = tmp_path / "model"
    shutil.copytree(shipped.folder, folder)
    loaded = load_decoder(str(shipped.folder))
    assert loaded is not None and loaded[0].cfg.concepts == sem.k  # the shipped decoder reads them
    bare = DiffusionDecoder(dataclasses.replace(loaded[0].cfg, concepts=0, vocabulary=-1))
    bare.load_state_dict({k: v for k, v in loaded[0].state_dict().items() if ".concept_" not in k}, strict=True)
    save_decoder(bare, folder, {k: v for k, v in loaded[1].items() if k not in ("format", "diffusion", "t_start")})
    load_decoder.cache_clear()
    load_model.cache_clear()
    crops = tmp_path / "crops.safetensors"
    tiny_crops(crops, (sem.k, sem.vocabulary_id))
    args = ["--crops", str(crops), "--val-every", "100", *TINY_RUN, "--steps", "2"]
    assert main(["--run", str(tmp_path / "run"), "--model", str(folder), "--concepts", *args]) == 0
    first = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    assert "val_lpips_alex_q140_r1_none" in first and "val_psnr_q40_r0" in first
    # step 0: the new input is zero, so with and without concepts decode alike
    assert abs(first["val_psnr_q140_r1_none"] - first["val_psnr_q140_r1"]) < 1e-3
    assert main(["--run", str(tmp_path / "run-shipped"), *args]) == 0  # reads the maps as it is
    plain = tmp_path / "plain.safetensors"
    tiny_crops(plain, None)
    with pytest.raises(SystemExit, match="concept maps"):
        main(["--crops", str(plain), "--run", str(tmp_path / "run2"), *TINY_RUN, "--steps", "1"])
    load_decoder.cache_clear()
    load_model.cache_clear()


def test_concept_pfo_recovers_the_ids_that_decode_closest_and_ties_keep_the_nearest():
    from ulic.diffusion.pfo import choose_concepts, concept_candidates

    _, dec = _concept_decoder(seed=1)
    size, hw = (512, 512), (64, 64)  # regions of 16 x 16 latent positions
    z_c = torch.randn(1, 32, *hw, generator=torch.Generator().manual_seed(2))
    candidates = torch.stack([torch.arange(16) % K, (torch.arange(16) + 3) % K], 1)  # (regions, 2)
    same = choose_concepts(dec, z_c, torch.zeros(1, 32, *hw), 100, 1.0, size, candidates)
    assert torch.equal(same, candidates[:, 0])  # a zero concept input: every rank ties
    torch.nn.init.normal_(dec.drm.concept_in.weight, std=1.0)
    truth = torch.where(torch.arange(16) % 3 == 0, candidates[:, 1], candidates[:, 0])
    eps = torch.randn(z_c.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        target = sample(dec, z_c, 100, 1, eps, torch.ones(1), concepts=concept_map(truth[None], size, hw))
    assert torch.equal(choose_concepts(dec, z_c, target, 100, 1.0, size, candidates), truth)
    emb = torch.nn.functional.normalize(torch.randn(16, 512), dim=1)
    cent = torch.nn.functional.normalize(torch.randn(K, 512), dim=1)
    top = concept_candidates(cent, emb)
    assert top.shape == (16, 3) and torch.equal(top[:, 0], (emb @ cent.T).argmax(1))


@needs_vae
@needs_lpips
def test_effort_picks_src_ids_among_the_nearest_concepts_and_the_file_decodes(tmp_path, photo):
    from ulic.diffusion.pfo import CANDIDATES, concept_candidates
    from ulic.semantics.encoder import region_embeddings

    m = _concept_model(tmp_path)
    img = photo[:96, :128].copy()
    plain = api.encode(img, quality=50, model=m, src=True)
    tuned = api.encode(img, quality=50, model=m, src=True, effort=1)
    sem = load_semantics(str(m.folder))
    assert sem is not None
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    allowed = concept_candidates(sem.centroids, region_embeddings(x), CANDIDATES)
    got = api.decode(tuned.data, model=m).concepts
    assert got is not None and all(g in allowed[i].tolist() for i, g in enumerate(got))
    assert api.decode(plain.data, model=m).concepts == allowed[:, 0].tolist()
    limit = api.encode(img, max_bytes=len(plain.data), model=m, src=True, effort=1)
    assert len(limit.data) <= len(plain.data)
    for f in (load_semantics, load_decoder, load_model):
        f.cache_clear()
