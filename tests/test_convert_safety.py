"""`satclip convert` and the model writers never destroy what satclip did not write (issue 11, item A)."""

from __future__ import annotations

import re

import pytest
import torch

import satclip
from satclip.cli import main
from satclip.errors import BadInputError, OutputExistsError
from satclip.io import native, original
from satclip.io.convert import convert
from satclip.models.location_encoder import LocationEncoder
from satclip.safe_output import MARKER

CONFIG = {
    "encoding": {"name": "sphericalharmonics", "legendre_polys": 3, "harmonics_calculation": "analytic-stable"},
    "network": {"name": "siren", "num_classes": 4, "dim_hidden": 8, "num_layers": 1},
}
POINT = [[13.4, 52.5]]


@pytest.fixture
def ckpt(tmp_path):
    torch.manual_seed(0)
    state = LocationEncoder.from_config(CONFIG).state_dict()
    return original.write_original(tmp_path / "in.ckpt", original.hparams_from_location_config(CONFIG), state)


def _user_directory(path):
    (path / "sub").mkdir(parents=True)
    (path / "notes.txt").write_text("my notes")
    (path / "sub" / "data.csv").write_text("a,b\n1,2\n")
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def _contents(path):
    return {p.relative_to(path): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("overwrite", [False, True])
def test_user_files_in_the_output_directory_survive(tmp_path, ckpt, overwrite):
    target = tmp_path / "mine"
    before = _user_directory(target)
    with pytest.raises(OutputExistsError, match="satclip did not create"):
        convert(ckpt, target, overwrite=overwrite)
    assert _contents(target) == before
    assert [p.name for p in tmp_path.iterdir() if "satclip-tmp" in p.name] == []


@pytest.mark.parametrize("flags", [[], ["--overwrite"]])
def test_user_files_survive_the_cli(tmp_path, ckpt, capsys, flags):
    target = tmp_path / "mine"
    before = _user_directory(target)
    assert main(["convert", str(ckpt), str(target), *flags]) == 2
    assert "satclip did not create" in capsys.readouterr().err
    assert _contents(target) == before
    model = tmp_path / "model"
    assert main(["convert", str(ckpt), str(model)]) == 0
    assert main(["convert", str(ckpt), str(model), *flags]) == (0 if flags else 2)


def test_an_existing_file_is_replaced_only_with_overwrite(tmp_path, ckpt):
    model = convert(ckpt, tmp_path / "model").path
    unrelated = tmp_path / "notes.ckpt"
    unrelated.write_bytes(b"not a checkpoint, but mine")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        convert(model, unrelated)
    assert unrelated.read_bytes() == b"not a checkpoint, but mine"
    assert convert(model, unrelated, overwrite=True).path == unrelated
    torch.testing.assert_close(satclip.load(unrelated).encode(POINT), satclip.load(ckpt).encode(POINT))
    # a native model is a directory: an existing file is never replaced by one, with or without overwrite
    text = tmp_path / "notes"
    text.write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match="not a directory"):
            convert(ckpt, text, overwrite=overwrite)
    assert text.read_text() == "mine"


@pytest.mark.parametrize(("source", "name", "target"), [
    ("ckpt", "out.zip", None), ("ckpt", "out.json", "rshf"), ("bluemarble-l10", "out.safetensors", None),
    ("bluemarble-l10", "out.bin", "torchgeo"),
])  # fmt: skip
def test_an_output_named_for_another_kind_of_file_is_refused(tmp_path, ckpt, capsys, source, name, target):
    """A directory was written as out.zip or out.json, and a Lightning pickle as out.safetensors (which
    safetensors then failed to read: "header too large")."""
    from satclip.cli import main

    argv = ["convert", str(ckpt) if source == "ckpt" else source, str(tmp_path / name), "--location-only"]
    assert main(argv + (["--target", target] if target else [])) == 2
    err = capsys.readouterr().err
    stem = name.split(".")[0]
    if name.endswith((".zip", ".json")):
        said = f"is a directory of files, which a name ending in .{name.split('.')[1]} would pass for a file"
        assert f"{said}: name it {stem}," in err
    else:
        wanted = ".pt" if target == "torchgeo" else ".ckpt"
        assert f"target writes a {wanted}" in err and f"name it {stem}{wanted}," in err
    assert list(tmp_path.iterdir()) == [] or all(p.name != name for p in tmp_path.iterdir())


