"""Retrieval-augmented encoders under test: ``MODEL+range`` and ``MODEL+range+`` specs (docs/retrieval.md).

``bluemarble-l10+range`` (semantic retrieval), ``bluemarble-l10+range+`` (geographic: beta = 1) and
``bluemarble-l10+range+(beta=0.5,k=32)`` embed as :func:`satclip.load` with ``retrieval=`` does. Parameters:
``database`` (``"auto"``, the default, or a database directory), ``k``, ``temperature``, ``beta``,
``distance_scale_km``, and for leakage-safe evaluation:

* ``exclude_radius_km`` — default :data:`EVAL_EXCLUDE_RADIUS_KM` here (0 in :func:`satclip.load`): no
  point retrieves a database entry within that distance of itself. Give ``exclude_radius_km=0`` for the
  unprotected numbers.
* ``exclude_heldout=True`` — under ``holdout-continent``, each fold's points (train and test alike) are
  embedded with a database without the held-out continent (Natural Earth), so the probe never sees imagery
  of the continent it is tested on. Other protocols ignore it.

The database holds imagery embeddings only; no downstream label enters it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from . import Encoder

#: ``"bluemarble-l10+range+"`` → base model ``bluemarble-l10``, mode ``range+``
SPEC = re.compile(r"^(?P<base>.+?)\+(?P<mode>range\+?)$")
#: Blue Marble pixels are 7.5 km: a point falls inside an entry's centre pixel only within 5.3 km (half its
#: diagonal) of the entry; 10 km removes that entry with a margin, and leaves the surrounding patches (240 km
#: across), which are the imagery any point has around it
EVAL_EXCLUDE_RADIUS_KM = 10.0
OPTIONS = ("k", "temperature", "beta", "distance_scale_km", "exclude_radius_km")


def is_retrieval_spec(name: str) -> bool:
    return SPEC.match(name) is not None


def retrieval_names() -> list[str]:
    """The retrieval specs of the shipped models (for did-you-mean hints)."""
    from ...retrieval.auto import shipped_models

    return [f"{model}+{mode}" for model in shipped_models() for mode in ("range", "range+")]


@dataclass
class RetrievalEvalEncoder(Encoder):
    """An :class:`Encoder` over a :class:`~satclip.retrieval.encoder.RetrievalEncoder`; with
    ``exclude_heldout``, :meth:`for_fold` gives the encoder of a ``holdout-continent`` fold."""

    exclude_heldout: bool = False
    _per_group: dict = field(default_factory=dict, repr=False)

    def for_fold(self, fold) -> Encoder:
        """The encoder to embed ``fold``'s points with: itself, or (``exclude_heldout`` and a fold holding a
        continent out) one whose database lacks that continent."""
        if not self.exclude_heldout or fold.variant == "" or not fold.group:
            return self
        if fold.group not in self._per_group:
            from ..naturalearth import continents

            database = self.module.database
            if "continents" not in self._per_group:
                self._per_group["continents"] = continents(database.lonlat)
            drop = self._per_group["continents"] == fold.group
            module = self.module.excluding(drop)
            self._per_group[fold.group] = Encoder(
                f"{self.name}[database without {fold.group}]", module,
                f"{self.description}, database without {fold.group} ({int(drop.sum())} of {len(database)} entries)",
                self.input_dtype, self.batch_size,
            )  # fmt: skip
        return self._per_group[fold.group]


def create_retrieval(spec: str, name: str, params: dict) -> Encoder:
    """The encoder of a ``MODEL+range[+](…)`` spec (``name`` is the part before the parentheses)."""
    from ...io.load import load
    from ...retrieval.encoder import augment

    match = SPEC.match(name)
    params = dict(params)
    database = params.pop("database", "auto")
    exclude_heldout = bool(params.pop("exclude_heldout", False))
    unknown = sorted(set(params) - set(OPTIONS))
    if unknown:
        raise ValueError(
            f"encoder spec {spec!r}: unknown retrieval parameter(s) {unknown}; it accepts "
            f"{sorted([*OPTIONS, 'database', 'exclude_heldout'])}"
        )
    params.setdefault("exclude_radius_km", EVAL_EXCLUDE_RADIUS_KM)
    module = augment(load(match["base"]), match["base"], database, mode=match["mode"], **params)
    shown = ", ".join(f"{k}={v}" for k, v in module.options.items() if k != "beta" or module.mode == "range+")
    description = (
        f"satclip.load({match['base']!r}) + retrieval ({shown}; database {database}, {len(module.database)} entries)"
    )
    return RetrievalEvalEncoder(spec, module, description, module.feature_dtype, exclude_heldout=exclude_heldout)
