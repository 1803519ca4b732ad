"""Training from images (``data.source: images``) on the S2-100K example patches: the frozen backbone is
run as the feature cache runs it, and fixed-size backbones (ViT) get their input size from the source."""

from __future__ import annotations

import torch

from satclip.train import fit, from_dict

from .conftest import S2_EXAMPLES, require
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
