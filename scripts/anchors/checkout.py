"""What the anchor scripts share about an official checkout."""
from __future__ import annotations

import subprocess
from pathlib import Path


def commit_of(checkout: Path) -> str:
    """The checkout's commit: git's, else a `.commit` file beside its sources (a snapshot taken
    without git), else "unknown"."""
    try:
        return subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return (checkout / ".commit").read_text().strip() if (checkout / ".commit").exists() else "unknown"
