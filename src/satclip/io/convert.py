"""``satclip.io.convert``: write a model for a reader (satclip's native format, the original code and
rangegeo, torchgeo, rshf)."""

from __future__ import annotations

from pathlib import Path

from .. import pretrained
from ..errors import OutputExistsError
from ..safe_output import check_new_output, check_output
from . import native
from .read import read_parts
from .resolve import resolve
from .targets import SUFFIX_TARGETS, Written, check_write, fitting_name, is_directory_target, target_of, write


def default_target(source_kind: str, output: Path) -> str:
    """The target an output name asks for (``.ckpt``: original, ``.pt``/``.pth``: torchgeo), else
    ``native`` for a file source and ``original`` for a native directory."""
    return target_of(output, "native" if source_kind != "native" else "original")


def convert(
    source: str | Path,
    output: str | Path,
    *,
    target: str | None = None,
    location_only: bool = False,
    trust_checkpoint: bool = False,
    overwrite: bool = False,
) -> Written:
    """Write the model ``source`` (anything :func:`satclip.load` takes) for ``target``:

    * ``"native"`` — a native directory (``config.json`` + ``model.safetensors``);
    * ``"original"`` — a ``.ckpt`` the original code (``get_satclip``, or its ``get_satclip_loc_encoder``
      for location-only files) and rangegeo load: only hyper-parameters the original takes, a basis it
      knows (see :mod:`satclip.io.basis`), and satclip's exact description for :func:`satclip.load`;
    * ``"torchgeo"`` — a ``torch.save`` state dict for ``torchgeo.models.satclip.SatCLIP`` (location only);
    * ``"rshf"`` — a directory for ``rshf.satclip.SatClip.from_pretrained`` (location only).

    ``target`` None: ``"original"`` for an ``output`` ending in ``.ckpt``, ``"torchgeo"`` for ``.pt``/``.pth``,
    else ``"native"`` for a ``.ckpt`` source and ``"original"`` for a native one. The image
    encoder (``visual.*``) and ``logit_scale`` travel along unless ``location_only``. Every output loads
    back with :func:`satclip.load` (exactly, for a model on satclip's default basis); the returned
    :class:`~satclip.io.targets.Written` lists the readers that reproduce it and to what tolerance.

    ``output`` is written atomically. If it exists it is replaced only with ``overwrite=True``, and then
    only a file, or a directory satclip wrote; a directory holding other files is never replaced.
    ``output`` may not be ``source`` or contain it.

    Raises:
        OutputExistsError: ``output`` exists and may not be replaced (checked before reading ``source``).
        BadInputError: an unknown target; ``output`` is the source; the source is corrupt or inconsistent;
            the target cannot express the model (e.g. an image encoder the original does not know: the
            message names ``--location-only``).
    """
    resolved = resolve(source)
    output = Path(output)
    by_kind = target is None and output.suffix.lower() not in SUFFIX_TARGETS  # (the source's kind chooses it)
    target = target or default_target(resolved.kind, output)
    inputs = [resolved.path]  # (an output containing one is refused too: replacing it would delete the input)
    if resolved.path.is_dir():  # (a native directory, or rshf's)
        inputs += [resolved.path / native.CONFIG_FILE, resolved.path / native.WEIGHTS_FILE]
    check_write(output, target, inputs)  # (then the existing output: all before the reading)
    check_new_output(output)
    directory = is_directory_target(target)
    if by_kind and not directory and output.is_dir():  # (check_output said only "choose a file path")
        raise OutputExistsError(
            f"{output} is a directory, and the target defaulted to {target} (a file, {fitting_name(output, target)}) "
            f"for a {resolved.kind} source: satclip never replaces a directory with a file; name a file, or pass "
            "--target native to write a native directory"
        )
    check_output(output, overwrite=overwrite, inputs=inputs, directory=directory, kind="output")  # before the reading
    if directory:
        native.refuse_other_outputs(output)
    location_only = location_only or target in ("torchgeo", "rshf")
    parts = read_parts(resolved, location_only=location_only, trust_checkpoint=trust_checkpoint)
    if location_only:
        parts = parts.location_only()
    if resolved.kind != "native" or target != "native":  # (an earlier conversion's record, kept, names the origin)
        parts.metadata = {"converted_from": pretrained.recorded_name(source), **parts.metadata}
    return write(parts, output, target, overwrite=overwrite, inputs=inputs)
