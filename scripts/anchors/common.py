"""What the anchor scripts share: an official checkout's commit, and how busy the machine was."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def commit_of(checkout: Path) -> str:
    """The checkout's commit: git's, else a `.commit` file beside its sources (a snapshot taken
    without git), else "unknown"."""
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return (checkout / ".commit").read_text().strip() if (checkout / ".commit").exists() else "unknown"


def cpu_seconds() -> tuple[float, float] | None:
    """(busy CPU-seconds of the whole machine, of this process and its children) so far; None
    without /proc/stat."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    own = os.times()
    busy = sum(ticks) - ticks[3] - (ticks[4] if len(ticks) > 4 else 0)  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system + own.children_user + own.children_system


def others_busy(before: tuple[float, float] | None, after: tuple[float, float] | None, wall: float) -> float | None:
    """Cores that other processes kept busy during the official training (its speed depends on it)."""
    if before is None or after is None:
        return None
    return round(max(((after[0] - before[0]) - (after[1] - before[1])) / max(wall, 1e-9), 0.0), 2)


def harness_parser(description: str, repository: str, tf_python_has: str) -> argparse.ArgumentParser:
    """The options every official-code harness takes; each adds its own budget options."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkout", type=Path, help=f"a checkout (work tree) of {repository}")
    ap.add_argument("--tf-python", help=f"a Python with {tf_python_has}")
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--results", type=Path, default=Path("results/anchors"))
    for hidden in ("--worker-in", "--worker-out", "--work"):  # the TensorFlow side of one run
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    return ap


def check_set_up(ap: argparse.ArgumentParser, args: argparse.Namespace, repository: str, files: tuple[str, ...],
                 modules: tuple[str, ...]) -> None:
    """A one-line error, before any training, for a missing checkout file or TensorFlow-side module."""
    if args.checkout is None or args.tf_python is None:
        ap.error("--checkout and --tf-python are needed")
    for rel in files:
        if not (args.checkout / rel).is_file():
            ap.error(f"{args.checkout} has no {rel}: not a checkout of {repository}")
    missing = missing_modules(args.tf_python, modules)
    if missing:  # before an hour of training, not after its first epoch
        ap.error(f"--tf-python {args.tf_python} lacks {', '.join(missing)} (see scripts/anchors/README.md)")


def missing_modules(python: str, modules: tuple[str, ...]) -> list[str]:
    """The modules of `modules` that `python` cannot import (all of them if it does not run)."""
    probe = "import importlib.util as u; print(' '.join(m for m in " + repr(modules) + " if u.find_spec(m) is None))"
    try:
        run = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return list(modules)
    return run.stdout.split() if run.returncode == 0 else list(modules)


def run_worker(script: str, args: argparse.Namespace, w_in: Path, w_out: Path, work: Path,
               log: Path) -> tuple[dict[str, np.ndarray], bytes, float | None]:
    """Run `script`'s TensorFlow side in `--tf-python` on `w_in`: its outputs, its log, and the
    cores other processes kept busy meanwhile. A failure exits with the end of its log."""
    busy0, wall0 = cpu_seconds(), time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run([args.tf_python, script, "--worker-in", str(w_in), "--worker-out", str(w_out),
                             "--work", str(work), "--checkout", str(args.checkout)],
                            stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        sys.exit(f"the official code failed (exit {rc}); the end of its output:\n" + log.read_text()[-3000:])
    other_load = others_busy(busy0, cpu_seconds(), time.perf_counter() - wall0)
    return dict(np.load(w_out)), log.read_bytes(), other_load
