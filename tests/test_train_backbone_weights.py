"""Backbone weights for training (``model.image_encoder.weights``): a local file is read as checkpoints are
(nothing unpickled that could run code, one line naming a file that is not a state dict), a missing one is bad
input; a named one is downloaded through satclip's hub client (at once offline, sha256-checked)."""

from __future__ import annotations

import os
import pickle

import yaml

from satclip.cli import main

from .conftest import S2_EXAMPLES, one_error_line, require


def _cache_build(tmp_path, weights) -> int:
    config = {
        "model": {"image_encoder": {"name": "moco_resnet18", "weights": str(weights)}, "embed_dim": 8},
        "data": {"root": str(require(S2_EXAMPLES)), "cache": str(tmp_path / "cache")},
        "trainer": {"output_dir": str(tmp_path / "run")},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return main(["cache", "build", "--config", str(path)])


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_weights_file_that_is_no_state_dict_is_one_line_naming_it(tmp_path, capfd):
    picture = tmp_path / "weights.pth"  # a PNG under a weights name
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    assert _cache_build(tmp_path, picture) == 2
    line = one_error_line(capfd.readouterr().err)
    assert line.startswith(f"satclip: error: {picture} is not a readable checkpoint: it is not a torch checkpoint")
    assert line.endswith("give the right file")
    assert not (tmp_path / "cache").exists()

    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.pth"
    hostile.write_bytes(pickle.dumps({"conv1.weight": _RunsACommand(marker)}, protocol=2))
    assert _cache_build(tmp_path, hostile) == 1
    line = one_error_line(capfd.readouterr().err)
    assert line.startswith(f"satclip: error: refusing to unpickle {hostile}: it needs the Python global(s) ")
    assert "system" in line and "--trust-checkpoint" not in line and line.endswith("and give that file")
    assert not marker.exists()


def test_a_missing_weights_file_is_bad_input_naming_it(tmp_path, capfd):
    missing = tmp_path / "nosuch.pth"
    assert _cache_build(tmp_path, missing) == 2
    line = one_error_line(capfd.readouterr().err)
    assert f"no such file: {missing}" in line and "sentinel2_all_moco" in line
