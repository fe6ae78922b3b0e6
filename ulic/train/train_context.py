"""Train the entropy context (`ulic.codec.context`) of a model folder's frozen codec and write a
copy of the folder whose files use it: the same symbols, pixels and decoder, fewer bytes.

    python -m ulic.train.train_context --crops cache/pixel_crops256.safetensors \
        --out runs/model-ctx --epochs 4

The loss is the rate alone: the ideal bits of the codec's own y symbols (the files' symbols, at
q bytes across the whole range) under each slice's shifted Gaussian. Nothing else moves; a
context the folder already has is replaced, not built upon. The float networks are then made
integer (`integerize`, calibrated on training inputs). The report (`context_report.json` in the
new folder) gives, on held-out crops, the ideal y bits with continuous Gaussians (hyperprior
alone, float context) and the ideal bits and real range-coded bytes of z and y as the coder
writes them, with and without the context, after checking that every held-out crop decodes to
its own symbols.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from ulic.codec.context import QUARTER, UPSAMPLE, SliceContext, anchors, reads, shift_tables, slice_inputs
from ulic.codec.entropy_models import gaussian_likelihood, scale_table
from ulic.codec.hyper_synthesis import IntegerHyperSynthesis, integerize
from ulic.codec.model import LatentCodec
from ulic.model_store import load_model, model_dir, save_model

Q_BYTES = (0, 32, 64, 96, 128, 160, 192, 255)  # the whole rate range: a context never met at a q fails there
MAX_INDEX_MOVE = 8.0  # a slice's network may move a scale index by at most this much in training


@torch.no_grad()
def samples(codec: LatentCodec, latents: torch.Tensor, q_bytes: tuple[int, ...] = Q_BYTES) -> list[dict]:
    """One dict per (latent, q byte): crop number, q, z_hat, the y symbols (1, M, h, w) int64,
    their exact means float64 and scale indexes int64, as the coder makes them, and the
    context's reads of them (`ulic.codec.context.reads`)."""
    out = []
    tables = codec.coding_state
    for i in range(latents.shape[0]):
        y, z = codec.analyse(latents[i : i + 1].float())
        for q in q_bytes:
            z_hat, sym, mean_s, idx = codec.symbols(y, z, q)
            r = reads(sym, mean_s, idx, tables.igain[q], tables.index_offset[q], q)
            out.append({"crop": i, "q": q, "z_hat": z_hat, "sym": sym, "mean": mean_s, "idx": idx, "reads": r})
    return out


def _parts(ctx: SliceContext, s: dict):
    """(slice k, half (None: first), float inputs, positions (h, w) bool) in coding order."""
    first = anchors(*s["sym"].shape[2:])
    for k in range(ctx.slices):
        for half in (None, first):
            x = slice_inputs(k, ctx.c, s["reads"], half).float() / QUARTER
            yield k, half, x, first if half is None else ~first


def sample_bits(ctx: SliceContext, s: dict, codec: LatentCodec) -> torch.Tensor:
    """Ideal y bits of one sample under the float context (differentiable): each integer symbol
    under N(shift, the scale of its index + offset), the index continuous."""
    total = torch.zeros(())
    for k, _, x, where in _parts(ctx, s):
        shift, offset = ctx.nets[k](x)  # (1, c, h, w) each
        sl = slice(k * ctx.c, (k + 1) * ctx.c)
        scale = codec.scale_from_index(s["idx"][:, sl].float() + offset.clamp(-MAX_INDEX_MOVE, MAX_INDEX_MOVE))
        total = total - (gaussian_likelihood(s["sym"][:, sl].float(), shift, scale).log2() * where).sum()
    return total


def train(ctx: SliceContext, train_set: list[dict], codec: LatentCodec, epochs: int, lr: float) -> list[float]:
    """Adam on the rate; returns the mean bits per y symbol of each epoch."""
    opt = torch.optim.Adam(ctx.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        random.Random(epoch).shuffle(train_set)
        total = count = 0.0
        for step, s in enumerate(train_set):
            for g in opt.param_groups:  # cosine decay over the whole run
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (epoch + step / len(train_set)) / epochs))
            loss = sample_bits(ctx, s, codec)
            opt.zero_grad(set_to_none=True)
            (loss / s["sym"].numel()).backward()
            opt.step()
            total, count = total + float(loss.detach()), count + s["sym"].numel()
        history.append(total / count)
        print(f"epoch {epoch + 1}/{epochs} bits per y symbol {history[-1]:.4f}", flush=True)
    return history


