"""Throughput of every method: training and scoring images/s, and FLOPs per image.

    python scripts/bench.py [--device cpu|cuda] [--methods dae,lsa,...] [--out results/benchmarks]

Training speed is measured on the methods' own `train_step` (all of its alternating updates) over
real MNIST / CIFAR-shaped batches of the preset's batch size, after warm-up steps; scoring speed
on `score_components` of a large batch. FLOPs per image come from torch's FlopCounterMode over
one training step (forward + backward of every update) and one scoring pass, so the achieved
GFLOP/s can be set against the machine's peak. Results are written beside the settings (device,
threads, torch version) as JSON and Markdown."""
from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import oneclass
from oneclass.cpu_memory import keep_freed_memory
from oneclass.detector import cpu_name, versions
from oneclass.fileio import write_json, write_text
from oneclass.neural import reference_convolutions
from oneclass.training import StepContext, numerics

NEURAL = ["dae", "lsa", "alocc", "oled", "cae", "attn-entropy", "vae", "memae", "deep-svdd", "pixel-cnn", "anogan",
          "ganomaly"]
SHALLOW = ["ocsvm", "kde"]


def _cpu_busy_s() -> tuple[float, float] | None:
    """(busy CPU-seconds of the whole machine, CPU-seconds of this process) so far, from
    /proc/stat; None where there is no /proc (then only the load average is recorded)."""
    import os
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # all but idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


