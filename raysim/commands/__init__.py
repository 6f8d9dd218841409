"""Subcommands of ``raysim`` whose parsers live outside raysim/cli.py: they load a model (torch),
so cli.py hands them the rest of the command line only when one runs, and ``raysim --help`` stays
instant. Only here and in cli.py is there argparse; the modules they call take typed arguments."""
