"""ONNX / TorchScript export: equal to satclip to 1e-5, runnable without satclip."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import satclip
from satclip.cli import main
from satclip.io.onnx import ExportableSphericalHarmonics

from .conftest import REFERENCE, require
from .test_embed_api import CONFIG

RUN_WITHOUT_SATCLIP = """
import sys, json, numpy as np
sys.modules["satclip"] = None  # any import of satclip now fails
fmt, model, points, out = sys.argv[1:]
lonlat = np.load(points)
if fmt == "onnx":
    import onnxruntime as ort
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    meta = json.loads(session.get_modelmeta().custom_metadata_map["satclip"])
    emb = session.run(["embedding"], {"lonlat": lonlat})[0]
else:
    import torch
    extra = {"satclip.json": ""}
    module = torch.jit.load(model, _extra_files=extra)
    meta = json.loads(extra["satclip.json"])
    with torch.no_grad():
        emb = module(torch.from_numpy(lonlat)).numpy()
assert meta["embedding_dim"] == emb.shape[1], meta
np.save(out, emb)
"""


@pytest.fixture(scope="module")
def lonlat():
    return np.load(require(REFERENCE / "sh_reference.npz"))["lonlat"]  # includes poles and the antimeridian


def run_standalone(tmp_path, fmt, model_file, lonlat) -> np.ndarray:
    np.save(tmp_path / "points.npy", lonlat)
    subprocess.run(
        [sys.executable, "-c", RUN_WITHOUT_SATCLIP, fmt, str(model_file), str(tmp_path / "points.npy"),
         str(tmp_path / "emb.npy")],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    return np.load(tmp_path / "emb.npy")


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_l10_reproduces_satclip(tmp_path, lonlat, fmt):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
    ckpt = require(REFERENCE / "satclip-resnet18-l10.ckpt")
    out = tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    assert main(["export", "--format", fmt, "--model", str(ckpt), "-o", str(out)]) == 0
    emb = run_standalone(tmp_path, fmt, out, lonlat)
    expected = satclip.load(ckpt).encode(lonlat).numpy()  # the released 'analytic' harmonics, float32 network
    assert emb.dtype == np.float32 and emb.shape == (2000, 256)
    np.testing.assert_allclose(emb, expected, atol=1e-5, rtol=0)
    golden = np.load(REFERENCE / "expected.npz")["l10_location_embeddings"]  # the original code, float64
    np.testing.assert_allclose(emb, golden, atol=1e-5, rtol=0)
    assert main(["export", "--format", fmt, "--model", str(ckpt), "-o", str(out)]) == 2  # exists


def test_exported_float64_matches_the_original_exactly(tmp_path, lonlat):
    pytest.importorskip("onnxruntime")
    ckpt = require(REFERENCE / "satclip-resnet18-l10.ckpt")
    out = tmp_path / "model64.onnx"
    assert main(["export", "--format", "onnx", "--model", str(ckpt), "--dtype", "float64", "-o", str(out)]) == 0
    emb = run_standalone(tmp_path, "onnx", out, lonlat)
    golden = np.load(REFERENCE / "expected.npz")["l10_location_embeddings"]
    np.testing.assert_allclose(emb, golden, atol=1e-9, rtol=0)


def test_exported_l40_is_the_stable_basis(tmp_path, lonlat):
    """At L = 40 the export computes the analytic convention by the stable recurrence: equal to satclip's
    ``analytic-stable`` model to 1e-5; it differs from the released 'analytic' float64 rounding only at
    high latitudes (documented in docs/export.md)."""
    ckpt = require(REFERENCE / "satclip-resnet18-l40.ckpt")
    out = tmp_path / "model.pt"
    assert main(["export", "--format", "torchscript", "--model", str(ckpt), "-o", str(out)]) == 0
    emb = torch.jit.load(str(out))(torch.from_numpy(lonlat)).detach().numpy()
    stable = satclip.load(ckpt, harmonics_calculation="analytic-stable")
    with torch.no_grad():
        expected = stable(torch.from_numpy(lonlat)).numpy()  # float64 features, float32 network
    np.testing.assert_allclose(emb, expected, atol=1e-5, rtol=0)
    golden = np.load(REFERENCE / "expected.npz")["l40_location_embeddings"]
    low = np.abs(lonlat[:, 1]) <= 45
    np.testing.assert_allclose(emb[low], golden[low], atol=1e-5, rtol=0)
    assert np.abs(emb - golden).max() > 1e-3  # the original's polar rounding error is not reproduced


@pytest.mark.parametrize(
    ("convention", "key", "m0", "cs"),
    [("analytic", "analytic_L10", np.pi, False), ("closed-form", "closedform_L40", 1.0, True)],
)
def test_exportable_harmonics_match_the_original(convention, key, m0, cs):
    reference = np.load(require(REFERENCE / "sh_reference.npz"))
    degree = int(key.rsplit("L", 1)[1])
    lonlat = torch.from_numpy(reference["lonlat"])
    features = ExportableSphericalHarmonics(degree, m0, cs)(lonlat).numpy()
    # the golden arrays carry float64 rounding of their own (≈5e-12 at L = 10, ≈5e-11 at L = 40)
    np.testing.assert_allclose(features, reference[key], atol=1e-11 if degree == 10 else 1e-10, rtol=0)
    calculation = "analytic-stable" if convention == "analytic" else convention
    ours = satclip.encoding.create("sphericalharmonics", legendre_polys=degree, harmonics_calculation=calculation)
    np.testing.assert_allclose(features, ours(lonlat).numpy(), atol=1e-13, rtol=0)


def test_onnx_metadata_names_the_model(tmp_path):
    onnx = pytest.importorskip("onnx")
    ckpt = require(REFERENCE / "satclip-resnet18-l10.ckpt")
    out = tmp_path / "m.onnx"
    assert main(["export", "--format", "onnx", "--model", str(ckpt), "-o", str(out)]) == 0
    model = onnx.load(str(out))
    meta = json.loads({p.key: p.value for p in model.metadata_props}["satclip"])
    assert meta["config"]["encoding"]["legendre_polys"] == 10 and len(meta["model_sha256"]) == 64
    assert [i.name for i in model.graph.input] == ["lonlat"]
    assert meta["satclip_version"] == satclip.__version__ and "weights_sha256" not in meta  # (a .ckpt: no file record)
    assert meta["source"] == ckpt.name  # (a local model by its name: the path as typed, /home/<user>/…, was kept)
    # a native model: the sha256 its config.json records of its weights file (under that name the export recorded
    # a hash of another thing), and a shipped model by its name, not its directory in the package
    assert main(["export", "--format", "onnx", "--model", "bluemarble-l10", "-o", str(tmp_path / "b.onnx")]) == 0
    meta = json.loads({p.key: p.value for p in onnx.load(str(tmp_path / "b.onnx")).metadata_props}["satclip"])
    from satclip.pretrained import bundled_models

    config = json.loads((bundled_models()["bluemarble-l10"] / "config.json").read_text())
    assert meta["weights_sha256"] == config["weights_sha256"] and meta["source"] == "bluemarble-l10"


def test_export_never_replaces_its_own_model(tmp_path, capsys):
    """--overwrite replaced the model it read: a .ckpt/.pt given as both --model and -o, or a native
    directory's weights, became the exported graph."""
    from satclip.io.native import write_native

    from .test_embed_api import CONFIG

    torch.manual_seed(0)
    encoder = satclip.LocationEncoder.from_config(CONFIG)
    tensors = {f"location.{k}": v for k, v in encoder.state_dict().items()}
    native = write_native(tmp_path / "model", {"location_encoder": CONFIG}, tensors)
    ckpt = tmp_path / "model.ckpt"
    assert main(["convert", str(native), str(ckpt), "--location-only"]) == 0
    for model, out in ((ckpt, ckpt), (native, native / "model.safetensors"), (native, native / "config.json")):
        before = out.read_bytes()
        argv = ["export", "--format", "torchscript", "--model", str(model), "-o", str(out), "--overwrite"]
        assert main(argv) == 2
        assert "is also an input" in capsys.readouterr().err
        assert out.read_bytes() == before
    # nor joins its directory (a model directory satclip made is replaced whole by `convert --overwrite`)
    assert main(["export", "--format", "torchscript", "--model", str(native), "-o", str(native / "m.pt")]) == 2
    assert "is inside the input" in capsys.readouterr().err and not (native / "m.pt").exists()
    assert main(["export", "--format", "torchscript", "--model", str(native), "-o", str(tmp_path / "m.pt")]) == 0


