"""S2-100K dataset and `satclip data verify` on a copy of the 20 real example patches with three bad files."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from satclip.cli import main
from satclip.data import S2100K, CheckSpec, IndexFormatError, read_index, sentinel2_to_13_bands, verify_s2100k
from satclip.errors import BadInputError

from .conftest import REFERENCE, S2_EXAMPLES, one_error_line, require

rasterio = pytest.importorskip("rasterio")

TRUNCATED, MISSING, THREE_BAND = "patch_70975.tif", "patch_502692.tif", "patch_322265.tif"


def _copy_examples(dest: Path, names: list[str] | None = None) -> Path:
    """Writable copy of the s2-examples root (optionally only ``names``, index rows kept in order)."""
    require(S2_EXAMPLES)
    (dest / "images").mkdir(parents=True)
    with (S2_EXAMPLES / "index.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if names is not None:
        rows = [r for r in rows if r["fn"] in names]
    for row in rows:
        shutil.copyfile(S2_EXAMPLES / "images" / row["fn"], dest / "images" / row["fn"])
    _write_index(dest / "index.csv", rows, ["lat", "lon", "url", "fn"])
    return dest


def _write_index(path: Path, rows: list[dict], columns: list[str]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _write_three_band(path: Path) -> None:
    with rasterio.open(path) as src:
        profile, data = src.profile, src.read()
    profile.update(count=3, compress=None)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[:3])


@pytest.fixture(scope="module")
def broken_root(tmp_path_factory) -> Path:
    root = _copy_examples(tmp_path_factory.mktemp("s2") / "root")
    _truncate(root / "images" / TRUNCATED)
    (root / "images" / MISSING).unlink()
    _write_three_band(root / "images" / THREE_BAND)
    return root


def _table_counts(text: str) -> dict[str, int]:
    counts = {}
    for line in text.splitlines():
        match = re.match(r"^  (\S.*?)\s{2,}(\d+)$", line)
        if match:
            counts[match.group(1)] = int(match.group(2))
    return counts


def test_cli_verify_reports_exactly_the_three_bad_files(broken_root, capsys):
    rc = main(["data", "verify", str(broken_root)])
    out = capsys.readouterr().out
    assert rc != 0
    counts = _table_counts(out)
    assert counts["total"] == 20
    assert counts["readable"] == 17
    assert counts["missing"] == 1
    assert counts["corrupt / truncated"] == 1
    assert counts["band count mismatch"] == 1
    assert counts["shape mismatch"] == counts["dtype mismatch"] == counts["no-data (file < min size)"] == 0
    for name in (TRUNCATED, MISSING, THREE_BAND):
        assert name in out
    assert "3 bands, expected 12" in out


def test_cli_verify_full_read_and_problem_list(broken_root, tmp_path, capsys):
    listing = tmp_path / "problems.csv"
    rc = main(["data", "verify", str(broken_root), "--full", "--list", str(listing)])
    assert rc == 1
    assert "full read" in capsys.readouterr().out
    with listing.open(newline="") as handle:
        rows = {r["fn"]: r["problem"] for r in csv.DictReader(handle)}
    assert rows == {TRUNCATED: "corrupt", MISSING: "missing", THREE_BAND: "bands"}


def test_cli_verify_prints_no_gdal_messages_amid_its_table(tmp_path, capsys):
    """A TIFF whose directory is damaged printed GDAL's own "CPLE_AppDefined in patch_….tif:
    TIFFReadDirectoryCheckOrder…" on stderr amid the table, which reports the file itself."""
    import struct

    root = _copy_examples(tmp_path / "root", names=[TRUNCATED, THREE_BAND])
    damaged = bytearray((root / "images" / THREE_BAND).read_bytes())
    directory = struct.unpack("<I", damaged[4:8])[0]
    damaged[directory + 2 : directory + 40] = bytes(b ^ 0x5A for b in damaged[directory + 2 : directory + 40])
    (root / "images" / THREE_BAND).write_bytes(bytes(damaged))
    assert main(["data", "verify", str(root)]) == 1
    captured = capsys.readouterr()
    assert _table_counts(captured.out)["corrupt / truncated"] == 1 and THREE_BAND in captured.out
    assert "CPLE" not in captured.err and "TIFFReadDirectory" not in captured.err, captured.err


def test_opening_a_dataset_says_it_checks_its_images(tmp_path, caplog, monkeypatch):
    """`cache build` and `train` on real S2-100K checked 100,000 headers (~11 min) with nothing on the screen; the
    check now says what it reads and how many files (from SAY_CHECKING_FROM of them: here 3), and a second opening
    (results reused) says nothing."""
    from satclip.data import S2100K, verify

    monkeypatch.setattr(verify, "SAY_CHECKING_FROM", 3)
    root = _copy_examples(tmp_path / "root", names=[TRUNCATED, THREE_BAND, MISSING])
    with caplog.at_level(logging.INFO, logger="satclip"):
        S2100K(root)
    said = [r.getMessage() for r in caplog.records if r.name == "satclip.data.verify"]
    assert said == [f"checking the header of 3 image(s) in {root / 'images'} (1 thread(s)); later runs reuse the "
                    "results"], said  # fmt: skip
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="satclip"):
        S2100K(root)
    assert not [r for r in caplog.records if r.name == "satclip.data.verify"]


def test_cli_verify_list_never_replaces_the_dataset(tmp_path, capsys):
    """--list ROOT/index.csv --overwrite replaced the index it had just verified with the problem list."""
    root = _copy_examples(tmp_path / "root", names=[TRUNCATED, THREE_BAND])
    for target in (root / "index.csv", root / "images" / THREE_BAND, root / "images" / "new.csv"):
        before = target.read_bytes() if target.exists() else None
        assert main(["data", "verify", str(root), "--list", str(target), "--overwrite"]) == 2
        assert "input" in capsys.readouterr().err
        assert (target.read_bytes() if target.exists() else None) == before
    assert main(["data", "verify", str(root), "--list", str(root / "problems.csv")]) == 0  # beside it: fine
    assert (root / "problems.csv").read_text().splitlines() == ["fn,problem,detail"]


