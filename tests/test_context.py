"""The entropy context (`ulic.codec.context`): the same symbols and pixels in fewer bytes, exact
on every machine, stored in the model and trained by `ulic.train.train_context`."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from conftest import make_tiny_codec

from ulic.codec.context import QUARTER, SliceContext, anchors, reads, shift_tables, slice_inputs
from ulic.codec.entropy_models import scale_table
from ulic.codec.model import LATENT_PER_Z, LatentCodec
from ulic.model_store import load_model, save_model
from ulic.train.train_context import integer_context, samples


def _with_context(codec: LatentCodec, seed: int = 0, std: float = 0.05) -> LatentCodec:
    """A copy of codec with a random (non-zero) context, integerised on its own symbols."""
    torch.manual_seed(seed)
    ctx = SliceContext(codec.cfg.m, width=16)
    for net in ctx.nets:
        torch.nn.init.normal_(net.convs[-1].weight, std=std)
    out = copy.deepcopy(codec)
    calib = samples(codec, torch.randn(2, 32, 32, 32) * 0.85, (60, 200))
    cfg = codec.cfg
    out.coding = dataclasses.replace(
        codec.coding_state,
        ctx_int=integer_context(ctx, calib),
        shift_tables=shift_tables(scale_table(cfg.n_scales, cfg.scale_min, cfg.scale_max), cfg.radius_y),
    )
    return out


@pytest.mark.parametrize("q", [0, 128, 255])
def test_context_files_decode_to_the_same_symbols_and_latent(q):
    plain = make_tiny_codec()
    ctx = _with_context(plain)
    torch.manual_seed(3)
    x = torch.randn(1, 32, 32, 48) * 0.85
    data_plain, _ = plain.compress(x, q)
    data, bits = ctx.compress(x, q)
    assert data != data_plain  # the y symbols are coded in another order with other tables
    z_hw = (32 // LATENT_PER_Z, 48 // LATENT_PER_Z)
    sym, mean_s = ctx.decode_symbols(data, z_hw, q)
    sym_plain, mean_plain = plain.decode_symbols(data_plain, z_hw, q)
    assert torch.equal(sym, sym_plain) and torch.equal(mean_s, mean_plain)
    assert torch.equal(ctx.decompress(data, (32, 48), q), plain.decompress(data_plain, (32, 48), q))
    assert 0 <= 8 * len(data) - bits < 64  # the ideal bits are the coded ones, plus the flush


def test_context_parts_cover_every_symbol_once_and_read_only_what_is_decoded():
    codec = _with_context(make_tiny_codec())
    torch.manual_seed(4)
    q = 128
    _, sym, mean_s, idx = codec.symbols(*codec.analyse(torch.randn(1, 32, 32, 32) * 0.85), q)
    t = codec.coding_state
    r = reads(sym, mean_s, idx, t.igain[q], t.index_offset[q], q)
    full = [(s.clone(), w.clone(), k.clone()) for s, w, k in codec._context_parts(r, idx)]
    blind = reads(sym, mean_s, idx, t.igain[q], t.index_offset[q], q)
    blind.y_q.fill_(1e6)  # what the decoder has not decoded yet: junk
    seen = torch.zeros_like(sym)
    for (sel, whole, key), (s2, w2, k2) in zip(codec._context_parts(blind, idx), full, strict=True):
        assert torch.equal(sel, s2) and torch.equal(whole[sel], w2[s2]) and torch.equal(key[sel], k2[s2])
        seen += sel.long()
        blind.y_q[sel] = r.y_q[sel]  # decoded now
    assert torch.equal(seen, torch.ones_like(seen))  # every symbol in exactly one part


def test_integer_context_follows_the_float_one():
    codec = make_tiny_codec()
    torch.manual_seed(5)
    ctx = SliceContext(codec.cfg.m, width=16)
    for net in ctx.nets:
        torch.nn.init.normal_(net.convs[-1].weight, std=0.05)
    calib = samples(codec, torch.randn(2, 32, 32, 32) * 0.85, (60, 200))
    nets = integer_context(ctx, calib)
    s = calib[0]
    first = anchors(*s["sym"].shape[2:])
    for k, net in enumerate(nets):
        x = slice_inputs(k, ctx.c, s["reads"], first)
        shift_i, offset_i = net(x)
        shift_f, offset_f = ctx.nets[k](x.float() / QUARTER)
        assert torch.allclose(shift_i.float(), shift_f, atol=1e-3) and torch.allclose(
            offset_i.float(), offset_f, atol=1e-3
        )


def test_a_model_with_a_context_is_stored_and_read_back(tmp_path):
    plain = make_tiny_codec()
    save_model(plain, tmp_path / "plain", "tiny-test")
    save_model(_with_context(plain), tmp_path / "ctx", "tiny-test")
    a, b = load_model(str(tmp_path / "plain")), load_model(str(tmp_path / "ctx"))
    assert a.codec.coding_state.ctx_int is None and b.codec.coding_state.ctx_int is not None
    assert len(b.codec.coding_state.ctx_int) == 4 and a.fingerprint != b.fingerprint  # a new model id
    x = torch.randn(1, 32, 32, 32) * 0.85
    data, _ = b.codec.compress(x, 140)
    assert torch.equal(
        b.codec.decompress(data, (32, 32), 140), a.codec.decompress(a.codec.compress(x, 140)[0], (32, 32), 140)
    )


def test_training_the_context_writes_a_smaller_coding_model(tmp_path):
    from safetensors.torch import save_file

    from ulic.train.train_context import main

    save_model(make_tiny_codec(), tmp_path / "m", "tiny-test")
    torch.manual_seed(6)
    base = torch.randn(1, 32, 32, 32) * 0.85
    save_file({"latents": (base + 0.3 * torch.randn(8, 32, 32, 32)).contiguous()}, str(tmp_path / "crops.safetensors"))
    args = [
        "--model",
        str(tmp_path / "m"),
        "--crops",
        str(tmp_path / "crops.safetensors"),
        "--out",
        str(tmp_path / "out"),
    ]
    assert main([*args, "--epochs", "2", "--held", "2", "--lr", "3e-3"]) == 0  # held-out crops decode (checked)
    report = json.loads((tmp_path / "out" / "context_report.json").read_text())
    assert report["held_out_context"]["ideal_bits"] < report["held_out_plain"]["ideal_bits"]
    assert load_model(str(tmp_path / "out")).codec.coding_state.ctx_int is not None
