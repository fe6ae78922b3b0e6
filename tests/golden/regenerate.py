"""Write the golden .ulic files, their decoded PNGs and golden.json with the default model.

    python tests/golden/regenerate.py

Run this only when the model or the format version changes on purpose: the golden test
checks that committed files keep decoding to exactly these symbols and pixels.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
CASES = [
    ("kodim23", (100, 380, 160, 96), 20),
    ("kodim23", (300, 120, 64, 64), 80),
    ("kodim01", (0, 0, 130, 17), 50),
]  # (image, (left, top, width, height), quality)


def decode_with_symbols(data: bytes, decoder: str = "fast"):
    """Decoded pixels (H, W, 3) uint8 and the decoder's y_hat, captured before g_s. Decodes on
    one thread: symbols are exact on any thread count, float32 pixels only per thread count."""
    import torch

    from ulic import api
    from ulic.imageio import to_pil
    from ulic.model_store import load_model

    model = load_model()
    got = []
    hook = model.codec.g_s.register_forward_pre_hook(lambda m, a: got.append(a[0].clone()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        img = np.asarray(to_pil(api.decode(data, model, decoder=decoder).image))
    finally:
        hook.remove()
        torch.set_num_threads(threads)
    return img, got[0]


def _write_v1(src: Path, model) -> None:
    """The same file in format 1 (12-byte header), which readers still accept: v1_<name>."""
    import dataclasses

    from ulic import bitstream

    c = bitstream.parse(src.read_bytes(), model.fingerprint)
    old = dataclasses.replace(c, version=1, model_id=model.fingerprint[0])
    (src.parent / f"v1_{src.name}").write_bytes(old.to_bytes(model.fingerprint))


def _decoder_sha(model) -> str | None:
    p = model.folder / "decoder.json"
    return json.loads(p.read_text())["weights_sha256"] if p.exists() else None


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def main() -> int:
    import os

    from ulic import api
    from ulic.bitstream import FORMAT_VERSION
    from ulic.model_store import load_model

    kodak = Path(os.environ["ULIC_KODAK_DIR"])
    model = load_model()
    entries = {}
    for name, (left, top, w, h), quality in CASES:
        crop = Image.open(kodak / f"{name}.png").convert("RGB").crop((left, top, left + w, top + h))
        data = api.compress(np.asarray(crop), quality=quality)
        stem = f"{name}_{w}x{h}_q{quality}"
        (HERE / f"{stem}.ulic").write_bytes(data)
        img, y_hat = decode_with_symbols(data)
        Image.fromarray(img).save(HERE / f"{stem}.png")
        entries[stem] = {
            "format_version": FORMAT_VERSION,
            "model_sha256": model.config["weights_sha256"],
            "decoder": "fast",
            "decoder_sha256": _decoder_sha(model),
            "bytes": len(data),
            "y_hat_sha256": sha(y_hat.numpy().tobytes()),
            "pixels_sha256": sha(img.tobytes()),
        }
    _write_v1(HERE / "kodim23_64x64_q80.ulic", model)
    (HERE / "golden.json").write_text(json.dumps(entries, indent=2) + "\n")
    print(json.dumps(entries, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent.parent))
    sys.exit(main())
