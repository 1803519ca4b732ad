"""Regenerate src/satclip/encoding/analytic_ylm_l40.txt.gz with sympy 1.14 (one line per (l, m))."""

import gzip
import sys
from pathlib import Path

from satclip.encoding.analytic_expressions import SHIPPED_DEGREE, SHIPPED_FILE, sympy_expression

target = Path(__file__).resolve().parents[1] / "src" / "satclip" / "encoding" / SHIPPED_FILE
with gzip.GzipFile(target, "wb", mtime=0) as fh:
    for l in range(SHIPPED_DEGREE):
        for m in range(-l, l + 1):
            fh.write(f"{l} {m} {sympy_expression(l, m)}\n".encode())
        print(f"l={l}", file=sys.stderr, flush=True)
print(f"wrote {target}")
