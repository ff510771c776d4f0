"""One model's efficiency record (runs inside its own child process: see `harness.efficiency.runner`).

Load (real weights through the same backend `bench run` uses, or the true architecture with random weights),
build the task workload, then: max-batch search at the task's longest input, throughput and latency at matched
batch sizes and at the max batch, peak memory, and the analytic estimate for the chosen device profile.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from harness.efficiency.batch_search import MaxBatch, is_out_of_memory, linear_guess, search_max_batch
from harness.efficiency.cost import ModelCost, model_cost, two_label
from harness.efficiency.devices import DeviceProfile, detect_cuda_profile, get_profile, local_cpu_profile
from harness.efficiency.estimate import estimate_record
from harness.efficiency.memory import GB, MemoryTracker, available_memory_bytes, release_memory, rss_bytes
from harness.efficiency.timing import latency_stats, timed
from harness.efficiency.workload import Workload, build_workload
from harness.errors import ModelError, UsageError

#: Stand-in tokenizers for random-weight models whose own tokenizer is not on this machine.
STAND_IN_TOKENIZER = {"encoder": "me5-small", "causal": "gemma3-270m"}
_STAND_IN_NOTE = {"encoder": "me5-small (XLM-R SentencePiece, 250k)", "causal": "gemma3-270m (Gemma 3, 262k)"}
#: Without --memory-limit a CPU search stops at this share of the memory available at start.
CPU_DEFAULT_LIMIT_SHARE = 0.8


@dataclass(frozen=True)
class MeasureSpec:
    """What one child measures (JSON round-trips through `asdict` / `MeasureSpec(**d)`)."""

    model: str
    weights: str = "auto"  # auto (real where on this machine, else random) | real | random
    tasks: tuple[str, ...] = ("xcopa",)
    languages: tuple[str, ...] | None = None
    limit: int | None = None
    dtype: str = "auto"
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    memory_limit_bytes: int | None = None
    max_batch: int = 65536  # cap of the search
    batch_sizes: tuple[int, ...] = (1, 16)  # matched batch sizes (each model also runs at its own max)
    warmup: int = 1
    probe_forwards: int = 3
    min_iters: int = 10
    min_seconds: float = 10.0
    seq_len: int | None = None  # probe at this padded length instead of the task's longest input
    profile: str | None = None  # --gpu PROFILE
    estimate: bool = False  # add the analytic estimate (estimate only when the device is not here)
    measure: bool = True  # False: estimate only (no weights built)
    cpu_profile_seconds: float = 1.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MeasureSpec:
        d = dict(d)
        for key in ("tasks", "languages", "batch_sizes"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclass
class TimedModel:
    """A model ready to time: forward(batch of rows) does exactly what scoring does with the logits."""

    model: Any
    kind: str  # encoder | causal
    device: torch.device
    dtype: torch.dtype
    autocast: bool
    pad_id: int
    max_length: int
    info: dict[str, Any]
    tokenizer: Any | None = None
    tokenizer_label: str = "own"
    vocab_size: int | None = None  # fold stand-in token ids into this vocabulary
    config: Any = None
    notes: list[str] = field(default_factory=list)

    def inputs(self, rows: list[tuple[int, ...]], pad_to: int | None = None) -> dict[str, torch.Tensor]:
        width = max(pad_to or 0, max(len(r) for r in rows))
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, :len(row)] = 1
        return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}

    def forward(self, inputs: dict[str, torch.Tensor]) -> None:
        """Encoder: logits -> softmax (P(True)); causal LM: full logits -> log_softmax over the vocabulary, as
        lm-eval 0.4.13's HFLM computes them for log-likelihood requests."""
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.model(**inputs).logits
            if self.kind == "encoder":
                out = torch.softmax(logits.float(), dim=-1)[:, 1]
            else:
                out = torch.log_softmax(logits, dim=-1)
            del logits
            if self.device.type == "cpu":
                out.sum().item()  # force completion (CPU ops are synchronous; this only mirrors scoring)
            del out


# -- loading -------------------------------------------------------------------------------------------------------

