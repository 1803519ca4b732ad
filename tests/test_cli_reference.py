"""docs/cli.md, the reference of every command and option, is what the CLI's parser says: options that were
only in `--help` (embed --layout, map --bbox, evaluate --folds, cache verify --json, …) are all documented, and
a changed option fails this test until `python tools/cli_reference.py` writes the page again."""

from __future__ import annotations

import subprocess
import sys

from .conftest import REPO


def test_the_cli_reference_is_up_to_date():
    done = subprocess.run([sys.executable, str(REPO / "tools" / "cli_reference.py"), "--check"], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_the_cli_reference_names_every_option():
    text = (REPO / "docs" / "cli.md").read_text()
    for option in ("--layout", "--bbox", "--land-only", "--folds", "--json", "--keep-archives", "--gsd-km",
                   "--trust-checkpoint", "--grid-size", "--trainer.deterministic", "--optim.betas"):  # fmt: skip
        assert f"`{option}`" in text, option
