"""LSA: Latent Space Autoregression (Abati et al., CVPR 2019), image presets; and `dae`, its
autoencoder without the estimator (the paper's DAE baseline and ablation).

Encoder f → code z ∈ [0,1]^d (sigmoid); decoder g; estimator h models p(z) autoregressively
with masked fully connected (MFC) layers, each position's CPD a multinomial over B bins.
Loss REC + λ·LLK (eq. 4); novelty NS = norm(REC) + norm(LLK) (eqs. 9–10)."""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.folder import image_paths
from ..detector import footage_path_error
from ..errors import OneClassError
from ..neural import NEURAL_DEFAULTS, NeuralDetector, optimizer_step, per_sample_sq_error
from ..training import StepContext


# ---- residual building blocks (Fig. 1(ii) of the paper; official code) ---------------------
class ResidualOp(nn.Module):
    """act(BN(f2(act(BN(f1(x))))) + BN(f3(x))) — the shortcut is the identity without f3."""

    def __init__(self, f1: nn.Module, f2: nn.Module, f3: nn.Module | None, c_out: int,
                 bn=nn.BatchNorm2d, slope: float = 0.01) -> None:
        super().__init__()
        self.branch = nn.Sequential(f1, bn(c_out), nn.LeakyReLU(slope), f2, bn(c_out))
        self.shortcut = nn.Sequential(f3, bn(c_out)) if f3 is not None else nn.Identity()
        self.act = nn.LeakyReLU(slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


def down_block(c_in: int, c_out: int) -> ResidualOp:
    return ResidualOp(nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
                      nn.Conv2d(c_in, c_out, 1, 2, 0, bias=False), c_out)


def up_block(c_in: int, c_out: int) -> ResidualOp:
    return ResidualOp(nn.ConvTranspose2d(c_in, c_out, 5, 2, 2, output_padding=1, bias=False),
                      nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
                      nn.ConvTranspose2d(c_in, c_out, 1, 2, 0, output_padding=1, bias=False), c_out)


def residual_block(c: int) -> ResidualOp:
    return ResidualOp(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.Conv2d(c, c, 3, 1, 1, bias=False), None, c)


def _fc(c_in: int, c_out: int, slope: float = 0.01) -> list[nn.Module]:
    return [nn.Linear(c_in, c_out), nn.BatchNorm1d(c_out), nn.LeakyReLU(slope)]


# each image architecture's input channels and how many times it halves the input: its
# feature map is size / factor on a side (the paper's 28 → 7 and 32 → 4), so it takes any size
# that is a multiple of the factor (a user's 64×64 inspection images, say)
IMAGE_ARCHS = {"mnist": {"channels": 1, "factor": 4}, "cifar10": {"channels": 3, "factor": 8}}


def image_input_problem(arch: str, size: Any, channels: Any) -> str | None:
    """Why LSA's image networks (`arch`; also the VAE's) cannot take such images, or None."""
    need, factor = IMAGE_ARCHS[arch]["channels"], IMAGE_ARCHS[arch]["factor"]
    if channels != need:
        return f"its {arch} networks take {need}-channel images"
    if not isinstance(size, int) or size < 2 * factor or size % factor:
        return f"its {arch} networks take square images whose side is a multiple of {factor}, at least {2 * factor}"
    return None


class Encoder(nn.Module):
    def __init__(self, arch: str, code_length: int, size: int) -> None:
        super().__init__()
        if arch not in IMAGE_ARCHS:
            raise ValueError(f"unknown LSA architecture {arch!r}")
        s = size // IMAGE_ARCHS[arch]["factor"]
        if arch == "mnist":      # 1×28×28 → 64×7×7
            conv, c, hidden = [down_block(1, 32), down_block(32, 64)], 64, 64
        else:                    # 3×32×32 → 30×30 → 256×4×4 (5×5 stride-2 blocks round up)
            conv = [nn.Conv2d(3, 32, 3, 1, 0, bias=False), residual_block(32),
                    down_block(32, 64), down_block(64, 128), down_block(128, 256)]
            c, hidden = 256, 256
        self.conv = nn.Sequential(*conv)
        self.fc = nn.Sequential(*_fc(c * s * s, hidden), nn.Linear(hidden, code_length), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).flatten(1))


