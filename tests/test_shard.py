"""`--shard K/N` of compress-dir / decompress-dir: N workers cover a folder exactly once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ulic.batch import compress_dir, decompress_dir, in_shard, parse_shard
from ulic.errors import UlicError


@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_shards_partition_any_listing(n):
    names = [Path(f"d{i % 5}") / f"img{i}.ulic" for i in range(200)]
    owners = [[k for k in range(1, n + 1) if in_shard(p, (k, n))] for p in names]
    assert all(len(o) == 1 for o in owners)  # every file in exactly one shard
    if n > 1:
        sizes = np.bincount([o[0] for o in owners], minlength=n + 1)[1:]
        assert sizes.min() > 200 / n / 2  # and roughly balanced
    # the decision depends only on the path, not on the order the folder lists in
    assert [in_shard(p, (1, n)) for p in reversed(names)] == [in_shard(p, (1, n)) for p in names][::-1]


@pytest.mark.parametrize("text", ["0/3", "4/3", "1", "a/b", "1/0", "-1/2"])
def test_bad_shard_is_a_clear_error(text):
    with pytest.raises(UlicError, match="--shard"):
        parse_shard(text)


def test_sharded_compress_and_decompress_cover_once(tiny_model, photo, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for i in range(6):
        Image.fromarray(np.roll(photo, 5 * i, axis=0)[:32, :48]).save(src / ("sub" if i % 2 else ".") / f"p{i}.png")
    out, png = tmp_path / "out", tmp_path / "png"
    done = [compress_dir(src, out, quality=30, log=lambda _m: None, shard=(k, 3)).done for k in (1, 2, 3)]
    assert sum(done) == 6
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.ulic")) == sorted(
        p.relative_to(src).with_suffix(".ulic").as_posix() for p in src.rglob("*.png")
    )
    again = compress_dir(src, out, quality=30, log=lambda _m: None, shard=(2, 3))
    assert again.done == 0 and again.skipped == done[1]
    assert sum(decompress_dir(out, png, log=lambda _m: None, shard=(k, 2)).done for k in (1, 2)) == 6
    assert len(list(png.rglob("*.png"))) == 6


def test_cli_shard_flag(cli, tiny_model, photo, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(photo[:32, :48]).save(src / "a.png")
    r = cli("compress-dir", src, "-o", tmp_path / "out", "--quality", 30, "--shard", "5/2")
    assert r.rc == 2 and "--shard" in r.err and "Traceback" not in r.err
