"""Translated Statement-Tuning training templates (harness/training/templates/<lang>.yaml) mirror en.yaml."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml

TEMPLATES = Path(__file__).resolve().parents[1] / "harness" / "training" / "templates"
LANGS = ["af", "ar", "de", "es", "fr", "ga", "gu", "ha", "hi", "id", "ig", "is",
         "it", "kk", "ky", "lo", "mt", "ny", "pt", "ru", "si", "tr", "vi", "zh"]
ALL_CODES = {"en", *LANGS}
NON_LATIN = {"ar", "gu", "hi", "kk", "ky", "lo", "ru", "si", "zh"}
TOPIC_LABELS = {"science/technology", "travel", "politics", "sports", "health", "entertainment", "geography"}
SENTIMENT_LABELS = {"positive", "neutral", "negative"}
# Quote pairs a translation may put around a slot that en.yaml quotes.
QUOTES = [('"', '"'), ("“", "”"), ("„", "“"), ("«", "»"), ("« ", " »"), ("「", "」")]


def load(lang: str) -> dict:
    raw = (TEMPLATES / f"{lang}.yaml").read_bytes()
    return yaml.safe_load(raw.decode("utf-8"))  # strict decode: the file must be valid UTF-8


def templates(doc: dict) -> dict[tuple[str, str], str]:
    return {(tt, t["id"]): t["text"] for tt, spec in doc["task_types"].items() for t in spec["templates"]}


def fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


EN = templates(load("en"))


def test_every_language_has_a_file():
    assert {p.stem for p in TEMPLATES.glob("*.yaml")} >= ALL_CODES


@pytest.mark.parametrize("lang", LANGS)
def test_header_fields(lang):
    doc = load(lang)
    assert doc["language"] == lang
    assert doc["version"] == 1
    assert doc["translated_from"] == "en.yaml"
    assert doc["machine_translated"] is True
    assert (TEMPLATES / f"{lang}.yaml").read_text(encoding="utf-8").startswith("# ")


@pytest.mark.parametrize("lang", LANGS)
def test_same_task_types_ids_and_placeholders(lang):
    doc = load(lang)
    ours = templates(doc)
    assert list(doc["task_types"]) == list(load("en")["task_types"])
    assert list(ours) == list(EN)
    for key, text in ours.items():
        assert isinstance(text, str) and text.strip(), key
        assert fields(text) == fields(EN[key]), key
        assert text.count("\n") == EN[key].count("\n"), key
    for spec in doc["task_types"].values():
        assert set(spec) == {"templates"}  # the `truth` rules live in en.yaml only


@pytest.mark.parametrize("lang", LANGS)
def test_quoted_slots_stay_quoted(lang):
    for key, text in templates(load(lang)).items():
        for name in fields(EN[key]):
            if f'"{{{name}}}"' in EN[key]:
                assert any(f"{a}{{{name}}}{b}" in text for a, b in QUOTES), (key, name)


@pytest.mark.parametrize("lang", LANGS)
def test_labels_and_language_names(lang):
    doc = load(lang)
    labels = doc["labels"]
    assert set(labels) == {"topic", "sentiment"}  # intent names stay English
    assert set(labels["topic"]) == TOPIC_LABELS
    assert set(labels["sentiment"]) == SENTIMENT_LABELS
    assert set(doc["language_names"]) == ALL_CODES
    for value in [*labels["topic"].values(), *labels["sentiment"].values(), *doc["language_names"].values()]:
        assert isinstance(value, str) and value.strip() and "{" not in value


@pytest.mark.parametrize("lang", sorted(NON_LATIN))
def test_non_latin_templates_are_translated(lang):
    for key, text in templates(load(lang)).items():
        assert text != EN[key], key
