"""The `ulic` command as a user runs it: outputs, exit codes, one-line errors, atomic writes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import needs_vae
from PIL import Image

pytestmark = needs_vae


def ulic(*args, env_extra=None, cwd=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "ulic.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def env(tiny_model_dir):
    return {"ULIC_MODEL_DIR": str(tiny_model_dir)}


@pytest.fixture
def img_path(tmp_path, photo):
    p = tmp_path / "in.png"
    Image.fromarray(photo).save(p)
    return p


def one_line_error(r):
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ulic: error:"), r.stderr


def test_compress_decompress_info(tmp_path, img_path, env):
    out = tmp_path / "a.ulic"
    r = ulic("compress", img_path, "-o", out, "--quality", 40, env_extra=env)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0 and "bpp" in r.stdout
    r = ulic("decompress", out, "-o", tmp_path / "a.png", env_extra=env)
    assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "a.png").size == Image.open(img_path).size
    r = ulic("info", out, env_extra=env)
    info = json.loads(r.stdout)
    assert info["bytes"] == out.stat().st_size and info["check_with_loaded_model"] == "ok"
    assert info["overhead_bytes"] == 8  # format 2: lead byte, two 2-byte sizes, quality, check


def test_errors_are_one_line(tmp_path, img_path, env):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.ulic").write_bytes(np.random.default_rng(0).bytes(100))
    one_line_error(ulic("compress", tmp_path / "missing.png", env_extra=env))
    one_line_error(ulic("compress", tmp_path / "empty.png", env_extra=env))
    one_line_error(ulic("compress", tmp_path, env_extra=env))
    one_line_error(ulic("compress", img_path, "--quality", 101, env_extra=env))
    one_line_error(ulic("compress", img_path, "--max-bytes", 3, env_extra=env))
    one_line_error(ulic("compress", img_path, "--optimize", -1, env_extra=env))
    one_line_error(ulic("decompress", tmp_path / "junk.ulic", env_extra=env))
    one_line_error(ulic("decompress", tmp_path / "missing.ulic", env_extra=env))
    one_line_error(ulic("info", tmp_path / "junk.ulic", env_extra=env))


def test_failed_run_keeps_existing_output(tmp_path, env):
    out = tmp_path / "keep.png"
    out.write_bytes(b"precious")
    (tmp_path / "bad.ulic").write_bytes(b"UL\x01garbage")
    one_line_error(ulic("decompress", tmp_path / "bad.ulic", "-o", out, env_extra=env))
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.ulic", "keep.png"]


def test_missing_model_weights_message(tmp_path, img_path):
    r = ulic("compress", img_path, env_extra={"ULIC_MODEL_DIR": str(tmp_path / "nomodel")})
    one_line_error(r)
