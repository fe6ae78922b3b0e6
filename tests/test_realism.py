"""Stage 3: pixel decoder, realism conditioning, discriminator, store and API plumbing."""

import dataclasses
import json
import math

import pytest
import torch
from conftest import needs_vae

from ulic.diffusion.decode import refine, sample
from ulic.diffusion.networks import DiffusionConfig, DiffusionDecoder
from ulic.diffusion.pixel_decoder import PixelDecoder
from ulic.model_store import load_decoder, save_decoder
from ulic.train.discriminator import PatchDiscriminator, ProjectedDiscriminator, d_hinge, g_hinge, halves
from ulic.vae.taef2 import make_decoder
from ulic.vae.tiling import decode_tiled

TINY = DiffusionConfig(drm_width=8, drm_blocks=1, spatial=4, semantic=8, widths=(8, 16), blocks=1, emb=8)
TINY_R = dataclasses.replace(TINY, realism=True, pixel_decoder=True)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_untrained_pixel_decoder_equals_its_taef2_init_at_every_realism():
    torch.manual_seed(0)
    taef2 = make_decoder().eval()
    pix = PixelDecoder().load_taef2(taef2).eval()
    lat = torch.randn(2, 32, 4, 6)
    with torch.no_grad():
        want = taef2(lat)
        for r in (0.0, 0.5, 1.0):
            assert torch.allclose(pix(lat, torch.full((2,), r)), want, atol=1e-6)


def test_fixed_realism_module_matches_forward_and_tiles_without_seams():
    torch.manual_seed(1)
    pix = PixelDecoder().eval()
    _randomise(pix.film, 2)
    lat = torch.randn(1, 32, 20, 12)
    with torch.no_grad():
        direct = pix(lat, torch.tensor([0.7]))
        fixed = pix.with_realism(0.7)
        assert len(fixed) == len(pix.layers)  # same indices as TAEF2's decoder: tiling splits alike
        assert torch.allclose(fixed(lat), direct, atol=1e-5)
        assert torch.allclose(decode_tiled(fixed, lat, tile=64), direct, atol=1e-4)
        assert not torch.allclose(pix(lat, torch.tensor([0.0])), direct, atol=1e-3)  # R is read


def test_realism_conditioning_starts_as_identity_and_is_required():
    torch.manual_seed(3)
    dec = DiffusionDecoder(TINY_R).eval()
    z = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        a = refine(dec, z, 100, 2, seed=5, realism=0.0)
        b = refine(dec, z, 100, 2, seed=5, realism=1.0)
    assert torch.equal(a, b)  # zero-initialised R inputs
    with pytest.raises(ValueError, match="realism"):
        refine(dec, z, 100, 2, seed=5)


def test_decoder_without_realism_is_unchanged_by_the_new_options():
    torch.manual_seed(4)
    dec = DiffusionDecoder(TINY).eval()
    assert dec.pixel is None and dec.denoiser.realism_proj is None
    assert dec.drm.head.in_channels == 33
    z = torch.randn(1, 32, 8, 8)
    eps = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        assert torch.equal(sample(dec, z, 50, 3, eps), sample(dec, z, 50, 3, eps, realism=0.3))


