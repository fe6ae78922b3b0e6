"""The `ulic eval` subcommand: run codecs over a data set, write CSV/JSON, plots and a report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ulic.diffusion import DECODERS, MAX_EFFORT
from ulic.errors import UlicError

CODEC_CHOICES = ("ulic", "avif", "hevc", "jxl", "webp", "jpeg")
DEFAULT_ULIC_QUALITIES = (0, 15, 30, 45, 60, 75, 90, 100)


def add_eval_parser(subparsers) -> None:
    """Register `ulic eval` on an argparse subparsers object."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate codecs on an image set (metrics, baselines, report)",
        description="Run codecs over a directory of images, cache per-image results, "
        "write CSV/JSON, RD plots and an HTML report. See docs/evaluation.md.",
    )
    p.add_argument("--data", help="directory of reference images (e.g. the Kodak set, $ULIC_KODAK_DIR)")
    p.add_argument("--codec", nargs="+", choices=CODEC_CHOICES, default=[], help="codec(s) to run")
    p.add_argument(
        "--settings",
        nargs="+",
        default=None,
        help="settings to run (baselines: CODEC:dFACTOR:qQUALITY; ulic: quality values 0..100); "
        "default: the built-in grid",
    )
    p.add_argument(
        "--metrics",
        default="psnr,ms_ssim,lpips_alex,dists",
        help="comma list from psnr,ms_ssim,lpips_alex,lpips_vgg,dists,grid8 (grid8: the 8-px "
        "latent-grid pattern a decoder adds, in grey levels)",
    )
    _add_fid_options(p)
    _add_ulic_options(p)
    _add_output_options(p)
    p.set_defaults(func=cmd_eval)


def _add_fid_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fid", default="", help="comma list of FID/KID patch sizes, e.g. 256,64 (slow on CPU)")
    p.add_argument(
        "--fid-images", type=int, default=0, help="compute FID/KID on the first N images only (CPU time; default all)"
    )
    p.add_argument(
        "--fid-settings", nargs="+", default=None, help="compute FID/KID only for these of --settings (default all)"
    )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--name",
        default=None,
        help="result name (default: the codec name); ulic runs should " "name the model, e.g. ulic-v1",
    )
    p.add_argument("--out", default="results/kodak", help="output directory (default results/kodak)")
    p.add_argument(
        "--cache", default="cache/eval", help="cache directory for per-item results (default cache/eval, git-ignored)"
    )
    p.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--limit", type=int, default=0, help="use only the first N images (for quick checks)")


def _add_ulic_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--decoder",
        choices=DECODERS,
        default=None,
        help="ulic only: decoder to use (default: the model's default)",
    )
    p.add_argument("--steps", type=int, default=None, help="ulic only: diffusion steps")
    p.add_argument("--realism", type=float, default=None, help="ulic only: realism R in 0..1 (default: the model's)")
    p.add_argument(
        "--optimize",
        type=int,
        default=0,
        metavar="N",
        help="ulic only: encode-time optimisation steps (default 0, as `ulic compress`); "
        "settings name them as :oN, a setting without :o was encoded without",
    )
    p.add_argument(
        "--effort",
        type=int,
        default=0,
        metavar="E",
        help="ulic only: perceptual fidelity optimiser level (default 0, as `ulic compress`); settings "
        "name it as :eE",
    )
    p.add_argument(
        "--src",
        action="store_true",
        help="ulic only: files with the semantic residual section (as `ulic compress --src`); settings "
        "name it as :src",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="(re)build plots, BD-rate table and HTML report " "from all result JSONs in --out",
    )
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("ANCHOR", "TEST"),
        default=None,
        help="compare two result names in --out: table and BD-rates of TEST against ANCHOR, "
        "written to --out/TEST_vs_ANCHOR.json and .md",
    )
    p.add_argument(
        "--anchors", default=None, help="published anchors CSV (default: " "$ULIC_SHARED/anchors/published_kodak.csv)"
    )


