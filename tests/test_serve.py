"""`ulic serve`: upload checks and jobs through Flask's test client, then the real server (waitress
on 127.0.0.1) driven in headless Chromium: a non-image and a 60-Mpixel upload get a clear
message, a 256x256 image is coded and shown, its numbers match the downloads, and a screenshot is
saved to results/serve/ulic-serve.png."""

from __future__ import annotations

import io
import os
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("flask", reason="ulic serve needs Flask: make setup installs ulic[serve]")
pytest.importorskip("waitress", reason="ulic serve needs waitress: make setup installs ulic[serve]")

from conftest import kodak_dir, needs_vae  # noqa: E402

from ulic import api  # noqa: E402
from ulic.imageio import load_image, save_atomic  # noqa: E402
from ulic.serve.app import create_app  # noqa: E402
from ulic.serve.cli import make_server, stop  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "results" / "serve" / "ulic-serve.png"
CHROMIUM = os.environ.get("ULIC_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ULIC_CHROMEDRIVER", "/usr/bin/chromedriver")


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def test_image() -> Image.Image:
    """256x256 RGB: kodim23 (when the data is there, else the bundled example) scaled to 256 rows,
    middle 256 columns."""
    k = kodak_dir()
    img = Image.open(k / "kodim23.png" if k else ROOT / "ulic" / "assets" / "example.png").convert("RGB")
    img = img.resize((round(img.width * 256 / img.height), 256), Image.Resampling.LANCZOS)
    left = (img.width - 256) // 2
    return img.crop((left, 0, left + 256, 256))


@pytest.fixture(scope="module")
def huge_png() -> bytes:
    """A 60-Mpixel PNG (1-bit, a few kB): rejected from its header alone."""
    return png_bytes(Image.new("1", (8000, 7500)))


def post(client, data: bytes, name: str, **form: str):
    return client.post("/api/jobs", data={"file": (io.BytesIO(data), name), **form})


def wait_job(client, job_id: str, limit_s: float = 120) -> dict:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {limit_s} s")


def test_rejects_non_images_and_huge_images(huge_png):
    client = create_app().test_client()
    r = post(client, b"just some text\n", "notes.txt")
    assert (
        r.status_code == 400 and r.json["error"] == "notes.txt is not an image (use PNG, JPEG, WebP, TIFF, BMP, GIF …)"
    )
    r = post(client, huge_png, "huge.png")
    assert r.status_code == 400 and "8000x7500 = 60.0 Mpixel" in r.json["error"]
    assert "up to 16.0 Mpixel" in r.json["error"]
    assert post(client, b"", "empty.png").json["error"] == "empty.png is empty"
    assert client.post("/api/jobs", data={}).json["error"] == "no file was uploaded"


def test_limits_and_bad_choices(test_image):
    client = create_app(max_upload_bytes=4096).test_client()
    r = post(client, os.urandom(8192), "big.png")
    assert (
        r.status_code == 413
        and r.json["error"] == "the upload is larger than this server's limit of 4 kB (ulic serve --max-upload-mb)"
    )
    small = png_bytes(test_image.resize((32, 32)))
    assert "target must be one of" in post(client, small, "a.png", target="kb").json["error"]
    assert "decoder must be one of" in post(client, small, "a.png", decoder="x").json["error"]
    assert post(client, small, "a.png", value="lots").json["error"] == "value must be a number, got 'lots'"
    assert client.get("/api/jobs/nope").status_code == 404
    assert client.get("/api/config").json["max_upload_bytes"] == 4096


