"""Encoders under test: spec parsing, raw encodings, seeded untrained SatCLIP, the embedding cache, and our
GeoCLIP re-implementation against the original module imported in isolation."""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import satclip
from satclip.eval import embeddings, encoders
from tests.conftest import REFERENCE, require


def test_split_and_parse_specs():
    specs = encoders.split_specs("wrap, theory(min_radius=1,max_radius=360), sh-l10,models/my model")
    assert specs == ["wrap", "theory(min_radius=1,max_radius=360)", "sh-l10", "models/my model"]
    assert encoders.parse_spec(specs[1]) == ("theory", {"min_radius": 1, "max_radius": 360})
    assert encoders.parse_spec("untrained-satclip(legendre_polys=40, seed=3)") == (
        "untrained-satclip", {"legendre_polys": 40, "seed": 3},
    )  # fmt: skip
    with pytest.raises(ValueError, match="unbalanced"):
        encoders.split_specs("theory(min_radius=1")
    with pytest.raises(ValueError, match="key=value"):
        encoders.parse_spec("theory(1)")


def test_raw_encodings_are_the_registered_modules():
    points = np.array([[13.4, 52.5], [-70.0, -33.0], [179.0, -89.0]])
    sh = encoders.create("sh-l10").embed(points)
    expected = satclip.encoding.create("sphericalharmonics", legendre_polys=10)(torch.from_numpy(points))
    np.testing.assert_allclose(sh, expected.numpy(), rtol=1e-6, atol=1e-6)
    assert sh.shape == (3, 100) and sh.dtype == np.float32
    if "wrap" in satclip.encoding.names():
        wrap = encoders.create("wrap").embed(points)
        lon, lat = np.radians(points[:, 0]), np.radians(points[:, 1])
        np.testing.assert_allclose(wrap, np.stack([np.cos(lon), np.sin(lon), np.cos(lat), np.sin(lat)], 1), atol=1e-6)
    with pytest.raises(ValueError, match="unknown encoder 'no-such-encoder'"):
        encoders.create("no-such-encoder")


def test_satclip_load_sources_are_encoders():
    ckpt = require(REFERENCE / "satclip-resnet18-l10.ckpt")
    points = np.array([[13.4, 52.5], [-70.0, -33.0], [0.0, 89.9]])
    enc = encoders.create(str(ckpt))
    expected = satclip.load(ckpt).encode(points).numpy()
    np.testing.assert_allclose(enc.embed(points), expected, rtol=1e-6, atol=1e-6)
    assert enc.embedding_dim == 256 and enc.name == str(ckpt)


def test_untrained_satclip_is_seeded_and_shaped():
    points = np.array([[0.0, 0.0], [100.0, 45.0]])
    a = encoders.create("untrained-satclip")
    b = encoders.create("untrained-satclip(seed=0)")
    c = encoders.create("untrained-satclip(seed=1)")
    assert a.embed(points).shape == (2, 256)
    np.testing.assert_array_equal(a.embed(points), b.embed(points))
    assert not np.allclose(a.embed(points), c.embed(points))
    assert a.identity.split("|")[1] == b.identity.split("|")[1] != c.identity.split("|")[1]
    l40 = encoders.create("untrained-satclip-l40")
    assert l40.module.posenc.embedding_dim == 1600


def test_embeddings_are_cached_by_identity_and_points(monkeypatch):
    enc = encoders.create("sh-l10")
    points = np.array([[1.0, 2.0], [3.0, 4.0]])
    first = embeddings.embed(enc, points)
    monkeypatch.setattr(enc, "embed", lambda p: pytest.fail("embedded again instead of reading the cache"))
    np.testing.assert_array_equal(embeddings.embed(enc, points), first)
    monkeypatch.undo()
    other = embeddings.embed(enc, points[::-1])  # other points: a new entry
    np.testing.assert_array_equal(other, first[::-1])


GEOCLIP_MODEL = None
_spec = importlib.util.find_spec("geoclip")
if _spec is not None and _spec.submodule_search_locations:
    GEOCLIP_MODEL = Path(list(_spec.submodule_search_locations)[0]) / "model"


