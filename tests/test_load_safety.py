"""Attacks on loading, each reproduced: local paths sent to the hub, config bombs, non-finite weights,
untrusted pickles. Every test fails on the code before the fix."""

from __future__ import annotations

import json
import pickle
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import satclip
from satclip import networks as satclip_nn
from satclip.errors import BadInputError, SatclipError
from satclip.io import hub, native, original
from satclip.io.convert import convert
from satclip.io.safe_pickle import UntrustedCheckpointError
from satclip.models.location_encoder import LocationEncoder, check_config

from .conftest import REFERENCE, require

CONFIG = {
    "encoding": {"name": "sphericalharmonics", "legendre_polys": 4, "harmonics_calculation": "analytic-stable"},
    "network": {"name": "siren", "num_classes": 8, "dim_hidden": 16, "num_layers": 2},
}


def _encoder(config=CONFIG) -> LocationEncoder:
    torch.manual_seed(0)
    return LocationEncoder.from_config(config)


def _native(path: Path, config=CONFIG, edit: dict | None = None, state=None) -> Path:
    """A tiny native location model; ``edit`` = {"network": {...}} changes config.json afterwards."""
    state = _encoder(config).state_dict() if state is None else state
    native.write_native(path, {"location_encoder": config}, {f"location.{k}": v for k, v in state.items()})
    if edit:
        file = path / native.CONFIG_FILE
        data = json.loads(file.read_text())
        for part, values in edit.items():
            data["location_encoder"][part].update(values)
        file.write_text(json.dumps(data))
    return path


def _ckpt(path: Path, config=CONFIG, hparams_edit: dict | None = None, state=None, **kwargs) -> Path:
    state = _encoder(config).state_dict() if state is None else state
    hparams = original.hparams_from_location_config(config)
    hparams.update(hparams_edit or {})
    return original.write_original(path, hparams, state, **kwargs)


# --------------------------------------------------------------------------- local paths never reach the hub
@pytest.fixture
def no_network(monkeypatch):
    """Sockets refuse, and satclip's hub functions fail the test if they are called at all."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the guarantee may not rest on offline mode
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    for name in ("socket", "create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, refuse)

    def hub_called(*args, **kwargs):
        attempts.append(("hub", args))
        raise AssertionError(f"the hub was asked for {args}")

    monkeypatch.setattr(hub, "fetch", hub_called)
    monkeypatch.setattr(hub, "list_files", hub_called)
    return attempts


@pytest.mark.parametrize(
    "source",
    ["export/best", "runs/2026/export/last", "./best", "../models/x", "~/no-such-satclip-model",
     "best.ckpt", "model.safetensors", "config.json", "someone/satclip-model"],
)  # fmt: skip
def test_missing_local_path_never_touches_the_network(no_network, source):
    with pytest.raises(FileNotFoundError) as info:
        satclip.load(source)
    assert source.lstrip("./~") in str(info.value) or str(Path(source).expanduser()) in str(info.value)
    with pytest.raises(FileNotFoundError):
        satclip.load_model(source)
    assert no_network == []


@pytest.mark.parametrize("source", ["", " "])
def test_an_empty_model_is_refused_not_the_current_directory(no_network, tmp_path, monkeypatch, capsys, source):
    """``--model "$MODEL"`` with MODEL unset loaded the model directory the command ran in."""
    monkeypatch.chdir(_native(tmp_path / "here"))
    with pytest.raises(BadInputError, match="empty: give a name"):
        satclip.load(source)
    points = tmp_path / "p.csv"
    points.write_text("lon,lat\n1,2\n")
    from satclip.cli import main

    assert main(["embed", str(points), "-o", str(tmp_path / "o.parquet"), "--model", source]) == 2
    assert "empty: give a name" in capsys.readouterr().err and not (tmp_path / "o.parquet").exists()
    assert no_network == []


def test_missing_path_object_is_never_a_name(no_network, tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "satclip-resnet18-l10")):
        satclip.load(tmp_path / "satclip-resnet18-l10")
    with pytest.raises(FileNotFoundError, match="satclip-resnet18-l10"):
        satclip.load(Path("satclip-resnet18-l10"))  # a Path is a path, even if it spells a model name
    assert no_network == []


def test_existing_local_model_file_and_directory_still_load(no_network, tmp_path):
    model = _native(tmp_path / "m")
    expected = satclip.load(model).encode([[1.0, 2.0]])
    assert torch.equal(satclip.load(str(model / native.WEIGHTS_FILE)).encode([[1.0, 2.0]]), expected)
    assert torch.equal(satclip.load(_ckpt(tmp_path / "m.ckpt")).encode([[1.0, 2.0]]), expected)
    assert no_network == []


# ------------------------------------------------------------------------- config bombs fail before allocating
_MEASURE = """
import json, resource, sys
import satclip
from satclip.errors import BadInputError

