"""Resolve ``!function module.fn`` references of task files (the escape hatch for what YAML cannot say).

As in lm-evaluation-harness, ``module`` is first looked up as a ``.py`` file beside the task file
(``utils.fn`` -> ``<task dir>/utils.py``), then as an importable module (``lm_eval.tasks.copa.utils.fn``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from harness.errors import UsageError, one_line

_MODULES: dict[str, Any] = {}


def _load_file(module_file: Path) -> Any:
    key = str(module_file.resolve())
    if key not in _MODULES:
        name = f"_statement_bench_task_{abs(hash(key)):x}"
        spec = importlib.util.spec_from_file_location(name, module_file)
        if spec is None or spec.loader is None:
            raise UsageError(f"!function: cannot load {module_file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:  # a user's module: any error is theirs, reported in one line
            sys.modules.pop(name, None)
            raise UsageError(f"!function: {module_file} failed to import ({one_line(err)})") from None
        _MODULES[key] = module
    return _MODULES[key]


def resolve_function(qualname: str, base_dir: Path) -> Any:
    module_name, _, fn = qualname.rpartition(".")
    if not module_name or not fn:
        raise UsageError(f"!function {qualname}: write it as module.function")
    module_file = base_dir / f"{module_name.replace('.', '/')}.py"
    if module_file.is_file():
        module = _load_file(module_file)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise UsageError(f"!function {qualname}: no file {module_file} and no importable module "
                             f"{module_name} ({one_line(err)})") from None
    func = getattr(module, fn, None)
    if not callable(func):
        raise UsageError(f"!function {qualname}: {module_name} has no function {fn!r}")
    return func
