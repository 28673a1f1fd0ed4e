"""Pre-training methods, one file each; importing this package registers every module in it."""

import importlib
import pkgutil

from harness.methods.base import METHODS, OPTIM_DEFAULTS, PretrainData, PretrainMethod, register_method

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in ("base",) and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["METHODS", "OPTIM_DEFAULTS", "PretrainData", "PretrainMethod", "register_method"]
