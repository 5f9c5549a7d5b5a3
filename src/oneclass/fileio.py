"""Atomic writes: a file is either its old content or its complete new content, never half; and
the check that a torch archive read back is the one that was written."""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, IO


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside `path`; on success fsync and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def archive_damage(path: str | os.PathLike) -> str | None:
    """What is wrong with a torch archive (`torch.save`'s zip) whose bytes changed after writing,
    or None. torch.load checks no checksum: a flipped byte in a weight loads and scores silently
    wrong, so every member's CRC-32 is compared here first. A file that is not a zip at all was
    cut short before its directory (or is another kind of file): said here in words, where
    torch.load would fall back to its legacy reader and fail with a bare EOFError."""
    if not zipfile.is_zipfile(path):
        return "not a zip archive (a truncated copy, or another kind of file)"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile:
        return "its zip directory is damaged"
    except (OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as e:
        return f"a member cannot be read back ({type(e).__name__}: {e})"
    return None if bad is None else f"member {bad} fails its CRC-32 check (the bytes changed after writing)"


def check_output_file(path: str | os.PathLike, what: str = "output") -> Path:
    """Before any work is done: `path` can be written as a file (its missing parent folders will
    be created). Refuses a folder, a path under a regular file and an unwritable location, naming
    the path, so a long fit never ends in an error at its last step."""
    from .errors import OneClassError
    path = Path(path)
    if path.is_dir():
        raise OneClassError(f"{what} {path} is a folder; give a file name")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OneClassError(f"{what} {path}: {parent} is a regular file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OneClassError(f"{what} {path}: {parent} cannot be written")
    return path


def write_json(path: str | os.PathLike, obj: Any, compact: bool = False) -> None:
    """Standard JSON (no NaN or Infinity, which other readers reject): a non-finite number is
    written as null; whoever produces one should also say why beside it. `compact`: one line per
    top-level key (run records: readable, diffable, and a few dozen lines instead of hundreds)."""
    obj = finite_or_none(obj)
    dump = lambda o, **kw: json.dumps(o, default=_json_default, allow_nan=False, ensure_ascii=False, **kw)  # noqa: E731
    if compact and isinstance(obj, dict):
        text = "{\n" + ",\n".join(f"  {dump(k)}: {dump(v)}" for k, v in obj.items()) + "\n}\n"
    else:
        text = dump(obj, indent=2) + "\n"
    with atomic_open(path, "w") as fh:
        fh.write(text)


def finite_or_none(obj: Any) -> Any:
    """`obj` with every NaN or infinite float (numpy ones included) replaced by None."""
    import math
    import numpy as np
    if isinstance(obj, np.ndarray):
        return finite_or_none(obj.tolist())
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def _json_default(o: Any) -> Any:
    import numpy as np
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
