"""Damaged or wrong model files are refused in one line naming the file, what is wrong and what to do: a
checkpoint whose zip records fail their CRC-32 (never used: torch itself does not check them), a native
directory missing one of its files, a run's export/ directory, an export handed back to satclip, a checkpoint
whose two copies of the location network differ, weights that lack a tensor."""

from __future__ import annotations

import json
import re
import signal
import struct
import subprocess
import sys
import zipfile

import pytest
import safetensors.torch
import torch

import satclip
from satclip.cli import main
from satclip.errors import BadInputError, ResumeError
from satclip.io import native

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


@pytest.fixture
def model_dir(tmp_path):
    """A native model directory (the bundled L=10 model, as `satclip convert` writes it)."""
    path = tmp_path / "native"
    assert main(["convert", "bluemarble-l10", str(path), "--target", "native"]) == 0
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


def test_a_native_directory_missing_a_file_says_which(tmp_path, capsys, model_dir, points):
    weights = model_dir / native.WEIGHTS_FILE
    config = model_dir / native.CONFIG_FILE
    cases = {}
    no_config = tmp_path / "no-config"
    no_config.mkdir()
    (no_config / native.WEIGHTS_FILE).write_bytes(weights.read_bytes())
    cases[no_config] = f"{no_config} is not a complete satclip model: it has model.safetensors but no config.json"
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / native.CONFIG_FILE).write_text(config.read_text())
    cases[no_weights] = f"{no_weights} is not a complete satclip model: it has config.json but no model.safetensors"
    config_dir = tmp_path / "config-dir"
    config_dir.mkdir()
    (config_dir / native.WEIGHTS_FILE).write_bytes(weights.read_bytes())
    (config_dir / native.CONFIG_FILE).mkdir()
    cases[config_dir] = f"{config_dir} is not a satclip model: its config.json is a directory, not a file"
    for path, expected in cases.items():
        with pytest.raises(FileNotFoundError, match="copy or download the model again"):
            satclip.load(path)
        assert main(["embed", str(points), "-o", str(tmp_path / "e.parquet"), "--model", str(path)]) == 2
        assert one_error_line(capsys.readouterr().err).startswith(f"satclip: error: {expected}")


def test_rshfs_own_directory_loads(tmp_path, capsys, points):
    """A directory rshf's SatClip saved (model.safetensors in its layout, no config.json) was "not a complete satclip
    model … copy or download the model again", which no copy would mend; it is rshf's fixed architecture, read as
    such (tests/test_peer_exports.py compares it with rshf's own forward)."""
    rshf = tmp_path / "rshf"
    assert main(["convert", "bluemarble-l10", str(rshf), "--target", "rshf"]) == 0
    for entry in rshf.iterdir():
        if entry.name != native.WEIGHTS_FILE:
            entry.unlink()
    capsys.readouterr()
    assert main(["embed", str(points), "-o", str(tmp_path / "e.parquet"), "--model", str(rshf)]) == 0
    assert satclip.load(rshf).posenc.legendre_polys == 40


def test_a_runs_export_directory_names_its_models(tmp_path, capsys, model_dir, points):
    run = tmp_path / "run"
    for name in ("best", "last"):
        (run / "export" / name).mkdir(parents=True)
        for file in (native.CONFIG_FILE, native.WEIGHTS_FILE):
            (run / "export" / name / file).write_bytes((model_dir / file).read_bytes())
    export = run / "export"
    for given in (export, run):
        assert main(["embed", str(points), "-o", str(tmp_path / "e.parquet"), "--model", str(given)]) == 2
        line = one_error_line(capsys.readouterr().err)
        assert line.endswith(f": pass {export / 'best'} or {export / 'last'}"), line
        assert line.startswith(f"satclip: error: {given} is not a satclip model"), line
    satclip.load(export / "best")  # (what it says to pass is a model)


@pytest.mark.parametrize(("fmt", "name", "kind", "runtime"), [
    ("torchscript", "m.pt", "a TorchScript", "torch.jit.load"), ("onnx", "m.onnx", "an ONNX", "onnxruntime"),
])  # fmt: skip
@pytest.mark.parametrize("trust", [False, True])
def test_an_export_given_back_to_satclip_says_what_it_is(tmp_path, points, fmt, name, kind, runtime, trust):
    if fmt == "onnx":
        pytest.importorskip("onnx")
    exported = tmp_path / name
    assert main(["export", "--format", fmt, "--model", "bluemarble-l10", "-o", str(exported)]) == 0
    trusted = ["--trust-checkpoint"] if trust else []
    argv = ["embed", str(points), "-o", str(tmp_path / "e.parquet"), "--model", str(exported), *trusted]
    done = subprocess.run([sys.executable, "-m", "satclip", *argv], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)  # (one line: no UserWarning from torch.load before it)
    assert line == (
        f"satclip: error: {exported} is {kind} export, which satclip does not load: satclip loads .ckpt checkpoints, "
        "torchgeo .pt state dicts (torch.save) and model directories (config.json + model.safetensors: native, or "
        f"rshf's as satclip writes them); exports are for other runtimes ({runtime}). Give satclip the model it was "
        "exported from"
    )


