"""Help that every subcommand shares: a one-line purpose, each option's default and an example."""

from __future__ import annotations

import argparse


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Adds "(default: X)" to an option's help where the help does not state its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or "default" in text or action.nargs == 0
                or action.default in (None, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


def finish(parser: argparse.ArgumentParser, example: str) -> argparse.ArgumentParser:
    """The shared help: defaults shown, ``example`` (one or more command lines) at the end."""
    parser.formatter_class = Formatter
    for action in parser._actions:
        if action.help is None and action.option_strings and action.nargs != 0 and action.default is not None:
            action.help = "default: %(default)s"   # argparse prints nothing for an option without help
    parser.epilog = "example:\n" + "\n".join(f"  {line}" for line in example.strip().splitlines())
    return parser
