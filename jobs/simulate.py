"""Simulation job: `python jobs/simulate.py --config CONFIG -o RUN_DIR [--limit N]`, locally or
under `ray job submit` (ray.init() connects to the cluster named by RAY_ADDRESS, else starts a
local one). The same code as `raysim simulate`."""

import sys

from raysim.cli import main

if __name__ == "__main__":
    sys.exit(main(["simulate", *sys.argv[1:]]))
