"""A patch discriminator conditioned on the compressed latent (HiFiC / MS-ILLM style), and
the hinge losses of stage 3.

    image (B, 3, H, W) in [0, 1], z_c (B, 32, H/8, W/8)
      z_c --conv 3x3--> (B, COND, H/8, W/8) --nearest x8--> (B, COND, H, W)
      cat(image * 2 - 1, cond) --4x4 s2: 64, 128, 256 --> 4x4 s1: 512 --> 4x4 s1: 1
      logits (B, 1, ~H/8, ~W/8): one real/fake score per patch
Spectral norm on every convolution, LeakyReLU 0.2. Conditioning on z_c makes the critic ask
"is this a natural image *for this code*", so the generator cannot win by drifting from it.

The projected critic (Projected GAN, Sauer et al. 2021) judges frozen pretrained features instead
of pixels, which needs far less data and fewer steps to become useful:

    image --frozen VGG16 (LPIPS' weights)--> relu2_2 (B, 128, H/2, W/2), relu3_3 (B, 256, H/4, W/4),
                                             relu4_3 (B, 512, H/8, W/8)
    per tap: / its scale --1x1: PROJ--> cat(cond(z_c) at the tap's size) --4x4 s2: 2 PROJ--> 3x3: 1
      logits per tap (B, 1, ~h/2, ~w/2); the hinge losses average the taps
Only the heads learn; the feature network is borrowed (the LPIPS-VGG module of the loss) and is
not part of the critic's weights. The same heads can judge the frozen TAEF2 encoder's features
instead (`EncoderTaps`: 64 channels after its blocks at 1/2, 1/4 and 1/8 scale), a network that
is neither in the perceptual loss nor an evaluation network. In training a VGG16 critic reads the
taps the perceptual loss has just computed (`LPIPS.compare`), so it costs the heads alone, not
another VGG16 pass. Each tap's scale is set once from the first batch it sees (the RMS of its
features), so the heads start on inputs of unit size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm

from ulic.evaluation.lpips import LPIPS
from ulic.vae.taef2 import LATENT_CHANNELS, SCALE

COND = 12  # conditioning channels from the latent
WIDTHS = (64, 128, 256, 512)
PROJ = 64  # channels each tap is projected to in the projected critic
PROJECTED_TAPS = (1, 2, 3)  # of LPIPS-VGG's five: relu2_2, relu3_3, relu4_3
TAP_CHANNELS = (64, 128, 256, 512, 512)

Logits = torch.Tensor | list[torch.Tensor]  # one patch map, or one per tap (projected critic)


class PatchDiscriminator(nn.Module):
    def __init__(self, cond: int = COND, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        self.cond = spectral_norm(nn.Conv2d(LATENT_CHANNELS, cond, 3, padding=1))
        layers: list[nn.Module] = []
        n_in = 3 + cond
        for i, n in enumerate(widths):
            stride = 2 if i < len(widths) - 1 else 1
            layers += [spectral_norm(nn.Conv2d(n_in, n, 4, stride=stride, padding=1)), nn.LeakyReLU(0.2)]
            n_in = n
        layers.append(spectral_norm(nn.Conv2d(n_in, 1, 4, padding=1)))
        self.body = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, z_c: torch.Tensor, shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """Patch logits; `shift` = (dy, dx) moves image and condition together against the
        critic's stride grid (edge pixels repeated), a translation augmentation."""
        c = F.interpolate(F.leaky_relu(self.cond(z_c), 0.2), scale_factor=SCALE, mode="nearest")
        x = torch.cat([image * 2 - 1, c], 1)  # (B, 3 + COND, H, W)
        dy, dx = shift
        if dy or dx:
            x = F.pad(x, (dx, 0, dy, 0), mode="replicate")[..., : image.shape[2], : image.shape[3]]
        return self.body(x)  # (B, 1, ~H/8, ~W/8)


class EncoderTaps:
    """The frozen TAEF2 encoder's features after its blocks at 1/2, 1/4 and 1/8 scale:
    image (B, 3, H, W) in [0, 1] -> [(B, 64, H/2, W/2), (B, 64, H/4, W/4), (B, 64, H/8, W/8)]."""

    ENDS = (6, 10, 14)  # encoder[:6] ends after the blocks at 1/2, [6:10] at 1/4, [10:14] at 1/8
    channels = (64, 64, 64)

    def __init__(self, encoder: nn.Sequential):
        self.encoder = encoder

    def __call__(self, image: torch.Tensor) -> list[torch.Tensor]:
        taps, h, start = [], image, 0
        for end in self.ENDS:
            h = self.encoder[start:end](h)
            taps.append(h)
            start = end
        return taps


