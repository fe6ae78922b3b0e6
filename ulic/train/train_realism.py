"""Stage 3: train the decoding path in pixel space for perception, the codec frozen.

Per step (one quality byte per batch, the realism R ~ U[0, 1] per sample):

    x (cached TAEF2 latent of a crop) --codec.reconstruct--> z_c          frozen: symbols unchanged
    z_c --DRM(q, R[, concepts])--> K unrolled DDIM steps of the CDM denoiser(R) --> latent
    latent --pixel decoder(R) (TAEF2's decoder, fine-tuned)--> image
    L_G = w_mse * (1 - mse_drop * R) * MSE(image, crop)
          + R * (w_lpips * LPIPS-VGG(image, crop) + beta * hinge_G(D(image, z_c)))
          + w_anchor * MSE(frozen TAEF2 decoder(latent), crop)      the latent stays on TAEF2's manifold
          + w_grid * lattice(image - crop)              the error's 8-px pattern (grid8's counterpart)
    L_D = hinge(D(crop, z_c), D(image, z_c))     D sees both at one random shift of 0..d_shift px
D (`--critic-kind`): a patch critic on pixels, or a projected one on frozen VGG16 features or on
the frozen TAEF2 encoder's (`ulic.train.discriminator`); either way conditioned on z_c.

The anchor term keeps the denoised latent decodable by the frozen TAEF2 decoder (a latent off its
manifold shows as a block grid there and as stripes in the fine-tuned decoder); the random
shift stops the patch critic from keying on the 8-px latent grid. The lattice term
(`ulic.evaluation.artefacts.lattice_loss`) penalises only the part of the error that repeats every
8 px within 32-px tiles (rows and columns), at every R: the horizontal stripes the R = 1 branch
learns in long runs, which the MSE term resists only as much as any other error of that energy.

The generator starts from the shipped stage-2 decoder (its DRM input gains an R plane with zero
weights, the denoiser a zero R projection) and TAEF2's decoder weights, so step 0 decodes as
today at every R. The adversarial weight ramps from 0 to beta over `--gan-ramp` steps after
`--gan-start`, once the perceptual term has moved the output off the blurry mean.

With `--concepts` the DRM also reads the concept id of the photo's region under each latent
position (the ids an SRC section carries, `ulic.semantics`; crops from `pixel_crops --concepts`),
through a learned embedding added to its first features (zero at start); a share
`--concept-drop` of the samples gets the id meaning "none", as a file without SRC.

Networks inside the loss: VGG16 (LPIPS-VGG, and the projected critic's features; DISTS uses the
same backbone); with `--critic-kind projected-vae` the critic reads the frozen TAEF2 encoder
instead, which no metric uses. Not inside:
AlexNet (LPIPS-Alex, the headline metric) and Inception (FID), which are only reported.
Validation (every `--val-every` steps, held-out crops, R = 0 and 1): PSNR, LPIPS-Alex, LPIPS-VGG.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from ulic.codec.hyperprior import Q_STEPS
from ulic.codec.layers import zero_init
from ulic.diffusion.decode import sample
from ulic.diffusion.networks import DiffusionConfig, DiffusionDecoder
from ulic.evaluation.artefacts import lattice_loss
from ulic.evaluation.lpips import LPIPS
from ulic.model_store import load_decoder, load_model, load_semantics
from ulic.runtime import DEVICES, fast_bf16, resolve_device, tune_allocator
from ulic.semantics.vocabulary import Semantics
from ulic.train import distributed
from ulic.train.common import (
    PixelCrops,
    add_run_arguments,
    load_checkpoint,
    log_line,
    lr_at,
    save_checkpoint,
    update_averages,
)
from ulic.train.discriminator import (
    EncoderTaps,
    PatchDiscriminator,
    ProjectedDiscriminator,
    d_hinge,
    g_hinge,
    halves,
)
from ulic.vae.taef2 import decode_pixels

# --train: which parts of the decoding path learn (the ablation of trainable parts); the rest
# keeps its starting weights, so "latent" leaves TAEF2's decoder (the pixel decoder at step 0)
# frozen and adapts only the latent in front of it, "pixel" leaves the stage-2 DRM and denoiser.
TRAIN_PARTS = {"all": ("drm.", "denoiser.", "pixel."), "latent": ("drm.", "denoiser."), "pixel": ("pixel.",)}
VAL_Q_BYTES = (40, 140)  # about 0.01 and 0.03 bpp on Kodak-sized photos
CHECKPOINT = "checkpoint.safetensors"
SEED_PER_RANK = distributed.SEED_PER_RANK


def build_generator(
    model_folder: str | None, vae_decoder: torch.nn.Module, sem: Semantics | None = None, grow_mid: int = 0
) -> DiffusionDecoder:
    """Stage-3 decoder (realism + pixel decoder): a stage-3 decoder is trained on as it is; a
    stage-2 decoder gains zero-initialised R inputs and TAEF2's decoder weights. Given a
    vocabulary `sem`, a decoder that reads no concepts gains a zero-initialised concept input;
    `grow_mid` > 0 appends that many denoiser blocks at h/2 that start as the identity (so step 0
    decodes as before either way)."""
    return grown(_stage3_generator(model_folder, vae_decoder, sem), grow_mid)


def grown(dec: DiffusionDecoder, n: int) -> DiffusionDecoder:
    """`dec` with n more denoiser blocks at h/2 (the larger generator), each appended after the
    others with its output convolution at zero, so the grown decoder computes what `dec` did."""
    if n <= 0:
        return dec
    mid = len(dec.denoiser.mid) + n
    new = DiffusionDecoder(DiffusionConfig(**{**dec.cfg.as_dict(), "mid_blocks": mid}))
    missing, unexpected = new.load_state_dict(dec.state_dict(), strict=False)
    added = {f"denoiser.mid.{i}." for i in range(len(dec.denoiser.mid), mid)}
    assert not unexpected and all(k.startswith(tuple(added)) for k in missing), missing
    for blk in new.denoiser.mid[len(dec.denoiser.mid) :]:
        out = blk.conv2
        assert isinstance(out, nn.Conv2d)
        zero_init(out)  # x + conv2(...) = x, and the skip of a same-width block is the identity
    return new


def _stage3_generator(
    model_folder: str | None, vae_decoder: torch.nn.Module, sem: Semantics | None
) -> DiffusionDecoder:
    loaded = load_decoder(str(load_model(model_folder).folder))
    if loaded is None:
        raise SystemExit("the model has no stage-2 decoder to start from")
    old, _ = loaded
    if old.cfg.realism and old.cfg.pixel_decoder:
        if sem is None or old.cfg.concepts:
            if sem is not None and old.cfg.vocabulary != sem.vocabulary_id:
                raise SystemExit(
                    f"the decoder reads vocabulary {old.cfg.vocabulary}, the model has {sem.vocabulary_id}"
                )
            new = DiffusionDecoder(old.cfg)
            new.load_state_dict(old.state_dict(), strict=True)
            return new
        cfg = DiffusionConfig(**{**old.cfg.as_dict(), "concepts": sem.k, "vocabulary": sem.vocabulary_id})
        new = DiffusionDecoder(cfg)
        missing, unexpected = new.load_state_dict(old.state_dict(), strict=False)
        assert not unexpected and all(k.startswith("drm.concept_") for k in missing), missing
        return new
    if sem is not None:
        raise SystemExit("--concepts continues a stage-3 decoder; train stage 3 without it first")
    new = DiffusionDecoder(DiffusionConfig(**{**old.cfg.as_dict(), "realism": True, "pixel_decoder": True}))
    state = dict(old.state_dict())
    w = state["drm.head.weight"]  # (n, c + 1, 3, 3) -> (n, c + 2, 3, 3), the R plane at zero
    state["drm.head.weight"] = torch.cat([w, torch.zeros_like(w[:, :1])], 1)
    missing, unexpected = new.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(("pixel.", "denoiser.realism_proj")) for k in missing), missing
    assert new.pixel is not None  # built with pixel_decoder=True
    new.pixel.load_taef2(vae_decoder)
    return new


def vocabulary(model_folder: str | None) -> Semantics:
    """The concept vocabulary of the model (SystemExit when it has none)."""
    sem = load_semantics(str(load_model(model_folder).folder))
    if sem is None:
        raise SystemExit("--concepts: the model has no concept vocabulary (semantics.json)")
    return sem


class DecodingPath(nn.Module):
    """The trainable decoding path as one module (so DistributedDataParallel can wrap it):
    (z_c, start noise, R) -> (image (B, 3, H, W), denoised latent (B, 32, H/8, W/8))."""

    def __init__(self, gen: DiffusionDecoder, steps: int, bf16: bool):
        super().__init__()
        self.gen, self.steps, self.bf16 = gen, steps, bf16

    def forward(
        self, z_c: torch.Tensor, q_byte: int, eps: torch.Tensor, realism: torch.Tensor, concepts: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        lat = sample(self.gen, z_c, q_byte, self.steps, eps, realism, concepts=concepts)
        assert self.gen.pixel is not None
        return in_bf16(self.gen.pixel, self.bf16, lat.contiguous(memory_format=torch.channels_last), realism), lat


def compressed(codec, latents: torch.Tensor, q_byte: int) -> torch.Tensor:
    """Cached TAEF2 latents -> z_c at one quality byte (the frozen codec, no gradient)."""
    with torch.no_grad():
        return codec.reconstruct(latents, torch.full((len(latents),), q_byte / Q_STEPS, device=latents.device))


def in_bf16(fn, bf16: bool, *args: torch.Tensor) -> torch.Tensor:
    """fn(*args), in bfloat16 autocast on the arguments' device when asked; float32 result."""
    if not bf16:
        return fn(*args)
    with torch.autocast(args[0].device.type, dtype=torch.bfloat16):
        return fn(*args).float()


