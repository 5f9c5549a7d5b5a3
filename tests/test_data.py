"""Loaders on real files and on small files the tests write, corrupt ones included."""
import gzip
import hashlib
import http.server
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import oneclass
from oneclass.data import as_uint8_images, conform, load
from oneclass.data.cifar import load_cifar10_split, load_cifar100_split
from oneclass.data.download import Resource, fetch
from oneclass.data.folder import load_class_folder
from oneclass.errors import ChecksumError, DataError


# ---- IDX --------------------------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray, gz: bool = False, magic_type: int = 0x08) -> Path:
    raw = bytes([0, 0, magic_type, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    raw += array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def make_mnist_folder(folder: Path, n_train=20, n_test=10, gz=False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(folder / f"{split}-labels-idx1-ubyte", np.arange(n) % 10, gz)
    return folder


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_roundtrip_torchvision_layout_and_flat(tmp_path, gz):
    make_mnist_folder(tmp_path / "MNIST" / "raw", gz=gz)
    train, test = load("mnist", tmp_path)
    assert train.images.shape == (20, 1, 28, 28) and train.images.dtype == torch.uint8
    assert test.labels.tolist() == list(range(10))
    flat = make_mnist_folder(tmp_path / "flat", gz=gz)
    train2, _ = load("mnist", flat)  # the four files directly in the given folder
    assert torch.equal(train.images, train2.images)


def test_idx_bad_magic_truncated_and_count_mismatch(tmp_path):
    folder = make_mnist_folder(tmp_path / "MNIST" / "raw")
    bad = folder / "train-images-idx3-ubyte"
    raw = bad.read_bytes()
    bad.write_bytes(b"\x12\x34" + raw[2:])
    with pytest.raises(DataError, match="bad magic"):
        load("mnist", tmp_path)
    bad.write_bytes(raw[:-100])
    with pytest.raises(DataError, match="truncated"):
        load("mnist", tmp_path)
    bad.write_bytes(raw)
    write_idx(folder / "train-labels-idx1-ubyte", np.arange(19) % 10)
    with pytest.raises(DataError, match="20 images but 19 labels"):
        load("mnist", tmp_path)


def test_truncated_gzip_is_reported(tmp_path):
    folder = make_mnist_folder(tmp_path / "MNIST" / "raw", gz=True)
    f = folder / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:50])
    with pytest.raises(DataError, match="corrupt or truncated"):
        load("mnist", tmp_path)


def test_missing_dataset_names_expected_path_and_how_to_get_it(tmp_path):
    with pytest.raises(DataError) as e:
        load("mnist", tmp_path)
    assert str(tmp_path / "MNIST" / "raw") in str(e.value) and "oneclass download" in str(e.value)


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(DataError, match="known datasets: mnist, fashion-mnist"):
        load("imagenet")


def test_real_mnist_loads_and_matches_published_md5(shared_root):
    train, test = load("mnist", shared_root)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    raw = gzip.open(shared_root / "MNIST/raw/t10k-labels-idx1-ubyte.gz").read()
    assert hashlib.md5(raw).hexdigest() == "27ae3e4e09519cfbb04c329615203637"
    assert np.bincount(test.labels.numpy()).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_embedded_dataset_is_stratified_real_mnist(embedded_data):
    train, test = embedded_data
    assert train.images.shape == (5000, 1, 28, 28) and test.images.shape == (2000, 1, 28, 28)
    assert np.bincount(train.labels.numpy()).tolist() == [500] * 10
    assert np.bincount(test.labels.numpy()).tolist() == [200] * 10
    assert "mnist-embedded" in oneclass.datasets.names()


def test_embedded_subset_is_taken_from_the_real_files(shared_root, embedded_data):
    with np.load(oneclass.datasets.EMBEDDED_FILE) as z:
        index = z["test_source_index"]
    _, test = load("mnist", shared_root)
    assert torch.equal(test.images[torch.from_numpy(index.astype(np.int64))], embedded_data[1].images)


# ---- CIFAR pickles -----------------------------------------------------------------------------
def write_cifar10(folder: Path, n=6) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(np.arange(n) % 10)}
        (folder / name).write_bytes(pickle.dumps(batch))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in names]}))
    return folder


