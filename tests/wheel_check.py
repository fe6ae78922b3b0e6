"""Packaging check (`make wheel-check`, part of `make test`): build the wheel, install it into a
fresh venv that already has torch, and show that

- the wheel holds the model, the example image and the web app, and is at most 40 MB;
- it declares a torch range (not an exact pin), and installing it leaves that torch untouched;
- `ulic demo` runs from the installed wheel (TAEF2 weights from ULIC_WEIGHTS_DIR).

    python tests/wheel_check.py [--torch "torch==2.13.0"] [--keep]

Prints one JSON line; exits 1 with the reason on the first failed check.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
MAX_WHEEL_BYTES = 40 * 10**6
MUST_HOLD = (
    "ulic/models/ulic-base/model.safetensors",
    "ulic/models/ulic-base/config.json",
    "ulic/assets/example.png",
    "ulic/serve/static/index.html",
    "ulic/serve/static/app.js",
)


class CheckFailed(Exception):
    pass


def run(cmd: list[str], **kw) -> str:
    """Run a command; its standard output, or CheckFailed with the output's tail."""
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode:
        raise CheckFailed(
            f"{' '.join(map(str, cmd[:4]))} … exited {p.returncode}:\n" f"{(p.stdout + p.stderr)[-3000:]}"
        )
    return p.stdout


def build_wheel() -> Path:
    """A fresh wheel of the working tree in build/wheel/."""
    for stale in [BUILD / "lib", BUILD / "wheel", *BUILD.glob("bdist.*")]:
        shutil.rmtree(stale, ignore_errors=True)
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(BUILD / "wheel"), str(ROOT)])
    wheels = sorted((BUILD / "wheel").glob("ulic-*.whl"))
    if len(wheels) != 1:
        raise CheckFailed(f"expected one wheel in build/wheel, found {wheels}")
    return wheels[0]


def check_contents(wheel: Path) -> str:
    """The wheel's torch requirement, after checking its size and files."""
    size = wheel.stat().st_size
    if size > MAX_WHEEL_BYTES:
        raise CheckFailed(f"{wheel.name} is {size / 1e6:.1f} MB, over {MAX_WHEEL_BYTES / 1e6:.0f} MB")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        missing = [n for n in MUST_HOLD if n not in names]
        if missing:
            raise CheckFailed(f"{wheel.name} lacks {missing}")
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = [
            line.split(":", 1)[1].strip()
            for line in z.read(meta).decode().splitlines()
            if line.startswith("Requires-Dist: torch")
        ]
    if len(requires) != 1 or "==" in requires[0] or ">=" not in requires[0]:
        raise CheckFailed(f"the wheel should require a torch range, it requires {requires}")
    return requires[0]


def torch_state(python: Path) -> dict:
    """torch's version, place and file time: a reinstall of even the same release changes it."""
    out = run(
        [
            str(python),
            "-c",
            "import json, os, torch; print(json.dumps({'version': "
            "torch.__version__, 'file': torch.__file__, 'mtime': os.path.getmtime(torch.__file__)}))",
        ]
    )
    return json.loads(out.strip().splitlines()[-1])


def install_beside_torch(wheel: Path, venv: Path, torch_spec: str) -> dict:
    """Fresh venv with torch first, then the wheel: torch must be exactly as it was."""
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    run(pip + ["install", "-q", torch_spec])
    before = torch_state(venv / "bin" / "python")
    log = run(pip + ["install", str(wheel)])  # no constraints: what a user's `pip install` does
    after = torch_state(venv / "bin" / "python")
    if before != after or "Uninstalling torch" in log:
        raise CheckFailed(f"installing the wheel changed torch: {before} -> {after}\n{log[-2000:]}")
    run(pip + ["check"])
    return {"torch": after["version"], "torch_untouched": True}


def demo(venv: Path) -> dict:
    """`ulic demo` on the bundled example, run outside the checkout so the wheel is what runs."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ULIC_KODAK_DIR", "ULIC_MODEL_DIR", "PYTHONPATH", "VIRTUAL_ENV")
    }
    with tempfile.TemporaryDirectory() as tmp:
        where = run([str(venv / "bin" / "python"), "-c", "import ulic; print(ulic.__file__)"], cwd=tmp, env=env).strip()
        if not where.startswith(str(venv)):
            raise CheckFailed(f"ulic was imported from {where}, not from the venv")
        out = run([str(venv / "bin" / "ulic"), "demo", "-o", "out"], cwd=tmp, env=env)
        report = json.loads(out[out.index("{") : out.rindex("}") + 1])
        if not (report["bytes"] > 0 and (Path(tmp) / "out" / "demo.png").is_file()):
            raise CheckFailed(f"ulic demo gave {report}")
    return {"demo_bytes": report["bytes"], "demo_psnr_db": report["psnr_db"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--torch", default="torch==2.13.0", help="torch to install first (pip spec)")
    ap.add_argument("--keep", action="store_true", help="keep build/wheel-venv afterwards")
    a = ap.parse_args()
    venv = BUILD / "wheel-venv"
    try:
        wheel = build_wheel()
        summary = {
            "wheel": wheel.name,
            "wheel_mb": round(wheel.stat().st_size / 1e6, 2),
            "requires": check_contents(wheel),
            **install_beside_torch(wheel, venv, a.torch),
        }
        weights = os.environ.get("ULIC_WEIGHTS_DIR")
        if weights and Path(weights, "taef2_encoder.pth").is_file():
            summary.update(demo(venv))
        else:
            summary["demo"] = "skipped: ULIC_WEIGHTS_DIR does not hold the TAEF2 weights"
    except CheckFailed as e:
        print(f"wheel check failed: {e}", file=sys.stderr)
        return 1
    finally:
        if not a.keep:
            shutil.rmtree(venv, ignore_errors=True)
    print(json.dumps({"wheel_check": "ok", **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
