"""The fast path: conv weights in NHWC (`channels_last`, the default) compute the same FP32
maths as NCHW, survive save and load, and do not split a run's identity."""
from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys

import numpy as np
import pytest
import torch

import oneclass
from oneclass import cpu_memory, neural
from oneclass.evaluation import run_identity
from oneclass.training import StepContext


def conv_weights(det):
    """The 4-D conv weights whose layout shows (a 1×1 kernel or a single channel is both)."""
    return [m.weight for net in det.networks.values() for m in net.modules()
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
            and m.weight.shape[1] > 1 and m.weight.shape[2] * m.weight.shape[3] > 1]


@pytest.mark.parametrize("method", ["dae", "alocc", "attn-entropy"])
def test_both_layouts_give_the_same_scores_and_losses(method, embedded_split):
    dets = {}
    for on in (False, True):
        det = oneclass.create(method, "mnist", seed=0, device="cpu", batch_size=32, channels_last=on)
        det._build()  # the same seed: the same initial weights in either layout
        weights = conv_weights(det)
        assert weights and all(w.is_contiguous(memory_format=torch.channels_last) == on for w in weights)
        assert on or all(w.is_contiguous() for w in weights)
        dets[on] = det
    batch = dets[False].prepare(embedded_split.train.images[:32])  # in the preset's size and channels
    x = dets[False].inputs(batch)
    with torch.no_grad():
        for d in dets.values():
            d.train_mode(False)
        old, new = (dets[on].raw_scores(x) for on in (False, True))
    for k in old:
        np.testing.assert_allclose(new[k].numpy(), old[k].numpy(), rtol=1e-4, atol=1e-6)
    losses = {}
    for on, det in dets.items():
        det.train_mode(True)
        losses[on] = det.train_step(batch, StepContext(1, 0, torch.Generator().manual_seed(0)))
    for k in losses[False]:
        assert float(losses[True][k]) == pytest.approx(float(losses[False][k]), rel=1e-4, abs=1e-6), k


@pytest.mark.parametrize("method", ["dae", "vae", "memae", "oled"])
def test_every_feature_map_stays_nhwc_through_ambiguous_layers(method, embedded_split):
    """A 1-channel image batch, a 1×1 kernel, a single-input-channel weight and a feature map
    reshaped from a linear layer are each contiguous in both layouts: without NHWC strides forced
    on them, oneDNN ran those convolutions, and the batch norms and activations after them, in NCHW
    with a reorder at each change (VAE MNIST trained 16 % slower). OLED upsamples such a reshaped
    map: in NCHW its 4× larger output was copied to NHWC by the next convolution."""
    layouts = {}
    for on in (False, True):
        det = oneclass.create(method, "mnist", seed=0, device="cpu", batch_size=16, channels_last=on)
        det._build()
        seen: list[tuple[str, bool]] = []

        def record(module, args, out, name=""):
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.shape[1] > 1 and out.shape[2] * out.shape[3] > 1:
                seen.append((name, out.stride(1) == 1))

        for net in det.networks.values():
            for name, m in net.named_modules():
                if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.BatchNorm2d, torch.nn.Upsample)):
                    m.register_forward_hook(lambda mod, a, o, name=name: record(mod, a, o, name))
        det.train_mode(True)
        det.train_step(det.prepare(embedded_split.train.images[:16]), StepContext(1, 0, torch.Generator().manual_seed(0)))
        assert seen
        layouts[on] = seen
    assert [name for name, nhwc in layouts[True] if not nhwc] == []
    assert not layouts[False][0][1]  # the option off keeps PyTorch's layout (MemAE's memory reads back NHWC by itself)


