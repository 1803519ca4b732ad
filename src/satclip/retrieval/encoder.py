"""``RetrievalEncoder``: a location encoder whose embedding is ``[location embedding ‖ retrieved image embedding]``.

For a point q with location embedding e(q), the retrieved image embedding is a softmax-weighted mean of the
image embeddings of k database entries (RANGE, Dhakal et al., CVPR 2025, arXiv 2502.19781):

* ``mode="range"`` — semantic: the k entries whose location embeddings have the highest cosine with e(q),
  weighted by ``softmax(cosine / temperature)``; exact over the whole database (slow on a CPU, see
  :mod:`~satclip.retrieval.search`).
* ``mode="range+"`` — ``(1 − beta) · semantic + beta · geographic``, where geographic is the k entries
  nearest to q by great-circle distance d, weighted by ``softmax(−d / distance_scale_km)``. ``beta`` is the
  resolution knob: 1 (the default) is geographic only and needs no semantic search — the fast default.

``exclude_radius_km`` > 0 removes, for each query, the entries within that great-circle distance of it from
both searches (leakage-safe evaluation: a test point never retrieves the database entry sitting on it).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from ..encoding.points import EARTH_RADIUS_KM
from ..errors import BadInputError
from ..models.location_encoder import LocationEncoder
from .geo import NEIGHBOURS_AT_ONCE, GeoIndex, exclusion_chord, unit_vectors
from .search import SemanticIndex, softmax_weights, weighted_mean

log = logging.getLogger(__name__)

MODES = ("range", "range+")
#: defaults of :func:`satclip.load` and :class:`RetrievalEncoder` (``beta``: range+'s; ``mode="range"`` is beta 0)
DEFAULTS = {"mode": "range+", "k": 16, "temperature": 0.01, "beta": 1.0, "distance_scale_km": 100.0,
            "exclude_radius_km": 0.0}  # fmt: skip
#: points retrieved together, taken in the order of a space-filling curve through all the points of a call
#: (local memory reads in the k-d tree and the gather); small enough that the chunk's temporaries are reused
#: from the heap instead of fresh (page-faulting) memory
RETRIEVAL_CHUNK = 16384


def _number(name: str, value, what: str) -> float:
    """``value`` as a float, or :class:`BadInputError` naming the option (text, None and booleans are no
    numbers: ``beta="abc"`` was a TypeError deep in a comparison)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise BadInputError(f"retrieval {name} must be {what}, got {value!r}")
    return float(value)


#: no two points on Earth are further apart than half its circumference (20,015 km): an exclusion radius that
#: large leaves no database entry to retrieve, and the retrieved half of every embedding would be zeros
MAX_EXCLUDE_RADIUS_KM = float(np.pi * EARTH_RADIUS_KM)


