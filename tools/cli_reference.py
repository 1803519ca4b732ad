"""Write docs/cli.md, the reference of every satclip command and option, from the CLI's own parser.

    python tools/cli_reference.py           # write docs/cli.md
    python tools/cli_reference.py --check   # exit 1 if docs/cli.md is not what the parser says (a test runs it)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from satclip.cli import build_parser

OUT = Path(__file__).resolve().parents[1] / "docs" / "cli.md"

HEADER = """# Command-line reference

Every `satclip` command and option, as `satclip COMMAND --help` gives them (this page is generated from the
CLI's parser by `python tools/cli_reference.py`; a test checks that it is up to date). The guides say when to use
which: [README](../README.md) (embed, map, demo), [scale](scale.md) (Dask), [training](training.md) (cache,
train), [retrieval](retrieval.md), [export](export.md) (export, convert), [results](results.md) (evaluate).
Errors are one line on stderr; exit status 0 success, 1 runtime failure, 2 bad input, 130 interrupted.
"""


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, argparse.ArgumentParser]]:
    """``(name, parser)`` of every command below ``parser``, depth first, in the order --help lists them."""
    found = []
    for action in parser._actions:  # (argparse has no public walk over subparsers)
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append((f"{prefix} {name}", sub))
                found += _commands(sub, f"{prefix} {name}")
    return found


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _option_rows(parser: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """The table rows of ``parser``'s own options, and the names of its training-config overrides (listed
    apart: one per config key, see docs/training.md)."""
    formatter = parser._get_formatter()
    rows, overrides = [], []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.dest}`"
        if any(name.count(".") and name.startswith("--") for name in action.option_strings):
            overrides.append(action.option_strings[0])
            continue
        value = ""
        if action.nargs != 0:
            value = f"`{formatter._format_args(action, formatter._get_default_metavar_for_optional(action))}`"
            if action.choices is not None and not isinstance(action.choices, dict):
                value = " \\| ".join(f"`{choice}`" for choice in action.choices)
        default = ""
        if action.option_strings and action.nargs != 0 and action.default not in (None, argparse.SUPPRESS):
            default = f"`{action.default}`"
        what = _cell(formatter._expand_help(action)) if action.help else ""
        rows.append(f"| {names} | {value} | {default} | {what} |")
    return rows, overrides


def reference() -> str:
    parts = [HEADER]
    top = build_parser()
    for name, parser in [("satclip", top), *_commands(top, "satclip")]:  # (the options before any command first)
        parts.append(f"\n## `{name}`\n\n")
        if parser.description:
            parts.append(parser.description.strip() + "\n")
        rows, overrides = _option_rows(parser)
        if rows:
            parts.append("\n| option | value | default | what it does |\n|---|---|---|---|\n" + "\n".join(rows) + "\n")
        if overrides:
            listed = ", ".join(f"`{option}`" for option in overrides)
            parts.append(f"\nTraining-config overrides, one per key of [the config](training.md) (`--KEY VALUE`): "
                         f"{listed}.\n")  # fmt: skip
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md is out of date")
    check = args.parse_args(argv).check
    text = reference()
    if check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python tools/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
