"""Name → builder registries (encodings, networks, image encoders, tasks, pretrained models)."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from .errors import UnknownNameError, UnknownParameterError

T = TypeVar("T")


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"did you mean 'x'?"`` (or ``'x' or 'y'``) for the known names closest to a misspelt ``name``, or
    ``""`` when none is close (:func:`difflib.get_close_matches`, case-insensitive), or the names it begins
    (``holdout`` for ``holdout-continent``, too short a part of it for difflib)."""
    known = list(known)
    by_lower = {k.lower(): k for k in known}
    given = str(name).lower()
    close = difflib.get_close_matches(given, list(by_lower), n=2, cutoff=0.6)
    if not close and len(given) >= 3:
        close = [k for k in by_lower if k.startswith(given)][:2]
    if not close:
        return ""
    return "did you mean " + " or ".join(repr(by_lower[c]) for c in close) + "?"


def empty_item(items: list[str], text: str) -> str:
    """What is wrong with the comma list ``text`` split into the stripped ``items`` where an empty item stands
    before the last (``0,,1``, ``wrap,,direct``: it was dropped without a word), else ``""``; a trailing comma
    (``3,``) and a list of no items (``,``, for its option to say what it needs) are no such item."""
    if any(items) and not all(items[:-1]):
        return f"an empty item between commas in {text!r}: remove the extra comma"
    return ""


def check_parameters(kind: str, name: str, accepted: Iterable[str], params: Iterable[str]) -> None:
    """Raise :class:`~satclip.errors.UnknownParameterError` (a BadInputError and a TypeError) naming the ``params``
    that the ``kind`` ``name`` does not take, and those it does."""
    accepted = sorted(accepted)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise UnknownParameterError(
            f"{kind} {name!r} got unexpected parameter(s) {unknown}; it accepts {accepted or 'none'}"
        )


class Registry(Generic[T]):
    """A named collection of builders; an unknown name raises :class:`~satclip.errors.UnknownNameError` (a
    BadInputError and a KeyError) listing the known ones."""

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(builder: Callable[..., T]) -> Callable[..., T]:
            if name in self._builders:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._builders[name] = builder
            return builder

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._builders[name]
        except KeyError:
            known = ", ".join(sorted(self._builders))
            hint = did_you_mean(name, self._builders)
            hint = f"{hint} " if hint else ""
            raise UnknownNameError(f"unknown {self.kind} {name!r}; {hint}known: {known}") from None

    def accepted(self, name: str) -> set[str]:
        """The keyword parameters the builder of ``name`` takes."""
        return set(inspect.signature(self.get(name)).parameters)

    def with_defaults(self, part: dict) -> dict:
        """``part`` (``{"name": …, **params}``) with every parameter its builder defaults written out, so a
        saved or exported config says what was built even where a reader (or a later satclip) defaults
        otherwise (``input_dim`` comes from elsewhere)."""
        signature = inspect.signature(self.get(part["name"])).parameters
        defaults = {
            k: p.default for k, p in signature.items() if p.default is not inspect.Parameter.empty and k != "input_dim"
        }
        return {**defaults, **part}

    def create(self, name: str, **params) -> T:
        """Build ``name``; a parameter its builder does not take raises :class:`~satclip.errors.UnknownParameterError`
        listing the valid ones."""
        check_parameters(self.kind, name, self.accepted(name), params)
        return self.get(name)(**params)

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: object) -> bool:
        return name in self._builders
