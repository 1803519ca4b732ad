"""Outputs of `satclip demo` and `satclip data bluemarble` that a run must not touch: the previous demo's
log when a run is refused, and the corpus's own files when --preview names one of them."""

from __future__ import annotations

import numpy as np

from satclip.data import bluemarble as bm

from .conftest import one_error_line


def test_a_preview_inside_the_corpus_is_refused(tmp_path, capsys):
    """`--preview bm/images.npy --overwrite` replaced the corpus's images with the PNG (the next run: 'right
    manifest but unreadable arrays; rebuilding it')."""
    from satclip.cli import main

    out = tmp_path / "bm"
    argv = ["data", "bluemarble", "--n", "30", "--patch-size", "8", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    corpus = {p.name: p.read_bytes() for p in out.iterdir()}
    for preview in (out / "images.npy", out / "sheet.png", tmp_path / "link" / "images.npy"):
        (tmp_path / "link").unlink(missing_ok=True)
        (tmp_path / "link").symlink_to(out)
        assert main([*argv, "--preview", str(preview), "--overwrite"]) == 2
        assert f"--preview {preview} is inside the corpus directory" in one_error_line(capsys.readouterr().err)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == corpus
    images, _ = bm.load_bluemarble_arrays(out)
    assert images.shape == (30, 8, 8, 3) and images.dtype == np.uint8

    # the default corpus directory (in the cache) likewise, before it is built
    default = bm.default_corpus_dir(bm.BlueMarbleParams(n=30, patch_size=8))
    assert main([*argv[:-2], "--preview", str(default / "sheet.png")]) == 2
    assert "is inside the corpus directory" in one_error_line(capsys.readouterr().err)
    assert not default.exists()

    # beside the corpus: written
    assert main([*argv, "--preview", str(tmp_path / "sheet.png")]) == 0
    assert (tmp_path / "sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
