"""Scoring job: `python jobs/score.py RUN_DIR [--by COLUMN]` writes RUN_DIR/scores.{csv,parquet,md}
and RUN_DIR/scores_by_question.parquet, and prints the per-country table (or per answer to the
item COLUMN) (a driver-only job: pandas over the result Parquet)."""

import sys

from raysim.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
