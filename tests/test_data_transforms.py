"""The S2 transforms: eval version against the original's preprocessing, train version's randomness."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from satclip.data import S2100K, s2_transform
from satclip.data import functional as Fn

from .conftest import REFERENCE, S2_EXAMPLES, require


@pytest.fixture(scope="module")
def examples():
    pytest.importorskip("rasterio")
    require(S2_EXAMPLES)
    return S2100K(S2_EXAMPLES, cache=False)


@pytest.fixture(scope="module")
def raw_sample(examples):
    return examples[0]


def test_eval_transform_equals_the_original_preprocessing(examples):
    expected = np.load(require(REFERENCE / "expected.npz"))
    assert list(examples.filenames) == expected["patch_files"].tolist()
    transform = s2_transform(train=False)
    for i in range(len(examples)):
        sample = transform(examples[i])
        image = sample["image"].numpy()
        assert image.shape == (13, 256, 256) and image.dtype == np.float32
        assert hashlib.sha256(image.tobytes()).hexdigest() == expected["patch_preprocessed_sha256"][i]
        np.testing.assert_array_equal(image.astype(np.float64).mean(axis=(1, 2)),
                                      expected["patch_preprocessed_band_mean"][i])
        np.testing.assert_array_equal(sample["point"].numpy(), expected["patch_lonlat"][i])
        assert sample["point"].dtype == torch.float64
    assert not (image[10] != 0).any()  # B10 is all zeros


def test_eval_transform_accepts_numpy_and_centre_crops(raw_sample):
    from_numpy = s2_transform(False)({"image": raw_sample["image"].numpy().astype(np.uint16)})["image"]
    torch.testing.assert_close(from_numpy, s2_transform(False)(raw_sample)["image"], rtol=0, atol=0)
    cropped = s2_transform(False, crop_size=224)(raw_sample)["image"]
    torch.testing.assert_close(cropped, from_numpy[:, 16:240, 16:240], rtol=0, atol=0)


def torchvision_offset(margin: int) -> int:
    """torchvision's CenterCrop offset ``int(round(margin / 2.0))``, with the round-half-to-even written out
    in integers: an odd margin 2k + 1 rounds k + 0.5 to the even one of k and k + 1."""
    k = margin // 2
    return k + 1 if margin % 2 == 1 and k % 2 == 1 else k


def test_center_crop_follows_torchvision_offsets():
    """Every margin 0 … 40 on both axes, numpy and torch: the window starts at torchvision's offsets. The
    range covers margins ≡ 3 (mod 4), where flooring (margin // 2) puts the window one row higher."""
    from satclip.image import preprocess

    assert Fn.center_crop is preprocess.center_crop  # one implementation for the transforms and the CLI
    size = 5
    margins = range(41)
    assert any(torchvision_offset(d) != d // 2 for d in margins)  # the check tells the conventions apart
    for dh in margins:
        for dw in (0, 1, 3, 6, 7):
            h, w = size + dh, size + dw
            image = np.arange(2 * h * w).reshape(2, h, w)
            top, left = torchvision_offset(dh), torchvision_offset(dw)
            want = image[:, top : top + size, left : left + size]
            np.testing.assert_array_equal(preprocess.center_crop(image, size), want)
            assert torch.equal(Fn.center_crop(torch.from_numpy(image), size), torch.from_numpy(want))
    with pytest.raises(ValueError, match="cannot centre-crop 4×9 images to 5×5"):
        Fn.center_crop(torch.zeros(1, 4, 9), size)


def test_eval_transform_centre_crop_on_an_odd_margin(raw_sample):
    """256 → 253 leaves a margin of 3: torchvision (and the eval transform) start at row and column 2."""
    full = s2_transform(False)(raw_sample)["image"]
    cropped = s2_transform(False, crop_size=253)(raw_sample)["image"]
    torch.testing.assert_close(cropped, full[:, 2:255, 2:255], rtol=0, atol=0)


def test_train_transform_is_reproducible_for_a_seed(raw_sample):
    def run(seed):
        transform = s2_transform(train=True, seed=seed)
        return [transform(raw_sample) for _ in range(4)]

    a, b, c = run(0), run(0), run(1)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x["image"], y["image"], rtol=0, atol=0)
        torch.testing.assert_close(x["point"], y["point"], rtol=0, atol=0)
    assert not torch.equal(a[0]["point"], c[0]["point"])
    assert not all(torch.equal(x["image"], y["image"]) for x, y in zip(a, c, strict=True))
    # successive calls differ (the stream advances)
    assert not torch.equal(a[0]["point"], a[1]["point"])
    assert a[0]["image"].shape == (13, 256, 256) and a[0]["image"].dtype == torch.float32
    # the image and point parts used on their own draw from the same seeded stream
    alone = s2_transform(train=True, seed=0)
    torch.testing.assert_close(alone.image(raw_sample["image"]), a[0]["image"], rtol=0, atol=0)


def test_train_draws_follow_torchvision_order(raw_sample):
    """crop (no draw at 256) → hflip rand(1) → vflip rand(1) → sigma uniform_ → jitter rand(2)."""
    transform = s2_transform(train=True, seed=7)
    out = transform(raw_sample)
    g = torch.Generator().manual_seed(7)
    x = s2_transform(train=False)(raw_sample)["image"]
    if torch.rand(1, generator=g) < 0.5:
        x = x.flip(-1)
    if torch.rand(1, generator=g) < 0.5:
        x = x.flip(-2)
    sigma = torch.empty(1).uniform_(0.1, 2.0, generator=g).item()
    x = Fn.gaussian_blur(x, 3, sigma)
    point = raw_sample["point"] + torch.rand(2, generator=g) * 0.01
    torch.testing.assert_close(out["image"], x, rtol=0, atol=0)
    torch.testing.assert_close(out["point"], point, rtol=0, atol=0)


def test_seed_none_uses_the_global_generator(raw_sample):
    transform = s2_transform(train=True, seed=None)
    torch.manual_seed(3)
    a = transform({"point": raw_sample["point"]})
    torch.manual_seed(3)
    b = transform({"point": raw_sample["point"]})
    torch.testing.assert_close(a["point"], b["point"], rtol=0, atol=0)


def test_coordinate_jitter_one_sided_and_symmetric():
    point = torch.tensor([10.0, 20.0], dtype=torch.float64)
    one = s2_transform(train=True, seed=0)
    sym = s2_transform(train=True, seed=0, jitter_mode="symmetric")
    d_one = torch.stack([one({"point": point})["point"] - point for _ in range(400)])
    d_sym = torch.stack([sym({"point": point})["point"] - point for _ in range(400)])
    assert d_one.dtype == torch.float64
    assert (d_one >= 0).all() and (d_one < 0.01).all() and d_one.mean() > 0.004
    assert (d_sym.abs() < 0.01).all() and (d_sym < 0).any() and (d_sym > 0).any()
    assert abs(float(d_sym.mean())) < 0.001
    # jitter past the antimeridian wraps instead of leaving [-180, 180]
    edge = torch.tensor([179.9999, 0.0], dtype=torch.float64)
    wrapped = torch.stack([one({"point": edge})["point"] for _ in range(50)])
    assert (wrapped[:, 0].abs() <= 180).all() and (wrapped[:, 0] < 0).any()
    assert s2_transform(train=False)({"point": edge})["point"].equal(edge)


def test_random_crop_and_flips(raw_sample):
    x = s2_transform(train=False)(raw_sample)["image"]
    g, twin = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    offsets = set()
    for _ in range(5):
        crop = Fn.random_crop(x, 200, g)
        top, left = (int(torch.randint(0, 57, (1,), generator=twin)) for _ in range(2))  # torchvision's draws
        torch.testing.assert_close(crop, x[:, top : top + 200, left : left + 200], rtol=0, atol=0)
        offsets.add((top, left))
    assert len(offsets) > 1
    assert Fn.random_crop(x, 256, g) is x
    with pytest.raises(ValueError, match="256×256 image to 300×300"):
        Fn.random_crop(x, 300, g)
    flipped = {Fn.random_flip(x, -1, generator=g).equal(x.flip(-1)) for _ in range(20)}
    assert flipped == {True, False}


def test_gaussian_blur_matches_scipy():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    image = rng.random((3, 20, 17)).astype(np.float32)
    for sigma in (0.1, 0.7, 2.0):
        offsets = np.array([-1.0, 0.0, 1.0])
        k1 = np.exp(-0.5 * (offsets / sigma) ** 2)
        k1 /= k1.sum()
        kernel = np.outer(k1, k1)
        bands = [ndimage.convolve(band.astype(np.float64), kernel, mode="mirror") for band in image]
        expected = np.stack(bands)
        actual = Fn.gaussian_blur(torch.from_numpy(image), 3, sigma).numpy()
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        Fn.gaussian_blur(torch.from_numpy(image), 4, 1.0)


def test_points_only_samples_and_bad_options():
    point = torch.tensor([1.0, 2.0], dtype=torch.float64)
    out = s2_transform(train=True)({"point": point})
    assert set(out) == {"point"}
    with pytest.raises(ValueError, match="jitter_mode"):
        s2_transform(train=True, jitter_mode="both")
    with pytest.raises(ValueError, match="blur_sigma"):
        s2_transform(train=True, blur_sigma=(0.0, 1.0))


class _Points(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return self.transform({"point": torch.zeros(2, dtype=torch.float64)})


def test_dataloader_workers_draw_different_reproducible_jitter():
    dataset = _Points()
    dataset.transform = s2_transform(train=True, seed=0)

    def run():
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=1, num_workers=2, generator=torch.Generator().manual_seed(0)
        )
        return torch.cat([batch["point"] for batch in loader])

    first, second = run(), run()
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    # batches alternate between the two workers: worker 0 gets 0, 2, …, worker 1 gets 1, 3, …
    assert not torch.equal(first[0], first[1])
    assert len({tuple(p.tolist()) for p in first}) == 8
