"""Training config: YAML ⇄ frozen dataclasses, dotted overrides, paper defaults, clear errors."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from satclip.cli import main
from satclip.errors import BadInputError, UnknownNameError
from satclip.train.config import TrainConfig, dump_config, from_dict, load_config

from .conftest import one_error_line

REPO_CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[1] / "configs"


def test_paper_defaults():
    config = TrainConfig()
    assert (config.optim.lr, config.optim.weight_decay) == (1e-4, 0.01)
    assert config.trainer.max_epochs == 500 and config.trainer.seed == 0
    assert config.data.val_fraction == 0.1 and config.data.batch_size == 8192
    assert config.model.logit_scale_init == pytest.approx(math.log(1 / 0.07))
    encoding = config.model.location_encoder["encoding"]
    assert (encoding["name"], encoding["legendre_polys"], encoding["harmonics_calculation"]) == (
        "sphericalharmonics", 10, "analytic-stable",
    )  # fmt: skip
    assert config.model.location_encoder["network"]["name"] == "siren"
    assert config.model.location_dtype == "float32" and config.trainer.precision == "32-true"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.optim.lr = 1.0


def test_yaml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("optim: {lr: 1.0e-3}\nmodel: {image_encoder: {name: moco_resnet50}}\n")
    config = load_config(path, {
        "optim.lr": "3e-4",  # YAML 1.1 reads this as a string; overrides read it as a number
        "trainer.max_epochs": "7",
        "model.location_encoder.encoding.legendre_polys": "40",
        "data.drop_last": "true",
        "trainer.precision": "bf16-mixed",
    })  # fmt: skip
    assert config.optim.lr == 3e-4 and config.trainer.max_epochs == 7 and config.data.drop_last is True
    assert config.model.image_encoder == {"name": "moco_resnet50"}
    # a nested override keeps the other defaults of that dict
    assert config.model.location_encoder["encoding"]["legendre_polys"] == 40
    assert config.model.location_encoder["network"]["dim_hidden"] == 512
    assert load_config(dump_config(config, tmp_path / "back.yaml")) == config
    assert config.replace(**{"optim.lr": 0.5}).optim.lr == 0.5


def test_a_location_encoder_given_in_part_in_yaml_is_filled_in_as_overrides_are(tmp_path):
    """``network: {dim_hidden: 64}`` in a YAML file failed the run ("network needs a 'name'"), where the same
    value as ``--model.location_encoder.network.dim_hidden 64`` kept the other defaults, and --print-config and
    ``cache build`` took the YAML. A part naming another network is taken as given."""
    from satclip.train.build import location_config

    path = tmp_path / "c.yaml"
    path.write_text("model: {location_encoder: {network: {dim_hidden: 64}}}\n")
    from_yaml = load_config(path)
    from_override = load_config(None, {"model.location_encoder.network.dim_hidden": "64"})
    assert from_yaml.model.location_encoder == from_override.model.location_encoder
    assert location_config(from_yaml.model)["network"]["dim_hidden"] == 64
    other = from_dict({"model": {"location_encoder": {"network": {"name": "mlp", "dim_hidden": 8}}}})
    assert other.model.location_encoder["network"] == {"name": "mlp", "dim_hidden": 8}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"optim": {"learning_rate": 1e-4}}, "learning_rate"),
        ({"optimizer": {}}, "optimizer"),
        ({"optim": {"lr": "fast"}}, "optim.lr"),
        ({"trainer": {"max_epochs": 2.5}}, "trainer.max_epochs"),
        ({"data": {"source": "tfrecords"}}, "tfrecords"),
        ({"optim": {"betas": [0.9]}}, "optim.betas"),
        ({"trainer": {"checkpoint_every_n_steps": -1}}, "trainer.checkpoint_every_n_steps"),
        ({"trainer": {"max_epochs": -1}}, "trainer.max_epochs=-1 must be a number of epochs"),  # (-1: endless)
        ({"trainer": {"max_epochs": 0}}, "trainer.max_epochs=0"),
    ],
)
def test_bad_configs_name_the_key(raw, message):
    with pytest.raises((KeyError, TypeError, ValueError), match=message):
        from_dict(raw)


def test_bad_override_lists_valid_keys():
    """A typo was a bare KeyError (its str() quoted, no satclip error); it is a BadInputError that is a KeyError
    too, its str() the message."""
    from satclip.errors import BadInputError

    with pytest.raises(KeyError, match="lr, weight_decay") as caught:
        load_config(None, {"optim.lr_max": "1"})
    assert isinstance(caught.value, BadInputError) and str(caught.value).startswith("unknown key 'lr_max' in override")
    with pytest.raises(BadInputError, match=r"SECTION\.KEY .*, e\.g\. --optim\.lr 3e-4 "
                                            r"\(\{'optim\.lr': 3e-4\} in Python\)$"):  # fmt: skip
        load_config(None, {"lr": "1"})


def test_overrides_that_are_no_mapping_are_named():
    """load_config(path, ["trainer.max_epochs=5"]) failed with "'list' object has no attribute 'items'"."""
    from satclip.errors import BadInputError

    with pytest.raises(BadInputError, match=r"^overrides is a mapping of dotted keys to values, e\.g\. "
                                            r"\{'trainer\.max_epochs': 5\}, not a list "
                                            r"\(\['trainer\.max_epochs=5'\]\)$"):  # fmt: skip
        load_config(None, ["trainer.max_epochs=5"])


@pytest.mark.parametrize("name", sorted(p.name for p in REPO_CONFIGS.glob("*.yaml")))
def test_example_configs_load(name):
    config = load_config(REPO_CONFIGS / name)
    assert config.model.image_encoder["name"]


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("trainer.devices", 0, "or -1 for all"),
        ("trainer.accumulate_grad_batches", 0, "1 or more"),
        ("trainer.check_val_every_n_epoch", 0, "1 or more"),
        ("trainer.limit_train_batches", -1, "a fraction of the batches above 0"),
        ("trainer.limit_train_batches", 0, "a fraction of the batches above 0"),
        ("trainer.fast_dev_run", -1, "0 (off)"),
        ("trainer.seed", -1, "in [0, 4294967295]"),
        ("model.embed_dim", -5, "1 or more"),
        ("model.embed_dim", 0, "1 or more"),
        ("model.location_encoder.network.dim_hidden", -5, "an integer, 1 or more"),
        ("model.location_encoder.network.num_layers", -1, "an integer, 0 or more"),  # (an mlp of 0: one hidden)
        ("model.logit_scale_init", math.nan, "in [-88, 88]"),
        ("data.batch_size", 0, "2 or more"),
        ("data.batch_size", 1, "2 or more (pairs per device and step: the contrastive loss"),
        ("data.num_workers", -1, "0 (load in the main process) to"),
        ("data.coord_jitter", math.nan, "0 (off) to 180 degrees"),
        ("data.cache_views", 10**30, "1 to 1024"),  # (an OverflowError in the cache build: "please report it")
        ("optim.lr", -1, "a finite number above 0"),
        ("optim.lr", math.nan, "a finite number above 0"),
        ("optim.eps", 0, "a finite number above 0"),
        ("optim.eps", math.inf, "a finite number above 0"),
    ],
)
def test_out_of_range_values_name_the_key_the_value_and_what_is_allowed(key, value, allowed):
    """These were accepted, to fail later in Lightning, numpy or torch without naming the key (or to train
    nonsense: a negative learning rate); now the config refuses them."""
    with pytest.raises(ValueError, match=rf"^{re.escape(key)}=-?(\d|nan|inf)\S* must be .*{re.escape(allowed)}"):
        TrainConfig().replace(**{key: value})


def test_network_sizes_are_checked_by_what_each_network_takes():
    """An mlp of 0 layers (one hidden layer: Linear, ReLU, Linear) was refused by the config check; a siren of 0
    layers was built and failed at its first forward pass (a shape mismatch)."""
    from satclip import LocationEncoder
    from satclip.errors import BadInputError

    mlp = {"name": "mlp", "dim_hidden": 16, "num_layers": 0, "num_classes": 8}
    config = TrainConfig().replace(**{"model.location_encoder.network": mlp})
    assert LocationEncoder.from_config(config.model.location_encoder).encode([[1.0, 2.0]]).shape == (1, 8)
    with pytest.raises(BadInputError, match="network 'siren' has num_layers=0, so .* dim_hidden must be 4, not 16"):
        LocationEncoder.from_config({"encoding": {"name": "wrap"}, "network": {**mlp, "name": "siren"}})


def test_a_bad_value_on_the_command_line_is_one_line_before_the_run_directory_exists(tmp_path, capsys):
    """trainer.devices 0 failed in Lightning ("unexpected error") after the run directory was made."""
    run = tmp_path / "run"
    assert main(["train", "--trainer.output_dir", str(run), "--trainer.devices", "0", "--data.cache",
                 str(tmp_path / "cache")]) == 2  # fmt: skip
    line = one_error_line(capsys.readouterr().err)
    assert "trainer.devices=0 must be 1 or more devices per node, or -1 for all of them" in line
    assert not run.exists()


def test_paths_in_a_config_are_expanded_like_command_line_paths(tmp_path, monkeypatch):
    """trainer.output_dir '~/run' wrote part of a run into ./~/run (satclip) and part into $HOME/run (Lightning
    expands it for best.ckpt and the logs), and export/best never appeared; data.cache '~/c' made ./~/c."""
    from satclip.train import from_dict

    monkeypatch.setenv("HOME", str(tmp_path))
    config = from_dict({"trainer": {"output_dir": "~/run"}, "data": {"cache": "~/c", "root": "~/s2"}})
    assert config.trainer.output_dir == str(tmp_path / "run")
    assert (config.data.cache, config.data.root) == (str(tmp_path / "c"), str(tmp_path / "s2"))


def test_overrides_of_an_empty_config_section(tmp_path):
    """`data:` left empty in a YAML file (None) and an override of it failed with "'NoneType' object does not
    support item assignment"; an override below a number said "'int' object does not support item assignment"."""
    from satclip.train import TrainConfig, load_config

    path = tmp_path / "empty.yaml"
    path.write_text("model:\ndata:\n")
    config = load_config(path, {"data.batch_size": 8, "model.location_encoder.encoding.legendre_polys": 20})
    assert config.data.batch_size == 8 and config.model.location_encoder["encoding"]["legendre_polys"] == 20
    assert config.model.location_encoder["network"] == TrainConfig().model.location_encoder["network"]
    with pytest.raises(TypeError, match="data.batch_size is 8192, not a mapping of keys"):
        TrainConfig().replace(**{"data.batch_size.x": 1})