class ProjectedDiscriminator(nn.Module):
    """A critic on frozen features, conditioned on z_c: the taps PROJECTED_TAPS of the LPIPS-VGG
    network `net`, or the TAEF2 encoder's (`net` an `EncoderTaps`)."""

    tap_scale: torch.Tensor

    def __init__(self, net: LPIPS | EncoderTaps, cond: int = COND, proj: int = PROJ, bf16: bool = False):
        super().__init__()
        self._net = (net,)  # borrowed and frozen: not a submodule, so not in the critic's weights
        self.reads_lpips_taps = isinstance(net, LPIPS)  # training hands it the loss's VGG16 taps
        channels = tuple(TAP_CHANNELS[t] for t in PROJECTED_TAPS) if isinstance(net, LPIPS) else net.channels
        self.bf16 = bf16
        self.cond = spectral_norm(nn.Conv2d(LATENT_CHANNELS, cond, 3, padding=1))
        self.heads = nn.ModuleList()
        for n in channels:
            self.heads.append(
                nn.Sequential(
                    spectral_norm(nn.Conv2d(n, proj, 1)),
                    nn.LeakyReLU(0.2),
                )
            )
        self.judges = nn.ModuleList(
            nn.Sequential(
                spectral_norm(nn.Conv2d(proj + cond, 2 * proj, 4, stride=2, padding=1)),
                nn.LeakyReLU(0.2),
                spectral_norm(nn.Conv2d(2 * proj, 1, 3, padding=1)),
            )
            for _ in channels
        )
        self.register_buffer("tap_scale", torch.zeros(len(channels)))  # 0: not yet set
        self._scale_checked = False

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._scale_checked = False  # loaded scales are read again (zeros: set from the next batch)

    def forward(
        self,
        image: torch.Tensor,
        z_c: torch.Tensor,
        shift: tuple[int, int] = (0, 0),
        taps: list[torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """Patch logits per tap. `taps`: the image's five LPIPS-VGG taps when the caller has them
        already (`LPIPS.compare`; the network is then not run; VGG16 critics only). `shift` moves
        the image against the feature network's pooling grid (edge pixels repeated; only when the
        taps are not given); the condition stays (a few pixels at 1/2 to 1/8 scale)."""
        dy, dx = shift
        if taps is None:
            if dy or dx:
                image = F.pad(image, (dx, 0, dy, 0), mode="replicate")[..., : image.shape[2], : image.shape[3]]
            with torch.autocast(image.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                feats = self._features(image)
        elif dy or dx:
            raise ValueError("a shift moves the image, not taps computed from it")
        elif not self.reads_lpips_taps:
            raise ValueError("this critic reads the TAEF2 encoder's features, not LPIPS-VGG taps")
        else:
            feats = _projected(taps)
        feats = [f.float() for f in feats]
        if not self._scale_checked:  # read the buffer once (a loaded one is kept), not every step
            if not bool((self.tap_scale > 0).all()):
                with torch.no_grad():
                    self.tap_scale.copy_(torch.stack([f.pow(2).mean().sqrt().clamp_min(1e-6) for f in feats]))
            self._scale_checked = True
        c = F.leaky_relu(self.cond(z_c), 0.2)  # (B, COND, H/8, W/8)
        out = []
        for f, scale, head, judge in zip(feats, self.tap_scale, self.heads, self.judges, strict=True):
            h = head(f / scale)  # (B, PROJ, h, w)
            ch = F.interpolate(c, size=h.shape[2:], mode="nearest")
            out.append(judge(torch.cat([h, ch], 1)))  # (B, 1, ~h/2, ~w/2)
        return out

    def _features(self, image: torch.Tensor) -> list[torch.Tensor]:
        net = self._net[0]
        return _projected(net.features(image, max(PROJECTED_TAPS) + 1)) if isinstance(net, LPIPS) else net(image)


def _projected(vgg_taps: list[torch.Tensor]) -> list[torch.Tensor]:
    """The PROJECTED_TAPS of LPIPS-VGG's five."""
    return [vgg_taps[t] for t in PROJECTED_TAPS]


def halves(logits: Logits, n: int) -> tuple[Logits, Logits]:
    """Split a critic's answer on cat([first n, rest]) into the two parts."""
    if isinstance(logits, torch.Tensor):
        return logits[:n], logits[n:]
    return [x[:n] for x in logits], [x[n:] for x in logits]


def _each(logits: Logits) -> list[torch.Tensor]:
    return [logits] if isinstance(logits, torch.Tensor) else logits


def d_hinge(real_logits: Logits, fake_logits: Logits) -> torch.Tensor:
    """Discriminator hinge loss (scalar); several maps (one per tap) count equally."""
    pairs = zip(_each(real_logits), _each(fake_logits), strict=True)
    return torch.stack([F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in pairs]).mean()


def g_hinge(fake_logits: Logits) -> torch.Tensor:
    """Generator hinge loss per sample (B,); several maps (one per tap) count equally."""
    return -torch.stack([x.mean((1, 2, 3)) for x in _each(fake_logits)]).mean(0)
