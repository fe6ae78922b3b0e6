"""The model store: one folder holds a codec and (optionally) its decoder, each as a JSON
config plus safetensors weights whose sha256 the config records.

    folder/config.json   + model.safetensors     the latent codec (its sha256 is the model id in files)
    folder/decoder.json  + decoder.safetensors   stages 2-3: DRM, CDM denoiser, pixel decoder
    folder/semantics.json + semantics.safetensors concept vocabulary and predictor (SRC; optional)
    folder/encoder.json  + encoder.safetensors   the triple encoder (optional; encoder side only)

Loading checks each hash and the format number and uses strict keys. Transform weights are
stored in float16 (computed in float32); coding tables and the integer hyper-synthesis are
stored exactly. The decoder does not change the model id: files decode with any decoder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ulic.atomic import atomic_path, write_text_atomic
from ulic.codec.model import CodecConfig, CodingState, LatentCodec, config_dict
from ulic.codec.triple import TripleAnalysis, TripleConfig
from ulic.diffusion.networks import DiffusionConfig, DiffusionDecoder
from ulic.errors import WeightsError
from ulic.runtime import channels_last
from ulic.semantics.vocabulary import Semantics

DEFAULT_MODEL = Path(__file__).resolve().parent / "models" / "ulic-base"
CODEC_FILES = ("config.json", "model.safetensors")
DECODER_FILES = ("decoder.json", "decoder.safetensors")
CODEC_FORMAT = 1
DECODER_FORMAT = 1
SEMANTICS_FILES = ("semantics.json", "semantics.safetensors")
SEMANTICS_FORMAT = 1
ENCODER_FILES = ("encoder.json", "encoder.safetensors")
ENCODER_FORMAT = 1


def _half(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}


def _float(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def write_entry(folder: Path, files: tuple[str, str], tensors: dict[str, torch.Tensor], config: dict) -> dict:
    """Write the weights, then the config with their sha256 (each file atomically)."""
    config_name, weights_name = files
    with atomic_path(folder / weights_name) as tmp:
        save_file(tensors, str(tmp))
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    config = {**config, "weights_sha256": digest}
    write_text_atomic(folder / config_name, json.dumps(config, indent=2) + "\n")
    return config


def read_entry(
    folder: Path, files: tuple[str, str], fmt: int, what: str
) -> tuple[dict, dict[str, torch.Tensor], bytes]:
    """(config, tensors, sha256 digest) of one verified entry; WeightsError otherwise."""
    config_name, weights_name = files
    try:
        config = json.loads((folder / config_name).read_text())
        blob = (folder / weights_name).read_bytes()
    except (OSError, ValueError) as e:
        raise WeightsError(f"cannot read the {what} in {folder}: {e}") from None
    digest = hashlib.sha256(blob).digest()
    if digest.hex() != config.get("weights_sha256"):
        raise WeightsError(f"{folder}/{weights_name} does not match the sha256 in its {config_name}")
    if config.get("format") != fmt:
        raise WeightsError(f"{folder}: {what} format {config.get('format')} is not supported")
    return config, load_file(str(folder / weights_name)), digest


# -- codec ---------------------------------------------------------------------------------------
def save_model(codec: LatentCodec, folder: Path, name: str, extra: dict | None = None) -> dict:
    """Write config.json and model.safetensors; returns the config."""
    tensors = {f"codec.{k}": v for k, v in _half(codec.state_dict()).items()}
    tensors.update({f"coding.{k}": v.contiguous() for k, v in codec.coding_state.tensors().items()})
    config = {"name": name, "format": CODEC_FORMAT, "codec": config_dict(codec.cfg)}
    return write_entry(folder, CODEC_FILES, tensors, {**config, **(extra or {})})


@dataclass
class LoadedModel:
    """A codec ready for coding, plus its identity (fingerprint) for the bitstream."""

    codec: LatentCodec
    config: dict
    fingerprint: bytes  # sha256 of the weights file
    folder: Path | None = None  # where decoder.json / decoder.safetensors may live

    @property
    def model_id(self) -> int:
        return self.fingerprint[0]


def model_dir() -> Path:
    """The model folder in use: $ULIC_MODEL_DIR, else the packaged model."""
    return Path(os.environ.get("ULIC_MODEL_DIR") or DEFAULT_MODEL)


@lru_cache(maxsize=4)
def load_model(folder: str | None = None) -> LoadedModel:
    """Load and verify a model folder (default: `model_dir()`)."""
    path = Path(folder) if folder else model_dir()
    config, t, digest = read_entry(path, CODEC_FILES, CODEC_FORMAT, "codec model")
    cfg = CodecConfig(**config["codec"])
    codec = LatentCodec(cfg)
    try:
        codec.load_state_dict(_float({k[6:]: v for k, v in t.items() if k.startswith("codec.")}), strict=True)
        codec.coding = CodingState.from_tensors({k[7:]: v for k, v in t.items() if k.startswith("coding.")}, cfg.m)
    except (RuntimeError, TypeError, KeyError) as e:
        raise WeightsError(f"{path}: weights do not match the config ({e})") from None
    codec.eval().requires_grad_(False)
    return LoadedModel(codec, config, digest, path)


# -- decoder -------------------------------------------------------------------------------------
def save_decoder(dec: DiffusionDecoder, folder: Path, extra: dict | None = None) -> dict:
    """Write decoder.json and decoder.safetensors beside a codec; returns the config."""
    config = {"format": DECODER_FORMAT, "diffusion": dec.cfg.as_dict(), "t_start": [int(v) for v in dec.t_start]}
    return write_entry(folder, DECODER_FILES, _half(dec.state_dict()), {**config, **(extra or {})})


@lru_cache(maxsize=4)
def load_decoder(folder: str) -> tuple[DiffusionDecoder, dict] | None:
    """(decoder, config) from a model folder, or None when it has no decoder."""
    f = Path(folder)
    if not (f / DECODER_FILES[0]).exists():
        return None
    config, t, _ = read_entry(f, DECODER_FILES, DECODER_FORMAT, "diffusion decoder")
    cfg = DiffusionConfig.from_dict(config["diffusion"])
    dec = DiffusionDecoder(cfg)
    try:
        dec.load_state_dict(_float(t), strict=True)
    except RuntimeError as e:
        raise WeightsError(f"{f}/{DECODER_FILES[1]} does not fit its config ({str(e).splitlines()[0]})") from None
    if cfg.concepts:  # the ids it reads must be those of this folder's vocabulary
        sem = load_semantics(folder)
        if sem is None or (sem.k, sem.vocabulary_id) != (cfg.concepts, cfg.vocabulary):
            found = "none" if sem is None else f"{sem.k} concepts, id {sem.vocabulary_id}"
            raise WeightsError(
                f"{f}/{DECODER_FILES[0]} reads {cfg.concepts} concepts of vocabulary {cfg.vocabulary}; "
                f"the folder's vocabulary: {found}"
            )
    if dec.pixel is not None:
        channels_last(dec.pixel)  # NHWC convolutions, as TAEF2's (ulic/vae/taef2.py)
    return dec.eval(), config


# -- semantics -----------------------------------------------------------------------------------
def save_semantics(sem: Semantics, folder: Path, extra: dict | None = None) -> dict:
    """Write semantics.json and semantics.safetensors beside a codec; returns the config."""
    config = {"format": SEMANTICS_FORMAT, "k": sem.k, "dim": int(sem.centroids.shape[1])}
    return write_entry(folder, SEMANTICS_FILES, sem.tensors(), {**config, **(extra or {})})


@lru_cache(maxsize=4)
def load_semantics(folder: str) -> Semantics | None:
    """The concept vocabulary and predictor of a model folder, or None when it has none."""
    f = Path(folder)
    if not (f / SEMANTICS_FILES[0]).exists():
        return None
    config, t, _ = read_entry(f, SEMANTICS_FILES, SEMANTICS_FORMAT, "concept vocabulary")
    try:
        if set(t) != {"centroids", "predictor.weight", "predictor.bias"}:
            raise KeyError(f"keys {sorted(t)}")
        sem = Semantics.from_tensors(t)
        if sem.k != config["k"] or sem.predictor.weight.shape[0] != sem.k:
            raise ValueError(
                f"{sem.k} centroids and {sem.predictor.weight.shape[0]} predictor rows, config k {config['k']}"
            )
    except (KeyError, ValueError, TypeError) as e:
        raise WeightsError(f"{f}/{SEMANTICS_FILES[1]} does not fit its config ({e})") from None
    return sem


# -- encoder -------------------------------------------------------------------------------------
def save_encoder(enc: TripleAnalysis, model: LoadedModel, folder: Path, extra: dict | None = None) -> dict:
    """Write encoder.json and encoder.safetensors beside the codec it was trained against (whose
    sha256 the config records); returns the config."""
    config = {"format": ENCODER_FORMAT, "triple": enc.cfg.as_dict(), "codec_sha256": model.fingerprint.hex()}
    return write_entry(folder, ENCODER_FILES, _half(enc.state_dict()), {**config, **(extra or {})})


@lru_cache(maxsize=4)
def load_encoder(folder: str) -> TripleAnalysis | None:
    """The triple encoder of a model folder, or None when it has none. It must have been trained
    against this folder's codec: its g_a copy feeds that codec's entropy models."""
    f = Path(folder)
    if not (f / ENCODER_FILES[0]).exists():
        return None
    config, t, _ = read_entry(f, ENCODER_FILES, ENCODER_FORMAT, "triple encoder")
    model = load_model(folder)
    if config.get("codec_sha256") != model.fingerprint.hex():
        raise WeightsError(f"{f}/{ENCODER_FILES[0]} was trained against another codec than {f}/{CODEC_FILES[1]}")
    try:
        enc = TripleAnalysis(model.codec, TripleConfig.from_dict(config["triple"]))
        enc.load_state_dict(_float(t), strict=True)
    except (RuntimeError, KeyError, TypeError, ValueError) as e:
        raise WeightsError(f"{f}/{ENCODER_FILES[1]} does not fit its config ({str(e).splitlines()[0]})") from None
    return enc.eval().requires_grad_(False)
