"""Training from images (``data.source: images``) on the S2-100K example patches: the frozen backbone is
run as the feature cache runs it, and fixed-size backbones (ViT) get their input size from the source."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from satclip.train import fit, from_dict

from .conftest import S2_EXAMPLES, require, users_output
from .train_helpers import SMALL_LOCATION


def _config(tmp_path, encoder: dict, **data) -> dict:
    return {
        "model": {"image_encoder": encoder, "embed_dim": 8, "location_encoder": SMALL_LOCATION},
        "data": {"source": "images", "dataset": "s2100k", "root": str(require(S2_EXAMPLES)), "batch_size": 4,
                 "val_fraction": 0.2, **data},
        "trainer": {"max_epochs": 2, "output_dir": str(tmp_path / "run"), "enable_progress_bar": False,
                    "accelerator": "cpu", "limit_train_batches": 1, "limit_val_batches": 1},
    }  # fmt: skip


def test_a_frozen_backbone_keeps_its_batch_norm_statistics_when_training_from_images(tmp_path):
    import satclip
    from satclip.train.build import build_image_encoder

    config = from_dict(_config(tmp_path, {"name": "moco_resnet18"}))  # (2 epochs: a validation in between)
    result = fit(config)
    frozen = build_image_encoder({"name": "moco_resnet18"}, embed_dim=8, seed=0)  # the run's backbone, untrained
    trained = result.model.visual
    for name, buffer in frozen.named_buffers():  # running means, variances and batch counts untouched
        assert torch.equal(trained.get_buffer(name), buffer), name
    exported = satclip.load_model(result.exports["last"].native)
    torch.testing.assert_close(exported.visual.bn1.running_mean, frozen.bn1.running_mean, rtol=0, atol=0)


def _four_patches(tmp_path):
    """An S2-100K root with the first 4 example patches (ViT-S/16 on a CPU is slow)."""
    root = tmp_path / "s2"
    (root / "images").mkdir(parents=True)
    rows = (require(S2_EXAMPLES) / "index.csv").read_text().splitlines()[:5]
    (root / "index.csv").write_text("\n".join(rows) + "\n")
    for row in rows[1:]:
        name = row.rsplit(",", 1)[1]
        (root / "images" / name).symlink_to(S2_EXAMPLES / "images" / name)
    return root


def test_a_fixed_size_backbone_trains_and_caches_from_sentinel2_patches(tmp_path, capsys):
    """moco_vit16 takes 224×224 px: `satclip cache build` and `satclip train` failed on the 256 px patches with
    advice to call satclip.image.center_crop — a Python fix for a CLI user. The source now cuts its views to the
    encoder's size, as the original's ViT runs did (crop_size 224: random crops in training)."""
    import numpy as np
    import yaml

    from satclip.cli import main
    from satclip.image import center_crop
    from satclip.train import load_config
    from satclip.train.cache import FeatureCache
    from satclip.train.prepare import source_from_config

    root = _four_patches(tmp_path)
    config = _config(tmp_path, {"name": "moco_vit16"}, root=str(root), val_fraction=0.25, cache_views=2,
                     cache=str(tmp_path / "cache"))  # fmt: skip
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    source = source_from_config(load_config(path))
    image = source.raw(0)[0]
    view = source.train_view(image, torch.Generator().manual_seed(0))
    assert tuple(view.shape) == (13, 224, 224)
    resnet = source_from_config(load_config(path, {"model.image_encoder.name": "moco_resnet18"}))
    assert torch.equal(source.eval_view(image), center_crop(resnet.eval_view(image), 224))  # (resnets: 256 px)

    assert main(["cache", "build", "--config", str(path)]) == 0
    cache = FeatureCache.open(tmp_path / "cache")
    assert (len(cache), cache.views, cache.feature_dim) == (4, 2, 384)
    assert np.isfinite(np.asarray(cache.features, dtype=np.float32)).all()
    assert main(["train", "--config", str(path), "--data.source", "images"]) == 0
    assert (tmp_path / "run" / "export" / "last" / "model.safetensors").is_file()
    capsys.readouterr()


def test_mosaiks_is_fitted_on_the_training_images_when_training_from_them(tmp_path):
    """MOSAIKS samples its filters from images: `satclip train` with data.source images never fitted them and
    ended in 'unexpected error (RuntimeError): MOSAIKS filters are not fitted'. The run fits them as `cache
    build` does (256 images drawn with the run's seed), the exported model keeps them, and a resume keeps
    the filters it trained with."""
    import satclip
    from satclip.image.mosaiks import Mosaiks
    from satclip.train.prepare import fit_from_data, source_from_config

    encoder = {"name": "mosaiks", "in_chans": 13, "num_filters": 8, "kernel_size": 3}
    config = from_dict(_config(tmp_path, encoder))
    result = fit(config)
    expected = Mosaiks(in_chans=13, num_filters=8, kernel_size=3, embed_dim=8)
    fit_from_data(expected, source_from_config(config), seed=config.trainer.seed)
    exported = satclip.load_model(result.exports["last"].native)
    assert bool(exported.visual.fitted)
    torch.testing.assert_close(exported.visual.filters, expected.filters, rtol=0, atol=0)
    resumed = fit(from_dict({**_config(tmp_path, encoder), "trainer": {**_config(tmp_path, encoder)["trainer"],
                                                                         "max_epochs": 3}}), resume=True)  # fmt: skip
    torch.testing.assert_close(resumed.model.visual.filters, expected.filters, rtol=0, atol=0)


@pytest.mark.parametrize("where", ["a file", "a user's directory"])
def test_a_cache_directory_that_would_be_refused_is_refused_before_fitting(tmp_path, monkeypatch, where):
    """`cache build` with data.cache a file or a directory of the user's fitted the MOSAIKS filters on the images
    (minutes on a large dataset) and only then refused the output."""
    from satclip.errors import OutputExistsError
    from satclip.train import prepare

    target = tmp_path / "cache"
    mine = users_output(target, as_file=where == "a file")
    monkeypatch.setattr(prepare, "fit_from_data", lambda *a, **k: pytest.fail("the filters were fitted first"))
    config = from_dict(_config(tmp_path, {"name": "mosaiks", "in_chans": 13, "num_filters": 8, "kernel_size": 3},
                               source="cache", cache=str(target)))  # fmt: skip
    with pytest.raises(OutputExistsError):
        prepare.cache_from_config(config)
    assert mine.read_text() == "mine"


def _patches(tmp_path, count: int):
    """An S2-100K root with the first ``count`` example patches (an index.csv of its own, to be edited)."""
    root = tmp_path / "s2"
    (root / "images").mkdir(parents=True)
    rows = (require(S2_EXAMPLES) / "index.csv").read_text().splitlines()[: count + 1]
    (root / "index.csv").write_text("\n".join(rows) + "\n")
    for row in rows[1:]:
        name = row.rsplit(",", 1)[1]
        (root / "images" / name).symlink_to(S2_EXAMPLES / "images" / name)
    return root


MOSAIKS = {"name": "mosaiks", "in_chans": 13, "num_filters": 4, "kernel_size": 3}


def test_a_resume_on_other_images_is_refused(tmp_path, caplog):
    """A run on images resumed after a row was dropped from index.csv trained on without a word, its
    train/validation split drawn anew over the other samples: validation images were trained on. The checkpoint
    records the images' fingerprint, and a resume on others is refused; one of an older satclip resumes, warned."""
    import logging

    from satclip.errors import ResumeMismatchError
    from satclip.train.callbacks import checksum_path

    root = _patches(tmp_path, 6)
    config = _config(tmp_path, MOSAIKS, root=str(root))
    config["trainer"]["max_epochs"] = 1
    fit(from_dict(config))
    more = {**config, "trainer": {**config["trainer"], "max_epochs": 2}}
    index = root / "index.csv"
    whole = index.read_text()
    index.write_text("".join(whole.splitlines(keepends=True)[:-1]))  # one image fewer
    with pytest.raises(ResumeMismatchError, match=r"the images of data.root differ from those it trained on \(5 "
                                                  r"samples now, 6 when it trained\).*give data.root the images"):
        fit(from_dict(more), resume=True)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["hyper_parameters"]["dataset_key"]["size"] == 6
    del checkpoint["hyper_parameters"]["dataset_key"]  # (as a checkpoint of an older satclip)
    torch.save(checkpoint, last)
    checksum_path(last).unlink()
    index.write_text(whole)
    with caplog.at_level(logging.WARNING, logger="satclip"):
        assert len(fit(from_dict(more), resume=True).history) == 2
    assert f"{last} records no fingerprint of the images it trained on" in caplog.text


def test_an_unreadable_image_is_replaced_by_one_of_its_own_split(tmp_path, caplog):
    """An image whose file went bad after the dataset was verified was replaced by the next sample of the whole
    dataset, which could be a validation sample: trained on (twice per epoch). It is replaced by the next readable
    sample of its own split, and named."""
    import logging
    import shutil

    import numpy as np

    from satclip.train.data import split_indices
    from satclip.train.datamodule import PairDataModule
    from satclip.train.prepare import source_from_config

    root = _patches(tmp_path, 8)
    for image in (root / "images").iterdir():  # (copies: one is damaged)
        target = image.resolve()
        image.unlink()
        shutil.copyfile(target, image)
    config = from_dict(_config(tmp_path, MOSAIKS, root=str(root), val_fraction=0.25, coord_jitter=0.0))
    train, val = split_indices(8, 0.25, config.trainer.seed)
    bad = next(int(i) for i in train if i + 1 in val)  # (its next sample is a validation sample)
    source = source_from_config(config)  # (verified: the file breaks afterwards)
    path = root / "images" / source.dataset.filenames[bad]
    path.write_bytes(path.read_bytes()[:5000])
    module = PairDataModule(config.data, config.trainer.seed, source=source)
    with caplog.at_level(logging.WARNING, logger="satclip"):
        trained = np.concatenate([batch["lonlat"].numpy() for batch in module.train_dataloader()])
    points = source.dataset.points.numpy()
    assert not any((trained == points[i]).all(axis=1).any() for i in [*val, bad])
    assert len(trained) == len(train)
    assert f"cannot read {path} (" in caplog.text
    assert "the next readable training sample in no rank's share of its batch is used" in caplog.text


class _OneUnreadable(torch.utils.data.Dataset):
    """``n`` tiny images with points, the file of sample ``bad`` (or of each of them) unreadable (as S2-100K's
    reading with ``skipping_unreadable()``)."""

    def __init__(self, n: int, bad: int | tuple[int, ...]):
        from .train_helpers import TinyImages

        self.images, self.bad = TinyImages(n), {bad} if isinstance(bad, int) else set(bad)

    def __len__(self) -> int:
        return len(self.images)

    def skipping_unreadable(self):
        return self

    def __getitem__(self, index: int) -> dict:
        from satclip.data.s2100k import UnreadableSampleError

        if index in self.bad:
            raise UnreadableSampleError(Path(f"{index}.tif"), f"cannot read {index}.tif (damaged)")
        return self.images[index]


@pytest.mark.parametrize("train", [True, False])
def test_an_unreadable_image_is_not_replaced_by_a_pair_of_its_own_batch(train, caplog):
    """The next readable sample of the split replaced an unreadable one even where it was in the batch already: that
    pair was twice in the batch, its own negative in the contrastive loss (a feature cache leaves such an image out).
    The substitute is one not in the batch; where every other sample of the split is in it, one of the batch is used
    twice (saying so): the batch keeps its size, which the loss's gather over DDP ranks needs (it left the image out).
    """
    import logging

    import numpy as np

    from satclip.train.data import BatchSpec, ImagePairs
    from satclip.train.sources import PairSource

    dataset = _OneUnreadable(10, bad=3)
    pairs = ImagePairs(PairSource(dataset=dataset, fingerprint="one-unreadable"), train=train, seed=0)
    points = dataset.images.points.numpy()
    with caplog.at_level(logging.WARNING, logger="satclip"):
        batch = pairs[BatchSpec(0, 0, 0, np.arange(6))]  # (4, the next one, is in it)
    assert len(batch["image"]) == 6
    np.testing.assert_array_equal(batch["lonlat"].numpy(), points[[0, 1, 2, 6, 4, 5]])  # (no jitter)
    assert "cannot read 3.tif (damaged): the next readable" in caplog.text
    with caplog.at_level(logging.WARNING, logger="satclip"):
        whole = pairs[BatchSpec(0, 1, 0, np.arange(10))]  # (every other sample is in it)
    np.testing.assert_array_equal(whole["lonlat"].numpy(), points[[0, 1, 2, 4, 4, 5, 6, 7, 8, 9]])
    assert "sample 3 cannot be read" in caplog.text and "sample 4 of the batch is used twice" in caplog.text


def test_an_unreadable_image_is_not_replaced_by_a_pair_another_rank_holds():
    """Under DDP the loss gathers every rank's pairs; a substitute avoided only this rank's share of the global batch,
    so it could be a pair another rank holds (rank 0 replaced 3 by 4, rank 1's): the gathered batch held it twice.
    Substitutes avoid the whole global batch, and two ranks replacing one each never take the same sample."""
    import numpy as np

    from satclip.train.data import EpochBatchSampler, ImagePairs
    from satclip.train.sources import PairSource

    dataset = _OneUnreadable(16, bad=(3, 5))
    pairs = ImagePairs(PairSource(dataset=dataset, fingerprint="two-unreadable"), train=False, seed=0)
    points = dataset.images.points.numpy()
    ranks = [EpochBatchSampler(np.arange(16), 4, shuffle=False, seed=0, rank=r, world_size=2) for r in range(2)]
    for specs in zip(*ranks, strict=True):
        batches = [pairs[spec]["lonlat"].numpy() for spec in specs]
        assert [len(b) for b in batches] == [4, 4]  # (the gather needs equal batches)
        gathered = np.concatenate(batches)
        assert len(np.unique(gathered, axis=0)) == len(gathered)
        assert not any((gathered == points[i]).all(axis=1).any() for i in (3, 5))


@pytest.mark.parametrize("limit, quick, batches", [(1.0, 0, "4"), (0.5, 0, "2 of 4"),
                                                   (1.0, 1, "1 of 4 (trainer.fast_dev_run)")])  # fmt: skip
def test_a_run_from_images_says_what_it_trains_on_as_it_starts(tmp_path, capsys, limit, quick, batches):
    """Its stderr no terminal, a run from images said nothing until its first epoch ended: now its first line names
    the images, their split and the batches per epoch (as a run from a feature cache says it of the cache's)."""
    import yaml

    from satclip.cli import main

    config = _config(tmp_path, {"name": "moco_resnet18"})
    config["trainer"].update(max_epochs=1, limit_train_batches=limit, fast_dev_run=quick)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", "--config", str(tmp_path / "config.yaml")]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (f"training on 20 images of {S2_EXAMPLES}: 16 for training, 4 for validation (data.val_fraction "
                        f"0.2); {batches} batch(es) of 4 per epoch"), lines
    assert lines[1].startswith("epoch 1 of 1: ")