def gan_weight(step: int, args: argparse.Namespace) -> float:
    return args.beta * min(1.0, max(0.0, (step - args.gan_start) / max(1, args.gan_ramp)))


def dropped(concepts: torch.Tensor | None, k: int, p: float) -> torch.Tensor | None:
    """Concept maps (B, h, w) with each sample's map replaced by the id k (none) at rate p, so
    one decoder serves files with and without an SRC section."""
    if concepts is None:
        return None
    drop = torch.rand(len(concepts), device=concepts.device) < p
    return torch.where(drop[:, None, None], torch.full_like(concepts, k), concepts)


def sampled_inputs(parts: dict, lat: torch.Tensor, concepts: torch.Tensor | None, args: argparse.Namespace):
    """The generator's inputs for one batch: (q byte, R per sample (B,), z_c, concept maps with
    the "none" drop applied)."""
    q_byte = int(torch.randint(0, Q_STEPS + 1, (1,)))
    r = torch.rand(len(lat), device=lat.device)  # (B,): the batch as drawn
    z_c = compressed(parts["codec"], lat, q_byte)
    return q_byte, r, z_c, dropped(concepts, parts["gen"].cfg.concepts, args.concept_drop)


def critic_shift(parts: dict, args: argparse.Namespace) -> tuple[int, int]:
    """The random shift of the patch critic's inputs; none for a projected critic (VGG16's reads
    the loss's taps, TAEF2's runs unshifted like it)."""
    if isinstance(parts["disc"], ProjectedDiscriminator):
        return (0, 0)
    dy, dx = (int(v) for v in torch.randint(0, args.d_shift + 1, (2,)))
    return dy, dx


