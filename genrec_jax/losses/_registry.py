"""Name -> loss function registry, so a config can pick a loss by string."""
from __future__ import annotations

from typing import Callable, Dict, Tuple

_REGISTRY: Dict[str, Callable] = {}


def register(name: str) -> Callable[[Callable], Callable]:
    """Decorator registering a loss function under ``name``; returns the function unchanged.

    Registering a different function under a name already taken raises ``ValueError``;
    registering the same function again (e.g. a module reload) is a no-op.

    Example::

        @register("my_loss")
        def my_loss(logits, actions, *, where=None): ...
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"loss name must be a non-empty string, got {name!r}")

    def decorator(fn: Callable) -> Callable:
        existing = _REGISTRY.get(name)
        if existing is not None and _qualified(existing) != _qualified(fn):
            raise ValueError(
                f"loss name {name!r} is already registered to {_qualified(existing)}")
        _REGISTRY[name] = fn
        return fn

    return decorator


def get_loss(name: str) -> Callable:
    """The loss registered under ``name``; unknown names raise ``ValueError`` listing all names."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown loss {name!r}; available losses: {', '.join(available_losses())}"
        ) from None


def available_losses() -> Tuple[str, ...]:
    """Sorted tuple of registered loss names."""
    return tuple(sorted(_REGISTRY))


def _qualified(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
