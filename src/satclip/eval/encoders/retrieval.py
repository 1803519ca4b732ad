"""Retrieval-augmented encoders under test: ``MODEL+range`` and ``MODEL+range+`` specs (docs/retrieval.md).

``bluemarble-l10+range`` (semantic retrieval), ``bluemarble-l10+range+`` (geographic: beta = 1) and
``bluemarble-l10+range+(beta=0.5,k=32)`` embed as :func:`satclip.load` with ``retrieval=`` does. Parameters:
``database`` (``"auto"``, the default, or a database directory), ``k``, ``temperature``, ``beta``,
``distance_scale_km``, and for leakage-safe evaluation:

* ``exclude_radius_km`` — default :data:`EVAL_EXCLUDE_RADIUS_KM` here (0 in :func:`satclip.load`): no
  point retrieves a database entry within that distance of itself. Give ``exclude_radius_km=0`` for the
  unprotected numbers (``None`` is refused: it is no distance).
* ``exclude_heldout=True`` — under ``holdout-continent``, each fold's points (train and test alike) are
  embedded with a database without the held-out continent (Natural Earth), so the probe never sees imagery
  of the continent it is tested on. Other protocols refuse it (it would change nothing there).

Values are checked as the plain encoders' are (numbers where the default is one, ``True``/``False`` for
``exclude_heldout``), before anything is loaded. The database holds imagery embeddings only; no downstream
label enters it.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

from ...errors import BadInputError
from ...retrieval.encoder import DEFAULTS
from . import Encoder

#: ``"bluemarble-l10+range+"`` → base model ``bluemarble-l10``, mode ``range+``
SPEC = re.compile(r"^(?P<base>.+?)\+(?P<mode>range\+?)$")
#: Blue Marble pixels are 7.5 km, and an entry's centre is the corner its four central pixels share: a point in one
#: of them is within 7.5 km of the entry along each axis (10.6 km at their outer corners); 10 km removes the entry
#: whose central pixels hold the point (all but those corners), and leaves the surrounding patches (240 km across),
#: which are the imagery any point has around it
EVAL_EXCLUDE_RADIUS_KM = 10.0


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
            if drop.all():  # (it failed as "a retrieval database needs at least one entry")
                raise BadInputError(
                    f"encoder {self.name}: every one of the {len(database)} database entries lies in {fold.group}, so "
                    f"the database without it, for the fold holding {fold.group} out, is empty; drop "
                    "exclude_heldout=True, or use a database with imagery of other continents"
                )
            module = self.module.excluding(drop)
            self._per_group[fold.group] = Encoder(
                f"{self.name}[database without {fold.group}]", module,
                f"{self.description}, database without {fold.group} ({int(drop.sum())} of {len(database)} entries)",
                self.input_dtype, self.batch_size,
            )  # fmt: skip
        return self._per_group[fold.group]


def _spec_parameters(
    database: str = "auto", exclude_heldout: bool = False, k: int = DEFAULTS["k"],
    temperature: float = DEFAULTS["temperature"], beta: float = DEFAULTS["beta"],
    distance_scale_km: float = DEFAULTS["distance_scale_km"], exclude_radius_km: float = EVAL_EXCLUDE_RADIUS_KM,
) -> None:  # fmt: skip
    """The parameters a retrieval spec takes and their defaults here: what :func:`_check_params` checks a
    spec's values against (a number where the default is one, ``True``/``False`` for ``exclude_heldout``)."""


