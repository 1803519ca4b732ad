"""The public Python API as an audit of it found it: a DataFrame task file in run_evaluation, "~" in save, arrays
in SatCLIP.encode_location, EvalConfig's fields checked where it is made, radians given to encode, point dicts
given to encode, and the registries' and load_config's errors. Each test failed before its fix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def test_run_evaluation_takes_a_dataframe_task_file(tmp_path):
    """A TaskFile of a DataFrame (its docstring allows one) was "TypeError: expected str, bytes or os.PathLike
    object, not DataFrame" from the check that the output is none of the inputs; evaluate took it."""
    from satclip.eval import EvalConfig, TaskFile, run_evaluation

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"lon": rng.uniform(-170, 170, 60), "lat": rng.uniform(-60, 60, 60), "y": rng.normal(size=60)})
    config = EvalConfig(encoders=("wrap",), task_file=TaskFile(frame, target_col="y"), seeds=(1,), probes=("linear",))
    out = run_evaluation(config, tmp_path / "out", figures=False)
    assert [(row["task"], row["encoder"]) for row in out.rows] == [("table", "wrap")]
    assert out.files["csv"].is_file()


def tiny_clip():
    """A SatCLIP of a fitted MOSAIKS image encoder and a small location encoder (embed_dim 16)."""
    import torch

    import satclip
    from satclip.models.clip import SatCLIP

    images = torch.rand(4, 13, 16, 16, generator=torch.Generator().manual_seed(0))
    visual = satclip.image.create("mosaiks", in_chans=13, num_filters=8, embed_dim=16).fit(images, seed=0)
    location = satclip.LocationEncoder.from_config(
        {"encoding": {"name": "sphericalharmonics", "legendre_polys": 4},
         "network": {"name": "siren", "num_classes": 16, "dim_hidden": 8, "num_layers": 1}}
    )  # fmt: skip
    return SatCLIP(visual, location).eval()


def test_save_expands_a_home_directory_as_load_does(tmp_path, monkeypatch):
    """`encoder.save("~/m")` wrote ./~/m (a folder named "~") while `satclip.load("~/m")` read the home's m."""
    import torch

    import satclip

    from .test_embed_api import CONFIG

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    encoder = satclip.LocationEncoder.from_config(CONFIG).eval()
    assert encoder.save("~/m").path == home / "m"
    model = tiny_clip()
    assert model.save("~/clip").path == home / "clip"
    assert sorted(p.name for p in work.iterdir()) == []  # (no folder named "~")
    points = torch.tensor([[13.4, 52.5], [-70.0, -33.0]])
    torch.testing.assert_close(satclip.load("~/m").encode(points), encoder.encode(points), rtol=0, atol=0)
    assert (home / "clip" / "config.json").is_file()


def test_encode_location_takes_arrays_and_lists_as_encode_image_does():
    """`SatCLIP.encode_location(numpy array)` was "AttributeError: 'str' object has no attribute 'type'", and a
    list an AttributeError, while encode_image beside it takes numpy arrays."""
    import torch

    from satclip.encoding.points import InvalidPointsError

    model = tiny_clip()
    points = [[13.4, 52.5], [-70.0, -33.0], [151.2, -33.9]]
    with torch.no_grad():
        expected = model.encode_location(torch.tensor(points, dtype=torch.float64))
        for given in (np.array(points), points):
            torch.testing.assert_close(model.encode_location(given), expected, rtol=0, atol=0)
    with pytest.raises(InvalidPointsError, match="row 1"):
        model.encode_location(np.array([[13.4, 52.5], [13.4, 95.0]]))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"encoders": ("nonsense",)}, "unknown encoder 'nonsense': Encoders are the names of"),
        ({"encoders": ("sh-l11",)}, "unknown encoder 'sh-l11': did you mean 'sh-l10' or 'sh-l40'?"),
        ({"protocol": "rand"}, "unknown evaluation protocol 'rand'; did you mean 'random'?"),
        ({"probes": ("svm",)}, "unknown probe 'svm'; known: linear, mlp, paper-mlp"),
        ({"tasks": ("kopen",)}, "unknown evaluation task 'kopen'; did you mean 'koppen'?"),
        ({"seeds": "0"}, "EvalConfig: seeds='0' is text; give integers >= 0"),
        ({"seeds": (0, -1)}, "EvalConfig: seeds must be integers >= 0, at least one, got [0, -1]"),
        ({"seeds": (0, "1")}, "EvalConfig: seeds must be integers >= 0, at least one, got [0, '1']"),
        ({"seeds": (1, 1)}, "seeds must be unique, got [1, 1]"),
        ({"probes": ("linear", "linear")}, "probes must be unique, got ['linear', 'linear']"),
    ],
)  # fmt: skip
def test_eval_config_refuses_what_cannot_be_meant_as_it_is_made(options, expected, monkeypatch):
    """EvalConfig took seeds="0" (as ('0',)), unknown encoder, protocol, probe and task names; evaluate refused
    them later, some as plain ValueErrors (the unknown encoder's in 700 characters). Nothing is loaded: the
    models' names are checked by name."""
    from satclip.errors import BadInputError
    from satclip.eval import EvalConfig
    from satclip.io import load

    monkeypatch.setattr(load, "load", lambda *a, **k: pytest.fail("EvalConfig loaded a model"))
    with pytest.raises(BadInputError) as refused:
        EvalConfig(**{"encoders": ("wrap",), "tasks": ("koppen",), **options})
    assert expected in str(refused.value) and len(str(refused.value)) < 200
    config = EvalConfig(encoders=("wrap", "satclip-resnet18-l10", "bluemarble-l10+range", "./m.ckpt", "hf://a/b"),
                        tasks=("koppen",), seeds=[np.int64(1), 0])  # fmt: skip
    assert config.seeds == (1, 0) and all(type(seed) is int for seed in config.seeds)


