"""A seeded uniform sample of the mutants of some modules, for `mutmut run` when every mutant
would take too long (a mutant of the trainer re-runs the 43 tests that train a model: up to four
minutes each on two cores). The killed fraction of a uniform sample estimates the module's
mutation score; `scripts/mutation_scores.py` gives its 95 % interval.

    python scripts/mutation_sample.py --module training.py=50 --module evaluation.py=70 [--seed 0]
    mutmut run $(python scripts/mutation_sample.py ...)

Run it after `mutmut run` has generated `mutants/` (any run, even one stopped at once). Mutant
names are sorted before drawing, so the same seed and sizes give the same sample again.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def mutant_names(mutants: Path, module: str) -> list[str]:
    meta = mutants / "src" / "oneclass" / f"{module}.meta"
    if not meta.is_file():
        raise SystemExit(f"no {meta}: run `mutmut run` once first to generate the mutants")
    return sorted(json.loads(meta.read_text())["exit_code_by_key"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--module", action="append", required=True, metavar="FILE=N",
                    help="module under src/oneclass and sample size, e.g. training.py=50 (repeatable)")
    ap.add_argument("--exclude", action="append", default=[], metavar="TEXT",
                    help="leave out mutants whose name contains TEXT, e.g. ǁDetectorǁpredict (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mutants", type=Path, default=Path("mutants"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    picked: list[str] = []
    for item in args.module:
        module, _, size = item.partition("=")
        names = [n for n in mutant_names(args.mutants, module) if not any(x in n for x in args.exclude)]
        picked += sorted(rng.sample(names, min(int(size), len(names))))
    print(" ".join(picked))


if __name__ == "__main__":
    main()