def test_cifar10_pickles(tmp_path):
    write_cifar10(tmp_path / "cifar-10-batches-py")
    train, test = load("cifar10", tmp_path)
    assert train.images.shape == (30, 3, 32, 32) and test.images.shape == (6, 3, 32, 32)
    assert train.classes[3] == "cat"
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "test_batch").read_bytes())[b"data"]
    assert torch.equal(test.images[1], torch.from_numpy(raw[1].reshape(3, 32, 32)))


def test_cifar_pickle_that_would_run_code_is_refused(tmp_path):
    folder = write_cifar10(tmp_path / "cifar-10-batches-py")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DataError, match="refusing to load builtins.print"):
        load_cifar10_split(folder, "test")


def test_cifar_truncated_and_inconsistent_batches(tmp_path):
    folder = write_cifar10(tmp_path / "c")
    raw = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="data_batch_2: not a readable CIFAR batch"):
        load_cifar10_split(folder, "train")
    (folder / "data_batch_2").write_bytes(pickle.dumps({b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2]}))
    with pytest.raises(DataError, match="3 images but 2 labels"):
        load_cifar10_split(folder, "train")
    (folder / "data_batch_2").unlink()
    with pytest.raises(DataError, match="missing file .*data_batch_2"):
        load_cifar10_split(folder, "train")


def test_cifar100_coarse_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split, n in (("train", 8), ("test", 4)):
        batch = {b"data": np.zeros((n, 3072), np.uint8), b"coarse_labels": list(np.arange(n) % 20),
                 b"fine_labels": list(np.arange(n))}
        (folder / split).write_bytes(pickle.dumps(batch))
    train, test = load("cifar100", tmp_path)
    assert len(train) == 8 and train.labels.tolist() == list(range(8))
    assert len(load_cifar100_split(folder, "test", "fine")) == 4


# ---- folders of images ------------------------------------------------------------------------
def write_image_tree(root: Path, classes=("cat", "dog"), n=3, size=(40, 30), mode="RGB") -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
                Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / split / c / f"{i}.png")
    return root


def test_image_folder_resizes_and_converts(tmp_path):
    root = write_image_tree(tmp_path / "imgs")
    train, test = oneclass.datasets.load_folder(root, channels=1, size=28)
    assert train.images.shape == (6, 1, 28, 28) and train.classes == ["cat", "dog"]
    assert test is not None and test.labels.tolist() == [0, 0, 0, 1, 1, 1]
    rgb, _ = oneclass.datasets.load_folder(root, channels=3, size=(32, 32))
    assert rgb.images.shape == (6, 3, 32, 32)
    flat, none = oneclass.datasets.load_folder(root / "train" / "cat", channels=3, size=16)
    assert flat.images.shape == (3, 3, 16, 16) and none is None


def test_unreadable_image_is_named(tmp_path):
    root = write_image_tree(tmp_path / "imgs")
    broken = root / "train" / "dog" / "1.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*dog/1\.png"):
        load_class_folder(root / "train", 1, (28, 28))


def test_folder_cache_is_used_and_invalidated(tmp_path):
    root = write_image_tree(tmp_path / "imgs")
    cache = tmp_path / "cache"
    a = load_class_folder(root / "train", 3, (32, 32), cache_dir=cache)
    assert len(list(cache.glob("folder-*.npz"))) == 1
    b = load_class_folder(root / "train", 3, (32, 32), cache_dir=cache)
    assert torch.equal(a.images, b.images)
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(root / "train" / "cat" / "0.png")
    c = load_class_folder(root / "train", 3, (32, 32), cache_dir=cache)
    assert c.images[0].sum() == 0 and len(list(cache.glob("folder-*.npz"))) == 2