def _kind_of(model_ref: str, config: Any | None) -> str:
    from harness.models.presets import PRESETS

    preset = PRESETS.get(model_ref)
    if preset is not None:
        return preset.kind
    architectures = [str(a) for a in (getattr(config, "architectures", None) or [])]
    if any(a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")) for a in architectures):
        return "causal"
    return "encoder"


def model_config(model_ref: str) -> tuple[Any, str, str | None]:
    """(transformers config, kind, local path or None) without loading any weights."""
    from transformers import AutoConfig

    from harness.models.presets import PRESETS, load_shipped_config, resolve_model

    preset = PRESETS.get(model_ref)
    if preset is not None and preset.shipped_config:
        return load_shipped_config(preset), preset.kind, None
    resolved = resolve_model(model_ref)
    if not resolved.is_local:
        try:
            config = AutoConfig.from_pretrained(resolved.path)
        except Exception as err:
            raise ModelError(f"--models {model_ref}: no local config.json and none from the hub/cache "
                             f"({type(err).__name__})") from err
        return config, _kind_of(model_ref, config), None
    from harness.models.presets import adapter_base_model, is_adapter_dir

    path = resolved.path
    if is_adapter_dir(path):  # an adapter (e.g. me5-small-st): the architecture is its base's
        base = adapter_base_model(path)
        if not base:
            raise ModelError(f"--models {model_ref}: adapter without a base model")
        base_resolved = resolve_model(base)
        path = base_resolved.path
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    return config, _kind_of(model_ref, config), path


def _max_length(config: Any, kind: str, model_ref: str) -> int:
    from harness.models.presets import PRESETS, config_metadata

    preset = PRESETS.get(model_ref)
    if preset is not None and preset.max_length:
        return preset.max_length
    meta = config_metadata(config.to_dict())
    return meta["max_length"] or (512 if kind == "encoder" else 2048)


def _tokenizer_for(model_ref: str, kind: str, path: str | None) -> tuple[Any, str]:
    from transformers import AutoTokenizer

    from harness.models.presets import hf_quiet, resolve_model

    if path is not None:
        try:
            with hf_quiet():
                return AutoTokenizer.from_pretrained(path, local_files_only=True), "own"
        except (OSError, ValueError):
            pass
    stand_in = STAND_IN_TOKENIZER[kind]
    with hf_quiet():
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(stand_in).path, local_files_only=True)
    return tokenizer, f"stand-in: {_STAND_IN_NOTE[kind]} (the model's own tokenizer is not on this machine)"