@pytest.mark.parametrize("method", ["dae", "lsa", "vae", "memae"])
def test_no_strided_1x1_conv_with_few_input_channels_reaches_onednn(method, embedded_split, monkeypatch):
    """oneDNN's jit_1x1 backward-weights kernel writes past its scratchpad for a strided 1×1
    convolution whose NHWC source has fewer channels than its block (uxlfoundation/oneDNN#6035);
    the heap it corrupted crashed later tests at random (CI: an abort in Adam's state init, a
    segfault in GANomaly's backward). Such a layer (the MNIST presets' Conv2(1, 2, ·)) must run as a
    unit-stride 1×1 convolution on the subsampled input, in NHWC like the layers around it."""
    det = oneclass.create(method, "mnist", seed=0, device="cpu", batch_size=16)
    det._build()
    hazards = [m for net in det.networks.values() for m in net.modules() if neural._onednn_nhwc_hazard(m)]
    assert hazards and all(isinstance(m, neural.SubsampledPointwiseConv) for m in hazards)
    calls = []
    conv2d = torch.nn.functional.conv2d

    def recorded(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
        calls.append((tuple(weight.shape[2:]), torch.nn.modules.utils._pair(stride), weight.shape[1] * groups,
                      x.stride(1) == 1))
        return conv2d(x, weight, bias, stride, padding, dilation, groups)

    monkeypatch.setattr(torch.nn.functional, "conv2d", recorded)
    det.train_mode(True)
    det.train_step(det.prepare(embedded_split.train.images[:16]), StepContext(1, 0, torch.Generator().manual_seed(0)))
    pointwise = [c for c in calls if c[0] == (1, 1) and c[2] < 16]
    assert pointwise and all(stride == (1, 1) and nhwc for _, stride, _, nhwc in pointwise)


@pytest.mark.parametrize("padding, padding_mode", [(0, "zeros"), ((1, 2), "zeros"), (1, "reflect"), ("valid", "zeros")])
def test_the_subsampled_pointwise_conv_equals_the_strided_one(padding, padding_mode):
    torch.manual_seed(0)
    plain = torch.nn.Conv2d(3, 5, 1, stride=(2, 3), padding=padding, padding_mode=padding_mode)
    fast = torch.nn.Conv2d(3, 5, 1, stride=(2, 3), padding=padding, padding_mode=padding_mode)
    fast.load_state_dict(plain.state_dict())
    fast.__class__ = neural.SubsampledPointwiseConv
    x = torch.randn(4, 3, 11, 13)
    out_plain, out_fast = plain(x), fast(x)
    assert out_fast.shape == out_plain.shape
    torch.testing.assert_close(out_fast, out_plain)
    grad = torch.randn_like(out_plain)
    out_plain.backward(grad)
    out_fast.backward(grad)
    torch.testing.assert_close(fast.weight.grad, plain.weight.grad)
    torch.testing.assert_close(fast.bias.grad, plain.bias.grad)


@pytest.mark.parametrize("output_size", [None, [9, 11]])
def test_a_transposed_conv_with_its_bias_added_outside_is_the_same_layer(output_size):
    torch.manual_seed(0)
    plain = torch.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1)
    fast = torch.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1)
    fast.load_state_dict(plain.state_dict())
    fast.__class__ = neural.BiasAddedConvTranspose2d
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = neural._nhwc(torch.randn(3, 6, 5, 6))
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    out_plain, out_fast = plain(xs[0], output_size), fast(xs[1], output_size)
    assert out_fast.shape == out_plain.shape and out_fast.stride(1) == 1  # still NHWC
    torch.testing.assert_close(out_fast, out_plain)
    grad = torch.randn_like(out_plain)
    out_plain.backward(grad)
    out_fast.backward(grad)
    for a, b in ((fast.weight.grad, plain.weight.grad), (fast.bias.grad, plain.bias.grad), (xs[1].grad, xs[0].grad)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("on", [True, False])
def test_biased_transposed_convs_add_their_bias_outside_onednn_in_nhwc_only(on):
    """oneDNN does an NHWC transposed convolution's bias in reference code (MemAE MNIST trained
    ×1.11 faster without it); in NCHW the layer stays PyTorch's own."""
    det = oneclass.create("memae", "mnist", seed=0, device="cpu", batch_size=16, channels_last=on)
    det._build()
    transposed = [m for net in det.networks.values() for m in net.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert transposed and all(m.bias is not None for m in transposed)
    assert all(isinstance(m, neural.BiasAddedConvTranspose2d) == on for m in transposed)


def test_the_layout_survives_save_and_load(embedded_split, tmp_path):
    s = embedded_split
    det = oneclass.create("dae", "mnist", epochs=1, seed=0, device="cpu", batch_size=64)
    det.fit(s.train.images[:128], s.val.images[:64], progress=False)
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights(det))
    loaded = oneclass.load(det.save(tmp_path / "m.oneclass"), device="cpu")
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv_weights(loaded))
    np.testing.assert_array_equal(loaded.score_samples(s.test.images[:50]), det.score_samples(s.test.images[:50]))
    nchw = oneclass.create("dae", "mnist", seed=0, device="cpu", channels_last=False)
    nchw._set_state(det._get_state())  # weights saved in NHWC load into an NCHW model
    assert all(w.is_contiguous() for w in conv_weights(nchw))


