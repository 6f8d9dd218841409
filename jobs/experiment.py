"""Experiment job: `python jobs/experiment.py CONFIG -o DIR [--population P] [--sample N]
[--questions N] [--model M] [--answer logprob|generate]`, locally or under `ray job submit`.
The same code as `raysim experiment`."""

import sys

from raysim.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", *sys.argv[1:]]))
