"""Optional download of the standard datasets for users who are online.

Each file has a published checksum that is verified before the file is put in place; the
download goes to a temporary file that is renamed only once complete and verified, so an
interrupted or corrupt download never leaves a file that looks usable."""
from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import ChecksumError, DataError


@dataclass(frozen=True)
class Resource:
    url: str
    filename: str
    md5: str
    extract: bool = False  # a tar.gz to unpack in its folder after verification


_MNIST_BASE = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

RESOURCES: dict[str, tuple[str, list[Resource]]] = {
    # dataset: (sub-folder of the data root, files)
    "mnist": ("MNIST/raw", [
        Resource(_MNIST_BASE + "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        Resource(_MNIST_BASE + "train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        Resource(_MNIST_BASE + "t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        Resource(_MNIST_BASE + "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
    ]),
    "fashion-mnist": ("FashionMNIST/raw", [
        Resource(_FASHION_BASE + "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        Resource(_FASHION_BASE + "train-labels-idx1-ubyte.gz", "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        Resource(_FASHION_BASE + "t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        Resource(_FASHION_BASE + "t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
    ]),
    "cifar10": (".", [Resource("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                                "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", extract=True)]),
    "cifar100": (".", [Resource("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                                 "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", extract=True)]),
}


def file_md5(path: str | os.PathLike) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(resource: Resource, folder: Path, *, timeout: float = 60.0, quiet: bool = False) -> Path:
    """Download one resource into `folder`, verified; an existing verified file is kept."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / resource.filename
    if target.is_file() and file_md5(target) == resource.md5:
        return target
    fd, tmp = tempfile.mkstemp(prefix=f".{resource.filename}.", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(resource.url, timeout=timeout) as response:
                    expected = response.headers.get("Content-Length")
                    written = 0
                    for block in iter(lambda: response.read(1 << 20), b""):
                        out.write(block)
                        written += len(block)
            except OSError as e:
                raise DataError(f"download of {resource.url} failed: {e}") from e
        if expected is not None and written != int(expected):
            raise DataError(f"download of {resource.url} is truncated: {written} of {expected} bytes")
        actual = file_md5(tmp)
        if actual != resource.md5:
            raise ChecksumError(f"{resource.url}: MD5 {actual} does not match the published {resource.md5}; "
                                "the file was not kept")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if not quiet:
        print(f"downloaded {target}")
    return target


def download(name: str, data_root: str | os.PathLike, *, base_url: str | None = None,
             timeout: float = 60.0, quiet: bool = False) -> Path:
    """Fetch dataset `name` into its standard layout under `data_root`.

    `base_url` replaces the server part of every URL (a mirror, or a local server in tests)."""
    if name not in RESOURCES:
        raise DataError(f"no download known for {name!r}; downloadable: {', '.join(sorted(RESOURCES))}")
    sub, resources = RESOURCES[name]
    folder = Path(data_root) / sub
    for r in resources:
        if base_url is not None:
            r = Resource(base_url.rstrip("/") + "/" + r.filename, r.filename, r.md5, r.extract)
        path = fetch(r, folder, timeout=timeout, quiet=quiet)
        if r.extract:
            with tarfile.open(path) as tar:
                tar.extractall(folder, filter="data")
    return folder