def test_numbers_in_exponent_notation_in_a_yaml_file_are_numbers(tmp_path, capsys):
    """`lr: 3e-4` in a config file (a string to YAML 1.1) was refused, "optim.lr='3e-4' must be a number", while
    `--optim.lr 3e-4` worked (docs/training.md's `--config <(sed 's/lr: .*/lr: 3e-4/' …)` failed so)."""
    path = tmp_path / "lr.yaml"
    path.write_text("optim:\n  lr: 3e-4\n  eps: 1E-8\n  weight_decay: 1.5e+1\n")
    config = load_config(path)
    assert (config.optim.lr, config.optim.eps, config.optim.weight_decay) == (3e-4, 1e-8, 15.0)
    assert load_config(path) == load_config(None, {"optim.lr": "3e-4", "optim.eps": "1E-8",
                                                   "optim.weight_decay": "1.5e+1"})  # fmt: skip
    path.write_text("data:\n  batch_size: 1e3\ntrainer:\n  precision: 1e3x\n")  # (an integer stays refused so)
    with pytest.raises(BadInputError, match=re.escape("data.batch_size=1000.0 must be an integer")):
        load_config(path)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # a boolean or float degree trained (true: at L = 1) and exported a model satclip.load refused
        (["--model.location_encoder.encoding.legendre_polys", "true"],
         "model: location_encoder.encoding.legendre_polys=True must be an integer, 1 or more"),
        (["--model.location_encoder.encoding.legendre_polys", "10.0"],
         "model: location_encoder.encoding.legendre_polys=10.0 must be an integer, 1 or more"),
        # --print-config accepted these; the run refused them
        (["--model.location_encoder.encoding.legendre_polys", "0"],
         "model: location_encoder.encoding.legendre_polys=0 must be an integer, 1 or more"),
        (["--model.location_encoder.encoding.name", "bogus"], "model: unknown positional encoding 'bogus'; known:"),
        (["--model.location_encoder.network.name", "bogus"], "model: unknown network 'bogus'; known:"),
        (["--model.location_encoder.encoding.harmonics_calculation", "bogus"],
         "model: location_encoder.encoding.harmonics_calculation='bogus' is not one of ['analytic',"),
        # a misspelt key was blamed on the export format (and refused by --print-config only with export off)
        (["--set", "model.location_encoder.encoding.legendre_pols=40"],
         "got unexpected parameter(s) ['legendre_pols']; it accepts ['harmonics_calculation', 'legendre_polys']"),
        (["--trainer.output_dir", ""], "trainer.output_dir='' must be a directory's path, not empty"),  # (empty name)
        (["--optim.l", "3"], "--optim.l: unknown key 'l' in override 'optim.l'; optim has: lr,"),  # (was --optim.lr)
    ],
)  # fmt: skip
def test_print_config_refuses_what_a_run_would(tmp_path, monkeypatch, capsys, argv, expected):
    monkeypatch.chdir(tmp_path)  # (the default trainer.output_dir is relative: nothing may be written there)
    for command in (["--print-config"], ["--trainer.max_epochs", "1"]):
        assert main(["train", *command, *argv]) == 2
        assert expected in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--optim.lrr", "1"],
         "satclip train: error: --optim.lrr: unknown key 'lrr' in override 'optim.lrr'; optim has: lr, weight_decay"),
        (["train", "--model.image_encoder.num_filters", "256"],
         "satclip train: error: --model.image_encoder.num_filters has no option of its own: give it as --set "
         "model.image_encoder.num_filters=VALUE"),
        (["cache", "build", "--optim.lrr=1"], "satclip cache build: error: --optim.lrr=1: unknown key 'lrr'"),
        (["train", "--bogus"], "satclip train: error: unrecognized arguments: --bogus"),
    ],
)  # fmt: skip
def test_an_unknown_section_key_option_names_the_keys(capsys, argv, expected):
    """`--optim.lrr 1` was argparse's bare "unrecognized arguments", while docs/training.md promised errors naming
    the key and the valid choices; a key with no option of its own (`--set` takes it) was refused alike."""
    from satclip.cli import main

    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(expected), lines


