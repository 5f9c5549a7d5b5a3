"""AnoGAN (Schlegl et al., "Unsupervised Anomaly Detection with Generative Adversarial Networks
to Guide Marker Discovery", IPMI 2017): a DCGAN learns the normal images; an image is scored by
how well the generator can imitate it after a search of the latent space — the "GAN" baseline of
LSA Table 1 ("a guided latent space search", their ref. [38]) and the "GAN" and "AnoGAN" rows of
the attention AE's Tables 2–3 and OLED's Table 2.

Test time: starting from z₁, Γ gradient steps on z minimise (eq. 3–5)
    L(z) = (1 − λ)·L_R(z) + λ·L_D(z),   L_R = Σ|x − G(z)|,   L_D = Σ|f(x) − f(G(z))|,
with f the discriminator's last feature map (Schlegl's feature-matching discrimination loss), and
the novelty score is A(x) = (1 − λ)·R(x) + λ·D(x), the two terms at the last z (eq. 6).

Settings from the paper: λ = 0.1, Γ = 500 steps, a DCGAN (Radford et al.) with a uniform latent
prior. What it leaves open, ours: z of 100 dimensions; Akçay's DCGAN for 32×32 images (the one
GANomaly uses; MNIST resized to 32×32 bilinearly); Adam at lr 2e-4, β1 = 0.5, batches of 64, 20
epochs for the GAN (DCGAN's); Adam at lr `search_lr` = 0.3 for the latent search, chosen on
normal images alone (`scripts/anogan_search_lr.py`, results/anogan_search_lr.json: of 0.01, 0.03,
0.1, 0.3 it gives the lowest mean L after 500 steps on held-out normal digits, and L after 100
steps is within 0.05 % of L after 500); one starting
point z₁ drawn from the detector's seed and shared by every image, so an image's score does not
depend on its batch. Seed papers: LSA "GAN" MNIST .866 / CIFAR-10 .592; the attention AE's
"AnoGAN" row .9127 / .6179 (source not given).

The latent search makes scoring slow by design: Γ forward and backward passes of G and D per
image (`scripts/bench.py` measures it). `search_steps` trades it for fidelity, and not a little: a
run with fewer steps than 500 is a different run (its options say so). On test images the search
is still improving after 100 steps (the score 12 % and 31 % above its 500-step value on average for
MNIST digits 0 and 2), and a shorter search leaves novel digits worse imitated, so it *raises* the
AUROC where the GAN would learn to imitate them: digit 2, 1,000 test images, 0.803 after 100 steps
against 0.764 after 500 (`scripts/anogan_search_steps.py`, results/checks/anogan-search-steps/)."""
from __future__ import annotations

from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from ..errors import OneClassError
from ..neural import NEURAL_DEFAULTS, NeuralDetector, fooling_loss, frozen, optimizer_step, real_fake_loss
from ..training import StepContext


def dcgan_init(module: nn.Module, generator: torch.Generator | None = None, *,
               skip_ganomaly: bool = False) -> None:
    """DCGAN's initialisation: convolutions N(0, 0.02), batch-norm scales N(1, 0.02), shifts 0.
    `skip_ganomaly`: Skip-GANomaly's `init_weights("normal")`, which also draws linear weights
    N(0, 0.02) and zeroes the biases of convolutions and linear layers (same draw order)."""
    weighted = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear) if skip_ganomaly else (nn.Conv2d, nn.ConvTranspose2d)
    for m in module.modules():
        if isinstance(m, weighted):
            nn.init.normal_(m.weight, 0.0, 0.02, generator=generator)
            if skip_ganomaly and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02, generator=generator)
            nn.init.zeros_(m.bias)


def dcgan_initialised(nets: dict[str, nn.Module], *, skip_ganomaly: bool = False) -> dict[str, nn.Module]:
    for net in nets.values():
        dcgan_init(net, skip_ganomaly=skip_ganomaly)
    return nets


