"""Mutation score per module from a `mutmut run` (the `mutants/` folder it leaves):
killed (and timed-out) mutants over those that ran, and the survivors by name.

    python scripts/mutation_scores.py [--out mutants/mutation-scores.json] [--names sample.txt]
"""
from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 24, -24, 36, 152, 255, 37}   # a failing test, pytest's internal error, a timeout
SURVIVED = {0}
NO_TESTS = {5, 33}


def wilson(killed: int, ran: int) -> list[float]:
    """Wilson score interval (95 %) of the killed fraction: for a uniform sample of mutants
    (`scripts/mutation_sample.py`) it bounds the module's score, inside [0, 1] even at 0 or all."""
    from scipy.stats import binomtest
    ci = binomtest(killed, ran).proportion_ci(confidence_level=0.95, method="wilson")
    return [round(float(ci.low), 4), round(float(ci.high), 4)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mutants", default="mutants")
    ap.add_argument("--out", default="mutants/mutation-scores.json")
    ap.add_argument("--names", type=Path, default=None,
                    help="count only these mutants (a file of names, e.g. from scripts/mutation_sample.py)")
    args = ap.parse_args()
    wanted = set(args.names.read_text().split()) if args.names else None
    modules = {}
    for meta in sorted(Path(args.mutants).rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if wanted is not None:
            codes = {k: c for k, c in codes.items() if k in wanted}
            if not codes:
                continue
        counts = Counter("killed" if c in KILLED else "survived" if c in SURVIVED else
                         "no tests" if c in NO_TESTS else "not run" if c is None else "other" for c in codes.values())
        ran = counts["killed"] + counts["survived"]
        name = str(meta.relative_to(args.mutants)).removesuffix(".meta")
        modules[name] = {**{k: counts.get(k, 0) for k in ("killed", "survived", "no tests", "not run", "other")},
                         "total": len(codes),
                         "score": round(counts["killed"] / ran, 4) if ran else None,
                         # where only a sample ran, the module's score lies in this interval (95 %)
                         "score_95": wilson(counts["killed"], ran) if ran else None,
                         "survivors": sorted(k for k, c in codes.items() if c in SURVIVED)}
    print(f"{'module':40s} {'killed':>7s} {'survived':>8s} {'no tests':>8s} {'not run':>7s} {'score':>6s}  95 %")
    for name, m in modules.items():
        score = f"{100 * m['score']:.1f}%" if m["score"] is not None else "–"
        ci = f"{100 * m['score_95'][0]:.0f}–{100 * m['score_95'][1]:.0f} %" if m["score_95"] else ""
        print(f"{name:40s} {m['killed']:7d} {m['survived']:8d} {m['no tests']:8d} {m['not run']:7d} {score:>6s}  {ci}")
    Path(args.out).write_text(json.dumps({"measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                          "modules": modules}, indent=2) + "\n")


if __name__ == "__main__":
    main()