def test_encode_warns_once_of_points_that_look_like_radians_and_embed_once_too(caplog):
    """`encoder.encode(np.radians(points))` embedded them off West Africa without a word, while satclip.embed warned.
    encode warns once a call (not once a batch); satclip.embed and embed_lonlat (satclip embed's chunks, Dask
    partitions) leave it to their own note, said once."""
    import warnings

    import satclip
    from satclip.embed.api import embed_lonlat

    from .test_embed_api import CONFIG

    encoder = satclip.LocationEncoder.from_config(CONFIG).eval()
    degrees = np.array([[13.4, 52.5], [-70.0, -33.0], [151.2, -33.9], [2.35, 48.85]])
    radians = np.radians(degrees)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder.encode(radians, batch_size=1)
    assert [str(w.message) for w in caught] == [
        "Every point lies within ±3.14° of longitude and ±1.57° of latitude, as coordinates in radians do: if they "
        "are, pass numpy.degrees(points)."
    ]
    assert caught[0].filename == __file__  # (the user's line)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        encoder.encode(degrees)
        encoder.encode(radians[:1])  # (one point says nothing)
        encoder.encode(radians, warn_radians=False)
        embed_lonlat(encoder, radians, batch_size=1)
        caplog.clear()
        satclip.embed(radians, model=encoder, batch_size=1)
    assert caught == []
    said = [r.getMessage() for r in caplog.records if "radians" in r.getMessage()]
    assert len(said) == 1 and "numpy.degrees(points)" in said[0]


def test_encode_points_a_dict_of_columns_to_satclip_embed():
    """`encode({"lon": ..., "lat": ...})` said "(float() argument must be a string or a real number, not
    'dict')"; satclip.embed takes the dict, and a DataFrame, which encode keeps refusing (its column order)."""
    import satclip
    from satclip.errors import BadInputError

    from .test_embed_api import CONFIG

    encoder = satclip.LocationEncoder.from_config(CONFIG).eval()
    columns = {"lon": [13.4, -70.0], "lat": [52.5, -33.0]}
    with pytest.raises(BadInputError, match=r"points is a dict of columns \('lon', 'lat'\): pass it to "
                                            r"satclip.embed\(points, model=…\)"):  # fmt: skip
        encoder.encode(columns)
    with pytest.raises(BadInputError, match=r"points is a DataFrame: .* satclip.embed\(frame, model=…\)"):
        encoder.encode(pd.DataFrame(columns))
    expected = encoder.encode(np.column_stack([columns["lon"], columns["lat"]])).numpy()
    np.testing.assert_array_equal(satclip.embed(columns, model=encoder), expected)


def test_a_builder_parameter_it_does_not_take_is_a_bad_input_naming_the_accepted_ones():
    """`satclip.image.create("moco_resnet18", embed_dm=8)` was a plain TypeError (the location encoders' registry
    refuses the same mistake as a BadInputError); it is both now, so that `except TypeError` keeps working."""
    import satclip
    from satclip.errors import BadInputError

    with pytest.raises(BadInputError, match=r"image encoder 'moco_resnet18' got unexpected parameter\(s\) "
                                            r"\['embed_dm'\]; it accepts \[.*'embed_dim'") as refused:  # fmt: skip
        satclip.image.create("moco_resnet18", embed_dm=8)
    assert isinstance(refused.value, TypeError)
    with pytest.raises(BadInputError, match=r"got unexpected parameter\(s\) \['bogus'\]"):
        satclip.encoding.ENCODINGS.create("sphericalharmonics", bogus=1)


def test_load_config_takes_a_dict_as_fit_does():
    """`satclip.train.load_config({...})` was "TypeError: expected str, bytes or os.PathLike object, not dict"
    while fit takes the dict; the overrides apply to it as to a file's."""
    train = pytest.importorskip("satclip.train")

    sections = {"optim": {"lr": 0.001}, "trainer": {"max_epochs": 3}}
    config = train.load_config(sections, {"trainer.max_epochs": "5"})
    assert config == train.from_dict({"optim": {"lr": 0.001}, "trainer": {"max_epochs": 5}})
    assert sections == {"optim": {"lr": 0.001}, "trainer": {"max_epochs": 3}}  # (the caller's dict is left as it is)
