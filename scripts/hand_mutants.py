"""Hand-written mutants of promised behaviours, each run against the test suite.

mutmut (`make mutation`) changes one token at a time; a reviewer breaks a behaviour the way a
real defect would: a mask that lets a code see itself, a frame scored by its mean patch instead of
its most novel one, a normalisation that never happens. Each mutant here is one such defect,
written as an exact text replacement in one source file (`scripts/hand_mutants.json`). This
script copies `src/` to a temporary folder, applies one mutant, runs the tests on that copy
(`PYTHONPATH` puts it before the installed package) and records whether the suite failed
(killed) or passed (survived), with the first failing test.

    python scripts/hand_mutants.py                    # every mutant, fast tests (not `slow`)
    python scripts/hand_mutants.py --only video-       # ids starting with video-
    python scripts/hand_mutants.py --out results/hand-mutants.json

A mutant whose text is not found exactly once is an error: the list must follow the code.
A mutant with `only` (pytest node ids) runs just those tests, slow ones and the files the whole
suite leaves out included: how the driver's runners (`test_reproduce.py`, real worker processes)
are held to their promises without running the suite's slowest file for every other mutant.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# as `make mutation` runs them: the slow tests, the Ray suite and the committed-results checks left out
BASE_ARGS = ["-x", "-q", "-p", "no:cacheprovider", "--hypothesis-seed=0"]
PYTEST_ARGS = [*BASE_ARGS, "-m", "not slow"]
LEFT_OUT = ["test_reproduce.py", "test_committed_results.py"]


def load_mutants(path: Path) -> list[dict]:
    mutants = json.loads(path.read_text())
    ids = [m["id"] for m in mutants]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{path}: repeated mutant ids")
    return mutants


def apply(mutant: dict, src: Path) -> None:
    """Apply one mutant to the copy of src/ at `src`; refuse a find text that is not there once."""
    target = src / mutant["file"]
    text = target.read_text()
    count = text.count(mutant["find"])
    if count != 1:
        raise SystemExit(f"mutant {mutant['id']}: its text occurs {count} times in {mutant['file']}")
    target.write_text(text.replace(mutant["find"], mutant["replace"]))


def first_failure(output: str) -> str | None:
    for line in output.splitlines():
        if line.startswith("FAILED ") or line.startswith("ERROR "):
            return line.split(" - ")[0].split(" ", 1)[1]
    return None


def run(mutant: dict, timeout: float, tests_dir: str = "tests") -> dict:
    with tempfile.TemporaryDirectory(prefix="oneclass-mutant-") as tmp:
        copy = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", copy, ignore=shutil.ignore_patterns("__pycache__"))
        apply(mutant, copy / "oneclass")
        # the tests nearest the mutant first, then the rest of the suite (a failure stops it early);
        # or only the tests the mutant names, whatever their marks or files
        local = lambda ids: [tests_dir + f[len("tests"):] for f in ids]  # noqa: E731
        ignored = [f"--ignore={tests_dir}/{name}" for name in LEFT_OUT]
        if mutant.get("only"):
            first = local(mutant["only"])
            rounds = [[*BASE_ARGS, *first]]
        else:
            first = local(mutant.get("first", []))
            rounds = [[*PYTEST_ARGS, *ignored, *first]] if first else []
            rounds.append([*PYTEST_ARGS, *ignored, tests_dir + "/", *(f"--ignore={f}" for f in first)])
        env = {**os.environ, "PYTHONPATH": str(copy), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        t0 = time.perf_counter()
        status, failed = "survived", None
        for args in rounds:
            try:
                proc = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=ROOT, env=env,
                                      capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                status = "timeout"
                break
            # 1: a test failed; 5: no test selected (not a failure); any other code (a collection
            # error: the mutant broke an import) counts as killed too
            if proc.returncode not in (0, 5):
                status = "killed"
                failed = first_failure(proc.stdout + proc.stderr) or f"pytest exit code {proc.returncode}"
                break
        return {"id": mutant["id"], "file": mutant["file"], "behaviour": mutant["behaviour"], "status": status,
                "caught_by": failed, "first": first, "only": bool(mutant.get("only")),
                "seconds": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mutants", type=Path, default=ROOT / "scripts" / "hand_mutants.json")
    ap.add_argument("--only", default="", help="run the mutants whose id starts with this")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per mutant")
    ap.add_argument("--out", type=Path, help="write the results (JSON) here")
    ap.add_argument("--tests-dir", default="tests",
                    help="the test folder to run, relative to the repository (e.g. an older suite exported "
                         "with `git archive REV tests | tar -x -C old/` to measure it before a change)")
    args = ap.parse_args()
    mutants = [m for m in load_mutants(args.mutants) if m["id"].startswith(args.only)]
    for m in mutants:  # every text checked before any run
        count = (ROOT / "src" / "oneclass" / m["file"]).read_text().count(m["find"])
        if count != 1:
            raise SystemExit(f"mutant {m['id']}: its text occurs {count} times in {m['file']}")
    results = []
    for m in mutants:
        r = run(m, args.timeout, args.tests_dir.rstrip("/"))
        results.append(r)
        print(f"{r['status']:8s} {r['id']:32s} {r['seconds']:7.1f} s  {r['caught_by'] or ''}", flush=True)
    killed = sum(r["status"] != "survived" for r in results)
    print(f"{killed} / {len(results)} killed")
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        if subprocess.run(["git", "status", "--porcelain", "src", args.tests_dir], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip():
            commit += " with uncommitted changes to src/ or the tests"
        record = {"what": "hand-written mutants of promised behaviours against the fast tests",
                  "command": "python scripts/hand_mutants.py" + (f" --only {args.only}" if args.only else "")
                  + (f" --tests-dir {args.tests_dir}" if args.tests_dir != "tests" else ""),
                  "pytest_args": PYTEST_ARGS, "left_out": LEFT_OUT, "commit": commit,
                  "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "killed": killed, "ran": len(results), "mutants": results}
        sys.path.insert(0, str(ROOT / "src"))
        from oneclass.fileio import write_json
        write_json(args.out, record, compact=True)
    sys.exit(0 if killed == len(results) else 1)


if __name__ == "__main__":
    main()
