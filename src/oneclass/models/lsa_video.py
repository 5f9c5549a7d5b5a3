"""LSA for video (Abati et al., CVPR 2019, §3 and supplement Table 2): causal 3D residual
encoder, temporally-shared full connections (TFC), a 3D decoder, and the Masked Stacked
Convolution (MSC, eqs. 7–8) estimator over the code of every time step. The clip → frame scoring
of §4.2 (a frame's score is the mean over the windows that contain it) is `oneclass.video`'s, shared
with every video method.

A clip is C×T×H×W (Ped2: 1×8×32×32 patches; ShanghaiTech: 3×16×256×512). The code is T′×d:
one d-vector per remaining time step, each CPD a multinomial over B bins of [0, 1]."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .lsa import ResidualOp, autoregressive_stack


class CausalConv3d(nn.Conv3d):
    """3×3×3 convolution that sees only current and past frames: the kernel's later-time slice
    is masked to zero in the forward pass (time padding 1 keeps T)."""

    def __init__(self, c_in: int, c_out: int, stride: Sequence[int] = (1, 1, 1)) -> None:
        super().__init__(c_in, c_out, 3, tuple(stride), 1, bias=False)
        mask = torch.ones_like(self.weight)
        mask[:, :, 2] = 0.0  # kernel index 2 along time = frame t+1
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv3d(x, self.weight * self.mask, None, self.stride, self.padding)


def down3d(c_in: int, c_out: int, stride: Sequence[int]) -> ResidualOp:
    return ResidualOp(CausalConv3d(c_in, c_out, stride), CausalConv3d(c_out, c_out),
                      nn.Conv3d(c_in, c_out, 1, tuple(stride), 0, bias=False), c_out, bn=nn.BatchNorm3d)


def up3d(c_in: int, c_out: int, stride: Sequence[int]) -> ResidualOp:
    pad = tuple(s - 1 for s in stride)  # output = input × stride on every axis
    return ResidualOp(nn.ConvTranspose3d(c_in, c_out, 5, tuple(stride), 2, output_padding=pad, bias=False),
                      nn.Conv3d(c_out, c_out, 3, 1, 1, bias=False),
                      nn.ConvTranspose3d(c_in, c_out, 1, tuple(stride), 0, output_padding=pad, bias=False),
                      c_out, bn=nn.BatchNorm3d)


class TemporallySharedFC(nn.Module):
    """TFC: the same linear map applied to every time step's flattened features (B, T, F) → (B, T, out)."""

    def __init__(self, c_in: int, c_out: int, last: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(c_in, c_out)
        self.post = nn.Sigmoid() if last else nn.Sequential(nn.BatchNorm1d(c_out), nn.LeakyReLU())
        self.last = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        y = self.linear(x)
        if self.last:
            return self.post(y)
        return self.post(y.reshape(b * t, -1)).view(b, t, -1)


# Table 2 of the supplement: (channels, stride) of each block
VIDEO_ARCHS = {
    "ped2": {"input": (1, 8, 32, 32), "down": [(8, (1, 2, 2)), (12, (2, 1, 1)), (18, (1, 2, 2)), (27, (2, 1, 1)),
                                                 (40, (1, 2, 2))],
             "up": [(40, (1, 2, 2)), (27, (1, 2, 2)), (18, (2, 1, 1)), (12, (1, 2, 2)), (8, (2, 1, 1))],
             "tfc": (), "msc": (4, 4, 4, 4)},
    "shanghaitech": {"input": (3, 16, 256, 512), "down": [(8, (1, 2, 2)), (16, (1, 2, 2)), (32, (2, 2, 2)),
                                                          (64, (1, 2, 2)), (64, (2, 2, 2))],
                     "up": [(64, (2, 2, 2)), (32, (1, 2, 2)), (16, (2, 2, 2)), (8, (1, 2, 2)), (8, (1, 2, 2))],
                     "tfc": (512,), "msc": (4, 4)},
}


class VideoEncoder(nn.Module):
    def __init__(self, arch: str, code_length: int) -> None:
        super().__init__()
        spec = VIDEO_ARCHS[arch]
        c, t, h, w = spec["input"]
        blocks = []
        for width, stride in spec["down"]:
            blocks.append(down3d(c, width, stride))
            c, t, h, w = width, t // stride[0], h // stride[1], w // stride[2]
        self.conv = nn.Sequential(*blocks)
        self.feature_shape = (c, t, h, w)
        widths = (c * h * w, *spec["tfc"], code_length)
        self.tfc = nn.Sequential(*[TemporallySharedFC(a, b, last=k == len(widths) - 2)
                                   for k, (a, b) in enumerate(zip(widths[:-1], widths[1:]))])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.conv(x)                                    # B, C, T', H', W'
        b, c, t, h, w = f.shape
        return self.tfc(f.permute(0, 2, 1, 3, 4).reshape(b, t, c * h * w))  # B, T', d in [0, 1]


class VideoDecoder(nn.Module):
    def __init__(self, arch: str, code_length: int, feature_shape: tuple[int, int, int, int]) -> None:
        super().__init__()
        spec = VIDEO_ARCHS[arch]
        c, t, h, w = feature_shape
        self.feature_shape = feature_shape
        widths = (code_length, *reversed(spec["tfc"]), c * h * w)
        self.tfc = nn.Sequential(*[TemporallySharedFC(a, b) for a, b in zip(widths[:-1], widths[1:])])
        blocks = []
        for width, stride in spec["up"]:
            blocks.append(up3d(c, width, stride))
            c = width
        blocks.append(nn.Conv3d(c, spec["input"][0], 1, bias=False))
        self.conv = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, t, _ = z.shape
        c, _, h, w = self.feature_shape
        f = self.tfc(z).view(b, t, c, h, w).permute(0, 2, 1, 3, 4)
        return self.conv(f)


class MaskedStackedConvolution(nn.Module):
    """MSC (eqs. 7–8): (B, T, d, c_in) → (B, T, d, c_out). Output (t, i) is one (3 × d) convolution
    over (time, code) of its own, masked so it sees all of step t−1, step t at positions k < i
    (type A) or k ≤ i (type B), and nothing of step t+1. The d convolutions are one einsum over
    the time windows with a fixed 0/1 mask on the weight."""

    def __init__(self, mask_type: str, code_length: int, c_in: int, c_out: int) -> None:
        super().__init__()
        if mask_type not in ("A", "B"):
            raise ValueError("mask_type must be 'A' or 'B'")
        d = code_length
        self.mask_type, self.code_length, self.c_in, self.c_out = mask_type, d, c_in, c_out
        self.weight = nn.Parameter(torch.empty(d, c_out, c_in, 3, d))  # per position i: c_out×c_in×3×d
        self.bias = nn.Parameter(torch.zeros(d, c_out))
        bound = 1.0 / np.sqrt(c_in * 3 * d)
        nn.init.uniform_(self.weight, -bound, bound)
        i = torch.arange(d)[:, None]
        k = torch.arange(d)[None, :]
        current = (k < i) if mask_type == "A" else (k <= i)
        mask = torch.zeros(d, 1, 1, 3, d)
        mask[:, 0, 0, 0, :] = 1.0                       # previous time step: all positions
        mask[:, 0, 0, 1, :] = current.float()           # current time step: causal in the code
        self.register_buffer("mask", mask, persistent=False)  # next time step (index 2): off

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d, c = x.shape
        padded = F.pad(x, (0, 0, 0, 0, 1, 1))           # zero steps before the first and after the last
        windows = padded.unfold(1, 3, 1)                # B, T, d, c, 3 (time window t−1, t, t+1)
        return torch.einsum("btkcs,iocsk->btio", windows, self.weight * self.mask) + self.bias

    def effective_parameters(self) -> int:
        return int(self.mask.sum()) * self.c_in * self.c_out + self.bias.numel()


class MSCEstimator(nn.Module):
    """MSC A (1 → h₁), LeakyReLU, MSC B layers, MSC B (→ bins): logits (B, T, d, bins)."""

    def __init__(self, code_length: int, hidden: Sequence[int] = (4, 4, 4, 4), bins: int = 100) -> None:
        super().__init__()
        self.net = autoregressive_stack(MaskedStackedConvolution, code_length, hidden, bins)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.unsqueeze(-1))