def test_cifar10_jpeg_archive_is_extracted_to_the_cache(tmp_path):
    src = write_image_tree(tmp_path / "src" / "cifar10-jpeg", classes=("airplane", "truck"), size=(32, 32))
    archive = tmp_path / "root" / "cifar10-jpeg.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar10-jpeg")
    train, test = load("cifar10", tmp_path / "root")
    assert train.images.shape == (6, 3, 32, 32)
    # class indices follow CIFAR-10's order, not the folders present
    assert sorted(set(train.labels.tolist())) == [0, 9]
    assert oneclass.datasets.source_of("cifar10", tmp_path / "root") == "CIFAR-10 (JPEG copy)"


def test_archive_extracted_by_several_callers_at_once(tmp_path, monkeypatch):
    # parallel `evaluate` processes on a fresh cache all extract the archive at the same moment; one
    # copy must win and every caller must load it (they used to trip over one shared .partial folder)
    src = write_image_tree(tmp_path / "src" / "cifar10-jpeg", classes=("airplane", "truck"), size=(32, 32))
    archive = tmp_path / "root" / "cifar10-jpeg.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="cifar10-jpeg")
    cache = tmp_path / "fresh-cache"
    monkeypatch.setenv("ONECLASS_CACHE", str(cache))
    callers = 6
    start, outcomes = threading.Barrier(callers), []

    def call() -> None:
        start.wait()
        try:
            outcomes.append(tuple(load("cifar10", tmp_path / "root")[0].images.shape))
        except Exception as e:  # noqa: BLE001 - the outcome is what is asserted
            outcomes.append(repr(e))

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes == [(6, 3, 32, 32)] * callers
    extracted = [p.name for p in cache.iterdir() if p.name.startswith(("cifar10-jpeg", ".cifar10-jpeg"))]
    assert len(extracted) == 1 and (cache / extracted[0] / ".complete").is_file()  # no temporary copy left


def test_corrupt_archive_is_reported(tmp_path):
    (tmp_path / "cifar10-jpeg.tar.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="corrupt or truncated"):
        load("cifar10", tmp_path)


# ---- in-memory inputs ----------------------------------------------------------------------------
def test_array_inputs_are_converted_to_uint8_nchw():
    x = np.random.default_rng(0).random((5, 28, 28))
    t = as_uint8_images(x)
    assert t.shape == (5, 1, 28, 28) and t.dtype == torch.uint8
    assert np.allclose(t[:, 0].numpy(), np.round(x * 255))
    nhwc = as_uint8_images(np.zeros((2, 8, 8, 3), np.uint8))
    assert nhwc.shape == (2, 3, 8, 8)
    assert as_uint8_images(torch.full((1, 1, 4, 4), 200.0)).max() == 200  # floats in [0, 255]


@pytest.mark.parametrize("bad,message", [
    (np.zeros((0, 28, 28)), "empty"),
    (np.zeros((28, 28)), "N×H×W"),
    (np.zeros((2, 5, 8, 8)), "1 or 3 channels"),
    (np.full((2, 28, 28), np.nan), "NaN"),
    (np.full((2, 28, 28), -3.0), r"\[0, 1\] or \[0, 255\]"),
    ("images", "expected a numpy array"),
])
def test_bad_inputs_are_named(bad, message):
    with pytest.raises(DataError, match=message):
        as_uint8_images(bad)


def test_conform_grey_rgb_and_size():
    rgb = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert conform(rgb, 1, 28).shape == (2, 1, 28, 28)
    grey = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    out = conform(grey, 3, 28)
    assert out.shape == (2, 3, 28, 28) and torch.equal(out[:, 0], out[:, 2])


# ---- download against a local server -------------------------------------------------------------
@pytest.fixture()
def local_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(served), **k)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_verifies_checksum_and_writes_atomically(tmp_path, local_server):
    served, url = local_server
    payload = b"hello mnist" * 1000
    (served / "f.bin").write_bytes(payload)
    good = hashlib.md5(payload).hexdigest()
    out = fetch(Resource(f"{url}/f.bin", "f.bin", good), tmp_path / "data", quiet=True)
    assert out.read_bytes() == payload
    with pytest.raises(ChecksumError, match="does not match"):
        fetch(Resource(f"{url}/f.bin", "g.bin", "0" * 32), tmp_path / "data", quiet=True)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["f.bin"]  # nothing half-written kept
    with pytest.raises(DataError, match="download of .* failed"):
        fetch(Resource(f"{url}/missing.bin", "m.bin", good), tmp_path / "data", quiet=True)