def test_nhwc_by_default_on_a_cpu_only_and_as_asked_otherwise(monkeypatch):
    assert oneclass.create("dae", "mnist", device="cpu").channels_last is True
    assert oneclass.create("dae", "mnist", device="cpu", channels_last=False).channels_last is False
    monkeypatch.setattr("oneclass.detector.resolve_device", lambda name: torch.device("cuda"))  # as on a GPU
    assert oneclass.create("dae", "mnist", device="cuda").channels_last is False  # not measured there yet
    assert oneclass.create("dae", "mnist", device="cuda", channels_last=True).channels_last is True
    with pytest.raises(oneclass.OneClassError, match="channels_last='yes'.*true or false"):
        oneclass.create("dae", "mnist", channels_last="yes")


@pytest.mark.parametrize("method,option,real", [("dae", "channels_last", {"noise_std": 0.2}),
                                                 ("attn-entropy", "gemm_small_maps", {"noise_std": 0.2}),
                                                 ("pixel-cnn", "fast_tanh", {"layers": 3})])
def test_the_fast_path_is_not_part_of_a_run_identity(method, option, real):
    config = oneclass.create(method, "mnist", device="cpu").config
    assert config[option] is None
    same = [run_identity(method, "mnist", {**config, option: on}, "mnist", "mnist", "standard", {})
            for on in (False, True)]
    assert same[0] == same[1] and option not in same[0]["config"]
    other = run_identity(method, "mnist", {**config, **real}, "mnist", "mnist", "standard", {})
    assert other != same[0]  # while a real option does split it


def test_runs_of_a_check_stay_out_of_the_report(tmp_path):
    """A side check keeps its runs under results/checks/ (same identities as headline runs,
    another layout): `collect`, and so `report`, leaves them out."""
    from oneclass.evaluation import EvalSpec, collect, evaluate
    spec = EvalSpec("ocsvm", "mnist-embedded", classes=[0], options={"nu": 0.1})
    evaluate(spec, None, tmp_path / "checks" / "layout", progress=False, echo=lambda line: None)
    evaluate(spec, None, tmp_path / "headline", progress=False, echo=lambda line: None)
    runs = collect(tmp_path)
    assert len(runs) == 1 and "headline" in runs[0]["_path"]


def test_the_scoring_batch_follows_the_threads_on_a_cpu_and_the_option_wins(monkeypatch):
    """128 images per CPU thread (a smaller batch's feature maps stay in cache), at most 1024; 1024 on a GPU; an explicit
    `score_batch_size` always. Execution only: the scores do not depend on it."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert oneclass.create("dae", "mnist", device="cpu").score_batch_size == 256
    monkeypatch.setattr(torch, "get_num_threads", lambda: 32)
    assert oneclass.create("dae", "mnist", device="cpu").score_batch_size == 1024
    assert oneclass.create("dae", "mnist", device="cpu", score_batch_size=50).score_batch_size == 50
    assert oneclass.create("pixel-cnn", "mnist", device="cpu").score_batch_size == 64  # its preset's
    monkeypatch.setattr("oneclass.detector.resolve_device", lambda name: torch.device("cuda"))
    assert oneclass.create("dae", "mnist", device="cuda").score_batch_size == 1024
    with pytest.raises(oneclass.OneClassError, match="score_batch_size=0"):
        oneclass.create("dae", "mnist", score_batch_size=0)


def test_scores_do_not_depend_on_the_scoring_batch(embedded_split):
    det = oneclass.create("dae", "mnist", epochs=1, seed=0, device="cpu", batch_size=64)
    det.fit(embedded_split.train.images[:128], embedded_split.val.images[:64], progress=False)
    images = embedded_split.test.images[:90]
    scores = {}
    for size in (7, 64, 1024):
        det.config["score_batch_size"] = size
        scores[size] = det.score_samples(images)
    np.testing.assert_allclose(scores[7], scores[1024], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores[64], scores[1024], rtol=1e-5, atol=1e-6)


FAULTS_OF_FRESH_BLOCKS = """
import resource, torch, oneclass
oneclass.create("dae", "mnist", device="cpu")._build()  # a CPU detector: freed memory kept from here on

