"""Move runs written before run keys (or under an older key) to the folder their whole
configuration keys them by: `python scripts/rekey_results.py [RESULTS] [--dry-run]`.
Epoch logs are compressed beside the run (`logs/*.log.jsonl.gz`); nothing is overwritten."""
import argparse

from oneclass.evaluation import rekey

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("results", nargs="?", default="results")
parser.add_argument("--dry-run", action="store_true", help="say what would move, move nothing")
args = parser.parse_args()
for old, new in rekey(args.results, dry_run=args.dry_run):
    if old != new:
        print(f"{old} -> {new}")