def reads_taps(disc: nn.Module) -> bool:
    """Whether the critic judges the LPIPS-VGG taps the perceptual term has just computed."""
    return isinstance(disc, ProjectedDiscriminator) and disc.reads_lpips_taps


def both_taps(taps_real: list, taps_fake: list) -> dict:
    """A projected critic's input for its own update: real and fake taps stacked, no gradient."""
    return {"taps": [torch.cat([r, f]).detach() for r, f in zip(taps_real, taps_fake, strict=True)]}


def generator_step(
    step: int, parts: dict, target: torch.Tensor, lat: torch.Tensor, concepts: torch.Tensor | None, args
):
    """One generator update; returns (logged values, image, z_c, the critic's shift, the critic's
    extra input: the VGG16 taps of real and fake for a projected critic)."""
    q_byte, r, z_c, concepts = sampled_inputs(parts, lat, concepts, args)
    img, lat_hat = parts["path"](z_c, q_byte, torch.randn_like(z_c), r, concepts)
    mse = (img - target).pow(2).mean((1, 2, 3))
    with torch.autocast(img.device.type, dtype=torch.bfloat16, enabled=args.bf16):
        lpv, taps_fake, taps_real = parts["lpips"].compare(img.clamp(0, 1), target)
    lpv = lpv.float()
    beta = gan_weight(step, args)
    projected = reads_taps(parts["disc"])  # it reads the loss's VGG16 taps
    shift = critic_shift(parts, args)
    seen = {"taps": taps_fake} if projected else {}
    disc = parts["disc"].requires_grad_(False)  # the bare module: no critic update in this pass
    adv = g_hinge(disc(img.clamp(0, 1), z_c, shift, **seen)) if beta > 0 else torch.zeros_like(mse)
    disc.requires_grad_(True)
    if projected:
        seen = both_taps(taps_real, taps_fake)
    lattice = lattice_loss(img, target) if args.w_grid > 0 else torch.zeros_like(mse)
    anchor = torch.zeros_like(mse)
    if args.w_anchor > 0:
        anchor = (decode_pixels(parts["vae_decoder"], lat_hat, bf16=args.bf16) - target).pow(2).mean((1, 2, 3))
    loss_g = (
        args.w_mse * (1 - args.mse_drop * r) * mse
        + args.w_anchor * anchor
        + args.w_grid * lattice
        + r * (args.w_lpips * lpv + beta * adv)
    ).mean()
    parts["opt_g"].zero_grad(set_to_none=True)
    loss_g.backward()  # under DDP: gradients averaged over the ranks here
    torch.nn.utils.clip_grad_norm_(parts["gen"].parameters(), 1.0)
    parts["opt_g"].step()
    logged = {
        "loss_g": loss_g,
        "mse": mse.mean(),
        "lpips_vgg": lpv.mean(),
        "g_adv": adv.mean(),
        "anchor": anchor.mean(),
        "lattice": lattice.mean(),
    }
    return logged, img.detach(), z_c, shift, seen