def test_stage3_decoder_round_trips_through_the_store(tmp_path):
    torch.manual_seed(5)
    dec = DiffusionDecoder(TINY_R).eval()
    _randomise(dec, 6)
    dec = dec.half().float()  # the store keeps float16
    save_decoder(dec, tmp_path, {"default_realism": 0.5})
    load_decoder.cache_clear()
    loaded, cfg = load_decoder(str(tmp_path))
    assert loaded.cfg == TINY_R and cfg["default_realism"] == 0.5
    for k, v in dec.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_a_grown_generator_decodes_as_before_and_round_trips_through_the_store(tmp_path):
    """--grow-mid: the appended denoiser blocks start as the identity, the config records their
    count, and the store rebuilds the larger decoder with strict keys."""
    from ulic.train.train_realism import grown

    torch.manual_seed(11)
    dec = DiffusionDecoder(TINY_R).eval()
    _randomise(dec, 12)
    big = grown(dec, 3).eval()
    assert len(big.denoiser.mid) == len(dec.denoiser.mid) + 3 == big.cfg.mid_blocks
    z, eps = torch.randn(1, 32, 8, 8), torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        assert torch.allclose(sample(big, z, 100, 2, eps, 0.7), sample(dec, z, 100, 2, eps, 0.7), atol=1e-6)
    _randomise(big.denoiser.mid[-1], 13)  # the new blocks are trainable capacity, read by decoding
    with torch.no_grad():
        assert not torch.allclose(sample(big, z, 100, 2, eps, 0.7), sample(dec, z, 100, 2, eps, 0.7), atol=1e-4)
    big = big.half().float()
    save_decoder(big, tmp_path, {"default_realism": 1.0})
    load_decoder.cache_clear()
    loaded, _ = load_decoder(str(tmp_path))
    assert loaded.cfg == big.cfg and len(loaded.denoiser.mid) == big.cfg.mid_blocks
    assert grown(dec, 0) is dec


def test_sample_is_differentiable_through_all_steps():
    torch.manual_seed(7)
    dec = DiffusionDecoder(TINY_R)
    _randomise(dec.denoiser, 8)
    z = torch.randn(2, 32, 8, 8)
    out = dec.pixel(sample(dec, z, 200, 3, torch.randn_like(z), torch.tensor([0.2, 0.9])), torch.tensor([0.2, 0.9]))
    out.mean().backward()
    assert dec.drm.head.weight.grad is not None and dec.pixel.layers[1].weight.grad.abs().sum() > 0


def test_discriminator_scores_patches_and_hinge_losses():
    torch.manual_seed(9)
    d = PatchDiscriminator()
    img, z = torch.rand(2, 3, 64, 64), torch.randn(2, 32, 8, 8)
    logits = d(img, z)
    assert logits.shape[:2] == (2, 1) and logits.shape[2] >= 4
    assert float(d_hinge(torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), -2.0))) == 0.0
    assert g_hinge(torch.ones(3, 1, 2, 2)).tolist() == [-1.0, -1.0, -1.0]


def test_projected_critic_judges_frozen_features_and_holds_only_its_heads():
    """One patch map per VGG16 tap; the borrowed feature network is neither in the critic's weights
    nor moved by its gradients; the tap scales are set once, from the first batch; several maps
    count equally in the hinge losses."""
    from ulic.evaluation.lpips import LPIPS

    torch.manual_seed(3)
    vgg = LPIPS("vgg")
    d = ProjectedDiscriminator(vgg)
    img, z = torch.rand(4, 3, 64, 64), torch.randn(4, 32, 8, 8)
    logits = d(img, z, shift=(2, 1))
    assert [x.shape for x in logits] == [(4, 1, 16, 16), (4, 1, 8, 8), (4, 1, 4, 4)]
    assert not any(k.startswith(("_vgg", "net.", "lins")) for k in d.state_dict()) and "tap_scale" in d.state_dict()
    scale = d.tap_scale.clone()
    assert bool((scale > 0).all())
    d(img * 0.5, z)
    assert torch.equal(d.tap_scale, scale)  # set once
    other = ProjectedDiscriminator(vgg)
    other(img * 0.5, z)
    other.load_state_dict(d.state_dict())
    other(img * 0.25, z)
    assert torch.equal(other.tap_scale, scale)  # loaded scales are kept
    fresh = ProjectedDiscriminator(vgg)
    fresh.load_state_dict({**d.state_dict(), "tap_scale": torch.zeros(3)})
    fresh(img, z)
    rms = torch.stack([f.pow(2).mean().sqrt() for f in vgg.features(img)[1:4]])
    assert torch.allclose(fresh.tap_scale, rms)  # zeros loaded: set from the next batch
    with torch.no_grad():  # taps handed over (as in training, from LPIPS.compare): the same logits
        d.eval()  # (spectral norm's power iteration steps only in training mode)
        _, taps, _ = vgg.compare(img, img)
        again = d(img, z, taps=taps)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(again, d(img, z), strict=True))
        d.train()
    with pytest.raises(ValueError, match="shift"):
        d(img, z, shift=(1, 0), taps=taps)
    real, fake = halves(logits, 2)
    d_hinge(real, fake).backward()
    assert all(p.grad is None for p in vgg.parameters())
    assert d.judges[0][0].parametrizations.weight.original.grad is not None
    maps = [torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 4, 4), -1.0)]
    assert g_hinge(maps).tolist() == [-0.5]  # (-2 + 1) / 2
    assert float(d_hinge(maps, [torch.full((1, 1, 2, 2), -2.0), torch.full((1, 1, 4, 4), 0.0)])) == 1.5  # (0 + 3) / 2


