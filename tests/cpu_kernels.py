"""Run the float-sensitive tests under every CPU kernel family PyTorch can use on this machine.

PyTorch picks its vectorised kernels at start-up (DEFAULT, AVX2, AVX512 on x86-64), and the
choice can be lowered with ATEN_CPU_CAPABILITY. Results of float32 convolutions differ between
families by a few ulps, so a golden test that passes on one kind of CPU can fail on another.
This runs the given tests once per family the machine supports, so such a difference shows in
CI on any machine:

    python tests/cpu_kernels.py [pytest args...]   (default: the golden and decoder tests)
"""

from __future__ import annotations

import os
import subprocess
import sys

ORDER = ("default", "avx2", "avx512")  # x86-64 families, lowest first
TESTS = ["tests/test_golden.py", "tests/test_realism.py", "tests/test_diffusion.py"]


def supported() -> list[str]:
    """Kernel families this machine can run, from the highest PyTorch chose by itself."""
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    top = (
        subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .lower()
    )
    return list(ORDER[: ORDER.index(top) + 1]) if top in ORDER else ["default"]


def main(args: list[str]) -> int:
    failed = []
    for cap in supported():
        env = {**os.environ, "ATEN_CPU_CAPABILITY": cap}
        used = subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(f"== ATEN_CPU_CAPABILITY={cap} (PyTorch uses {used})", flush=True)
        if subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(args or TESTS)], env=env
        ).returncode:
            failed.append(cap)
    print(f"cpu kernels: {'failed under ' + ', '.join(failed) if failed else 'all passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
