"""Save and load the diffusion decoder beside the codec: decoder.json + decoder.safetensors.

The decoder does not change the model id in files (that is the codec's weights hash): files
decode with `fast` or `diffusion` alike. Loading checks the sha256 and uses strict keys.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from safetensors.torch import load_file, save_file

from ulic.diffusion.networks import DiffusionConfig, DiffusionDecoder
from ulic.errors import WeightsError

FORMAT = 1


def save_decoder(dec: DiffusionDecoder, folder: Path, extra: dict | None = None) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in dec.state_dict().items()}
    tmp = folder / "decoder.safetensors.tmp"
    save_file(tensors, str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    os.replace(tmp, folder / "decoder.safetensors")
    config = {"format": FORMAT, "diffusion": dec.cfg.as_dict(), "weights_sha256": digest,
              "t_start": [int(v) for v in dec.t_start], **(extra or {})}
    tmp = folder / "decoder.json.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, folder / "decoder.json")
    return config


@lru_cache(maxsize=4)
def load_decoder(folder: str) -> tuple[DiffusionDecoder, dict] | None:
    """(decoder, config) from a model folder, or None when it has no diffusion decoder."""
    f = Path(folder)
    if not (f / "decoder.json").exists():
        return None
    try:
        config = json.loads((f / "decoder.json").read_text())
        data = (f / "decoder.safetensors").read_bytes()
    except (OSError, ValueError) as e:
        raise WeightsError(f"{f}: cannot read the diffusion decoder ({e})") from None
    if hashlib.sha256(data).hexdigest() != config.get("weights_sha256"):
        raise WeightsError(f"{f}/decoder.safetensors does not match the sha256 in decoder.json")
    if config.get("format") != FORMAT:
        raise WeightsError(f"{f}: unsupported decoder format {config.get('format')}")
    cfg = DiffusionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config["diffusion"].items()})
    dec = DiffusionDecoder(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(f / "decoder.safetensors")).items()}
    try:
        dec.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{f}/decoder.safetensors does not fit its config ({str(e).splitlines()[0]})") from None
    return dec.eval(), config