def _settings(
    codec: str,
    given: list[str] | None,
    decoder: str | None = None,
    optimize: int = 0,
    effort: int = 0,
    src: bool = False,
) -> list[str]:
    from ulic.evaluation.baselines import default_settings, parse_setting

    if codec == "ulic":
        qs = given if given else [str(q) for q in DEFAULT_ULIC_QUALITIES]
        out = []
        for q in qs:
            q = q.split(":q")[-1]
            try:
                v = float(q)
            except ValueError:
                raise UlicError(f"ulic setting {q!r} is not a quality value 0..100") from None
            if not 0 <= v <= 100:
                raise UlicError(f"ulic quality {v:g} outside 0..100")
            tuned = (f":o{optimize}" if optimize else "") + (f":e{effort}" if effort else "") + (":src" if src else "")
            out.append(f"ulic:q{v:g}" + tuned + (f":{decoder}" if decoder else ""))
        return out
    if not given:
        return default_settings(codec)
    mine = [s for s in given if s.startswith(codec + ":")]
    for s in mine:
        parse_setting(s)
    return mine


def _check(a: argparse.Namespace) -> tuple[tuple[str, ...], list[int]]:
    """The metrics and FID patch sizes asked for; UlicError on any bad option, before work."""
    from ulic.evaluation import runner

    metrics = tuple(m.strip() for m in a.metrics.split(",") if m.strip())
    for m in metrics:
        if m not in runner.METRICS:
            raise UlicError(f"unknown metric {m!r}: choose from {', '.join(runner.METRICS)}")
    try:
        fid_sizes = [int(s) for s in a.fid.split(",") if s.strip()]
    except ValueError:
        raise UlicError(f"--fid expects patch sizes like 256,64, got {a.fid!r}") from None
    if a.workers < 1:
        raise UlicError("--workers must be at least 1")
    if not a.codec and not a.report and not a.compare:
        raise UlicError("nothing to do: give --codec (and --data), --report and/or --compare")
    if not 0 <= a.optimize <= 1000:
        raise UlicError(f"--optimize must be in 0..1000, got {a.optimize}")
    if not 0 <= a.effort <= MAX_EFFORT:
        raise UlicError(f"--effort must be in 0..{MAX_EFFORT}, got {a.effort}")
    if a.optimize and a.effort:
        raise UlicError("give --optimize or --effort, not both")
    if a.realism is not None and not 0 <= a.realism <= 1:
        raise UlicError(f"--realism must be in 0..1, got {a.realism:g}")
    if a.codec and not a.data:
        raise UlicError("--data DIR is required with --codec")
    return metrics, fid_sizes


def _decoder_tag(a: argparse.Namespace) -> str | None:
    """The decoder part of ulic setting names: 'diffusion8', 'fast:r0.5', ... (None: default)."""
    tag = None
    if a.decoder:
        tag = a.decoder + (str(a.steps) if a.decoder == "diffusion" and a.steps else "")
    if a.realism is not None:
        tag = (tag + ":" if tag else "") + f"r{a.realism:g}"
    return tag


def _model_cache(root: str) -> str:
    """A cache folder per codec + decoder weights, so results of another model are never reused."""
    from ulic.model_store import load_model

    m = load_model()
    dec = m.folder / "decoder.json" if m.folder else None
    tag = m.config["weights_sha256"][:12]
    if dec is not None and dec.exists():
        tag += "-" + json.loads(dec.read_text())["weights_sha256"][:12]
    return str(Path(root) / f"ulic-model-{tag}")


