"""Diversity-collapse analysis: `python jobs/collapse.py [--model M] [--library DIR]
[--population P] [--agents N] [--k K] [--question Q] -o OUT`. Runs in-process (N forward passes,
no Ray). The same code as `raysim identity collapse`."""

import sys

from raysim.cli import main

if __name__ == "__main__":
    sys.exit(main(["identity", "collapse", *sys.argv[1:]]))