def test_cli_verify_clean_root_exits_zero(capsys):
    require(S2_EXAMPLES)
    assert main(["data", "verify", str(S2_EXAMPLES)]) == 0
    assert _table_counts(capsys.readouterr().out)["readable"] == 20


def test_a_file_listed_twice_is_reported_and_read_once(tmp_path, capsys, caplog):
    """Rows listing a file an earlier row lists (copied lines, or the same file at other coordinates) verified
    as readable, and the dataset (and a cache built from it) held that image twice."""
    root = _copy_examples(tmp_path / "root")
    lines = (root / "index.csv").read_text().splitlines()
    assert lines[0] == "lat,lon,url,fn"  # (the fixture's layout)
    _, _, url, fn = next(csv.reader([lines[2]]))
    (root / "index.csv").write_text("\n".join([*lines, lines[1], f"0.5,0.5,{url},{fn}"]) + "\n")
    assert main(["data", "verify", str(root)]) == 1
    out = capsys.readouterr().out
    counts = _table_counts(out)
    assert counts["total"] == 22 and counts["readable"] == 20 and counts["file listed again"] == 2, out
    assert "its file is listed on line 2 already" in out and "its file is listed on line 3 already" in out
    for verify in ("header", "none"):
        dataset = S2100K(root, verify=verify)
        assert len(dataset) == 20 and len(set(dataset.filenames)) == 20
    assert "skipping 2 row(s) listing a file an earlier row lists already" in caplog.text


def test_cli_verify_of_a_root_without_images_folder_says_so(tmp_path, capsys):
    """Every row of a root without images/ was reported "missing: not found", the folder never named."""
    root = _copy_examples(tmp_path / "root")
    shutil.rmtree(root / "images")
    assert main(["data", "verify", str(root)]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {root} has no images/ folder: an S2-100K root holds index.csv and images/ with the files it "
        "lists (`satclip data download` writes both)"
    )


def test_cli_verify_without_index_exits_two(tmp_path, capsys):
    assert main(["data", "verify", str(tmp_path)]) == 2
    assert "index.csv" in capsys.readouterr().err


def test_cli_verify_of_an_index_without_rows_exits_two(tmp_path, capsys):
    """A header-only index.csv verified as 'total 0' with exit 0."""
    (tmp_path / "images").mkdir()
    (tmp_path / "index.csv").write_text("fn,lon,lat\n")
    assert main(["data", "verify", str(tmp_path)]) == 2
    assert "lists no images" in capsys.readouterr().err


def test_dataset_yields_the_17_good_samples(broken_root, caplog):
    with caplog.at_level(logging.WARNING, logger="satclip.data"):
        dataset = S2100K(broken_root, cache=False)
    assert "17/20" in caplog.text and MISSING in caplog.text
    index = read_index(broken_root / "index.csv")
    good = [i for i, fn in enumerate(index.filenames) if fn not in (TRUNCATED, MISSING, THREE_BAND)]
    assert len(dataset) == 17
    assert list(dataset.filenames) == [index.filenames[i] for i in good]
    samples = [dataset[i] for i in range(len(dataset))]
    points = torch.stack([s["point"] for s in samples])
    assert points.dtype == torch.float64
    np.testing.assert_array_equal(points.numpy(), index.lonlat[good])
    for sample in samples:
        assert sample["image"].shape == (12, 256, 256) and sample["image"].dtype == torch.float32
    # the pixels are the ones the original read: its preprocessing of them has the recorded sha256
    expected = np.load(require(REFERENCE / "expected.npz"))
    files, sha256 = expected["patch_files"].tolist(), expected["patch_preprocessed_sha256"].tolist()
    digests = dict(zip(files, sha256, strict=True))
    for name, sample in zip(dataset.filenames, samples, strict=True):
        reflectance = sentinel2_to_13_bands(sample["image"].numpy())
        assert hashlib.sha256(reflectance.tobytes()).hexdigest() == digests[name]


def test_points_mode_reads_coordinates_only(broken_root, tmp_path):
    dataset = S2100K(broken_root, mode="points")
    assert len(dataset) == 20  # no file checks: the images are not needed
    assert set(dataset[0]) == {"point"}
    # a root with only index.csv works too
    shutil.copyfile(broken_root / "index.csv", tmp_path / "index.csv")
    only_index = S2100K(tmp_path, mode="points")
    points = torch.stack([only_index[i]["point"] for i in range(20)]).numpy()
    np.testing.assert_array_equal(points, read_index(tmp_path / "index.csv").lonlat)


def test_a_coordinate_with_an_underscore_is_no_number_as_in_pandas(tmp_path):
    """Python's float() reads "1_0" as 10.0 (a digit separator in source code); pandas.read_csv keeps it as text."""
    text = "fn,lon,lat\na.tif,1_0,5\nb.tif,2,3\n"
    (tmp_path / "index.csv").write_text(text)
    index = read_index(tmp_path / "index.csv")
    as_pandas = pd.read_csv(tmp_path / "index.csv")
    assert not pd.api.types.is_numeric_dtype(as_pandas["lon"])  # pandas: not a number
    assert np.isnan(index.lonlat[0, 0]) and index.unparsed[0] == ("1_0", None)
    np.testing.assert_array_equal(index.lonlat[1], [2.0, 3.0])