def check_options(mode: str, k: int, temperature: float, beta: float | None, distance_scale_km: float,
                  exclude_radius_km: float) -> None:  # fmt: skip
    """Raise :class:`BadInputError` naming a bad retrieval option and what it accepts (``beta=None``: not given)."""
    if mode not in MODES:
        from ..registry import did_you_mean

        hint = did_you_mean(str(mode), MODES)
        raise BadInputError(f"retrieval mode {mode!r} is not one of {list(MODES)}{'; ' + hint if hint else ''}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise BadInputError(f"retrieval k must be a positive integer, got {k!r}")
    for name, value in (("temperature", temperature), ("distance_scale_km", distance_scale_km)):
        if not np.isfinite(_number(name, value, "a positive number")) or value <= 0:
            raise BadInputError(f"retrieval {name} must be a positive number, got {value!r}")
    what = "a number in [0, 1] (0: semantic only, 1: geographic only)"  # ('0.5' was told to be in [0, 1])
    if beta is not None and not (0.0 <= _number("beta", beta, what) <= 1.0):
        raise BadInputError(f"retrieval beta must be {what}, got {beta!r}")
    if mode == "range" and beta not in (None, 0):  # (beta=1 was taken, and options said beta=0.0)
        raise BadInputError(f"beta={beta} blends semantic and geographic retrieval: use mode='range+' with it "
                            "(mode='range' is beta=0)")  # fmt: skip
    radius = _number("exclude_radius_km", exclude_radius_km, "a distance >= 0 in km (0: no exclusion)")
    if not np.isfinite(radius) or radius < 0:
        raise BadInputError(f"exclude_radius_km must be a distance >= 0 in km (0: no exclusion), got {radius!r}")
    if radius >= MAX_EXCLUDE_RADIUS_KM:
        raise BadInputError(
            f"exclude_radius_km={radius:g} excludes every database entry (no two points on Earth are more than "
            f"{MAX_EXCLUDE_RADIUS_KM:,.0f} km apart), so nothing would be retrieved; give a radius below that "
            "(170 excludes every Blue Marble patch covering a point, 0 turns the exclusion off)"
        )


def morton_order(lonlat: np.ndarray, bits: int = 10) -> np.ndarray:
    """A permutation of ``(N, 2)`` (lon, lat) points along a Z-order curve of a 2^bits × 2^bits lon/lat grid."""
    scale = (1 << bits) - 1
    x = np.clip((lonlat[:, 0] + 180.0) / 360.0 * scale, 0, scale).astype(np.uint64)
    y = np.clip((lonlat[:, 1] + 90.0) / 180.0 * scale, 0, scale).astype(np.uint64)
    code = np.zeros(len(lonlat), dtype=np.uint64)
    for bit in range(bits):
        b = np.uint64(bit)
        code |= ((x >> b) & np.uint64(1)) << np.uint64(2 * bit) | ((y >> b) & np.uint64(1)) << np.uint64(2 * bit + 1)
    return np.argsort(code, kind="stable")


#: what an encoder sharing another's weights takes over from it: where they came from, the precision they run in
_CARRIED = ("provenance", "recorded_precision", "precision_choice", "weights_rounded")


def _carry_over(source: LocationEncoder, target: LocationEncoder) -> None:
    for name in _CARRIED:
        if name in vars(source):
            target.__dict__[name] = vars(source)[name]


class RetrievalEncoder(LocationEncoder):
    """A :class:`~satclip.LocationEncoder` (sharing ``location``'s weights) with retrieval: ``encode(points)``
    → ``(N, D + E)`` = ``[location embedding (D) ‖ retrieved image embedding (E)]``.

    Args:
        location: the model's location encoder (its precision choice is kept).
        database: a :class:`~satclip.retrieval.database.RetrievalDatabase` of the same model.
        mode, k, temperature, beta, distance_scale_km, exclude_radius_km: see the module docstring (``beta``: None
            or 0 with ``mode="range"``).

    The database and its indices stay on the CPU (retrieval is a CPU k-d tree and a product); the location
    network runs where ``location`` is, and the output is on its device. Retrieval is float32.
    """

    def __init__(
        self,
        location: LocationEncoder,
        database,
        *,
        mode: str = DEFAULTS["mode"],
        k: int = DEFAULTS["k"],
        temperature: float = DEFAULTS["temperature"],
        beta: float | None = None,
        distance_scale_km: float = DEFAULTS["distance_scale_km"],
        exclude_radius_km: float = DEFAULTS["exclude_radius_km"],
    ):
        super().__init__(location.posenc, location.nnet, location.config)
        check_options(mode, k, temperature, beta, distance_scale_km, exclude_radius_km)
        if database.location_dim != location.embedding_dim:
            raise BadInputError(
                f"the retrieval database holds {database.location_dim}-d location embeddings, the model gives "
                f"{location.embedding_dim}-d ones: it belongs to another model"
            )
        _carry_over(location, self)
        self.database = database
        self.mode, self.k, self.temperature = mode, int(k), float(temperature)
        self.beta = 0.0 if mode == "range" else float(DEFAULTS["beta"] if beta is None else beta)
        self.distance_scale_km, self.exclude_radius_km = float(distance_scale_km), float(exclude_radius_km)
        self._values: torch.Tensor | None = None
        self._geo: GeoIndex | None = None
        self._semantic: SemanticIndex | None = None
        self._warned_empty = False
        #: the retrieval spec it was loaded from (``satclip embed --model MODEL+range+(…)``), which outputs record
        self.spec: str | None = None

    # --- description -----------------------------------------------------------------------------

    @property
    def embedding_dim(self) -> int:
        return self.location_dim + self.database.image_dim

    @property
    def options(self) -> dict:
        return {"mode": self.mode, "k": self.k, "temperature": self.temperature, "beta": self.beta,
                "distance_scale_km": self.distance_scale_km, "exclude_radius_km": self.exclude_radius_km}  # fmt: skip

    def retrieval_identity(self) -> dict:
        """What the retrieved half of the embeddings depends on beyond the location encoder (part of
        :func:`~satclip.models.location_encoder.model_identity`): the options and the database's entries."""
        return {**self.options, "database_sha256": self.database.sha256(), "database_entries": len(self.database)}

    def extra_repr(self) -> str:
        options = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{super().extra_repr()}, database={len(self.database)} entries, {options}"

    def excluding(self, drop: np.ndarray) -> RetrievalEncoder:
        """The same encoder over the database without the entries where boolean ``drop`` is True (e.g. a
        held-out continent); shares the location network."""
        database = self.database.subset(~np.asarray(drop, dtype=bool))
        return RetrievalEncoder(self.location_encoder(), database, **self.options)

    def with_location(self, location: LocationEncoder) -> RetrievalEncoder:
        """The same retrieval (database, options) over another location encoder of the same model, e.g. one
        computing the harmonics another way (its precision choice is kept)."""
        encoder = RetrievalEncoder(location, self.database, **self.options)
        encoder.spec = self.spec
        return encoder

    def location_encoder(self) -> LocationEncoder:
        """The plain location encoder under this one (sharing its weights, its precision and provenance): the first
        :attr:`location_dim` columns of its embeddings."""
        plain = LocationEncoder(self.posenc, self.nnet, self.config)
        _carry_over(self, plain)
        return plain

    def save(self, path, metadata: dict | None = None, *, target: str = "native", overwrite: bool = False):
        """Refused: a saved model is a location encoder, and the retrieved half of these embeddings (the database)
        is not part of one; it wrote the location encoder alone, and said the file gave the same embeddings."""
        raise BadInputError(
            f"a retrieval encoder's embeddings are its location encoder's {self.location_dim} columns and "
            f"{self.database.image_dim} retrieved from its database, which a saved model does not hold: load it "
            "again with satclip.load(MODEL, retrieval=DATABASE), or save the location encoder's columns alone "
            "with encoder.location_encoder().save(path)"
        )

    # --- indices ---------------------------------------------------------------------------------

    def __getstate__(self) -> dict:
        """What pickling keeps (the Dask engine sends the encoder to every worker): not what the database rebuilds
        (its image embeddings in float32, the neighbour indexes), which were 110 MB of the 260 MB sent for a shipped
        model's database."""
        return {**self.__dict__, "_values": None, "_geo": None, "_semantic": None}

    @property
    def values(self) -> torch.Tensor:
        """The database's image embeddings in float32 ``(entries, E)``, what is averaged (made on first use)."""
        if self._values is None:
            self._values = torch.from_numpy(np.ascontiguousarray(self.database.image, dtype=np.float32))
        return self._values

    @property
    def geo(self) -> GeoIndex:
        if self._geo is None:
            self._geo = GeoIndex(self.database.lonlat)
        return self._geo

    @property
    def semantic(self) -> SemanticIndex:
        if self._semantic is None:
            self._semantic = SemanticIndex(self.database.location)
        return self._semantic

    # --- embedding -------------------------------------------------------------------------------

    def retrieve(self, lonlat: np.ndarray, location: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """The retrieved image embeddings ``(B, E)`` float32 (CPU) of ``(B, 2)`` float64 (lon, lat) degrees
        whose location embeddings are ``location`` ``(B, D)`` (written into ``out`` when given, a CPU tensor
        whose rows may be strided).

        The points are taken in the order of a space-filling curve through all of them, :data:`RETRIEVAL_CHUNK`
        at a time: neighbouring queries then walk the same branches of the k-d tree and gather the same
        entries, while each chunk's temporaries stay small."""
        lonlat = np.asarray(lonlat, dtype=np.float64)
        out = torch.empty(len(lonlat), self.database.image_dim) if out is None else out
        location = location.detach().to("cpu", torch.float32) if self.beta < 1 else None
        order = morton_order(lonlat)
        # (the neighbours of a chunk, k of them per point, stay within NEIGHBOURS_AT_ONCE: k = 100,000 entries asked
        # for 16,384 points at once was a MemoryError of 12 GiB)
        chunk = max(1, min(RETRIEVAL_CHUNK, NEIGHBOURS_AT_ONCE // self.k))
        for start in range(0, len(lonlat), chunk):
            rows = order[start : start + chunk]
            xyz = unit_vectors(lonlat[rows])
            mixed = None
            if self.beta > 0:
                index, km = self.geo.nearest(xyz, self.k, self.exclude_radius_km)
                self._note_nothing_left(index)
                mixed = weighted_mean(self.values, index, softmax_weights(-km, index, self.distance_scale_km))
                if self.beta < 1:
                    mixed.mul_(self.beta)
            if self.beta < 1:
                index, cosine = self.semantic.search(location[torch.from_numpy(rows)], self.k, self._excluded(xyz))
                self._note_nothing_left(index)
                semantic = weighted_mean(self.values, index, softmax_weights(cosine, index, self.temperature))
                mixed = semantic.mul_(1.0 - self.beta) if mixed is None else mixed.add_(semantic, alpha=1.0 - self.beta)
            out.index_copy_(0, torch.from_numpy(rows), mixed.to(out.dtype))
        return out

    def _note_nothing_left(self, index: np.ndarray) -> None:
        """Warn (once per encoder) when the exclusion radius left some points no entry at all: their retrieved
        half is zeros, which a probe would otherwise take for imagery."""
        if self.exclude_radius_km <= 0 or self._warned_empty or not len(index):
            return
        nothing = int((index[:, 0] < 0).sum())  # (valid entries come first: none in column 0, none at all)
        if nothing:
            self._warned_empty = True
            log.warning(
                "exclude_radius_km=%g leaves %d of %d point(s) of a batch no database entry (of %d) to retrieve: "
                "their retrieved embedding is zeros; a smaller radius keeps some", self.exclude_radius_km, nothing,
                len(index), len(self.database),
            )  # fmt: skip

    def _excluded(self, xyz: np.ndarray):
        limit = exclusion_chord(self.exclude_radius_km)
        if limit <= 0:
            return None
        return lambda rows, index: self.geo.chord_to(xyz[rows], index) < limit

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        """``(N, 2)`` (lon, lat) degrees → ``(N, D + E)`` (no validation; see :meth:`encode`). A point that is
        not finite gets NaN, as the location network gives it (the geographic search failed on it, the semantic
        one retrieved zeros)."""
        location = super().forward(lonlat)
        points = lonlat.detach().to("cpu", torch.float64).numpy()
        finite = np.isfinite(points).all(axis=1)
        if finite.all():
            retrieved = self.retrieve(points, location)
        else:
            retrieved = torch.full((len(points), self.database.image_dim), float("nan"))
            rows = torch.from_numpy(finite)
            retrieved[rows] = self.retrieve(points[finite], location[rows.to(location.device)])
        return torch.cat([location, retrieved.to(device=location.device, dtype=location.dtype)], dim=1)

    @torch.no_grad()
    def encode(
        self, points, batch_size: int | None = None, precision: str | None = None, *, warn_radians: bool = True
    ) -> torch.Tensor:
        """Validate and embed points (array-like ``(N, 2)`` of lon, lat degrees) → ``(N, D + E)``: the location
        embedding as :meth:`satclip.LocationEncoder.encode` computes it (``precision``, ``batch_size``,
        ``warn_radians``), then
        the retrieved image embedding (float32), in the location embedding's dtype; both written into one
        output. The semantic modes search with location embeddings in float32 whatever ``precision`` (bf16
        ones reorder near-tied neighbours: retrieved embeddings moved by up to 77 %, differently on CPUs with
        and without bf16)."""
        from ..encoding.points import as_lonlat, warn_if_radians
        from ..models import fused
        from ..models import precision as _precision
        from ..models.location_encoder import check_batch_size, in_eval_mode, weights_device

        check_batch_size(batch_size)
        device = weights_device(self)
        lonlat = as_lonlat(points, dtype=torch.float64, device="cpu")
        if warn_radians:
            warn_if_radians(lonlat)
        precision = _precision.for_encoder(self, precision)
        dtype = torch.float64 if precision == "float64" else torch.float32
        out = torch.empty(len(lonlat), self.embedding_dim, dtype=dtype, device=device)
        d = self.location_dim
        network = in_eval_mode(self)
        location = fused.encode_points(network, lonlat.to(device), precision, batch_size, out=out[:, :d])
        query = location
        if self.beta < 1 and precision == "bf16":  # the semantic search's queries in float32, as the database's
            query = fused.encode_points(network, lonlat.to(device), "float32", batch_size)
        if device.type == "cpu":
            self.retrieve(lonlat.numpy(), query, out=out[:, d:])
        else:
            out[:, d:] = self.retrieve(lonlat.numpy(), query).to(out)
        return out


def check_arguments(retrieval, options: dict, source=None, argument: str = "retrieval", use: str | None = None) -> dict:
    """Refuse, before anything is loaded, a ``retrieval`` that names no database (or ``'auto'`` for a ``source``
    that is no shipped model) and ``options`` (``k``, ``beta`` …; ``None``: not given) that are out of range;
    returns the options given. ``argument``: what the database is given as (an evaluation spec's ``database``);
    ``use``: how a database built for a model that is not shipped is given (default ``pass ARGUMENT=DB``)."""
    from .auto import AUTO, check_before_loading
    from .database import RetrievalDatabase

    options = {k: v for k, v in options.items() if v is not None}
    if retrieval is None:
        verb = "configures" if len(options) == 1 else "configure"
        raise BadInputError(f"{', '.join(options)} {verb} retrieval: also pass retrieval='auto' or a database")
    if not isinstance(retrieval, (str, os.PathLike, RetrievalDatabase)):
        raise BadInputError(
            f"retrieval={retrieval!r}: pass 'auto' (the shipped models' database, built on first use), a database "
            "directory from `satclip retrieval build`, or an opened RetrievalDatabase"
        )
    check_options(**{**DEFAULTS, "beta": None, **options})
    if isinstance(retrieval, str) and retrieval.strip().lower() == AUTO and retrieval != AUTO:
        raise BadInputError(f"{argument}={retrieval!r}: did you mean {argument}={AUTO!r}?")
    if isinstance(retrieval, str) and not retrieval.strip():  # ('' was read as the directory '.')
        raise BadInputError(f"{argument}={retrieval!r} names no database: pass {argument}={AUTO!r} or a database "
                            "directory (`satclip retrieval build … -o DB`)")  # fmt: skip
    if retrieval == AUTO and isinstance(source, (str, os.PathLike)):
        check_before_loading(source, argument=argument, use=use)
    return options


def augment(
    encoder: LocationEncoder,
    source,
    retrieval,
    *,
    trust_checkpoint: bool = False,
    **options,
) -> RetrievalEncoder:
    """What :func:`satclip.load` returns for ``retrieval=``: ``encoder`` (loaded from ``source``) with the
    database ``retrieval`` — ``"auto"`` (shipped models: built on first use), a database directory, or a
    :class:`~satclip.retrieval.database.RetrievalDatabase` — checked against the model (and the cache it was
    built from, where that still exists)."""
    from .auto import AUTO, auto_database
    from .database import RetrievalDatabase, check_fresh, model_key

    options = check_arguments(retrieval, options)
    k = options.get("k", DEFAULTS["k"])
    if isinstance(retrieval, str) and retrieval == AUTO:
        from ..data.bluemarble import BlueMarbleParams

        most = BlueMarbleParams().n  # (it was refused once the database was built, a minute or more on)
        if k > most:
            raise BadInputError(f"retrieval k={k} is more than the {most:,} entries the retrieval='auto' database "
                                f"holds at most (one per patch of the corpus): give k <= {most:,}")  # fmt: skip
        database = auto_database(str(source))  # built from this very model and checked there
    else:
        database = retrieval if isinstance(retrieval, RetrievalDatabase) else RetrievalDatabase.open(retrieval)
        if database.path is not None or database.key:  # (one opened from disk has a key: read_manifest says so)
            from ..io.load import load_model

            # (its image head is part of what the database was built from)
            model = load_model(source, trust_checkpoint=trust_checkpoint, needed_for="satclip.load(retrieval=...)")
            check_fresh(database, identity=model_key(model), source=source)
    if k > len(database) and database.location_dim == encoder.embedding_dim:  # (else: that is what is wrong)
        raise BadInputError(  # (a k of millions was a MemoryError in the k-d tree's query)
            f"retrieval k={k} is more than the {len(database)} entries of the database: give k <= {len(database)}"
        )
    return RetrievalEncoder(encoder, database, **options)
