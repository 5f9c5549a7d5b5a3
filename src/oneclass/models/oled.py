"""OLED: One-class Learned Encoder-Decoder with adversarial context masking (Jewell et al., WACV 2022),
and `cae`, its ablation with random square masks (§4.6).

R reconstructs images (conv encoder, dense bottleneck, conv decoder; output clipped to [−1, 1]).
The mask module MM = mask generator MG (small conv AE, ReLU at the end) + threshold unit T
learns, adversarially, which (1 − t) = 12.5% of the pixels to hide so that R's reconstruction
suffers most. min_R max_MM L_mask + γ·L_cont + λ·L_rec (eq. 8); MM never sees L_rec.

Loss scales: the paper's γ = 50, λ = 1 are applied to per-pixel means (L_mask, L_rec: mean
squared error; L_cont: mean absolute error over all pixels, counted on the masked ones only).
ε of the threshold unit: the mask's value is the exact binary mask whatever ε is (see
`threshold_unit`); ε only sets how much gradient reaches MG. With the paper's "infinitesimal"
ε (1e-12 in the official code) MG's gradient is ~1e-10 and its adversarial steps barely move the
objective reliably (measured over three seeds, five steps at lr 1e-2: −0.26…+1.98), with ε = 1e-3
they raise it every time (+3.1…+4.4); 1e-3 is the default, `eps=1e-12` the code's value.
Scores s_rec, s_mask, s_cont are min-max scaled with statistics of the validation inliers saved
with the model; s_avg is their mean (§3.6)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..neural import NEURAL_DEFAULTS, NeuralDetector, adam, frozen, optimizer_step
from ..training import StepContext


def _block(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 5, stride, 2, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]


def _up_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Upsample(scale_factor=2, mode="nearest"), *_block(c_in, c_out)]


class OLEDReconstructor(nn.Module):
    """Official MNIST layout: conv 5×5/2, 5×5/2, 5×5/1 (LeakyReLU 0.2, BN) → Dense(code) →
    Dense(128·(s/4)²) → upsampling 5×5 conv blocks back to the input size → clip to [−1, 1]."""

    def __init__(self, channels: int, size: int, widths: tuple[int, int, int] = (32, 64, 128), code: int = 64) -> None:
        super().__init__()
        if size % 4:
            raise ValueError(f"OLED's reconstructor needs a size divisible by 4, got {size}")
        a, b, c = widths
        self.side, self.width = size // 4, c
        self.encoder = nn.Sequential(*_block(channels, a, 2), *_block(a, b, 2), *_block(b, c, 1), nn.Flatten(),
                                     nn.Linear(c * self.side ** 2, code), nn.BatchNorm1d(code), nn.LeakyReLU(0.2))
        self.expand = nn.Sequential(nn.Linear(code, c * self.side ** 2), nn.BatchNorm1d(c * self.side ** 2),
                                    nn.LeakyReLU(0.2))
        self.decoder = nn.Sequential(*_up_block(c, b), *_up_block(b, a), *_block(a, a),
                                     nn.Conv2d(a, channels, 5, 1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(self.encoder(x)).view(x.shape[0], self.width, self.side, self.side)
        return self.decoder(h).clamp(-1.0, 1.0)


class MaskGenerator(nn.Module):
    """MG: a small conv AE with a spatial bottleneck (two 5×5/2 convs, two upsampling blocks);
    BN + LeakyReLU, ReLU on the last block; one activation map A ≥ 0 per image."""

    def __init__(self, channels: int, widths: tuple[int, int] = (16, 32)) -> None:
        super().__init__()
        a, b = widths
        self.net = nn.Sequential(*_block(channels, a, 2), *_block(a, b, 2), *_up_block(b, a),
                                 nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, 1, 5, 1, 2),
                                 nn.BatchNorm2d(1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def threshold_unit(activation: torch.Tensor, keep: float = 0.875, eps: float = 1e-12) -> torch.Tensor:
    """T (§3.4.2): mask 0 on the top (1 − keep) fraction of each map's activations, 1 elsewhere.

    Exactly k = round((1 − keep)·H·W) pixels are masked per image, ties broken by position (a
    ReLU map often has many equal zeros, where "A ≥ s" alone would mask far too many). The value
    is that exact binary mask; the gradient is that of the paper's continuous form (eq. 2),
    ReLU(s − A) / (ReLU(s − A) + ε), with s the k-th largest activation."""
    b = activation.shape[0]
    flat = activation.flatten(1)
    k = int(round((1.0 - keep) * flat.shape[1]))
    if k == 0:
        return torch.ones_like(activation)
    top = flat.topk(k, dim=1)
    s = top.values[:, -1:]
    soft = torch.relu(s - flat) / (torch.relu(s - flat) + eps)
    hard = torch.ones_like(flat).scatter_(1, top.indices, 0.0)
    mask = soft + (hard - soft).detach()
    return mask.view(b, *activation.shape[1:])


def random_square_mask(shape: tuple[int, ...], side: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """CAE's mask: one random side×side square of zeros per image (1×H×W per image)."""
    n, _, h, w = shape
    top = torch.randint(0, h - side + 1, (n,), generator=g, device=device)
    left = torch.randint(0, w - side + 1, (n,), generator=g, device=device)
    return square_mask_at(shape, side, top, left)


