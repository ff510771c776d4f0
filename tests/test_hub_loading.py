"""`load_rows(source="hub")`: offline, against the tiny Hub-layout mirrors in tests/fixtures/hub/."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from harness.errors import DataError
from harness.tasks.loading import load_rows
from harness.tasks.registry import load_registry

TASKS = load_registry().tasks

HUB_DIR = Path(__file__).resolve().parent / "fixtures" / "hub"
FIXTURES = [  # (task, language, split) present in the fixture mirrors (first 5 packaged rows each)
    ("xcopa", "et", "test"), ("xcopa", "et", "validation"), ("xcopa", "th", "test"),
    ("xcopa", "th", "validation"),
    ("xnli", "en", "test"), ("xnli", "en", "validation"), ("xnli", "ru", "test"),
    ("xnli", "ru", "validation"),
    ("xstorycloze", "en", "eval"), ("xstorycloze", "en", "train"), ("xstorycloze", "eu", "eval"),
    ("xstorycloze", "eu", "train"),
    ("xwinograd", "en", "test"), ("xwinograd", "jp", "test"),
]
N_FIXTURE_ROWS = 5


@pytest.fixture(autouse=True)
def offline_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Keep `datasets` offline and its cache inside tmp_path."""
    import datasets  # a hard dependency: never skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if hasattr(datasets.config, name):
            monkeypatch.setattr(datasets.config, name, True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    try:
        import huggingface_hub.constants as hub_constants

        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    except (ImportError, AttributeError):
        pass
    return datasets


@pytest.mark.parametrize(("task", "lang", "split"), FIXTURES)
def test_hub_rows_equal_packaged_rows(task: str, lang: str, split: str) -> None:
    hub = load_rows(task, lang, split, source="hub", hub_dir=str(HUB_DIR))
    packaged = load_rows(task, lang, split)
    assert hub.source == "hub" and hub.sha256 is None and hub.derived is False
    assert hub.location == str(HUB_DIR / TASKS[task].hub_id)
    assert len(hub.rows) == N_FIXTURE_ROWS
    assert f"the packaged split has {TASKS[task].rows(split, lang)} rows" in hub.note
    schema = dict(TASKS[task].schema)
    for h, p in zip(hub.rows, packaged.rows[:N_FIXTURE_ROWS], strict=True):
        assert list(h) == list(schema)
        for name, typ in schema.items():
            assert type(h[name]) is typ, (name, h)
        # packaged-only extras (xwinograd `source`) are not on the Hub; every Hub field matches exactly
        assert h == {k: p[k] for k in schema}
        if task != "xwinograd":
            assert h == p


def test_missing_config_is_a_data_error() -> None:
    with pytest.raises(DataError) as exc:
        load_rows("xcopa", "it", "test", source="hub", hub_dir=str(HUB_DIR))
    msg = str(exc.value)
    assert msg.startswith("could not load cambridgeltl/xcopa config it split test from the Hub: ")
    assert "\n" not in msg


def test_missing_mirror_dir_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_rows("xnli", "en", "test", source="hub", hub_dir=str(tmp_path))
    msg = str(exc.value)
    assert msg.startswith("could not load facebook/xnli config en split test from the Hub: ")
    assert "does not exist" in msg and "\n" not in msg


def test_unreachable_hub_is_a_data_error() -> None:
    with pytest.raises(DataError) as exc:
        load_rows("xwinograd", "en", "test", source="hub")
    msg = str(exc.value)
    assert msg.startswith("could not load Muennighoff/xwinograd config en split test from the Hub: ")
    assert "\n" not in msg


def test_any_datasets_exception_becomes_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("first line\nsecond line")

    fake = types.ModuleType("datasets")
    fake.load_dataset = boom  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(DataError) as exc:
        load_rows("xstorycloze", "en", "eval", source="hub")
    assert str(exc.value) == ("could not load juletxara/xstory_cloze config en split eval from the Hub: "
                              "first line second line")


def test_hub_rows_are_normalised_to_the_packaged_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": 2, "extra": 1},
            {"sentence": "C _ d.", "option1": "x", "option2": "y", "answer": "1", "source": "s"}]
    fake = types.ModuleType("datasets")
    fake.load_dataset = lambda *a, **k: list(rows)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "datasets", fake)
    rs = load_rows("xwinograd", "fr", "test", source="hub")
    assert rs.rows == [{"sentence": "A _ b.", "option1": "x", "option2": "y", "answer": "2"},
                       {"sentence": "C _ d.", "option1": "x", "option2": "y", "answer": "1", "source": "s"}]
    assert rs.location == "hub:Muennighoff/xwinograd/fr/test"

    fake.load_dataset = lambda *a, **k: [{"premise": "p", "hypothesis": "h"}]  # type: ignore[attr-defined]
    with pytest.raises(DataError, match="missing field 'label'"):
        load_rows("xnli", "de", "test", source="hub")
    fake.load_dataset = lambda *a, **k: [{"premise": "p", "hypothesis": "h", "label": None}]  # type: ignore[attr-defined]
    with pytest.raises(DataError, match="field 'label' has value None"):
        load_rows("xnli", "de", "test", source="hub")


def test_datasets_is_imported_lazily() -> None:
    code = "import sys, harness.tasks.loading; print('datasets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bench_run_with_hub_source_matches_packaged(tmp_path: Path):
    """`bench run --data-source hub` builds the same statements and results as the packaged copy."""
    from click.testing import CliRunner

    from harness.cli import main
    from harness.results.schema import read_result

    outputs = {}
    for source in ("hub", "packaged"):
        out = tmp_path / source
        res = CliRunner().invoke(main, ["run", "--backend", "fake", "--model", "length", "--tasks", "xcopa,xwinograd",
                                        "--langs", "et,jp", "--limit", "5", "--data-source", source,
                                        "--hub-dir", str(HUB_DIR), "--output", str(out), "--quiet"])
        assert res.exit_code == 0, res.output
        result_file = next(out.glob("*/result.json"))
        outputs[source] = (read_result(result_file), (result_file.parent / "samples.jsonl").read_text("utf-8"))
    hub, packaged = outputs["hub"], outputs["packaged"]
    assert hub[1] == packaged[1]  # identical statements, scores and predictions
    assert hub[0].tasks["xcopa"].languages["et"].data_source == "hub"
    assert hub[0].tasks["xcopa"].languages["et"].data_sha256 is None
    assert hub[0].run_id != packaged[0].run_id  # the data source is part of the run identity
    for task in ("xcopa", "xwinograd"):
        assert hub[0].tasks[task].mean_accuracy == packaged[0].tasks[task].mean_accuracy
