"""Vector-build job: `python jobs/build_vectors.py [--model M] -o LIB ...`, locally or under
`ray job submit` (see `raysim identity build --help`). Rerunning into the same LIB resumes."""

import sys

from raysim.cli import main

if __name__ == "__main__":
    sys.exit(main(["identity", "build", *sys.argv[1:]]))