def test_a_suffix_naming_the_other_format_is_refused(tmp_path, capsys):
    """`-o model.pt --format onnx` wrote an ONNX file that torch.jit.load then failed on: refused, one line."""
    for fmt, name in (("onnx", "m.pt"), ("torchscript", "m.onnx")):
        argv = ["export", "--format", fmt, "--model", "bluemarble-l10", "-o", str(tmp_path / name)]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--format" in err[0] and not (tmp_path / name).exists(), err


@pytest.mark.parametrize(("fmt", "name", "said"), [
    ("onnx", "foo.txt", "an ONNX export is named .onnx, not .txt: write {tmp}/foo.onnx"),
    ("onnx", "noext", "an ONNX export is named .onnx, and this name has none: write {tmp}/noext.onnx"),
    ("torchscript", "foo.txt", "a TorchScript export is named .pt, .pth or .ts, not .txt: write {tmp}/foo.pt"),
    ("onnx", "foo.onnx.bak", "an ONNX export is named .onnx, not .bak: write {tmp}/foo.onnx"),
])  # fmt: skip
def test_a_suffix_that_is_not_the_formats_own_is_refused(tmp_path, capsys, fmt, name, said):
    """`--format onnx -o foo.txt` (or `-o noext`) wrote an ONNX file under that name: only the suffixes of the other
    format and of models were refused."""
    argv = ["export", "--format", fmt, "--model", "bluemarble-l10", "-o", str(tmp_path / name)]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"satclip: error: {tmp_path / name}: {said.format(tmp=tmp_path)}"
    assert list(tmp_path.iterdir()) == []


