"""Report figures: the numbers each plot draws (via its data helper), and a real PNG of the right size."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from harness.reports import plots
from harness.reports.plots import (
    DPI,
    accuracy_vs_parameters,
    heatmap_matrix,
    language_heatmap,
    parameter_points,
    pareto_accuracy_throughput,
    pareto_front,
    pareto_points,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NAN = math.nan

ENC = "encoder:me5-small-st"
SMOL = "hf:smollm2-360m"
GEMMA = "hf:gemma3-270m"  # parameter count unknown (NaN)
PARAMS = {ENC: 1.2e8, SMOL: 3.6e8, GEMMA: NAN}
LANGS = {"xcopa": ["ht", "et", "sw"], "xnli": ["sw", "de", "en"]}  # deliberately unsorted
ACC = {  # (model, task) -> per-language accuracy (fractions), in LANGS order
    (ENC, "xcopa"): [0.60, 0.70, 0.80],
    (ENC, "xnli"): [0.40, 0.50, NAN],
    (SMOL, "xcopa"): [0.50, 0.55, 0.45],
    (SMOL, "xnli"): [0.30, 0.45, 0.60],
    (GEMMA, "xcopa"): [0.52, 0.58, 0.49],
    (GEMMA, "xnli"): [0.35, 0.35, 0.41],
}
PUBLISHED = {("seed:xlmr-large-st", "xcopa"): (0.75, 5.6e8), ("seed:xlmr-large-st", "xnli"): (0.55, 5.6e8),
             ("seed:llama2-7b", "xcopa"): (0.62, 7e9), ("seed:llama2-7b", "xnli"): (0.45, 7e9)}


def _row(model: str, task: str, language: str, metric: str, value: float, n: int, ci: float | None,
         parameters: float, source: str) -> dict[str, object]:
    low, high = (NAN, NAN) if ci is None or math.isnan(value) else (value - ci, value + ci)
    return {"model": model, "task": task, "language": language, "metric": metric, "value": value, "n": n,
            "ci_low": low, "ci_high": high, "parameters": parameters, "backend": model.split(":")[0],
            "source": source}


def _mean(values: list[float]) -> float:
    ok = [v for v in values if not math.isnan(v)]
    return sum(ok) / len(ok)


def make_accuracy() -> pd.DataFrame:
    rows = []
    for (model, task), values in ACC.items():
        for metric, shift in (("acc", 0.0), ("acc_norm", 0.05)):  # acc_norm differs: figures must ignore it
            vals = [v + shift for v in values]
            for lang, v in zip(LANGS[task], vals, strict=True):
                rows.append(_row(model, task, lang, metric, v, 100, 0.05, PARAMS[model], "measured"))
            rows.append(_row(model, task, "mean", metric, _mean(vals), 300, 0.03, PARAMS[model], "measured"))
    for (model, task), (value, params) in PUBLISHED.items():
        rows.append(_row(model, task, "mean", "acc", value, 0, None, params, "published"))
    return pd.DataFrame(rows)


def make_throughput() -> pd.DataFrame:
    return pd.DataFrame([
        {"model": ENC, "device": "cpu", "examples_per_s": 200.0, "estimated": False},
        {"model": SMOL, "device": "h100", "examples_per_s": 50.0, "estimated": True},
        {"model": GEMMA, "device": "cpu", "examples_per_s": 10.0, "estimated": False},
        {"model": "hf:not-in-accuracy", "device": "cpu", "examples_per_s": 1000.0, "estimated": False},
        {"model": "seed:llama2-7b", "device": "a100", "examples_per_s": 5.0, "estimated": True},  # published only
    ])


def assert_png(path: Path, width: int | None = None, height: int | None = None) -> tuple[int, int]:
    import matplotlib.image as mpimg

    assert path.is_file()
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = mpimg.imread(path)
    h, w = image.shape[:2]
    if width is not None:
        assert (h, w) == (height, width)
    assert image.std() > 0  # not a blank canvas
    return w, h





# --------------------------------------------------------------------------------------------------------------
# pareto_front


@pytest.mark.parametrize(("points", "expected"), [
    ([], []),
    ([(1.0, 1.0)], [0]),
    ([(1, 1), (2, 2), (3, 3)], [2]),  # a chain: only the top-right survives
    ([(1, 3), (2, 2), (3, 1), (1, 1), (2, 1)], [0, 1, 2]),
    ([(3, 1), (1, 3), (2, 2)], [1, 2, 0]),  # sorted by x, not by input order
    ([(1, 2), (1, 2)], [0, 1]),  # exact duplicates do not dominate each other
    ([(2, 5), (1, 1), (2, 5), (3, 4)], [0, 2, 3]),
    ([(2, 5), (2, 4)], [0]),  # same x: higher y dominates
    ([(1, 5), (3, 5)], [1]),  # same y: higher x dominates
    ([(NAN, 9), (1, 1), (2, NAN)], [1]),  # NaN points are neither on the front nor dominate
])
def test_pareto_front(points: list[tuple[float, float]], expected: list[int]) -> None:
    assert pareto_front(points) == expected


def test_plots_know_no_task() -> None:
    """Titles and chance come from the caller (result files, task files): the module has no table of tasks."""
    assert not hasattr(plots, "CHANCE") and not hasattr(plots, "chance_for")


# --------------------------------------------------------------------------------------------------------------
# language heatmap


def test_heatmap_matrix_values() -> None:
    m = heatmap_matrix(make_accuracy(), "xcopa")
    assert list(m.index) == [ENC, SMOL, GEMMA]  # measured only, first-appearance order
    assert list(m.columns) == ["et", "ht", "sw"]  # sorted, no "mean"
    assert m.loc[ENC].tolist() == pytest.approx([70.0, 60.0, 80.0])  # acc (not acc_norm), in %
    assert m.loc[SMOL, "sw"] == pytest.approx(45.0)

    x = heatmap_matrix(make_accuracy(), "xnli")
    assert list(x.columns) == ["de", "en", "sw"]
    assert math.isnan(x.loc[ENC, "en"])  # a NaN accuracy stays a (blank) cell
    assert x.loc[GEMMA, "sw"] == pytest.approx(35.0)

    assert heatmap_matrix(make_accuracy(), "xwinograd").empty
    assert heatmap_matrix(pd.DataFrame(), "xcopa").empty


def test_language_heatmap_png(tmp_path: Path, figure_texts: list[str]) -> None:
    out = language_heatmap(make_accuracy(), "xnli", tmp_path / "figs" / "heat.png", title="XNLI", chance=100 / 3)
    assert out == tmp_path / "figs" / "heat.png"
    w, h = assert_png(out)
    assert 600 <= w <= 1200 and 300 <= h <= 900 and w > h
    cells = {"50.0", "–", "40.0", "45.0", "60.0", "30.0", "35.0", "41.0"}  # one decimal, NaN as a dash
    assert cells <= set(figure_texts)
    assert figure_texts.count("35.0") == 2
    assert {"accuracy (%)", "language", "model", ENC, SMOL, GEMMA, "de", "en", "sw"} <= set(figure_texts)
    assert any(t.startswith("XNLI:") and "white = chance (33.3%)" in t for t in figure_texts)  # title and chance


def test_language_heatmap_without_chance(tmp_path: Path, figure_texts: list[str]) -> None:
    """A task of unknown chance: a sequential colormap, the raw name as title, no chance claimed."""
    out = language_heatmap(make_accuracy(), "xnli", tmp_path / "heat.png")
    assert out is not None
    title = next(t for t in figure_texts if t.startswith("xnli:"))
    assert "chance" not in title
    with_chance = language_heatmap(make_accuracy(), "xnli", tmp_path / "heat2.png", chance=25.0)
    assert with_chance is not None and with_chance.read_bytes() != out.read_bytes()
    assert any(t.startswith("xnli:") and "white = chance (25.0%)" in t for t in figure_texts)


def test_language_heatmap_none(tmp_path: Path) -> None:
    acc = make_accuracy()
    assert language_heatmap(acc, "xwinograd", tmp_path / "a.png") is None
    assert language_heatmap(acc.iloc[0:0], "xcopa", tmp_path / "b.png") is None
    assert language_heatmap(acc[acc["source"] == "published"], "xcopa", tmp_path / "c.png") is None
    assert not list(tmp_path.iterdir())


def test_language_heatmap_deterministic(tmp_path: Path) -> None:
    a = language_heatmap(make_accuracy(), "xcopa", tmp_path / "a.png")
    b = language_heatmap(make_accuracy(), "xcopa", tmp_path / "b.png")
    assert a is not None and b is not None
    assert a.read_bytes() == b.read_bytes()


# --------------------------------------------------------------------------------------------------------------
# accuracy vs parameters


def test_parameter_points_values() -> None:
    p = parameter_points(make_accuracy())
    assert set(p["model"]) == {ENC, SMOL, "seed:xlmr-large-st", "seed:llama2-7b"}  # GEMMA: unknown size
    assert len(p) == 8
    enc = p[(p["model"] == ENC) & (p["task"] == "xnli")].iloc[0]
    assert enc["y"] == pytest.approx(45.0)  # mean of 40 and 50 (NaN language skipped), acc not acc_norm
    assert (enc["ci_low"], enc["ci_high"]) == pytest.approx((42.0, 48.0))
    assert enc["parameters"] == 1.2e8 and enc["source"] == "measured"
    pub = p[(p["model"] == "seed:llama2-7b") & (p["task"] == "xcopa")].iloc[0]
    assert pub["y"] == pytest.approx(62.0) and pub["source"] == "published"
    assert math.isnan(pub["ci_low"]) and math.isnan(pub["ci_high"])
    assert parameter_points(pd.DataFrame()).empty


def test_accuracy_vs_parameters_png(tmp_path: Path, figure_texts: list[str]) -> None:
    out = accuracy_vs_parameters(make_accuracy(), tmp_path / "sub" / "params.png",
                                 titles={"xnli": "XNLI", "xcopa": "XCOPA"}, chance={"xcopa": 50.0, "xnli": 100 / 3})
    assert out == tmp_path / "sub" / "params.png"
    assert_png(out, width=int(2 * 6.0 * DPI), height=int(4.5 * DPI))  # 2 tasks -> 1 row x 2 panels
    assert {"XCOPA", "XNLI", "published (seed paper)", "measured (95% CI)", "chance (50.0%)", "chance (33.3%)",
            "parameters (log scale)"} <= set(figure_texts)
    assert figure_texts.index("XNLI") < figure_texts.index("XCOPA")  # panels in the order of `titles`
    # every point labelled, in both panels
    assert figure_texts.count(ENC) == 2 and figure_texts.count("seed:llama2-7b") == 2
    assert GEMMA not in figure_texts  # unknown size: skipped

    four = pd.concat([make_accuracy().assign(task=lambda d, t=t: d["task"].str.replace("xcopa", t))
                      for t in ("xcopa", "xwinograd", "xstorycloze")], ignore_index=True)
    out4 = accuracy_vs_parameters(four, tmp_path / "params4.png")
    assert out4 is not None
    assert_png(out4, width=int(2 * 6.0 * DPI), height=int(2 * 4.5 * DPI))  # 4 tasks -> 2 x 2


def test_accuracy_vs_parameters_chance_only_where_known(tmp_path: Path, figure_texts: list[str]) -> None:
    out = accuracy_vs_parameters(make_accuracy(), tmp_path / "params.png", chance={"xnli": 25.0})
    assert out is not None
    assert {"xcopa", "xnli", "chance (25.0%)"} <= set(figure_texts)  # raw names without titles
    assert [t for t in figure_texts if t.startswith("chance")] == ["chance (25.0%)"]  # no line for xcopa


def test_accuracy_vs_parameters_none(tmp_path: Path) -> None:
    acc = make_accuracy()
    assert accuracy_vs_parameters(acc.iloc[0:0], tmp_path / "a.png") is None
    assert accuracy_vs_parameters(acc.assign(parameters=NAN), tmp_path / "b.png") is None
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------------------------
# Pareto: accuracy vs throughput / cost


def test_pareto_points_values() -> None:
    p = pareto_points(make_accuracy(), make_throughput())
    assert list(p.columns) == ["model", "device", "x", "y", "n_tasks", "estimated", "on_front"]
    assert list(p["model"]) == [GEMMA, SMOL, ENC]  # sorted by x; no accuracy / published-only models dropped
    assert p["x"].tolist() == [10.0, 50.0, 200.0]
    enc_y = (_mean([0.60, 0.70, 0.80]) + _mean([0.40, 0.50])) / 2 * 100  # mean of the task means
    smol_y = (_mean([0.50, 0.55, 0.45]) + _mean([0.30, 0.45, 0.60])) / 2 * 100
    gemma_y = (_mean([0.52, 0.58, 0.49]) + _mean([0.35, 0.35, 0.41])) / 2 * 100
    assert p["y"].tolist() == pytest.approx([gemma_y, smol_y, enc_y])
    assert p["n_tasks"].tolist() == [2, 2, 2]
    assert p["estimated"].tolist() == [False, True, False]
    assert p["device"].tolist() == ["cpu", "h100", "cpu"]
    # ENC is fastest and most accurate: it dominates both others
    assert p["on_front"].tolist() == [False, False, True]


def test_pareto_points_price_and_front() -> None:
    acc = make_accuracy()
    acc.loc[(acc["model"] == GEMMA) & (acc["language"] == "mean") & (acc["metric"] == "acc"), "value"] = 0.9
    p = pareto_points(acc, make_throughput(), gpu_price_per_hour=2.0)
    assert p["x"].tolist() == pytest.approx([10.0 * 1800, 50.0 * 1800, 200.0 * 1800])
    assert p.loc[p["model"] == GEMMA, "y"].item() == pytest.approx(90.0)
    assert p["on_front"].tolist() == [True, False, True]  # slow-but-accurate GEMMA joins the front
    with pytest.raises(ValueError, match="gpu_price_per_hour"):
        pareto_points(acc, make_throughput(), gpu_price_per_hour=0.0)


def test_pareto_points_single_task_and_duplicates() -> None:
    acc = make_accuracy()
    acc = acc[~((acc["model"] == SMOL) & (acc["task"] == "xnli"))]  # SMOL ran xcopa only
    tp = pd.concat([make_throughput(), pd.DataFrame([
        {"model": ENC, "device": "h100", "examples_per_s": 9000.0, "estimated": True},  # measured row wins
    ])], ignore_index=True)
    p = pareto_points(acc, tp).set_index("model")
    assert p.loc[SMOL, "n_tasks"] == 1
    assert p.loc[SMOL, "y"] == pytest.approx(50.0)
    assert p.loc[ENC, "x"] == 200.0 and not p.loc[ENC, "estimated"]


def test_pareto_png(tmp_path: Path, figure_texts: list[str]) -> None:
    out = pareto_accuracy_throughput(make_accuracy(), make_throughput(), tmp_path / "p" / "speed.png")
    assert out == tmp_path / "p" / "speed.png"
    assert_png(out, width=int(8.0 * DPI), height=int(5.5 * DPI))
    assert {"Accuracy vs throughput (examples/s)", "examples/s (log scale)", f"{SMOL} (estimated)", ENC, GEMMA,
            "Pareto frontier", "estimated throughput", "measured throughput"} <= set(figure_texts)
    assert "hf:not-in-accuracy" not in figure_texts

    figure_texts.clear()
    cost = pareto_accuracy_throughput(make_accuracy(), make_throughput(), tmp_path / "cost.png",
                                      gpu_price_per_hour=2.0)
    assert cost is not None
    assert_png(cost, width=int(8.0 * DPI), height=int(5.5 * DPI))
    assert cost.read_bytes() != out.read_bytes()  # different axis and title
    # "$" is escaped, or matplotlib would typeset the text between two dollars as maths
    assert r"Accuracy vs cost (examples per US\$, GPU at \$2.00/hour)" in figure_texts


def test_pareto_none(tmp_path: Path) -> None:
    acc, tp = make_accuracy(), make_throughput()
    assert pareto_accuracy_throughput(acc.iloc[0:0], tp, tmp_path / "a.png") is None
    assert pareto_accuracy_throughput(acc, tp.iloc[0:0], tmp_path / "b.png") is None
    no_overlap = tp[tp["model"].isin(["hf:not-in-accuracy", "seed:llama2-7b"])]
    assert pareto_accuracy_throughput(acc, no_overlap, tmp_path / "c.png") is None
    assert pareto_points(pd.DataFrame(), pd.DataFrame()).empty
    assert not list(tmp_path.iterdir())
