"""Model names → builders, for every family in ``levit/``: one table that ``levit.create_model`` and the CLI read.

Each family module registers its names when it is imported (``levit/__init__.py`` imports them all), so adding a
family is one module and one import line; nothing here knows any family.
"""
from __future__ import annotations

from typing import Callable

import torch.nn as nn

# name -> (family, builder(name, **kwargs) -> nn.Module)
_MODELS: dict[str, tuple[str, Callable[..., nn.Module]]] = {}


def register(family: str, names, builder: Callable[..., nn.Module]) -> None:
    """Register ``builder`` for each of ``names`` (a family's ``create_model``); a name registered twice raises."""
    for name in names:
        if name in _MODELS and _MODELS[name][1] is not builder:
            raise ValueError(f"model name {name!r} is registered twice ({_MODELS[name][0]} and {family})")
        _MODELS[name] = (family, builder)


def model_names(family: str | None = None) -> tuple[str, ...]:
    """Every registered name (of ``family`` only, when given), in registration order."""
    return tuple(n for n, (f, _) in _MODELS.items() if family is None or f == family)


def family_of(name: str) -> str:
    return _entry(name)[0]


def _entry(name: str):
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(_MODELS)}") from None


def create_model(name: str, **kwargs) -> nn.Module:
    """Build model ``name`` of any family with that family's keyword arguments (e.g. ``num_classes``,
    ``checkpoint``, ``img_size``). Returned in train mode, as nn.Module constructors do."""
    if not isinstance(name, str):  # a LeViTSpec: this project's LeViT takes custom specs
        from levit.model import create_model as create_levit

        return create_levit(name, **kwargs)
    return _entry(name)[1](name, **kwargs)
