"""The packaged Statement-Tuning training sources (harness/training/data) and their reader."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import DataError, UsageError
from harness.training import sources
from harness.training.rows import ROW_FIELDS, check_row

REPO = Path(__file__).resolve().parent.parent
SHARED_TRAIN = REPO.parent / "shared" / "data" / "train"
TARGET_LANGS = ["af", "ar", "de", "en", "es", "fr", "ga", "gu", "ha", "hi", "id", "ig", "is", "it", "kk", "ky", "lo",
                "mt", "ny", "pt", "ru", "si", "tr", "vi", "zh"]
MAX_ROWS = 1500


def manifest() -> dict:
    return json.loads((sources.DATA_DIR / "manifest.json").read_text(encoding="utf-8"))


def all_pairs() -> list[tuple[str, str]]:
    return [(name, lang) for name, info in sorted(manifest()["sources"].items()) for lang in info["languages"]]


@pytest.fixture(autouse=True)
def _default_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(sources.ENV_DATA_DIR, raising=False)


# ------------------------------------------------------------------------------------------ manifest & files

def test_manifest_checksums_and_row_counts() -> None:
    man = manifest()
    assert man["format_version"] == 1
    assert man["max_rows"] == MAX_ROWS
    for name, info in man["sources"].items():
        assert info["task_type"] in ROW_FIELDS, name
        assert info["license"] and info["provenance"] and info["note"], name
        assert set(info["languages"]) <= set(TARGET_LANGS), name
        for lic in info["license_files"]:
            assert (sources.DATA_DIR / lic["file"]).is_file(), lic
        for lang, entry in info["languages"].items():
            data = (sources.DATA_DIR / entry["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["file"]
            lines = gzip.decompress(data).decode("utf-8").splitlines()
            assert len(lines) == entry["rows"] == min(entry["rows_available"], MAX_ROWS), (name, lang)


def test_no_stray_files() -> None:
    man = manifest()
    listed = {"manifest.json", "LICENSES.md"}
    for info in man["sources"].values():
        listed |= {e["file"] for e in info["languages"].values()}
        listed |= {lic["file"] for lic in info["license_files"]}
    present = {p.relative_to(sources.DATA_DIR).as_posix() for p in sources.DATA_DIR.rglob("*") if p.is_file()}
    assert present == listed


def test_every_row_passes_the_contract() -> None:
    for name, lang in all_pairs():
        src = sources.get_source(name)
        fields = ["id", *ROW_FIELDS[src.task_type]]
        rows = sources.load_rows(name, lang)
        ids = [r["id"] for r in rows]
        assert ids == sorted(set(ids)), f"{name}/{lang}: ids not unique and sorted"
        for n, row in enumerate(rows, 1):
            check_row(src.task_type, row, f"{name}/{lang}:{n}")
            assert list(row) == fields, f"{name}/{lang}:{n}: keys {list(row)}"


def test_licenses_md_lists_every_source() -> None:
    text = (sources.DATA_DIR / "LICENSES.md").read_text(encoding="utf-8")
    for src in sources.list_sources():
        assert f"`{src.name}`" in text
        if src.non_commercial:
            line = next(ln for ln in text.splitlines() if ln.startswith(f"| `{src.name}`"))
            assert "research use only" in line


# ------------------------------------------------------------------------------------------ known values

EXPECTED_ROWS = {  # SOURCE.md row counts (after the documented drops), capped at MAX_ROWS
    "sib200": dict.fromkeys(TARGET_LANGS, 1004),
    "flores200": dict.fromkeys(TARGET_LANGS, 1500),
    "xquad": dict.fromkeys(["ar", "de", "en", "es", "hi", "ru", "tr", "vi", "zh"], 1190),
    "tydiqa_goldp": {"ar": 921, "en": 440, "id": 565, "ru": 812},
    "xsid": dict.fromkeys(["ar", "de", "en", "id", "it", "kk", "tr", "zh"], 800),
    # de: 577 - 2 answerKey "@"; tr: 1,964 - 1 "@" - 1 empty stem = 1,962 -> capped
    "exams": {"ar": 562, "de": 575, "es": 235, "fr": 318, "it": 1256, "pt": 924, "tr": 1500, "vi": 1500},
    "belebele_partial": {"de": 900, "en": 900},
    "pawsx": dict.fromkeys(["de", "en", "es", "fr", "zh"], 1500),
}
EXPECTED_AVAILABLE = {
    "flores200": dict.fromkeys(TARGET_LANGS, 2009),
    "exams": {"tr": 1962, "vi": 2443},
    # dev 2,000 (+ labelled test 2,000 for de/zh) minus the "NS" placeholder pairs
    "pawsx": {"de": 3900, "en": 2000, "es": 1962, "fr": 1992, "zh": 3959},
}
TASK_TYPES = {"sib200": "topic", "flores200": "translation", "xquad": "extractive_qa",
              "tydiqa_goldp": "extractive_qa", "xsid": "intent", "exams": "exam_qa",
              "belebele_partial": "reading_comprehension", "pawsx": "paraphrase"}


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_row_counts(name: str) -> None:
    src = sources.get_source(name)
    assert src.task_type == TASK_TYPES[name]
    assert src.rows == EXPECTED_ROWS[name]
    assert src.languages == tuple(sorted(EXPECTED_ROWS[name]))
    langs = manifest()["sources"][name]["languages"]
    for lang, want in EXPECTED_AVAILABLE.get(name, {}).items():
        assert langs[lang]["rows_available"] == want, lang


def find(name: str, lang: str, row_id: str) -> dict:
    return next(r for r in sources.load_rows(name, lang) if r["id"] == row_id)


def test_known_rows() -> None:
    # sib200/deu_Latn/train.tsv, index_id 0
    assert sources.load_rows("sib200", "de")[0] == {
        "id": "0000",
        "text": "Am Montag haben die Wisenschaftler der Stanford University School of Medicine die Erfindung eines "
                "neuen Diagnosetools bekanntgegeben, mit dem Zellen nach ihrem Typ sortiert werden können: ein "
                "winziger, ausdruckbarer Chip, der für jeweils etwa einen US-Cent mit Standard-Tintenstrahldruckern "
                "hergestellt werden kann.",
        "category": "health",
    }
    # flores200: last devtest line of gle_Latn; last metadata_devtest.tsv URL
    assert find("flores200", "ga", "2008") == {
        "id": "2008",
        "text": "Is minic a chaithfidh oibrithe ceadú a n-oifigeach uachtarach a fháil d'aon chinneadh a dhéanann "
                "siad, agus bítear ag súil go gcomhlíonfaidh siad orduithe a n-oifigeach uachtarach gan aon agó.",
        "article": "https://en.wikivoyage.org/wiki/Working_and_studying_in_Japan",
    }
    # xquad.en.json: first question (the context is long: compare its start)
    row = find("xquad", "en", "56beb4343aeaaa14008c925b")
    assert row["question"] == "How many points did the Panthers defense surrender?"
    assert row["answers"] == ["308"]
    assert row["context"].startswith("The Panthers defense gave up just 308 points, ranking sixth in the league")
    # russian_tydiqa_dev.json: two identical gold answers -> one
    row = find("tydiqa_goldp", "ru", "russian--1141212800069921250-46")
    assert row["question"] == "Когда появился термин правово́е госуда́рство?"
    assert row["answers"] == ["1832—1833"]
    # xsid kk.valid.conll, utterance 1
    assert find("xsid", "kk", "valid-001") == {"id": "valid-001", "text": "Бүгін жаңбыр жауады ма?",
                                                "intent": "weather/find"}
    # exams multilingual/test: first French question, answerKey D
    assert find("exams", "fr", "722f15ae-88c6-11ea-9825-59f16e832e86") == {
        "id": "722f15ae-88c6-11ea-9825-59f16e832e86",
        "question": "Dans une matière radioactive le nombre des noyaux radioactifs diminue à 95% à la fin de chaque "
                    "heure. Comment change la quantité de matière désintégrée par heure?",
        "choices": ["Elle diminue de plus de 5 %.", "Elle diminue de moins de 5%.",
                    "La quantité de matière qui se désintègre par heure ne change pas.", "Elle diminue de 5% aussi."],
        "answer": 3,
    }
    # belebele eng_Latn.jsonl: first passage, first question (correct = first answer)
    row = find("belebele_partial", "en", "https://en.wikibooks.org/wiki/Accordion/Right_hand#1")
    assert row["question"] == ("According to the passage, what would not be considered an accurate tip for "
                               "successfully playing the accordion?")
    assert row["choices"][0] == "For additional volume, increase the force with which you hit the keys"
    assert row["answer"] == 0 and len(row["choices"]) == 4
    assert row["passage"].startswith("Make sure your hand is as relaxed as possible")
    # pawsx xtreme/dev-fr.tsv row 1 (HF validation id 4)
    assert find("pawsx", "fr", "dev-4") == {
        "id": "dev-4",
        "sentence1": "De la fusion du Four Rivers Council et du Audubon Council est né le Shawnee Trails Council.",
        "sentence2": "Le Shawnee Trails Council a été formé à partir de la fusion et Four Rivers Council et du "
                     "Audubon Council.",
        "label": True,
    }


def test_flores_is_parallel() -> None:
    first = sources.load_rows("flores200", "en")
    ids = [r["id"] for r in first]
    articles = [r["article"] for r in first]
    assert len(ids) == MAX_ROWS
    for lang in TARGET_LANGS:
        rows = sources.load_rows("flores200", lang)
        assert [r["id"] for r in rows] == ids, lang
        assert [r["article"] for r in rows] == articles, lang
    # neighbouring sentences of one article are available as hard negatives
    assert len(set(articles)) < len(articles) // 2


def test_sib200_ids_are_flores_ids() -> None:
    sib = {r["id"]: r["text"] for r in sources.load_rows("sib200", "ha")}
    flores = {r["id"]: r["text"] for r in sources.load_rows("flores200", "ha")}
    shared = set(sib) & set(flores)
    assert len(shared) > 500
    assert all(sib[i] == flores[i] for i in shared)  # SOURCE.md: 1004/1004 Hausa texts equal


@pytest.mark.parametrize("lang", ["en", "ar", "ga"])
def test_sib200_csv_quoting_is_undone(lang: str) -> None:
    """~4% of upstream SIB-200 texts are CSV-quoted (``"...""x""..."``); packaged rows carry the plain sentence."""
    sib = {r["id"]: r["text"] for r in sources.load_rows("sib200", lang)}
    flores = {r["id"]: r["text"] for r in sources.load_rows("flores200", lang)}
    assert not [t for t in sib.values() if '""' in t]
    quoted = [i for i in set(sib) & set(flores) if '"' in flores[i]]
    assert len(quoted) > 10
    assert all(sib[i] == flores[i] for i in quoted)
    if lang == "en":
        assert sib["1239"] == ('"She’s very cute and sings quite well, too," he said according to a transcript '
                               "of the news conference.")


# ------------------------------------------------------------------------------------------ reader API

def test_list_get_and_sources_for() -> None:
    names = [s.name for s in sources.list_sources()]
    assert names == sorted(names) and set(EXPECTED_ROWS) <= set(names)
    assert [s.name for s in sources.sources_for("extractive_qa")] == ["tydiqa_goldp", "xquad"]
    assert all(s.task_type == "wic" for s in sources.sources_for("wic"))
    with pytest.raises(UsageError, match="unknown training task type"):
        sources.sources_for("nope")


def test_unknown_source_and_language() -> None:
    with pytest.raises(UsageError) as err:
        sources.get_source("no_such_source")
    assert "no_such_source" in str(err.value) and "flores200" in str(err.value)
    with pytest.raises(UsageError):
        sources.load_rows("no_such_source", "en")
    with pytest.raises(UsageError) as err:
        sources.load_rows("xquad", "af")
    assert "'af'" in str(err.value) and "ar, de" in str(err.value)
    with pytest.raises(UsageError):
        sources.data_checksums([("belebele_partial", "fr")])


def test_rows_are_copies() -> None:
    rows = sources.load_rows("exams", "ar")
    rows[0]["question"] = "changed"
    rows[0]["choices"].append("extra")
    rows.clear()
    again = sources.load_rows("exams", "ar")
    assert again[0]["question"] != "changed" and "extra" not in again[0]["choices"]


def test_data_checksums() -> None:
    man = manifest()
    got = sources.data_checksums([("xsid", "kk"), ("sib200", "en")])
    assert got == {"sib200/en": man["sources"]["sib200"]["languages"]["en"]["sha256"],
                   "xsid/kk": man["sources"]["xsid"]["languages"]["kk"]["sha256"]}


# ------------------------------------------------------------------------------------------ corruption

@pytest.fixture
def data_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    target = tmp_path / "data"
    shutil.copytree(sources.DATA_DIR, target)
    monkeypatch.setenv(sources.ENV_DATA_DIR, str(target))
    return target


def test_flipped_byte_gives_data_error(data_copy: Path) -> None:
    path = data_copy / "sib200" / "en.jsonl.gz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        sources.load_rows("sib200", "en")
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "checksum mismatch" in msg
    assert len(sources.load_rows("sib200", "de")) == 1004  # other files are fine


def test_missing_file_and_manifest(data_copy: Path) -> None:
    (data_copy / "xquad" / "de.jsonl.gz").unlink()
    with pytest.raises(DataError, match=r"xquad/de\.jsonl\.gz: training data file is missing"):
        sources.load_rows("xquad", "de")
    (data_copy / "manifest.json").write_text("{", encoding="utf-8")
    with pytest.raises(DataError, match=r"manifest\.json: unreadable"):
        sources.list_sources()
    (data_copy / "manifest.json").unlink()
    with pytest.raises(DataError, match=r"manifest\.json: training data manifest is missing"):
        sources.get_source("xquad")


def test_bad_row_with_matching_checksum(data_copy: Path) -> None:
    """A file whose checksum matches the manifest but breaks the row contract is still refused."""
    rel = "xsid/en.jsonl.gz"
    data = gzip.compress(b'{"id":"x","text":"hi"}\n', mtime=0)
    (data_copy / rel).write_bytes(data)
    man = json.loads((data_copy / "manifest.json").read_text(encoding="utf-8"))
    man["sources"]["xsid"]["languages"]["en"].update(sha256=hashlib.sha256(data).hexdigest(), rows=1)
    (data_copy / "manifest.json").write_text(json.dumps(man), encoding="utf-8")
    with pytest.raises(DataError, match=r"xsid/en\.jsonl\.gz: line 1: field 'intent'"):
        sources.load_rows("xsid", "en")


# ------------------------------------------------------------------------------------------ reproducibility

@pytest.mark.skipif(not SHARED_TRAIN.is_dir(), reason=f"raw training sources not present at {SHARED_TRAIN}")
def test_packaging_is_reproducible(tmp_path: Path) -> None:
    out = tmp_path / "data"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "package_train_data.py"), "--out", str(out),
                           "--quiet"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    built = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    committed = {p.relative_to(sources.DATA_DIR).as_posix(): p.read_bytes()
                 for p in sources.DATA_DIR.rglob("*") if p.is_file()}
    assert sorted(built) == sorted(committed)
    differ = [rel for rel in built if built[rel] != committed[rel]]
    assert not differ, f"re-packaging changed {differ[:5]}"
