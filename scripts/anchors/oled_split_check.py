"""Which images OLED's official MNIST scripts train on, and which they test on (issue 17).

    python scripts/anchors/oled_split_check.py --checkout /path/to/OLED --data-root ../shared/datasets

jewelltaylor/OLED draws each digit's split inside its scripts: `train.py` (one process per digit,
NumPy seeded with 17 at start) calls its `get_data()` once; `test_trained.py` and `test.py`, which
print the AUROCs, seed NumPy with 17 once and then call their own `get_data(i)` for i = 0 … 9 in
that one process. The same seed in a different state gives another split, so from digit 1 on the
test scripts' test set is not the one held out in training.

This script runs those `get_data` functions themselves, read from the checkout's files (never copied
here, never edited): their module-level constants (SEED, TRAIN_PERC, OUTLIER_PERC) and the
function, executed on MNIST arrays in the scripts' own format (our IDX files, the 60,000 training
and 10,000 test images in their published order), with each image's pixels replaced by its own
index (three pixels, base 256) so that the draws, which depend only on the labels, can be followed
image by image. `tf.data.Dataset` (train.py's last line) is stood in for by the array itself.
Neither TensorFlow nor a GPU is needed. It writes, per digit, how many of the test scripts' test
inliers the training process trained on, and how many are in its labelled selection set (the 300
inliers and 90 outliers whose AUROC picks each score's epoch), to
`results/anchors/oled-official-split-check.json`.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import io
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling, also when loaded by path
from common import commit_of  # noqa: E402

SCRIPTS = {"train": "mnist_experiment/scripts/train.py", "test_trained": "mnist_experiment/scripts/test_trained.py",
           "test": "mnist_experiment/scripts/test.py"}
CONSTANTS = ("SEED", "TRAIN_PERC", "OUTLIER_PERC", "PERC")


def official_get_data(source: str, paths: dict[str, str], where: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """`get_data` and the constants it reads, executed from a script's own source; its file
    paths point at `paths`, `tf.data.Dataset` hands back the array it is given."""
    tree = ast.parse(source)
    keep = [n for n in tree.body
            if isinstance(n, ast.FunctionDef) and n.name == "get_data"
            or isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
            and n.targets[0].id in CONSTANTS and isinstance(n.value, ast.Constant)]
    if not any(isinstance(n, ast.FunctionDef) for n in keep):
        raise SystemExit(f"{where} has no get_data(): not the OLED checkout this script reads")
    dataset = types.SimpleNamespace(from_tensor_slices=lambda x: types.SimpleNamespace(batch=lambda n: x))
    namespace: dict[str, Any] = {"np": np, "tf": types.SimpleNamespace(data=types.SimpleNamespace(Dataset=dataset)),
                                 "BATCH_SIZE": 1024, **paths}
    exec(compile(ast.Module(body=keep, type_ignores=[]), where, "exec"), namespace)  # noqa: S102 - the official code
    missing = [c for c in ("SEED", "TRAIN_PERC", "OUTLIER_PERC") if c not in namespace]
    if missing:
        raise SystemExit(f"{where} does not set {', '.join(missing)}")
    return namespace["get_data"], namespace


def _ids(images: np.ndarray) -> np.ndarray:
    """The index each image carries (pixels 0–2, base 256), back from get_data's x / 127.5 − 1."""
    flat = np.rint((np.asarray(images, np.float64).reshape(len(images), -1)[:, :3] + 1.0) * 127.5).astype(np.int64)
    return (flat[:, 0] * 256 + flat[:, 1]) * 256 + flat[:, 2]


def _indexed(n: int, offset: int) -> np.ndarray:
    images = np.zeros((n, 28, 28), np.uint8)
    k = np.arange(offset, offset + n)
    images[:, 0, 0], images[:, 0, 1], images[:, 0, 2] = k // 65536, (k // 256) % 256, k % 256
    return images


