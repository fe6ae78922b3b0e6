"""The Flask app of `ulic serve`: the page, an upload endpoint that checks what it is given before
any work, job status for the progress bar, and the results for display and download.

    GET  /                          the page (static/index.html)
    GET  /api/config                limits and choices
    POST /api/jobs                  multipart: file, target (bpp|bytes|quality), value, decoder,
                                    steps, realism, lpips -> 202 {"id"}; 400/413 {"error"}
    GET  /api/jobs/ID               {"state", "stage", "progress", "error", "result"}
    GET  /api/jobs/ID/FILE          original.png, decoded.png or image.ulic
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request, send_file
from PIL import Image, UnidentifiedImageError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import secure_filename

from ulic.api import DECODERS
from ulic.errors import InputImageError, UlicError
from ulic.imageio import load_image, to_pil
from ulic.result import roundtrip
from ulic.serve.jobs import Job, JobStore

DEFAULT_MAX_UPLOAD = 32 * 1024 * 1024
DEFAULT_MAX_PIXELS = 16_000_000
STATIC = Path(__file__).resolve().parent / "static"
TARGETS = ("bpp", "bytes", "quality")
FILES = {"original.png": "image/png", "decoded.png": "image/png", "image.ulic": "application/octet-stream"}

api = Blueprint("ulic", __name__)


def _jobs() -> JobStore:
    return current_app.extensions["ulic_jobs"]


def _mpix(n: int) -> str:
    return f"{n / 1e6:.1f} Mpixel"


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n / 1024:.0f} kB"


def check_image(data: bytes, name: str, max_pixels: int) -> None:
    """Reject, from its header alone, an upload that is not an image or has too many pixels."""
    if not data:
        raise InputImageError(f"{name} is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except Image.DecompressionBombError:
        raise InputImageError(
            f"{name} has far too many pixels; this server takes images up to " f"{_mpix(max_pixels)}"
        ) from None
    except UnidentifiedImageError:
        raise InputImageError(f"{name} is not an image (use PNG, JPEG, WebP, TIFF, BMP, GIF …)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise InputImageError(f"{name}: cannot read the image ({e})") from None
    if w * h > max_pixels:
        raise InputImageError(
            f"{name} is {w}x{h} = {_mpix(w * h)}; this server takes images up to "
            f"{_mpix(max_pixels)} (ulic serve --max-pixels)"
        )


def _number(form: dict, key: str, kind: type = float) -> Any:
    text = (form.get(key) or "").strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise UlicError(f"{key} must be a number, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UlicError(f"{key} must be a finite number, got {text!r}")
    return value


def parse_params(form: dict) -> dict[str, Any]:
    """The form's choices -> keywords of ulic.result.roundtrip."""
    target = form.get("target") or "bpp"
    if target not in TARGETS:
        raise UlicError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    value = _number(form, "value", int if target == "bytes" else float)
    decoder = form.get("decoder") or None
    if decoder is not None and decoder not in DECODERS:
        raise UlicError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    keyword = {"bpp": "bpp", "bytes": "max_bytes", "quality": "quality"}[target]
    metrics = ("psnr", "lpips") if form.get("lpips", "1") not in ("0", "false", "") else ("psnr",)
    return {
        keyword: value,
        "decoder": decoder,
        "steps": _number(form, "steps", int),
        "realism": _number(form, "realism"),
        "metrics": metrics,
    }


def run_job(job: Job) -> None:
    """Read the upload once (original for display), then encode, decode and measure it."""
    notices: list[str] = []  # e.g. alpha dropped: only this first reading sees it
    original = to_pil(load_image(job.image, notices))
    buf = io.BytesIO()
    original.save(buf, format="PNG")
    job.original_png = buf.getvalue()
    job.result = roundtrip(original, progress=job.report, **job.params)
    job.result.notices[:0] = notices


def _finite(x: float | None) -> float | None:
    return x if x is None or math.isfinite(x) else None


def job_json(job: Job) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "state": job.state,
        "stage": job.stage,
        "progress": job.progress,
        "error": job.error,
        "result": None,
    }
    if job.result is not None and job.state == "done":
        s = job.result.summary()
        s["psnr"], s["lpips"] = _finite(s["psnr"]), _finite(s["lpips"])
        s["files"] = {f: f"/api/jobs/{job.id}/{f}" for f in FILES}
        out["result"] = s
    return out


@api.get("/")
def index():
    return send_file(STATIC / "index.html")


@api.get("/api/config")
def config():
    return jsonify(
        max_upload_bytes=current_app.config["MAX_CONTENT_LENGTH"],
        max_pixels=current_app.config["ULIC_MAX_PIXELS"],
        decoders=list(DECODERS),
        targets=list(TARGETS),
    )


@api.post("/api/jobs")
def submit():
    upload = request.files.get("file")
    if upload is None:
        raise UlicError("no file was uploaded")
    name = secure_filename(upload.filename or "") or "upload"
    data = upload.read()
    check_image(data, name, current_app.config["ULIC_MAX_PIXELS"])
    job = _jobs().submit(Job(name, data, parse_params(request.form)))
    return jsonify(id=job.id, status=f"/api/jobs/{job.id}"), 202


@api.get("/api/jobs/<job_id>")
def status(job_id: str):
    job = _jobs().get(job_id)
    if job is None:
        return jsonify(error="no such job (the server keeps only the latest few)"), 404
    return jsonify(job_json(job))


@api.get("/api/jobs/<job_id>/<file>")
def download(job_id: str, file: str):
    job = _jobs().get(job_id)
    if job is None or job.result is None or file not in FILES:
        return jsonify(error="no such file"), 404
    data = {"original.png": job.original_png, "decoded.png": job.result.png(), "image.ulic": job.result.data}[file]
    if data is None:
        return jsonify(error="no such file"), 404
    return send_file(io.BytesIO(data), mimetype=FILES[file], download_name=file)


@api.errorhandler(UlicError)
def user_error(e: UlicError):
    return jsonify(error=str(e)), 400


def too_large(_e: RequestEntityTooLarge):
    limit = _megabytes(current_app.config["MAX_CONTENT_LENGTH"])
    return jsonify(
        error=f"the upload is larger than this server's limit of {limit} " "(ulic serve --max-upload-mb)"
    ), 413


def create_app(
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD, max_pixels: int = DEFAULT_MAX_PIXELS, keep: int = 8
) -> Flask:
    """The web app, with its upload limits and a job store that keeps the newest `keep` jobs."""
    app = Flask(__name__, static_folder=str(STATIC), static_url_path="/static")
    app.config.update(MAX_CONTENT_LENGTH=max_upload_bytes, ULIC_MAX_PIXELS=max_pixels)
    app.extensions["ulic_jobs"] = JobStore(run_job, keep=keep)
    app.register_blueprint(api)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    return app