def test_an_inconsistent_checkpoint_names_the_file_and_the_fix(tmp_path, capsys, checkpoint, points):
    loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    key = "model.nnet.layers.1.weight"
    assert torch.equal(loaded["state_dict"][key], loaded["state_dict"]["model.location.nnet.layers.1.weight"])
    loaded["state_dict"][key] = loaded["state_dict"][key] + 1
    edited = tmp_path / "edited.ckpt"
    torch.save(loaded, edited)
    assert main(["embed", str(points), "-o", str(tmp_path / "e.parquet"), "--model", str(edited)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"satclip: error: {edited} is inconsistent: {key} differs from model.location.nnet.")
    assert line.endswith("the file was damaged or edited; download or copy it again")


@pytest.mark.parametrize("form", ["native", "ckpt"])
def test_weights_missing_a_tensor_name_the_file_and_the_fix(tmp_path, capsys, model_dir, checkpoint, points, form):
    if form == "native":
        weights = model_dir / native.WEIGHTS_FILE
        tensors = safetensors.torch.load_file(weights)
        del tensors["location.nnet.last_layer.weight"]
        safetensors.torch.save_file(tensors, weights)
        model, named = model_dir, weights
    else:
        loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
        for prefix in ("model.", "model.location."):
            del loaded["state_dict"][f"{prefix}nnet.last_layer.weight"]
        loaded.pop("satclip")  # (satclip's entry would name the tensor as missing before the network does)
        torch.save(loaded, checkpoint)
        model, named = checkpoint, checkpoint
    assert json.loads((model_dir / native.CONFIG_FILE).read_text())["location_encoder"]["network"]["name"] == "siren"
    assert main(["embed", str(points), "-o", str(tmp_path / "e.parquet"), "--model", str(model)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"satclip: error: {named}: the weights have no nnet.last_layer.weight, which this network")
    assert line.endswith("the weights file is incomplete or of another model: export, convert or download the model "
                         "again")  # fmt: skip


@pytest.mark.parametrize("damage", ["missing", "shape", "extra"])
def test_convert_refuses_weights_its_network_cannot_take(tmp_path, capsys, checkpoint, damage):
    """Only the weight matrices' sizes were compared with the config: a checkpoint lacking a bias, or with one of
    another size, was converted (exit 0, "reproduces it exactly") into a file nothing loads."""
    loaded = torch.load(checkpoint, map_location="cpu", weights_only=True)
    loaded.pop("satclip")  # (satclip's own entry holds the weights too: the original's state dict is what is read)
    key = "nnet.layers.1.bias"
    for prefix in ("model.", "model.location."):
        state = loaded["state_dict"]
        if damage == "missing":
            del state[prefix + key]
        elif damage == "shape":
            state[prefix + key] = torch.zeros(3, dtype=state[prefix + key].dtype)
        else:
            state[prefix + "nnet.layers.1.scale"] = torch.zeros(1)
    edited = tmp_path / "edited.ckpt"
    torch.save(loaded, edited)
    width = loaded["state_dict"]["model.nnet.layers.1.weight"].shape[0]
    said = {"missing": f"lack {key}", "shape": f"have {key} (3,) (expected ({width},))",
            "extra": "hold nnet.layers.1.scale, which the network has not"}[damage]  # fmt: skip
    for out in (tmp_path / "out.pt", tmp_path / "native"):
        assert main(["convert", str(edited), str(out)]) == 2
        assert one_error_line(capsys.readouterr().err) == (
            f"satclip: error: {edited}: the weights {said}; the weights file is incomplete or of another model: "
            "export, convert or download the model again"
        )
        assert not out.exists()
    with pytest.raises(BadInputError, match=f"the weights {re.escape(said)}"):
        satclip.load(edited)


def test_ctrl_c_while_the_weights_are_read_is_an_interruption(monkeypatch, capsys, model_dir, points):
    """torch swallows a KeyboardInterrupt raised while it builds a tensor for safetensors and raises a ValueError
    with nothing chained: a Ctrl-C while a model loaded was reported as a damaged file (exit 2), not "interrupted"."""

    def interrupted_open(*args, **kwargs):
        try:
            signal.raise_signal(signal.SIGINT)  # (runs Python's handler here, which raises KeyboardInterrupt)
        except KeyboardInterrupt:
            pass
        raise ValueError("could not determine the shape of object type 'torch.storage.UntypedStorage'")

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        monkeypatch.setattr(native, "safe_open", interrupted_open)
        for read in (native.read_tensors, native.read_shapes):
            with pytest.raises(KeyboardInterrupt):
                read(model_dir)
        assert main(["embed", str(points), "--model", str(model_dir), "-o", str(points.with_suffix(".parquet"))]) == 130
        assert capsys.readouterr().err.strip().splitlines()[-1] == "satclip: interrupted"
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)
