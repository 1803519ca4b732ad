"""A native model's config.json records the sha256 of its model.safetensors, and a file that no longer has it
is refused before its tensors are used: a changed byte inside a tensor's data (header intact, values still
finite) was loaded, embedded with and converted on without a word. A config without the key (an older
satclip's model, a hand-made one) loads as before."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys

import pytest
import safetensors.torch
import torch

import satclip
from satclip.cli import main
from satclip.errors import BadInputError
from satclip.io import native
from satclip.pretrained import bundled_models

from .conftest import one_error_line
from .test_damaged_models import points  # noqa: F401


@pytest.fixture
def model_dir(tmp_path):
    """A native model directory (the bundled L=10 model, location and image encoder, as `satclip convert`
    writes it)."""
    path = tmp_path / "native"
    assert main(["convert", "bluemarble-l10", str(path), "--target", "native"]) == 0
    return path


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flip_a_byte(weights, prefix: str) -> str:
    """Flip the lowest bit of the first value of the first tensor named ``prefix…`` in the data of the safetensors
    file ``weights`` (the header is left alone, the value stays finite); the tensor's name."""
    data = bytearray(weights.read_bytes())
    (header_length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_length])
    name = min(k for k in header if k.startswith(prefix))
    assert header[name]["dtype"] in ("F32", "F64")  # (little-endian: the first byte is the mantissa's lowest)
    data[8 + header_length + header[name]["data_offsets"][0]] ^= 0x01
    weights.write_bytes(bytes(data))
    return name


def damage(model_dir, prefix: str) -> str:
    """Flip a byte of a tensor ``prefix…`` of ``model_dir``'s weights (a real change of a finite value); the
    refusal that follows, as satclip words it."""
    weights = model_dir / native.WEIGHTS_FILE
    recorded, before = sha256(weights), safetensors.torch.load(weights.read_bytes())
    name = flip_a_byte(weights, prefix)
    after = safetensors.torch.load(weights.read_bytes())  # (a readable file, every value finite, one changed)
    assert not torch.equal(after[name], before[name]) and bool(torch.isfinite(after[name]).all())
    return (
        f"{weights} is damaged: its sha256 ({sha256(weights)[:12]}…) differs from the one recorded in config.json "
        f"({recorded[:12]}…); copy, download or export the model again (if you changed its weights on purpose, "
        "delete 'weights_sha256' from config.json)"
    )


def test_a_written_model_records_the_sha256_of_its_weights_and_loads(model_dir):
    config = json.loads((model_dir / native.CONFIG_FILE).read_text())
    assert config["weights_sha256"] == sha256(model_dir / native.WEIGHTS_FILE)
    assert config["format_version"] == 1
    expected = satclip.load("bluemarble-l10").encode(torch.tensor([[13.4, 52.5]]))
    assert torch.equal(satclip.load(model_dir).encode(torch.tensor([[13.4, 52.5]])), expected)


@pytest.mark.parametrize("prefix", ["location.", "visual."])
def test_a_byte_flipped_in_a_tensor_is_refused_by_the_api(model_dir, prefix):
    """Also a byte of the image encoder, whose tensors satclip.load does not even read: the file is damaged."""
    message = damage(model_dir, prefix)
    for read in (satclip.load, satclip.load_model, native.read_native):
        with pytest.raises(BadInputError) as caught:
            read(model_dir)
        assert str(caught.value) == message


def test_a_byte_flipped_in_a_tensor_is_refused_by_the_cli(tmp_path, capsys, model_dir, points):  # noqa: F811
    message = damage(model_dir, "location.")
    out = tmp_path / "e.parquet"
    argv = ["embed", str(points), "-o", str(out), "--model", str(model_dir)]
    done = subprocess.run([sys.executable, "-m", "satclip", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert one_error_line(done.stderr) == f"satclip: error: {message}"  # (one line: no traceback)
    assert not out.exists()
    # nor does convert copy the damage on
    for target in ("native", "original"):
        baked = tmp_path / f"baked-{target}"
        assert main(["convert", str(model_dir), str(baked), "--target", target]) == 2
        assert one_error_line(capsys.readouterr().err) == f"satclip: error: {message}"
        assert not baked.exists()


def test_a_config_without_the_key_loads_unchecked(model_dir):
    """A model an older satclip wrote (or a hand-made one) records no sha256: it loads as before."""
    file = model_dir / native.CONFIG_FILE
    config = json.loads(file.read_text())
    assert config.pop("weights_sha256") == sha256(model_dir / native.WEIGHTS_FILE)
    native.write_config(model_dir, config)
    intact = satclip.load(model_dir).encode(torch.tensor([[13.4, 52.5]]))
    damage(model_dir, "location.")
    assert satclip.load(model_dir).encode(torch.tensor([[13.4, 52.5]])).shape == intact.shape  # (not checked)


@pytest.mark.parametrize("recorded", [12, "abc", "A" * 64, None])
def test_a_malformed_recorded_sha256_is_named(model_dir, recorded):
    file = model_dir / native.CONFIG_FILE
    config = json.loads(file.read_text())
    config["weights_sha256"] = recorded if recorded is not None else sha256(model_dir / native.WEIGHTS_FILE).upper()
    native.write_config(model_dir, config)
    with pytest.raises(BadInputError) as caught:
        satclip.load(model_dir)
    assert str(caught.value) == (
        f"{file}: 'weights_sha256' must be the sha256 of model.safetensors in 64 lowercase hex digits (as satclip "
        f"writes it), got {config['weights_sha256']!r}; copy, download or export the model again"
    )


@pytest.mark.parametrize("name", ["bluemarble-l10", "bluemarble-l40"])
def test_shipped_models_record_the_sha256_of_their_weights(name):
    directory = bundled_models()[name]
    config = json.loads((directory / native.CONFIG_FILE).read_text())
    assert config["weights_sha256"] == sha256(directory / native.WEIGHTS_FILE)
