"""MemAE: the memory-augmented autoencoder (Gong et al., ICCV 2019).

The encoder's feature map z (C channels at each position) is not decoded directly: each
position's C-vector queries a memory M of N learned items (N × C); the attention weights
w = softmax(z·Mᵀ) are hard-shrunk, ŵ_i = max(w_i − λ, 0)·w_i / (|w_i − λ| + ε), renormalised to
sum 1 (sparse addressing), and the decoder reconstructs from ẑ = ŵ·M. Normal data is what the
memory holds, so an anomaly is rebuilt from normal items and reconstructs badly. Loss: the
reconstruction error plus α times the entropy of ŵ (eq. 10), which sharpens the addressing
further. Novelty: the reconstruction error.

Settings, from the paper (§4.1, §4.2 image data; Conv2(k, s, c) = kernel, stride, filters):
encoders Conv2(1, 2, 16)–Conv2(3, 2, 32)–Conv2(3, 2, 64) for MNIST (28 → 14 → 7 → 4) and
Conv2(3, 2, 64)–Conv2(3, 2, 128)–Conv2(3, 2, 256) for CIFAR-10, decoders Dconv2(3, 2, 64)–
Dconv2(3, 2, 32)–Dconv2(3, 2, 1) and Dconv2(3, 2, 256)–Dconv2(3, 2, 128)–Dconv2(3, 2, 3) (output
paddings chosen so each stage returns the encoder's size); memory sizes N = 100 (MNIST) and 500
(CIFAR-10); λ in [1/N, 3/N], here 1/N; α = 0.0002; Adam at lr 1e-4. Where the paper is silent,
its official code (donggong1/memae-anomaly-detection, video only): batch norm and LeakyReLU 0.2
after every layer but the last, DCGAN initialisation (conv N(0, 0.02), batch-norm scale
N(1, 0.02)), inputs normalised to [−1, 1], the memory applied to every position of the feature
map, the reconstruction error the mean squared error per pixel (its MSELoss). An earlier version
of this module used stride 1 in MNIST's first layer, ReLU, PyTorch's default initialisation and
inputs in [0, 1] (digit 0: AUROC 0.685, results/superseded/). `memory_size=0` drops the memory: an "AE"
row of the MemAE paper's Table 1 (quoted by OLED's Table 1: MNIST .9619), the same networks
decoding z itself; `shrink=0` is the paper's non-sparse ablation. The paper does not give batch size or
epochs for the image sets: 64 and 60 are ours. Seed papers: OLED Table 1, .9751 on MNIST with the MemAE protocol
(2:1 split of the normal class, 30 % anomalies in the test set)."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OneClassError
from ..neural import NEURAL_DEFAULTS, NeuralDetector, optimizer_step
from ..training import StepContext


def hard_shrink(w: torch.Tensor, threshold: float, eps: float = 1e-12) -> torch.Tensor:
    """ŵ = max(w − λ, 0)·w / (|w − λ| + ε) (eq. 7): w where w > λ, 0 elsewhere, with a gradient
    (ReLU's) for the weights it keeps."""
    return F.relu(w - threshold) * w / ((w - threshold).abs() + eps)


def address(query: torch.Tensor, memory: torch.Tensor, threshold: float) -> torch.Tensor:
    """Addressing weights (rows sum to 1) of each query (Q × C) over the memory (N × C): softmax
    of the similarities, hard-shrunk, ℓ1-renormalised. With threshold 0, the dense softmax."""
    w = F.softmax(query @ memory.t(), dim=1)
    if threshold > 0:
        w = F.normalize(hard_shrink(w, threshold), p=1, dim=1)
    return w


def addressing_entropy(w: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Σ_i −ŵ_i log ŵ_i of each row."""
    return -(w * torch.log(w + eps)).sum(1)


class Memory(nn.Module):
    """N learned items of dimension C; reads every position of a B×C×H×W feature map."""

    def __init__(self, items: int, dim: int, threshold: float) -> None:
        super().__init__()
        self.items = nn.Parameter(torch.empty(items, dim).uniform_(-dim ** -0.5, dim ** -0.5))
        self.threshold = threshold

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = z.shape
        query = z.permute(0, 2, 3, 1).reshape(-1, c)
        weights = address(query, self.items, self.threshold)
        read = (weights @ self.items).view(b, h, w, c).permute(0, 3, 1, 2)
        return read, weights.view(b, h * w, -1)


def _conv(c_in: int, c_out: int, k: int, s: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, s, k // 2), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2)]


ARCHS: dict[str, dict[str, Any]] = {
    # (kernel, filters) per encoder layer, each of stride 2; decoder filters per 3×3 stride-2 layer,
    # the last giving the image's channels
    "mnist": {"encoder": [(1, 16), (3, 32), (3, 64)], "decoder": [64, 32]},
    "cifar10": {"encoder": [(3, 64), (3, 128), (3, 256)], "decoder": [256, 128]},
}


class MemAE(nn.Module):
    def __init__(self, arch: str, channels: int, items: int, threshold: float, size: int) -> None:
        super().__init__()
        spec = ARCHS[arch]
        enc: list[nn.Module] = []
        sizes, c = [size], channels
        for k, w in spec["encoder"]:
            enc += _conv(c, w, k, 2)
            sizes.append((sizes[-1] + 1) // 2)  # a stride-2 'same' convolution
            c = w
        self.encoder = nn.Sequential(*enc)
        # no memory (items 0): the MemAE paper's "AE" baseline, the same encoder and decoder
        self.memory = Memory(items, c, threshold) if items > 0 else None
        dec: list[nn.Module] = []
        widths = [*spec["decoder"], channels]
        for i, w in enumerate(widths):
            target = sizes[-2 - i]
            # a 3×3 stride-2 transposed conv (padding 1) gives 2·n − 1 + output_padding
            layer = nn.ConvTranspose2d(c, w, 3, 2, 1, output_padding=target - (2 * sizes[-1 - i] - 1))
            dec += [layer] if i == len(widths) - 1 else [layer, nn.BatchNorm2d(w), nn.LeakyReLU(0.2)]
            c = w
        self.decoder = nn.Sequential(*dec)
        for m in self.modules():  # DCGAN initialisation, as the official code's weights_init
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        if self.memory is None:  # one weight of 1 per position: entropy 0
            return self.decoder(z), z.new_ones(x.shape[0], z.shape[2] * z.shape[3], 1)
        read, weights = self.memory(z)
        return self.decoder(read), weights


class MemAEDetector(NeuralDetector):
    name = "memae"
    description = "Memory-augmented autoencoder (Gong et al. ICCV 2019): sparse memory addressing; OLED Table 1"
    defaults = {**NEURAL_DEFAULTS, "value_range": (-1.0, 1.0), "lr": 1e-4, "batch_size": 64, "alpha": 0.0002,
                "select": "last"}
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "mnist": {"arch": "mnist", "channels": 1, "size": 28, "memory_size": 100, "shrink": 0.01, "epochs": 60},
        "cifar10": {"arch": "cifar10", "channels": 3, "size": 32, "memory_size": 500, "shrink": 0.002,
                    "epochs": 60},
    }
    choices = {"arch": ("mnist", "cifar10")}
    components = ("rec",)
    headline = "rec"
    map_headline = "rec"

    def check_config(self) -> None:
        super().check_config()
        if not 0 <= self.config["shrink"] < 1:
            raise OneClassError(f"option shrink={self.config['shrink']} of method {self.name!r} must lie in [0, 1) "
                                "(the paper's λ is 1/N to 3/N)")

    def build_networks(self) -> dict[str, nn.Module]:
        return {"memae": MemAE(self.config["arch"], self.channels, int(self.config["memory_size"]),
                               float(self.config["shrink"]), self.image_size)}

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out, weights = self.networks["memae"](x)
        rec = (out - x).pow(2).flatten(1).mean(1)
        entropy = addressing_entropy(weights.flatten(0, 1)).view(x.shape[0], -1).mean(1)
        return {"rec": rec, "entropy": entropy}

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        losses = self.losses(self.inputs(batch))
        loss = (losses["rec"] + self.config["alpha"] * losses["entropy"]).mean()
        optimizer_step(self.optimizers["all"], loss)
        return {"loss": loss.detach(), **{k: v.detach().mean() for k, v in losses.items()}}

    def validation_losses(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = self.losses(self.inputs(batch))
        return {"loss": losses["rec"] + self.config["alpha"] * losses["entropy"], **losses}

    def raw_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"rec": self.losses(x)["rec"]}

    def raw_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"rec": (self.networks["memae"](x)[0] - x).pow(2).mean(1)}
