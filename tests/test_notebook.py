"""Notebook support: the Result object (display, numbers, atomic saves) and docs/example.ipynb,
whose code cells are run in order as a notebook would run them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import needs_vae
from PIL import Image

from ulic.errors import UlicError
from ulic.result import Result, measure

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "example.ipynb"


def test_result_displays_and_reports():
    img = Image.fromarray(np.full((32, 48, 3), 90, np.uint8))
    r = Result(b"x" * 12, img, "diffusion", 4, 128, {"encode": 1.5, "decode": 0.5}, psnr=21.0)
    png = r._repr_png_()
    assert png.startswith(b"\x89PNG") and Image.open(io.BytesIO(png)).size == (48, 32)
    assert r.bpp == 8 * 12 / (32 * 48)
    s = r.summary()
    assert (s["bytes"], s["width"], s["height"], s["decoder"], s["lpips"]) == (12, 48, 32, "diffusion", None)
    assert json.dumps(s)
    assert repr(r) == (
        "<ulic 48x32: 12 bytes, 0.0625 bpp, diffusion 4 steps, PSNR 21.00 dB, " "encode 1.50 s, decode 0.50 s>"
    )


def test_result_saves(tmp_path):
    img = Image.fromarray(np.zeros((16, 16, 3), np.uint8))
    r = Result(b"\xe2data", img, "mse")
    r.save(tmp_path / "a.ulic")
    r.save_png(tmp_path / "a.png")
    assert (tmp_path / "a.ulic").read_bytes() == b"\xe2data"
    assert Image.open(tmp_path / "a.png").size == (16, 16)


def test_measure_checks_its_arguments():
    a = torch.zeros(1, 3, 16, 16)
    with pytest.raises(UlicError, match="unknown metric 'ssim'"):
        measure(a, a, ("ssim",), [])
    with pytest.raises(UlicError, match="the reference is 16x16 but the decoded image is 8x16"):
        measure(a, torch.zeros(1, 3, 16, 8), ("psnr",), [])
    assert measure(a, a + 0.5, ("psnr",), []) == {"psnr": pytest.approx(6.0, abs=0.1), "lpips": None}


def code_cells() -> list[str]:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


@pytest.fixture
def pillow_plugin():
    """The notebook imports ulic.pillow; the format is registered for this test only."""
    import ulic.pillow

    ulic.pillow.register()
    yield
    ulic.pillow.unregister()


@needs_vae
def test_example_notebook_runs(tmp_path, monkeypatch, pillow_plugin):
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    for i, src in enumerate(code_cells()):
        exec(compile(src, f"{NOTEBOOK.name} cell {i}", "exec"), ns)
    r = ns["r"]
    assert isinstance(r, Result) and abs(r.bpp - 0.03) <= 0.03 * 0.03
    assert r._repr_png_().startswith(b"\x89PNG") and r.psnr > 15
    assert ns["row"].size == (3 * r.width, r.height)
    assert ns["im"].format == "ULIC" and ns["im"].info["ulic_bytes"] <= 400
