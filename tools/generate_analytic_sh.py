"""Regenerate or check src/satclip/encoding/analytic_ylm_l40.txt.gz (one line per (l, m)) with sympy 1.14.0.

The file is the sympy-printed text of the original's analytic spherical harmonics for l < 40; another sympy
version may print them differently, so ``--write`` needs the version pinned in pyproject.toml's dev extra.
Both modes generate all 1,600 expressions (about 15 CPU-seconds).
"""

import argparse
import gzip
import sys
from pathlib import Path

from satclip import safe_output
from satclip.encoding.analytic_expressions import SHIPPED_DEGREE, SHIPPED_FILE, sympy_expression

#: the sympy that printed the tracked file (pyproject.toml's dev extra pins it)
SYMPY_VERSION = "1.14.0"
TARGET = Path(__file__).resolve().parents[1] / "src" / "satclip" / "encoding" / SHIPPED_FILE


def generate() -> str:
    lines = []
    for l in range(SHIPPED_DEGREE):
        lines += [f"{l} {m} {sympy_expression(l, m)}\n" for m in range(-l, l + 1)]
        print(f"l={l}", file=sys.stderr, flush=True)
    return "".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true",
                      help=f"compare with the tracked {SHIPPED_FILE}; exit 1 if they differ; write nothing")
    mode.add_argument("--write", action="store_true", help=f"replace the tracked {SHIPPED_FILE}")  # fmt: skip
    args = parser.parse_args()
    import sympy

    if args.write and sympy.__version__ != SYMPY_VERSION:
        parser.error(f"sympy {sympy.__version__} is installed; --write needs sympy {SYMPY_VERSION} "
                     f"(pip install sympy=={SYMPY_VERSION})")  # fmt: skip
    text = generate()
    if args.check:
        tracked = gzip.decompress(TARGET.read_bytes()).decode()
        if text != tracked:
            sys.exit(f"{TARGET} differs from what sympy {sympy.__version__} prints; "
                     f"regenerate with sympy {SYMPY_VERSION}: tools/generate_analytic_sh.py --write")  # fmt: skip
        print(f"{TARGET} matches sympy {sympy.__version__}")
        return
    safe_output.write_bytes(TARGET, gzip.compress(text.encode(), mtime=0))
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