@pytest.mark.parametrize("part", ["all", "latent", "pixel"])
def test_train_parts_decide_what_the_optimiser_moves(part):
    """--train (the trainable-parts ablation): the optimiser holds exactly the named parts, one
    step moves them and leaves every other weight bit-identical."""
    from ulic.train.train_realism import TRAIN_PARTS, optimisers, parse

    torch.manual_seed(0)
    gen, disc = DiffusionDecoder(TINY_R), PatchDiscriminator(widths=(8, 8))
    args = parse(["--run", "unused", "--crops", "unused", "--train", part, "--lr", "0.01", "--lr-pixel", "0.01"])
    opt_g, _ = optimisers(gen, disc, args)
    before = {n: p.detach().clone() for n, p in gen.named_parameters()}
    held = {id(p) for g in opt_g.param_groups for p in g["params"]}
    named = dict(gen.named_parameters())
    assert held == {id(p) for n, p in named.items() if n.startswith(TRAIN_PARTS[part])}
    out = sample(gen, torch.randn(1, 32, 4, 4), 100, 2, torch.randn(1, 32, 4, 4), torch.ones(1))
    assert gen.pixel is not None
    (gen.pixel(out, torch.ones(1)).square().mean() + out.square().mean()).backward()
    opt_g.step()
    for n, p in named.items():
        assert torch.equal(p, before[n]) != (id(p) in held and p.grad is not None and bool(p.grad.any())), n


SHIPPED = "shipped"


def tiny_crops(path, vocabulary: tuple[int, int] | str | None = SHIPPED) -> None:
    """A crop cache of 4 random 128-px crops (2 of them also as validation) with their latents
    and random concept maps of `vocabulary` (k, id): by default the shipped model's (its decoder
    reads them); None: no maps."""
    from safetensors.torch import save_file

    from ulic.vae.weights import load_vae

    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(4, 3, 128, 128, generator=g) * 255).to(torch.uint8)  # latents: multiples of 16
    with torch.no_grad():
        latents = load_vae().encoder(pixels.float() / 255).half().contiguous()
    t = {"pixels": pixels, "latents": latents, "val_pixels": pixels[:2].clone(), "val_latents": latents[:2].clone()}
    meta = {}
    if vocabulary == SHIPPED:
        from ulic.model_store import load_model, load_semantics

        sem = load_semantics(str(load_model().folder))
        assert sem is not None
        vocabulary = (sem.k, sem.vocabulary_id)
    if isinstance(vocabulary, tuple):
        t["concepts"] = torch.randint(0, vocabulary[0], (4, 16, 16), generator=g).to(torch.uint8)
        t["val_concepts"] = t["concepts"][:2].clone()
        meta["vocabulary_id"] = str(vocabulary[1])
    save_file(t, str(path), metadata=meta)


TINY_RUN = ["--batch", "2", "--k", "2", "--gan-start", "0", "--gan-ramp", "1", "--ckpt-every", "1", "--bf16", "off"]
TINY_RUN += ["--w-grid", "8"]  # the lattice term too


@needs_vae
def test_stage3_training_steps_checkpoint_and_resume(tmp_path):
    """Two steps on a tiny crop cache from the shipped model, then a resume to step 3."""
    from ulic.train.train_realism import main

    crops = tmp_path / "crops.safetensors"
    tiny_crops(crops)
    args = ["--crops", str(crops), "--run", str(tmp_path / "run"), "--val-every", "100", *TINY_RUN]
    assert main(args + ["--steps", "2"]) == 0
    assert main(args + ["--steps", "3"]) == 0
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 3 and "val_psnr_q40_r1" in json.loads(lines[0])
    assert math.isfinite(json.loads(lines[0])["val_grid_q40_r1"])
    assert all(math.isfinite(json.loads(line).get("lattice", 0.0)) for line in lines)


