"""ALOCC: Adversarially Learned One-Class Classifier (Sabokrou et al., CVPR 2018).

R (reconstructor: conv encoder–decoder, 5×5 kernels, stride 2, batch norm, no pooling) refines
a noisy input X̃ = X + η; D (conv discriminator) tells target-class images from R's outputs.
Objective (eq. 5): min_R max_D E[log D(X)] + E[log(1 − D(R(X̃)))] + λ·‖X − R(X̃)‖², λ = 0.4.
Novelty: 1 − D(R(X)) (the paper's eq. 7, "d_rx") or 1 − D(X) ("d_x").

Where the paper is silent we follow the official code (noise σ = 0.155, R updated twice per D
update, the MNIST widths 16·2^k); where they differ the paper wins and the code's choice is an
option: the reconstruction term is the paper's squared error, averaged over pixels as the code
averages its refinement loss (`rec_reduction="sum"` takes the squared norm literally), and Adam
with β1 = 0.5 replaces the code's RMSProp (`optimizer="rmsprop", lr=0.002` gives the code's)."""
from __future__ import annotations

import torch
from torch import nn

from ..neural import (NEURAL_DEFAULTS, NeuralDetector, adam, fooling_loss, frozen, optimizer_step,
                      real_fake_loss)
from ..training import StepContext


def _conv_sizes(size: int, n: int) -> list[int]:
    """Spatial sizes after each of n 5×5 stride-2 'same' convolutions."""
    sizes = [size]
    for _ in range(n):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


class Reconstructor(nn.Module):
    """Fig. 3: conv 5×5/2 + BN + LeakyReLU down, transposed conv 5×5/2 + BN + ReLU up, tanh out.
    Output paddings are chosen so any input size (28, 30, 32, …) comes back unchanged."""

    def __init__(self, channels: int, size: int, widths: tuple[int, ...], dec_widths: tuple[int, ...]) -> None:
        super().__init__()
        sizes = _conv_sizes(size, len(widths))
        enc: list[nn.Module] = []
        c = channels
        for w in widths:
            enc += [nn.Conv2d(c, w, 5, 2, 2, bias=False), nn.BatchNorm2d(w, eps=1e-6, momentum=0.1), nn.LeakyReLU(0.2)]
            c = w
        dec: list[nn.Module] = []
        outs = (*dec_widths, channels)
        for k, w in enumerate(outs):
            target = sizes[-2 - k]
            pad = target - ((sizes[-1 - k] - 1) * 2 - 4 + 5)
            dec.append(nn.ConvTranspose2d(c, w, 5, 2, 2, output_padding=pad, bias=k == len(outs) - 1))
            if k < len(outs) - 1:
                dec += [nn.BatchNorm2d(w, eps=1e-6, momentum=0.1), nn.ReLU()]
            c = w
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.decoder(self.encoder(x)))