class Sharing:
    """Whether other work ran on the device while a row was measured. On a CPU: the cores other
    processes kept busy during the row (the machine's busy time from /proc/stat minus this
    process's own), since the load average also counts this process and the row before it; on
    a GPU: the compute processes other than this one."""

    def __init__(self, device: str) -> None:
        import os
        self.device = device
        self.record: dict = {"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             "cpu_load_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
        self._start = (time.perf_counter(), _cpu_busy_s())

    def finish(self) -> dict:
        import os
        import subprocess
        out = dict(self.record)
        wall, busy0 = self._start
        busy1 = _cpu_busy_s()
        if busy0 is not None and busy1 is not None:
            others = ((busy1[0] - busy0[0]) - (busy1[1] - busy0[1])) / max(time.perf_counter() - wall, 1e-9)
            out["other_cpu_cores_busy"] = round(max(others, 0.0), 2)
        if self.device.startswith("cuda"):
            try:
                pids = subprocess.run(["nvidia-smi", "--query-compute-apps=pid", "--format=csv,noheader"],
                                      capture_output=True, text=True, timeout=20).stdout.split()
                out["other_gpu_processes"] = len([p for p in pids if p.strip() != str(os.getpid())])
            except (OSError, subprocess.SubprocessError):
                out["other_gpu_processes"] = None
            out["device_shared"] = bool(out["other_gpu_processes"])
        elif "other_cpu_cores_busy" in out:  # background daemons stay well under a quarter of a core
            out["device_shared"] = out["other_cpu_cores_busy"] > 0.25
        else:  # this process adds about one to the load as it starts; more means other work
            out["device_shared"] = out["cpu_load_1min"] > 1.0
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def sgemm_gflops(device: str, windows: int = 8, window_s: float = 0.5, size: int = 2048) -> float:
    """FP32 GFLOP/s of a large matrix product on `device` at this process's thread count: the
    practical roofline every row is set against. The best of several short windows, since a
    shared host only ever slows a window down: the same 2-core VM has run it at 73 to 104 GFLOP/s
    within seconds, and near 300 on another host, so a row's share of its host's own peak is what
    compares across sessions, not its GFLOP/s."""
    dev = torch.device(device)
    a, b = torch.randn(size, size, device=dev), torch.randn(size, size, device=dev)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(windows):
        _sync(dev)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < window_s or n < 2:
            a @ b
            n += 1
        _sync(dev)
        best = max(best, 2 * size ** 3 * n / (time.perf_counter() - t0) / 1e9)
    return best


def copy_gbs(device: str, windows: int = 8, window_s: float = 0.5, mib: int = 256) -> float:
    """GB/s of copying a tensor far bigger than the caches (bytes read plus bytes written), at
    this process's thread count: the roofline of the small networks, whose batch norm, activation
    and pooling passes stream feature maps through memory. Best of several windows, as for sgemm.
    A host's memory can slow down while its multiply units do not (2026-12-03: MemAE MNIST 15 %
    under the night before at the same sgemm), so rows carry both."""
    dev = torch.device(device)
    src = torch.randn(mib * 2 ** 20 // 4, device=dev)
    dst = torch.empty_like(src)
    dst.copy_(src)
    best = 0.0
    for _ in range(windows):
        _sync(dev)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < window_s or n < 2:
            dst.copy_(src)
            n += 1
        _sync(dev)
        best = max(best, 2 * src.numel() * 4 * n / (time.perf_counter() - t0) / 1e9)
    return best


# options compared by --compare-option whose two sides are not False and True
SIDES: dict[str, tuple[object, object]] = {"precision": ("fp32", "bf16")}


def step(det: oneclass.Detector, batch: torch.Tensor, ctx: StepContext) -> object:
    """One training step as the trainer takes it: in the method's arithmetic (option `precision`)."""
    with numerics(det):
        return det.train_step(batch, ctx)


def _prepared(method: str, preset: str, images: torch.Tensor, device: str,
              options: dict | None = None) -> tuple[oneclass.Detector, torch.Tensor, StepContext, int]:
    """A built detector in training mode, its images on the device, a step context and its batch size."""
    det = oneclass.create(method, preset, device=device, **(options or {}))
    det._build()
    data = det.prepare(images).to(det.device)
    epoch = 1
    if hasattr(det, "on_epoch_start"):  # a phased method (Deep SVDD): time its main phase, the last epoch's
        epoch = det.training_epochs()
        det.on_epoch_start(1, data)
        det.on_epoch_start(epoch, data)
    det.train_mode(True)
    return det, data, StepContext(epoch, 0, torch.Generator(device=det.device).manual_seed(0)), int(det.config["batch_size"])


def _ready_to_score(det: oneclass.Detector) -> None:
    """Mark an untrained model fitted, with identity normalisers: scoring speed needs no training."""
    det.fitted = True
    det.normalisers = {k: oneclass.metrics.MinMax(0.0, 1.0) for k in det.normalised}


def bench_neural(method: str, preset: str, images: torch.Tensor, device: str, seconds: float,
                 options: dict | None = None) -> dict:
    det, data, ctx, bs = _prepared(method, preset, images, device, options)
    dev = det.device
    batch = data[:bs]
    # FLOPs of the model as its convolutions define them, whichever kernels then run them
    # (`gemm_small_maps` skips the taps that only meet padding)
    with FlopCounterMode(display=False) as fc, reference_convolutions():
        step(det, batch, ctx)
    train_flops = fc.get_total_flops() / bs
    for _ in range(3):  # warm-up (cuDNN autotuning, allocator)
        step(det, batch, ctx)
    _sync(dev)
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or steps < 3:
        step(det, data[(steps * bs) % (len(data) - bs):][:bs], ctx)
        steps += 1
    _sync(dev)
    train_ips = steps * bs / (time.perf_counter() - t0)
    # pages the kernel had to hand over afresh: malloc returning freed feature maps (cpu_memory.py)
    faults_per_step = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0) / steps
    det.train_mode(False)
    # AnoGAN searches the latent space for every image (500 gradient steps): a few images suffice
    searched = "search_steps" in det.config
    n_score, n_probe = (16, 4) if searched else (min(len(data), 2048), 256)
    score_flops = None  # the search's gradient steps defeat FlopCounterMode's module tracker
    if not searched:
        with torch.inference_mode(), FlopCounterMode(display=False) as fc, reference_convolutions():
            det.raw_scores(det.inputs(data[:n_probe]))
        score_flops = fc.get_total_flops() / n_probe
    _ready_to_score(det)
    det.score_components(data[:n_score])  # warm-up
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds / 2 or reps < 2:
        det.score_components(data[:n_score])
        reps += 1
    score_ips = reps * n_score / (time.perf_counter() - t0)
    return {"method": method, "preset": preset, "batch_size": bs, "channels_last": det.channels_last,
            "train_images_per_second": round(train_ips, 1), "score_images_per_second": round(score_ips, 1),
            "train_minor_page_faults_per_step": round(faults_per_step), "keep_freed_memory": keep_freed_memory(),
            "train_gflop_per_image": round(train_flops / 1e9, 4),
            "score_gflop_per_image": None if score_flops is None else round(score_flops / 1e9, 4),
            "train_achieved_gflops": round(train_ips * train_flops / 1e9, 1),
            "score_achieved_gflops": None if score_flops is None else round(score_ips * score_flops / 1e9, 1)}


def bench_video(method: str, device: str, frames: int, test_stride: int | None = None) -> dict:
    """Scoring speed on video: frames per second of a Ped2-sized clip (240×360 grey) through the
    whole video path (sampling, networks, aggregation to frame scores), untrained weights (speed
    does not depend on them); and training samples/s of the preset's batches."""
    from oneclass import video
    from oneclass.data.video import Clip
    from oneclass.metrics import MinMax
    opts = {"test_stride": test_stride} if test_stride else {}
    det = oneclass.create(method, "ped2", device=device, **opts)
    det._build()
    det.normalisers = {k: MinMax(0.0, 1.0) for k in det.normalised}
    det.fitted = True
    clip = Clip("bench", torch.randint(0, 256, (frames, 240, 360), dtype=torch.uint8).numpy())
    video.score_clip(det, Clip("warm", clip.frames[:max(16, det.config.get("window", 1))]))
    t0 = time.perf_counter()
    cs = video.score_clip(det, clip)
    _sync(det.device)
    seconds = time.perf_counter() - t0
    sampler = video.Sampler(det)
    bs = int(det.config["batch_size"])
    batch = sampler.training_samples(
        video.VideoData([Clip("t", clip.frames[:32])]), 0, max_samples=None)[0]
    batch = batch[torch.randint(0, len(batch), (bs,))].to(det.device)
    g = torch.Generator(device=det.device).manual_seed(0)
    det.train_mode(True)
    step(det, batch, StepContext(1, 0, g))
    _sync(det.device)
    t1, steps = time.perf_counter(), 0
    while time.perf_counter() - t1 < 5.0 or steps < 2:
        step(det, batch, StepContext(1, steps, g))
        steps += 1
    _sync(det.device)
    train_rate = steps * bs / (time.perf_counter() - t1)
    fps = frames / seconds
    return {"method": method, "preset": "ped2" + (f" (test_stride {test_stride})" if test_stride else ""),
            "batch_size": bs, "train_samples_per_second": round(train_rate, 1),
            "score_frames_per_second": round(fps, 2), "score_samples_per_second": round(cs.samples / seconds, 1),
            "samples_per_frame": round(cs.samples / frames, 1), "real_time_at_10_fps": fps >= 10.0,
            "frames_timed": frames, "device": device}


def bench_shallow(method: str, x_train: torch.Tensor, x_test: torch.Tensor) -> dict:
    det = oneclass.create(method, "mnist")
    t0 = time.perf_counter()
    det.fit(x_train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    det.score_samples(x_test)
    score_s = time.perf_counter() - t0
    return {"method": method, "preset": "mnist", "n_train": len(x_train),
            "train_images_per_second": round(len(x_train) / fit_s, 1),
            "score_images_per_second": round(len(x_test) / score_s, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--methods", default=",".join(NEURAL + SHALLOW))
    ap.add_argument("--seconds", type=float, default=10.0, help="timing window per method")
    ap.add_argument("--out", default="results/benchmarks")
    ap.add_argument("--render", action="store_true", help="only rewrite the Markdown from the JSON")
    ap.add_argument("--video", action="store_true",
                    help="UCSD Ped2 presets instead: scoring frames/s (Ped2 was filmed at 10 frames/s)")
    ap.add_argument("--frames", type=int, default=48, help="frames per timed clip (--video)")
    ap.add_argument("--gemm-layers", action="store_true",
                    help="time single convolutions of small maps, oneDNN against the matrix product of "
                         "`gemm_small_maps`, forward + backward: writes <out>-gemm-layers-<device>")
    ap.add_argument("--adam-layout", action="store_true",
                    help="time one fused Adam step over each method's weights in its CPU layout, torch.optim.Adam "
                         "against oneclass's `neural.adam`: writes <out>-adam-layout-<device>")
    ap.add_argument("--export", action="store_true",
                    help="ONNX export instead: file size, and scoring images/s in onnxruntime beside PyTorch")
    ap.add_argument("--pyod", action="store_true",
                    help="PyOD's AutoEncoder (its defaults) beside DAE and LSA on MNIST classes: AUROC, fit "
                         "CPU-seconds, AUROC per CPU-second (needs the bench extra: pip install -e '.[bench]')")
    ap.add_argument("--classes", default="0,1,2", help="MNIST normal classes (--pyod)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs of DAE and LSA (--pyod; default: their presets')")
    ap.add_argument("--seed", type=int, default=0, help="seed of every model and split (--pyod)")
    ap.add_argument("--data-root", default=None, help="folder with mnist/ (--pyod; default: $ONECLASS_DATA)")
    ap.add_argument("--compare-option", default=None, metavar="NAME",
                    help="a boolean option of the neural methods (channels_last), or precision (fp32 against "
                         "bf16): train and score each method with it off and on, alternately, and write the ratio "
                         "to <out>-<NAME>-<device>")
    ap.add_argument("--suite", action="store_true",
                    help="wall time of a small `oneclass reproduce` suite (OC-SVM and KDE, --classes, seed 0) run "
                         "one run after the other and on Ray, and how far their AUROCs differ; writes "
                         "<out>-suite-cpu")
    args = ap.parse_args()
    if args.suite:
        return main_suite(args)
    if args.pyod and args.render:
        out = Path(f"{args.out}-pyod-{'cpu' if args.device == 'cpu' else 'cuda'}")
        return _write_pyod(out, args, json.loads(out.with_suffix(".json").read_text())["results"])
    if args.pyod:
        return main_pyod(args)
    if args.video:
        return main_video(args)
    if args.export:
        return main_export(args)
    if args.gemm_layers:
        return main_gemm_layers(args)
    if args.adam_layout:
        return main_adam_layout(args)
    if args.render and args.compare_option:
        name = args.compare_option
        out = Path(f"{args.out}-{name.replace('_', '-')}-{'cpu' if args.device == 'cpu' else 'cuda'}")
        data = json.loads(out.with_suffix(".json").read_text())
        rows = data["results"]
        return write_compare(out, data["settings"], rows, name, rows[0].get("rounds", 5), data["settings"]["timing_window_s"])
    if args.render:
        out = Path(f"{args.out}-{'cpu' if args.device == 'cpu' else 'cuda'}")
        data = json.loads(out.with_suffix(".json").read_text())
        write_markdown(out, data["settings"], data["results"], data["settings"])
        return
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    train, test = oneclass.datasets.embedded()
    device = torch.device(args.device)
    settings = run_settings(device, stamp, timing_window_s=args.seconds,
                            data="embedded MNIST subset (grey 28×28, replicated to RGB 32×32 for the cifar10 presets)")
    settings["device"] = args.device
    out = Path(f"{args.out}-{'cpu' if device.type == 'cpu' else 'cuda'}")
    old_settings = json.loads(out.with_suffix(".json").read_text())["settings"] if out.with_suffix(".json").exists() else {}
    rows: list[dict] = []
    watch = Sharing(args.device)
    peak = {"host_sgemm_gflops": round(sgemm_gflops(args.device), 1), "host_copy_gbs": round(copy_gbs(args.device), 1),
            **{f"sgemm_{k}": v for k, v in watch.finish().items()}}
    print(json.dumps(peak), flush=True)
    if args.compare_option:
        return main_compare(args, train.images, peak)

    def record(row: dict) -> None:
        """Keep each row as soon as it is measured: a cut-off run loses only the row in progress."""
        row = {**row, "host_sgemm_gflops": peak["host_sgemm_gflops"], "host_copy_gbs": peak["host_copy_gbs"],
               "host_cpu": settings["host_cpu"]}
        if row.get("train_achieved_gflops") is not None:  # the share of this host's own matrix-product rate
            row["train_share_of_sgemm"] = round(row["train_achieved_gflops"] / peak["host_sgemm_gflops"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
        merged = _merge_rows(out, rows, NEURAL + SHALLOW)
        write_json(out.with_suffix(".json"), {"settings": settings, "results": merged})
        write_markdown(out, settings, merged, old_settings)

    for method in args.methods.split(","):
        if method in SHALLOW:
            watch = Sharing(args.device)
            record({**bench_shallow(method, train.images[:2000], test.images), **watch.finish()})
            continue
        for preset in ["mnist"] if method == "cae" else ["mnist", "cifar10"]:
            watch = Sharing(args.device)
            record({**bench_neural(method, preset, train.images, args.device, args.seconds), **watch.finish()})


def alternating_windows(sides: dict[str, Callable[[], object]], window_s: float, rounds: int,
                        min_calls: int = 2, sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds per call of each side, one timing window per side and round, the sides' order reversed
    every other round (a, b, b, a, ...): a host whose speed drifts during a row (a shared VM's does,
    by 20 % within a minute) then slows every side alike. Each side is called once first (warm-up)."""
    for fn in sides.values():
        fn()
    sync()
    names = list(sides)
    per_call: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            calls, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < window_s or calls < min_calls:
                sides[name]()
                calls += 1
            sync()
            per_call[name].append((time.perf_counter() - t0) / calls)
    return per_call


def bench_option(method: str, preset: str, images: torch.Tensor, device: str, seconds: float, name: str,
                 rounds: int = 5) -> dict:
    """Training and scoring images/s of one method with an option off and on (`SIDES`: False and
    True, or the values named there): both models are built once and timed in alternating windows
    (`alternating_windows`), and each side's median window counts. The spread is that of the off
    windows."""
    values = SIDES.get(name, (False, True))
    models = {on: _prepared(method, preset, images, device, {name: values[on]}) for on in (False, True)}
    for det, data, ctx, bs in models.values():
        for _ in range(2):  # warm-up (alternating_windows adds a third step)
            step(det, data[:bs], ctx)

    def training(on: bool) -> Callable[[], object]:
        det, data, ctx, bs = models[on]
        steps = itertools.count()
        return lambda: step(det, data[(next(steps) * bs) % (len(data) - bs):][:bs], ctx)

    searched = "search_steps" in models[True][0].config  # AnoGAN's latent search: a few images suffice
    n_score = 16 if searched else min(len(models[True][1]), 512)
    sync = lambda: _sync(models[True][0].device)  # noqa: E731
    for det, *_ in models.values():
        det.train_mode(True)
    train_s = alternating_windows({on: training(on) for on in (False, True)}, seconds / rounds, rounds, sync=sync)
    for det, *_ in models.values():
        _ready_to_score(det)
    score_s = alternating_windows({on: (lambda d=models[on][0], x=models[on][1][:n_score]: d.score_components(x))
                                   for on in (False, True)}, seconds / rounds / 2, rounds, min_calls=1, sync=sync)
    det, data, ctx, bs = models[True]
    windows = {"train": {on: [bs / t for t in train_s[on]] for on in (False, True)},
               "score": {on: [n_score / t for t in score_s[on]] for on in (False, True)}}
    det.train_mode(True)
    with FlopCounterMode(display=False) as fc:
        step(det, data[:bs], ctx)
    row = {"method": method, "preset": preset, "batch_size": bs, "rounds": rounds, "sides": list(values),
           "train_gflop_per_image": round(fc.get_total_flops() / bs / 1e9, 4)}
    for kind, sides in windows.items():
        off, on = (float(np.median(sides[v])) for v in (False, True))
        row[f"{kind}_off"], row[f"{kind}_on"], row[f"{kind}_gain"] = round(off, 1), round(on, 1), round(on / off, 3)
        row[f"{kind}_off_spread"] = round((max(sides[False]) - min(sides[False])) / off, 3)
        row[f"{kind}_windows"] = {str(v).lower(): [round(w, 1) for w in sides[v]] for v in (False, True)}
    return row


def main_compare(args: argparse.Namespace, images: torch.Tensor, peak: dict) -> None:
    """Each method with a boolean option off and on (`bench_option`), one row per preset."""
    name = args.compare_option
    out = Path(f"{args.out}-{name.replace('_', '-')}-{'cpu' if args.device == 'cpu' else 'cuda'}")
    settings = run_settings(torch.device(args.device), time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            timing_window_s=args.seconds, option=name, **peak,
                            data="embedded MNIST subset (grey 28×28, replicated to RGB 32×32 for the cifar10 presets)")
    fresh: list[dict] = []  # this run's rows; the file's others are merged in each time, never carried
    for method in [m for m in args.methods.split(",") if m in NEURAL]:
        for preset in ["mnist"] if method == "cae" else ["mnist", "cifar10"]:
            watch = Sharing(args.device)
            row = bench_option(method, preset, images, args.device, args.seconds, name)
            row = {**row, **watch.finish(), "host_sgemm_gflops": peak["host_sgemm_gflops"], "host_cpu": settings["host_cpu"]}
            for kind in ("off", "on"):
                row[f"train_share_of_sgemm_{kind}"] = round(
                    row[f"train_{kind}"] * row["train_gflop_per_image"] / peak["host_sgemm_gflops"], 3)
            print(json.dumps(row), flush=True)
            fresh.append(row)
            rows = _merge_rows(out, fresh, NEURAL)
            write_compare(out, settings, rows, name, row["rounds"], args.seconds)


def write_compare(out: Path, settings: dict, rows: list[dict], name: str, rounds: int, seconds: float) -> None:
    off, on = (json.dumps(v) if not isinstance(v, bool) else str(v) for v in SIDES.get(name, (False, True)))
    head = ["method", "preset", "batch", f"train img/s {name}={off}", f"={on}", "gain",
            f"spread of the {off} windows", f"share of host sgemm {off} → {on}", f"score img/s {name}={off}",
            f"={on}", "gain", "measured", "device shared"]
    cells = [[r["method"], r["preset"], r["batch_size"], r["train_off"], r["train_on"],
              f"×{r['train_gain']:.2f}", f"{100 * r['train_off_spread']:.0f} %",
              f"{100 * r['train_share_of_sgemm_off']:.0f} % → {100 * r['train_share_of_sgemm_on']:.0f} %",
              r["score_off"], r["score_on"], f"×{r['score_gain']:.2f}", r["measured_at"][:16], _shared(r, {})]
             for r in rows]
    write_rows(out, settings, rows,
               f"Option `{name}` off and on: training and scoring images/s on {settings['host_cpu']} "
               f"({settings['torch_threads']} threads), torch {settings['versions']['torch']}, medians of "
               f"{rounds} alternating windows per side ({seconds:g} s of training per row and "
               f"side); this host's FP32 matrix product ran at {settings['host_sgemm_gflops']} GFLOP/s when the "
               f"last rows were measured (each row's own rate is in the JSON). Written by `scripts/bench.py "
               f"--compare-option {name}` from {out.name}.json.", head, cells)


def main_video(args: argparse.Namespace) -> None:
    rows = []
    for method, stride in (("alocc", None), ("oled", None), ("lsa", None), ("lsa", 16)):
        if method not in args.methods.split(","):
            continue
        watch = Sharing(args.device)
        row = {**bench_video(method, args.device, args.frames, stride), **watch.finish()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    device = torch.device(args.device)
    tag = "cpu" if device.type == "cpu" else "cuda"
    out = Path(f"{args.out}-video-{tag}")
    settings = run_settings(device, time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            data=f"random grey 240×360 frames, {args.frames} per clip (Ped2's size)")
    rows = _merge_rows(out, rows, VIDEO_ORDER)
    head = ["method", "preset", "score frames/s", "real time (10 fps)", "samples/frame", "score samples/s",
            "train samples/s", "batch", "measured", "device shared"]
    cells = [[r["method"], r["preset"], r["score_frames_per_second"], "yes" if r["real_time_at_10_fps"] else "no",
              r["samples_per_frame"], r["score_samples_per_second"], r["train_samples_per_second"], r["batch_size"],
              r["measured_at"][:16], _shared(r, {})] for r in rows]
    write_rows(out, settings, rows,
               f"Video scoring speed on {settings['device_name']} ({settings['torch_threads']} threads), torch "
               f"{settings['versions']['torch']}: the whole path from frames to frame scores. UCSD Ped2 was filmed "
               f"at 10 frames/s. Written by `scripts/bench.py --video` from {out.name}.json.", head, cells)


def write_rows(out: Path, settings: dict, rows: list[dict], title: str, head: list[str], cells: list[list]) -> None:
    """`out`.json (settings and rows) and `out`.md (the table), and the table on stdout."""
    write_json(out.with_suffix(".json"), {"settings": settings, "results": rows})
    lines = markdown_table(title, head, cells)
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


VIDEO_ORDER = ["alocc", "oled", "lsa"]


def _headline_aurocs(results: Path) -> dict[str, float]:
    """{group/classC_seedS: headline AUROC} of every run record under `results`."""
    out = {}
    for path in sorted(results.glob("*/class*_seed*.json")):
        record = json.loads(path.read_text())
        out[f"{path.parent.name}/{path.stem}"] = record["metrics"][record["headline"]]["auroc"]
    return out


def _idle_window(seconds: float = 5.0) -> dict:
    """The cores other processes keep busy while this one sleeps `seconds`."""
    watch = Sharing("cpu")
    time.sleep(seconds)
    return watch.finish()


def main_suite(args: argparse.Namespace) -> None:
    """The same suite, each executor into an empty results folder, timed as a user would time it
    (the whole command, Ray's start included); the AUROCs of the two compared run by run."""
    import subprocess
    import sys
    import tempfile
    data_root = args.data_root or os.environ.get("ONECLASS_DATA")
    if not data_root:
        raise SystemExit("--suite needs --data-root (or $ONECLASS_DATA) with mnist/ and the CIFAR-10 copy")
    suite = ["baselines", "--method", "ocsvm,kde", "--classes", args.classes, "--seeds", "0"]
    rows, aurocs = [], {}
    with tempfile.TemporaryDirectory(prefix="oneclass-suite-") as tmp:
        for executor, how in (("local", "one run after the other in one process"),
                              ("ray", "a local Ray instance, one run per CPU")):
            results = Path(tmp) / executor
            command = [sys.executable, "-m", "oneclass", "reproduce", *suite, "--executor", executor,
                       "--data-root", data_root, "--results", str(results)]
            # the suite's own work runs in other processes (Ray's workers are not even our children),
            # so other work on the CPU is read in quiet windows just before and after the command
            before = _idle_window()
            t0 = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - t0
            after = _idle_window()
            others = max(before["other_cpu_cores_busy"], after["other_cpu_cores_busy"])
            aurocs[executor] = _headline_aurocs(results)
            rows.append({"executor": executor, "how": how, "wall_seconds": round(wall, 1),
                         "runs": len(aurocs[executor]), "command": "oneclass reproduce " + " ".join(suite) +
                         f" --executor {executor}", "measured_at": before["measured_at"],
                         "other_cpu_cores_busy_before": before["other_cpu_cores_busy"],
                         "other_cpu_cores_busy_after": after["other_cpu_cores_busy"],
                         "other_cpu_cores_busy": others, "device_shared": others > 0.25})
            print(json.dumps(rows[-1]), flush=True)
    common = sorted(set(aurocs["local"]) & set(aurocs["ray"]))
    differences = {k: round(aurocs["ray"][k] - aurocs["local"][k], 6) for k in common}
    by_method: dict[str, float] = {}
    for k, d in differences.items():
        group = k.split("__")[0] + " " + k.split("__")[1]
        by_method[group] = max(by_method.get(group, 0.0), abs(d))
    out = Path(f"{args.out}-suite-cpu")
    settings = run_settings(torch.device("cpu"), time.strftime("%Y-%m-%dT%H:%M:%S%z"), data_root=data_root)
    record = {"settings": settings, "results": rows, "auroc_local": aurocs["local"], "auroc_ray": aurocs["ray"],
              "auroc_ray_minus_local": differences, "largest_auroc_difference": by_method}
    write_json(out.with_suffix(".json"), record, compact=True)
    head = ["executor", "how", "runs", "wall time (s)", "measured", "device shared"]
    cells = [[r["executor"], r["how"], r["runs"], r["wall_seconds"], r["measured_at"][:16], _shared(r, {})]
             for r in rows]
    lines = markdown_table(f"Wall time of `oneclass reproduce {' '.join(suite)}` on {settings['host_cpu']} "
                           f"({os.cpu_count()} CPUs), each executor into an empty results folder. Written by "
                           f"`scripts/bench.py --suite` from {out.name}.json.", head, cells)
    lines += ["", "Largest |AUROC(ray) − AUROC(local)| of a run, per method and dataset (the same seed; the two "
              "differ only in BLAS threads: the local process uses every core, a Ray worker one):", ""]
    lines += markdown_table("", ["method, dataset", "largest difference"],
                            [[k, f"{v:.4f}"] for k, v in sorted(by_method.items())])[2:]
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


def bench_export(method: str, train: torch.Tensor, test: torch.Tensor, seconds: float) -> dict:
    """Fit briefly (speed does not depend on the weights), export, then time the same uint8
    batch through `score_components` (PyTorch) and the ONNX file (onnxruntime, CPU)."""
    import tempfile

    import numpy as np
    import onnxruntime as ort

    from oneclass.export import export_onnx
    extra = {"pretrain_epochs": 1} if method == "deep-svdd" else {}
    det = oneclass.create(method, "mnist", epochs=1, seed=0, device="cpu", **extra).fit(train, progress=False)
    images = det.prepare(test).numpy()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = export_onnx(det, Path(tmp) / "m.onnx")
        export_s = time.perf_counter() - t0
        session = ort.InferenceSession(str(Path(tmp) / "m.onnx"), providers=["CPUExecutionProvider"])

    def rate(score) -> float:
        score()  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            score()
            n += len(images)
        return round(n / (time.perf_counter() - t0), 1)
    torch_rate = rate(lambda: det.score_components(images))
    onnx_rate = rate(lambda: session.run(None, {"images": images}))
    diff = float(np.abs(session.run(None, {"images": images})[0] - det.score_samples(images)).max())
    return {"method": method, "preset": "mnist", "onnx_mb": round(info["bytes"] / 1e6, 2),
            "export_seconds": round(export_s, 1), "batch": len(images), "torch_score_images_per_second": torch_rate,
            "onnxruntime_score_images_per_second": onnx_rate, "max_abs_diff_headline": diff,
            "onnxruntime": ort.__version__, "onnx_threads": session.get_session_options().intra_op_num_threads}


def main_export(args: argparse.Namespace) -> None:
    train, test = oneclass.datasets.embedded()
    train_images = train.images[train.labels == 3][:500]
    rows = []
    for method in args.methods.split(","):
        if method in SHALLOW:
            continue  # scikit-learn models are not exported
        watch = Sharing(args.device)
        row = {**bench_export(method, train_images, test.images, args.seconds), **watch.finish()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(f"{args.out}-export-cpu")
    settings = run_settings(torch.device("cpu"), time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                            data="embedded MNIST test set (2000 grey 28×28 images, 32×32 for attn-entropy), one batch")
    rows = _merge_rows(out, rows, NEURAL)
    head = ["method", "ONNX MB", "export s", "PyTorch img/s", "onnxruntime img/s", "ratio", "max abs diff of score",
            "measured", "device shared"]
    cells = [[r["method"], r["onnx_mb"], r["export_seconds"], r["torch_score_images_per_second"],
              r["onnxruntime_score_images_per_second"],
              f"{r['onnxruntime_score_images_per_second'] / r['torch_score_images_per_second']:.2f}",
              f"{r['max_abs_diff_headline']:.1e}", r["measured_at"][:16], _shared(r, {})] for r in rows]
    write_rows(out, settings, rows,
               f"ONNX export on {settings['device_name']} (torch {settings['torch_threads']} threads, torch "
               f"{settings['versions']['torch']}): the whole scoring path, uint8 images to the headline score, in "
               f"one file. Scoring images/s of one batch of {rows[0]['batch'] if rows else 0} images. Written by "
               f"`scripts/bench.py --export` from {out.name}.json.", head, cells)


# (transposed, in channels, out channels, kernel, stride, padding, input side): the small-map layers
# of DCGAN-style networks (attention AE, GANomaly, AnoGAN, ALOCC's MNIST discriminator) and a grid
# of channel counts around them
GEMM_LAYERS = [(t, ci, co, k, s, p, h) for t, k, s, p, h in [(False, 4, 2, 1, 4), (False, 5, 2, 2, 4),
                                                            (False, 4, 2, 1, 2), (False, 4, 1, 0, 4),
                                                            (True, 4, 2, 1, 2), (True, 4, 2, 1, 1),
                                                            (True, 4, 1, 0, 1)]
               for ci, co in [(64, 64), (64, 128), (128, 256), (256, 512), (512, 512)]]


def bench_gemm_layer(transposed: bool, ci: int, co: int, k: int, s: int, p: int, h: int, batch: int,
                     seconds: float) -> dict:
    """Forward + backward ms of one NHWC convolution, oneDNN against `neural.conv2d_gemm` /
    `conv_transpose2d_gemm`, alternating windows; whether `gemm_small_maps` takes the product."""
    from oneclass import neural

    x = torch.randn(batch, ci, h, h).contiguous(memory_format=torch.channels_last).requires_grad_()
    shape = (ci, co, k, k) if transposed else (co, ci, k, k)
    w = (torch.randn(shape) * 0.05).contiguous(memory_format=torch.channels_last).requires_grad_()
    if transposed:
        sides = {"onednn": lambda: torch.nn.functional.conv_transpose2d(x, w, None, s, p),
                 "gemm": lambda: neural.conv_transpose2d_gemm(x, w, (s, s), (p, p), (0, 0))}
    else:
        sides = {"onednn": lambda: torch.nn.functional.conv2d(x, w, None, s, p),
                 "gemm": lambda: neural.conv2d_gemm(x, w, None, (s, s), (p, p))}
    times = alternating_windows({k: (lambda fn=fn: fn().sum().backward()) for k, fn in sides.items()},
                                seconds / 6, rounds=3)
    out = sides["onednn"]().shape
    positions = (h * h) if transposed else out[2] * out[3]
    ms = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    return {"transposed": transposed, "in_channels": ci, "out_channels": co, "kernel": k, "stride": s, "padding": p,
            "map_in": h, "map_out": out[2], "batch": batch, "weight_elements": w.numel(),
            "onednn_ms": round(ms["onednn"], 2), "gemm_ms": round(ms["gemm"], 2),
            "gain": round(ms["onednn"] / ms["gemm"], 2), "gemm_small_maps_takes_it": neural._gemm_pays(positions, w)}


def main_gemm_layers(args: argparse.Namespace) -> None:
    rows = []
    out = Path(f"{args.out}-gemm-layers-cpu")
    settings = run_settings(torch.device("cpu"), time.strftime("%Y-%m-%dT%H:%M:%S%z"), timing_window_s=args.seconds,
                            data="random NHWC tensors, batch 128")
    for layer in GEMM_LAYERS:
        watch = Sharing(args.device)
        rows.append({**bench_gemm_layer(*layer, batch=128, seconds=args.seconds), **watch.finish()})
        print(json.dumps(rows[-1]), flush=True)
    head = ["layer", "map", "channels", "weight elements", "oneDNN ms", "matrix product ms", "gain",
            "gemm_small_maps takes it", "device shared"]
    cells = [[f"{'transposed ' if r['transposed'] else ''}{r['kernel']}×{r['kernel']} s{r['stride']} p{r['padding']}",
              f"{r['map_in']}×{r['map_in']} → {r['map_out']}×{r['map_out']}", f"{r['in_channels']} → {r['out_channels']}",
              f"{r['weight_elements']:,}", r["onednn_ms"], r["gemm_ms"], f"×{r['gain']:.2f}",
              "yes" if r["gemm_small_maps_takes_it"] else "no", _shared(r, {})] for r in rows]
    write_rows(out, settings, rows,
               f"One NHWC convolution, forward + backward, batch 128, on {settings['host_cpu']} "
               f"({settings['torch_threads']} threads), torch {settings['versions']['torch']}: oneDNN against the "
               f"matrix product over the live taps (`neural.conv2d_gemm`, `conv_transpose2d_gemm`), medians of 3 "
               f"alternating windows. The last column is the rule `gemm_small_maps` applies (`neural._gemm_pays`). "
               f"Written by `scripts/bench.py --gemm-layers` from {out.name}.json.", head, cells)


def bench_adam_layout(method: str, preset: str, seconds: float) -> dict:
    """ms of one fused Adam step over a method's parameters (in the layout its CPU preset keeps them,
    random gradients), PyTorch's fused Adam against `neural.adam`'s, alternating windows."""
    from oneclass import neural

    det = oneclass.create(method, preset, seed=0, device="cpu")
    det._build()
    params = list(det.networks.parameters())
    for p in params:
        p.grad = torch.randn_like(p)
    opts = {"torch": torch.optim.Adam(params, lr=1e-4, fused=True), "oneclass": neural.adam(params, 1e-4, (0.9, 0.999))}
    # the warm-up call allocates the moments
    times = alternating_windows({k: opt.step for k, opt in opts.items()}, seconds / 6, rounds=3, min_calls=3)
    ms = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    nhwc = sum(p.numel() for p in params if neural._nhwc_only(p))
    return {"method": method, "preset": preset, "parameters": sum(p.numel() for p in params), "nhwc_parameters": nhwc,
            "torch_fused_adam_ms": round(ms["torch"], 2), "oneclass_adam_ms": round(ms["oneclass"], 2),
            "gain": round(ms["torch"] / ms["oneclass"], 2)}


def main_adam_layout(args: argparse.Namespace) -> None:
    rows = []
    out = Path(f"{args.out}-adam-layout-cpu")
    settings = run_settings(torch.device("cpu"), time.strftime("%Y-%m-%dT%H:%M:%S%z"), timing_window_s=args.seconds,
                            data="random gradients")
    for method in [m for m in args.methods.split(",") if m in NEURAL]:
        for preset in ["mnist"] if method == "cae" else ["mnist", "cifar10"]:
            watch = Sharing(args.device)
            rows.append({**bench_adam_layout(method, preset, args.seconds), **watch.finish()})
            print(json.dumps(rows[-1]), flush=True)
    head = ["method", "preset", "parameters", "of them NHWC", "torch fused Adam ms", "oneclass adam ms", "gain",
            "device shared"]
    cells = [[r["method"], r["preset"], f"{r['parameters']:,}", f"{r['nhwc_parameters']:,}", r["torch_fused_adam_ms"],
              r["oneclass_adam_ms"], f"×{r['gain']:.2f}", _shared(r, {})] for r in rows]
    write_rows(out, settings, rows,
               f"One Adam step over all of a method's parameters, in the layout its CPU preset keeps them, on "
               f"{settings['host_cpu']} ({settings['torch_threads']} threads), torch {settings['versions']['torch']}: "
               f"PyTorch's fused Adam, which copies every tensor that is not NCHW-contiguous, against "
               f"`neural.adam` (`LayoutFreeFusedAdam`: NHWC weights through their NHWC-ordered views); medians of 3 "
               f"alternating windows. Written by `scripts/bench.py --adam-layout` from {out.name}.json.", head, cells)


PYOD_ORDER = ["pyod-autoencoder", "dae", "lsa"]


def bench_against_pyod(name: str, images: torch.Tensor, test_images: torch.Tensor, test_labels, *, seed: int,
                       epochs: int | None, device: str) -> dict:
    """Fit one detector on a class's normal training images and score the test set: AUROC, wall
    and CPU seconds (this process, every thread). PyOD's AutoEncoder keeps all its defaults (a
    784-64-32 MLP with batch norm and dropout, 10 epochs, standardised inputs) and sees the
    pixels as PyOD users feed them, flattened floats in [0, 1]; ours get the uint8 images and hold
    out their usual tenth for the validation loss and score normalisation."""
    import numpy as np

    from oneclass import metrics
    clock = (time.perf_counter(), time.process_time())
    if name == "pyod-autoencoder":
        from pyod.models.auto_encoder import AutoEncoder
        model = AutoEncoder(random_state=seed, device=device, verbose=0)
        flat = images.reshape(len(images), -1).numpy().astype(np.float32) / 255.0
        model.fit(flat)
        fitted = (time.perf_counter(), time.process_time())
        scores = model.decision_function(test_images.reshape(len(test_images), -1).numpy().astype(np.float32) / 255.0)
        settings = {"epochs": model.epoch_num, "batch_size": model.batch_size, "pyod": _version("pyod")}
    else:
        det = oneclass.create(name, "mnist", epochs=epochs, seed=seed, device=device).fit(images, progress=False)
        fitted = (time.perf_counter(), time.process_time())
        scores = det.score_samples(test_images)
        settings = {"epochs": det.config["epochs"], "batch_size": det.config["batch_size"]}
    done = (time.perf_counter(), time.process_time())
    fit_cpu = fitted[1] - clock[1]
    auroc = metrics.auroc(test_labels, scores)
    return {"method": name, **settings, "n_train": len(images), "n_test": len(test_images),
            "auroc": round(auroc, 4), "fit_seconds": round(fitted[0] - clock[0], 1), "fit_cpu_seconds": round(fit_cpu, 1),
            "score_seconds": round(done[0] - fitted[0], 2), "auroc_per_fit_cpu_second": round(auroc / fit_cpu, 6)}


def _version(package: str) -> str:
    from importlib.metadata import version
    return version(package)


def main_pyod(args: argparse.Namespace) -> None:
    """The comparison a user would make before choosing: PyOD's AutoEncoder at its defaults
    against DAE and LSA at theirs, same classes, same normal images, same test set, same CPU."""
    try:
        import pyod  # noqa: F401
    except ImportError:
        raise SystemExit("--pyod needs PyOD: pip install -e '.[bench]'") from None
    from oneclass import protocols
    from oneclass.data import load as load_dataset
    train, test = load_dataset("mnist", args.data_root)
    out = Path(f"{args.out}-pyod-{'cpu' if args.device == 'cpu' else 'cuda'}")
    rows: list[dict] = []
    for normal in [int(c) for c in args.classes.split(",")]:
        split = protocols.standard(train, test, normal, args.seed)
        images = torch.cat([split.train.images, split.val.images])  # every normal training image of the class
        for name in ["pyod-autoencoder"] + [m for m in PYOD_ORDER[1:] if m in args.methods.split(",")]:
            watch = Sharing(args.device)
            row = {"normal_class": normal, "seed": args.seed,
                   **bench_against_pyod(name, images, split.test.images, split.test_labels, seed=args.seed,
                                        epochs=args.epochs, device=args.device), **watch.finish()}
            rows.append(row)
            print(json.dumps(row), flush=True)
            # classes measured in another run stay: `--classes 1,2` after `--classes 0` keeps digit 0
            _write_pyod(out, args, _merge_rows(out, rows, PYOD_ORDER, ("normal_class", "seed", "method")))


def _write_pyod(out: Path, args: argparse.Namespace, rows: list[dict]) -> None:
    """Rows as measured, then the mean over the classes per method."""
    import numpy as np
    classes = sorted({r["normal_class"] for r in rows})
    seeds = ", ".join(str(s) for s in sorted({r["seed"] for r in rows}))
    settings = run_settings(torch.device(args.device), max(r["measured_at"] for r in rows),
                            data=f"MNIST standard protocol (train on one digit, test on the 10,000 test images), "
                                 f"seed {seeds}", classes=",".join(str(c) for c in classes))
    head = ["method", "class", "epochs", "AUROC", "fit s", "fit CPU-s", "AUROC per fit CPU-s", "score s",
            "measured", "device shared"]
    cells = [[r["method"], r["normal_class"], r["epochs"], f"{r['auroc']:.4f}", r["fit_seconds"],
              r["fit_cpu_seconds"], f"{r['auroc_per_fit_cpu_second']:.5f}", r["score_seconds"],
              r["measured_at"][:16], _shared(r, {})] for r in rows]
    for name in PYOD_ORDER:
        mine = [r for r in rows if r["method"] == name]
        if mine:
            auroc, cpu = np.mean([r["auroc"] for r in mine]), np.mean([r["fit_cpu_seconds"] for r in mine])
            # the class column names the classes averaged, so unequal sets across methods show
            cells.append([f"**{name} mean**", ", ".join(str(r["normal_class"]) for r in mine), mine[0]["epochs"],
                          f"{auroc:.4f}",
                          round(float(np.mean([r["fit_seconds"] for r in mine])), 1), round(float(cpu), 1),
                          f"{auroc / cpu:.5f}", "", "", ""])
    write_rows(out, settings, rows,
               f"PyOD's AutoEncoder (pyod {rows[0].get('pyod') or _version('pyod')}, every default) beside oneclass's "
               f"DAE and LSA on {settings['device_name']} ({settings['torch_threads']} threads), torch "
               f"{settings['versions']['torch']}: {settings['data']}. Every model sees the same normal training "
               f"images; CPU-seconds count every thread of this process. Written by `scripts/bench.py --pyod` "
               f"from {out.name}.json.", head, cells)


def _merge_rows(out: Path, rows: list[dict], order: list[str],
                fields: tuple[str, ...] = ("method", "preset")) -> list[dict]:
    """Re-measuring some rows keeps the others already in `out`.json (each row says when it was
    measured): a fresh row replaces the old one with the same `fields`, and the rows are sorted by
    those fields, methods in the fixed `order`."""
    def key(r: dict) -> tuple:
        return tuple(r.get(f) for f in fields)

    def rank(r: dict) -> tuple:
        return tuple((order.index(r[f]) if r[f] in order else len(order)) if f == "method"
                     else ("" if r.get(f) is None else r[f]) for f in fields)

    if not out.with_suffix(".json").exists():
        return rows
    old = json.loads(out.with_suffix(".json").read_text())
    fresh = {key(r) for r in rows}
    kept = [{"measured_at": old["settings"]["measured_at"], **r} for r in old["results"] if key(r) not in fresh]
    return sorted(kept + rows, key=rank)


def host_cpu() -> str:
    """The CPU's model and widest FP32 vector unit, e.g. "AMD EPYC (avx2)": sessions of the same
    2-core VM have come on an AVX-512 Xeon and on an AVX2 EPYC, whose peaks differ by 2×."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    isa = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in flags), "")
    return cpu_name() + (f" ({isa})" if isa else "")


def run_settings(device: torch.device, stamp: str, **extra: object) -> dict:
    return {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "host_cpu": host_cpu(), "torch_threads": torch.get_num_threads(), "versions": versions(),
            "measured_at": stamp, **extra}


def markdown_table(title: str, head: list[str], cells: list[list[object]]) -> list[str]:
    return [title, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in cells)]


def write_markdown(out: Path, settings: dict, rows: list[dict], old_settings: dict) -> None:
    head = ["method", "preset", "batch", "train img/s", "score img/s", "train GFLOP/img", "train GFLOP/s achieved",
            "share of host sgemm", "page faults / train step", "host sgemm GFLOP/s", "host copy GB/s", "host CPU",
            "measured", "device shared"]
    cells = [[r["method"], r["preset"], r.get("batch_size", ""), r["train_images_per_second"],
              r["score_images_per_second"], r.get("train_gflop_per_image", ""), r.get("train_achieved_gflops", ""),
              f"{100 * r['train_share_of_sgemm']:.0f} %" if r.get("train_share_of_sgemm") is not None else "",
              _faults(r), r.get("host_sgemm_gflops", "not measured"), r.get("host_copy_gbs", "not measured"),
              r.get("host_cpu", "not recorded"),
              r.get("measured_at", settings["measured_at"])[:16], _shared(r, old_settings)] for r in rows]
    lines = markdown_table(f"Throughput on {settings['device_name']} ({settings.get('host_cpu', '')}, "
                           f"{settings['torch_threads']} threads), "
                           f"torch {settings['versions']['torch']}. Written by scripts/bench.py from {out.name}.json.",
                           head, cells)
    if isinstance(old_settings.get("device_shared"), str):
        lines += ["", f"Rows without their own record: device shared {old_settings['device_shared']}."]
    write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


def _faults(row: dict) -> str:
    """Minor page faults per training step, and whether freed memory was kept (`cpu_memory`)."""
    if "train_minor_page_faults_per_step" not in row:
        return "not recorded"
    return f"{row['train_minor_page_faults_per_step']:,}" + ("" if row.get("keep_freed_memory") else " (malloc default)")


def _shared(row: dict, old_settings: dict) -> str:
    """Yes / no from the row's own record; rows measured before that was recorded say what is known."""
    if "device_shared" in row:
        extra = (f", {row['other_gpu_processes']} other GPU processes" if row.get("other_gpu_processes")
                 else f", others kept {row['other_cpu_cores_busy']} cores busy" if "other_cpu_cores_busy" in row
                 else f", load {row['cpu_load_1min']}" if "cpu_load_1min" in row else "")
        return ("yes" if row["device_shared"] else "no") + extra
    shared = old_settings.get("device_shared", "not recorded")
    return "yes (see below)" if isinstance(shared, str) and shared.startswith("yes") else "see below"


if __name__ == "__main__":
    main()
