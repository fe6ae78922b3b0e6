"""Save and load a trained latent codec: a folder with config.json + model.safetensors.

config.json holds the architecture and the sha256 of the weights; loading checks the hash and
uses strict keys. Transform weights are stored in float16 (computed in float32); coding tables
and the integer hyper-synthesis are stored exactly.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

from safetensors.torch import load_file, save_file

from ulic.codec.model import CodecConfig, CodingState, LatentCodec, config_dict
from ulic.errors import WeightsError

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "ulic-base"
FORMAT = 1


def save_model(codec: LatentCodec, folder: Path, name: str, extra: dict | None = None) -> dict:
    """Write config.json and model.safetensors atomically; returns the config."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"codec.{k}": (v.half() if v.is_floating_point() else v).contiguous()
               for k, v in codec.state_dict().items()}
    tensors.update({f"coding.{k}": v.contiguous() for k, v in codec.coding.tensors().items()})
    tmp = folder / "model.safetensors.tmp"
    save_file(tensors, str(tmp))
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    os.replace(tmp, folder / "model.safetensors")
    config = {"name": name, "format": FORMAT, "codec": config_dict(codec.cfg),
              "weights_sha256": digest, **(extra or {})}
    tmp = folder / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, folder / "config.json")
    return config


class LoadedModel:
    """A codec ready for coding, plus its identity (fingerprint) for the bitstream."""

    def __init__(self, codec: LatentCodec, config: dict, fingerprint: bytes, folder: Path | None = None):
        self.codec = codec
        self.config = config
        self.fingerprint = fingerprint  # sha256 of the weights file
        self.folder = folder  # where decoder.json / decoder.safetensors may live

    @property
    def model_id(self) -> int:
        return self.fingerprint[0]


def model_dir() -> Path:
    return Path(os.environ.get("ULIC_MODEL_DIR") or DEFAULT_MODEL)


@lru_cache(maxsize=4)
def load_model(folder: str | None = None) -> LoadedModel:
    """Load and verify a model folder (default: ULIC_MODEL_DIR, else the packaged model)."""
    path = Path(folder) if folder else model_dir()
    try:
        config = json.loads((path / "config.json").read_text())
        blob = (path / "model.safetensors").read_bytes()
    except (OSError, ValueError) as e:
        raise WeightsError(f"cannot read codec model in {path}: {e}") from None
    digest = hashlib.sha256(blob).digest()
    if digest.hex() != config.get("weights_sha256"):
        raise WeightsError(f"{path}/model.safetensors does not match the sha256 in its config.json")
    if config.get("format") != FORMAT:
        raise WeightsError(f"{path}: model format {config.get('format')} is not supported")
    cfg = CodecConfig(**config["codec"])
    codec = LatentCodec(cfg)
    t = load_file(str(path / "model.safetensors"))
    try:
        codec.load_state_dict({k[6:]: v.float() if v.is_floating_point() else v
                               for k, v in t.items() if k.startswith("codec.")}, strict=True)
        codec.coding = CodingState.from_tensors(
            {k[7:]: v for k, v in t.items() if k.startswith("coding.")}, cfg.m)
    except (RuntimeError, TypeError, KeyError) as e:
        raise WeightsError(f"{path}: weights do not match the config ({e})") from None
    codec.eval().requires_grad_(False)
    return LoadedModel(codec, config, digest, path)