ENCODINGS = [
    {"name": "direct"}, {"name": "wrap"}, {"name": "cartesian3d"}, {"name": "theory"}, {"name": "spherecplus"},
    {"name": "grid", "min_radius": 1, "max_radius": 360, "frequency_num": 16}, {"name": "spherem"},
]


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e["name"])
def test_every_encoding_exports_for_any_batch_size(tmp_path, encoding):
    """grid/theory/sphere* exports ran for batches of 3 points only (the tracing batch's size was baked into
    a reshape); direct/wrap/cartesian3d did not export to ONNX at all (torch.deg2rad: 'unexpected error'); and
    every one of them printed a multi-line TracerWarning from its (N, 2) input check while traced."""
    import warnings

    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from satclip.io.onnx import export

    config = {"encoding": encoding, "network": {"name": "siren", "num_classes": 8, "dim_hidden": 16, "num_layers": 2}}
    torch.manual_seed(0)
    encoder = satclip.LocationEncoder.from_config(config).eval()
    points = np.array([[13.4, 52.5], [-179.9, -89.9], [180.0, 0.0], [0.0, 90.0], [-58.4, -34.6], [151.2, -33.9],
                       [1.0, 2.0]])  # fmt: skip
    expected = encoder.encode(points).numpy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scripted = torch.jit.load(str(export(encoder, tmp_path / "m.pt", "torchscript")))
        session = ort.InferenceSession(str(export(encoder, tmp_path / "m.onnx", "onnx")))
    assert [str(w.message) for w in caught if issubclass(w.category, torch.jit.TracerWarning)] == []
    with pytest.raises(ValueError, match=r"must have shape \(N, 2\)"):  # (the check holds outside the trace)
        encoder.posenc(torch.zeros(3, 3, dtype=torch.float64))
    for n in (0, 1, 7):  # (0: the sphere* ONNX graphs failed on an empty batch)
        with torch.no_grad():
            traced = scripted(torch.from_numpy(points[:n])).numpy()
        # float32 networks: the graph's order of operations against encode's (a sin of 30 × its input)
        np.testing.assert_allclose(traced, expected[:n], rtol=0, atol=1e-4)
        np.testing.assert_allclose(session.run(None, {"lonlat": points[:n]})[0], expected[:n], rtol=0, atol=1e-4)