def test_both_index_layouts_give_the_same_samples(tmp_path):
    require(S2_EXAMPLES)
    with (S2_EXAMPLES / "index.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:3]
    roots = {}
    for layout, columns in {"satclip-examples": ["lat", "lon", "url", "fn"], "s2-100k": ["fn", "lon", "lat"],
                            "reordered": ["lon", "extra", "fn", "lat"]}.items():
        root = tmp_path / layout
        (root / "images").mkdir(parents=True)
        for row in rows:
            shutil.copyfile(S2_EXAMPLES / "images" / row["fn"], root / "images" / row["fn"])
        _write_index(root / "index.csv", [{**r, "extra": "x"} for r in rows], columns)
        roots[layout] = S2100K(root, cache=False)
    assert roots["satclip-examples"].index.layout == "satclip-examples"
    assert roots["s2-100k"].index.layout == roots["reordered"].index.layout == "s2-100k"
    expected = np.array([[float(r["lon"]), float(r["lat"])] for r in rows])
    for dataset in roots.values():
        assert list(dataset.filenames) == [r["fn"] for r in rows]
        np.testing.assert_array_equal(dataset.points.numpy(), expected)
        torch.testing.assert_close(dataset[2]["image"], roots["s2-100k"][2]["image"], rtol=0, atol=0)


def test_unknown_index_layout_lists_the_columns(tmp_path):
    (tmp_path / "index.csv").write_text("filename,x,y\npatch_0.tif,1,2\n")
    with pytest.raises(IndexFormatError, match=r"\['filename', 'x', 'y'\].*fn,lon,lat"):
        S2100K(tmp_path)


def test_a_root_given_as_its_index_file_is_told_to_give_the_directory(tmp_path, capsys):
    """`satclip data verify ROOT/index.csv` said "no index file at ROOT/index.csv/index.csv"."""
    (tmp_path / "index.csv").write_text("fn,lon,lat\npatch_0.tif,10.5,20.25\n")
    assert main(["data", "verify", str(tmp_path / "index.csv")]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {tmp_path / 'index.csv'} is a file; give the S2-100K root directory that holds index.csv "
        f"and images/ ({tmp_path}), not a file"
    )
    # other paths that are no root are named for what they are (an image was "give … that holds it (images/)";
    # a missing root, images/ itself and an index.csv that is a directory were all "no index file at …")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "patch_0.tif").write_bytes(b"II*\x00")
    (tmp_path / "other" / "index.csv").mkdir(parents=True)
    for given, said in [
        (tmp_path / "images" / "patch_0.tif", f"{tmp_path / 'images' / 'patch_0.tif'} is a file; give the S2-100K "
                                              "root directory that holds index.csv and images/, not a file"),
        (tmp_path / "gone", f"no such directory: {tmp_path / 'gone'}; give the S2-100K root directory, which holds "
                            "index.csv and images/ (get it with `satclip data download ROOT`)"),
        (tmp_path / "images", f"no index file at {tmp_path / 'images' / 'index.csv'}: {tmp_path / 'images'} is the "
                              f"images/ folder of the root {tmp_path}; give that root"),
        (tmp_path / "other", f"{tmp_path / 'other' / 'index.csv'} is a directory, not the index file an S2-100K root "
                             "holds"),
    ]:  # fmt: skip
        assert main(["data", "verify", str(given)]) == 2
        assert one_error_line(capsys.readouterr().err) == f"satclip: error: {said}"


def test_a_semicolon_separated_index_is_named_so(tmp_path):
    """A ';'-separated index was told to rename its one column 'fn;lon;lat' to fn, lon and lat."""
    (tmp_path / "index.csv").write_text("fn;lon;lat\npatch_0.tif;10.5;20.25\n")
    with pytest.raises(IndexFormatError, match=r"reads as one column 'fn;lon;lat': its values look separated by ';'"):
        read_index(tmp_path / "index.csv")


@pytest.mark.parametrize(("delimiter", "named"), [("\t", "tabs"), ("|", "'|'")])
def test_a_tab_or_bar_separated_index_is_named_so(tmp_path, capsys, delimiter, named):
    """A tab- or '|'-separated index was told to rename its columns ['lat\\tlon\\turl\\tfn'] (only ';' was named)."""
    header = delimiter.join(["lat", "lon", "url", "fn"])
    (tmp_path / "images").mkdir()
    (tmp_path / "index.csv").write_text(f"{header}\n" + delimiter.join(["20.25", "10.5", "u", "patch_0.tif"]) + "\n")
    assert main(["data", "verify", str(tmp_path)]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {tmp_path / 'index.csv'} reads as one column {header!r}: its values look separated by "
        f"{named}; save it with ',' between values"
    )


def test_invalid_coordinates_and_tiny_files_are_skipped(tmp_path):
    root = _copy_examples(tmp_path / "root", ["patch_75123.tif", "patch_70975.tif", "patch_252161.tif"])
    rows = list(csv.DictReader((root / "index.csv").open(newline="")))
    rows[0]["lat"] = "95.0"  # out of range
    _write_index(root / "index.csv", rows, ["lat", "lon", "url", "fn"])
    small = root / "images" / rows[1]["fn"]
    with rasterio.open(S2_EXAMPLES / "images" / rows[1]["fn"]) as src:
        profile, data = src.profile, src.read(window=((0, 16), (0, 16)))
    profile.update(width=16, height=16, blockxsize=16, blockysize=16)
    with rasterio.open(small, "w", **profile) as dst:  # a valid 12-band GeoTIFF, but under 10 kB
        dst.write(data)
    assert small.stat().st_size < 10_000
    report = verify_s2100k(root)
    assert report.status == ("coordinates", "nodata", "ok")
    assert report.counts()["readable"] == 1
    assert len(S2100K(root, cache=False)) == 1
    assert len(S2100K(root, mode="points")) == 2  # bad coordinates are dropped in points mode too
    # with the size check off, the tiny patch is caught as a shape mismatch instead
    assert verify_s2100k(root, CheckSpec(min_size=0)).status[1] == "shape"


def test_file_that_breaks_after_verification_is_substituted(tmp_path, caplog):
    names = ["patch_75123.tif", "patch_70975.tif", "patch_252161.tif"]
    root = _copy_examples(tmp_path / "root", names)
    dataset = S2100K(root, cache=False)
    expected_next = dataset[2]
    _truncate(root / "images" / dataset.filenames[1])  # goes bad mid-"epoch"
    with caplog.at_level(logging.WARNING, logger="satclip.data"):
        sample = dataset[1]
    assert dataset.filenames[1] in caplog.text
    torch.testing.assert_close(sample["image"], expected_next["image"], rtol=0, atol=0)
    torch.testing.assert_close(sample["point"], expected_next["point"], rtol=0, atol=0)
    strict = S2100K(root, cache=False, verify="none", on_error="raise")
    with pytest.raises(RuntimeError, match=dataset.filenames[1]):
        strict[1]


def test_verification_cache_is_reused_until_a_file_changes(tmp_path, monkeypatch):
    names = ["patch_75123.tif", "patch_70975.tif"]
    root = _copy_examples(tmp_path / "root", names)
    assert len(S2100K(root)) == 2
    checked = []

    import satclip.data.verify as verify_module

    real_check = verify_module.check_file

    def counting_check(path, spec, lonlat=None):
        checked.append(path.name)
        return real_check(path, spec, lonlat)

    monkeypatch.setattr(verify_module, "check_file", counting_check)
    assert len(S2100K(root)) == 2
    assert checked == []  # nothing re-read
    target = root / "images" / names[1]
    _truncate(target)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    assert len(S2100K(root)) == 1
    assert checked == [names[1]]
    assert not (root / ".satclip").exists()  # the root itself is never written to


def test_a_file_it_may_not_read_is_unreadable_and_not_remembered(tmp_path, monkeypatch, capsys):
    """A file without read permission was "corrupt / truncated (RasterioIOError …)" and cached so: the dataset
    kept skipping it after a chmod (which changes neither size nor time); a link loop, or a folder it may not
    search, was "missing (not found)"."""
    names = ["patch_75123.tif", "patch_70975.tif"]
    root = _copy_examples(tmp_path / "root", names)
    denied = root / "images" / names[1]
    real_open = Path.open

    def no_permission(self, *args, **kwargs):
        if self == denied:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    with monkeypatch.context() as patch:  # (tests may run as root, whom no chmod stops)
        patch.setattr(Path, "open", no_permission)
        assert main(["data", "verify", str(root)]) == 1
        out = capsys.readouterr().out
        assert _table_counts(out)["unreadable (permissions, a link loop)"] == 1, out
        assert _table_counts(out)["corrupt / truncated"] == 0 and f"{names[1]}  (Permission denied)" in out, out
        assert len(S2100K(root)) == 1
    assert len(S2100K(root)) == 2  # readable again: checked again, not skipped from a record
    loop = root / "images" / "loop.tif"
    loop.symlink_to(loop.name)
    with open(root / "index.csv", "a") as index:
        index.write("10.0,10.0,,loop.tif\n")
    assert main(["data", "verify", str(root)]) == 1
    out = capsys.readouterr().out
    assert _table_counts(out)["missing"] == 0 and "loop.tif  (Too many levels of symbolic links)" in out, out


def test_bad_arguments_are_named():
    require(S2_EXAMPLES)
    with pytest.raises(ValueError, match="'pixels'"):
        S2100K(S2_EXAMPLES, mode="pixels")
    with pytest.raises(ValueError, match="on_error"):
        S2100K(S2_EXAMPLES, on_error="ignore")


def _rewrite(path: Path, pixels: np.ndarray) -> None:
    """Replace a GeoTIFF's pixels (uncompressed, so it stays over the 10 kB no-data threshold)."""
    with rasterio.open(path) as src:
        profile = src.profile
    profile.update(dtype=pixels.dtype.name, compress=None, nodata=None)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)


