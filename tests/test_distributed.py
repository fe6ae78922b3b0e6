"""Training under torchrun: 2 CPU processes (gloo) for a few steps of a tiny codec."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from test_train import TINY_JSON, fake_latents

from ulic.train.distributed import Rank, shard


def test_shards_cover_every_key_once():
    keys = [f"img{i}" for i in range(11)]
    for world in (1, 2, 3, 4):
        parts = [shard(keys, Rank(r, world)) for r in range(world)]
        assert sorted(k for p in parts for k in p) == sorted(keys)  # once each, none lost


def test_two_process_ddp_keeps_ranks_identical(tmp_path):
    lat = tmp_path / "lat.safetensors"
    fake_latents(lat)  # 4 training images (+ 2 held out)
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [
        "--latents",
        lat,
        "--run-dir",
        run,
        "--batch",
        "2",
        "--steps",
        "3",
        "--val-every",
        "3",
        "--ckpt-every",
        "3",
        "--n-val",
        "2",
        "--config",
        TINY_JSON,
    ]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "ulic.train.train_codec",
        *map(str, args),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((run / "ranks.json").read_text())
    assert doc["world"] == 2
    a, b = doc["shards"]
    assert not set(a) & set(b) and len(a) + len(b) == 4  # the 4 training images, each on one rank
    assert doc["weights_sha256"][0] == doc["weights_sha256"][1]  # DDP kept the weights in step
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 3 and "val_q1_bpp" in log[-1]  # rank 0 logged and validated
    assert not (run / "log.rank1.jsonl").read_text().strip()  # rank 1 wrote nothing
    assert (run / "checkpoint.safetensors").exists()


def test_two_process_stage2_training_keeps_ranks_identical(tmp_path, tiny_model_dir):
    """train_decoder under torchrun: image shards disjoint, the decoders equal after the steps."""
    from test_diffusion import TINY

    lat = tmp_path / "lat.safetensors"
    fake_latents(lat)
    run = tmp_path / "run"
    args = ["--latents", lat, "--model", tiny_model_dir, "--run-dir", run, "--batch", "2", "--steps", "2"]
    args += ["--ckpt-every", "2", "--no-weights", "--config", json.dumps(TINY.as_dict())]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "ulic.train.train_decoder", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((run / "ranks.json").read_text())
    a, b = doc["shards"]
    assert not set(a) & set(b) and len(a) + len(b) == 4
    assert doc["weights_sha256"][0] == doc["weights_sha256"][1]
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"] == 2
