"""The `ulic` command: compress, decompress, compress-dir, decompress-dir, info, demo, eval,
serve."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from ulic.diffusion import DECODERS, MAX_EFFORT
from ulic.errors import UlicError


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`ulic: error: ...`, exit code 2), like every other error."""

    def error(self, message: str):
        print(f"ulic: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def _number(what: str, lo: float, hi: float = math.inf, whole: bool = False, above: bool = False):
    """An argparse type: a number (whole if asked) in [lo, hi], or (lo, hi] when `above`."""

    def parse(text: str) -> float | int:
        try:
            v = int(text) if whole else float(text)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and (v > lo if above else v >= lo) and v <= hi):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return v

    return parse


def _threads(n: int | None) -> None:
    import torch

    if n:
        torch.set_num_threads(n)


def _default_output(src: str, suffix: str) -> Path:
    try:
        return Path(src).with_suffix(suffix)
    except ValueError:
        raise UlicError(f"{src}: cannot name an output after it; give -o") from None


def cmd_compress(a: argparse.Namespace) -> int:
    from ulic.api import check_encode_options, encode
    from ulic.bitstream import caption_section
    from ulic.imageio import check_output, save_atomic

    check_encode_options(a.quality, a.bpp, a.max_bytes, a.optimize, a.effort)
    if a.caption is not None:
        caption_section(a.caption)  # a bad caption costs nothing either
    out = a.output or _default_output(a.input, ".ulic")
    check_output(out, source=a.input)  # before the work: a bad output costs nothing
    r = encode(
        a.input,
        quality=a.quality,
        bpp=a.bpp,
        max_bytes=a.max_bytes,
        optimize=a.optimize,
        caption=a.caption,
        effort=a.effort,
        src=a.src,
    )
    for n in r.notices:
        print(f"ulic: notice: {n}", file=sys.stderr)
    save_atomic(r.data, out, source=a.input)
    print(
        f"{out}: {len(r.data)} bytes, {r.bpp:.4f} bpp, {r.width}x{r.height}, q={r.quality}, "
        f"{r.seconds['total']:.2f} s"
    )
    return 0


def cmd_decompress(a: argparse.Namespace) -> int:
    from ulic.api import check_decode_options, decode, read_file
    from ulic.imageio import check_output, image_format, save_atomic, to_pil

    check_decode_options(a.decoder, a.steps, a.realism)
    out = a.output or _default_output(a.input, ".png")
    fmt = image_format(out)
    check_output(out, source=a.input)  # before the work: a bad output costs nothing
    data = read_file(a.input)
    r = decode(data, decoder=a.decoder, steps=a.steps, realism=a.realism)
    save_atomic(to_pil(r.image), out, fmt, source=a.input)
    how = r.decoder + (f", {r.steps} steps" if r.steps else "")
    print(f"{out}: {r.header.width}x{r.header.height}, {how}, {r.seconds['total']:.2f} s")
    return 0


def _problem(check) -> str:
    """ "ok" if check() passes, else its error message."""
    try:
        check()
        return "ok"
    except UlicError as e:
        return str(e)


def _extras(c, model) -> dict:
    """`ulic info` fields of the extra sections: the caption and its bytes, the SRC section's
    bytes and concept ids (when the loaded model has the vocabulary), or the problem."""
    from ulic import bitstream
    from ulic.model_store import load_semantics
    from ulic.semantics.src import file_concepts

    if len(c.sections) < 2:
        return {}
    try:
        extras = bitstream.read_extras(c.sections[1:])
    except UlicError as e:
        return {"extra_sections": str(e)}
    out: dict = {}
    caption, src = extras.get("caption"), extras.get("src")
    if isinstance(caption, str):
        out["caption"] = caption
        out["caption_bytes"] = len(caption.encode("utf-8")) + 1  # with its kind byte
    if isinstance(src, bytes):
        out["src_bytes"] = len(src) + 1
        sem = load_semantics(str(model.folder)) if model.folder is not None else None
        try:
            out["concepts"] = (
                file_concepts(model.codec, c, src, sem) if sem is not None else "this model has no concept vocabulary"
            )
        except UlicError as e:
            out["concepts"] = str(e)
    return out


