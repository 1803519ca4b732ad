"""``LocationEncoder``: positional encoding followed by a network."""

from __future__ import annotations

import torch
from torch import nn

from . import encoding as _encoding
from . import nn as _nn
from .points import as_lonlat

CPU_BATCH, LARGE_BATCH = 4096, 65536


class LocationEncoder(nn.Module):
    """Maps ``(N, 2)`` (lon, lat) degrees to ``(N, embed_dim)`` embeddings.

    ``posenc`` and ``nnet`` are the attribute names of the original SatCLIP, so state dicts line up
    (``nnet.layers.0.weight`` …). ``config`` records how the encoder was built; it is what the native
    format stores in ``config.json``.
    """

    def __init__(self, posenc: nn.Module, nnet: nn.Module, config: dict | None = None):
        super().__init__()
        self.posenc = posenc
        self.nnet = nnet
        self.config = dict(config or {})

    @classmethod
    def from_config(cls, config: dict) -> LocationEncoder:
        """Build from ``{"encoding": {"name": …, **params}, "network": {"name": …, **params}}``."""
        enc_cfg = dict(config["encoding"])
        net_cfg = dict(config["network"])
        posenc = _encoding.create(enc_cfg.pop("name"), **enc_cfg)
        nnet = _nn.create(net_cfg.pop("name"), input_dim=posenc.embedding_dim, **net_cfg)
        return cls(posenc, nnet, config)

    @property
    def embedding_dim(self) -> int:
        return int(self.config["network"]["num_classes"])

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def feature_dtype(self) -> torch.dtype:
        """The dtype coordinates are given to the positional encoding in by :meth:`encode`: float64 for
        float64 models and for encodings that only work in float64 (``"analytic"`` harmonics), else the
        network's dtype."""
        if self.dtype == torch.float64 or getattr(self.posenc, "needs_float64", False):
            return torch.float64
        return self.dtype

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict`` without silent loss of precision.

        ``from_config`` builds the module in torch's default float32, and a plain ``load_state_dict``
        copies a float64 checkpoint (the released models' location weights are float64) into those
        float32 parameters, rounding every weight; a later ``.to(torch.float64)`` cannot undo that
        (embeddings then differ from the original by ~5e-8 relative). So when ``state_dict`` holds
        floating-point tensors wider than this module's dtype, the module is first converted to that
        dtype. Convert afterwards with ``.to(dtype=…)`` for the precision you want to run in.
        """
        widest = max(
            (v.dtype for v in state_dict.values() if torch.is_tensor(v) and v.is_floating_point()),
            key=lambda d: torch.finfo(d).bits,
            default=None,
        )
        if widest is not None and torch.finfo(widest).bits > torch.finfo(self.dtype).bits:
            self.to(dtype=widest)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        """Embed ``(N, 2)`` (lon, lat) degrees (no validation; see :meth:`encode`). Features are computed
        in the input's dtype and cast to the network's."""
        return self.nnet(self.posenc(lonlat).to(self.dtype))

    @property
    def default_batch_size(self) -> int:
        """Points per forward pass when none is given. 4096 on the CPU: the SIREN's 4096 × 512
        activations stay in cache, ≈1.2–1.5× faster than 65536 (benchmarks/embed.py). 65536 on other
        devices, and for the sympy-expression ``"analytic"`` basis, which pays a per-call cost for each
        of its L² expressions."""
        on_cpu = next(self.parameters()).device.type == "cpu"
        return CPU_BATCH if on_cpu and not getattr(self.posenc, "needs_float64", False) else LARGE_BATCH

    @torch.no_grad()
    def encode(self, points, batch_size: int | None = None) -> torch.Tensor:
        """Validate and embed points (array-like ``(N, 2)`` of lon, lat degrees) in batches of
        ``batch_size`` (default :attr:`default_batch_size`).

        Returns an ``(N, embedding_dim)`` tensor in the model's dtype, on the model's device.
        """
        batch_size = batch_size or self.default_batch_size
        param = next(self.parameters())
        lonlat = as_lonlat(points, dtype=torch.float64, device=param.device).to(self.feature_dtype)
        parts = [self(chunk) for chunk in lonlat.split(batch_size)]
        return torch.cat(parts) if parts else torch.empty(0, self.embedding_dim, dtype=param.dtype)
