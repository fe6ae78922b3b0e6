"""Turn a training checkpoint into a shipped model folder (config.json + model.safetensors)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ulic.codec.model import CodecConfig, LatentCodec, build_coding_state
from ulic.codec.store import save_model
from ulic.train.train_codec import split


def export(checkpoint: Path, latents: Path, out: Path, name: str, n_calib: int = 16) -> dict:
    with safe_open(str(checkpoint), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
    codec = LatentCodec(CodecConfig(**meta["config"]))
    t = load_file(str(checkpoint))
    codec.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")}, strict=True)
    codec.eval().requires_grad_(False)
    # weights are shipped in float16: calibrate the integer h_s on exactly those weights
    codec.load_state_dict({k: v.half().float() if v.is_floating_point() else v
                           for k, v in codec.state_dict().items()})
    train, val = split(load_file(str(latents)), n_val=16)
    keys = sorted(train)[:: max(1, len(train) // n_calib)][:n_calib]  # training images only
    calib = []
    for k in keys:
        v = train[k].float()[None]
        calib.append(v[:, :, : v.shape[2] // 16 * 16, : v.shape[3] // 16 * 16])
    with torch.no_grad():
        codec.coding = build_coding_state(codec, calib)
    extra = {"training": {"steps": meta["step"], "seconds": round(meta["seconds"]),
                          "checkpoint": checkpoint.name}}
    return save_model(codec, out, name, extra)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--latents", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="ulic-base")
    args = ap.parse_args(argv)
    cfg = export(args.checkpoint, args.latents, args.out, args.name)
    print(json.dumps(cfg, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
