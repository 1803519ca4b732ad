"""The precision switch of inference (:mod:`satclip.models.precision`) for training: ``trainer.precision`` may be
``float32 | bf16 | float64 | auto`` besides Lightning's own strings.

* ``bf16`` — Lightning's ``bf16-mixed`` (bfloat16 autocast around each step, on CPUs and GPUs) *and* the
  location network under that autocast too; its spherical-harmonics basis is computed outside it from
  float64 coordinates and rounded once, and the contrastive loss is computed in float32. (Lightning's own
  ``bf16-mixed`` keeps the whole location encoder in float32, as before.)
* ``auto`` — ``bf16`` where :func:`satclip.models.precision.bf16_support` finds native bf16 matrix multiplication
  on the device the run will use (a CUDA GPU when the accelerator allows one, else the CPU), else
  ``float32``. Training does not calibrate speed: bf16 products are what these units are for.
* ``float32`` / ``float64`` — ``32-true`` / ``64-true``.
"""

from __future__ import annotations

import torch

from ..errors import BadInputError
from ..models import precision as _precision
from ..networks.siren import SirenNet

#: the switch's names → Lightning's precision strings
LIGHTNING = {"float32": "32-true", "bf16": "bf16-mixed", "float64": "64-true"}
#: Lightning's strings, passed through unchanged
LIGHTNING_NAMES = ("32-true", "32", "bf16-mixed", "16-mixed", "64-true")


def resolve(precision: str, accelerator: str = "auto", *, trained: str | None = None) -> tuple[str, bool]:
    """``(Lightning precision, location network under autocast)`` for ``trainer.precision``.

    ``trained``: the Lightning precision a resumed run's checkpoint records it trained in; ``auto`` keeps it,
    so a run resumed on a machine that would choose otherwise goes on as it started.

    Raises:
        BadInputError: ``16-mixed`` (float16 autocast) for a run on the CPU, where Lightning trained in
            ``bf16-mixed`` instead, while the run's config and its exports said ``16-mixed``.
    """
    cuda = _on_cuda(accelerator)
    if precision == "16-mixed" and not cuda:
        raise BadInputError("trainer.precision='16-mixed' (float16 autocast) is for CUDA GPUs, and this run trains "
                            "on the CPU (Lightning would train in bf16-mixed instead): use 'bf16' or 'float32'")
    if precision in LIGHTNING_NAMES:
        return precision, False
    name = _precision.check(precision)
    if name == "auto":
        started = {lightning: switch for switch, lightning in LIGHTNING.items() if switch in _precision.AUTO_CHOICES}
        name = started[trained] if trained in started else auto_choice(accelerator)[0]
    return LIGHTNING[name], name == "bf16"


def _on_cuda(accelerator: str) -> bool:
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def auto_choice(accelerator: str = "auto") -> tuple[str, str]:
    """``(precision, evidence)`` that ``auto`` chooses for a new run with ``accelerator`` on this machine:
    ``("bf16", "CPU with amx_bf16")``, ``("float32", "CPU without avx512_bf16/amx_bf16")``."""
    supported, evidence = _precision.bf16_support("cuda" if _on_cuda(accelerator) else "cpu")
    return ("bf16" if supported else "float32"), evidence


def encode_location(model, lonlat: torch.Tensor) -> torch.Tensor:
    """``model.location`` on ``(B, 2)`` degrees with its network's sine layers under the ambient (bf16)
    autocast: the basis from float64 coordinates outside autocast, cast once to the network's dtype, and
    a SIREN's linear output layer in float32 (the embedding itself is not rounded to bf16)."""
    location = model.location
    device = lonlat.device.type
    with torch.autocast(device_type=device, enabled=False):
        features = location.posenc(lonlat.to(torch.float64)).to(location.dtype)
    nnet = location.nnet
    if not isinstance(nnet, SirenNet):
        return nnet(features)
    hidden = features
    for layer in nnet.layers:
        hidden = layer(hidden)
    with torch.autocast(device_type=device, enabled=False):
        return nnet.last_layer(hidden.to(location.dtype))


def encode_image(model, inputs: torch.Tensor) -> torch.Tensor:
    """The image side in the model's dtype, outside autocast: from cached features it is one linear head,
    whose bf16 output would only add rounding to the embedding."""
    with torch.autocast(device_type=inputs.device.type, enabled=False):
        return model.encode_image(inputs)


def float32_loss(loss, image: torch.Tensor, location: torch.Tensor, logit_scale: torch.Tensor):
    """``loss(image, location, logit_scale)`` in float32, outside autocast (the logits of a contrastive
    loss are scaled by exp(logit_scale) ≈ 14 and more; in bf16 they would carry errors of ~0.03)."""
    with torch.autocast(device_type=image.device.type, enabled=False):
        return loss(image.float(), location.float(), logit_scale.float())
