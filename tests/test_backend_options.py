"""Typed per-backend options, the backend protocol's declared attributes, and the efficiency hook."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from harness.backends import registry
from harness.backends.base import Backend, BackendConfig
from harness.backends.fake import FakeBackend
from harness.backends.model_loading import TransformersBackend
from harness.backends.options import HFOptions, LMEvalOptions, VLLMOptions
from harness.cli import main
from harness.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]


def test_cli_strings_become_typed_values() -> None:
    options = HFOptions.parse({"token_budget": "8192", "pack": "off", "auto_batch": "yes"})
    assert options == HFOptions(auto_batch=True, token_budget=8192, pack=False)
    assert HFOptions.parse(None) == HFOptions()
    assert HFOptions.parse(options) is options  # already typed: passed through
    vllm = VLLMOptions.parse({"tensor_parallel_size": "4", "pipeline_parallel_size": 2,
                              "gpu_memory_utilization": "0.85", "distributed_executor_backend": "ray"})
    assert (vllm.tensor_parallel_size, vllm.pipeline_parallel_size) == (4, 2)
    assert vllm.gpu_memory_utilization == pytest.approx(0.85) and vllm.max_num_batched_tokens == 4096


@pytest.mark.parametrize("cls, given, needle", [
    (HFOptions, {"token_budget": "x"}, r"backend option token_budget must be an integer \(got 'x'\)"),
    (HFOptions, {"token_budget": 0}, r"token_budget must be positive"),
    (HFOptions, {"pack": "maybe"}, r"backend option pack must be true or false"),
    (HFOptions, {"tokens": 3}, r"hf backend: unknown option\(s\) tokens \(known: auto_batch, token_budget, pack\)"),
    (VLLMOptions, {"tensor_parallel_size": True}, r"--tensor-parallel-size must be an integer"),
    (VLLMOptions, {"pipeline_parallel_size": 0}, r"--pipeline-parallel-size must be at least 1 \(got 0\)"),
    (LMEvalOptions, {"model_args": "x=1"}, r"backend option model_args must be a mapping"),
])
def test_bad_options_are_one_line_usage_errors(cls: Any, given: dict[str, Any], needle: str) -> None:
    with pytest.raises(UsageError, match=needle) as err:
        cls.parse(given)
    assert "\n" not in str(err.value)


def test_options_of_another_backend_are_refused() -> None:
    with pytest.raises(UsageError, match="backend hf: got options of backend vllm"):
        HFOptions.parse(VLLMOptions())


def test_registry_parses_without_importing_the_backend() -> None:
    assert registry.parse_options("vllm", {"tensor_parallel_size": "8"}) == VLLMOptions(tensor_parallel_size=8)
    with pytest.raises(UsageError, match="unknown backend 'nope'"):
        registry.parse_options("nope", {})


def test_every_backend_declares_the_protocol() -> None:
    """prompt_version and numerics are declared (the runner reads them directly, no getattr fallback)."""
    for entry in registry.available():
        module, _, attr = entry.target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        for member in ("prompt_version", "numerics", "info", "close", "request_kind", "name"):
            assert hasattr(cls, member) or member == "request_kind", (entry.name, member)
    fake = FakeBackend(BackendConfig())
    assert isinstance(fake, Backend) and fake.prompt_version is None and fake.numerics is None


def test_transformers_backends_share_one_base() -> None:
    from harness.backends.encoder import EncoderBackend
    from harness.backends.hf_causal import HFCausalBackend

    assert issubclass(EncoderBackend, TransformersBackend) and issubclass(HFCausalBackend, TransformersBackend)
    assert (EncoderBackend.kind, HFCausalBackend.kind) == ("encoder", "causal")
    for cls in (EncoderBackend, HFCausalBackend):  # the shared checks come from the base, not copies
        assert "--threads must be at least 1" not in Path(importlib.import_module(cls.__module__).__file__ or "") \
            .read_text(encoding="utf-8")


@pytest.mark.parametrize("config, needle", [
    (BackendConfig(model="/nonexistent", batch_size=0), "--batch-size must be at least 1"),
    (BackendConfig(model="/nonexistent", max_length=1), "--max-length must be at least 2"),
    (BackendConfig(model="/nonexistent", threads=0), "--threads must be at least 1"),
    (BackendConfig(model="/nonexistent", options={"pack": "x"}), "backend option pack"),
])
def test_shared_argument_checks_come_before_loading(config: BackendConfig, needle: str) -> None:
    from harness.backends.encoder import EncoderBackend
    from harness.backends.hf_causal import HFCausalBackend

    for cls in (EncoderBackend, HFCausalBackend):
        if "pack" in needle and cls is EncoderBackend:
            with pytest.raises(UsageError, match=r"encoder backend: unknown option\(s\) pack"):
                cls(config)
            continue
        with pytest.raises(UsageError, match=re.escape(needle)):
            cls(config)


def test_efficiency_uses_the_declared_hook() -> None:
    """`bench efficiency` times a backend through `timing_target()`, not its private attributes."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "harness" / "efficiency").glob("*.py"))
    assert "timing_target()" in source
    for private in ("._autocast", "backend.model", "backend.tokenizer", "StatementRequestBuilder(",
                    "LMEvalRequestBuilder("):
        assert private not in source, private


def test_cli_backend_option(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    bad = runner.invoke(main, ["run", "--backend", "hf", "--backend-option", "token_budget=lots", "--limit", "2",
                               "--output", str(out), "--quiet"])
    assert bad.exit_code == 2 and "backend option token_budget must be an integer (got 'lots')" in bad.output
    assert not out.exists()  # refused at plan time: no model loaded, nothing written
    malformed = runner.invoke(main, ["run", "--backend", "fake", "--backend-option", "pack", "--output", str(out)])
    assert malformed.exit_code == 2 and "--backend-option 'pack': write NAME=VALUE" in malformed.output
    listing = runner.invoke(main, ["list", "backends"])
    assert listing.exit_code == 0
    assert "--backend-option token_budget=None [int]: tokens per batch" in listing.output
    assert "--backend-option tensor_parallel_size=1 [int] (--tensor-parallel-size)" in listing.output