def spec_arguments(
    spec: str, name: str, params: dict, *, exclude_radius_km: float = EVAL_EXCLUDE_RADIUS_KM
) -> tuple[str, object, bool, dict]:
    """``(model, database, exclude_heldout, options)`` of a ``MODEL+range[+](…)`` spec (``name`` is the part before
    the parentheses), ``options`` those :func:`satclip.load` takes besides ``retrieval=database`` (``mode``, ``k``
    …), ``exclude_radius_km`` defaulting to the one given. A parameter it does not take, or a value of the wrong
    kind, is refused naming both, before anything is loaded."""
    from ...retrieval.auto import shipped_models
    from ...retrieval.encoder import check_arguments
    from . import ENCODERS, _check_params, _encoding

    match = SPEC.match(name)
    unknown = sorted(set(params) - set(inspect.signature(_spec_parameters).parameters))
    if unknown:
        raise BadInputError(
            f"encoder spec {spec!r}: unknown retrieval parameter(s) {unknown}; it accepts "
            f"{sorted(inspect.signature(_spec_parameters).parameters)}"
        )
    if "exclude_radius_km" in params and params["exclude_radius_km"] is None:  # (it dropped the 10 km default)
        raise BadInputError(
            f"encoder spec {spec!r}: exclude_radius_km=None is no distance; give a radius in km (default "
            f"{exclude_radius_km:g}), or exclude_radius_km=0 to turn the exclusion off"
        )
    _check_params(spec, "retrieval encoder", name, _spec_parameters, params)
    params = dict(params)
    database = params.pop("database", "auto")
    exclude_heldout = params.pop("exclude_heldout", False)
    params.setdefault("exclude_radius_km", exclude_radius_km)
    if match["base"] in ENCODERS or match["base"] in _encoding.names():  # ("no model 'geoclip': not a file, …")
        raise BadInputError(f"encoder spec {spec!r}: retrieval needs a satclip model (its image side embeds the "
                            f"database), and {match['base']} is an encoder without one: give a model, e.g. "
                            f"{shipped_models()[0]}+{match['mode']}")  # fmt: skip
    try:  # (before the model loads)
        check_arguments(database, {"mode": match["mode"], **params}, match["base"], argument="database",
                        use=f"give {match['base']}+{match['mode']}(database='DB')")
    except BadInputError as err:  # (named the option as Python takes it, not the spec it came in)
        if match["mode"] == "range" and "beta" in params:
            raise BadInputError(f"encoder spec {spec!r}: beta blends semantic and geographic retrieval, which "
                                f"{match['base']}+range+ does; +range is semantic only") from None  # fmt: skip
        raise BadInputError(f"encoder spec {spec!r}: {err}") from None
    return match["base"], database, exclude_heldout, {"mode": match["mode"], **params}


def model_spec(text: str) -> tuple[str, dict, str] | None:
    """``(model, satclip.load keyword arguments, the spec in full)`` of a retrieval spec given where a model is
    (``satclip embed --model bluemarble-l10+range+``), or None where ``text`` is no retrieval spec (a directory so
    named is a model). Its options default as :func:`satclip.load`'s (``exclude_radius_km`` 0: the evaluation's
    10 km protects test points), ``exclude_heldout`` (the folds of an evaluation) is refused, and a database
    directory is made absolute; the spec in full names it so, with the exclusion radius (what outputs record).

    Raises:
        BadInputError: a retrieval spec that cannot be parsed, or with a bad parameter.
    """
    from ...paths import user_path
    from ...pretrained import known_name
    from ...retrieval.auto import AUTO
    from . import existing_path, parse_spec

    if "+range" not in text or existing_path(text):
        return None
    try:
        name, params = parse_spec(text)
    except ValueError as err:
        raise BadInputError(str(err)) from None
    if not is_retrieval_spec(name):
        return None
    model, database, exclude_heldout, options = spec_arguments(
        text, name, params, exclude_radius_km=DEFAULTS["exclude_radius_km"])  # fmt: skip
    if exclude_heldout:
        raise BadInputError(f"encoder spec {text!r}: exclude_heldout=True leaves each held-out continent out of the "
                            "database in satclip evaluate --protocol holdout-continent; embedding points has no "
                            "folds: drop it")  # fmt: skip
    if database != AUTO and isinstance(database, str):
        database = str(user_path(database).absolute())
    if not existing_path(model):  # (a known name as typed, "BlueMarble-L10", recorded as the model's own)
        model = known_name(model) or model
    given = {"database": database, **{k: v for k, v in options.items() if k != "mode"}}
    full = f"{model}+{options['mode']}({','.join(f'{k}={v!r}' for k, v in sorted(given.items()))})"
    return model, {"retrieval": database, **options}, full


def create_retrieval(spec: str, name: str, params: dict, *, trust_checkpoint: bool = False) -> Encoder:
    """The encoder of a ``MODEL+range[+](…)`` spec (``name`` is the part before the parentheses): see
    :func:`spec_arguments`. ``trust_checkpoint``: MODEL's, as :func:`satclip.load` takes it."""
    from ...io.load import load
    from ...retrieval.encoder import augment

    base, database, exclude_heldout, options = spec_arguments(spec, name, params)
    try:
        model = load(base, trust_checkpoint=trust_checkpoint)
        module = augment(model, base, database, **options)
    except (BadInputError, FileNotFoundError) as err:  # (a model or database that is not there named no spec)
        raise BadInputError(f"encoder spec {spec!r}: {err}") from err
    shown = ", ".join(f"{k}={v}" for k, v in module.options.items() if k != "beta" or module.mode == "range+")
    description = f"satclip.load({base!r}) + retrieval ({shown}; database {database}, {len(module.database)} entries)"
    return RetrievalEvalEncoder(spec, module, description, module.feature_dtype, exclude_heldout=exclude_heldout)