def _isolated_original_geoclip():
    """Import geoclip/model/location_encoder.py with only its own helpers (misc, rff) under a private
    package name, so that the wheel's transformers/torchvision imports never run."""
    if GEOCLIP_MODEL is None or not (GEOCLIP_MODEL / "location_encoder.py").is_file():
        pytest.skip("the geoclip wheel is not installed")
    name = "_isolated_geoclip_model"
    package = types.ModuleType(name)
    package.__path__ = [str(GEOCLIP_MODEL)]
    saved = {k: sys.modules.get(k) for k in (name, f"{name}.misc", f"{name}.rff", f"{name}.location_encoder")}
    sys.modules[name] = package
    try:
        for sub, path, is_package in (("misc", "misc.py", False), ("rff", "rff/__init__.py", True),
                                      ("location_encoder", "location_encoder.py", False)):  # fmt: skip
            location = GEOCLIP_MODEL / path
            spec = importlib.util.spec_from_file_location(
                f"{name}.{sub}", location, submodule_search_locations=[str(location.parent)] if is_package else None
            )
            module = importlib.util.module_from_spec(spec)
            sys.modules[f"{name}.{sub}"] = module
            spec.loader.exec_module(module)
        return sys.modules[f"{name}.location_encoder"]
    except ImportError as err:
        pytest.skip(f"geoclip's location_encoder.py does not import in isolation: {err}")
    finally:
        for key, value in saved.items():
            if value is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = value


def test_geoclip_reimplementation_matches_the_original_module():
    original_module = _isolated_original_geoclip()
    original = original_module.LocationEncoder().eval()  # loads the wheel's weights itself
    from satclip.eval.encoders.geoclip import load_geoclip

    ours = load_geoclip()
    g = torch.Generator().manual_seed(0)
    lonlat = torch.stack([torch.rand(500, generator=g) * 360 - 180,
                          torch.rad2deg(torch.asin(torch.rand(500, generator=g) * 2 - 1))], 1)  # fmt: skip
    lonlat = torch.cat([lonlat, torch.tensor([[-180.0, -90.0], [180.0, 90.0], [0.0, 0.0], [13.4, 52.5]])])
    with torch.no_grad():
        theirs32 = original(lonlat[:, [1, 0]].float())  # GeoCLIP takes (lat, lon)
        ours32 = ours(lonlat.float())
        assert ours32.shape == (504, 512)
        # float32: the σ = 256 branch amplifies rounding of the projection (phases of ~10³ rad)
        np.testing.assert_allclose(ours32.numpy(), theirs32.numpy(), atol=1e-4)
        theirs64 = original.double()(lonlat[:, [1, 0]].double())
        ours64 = ours.double()(lonlat.double())
        np.testing.assert_allclose(ours64.numpy(), theirs64.numpy(), atol=1e-7)
        swapped = ours.double()(lonlat[:, [1, 0]].double())  # (lat, lon) fed as (lon, lat) must differ
        assert np.abs(swapped.numpy() - theirs64.numpy()).max() > 1e-2


def test_geoclip_encoder_by_name():
    if GEOCLIP_MODEL is None:
        pytest.skip("the geoclip wheel is not installed")
    enc = encoders.create("geoclip")
    out = enc.embed(np.array([[13.4, 52.5], [-70.0, -33.0]]))
    assert out.shape == (2, 512) and np.isfinite(out).all()


def test_exclude_heldout_is_refused_outside_holdout_continent():
    """Under `random` it changed nothing: the encoder ran as the plain retrieval encoder's twin, reported "tied for
    best" with it."""
    from satclip.errors import BadInputError
    from satclip.eval.runner import EvalConfig

    spec = "bluemarble-l10+range+(exclude_heldout=True)"
    with pytest.raises(BadInputError, match=r"exclude_heldout=True leaves each held-out continent out of the "
                                            r"database under --protocol holdout-continent; under random it changes "
                                            r"nothing: drop it"):  # fmt: skip
        EvalConfig(encoders=(spec,), tasks=("elevation",))
    assert EvalConfig(encoders=(spec,), tasks=("elevation",), protocol="holdout-continent").encoders == (spec,)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("theory(min_radius=10,max_radius=1)", "min_radius must be at most max_radius (the finest and the coarsest "
                                            "scale), got 10 and 1"),
     ("untrained-satclip(seed=-1)", "seed=-1 must be a whole number, 0 or more")],
)  # fmt: skip
def test_reversed_radii_and_negative_seeds_are_refused(spec, expected):
    """Reversed radii ran (the scales backwards), a negative seed ran: both without a word."""
    with pytest.raises(ValueError, match=re.escape(expected)):
        encoders.create(spec)


def test_every_built_in_encoder_says_what_it_is():
    """The reports' table of encoders said "a model (see its spec)" of spherec and its kin (the demo's report)."""
    from satclip.encoding.registry import ENCODINGS
    from satclip.pretrained import RELEASED, bundled_models

    names = [*ENCODINGS.names(), *encoders.ENCODERS.names(), *bundled_models(), *RELEASED]
    vague = [name for name in names if encoders.about(name) == "a model (see its spec)"]
    assert not vague, vague
    assert "spherec" in ENCODINGS.names() and "Sphere2Vec" in encoders.about("spherec(min_radius=1)")


