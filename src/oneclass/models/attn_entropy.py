"""Attention + entropy autoencoder (Tian, Guo, Cui, Pan, Chen; MMAsia 2020 and journal version).

Skip-GANomaly (Akçay et al. 2019) with two additions: a CBAM channel-attention module after
every convolution block of the generator G, and an entropy loss on the softmax of G's
bottleneck code. G is Skip-GANomaly's encoder-decoder without its U-Net skip connections by
default: the paper's text describes "a symmetrical denoising auto-encoder", and with the skips
the generator copies its input through the 16×16 features (MNIST mean A 0.696 with them against
0.899 without after only 5 epochs; results/README.md). `skips=True` gives the U-Net.
G is trained as a denoising AE against a DCGAN discriminator D:
    L = λ_adv·L_adv + λ_con·‖x − x̂‖₁ + λ_fea·‖f(x) − f(x̂)‖₂ + λ_inf·(−Σ h log h)   (eq. 6)
Score A = λ·con + (1 − λ)·fea with λ = 0.9 (eq. 7). The paper adds the raw terms and min-max scales
A itself (eq. 8, over the test set; a monotone map, so the AUROC is that of the sum): that is
component `a_raw`, scaled with the validation inliers' statistics (saved with the model) instead of
the test set's. The headline `a` adds the two terms after each is scaled so (the runs before
`a_raw` existed have only this one); the two weigh con and fea differently wherever their raw
ranges differ, and results/README.md sets their AUROCs side by side.
The paper's A is "the novelty score proposed in [AnoGAN] and also employed in [EGBAD]", the one
Skip-GANomaly scores with; Skip-GANomaly's public test code (samet-akcay/skip-ganomaly,
`lib/models/skipganomaly.py`) takes the *squared* pixel error there, not its L1 training loss:
0.9·mean((x − x̂)²) + 0.1·mean((f(x) − f(x̂))²), then min-max over the test set. Components
`con_mse` and `a_mse` are that score's pixel term and that score (scaled like `a_raw`), so the
reading of eq. 7 that code implies is measured beside the paper's text (results/README.md).

Stated choices where the paper is silent: Skip-GANomaly's weights λ_adv = 1, λ_con = 50,
λ_fea = 1; λ_inf = 1; Gaussian input noise σ = 0.1 (in [−1, 1] units); CBAM's ratio R = 16; a
latent code h of 512 values (Skip-GANomaly's bottleneck; option `latent`);
Adam β1 = 0.5 (Skip-GANomaly) with the paper's learning rate 1e-3.

Three options follow Skip-GANomaly's released code (samet-akcay/skip-ganomaly at b33bd55) where
it differs from the DCGAN reading above; the paper, built on it, may have run either:
- `init="dcgan"`: its `init_weights` — convolution and linear weights N(0, 0.02) with zero biases,
  batch-norm scales N(1, 0.02) and zero shifts (default `"torch"`: PyTorch's initialisation).
- `d_features="vector"`: its `BasicDiscriminator` — the 256×4×4 map goes through a 4×4 conv to a
  100-value vector, which is f(x) (the paper's "low-dimension feature loss"), and a 3×3 conv on
  that vector gives the logit (default `"map"`: f(x) is the 256×4×4 map, a 4×4 conv gives the logit).
- `d_loss="skip-ganomaly"`: its `backward_d` — D minimises BCE(real) + BCE(fake) + λ_fea·L_fea
  (D too pulls f(x̂) towards f(x)), and is re-initialised when that loss falls under 1e-5
  (default `"gan"`: ½(BCE(real) + BCE(fake)))."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..neural import (NEURAL_DEFAULTS, NeuralDetector, fooling_loss, frozen, optimizer_step,
                      real_fake_loss)
from ..training import StepContext
from .anogan import dcgan_init, dcgan_initialised


class ChannelAttention(nn.Module):
    """CBAM's channel module (eq. 5): F′ = σ(MLP(AvgPool F) + MLP(MaxPool F)) · F, with one
    MLP C → C/ratio → C shared by both pooled vectors."""

    def __init__(self, channels: int, ratio: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)[:, :, None, None]


def entropy_loss(code: torch.Tensor) -> torch.Tensor:
    """L_inf (eq. 4) per sample: entropy of the softmax over the flattened code."""
    logp = F.log_softmax(code.flatten(1), dim=1)
    return -(logp.exp() * logp).sum(1)


class UNetGenerator(nn.Module):
    """Skip-GANomaly's generator for 32×32 inputs: five 4×4/2 conv stages 64-128-256-512-`latent`
    down to a 1×1 bottleneck of `latent` channels (512 in Skip-GANomaly; the paper gives no length
    for its h) (BN except on the first and the innermost, LeakyReLU 0.2); transposed
    4×4/2 convs back up (BN, ReLU), with `skips` each decoder stage concatenated with the encoder
    features of its resolution (the U-Net); tanh output. Channel attention after every block when `attention`."""

    WIDTHS = (64, 128, 256, 512, 512)

    def __init__(self, channels: int, attention: bool = True, ratio: int = 16, skips: bool = False,
                 latent: int = 512) -> None:
        super().__init__()
        self.skips = skips  # False: a plain symmetric AE (the paper's text describes no skips)
        widths = (*self.WIDTHS[:-1], int(latent))  # the bottleneck h: its length t is unpublished
        att = (lambda c: ChannelAttention(c, ratio)) if attention else (lambda c: nn.Identity())
        self.down = nn.ModuleList()
        c = channels
        for k, w in enumerate(widths):
            layers: list[nn.Module] = [nn.Conv2d(c, w, 4, 2, 1, bias=False)]
            if 0 < k < len(widths) - 1:
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.LeakyReLU(0.2) if k < len(widths) - 1 else nn.ReLU())
            layers.append(att(w))
            self.down.append(nn.Sequential(*layers))
            c = w
        self.up = nn.ModuleList()
        skips = list(reversed(widths[:-1]))  # 512, 256, 128, 64
        for k, w in enumerate(skips):
            c_in = c if k == 0 or not self.skips else c + skips[k - 1]
            self.up.append(nn.Sequential(nn.ConvTranspose2d(c_in, w, 4, 2, 1, bias=False), nn.BatchNorm2d(w),
                                         nn.ReLU(), att(w)))
            c = w
        self.out = nn.ConvTranspose2d(c + (skips[-1] if self.skips else 0), channels, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction x̂ and the bottleneck code h (N×512×1×1)."""
        feats = []
        h = x
        for block in self.down:
            h = block(h)
            feats.append(h)
        code = h
        for k, block in enumerate(self.up):
            h = block(h if k == 0 or not self.skips else torch.cat([h, feats[-1 - k]], 1))
        return torch.tanh(self.out(torch.cat([h, feats[0]], 1) if self.skips else h)), code


