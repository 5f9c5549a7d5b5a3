"""Deep SVDD: Deep Support Vector Data Description (Ruff et al., ICML 2018).

A network φ with no bias terms maps images into a space where the normal data gathers in a
hypersphere of centre c: the one-class objective minimises mean ‖φ(x) − c‖² (plus weight decay);
the soft-boundary objective R² + (1/ν)·mean max(0, ‖φ(x) − c‖² − R²) also learns the radius R.
Novelty: ‖φ(x) − c‖² (one-class), ‖φ(x) − c‖² − R² (soft-boundary). No bias terms and no
bounded activations, and c is fixed (never trained) and not zero, so that the trivial constant
map φ ≡ c is out of reach (the paper's Propositions 1–3).

Settings, from the paper (§4.1) and its official PyTorch code (lukasruff/Deep-SVDD-PyTorch):
- LeNet-type networks: MNIST conv 5×5 8 → pool → conv 5×5 4 → pool → linear to 32; CIFAR-10
  conv 5×5 32 → 64 → 128 (each pooled) → linear to 128; batch norm without affine parameters
  (ε 1e-4) and leaky ReLU (0.01) after each convolution; no biases anywhere.
- Preprocessing: global contrast normalisation (each image minus its mean, divided by its mean
  absolute deviation, the ℓ1 form), then min-max scaling to [0, 1] with the extremes of the
  normal training data (the code's per-class constants, here computed from the training split
  the detector is given and saved with it).
- Pretraining: an autoencoder with φ as its encoder (the LeNet decoder mirrors it, sigmoid
  out) trains `pretrain_epochs` epochs on the summed squared error; its encoder's weights start
  Deep SVDD. c is the mean of φ over the training data after pretraining, each coordinate with
  |c_i| < 0.1 pushed to ±0.1 (the code's rule).
- Adam, batch 200, lr 1e-4 for both phases, divided by 10 after `lr_milestone` epochs of each;
  weight decay 0.5e-6 (Deep SVDD) and 0.5e-3 (autoencoder); MNIST 150 + 150 epochs, CIFAR-10
  350 autoencoder epochs (milestone 250) + 150; ν = 0.1; for the soft-boundary objective R is the
  (1 − ν)-quantile of the batch's distances after each step, from the 10th epoch on.

Seed papers: OLED Table 2 lists DSVDD at .6481 on CIFAR-10 (the standard protocol, one-class
objective; Deep SVDD's own paper's value)."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OneClassError
from ..neural import NEURAL_DEFAULTS, NeuralDetector, adam, optimizer_step, per_sample_sq_error
from ..training import StepContext


def _bn(c: int, dims: int = 2) -> nn.Module:
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(c, eps=1e-4, affine=False)


class LeNetEncoder(nn.Module):
    """φ: bias-free 5×5 convolutions, batch norm without affine terms, leaky ReLU, 2×2 max-pool,
    a bias-free linear layer to the representation. Its one trainable kind of weight is the
    convolution and linear kernels: a bias would let φ learn the constant c (Prop. 2)."""

    def __init__(self, channels: int, widths: tuple[int, ...], rep_dim: int, size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = channels
        for w in widths:
            layers += [nn.Conv2d(c, w, 5, padding=2, bias=False), _bn(w), nn.LeakyReLU(0.01), nn.MaxPool2d(2, 2)]
            c, size = w, size // 2
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(c * size * size, rep_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


class LeNetDecoder(nn.Module):
    """The official code's mirror: the representation reshaped to (rep/16)×4×4, then per stage
    leaky ReLU, ×2 nearest upsampling and a bias-free 5×5 transposed convolution with batch norm,
    a last transposed convolution and a sigmoid."""

    def __init__(self, arch: str, channels: int, rep_dim: int) -> None:
        super().__init__()
        self.start = rep_dim // 16
        if arch == "mnist":      # 2×4×4 → 8×8 → 16×16 → 14×14 → 28×28
            stages, last = [(self.start, 4, 2), (4, 8, 3)], (8, channels, 2)
        else:                    # 8×4×4 → 4 → 8 → 16 → 32
            stages, last = [(self.start, 128, 2), (128, 64, 2), (64, 32, 2)], (32, channels, 2)
        self.mnist = arch == "mnist"
        self.stages = nn.ModuleList(nn.ModuleDict({"deconv": nn.ConvTranspose2d(a, b, 5, padding=p, bias=False),
                                                   "bn": _bn(b)}) for a, b, p in stages)
        self.last = nn.ConvTranspose2d(last[0], last[1], 5, padding=last[2], bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z.view(z.shape[0], self.start, 4, 4)
        if self.mnist:
            x = F.interpolate(F.leaky_relu(x), scale_factor=2)
        else:
            x = F.leaky_relu(x)
        for stage in self.stages:
            x = F.interpolate(F.leaky_relu(stage["bn"](stage["deconv"](x))), scale_factor=2)
        return torch.sigmoid(self.last(x))


def global_contrast_normalise(x: torch.Tensor) -> torch.Tensor:
    """Each image minus its mean, divided by its mean absolute deviation (ℓ1 GCN of the paper)."""
    flat = x.flatten(1)
    flat = flat - flat.mean(1, keepdim=True)
    scale = flat.abs().mean(1, keepdim=True).clamp_min(1e-12)  # a blank image stays blank
    return (flat / scale).view_as(x)


def adjust_centre(c: torch.Tensor, eps: float = 0.1) -> torch.Tensor:
    """Coordinates of c near zero pushed to ±eps: a zero coordinate can be matched by a network
    whose weights are all zero (the official code's rule)."""
    c = c.clone()
    c[(c.abs() < eps) & (c < 0)] = -eps
    c[(c.abs() < eps) & (c >= 0)] = eps
    return c


class Hypersphere(nn.Module):
    """The fixed centre c, the radius R, and the input scaling (GCN extremes) as buffers, so that
    checkpoints and saved models keep them."""

    def __init__(self, rep_dim: int) -> None:
        super().__init__()
        self.register_buffer("centre", torch.zeros(rep_dim))
        self.register_buffer("radius", torch.zeros(()))
        self.register_buffer("scale", torch.tensor([0.0, 1.0]))  # min, max of GCN'd training pixels
        self.register_buffer("ready", torch.zeros((), dtype=torch.bool))


class DeepSVDDDetector(NeuralDetector):
    name = "deep-svdd"
    description = "Deep SVDD (Ruff et al. ICML 2018): bias-free LeNet mapped into a minimal hypersphere"
    defaults = {**NEURAL_DEFAULTS, "value_range": (0.0, 1.0), "objective": "one-class", "nu": 0.1,
                "lr": 1e-4, "batch_size": 200, "weight_decay": 0.5e-6, "lr_milestone": 50,
                "pretrain_epochs": 150, "pretrain_lr_milestone": 50, "pretrain_weight_decay": 0.5e-3,
                "warm_up_epochs": 10}
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "mnist": {"arch": "mnist", "channels": 1, "size": 28, "widths": [8, 4], "rep_dim": 32, "epochs": 150},
        "cifar10": {"arch": "cifar10", "channels": 3, "size": 32, "widths": [32, 64, 128], "rep_dim": 128,
                    "epochs": 150, "pretrain_epochs": 350, "pretrain_lr_milestone": 250},
    }
    choices = {"objective": ("one-class", "soft-boundary"), "arch": ("mnist", "cifar10")}
    components = ("svdd",)
    headline = "svdd"

    def input_problem(self) -> str | None:
        own = self.presets[self.preset]["size"]  # the preset's arch is the config's (check_config)
        if self.config["size"] != own:  # the pretraining decoder mirrors the paper's nets from 4×4
            return f"its {self.config['arch']} networks take {own}×{own} images"
        return super().input_problem()

    def check_config(self) -> None:
        super().check_config()  # widths: their count is checked with the option's type
        if int(self.config["rep_dim"]) % 16:
            raise OneClassError(f"option rep_dim={self.config['rep_dim']} of method {self.name!r} must be a "
                                "multiple of 16 (the decoder starts from rep_dim/16 maps of 4×4)")

    def training_epochs(self) -> int:
        return int(self.config["pretrain_epochs"]) + int(self.config["epochs"])

    def build_networks(self) -> dict[str, nn.Module]:
        rep = int(self.config["rep_dim"])
        return {"encoder": LeNetEncoder(self.channels, tuple(self.config["widths"]), rep, self.image_size),
                "decoder": LeNetDecoder(self.config["arch"], self.channels, rep), "sphere": Hypersphere(rep)}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        enc, dec = self.networks["encoder"].parameters(), self.networks["decoder"].parameters()
        return {"autoencoder": adam([*enc, *dec], self.config["lr"], self.config["betas"],
                                    self.config["pretrain_weight_decay"]),
                "svdd": adam(self.networks["encoder"].parameters(), self.config["lr"], self.config["betas"],
                             self.config["weight_decay"])}

    # ---- phases ---------------------------------------------------------------------------
    def pretraining(self, epoch: int) -> bool:
        return epoch <= int(self.config["pretrain_epochs"])

    def _set_lr(self, opt: torch.optim.Optimizer, epoch_in_phase: int, milestone: int) -> None:
        lr = self.config["lr"] * (0.1 if epoch_in_phase > milestone else 1.0)
        for group in opt.param_groups:
            group["lr"] = lr

    def scaled(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 → GCN → min-max with the training extremes (≈ [0, 1] on normal data)."""
        lo, hi = self.networks["sphere"].scale
        return (global_contrast_normalise(batch.to(self.device).float()) - lo) / (hi - lo).clamp_min(1e-12)

    @torch.no_grad()
    def on_epoch_start(self, epoch: int, train: torch.Tensor) -> None:
        sphere = self.networks["sphere"]
        if epoch == 1:  # input scaling from the training data (label-free)
            g = global_contrast_normalise(train.float())
            sphere.scale.copy_(torch.stack([g.min(), g.max()]))
        if not self.pretraining(epoch) and not bool(sphere.ready):
            # c: the mean of φ over the training data once pretraining is over (eval mode, as the code)
            self.networks["encoder"].eval()
            reps = torch.cat([self.networks["encoder"](self.scaled(train[i:i + 1024]))
                              for i in range(0, len(train), 1024)])
            sphere.centre.copy_(adjust_centre(reps.mean(0)))
            sphere.ready.fill_(True)

    def distances(self, x: torch.Tensor) -> torch.Tensor:
        return (self.networks["encoder"](x) - self.networks["sphere"].centre).pow(2).sum(1)

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        x = self.scaled(batch)
        if self.pretraining(ctx.epoch):
            opt = self.optimizers["autoencoder"]
            self._set_lr(opt, ctx.epoch, int(self.config["pretrain_lr_milestone"]))
            rec = per_sample_sq_error(self.networks["decoder"](self.networks["encoder"](x)), x).mean()
            optimizer_step(opt, rec)
            return {"loss": rec.detach(), "rec": rec.detach()}
        epoch = ctx.epoch - int(self.config["pretrain_epochs"])
        opt = self.optimizers["svdd"]
        self._set_lr(opt, epoch, int(self.config["lr_milestone"]))
        dist = self.distances(x)
        loss = self.objective(dist)
        optimizer_step(opt, loss)
        sphere = self.networks["sphere"]
        if self.config["objective"] == "soft-boundary" and epoch >= int(self.config["warm_up_epochs"]):
            sphere.radius.copy_(radius(dist.detach(), self.config["nu"]))  # on the device: no sync per step
        return {"loss": loss.detach(), "dist": dist.detach().mean(), "radius": sphere.radius.clone()}

    def objective(self, dist: torch.Tensor) -> torch.Tensor:
        if self.config["objective"] == "one-class":
            return dist.mean()
        r2 = self.networks["sphere"].radius ** 2
        return r2 + torch.clamp(dist - r2, min=0).mean() / self.config["nu"]

    def validation_losses(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.scaled(batch)
        if not bool(self.networks["sphere"].ready):
            rec = per_sample_sq_error(self.networks["decoder"](self.networks["encoder"](x)), x)
            return {"loss": rec, "rec": rec}
        return {"loss": self.distances(x)}

    def inputs(self, batch: torch.Tensor) -> torch.Tensor:
        return self.scaled(batch)

    def raw_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        dist = self.distances(x)
        if self.config["objective"] == "soft-boundary":
            dist = dist - self.networks["sphere"].radius ** 2
        return {"svdd": dist}


def radius(dist: torch.Tensor, nu: float) -> torch.Tensor:
    """R for the soft-boundary objective: the (1 − ν)-quantile of the distances ‖φ(x) − c‖
    (dist holds their squares), linearly interpolated as numpy's default."""
    return torch.quantile(dist.float().sqrt(), 1 - nu)
