"""Training and export smoke tests on tiny fake latents: steps run, checkpoints resume, export loads."""

import json

import torch
from safetensors.torch import save_file

from ulic.model_store import load_model
from ulic.train import export, train_codec

TINY_JSON = '{"n": 16, "n_full": 8, "m": 8, "cz": 8, "n_hyper": 16}'


def fake_latents(path):
    g = torch.Generator().manual_seed(0)
    d = {f"bsds500/val_{i}.jpg@0": (torch.randn(32, 40, 40, generator=g) * 0.85).half() for i in range(2)}
    d.update({f"bsds500/train_{i}.jpg@0": (torch.randn(32, 40, 48, generator=g) * 0.85).half() for i in range(4)})
    save_file(d, str(path))


def tiny_run(lat, run, *extra: str) -> list[str]:
    """train_codec arguments for one step of the tiny codec on the fake latents."""
    return [*f"--latents {lat} --run {run} --batch 2 --steps 1 --n-val 2".split(), "--config", TINY_JSON, *extra]


def test_train_resume_export(tmp_path):
    lat = tmp_path / "lat.safetensors"
    fake_latents(lat)
    run = tmp_path / "run"
    common = tiny_run(lat, run, "--val-every", "2", "--ckpt-every", "2")
    assert train_codec.main(common + ["--steps", "2"]) == 0
    assert train_codec.main(common + ["--steps", "4"]) == 0  # resumes at step 2
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4] and "val_q1_bpp" in log[-1]
    out = tmp_path / "model"
    cfg = export.export(run / "checkpoint.safetensors", lat, out, "tiny", n_calib=2)
    assert cfg["training"]["steps"] == 4
    m = load_model(str(out))
    x = torch.randn(1, 32, 16, 16) * 0.85
    data, _ = m.codec.compress(x, 200)
    assert m.codec.decompress(data, (16, 16), 200).shape == x.shape


def test_refit_prior_lowers_z_bits_and_init_from_model_folder(tmp_path):
    from ulic.codec.model import LatentCodec
    from ulic.train import refit_prior

    lat = tmp_path / "lat.safetensors"
    fake_latents(lat)
    run = tmp_path / "run"
    assert train_codec.main(tiny_run(lat, run)) == 0
    folder = tmp_path / "model"
    export.export(run / "checkpoint.safetensors", lat, folder, "tiny", n_calib=2)
    x = torch.randn(2, 32, 32, 32, generator=torch.Generator().manual_seed(1)) * 0.85

    def bits(codec):
        with torch.no_grad():
            z = torch.round(codec.h_a(codec.g_a(x)))
            return float(-codec.prior.likelihood(z).log2().sum())

    before = bits(load_model(str(folder)).codec)
    out = tmp_path / "refit.safetensors"
    assert (
        refit_prior.main(
            [
                "--init",
                str(folder),
                "--latents",
                str(lat),
                "--out",
                str(out),
                "--steps",
                "40",
                "--batch",
                "4",
                "--crop",
                "32",
                "--lr",
                "0.05",
            ]
        )
        == 0
    )
    refit = LatentCodec(load_model(str(folder)).codec.cfg)
    train_codec.load_init_weights(out, refit)
    assert bits(refit) < 0.9 * before
    ref = load_model(str(folder)).codec.state_dict()  # only the prior moved
    assert all(torch.equal(v, ref[k]) for k, v in refit.state_dict().items() if not k.startswith("prior."))
    out2 = tmp_path / "refit2.safetensors"  # from a checkpoint: its recorded (tiny) architecture
    assert (
        refit_prior.main(
            [
                "--init",
                str(run / "checkpoint.safetensors"),
                "--latents",
                str(lat),
                "--out",
                str(out2),
                "--steps",
                "1",
                "--batch",
                "2",
                "--crop",
                "32",
            ]
        )
        == 0
    )
    for init in (folder, out):  # training starts from a shipped folder or a checkpoint
        run2 = tmp_path / f"run_{init.name}"
        assert train_codec.main(tiny_run(lat, run2, "--init", str(init), "--fast-lr-scale", "10")) == 0