@needs_vae
def test_stage3_training_with_the_projected_critic_checkpoints_its_heads_only(tmp_path):
    """--critic-kind projected: steps, a checkpoint whose critic is the heads (no VGG16 copy) and
    a resume; a patch critic's file does not load into it."""
    from safetensors.torch import load_file

    from ulic.train.train_realism import main

    crops = tmp_path / "crops.safetensors"
    tiny_crops(crops)
    args = ["--crops", str(crops), "--run", str(tmp_path / "run"), "--val-every", "100", *TINY_RUN]
    args += ["--critic-kind", "projected", "--d-shift", "3", "--log-every", "1"]
    assert main(args + ["--steps", "1"]) == 0
    assert main(args + ["--steps", "2"]) == 0
    saved = load_file(str(tmp_path / "run" / "checkpoint.safetensors"))
    disc = {k for k in saved if k.startswith("disc.")}
    heads = ("disc.heads.", "disc.judges.", "disc.cond.", "disc.tap_scale")
    assert "disc.tap_scale" in disc and all(k.startswith(heads) for k in disc)
    assert float(saved["disc.tap_scale"].min()) > 0
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss_d"] for line in lines if "loss_d" in json.loads(line)]
    assert json.loads(lines[-1])["step"] == 2 and len(losses) == 2 and all(map(math.isfinite, losses))
    patch = tmp_path / "patch"
    assert main(["--crops", str(crops), "--run", str(patch), "--val-every", "100", *TINY_RUN, "--steps", "1"]) == 0
    with pytest.raises(SystemExit, match="not a stage-3 critic"):
        other = [*args[:3], str(tmp_path / "other"), *args[4:], "--steps", "1"]
        main([*other, "--critic", str(patch / "checkpoint.safetensors")])


@needs_vae
def test_stage3_training_under_torchrun_keeps_ranks_identical(tmp_path):
    """2 CPU processes (gloo): the crops are split between the ranks exactly once, and after the
    steps both ranks hold the same generator weights (DDP averaged their gradients)."""
    import os
    import subprocess
    import sys

    crops = tmp_path / "crops.safetensors"
    tiny_crops(crops)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "ulic.train.train_realism", "--crops", str(crops), "--run-dir", str(run), "--steps", "2"]
    cmd += ["--val-every", "100", "--device", "cpu", *TINY_RUN]
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((run / "ranks.json").read_text())
    assert doc["world"] == 2 and sorted(doc["shards"][0] + doc["shards"][1]) == [0, 1, 2, 3]
    assert doc["weights_sha256"][0] == doc["weights_sha256"][1]
    assert json.loads((run / "log.jsonl").read_text().splitlines()[-1])["step"] == 2


@needs_vae
def test_a_new_run_can_start_its_critic_from_an_earlier_runs(tmp_path):
    """export --critic-of writes the critic alone (float16); train_realism --critic starts a new
    run's critic from it (with lr 0 its weights stay those of the file); a file without one is
    refused in one line."""
    from safetensors.torch import load_file

    from ulic.train.export import main as export_main
    from ulic.train.train_realism import main

    crops = tmp_path / "crops.safetensors"
    tiny_crops(crops)
    base = ["--crops", str(crops), "--val-every", "100", *TINY_RUN, "--steps", "1"]
    assert main(["--run", str(tmp_path / "a"), *base]) == 0
    critic = tmp_path / "critic.safetensors"
    assert export_main(["--critic-of", str(tmp_path / "a" / "checkpoint.safetensors"), "--out", str(critic)]) == 0
    saved = load_file(str(critic))
    assert saved and all(k.startswith("disc.") and v.dtype == torch.float16 for k, v in saved.items())
    assert main(["--run", str(tmp_path / "b"), *base, "--critic", str(critic), "--lr-d", "0"]) == 0
    after = load_file(str(tmp_path / "b" / "checkpoint.safetensors"))
    weights = [k for k in saved if k.endswith(".original")]
    assert weights and all(torch.equal(after[k], saved[k].float()) for k in weights)
    with pytest.raises(SystemExit, match="not a stage-3 critic"):
        main(["--run", str(tmp_path / "c"), *base, "--critic", str(crops)])


