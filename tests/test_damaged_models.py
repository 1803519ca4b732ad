"""Damaged or wrong model files are refused in one line naming the file, what is wrong and what to do: a
checkpoint whose zip records fail their CRC-32 (never used: torch itself does not check them)."""

from __future__ import annotations

import struct
import zipfile

import pytest
import torch

import satclip
from satclip.cli import main
from satclip.errors import BadInputError, ResumeError

from .conftest import one_error_line


@pytest.fixture
def points(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("lon,lat\n13.4,52.5\n-58.4,-34.6\n")
    return path


@pytest.fixture
def checkpoint(tmp_path):
    """An original SatCLIP .ckpt (the bundled L=10 model's location encoder, as `satclip convert` writes it)."""
    path = tmp_path / "model.ckpt"
    assert main(["convert", "--location-only", "bluemarble-l10", str(path)]) == 0
    return path


def flip_tensor_bytes(path) -> str:
    """Flip 100 bytes inside the largest tensor record of the torch zip archive ``path``; its record name."""
    with zipfile.ZipFile(path) as archive:
        record = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[record.header_offset + 26 : record.header_offset + 30])
    start = record.header_offset + 30 + name_length + extra_length + record.file_size // 2
    for i in range(start, start + 100):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    return record.filename


@pytest.mark.parametrize("trust", [False, True])
def test_a_bit_flipped_checkpoint_is_refused_before_it_is_used(tmp_path, capsys, checkpoint, points, trust):
    intact = satclip.load(checkpoint)  # (the file before the damage is a model)
    assert intact.encode(torch.zeros(1, 2, dtype=torch.float64)).shape == (1, 256)
    record = flip_tensor_bytes(checkpoint)
    with pytest.raises(BadInputError) as caught:
        satclip.load(checkpoint, trust_checkpoint=trust)
    message = str(caught.value)
    assert message.startswith(f"{checkpoint} is not a readable checkpoint: its record {record!r} fails its CRC-32")
    assert message.endswith("download or copy it again, or give the right file")
    trusted = ["--trust-checkpoint"] if trust else []
    out = tmp_path / "e.parquet"
    assert main(["embed", str(points), "-o", str(out), "--model", str(checkpoint), *trusted]) == 2
    assert one_error_line(capsys.readouterr().err) == f"satclip: error: {message}"
    assert not out.exists()
    # nor does convert bake the damage into a native model
    assert main(["convert", str(checkpoint), str(tmp_path / "baked"), *trusted]) == 2
    assert one_error_line(capsys.readouterr().err) == f"satclip: error: {message}"
    assert not (tmp_path / "baked").exists()


def test_training_resume_uses_the_same_crc_check(tmp_path, checkpoint):
    from satclip.io.safe_pickle import zip_problem
    from satclip.train.callbacks import verify_checkpoint

    record = flip_tensor_bytes(checkpoint)
    problem = zip_problem(checkpoint)
    assert problem == f"its record {record!r} fails its CRC-32 check (a disk or copy error changed it)"
    with pytest.raises(ResumeError) as caught:
        verify_checkpoint(checkpoint)
    assert f"cannot resume from {checkpoint}: the file is damaged: {problem}; " in str(caught.value)