def test_an_encoding_that_is_no_mapping_is_bad_input(tmp_path, capsys):
    """`encoding: sphericalharmonics` (a name for the mapping) was "unexpected error (AttributeError)", exit 1."""
    config = tmp_path / "c.yaml"
    config.write_text("model: {location_encoder: {encoding: sphericalharmonics}}\n")
    assert main(["train", "--config", str(config), "--print-config"]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        "satclip: error: bad config: model: location_encoder.encoding must be an object with a 'name', got "
        "'sphericalharmonics'"
    )


def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path, capsys):
    """PyYAML keeps the last of two `lr:` lines without a word: the run trained with one of two values the file
    gave, and the user could not tell which."""
    from satclip.cli import main

    path = tmp_path / "config.yaml"
    path.write_text("optim:\n  lr: 1e-3\n  weight_decay: 0.1\n  lr: 2e-3\n")
    assert main(["train", "--config", str(path), "--print-config"]) == 2
    assert capsys.readouterr().err.strip() == (  # (the file named: "invalid YAML: …" named none)
        f"satclip: error: bad config: {path}: invalid YAML: 'lr' is given twice, at lines 2 and 4: keep one (line 4, "
        "column 3)"
    )
    # one name in two mappings is two keys
    path.write_text("model:\n  location_encoder:\n    encoding: {name: sphericalharmonics, legendre_polys: 10}\n"
                    "    network: {name: siren}\n")  # fmt: skip
    assert main(["train", "--config", str(path), "--print-config"]) == 0


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("model.image_encoder.name=nosuchnet", "model.image_encoder.name='nosuchnet' must be one of clip_resnet, "),
     ("model.image_encoder.nosuch=1", "model.image_encoder: image encoder 'moco_resnet18' got unexpected parameter(s) "
                                      "['nosuch']")],
)  # fmt: skip
def test_an_unknown_image_encoder_or_parameter_is_refused_by_print_config(capsys, setting, expected):
    """--print-config accepted them (exit 0): the run refused them only once it began."""
    assert main(["train", "--set", setting, "--print-config"]) == 2
    assert one_error_line(capsys.readouterr().err).startswith(f"satclip: error: bad config: {expected}")


