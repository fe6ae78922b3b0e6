"""Committed .ulic files must keep decoding to exactly the same symbols and pixels."""
import hashlib
import json
import sys
from pathlib import Path

import pytest

from ulic import api, bitstream
from ulic.codec.store import DEFAULT_MODEL, load_model
from ulic.errors import BitstreamError

from conftest import needs_vae

GOLDEN = Path(__file__).parent / "golden"
ENTRIES = json.loads((GOLDEN / "golden.json").read_text()) if (GOLDEN / "golden.json").exists() else {}

pytestmark = [needs_vae, pytest.mark.skipif(not ENTRIES or not (DEFAULT_MODEL / "config.json").exists(),
                                            reason="no golden files or no shipped model")]
sys.path.insert(0, str(GOLDEN))


@pytest.fixture
def default_model(monkeypatch):
    monkeypatch.delenv("ULIC_MODEL_DIR", raising=False)
    return load_model(str(DEFAULT_MODEL))


@pytest.mark.parametrize("stem", sorted(ENTRIES))
def test_golden_file_decodes_identically(stem, default_model):
    from regenerate import _decoder_sha, decode_with_symbols
    e = ENTRIES[stem]
    assert e["format_version"] == bitstream.FORMAT_VERSION, "format changed: keep old files decodable"
    assert default_model.config["weights_sha256"] == e["model_sha256"], (
        "the shipped model changed: old files no longer decode; regenerate the golden files "
        "(tests/golden/regenerate.py) only together with a model id change")
    assert _decoder_sha(default_model) == e["decoder_sha256"], "the shipped decoder changed"
    data = (GOLDEN / f"{stem}.ulic").read_bytes()
    img, y_hat = decode_with_symbols(data, e["decoder"])
    assert hashlib.sha256(y_hat.numpy().tobytes()).hexdigest() == e["y_hat_sha256"]
    assert hashlib.sha256(img.tobytes()).hexdigest() == e["pixels_sha256"]


def test_other_format_version_fails_clearly(default_model):
    data = bytearray((GOLDEN / f"{sorted(ENTRIES)[0]}.ulic").read_bytes())
    data[2] = bitstream.FORMAT_VERSION + 1
    with pytest.raises(BitstreamError, match="unsupported format version"):
        api.decode(bytes(data), default_model)