def _profile_dtype(requested: str, profile: DeviceProfile) -> torch.dtype:
    """The dtype an estimate assumes: --dtype, or auto = bf16 where the device has it (fp16 on a T4)."""
    from harness.device import DTYPE_ALIASES

    name = DTYPE_ALIASES.get(requested.strip().lower())
    if name is None:
        raise UsageError(f"--dtype {requested!r} is not valid; choose auto, fp32, bf16 or fp16")
    if name == "auto":
        name = "bfloat16" if profile.peak_for("bfloat16") else "float16"
    if not profile.peak_for(name):
        raise UsageError(f"--dtype {requested}: {profile.name} has no {name} peak in its profile")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def build_on_meta(config: Any, kind: str) -> Any:
    """The architecture on the meta device (no memory), with sdpa attention where the architecture has it."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from harness.models.presets import hf_quiet

    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification
    config = config if kind == "causal" else two_label(config)
    with hf_quiet(), torch.device("meta"):
        try:
            return auto.from_config(config, attn_implementation="sdpa")
        except (ValueError, ImportError):
            return auto.from_config(config, attn_implementation="eager")


def _attention_impl(model: Any) -> str:
    return str(getattr(model.config, "_attn_implementation", None) or "eager")


def load_real(spec: MeasureSpec) -> TimedModel:
    """The model exactly as `bench run` loads it (same backend class, dtype rules and notes)."""
    from harness.backends.base import BackendConfig
    from harness.backends.registry import create

    cfg = BackendConfig(model=spec.model, dtype=spec.dtype, device=spec.device, threads=spec.threads,
                        seed=spec.seed)
    _, kind, _ = model_config(spec.model)
    backend: Any = create("encoder" if kind == "encoder" else "hf", cfg)
    info = asdict(backend.info())
    tokenizer = backend.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    model = backend.model
    return TimedModel(model=model, kind=kind, device=backend.device, dtype=backend.dtype,
                      autocast=bool(backend._autocast), pad_id=int(pad), max_length=int(backend.max_length),
                      info=info, tokenizer=tokenizer, config=model.config,
                      notes=list(info.get("notes") or ()))


def _check_weights_fit(spec: MeasureSpec) -> None:
    """Refuse, before allocating, random weights larger than the memory they would go to (no OOM-killed child)."""
    from harness.device import resolve_device, resolve_dtype

    config, kind, _ = model_config(spec.model)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    per_param = 4 if device.type == "cpu" or dtype == torch.float32 else 2
    needed = model_cost(config, kind).parameters * per_param
    if device.type == "cuda":
        room = float(torch.cuda.get_device_properties(device).total_memory)
        where = torch.cuda.get_device_name(device)
    else:
        room = float(available_memory_bytes() or 0) or math.inf
        where = "available RAM"
    if spec.memory_limit_bytes is not None:
        room = min(room, float(spec.memory_limit_bytes))
        where += " / --memory-limit"
    if needed > room:
        raise ModelError(f"{spec.model}: its weights take {needed / GB:.1f} GB, more than the {room / GB:.1f} GB of "
                         f"{where}; use --estimate with --gpu PROFILE for an analytic estimate")


def load_random(spec: MeasureSpec) -> TimedModel:
    """The true architecture from its config.json with seeded random weights: no download, same shapes."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from harness.device import describe_device, dtype_name, resolve_device, resolve_dtype

    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    config, kind, path = model_config(spec.model)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(spec.dtype, device)
    autocast = device.type == "cpu" and dtype == torch.bfloat16
    load_dtype = dtype if device.type == "cuda" else torch.float32
    torch.manual_seed(spec.seed)
    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSequenceClassification
    config = config if kind == "causal" else two_label(config)
    try:
        with torch.device(device):
            model = auto.from_config(config, dtype=load_dtype, attn_implementation="sdpa")
    except (ValueError, ImportError):  # architecture without sdpa support (e.g. DeBERTa-v2)
        with torch.device(device):
            model = auto.from_config(config, dtype=load_dtype, attn_implementation="eager")
    model.eval()
    tokenizer, label = _tokenizer_for(spec.model, kind, path)
    pad = getattr(config, "pad_token_id", None)
    vocab = int(getattr(config.get_text_config() if hasattr(config, "get_text_config") else config,
                        "vocab_size", 0) or 0)
    info = {"backend": "random-weights", "model": spec.model, "path": path, "revision": None, "adapter": None,
            "dtype": dtype_name(dtype), "device": describe_device(device),
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "max_length": _max_length(config, kind, spec.model), "threads": torch.get_num_threads(),
            "notes": [f"random weights (seed {spec.seed}) from the true architecture's config.json"]}
    return TimedModel(model=model, kind=kind, device=device, dtype=dtype, autocast=autocast,
                      pad_id=int(pad) if isinstance(pad, int) and 0 <= pad < vocab else 0,
                      max_length=int(info["max_length"]), info=info, tokenizer=tokenizer, tokenizer_label=label,
                      vocab_size=vocab if label != "own" else None, config=model.config,
                      notes=list(info["notes"]))


# -- measurements ----------------------------------------------------------------------------------------------------

def probe_rows(workload: Workload, seq_len: int | None) -> tuple[tuple[int, ...], int]:
    """The row every max-batch probe repeats: the task's longest input (or one padded to --seq-len)."""
    longest = workload.longest
    if seq_len is None:
        return longest, len(longest)
    return longest[:seq_len], seq_len


def search(tm: TimedModel, workload: Workload, spec: MeasureSpec, tracker: MemoryTracker,
           log: Callable[[str], None]) -> tuple[MaxBatch, list[dict[str, Any]]]:
    row, width = probe_rows(workload, spec.seq_len)
    details: list[dict[str, Any]] = []

    def try_batch(n: int) -> float:
        inputs = tm.inputs([row] * n, pad_to=width)
        tracker.reset()
        started = time.perf_counter()
        try:
            for _ in range(spec.warmup + spec.probe_forwards):
                tm.forward(inputs)
                used = tracker.check_limit()
        except BaseException as err:
            if is_out_of_memory(err):
                log(f"  probe {n}: out of memory ({str(err).splitlines()[0][:100]})")
            raise
        finally:
            del inputs
        details.append({"batch_size": n, "seconds": time.perf_counter() - started, **tracker.peak()})
        log(f"  probe {n}: fits, peak {used / GB:.3f} GB")
        return used

    def cleanup() -> None:
        release_memory(tm.device)

    guess = linear_guess(tracker.limit_bytes) if tracker.limit_bytes is not None else None
    result = search_max_batch(try_batch, cap=spec.max_batch, cleanup=cleanup, next_probe=guess)
    return result, details