def test_full_verify_reports_nan_and_constant_images(tmp_path, capsys):
    names = ["patch_75123.tif", "patch_70975.tif", "patch_252161.tif"]
    root = _copy_examples(tmp_path / "root", names)
    _rewrite(root / "images" / names[0], np.zeros((12, 256, 256), np.uint16))
    with rasterio.open(root / "images" / names[1]) as src:
        partly_nan = src.read().astype(np.float32)
    partly_nan[0, :10] = np.nan
    _rewrite(root / "images" / names[1], partly_nan)
    # the header check cannot see pixel values; the full read must
    assert verify_s2100k(root, CheckSpec(dtype=None)).status == ("ok", "ok", "ok")
    report = verify_s2100k(root, CheckSpec(dtype=None, full=True))
    assert report.status == ("corrupt", "corrupt", "ok")
    assert report.details[0] == "constant image: every pixel value is 0 (no data)"
    assert report.details[1] == f"2560 of {12 * 256 * 256} pixel values are NaN or infinite"
    _rewrite(root / "images" / names[1], np.full((12, 256, 256), np.nan, np.float32))
    assert main(["data", "verify", str(root), "--full", "--dtype", "any", "--show", "5"]) == 1
    out = capsys.readouterr().out
    assert _table_counts(out)["corrupt / truncated"] == 2
    assert "every pixel value is NaN or infinite" in out and "constant image" in out
    assert len(S2100K(root, verify="full", spec=CheckSpec(dtype=None), cache=False)) == 1


def test_index_rows_outside_the_root_are_bad_rows(tmp_path, caplog):
    root = _copy_examples(tmp_path / "data" / "root", ["patch_75123.tif"])
    # a perfectly readable patch outside the root, which the escaping rows point at
    shutil.copyfile(S2_EXAMPLES / "images" / "patch_70975.tif", tmp_path / "data" / "outside.tif")
    rows = list(csv.DictReader((root / "index.csv").open(newline="")))
    escaping = ["../../outside.tif", str(tmp_path / "data" / "outside.tif"), "sub/../../../outside.tif"]
    rows += [{**rows[0], "fn": name} for name in escaping]
    _write_index(root / "index.csv", rows, ["lat", "lon", "url", "fn"])
    report = verify_s2100k(root)
    assert report.status == ("ok", "path", "path", "path")
    assert "'..'" in report.details[1] and "absolute" in report.details[2]
    assert report.counts()["path"] == 3
    with caplog.at_level(logging.WARNING, logger="satclip.data"):
        dataset = S2100K(root, cache=False)
    assert list(dataset.filenames) == ["patch_75123.tif"]
    assert "file name outside images/" in caplog.text
    assert list(S2100K(root, mode="points").filenames) == ["patch_75123.tif"]  # never used, even for points
    assert main(["data", "verify", str(root)]) == 1