load = getattr(satclip, sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    load(sys.argv[1])
    message = None
except BadInputError as err:
    message = str(err)
grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"grown_mib": grown_kib / 1024, "message": message}))
"""

BOMBS = {
    "num_layers": ({"network": {"num_layers": 1_000_000}}, {"num_hidden_layers": 1_000_000}, "1000000", "2"),
    "dim_hidden": ({"network": {"dim_hidden": 1_000_000}}, {"capacity": 1_000_000}, "1000000", "16"),
    "legendre_polys": ({"encoding": {"legendre_polys": 100_000}}, {"legendre_polys": 100_000}, "100000", "16"),
}


def _measure(source: Path, loader: str = "load") -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(source), loader], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("fmt", ["native", "original"])
@pytest.mark.parametrize("key", sorted(BOMBS))
def test_config_bomb_fails_fast_and_small(tmp_path, key, fmt):
    native_edit, hparams_edit, config_value, weights_value = BOMBS[key]
    if fmt == "native":
        source = _native(tmp_path / "bomb", edit=native_edit)
    else:
        source = _ckpt(tmp_path / "bomb.ckpt", hparams_edit=hparams_edit)
    result = _measure(source)
    assert result["message"] is not None, "the bomb was loaded"
    assert key in result["message"] and config_value in result["message"] and weights_value in result["message"]
    assert result["grown_mib"] < 200, result  # (it failed before allocating: no wall-clock bound, a busy machine)


def test_load_model_checks_the_location_config_first(tmp_path):
    # a full checkpoint (a dummy image encoder tensor) whose location network claims 10^6 layers
    path = _ckpt(tmp_path / "full.ckpt", hparams_edit={"num_hidden_layers": 10**6},
                 visual_state={"conv1.weight": torch.zeros(1)})  # fmt: skip
    result = _measure(path, "load_model")
    assert result["message"] and "num_layers" in result["message"] and "1000000" in result["message"]
    assert result["grown_mib"] < 200, result


def test_config_mismatch_names_key_config_value_and_weights(tmp_path):
    with pytest.raises(BadInputError, match=r"network\.num_layers is 3 in the config, but the weights have 2"):
        satclip.load(_native(tmp_path / "a", edit={"network": {"num_layers": 3}}))
    with pytest.raises(BadInputError, match=r"num_classes is 9 .* weights have 8 \(nnet\.last_layer\.weight"):
        satclip.load(_native(tmp_path / "b", edit={"network": {"num_classes": 9}}))
    with pytest.raises(BadInputError, match=r"polys.* gives 25 features, but the weights' first layer takes 16"):
        satclip.load(_native(tmp_path / "c", edit={"encoding": {"legendre_polys": 5}}))
    with pytest.raises(BadInputError, match=r"unknown network 'transformer'; known: fcnet, linear, mlp, siren"):
        satclip.load(_native(tmp_path / "d", edit={"network": {"name": "transformer"}}))
    with pytest.raises(BadInputError, match=r"num_layers is '2' in the config"):
        satclip.load(_native(tmp_path / "e", edit={"network": {"num_layers": "2"}}))


@pytest.mark.parametrize(
    "network",
    [{"name": "siren", "num_classes": 5, "dim_hidden": 7, "num_layers": 3},
     {"name": "siren", "num_classes": 5, "dim_hidden": 9, "num_layers": 0},  # (its output layer reads the input)
     {"name": "mlp", "num_classes": 5, "dim_hidden": 7, "num_layers": 0},
     {"name": "mlp", "num_classes": 5, "dim_hidden": 7, "num_layers": 4},
     {"name": "fcnet", "num_classes": 5, "dim_hidden": 7},
     {"name": "linear", "num_classes": 5}],
)  # fmt: skip
def test_sizes_read_from_shapes_are_the_builder_parameters(network):
    params = {k: v for k, v in network.items() if k != "name"}
    module = satclip_nn.create(network["name"], input_dim=9, **params)
    shapes = {f"nnet.{k}": tuple(v.shape) for k, v in module.state_dict().items()}
    sizes = {k: value for k, (value, _) in satclip_nn.sizes_from_shapes(network["name"], shapes, "nnet.").items()}
    expected = {"input_dim": 9, **params}
    assert sizes == expected
    encoding = {"name": "sphericalharmonics", "legendre_polys": 3}
    check_config({"encoding": encoding, "network": network}, shapes)  # the true config passes


def test_every_network_has_a_size_reader():
    assert satclip_nn.SIZES.names() == satclip_nn.NETWORKS.names()


def test_unreadable_config_or_weights_are_refused(tmp_path):
    model = _native(tmp_path / "m")
    (model / native.CONFIG_FILE).write_text("{not json")
    with pytest.raises(BadInputError, match="not valid JSON"):
        satclip.load(model)
    (model / native.CONFIG_FILE).write_bytes(b" " * (native.MAX_CONFIG_BYTES + 1))
    with pytest.raises(BadInputError, match="a few kB"):
        satclip.load(model)
    model = _native(tmp_path / "w")
    (model / native.WEIGHTS_FILE).write_bytes(b"\xff" * 64)
    with pytest.raises(BadInputError, match="not a readable safetensors file"):
        satclip.load(model)


# ------------------------------------------------------------------------------------ non-finite weights
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, value):
    state = _encoder().state_dict()
    state["nnet.layers.1.weight"][3, 4] = value
    sources = [_native(tmp_path / "n", state=state), _ckpt(tmp_path / "n.ckpt", state=state)]
    for source in sources:
        with pytest.raises(BadInputError, match=r"tensor (model\.)?(location\.)?nnet\.layers\.1\.weight .*1 NaN"):
            satclip.load(source)
        with pytest.raises(BadInputError, match=r"nnet\.layers\.1\.weight"):
            convert(source, tmp_path / f"out-{source.name}")
    assert not (tmp_path / "out-n").exists() and not (tmp_path / "out-n.ckpt").exists()


def test_weights_that_are_not_floating_point_tensors_are_refused(tmp_path):
    """Integer weights were cast silently (embeddings off by up to 9.7); a list in place of a tensor ended
    in an "unexpected error" traceback."""
    state = _encoder().state_dict()
    state["nnet.layers.1.weight"] = state["nnet.layers.1.weight"].mul(100).long()
    torchgeo = tmp_path / "torchgeo.pt"
    torch.save({k: v for k, v in state.items() if k.startswith("nnet.")}, torchgeo)
    for source in (_native(tmp_path / "n", state=state), _ckpt(tmp_path / "n.ckpt", state=state), torchgeo):
        with pytest.raises(BadInputError, match=r"weight (model\.)?(location\.)?nnet\.layers\.1\.weight .*int64"):
            satclip.load(source)
    ckpt = torch.load(_ckpt(tmp_path / "m.ckpt"), weights_only=True)
    name = next(k for k in ckpt["state_dict"] if k.endswith("layers.1.bias"))
    ckpt["state_dict"][name] = [1.0, 2.0]
    torch.save(ckpt, tmp_path / "list.ckpt")
    with pytest.raises(BadInputError, match=rf"weight {re.escape(name)} is a list, not a tensor"):
        satclip.load(tmp_path / "list.ckpt")


@pytest.mark.parametrize(
    ("hparams", "expected"),
    [({"le_type": "foo"}, "unknown positional encoding 'foo'"),
     ({"embed_dim": "abc"}, "hyper_parameters['embed_dim'] is 'abc', not a whole number"),
     ({"capacity": 2.5}, "hyper_parameters['capacity'] is 2.5, not a whole number")],
)  # fmt: skip
def test_malformed_hyper_parameters_are_named_with_the_file(tmp_path, hparams, expected):
    """They ended in "unexpected error (ValueError): invalid literal for int()…" or a message without the file."""
    path = _ckpt(tmp_path / "m.ckpt", hparams_edit=hparams)
    with pytest.raises(BadInputError) as info:
        satclip.load(path)
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)


@pytest.mark.parametrize("padding", [True, {"input_columns": "abc"}, {}])
def test_a_malformed_rshf_padding_is_named(tmp_path, padding):
    model = _native(tmp_path / "n")
    config = json.loads((model / native.CONFIG_FILE).read_text())
    config["rshf_padding"] = padding
    (model / native.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(BadInputError, match="'rshf_padding' must be an object with a positive integer 'input_columns'"):
        satclip.load(model)


def test_an_unknown_config_key_is_refused(tmp_path):
    """A misspelt top-level key ("metdata") was read as no metadata without a word, where misspelt encoding and
    network keys are refused; every key a satclip writes still loads (an rshf export's padding too)."""
    model = _native(tmp_path / "n")
    config = json.loads((model / native.CONFIG_FILE).read_text())
    config["metdata"] = config.pop("metadata", {})
    (model / native.CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(BadInputError) as info:
        satclip.load(model)
    assert str(info.value) == (
        f"{model / native.CONFIG_FILE}: unknown key(s) ['metdata'] (did you mean 'metadata'?); a satclip config holds "
        "format, format_version, location_encoder, image_encoder, metadata, weights_sha256, rshf_padding"
    )
    satclip.load(_native(tmp_path / "m"))
    satclip.load("bluemarble-l10")
    rshf = convert(require(REFERENCE / "satclip-resnet18-l10.ckpt"), tmp_path / "rshf", target="rshf",
                   location_only=True)  # fmt: skip
    assert "rshf_padding" in json.loads((tmp_path / "rshf" / native.CONFIG_FILE).read_text()) and rshf
    satclip.load(tmp_path / "rshf")


def test_non_finite_image_weights_are_refused_by_load_model(tmp_path):
    ckpt = torch.load(require(REFERENCE / "satclip-resnet18-l10.ckpt"), weights_only=True)
    ckpt["state_dict"]["model.visual.fc.weight"][0, 0] = float("nan")
    path = tmp_path / "nan.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(BadInputError, match=r"model\.visual\.fc\.weight"):
        satclip.load_model(path)


# ------------------------------------------------------------------------------------------ untrusted pickle
def test_untrusted_checkpoint_is_a_satclip_error_saying_how_to_proceed(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    ckpt = torch.load(require(REFERENCE / "satclip-resnet18-l10.ckpt"), weights_only=True)
    ckpt["callbacks"] = {"x": Payload()}
    path = tmp_path / "evil.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(UntrustedCheckpointError) as info:
        satclip.load(path)
    assert isinstance(info.value, SatclipError) and isinstance(info.value, pickle.UnpicklingError)
    assert info.value.exit_code == 1
    message = str(info.value)
    assert "trust_checkpoint=True" in message and "--trust-checkpoint" in message and "print" in message


@pytest.mark.parametrize("polys", [0, -3, "ten", 10.5, 5, 20, 41])
def test_a_wrong_legendre_polys_names_the_one_the_weights_imply(tmp_path, polys):
    """The weights' first layer takes 16 features: L = 4 (it said only "an integer from 1 to 16", or "gives 400
    features")."""
    with pytest.raises(BadInputError, match=r"first layer takes 16.*; the weights imply legendre_polys: 4$"):
        satclip.load(_native(tmp_path / "m", edit={"encoding": {"legendre_polys": polys}}))
