"""Freed memory kept for reuse on a CPU, as PyTorch's CUDA caching allocator does on a GPU.

On a CPU, PyTorch takes every feature map and gradient from the C library's malloc. glibc serves an
allocation above its mmap threshold (at most 32 MB; a batch of CIFAR-10 maps is often larger) with a
fresh mmap and returns it to the kernel on free, and trims the heap's top once more than 128 kB is
free there: every training step then faults its maps in again, page by page, in kernel time
(`scripts/bench.py` records the minor page faults per training step beside each row). The cost:
the process keeps its peak memory until it exits, as a CUDA process keeps its cached blocks.

`keep_freed_memory()` sets glibc's M_MMAP_MAX to 0 (large blocks come from the heap too; glibc
still falls back to mmap when the heap cannot grow) and M_TRIM_THRESHOLD to 2 GB. It acts once per
process, only on Linux with glibc, and not when the environment sets ONECLASS_KEEP_FREED_MEMORY=0.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_MAX = -4
ENV = "ONECLASS_KEEP_FREED_MEMORY"

_state: bool | None = None


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse (see the module docstring); True when
    it is in effect for this process. Idempotent; a no-op elsewhere than Linux with glibc."""
    global _state
    if _state is None:
        _state = False
        if os.environ.get(ENV, "1") != "0" and sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
            try:
                mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
            except (OSError, AttributeError):
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _state = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2 ** 31 - 1))
    return _state