def test_a_negative_number_in_exponent_notation_is_a_value_not_an_option(capsys):
    """`--optim.lr -1e-3` was "expected one argument" (argparse took -1e-3 for an option), while `-0.001` reached
    the config check."""
    assert main(["train", "--optim.lr", "-1e-3", "--print-config"]) == 2
    assert one_error_line(capsys.readouterr().err) == "satclip: error: bad config: optim.lr=-0.001 must be a finite " \
                                                      "number above 0"  # fmt: skip
    assert main(["train", "--model.logit_scale_init", "-1E+1", "--print-config"]) == 0
    assert "logit_scale_init: -10.0" in capsys.readouterr().out


def test_a_batch_of_one_pair_is_refused(tmp_path, capsys):
    """`--data.batch_size 1` trained a contrastive loss without negatives (loss 2e-8, accuracies 1.0) and chose
    best.ckpt on that meaningless val_loss."""
    assert main(["train", "--data.batch_size", "1", "--trainer.output_dir", str(tmp_path / "run")]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        "satclip: error: bad config: data.batch_size=1 must be 2 or more (pairs per device and step: the contrastive "
        "loss contrasts each pair with the others of its batch, and one pair alone has none: a loss of 0 and an "
        "accuracy of 1)")  # fmt: skip
    assert not (tmp_path / "run").exists()