def faults():
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        torch.ones(16 << 20).sum()  # a 64 MB feature map, freed at once
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start

faults()
print(faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc's malloc only")
def test_a_cpu_detector_keeps_freed_memory_for_the_next_step():
    """glibc hands a block over its mmap threshold back to the kernel on free, so each training
    step faulted its feature maps in again page by page (DAE CIFAR-10: most of a step's kernel
    time); a CPU detector makes malloc keep freed memory. The environment can turn that off."""
    def faults(env: dict) -> int:
        out = subprocess.run([sys.executable, "-c", FAULTS_OF_FRESH_BLOCKS], capture_output=True, text=True,
                             env={**os.environ, **env}, timeout=120, check=True).stdout
        return int(out.split()[-1])

    pages = 3 * (64 << 20) // resource.getpagesize()
    assert faults({}) < pages // 100
    assert faults({cpu_memory.ENV: "0"}) > pages // 2


def test_fast_tanh_is_tanh_within_2e7_with_tanhs_own_gradient():
    """2·σ(2x) − 1 against a float64 tanh over the range a gate sees and beyond; the gradient is
    1 − y² of its own output, with and without autograd the same values."""
    x = torch.linspace(-20, 20, 400_001)
    exact = torch.tanh(x.double())
    fast = neural.tanh(x, True)
    assert fast.dtype == torch.float32 and (fast.double() - exact).abs().max() < 2e-7
    assert neural.tanh(x, False).equal(torch.tanh(x))
    leaf = x[::1000].clone().requires_grad_()
    y = neural.tanh(leaf, True)
    y.backward(torch.ones_like(y))
    torch.testing.assert_close(leaf.grad, 1 - y.detach() ** 2)
    torch.testing.assert_close(leaf.grad.double(), 1 - exact[::1000] ** 2, atol=5e-7, rtol=0)
    with torch.no_grad():
        assert neural.tanh(leaf, True).equal(y.detach())


def test_pixel_cnn_gates_take_the_fast_tanh_on_a_cpu_and_torch_tanh_when_asked(monkeypatch, embedded_split):
    """The option reaches the gates (torch.tanh is never called with it on), the default is on
    for a CPU and off on CUDA, and both paths give the same losses and scores to FP32 rounding."""
    assert oneclass.create("pixel-cnn", "mnist", device="cpu").fast_tanh is True
    kw = {"seed": 0, "device": "cpu", "filters": 8, "layers": 3, "batch_size": 16}
    dets = {on: oneclass.create("pixel-cnn", "mnist", fast_tanh=on, **kw) for on in (False, True)}
    batch = dets[False].prepare(embedded_split.train.images[:16])
    calls = []
    real_tanh = torch.tanh
    monkeypatch.setattr(torch, "tanh", lambda t: calls.append(1) or real_tanh(t))
    out = {}
    for on, det in dets.items():
        det._build()
        det.train_mode(True)
        calls.clear()
        loss = det.train_step(batch, StepContext(1, 0, torch.Generator().manual_seed(0)))["loss"]
        assert bool(calls) is not on, f"fast_tanh={on}: torch.tanh called {len(calls)} times"
        det.train_mode(False)
        with torch.no_grad():
            out[on] = (float(loss), det.raw_scores(det.inputs(batch))["nll"])
    assert out[True][0] == pytest.approx(out[False][0], rel=1e-5)
    torch.testing.assert_close(out[True][1], out[False][1], rtol=1e-4, atol=1e-3)
    monkeypatch.setattr("oneclass.detector.resolve_device", lambda name: torch.device("cuda"))
    assert oneclass.create("pixel-cnn", "mnist", device="cuda").fast_tanh is False
    with pytest.raises(oneclass.OneClassError, match="fast_tanh='no'.*true or false"):
        oneclass.create("pixel-cnn", "mnist", fast_tanh="no")



def test_live_taps_are_those_that_meet_the_image():
    # a 4×4 kernel, stride 2, padding 1 taking 2×2 to 1×1 reads the image with rows 1 and 2 only
    assert neural.live_taps(4, 2, 1, 2, 1, transposed=False) == (1, 2)
    assert neural.live_taps(4, 2, 1, 4, 2, transposed=False) == (0, 3)  # 4×4 → 2×2: every tap
    assert neural.live_taps(4, 2, 1, 1, 2, transposed=True) == (1, 2)   # 1×1 → 2×2 writes rows 0, 1
    assert neural.live_taps(3, 1, 3, 1, 1, transposed=False) == (-1, -1)  # padding only


def test_the_matrix_product_is_taken_where_it_was_measured_faster():
    """One position always; two to four with a large weight only (results/benchmarks-gemm-layers-cpu.md)."""
    assert neural._gemm_pays(1, torch.empty(64, 64, 4, 4))
    assert neural._gemm_pays(4, torch.empty(512, 256, 4, 4))
    assert not neural._gemm_pays(4, torch.empty(128, 64, 5, 5))  # ALOCC's MNIST discriminator: oneDNN ×1.85
    assert not neural._gemm_pays(16, torch.empty(512, 512, 4, 4))
    assert not neural._gemm_pays(0, torch.empty(512, 512, 4, 4))


@pytest.mark.parametrize("transposed", [False, True])
def test_the_matrix_product_convolution_is_pytorchs_own(transposed):
    """Output and both gradients against F.conv2d / F.conv_transpose2d in float64, over kernels,
    strides, paddings (dead taps cut), output paddings and non-square maps."""
    torch.manual_seed(0)
    cases = 0
    for k, (sh, sw), (ph, pw), (h, w), op in [(4, (2, 2), (1, 1), (2, 2), 0), (4, (2, 2), (1, 1), (1, 1), 0),
                                              (4, (2, 2), (1, 1), (4, 4), 1), (3, (1, 2), (1, 0), (1, 3), 0),
                                              (5, (3, 1), (2, 2), (2, 1), 2), (1, (1, 1), (0, 0), (2, 2), 0),
                                              (4, (1, 1), (0, 0), (4, 4), 0), (3, (2, 2), (1, 0), (1, 2), 1)]:
        x = torch.randn(3, 5, h, w, dtype=torch.float64, requires_grad=True)
        if transposed:
            weight = torch.randn(5, 4, k, k, dtype=torch.float64, requires_grad=True)
            ops = (min(op, sh - 1), min(op, sw - 1))
            ref = torch.nn.functional.conv_transpose2d(x, weight, None, (sh, sw), (ph, pw), ops)
            new = neural.conv_transpose2d_gemm(x, weight, (sh, sw), (ph, pw), ops)
        else:
            if h + 2 * ph < k or w + 2 * pw < k:
                continue
            weight = torch.randn(4, 5, k, k, dtype=torch.float64, requires_grad=True)
            bias = torch.randn(4, dtype=torch.float64)
            ref = torch.nn.functional.conv2d(x, weight, bias, (sh, sw), (ph, pw))
            new = neural.conv2d_gemm(x, weight, bias, (sh, sw), (ph, pw))
        assert new.shape == ref.shape
        torch.testing.assert_close(new, ref, rtol=1e-12, atol=1e-12)
        grad = torch.randn_like(ref)
        for a, b in zip(torch.autograd.grad(new, (x, weight), grad), torch.autograd.grad(ref, (x, weight), grad)):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        cases += 1
    assert cases >= 6


@pytest.mark.parametrize("on", [None, False])
def test_small_map_convolutions_take_the_matrix_product_where_asked(on, monkeypatch, embedded_split):
    """The attention AE's 4×4 → 2×2 → 1×1 encoder ends and its 1×1 → 2×2 → 4×4 decoder start run
    as matrix products in NHWC (oneDNN ran them at a fifth of the machine's rate); with the option
    off, or in NCHW, every layer is oneDNN's. Scores and a training step's losses are the same."""
    calls = []
    for name in ("conv2d_gemm", "conv_transpose2d_gemm"):
        real = getattr(neural, name)
        monkeypatch.setattr(neural, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    dets = {}
    for layout, option in (("nchw", {"channels_last": False}), ("nhwc", {"gemm_small_maps": on})):
        det = oneclass.create("attn-entropy", "mnist", seed=0, device="cpu", batch_size=16, **option)
        det._build()
        dets[layout] = det
    assert dets["nhwc"].gemm_small_maps is (on is None) and dets["nchw"].gemm_small_maps is False
    batch = dets["nchw"].prepare(embedded_split.train.images[:16])
    scores, losses = {}, {}
    for layout, det in dets.items():
        calls.clear()
        det.train_mode(False)
        with torch.no_grad():
            scores[layout] = det.raw_scores(det.inputs(batch))
        det.train_mode(True)
        losses[layout] = det.train_step(batch, StepContext(1, 0, torch.Generator().manual_seed(0)))
        took = layout == "nhwc" and on is None
        assert (calls.count("conv2d_gemm") >= 4 and calls.count("conv_transpose2d_gemm") >= 2) if took else not calls
    for k in scores["nchw"]:
        np.testing.assert_allclose(scores["nhwc"][k].numpy(), scores["nchw"][k].numpy(), rtol=1e-4, atol=1e-6)
    for k in losses["nchw"]:
        assert float(losses["nhwc"][k]) == pytest.approx(float(losses["nchw"][k]), rel=1e-4, abs=1e-6), k


def test_small_map_gradients_keep_the_weights_nhwc_layout():
    """Autograd hands the weight gradient back in the NHWC weight's own strides: otherwise the
    gradient accumulation copies it into that layout every step."""
    for cls, shape in ((torch.nn.Conv2d, (512, 512, 4, 4)), (torch.nn.ConvTranspose2d, (512, 256, 4, 4))):
        layer = cls(shape[0] if cls is torch.nn.Conv2d else shape[1], shape[1] if cls is torch.nn.ConvTranspose2d else shape[0],
                    4, 2, 1)
        layer.weight.data = layer.weight.data.contiguous(memory_format=torch.channels_last)
        layer.__class__ = neural.SmallMapConv2d if cls is torch.nn.Conv2d else neural.SmallMapConvTranspose2d
        x = torch.randn(2, layer.in_channels, 2, 2 if cls is torch.nn.Conv2d else 1).contiguous(
            memory_format=torch.channels_last)
        layer(x).sum().backward()
        assert layer.weight.grad.is_contiguous(memory_format=torch.channels_last), cls


def test_fused_adam_updates_nhwc_weights_in_place_without_copies():
    """The fused CPU kernel copies every tensor that is not NCHW-contiguous; `adam` updates an NHWC
    weight through its NHWC-ordered view instead: the same numbers as on NCHW weights, no copy."""
    from torch.profiler import ProfilerActivity, profile
    torch.manual_seed(0)
    shapes = [(16, 8, 4, 4), (8, 8, 3, 3), (8,), (4, 4, 1, 1)]
    start = [torch.randn(s) for s in shapes]
    grads = [[torch.randn(s) for s in shapes] for _ in range(3)]
    final = {}
    for nhwc in (False, True):
        fmt = torch.channels_last if nhwc else torch.contiguous_format
        weights = [w.clone().contiguous(memory_format=fmt if w.dim() == 4 else torch.contiguous_format).requires_grad_()
                   for w in start]
        opt = neural.adam(weights, 0.1, (0.5, 0.999), 1e-3)
        for step in grads:
            for w, g in zip(weights, step):
                w.grad = g.clone().contiguous(memory_format=fmt if g.dim() == 4 else torch.contiguous_format)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                opt.step()
            copies = [e.input_shapes for e in prof.events() if e.name == "aten::copy_"
                      and e.input_shapes and len(e.input_shapes[0]) == 4]  # (the step counts are copied)
            assert not copies, copies
        assert all(opt.state[w]["exp_avg"].shape == w.shape for w in weights)  # checkpoints keep their shapes
        final[nhwc] = [w.detach() for w in weights]
    for a, b in zip(final[True], final[False]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def _conv_output_dtypes(det) -> list[torch.dtype]:
    """Record the dtype of every convolution's output while the hooks stay registered."""
    seen: list[torch.dtype] = []
    for net in det.networks.values():
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                m.register_forward_hook(lambda mod, args, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize("method", ["dae", "alocc", "pixel-cnn"])
def test_bf16_trains_in_bf16_and_validates_and_scores_in_fp32(method, embedded_split):
    """Option `precision="bf16"`: the trainer's steps run their convolutions in BF16 (the weights
    stay FP32, and are updated), while validation and scoring run in FP32, so scores keep their
    resolution (BF16 keeps about 3 significant digits: Pix-CNN's summed −log p ties); the default is FP32."""
    from oneclass.training import Trainer
    assert oneclass.create(method, "mnist", device="cpu").config["precision"] == "fp32"
    det = oneclass.create(method, "mnist", seed=0, device="cpu", batch_size=32, precision="bf16")
    det._build()
    seen = _conv_output_dtypes(det)
    before = [p.detach().clone() for p in det.networks.parameters()]
    batch = det.prepare(embedded_split.train.images[:64])
    trainer = Trainer(epochs=1, batch_size=32, seed=0, device=torch.device("cpu"), progress=False)
    trainer.fit(det, batch[:32], batch[32:])  # one step, then the validation pass
    steps = 2 if method == "alocc" else 1  # ALOCC's step updates R then D: two forward passes
    trained = [d for d in seen if d == torch.bfloat16]
    assert len(trained) >= steps and torch.float32 in seen  # the validation pass: FP32
    assert all(p.dtype == torch.float32 for p in det.networks.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(det.networks.parameters(), before))
    seen.clear()
    det.normalisers, det.fitted = {}, True
    scores = det._raw(batch)
    assert seen and set(seen) == {torch.float32}
    assert all(v.dtype == np.float64 and len(np.unique(v)) > len(batch) // 2 for v in scores.values())


def test_precision_is_part_of_a_run_identity_only_away_from_fp32():
    """Runs recorded before the option existed were FP32: their keys (and checkpoints, and kept
    scores) stay theirs; a BF16 run is another run. A wrong value is named at creation."""
    from oneclass.score_store import model_key
    config = oneclass.create("dae", "mnist", device="cpu").config
    fp32, bf16 = (run_identity("dae", "mnist", {**config, "precision": p}, "mnist", "mnist", "standard", {})
                  for p in ("fp32", "bf16"))
    old = run_identity("dae", "mnist", {k: v for k, v in config.items() if k != "precision"}, "mnist", "mnist",
                       "standard", {})
    assert fp32 == old and "precision" not in fp32["config"]
    assert bf16 != fp32 and bf16["config"]["precision"] == "bf16"
    attn = oneclass.create("attn-entropy", "mnist", device="cpu").config  # a method with its own added options
    assert "precision" not in run_identity("attn-entropy", "mnist", attn, "mnist", "mnist", "standard", {})["config"]
    det = oneclass.create("dae", "mnist", seed=0, device="cpu")
    det._build()
    key = model_key(det)
    del det.config["precision"]  # a model of a version without the option: the same scores
    assert model_key(det) == key
    det.config["precision"] = "bf16"
    assert model_key(det) != key
    with pytest.raises(oneclass.OneClassError, match=r"precision='fp16'.*'fp32', 'bf16'"):
        oneclass.create("dae", "mnist", precision="fp16")


def test_anogans_search_steps_in_bf16_and_scores_in_fp32(embedded_split):
    det = oneclass.create("anogan", "mnist", seed=0, device="cpu", precision="bf16", search_steps=3)
    det._build()
    det.train_mode(False)
    seen = _conv_output_dtypes(det)
    x = det.inputs(det.prepare(embedded_split.test.images[:8]))
    out = det.search(x)
    assert torch.bfloat16 in seen and seen[-1] == torch.float32  # the steps, then the score's pass
    assert all(out[k].dtype == torch.float32 for k in ("a", "residual", "discrimination"))