def test_an_export_that_keeps_the_tracing_batch_size_is_refused(tmp_path, monkeypatch):
    """Exports are run on batches of other sizes before they are published."""
    from satclip.encoding import multiscale
    from satclip.errors import ExportError
    from satclip.io.onnx import export

    def baked(self, lonlat):  # the old forward: the batch size as a Python int, constant in a traced graph
        coords = lonlat.to(torch.float64)
        out = self._features(coords, self.frequencies.to(coords.device))
        return out.reshape(len(lonlat), self.embedding_dim).to(lonlat.dtype)

    monkeypatch.setattr(multiscale._MultiScale, "forward", baked)
    config = {"encoding": ENCODINGS[5], "network": {"name": "siren", "num_classes": 8, "dim_hidden": 16,
                                                    "num_layers": 2}}  # fmt: skip
    encoder = satclip.LocationEncoder.from_config(config).eval()
    for fmt, name in (("torchscript", "m.pt"), ("onnx", "m.onnx")):
        with pytest.raises(ExportError, match="does not reproduce it for a batch of 0 point"):
            export(encoder, tmp_path / name, fmt)
    assert list(tmp_path.iterdir()) == []


def test_export_takes_a_whole_model_and_names_a_source_it_was_given(tmp_path):
    """io.onnx.export on a path, or on the SatCLIP model satclip.load_model returns, failed with
    "'str' / 'SatCLIP' object has no attribute 'posenc'"."""
    from satclip.errors import BadInputError
    from satclip.io.onnx import export

    with pytest.raises(BadInputError, match="export takes a loaded location encoder, got the source 'bluemarble-l10'"):
        export("bluemarble-l10", tmp_path / "a.pt", "torchscript")
    model = satclip.load_model("bluemarble-l10")
    path = export(model, tmp_path / "b.pt", "torchscript")
    points = torch.tensor([[13.4, 52.5], [0.0, 0.0]], dtype=torch.float64)
    expected = satclip.load("bluemarble-l10", precision="float32").encode(points)
    extra = {"satclip.json": ""}
    torch.testing.assert_close(torch.jit.load(str(path), _extra_files=extra)(points).float(), expected, atol=1e-5,
                               rtol=0)  # fmt: skip
    # the metadata names the model it came from (its "source" was empty), and the model itself is left as it was
    assert json.loads(extra["satclip.json"])["source"] == "bluemarble-l10" and model.provenance["source"] != ""
    assert not hasattr(model.location, "provenance")


@pytest.mark.parametrize("calculation", ["analytic", "analytic-original"])
def test_the_metadata_names_the_basis_the_file_computes(tmp_path, lonlat, calculation):
    """An 'analytic-original' model (a basis satclip.load offers) failed to export with "unexpected error
    (KeyError)"; an 'analytic' one was exported as the stable recurrence while its metadata said 'analytic', a
    function 4.6e-2 away from the file's at L = 40. Both export the stable recurrence and say so."""
    ckpt = require(REFERENCE / "satclip-resnet18-l40.ckpt")
    encoder = satclip.load(ckpt, harmonics_calculation=calculation, precision="float64")
    path = satclip.io.onnx.export(encoder, tmp_path / "m.pt", "torchscript")
    extra = {"satclip.json": ""}
    emb = torch.jit.load(str(path), _extra_files=extra)(torch.from_numpy(lonlat)).detach().numpy()
    meta = json.loads(extra["satclip.json"])
    assert meta["config"]["encoding"]["harmonics_calculation"] == "analytic-stable"
    assert meta["source_harmonics_calculation"] == calculation
    described = satclip.load(ckpt, harmonics_calculation=meta["config"]["encoding"]["harmonics_calculation"],
                             precision="float64")  # fmt: skip
    np.testing.assert_allclose(emb, described.encode(lonlat).numpy(), atol=1e-9, rtol=0)
    assert encoder.posenc.harmonics_calculation == calculation  # (the encoder exported is left as it was)


def test_export_checks_the_model_and_the_suffix_before_the_existing_file(tmp_path, capsys, monkeypatch):
    """`--model ""` was "the output y.onnx is inside the input ." (an empty path is the current directory); an
    existing m.pt exported as ONNX said "pass --overwrite", and then, with it, that the suffix is wrong."""
    monkeypatch.chdir(tmp_path)
    assert main(["export", "--format", "onnx", "--model", "", "-o", "y.onnx"]) == 2
    assert "the model is '', empty: give a name" in capsys.readouterr().err
    (tmp_path / "m.pt").write_bytes(b"mine")
    assert main(["export", "--format", "onnx", "--model", "bluemarble-l10", "-o", "m.pt"]) == 2
    assert "m.pt names a TorchScript file but the format is onnx" in capsys.readouterr().err
    assert (tmp_path / "m.pt").read_bytes() == b"mine"


