"""LocationEncoder's own options: encode's warn_radians takes True or False only, save refuses a path that is no
path, and encode(..., precision=…) from several threads (what the precision setter's docstring points to instead of
switching the encoder while others embed) leaves the encoder and the results as they are."""

from __future__ import annotations

import re
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import satclip
from satclip.errors import BadInputError

from .test_embed_api import CONFIG

RADIANS_LIKE = [[0.1, 0.1], [0.2, 0.2]]


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return satclip.LocationEncoder.from_config(CONFIG).eval()


@pytest.mark.parametrize("value", ["no", 0, None, "False"])
def test_warn_radians_takes_true_or_false_only(encoder, value):
    """warn_radians="no" is true: encode warned of radians all the same; it is refused as satclip.embed refuses such
    switches, and False still silences the warning (numpy's False too)."""
    with pytest.raises(BadInputError, match=rf"^warn_radians must be True or False, got {value!r}$"):
        encoder.encode(RADIANS_LIKE, warn_radians=value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode(RADIANS_LIKE, warn_radians=False)
        encoder.encode(RADIANS_LIKE, warn_radians=np.False_)
    with pytest.warns(UserWarning, match="as coordinates in radians do"):
        encoder.encode(RADIANS_LIKE, warn_radians=True)


@pytest.mark.parametrize("path", [None, 3, ["model"]])
def test_save_refuses_a_path_that_is_no_path(encoder, path):
    """save(None) failed in pathlib ("expected str, bytes or os.PathLike object, not NoneType")."""
    with pytest.raises(BadInputError, match=rf"^path must be where to write the model, a str or os.PathLike, got "
                                            rf"{re.escape(repr(path))}$"):  # fmt: skip
        encoder.save(path)


def test_encode_with_its_own_precision_from_several_threads(encoder):
    points = np.random.default_rng(0).uniform([-180, -60], [180, 80], (5000, 2))
    expected = {p: encoder.encode(points, precision=p) for p in ("float32", "float64")}
    calls = ["float32", "float64"] * 8
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: encoder.encode(points, precision=p), calls))
    for precision, result in zip(calls, results, strict=True):
        assert torch.equal(result, expected[precision])
    assert encoder.dtype == torch.float32 and encoder.precision == "float32"


def test_save_where_no_folder_can_be_made_names_the_folder_and_the_fix(encoder, tmp_path):
    """save("/proc/nope/m") was a FileNotFoundError naming '/proc/nope', with nothing to do; a file where a folder
    would go is named as such (as before)."""
    with pytest.raises(BadInputError, match=r"^cannot create the folder /proc/nope \(No such file or directory\): "
                                            r"give an output in another folder$"):  # fmt: skip
        encoder.save("/proc/nope/m")
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BadInputError, match=r"is a file, not a directory"):
        encoder.save(tmp_path / "notes.txt" / "m")
    assert (tmp_path / "notes.txt").read_text() == "mine"