@pytest.mark.parametrize("dtype", ["floaty", ""])
def test_cli_verify_refuses_a_dtype_that_is_none(tmp_path, capsys, dtype):
    """--dtype floaty was passed on: every file was reported "dtype mismatch … expected floaty", exit 1."""
    root = _copy_examples(tmp_path / "root", ["patch_75123.tif"])
    assert main(["data", "verify", str(root), "--dtype", dtype]) == 2
    captured = capsys.readouterr()
    assert f"--dtype: {dtype!r} is not a NumPy dtype (e.g. uint16, int16, float32), or 'any'" in captured.err
    assert captured.out == ""
    assert CheckSpec(dtype="<u2").dtype == "uint16"  # any spelling of a dtype is compared by its name
    assert main(["data", "verify", str(root), "--dtype", "u2"]) == 0


def test_cli_verify_names_an_index_that_is_not_utf8_csv(tmp_path, capsys):
    """A non-UTF-8 index.csv failed with a bare "'utf-8' codec can't decode byte…", naming no file; one that
    csv cannot split (a field over its size limit: no table at all) with an "unexpected error"."""
    (tmp_path / "images").mkdir()
    (tmp_path / "index.csv").write_bytes("fn,lon,lat\nbild_ä.tif,1,2\n".encode("latin-1"))
    assert main(["data", "verify", str(tmp_path)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{tmp_path / 'index.csv'} is not UTF-8 text" in line and "save it as UTF-8" in line
    (tmp_path / "index.csv").write_bytes(b"fn,lon,lat\n\"" + b"x" * 200_000 + b"\",1,2\n")
    assert main(["data", "verify", str(tmp_path)]) == 2
    assert f"{tmp_path / 'index.csv'} is not a CSV table" in one_error_line(capsys.readouterr().err)


def test_cli_verify_reports_malformed_index_lines_and_checks_the_other_rows(tmp_path, capsys):
    """A line of index.csv with too few fields or no file name stopped `data verify` at the first one ("line 3:
    expected 4 fields"), checking nothing else; now verify reports each such line by number and still checks
    every other row (here also finding a truncated image), while reading the index for use still refuses it."""
    names = ["patch_75123.tif", TRUNCATED, "patch_252161.tif"]
    root = _copy_examples(tmp_path / "root", names)
    _truncate(root / "images" / TRUNCATED)
    good = (root / "index.csv").read_text().splitlines()  # header, then the rows of names in order
    lines = [good[0], good[1], "12.5,3.25", good[2], "1,2,https://example.org/x.tif,  ", good[3], "only-one-field"]
    (root / "index.csv").write_text("\n".join(lines) + "\n")
    malformed = {3: "expected 4 fields, got ['12.5', '3.25']", 5: "empty file name in column 'fn'",
                 7: "expected 4 fields, got ['only-one-field']"}  # fmt: skip

    report = verify_s2100k(root)
    assert report.malformed == tuple(malformed.items())
    assert report.status == ("ok", "corrupt", "ok") and report.index.filenames == tuple(names)
    assert not report.all_ok and report.counts()["total"] == 6 and report.counts()["malformed"] == 3
    listing = tmp_path / "problems.csv"
    assert main(["data", "verify", str(root), "--list", str(listing)]) == 1
    out = capsys.readouterr().out
    counts = _table_counts(out)
    assert counts["malformed index line"] == 3 and counts["corrupt / truncated"] == 1 and counts["readable"] == 2
    for line, problem in malformed.items():
        assert f"line {line}  ({problem})" in out
    with listing.open(newline="") as handle:
        rows = [(r["fn"], r["problem"], r["detail"]) for r in csv.DictReader(handle)]
    assert rows[:3] == [(f"line {line}", "malformed", problem) for line, problem in malformed.items()]
    assert rows[3][:2] == (TRUNCATED, "corrupt") and len(rows) == 4

    # read_index alone still refuses the index at its first malformed line; the dataset skips those lines, as it
    # skips rows of bad coordinates or unreadable images (see test_the_dataset_skips_index_lines_that_are_no_row…)
    with pytest.raises(IndexFormatError) as refused:
        read_index(root / "index.csv")
    assert str(refused.value) == f"{root / 'index.csv'}, line 3: {malformed[3]}"


def test_cli_verify_of_an_index_of_malformed_lines_only(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "index.csv").write_text("fn,lon,lat\n,1,2\nx.tif,1\n")
    assert main(["data", "verify", str(tmp_path)]) == 1
    counts = _table_counts(capsys.readouterr().out)
    assert counts["total"] == counts["malformed index line"] == 2 and counts["readable"] == 0


def test_cli_verify_prints_coordinates_as_plain_numbers(tmp_path, capsys):
    """The table showed "lon=np.float64(nan)", a numpy repr."""
    root = _copy_examples(tmp_path / "root", ["patch_75123.tif"])
    rows = list(csv.DictReader((root / "index.csv").open(newline="")))
    rows[0].update(lon="nan", lat="95")
    _write_index(root / "index.csv", rows, ["lat", "lon", "url", "fn"])
    assert main(["data", "verify", str(root)]) == 1
    out = capsys.readouterr().out
    assert "patch_75123.tif  (line 2: lon=nan, lat=95.0)" in out and "np." not in out


def test_cli_verify_quotes_coordinates_that_are_no_numbers_with_their_line(tmp_path, capsys):
    """A coordinate that is no number ("abc", "12,5" in a quoted field, an empty field) was shown as "lon=nan":
    neither what index.csv held nor where. Now it is quoted as read, with its line."""
    root = _copy_examples(tmp_path / "root", ["patch_75123.tif", "patch_70975.tif", "patch_252161.tif"])
    rows = list(csv.DictReader((root / "index.csv").open(newline="")))
    rows[0]["lon"] = "abc"
    rows[1]["lat"] = "12,5"
    rows[2].update(lon="", lat="95")
    _write_index(root / "index.csv", rows, ["lat", "lon", "url", "fn"])
    lines = (root / "index.csv").read_text().splitlines()
    assert '"12,5"' in lines[2] and ",," in lines[3]  # (a quoted field; an empty one)
    expected = {
        rows[0]["fn"]: f"line 2: lon='abc' (not a number), lat={float(rows[0]['lat'])}",
        rows[1]["fn"]: f"line 3: lon={float(rows[1]['lon'])}, lat='12,5' (not a number)",
        rows[2]["fn"]: "line 4: lon='' (not a number), lat=95.0",
    }

    report = verify_s2100k(root)
    assert report.status == ("coordinates",) * 3
    assert dict(zip(report.index.filenames, report.details, strict=True)) == expected
    listing = tmp_path / "problems.csv"
    assert main(["data", "verify", str(root), "--list", str(listing)]) == 1
    out = capsys.readouterr().out
    assert _table_counts(out)["invalid (lon, lat) in the index"] == 3 and "nan" not in out
    for name, detail in expected.items():
        assert f"{name}  ({detail})" in out
    with listing.open(newline="") as handle:
        assert {r["fn"]: r["detail"] for r in csv.DictReader(handle)} == expected


def test_index_lines_are_numbered_as_in_the_file_when_a_quoted_field_spans_lines(tmp_path, capsys):
    """A quoted field holding a newline (a url here) shifted every later line number that verify reported (and
    that reading refused), as records were counted, not lines. Now each row is named by the line it starts on,
    the line `sed -n Np index.csv` or an editor shows."""
    root = _copy_examples(tmp_path / "root", ["patch_75123.tif", "patch_70975.tif", "patch_252161.tif"])
    rows = list(csv.DictReader((root / "index.csv").open(newline="")))
    rows[0]["url"] += "\nmirror: " + rows[0]["url"]  # one row on two lines
    rows[1]["lon"] = "abc"
    rows[2].update(lat="95", url=rows[2]["url"] + "\n\nmirror")  # starts on one line, ends two further
    columns = ["lat", "lon", "url", "fn"]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerow(rows[0])
    text.write("12.5,3.25\n")
    writer.writerows(rows[1:])
    text.write("only-one-field\n")
    (root / "index.csv").write_text(text.getvalue(), newline="")
    lines = text.getvalue().split("\n")

    def line_of(start: str) -> int:  # the number of the one line of the file that starts so (as sed numbers lines)
        (number,) = [n for n, line in enumerate(lines, start=1) if line.startswith(start)]
        return number

    short, lone = line_of("12.5,3.25"), line_of("only-one-field")
    abc, out_of_range = line_of(f"{rows[1]['lat']},abc,"), line_of("95,")
    assert (short, abc, out_of_range, lone) == (4, 5, 6, 9)  # (the file is as meant: records 3, 4, 5 and 6)
    report = verify_s2100k(root)
    assert report.malformed == ((short, "expected 4 fields, got ['12.5', '3.25']"),
                                (lone, "expected 4 fields, got ['only-one-field']"))  # fmt: skip
    assert report.status == ("ok", "coordinates", "coordinates")
    assert report.details[1:] == (
        f"line {abc}: lon='abc' (not a number), lat={float(rows[1]['lat'])}",
        f"line {out_of_range}: lon={float(rows[2]['lon'])}, lat=95.0",
    )
    assert main(["data", "verify", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"line {short}  (expected 4 fields" in out and f"line {lone}  (expected 4 fields" in out
    assert f"(line {abc}: lon='abc'" in out and f"(line {out_of_range}: lon=" in out
    with pytest.raises(IndexFormatError, match=f", line {short}: expected 4 fields"):
        read_index(root / "index.csv")


def test_dataset_reports_invalid_coordinates_as_verify_does(tmp_path, capsys):
    """S2100K verified the index it had read itself, and its report then showed "lon=nan, lat=…" with no line,
    while `satclip data verify` showed the text as read and its line. Both now give the same details."""
    root = _copy_examples(tmp_path / "root", ["patch_75123.tif", "patch_70975.tif", "patch_252161.tif"])
    rows = list(csv.DictReader((root / "index.csv").open(newline="")))
    rows[0]["lon"] = "abc"
    rows[1]["lat"] = "95"
    _write_index(root / "index.csv", rows, ["lat", "lon", "url", "fn"])
    listing = tmp_path / "problems.csv"
    assert main(["data", "verify", str(root), "--list", str(listing)]) == 1
    capsys.readouterr()
    with listing.open(newline="") as handle:
        verified = {r["fn"]: r["detail"] for r in csv.DictReader(handle)}
    assert verified == {
        rows[0]["fn"]: f"line 2: lon='abc' (not a number), lat={float(rows[0]['lat'])}",
        rows[1]["fn"]: f"line 3: lon={float(rows[1]['lon'])}, lat=95.0",
    }
    dataset = S2100K(root, cache=False)
    assert list(dataset.filenames) == [rows[2]["fn"]]
    report = dataset.report
    assert report is not None and report.index is dataset.index  # (verified the index it had read)
    bad = {name: detail for name, status, detail in zip(report.index.filenames, report.status, report.details,
                                                        strict=True) if status != "ok"}  # fmt: skip
    assert bad == verified


def test_points_mode_warns_of_invalid_coordinates_as_verify_shows_them(tmp_path, caplog):
    """With verify="none" (points mode) a skipped row was logged as "row 0: (lon=nan, lat=…)": no text as read,
    and a row number that is no line. It is now named by its file and worded as `satclip data verify` shows it."""
    require(S2_EXAMPLES)
    with (S2_EXAMPLES / "index.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:5]
    rows[0]["lon"] = "abc"
    rows[1]["lat"] = "95"
    rows[3].update(lon="", lat="12,5")
    rows[4]["lon"] = "-200"
    (tmp_path / "images").mkdir()
    _write_index(tmp_path / "index.csv", rows, ["lat", "lon", "url", "fn"])
    with caplog.at_level(logging.WARNING, logger="satclip.data"):
        dataset = S2100K(tmp_path, mode="points")
    assert list(dataset.filenames) == [rows[2]["fn"]]
    first = {
        rows[0]["fn"]: f"line 2: lon='abc' (not a number), lat={float(rows[0]['lat'])}",
        rows[1]["fn"]: f"line 3: lon={float(rows[1]['lon'])}, lat=95.0",
        rows[3]["fn"]: "line 5: lon='' (not a number), lat='12,5' (not a number)",
    }
    report = verify_s2100k(tmp_path)  # (the images are missing: only the coordinates' details are compared)
    assert {n: d for n, s, d in zip(report.index.filenames, report.status, report.details, strict=True)
            if s == "coordinates"} == {**first, rows[4]["fn"]: f"line 6: lon=-200.0, lat={float(rows[4]['lat'])}"}
    shown = "; ".join(f"{name} ({detail})" for name, detail in first.items())
    assert f"{tmp_path / 'index.csv'}: skipping 4 row(s) with invalid (lon, lat) in the index: {shown}; … and 1 more."\
        in caplog.text  # fmt: skip
    assert "nan" not in caplog.text and "row 0" not in caplog.text


def test_cli_verify_checks_the_list_path_before_verifying(tmp_path, capsys):
    """--list under a regular file verified everything, then failed on a hidden temporary's "Not a directory"."""
    root = _copy_examples(tmp_path / "root", ["patch_75123.tif"])
    (tmp_path / "notes.csv").write_text("mine\n")
    assert main(["data", "verify", str(root), "--list", str(tmp_path / "notes.csv" / "problems.csv")]) == 2
    captured = capsys.readouterr()
    assert f"{tmp_path / 'notes.csv'} is a file, not a directory" in one_error_line(captured.err)
    assert captured.out == ""  # refused before the work: no table


def test_an_index_naming_a_coordinate_column_twice_is_refused(tmp_path, capsys):
    """`fn,lon,lat,lat` was read with its last lat (zeros here): every image on the equator, "readable 20"."""
    root = _copy_examples(tmp_path / "root")
    lines = (root / "index.csv").read_text().splitlines()
    (root / "index.csv").write_text("\n".join([lines[0] + ",lat", *(line + ",0" for line in lines[1:])]) + "\n")
    assert main(["data", "verify", str(root)]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {root / 'index.csv'}: its header names column(s) ['lat'] more than once; give every "
        "column its own name"
    )


def test_the_dataset_skips_index_lines_that_are_no_row_as_verify_does(tmp_path, caplog):
    """`satclip data verify` reports a line of two fields and skips it; training refused the whole root over it
    ("line 22: expected 4 fields")."""
    root = _copy_examples(tmp_path / "root")
    whole = len(read_index(root / "index.csv").filenames)
    with (root / "index.csv").open("a") as handle:
        handle.write("only,two\n")
    with caplog.at_level(logging.WARNING, logger="satclip.data"):
        dataset = S2100K(root, cache=False)
    assert len(dataset) == whole
    assert f"{root / 'index.csv'}: skipping 1 line(s) that are no row (first: line {whole + 2}, " in caplog.text


def test_a_root_without_a_usable_image_is_bad_input(tmp_path, capsys):
    """It ended as "unexpected error (RuntimeError): no usable samples …; please report it", exit 1."""
    root = _copy_examples(tmp_path / "root")
    for image in (root / "images").iterdir():
        image.write_bytes(b"")
    with pytest.raises(BadInputError, match=rf"no usable samples in {re.escape(str(root))}: run `satclip data verify"):
        S2100K(root, cache=False)


def test_a_full_read_names_gdals_reason_for_a_damaged_image(tmp_path):
    """Bytes overwritten in the middle of an image: its detail was "RasterioIOError: Read failed. See previous
    exception for details.", an exception never shown."""
    root = _copy_examples(tmp_path / "root", ["patch_526850.tif"])
    image = root / "images" / "patch_526850.tif"
    data = bytearray(image.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 5000] = bytes(range(256)) * 19 + bytes(136)
    image.write_bytes(bytes(data))
    report = verify_s2100k(root, CheckSpec(full=True), use_cache=False)
    assert report.status == ("corrupt",), report.details
    assert "previous exception" not in report.details[0] and "IReadBlock failed" in report.details[0], report.details


def test_a_quote_never_closed_is_named_not_shown(tmp_path, capsys):
    """A quote never closed made the rest of the file one row, shown whole as the line's detail (megabytes for
    S2-100K); a long short row is cut."""
    root = _copy_examples(tmp_path / "root")
    lines = (root / "index.csv").read_text().splitlines()
    long_row = "x" * 500 + ",1"
    text = "\n".join([*lines[:3], long_row, '"patch_1.tif,1,2', *lines[3:]]) + "\n"
    (root / "index.csv").write_text(text)
    malformed: list = []
    read_index(root / "index.csv", malformed=malformed)
    (line_long, long_problem), (line_quote, quote_problem) = malformed
    assert line_long == 4 and long_problem.endswith(" …") and len(long_problem) < 260, long_problem
    assert line_quote == 5 and quote_problem == (
        f"expected 4 fields; a quoted field opened on this line runs on over {len(lines) - 2} more line(s): is its "
        "closing quote missing?"  # (the lines after it, and the file's last line break)
    )


def test_verify_names_files_the_index_does_not_list(tmp_path, capsys):
    """Files in images/ that no index row names (a name in another case, an index missing rows) are never checked
    nor used, and verify said nothing of them; it lists them now, without failing the dataset for them."""
    root = _copy_examples(tmp_path / "root", ["patch_75123.tif", "patch_252161.tif"])
    (root / "images" / "Patch_75123.TIF").write_bytes((root / "images" / "patch_75123.tif").read_bytes())
    (root / "images" / "sub").mkdir()
    (root / "images" / "sub" / "extra.tif").write_bytes(b"x")
    (root / "images" / ".hidden").write_bytes(b"x")  # (hidden: satclip's temporaries and the like)
    report = verify_s2100k(root, use_cache=False)
    assert report.unlisted == ("Patch_75123.TIF", "sub/extra.tif") and report.all_ok
    assert main(["data", "verify", str(root)]) == 0
    assert ("not in the index (not checked, not used): 2 file(s) in images/: Patch_75123.TIF, sub/extra.tif"
            in capsys.readouterr().out)  # fmt: skip


def test_verify_list_writes_the_files_the_index_does_not_list(tmp_path, capsys):
    """`verify --list` wrote only the index's problems: files in images/ the index does not list were shown (at most
    --show of them) in the table and left out of the CSV, which held only its header."""
    root = _copy_examples(tmp_path / "root", ["patch_75123.tif", MISSING])
    (root / "images" / MISSING).unlink()
    extras = [f"extra_{i}.tif" for i in range(5)]
    for name in extras:
        (root / "images" / name).write_bytes(b"x")
    listing = tmp_path / "problems.csv"
    assert main(["data", "verify", str(root), "--show", "1", "--list", str(listing)]) == 1  # (the missing file)
    assert "… and 4 more" in capsys.readouterr().out
    with listing.open(newline="") as handle:
        rows = [(r["fn"], r["problem"], r["detail"]) for r in csv.DictReader(handle)]
    assert rows == [(MISSING, "missing", "not found")] + [
        (name, "unlisted", "not in the index (not checked, not used)") for name in extras
    ]
    # files the index does not list fail nothing
    shutil.copyfile(S2_EXAMPLES / "images" / MISSING, root / "images" / MISSING)
    assert main(["data", "verify", str(root), "--list", str(listing), "--overwrite"]) == 0
    assert len(listing.read_text().splitlines()) == 1 + len(extras)


def test_a_no_data_image_that_passes_the_header_check_is_left_out_of_a_cache_and_replaced_in_training(
    tmp_path, caplog
):
    """A constant (no-data) patch passes the default header check; `data verify --full` called it corrupt, but
    `cache build` stored its features and training used it as an image. Its pixels are read anyway: it is now
    treated as an unreadable file (left out of a cache, replaced by the next sample in training)."""
    from satclip import image
    from satclip.data.s2100k import UnreadableSampleError
    from satclip.train.cache import build_cache
    from satclip.train.sources import create_source

    names = ["patch_75123.tif", "patch_70975.tif", "patch_252161.tif"]
    root = _copy_examples(tmp_path / "root", names)
    _rewrite(root / "images" / names[1], np.zeros((12, 256, 256), np.uint16))
    dataset = S2100K(root, cache=False)
    assert len(dataset) == 3  # it passes the header check
    with caplog.at_level(logging.WARNING, logger="satclip.data"):
        sample = dataset[1]
    assert f"{root / 'images' / names[1]} (ValueError: constant image: every pixel value is 0" in caplog.text
    torch.testing.assert_close(sample["image"], dataset[2]["image"], rtol=0, atol=0)
    with pytest.raises(UnreadableSampleError, match="constant image"):
        dataset.skipping_unreadable()[1]
    encoder = image.create("mosaiks", in_chans=13, num_filters=4, kernel_size=3, embed_dim=8)
    encoder.fit(torch.rand(4, 13, 32, 32, generator=torch.Generator().manual_seed(0)), seed=0)
    cache = build_cache(tmp_path / "cache", encoder, create_source("s2100k", str(root)), views=1, dtype="float32")
    assert cache.manifest["skipped"] == [1] and len(cache) == 2


def test_an_image_georeferenced_elsewhere_than_its_index_row_is_named(tmp_path, capsys):
    """An image whose georeference puts it at 100°E 10°N while its index row says 25°E 13°S passed verify, the
    default and --full alike, and was cached and trained on as an image of the row's place. Its centre is
    checked against the row now, and checked again when the index changes (the file does not)."""
    rasterio = pytest.importorskip("rasterio")
    from affine import Affine

    root = _copy_examples(tmp_path / "root")
    name = sorted(p.name for p in (root / "images").iterdir())[0]
    with rasterio.open(root / "images" / name, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:
        dst.crs = "EPSG:4326"
        dst.transform = Affine(1e-4, 0.0, 100.0, 0.0, -1e-4, 10.0)  # (the north-west corner at 100°E 10°N)
    assert main(["data", "verify", str(root), "--list", str(tmp_path / "problems.csv")]) == 1
    assert "georeferenced elsewhere than its index row" in capsys.readouterr().out
    listed = pd.read_csv(tmp_path / "problems.csv")
    assert listed.fn.tolist() == [name] and listed.problem.tolist() == ["location"]
    assert re.fullmatch(r"its centre is [\d,]+ km from the index's \(.*\)", listed.detail[0])
    # the index moved to where the image is: the cached result is not reused
    rows = pd.read_csv(root / "index.csv")
    rows.loc[rows.fn == name, ["lon", "lat"]] = [100.0128, 9.9872]
    rows.to_csv(root / "index.csv", index=False)
    assert main(["data", "verify", str(root)]) == 0


def test_verify_workers_are_capped_as_data_num_workers_is(tmp_path, capsys):
    """`satclip data verify ROOT --workers 100000` was accepted, and started a thread per row."""
    from satclip.machine import max_workers

    root = require(S2_EXAMPLES)
    most = max_workers()
    assert main(["data", "verify", str(root), "--workers", str(most + 1)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"satclip data verify: error: argument --workers: must be at most {most} (4 per core of this machine or 64, "
        f"whichever is more), got {most + 1} (see satclip data verify --help)"
    )
    for workers in (most + 1, 0):
        with pytest.raises(ValueError, match=rf"^workers={workers} must be an integer from 1 to {most} \(4 per core "
                                             r"of this machine or 64, whichever is more\)$"):
            verify_s2100k(root, workers=workers)
    assert main(["data", "verify", str(root), "--workers", str(most)]) == 0


def test_an_index_without_a_header_is_told_to_add_one(tmp_path, capsys):
    """An index.csv whose first line is a row (`patch_75123.tif,-68.2,-54.1`) "has columns [...] which match no known
    index layout": it was told to rename columns it does not have."""
    (tmp_path / "images").mkdir()
    (tmp_path / "index.csv").write_text("patch_75123.tif,-68.2,-54.1\npatch_70975.tif,9.5,36.0\n")
    assert main(["data", "verify", str(tmp_path)]) == 2
    assert one_error_line(capsys.readouterr().err) == (
        f"satclip: error: {tmp_path / 'index.csv'} has no header row: its first line 'patch_75123.tif,-68.2,-54.1' "
        "holds values, not column names; add a first line naming the columns in their order, the file name 'fn' and "
        "the coordinates 'lon' and 'lat' in degrees (e.g. fn,lon,lat; known layouts: s2-100k: fn,lon,lat; "
        "satclip-examples: lat,lon,url,fn)"
    )