def critic_inputs(parts: dict, target: torch.Tensor, lat: torch.Tensor, concepts: torch.Tensor | None, args):
    """A critic warm-up step's inputs, as `generator_step` returns them but with the generator
    only run (no gradient, no update): (image, z_c, the critic's shift, its extra input)."""
    q_byte, r, z_c, concepts = sampled_inputs(parts, lat, concepts, args)
    with torch.no_grad():
        img, _ = parts["path"](z_c, q_byte, torch.randn_like(z_c), r, concepts)
        shift = critic_shift(parts, args)
        if not reads_taps(parts["disc"]):
            return img, z_c, shift, {}
        with torch.autocast(img.device.type, dtype=torch.bfloat16, enabled=args.bf16):
            _, taps_fake, taps_real = parts["lpips"].compare(img.clamp(0, 1), target)
    return img, z_c, shift, both_taps(taps_real, taps_fake)


def train_step(step: int, parts: dict, crops: PixelCrops, args: argparse.Namespace) -> dict[str, torch.Tensor]:
    """A generator and a critic update on one batch; during the first `--d-warmup` steps the
    critic's update alone (the generator's step count starts after them)."""
    target, lat, concepts = crops.batch(args.batch, parts["device"])
    if step < args.d_warmup:
        logged: dict[str, torch.Tensor] = {}
        img, z_c, shift, seen = critic_inputs(parts, target, lat, concepts, args)
    else:
        logged, img, z_c, shift, seen = generator_step(step - args.d_warmup, parts, target, lat, concepts, args)
        if "ema" in parts:
            ema_update(parts["ema"], parts["gen"], args.ema)
    n = len(target)  # one critic call on real and fake together (DDP: one forward per backward)
    logits = parts["critic"](torch.cat([target, img.clamp(0, 1)]), torch.cat([z_c, z_c]), shift, **seen)
    loss_d = d_hinge(*halves(logits, n))
    parts["opt_d"].zero_grad(set_to_none=True)
    loss_d.backward()
    parts["opt_d"].step()
    return {**logged, "loss_d": loss_d}


