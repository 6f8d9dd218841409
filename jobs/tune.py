"""Tune job: `python jobs/tune.py --config CONFIG -o DIR [--layer-sweep]`, locally or under
`ray job submit`. The same code as `raysim tune`."""

import sys

from raysim.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