class Decoder(nn.Module):
    def __init__(self, arch: str, code_length: int, size: int) -> None:
        super().__init__()
        if arch not in IMAGE_ARCHS:
            raise ValueError(f"unknown LSA architecture {arch!r}")
        s = size // IMAGE_ARCHS[arch]["factor"]
        if arch == "mnist":
            self.shape, hidden = (64, s, s), 64
            conv = [up_block(64, 32), up_block(32, 16), nn.Conv2d(16, 1, 1, bias=False)]
        else:
            self.shape, hidden = (256, s, s), 256
            conv = [up_block(256, 128), up_block(128, 64), up_block(64, 32), residual_block(32),
                    nn.Conv2d(32, 3, 1, bias=False)]
        self.fc = nn.Sequential(*_fc(code_length, hidden), *_fc(hidden, int(np.prod(self.shape))))
        self.conv = nn.Sequential(*conv)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.conv(self.fc(z).view(-1, *self.shape))  # no output activation (official code)


# ---- autoregressive estimators --------------------------------------------------------------
class MaskedFullyConnection(nn.Linear):
    """MFC (eq. 6): a linear map (B, d, c_in) → (B, d, c_out) in which output position j sees
    input positions i < j (type A) or i ≤ j (type B). The 0/1 mask multiplies the weight in the
    forward pass, so masked weights get zero gradient and optimiser state stays clean."""

    def __init__(self, mask_type: str, code_length: int, c_in: int, c_out: int) -> None:
        if mask_type not in ("A", "B"):
            raise ValueError("mask_type must be 'A' or 'B'")
        super().__init__(code_length * c_in, code_length * c_out)
        self.mask_type, self.code_length, self.c_in, self.c_out = mask_type, code_length, c_in, c_out
        pos_out = torch.arange(code_length).repeat_interleave(c_out)[:, None]  # row j·c_out + o
        pos_in = torch.arange(code_length).repeat_interleave(c_in)[None, :]    # column i·c_in + c
        mask = pos_in < pos_out if mask_type == "A" else pos_in <= pos_out
        self.register_buffer("mask", mask.float(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        y = F.linear(x.reshape(b, -1), self.weight * self.mask, self.bias)
        return y.view(b, self.code_length, self.c_out)

    def effective_parameters(self) -> int:
        """Weights that can be non-zero plus biases (the count of supplement §12)."""
        return int(self.mask.sum()) + self.bias.numel()

    def folded(self) -> nn.Module:
        """The same map with the mask multiplied into the weight, for export: an exported graph
        then stores one weight matrix, not a weight and a mask of its size."""
        return _FoldedMFC(self)


class _FoldedMFC(nn.Module):
    def __init__(self, mfc: MaskedFullyConnection) -> None:
        super().__init__()
        self.code_length, self.c_out = mfc.code_length, mfc.c_out
        self.weight = nn.Parameter((mfc.weight * mfc.mask).detach().clone(), requires_grad=False)
        self.bias = nn.Parameter(mfc.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        return F.linear(x.reshape(b, -1), self.weight, self.bias).view(b, self.code_length, self.c_out)


def autoregressive_stack(layer: Callable[[str, int, int, int], nn.Module], code_length: int,
                         hidden: Sequence[int], bins: int) -> nn.Sequential:
    """A type-A masked layer (1 → h₁: element i never sees itself), type-B layers after it, the
    last one to `bins` logits, LeakyReLU between: the shape of both MFC and MSC estimators."""
    widths = (1, *hidden)
    layers: list[nn.Module] = []
    for k, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [layer("A" if k == 0 else "B", code_length, a, b), nn.LeakyReLU()]
    layers.append(layer("B", code_length, widths[-1], bins))
    return nn.Sequential(*layers)


class MFCEstimator(nn.Module):
    """Table 2: MFC 1→32 (A), 3 × MFC 32→32 (B), MFC 32→B (B), LeakyReLU between layers."""

    def __init__(self, code_length: int, hidden: tuple[int, ...] = (32, 32, 32, 32), bins: int = 100) -> None:
        super().__init__()
        self.net = autoregressive_stack(MaskedFullyConnection, code_length, hidden, bins)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.unsqueeze(-1))  # (B, d) → logits (B, d, bins)


class LSTMEstimator(nn.Module):
    """The recurrent ablation (Fig. 6b): an LSTM reads z_1..z_{j−1} and predicts the CPD of z_j;
    the input is the code shifted right by one (a zero first), so causality holds by design."""

    def __init__(self, code_length: int, hidden: int = 100, bins: int = 100) -> None:
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, bins)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        shifted = F.pad(z, (1, 0))[:, :-1].unsqueeze(-1)
        out, _ = self.lstm(shifted)
        return self.head(out)


def quantise(z: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin index of each code value in [0, 1]: floor(z·B), with z = 1 in the last bin."""
    return (z.detach() * bins).long().clamp_(0, bins - 1)


def surprisal(logits: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """LLK per sample (eq. 11): Σ_j −log p(bin(z_j) | z_<j), over every code position (and, for
    video, every time step): z is (B, d) or (B, T, d), logits the same with a trailing bins axis."""
    bins = logits.shape[-1]
    target = quantise(z, bins).reshape(z.shape[0], -1)
    return F.cross_entropy(logits.reshape(z.shape[0], -1, bins).transpose(1, 2), target, reduction="none").sum(1)


# ---- detectors ---------------------------------------------------------------------------------
class LSADetector(NeuralDetector):
    name = "lsa"
    description = "Latent Space Autoregression (Abati et al. CVPR 2019): AE + MFC density on the code; NS score"
    defaults = {**NEURAL_DEFAULTS, "value_range": (0.0, 1.0), "code_length": 64, "bins": 100,
                "estimator": "mfc", "lam": 1.0, "noise_std": 0.0, "select": "loss"}
    presets = {
        # Table 2 of the supplement: λ, learning rate, batch size; epochs are not published
        "mnist": {"arch": "mnist", "channels": 1, "size": 28, "lam": 1.0, "lr": 1e-4, "batch_size": 256,
                  "epochs": 30},
        "cifar10": {"arch": "cifar10", "channels": 3, "size": 32, "lam": 0.1, "lr": 1e-3, "batch_size": 256,
                    "epochs": 30},
        # video: clips C×T×H×W; Ped2 trains on 8×32×32 patches of 16-frame windows of frames resized
        # to 256×384 (patch grid stride 16), σ = 0.025 noise on training clips, batch 2760 patches;
        # test windows slide by one frame (see oneclass.video)
        "ped2": {"arch": "ped2", "channels": 1, "frames": 8, "size": 32, "lam": 0.1, "lr": 1e-3,
                 "batch_size": 2760, "epochs": 30, "noise_std": 0.025, "video": "clip-patches",
                 "resize": [256, 384], "window": 16, "patch_stride": 16, "train_stride": 16, "test_stride": 1,
                 "max_train_samples": None},
        # architecture only: the ShanghaiTech data is not available here
        "shanghaitech": {"arch": "shanghaitech", "channels": 3, "frames": 16, "size": [256, 512], "lam": 1.0,
                         "lr": 1e-3, "batch_size": 8, "epochs": 30},
    }
    # the autoencoder alone (estimator "none") is the method `dae`, whose components it has
    choices = {"estimator": ("mfc", "lstm"), "arch": ("mnist", "cifar10", "ped2", "shanghaitech")}
    components = ("rec", "llk", "ns")
    headline = "ns"
    normalised = ("rec", "llk")
    map_headline, map_reduction = "rec", "sum"  # the surprisal is of the code: it has no pixels

    @property
    def uses_estimator(self) -> bool:
        return self.config["estimator"] != "none"

    def input_problem(self) -> str | None:
        return image_input_problem(self.config["arch"], self.config["size"], self.config["channels"])

    def check_config(self) -> None:
        super().check_config()
        if self.is_video and self.config["estimator"] == "lstm":
            raise OneClassError("the LSTM estimator is implemented for image presets only; "
                                "video presets use the MSC estimator (estimator='mfc')")

    @property
    def is_video(self) -> bool:
        return "frames" in self.config

    @property
    def image_size(self) -> int:
        size = self.config["size"]
        return size if isinstance(size, int) else tuple(size)

    def prepare(self, x: Any, name: str = "input") -> torch.Tensor:
        if not self.is_video:
            return super().prepare(x, name)
        from ..data.images import as_uint8_clips
        if image_paths(x, name) is not None:
            raise footage_path_error(name)
        size = self.image_size if isinstance(self.image_size, tuple) else (self.image_size,) * 2
        return as_uint8_clips(x, (self.channels, int(self.config["frames"]), *size), name=name)

    def build_networks(self) -> dict[str, nn.Module]:
        arch, d = self.config["arch"], self.config["code_length"]
        if self.is_video:
            from .lsa_video import MSCEstimator, VideoDecoder, VideoEncoder, VIDEO_ARCHS
            encoder = VideoEncoder(arch, d)
            nets = {"encoder": encoder, "decoder": VideoDecoder(arch, d, encoder.feature_shape)}
            if self.config["estimator"] == "mfc":  # MSC is the video counterpart of MFC
                nets["estimator"] = MSCEstimator(d, VIDEO_ARCHS[arch]["msc"], self.config["bins"])
            return nets
        size = self.image_size
        nets: dict[str, nn.Module] = {"encoder": Encoder(arch, d, size), "decoder": Decoder(arch, d, size)}
        if self.config["estimator"] == "mfc":
            nets["estimator"] = MFCEstimator(d, bins=self.config["bins"])
        elif self.uses_estimator:
            nets["estimator"] = LSTMEstimator(d, bins=self.config["bins"])
        return nets

    def _losses(self, x: torch.Tensor, x_in: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.networks["encoder"](x_in)
        out = {"rec": per_sample_sq_error(self.networks["decoder"](z), x)}
        if self.uses_estimator:
            # the estimator sees z itself (not detached): LLK's gradient reaches the encoder
            out["llk"] = surprisal(self.networks["estimator"](z), z)
        return out

    def _total(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        total = losses["rec"]
        if "llk" in losses:
            total = total + self.config["lam"] * losses["llk"]
        return total

    def train_step(self, batch: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        x = self.inputs(batch)
        x_in = x
        if self.config["noise_std"] > 0:
            x_in = x + self.config["noise_std"] * torch.randn(x.shape, generator=ctx.generator, device=x.device)
        losses = self._losses(x, x_in)
        loss = self._total(losses).mean()
        optimizer_step(self.optimizers["all"], loss)
        # detached tensors, not floats: the trainer syncs with the device once per epoch
        return {"loss": loss.detach(), **{k: v.detach().mean() for k, v in losses.items()}}

    def validation_losses(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.inputs(batch)
        losses = self._losses(x, x)
        return {"loss": self._total(losses), **losses}

    def raw_scores(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._losses(x, x)

    def raw_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"rec": (self.networks["decoder"](self.networks["encoder"](x)) - x).pow(2).sum(1)}

    def combine(self, scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "llk" in scores:
            scores["ns"] = scores["rec"] + scores["llk"]
        return scores


class DAEDetector(LSADetector):
    name = "dae"
    description = "Denoising autoencoder with LSA's architecture, scored by reconstruction error (LSA Table 1 baseline)"
    defaults = {**LSADetector.defaults, "estimator": "none", "noise_std": 0.1}
    presets: ClassVar[dict[str, dict[str, Any]]] = {k: dict(v) for k, v in LSADetector.presets.items()}
    components = ("rec",)
    headline = "rec"
    normalised = ()
    choices = {**LSADetector.choices, "estimator": ("none",)}

    @property
    def uses_estimator(self) -> bool:
        return False