def cmd_info(a: argparse.Namespace) -> int:
    from ulic import bitstream
    from ulic.api import read_file
    from ulic.limits import check_container_length
    from ulic.model_store import load_model

    model = load_model()
    data = read_file(a.input, model)
    c = bitstream.parse(data, None)
    info = {
        "file": str(a.input),
        "bytes": len(data),
        "width": c.width,
        "height": c.height,
        "bpp": round(8 * len(data) / (c.width * c.height), 5),
        "quality_byte": c.quality,
        "format_version": c.version,
        "model_id": c.model_id,
        "sections": [len(s) for s in c.sections],
        **_extras(c, model),
        "overhead_bytes": len(data) - sum(map(len, c.sections)),
        "check_with_loaded_model": _problem(lambda: bitstream.parse(data, model.fingerprint)),
        "length_with_loaded_model": _problem(lambda: check_container_length(data, model.codec)),
    }
    print(json.dumps(info, indent=2))
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from ulic.api import decode, encode, psnr
    from ulic.imageio import load_image, save_atomic, to_pil

    image = a.input or default_example()
    t0 = time.perf_counter()
    r = encode(image, quality=a.quality, bpp=a.bpp, optimize=a.optimize, effort=a.effort)
    t1 = time.perf_counter()
    d = decode(r.data)
    t2 = time.perf_counter()
    ref = load_image(image)
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    save_atomic(r.data, out / "demo.ulic")
    save_atomic(to_pil(d.image), out / "demo.png")
    print(
        json.dumps(
            {
                "image": str(image),
                "bytes": len(r.data),
                "bpp": round(r.bpp, 5),
                "psnr_db": round(psnr(ref, d.image), 3),
                "quality_byte": r.quality,
                "encode_s": round(t1 - t0, 3),
                "decode_s": round(t2 - t1, 3),
                "outputs": [str(out / "demo.ulic"), str(out / "demo.png")],
            },
            indent=2,
        )
    )
    return 0


def default_example() -> Path:
    """kodim23 from the Kodak folder (ULIC_KODAK_DIR), else the bundled example."""
    kodak = os.environ.get("ULIC_KODAK_DIR")
    if kodak and (Path(kodak) / "kodim23.png").is_file():
        return Path(kodak) / "kodim23.png"
    return Path(__file__).resolve().parent / "assets" / "example.png"


def cmd_compress_dir(a: argparse.Namespace) -> int:
    from ulic.batch import compress_dir, parse_shard, print_summary

    shard = parse_shard(a.shard) if a.shard else None
    return print_summary(
        compress_dir(
            Path(a.input),
            Path(a.output),
            a.quality,
            a.bpp,
            a.max_bytes,
            a.overwrite,
            log=_quiet_log(a.quiet),
            optimize=a.optimize,
            shard=shard,
            effort=a.effort,
        )
    )


def cmd_decompress_dir(a: argparse.Namespace) -> int:
    from ulic.batch import decompress_dir, parse_shard, print_summary

    shard = parse_shard(a.shard) if a.shard else None
    return print_summary(
        decompress_dir(Path(a.input), Path(a.output), a.overwrite, log=_quiet_log(a.quiet), shard=shard)
    )


def _quiet_log(quiet: bool):
    return (lambda _msg: None) if quiet else (lambda msg: print(msg, flush=True))


def cmd_bench(a: argparse.Namespace) -> int:
    from ulic.tools.bench_stages import run

    return run(a, a.threads)


def _add_optimize(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--optimize",
        type=_number("a whole number in 0..1000", 0, 1000, whole=True),
        default=0,
        metavar="N",
        help="encode-time optimisation steps for each image (fidelity mode: higher PSNR at the "
        "same bytes, slower encoding; docs/usage.md has the measured trade-off; default 0: off)",
    )
    parser.add_argument(
        "--effort",
        type=_number(f"a whole number in 0..{MAX_EFFORT}", 0, MAX_EFFORT, whole=True),
        default=0,
        metavar="E",
        help=f"perceptual fidelity optimiser, 0..{MAX_EFFORT}: encode-time tuning of what is sent for "
        "the default decoder (sharper at the same bytes, slower encoding; docs/usage.md has the "
        "measured trade-off; default 0: off; not with --optimize)",
    )


def _add_rate(parser: argparse.ArgumentParser, max_bytes: bool = True) -> None:
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--quality", type=_number("a number in 0..100", 0, 100), help="0..100 (default 50)")
    g.add_argument(
        "--bpp", type=_number("a positive number", 0, above=True), help="target bits per pixel (within +-3%%)"
    )
    if max_bytes:
        g.add_argument(
            "--max-bytes", type=_number("a positive whole number", 1, whole=True), help="largest file not above N bytes"
        )


def _add_dir_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors and the summary")
    parser.add_argument(
        "--shard",
        metavar="K/N",
        default=None,
        help="do only shard K of N (1 <= K <= N), chosen by a hash of each output path: "
        "N workers (e.g. a job array) split a folder with no coordination",
    )


