"""Scoring job: `python jobs/score.py RUN_DIR` writes RUN_DIR/scores.{csv,parquet,md} and
prints the per-country table (a driver-only job: pandas over the result Parquet)."""

import sys

from raysim.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