def test_a_missing_config_file_is_named_in_python_too(tmp_path):
    """`load_config("nope.yaml")` raised Python's own "[Errno 2] No such file or directory: 'nope.yaml'", the CLI a
    line of its own: the API names what the file is."""
    with pytest.raises(FileNotFoundError, match=r"^training config .*nope\.yaml does not exist: give the"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(IsADirectoryError, match=r"is a directory: give the path of a YAML file"):
        load_config(tmp_path)


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("data", {"batch_size": 1}, "data.batch_size=1 must be"),
        ("data", {"batch_size": "big"}, "data.batch_size='big' must be an integer"),
        ("optim", {"lr": -1}, "optim.lr=-1.0 must be a finite number above 0"),
        ("trainer", {"max_epochs": 0}, "trainer.max_epochs=0 must be a number of epochs, 1 or more"),
        ("trainer", {"precision": "half"}, "trainer.precision='half' is not one of"),
    ],
)
def test_a_bad_config_value_in_python_is_a_bad_input(section, values, message):
    """from_dict({"data": {"batch_size": 1}}) raised a plain ValueError, and {"batch_size": "big"} a TypeError: a
    caller told satclip's input errors apart (SatclipError) by their class, as the CLI does. Both are BadInputError,
    a ValueError, so that `except ValueError` still catches them."""
    with pytest.raises(BadInputError, match=re.escape(message)) as raised:
        from_dict({section: values})
    assert isinstance(raised.value, ValueError)


def test_an_unknown_recipe_is_an_unknown_name():
    """recipe_path("nope") raised a plain KeyError; the registries raise UnknownNameError (a KeyError too)."""
    from satclip.recipes import recipe_path

    with pytest.raises(UnknownNameError, match="unknown recipe 'nope'; known: bluemarble-l10"):
        recipe_path("nope")