def throughput(tm: TimedModel, workload: Workload, cost: ModelCost, spec: MeasureSpec, tracker: MemoryTracker,
               batch_size: int, label: str, profile: DeviceProfile, dtype: str) -> dict[str, Any]:
    """Examples/s, rows/s, real and padded tokens/s, latency percentiles over >= min_iters batches and
    >= min_seconds; the first call and the warm-up calls are timed apart and excluded."""
    batches = workload.batches(batch_size, spec.seed)

    def run(batch: list[int]) -> tuple[float, int]:
        """(seconds, padded width) of one forward over these rows; inputs are built outside the timing."""
        inputs = tm.inputs([workload.rows[i] for i in batch])
        _, seconds = timed(lambda: tm.forward(inputs), tm.device)
        return seconds, int(inputs["input_ids"].shape[1])

    tracker.reset()
    first_call = run(batches[0])[0]
    warm = [run(batches[(k + 1) % len(batches)])[0] for k in range(spec.warmup)]
    latencies: list[float] = []
    rows = real = padded = 0
    flops = 0.0
    k = spec.warmup + 1
    while len(latencies) < spec.min_iters or sum(latencies) < spec.min_seconds:
        batch = batches[k % len(batches)]
        k += 1
        chunk = [workload.rows[i] for i in batch]
        seconds, width = run(batch)
        latencies.append(seconds)
        rows += len(chunk)
        real += sum(len(r) for r in chunk)
        padded += width * len(chunk)
        flops += width * len(chunk) * cost.flops_per_token(width)
        if len(latencies) >= 100_000:  # pragma: no cover - a guard against a zero-time clock
            break
    total = sum(latencies)
    peak_flops = profile.peak_for(dtype)
    achieved = flops / total if total > 0 else math.nan
    return {
        "batch_size": batch_size, "label": label, "iterations": len(latencies), "seconds": total,
        "examples_per_s": rows / workload.rows_per_example / total, "rows_per_s": rows / total,
        "tokens_per_s": real / total, "padded_tokens_per_s": padded / total,
        "padding_share": 1 - real / padded if padded else 0.0,
        "latency_s": latency_stats(latencies), "first_call_s": first_call, "warmup_s": warm,
        "peak_memory": tracker.peak(), "over_memory_limit": _over_limit(tracker), "flops_per_s": achieved,
        "peak_flops": peak_flops, "pct_of_peak": 100 * achieved / peak_flops if peak_flops else None,
        "distinct_batches": min(len(batches), len(latencies)),
    }


def _over_limit(tracker: MemoryTracker) -> bool | None:
    """Whether a throughput run (batches of differing shapes) went past the limit the search respected: the
    allocator's fragmentation can push the peak above that of the probe's uniform batches."""
    if tracker.limit_bytes is None:
        return None
    return tracker.peak_used() > tracker.limit_bytes


def environment_record(tm: TimedModel | None, estimate: dict[str, Any] | None = None) -> dict[str, Any]:
    """The machine that produced the record; for an estimate alone, the dtype and attention it assumes."""
    from harness.device import environment

    env = dict(environment())
    if tm is None and estimate is not None:
        assumed = estimate.get("assumptions", {})
        env["dtype"] = f"{assumed.get('dtype')} (assumed by the estimate)"
        env["attention_implementation"] = f"{assumed.get('attention')} (assumed by the estimate)"
        env["device"] = f"none: estimate for {estimate.get('profile')}"
    if tm is not None:
        env["dtype"] = tm.info.get("dtype")
        env["autocast_bf16_cpu"] = tm.autocast
        env["attention_implementation"] = _attention_impl(tm.model)
        env["device"] = tm.info.get("device")
    env["torch_threads"] = torch.get_num_threads()
    env["python_executable"] = sys.executable
    env["hostname"] = platform.node()
    return env