@needs_vae
def test_job_through_the_api(test_image):
    client = create_app().test_client()
    r = post(
        client,
        png_bytes(test_image.convert("RGBA")),
        "photo.png",
        target="bytes",
        value="400",
        decoder="mse",
        lpips="0",
    )
    assert r.status_code == 202
    job = wait_job(client, r.json["id"])
    assert job["state"] == "done", job["error"]
    res = job["result"]
    data = client.get(res["files"]["image.ulic"]).data
    assert len(data) == res["bytes"] <= 400 and res["decoder"] == "mse" and res["lpips"] is None
    assert res["notices"] == ["alpha channel dropped (ulic codes colour only)"]
    decoded = client.get(res["files"]["decoded.png"]).data
    assert decoded == png_bytes(api.decompress(data, decoder="mse"))
    assert abs(api.psnr(load_image(test_image), load_image(decoded)) - res["psnr"]) < 1e-9
    bad = post(client, png_bytes(test_image.resize((8, 8))), "tiny.png")  # fails in the job
    assert wait_job(client, bad.json["id"])["error"].endswith("8x8; ulic needs at least 16x16 pixels")


# ---- the real server in a real browser ----


def browser_missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} not found: install Debian's chromium and chromium-driver (make browser)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (make setup installs ulic[test])"
    return None


@pytest.fixture(scope="module")
def server_url():
    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    stop(server)
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(server_url, tmp_path_factory):  # after the server, so closed before it
    reason = browser_missing()
    if reason:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for downloads
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def upload(driver, path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "file").send_keys(str(path))
    driver.find_element(By.ID, "run").click()


def shown(driver, element_id: str, limit_s: float) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, limit_s, poll_frequency=0.05).until(
        lambda d: d.find_element(By.ID, element_id).is_displayed()
    )


def text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def rejected(driver, path: Path, message: str) -> None:
    upload(driver, path)
    shown(driver, "error", 30)
    assert message in text(driver, "error")


@needs_vae
def test_browser_round_trip(browser, server_url, test_image, huge_png, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "huge.png").write_bytes(huge_png)
    test_image.save(tmp_path / "parrots.png")
    browser.get(server_url + "/")
    rejected(browser, tmp_path / "notes.txt", "notes.txt is not an image")
    rejected(browser, tmp_path / "huge.png", "8000x7500 = 60.0 Mpixel")

    Select(browser.find_element(By.ID, "decoder")).select_by_value("fast")
    browser.find_element(By.ID, "value").clear()
    browser.find_element(By.ID, "value").send_keys("0.05")
    upload(browser, tmp_path / "parrots.png")  # the server still serves after the rejections
    shown(browser, "status", 10)  # the progress indicator
    shown(browser, "results", 120)
    assert not browser.find_element(By.ID, "status").is_displayed()
    assert not browser.find_element(By.ID, "error").is_displayed()
    WebDriverWait(browser, 20).until(
        lambda d: d.execute_script("const i = document.getElementById('decoded'); return i.complete && i.naturalWidth")
        == 256
    )

    href = browser.find_element(By.ID, "dl-ulic").get_attribute("href")
    data = urllib.request.urlopen(href, timeout=30).read()
    decoded = urllib.request.urlopen(href.replace("image.ulic", "decoded.png"), timeout=30).read()
    assert text(browser, "bytes") == str(len(data))
    assert text(browser, "bpp") == f"{8 * len(data) / 256**2:.4f}"
    assert abs(8 * len(data) / 256**2 - 0.05) <= 0.05 * 0.03
    assert text(browser, "psnr") == f"{api.psnr(load_image(test_image), load_image(decoded)):.2f}"
    assert float(text(browser, "encode-s")) > 0 and float(text(browser, "decode-s")) > 0
    assert text(browser, "used-decoder") == "fast" and text(browser, "size") == "256×256"
    assert browser.find_element(By.ID, "dl-png").get_attribute("download") == "parrots.ulic.png"

    for button, cls in (("zoom-100", "actual"), ("mode-side", "side"), ("zoom-fit", "fit"), ("mode-slider", "slider")):
        browser.find_element(By.ID, button).click()
        assert cls in browser.find_element(By.ID, "compare").get_attribute("class").split()
    browser.execute_script("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(browser.get_screenshot_as_png(), SCREENSHOT)
    assert Image.open(SCREENSHOT).size[0] >= 1000


def test_cli_has_serve():
    from ulic.cli import build_parser

    a = build_parser().parse_args(["serve", "--port", "0"])
    assert (a.host, a.port, a.max_pixels) == ("127.0.0.1", 0, 16)