class DCGANDiscriminator(nn.Module):
    """4×4/2 convs 64-128-256 (BN from the second, LeakyReLU 0.2) → features f(x) (256×4×4) →
    a 4×4 conv to one logit. With `vector` (Skip-GANomaly's released discriminator): a 4×4 conv
    from the map to a `vector`-value f(x), then a 3×3 conv (padding 1) on it to the logit."""

    def __init__(self, channels: int, vector: int | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(channels, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
            nn.Conv2d(128, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.LeakyReLU(0.2)]
        if vector:
            layers.append(nn.Conv2d(256, vector, 4, 1, 0, bias=False))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(vector, 1, 3, 1, 1, bias=False) if vector else nn.Conv2d(256, 1, 4, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(x)
        return self.classifier(f).flatten(), f


class AttnEntropyDetector(NeuralDetector):
    name = "attn-entropy"
    description = "Attention + entropy AE (Tian et al. MMAsia 2020): Skip-GANomaly with channel attention and latent entropy loss"
    defaults = {**NEURAL_DEFAULTS, "value_range": (-1.0, 1.0), "attention": True, "entropy": True, "ratio": 16, "skips": False, "latent": 512,
                "noise_std": 0.1, "w_adv": 1.0, "w_con": 50.0, "w_fea": 1.0, "w_inf": 1.0, "score_lambda": 0.9,
                "lr": 1e-3, "betas": (0.5, 0.999), "batch_size": 64, "epochs": 15,
                "init": "torch", "d_features": "map", "d_loss": "gan"}
    choices = {"init": ("torch", "dcgan"), "d_features": ("map", "vector"), "d_loss": ("gan", "skip-ganomaly")}
    D_VECTOR = 100  # Skip-GANomaly's nz: the length of its discriminator's feature vector
    presets = {
        "mnist": {"channels": 1, "size": 32},  # MNIST resized to 32×32 bilinearly, as the paper
        "cifar10": {"channels": 3, "size": 32},
        "coil100": {"channels": 3, "size": 32, "batch_size": 15},
    }
    added_later = {**NeuralDetector.added_later, "latent": 512, "init": "torch", "d_features": "map", "d_loss": "gan"}
    components = ("con", "fea", "a", "a_raw", "con_mse", "a_mse")
    headline = "a"
    normalised = ("con", "fea", "a_raw", "con_mse", "a_mse")
    map_headline = "con"  # the feature term lives in D's feature space, not on pixels

    def input_problem(self) -> str | None:
        size = self.config["size"]
        if isinstance(size, int) and (size < 32 or size % 32):  # five 4×4 stride-2 layers down to 1×1
            return "its networks take square images whose side is a multiple of 32"
        return super().input_problem()

    def build_networks(self) -> dict[str, nn.Module]:
        c = self.channels
        nets = {"G": UNetGenerator(c, bool(self.config["attention"]), int(self.config["ratio"]),
                                   bool(self.config["skips"]), int(self.config["latent"])),
                "D": DCGANDiscriminator(c, self.D_VECTOR if self.config["d_features"] == "vector" else None)}
        return dcgan_initialised(nets, skip_ganomaly=True) if self.config["init"] == "dcgan" else nets

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.adam_per_network()

    def g_step(self, x: torch.Tensor, x_noisy: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        G, D = self.networks["G"], self.networks["D"]
        fake, code = G(x_noisy)
        with frozen(D):
            fake_logit, f_fake = D(fake)
            _, f_real = D(x)
            adv = fooling_loss(fake_logit)
            con = (fake - x).abs().mean()
            fea = (f_fake - f_real).pow(2).mean()
            parts = {"adv": adv, "con": con, "fea": fea}
            total = self.config["w_adv"] * adv + self.config["w_con"] * con + self.config["w_fea"] * fea
            if self.config["entropy"]:
                parts["inf"] = entropy_loss(code).mean()
                total = total + self.config["w_inf"] * parts["inf"]
            optimizer_step(self.optimizers["G"], total)
        return fake.detach(), {k: v.detach() for k, v in parts.items()}

    def d_step(self, x: torch.Tensor, fake: torch.Tensor, ctx: StepContext) -> torch.Tensor:
        D = self.networks["D"]
        real_logit, f_real = D(x)
        fake_logit, f_fake = D(fake)
        if self.config["d_loss"] == "skip-ganomaly":
            loss = real_fake_loss(real_logit, fake_logit) + self.config["w_fea"] * (f_fake - f_real).pow(2).mean()
        else:
            loss = 0.5 * real_fake_loss(real_logit, fake_logit)
        optimizer_step(self.optimizers["D"], loss)
        if self.config["d_loss"] == "skip-ganomaly" and float(loss.detach()) < 1e-5:
            dcgan_init(D, ctx.generator, skip_ganomaly=True)  # the code's restart of a discriminator that has won
        return loss.detach()

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        x = self.inputs(batch)
        x_noisy = x + self.config["noise_std"] * torch.randn(x.shape, generator=ctx.generator, device=x.device)
        fake, parts = self.g_step(x, x_noisy)
        d_loss = self.d_step(x, fake, ctx)
        return {"d_loss": d_loss, **parts}

    def _parts(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fake, code = self.networks["G"](x)
        _, f_real = self.networks["D"](x)
        _, f_fake = self.networks["D"](fake)
        residual = (fake - x).flatten(1)
        return {"con": residual.abs().mean(1), "con_mse": residual.pow(2).mean(1),
                "fea": (f_fake - f_real).pow(2).flatten(1).mean(1), "inf": entropy_loss(code)}

    def validation_losses(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = self._parts(self.inputs(batch))
        del parts["con_mse"]  # a score term, not a training loss: the logs keep the losses of eq. 6
        return parts

    def raw_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"con": (self.networks["G"](x)[0] - x).abs().mean(1)}

    def raw_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = self._parts(x)
        lam = float(self.config["score_lambda"])
        return {"con": parts["con"], "fea": parts["fea"], "a_raw": lam * parts["con"] + (1.0 - lam) * parts["fea"],
                "con_mse": parts["con_mse"], "a_mse": lam * parts["con_mse"] + (1.0 - lam) * parts["fea"]}

    def combine(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        lam = float(self.config["score_lambda"])
        scores["a"] = lam * scores["con"] + (1.0 - lam) * scores["fea"]
        return scores