class Discriminator(nn.Module):
    """Fig. 4: conv 5×5/2 blocks (LeakyReLU; BN from the second), a linear layer to one logit."""

    def __init__(self, channels: int, size: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for k, w in enumerate(widths):
            layers.append(nn.Conv2d(c, w, 5, 2, 2, bias=k == 0))
            if k > 0:
                layers.append(nn.BatchNorm2d(w, eps=1e-6, momentum=0.1))
            layers.append(nn.LeakyReLU(0.2))
            c = w
        self.features = nn.Sequential(*layers)
        side = _conv_sizes(size, len(widths))[-1]
        self.classifier = nn.Linear(c * side * side, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of 'x is from the target class'."""
        return self.classifier(self.features(x).flatten(1)).squeeze(1)


class ALOCCDetector(NeuralDetector):
    name = "alocc"
    description = "ALOCC (Sabokrou et al. CVPR 2018): denoising R + discriminator D; novelty 1 − D(R(x))"
    defaults = {**NEURAL_DEFAULTS, "value_range": (-1.0, 1.0), "noise_std": 0.155, "lam": 0.4,
                "r_steps": 2, "optimizer": "adam", "lr": 2e-4, "betas": (0.5, 0.999), "batch_size": 128,
                "epochs": 40, "stop_rec": None, "rec_reduction": "mean"}
    presets = {
        # the official code's widths (gf_dim = df_dim = 16) for 28×28 MNIST
        "mnist": {"channels": 1, "size": 28, "r_widths": (32, 64, 128), "r_dec_widths": (32, 16),
                  "d_widths": (16, 32, 64, 128)},
        # the paper's Fig. 3/4 widths. NCHW: these wide nets train 11 % and score 19 % slower in
        # NHWC on a CPU (results/benchmarks-channels-last-cpu.md), unlike every other preset
        "cifar10": {"channels": 3, "size": 32, "r_widths": (64, 128, 256, 512), "r_dec_widths": (256, 128, 64),
                    "d_widths": (64, 128, 256, 512), "channels_last": False},
        # UCSD Ped2: 30×30 grey patches, paper widths
        "ped2": {"channels": 1, "size": 30, "r_widths": (64, 128, 256, 512), "r_dec_widths": (256, 128, 64),
                 "d_widths": (64, 128, 256, 512), "video": "frame-patches", "patch": 30, "patch_stride": 30,
                 "train_stride": 1, "test_stride": 1, "max_train_samples": None},
    }
    choices = {"optimizer": ("adam", "rmsprop"), "rec_reduction": ("mean", "sum")}
    components = ("d_x", "d_rx", "rec")
    headline = "d_rx"
    map_headline = "rec"

    def build_networks(self) -> dict[str, nn.Module]:
        c, s = self.channels, self.image_size
        return {"R": Reconstructor(c, s, tuple(self.config["r_widths"]), tuple(self.config["r_dec_widths"])),
                "D": Discriminator(c, s, tuple(self.config["d_widths"]))}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr = self.config["lr"]
        if self.config["optimizer"] == "rmsprop":
            make = lambda p: torch.optim.RMSprop(p, lr=lr)  # noqa: E731
        else:
            make = lambda p: adam(p, lr, self.config["betas"])  # noqa: E731
        return {"R": make(self.networks["R"].parameters()), "D": make(self.networks["D"].parameters())}

    def noisy(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        # Gaussian noise, clipped to the image range (skimage.random_noise in the official code)
        return (x + self.config["noise_std"] * torch.randn(x.shape, generator=g, device=x.device)).clamp_(-1, 1)

    def d_step(self, x: torch.Tensor, x_noisy: torch.Tensor) -> torch.Tensor:
        """D ascends log D(X) + log(1 − D(R(X̃))); R is held fixed (its output detached)."""
        R, D = self.networks["R"], self.networks["D"]
        with torch.no_grad():
            fake = R(x_noisy)
        # one batch of real and fake together: D's batch-norm statistics are those of the mix
        # that its running averages (used when scoring) will hold
        real_logit, fake_logit = D(torch.cat([x, fake])).split([len(x), len(fake)])
        loss = real_fake_loss(real_logit, fake_logit)
        optimizer_step(self.optimizers["D"], loss)
        return loss.detach()

    def _rec_loss(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """‖X − R(X̃)‖², batch mean. "mean" over pixels (the code's scale) lets the adversarial
        term dominate: on 6 of 10 digits R hardly reconstructs (rec AUROC ≈ 0.5) yet D(R(X))
        separates best. "sum" (the literal squared norm, ~700× larger on MNIST) makes R a good
        denoiser, D then beats it and D(R(X)) separates worse (digit 2, 8 epochs: d_rx 0.56
        against 0.82, rec 0.76 against 0.49; results/README.md)."""
        err = (out - x).pow(2).flatten(1)
        return err.sum(1).mean() if self.config["rec_reduction"] == "sum" else err.mean()

    def r_step(self, x: torch.Tensor, x_noisy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """R descends −log D(R(X̃)) (the non-saturating form) + λ·‖X − R(X̃)‖²; only R's
        optimiser steps, so D's weights are untouched (its gradients are discarded)."""
        R, D = self.networks["R"], self.networks["D"]
        out = R(x_noisy)
        # D judges R's output as it will when scoring (running batch-norm statistics), and R's
        # fake-only batches do not drag D's running statistics away from real images
        with frozen(D):  # no gradient work for D's weights on R's step
            D.eval()
            try:
                logit = D(out)
            finally:
                D.train()
            adv = fooling_loss(logit)
            rec = self._rec_loss(out, x)
            optimizer_step(self.optimizers["R"], adv + self.config["lam"] * rec)
        return adv.detach(), rec.detach()

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        x = self.inputs(batch)
        x_noisy = self.noisy(x, ctx.generator)
        d_loss = self.d_step(x, x_noisy)
        for _ in range(int(self.config["r_steps"])):
            adv, rec = self.r_step(x, x_noisy)
        return {"d_loss": d_loss, "r_adv": adv, "r_rec": rec}

    def validation_losses(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.inputs(batch)
        out = self.networks["R"](x)
        return {"rec": (out - x).pow(2).flatten(1).mean(1),
                "d_real": torch.sigmoid(self.networks["D"](x))}

    def should_stop(self, val_losses: dict[str, float]) -> bool:
        """The paper's rule: stop once R reconstructs the target class well (‖X − X′‖² < ρ)."""
        rho = self.config["stop_rec"]
        return rho is not None and val_losses["rec"] < float(rho)

    def raw_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """D judges whole images: the map is R's reconstruction error (D(R(X)) falls where R fails)."""
        return {"rec": (self.networks["R"](x) - x).pow(2).mean(1)}

    def raw_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        R, D = self.networks["R"], self.networks["D"]
        out = R(x)
        return {"d_x": 1.0 - torch.sigmoid(D(x)), "d_rx": 1.0 - torch.sigmoid(D(out)),
                "rec": (out - x).pow(2).flatten(1).mean(1)}
