"""Hostile inputs, second round (issue 16): one test per case of its table. Each case ends within
5 s in one `ulic: error:` line and exit code 2, or in a correct result; cases 1-4 also run in a
child process that reports its peak RSS (under 1 GB). Most cases are refused before the codec
runs, so they need no VAE weights."""

import errno
import io
import json
import os
import stat
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest
import torch
from conftest import Run, needs_vae
from PIL import Image

from ulic import api, bitstream
from ulic.errors import BitstreamError, InputImageError, OutputError, UlicError
from ulic.imageio import OUTPUT_FORMATS, check_png_complete, image_format, load_image, png_pixel_bytes, save_atomic
from ulic.tools.fuzz import make_png, png_chunk

SECONDS = 5.0


def one_line_error(r: Run, match: str = "") -> str:
    assert r.rc == 2, r.err
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ulic: error:"), r.err
    assert match in lines[0], lines[0]
    assert "Traceback" not in r.err and ".ulic-tmp-" not in r.err
    assert r.seconds < SECONDS
    return lines[0]


def container(model, h: int, w: int, payload: bytes = b"", q: int = 0) -> bytes:
    """A .ulic file with a valid check for `model`, declaring an h x w image."""
    return bitstream.Container(h, w, q, None, [payload]).to_bytes(model.fingerprint)


def strip_png() -> bytes:
    """A real 16x4,000,000 black PNG (186 KB): every row present."""
    co = zlib.compressobj(9)
    row = bytes(1 + 3 * 4_000_000)
    z = b"".join(co.compress(row) for _ in range(16)) + co.flush()
    header = make_png(4_000_000, 16, b"")[:33]  # signature and IHDR
    return header + png_chunk(b"IDAT", z) + png_chunk(b"IEND", b"")


@pytest.fixture
def img_path(tmp_path, photo):
    p = tmp_path / "in.png"
    Image.fromarray(photo[:64, :96]).save(p)
    return p


# -- 1: a 13-byte file declaring a strip -----------------------------------------------------------
@pytest.mark.parametrize("h,w", [(1, 67_108_864), (16, 4_194_304)])
def test_case01_strip_header_refused_before_padding(cli, tiny_model, tmp_path, h, w):
    data = container(tiny_model, h, w, b"\0" * 4)
    assert len(data) == 13
    p = tmp_path / "strip.ulic"
    p.write_bytes(data)
    one_line_error(cli("decompress", p, "-o", tmp_path / "o.png"), "padded to multiples of 128")
    with pytest.raises(BitstreamError, match="exceeds the limit"):
        api.decode(data, model=tiny_model)


def test_elongated_images_refused(tiny_model, monkeypatch):
    """Within the pixel limit but sides more than 256x apart (after padding): refused."""
    monkeypatch.delenv("ULIC_MAX_PIXELS", raising=False)
    with pytest.raises(BitstreamError, match="elongated"):
        api.decode(container(tiny_model, 16, 40_000, b"\0" * 5000), model=tiny_model)
    with pytest.raises(InputImageError, match="elongated"):
        load_image(make_png(40_000, 16, b""))


# -- 2: a small PNG of a 16x4,000,000 image ----------------------------------------------------------
def test_case02_png_strip_refused_from_header(cli, tmp_path):
    p = tmp_path / "strip.png"
    p.write_bytes(strip_png())
    one_line_error(cli("compress", p, "-o", tmp_path / "o.ulic"), "exceeds the limit")
    with pytest.raises(InputImageError, match="padded"):  # the data is never decoded
        load_image(make_png(4_000_000, 16, b"not even zlib"))


# -- 3: a few bytes declaring a big image ------------------------------------------------------
def test_case03_tiny_ulic_declaring_2048x2048(cli, tiny_model, tmp_path):
    data = container(tiny_model, 2048, 2048, b"\x12\x34\x56\x78")
    assert len(data) == 12
    p = tmp_path / "tiny.ulic"
    p.write_bytes(data)
    one_line_error(cli("decompress", p, "-o", tmp_path / "o.png"), "truncated")
    info = json.loads(cli("info", p).out)  # info still shows the header, and what is wrong
    assert info["check_with_loaded_model"] == "ok" and "truncated" in info["length_with_loaded_model"]
    with pytest.raises(BitstreamError, match="needs at least"):
        api.decode(data, model=tiny_model)


