"""Turn training checkpoints into a shipped model folder: config.json + model.safetensors for
the codec, and optionally decoder.json + decoder.safetensors for the diffusion decoder and
encoder.json + encoder.safetensors for the triple encoder."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from ulic.codec.model import LATENT_PER_Z, CodecConfig, LatentCodec, build_coding_state
from ulic.codec.triple import TripleAnalysis, TripleConfig
from ulic.diffusion.networks import DiffusionConfig, DiffusionDecoder
from ulic.model_store import (
    CODEC_FILES,
    SEMANTICS_FILES,
    load_decoder,
    load_model,
    load_semantics,
    save_decoder,
    save_encoder,
    save_model,
)
from ulic.train.common import checkpoint_meta, split


def export(checkpoint: Path, latents: Path, out: Path, name: str, n_calib: int = 16) -> dict:
    meta = checkpoint_meta(checkpoint)
    codec = LatentCodec(CodecConfig(**meta["config"]))
    t = load_file(str(checkpoint))
    codec.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")}, strict=True)
    codec.eval().requires_grad_(False)
    # weights are shipped in float16: calibrate the integer h_s on exactly those weights
    codec.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in codec.state_dict().items()})
    train, val = split(load_file(str(latents)), n_val=16)
    keys = sorted(train)[:: max(1, len(train) // n_calib)][:n_calib]  # training images only
    calib = []
    for k in keys:
        v = train[k].float()[None]
        calib.append(v[:, :, : v.shape[2] // LATENT_PER_Z * LATENT_PER_Z, : v.shape[3] // LATENT_PER_Z * LATENT_PER_Z])
    with torch.no_grad():
        codec.coding = build_coding_state(codec, calib)
    extra = {"training": {"steps": meta["step"], "seconds": round(meta["seconds"]), "checkpoint": checkpoint.name}}
    return save_model(codec, out, name, extra)


def export_decoder(checkpoint: Path, out: Path, default: str = "fast") -> dict:
    """Write the stage-2 decoder (DRM + denoiser + t' table) next to the codec."""
    meta = checkpoint_meta(checkpoint)
    dec = DiffusionDecoder(DiffusionConfig.from_dict(meta["config"]))
    t = load_file(str(checkpoint))
    dec.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")}, strict=True)
    extra = {
        "default_decoder": default,
        "default_steps": 4,
        "kappa": meta.get("kappa"),
        "training": {"steps": meta["step"], "seconds": round(meta["seconds"])},
    }
    return save_decoder(dec, out, extra)


def export_realism(checkpoint: Path, out: Path, realism: float, base: str | None = None, ema: bool = False) -> dict:
    """Write the stage-3 decoder (DRM + denoiser + pixel decoder, conditioned on R) of a
    `ulic.train.train_realism` checkpoint next to the codec, with its default realism; with
    `ema`, the weights' moving average (`train_realism --ema`) instead of the weights."""
    meta = checkpoint_meta(checkpoint)
    old = load_decoder(str(load_model(base).folder))
    if old is None and not meta.get("config"):
        raise SystemExit("the checkpoint records no decoder config and the base model has no decoder")
    cfg = meta.get("config") or {**old[0].cfg.as_dict(), "realism": True, "pixel_decoder": True}  # type: ignore[index]
    dec = DiffusionDecoder(DiffusionConfig.from_dict(cfg))
    t = load_file(str(checkpoint))
    prefix = "ema." if ema else "gen."
    if ema and not any(k.startswith(prefix) for k in t):
        raise SystemExit(f"{checkpoint} holds no moving average (a run without train_realism --ema)")
    dec.load_state_dict({k[len(prefix) :]: v for k, v in t.items() if k.startswith(prefix)}, strict=True)
    training: dict = {"stage": 3, "steps": meta["step"], "seconds": round(meta["seconds"])}
    if ema:
        training["weights"] = "moving average"
    extra = {
        "default_decoder": "diffusion",
        "default_steps": 4,
        "default_realism": realism,
        "kappa": old[1].get("kappa") if old else None,
        "training": training,
    }
    if dec.cfg.concepts and not (out / SEMANTICS_FILES[0]).exists():  # the vocabulary its ids belong to
        src = load_model(base).folder
        sem = load_semantics(str(src)) if src is not None else None
        if src is None or sem is None or sem.vocabulary_id != dec.cfg.vocabulary:
            raise SystemExit(f"the decoder reads vocabulary {dec.cfg.vocabulary}; the base model does not have it")
        out.mkdir(parents=True, exist_ok=True)
        for name in SEMANTICS_FILES:  # copied as they are (config, report and hashes)
            shutil.copyfile(Path(src) / name, out / name)
    return save_decoder(dec, out, extra)


def export_encoder(checkpoint: Path, out: Path, base: str | None = None) -> dict:
    """Write the triple encoder of a `ulic.train.train_encoder` checkpoint into model folder
    `out`, which must hold the codec it was trained against; a folder without a codec is first
    filled with a copy of the base model folder (default: shipped)."""
    meta = checkpoint_meta(checkpoint)
    src = load_model(base)
    if not (out / CODEC_FILES[0]).exists():
        if src.folder is None:
            raise SystemExit(f"{out} holds no codec and the base model has no folder to copy")
        shutil.copytree(src.folder, out, dirs_exist_ok=True)
    model = load_model(str(out))
    if meta.get("codec_sha256", model.fingerprint.hex()) != model.fingerprint.hex():
        raise SystemExit(f"{out}'s codec is not the one {checkpoint} was trained against")
    enc = TripleAnalysis(model.codec, TripleConfig.from_dict(meta["triple"]))
    t = load_file(str(checkpoint))
    enc.load_state_dict({k[8:]: v for k, v in t.items() if k.startswith("encoder.")}, strict=True)
    extra = {"training": {"arm": meta.get("arm"), "steps": meta["step"], "seconds": round(meta["seconds"])}}
    return save_encoder(enc, model, out, extra)


def export_critic(checkpoint: Path, out: Path) -> int:
    """Write the critic of a stage-3 checkpoint (its `disc.` tensors, float16) to `out`, for
    `train_realism --critic` (a GPU bundle carries it); returns its parameter count."""
    from safetensors.torch import save_file

    from ulic.atomic import atomic_path

    t = {k: v.half().contiguous() for k, v in load_file(str(checkpoint)).items() if k.startswith("disc.")}
    if not t:
        raise SystemExit(f"{checkpoint}: no critic in it (not a stage-3 checkpoint)")
    with atomic_path(out) as tmp:
        save_file(t, str(tmp), metadata={"from": checkpoint.name, "step": str(checkpoint_meta(checkpoint)["step"])})
    return sum(v.numel() for v in t.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", type=Path, help="stage-1 codec checkpoint")
    ap.add_argument("--latents", type=Path, help="latent cache (calibration of the integer h_s)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--name", default="ulic-base")
    ap.add_argument(
        "--decoder-checkpoint",
        type=Path,
        default=None,
        help="also export a stage-2 decoder checkpoint (ulic.train.train_decoder)",
    )
    ap.add_argument("--default-decoder", choices=("fast", "diffusion"), default="fast")
    ap.add_argument("--decoder-only", action="store_true", help="leave the codec files as they are")
    ap.add_argument(
        "--realism-checkpoint",
        type=Path,
        default=None,
        help="export a stage-3 decoder checkpoint (ulic.train.train_realism) instead",
    )
    ap.add_argument("--default-realism", type=float, default=1.0)
    ap.add_argument("--ema", action="store_true", help="with --realism-checkpoint: export the weights' moving average")
    ap.add_argument(
        "--critic-of",
        type=Path,
        default=None,
        help="write only the critic of this stage-3 checkpoint to --out (a file, for train_realism --critic)",
    )
    ap.add_argument(
        "--encoder-checkpoint",
        type=Path,
        default=None,
        help="write the triple encoder of this checkpoint (ulic.train.train_encoder) into --out, a model folder",
    )
    args = ap.parse_args(argv)
    if args.encoder_checkpoint is not None:
        print(json.dumps(export_encoder(args.encoder_checkpoint, args.out), indent=2))
        return 0
    if args.critic_of is not None:
        n = export_critic(args.critic_of, args.out)
        print(json.dumps({"critic": str(args.out), "parameters": n}))
        return 0
    if args.realism_checkpoint is not None:
        cfg = export_realism(args.realism_checkpoint, args.out, args.default_realism, ema=args.ema)
        print(json.dumps({k: v for k, v in cfg.items() if k != "t_start"}, indent=2))
        return 0
    if not args.decoder_only:
        if args.checkpoint is None or args.latents is None:
            ap.error("--checkpoint and --latents are needed (or --decoder-only)")
        print(json.dumps(export(args.checkpoint, args.latents, args.out, args.name), indent=2))
    if args.decoder_checkpoint is not None:
        cfg = export_decoder(args.decoder_checkpoint, args.out, args.default_decoder)
        print(json.dumps({k: v for k, v in cfg.items() if k != "t_start"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
