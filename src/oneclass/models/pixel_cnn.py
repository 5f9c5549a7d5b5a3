"""Pix-CNN: a gated PixelCNN (van den Oord et al., "Conditional Image Generation with PixelCNN
Decoders", NeurIPS 2016) fitted to the normal images and scored by their negative log-likelihood —
the Pix-CNN baseline of LSA Table 1 ("modeling the density by applying autoregression directly in
the image space"), also printed in the attention AE's Tables 2–3 and OLED's Tables 1–2.

The model: p(x) = Π_i p(x_i | x_<i) over pixels in raster order (and, for RGB, R → G → B within a
pixel), each factor a 256-way softmax over the pixel's intensity. Gated PixelCNN removes the first
PixelCNN's blind spot with two stacks: a vertical stack whose features at row r see only rows
< r once shifted down by one, and a horizontal stack that sees the pixels to the left in the row,
fed by the vertical one. Every layer is gated, y = tanh(W_f ∗ x) ⊙ σ(W_g ∗ x), the horizontal
stack has residual connections, and the first horizontal layer (mask "A") does not see its own
pixel; later ones (mask "B") see the earlier channels' features of it.

Where the settings come from: LSA (§4.1) gives only the sentence above and no code for it; the
other two seed papers copy LSA's numbers. So the layout is van den Oord et al.'s (7×7 first layer,
then 3×3 gated layers; 1×1 output layers; 256-way softmax) at a size that trains on a CPU: 32
feature maps in 8 gated layers for MNIST, 96 (32 per colour) in 8 for CIFAR-10, Adam (lr 1e-3)
in batches of 64, 20 epochs, the epoch of lowest validation NLL kept. These sizes are ours; the
paper trained 20 layers of 384 maps for its CIFAR-10 densities. Seed papers: MNIST .618 (LSA),
.6141 (OLED Table 1, MemAE protocol), CIFAR-10 .551; LSA notes Pix-CNN "fails in modeling
distributions for all digits but one" despite good samples.

Score (higher = more novel): `nll`, −log p(x) in nats, summed over pixels and channels."""
from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OneClassError
from ..neural import NEURAL_DEFAULTS, NeuralDetector, optimizer_step, tanh
from ..training import StepContext

LEVELS = 256  # intensity values of a uint8 pixel


def channel_groups(n: int, groups: int, period: int | None = None) -> torch.Tensor:
    """Colour group (0 = R, 1 = G, 2 = B) of each of n feature channels: channel o belongs to
    group (o mod period)·groups // period, so the two halves of a gated layer (period = n/2) and
    the C·256 output logits (period = n) split into `groups` blocks in the same order."""
    period = period or n
    return (torch.arange(n) % period) * groups // period


def centre_mask(out_groups: torch.Tensor, in_groups: torch.Tensor, mask_type: str) -> torch.Tensor:
    """Which input channels an output channel may read at its own pixel: those of earlier colour
    groups (type A), or earlier and its own (type B). With one colour, A reads none, B all."""
    if mask_type == "A":
        return out_groups[:, None] > in_groups[None, :]
    return out_groups[:, None] >= in_groups[None, :]


class HorizontalConv(nn.Conv2d):
    """A 1×(k//2+1) convolution over the pixels left of and at each position, causal in the row;
    its weights at the position itself are masked by colour group (`centre_mask`)."""

    def __init__(self, c_in: int, c_out: int, k: int, mask_type: str, in_groups: torch.Tensor,
                 out_groups: torch.Tensor) -> None:
        super().__init__(c_in, c_out, (1, k // 2 + 1))
        self.left = k // 2
        mask = torch.ones_like(self.weight)
        mask[:, :, 0, -1] = centre_mask(out_groups, in_groups, mask_type).float()
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (self.left, 0, 0, 0)), self.weight * self.mask, self.bias)