def square_mask_at(shape: tuple[int, ...], side: int, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    n, _, h, w = shape
    device = top.device
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + side).view(n, 1, 1))
              & (cols >= left.view(n, 1, 1)) & (cols < (left + side).view(n, 1, 1)))
    return (~inside).float().unsqueeze(1)


def masked_losses(x: torch.Tensor, recon_masked: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per sample: L_mask = mean (x − R(x_m))², L_cont = mean |x − R(x_m)| over masked pixels only
    (divided by all pixels, so its scale does not depend on the mask's size)."""
    err = x - recon_masked
    return {"mask": err.pow(2).flatten(1).mean(1), "cont": (err.abs() * (1.0 - mask)).flatten(1).mean(1)}


class OLEDDetector(NeuralDetector):
    name = "oled"
    description = "OLED (Jewell et al. WACV 2022): reconstructor vs adversarial mask module; scores rec/mask/cont/avg"
    defaults = {**NEURAL_DEFAULTS, "value_range": (-1.0, 1.0), "keep": 0.875, "gamma": 50.0, "lam": 1.0,
                "eps": 1e-3, "lr": 5e-4, "betas": (0.5, 0.9), "batch_size": 128, "epochs": 300,
                "code": 64, "mm_every_epochs": 1, "select": "rec"}
    presets = {
        "mnist": {"channels": 1, "size": 28},
        "cifar10": {"channels": 3, "size": 32},
        # 30×30 patches of each frame, edge-padded to the network's 32×32 (see oneclass.video)
        "ped2": {"channels": 1, "size": 32, "video": "frame-patches", "patch": 30, "patch_stride": 30,
                 "train_stride": 1, "test_stride": 1, "max_train_samples": None},
    }
    components = ("rec", "mask", "cont", "avg")
    headline = "avg"

    def input_problem(self) -> str | None:
        size = self.config["size"]
        if isinstance(size, int) and (size < 8 or size % 4):  # the reconstructor's dense code is (size/4)²
            return "its networks take square images whose side is a multiple of 4, at least 8"
        return super().input_problem()
    normalised = ("rec", "mask", "cont")
    # maps of s_rec, s_mask and s_cont (the context error on the masked pixels), their mean for
    # s_avg, and (OLED) MG's activation: where the mask module hides the image
    map_headline, combined_maps = "avg", True

    def build_networks(self) -> dict[str, nn.Module]:
        return {"R": OLEDReconstructor(self.channels, self.image_size, code=int(self.config["code"])),
                "MG": MaskGenerator(self.channels)}

    def build_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        make = lambda net: adam(net.parameters(), self.config["lr"], self.config["betas"])  # noqa: E731
        return {k: make(net) for k, net in self.networks.items()}

    def make_mask(self, x: torch.Tensor, ctx: StepContext | None = None) -> torch.Tensor:
        return threshold_unit(self.networks["MG"](x), self.config["keep"], self.config["eps"])

    def losses(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        R = self.networks["R"]
        out = masked_losses(x, R(x * mask), mask)  # x_m = x ⊙ mask: masked pixels → 0, the midpoint
        out["rec"] = (x - R(x)).pow(2).flatten(1).mean(1)
        return out

    def adversarial_objective(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        return (losses["mask"] + self.config["gamma"] * losses["cont"]).mean()

    def mm_step(self, x: torch.Tensor, ctx: StepContext | None) -> torch.Tensor:
        """MM ascends L_mask + γ·L_cont (R fixed)."""
        R = self.networks["R"]
        with frozen(R):
            mask = self.make_mask(x, ctx)
            objective = self.adversarial_objective(masked_losses(x, R(x * mask), mask))
            optimizer_step(self.optimizers["MG"], -objective)
        return objective.detach()

    def r_step(self, x: torch.Tensor, ctx: StepContext | None) -> dict[str, torch.Tensor]:
        """R descends L_mask + γ·L_cont + λ·L_rec for the current (fixed) masks."""
        with torch.no_grad():
            mask = self.make_mask(x, ctx)
        losses = self.losses(x, mask)
        total = self.adversarial_objective(losses) + self.config["lam"] * losses["rec"].mean()
        optimizer_step(self.optimizers["R"], total)
        return {"loss": total.detach(), **{k: v.detach().mean() for k, v in losses.items()}}

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        x = self.inputs(batch)
        out = self.r_step(x, ctx)
        if "MG" in self.networks and (ctx.epoch - 1) % int(self.config["mm_every_epochs"]) == 0:
            out["mm_objective"] = self.mm_step(x, ctx)
        return out

    def validation_losses(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.inputs(batch)
        return self.losses(x, self.score_mask(x))

    def score_mask(self, x: torch.Tensor) -> torch.Tensor:
        return self.make_mask(x)

    def raw_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.losses(x, self.score_mask(x))

    def raw_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        R, mask = self.networks["R"], self.score_mask(x)
        err = x - R(x * mask)
        maps = {"rec": (x - R(x)).pow(2).mean(1), "mask": err.pow(2).mean(1),
                "cont": (err.abs() * (1.0 - mask)).mean(1)}
        if "MG" in self.networks:
            maps["mg"] = self.networks["MG"](x)[:, 0]
        return maps

    def combine(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        scores["avg"] = (scores["rec"] + scores["mask"] + scores["cont"]) / 3.0
        return scores

    @torch.inference_mode()
    def activation_map(self, images) -> np.ndarray:
        """MG's activation map A for each image (N×H×W), e.g. to compare with the digit's pixels."""
        self._check_fitted()
        self.train_mode(False)
        x = self.inputs(self.prepare(images))
        return self.networks["MG"](x)[:, 0].float().cpu().numpy()


class CAEDetector(OLEDDetector):
    name = "cae"
    description = "Context autoencoder: OLED's reconstructor trained on random 10×10 masked squares (OLED §4.6 ablation)"
    # no mask module: its settings (keep, eps, mm_every_epochs) do not apply
    defaults = {**{k: v for k, v in OLEDDetector.defaults.items() if k not in ("keep", "eps", "mm_every_epochs")},
                "square": 10}
    presets = {k: dict(v) for k, v in OLEDDetector.presets.items()}

    def input_problem(self) -> str | None:
        size, square = self.config["size"], self.config["square"]
        if isinstance(size, int) and isinstance(square, int) and square > size:
            return f"its masked square (square={square}) must fit in the image: give square ≤ size"
        return super().input_problem()

    def build_networks(self) -> dict[str, nn.Module]:
        return {"R": OLEDReconstructor(self.channels, self.image_size, code=int(self.config["code"]))}

    def make_mask(self, x: torch.Tensor, ctx: StepContext | None = None) -> torch.Tensor:
        side = int(self.config["square"])
        if ctx is not None:  # training: a fresh random square per image, from the epoch's seeded generator
            return random_square_mask(tuple(x.shape), side, ctx.generator, x.device)
        # scoring: the square's place is a function of the image itself, so an image gets the
        # same score whatever batch it is scored in
        n, _, h, w = x.shape
        key = ((x + 1.0) * 127.5).round().flatten(1).long().mul(31).sum(1)
        top, left = key % (h - side + 1), (key // (h - side + 1)) % (w - side + 1)
        return square_mask_at(tuple(x.shape), side, top, left)
