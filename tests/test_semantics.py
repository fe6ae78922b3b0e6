"""Semantics (SRC): integer predictor tables, the concept vocabulary, the SRC section, the model
store entry and the API round trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import needs_vae
from test_eval_learned import needs_lpips

from ulic import api, bitstream
from ulic.codec.entropy_models import PRECISION
from ulic.errors import BitstreamError, UlicError, WeightsError
from ulic.semantics import predictor as P
from ulic.semantics.encoder import DIM, GRID
from ulic.semantics.src import FLAG_UNIFORM, read_src, src_section
from ulic.semantics.vocabulary import Semantics, spherical_kmeans

TINY_M = 8  # latent channels of the tiny test codec (conftest.TINY)


def _semantics(k: int = 8, seed: int = 0, features: int = 2 * TINY_M + 1) -> Semantics:
    g = torch.Generator().manual_seed(seed)
    cent = torch.nn.functional.normalize(torch.randn(k, DIM, generator=g), dim=1)
    w = torch.randint(-(1 << 12), 1 << 12, (k, features), generator=g).numpy()
    b = torch.randint(-(1 << 16), 1 << 16, (k,), generator=g).numpy()
    return Semantics(cent.half().float(), P.ConceptPredictor(w, b))


def test_exp_table_is_exact_integer_exponential():
    t = P.EXP_TABLE
    assert t[0] == 1 << 30 and bool((np.diff(t) <= 0).all()) and t[-1] >= 1
    for i in (8, 40):
        assert t[i] / 2**30 == pytest.approx(math.exp(-i / P.LOGIT_STEPS_PER_NAT), rel=1e-6)
    assert t[159] / 2**30 == pytest.approx(math.exp(-159 / 8), rel=0.5)  # floor of about 2.5


def test_tables_sum_to_the_precision_and_follow_the_logits():
    rng = np.random.default_rng(0)
    logits = rng.integers(-(1 << 24), 1 << 24, (50, 64))
    logits[0] = 0  # all equal: (nearly) uniform
    logits[1, 5] = 1 << 40  # one certain concept
    t = P.tables_from_logits(logits, 20)
    assert t.dtype == np.int32 and (t.sum(1) == 1 << PRECISION).all() and (t >= 1).all()
    assert t[0].max() - t[0].min() <= 64
    assert t[1, 5] >= (1 << PRECISION) - 64
    order = np.argsort(logits[2])
    assert (np.diff(t[2][order]) >= 0).all()  # monotone in the logit


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 24])
def test_region_bounds_are_never_empty(n):
    b = P.region_bounds(n)
    assert len(b) == GRID and all(0 <= a < c <= n for a, c in b)
    assert b[0][0] == 0 and b[-1][1] == n


def test_region_features_are_integer_region_means():
    sym = torch.arange(2 * 4 * 4).reshape(1, 2, 4, 4).long() - 10
    mean_s = torch.full((1, 2, 4, 4), 0.4, dtype=torch.float64)
    f = P.region_features(sym, mean_s, (4, 4), 77)
    assert f.shape == (GRID * GRID, 2 * 2 + 1) and f.dtype == np.int64
    assert f[0, 0] == -10 << P.FEATURE_FRAC_BITS and f[0, 2] == 10 << P.FEATURE_FRAC_BITS  # one position each
    assert (f[:, -1] == 77 << P.FEATURE_FRAC_BITS).all()
    wide = P.region_features(sym, mean_s, (4, 8), 77)  # extent beyond the tensor: the tensor's own
    assert wide.shape == f.shape


def test_spherical_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(1)
    centres = torch.nn.functional.normalize(torch.randn(4, 16, generator=g), dim=1)
    x = torch.nn.functional.normalize(
        centres.repeat_interleave(50, 0) + 0.05 * torch.randn(200, 16, generator=g), dim=1
    )
    cent = spherical_kmeans(x, 4, seed=0)
    assert (cent @ centres.T).max(0).values.min() > 0.98


def test_fitted_predictor_prices_predictable_concepts_below_uniform():
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 8, 2000)
    feats = (np.eye(8)[ids] * 40 + rng.normal(0, 5, (2000, 8))).astype(np.int64) << P.FEATURE_FRAC_BITS
    pred = P.fit(feats, ids, 8, steps=300)
    t = pred.tables(feats[:200])
    bits = -np.log2(t[np.arange(200), ids[:200]] / (1 << PRECISION)).mean()
    assert bits < 0.5 < 3.0  # uniform over 8 costs 3 bits


def test_src_section_round_trips_under_both_priors():
    sem = _semantics()
    rng = np.random.default_rng(0)
    tables = P.tables_from_logits(rng.integers(0, 1 << 24, (GRID * GRID, sem.k)), 20)
    ids = rng.integers(0, sem.k, GRID * GRID)
    s = src_section(ids, tables, sem)
    assert s[0] == bitstream.SECTION_SRC and s[1] == sem.vocabulary_id
    assert (read_src(s[1:], sem, tables) == ids).all()
    likely = tables.argmax(1)
    cheap = src_section(likely, tables, sem)  # what the predictor expects: predicted prior
    assert cheap[2] == 0 and len(cheap) < len(s) + 1
    uniform = bytes([sem.vocabulary_id, FLAG_UNIFORM]) + src_section(ids, P.uniform_tables(16, sem.k), sem)[3:]
    assert (read_src(uniform, sem, tables) == ids).all()


def test_hostile_src_sections_fail_cleanly():
    sem = _semantics()
    tables = P.uniform_tables(GRID * GRID, sem.k)
    with pytest.raises(BitstreamError, match="vocabulary"):
        read_src(bytes([(sem.vocabulary_id + 1) % 256, 0, 1, 2]), sem, tables)
    with pytest.raises(BitstreamError, match="flags"):
        read_src(bytes([sem.vocabulary_id, 0x80]), sem, tables)
    with pytest.raises(BitstreamError, match="header"):
        read_src(bytes([sem.vocabulary_id]), sem, tables)
    rng = np.random.default_rng(5)
    for _ in range(300):  # any payload: ids in range or a BitstreamError, nothing else
        body = bytes([sem.vocabulary_id, int(rng.integers(0, 2))]) + rng.bytes(int(rng.integers(0, 40)))
        try:
            ids = read_src(body, sem, tables)
        except BitstreamError:
            continue
        assert ids.shape == (GRID * GRID,) and ((ids >= 0) & (ids < sem.k)).all()
    with pytest.raises(BitstreamError, match="src of"):
        bitstream.read_extras([bytes([bitstream.SECTION_SRC]) + bytes(bitstream.MAX_SRC_BYTES + 1)])


def test_semantics_store_round_trip_and_tamper(tmp_path):
    from ulic.model_store import SEMANTICS_FILES, load_semantics, save_semantics

    sem = _semantics(k=6)
    save_semantics(sem, tmp_path, {"data": "test"})
    load_semantics.cache_clear()
    back = load_semantics(str(tmp_path))
    assert back is not None and back.vocabulary_id == sem.vocabulary_id
    assert torch.equal(back.centroids, sem.centroids) and (back.predictor.weight == sem.predictor.weight).all()
    cfg = json.loads((tmp_path / SEMANTICS_FILES[0]).read_text())
    cfg["k"] = 7
    (tmp_path / SEMANTICS_FILES[0]).write_text(json.dumps(cfg))
    load_semantics.cache_clear()
    with pytest.raises(WeightsError, match="does not fit"):
        load_semantics(str(tmp_path))
    (tmp_path / SEMANTICS_FILES[1]).write_bytes(b"junk")
    load_semantics.cache_clear()
    with pytest.raises(WeightsError, match="sha256"):
        load_semantics(str(tmp_path))
    load_semantics.cache_clear()
    assert load_semantics(str(tmp_path / "none")) is None


@pytest.fixture(scope="module")
def tiny_model_with_semantics(tmp_path_factory):
    from conftest import make_tiny_codec

    from ulic.model_store import load_model, load_semantics, save_model, save_semantics

    d = tmp_path_factory.mktemp("tiny_sem")
    save_model(make_tiny_codec(), d, "tiny-test")
    save_semantics(_semantics(), d)
    load_semantics.cache_clear()
    yield load_model(str(d))
    load_semantics.cache_clear()


@needs_vae
@needs_lpips
def test_src_files_round_trip_and_count_in_the_rate(tiny_model_with_semantics, tiny_model, photo):
    from ulic.model_store import load_semantics
    from ulic.semantics.encoder import region_embeddings

    m = tiny_model_with_semantics
    img = photo[:96, :128].copy()
    plain = api.encode(img, quality=50, model=m)
    r = api.encode(img, quality=50, model=m, src=True)
    extra = len(r.data) - len(plain.data)
    assert 4 <= extra <= bitstream.MAX_SRC_BYTES + 2 and r.bpp == 8 * len(r.data) / (96 * 128)
    d = api.decode(r.data, model=m)
    sem = load_semantics(str(m.folder))
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    assert d.concepts == sem.assign(region_embeddings(x)).tolist()
    assert torch.equal(d.image, api.decode(plain.data, model=m).image)  # no decoder reads it (yet)
    assert api.decode(plain.data, model=m).concepts is None
    assert api.decode_batch([r.data, plain.data], model=m)[0].concepts == d.concepts
    with pytest.raises(UlicError, match="concept vocabulary"):
        api.encode(img, quality=50, model=tiny_model, src=True)
    with pytest.raises(UlicError, match="src must be"):
        api.encode(img, quality=50, model=m, src="yes")
    target = api.encode(img, max_bytes=len(r.data), model=m, src=True)
    assert len(target.data) <= len(r.data)  # the rate search counts the section


@needs_vae
@needs_lpips
def test_info_reports_src_bytes_and_concepts(tiny_model_with_semantics, cli, tmp_path, monkeypatch, photo):
    from PIL import Image

    from ulic.model_store import load_model

    monkeypatch.setenv("ULIC_MODEL_DIR", str(tiny_model_with_semantics.folder))
    load_model.cache_clear()
    src, out = tmp_path / "a.png", tmp_path / "a.ulic"
    Image.fromarray(photo[:64, :64].copy()).save(src)
    assert cli("compress", src, "-o", out, "--src").rc == 0
    r = cli("info", out)
    info = json.loads(r.out)
    assert info["src_bytes"] >= 3 and len(info["concepts"]) == GRID * GRID


@needs_vae
@needs_lpips
def test_src_bench_reports_share_and_uniform_bytes(tiny_model_with_semantics, tmp_path, monkeypatch, photo):
    from PIL import Image

    from ulic.model_store import load_model
    from ulic.tools.bench_src import main

    monkeypatch.setenv("ULIC_MODEL_DIR", str(tiny_model_with_semantics.folder))
    load_model.cache_clear()
    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(photo[:64, :96].copy()).save(d / "a.png")
    out = tmp_path / "src.json"
    try:
        assert main(["--data", str(d), "--qualities", "30", "60", "--out", str(out)]) == 0
    finally:
        load_model.cache_clear()
    doc = json.loads(out.read_text())
    assert doc["images"] == 1 and [r["quality"] for r in doc["rows"]] == [30, 60]
    for r in doc["rows"]:
        assert 0 < r["share_of_file"] < 1 and r["src_file_bytes"] >= 3
        assert r["uniform_code_bytes"] > 0 and 0 <= r["top1"] <= 1
