"""The Lightning module: one contrastive objective for both data paths (cached features or images)."""

from __future__ import annotations

import torch

from ..errors import SatclipError
from ..models.clip import SatCLIP
from ..models.loss import ContrastiveLoss
from ..optional import require
from . import precision
from .config import TrainConfig, from_dict
from .data import derived_seed
from .optim import adamw

pl = require("lightning.pytorch", "train", "training")


class DivergedError(SatclipError, RuntimeError):
    """The training loss became non-finite."""


def epoch_metrics(metrics: dict) -> dict[str, float]:
    """Lightning's ``callback_metrics`` as plain epoch-level numbers: ``*_step`` entries dropped, the
    ``_epoch`` suffix removed (``train_loss_epoch`` → ``train_loss``)."""
    out = {}
    for key, value in sorted(metrics.items()):
        if key.endswith("_step"):
            continue
        out[key[: -len("_epoch")] if key.endswith("_epoch") else key] = float(value)
    return out


class SatCLIPTrainingModule(pl.LightningModule):
    """Trains a :class:`~satclip.SatCLIP` (``self.model``) with :class:`~satclip.models.loss.ContrastiveLoss`.

    Batches are ``{"features" | "image": (B, …), "lonlat": (B, 2) float64}``. Logged per step and
    epoch: ``train_loss``, ``val_loss``, ``*_acc_i2l`` / ``*_acc_l2i`` (top-1 retrieval within the
    gathered batch: is a row's best match its own pair?) and ``logit_scale``.

    The global RNG (used only by the SIREN's dropout) is re-seeded from ``(seed, epoch, step, rank)``
    before every training step, so a resumed run draws what an uninterrupted one would.

    Every checkpoint carries the run's resolved config (``hyper_parameters["config"]``, what a resume is
    checked against), the feature cache's key (a run on images: ``dataset_key``, its samples' fingerprint and
    number) and ``checkpoint["satclip"]["metrics"]``: the epoch-level metrics when it was written. Its state-dict
    keys are ``model.*`` (``model.visual.head.*`` for a cached run); checkpoints of earlier satclip versions
    (``pair.*`` keys) are read too.
    """

    def __init__(self, config: dict, model: SatCLIP, image_config: dict, cache_key: dict | None = None,
                 trained_precision: str | None = None, dataset_key: dict | None = None):  # fmt: skip
        super().__init__()
        self.config: TrainConfig = from_dict(config)
        trained_in, self.location_autocast = precision.resolve(self.config.trainer.precision,
                                                               self.config.trainer.accelerator,
                                                               trained=trained_precision)  # fmt: skip
        # (what trainer.precision "auto" resolved to on the machine that started the run: the exports record it)
        # (dataset_key, of a run on images: what a resume checks data.root's samples against, as cache_key a cache)
        self.save_hyperparameters({"config": config, "image_config": image_config, "cache_key": cache_key,
                                   "trained_precision": trained_in, "dataset_key": dataset_key})  # fmt: skip
        self.model = model
        self.loss = ContrastiveLoss()

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        inputs = batch["features"] if "features" in batch else batch["image"]
        if self.location_autocast:  # trainer.precision "bf16" (or "auto" → bf16): satclip.train.precision
            cached = "features" in batch  # then the image side is one linear head: float32
            image = precision.encode_image(self.model, inputs) if cached else self.model.encode_image(inputs)
            location = precision.encode_location(self.model, batch["lonlat"])
            out = precision.float32_loss(self.loss, image, location, self.model.logit_scale)
        else:
            image = self.model.encode_image(inputs)
            location = self.model.encode_location(batch["lonlat"])
            out = self.loss(image, location, self.model.logit_scale)
        size = inputs.shape[0]
        epoch = {"on_step": False, "on_epoch": True, "batch_size": size, "sync_dist": True}
        self.log(f"{stage}_loss", out.loss, prog_bar=True, **{**epoch, "on_step": stage == "train"})
        self.log(f"{stage}_acc_i2l", out.image_to_location_acc, **epoch)
        self.log(f"{stage}_acc_l2i", out.location_to_image_acc, **epoch)
        if stage == "train":
            self.log("logit_scale", self.model.logit_scale.detach(), on_step=True, on_epoch=False, batch_size=size)
        return out.loss

    def training_step(self, batch, batch_idx):
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):  # a step further would save and export a model satclip.load refuses
            raise DivergedError(
                f"training diverged: the training loss is {loss.item()} in epoch {self.current_epoch} (step "
                f"{self.global_step}); nothing was exported: start a new run with a lower optim.lr (now "
                f"{self.config.optim.lr:g})"
            )
        return loss

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        # SatCLIP.train keeps a frozen backbone in eval mode (its batch norms use the running statistics the
        # feature cache uses, and never update them); Lightning 2.6 neither calls module.train() when fitting
        # starts nor after validation (it restores each submodule's flag itself), so it is applied here
        self.model.train()
        # per step, not per epoch: Lightning creates data iterators (which draw from the global RNG) at
        # different moments in a fresh and in a resumed run
        seed = derived_seed("global", self.config.trainer.seed, self.current_epoch, batch_idx, self.global_rank)
        torch.manual_seed(seed)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["satclip"] = {"metrics": epoch_metrics(self.trainer.callback_metrics)}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        cached = self.hparams.get("cache_key") is not None
        checkpoint["state_dict"] = model_state(checkpoint["state_dict"], cached=cached)

    def configure_optimizers(self):
        optimizer = adamw(self.model, self.config.optim)
        if self.config.model.train_degrees_from:
            from .warm_start import keep_lower_degrees

            keep_lower_degrees(optimizer, self.model, self.config.model.train_degrees_from)
        return optimizer


#: key prefixes of the training model in checkpoints of earlier satclip versions → today's
_LEGACY_PREFIXES = {"pair.location.": "model.location.", "pair.logit_scale": "model.logit_scale"}


def model_state(state: dict[str, torch.Tensor], *, cached: bool) -> dict[str, torch.Tensor]:
    """A training checkpoint's ``state_dict`` with today's ``model.*`` keys (earlier versions trained a
    ``pair`` with ``pair.image.*``: the head of a cached run, else the whole image encoder)."""
    image = "model.visual.head." if cached else "model.visual."
    prefixes = {**_LEGACY_PREFIXES, "pair.image.": image}
    out = {}
    for key, value in state.items():
        old = next((p for p in prefixes if key.startswith(p)), None)
        out[prefixes[old] + key[len(old) :] if old else key] = value
    return out
