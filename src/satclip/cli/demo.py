"""``satclip demo``: pretrain on the embedded Blue Marble corpus, evaluate, report — offline."""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import existing_file, positive_int, user_path, worker_count


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="offline end-to-end run: Blue Marble pretraining, evaluation, report",
        description=(
            "Builds a Blue Marble corpus, caches MOSAIKS features, pretrains an L=10 SatCLIP location encoder "
            "with 8,192-pair batches, evaluates it against baselines, writes OUT/report.md and ends with a line "
            "saying where the trained model stands, task by task. About 7 minutes on an idle 2-core CPU; --quick "
            "about 1. Shows one progress line on a terminal (its ETA: the time left if the pace so far continues; off "
            "one, a line at each stage's start and end and, as it moves on, at most one every 30 s), and notes of "
            "the earlier work a rerun reuses; everything logged goes "
            "to OUT/demo.log. OUT/work keeps the image features and the training of each setting a rerun reuses "
            "(about 120 MB for the full setting, 30 MB with --quick; delete it to reclaim the space). A run into "
            "the same OUT with other settings (the full demo after --quick) replaces OUT's report, map, training "
            "curve and model with its own (the other setting's training stays in OUT/work). Kept in satclip's "
            "cache, ~/.cache/satclip or $SATCLIP_CACHE: the corpus (about 300 MB; --quick builds a 60 MB one of "
            "its own, so the full demo after it adds 300 MB), the evaluation's data (under 2 MB after --quick, "
            "about 3.5 MB for the full demo) and the embeddings it evaluated (19-35 MB after --quick; about 110 MB for "
            "the full demo)."
        ),
    )
    parser.add_argument(
        "--out", type=user_path, default=Path("satclip-demo"), help="report directory (default ./satclip-demo)"
    )
    parser.add_argument("--quick", action="store_true", help="a smaller run (20k patches, fewer baselines)")
    parser.add_argument("--air-temperature", type=existing_file, metavar="CSV",
                        help="stationDataAll.csv, to add the paper's air-temperature task")  # fmt: skip
    parser.add_argument("--epochs", type=positive_int, help="override the number of pretraining epochs")
    parser.add_argument("--workers", type=worker_count, help="processes fitting probes (default 2)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys
    from dataclasses import replace

    from ..terminal import redraws

    # first, before the imports (torch, the demo's libraries) that took 3-5 s with nothing shown; on a terminal,
    # where someone waits for it (elsewhere a refused run's stderr stays its one error line)
    if redraws(sys.stderr):
        print("satclip demo: starting …", file=sys.stderr, flush=True)
    from ..recipes.demo import FULL, QUICK, run_demo

    settings = QUICK if args.quick else FULL
    if args.epochs:
        settings = replace(settings, epochs=args.epochs)
    if args.workers:
        settings = replace(settings, workers=args.workers)
    said: list[str] = []
    path = run_demo(args.out, settings, air_temperature=args.air_temperature, on_result=said.append,
                    command="satclip " + shlex.join(args.argv))  # fmt: skip
    print(f"wrote {path} (everything logged: {path.parent / 'demo.log'})")
    print(*said, sep="\n")  # last: where the trained model stands (it came before the line above, on stderr)
    return 0
