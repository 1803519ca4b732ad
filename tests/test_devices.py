"""A device this machine does not have is bad input, named with those it has: satclip.load's device, the
CLI's --device and a training run's trainer.accelerator (not torch's "Torch not compiled with CUDA enabled"
or Lightning's "No supported gpu backend found!")."""

from __future__ import annotations

import pytest
import torch

import satclip
from satclip.errors import BadInputError
from satclip.train import fit, from_dict

from .test_train_fit import cached_config
from .train_helpers import synthetic_cache

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")


def test_load_on_a_device_this_machine_lacks(tmp_path):
    for device in ("cuda", "cuda:1"):
        with pytest.raises(BadInputError, match=rf"'{device}': no cuda device on this machine; available: cpu"):
            satclip.load("bluemarble-l10", device=device)
    with pytest.raises(BadInputError, match="'gpu0' is not a torch device"):
        satclip.load_model("bluemarble-l10", device="gpu0")


def test_training_on_an_accelerator_this_machine_lacks(tmp_path):
    synthetic_cache(tmp_path / "cache", n=50)
    config = from_dict(cached_config(tmp_path / "cache", tmp_path / "run", trainer={"accelerator": "gpu"}))
    with pytest.raises(BadInputError, match="trainer.accelerator='gpu', but this machine has no cuda device"):
        fit(config)
    assert not (tmp_path / "run").exists()


def test_the_meta_device_is_refused_for_what_it_is():
    """`device="meta"` was refused as "no meta device on this machine": every machine has it, and it holds no
    values to compute with."""
    with pytest.raises(BadInputError, match=r"^'meta' holds no values \(shapes only\), so nothing can be computed"):
        satclip.load("bluemarble-l10", device="meta")