@pytest.mark.parametrize("name", ["theory", "grid", "spherec", "spherecplus", "spherem", "spheremplus"])
def test_a_bare_multiscale_encoding_runs_at_the_released_scales(name):
    """A bare ``spherec``, ``grid``, ``spherem`` … took satclip.encoding's defaults (the original classes':
    min_radius=1e-5, max_radius=0.01, scales for metres), at which features of points in degrees are noise: MSE
    1.05 on era5-temperature, chance, against 0.05 at SatCLIP's released scales. satclip.encoding keeps them."""
    from satclip.encoding import create as create_encoding
    from satclip.encoding.multiscale import GRID_DEFAULTS, THEORY_DEFAULTS

    points = np.array([[13.4, 52.5], [-58.4, -34.6], [151.2, -33.9], [0.0, 0.0]])
    released = f"{name}(min_radius=1,max_radius=360,frequency_num=16)"
    bare = encoders.create(name)
    np.testing.assert_array_equal(bare.embed(points), encoders.create(released).embed(points))
    assert encoders.spec_key(name) == encoders.spec_key(released)  # (one encoder, given twice, is refused)
    assert "min_radius=1.0, max_radius=360.0, frequency_num=16" in bare.description
    assert encoders.about(name).endswith("(min_radius=1°, max_radius=360°, frequency_num=16: SatCLIP's released "
                                         "scales)")  # fmt: skip
    assert encoders.about(f"{name}(min_radius=2)").endswith("(min_radius=2°, max_radius=360°, frequency_num=16: "
                                                            "set by the spec)")  # fmt: skip
    # the library's own encoding keeps the original's defaults (exactness), and evaluation takes another spec's
    original = THEORY_DEFAULTS if name == "theory" else GRID_DEFAULTS
    module = create_encoding(name)
    assert (module.min_radius, module.max_radius, module.frequency_num) == tuple(original.values())
    assert encoders.spec_key(name) != encoders.spec_key(f"{name}({','.join(f'{k}={v}' for k, v in original.items())})")


def test_a_bare_multiscale_encoding_misses_what_its_old_defaults_cached(tmp_path, monkeypatch):
    """The cache key of a bare ``spherec`` (its identity) is not what it was with the original's defaults: the
    chance-level embeddings cached under that spec are never read again, nor its rows in an --out reused."""
    from satclip.encoding import create as create_encoding

    monkeypatch.setenv("SATCLIP_CACHE", str(tmp_path))
    old = encoders.Encoder("spherec", create_encoding("spherec").eval(), "as an older satclip built it")
    points = np.array([[13.4, 52.5], [-58.4, -34.6]])
    stale = embeddings.embed(old, points)
    new = encoders.create("spherec")
    assert new.identity != old.identity and new.identity.split("|")[0] == old.identity.split("|")[0]
    fresh = embeddings.embed(new, points)
    np.testing.assert_array_equal(fresh, new.embed(points))
    assert not np.allclose(fresh, stale)


def test_the_terminal_tables_say_which_encoder_a_short_name_is():
    """The console printed ``spherec#2`` where results.csv names ``spherec(min_radius=1,…)``, never saying which."""
    from satclip.eval.report import terminal_tables

    specs = ["spherec", "spherec(min_radius=2)", "wrap"]
    rows = [{"probe": "mlp", "variant": "", "task": "t", "kind": "regression", "encoder": spec, "mse": 0.1 * i + s}
            for i, spec in enumerate(specs) for s in (0.0, 0.01)]  # fmt: skip
    text = terminal_tables(rows)
    assert "spherec#2" in text and text.splitlines()[-1] == "encoders: spherec#2 = spherec(min_radius=2)"


def test_a_loaded_models_key_names_its_precision_only_where_it_is_not_float32(monkeypatch):
    """The precision joined the key (a float64 rerun reused float32 folds, which agree to the 5 decimals compared);
    in float32, evaluation's default, the key stays what an older satclip recorded, whose folds are reused (every
    fold of a loaded model was evaluated again after the upgrade, "with other settings")."""
    from satclip.eval.cache import digest
    from satclip.eval.encoders import _FINGERPRINT_POINTS

    single = encoders.create("bluemarble-l10")
    assert single.precision == "float32"
    assert single.identity == f"bluemarble-l10|{digest(single.embed(_FINGERPRINT_POINTS).round(5))}"
    monkeypatch.setenv("SATCLIP_PRECISION", "float64")
    double = encoders.create("bluemarble-l10")
    assert double.precision == "float64" and double.identity != single.identity