@needs_vae
def test_critic_warm_up_moves_the_critic_alone_and_needs_no_maps_when_all_samples_are_none(tmp_path):
    """--d-warmup 2: after two steps the generator's weights are still the shipped decoder's and
    the projected critic's heads have moved; a third step then trains the generator. With
    --concept-drop 1 the concept-reading decoder trains on crops without concept maps. Validation
    is skipped inside the warm-up, where the generator has not moved."""
    from safetensors.torch import load_file

    from ulic.model_store import load_decoder, load_model
    from ulic.train.train_realism import main

    crops = tmp_path / "crops.safetensors"
    tiny_crops(crops, vocabulary=None)
    args = ["--crops", str(crops), "--run", str(tmp_path / "run"), "--val-every", "1", *TINY_RUN]
    args += ["--critic-kind", "projected", "--d-warmup", "2", "--concept-drop", "1", "--seed", "3"]
    loaded = load_decoder(str(load_model().folder))
    assert loaded is not None and loaded[0].cfg.concepts  # the shipped decoder reads concept maps
    shipped = loaded[0].state_dict()
    assert main(args + ["--steps", "2"]) == 0
    saved = load_file(str(tmp_path / "run" / "checkpoint.safetensors"))
    gen = {k[4:]: v for k, v in saved.items() if k.startswith("gen.")}
    assert gen.keys() == shipped.keys() and all(torch.equal(gen[k], shipped[k].float()) for k in gen)
    assert main(args + ["--steps", "3"]) == 0
    moved = load_file(str(tmp_path / "run" / "checkpoint.safetensors"))
    assert any(not torch.equal(moved[f"gen.{k}"], shipped[k].float()) for k in shipped)
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    validated = [r["step"] for r in records if any(k.startswith("val_") for k in r)]
    assert validated == [0, 2, 3]  # not step 1, inside the warm-up; step 2 ends the first run
    heads = [k for k in saved if k.startswith("disc.") and "weight" in k]
    fresh = tmp_path / "fresh"  # the same seed and one critic-less step: the critic as initialised
    assert main([*args[:3], str(fresh), *args[4:], "--d-warmup", "0", "--lr-d", "0", "--steps", "1"]) == 0
    init = load_file(str(fresh / "checkpoint.safetensors"))
    assert heads and any(not torch.equal(saved[k], init[k]) for k in heads)


def test_moving_average_update_is_the_stated_blend():
    """ema <- d * ema + (1 - d) * gen for every parameter; buffers are copied."""
    from ulic.train.train_realism import ema_update

    gen, ema = DiffusionDecoder(TINY), DiffusionDecoder(TINY)
    _randomise(gen, 1)
    _randomise(ema, 2)
    gen.t_start.fill_(123)
    before = [p.clone() for p in ema.parameters()]
    ema_update(ema, gen, 0.75)
    for b, pe, p in zip(before, ema.parameters(), gen.parameters(), strict=True):
        torch.testing.assert_close(pe, 0.75 * b + 0.25 * p, rtol=1e-6, atol=1e-7)
    assert torch.equal(ema.t_start, gen.t_start)


