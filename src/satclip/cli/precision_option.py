"""``--precision`` (and the older ``--dtype``) for the commands that run a location encoder."""

from __future__ import annotations

import argparse

#: satclip.models.precision.PRECISIONS and its aliases, spelled out: `satclip --help` must not import torch (tests
#: check both)
PRECISIONS = ("auto", "float32", "bf16", "float64")
ALIASES = {"fp32": "float32", "fp64": "float64", "bfloat16": "bf16", "32": "float32", "64": "float64"}
HELP = (
    "float32 | bf16 | float64 | auto, or fp32, bfloat16, fp64, 32, 64 for the same (default: $SATCLIP_PRECISION, "
    "else auto = bf16 where the CPU/GPU multiplies "
    "bf16 natively and a one-time calibration measures it faster and within cosine 0.9999 of float32, else "
    "float32)"
)


def canonical(text: str) -> str:
    """``--precision``'s value by its canonical name: ``fp32`` → ``float32``, as the Python API and
    $SATCLIP_PRECISION take it (``--precision fp32`` was an "invalid choice"); any other text as it is, for the
    choices to refuse."""
    return ALIASES.get(text.strip().lower(), text.strip().lower())


def add_arguments(
    parser: argparse.ArgumentParser, dtypes: tuple[str, ...] = ("float32", "float64"), help: str = HELP
) -> None:
    parser.add_argument("--precision", type=canonical, choices=PRECISIONS, help=help)
    parser.add_argument("--dtype", choices=dtypes, help="older spelling of --precision float32 / float64")


def load_arguments(args: argparse.Namespace) -> dict:
    """``precision=`` and ``dtype=`` for :func:`satclip.load` / :func:`satclip.embed.api.load_encoder`."""
    import torch

    return {"precision": args.precision, "dtype": getattr(torch, args.dtype) if args.dtype else None}


def retrieval_spec(model: str) -> tuple[str, dict, str] | None:
    """``(model, satclip.load's retrieval arguments, the spec in full)`` where ``--model`` is a retrieval spec
    (``bluemarble-l10+range+``, ``MODEL+range+(beta=0.5,database=DB)``: ``satclip evaluate --encoders``' own, read by
    its parser), else None."""
    if "+range" not in model:  # (the evaluation's encoders are imported only for a spec)
        return None
    from ..eval.encoders.retrieval import model_spec

    return model_spec(model)


def model_source(model: str) -> str:
    """The model a ``--model`` loads: the model of a retrieval spec, else itself (for the checks of its files)."""
    spec = retrieval_spec(model)
    return model if spec is None else spec[0]


def load_encoder(args: argparse.Namespace):
    """The location encoder of ``args.model`` as ``satclip embed``'s and ``satclip map``'s options say (``--device``,
    ``--harmonics``, ``--trust-checkpoint``, ``--precision``/``--dtype``); with retrieval (a
    :class:`~satclip.retrieval.encoder.RetrievalEncoder`, its ``spec`` the spec in full) where ``--model`` is a
    retrieval spec, as :func:`satclip.load` gives it."""
    spec = retrieval_spec(args.model)
    if spec is not None:
        from ..api import load

        model, retrieval, full = spec
        encoder = load(model, device=args.device, harmonics_calculation=args.harmonics,
                       trust_checkpoint=args.trust_checkpoint, **load_arguments(args), **retrieval)  # fmt: skip
        encoder.spec = full
        return encoder
    from ..embed.api import load_encoder

    return load_encoder(
        args.model, device=args.device, harmonics_calculation=args.harmonics,
        trust_checkpoint=args.trust_checkpoint, **load_arguments(args),
    )  # fmt: skip


def describe(encoder) -> str:
    """``"bf16 (auto: CPU with amx_bf16; bf16 measured 3.9x float32)"`` or ``"float32"``."""
    from ..models.precision import for_encoder

    chosen = for_encoder(encoder)
    choice = getattr(encoder, "precision_choice", None)
    if choice is not None and choice.precision == chosen and choice.requested == "auto":
        return f"{chosen} (auto: {choice.reason})"
    return chosen