def test_download_dataset_from_mirror_then_load(tmp_path, local_server, monkeypatch):
    served, url = local_server
    make_mnist_folder(served, gz=True)
    from oneclass.data import download as dl
    sub, resources = dl.RESOURCES["mnist"]
    fake = [Resource(r.url, r.filename, hashlib.md5((served / r.filename).read_bytes()).hexdigest())
            for r in resources]
    monkeypatch.setitem(dl.RESOURCES, "mnist", (sub, fake))
    dl.download("mnist", tmp_path / "root", base_url=url, quiet=True)
    train, _ = load("mnist", tmp_path / "root")
    assert len(train) == 20


@pytest.mark.parametrize("mode, make, expected", [
    ("1", lambda: np.eye(8, dtype=bool), 255),                    # bilevel: a set pixel is white
    ("L", lambda: np.full((8, 8), 77, np.uint8), 77),
    ("I;16", lambda: np.full((8, 8), 65535, np.uint16), 255),       # 16-bit grey scaled, not clipped…
    ("I;16", lambda: np.full((8, 8), 514, np.uint16), 2),           # …so 514/65535 is 2/255, not 255
    ("P", None, 77), ("RGB", None, 77), ("RGBA", None, 77), ("CMYK", None, None), ("LA", None, 77),
])
def test_every_common_image_mode_is_converted(tmp_path, mode, make, expected):
    from PIL import Image

    from oneclass.data.folder import read_image
    if make is not None:
        img = Image.fromarray(make())
        assert img.mode == mode
    else:
        img = Image.fromarray(np.full((8, 8), 77, np.uint8)).convert(mode)
    path = tmp_path / ("x.tif" if mode in ("I;16", "CMYK") else "x.png")
    img.save(path)
    grey = read_image(path, 1, None)
    rgb = read_image(path, 3, (4, 4))
    assert grey.shape == (1, 8, 8) and grey.dtype == np.uint8 and rgb.shape == (3, 4, 4)
    if expected is not None:
        assert int(grey.max()) == expected


def test_float_images_and_decompression_bombs_are_refused_by_name(tmp_path, monkeypatch):
    from PIL import Image

    from oneclass.data.folder import read_image
    Image.fromarray(np.zeros((8, 8), np.float32), mode="F").save(tmp_path / "f.tif")
    with pytest.raises(DataError, match=r"f.tif has 32-bit float pixels"):
        read_image(tmp_path / "f.tif", 1, None)
    noise = np.random.default_rng(0).integers(0, 256, (40, 50), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "big.png")
    monkeypatch.setenv("ONECLASS_MAX_IMAGE_PIXELS", "1999")
    with pytest.raises(DataError, match=r"big.png is 50×40 = 2,000 pixels, over the limit of 1,999"):
        read_image(tmp_path / "big.png", 1, None)
    monkeypatch.setenv("ONECLASS_MAX_IMAGE_PIXELS", "2000")
    assert read_image(tmp_path / "big.png", 1, None).shape == (1, 40, 50)
    (tmp_path / "cut.png").write_bytes((tmp_path / "big.png").read_bytes()[:600])
    with pytest.raises(DataError, match="cannot read image .*cut.png"):
        read_image(tmp_path / "cut.png", 1, None)