def test_a_directory_output_of_a_native_source_says_the_target_defaulted_to_a_file(tmp_path, ckpt, capsys):
    """`satclip convert NATIVE DIR`, DIR an existing native model, said "DIR is a directory; satclip writes a file
    there …: choose a file path" without a word that the target defaulted to original, a file."""
    source, existing = tmp_path / "source", tmp_path / "nat10"
    convert(ckpt, source, target="native")
    convert(ckpt, existing, target="native")
    before = _contents(existing)
    assert main(["convert", str(source), str(existing)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"satclip: error: {existing} is a directory, and the target defaulted to original (a file, nat10.ckpt) for a "
        "native source: satclip never replaces a directory with a file; name a file, or pass --target native to "
        "write a native directory")  # fmt: skip
    assert _contents(existing) == before
    assert main(["convert", str(source), str(existing), "--target", "native", "--overwrite"]) == 0


def test_satclip_output_is_replaced_only_with_overwrite(tmp_path, ckpt):
    out = convert(ckpt, tmp_path / "model").path
    assert (out / MARKER).is_file() and native.is_native(out)
    first = (out / native.WEIGHTS_FILE).read_bytes()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        convert(ckpt, out)
    assert convert(ckpt, out, location_only=True, overwrite=True).path == out
    assert (out / native.WEIGHTS_FILE).read_bytes() == first  # same weights, rewritten in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ckpt", "model"]  # no temporaries left


def test_output_equal_to_or_containing_the_input_is_refused(tmp_path, ckpt):
    data = ckpt.read_bytes()
    with pytest.raises(BadInputError, match="also an input"):
        convert(ckpt, ckpt, overwrite=True)
    assert ckpt.read_bytes() == data
    model = convert(ckpt, tmp_path / "model").path
    files = _contents(model)
    for output in (model, model / native.WEIGHTS_FILE, model / native.CONFIG_FILE):
        with pytest.raises(BadInputError, match="also an input|not a directory"):
            convert(model, output, overwrite=True)
    assert _contents(model) == files
    # a checkpoint kept inside a directory satclip wrote: converting into that directory would delete it
    inside = model / "kept.ckpt"
    inside.write_bytes(data)
    with pytest.raises((BadInputError, OutputExistsError), match="contains the input|but not kept.ckpt in it"):
        convert(inside, model, overwrite=True)
    assert inside.read_bytes() == data


def test_a_failed_write_leaves_nothing_behind(tmp_path, ckpt, monkeypatch):
    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(native, "save_tensors", disk_full)
    with pytest.raises(OSError, match="No space"):
        convert(ckpt, tmp_path / "model")
    monkeypatch.setattr(original.torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        original.write_original(tmp_path / "x.ckpt", original.hparams_from_location_config(CONFIG), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ckpt"]


def test_write_native_never_replaces_a_foreign_directory(tmp_path):
    target = tmp_path / "mine"
    before = _user_directory(target)
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError):
            native.write_native(target, {"location_encoder": CONFIG}, {"x": torch.zeros(1)}, overwrite=overwrite)
    assert _contents(target) == before


def test_converted_weights_are_as_readable_as_the_config(tmp_path, ckpt):
    """model.safetensors came out 0600 (safetensors creates it private) beside a 0644 config.json: no one else
    sharing the directory could load the model."""
    import os

    old = os.umask(0o022)
    try:
        assert main(["convert", str(ckpt), str(tmp_path / "native"), "--target", "native"]) == 0
        files = [p for p in (tmp_path / "native").iterdir() if not p.name.startswith(".")]
        assert {p.name: p.stat().st_mode & 0o777 for p in files} == {"config.json": 0o644, "model.safetensors": 0o644}
    finally:
        os.umask(old)


@pytest.mark.parametrize("target", ["native", "rshf"])
def test_convert_never_replaces_another_commands_output_with_a_model(tmp_path, ckpt, capsys, target):
    """`convert --overwrite` into an embedding store of `satclip embed` (a satclip directory, marked as an output
    too) deleted the embeddings and wrote a model there, exit 0 (retrieval build refuses the reverse)."""
    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n10,20\n-30,40\n")
    store = tmp_path / "e.zarr"
    assert main(["embed", str(points), "-o", str(store), "--model", str(ckpt), "--no-progress"]) == 0
    before = sorted((p.relative_to(store), p.read_bytes()) for p in store.rglob("*") if p.is_file())
    capsys.readouterr()
    argv = ["convert", str(ckpt), str(store), "--overwrite", "--target", target, "--location-only"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"satclip: error: {store} holds embedding, lat, lon, not a satclip model; satclip does not "
                   "replace it with one, even with --overwrite: choose another output directory"), err  # fmt: skip
    assert sorted((p.relative_to(store), p.read_bytes()) for p in store.rglob("*") if p.is_file()) == before
    model = tmp_path / "model"  # (a model of satclip's is replaced, as before)
    assert main(["convert", str(ckpt), str(model), "--location-only"]) == 0
    assert main(["convert", str(ckpt), str(model), "--overwrite", "--location-only"]) == 0


def test_save_never_replaces_the_model_it_was_loaded_from(tmp_path, ckpt):
    """`encoder.save(source, overwrite=True)` replaced the file or directory the model was loaded from (a released
    57 MB checkpoint became a 1.8 MB location-only one; a native directory lost its image encoder): the CLI
    refuses an output that is an input, the API did not."""
    data = ckpt.read_bytes()
    with pytest.raises(BadInputError, match="also an input"):
        satclip.load(ckpt).save(ckpt, target="original", overwrite=True)
    assert ckpt.read_bytes() == data
    model = convert(ckpt, tmp_path / "model").path
    files = _contents(model)
    for output in (model, model / native.WEIGHTS_FILE):
        with pytest.raises(BadInputError, match="also an input|not a directory"):
            satclip.load(model).save(output, overwrite=True)
    assert _contents(model) == files
    assert satclip.load(model).save(tmp_path / "copy").path == tmp_path / "copy"  # (elsewhere, as before)


@pytest.mark.parametrize(("name", "target", "said"), [
    ("x.ckpt", "torchgeo", "its suffix .ckpt means original, but the target is torchgeo: name it x.pt,"),
    ("x.pt", "original", "its suffix .pt means torchgeo, but the target is original: name it x.ckpt,"),
    ("x.ckpt", "native", "its suffix .ckpt means original, but the target is native: name it x,"),
    ("x.onnx", "native", "its suffix .onnx names an ONNX export, which is not a model"),
    ("x.safetensors", "native", "native is a directory of files, which a name ending in .safetensors would pass"),
    ("x.json", "rshf", "rshf is a directory of files, which a name ending in .json would pass for a file: name it x,"),
    ("x.bin", "original", "the original target writes a .ckpt file: name it x.ckpt,"),
])  # fmt: skip
def test_save_refuses_the_names_convert_refuses(tmp_path, ckpt, name, target, said):
    """`encoder.save('x.ckpt', target='torchgeo')` wrote a torchgeo pickle as x.ckpt, `save('x.onnx')` and
    `save('x.safetensors')` directories under those names: convert refused them, save skipped its checks."""
    encoder = satclip.load(ckpt)
    with pytest.raises(BadInputError, match=re.escape(f"{tmp_path / name}: {said}")):
        encoder.save(tmp_path / name, target=target)
    with pytest.raises(BadInputError, match=re.escape(said)):
        convert(ckpt, tmp_path / name, target=target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ckpt"]


@pytest.mark.parametrize("name,kind", [("x.ckpt", "original"), ("x.pt", "torchgeo"), ("x", "native")])
def test_save_without_a_target_writes_what_the_name_asks_for(tmp_path, ckpt, name, kind):
    """`encoder.save('x.ckpt')` was refused ("its suffix .ckpt means original, but the target is native"): save's
    target defaulted to native where `satclip convert` takes it from the output's suffix."""
    points = torch.tensor([[13.4, 52.5], [-58.4, -34.6]])
    encoder = satclip.load(ckpt)
    written = encoder.save(tmp_path / name)
    assert (written.path, written.target) == (tmp_path / name, kind)
    assert (tmp_path / name).is_dir() == (kind == "native")
    torch.testing.assert_close(satclip.load(tmp_path / name).encode(points), encoder.encode(points))
    model = satclip.load_model("bluemarble-l10")
    if kind == "original":  # (the original holds no MOSAIKS image encoder: said, as with the target given)
        with pytest.raises(BadInputError, match=r"location_only=True"):
            model.save(tmp_path / "whole.ckpt")
    else:  # (torchgeo's file holds the location encoder alone in any case)
        assert model.save(tmp_path / f"whole{name[1:]}").target == kind


def test_a_pickle_that_is_no_lightning_checkpoint_is_told_what_to_give(tmp_path, capsys):
    """`satclip convert dict.ckpt out` (torch.save({'a': 1})) said it "is not a Lightning checkpoint with
    'state_dict' and 'hyper_parameters'" and named no way on: it now says what it holds and what to give."""
    path = tmp_path / "dict.ckpt"
    torch.save({"a": 1}, path)
    assert main(["convert", str(path), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"satclip: error: {path} is not a Lightning checkpoint with 'state_dict' and 'hyper_parameters' (it holds "
        "keys 'a'): give a released SatCLIP .ckpt (or one satclip train wrote), a native model directory or a model "
        "name such as bluemarble-l10"
    )
    assert not (tmp_path / "out").exists()