def test_a_full_disk_during_an_onnx_export_names_the_file(tmp_path, capsys, monkeypatch):
    """torch's and onnx's writers raise a full disk without a file name: the line said "the output"."""
    import errno

    pytest.importorskip("onnxruntime")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch.onnx, "export", full)
    out = tmp_path / "e.onnx"
    assert main(["export", "--format", "onnx", "--model", "bluemarble-l10", "-o", str(out)]) == 1
    assert f"disk full while writing {out}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_model_in_bf16_is_exported_with_a_word_on_its_precision(tmp_path, caplog):
    """A model loaded with precision='bf16' was written as a float32 graph without a word (the file differs from
    the model's own embeddings by bf16's rounding)."""
    from satclip.io.onnx import export

    with caplog.at_level("WARNING"):
        export(satclip.load("bluemarble-l10", precision="float32"), tmp_path / "f.pt", "torchscript")
        assert "bf16" not in caplog.text
        export(satclip.load("bluemarble-l10", precision="bf16"), tmp_path / "b.pt", "torchscript")
    assert "the model computes in bf16 (precision='bf16'); the exported graph computes in float32" in caplog.text


def test_a_converted_model_names_its_source_by_name_not_by_local_path(tmp_path):
    ckpt = require(REFERENCE / "satclip-resnet18-l10.ckpt")
    assert main(["convert", str(ckpt.absolute()), str(tmp_path / "native"), "--target", "native"]) == 0
    config = json.loads((tmp_path / "native" / "config.json").read_text())
    assert config["metadata"]["converted_from"] == "satclip-resnet18-l10.ckpt"


def test_convert_takes_its_output_as_the_other_commands_do(tmp_path, capsys):
    """`satclip convert SOURCE -o OUT` (as export, embed and map take it) was "unrecognized arguments: -o"."""
    ckpt = require(REFERENCE / "satclip-resnet18-l10.ckpt")
    assert main(["convert", str(ckpt), "-o", str(tmp_path / "a.pt")]) == 0
    assert (tmp_path / "a.pt").is_file()
    assert main(["convert", str(ckpt)]) == 2
    assert "give one OUTPUT, after SOURCE or as -o OUTPUT" in capsys.readouterr().err
    assert main(["convert", str(ckpt), str(tmp_path / "b.pt"), "-o", str(tmp_path / "c.pt")]) == 2
    assert f"{tmp_path / 'b.pt'} and -o {tmp_path / 'c.pt'}" in capsys.readouterr().err
    assert not (tmp_path / "b.pt").exists() and not (tmp_path / "c.pt").exists()


