"""The first minutes with the CLI: fast ``--help``, plain-text help that explains every option, did-you-mean
for misspelt names, and CSV files with other delimiters."""

from __future__ import annotations

import argparse
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from satclip.cli import build_parser, main
from satclip.registry import Registry, did_you_mean

from .test_embed_cli import model, points, reference  # noqa: F401 - fixtures


def test_help_starts_fast_and_without_torch():
    """``satclip --help`` imports the CLI and builds every command's parser: it must not import torch,
    numpy or any command's work (before lazy imports it did, ≈ 2.5 s). What it costs in seconds is measured
    by benchmarks, not asserted here: a wall-clock bound fails on a busy machine."""
    code = (
        "import sys, satclip.cli; satclip.cli.build_parser().format_help(); "
        "heavy = sorted({'torch', 'numpy', 'pandas', 'lightning', 'matplotlib'} & set(sys.modules)); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_import_satclip_is_light_and_the_api_still_resolves():
    code = (
        "import sys, satclip; assert 'torch' not in sys.modules; "
        "import satclip.embed.job, satclip.io.load; "  # a subpackage sharing its name with a function
        "assert callable(satclip.embed) and callable(satclip.load) and callable(satclip.load_model); "
        "assert satclip.LocationEncoder.__name__ == 'LocationEncoder' and satclip.encoding.create; "
        "from satclip.embed import embed_file; from satclip.data import S2100K, BlueMarble"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def _parsers(parser: argparse.ArgumentParser, path: str = "satclip"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_help_is_plain_text_and_explains_every_option():
    unexplained, markup = [], []
    for path, parser in _parsers(build_parser()):
        text = parser.format_help()
        if "``" in text or ":func:`" in text or ":mod:`" in text or ":class:`" in text:
            markup.append(path)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue  # each choice has its own help line
            if action.help == argparse.SUPPRESS or action.dest.startswith("override:"):
                continue  # train/cache config keys: one documented group ("values parsed as YAML scalars")
            if not action.help:
                unexplained.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not markup, f"raw reStructuredText in the help of: {markup}"
    assert not unexplained, f"options without help: {unexplained}"
    cache_help = dict(_parsers(build_parser()))["satclip cache"].format_help()
    assert "satclip cache build --config CONFIG.yaml computes data.cache" in cache_help
    data_line = next(line for line in build_parser().format_help().splitlines() if line.split()[:1] == ["data"])
    assert data_line.split(None, 1)[1] == "datasets: verify, download, bluemarble"  # (it ended "download, …")


def test_evaluate_help_names_the_retrieval_specs():
    """--encoders' help (and docs/cli.md) listed every kind of spec but MODEL+range, documented in
    docs/retrieval.md alone."""
    text = " ".join(dict(_parsers(build_parser()))["satclip evaluate"].format_help().split())
    assert "MODEL+range or MODEL+range+(beta=…): MODEL retrieval-augmented (docs/retrieval.md)" in text


@pytest.mark.parametrize(
    "argv, suggestion",
    [
        (["embedd", "x.csv"], "did you mean 'embed'?"),
        (["evalute"], "did you mean 'evaluate'?"),
        (["data", "verfy", "root"], "did you mean 'verify'?"),
        (["map", "--model", "m", "--resolution", "1", "-o", "x", "--format", "pgn"], "did you mean 'png'?"),
    ],
)
def test_misspelt_choices_suggest_the_right_one(argv, suggestion, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"; {suggestion} (see satclip" in err[0], err
    assert "invalid choice" in err[0]


def test_unrelated_names_get_no_suggestion(capsys):
    assert main(["zzzz"]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_registry_and_encoder_names_suggest(tmp_path, capsys):
    registry = Registry("thing")
    for name in ("era5-temperature", "elevation"):
        registry.register(name)(lambda: None)
    with pytest.raises(KeyError, match=r"unknown thing 'era5-temprature'; did you mean 'era5-temperature'\? known: "):
        registry.get("era5-temprature")
    assert did_you_mean("qqq", ["era5-temperature"]) == ""
    assert did_you_mean("SH-L10", ["sh-l10", "sh-l40"]) == "did you mean 'sh-l10' or 'sh-l40'?"
    # the start of a name (too short a part of it for difflib's ratio)
    assert did_you_mean("holdout", ["holdout-continent", "random"]) == "did you mean 'holdout-continent'?"
    assert did_you_mean("ra", ["random"]) == ""  # (two letters begin too much to mean one)
    code = main(["evaluate", "--encoders", "sh-l1O", "--tasks", "elevation", "--out", str(tmp_path / "a"), "--offline"])
    assert code == 2
    assert "unknown encoder 'sh-l1O': did you mean 'sh-l10'" in capsys.readouterr().err
    assert main(["evaluate", "--encoders", "wrap", "--tasks", "elevaton", "--out", str(tmp_path / "b")]) == 2
    assert "did you mean 'elevation'?" in capsys.readouterr().err
    assert main(["evaluate", "--encoders", "wrap", "--protocol", "randm", "--out", str(tmp_path / "c")]) == 2
    assert "did you mean 'random'?" in capsys.readouterr().err


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_embed_sniffs_the_csv_delimiter(tmp_path, model, points, delimiter):  # noqa: F811 - fixtures
    path = tmp_path / "points.csv"
    points.to_csv(path, sep=delimiter, index=False)
    out = tmp_path / "emb.parquet"
    assert main(["embed", str(path), "-o", str(out), "--model", str(model), "--no-progress"]) == 0
    table = pq.read_table(out)
    assert table.column_names[:2] == ["site", "lon"]  # every column read, not one
    np.testing.assert_allclose(
        np.stack(table.column("embedding").to_pylist()), reference(model, points[["lon", "lat"]].to_numpy()), atol=1e-6
    )


def test_decimal_commas_are_named(tmp_path, model, capsys):  # noqa: F811 - fixture
    path = tmp_path / "points.csv"
    pd.DataFrame({"lon": ["13,4", "2,35"], "lat": ["52,5", "48,85"]}).to_csv(path, sep=";", index=False)
    assert main(["embed", str(path), "-o", str(tmp_path / "e.parquet"), "--model", str(model), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "decimal commas" in err and "';'" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("group", ["data", "cache", "retrieval"])
def test_a_command_group_without_its_subcommand_is_a_usage_error(group, capsys):
    """`satclip data` printed its help and exited 0, where `satclip cache` and `satclip retrieval` exit 2."""
    assert main([group]) == 2
    assert "the following arguments are required" in capsys.readouterr().err