def test_case03_tiny_png_declaring_8000x8000(cli, tmp_path):
    data = make_png(8000, 8000, (b"\0" + bytes(24000)) * 2)
    assert len(data) < 150
    p = tmp_path / "tiny.png"
    p.write_bytes(data)
    one_line_error(cli("compress", p, "-o", tmp_path / "o.ulic"), "incomplete")


def tiny_jpeg(width: int, height: int) -> bytes:
    """A JPEG whose frame header declares width x height, with 4 bytes of scan data."""
    b = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 10, 10)).save(b, format="JPEG")
    j = bytearray(b.getvalue())
    sof = j.index(b"\xff\xc0")
    j[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    sos = j.index(b"\xff\xda")
    return bytes(j[: sos + 2 + int.from_bytes(j[sos + 2 : sos + 4], "big")]) + bytes(4) + b"\xff\xd9"


def test_case03_tiny_jpeg_declaring_8000x8000(cli, tmp_path):
    """The JPEG form of case 3: libjpeg would fill 64 Mpixel with grey, without an error."""
    p = tmp_path / "tiny.jpg"
    p.write_bytes(tiny_jpeg(8000, 8000))
    one_line_error(cli("compress", p, "-o", tmp_path / "o.ulic"), "incomplete")
    assert load_image(tiny_jpeg(16, 16)).shape == (1, 3, 16, 16)  # a 16x16 image fits in 4 bytes


@pytest.mark.parametrize(
    "mode,kw", [("RGB", {}), ("RGB", {"progressive": True}), ("L", {}), ("CMYK", {}), ("RGB", {"subsampling": 0})]
)
def test_flat_jpegs_pass_the_size_check(mode, kw):
    """The smallest real JPEGs (flat images) are above one bit per block."""
    from ulic.imageio import jpeg_min_bytes

    b = io.BytesIO()
    Image.new("RGB", (1024, 768), (128, 128, 128)).convert(mode).save(b, format="JPEG", quality=5, **kw)
    assert 0 < jpeg_min_bytes(io.BytesIO(b.getvalue())) < len(b.getvalue())
    assert load_image(b.getvalue()).shape == (1, 3, 768, 1024)


def test_length_bounds_hold_for_real_files(tiny_model, photo):
    """Real files sit inside the bounds that hostile files are refused by."""
    from ulic.limits import check_container_length, coded_bytes_bounds

    torch.manual_seed(0)
    for scale in (0.0, 1.0, 30.0):
        latent = torch.randn(1, 32, 16, 32) * scale  # the latent of a 100x200 image (padded 128x256)
        for q in (0, 255):
            payload, _ = tiny_model.codec.compress(latent, q)
            fewest, most = coded_bytes_bounds(tiny_model.codec, 100, 200)
            assert fewest <= len(payload) <= most
            check_container_length(container(tiny_model, 100, 200, payload), tiny_model.codec)


# -- 4: inputs that are huge, endless or long and damaged ------------------------------------------
def test_case04_sparse_gigabyte_refused_without_reading(cli, tiny_model, tmp_path):
    p = tmp_path / "sparse.ulic"
    with open(p, "wb") as f:
        f.write(container(tiny_model, 2048, 2048, b"\1" * 2000))
        f.truncate(1 << 30)
    one_line_error(cli("decompress", p, "-o", tmp_path / "o.png"), "more than a 2048x2048 image can take")


def test_case04_dev_zero_refused(cli, tmp_path):
    one_line_error(cli("decompress", "/dev/zero", "-o", tmp_path / "o.png"), "not a regular file")
    one_line_error(cli("compress", "/dev/zero", "-o", tmp_path / "o.ulic"), "not a regular file")


def test_case04_endless_fifo_read_no_further_than_the_header_allows(cli, tiny_model, tmp_path):
    fifo = tmp_path / "pipe.ulic"
    os.mkfifo(fifo)
    head = container(tiny_model, 128, 128, b"\1" * 64)

    def writer():
        try:
            with open(fifo, "wb") as f:
                f.write(head)
                for _ in range(1000):  # 64 MB unless the reader stops early
                    f.write(bytes(1 << 16))
        except BrokenPipeError:
            pass

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    one_line_error(cli("decompress", fifo, "-o", tmp_path / "o.png"), "more than a 128x128 image can take")
    t.join(5)


@pytest.mark.parametrize(
    "size,match", [(20_000_000, "more than a 8192x8192 image can take"), (2_000_000, "integrity check failed")]
)
def test_case04_long_file_with_bad_check(cli, tiny_model, tmp_path, size, match):
    """20 MB is more than the tiny model's 8192x8192 files can take (the shipped model's can:
    its check then fails at C speed); 2 MB reaches the check."""
    data = bytearray(container(tiny_model, 8192, 8192, np.random.default_rng(0).bytes(size)))
    data[-1] ^= 1
    p = tmp_path / "long.ulic"
    p.write_bytes(data)
    one_line_error(cli("decompress", p, "-o", tmp_path / "o.png"), match)


def test_cases_1_to_4_bounded_in_a_child_process(tiny_model, tiny_model_dir, tmp_path):
    """The files of cases 1-4 through the CLI in one child process: each ends in exit code 2
    within 5 s, and the process's peak RSS stays under 1 GB."""
    files = {
        "c1a.ulic": container(tiny_model, 1, 67_108_864, b"\0" * 4),
        "c1b.ulic": container(tiny_model, 16, 4_194_304, b"\0" * 4),
        "c2.png": strip_png(),
        "c3a.ulic": container(tiny_model, 2048, 2048, b"\1" * 4),
        "c3b.png": make_png(8000, 8000, (b"\0" + bytes(24000)) * 2),
        "c4c.ulic": container(tiny_model, 8192, 8192, bytes(20_000_000)),
    }
    files["c4c.ulic"] = files["c4c.ulic"][:-1] + bytes([files["c4c.ulic"][-1] ^ 1])  # bad check
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with open(tmp_path / "c4a.ulic", "wb") as f:  # 1 GB, sparse
        f.write(files["c3a.ulic"])
        f.truncate(1 << 30)
    cases = [
        ["compress", str(tmp_path / n), "-o", str(tmp_path / f"{n}.ulic")]
        if n.endswith(".png")
        else ["decompress", str(tmp_path / n), "-o", str(tmp_path / f"{n}.png")]
        for n in sorted(files) + ["c4a.ulic", "/dev/zero"]
    ]
    # peak RSS from VmHWM: ru_maxrss is inherited from the forking (pytest) process on Linux
    script = (
        "import json, sys, time\nfrom ulic.cli import main\nres = []\n"
        "for args in json.loads(sys.argv[1]):\n"
        "    t = time.perf_counter(); rc = main(args); res.append([rc, time.perf_counter() - t])\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "rss = int(hwm.split()[1]) / 1024\n"
        "print(json.dumps({'runs': res, 'rss_mb': rss}))"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", ULIC_MODEL_DIR=str(tiny_model_dir))
    env.pop("ULIC_MAX_PIXELS", None)
    r = subprocess.run(
        [sys.executable, "-c", script, json.dumps(cases)], capture_output=True, text=True, env=env, timeout=120
    )
    report = json.loads(r.stdout.splitlines()[-1])
    assert [rc for rc, _ in report["runs"]] == [2] * len(cases), r.stderr
    assert max(s for _, s in report["runs"]) < SECONDS, report
    assert report["rss_mb"] < 1024, report
    assert r.stderr.count("ulic: error:") == len(cases) and "Traceback" not in r.stderr


# -- 5: outputs that are devices ------------------------------------------------------------------
def _node(path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a copy of /dev/null


@pytest.mark.parametrize(
    "kind",
    [
        "fifo",
        pytest.param("chardev", marks=pytest.mark.skipif(os.geteuid() != 0, reason="mknod of a device needs root")),
    ],
)
def test_case05_device_output_refused(cli, img_path, tmp_path, kind):
    node = tmp_path / "node"
    _node(node, kind)
    one_line_error(cli("compress", img_path, "-o", node), "not a regular file")
    (tmp_path / "x.ulic").write_bytes(b"\xe2junk")  # never read: the output is checked first
    link = tmp_path / "node.png"
    link.symlink_to(node)
    one_line_error(cli("decompress", tmp_path / "x.ulic", "-o", link), "not a regular file")
    assert not stat.S_ISREG(os.stat(node).st_mode) and link.is_symlink()


# -- 6: output equal to the input -------------------------------------------------------------------
def test_case06_output_is_input(cli, img_path, tmp_path):
    before = img_path.read_bytes()
    one_line_error(cli("compress", img_path, "-o", img_path), "is the input file")
    alias = tmp_path / "alias.png"
    os.link(img_path, alias)  # the same file under another name
    one_line_error(cli("compress", img_path, "-o", alias), "is the input file")
    assert img_path.read_bytes() == before


def test_case06_ulic_named_png_decompressed_without_o(cli, tiny_model, tmp_path):
    p = tmp_path / "photo.png"
    p.write_bytes(container(tiny_model, 64, 64, b"\1" * 40))
    before = p.read_bytes()
    one_line_error(cli("decompress", p), "is the input file")
    assert p.read_bytes() == before


# -- 7: two inputs, one output name ------------------------------------------------------------------
@pytest.mark.parametrize("overwrite", [False, True])
def test_case07_batch_collisions_fail_each_file(cli, tmp_path, photo, overwrite):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo[:64, :96]).save(src / "a.png")
    Image.fromarray(photo[:64, :96]).save(src / "a.jpg")
    more = ["--overwrite"] if overwrite else []
    r = cli("compress-dir", src, "-o", tmp_path / "out", "--quality", 30, *more)
    assert r.rc == 1 and "0 done, 0 skipped, 2 failed" in r.err, r.err
    assert "a.jpg" in r.err and "a.png" in r.err and "rename one" in r.err
    assert not (tmp_path / "out" / "a.ulic").exists()


def test_case07_decompress_dir_collisions(cli, tiny_model, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for name in ("b.ulic", "b.ULIC"):
        (src / name).write_bytes(container(tiny_model, 64, 64, b"\1" * 40))
    r = cli("decompress-dir", src, "-o", tmp_path / "out")
    assert r.rc == 1 and "0 done, 0 skipped, 2 failed" in r.err, r.err


# -- 8: output formats ----------------------------------------------------------------------------------
def test_case08_output_formats_known_before_decoding(cli, tmp_path):
    assert image_format("x.tif") == image_format("x.TIFF") == "TIFF"
    assert {image_format("x" + s) for s in OUTPUT_FORMATS} >= {"PNG", "TIFF", "JPEG", "BMP", "PPM"}
    (tmp_path / "junk.ulic").write_bytes(b"junk")  # never read: the output is checked first
    r = cli("decompress", tmp_path / "junk.ulic", "-o", tmp_path / "o.xyz")
    one_line_error(r, "unsupported output format")


@needs_vae
def test_case08_decompress_to_tif(cli, tiny_model, tmp_path, photo):
    p = tmp_path / "a.ulic"
    p.write_bytes(api.encode(photo[:48, :64].copy(), quality=30, model=tiny_model).data)
    r = cli("decompress", p, "-o", tmp_path / "out.tif")
    assert r.rc == 0, r.err
    with Image.open(tmp_path / "out.tif") as im:
        assert (im.format, im.size) == ("TIFF", (64, 48))


# -- 9: PNG rows missing behind a complete zlib stream ---------------------------------------------
def test_case09_png_with_missing_rows(cli, tmp_path):
    p = tmp_path / "short.png"
    p.write_bytes(make_png(64, 64, (b"\0" + b"\x80" * 192) * 10))  # 10 of 64 rows
    one_line_error(cli("compress", p, "-o", tmp_path / "o.ulic"), "incomplete")
    with pytest.raises(InputImageError, match="incomplete"):
        load_image(make_png(64, 64, (b"\0" + b"\x80" * 192) * 63 + b"\0" + b"\x80" * 191))


@pytest.mark.parametrize("interlace", [0, 1])
@pytest.mark.parametrize(
    "w,h,depth,colour", [(1, 1, 8, 2), (3, 5, 1, 0), (17, 23, 8, 2), (33, 16, 16, 6), (16, 17, 4, 3), (20, 9, 2, 0)]
)
def test_png_pixel_bytes_match_pillow(w, h, depth, colour, interlace):
    """Complete PNGs (interlaced too) pass the check and Pillow reads them; one byte short fails."""
    need = png_pixel_bytes(w, h, depth, colour, interlace)
    full = make_png(w, h, bytes(need), depth, colour, interlace, plte=colour == 3)
    check_png_complete(io.BytesIO(full), "x")
    with Image.open(io.BytesIO(full)) as im:
        im.load()
        assert im.size == (w, h)
    with pytest.raises(InputImageError, match=f"{need - 1} of the {need} bytes"):
        check_png_complete(io.BytesIO(make_png(w, h, bytes(need - 1), depth, colour, interlace)), "x")


def test_png_split_over_idat_chunks_is_complete(photo):
    b = io.BytesIO()
    Image.fromarray(photo).save(b, format="PNG")
    ref = load_image(b.getvalue())
    raw = b"".join(b"\0" + photo[i].tobytes() for i in range(photo.shape[0]))
    split = make_png(photo.shape[1], photo.shape[0], raw, idat_parts=7)
    assert torch.equal(load_image(split), ref)


# -- 10: --threads and other options checked by the parser -----------------------------------------
@pytest.mark.parametrize("value", ["-1", "0", "abc", "1e9"])
@pytest.mark.parametrize(
    "command", ["compress", "decompress", "info", "compress-dir", "decompress-dir", "demo", "eval", "serve"]
)
def test_case10_bad_threads_every_subcommand(cli, command, value):
    one_line_error(cli("--threads", value, command, "x"), "--threads")


@pytest.mark.parametrize(
    "args,match",
    [
        (["compress", "x.png", "--quality", "101"], "--quality"),
        (["compress", "x.png", "--quality", "nan"], "--quality"),
        (["compress", "x.png", "--bpp", "0"], "--bpp"),
        (["compress", "x.png", "--bpp", "inf"], "--bpp"),
        (["compress", "x.png", "--max-bytes", "1.5"], "--max-bytes"),
        (["compress", "x.png", "--optimize", "-1"], "--optimize"),
        (["decompress", "x.ulic", "--steps", "0"], "--steps"),
        (["decompress", "x.ulic", "--realism", "2"], "realism"),
        (["compress-dir", "in", "-o", "out", "--quality", "101"], "--quality"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_options_checked_before_any_work(cli, tmp_path, monkeypatch, args, match):
    monkeypatch.chdir(tmp_path)
    one_line_error(cli(*args), match)
    assert not (tmp_path / "out").exists()


# -- 11: Python API arguments ----------------------------------------------------------------------------
@pytest.mark.parametrize("src", [None, 3.5, 123, True, [1, 2], torch.zeros(1, 3, 16, 16), object()])
def test_case11_unsupported_inputs(tiny_model, src):
    with pytest.raises(InputImageError, match="cannot read an image from"):
        api.encode(src, model=tiny_model)


def test_case11_compress_default_model_unsupported_input(cli):
    with pytest.raises(UlicError):
        api.compress(None)


@pytest.mark.parametrize(
    "kw",
    [
        {"bpp": "0.1"},
        {"bpp": float("nan")},
        {"max_bytes": float("nan")},
        {"max_bytes": 10.5},
        {"max_bytes": True},
        {"quality": True},
        {"quality": "50"},
        {"optimize": 2.0},
        {"optimize": True},
    ],
)
def test_case11_bad_encode_options_before_any_work(kw):
    with pytest.raises(UlicError):
        api.encode("/no/such/file.png", **kw)  # the option fails first: no model, no file


@pytest.mark.parametrize(
    "kw",
    [{"steps": 2.5}, {"steps": True}, {"steps": 0}, {"decoder": "best"}, {"realism": "1"}, {"realism": float("nan")}],
)
def test_case11_bad_decode_options(kw):
    with pytest.raises(UlicError):
        api.decompress(b"\xe2junk", **kw)
    with pytest.raises(BitstreamError, match="bytes"):
        api.decompress("file.ulic")


def test_case11_file_objects_bytearrays_and_modes(photo):
    png = io.BytesIO()
    Image.fromarray(photo).save(png, format="PNG")
    ref = load_image(png.getvalue())
    assert torch.equal(load_image(io.BytesIO(png.getvalue())), ref)
    assert torch.equal(load_image(bytearray(png.getvalue())), ref)
    assert torch.equal(load_image(memoryview(png.getvalue())), ref)
    with pytest.raises(InputImageError) as e:
        load_image(bytearray(b"x" * 1_000_000))  # bytes, not a path: a short message
    assert len(str(e.value)) < 200
    notices = []
    la = Image.fromarray(photo[..., 0]).convert("LA").convert("La")
    assert load_image(la, notices).shape == (1, 3, *photo.shape[:2]) and "alpha" in notices[0]
    closed = Image.fromarray(photo)
    closed.close()
    with pytest.raises(InputImageError, match="closed"):
        load_image(closed)
    with pytest.raises(InputImageError, match="binary"):
        load_image(io.StringIO("text"))


# -- 12: replacing an output keeps its mode, owner and hard links -----------------------------------
def test_case12_replaced_file_keeps_mode_and_owner(tmp_path):
    p = tmp_path / "out.ulic"
    p.write_bytes(b"old")
    os.chmod(p, 0o600)
    if os.geteuid() == 0:
        os.chown(p, 1234, 4321)
    save_atomic(b"new", p)
    st = os.stat(p)
    assert p.read_bytes() == b"new" and stat.S_IMODE(st.st_mode) == 0o600
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 4321)


def test_case12_hard_links_not_broken(cli, img_path, tmp_path):
    p, q = tmp_path / "out.ulic", tmp_path / "other-name.ulic"
    p.write_bytes(b"old")
    os.link(p, q)
    with pytest.raises(OutputError, match="hard links"):
        save_atomic(b"new", p)
    one_line_error(cli("compress", img_path, "-o", p), "hard links")
    assert p.read_bytes() == q.read_bytes() == b"old" and os.stat(p).st_nlink == 2


def test_symlinked_output_written_through(tmp_path):
    real = tmp_path / "real.ulic"
    real.write_bytes(b"old")
    link = tmp_path / "link.ulic"
    link.symlink_to(real)
    save_atomic(b"new", link)
    assert link.is_symlink() and real.read_bytes() == b"new"


# -- 13: messages name the user's path, and come before the work ------------------------------------
def test_case13_missing_output_folder_named(cli, img_path, tmp_path):
    line = one_line_error(cli("compress", img_path, "-o", tmp_path / "nope" / "x.ulic"), "does not exist")
    assert "nope" in line


def test_case13_disk_full_names_the_output(tmp_path, monkeypatch):
    p = tmp_path / "out.ulic"
    p.write_bytes(b"precious")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("ulic.imageio.os.fsync", full)
    with pytest.raises(OutputError, match=r"out\.ulic: cannot write \(No space left on device\)"):
        save_atomic(b"new", p)
    assert p.read_bytes() == b"precious" and [f.name for f in tmp_path.iterdir()] == ["out.ulic"]


def test_case13_bad_options_and_outputs_cost_nothing(cli, img_path, tmp_path):
    one_line_error(cli("compress", img_path, "--quality", 101), "--quality")
    one_line_error(cli("compress-dir", tmp_path, "-o", tmp_path / "out", "--quality", 101), "--quality")
    one_line_error(cli("decompress", img_path, "-o", tmp_path / "o.gif"), "unsupported output format")
    with pytest.raises(UlicError, match="quality"):
        api.check_encode_options(quality=101)
    assert not (tmp_path / "out").exists()


# -- 14: hostile files inside a batch fail alone ------------------------------------------------------
def test_case14_hostile_files_in_decompress_dir_fail_alone(cli, tiny_model, tmp_path, monkeypatch):
    src = tmp_path / "in"
    src.mkdir()
    (src / "strip.ulic").write_bytes(container(tiny_model, 1, 67_108_864, b"\0" * 4))
    (src / "tiny.ulic").write_bytes(container(tiny_model, 2048, 2048, b"\1" * 4))
    (src / "junk.ulic").write_bytes(b"\0" * 100)
    (src / "bug.ulic").write_bytes(container(tiny_model, 64, 64, b"\1" * 40))
    real = api.decode

    def buggy(data, *a, **kw):  # an unexpected exception inside one file's decode
        if data.endswith(container(tiny_model, 64, 64, b"\1" * 40)[-8:]):
            raise RuntimeError("boom")
        return real(data, *a, **kw)

    monkeypatch.setattr(api, "decode", buggy)
    r = cli("decompress-dir", src, "-o", tmp_path / "out")
    assert r.rc == 1 and "0 done, 0 skipped, 4 failed" in r.err, r.err
    assert "internal error (RuntimeError: boom)" in r.err and "Traceback" not in r.err


@needs_vae
def test_case14_valid_files_done_beside_hostile_ones(cli, tiny_model, tmp_path, photo):
    src = tmp_path / "in"
    src.mkdir()
    (src / "strip.ulic").write_bytes(container(tiny_model, 1, 67_108_864, b"\0" * 4))
    (src / "good.ulic").write_bytes(api.encode(photo[:32, :48].copy(), quality=30, model=tiny_model).data)
    r = cli("decompress-dir", src, "-o", tmp_path / "out")
    assert r.rc == 1 and "1 done, 0 skipped, 1 failed" in r.err, r.err
    assert Image.open(tmp_path / "out" / "good.png").size == (48, 32)