def _add_decode_options(d: argparse.ArgumentParser) -> None:
    d.add_argument(
        "--decoder",
        choices=DECODERS,
        default=None,
        help="diffusion: CDM refinement, sharpest; fast: one-pass DRM reconstruction; mse: the "
        "stage-1 latent as coded, highest PSNR but blurry (default: the model's choice)",
    )
    d.add_argument(
        "--steps",
        type=_number("a whole number in 1..50", 1, 50, whole=True),
        default=None,
        help="diffusion steps (default: the model's choice)",
    )
    d.add_argument(
        "--realism",
        type=float,
        default=None,
        help="0 (fidelity, highest PSNR) .. 1 (realism, sharpest texture), for models trained "
        "with it (default: the model's choice)",
    )


def _add_file_commands(sub) -> None:
    """compress, decompress, info, demo: one file at a time."""
    c = sub.add_parser("compress", help="image -> .ulic")
    c.add_argument("input")
    c.add_argument("-o", "--output")
    _add_rate(c)
    _add_optimize(c)
    c.add_argument(
        "--caption",
        default=None,
        metavar="TEXT",
        help="store TEXT in the file (UTF-8, at most 1024 bytes, counted in the rate; `ulic info` shows it)",
    )
    c.add_argument(
        "--src",
        action="store_true",
        help="add the semantic residual section: concept ids of a 4x4 grid of regions, priced by the "
        "decoder's prediction from the latent (a few bytes, counted in the rate; `ulic info` shows "
        "them; the default decoder reads them, but they gain less than they cost: docs/usage.md)",
    )
    c.set_defaults(func=cmd_compress)
    d = sub.add_parser("decompress", help=".ulic -> image (PNG)")
    d.add_argument("input")
    d.add_argument("-o", "--output")
    _add_decode_options(d)
    d.set_defaults(func=cmd_decompress)
    i = sub.add_parser("info", help="print a .ulic file's header as JSON")
    i.add_argument("input")
    i.set_defaults(func=cmd_info)
    m = sub.add_parser("demo", help="compress + decompress one image, print bytes, bpp, PSNR, seconds")
    m.add_argument("input", nargs="?")
    m.add_argument("-o", "--output", default="demo-out")
    _add_rate(m, max_bytes=False)
    _add_optimize(m)
    m.set_defaults(func=cmd_demo)


def _add_folder_commands(sub) -> None:
    """compress-dir, decompress-dir: whole folders, resumable, shardable."""
    cd = sub.add_parser("compress-dir", help="every image under a folder -> .ulic files (resumable)")
    cd.add_argument("input")
    cd.add_argument("-o", "--output", required=True, help="output folder (mirrors the input tree)")
    _add_rate(cd)
    _add_optimize(cd)
    cd.add_argument("--overwrite", action="store_true", help="redo files whose output exists")
    _add_dir_options(cd)
    cd.set_defaults(func=cmd_compress_dir)
    dd = sub.add_parser("decompress-dir", help="every .ulic file under a folder -> PNG (resumable)")
    dd.add_argument("input")
    dd.add_argument("-o", "--output", required=True, help="output folder (mirrors the input tree)")
    dd.add_argument("--overwrite", action="store_true", help="redo files whose output exists")
    _add_dir_options(dd)
    dd.set_defaults(func=cmd_decompress_dir)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="ulic", description="Learned image codec for ultra-low bitrates.")
    p.add_argument(
        "--threads",
        type=_number("a whole number in 1..1024", 1, 1024, whole=True),
        default=None,
        help="torch CPU threads",
    )
    p.add_argument(
        "--device",
        default=None,
        help="where the networks run: cpu (default; or $ULIC_DEVICE), cuda, cuda:N or auto (a GPU if "
        "there is one); entropy coding is always on the CPU, so files decode the same everywhere",
    )
    sub = p.add_subparsers(dest="command", required=True)
    _add_file_commands(sub)
    _add_folder_commands(sub)
    from ulic.evaluation.cli import add_eval_parser
    from ulic.serve.cli import add_serve_parser

    add_eval_parser(sub)
    add_serve_parser(sub)
    b = sub.add_parser("bench", help="per-stage encode/decode times and peak memory by image size (JSON + plot)")
    from ulic.tools.bench_stages import add_arguments

    add_arguments(b)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from ulic.imageio import quiet_pillow_logs

        quiet_pillow_logs()  # errors are ulic's one line
        _threads(args.threads)
        if args.device is not None:
            from ulic.runtime import set_default_device

            set_default_device(args.device)
        return args.func(args)
    except UlicError as e:
        print(f"ulic: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ulic: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("ulic: error: out of memory", file=sys.stderr)
        return 2
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"ulic: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