class DCGANEncoder(nn.Module):
    """32×32 image → `out` values: 4×4/2 convs 64-128-256 (BN from the second, LeakyReLU 0.2) to a
    256×4×4 feature map, then a 4×4 conv to out×1×1 (Akçay's DCGAN encoder; with out = 1 the
    discriminator, whose feature map f(x) is the 256×4×4 one)."""

    def __init__(self, channels: int, out: int, width: int = 64) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * width), nn.LeakyReLU(0.2))
        self.final = nn.Conv2d(4 * width, out, 4, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N×out output, N×256×4×4 features)."""
        f = self.features(x)
        return self.final(f).flatten(1), f


def dcgan_input_problem(size: Any) -> str | None:
    """Why the DCGAN networks here cannot take `size`, or None: 32×32 ↔ 4×4 in three stride-2 steps."""
    return None if size == 32 else "its DCGAN networks take 32×32 images"


class DCGANDecoder(nn.Module):
    """N×d code → 32×32 image in [−1, 1]: a 4×4 transposed conv to 256×4×4, then 4×4/2 transposed
    convs 128-64-C (BN and ReLU between), tanh (Akçay's DCGAN decoder / DCGAN's generator)."""

    def __init__(self, channels: int, code: int, width: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(code, 4 * width, 4, 1, 0, bias=False), nn.BatchNorm2d(4 * width), nn.ReLU(),
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class AnoGANDetector(NeuralDetector):
    name = "anogan"
    description = "AnoGAN (Schlegl et al. IPMI 2017): DCGAN + latent search, score (1−λ)·residual + λ·discrimination"
    defaults = {**NEURAL_DEFAULTS, "value_range": (-1.0, 1.0), "code": 100, "width": 64, "lr": 2e-4,
                "betas": (0.5, 0.999), "batch_size": 64, "epochs": 20, "lam": 0.1, "search_steps": 500,
                "search_lr": 0.3, "score_batch_size": 256}
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "mnist": {"channels": 1, "size": 32},  # resized bilinearly, as GANomaly's code does
        "cifar10": {"channels": 3, "size": 32},
    }
    components = ("a", "residual", "discrimination")
    headline = "a"

    def input_problem(self) -> str | None:
        return dcgan_input_problem(self.config["size"]) or super().input_problem()
    map_headline, map_reduction = "residual", "sum"
    not_exportable = "it scores by a gradient search of the latent space for every image, which an ONNX graph cannot hold"

    def check_config(self) -> None:
        super().check_config()
        if not 0 <= float(self.config["lam"]) <= 1:
            raise OneClassError(f"option lam={self.config['lam']} of method {self.name!r} must lie in [0, 1] "
                                "(the score weighs the residual by 1 − λ and the discrimination by λ)")

    def build_networks(self) -> dict[str, nn.Module]:
        c, d, w = self.channels, int(self.config["code"]), int(self.config["width"])
        return dcgan_initialised({"G": DCGANDecoder(c, d, w), "D": DCGANEncoder(c, 1, w)})

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.adam_per_network()

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        x = self.inputs(batch)
        G, D = self.networks["G"], self.networks["D"]
        z = torch.rand(len(x), int(self.config["code"]), generator=ctx.generator, device=x.device) * 2 - 1
        fake = G(z)
        d_loss = real_fake_loss(D(x)[0].squeeze(1), D(fake.detach())[0].squeeze(1))
        optimizer_step(self.optimizers["D"], d_loss)
        with frozen(D):
            g_loss = fooling_loss(D(fake)[0].squeeze(1))
            optimizer_step(self.optimizers["G"], g_loss)
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    def validation_losses(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        # the latent search is the expensive part of scoring: validation reports D's view only
        # (the kept epoch is the last, as DCGAN's)
        return {"d_real": torch.sigmoid(self.networks["D"](self.inputs(batch))[0].squeeze(1))}

    def _start(self, n: int, device: torch.device) -> torch.Tensor:
        """z₁ for n images: one draw from the seed's uniform prior, the same for every image."""
        g = torch.Generator().manual_seed(self.seed)
        z1 = torch.rand(int(self.config["code"]), generator=g) * 2 - 1
        return z1.to(device).expand(n, -1).clone()

    def search(self, x: torch.Tensor, record_at: Sequence[int] = ()) -> dict[str, Any]:
        """The latent search for a float batch: per image the residual |x − G(z)| (N×C×H×W) and the
        two loss terms R and D at the last z. Each image's z has its own Adam moments (they are
        element-wise), and G and D run in eval mode, so images do not influence one another.
        `record_at`: also the score A after each of those step counts (`a_after`), which is the
        score a search of that many steps gives (the search is deterministic), measured in one pass."""
        G, D = self.networks["G"], self.networks["D"]
        steps = int(self.config["search_steps"])
        a_after = {}
        with torch.inference_mode(False), torch.enable_grad(), frozen(G), frozen(D):
            x = x.clone()  # a normal tensor: the scoring batch was made under inference mode
            f_x = D(x)[1].detach()
            z = self._start(len(x), x.device).requires_grad_(True)
            opt = torch.optim.Adam([z], lr=float(self.config["search_lr"]))
            for step in range(1, steps + 1):
                with self.autocast():  # option `precision`: the search's steps; the score below is FP32
                    loss = self._terms(x, f_x, z)["a"].sum()  # the search minimises the score itself
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step in record_at and step < steps:
                    with torch.no_grad():
                        a_after[step] = self._terms(x, f_x, z)["a"]
            with torch.no_grad():
                out = self._terms(x, f_x, z)
        if steps in record_at:
            a_after[steps] = out["a"]
        return {**out, "a_after": a_after} if record_at else out

    def _terms(self, x: torch.Tensor, f_x: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The residual map and the terms of A(x) = (1 − λ)·R + λ·D at latent codes z: the search's
        loss L(z) per image, and at its last z the score."""
        lam = float(self.config["lam"])
        fake = self.networks["G"](z)
        residual = (x - fake).abs()
        r = residual.flatten(1).sum(1)
        disc = (f_x - self.networks["D"](fake)[1]).abs().flatten(1).sum(1)
        return {"residual_map": residual, "residual": r, "discrimination": disc, "a": (1 - lam) * r + lam * disc}

    def raw_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.search(x)
        return {"a": out["a"], "residual": out["residual"], "discrimination": out["discrimination"]}

    def raw_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"residual": self.search(x)["residual_map"].sum(1)}