def check(checkout: Path, y_train: np.ndarray, y_test: np.ndarray) -> dict[str, Any]:
    sources = {}
    for name, rel in SCRIPTS.items():
        path = checkout / rel
        if not path.is_file():
            raise SystemExit(f"{checkout} has no {rel}: not a checkout of jewelltaylor/OLED")
        sources[name] = path.read_text()
    with tempfile.TemporaryDirectory(prefix="oled-split-") as tmp:
        paths = {"TRAIN_IMG_PATH": f"{tmp}/x_train.npy", "TRAIN_LABEL_PATH": f"{tmp}/y_train.npy",
                 "TEST_IMG_PATH": f"{tmp}/x_test.npy", "TEST_LABEL_PATH": f"{tmp}/y_test.npy"}
        np.save(paths["TRAIN_IMG_PATH"], _indexed(len(y_train), 0))
        np.save(paths["TEST_IMG_PATH"], _indexed(len(y_test), len(y_train)))
        np.save(paths["TRAIN_LABEL_PATH"], y_train)
        np.save(paths["TEST_LABEL_PATH"], y_test)
        trained = {}
        train_fn, ns = official_get_data(sources["train"], paths, SCRIPTS["train"])
        for digit in range(10):  # train.sh: one process per digit, seeded at its start
            ns["INLIER"] = digit
            np.random.seed(ns["SEED"])
            with contextlib.redirect_stdout(io.StringIO()):  # its shape printout
                train_inl, val_imgs, val_labels, test_imgs, test_labels = train_fn()
            trained[digit] = {"train": set(_ids(train_inl)), "selection_in": set(_ids(val_imgs[val_labels == 1])),
                              "selection_out": set(_ids(val_imgs[val_labels == 0])),
                              "test_in": set(_ids(test_imgs[test_labels == 1]))}
        out: dict[str, Any] = {}
        for script in ("test_trained", "test"):
            test_fn, tns = official_get_data(sources[script], paths, SCRIPTS[script])
            np.random.seed(tns["SEED"])  # once, then every digit in one process, as the script does
            rows = []
            for digit in range(10):
                images, labels = test_fn(digit)
                ids = _ids(images)
                test_in, test_out = set(ids[labels == 0]), set(ids[labels == 1])  # this script: 1 = outlier
                t = trained[digit]
                rows.append({"digit": digit, "train_images": len(t["train"]), "test_inliers": len(test_in),
                             "test_inliers_trained_on": len(test_in & t["train"]),
                             "test_inliers_in_selection_set": len(test_in & t["selection_in"]),
                             "test_inliers_held_out_by_training": len(test_in & t["test_in"]),
                             "test_outliers": len(test_out),
                             "test_outliers_in_selection_set": len(test_out & t["selection_out"])})
            out[script] = rows
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkout", type=Path, required=True, help="a checkout (work tree) of jewelltaylor/OLED")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", type=Path, default=Path("results/anchors/oled-official-split-check.json"))
    args = ap.parse_args()
    from oneclass.data import load
    from oneclass.fileio import write_json
    train, test = load("mnist", args.data_root)
    result = check(args.checkout, train.labels.numpy().astype(np.uint8), test.labels.numpy().astype(np.uint8))
    record = {"what": "which images OLED's official MNIST scripts train on and test on (their own get_data, run "
                      "on images that carry their index)",
              "repository": "jewelltaylor/OLED", "commit": commit_of(args.checkout), "scripts": SCRIPTS,
              "command": "python " + " ".join(sys.argv), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "data": "MNIST IDX files in their published order (60,000 training + 10,000 test images)",
              **result}
    write_json(args.out, record)
    for script in ("test_trained", "test"):
        print(f"{SCRIPTS[script]}: test inliers the training process trained on, per digit")
        for r in result[script]:
            print(f"  {r['digit']}: {r['test_inliers_trained_on']} of {r['test_inliers']} "
                  f"({r['test_inliers_trained_on'] / r['test_inliers']:.0%}); in the selection set "
                  f"{r['test_inliers_in_selection_set']} inliers, {r['test_outliers_in_selection_set']} outliers")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