@pytest.mark.parametrize(("legendre", "said"), [
    (40, "the export computes the 'analytic' harmonics as the stable recurrence 'analytic-stable' "
         "(same convention; the file's metadata says so) and does NOT reproduce the model; at L = 40 the original's "
         "float64 'analytic' polynomials differ from the exact basis near the poles: within 1e-6 only for |lat| ≤ "
         "30° (docs/export.md: Accuracy)"),
    (10, "the TorchScript file differs from the model's float32 embeddings (encode) by at most "),
])  # fmt: skip
def test_an_export_says_whether_it_reproduces_the_model(tmp_path, capsys, legendre, said):
    """An L = 40 'analytic' model's export differs from it by up to 4.7e-2 near the poles, but export printed only
    an info line, where `satclip convert --target torchgeo` of the same model says it "does NOT reproduce" it. The
    measured line then said the file "reproduces the model's … embeddings … to 4.6e-02": it says "differs … by"."""
    encoding = {"name": "sphericalharmonics", "legendre_polys": legendre, "harmonics_calculation": "analytic"}
    config = {"encoding": encoding, "network": {"name": "siren", "num_classes": 4, "dim_hidden": 8, "num_layers": 1}}
    satclip.LocationEncoder.from_config(config).save(tmp_path / "model")
    assert main(["export", "--format", "torchscript", "--model", str(tmp_path / "model"), "-o",
                 str(tmp_path / "m.pt")]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert said in err, err
    assert ("NOT" in err) == (legendre == 40)
    assert "reproduces" not in err.replace("does NOT reproduce", ""), err


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_an_export_says_how_closely_it_reproduces_the_model_as_measured(tmp_path, capsys, fmt, dtype):
    """A float32 ONNX export said it "reproduces it to 1e-06 relative (float64)" (the float64 tolerance, a constant;
    it differs from the float32 model by ~5e-6) and an export of a model not in the 'analytic' basis said nothing.
    The line now gives the difference measured in the precision exported, for every model."""
    if fmt == "onnx":
        pytest.importorskip("onnx")
        pytest.importorskip("onnxruntime")
    encoding = {"name": "sphericalharmonics", "legendre_polys": 10, "harmonics_calculation": "analytic-stable"}
    config = {"encoding": encoding, "network": {"name": "siren", "num_classes": 4, "dim_hidden": 8, "num_layers": 1}}
    satclip.LocationEncoder.from_config(config).save(tmp_path / "model")
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt")
    assert main(["export", "--format", fmt, "--model", str(tmp_path / "model"), "-o", str(out), "--dtype",
                 dtype]) == 0  # fmt: skip
    err = capsys.readouterr().err
    said = re.search(rf"file differs from the model's {dtype} embeddings \(encode\) by at most (\S+) absolute", err)
    assert said, err
    from satclip.io.onnx import AGREEMENT_POINTS

    encoder = satclip.load(tmp_path / "model", dtype=getattr(torch, dtype))
    expected = encoder.encode(AGREEMENT_POINTS, precision=dtype).double().numpy()
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = session.run(None, {"lonlat": AGREEMENT_POINTS.numpy()})[0]
    else:
        got = torch.jit.load(str(out))(AGREEMENT_POINTS).detach().numpy()
    difference = np.abs(got.astype(np.float64) - expected).max()
    assert said.group(1) == f"{difference:.1e}"
    assert float(said.group(1)) < (1e-5 if dtype == "float32" else 1e-12)


def test_a_torchscript_export_refuses_an_input_of_another_shape(tmp_path):
    """The traced TorchScript file embedded an (N, 3) input without a word (ONNX refuses it by its declared
    input): the trace records no shape check. The file now raises, naming the shape expected and the one given."""
    satclip.LocationEncoder.from_config(CONFIG).save(tmp_path / "model")
    out = tmp_path / "m.pt"
    assert main(["export", "--format", "torchscript", "--model", str(tmp_path / "model"), "-o", str(out)]) == 0
    module = torch.jit.load(str(out))
    assert module(torch.zeros(3, 2, dtype=torch.float64)).shape == (3, CONFIG["network"]["num_classes"])
    assert module(torch.zeros(0, 2, dtype=torch.float64)).shape[0] == 0
    for shape in ((2, 3), (2,), (1, 2, 2)):
        with pytest.raises(torch.jit.Error, match=r"ValueError: lonlat must be \(N, 2\).*got shape") as raised:
            module(torch.zeros(shape, dtype=torch.float64))
        # as docs/export.md says: not a RuntimeError, and the message ends with the ValueError's line
        assert not isinstance(raised.value, RuntimeError)
        assert str(raised.value).rstrip().splitlines()[-1].startswith("builtins.ValueError: lonlat must be (N, 2)")


def test_an_export_into_a_folder_that_takes_no_files_names_the_folder(tmp_path, capsys):
    """`satclip export … -o /proc/y.pt` said "No such file or directory: /proc/y.pt", as if the output were
    missing: it names the folder now, and the fix."""
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("/proc is Linux's")
    satclip.LocationEncoder.from_config(CONFIG).save(tmp_path / "model")
    assert main(["export", "--format", "torchscript", "--model", str(tmp_path / "model"), "-o",
                 "/proc/satclip-test-export.pt"]) != 0  # fmt: skip
    assert capsys.readouterr().err.strip() == (
        "satclip: error: No such file or directory (satclip cannot create satclip-test-export.pt there: choose "
        "another folder): /proc"
    )


def test_an_offline_export_of_a_released_model_says_how_to_give_its_file(tmp_path, capsys):
    """Offline, `satclip export --model satclip-resnet50-l40` said to pass the fetched file as `satclip embed …
    --model` or `satclip evaluate --encoders`, naming neither export nor Python's load as the general case."""
    assert main(["export", "--format", "onnx", "--model", "satclip-resnet50-l40", "-o", str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err  # (conftest: HF_HUB_OFFLINE=1, an empty hub cache)
    assert "satclip embed" not in err and "(--model /path/to/satclip-resnet50-l40.ckpt;" in err, err
    assert not (tmp_path / "m.onnx").exists()
