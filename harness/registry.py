"""A tiny name -> object registry (in the spirit of timm's ``@register_model``) with did-you-mean errors."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

# a downstream task's ``pool`` param: "method" = as the upstream method declares (resolved by `plan` into the
# job's params, so into its identity)
POOL_FROM_METHOD = "method"

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str]) -> str | None:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return close[0] if close else None


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists the valid names and the closest one."""

    def __init__(self, kind: str, name: str, choices: list[str], hint: str = ""):
        self.kind, self.name, self.choices = kind, name, choices
        guess = did_you_mean(name, choices)
        msg = f"unknown {kind} {name!r}"
        if guess:
            msg += f"; did you mean {guess!r}?"
        msg += f" (known: {', '.join(sorted(choices)) or 'none'})"
        if hint:
            msg += f". {hint}"
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


class Registry(Generic[T]):
    """Maps stable string names (the public ids used in study files) to objects."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def register_class(self, name: str) -> Callable[[T], T]:
        """Class decorator that also stores the public name on the class (``cls.name``)."""

        def decorator(cls: T) -> T:
            cls.name = name  # type: ignore[attr-defined]
            return self.register(name)(cls)

        return decorator

    def replace(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name``, replacing an earlier entry (declarations read from files)."""
        self._entries[name] = obj
        return obj

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UnknownNameError(self.kind, name, self.names())
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._entries[n]) for n in self.names()]


def resolve_params(kind: str, name: str, defaults: dict[str, dict[str, Any]], scale: str,
                   overrides: dict[str, Any] | None, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``base``, then the defaults of ``scale``, then ``overrides``. A scale without defaults of its own takes
    those of the scale its name extends (``tiny-long``: ``tiny``'s), else ``paper``'s. An override of a parameter
    that does not exist, or of the wrong type or range, is an error naming it."""
    from harness.params import check_overrides

    params = dict(base or {})
    family = scale.split("-", 1)[0]
    params.update(defaults.get(scale, defaults.get(family, defaults.get("paper", {}))))
    unknown = set(overrides or {}) - set(params)
    if unknown:
        raise KeyError(f"{kind} {name!r} has no parameter(s) {sorted(unknown)}; known: {sorted(params)}")
    check_overrides(overrides or {}, params)  # ValueError naming the parameter
    params.update(_replaced_warmup(params, overrides or {}))
    return with_scaled_lr(params)


def _replaced_warmup(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides, plus None for every declared way of warming up that the study did not set when it set
    another one: a study's ``warmup_epochs`` must not be shadowed by a declared ``warmup_fraction``."""
    from harness.schedule import WARMUP_KEYS

    if not any(overrides.get(k) is not None for k in WARMUP_KEYS):
        return overrides
    cleared = {k: None for k in WARMUP_KEYS if k in params and k not in overrides}
    return {**cleared, **overrides}


def with_scaled_lr(params: dict[str, Any]) -> dict[str, Any]:
    """The learning-rate rule of the references: ``lr = blr x batch_size / lr_ref_batch`` (BEiT, MAE, DINO: 256;
    DeiT: 512), unless ``lr`` is set explicitly. Params without a ``blr`` are returned unchanged."""
    if params.get("blr") is None or params.get("lr") is not None:
        return params
    return {**params, "lr": params["blr"] * params["batch_size"] / params["lr_ref_batch"]}
