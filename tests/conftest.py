"""Shared fixtures: tiny seeded codec models and optional real data from ../shared."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from ulic.codec.model import CodecConfig, LatentCodec, build_coding_state
from ulic.model_store import load_model, save_model

TINY = CodecConfig(n_full=8, n=16, m=8, cz=8, n_hyper=16)


def weights_available() -> bool:
    """Whether the TAEF2 files are found the way ulic finds them (setting or cache; no download)."""
    from ulic.errors import WeightsError
    from ulic.vae.weights import TAEF2_FILES, find_weight

    try:
        for name in TAEF2_FILES:
            find_weight(name, allow_download=False)
    except WeightsError:
        return False
    return True


needs_vae = pytest.mark.skipif(
    not weights_available(), reason="TAEF2 weights not found (ULIC_WEIGHTS_DIR or the cache; see README)"
)


def kodak_dir() -> Path | None:
    d = os.environ.get("ULIC_KODAK_DIR")
    return Path(d) if d and (Path(d) / "kodim01.png").is_file() else None


def make_tiny_codec(seed: int = 0) -> LatentCodec:
    torch.manual_seed(seed)
    codec = LatentCodec(TINY).eval()
    calib = [torch.randn(1, 32, 32, 48) * 0.85]
    codec.coding = build_coding_state(codec, calib)
    return codec


@pytest.fixture(scope="session")
def tiny_codec() -> LatentCodec:
    return make_tiny_codec()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny_model")
    save_model(make_tiny_codec(), d, "tiny-test")
    return d


@pytest.fixture
def tiny_model(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("ULIC_MODEL_DIR", str(tiny_model_dir))
    return load_model(str(tiny_model_dir))


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A small natural-looking test image: a Kodak crop if available, else a smooth pattern."""
    k = kodak_dir()
    if k is not None:
        from PIL import Image

        return np.asarray(Image.open(k / "kodim23.png").convert("RGB"))[100:228, 200:392].copy()
    yy, xx = np.mgrid[0:128, 0:192]
    img = np.stack([128 + 100 * np.sin(xx / 13), 128 + 90 * np.cos(yy / 9), (xx + yy) % 256], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass
class Run:
    """What one in-process `ulic` command returned and printed."""

    rc: int
    out: str
    err: str
    seconds: float


@pytest.fixture
def cli(tiny_model, monkeypatch, capsys):
    """`ulic ARGS` in this process with the tiny model and the default pixel limit."""
    from ulic.model_store import load_model

    monkeypatch.delenv("ULIC_MAX_PIXELS", raising=False)
    load_model.cache_clear()

    def run(*args) -> Run:
        t = time.perf_counter()
        from ulic.cli import main

        try:
            rc = main([str(a) for a in args])
        except SystemExit as e:
            rc = e.code
        out, err = capsys.readouterr()
        return Run(rc, out, err, time.perf_counter() - t)

    yield run
    load_model.cache_clear()
