"""Options that a command used to accept and then ignore silently (exit 0, the output not what was asked for)
are now refused in one line naming the option and what to do instead."""

from __future__ import annotations

import pytest

from satclip.cli import main

from .test_cli_errors import ONE_LINE, check_error


@pytest.fixture
def points(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("lon,lat\n13.4,52.5\n-58.4,-34.6\n")
    return path


def test_embed_column_with_the_columns_layout_is_refused(points, tmp_path, capsys):
    """`--layout columns --column foo` wrote emb_000 … and no column foo, exit 0."""
    out = tmp_path / "e.parquet"
    argv = ["embed", str(points), "-o", str(out), "--model", "bluemarble-l10", "--no-progress", "--layout", "columns"]
    assert main([*argv, "--column", "foo"]) == 2
    check_error(capsys.readouterr().err, ONE_LINE, "--column foo names the list column of --layout list; --layout "
                "columns writes one column per dimension (emb_000 …): drop --column")  # fmt: skip
    assert not out.exists()
    assert main(argv) == 0  # (and the list layout keeps its default column name)
    assert main(["embed", str(points), "-o", str(tmp_path / "l.parquet"), "--model", "bluemarble-l10",
                 "--no-progress", "--column", "vec"]) == 0  # fmt: skip
    import pyarrow.parquet as pq

    assert "vec" in pq.read_schema(tmp_path / "l.parquet").names


def test_map_pca_of_a_png_is_refused(tmp_path, capsys):
    """`map -o m.png --pca 5` drew the first 3 components, as without --pca, exit 0."""
    out = tmp_path / "m.png"
    argv = ["map", "--model", "bluemarble-l10", "--resolution", "30", "-o", str(out)]
    assert main([*argv, "--pca", "5"]) == 2
    check_error(capsys.readouterr().err, ONE_LINE, "--pca 5: a PNG map shows the first 3 principal components as "
                "red, green and blue; drop --pca, or write a GeoTIFF (.tif) or Zarr (.zarr) map of N "
                "components")  # fmt: skip
    assert not out.exists()
    assert main([*argv, "--pca", "3"]) == 0  # (what a PNG shows anyway)


def test_options_of_other_inputs_and_outputs_are_refused_not_ignored(tmp_path, capsys):
    """`map -o m.tif --no-coastlines` and `embed points.csv --centroids` were accepted, and did nothing."""
    from satclip.cli import main

    points = tmp_path / "points.csv"
    points.write_text("lon,lat\n1,2\n")
    argv = ["map", "--model", "bluemarble-l10", "--resolution", "30", "-o", str(tmp_path / "m.tif"), "--no-coastlines"]
    assert main(argv) == 2
    assert "--no-coastlines applies to PNG maps; a geotiff map has no coastlines drawn" in capsys.readouterr().err
    embed = ["embed", str(points), "-o", str(tmp_path / "e.parquet"), "--model", "bluemarble-l10", "--centroids"]
    assert main(embed) == 2
    assert f"and {points} (csv) holds points as lon/lat: drop --centroids" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.csv"]