def resolve_profile(spec: MeasureSpec, device: torch.device, dtype: str) -> tuple[DeviceProfile, str | None]:
    """(profile, mismatch message or None). The measured device's profile, or --gpu's when it names one."""
    here: DeviceProfile | None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        here = detect_cuda_profile(props.name, int(props.total_memory))
    else:
        here = local_cpu_profile(spec.threads, dtype, spec.memory_limit_bytes, seconds=spec.cpu_profile_seconds)
    if spec.profile is None:
        if here is None:
            raise UsageError(f"no device profile matches {torch.cuda.get_device_name(device)}; name one with --gpu")
        return here, None
    wanted = get_profile(spec.profile)
    if here is not None and here.key == wanted.key:
        return here, None
    found = here.name if here is not None else torch.cuda.get_device_name(device)
    return wanted, f"--gpu {spec.profile} is {wanted.name}, but this machine's device is {found}"


def measure(spec: MeasureSpec, log: Callable[[str], None] = lambda _m: None) -> dict[str, Any]:
    """The efficiency record of one model (see the module doc); estimate-only when ``spec.measure`` is False."""
    from harness.device import dtype_name

    started = time.perf_counter()
    timing: dict[str, float] = {}
    tm: TimedModel | None = None
    if spec.measure:
        t0 = time.perf_counter()
        if spec.weights == "random":
            _check_weights_fit(spec)
        tm = load_random(spec) if spec.weights == "random" else load_real(spec)
        timing["load_s"] = time.perf_counter() - t0
        config, kind, tokenizer, label = tm.config, tm.kind, tm.tokenizer, tm.tokenizer_label
        max_length, vocab = tm.max_length, tm.vocab_size
        device, dtype = tm.device, tm.dtype
        attention = _attention_impl(tm.model)
        cost = model_cost(config, kind, tm.model)
        log(f"{spec.model}: loaded ({spec.weights} weights, {dtype_name(dtype)}, {attention}) "
            f"in {timing['load_s']:.1f}s")
    else:
        if spec.profile is None:
            raise UsageError("--estimate without a measurement needs --gpu PROFILE")
        config, kind, path = model_config(spec.model)
        tokenizer, label = _tokenizer_for(spec.model, kind, path)
        max_length = _max_length(config, kind, spec.model)
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        vocab = int(getattr(text_config, "vocab_size", 0) or 0) if label != "own" else None
        target = get_profile(spec.profile)
        device = torch.device("cuda" if target.kind == "gpu" else "cpu")
        dtype = _profile_dtype(spec.dtype, target)
        meta = build_on_meta(config, kind)
        attention = _attention_impl(meta) if target.kind == "gpu" else "sdpa"
        cost = model_cost(config, kind, meta)
    t0 = time.perf_counter()
    workload = build_workload(spec.tasks, "statement" if kind == "encoder" else "loglikelihood", tokenizer,
                              max_length=max_length, languages=spec.languages, limit=spec.limit, seed=spec.seed,
                              tokenizer_label=label, vocab_size=vocab)
    if tm is not None and tm.vocab_size is None:
        workload.tokenizer = label
    timing["workload_s"] = time.perf_counter() - t0
    if spec.seq_len is not None and spec.seq_len > max_length:
        raise UsageError(f"--seq-len {spec.seq_len} exceeds the input limit of {spec.model} ({max_length} tokens)")
    _, probe_len = probe_rows(workload, spec.seq_len)
    dtype_str = dtype_name(dtype)
    record: dict[str, Any] = {
        "model": dict(tm.info) if tm else {"model": spec.model, "backend": "estimate-only", "dtype": dtype_str},
        "kind": kind, "weights": spec.weights if spec.measure else "none (estimate only)",
        "workload": {**workload.summary(), "probe_length": probe_len, "probe_row": "longest input"
                     if spec.seq_len is None else f"--seq-len {spec.seq_len}"},
        "cost": {**cost.as_dict(), "flops_per_token_at_probe": cost.flops_per_token(probe_len),
                 "flops_per_token_at_mean": cost.flops_per_token(round(workload.summary()["tokens"]["mean"]))},
        "settings": {k: v for k, v in asdict(spec).items() if k not in ("model",)},
        "max_batch": None, "throughput": [], "estimate": None, "mode": "measured" if spec.measure else "estimated",
    }
    profile: DeviceProfile | None = None
    if spec.measure and tm is not None:
        profile, mismatch = resolve_profile(spec, device, dtype_str)
        if mismatch:
            raise UsageError(f"{mismatch}; add --estimate for an analytic estimate of {profile.name}")
        limit = spec.memory_limit_bytes
        if device.type == "cpu" and limit is None:
            available = available_memory_bytes()
            limit = int(CPU_DEFAULT_LIMIT_SHARE * available) if available else None
            record["settings"]["memory_limit_note"] = (f"no --memory-limit: {CPU_DEFAULT_LIMIT_SHARE:.0%} of the "
                                                       "memory available at start")
        tracker = MemoryTracker(device, limit)
        tm.forward(tm.inputs([workload.longest]))  # lazy runtime buffers (kernels, caches) belong to the baseline
        release_memory(device)
        loaded_rss = rss_bytes()
        record["memory_after_load"] = {"rss": loaded_rss, "torch_allocated": float(torch.cuda.memory_allocated(
            device)) if device.type == "cuda" else None}
        t0 = time.perf_counter()
        log(f"{spec.model}: max-batch search at {probe_len} tokens (cap {spec.max_batch}, limit "
            f"{'device' if limit is None else f'{limit / GB:.2f} GB'})")
        found, details = search(tm, workload, spec, tracker, log)
        timing["search_s"] = time.perf_counter() - t0
        probes = [asdict(p) for p in found.probes]
        by_batch = {d["batch_size"]: d for d in details}
        for p in probes:
            p.update({k: v for k, v in by_batch.get(p["batch_size"], {}).items() if k != "batch_size"})
        record["max_batch"] = {"max_batch": found.max_batch, "max_pow2": found.max_pow2,
                               "stop_reason": found.stop_reason, "cap": found.cap, "limit_bytes": limit,
                               "probe_length": probe_len, "probes": probes,
                               "forwards_per_probe": spec.warmup + spec.probe_forwards}
        log(f"{spec.model}: max batch {found.max_batch} (power of two {found.max_pow2}, {found.stop_reason})")
        release_memory(device)
        t0 = time.perf_counter()
        sizes = [(b, "matched") for b in spec.batch_sizes if b <= found.max_batch]
        if found.max_batch > 0 and found.max_batch not in spec.batch_sizes:
            sizes.append((found.max_batch, "max"))
        for b, lab in sizes:
            try:
                point = throughput(tm, workload, cost, spec, tracker, b, lab, profile, dtype_str)
            except BaseException as err:
                if not is_out_of_memory(err):
                    raise
                release_memory(device)
                point = {"batch_size": b, "label": lab, "error": f"out of memory: {str(err).splitlines()[0]}"}
            record["throughput"].append(point)
            if "examples_per_s" in point:
                log(f"{spec.model}: batch {b}: {point['examples_per_s']:.2f} examples/s, "
                    f"p50 {point['latency_s']['p50'] * 1000:.1f} ms")
        timing["throughput_s"] = time.perf_counter() - t0
        if spec.estimate:
            record["estimate"] = estimate_record(
                cost, profile, workload, dtype=dtype_str, weight_dtype="float32" if tm.autocast else dtype_str,
                attention=attention, probe_length=probe_len, cap=spec.max_batch, batch_sizes=spec.batch_sizes,
                limit_bytes=limit, measured_fixed_bytes=float(loaded_rss) if device.type == "cpu" and loaded_rss
                else None)
            record["mode"] = "measured+estimated"
    else:
        profile = target
        record["estimate"] = estimate_record(
            cost, profile, workload, dtype=dtype_str, weight_dtype=dtype_str, attention=attention,
            probe_length=probe_len, cap=spec.max_batch, batch_sizes=spec.batch_sizes,
            limit_bytes=spec.memory_limit_bytes)
    assert profile is not None
    record["device"] = {"profile": {**asdict(profile), "peak_flops": dict(profile.peak_flops)},
                        "measured_on": tm.info.get("device") if tm else None}
    record["environment"] = environment_record(tm, record["estimate"])
    timing["total_s"] = time.perf_counter() - started
    record["timing"] = timing
    return record