class VerticalConv(nn.Conv2d):
    """A (k//2+1)×k convolution over the rows above and the row of each position; `shift_down`
    then makes its features at row r depend on rows < r only."""

    def __init__(self, c_in: int, c_out: int, k: int) -> None:
        super().__init__(c_in, c_out, (k // 2 + 1, k))
        self.half = k // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.half, self.half, self.half, 0)))


def shift_down(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


class MaskedPointwise(nn.Conv2d):
    """A 1×1 convolution that respects the colour order (type B: a channel reads its own and
    earlier groups)."""

    def __init__(self, c_in: int, c_out: int, in_groups: torch.Tensor, out_groups: torch.Tensor) -> None:
        super().__init__(c_in, c_out, 1)
        self.register_buffer("mask", centre_mask(out_groups, in_groups, "B").float()[:, :, None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.mask, self.bias)


def gate(x: torch.Tensor, fast_tanh: bool = False) -> torch.Tensor:
    a, b = x.chunk(2, dim=1)
    return tanh(a, fast_tanh) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    """One gated layer of both stacks (van den Oord et al. Fig. 2)."""

    def __init__(self, c_in: int, filters: int, k: int, mask_type: str, groups: int, fast_tanh: bool = False) -> None:
        super().__init__()
        self.fast_tanh = fast_tanh
        in_groups = channel_groups(c_in, groups)
        gated = channel_groups(2 * filters, groups, period=filters)  # tanh half and sigmoid half
        own = channel_groups(filters, groups)
        self.vertical = VerticalConv(c_in, 2 * filters, k)
        # the vertical features come from rows above only: every horizontal channel may read them
        self.link = nn.Conv2d(2 * filters, 2 * filters, 1)
        self.horizontal = HorizontalConv(c_in, 2 * filters, k, mask_type, in_groups, gated)
        self.out = MaskedPointwise(filters, filters, own, own)
        self.residual = mask_type == "B" and c_in == filters

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v_pre = self.vertical(v)
        h_new = self.out(gate(self.horizontal(h) + self.link(shift_down(v_pre)), self.fast_tanh))
        return gate(v_pre, self.fast_tanh), h + h_new if self.residual else h_new


class GatedPixelCNN(nn.Module):
    """x (N×C×H×W in [0, 1]) → logits N×C×256×H×W of p(x_i | x_<i)."""

    def __init__(self, channels: int, filters: int, layers: int, first_kernel: int = 7, kernel: int = 3,
                 fast_tanh: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.layers = nn.ModuleList([GatedLayer(channels, filters, first_kernel, "A", channels, fast_tanh)] + [
            GatedLayer(filters, filters, kernel, "B", channels, fast_tanh) for _ in range(layers - 1)])
        own = channel_groups(filters, channels)
        logits = channel_groups(channels * LEVELS, channels)
        self.head = nn.ModuleList([MaskedPointwise(filters, filters, own, own),
                                   MaskedPointwise(filters, channels * LEVELS, own, logits)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = h = x
        for layer in self.layers:
            v, h = layer(v, h)
        out = self.head[1](F.relu(self.head[0](F.relu(h))))
        n, _, height, width = out.shape
        return out.view(n, self.channels, LEVELS, height, width)


def pixel_nll(logits: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """−log p(x_i | x_<i) of every pixel and channel (N×C×H×W, nats) for the uint8 batch and the
    N×C×256×H×W logits. The softmax runs over rows of 256 adjacent logits: with NHWC feature maps
    (the CPU default) the reshape is a view, and this is about twice as fast as a softmax over a
    strided class dimension."""
    n, c, levels, h, w = logits.shape
    rows = logits.permute(0, 3, 4, 1, 2).reshape(-1, levels)
    target = batch.permute(0, 2, 3, 1).reshape(-1, 1).long()
    # log_softmax + gather, not cross_entropy: the ONNX exporter's decomposition of an unreduced
    # 2-D cross_entropy returns a scalar
    nll = -F.log_softmax(rows, dim=1).gather(1, target)
    return nll.view(n, h, w, c).permute(0, 3, 1, 2)


class PixelCNNDetector(NeuralDetector):
    name = "pixel-cnn"
    description = "Gated PixelCNN (van den Oord et al. 2016), scored by −log p(x): the Pix-CNN baseline of LSA Table 1"
    defaults = {**NEURAL_DEFAULTS, "value_range": (0.0, 1.0), "lr": 1e-3, "batch_size": 64, "epochs": 20,
                "first_kernel": 7, "kernel": 3, "select": "loss",
                # 256 logits per pixel and channel: 3 MB per CIFAR-10 image, so score in small batches
                "score_batch_size": 64}
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "mnist": {"channels": 1, "size": 28, "filters": 32, "layers": 8},
        "cifar10": {"channels": 3, "size": 32, "filters": 96, "layers": 8},
    }
    components = ("nll",)
    headline = "nll"
    map_headline, map_reduction = "nll", "sum"

    def check_config(self) -> None:
        super().check_config()
        if int(self.config["filters"]) % self.channels:
            raise OneClassError(f"option filters={self.config['filters']} of method {self.name!r} must be a multiple "
                                f"of the {self.channels} colour channels (each colour gets its share of the maps)")
        for key in ("first_kernel", "kernel"):
            if int(self.config[key]) % 2 == 0:
                raise OneClassError(f"option {key}={self.config[key]} of method {self.name!r} must be odd "
                                    "(a kernel centred on its pixel)")

    def build_networks(self) -> dict[str, nn.Module]:
        return {"pixelcnn": GatedPixelCNN(self.channels, int(self.config["filters"]), int(self.config["layers"]),
                                          int(self.config["first_kernel"]), int(self.config["kernel"]),
                                          fast_tanh=self.fast_tanh)}

    def _nll_maps(self, batch: torch.Tensor) -> torch.Tensor:
        """Per-pixel NLL (N×C×H×W) of a uint8 batch: the network reads it in [0, 1], the softmax
        is over its 256 levels."""
        batch = batch.to(self.device, non_blocking=True)
        return pixel_nll(self.networks["pixelcnn"](self.inputs(batch)), batch)

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        nll = self._nll_maps(batch).flatten(1).sum(1)
        loss = nll.mean() / nll.new_tensor(batch[0].numel())  # per dimension: the same lr for any image size
        optimizer_step(self.optimizers["all"], loss)
        return {"loss": nll.detach().mean(), "bits_per_dim": loss.detach() / 0.6931471805599453}

    def validation_losses(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": self._nll_maps(batch).flatten(1).sum(1)}

    # scoring works on float batches in [0, 1] (the shared `_batched` converts): the levels are
    # recovered exactly, 255·x being a whole number for every uint8 input
    def _levels(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * (LEVELS - 1)).to(torch.uint8)

    def raw_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"nll": pixel_nll(self.networks["pixelcnn"](x), self._levels(x)).flatten(1).sum(1)}

    def raw_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"nll": pixel_nll(self.networks["pixelcnn"](x), self._levels(x)).sum(1)}
