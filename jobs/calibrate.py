"""Noise-calibration job: `python jobs/calibrate.py [--model M] [--library DIR] [--population P]
[--agents N] [--questions N] [--probe-sigma S] [--actors N] -o OUT`, locally or under
`ray job submit` (ray.init() connects to the cluster named by RAY_ADDRESS, else starts a local
one). The same code as `raysim identity calibrate`."""

import sys

from raysim.cli import main

if __name__ == "__main__":
    sys.exit(main(["identity", "calibrate", *sys.argv[1:]]))
