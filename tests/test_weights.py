"""Weight resolution: explicit folder, ULIC_WEIGHTS_DIR, cache, and download (local server)."""

import hashlib
import http.server
import threading

import pytest
from conftest import needs_vae

from ulic.errors import WeightsError
from ulic.vae import weights

CONTENT = b"pretend-weights" * 100
SHA = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def fake_files(monkeypatch, tmp_path):
    monkeypatch.setattr(weights, "TAEF2_FILES", {"w.pth": SHA})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ULIC_WEIGHTS_DIR", raising=False)
    monkeypatch.delenv("ULIC_OFFLINE", raising=False)
    return tmp_path


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    (root / "w.pth").write_bytes(CONTENT)
    (root / "bad").mkdir()
    (root / "bad" / "w.pth").write_bytes(CONTENT[:-1] + b"!")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_explicit_folder_wins(fake_files, monkeypatch):
    d = fake_files / "explicit"
    d.mkdir()
    (d / "w.pth").write_bytes(CONTENT)
    monkeypatch.setenv("ULIC_WEIGHTS_URL", "http://127.0.0.1:9/")  # must not be used
    assert weights.find_weight("w.pth", d) == d / "w.pth"


def test_env_folder(fake_files, monkeypatch):
    d = fake_files / "env"
    d.mkdir()
    (d / "w.pth").write_bytes(CONTENT)
    monkeypatch.setenv("ULIC_WEIGHTS_DIR", str(d))
    assert weights.find_weight("w.pth") == d / "w.pth"


def test_wrong_hash_in_folder_is_an_error(fake_files, monkeypatch):
    d = fake_files / "env"
    d.mkdir()
    (d / "w.pth").write_bytes(b"other")
    monkeypatch.setenv("ULIC_WEIGHTS_DIR", str(d))
    with pytest.raises(WeightsError, match="sha256"):
        weights.find_weight("w.pth")


def test_download_into_cache(fake_files, server, monkeypatch):
    monkeypatch.setenv("ULIC_WEIGHTS_URL", server)
    p = weights.find_weight("w.pth")
    assert p == fake_files / "cache" / "ulic" / "w.pth" and p.read_bytes() == CONTENT
    assert [f.name for f in p.parent.iterdir()] == ["w.pth"]  # no temporary left
    monkeypatch.setenv("ULIC_WEIGHTS_URL", "http://127.0.0.1:9/")
    assert weights.find_weight("w.pth") == p  # now served from the cache


def test_download_with_wrong_hash_leaves_nothing(fake_files, server, monkeypatch):
    monkeypatch.setenv("ULIC_WEIGHTS_URL", server + "/bad")
    with pytest.raises(WeightsError, match="expected"):
        weights.find_weight("w.pth")
    cache = fake_files / "cache" / "ulic"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_unreachable_gives_one_line_hint(fake_files, monkeypatch):
    monkeypatch.setenv("ULIC_WEIGHTS_URL", "http://127.0.0.1:9/")
    with pytest.raises(WeightsError) as e:
        weights.find_weight("w.pth")
    msg = str(e.value)
    assert "\n" not in msg and "ULIC_WEIGHTS_DIR" in msg


def test_offline_setting(fake_files, monkeypatch):
    monkeypatch.setenv("ULIC_OFFLINE", "1")
    with pytest.raises(WeightsError, match="ULIC_OFFLINE"):
        weights.find_weight("w.pth")


@needs_vae
def test_real_taef2_loads_with_strict_keys():
    import torch

    vae = weights.load_vae()
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        z = vae.encode(x)
        assert z.shape == (1, 32, 8, 8)
        assert vae.decode(z).shape == (1, 3, 64, 64)
