"""The ``satclip`` command line: one module per subcommand, registered in ``COMMANDS``.

Each command module defines ``add_parser(subparsers)`` (which sets ``func`` on its parser) and is
imported lazily, so ``satclip --help`` stays fast and light.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: subcommand name → module (relative to this package) defining add_parser()
COMMANDS = {
    "demo": ".demo",
    "convert": ".convert",
    "evaluate": ".evaluate",
    "embed": ".embed",
    "map": ".map",
    "export": ".export",
    "locate": ".locate",
    "data": ".data",
    "cache": ".cache",
    "train": ".train",
}


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="satclip", description="SatCLIP location embeddings: load, embed, train, evaluate."
    )
    parser.add_argument("--version", action="version", version=f"satclip {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMANDS.values():
        importlib.import_module(module, __package__).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
