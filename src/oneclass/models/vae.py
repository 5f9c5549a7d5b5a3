"""VAE: a variational autoencoder (Kingma & Welling, ICLR 2014) scored by its negative ELBO —
the VAE baseline of LSA Table 1 ("sharing the same architecture as our model, in which the
Evidence Lower Bound (ELBO) is employed as the score").

Where the settings come from: LSA (§4.1) gives only that sentence; its code release has no VAE.
So the networks are LSA's own encoder and decoder (`oneclass.models.lsa`, MNIST and CIFAR-10
layouts) with the encoder's last layer giving 2·d values (mean and log-variance of a diagonal
Gaussian q(z|x)) instead of d sigmoid codes, a standard normal prior, and a Bernoulli likelihood
whose logits are the decoder's output (the usual choice for images in [0, 1], Kingma & Welling's
own for MNIST). Optimiser, batch size and learning rate are LSA's per preset (supplement Table 2);
one z sample per image in training (the reparameterisation trick).

Seed papers: LSA Table 1 (MNIST .969, CIFAR-10 .586, standard protocol); the attention AE's
Tables 2–3 print other per-class values with means .9696 / .5833; OLED Table 1 .9643 on the
MemAE protocol. None says how many epochs or samples of z.

Scores (higher = more novel): `elbo`, −ELBO = E_q[−log p(x|z)] + KL(q(z|x) ‖ p(z)), its
expectation estimated with `elbo_samples` draws of z; `rec`, −log p(x | z = mean of q), the
deterministic reconstruction term; `kl`, the KL term alone. The draws at scoring time reuse one
fixed set of standard-normal vectors (drawn from the detector's seed and saved with it), so an
image's score does not depend on the batch it is scored in, nor on when it is scored."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..neural import NEURAL_DEFAULTS, NeuralDetector, optimizer_step
from ..training import StepContext
from .lsa import Decoder, Encoder


class GaussianEncoder(nn.Module):
    """LSA's encoder with a linear last layer of 2·d outputs: mean and log-variance of q(z|x)."""

    def __init__(self, arch: str, code_length: int) -> None:
        super().__init__()
        self.net = Encoder(arch, 2 * code_length)
        self.net.fc[-1] = nn.Identity()  # no sigmoid: the mean and log-variance are unbounded
        self.code_length = code_length

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x)
        return h[:, :self.code_length], h[:, self.code_length:]


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag(exp(logvar))) ‖ N(0, I)) per sample: ½ Σ (mean² + σ² − log σ² − 1)."""
    return 0.5 * (mean.pow(2) + logvar.exp() - logvar - 1.0).sum(1)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """−log p(x | logits) per sample, Σ over pixels of the binary cross-entropy (x ∈ [0, 1])."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


class VAEDetector(NeuralDetector):
    name = "vae"
    description = "Variational autoencoder with LSA's architecture, scored by −ELBO (LSA Table 1 baseline)"
    defaults = {**NEURAL_DEFAULTS, "value_range": (0.0, 1.0), "code_length": 64, "elbo_samples": 16,
                "select": "loss"}
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "mnist": {"arch": "mnist", "channels": 1, "size": 28, "lr": 1e-4, "batch_size": 256, "epochs": 30},
        "cifar10": {"arch": "cifar10", "channels": 3, "size": 32, "lr": 1e-3, "batch_size": 256, "epochs": 30},
    }
    choices = {"arch": ("mnist", "cifar10")}
    components = ("elbo", "rec", "kl")
    headline = "elbo"
    map_headline, map_reduction = "rec", "sum"  # the KL term is of the code: it has no pixels

    def build_networks(self) -> dict[str, nn.Module]:
        arch, d = self.config["arch"], int(self.config["code_length"])
        return {"encoder": GaussianEncoder(arch, d), "decoder": Decoder(arch, d)}

    def _scoring_noise(self, device: torch.device) -> torch.Tensor:
        """The fixed standard-normal draws used at scoring time (elbo_samples × d), drawn once."""
        cached = getattr(self, "_noise", None)
        if cached is None or cached.device != device:
            g = torch.Generator().manual_seed(self.seed)
            cached = torch.randn(int(self.config["elbo_samples"]), int(self.config["code_length"]), generator=g)
            self._noise = cached = cached.to(device)
        return cached

    def terms(self, x: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per sample: −ELBO with its expectation averaged over the draws z = mean + σ·noise[k]
        (noise: K×d), the reconstruction term at the mean, and the KL term."""
        mean, logvar = self.networks["encoder"](x)
        kl = gaussian_kl(mean, logvar)
        std = (0.5 * logvar).exp()
        decoder = self.networks["decoder"]
        nll = torch.stack([bernoulli_nll(decoder(mean + std * eps), x) for eps in noise]).mean(0)
        return {"elbo": nll + kl, "rec": bernoulli_nll(decoder(mean), x), "kl": kl}

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        x = self.inputs(batch)
        mean, logvar = self.networks["encoder"](x)
        eps = torch.randn(mean.shape, generator=ctx.generator, device=x.device)
        nll = bernoulli_nll(self.networks["decoder"](mean + (0.5 * logvar).exp() * eps), x)
        kl = gaussian_kl(mean, logvar)
        loss = (nll + kl).mean()
        optimizer_step(self.optimizers["all"], loss)
        return {"loss": loss.detach(), "nll": nll.detach().mean(), "kl": kl.detach().mean()}

    def validation_losses(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.terms(self.inputs(batch), self._scoring_noise(self.device))
        return {"loss": out["elbo"], **out}

    def raw_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.networks["decoder"](self.networks["encoder"](x)[0])
        return {"rec": F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)}

    def raw_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.terms(x, self._scoring_noise(x.device))
