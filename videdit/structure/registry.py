"""The registry of structure signals: name -> :class:`~videdit.structure.base.Extractor` class.

Signals register themselves with :func:`register` when their module is imported
(``videdit.structure`` imports them all); the CLI lists them with
:func:`list_signals` and builds one with :func:`get_extractor`. The registry dict is
the only module-level mutable state in the package.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from ..errors import UsageError
from .base import Extractor

__all__ = ["SignalInfo", "register", "list_signals", "get_extractor", "signal_names"]

_REGISTRY: dict[str, type[Extractor]] = {}


@dataclass(frozen=True)
class SignalInfo:
    """One row of :func:`list_signals`.

    ``reason`` is a one-line explanation when ``available`` is False (e.g. weights
    missing, package not installed), else None.
    """

    name: str
    description: str
    available: bool
    reason: str | None = None


def register(name: str):
    """Class decorator: register an :class:`Extractor` subclass under ``name``.

    Sets ``cls.name``. Registering a name twice is a programming error (two signals
    silently shadowing each other would be hard to debug), so it raises.
    """

    def deco(cls: type[Extractor]) -> type[Extractor]:
        if not (isinstance(cls, type) and issubclass(cls, Extractor)):
            raise TypeError(f"@register({name!r}) needs an Extractor subclass, got {cls!r}")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"structure signal {name!r} is already registered by {_REGISTRY[name].__name__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def signal_names() -> list[str]:
    """Registered signal names, sorted."""
    return sorted(_REGISTRY)


def _lookup(name) -> type[Extractor]:
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise UsageError(f"unknown structure signal {name!r}; choose one of: {', '.join(signal_names())}")
    return cls


def _options(cls: type[Extractor]) -> list[str]:
    """The keyword options ``cls`` accepts: keyword-only ``__init__`` parameters.

    Walks up the MRO while an ``__init__`` forwards ``**kw`` to its parent, so a
    subclass that adds one option still reports the inherited ones.
    """
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names.update(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return sorted(names)


def list_signals() -> list[SignalInfo]:
    """Every registered signal with whether it can run here (default options).

    Cheap: availability looks for packages and weight files, loads nothing and
    never uses the network.
    """
    rows = []
    for name in signal_names():
        cls = _REGISTRY[name]
        try:
            reason = cls.unavailable_reason()
        except Exception as err:  # a broken check must not break the listing
            reason = f"availability check failed: {type(err).__name__}: {err}"
        rows.append(SignalInfo(name, cls.description, reason is None, reason))
    return rows


def get_extractor(name: str, **params) -> Extractor:
    """Build the extractor for signal ``name`` with its options checked.

    Raises :class:`UsageError` for an unknown name (listing the valid ones), an
    option the signal does not take (listing the ones it does), or a bad value.
    Loads nothing: the model (if any) is loaded on first call or ``prepare()``.
    """
    cls = _lookup(name)
    valid = _options(cls)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise UsageError(
            f"{name}: unknown option {', '.join(repr(u) for u in unknown)}; "
            f"its options are: {', '.join(valid) or '(none)'}"
        )
    return cls(**params)