@needs_vae
def test_a_run_resumed_with_ema_averages_from_the_loaded_weights_and_exports_them(tmp_path):
    """A step without --ema, then one with --ema 0.5: the average starts from the resumed
    generator, so it ends halfway between the weights of steps 1 and 2; it is validated beside
    them (`*_ema`), and `export --ema` ships it (a checkpoint without one is refused)."""
    from safetensors.torch import load_file

    from ulic.train.export import export_realism
    from ulic.train.train_realism import main

    crops = tmp_path / "crops.safetensors"
    tiny_crops(crops)
    run = tmp_path / "run"
    ckpt = run / "checkpoint.safetensors"
    args = ["--crops", str(crops), "--run", str(run), "--val-every", "2", *TINY_RUN]
    assert main(args + ["--steps", "1"]) == 0
    gen1 = {k[4:]: v for k, v in load_file(str(ckpt)).items() if k.startswith("gen.")}
    with pytest.raises(SystemExit, match="no moving average"):
        export_realism(ckpt, tmp_path / "none", 1.0, ema=True)
    assert main(args + ["--steps", "2", "--ema", "0.5"]) == 0
    t = load_file(str(ckpt))
    gen2 = {k[4:]: v for k, v in t.items() if k.startswith("gen.")}
    ema = {k[4:]: v for k, v in t.items() if k.startswith("ema.")}
    assert ema.keys() == gen2.keys()
    moved = [k for k in gen2 if k.endswith("weight") and not torch.equal(gen1[k], gen2[k])]
    assert moved
    for k in moved:
        torch.testing.assert_close(ema[k], 0.5 * (gen1[k] + gen2[k]), rtol=1e-5, atol=1e-6)
    last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 2 and math.isfinite(last["val_lpips_vgg_q40_r1_ema"])
    out = tmp_path / "model"
    cfg = export_realism(ckpt, out, 1.0, ema=True)
    assert cfg["training"]["weights"] == "moving average"
    loaded = load_decoder(str(out))
    assert loaded is not None
    for k, v in loaded[0].state_dict().items():
        torch.testing.assert_close(v.float(), ema[k].float(), rtol=1e-3, atol=1e-3)  # float16 storage


def test_encoder_critic_judges_frozen_taef2_features():
    """--critic-kind projected-vae: one patch map per TAEF2-encoder tap (1/2, 1/4, 1/8 scale); the
    encoder is neither in the critic's weights nor moved, gradients reach the image; LPIPS-VGG taps
    and a VGG16 critic's weights do not fit it."""
    from ulic.evaluation.lpips import LPIPS
    from ulic.train.discriminator import EncoderTaps
    from ulic.vae.taef2 import make_encoder

    torch.manual_seed(4)
    enc = make_encoder().requires_grad_(False)
    d = ProjectedDiscriminator(EncoderTaps(enc))
    img, z = torch.rand(2, 3, 64, 64, requires_grad=True), torch.randn(2, 32, 8, 8)
    logits = d(img, z)
    assert [x.shape for x in logits] == [(2, 1, 16, 16), (2, 1, 8, 8), (2, 1, 4, 4)]
    assert not d.reads_lpips_taps and not any(k.startswith(("_net", "encoder")) for k in d.state_dict())
    g_hinge(logits).sum().backward()
    assert img.grad is not None and float(img.grad.abs().sum()) > 0
    assert all(p.grad is None for p in enc.parameters())
    with pytest.raises(ValueError, match="TAEF2"):
        d(img, z, taps=[torch.zeros(1)] * 5)
    with pytest.raises(RuntimeError):
        d.load_state_dict(ProjectedDiscriminator(LPIPS("vgg")).state_dict())


@needs_vae
def test_stage3_training_with_the_encoder_critic_checkpoints_its_heads_only(tmp_path):
    """A step and a resume with --critic-kind projected-vae; the checkpoint holds the heads only."""
    from safetensors.torch import load_file

    from ulic.train.train_realism import main

    crops = tmp_path / "crops.safetensors"
    tiny_crops(crops)
    args = ["--crops", str(crops), "--run", str(tmp_path / "run"), "--val-every", "100", *TINY_RUN]
    args += ["--critic-kind", "projected-vae", "--log-every", "1"]
    assert main(args + ["--steps", "1"]) == 0
    assert main(args + ["--steps", "2"]) == 0
    saved = load_file(str(tmp_path / "run" / "checkpoint.safetensors"))
    heads = ("disc.heads.", "disc.judges.", "disc.cond.", "disc.tap_scale")
    assert all(k.startswith(heads) for k in saved if k.startswith("disc."))
    assert saved["disc.heads.0.0.parametrizations.weight.original"].shape[1] == 64  # TAEF2's channels
    lines = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss_d"] for line in lines if "loss_d" in json.loads(line)]
    assert len(losses) == 2 and all(map(math.isfinite, losses))
