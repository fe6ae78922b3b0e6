"""Train the triple encoder (`ulic.codec.triple`) against a frozen codec, on pixel crops.

Per step (`--target taef2`, q ~ U[0, 1] per sample):

    y, z = E(x, image)                  the encoder arm (triple, semantic, pixel or plain)
    L    = bpp(y, z) + lambda(q) * (MSE(TAEF2_dec(z_c), image) + w_latent * MSE(z_c, x))

with the codec's own entropy models, gains and synthesis (frozen, so files and decoders do not
change) and the frozen TAEF2 decoder. The distortion is against the crop's pixels, not TAEF2's
reconstruction of them: what the pixel encoder can add is what TAEF2's encoder lost. `--arm
plain` trains copies of the codec's g_a and h_a alone under the same loss: the baseline that
separates what the extra inputs bring from what fine-tuning brings. Step 0 of every arm is the
shipped analysis (the new branches start at zero). Validation on the held-out crops at q 0.25,
0.5, 0.75 (fixed noise) goes to `<run>/log.jsonl`; checkpoints resume.

With `--target path` (one q byte per step, as the sampler takes one) the distortion is the one
`--effort 3` tunes single files for (`ulic.diffusion.pfo.path_distortion`): MSE + w_perceptual x
LPIPS-VGG of the image the model folder's whole default decoding path makes (DRM, its default
CDM steps with fresh noise, the stage-3 pixel decoder at its default R), all of it frozen:

    L    = bpp(y, z) + lambda(q) * (MSE(x_dec, image) + w_perceptual * LPIPS-VGG(x_dec, image)
                                    + w_latent * MSE(z_c, x))

An encoder trained so is Pfo amortised: the plain encoder's speed, aimed at the decoder the files
will meet. VGG16 is then in the loss (DISTS shares its backbone); AlexNet and Inception are not.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ulic.api import decode_settings
from ulic.codec.model import Q_STEPS, LatentCodec, lmbda_of
from ulic.codec.triple import TripleAnalysis, TripleConfig
from ulic.diffusion.networks import DiffusionDecoder
from ulic.diffusion.pfo import W_PERCEPTUAL, path_distortion
from ulic.evaluation.lpips import lpips_model
from ulic.model_store import load_decoder, load_model
from ulic.runtime import channels_last, native_bf16, tune_allocator
from ulic.semantics.encoder import dense_features
from ulic.train import common, distributed
from ulic.train.train_realism import DecodingPath
from ulic.vae.taef2 import decode_pixels
from ulic.vae.weights import load_vae

ARMS = {
    "triple": TripleConfig(pixel=True, semantic=True),
    "semantic": TripleConfig(pixel=False, semantic=True),
    "pixel": TripleConfig(pixel=True, semantic=False),
    "plain": TripleConfig(pixel=False, semantic=False),
}
VAL_Q = (0.25, 0.5, 0.75)
LOG_EVERY = 10


PathDecoder = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]


def path_decoder(dec: DiffusionDecoder, steps: int, realism: float | None, bf16: bool) -> PathDecoder:
    """Stage 3's decoding path (`train_realism.DecodingPath`) frozen, at one R: (z_c (B, 32, h, w),
    q byte, start noise eps (B, 32, h, w)) -> image (B, 3, 8h, 8w), unclamped."""
    if dec.pixel is None:
        raise SystemExit("--target path needs a decoder with its own pixel decoder (stage 3)")
    path = DecodingPath(dec.eval().requires_grad_(False), steps, bf16)
    r = 0.0 if realism is None else realism

    def run(z_c: torch.Tensor, q_byte: int, eps: torch.Tensor) -> torch.Tensor:
        return path(z_c, q_byte, eps, torch.full((len(z_c),), r), None)[0]

    return run


def rd_terms(
    enc: TripleAnalysis,
    codec: LatentCodec,
    decoder: torch.nn.Module | PathDecoder,
    image: torch.Tensor,
    x: torch.Tensor,
    q: torch.Tensor,
    args: argparse.Namespace,
    bf16: bool,
    eps: torch.Tensor | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """image (B, 3, H, W) in [0, 1], x (B, 32, H/8, W/8), q (B,) (one value for `--target path`)
    -> (loss and its parts (means), the decoded image (B, 3, H, W), detached). decoder: the TAEF2
    decoder, or a `DecodingPath` (eps: its start noise, drawn when None)."""
    y, z = enc(x, image, bf16)
    out = codec.forward_latents(y, z, q)
    bpp = out["bits"] / (image.shape[2] * image.shape[3])
    parts = {}
    if args.target == "path":
        q_byte = round(float(q[0]) * Q_STEPS)
        eps = torch.randn_like(out["z_c"]) if eps is None else eps
        img = decoder(out["z_c"], q_byte, eps)  # the pixel decoder in bfloat16 where the run asked
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            dist = path_distortion(img, image, lpips_model("vgg"), args.w_perceptual).float()
        pix = (img.detach() - image).pow(2).flatten(1).mean(1)
        if args.w_perceptual:
            parts["lpips_vgg"] = ((dist.detach() - pix) / args.w_perceptual).mean()
    else:
        assert isinstance(decoder, torch.nn.Module)  # the TAEF2 decoder
        img = decode_pixels(decoder, out["z_c"], bf16)
        pix = (img - image).pow(2).flatten(1).mean(1)
        dist = pix
    lat = (out["z_c"] - x).pow(2).flatten(1).mean(1)
    loss = bpp + lmbda_of(q, codec.cfg) * (dist + args.w_latent * lat)
    psnr = -10 * torch.log10(pix.detach().clamp_min(1e-10))
    terms = {"loss": loss.mean(), "bpp": bpp.mean(), "psnr": psnr.mean(), "latent_mse": lat.mean(), **parts}
    return terms, img.detach()


def draw_q(n: int, target: str) -> torch.Tensor:
    """q per sample: U[0, 1] each (taef2), or one q byte for the batch (path: the sampler's
    rate-matched timestep is per batch)."""
    if target == "path":
        return torch.full((n,), int(torch.randint(0, Q_STEPS + 1, (1,))) / Q_STEPS)
    return torch.rand(n)


@torch.no_grad()
def validate(parts: dict, crops: common.PixelCrops, args: argparse.Namespace) -> dict[str, float]:
    """bpp (model estimate, fixed noise), PSNR and loss on the held-out crops at each VAL_Q (and,
    for `--target path`, LPIPS-VGG, which is in the loss, and LPIPS-Alex, which is not)."""
    image, x = crops.val_pixels.float() / 255, crops.val_latents.float()
    res = {}
    for qv in VAL_Q:
        torch.manual_seed(0)
        q, eps = torch.full((len(x),), qv), None
        if args.target == "path":  # one whole q byte, fixed start noise
            q = torch.full((len(x),), round(qv * Q_STEPS) / Q_STEPS)
            eps = torch.randn((len(x), *x.shape[1:]), generator=torch.Generator().manual_seed(0))
        r, img = rd_terms(parts["enc"], parts["codec"], parts["decoder"], image, x, q, args, False, eps)
        res.update({f"val_q{qv:g}_{k}": float(v) for k, v in r.items() if k != "latent_mse"})
        if args.target == "path":
            res[f"val_q{qv:g}_lpips_alex"] = float(lpips_model("alex")(img.clamp(0, 1), image).mean())
    return res


def build(args: argparse.Namespace) -> dict:
    model = load_model(args.model)
    enc = TripleAnalysis(model.codec, ARMS[args.arm])
    copies = {id(p) for p in (*enc.g_a.parameters(), *enc.h_a.parameters())}
    opt = torch.optim.Adam(
        [
            {"params": [p for p in enc.parameters() if id(p) in copies], "lr_scale": 1.0},
            {"params": [p for p in enc.parameters() if id(p) not in copies], "lr_scale": args.new_lr_scale},
        ],
        lr=args.lr,
    )
    ckpt = args.run / "checkpoint.safetensors"
    meta = {
        "step": 0,
        "seconds": 0.0,
        "arm": args.arm,
        "triple": enc.cfg.as_dict(),
        "codec_sha256": model.fingerprint.hex(),
    }
    if ckpt.exists():
        meta = common.load_checkpoint(ckpt, {"encoder": enc}, {"opt": (opt, enc)})
        print(f"resumed at step {meta['step']}", flush=True)
    if enc.p_s is not None:  # build VGG16 now: its construction draws random numbers, which
        dense_features(torch.zeros(1, 3, 16, 16))  # would shift the seeded validation noise
    decoder: torch.nn.Module | PathDecoder
    if args.target == "path":
        loaded = load_decoder(str(model.folder))
        if loaded is None:
            raise SystemExit(f"--target path: {model.folder} has no decoder")
        dec, cfg = loaded
        _, steps, realism = decode_settings(dec, cfg)  # what a plain decode of its files runs
        decoder = path_decoder(dec, steps, realism, args.bf16)
        meta.update(target="path", path_steps=steps, realism=realism, w_perceptual=args.w_perceptual)
    else:
        vae = load_vae().decoder
        decoder = channels_last(vae) if args.bf16 else vae
    crops = common.PixelCrops(args.crops, args.seed + meta["step"], distributed.Rank())
    return {
        "enc": enc,
        "codec": model.codec,
        "decoder": decoder,
        "opt": opt,
        "ckpt": ckpt,
        "meta": meta,
        "crops": crops,
    }


def train(args: argparse.Namespace, parts: dict) -> None:
    enc, opt, meta, crops = parts["enc"], parts["opt"], parts["meta"], parts["crops"]
    t0, seconds0, step = time.time(), meta["seconds"], meta["step"]
    avg: dict[str, float] = {}
    with open(args.run / "log.jsonl", "a") as log:
        if step == 0:
            common.log_line(log, 0, 0.0, validate(parts, crops, args), args.steps)
        while step < args.steps:
            for g in opt.param_groups:
                g["lr"] = common.lr_at(step, args.steps, args.lr) * g["lr_scale"]
            image, x, _ = crops.batch(args.batch, torch.device("cpu"))
            r, _ = rd_terms(
                enc, parts["codec"], parts["decoder"], image, x, draw_q(args.batch, args.target), args, args.bf16
            )
            opt.zero_grad(set_to_none=True)
            r["loss"].backward()
            torch.nn.utils.clip_grad_norm_(enc.parameters(), 1.0)
            opt.step()
            step += 1
            common.update_averages(avg, r)
            elapsed = seconds0 + time.time() - t0
            if step % LOG_EVERY == 0:
                common.log_line(log, step, elapsed, avg, args.steps)
            if step % args.val_every == 0 or step == args.steps:
                common.log_line(log, step, elapsed, validate(parts, crops, args), args.steps)
            if step % args.ckpt_every == 0 or step == args.steps:
                common.save_checkpoint(
                    parts["ckpt"], {"encoder": enc}, {"opt": (opt, enc)}, {**meta, "step": step, "seconds": elapsed}
                )


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_run_arguments(ap, steps=800, batch=16, lr=5e-5, ckpt_every=50)  # --lr: the copies of g_a, h_a
    ap.add_argument("--crops", type=Path, required=True, help="cache from ulic.train.pixel_crops")
    ap.add_argument("--model", type=str, default=None, help="model folder of the frozen codec (default: shipped)")
    ap.add_argument("--arm", choices=tuple(ARMS), default="triple")
    ap.add_argument("--new-lr-scale", type=float, default=10.0, help="lr multiple of the new branches")
    ap.add_argument("--w-latent", type=float, default=0.02, help="weight of the latent MSE beside the pixel MSE")
    ap.add_argument(
        "--target",
        choices=("taef2", "path"),
        default="taef2",
        help="distortion through the frozen TAEF2 decoder, or through the model's whole default decoding path",
    )
    ap.add_argument(
        "--w-perceptual", type=float, default=W_PERCEPTUAL, help="--target path: LPIPS-VGG's weight beside the MSE"
    )
    ap.add_argument("--val-every", type=int, default=100)
    ap.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        default="auto",
        help="bfloat16 autocast for the TAEF2 decoder and VGG16 (auto: CPUs with native bfloat16)",
    )
    args = ap.parse_args(argv)
    args.bf16 = args.bf16 == "on" or (args.bf16 == "auto" and native_bf16())
    return args


def main(argv: list[str] | None = None) -> int:
    tune_allocator()
    args = parse(argv)
    args.run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    parts = build(args)
    torch.manual_seed(args.seed + parts["meta"]["step"])
    train(args, parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