def _add_fid(agg: list[dict], items: list, fid_settings: set[str], size: int, a: argparse.Namespace, name: str) -> None:
    """FID/KID on size-px patches for the chosen settings, into their summary rows."""
    from ulic.evaluation.setfid import precompute_features, setting_fid

    groups = [g for g in agg if g["setting"] in fid_settings]
    chosen = [it for g in groups for it in [x for x in items if x.setting == g["setting"]][: a.fid_images or None]]
    precompute_features(chosen, size, a.workers, label=name)
    for g in groups:
        sel = [it for it in chosen if it.setting == g["setting"]]
        r = setting_fid(sel, size)
        g[f"fid{size}"], g[f"kid{size}"] = r["fid"], r["kid"]
        print(
            f"{name} {g['setting']}: FID/{size} {r['fid']:.2f}, KID {r['kid']:.4f} "
            f"({r['patches']} patches of {len(sel)} images)",
            file=sys.stderr,
        )


def _run_codec(codec: str, a: argparse.Namespace, metrics: tuple[str, ...], fid_sizes: list[int], rank) -> None:
    """Every setting of one codec over the images: per-image CSV, summary CSV and JSON (under
    torchrun the ranks share the items; rank 0 alone computes FID and writes)."""
    from ulic.evaluation import outputs, runner

    images = runner.list_images(a.data)[: a.limit or None]
    name = a.name if a.name and len(a.codec) == 1 else codec
    decoder = _decoder_tag(a) if codec == "ulic" else None
    settings = _settings(codec, a.settings, decoder, a.optimize, a.effort, a.src)
    if not settings:
        raise UlicError(f"no settings given for codec {codec}")
    fid_settings = set(settings)
    if a.fid_settings is not None:
        fid_settings = set(_settings(codec, a.fid_settings, decoder, a.optimize, a.effort, a.src))
        if not fid_settings <= set(settings):
            raise UlicError("--fid-settings must be a subset of --settings")
    cache = _model_cache(a.cache) if codec == "ulic" else a.cache
    items = [runner.Item(str(img), codec, s, name, metrics, cache) for s in settings for img in images]
    rows = runner.run(items, a.workers, label=name, rank=rank)
    if not rank.main:
        return
    agg = outputs.aggregate(rows, metrics)
    for size in fid_sizes:
        _add_fid(agg, items, fid_settings, size, a, name)
    out = Path(a.out)
    outputs.write_csv(rows, out / f"{name}.csv", ["image", "setting", "bytes", "bpp", *metrics, "codec_seconds"])
    fid_cols = [f"{k}{s}" for s in fid_sizes for k in ("fid", "kid")]
    outputs.write_csv(agg, out / f"{name}_summary.csv", ["setting", "images", "bytes", "bpp", *metrics, *fid_cols])
    desc = (
        f"{name} on {Path(a.data).name} ({len(images)} images); per-image metrics averaged; "
        f"rate counts codec payload bytes only (docs/evaluation.md)"
    )
    outputs.write_json(outputs.compressai_json(name, desc, agg, metrics), out / f"{name}.json")
    print(f"{name}: {len(agg)} settings -> {out / (name + '.json')}")


def cmd_eval(a: argparse.Namespace) -> int:
    """Entry point of `ulic eval`; returns the exit code."""
    from ulic.evaluation import outputs
    from ulic.train import distributed

    metrics, fid_sizes = _check(a)
    rank = distributed.init()  # under torchrun: the ranks split the items
    for codec in a.codec:
        _run_codec(codec, a, metrics, fid_sizes, rank)
    distributed.finish(rank)
    if not rank.main:
        return 0
    out = Path(a.out)
    if a.compare:
        from ulic.evaluation.compare import compare, markdown

        cmp = compare(out, *a.compare)
        stem = out / f"{a.compare[1]}_vs_{a.compare[0]}"
        outputs.write_json(cmp, stem.with_suffix(".json"))
        stem.with_suffix(".md").write_text(markdown(cmp))
        print(markdown(cmp), end="")
    if a.report:
        from ulic.evaluation.report import build_report

        build_report(out, a.anchors, a.cache, a.data)
        print(f"report -> {out / 'report.html'}")
    return 0
