"""GANomaly (Akçay, Atapour-Abarghouei, Breckon, ACCV 2018): an encoder–decoder–encoder generator
trained adversarially on normal images; novelty is the distance between the code of an image and
the code of its reconstruction. The attention AE's paper names it among the deep methods it
considers (§4, MNIST) and builds on its successor, Skip-GANomaly, but prints no GANomaly row.

Generator: G_E encodes x to z (100 values), G_D decodes x̂ = G_D(z), a second encoder E encodes
ẑ = E(x̂). Discriminator D: a DCGAN encoder to one logit, whose last feature map f is also used
by the generator's adversarial loss. Generator loss (eq. 1–4):
    L = w_adv·‖f(x) − f(x̂)‖₂² + w_con·‖x − x̂‖₁ + w_enc·‖z − ẑ‖₂²,  w_adv = 1, w_con = 50, w_enc = 1,
each a mean over its elements, as the official code computes them; D is trained with the binary
cross-entropy on real and reconstructed images, and re-initialised when its loss falls below 1e-5
(the official code's rule against a collapsed game). Score: A(x) = ‖z − ẑ‖₁ (eq. 5; the official
code uses the mean squared difference, `score_norm="l2"`); the paper then min-max scales A over
the test set, which cannot change an AUROC and which we do not do (a score must not depend on the
other test images).

Settings from the paper and code (samet-akcay/ganomaly): DCGAN networks with 64 base filters for
32×32 inputs (MNIST resized to 32×32), z of 100, Adam lr 2e-4, β1 = 0.5, batch 64, 15 epochs,
inputs in [−1, 1], DCGAN initialisation. The official code keeps the epoch whose AUROC on the
test set is best; we keep the last epoch (label-free), so a gap to its numbers can come from
that choice alone. Components: `enc` (A, headline) and `con`, the L1
reconstruction error (for the maps)."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..neural import NEURAL_DEFAULTS, NeuralDetector, frozen, optimizer_step, real_fake_loss
from ..training import StepContext
from .anogan import DCGANDecoder, DCGANEncoder, dcgan_init, dcgan_initialised, dcgan_input_problem


class GANomalyGenerator(nn.Module):
    """x → (x̂, z, ẑ): encoder G_E, decoder G_D, second encoder E."""

    def __init__(self, channels: int, code: int, width: int) -> None:
        super().__init__()
        self.encoder = DCGANEncoder(channels, code, width)
        self.decoder = DCGANDecoder(channels, code, width)
        self.encoder2 = DCGANEncoder(channels, code, width)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.encoder(x)[0]
        fake = self.decoder(z)
        return fake, z, self.encoder2(fake)[0]


class GANomalyDetector(NeuralDetector):
    name = "ganomaly"
    description = "GANomaly (Akçay et al. ACCV 2018): encoder-decoder-encoder GAN, score ‖z − ẑ‖ between the two codes"
    defaults = {**NEURAL_DEFAULTS, "value_range": (-1.0, 1.0), "code": 100, "width": 64, "lr": 2e-4,
                "betas": (0.5, 0.999), "batch_size": 64, "epochs": 15, "w_adv": 1.0, "w_con": 50.0, "w_enc": 1.0,
                "score_norm": "l1"}
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "mnist": {"channels": 1, "size": 32},  # resized bilinearly, as the official code's isize 32
        "cifar10": {"channels": 3, "size": 32},
    }
    choices = {"score_norm": ("l1", "l2")}
    components = ("enc", "con")
    headline = "enc"
    map_headline = "con"  # the code distance has no pixels: the map is where x̂ misses x

    def input_problem(self) -> str | None:
        return dcgan_input_problem(self.config["size"]) or super().input_problem()

    def build_networks(self) -> dict[str, nn.Module]:
        c, d, w = self.channels, int(self.config["code"]), int(self.config["width"])
        return dcgan_initialised({"G": GANomalyGenerator(c, d, w), "D": DCGANEncoder(c, 1, w)})

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.adam_per_network()

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        x = self.inputs(batch)
        G, D = self.networks["G"], self.networks["D"]
        fake, z, z_rec = G(x)
        with frozen(D):
            adv = F.mse_loss(D(fake)[1], D(x)[1])
            con = (fake - x).abs().mean()
            enc = F.mse_loss(z_rec, z)
            g_loss = self.config["w_adv"] * adv + self.config["w_con"] * con + self.config["w_enc"] * enc
            optimizer_step(self.optimizers["G"], g_loss)
        d_loss = 0.5 * real_fake_loss(D(x)[0].squeeze(1), D(fake.detach())[0].squeeze(1))
        optimizer_step(self.optimizers["D"], d_loss)
        if float(d_loss.detach()) < 1e-5:  # the official code's restart of a discriminator that has won
            dcgan_init(D, generator=ctx.generator)
        return {"g_loss": g_loss.detach(), "adv": adv.detach(), "con": con.detach(), "enc": enc.detach(),
                "d_loss": d_loss.detach()}

    def _parts(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fake, z, z_rec = self.networks["G"](x)
        diff = z - z_rec
        enc = diff.abs().sum(1) if self.config["score_norm"] == "l1" else diff.pow(2).mean(1)
        return {"enc": enc, "con": (fake - x).abs().flatten(1).mean(1)}

    def validation_losses(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._parts(self.inputs(batch))

    def raw_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._parts(x)

    def raw_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"con": (self.networks["G"](x)[0] - x).abs().mean(1)}
