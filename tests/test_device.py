"""Devices and batched decoding: --device choices, clear errors without a GPU, decode_batch
equal to one-by-one decoding, and (when a CUDA GPU is visible) GPU-written files on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import needs_vae

from ulic.errors import UlicError
from ulic.runtime import resolve_device

HAS_CUDA = torch.cuda.is_available()


def test_device_names_resolve_or_fail_clearly():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if HAS_CUDA else "cpu")
    with pytest.raises(UlicError, match="device must be one of"):
        resolve_device("tpu")
    if not HAS_CUDA:
        with pytest.raises(UlicError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(HAS_CUDA, reason="checks the error on machines without a GPU")
def test_cli_device_without_gpu_is_one_line_error(cli, tmp_path, photo):
    from PIL import Image

    src = tmp_path / "a.png"
    Image.fromarray(photo).save(src)
    r = cli("--device", "cuda", "compress", src, "-o", tmp_path / "a.ulic")
    assert r.rc == 2 and r.err.count("\n") == 1 and "no CUDA GPU" in r.err
    assert not (tmp_path / "a.ulic").exists()
    r = cli("--device", "cpu", "compress", src, "-o", tmp_path / "a.ulic")
    assert r.rc == 0 and (tmp_path / "a.ulic").exists()


def _files(photo: np.ndarray) -> list[bytes]:
    from ulic import api

    crops = [photo[:64, :64], photo[:96, :128], photo[32:96, 64:128]]  # two share a size
    return [api.compress(c, quality=q) for c in crops for q in (20, 60)]


@needs_vae
def test_decode_batch_equals_decoding_each_file(photo):
    """The shipped model (diffusion decoder): grouped by size and quality, same order, same
    images up to float rounding of batched convolutions (stated tolerance: 1e-4 in [0, 1])."""
    from ulic import api

    files = _files(photo)
    batched = api.decode_batch(files, batch=3)
    assert len(batched) == len(files)
    for data, got in zip(files, batched, strict=True):
        one = api.decode(data)
        assert got.image.shape == one.image.shape and got.decoder == one.decoder
        assert (got.image - one.image).abs().max() <= 1e-4


@needs_vae
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_gpu_written_file_decodes_on_the_cpu(photo):
    """A file encoded with the VAE on the GPU is a valid file; the CPU and the GPU decode the
    same symbols (entropy decoding is on the CPU) and images within 2 levels."""
    from ulic import api

    data = api.compress(photo, quality=50, device="cuda")
    cpu, gpu = api.decode(data, device="cpu"), api.decode(data, device="cuda")
    assert cpu.header.quality == gpu.header.quality
    diff = (cpu.image * 255).round() - (gpu.image * 255).round()
    assert diff.abs().max() <= 2 and (diff == 0).float().mean() >= 0.99
    batched = api.decode_batch([data, data], device="cuda")
    assert all((b.image - gpu.image).abs().max() <= 1e-3 for b in batched)


@needs_vae
def test_gpu_bench_runs_on_the_cpu(tmp_path):
    """The device benchmark (ready for a lent GPU) runs end to end here, on the CPU."""
    import json

    from ulic.tools.bench_gpu import main

    out = tmp_path / "gpu.json"
    assert main(["--device", "cpu", "--images", "2", "--batch", "2", "--size", "128x128", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["device"] == "cpu" and doc["batched_images_per_s"] > 0 and doc["vs_cpu_max_levels"] == 0