@torch.no_grad()
def held_out_float_bits(ctx: SliceContext, held: list[dict], codec: LatentCodec) -> dict:
    """Ideal y bits of the held-out samples with continuous Gaussians: the hyperprior's alone
    and with the float context (before its integer twin and quarter-step tables)."""
    zero = SliceContext(codec.cfg.m, ctx.slices, width=1)  # zero-initialised: the hyperprior itself
    return {
        "float_y_bits_hyperprior": round(sum(float(sample_bits(zero, s, codec)) for s in held)),
        "float_y_bits_context": round(sum(float(sample_bits(ctx, s, codec)) for s in held)),
    }


@torch.no_grad()
def integer_context(ctx: SliceContext, calib: list[dict]) -> list[IntegerHyperSynthesis]:
    """The integer twin of each slice's network, its activation ranges sized on `calib`."""
    inputs: dict[int, list[torch.Tensor]] = {k: [] for k in range(ctx.slices)}
    for s in calib:
        for k, _, x, _ in _parts(ctx, s):
            inputs[k].append(x)
    return [
        IntegerHyperSynthesis(integerize(net, inputs[k], 1.0 / QUARTER), ctx.c, len(UPSAMPLE), UPSAMPLE)
        for k, net in enumerate(ctx.nets)
    ]


@torch.no_grad()
def coded_sizes(codec: LatentCodec, held: list[dict]) -> dict:
    """Ideal bits and range-coded bytes of the held-out samples' y (and z), as the coder writes
    them; raises if a sample does not decode to its own symbols."""
    bits = nbytes = 0.0
    for s in held:
        z_hat = s["z_hat"]
        data, b = codec.code_symbols(z_hat, s["sym"], s["mean"], s["idx"], s["q"])
        sym, _ = codec.decode_symbols(data, (z_hat.shape[2], z_hat.shape[3]), s["q"])
        if not torch.equal(sym, s["sym"]):
            raise AssertionError(f"held-out crop {s['crop']} at q byte {s['q']} did not decode to its symbols")
        bits, nbytes = bits + b, nbytes + len(data)
    return {"ideal_bits": round(bits), "bytes": int(nbytes)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=None, help="model folder (default: the packaged one)")
    ap.add_argument("--crops", type=Path, required=True, help="a crop cache with 'latents' (ulic.train.pixel_crops)")
    ap.add_argument("--out", type=Path, required=True, help="the new model folder (a copy with the context)")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--held", type=int, default=60, help="crops (the last ones) kept out of training")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N crops (a quick check)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    src = a.model or model_dir()
    loaded = load_model(str(src))
    codec = loaded.codec
    codec.coding = dataclasses.replace(codec.coding_state, ctx_int=None, shift_tables=None)  # any old context goes
    latents = load_file(str(a.crops))["latents"][: a.limit]
    t0 = time.time()
    data = samples(codec, latents)
    n = latents.shape[0]
    train_set = [s for s in data if s["crop"] < n - a.held]
    held = [s for s in data if s["crop"] >= n - a.held]
    plain = coded_sizes(codec, held)
    ctx = SliceContext(codec.cfg.m)
    history = train(ctx, train_set, codec, a.epochs, a.lr)
    float_bits = held_out_float_bits(ctx, held, codec)
    cfg = codec.cfg
    codec.coding = dataclasses.replace(
        codec.coding_state,
        ctx_int=integer_context(ctx, train_set[:: max(1, len(train_set) // 200)]),
        shift_tables=shift_tables(scale_table(cfg.n_scales, cfg.scale_min, cfg.scale_max), cfg.radius_y),
    )
    with_ctx = coded_sizes(codec, held)
    report = _write(src, a.out, codec, loaded.config, history, {**plain, **float_bits}, with_ctx, time.time() - t0, a)
    print(json.dumps(report, indent=1))
    return 0


def _write(src: Path, out: Path, codec: LatentCodec, config: dict, history, plain, with_ctx, seconds, a) -> dict:
    """Copy the model folder to `out` with the context in its codec file; returns the report."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    keep = {k: v for k, v in config.items() if k not in ("format", "codec", "weights_sha256", "name")}
    save_model(codec, out, config.get("name", "ulic"), keep)
    report = {
        "crops": a.crops.name,
        "held_out_crops": a.held,
        "q_bytes": list(Q_BYTES),
        "epochs": a.epochs,
        "lr": a.lr,
        "seconds": round(seconds),
        "bits_per_symbol_by_epoch": [round(h, 5) for h in history],
        "held_out_plain": plain,
        "held_out_context": with_ctx,
        "bytes_change_pct": round(100 * (with_ctx["bytes"] / plain["bytes"] - 1), 2),
    }
    (out / "context_report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    raise SystemExit(main())