@torch.no_grad()
def ema_update(ema: nn.Module, gen: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * gen, parameter by parameter; buffers copied."""
    for pe, p in zip(ema.parameters(), gen.parameters(), strict=True):
        pe.lerp_(p.detach(), 1 - decay)
    for be, b in zip(ema.buffers(), gen.buffers(), strict=True):
        be.copy_(b)


def validation(parts: dict, crops: PixelCrops, args: argparse.Namespace) -> dict[str, float]:
    """`validate` of the trained weights and, with `--ema`, of their average (keys `*_ema`)."""
    out = validate(parts, crops, args, parts["gen"])
    if "ema" in parts:
        out.update({f"{k}_ema": v for k, v in validate(parts, crops, args, parts["ema"]).items()})
    return out


@torch.no_grad()
def validate(parts: dict, crops: PixelCrops, args: argparse.Namespace, gen: DiffusionDecoder) -> dict[str, float]:
    """Held-out crops at two rates, R = 0 and 1, fixed noise: PSNR, LPIPS-Alex, LPIPS-VGG and
    the RMS (grey levels) of the error's 8-px pattern; with their concept maps when the decoder
    reads them, and once more without (`_none`, as a file without SRC) at R = 1."""
    dev = parts["device"]
    x, lat = crops.val_pixels.to(dev).float() / 255, crops.val_latents.to(dev).float()
    concepts = crops.val_concepts.to(dev).long() if crops.val_concepts is not None else None
    path = DecodingPath(gen, args.k, False)
    runs = [(r, qb, concepts, "") for r in (0.0, 1.0) for qb in VAL_Q_BYTES]
    if concepts is not None:
        runs += [(1.0, qb, None, "_none") for qb in VAL_Q_BYTES]
    out = {}
    for r, qb, con, tag in runs:
        z_c = compressed(parts["codec"], lat, qb)
        eps = torch.randn(z_c.shape, generator=torch.Generator().manual_seed(0)).to(dev)
        img, _ = path(z_c, qb, eps, torch.full((len(x),), r, device=dev), con)
        img = (img.clamp(0, 1) * 255).round() / 255
        mse = (img - x).pow(2).mean((1, 2, 3))
        key = f"q{qb}_r{r:g}{tag}"
        out[f"val_psnr_{key}"] = float((10 * torch.log10(1 / mse)).mean())
        out[f"val_lpips_alex_{key}"] = float(parts["alex"](img, x).mean())
        out[f"val_lpips_vgg_{key}"] = float(parts["lpips"](img, x).mean())
        out[f"val_grid_{key}"] = float(lattice_loss(img, x).mean().sqrt() * 255)  # grey levels
    return out


def load_critic(path: Path, disc: nn.Module) -> None:
    """Start the critic from the `disc.` weights of a stage-3 checkpoint or critic file
    (`ulic.train.export --critic-of`); SystemExit when the file has none that fit."""
    try:
        t = load_file(str(path))
        disc.load_state_dict({k[5:]: v.float() for k, v in t.items() if k.startswith("disc.")}, strict=True)
    except (OSError, RuntimeError, SafetensorError) as e:
        raise SystemExit(f"--critic {path}: not a stage-3 critic ({str(e).splitlines()[0]})") from None


def checkpoint_parts(parts: dict) -> tuple[dict, dict]:
    """The modules and optimisers a stage-3 checkpoint holds (`ulic.train.common`)."""
    modules = {"gen": parts["gen"], "disc": parts["disc"]}
    if "ema" in parts:
        modules["ema"] = parts["ema"]
    return modules, {"opt_g": (parts["opt_g"], parts["gen"]), "opt_d": (parts["opt_d"], parts["disc"])}


def resume(path: Path, parts: dict, device: torch.device) -> dict:
    """Load a checkpoint into the parts; an average the checkpoint lacks (`--ema` switched on
    for a run that had none) starts from the loaded generator."""
    modules, opts = checkpoint_parts(parts)
    with safe_open(str(path), "pt") as f:
        has_ema = any(k.startswith("ema.") for k in f.keys())
    if "ema" in modules and not has_ema:
        del modules["ema"]
    meta = load_checkpoint(path, modules, opts, device=device)
    if "ema" in parts and not has_ema:
        parts["ema"].load_state_dict(parts["gen"].state_dict())
    return meta


def optimisers(gen: DiffusionDecoder, disc: nn.Module, args: argparse.Namespace):
    """Adam for the generator (DRM + denoiser, pixel decoder, the new R inputs at their own
    rates; only the parts `--train` names, the others frozen) and for the critic; each group
    remembers its base lr for the schedule."""
    trained = TRAIN_PARTS[args.train]
    for n, p in gen.named_parameters():
        p.requires_grad_(n.startswith(trained))
    named = {n: p for n, p in gen.named_parameters() if p.requires_grad}
    new = ("pixel.film.", "denoiser.realism_proj.", "drm.concept_")  # the inputs added to a trained decoder
    cond = [n for n in named if n.startswith(new)]
    pix = [n for n in named if n.startswith("pixel.") and n not in cond]
    rest = [n for n in named if n not in cond and n not in pix]
    groups = [(rest, args.lr), (pix, args.lr_pixel), (cond, args.lr * args.cond_lr_scale)]
    opt_g = torch.optim.Adam(
        [{"params": [named[n] for n in names], "lr": lr, "base": lr} for names, lr in groups if names],
        betas=(0.5, 0.9),
    )
    opt_d = torch.optim.Adam(disc.parameters(), lr=args.lr_d, betas=(0.5, 0.9))
    for g in opt_d.param_groups:
        g["base"] = args.lr_d
    return opt_g, opt_d


def build(args: argparse.Namespace, rank: distributed.Rank) -> dict:
    """Frozen codec, TAEF2 decoder and loss networks, the generator and critic (DDP-wrapped
    when distributed) and their optimisers, all on this rank's device."""
    from ulic.vae.weights import load_vae

    dev = rank.device
    codec = load_model(args.model).codec.eval().requires_grad_(False).to(dev)
    vae = load_vae()
    vae_decoder = vae.decoder.eval().requires_grad_(False)
    gen = build_generator(args.model, vae_decoder, args.sem, args.grow_mid).to(dev)
    vgg = LPIPS("vgg").to(dev)
    disc: nn.Module
    if args.critic_kind == "projected":
        disc = ProjectedDiscriminator(vgg, bf16=args.bf16)
    elif args.critic_kind == "projected-vae":
        encoder = vae.encoder.eval().requires_grad_(False).to(dev)
        disc = ProjectedDiscriminator(EncoderTaps(encoder), bf16=args.bf16)
    else:  # built only when chosen: the critics' random draws stay as before for the other kinds
        disc = PatchDiscriminator()
    disc = disc.to(dev)
    opt_g, opt_d = optimisers(gen, disc, args)
    ema = {"ema": copy.deepcopy(gen).requires_grad_(False)} if args.ema > 0 else {}
    return {
        **ema,
        "device": dev,
        "codec": codec,
        "gen": gen,
        "disc": disc,
        "path": distributed.wrap(DecodingPath(gen, args.k, args.bf16), rank),
        "critic": distributed.wrap(disc, rank),
        "vae_decoder": vae_decoder.to(dev),
        "opt_g": opt_g,
        "opt_d": opt_d,
        "lpips": vgg,
        "alex": LPIPS("alex").to(dev),
    }


class TimeBudget:
    """Fit a run into `seconds` of wall time (a lent machine's limit): after CALIBRATION_STEPS
    timed steps the total step count becomes what the rest of the budget holds at the measured
    pace, less a margin for validation and checkpoints, so the learning rate still decays to its
    floor; `spent()` stops the loop if the pace drops anyway. Without a budget it does nothing.
    Steps before `calibrate_from` (the critic's cheaper warm-up) are not timed."""

    CALIBRATION_STEPS = 20
    MARGIN = 0.9

    def __init__(self, seconds: float | None, start_step: int, calibrate_from: int = 0):
        self.seconds, self.start_step, self.t0 = seconds, start_step, time.time()
        self.calibrate_from, self.t_cal = max(start_step, calibrate_from), self.t0
        self.fitted = False

    def fit(self, step: int, total: int) -> int:
        if step == self.calibrate_from:
            self.t_cal = time.time()
        if self.seconds is None or self.fitted or step - self.calibrate_from < self.CALIBRATION_STEPS:
            return total
        self.fitted = True
        now = time.time()
        pace = max((now - self.t_cal) / (step - self.calibrate_from), 1e-9)
        fitted = step + int(self.MARGIN * max(0.0, self.seconds - (now - self.t0)) / pace)
        print(f"time budget: {pace:.3f} s/step, {min(total, fitted)} steps in all", flush=True)
        return min(total, fitted)

    def spent(self) -> bool:
        return self.seconds is not None and time.time() - self.t0 >= self.seconds


def train(args: argparse.Namespace, parts: dict, meta: dict, rank: distributed.Rank) -> PixelCrops:
    """The loop from meta's step: rank 0 logs, validates and writes checkpoints."""
    step, seconds0, t0 = meta["step"], meta["seconds"], time.time()
    avg: dict[str, float] = {}
    reads_maps = parts["gen"].cfg.concepts and args.concept_drop < 1  # drop 1: every sample as without SRC
    crops = PixelCrops(args.crops, args.seed + step, rank, parts["gen"].cfg.vocabulary if reads_maps else None)
    torch.manual_seed(args.seed + step + SEED_PER_RANK * rank.rank)
    log_name = "log.jsonl" if rank.main else f"log.rank{rank.rank}.jsonl"
    with open(args.run / log_name, "a") as log:
        if step == 0 and rank.main:
            log_line(log, 0, 0.0, validation(parts, crops, args))
        budget = TimeBudget(args.budget_s, step, args.d_warmup)
        while step < args.steps:
            for g in parts["opt_g"].param_groups:  # the generator's schedule starts after the warm-up
                g["lr"] = lr_at(max(0, step - args.d_warmup), max(1, args.steps - args.d_warmup), g["base"])
            for g in parts["opt_d"].param_groups:
                g["lr"] = lr_at(step, args.steps, g["base"])
            update_averages(avg, train_step(step, parts, crops, args))
            step += 1
            args.steps = budget.fit(step, args.steps)
            elapsed = seconds0 + time.time() - t0
            if step % args.log_every == 0:
                log_line(log, step, elapsed, avg)
            last = step >= args.steps or budget.spent()
            if (step % args.ckpt_every == 0 or last) and rank.main:
                save_checkpoint(
                    args.run / CHECKPOINT, *checkpoint_parts(parts), {**meta, "step": step, "seconds": elapsed}
                )
            warming = step <= args.d_warmup  # the generator has not moved since step 0's validation
            if ((step % args.val_every == 0 and not warming) or last) and rank.main:
                log_line(log, step, elapsed, validation(parts, crops, args))
            distributed.barrier(rank)  # nobody runs ahead of rank 0's checkpoint
            if last:
                break
    return crops


def run(args: argparse.Namespace) -> None:
    rank = distributed.init()
    if not rank.distributed:
        rank = distributed.Rank(device=resolve_device(args.device))
    elif args.budget_s is not None:
        raise SystemExit("--budget-s is for one process (ranks would fit different step counts)")
    args.bf16 = args.bf16 == "on" or (args.bf16 == "auto" and fast_bf16(rank.device))
    args.sem = vocabulary(args.model) if args.concepts else None
    args.run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)  # the same initial critic on every rank
    parts = build(args, rank)
    ckpt = args.run / CHECKPOINT
    meta = {
        "step": 0,
        "seconds": 0.0,
        "args": {k: str(v) for k, v in vars(args).items() if k != "sem"},
        "config": parts["gen"].cfg.as_dict(),
    }
    if ckpt.exists():
        meta = resume(ckpt, parts, rank.device)
        if rank.main:
            print(f"resumed at step {meta['step']}", flush=True)
    elif args.critic is not None:
        load_critic(args.critic, parts["disc"])
    crops = train(args, parts, meta, rank)
    if rank.distributed:
        distributed.write_ranks(args.run, parts["gen"], crops.shard, rank)
    distributed.finish(rank)


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(ap, steps=1500, batch=8, lr=1e-4, ckpt_every=25)  # --lr: DRM and denoiser
    ap.add_argument("--crops", type=Path, required=True, help="cache from ulic.train.pixel_crops")
    ap.add_argument("--model", type=str, default=None, help="model folder (default: shipped)")
    ap.add_argument("--k", type=int, default=4, help="unrolled DDIM steps (decode's default)")
    ap.add_argument("--lr-pixel", type=float, default=5e-5, help="pixel decoder")
    ap.add_argument(
        "--train",
        choices=tuple(TRAIN_PARTS),
        default="all",
        help="the parts that learn: all; latent (DRM + denoiser, TAEF2's decoder frozen); pixel "
        "(the pixel decoder, the DRM and denoiser frozen)",
    )
    ap.add_argument("--lr-d", type=float, default=2e-4)
    ap.add_argument("--cond-lr-scale", type=float, default=10.0, help="lr multiple of the new R inputs")
    ap.add_argument("--w-mse", type=float, default=16.0, help="MSE weight (images in [0, 1])")
    ap.add_argument("--mse-drop", type=float, default=0.0, help="MSE weight is w_mse * (1 - mse_drop * R)")
    ap.add_argument("--w-anchor", type=float, default=0.0, help="MSE weight through the frozen TAEF2 decoder")
    ap.add_argument(
        "--w-grid", type=float, default=0.0, help="weight of the error's 8-px pattern (lattice_loss), all R"
    )
    ap.add_argument(
        "--critic-kind",
        choices=("patch", "projected", "projected-vae"),
        default="patch",
        help="patch: a pixel patch critic conditioned on z_c; projected: heads on frozen VGG16 "
        "features (relu2_2..relu4_3, the loss's LPIPS network) conditioned on z_c; projected-vae: "
        "the same heads on the frozen TAEF2 encoder's features at 1/2, 1/4 and 1/8 scale (a network "
        "in neither the perceptual loss nor the evaluation)",
    )
    ap.add_argument(
        "--d-shift", type=int, default=0, help="random shift (px) of D's inputs, both real and fake (patch critic)"
    )
    ap.add_argument("--w-lpips", type=float, default=1.0, help="LPIPS-VGG weight, times R")
    ap.add_argument("--beta", type=float, default=0.1, help="adversarial weight, times R")
    ap.add_argument(
        "--d-warmup",
        type=int,
        default=0,
        help="first train the critic alone for this many steps (the generator only run, no "
        "update); --gan-start and the generator's schedule count from the end of the warm-up",
    )
    ap.add_argument("--gan-start", type=int, default=150)
    ap.add_argument("--gan-ramp", type=int, default=150)
    ap.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="bfloat16 autocast for the decoders and VGG; auto: on a GPU that supports it and on "
        "CPUs that compute bfloat16 natively (elsewhere it is emulated and many times slower)",
    )
    ap.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="auto: a CUDA GPU when one is visible, else the CPU (under torchrun: each rank's own)",
    )
    ap.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="fit the run into this many seconds of training (one process): the step count is "
        "set after 20 timed steps so the schedule still completes; a checkpoint at the end",
    )
    ap.add_argument(
        "--critic",
        type=Path,
        default=None,
        help="a new run's critic starts from this stage-3 checkpoint's (or `export --critic-of` file's) "
        "instead of at random: a fresh critic costs a continuation its first several hundred steps",
    )
    ap.add_argument(
        "--concepts",
        action="store_true",
        help="condition the decoder on the crops' concept maps (an SRC section's ids; the crops "
        "from `pixel_crops --concepts`); a decoder without that input gains it at zero",
    )
    ap.add_argument(
        "--concept-drop",
        type=float,
        default=0.5,
        help="rate of samples trained without concepts (files without SRC); 1: all of them, and "
        "the crops need no concept maps",
    )
    ap.add_argument(
        "--ema",
        type=float,
        default=0.0,
        help="also keep an exponential moving average of the generator's weights with this decay "
        "(e.g. 0.998; 0: none), validated beside them; `export --ema` ships it",
    )
    ap.add_argument(
        "--grow-mid",
        type=int,
        default=0,
        help="a larger generator: append this many denoiser blocks at half the latent resolution, "
        "each starting as the identity (the decoder's config records the new count)",
    )
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--val-every", type=int, default=100)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    tune_allocator()
    run(parse(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
