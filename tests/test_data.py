"""The packaged eval data: row counts, checksums, corruption handling, known rows, reproducible packaging."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from harness.errors import DataError, UsageError, one_line
from harness.tasks import loading
from harness.tasks.loading import data_dir, load_rows, manifest, variant_values, verify_all
from harness.tasks.registry import get_task, load_registry

TASKS = load_registry().tasks


def copa_en_questions(split: str, data_dir: Path | None = None) -> list[str]:
    """The xcopa task file's `xcopa-question=copa-en` variant: English COPA's question by idx."""
    values = variant_values(get_task("xcopa"), "xcopa-question", "copa-en", split, data_dir)
    assert values is not None
    return values

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
ALL_ENTRIES = [(task, split, lang) for task, spec in TASKS.items() for split in spec.splits
               for lang in spec.languages]
VICTIM = ("xcopa", "et", "test")
VICTIM_FILE = "xcopa/test/et.jsonl.gz"


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    """A private copy of the packaged data dir, safe to damage."""
    dst = tmp_path / "data"
    shutil.copytree(data_dir(), dst)
    return dst


def _set_manifest(ddir: Path, rel: str, **changes: object) -> None:
    path = ddir / "manifest.json"
    man = json.loads(path.read_text(encoding="utf-8"))
    task, split, lang_file = rel.split("/")
    man["tasks"][task]["splits"][split][lang_file.split(".")[0]].update(changes)
    path.write_text(json.dumps(man, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _assert_one_line_naming(exc: pytest.ExceptionInfo[DataError], rel: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    assert rel in msg
    return msg


# ----------------------------------------------------------------------------------- counts and checksums

def test_data_dir_is_inside_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(loading.ENV_DATA_DIR, raising=False)
    assert data_dir() == Path(loading.__file__).resolve().parent / "data"
    assert (data_dir() / "manifest.json").is_file()


def test_manifest_covers_exactly_the_specs() -> None:
    man = manifest()
    assert man["format_version"] == 1
    assert list(man["tasks"]) == list(TASKS)
    for task, spec in TASKS.items():
        info = man["tasks"][task]
        assert info["hub_id"] == spec.hub_id
        assert info["license"] and info["source"] and info["note"]
        assert (data_dir() / info["license_file"]).is_file()
        assert list(info["splits"]) == list(spec.splits)
        for split, langs in info["splits"].items():
            assert list(langs) == list(spec.languages)
            for lang, entry in langs.items():
                assert set(entry) == {"file", "sha256", "rows", "derived", "note"}
                assert entry["file"] == f"{task}/{split}/{lang}.jsonl.gz"
                assert entry["rows"] == spec.rows(split, lang), (task, split, lang)


@pytest.mark.parametrize(("task", "split", "lang"), ALL_ENTRIES)
def test_row_counts_and_checksum(task: str, split: str, lang: str) -> None:
    rs = load_rows(task, lang, split)
    entry = manifest()["tasks"][task]["splits"][split][lang]
    assert len(rs.rows) == TASKS[task].rows(split, lang) == entry["rows"]
    assert rs.source == "packaged"
    assert rs.location == entry["file"]
    digest = hashlib.sha256((data_dir() / entry["file"]).read_bytes()).hexdigest()
    assert rs.sha256 == entry["sha256"] == digest
    assert rs.derived is entry["derived"]
    assert rs.note == entry["note"]
    schema = {**TASKS[task].schema, **TASKS[task].optional_schema}
    for row in rs.rows:
        assert list(row) == list(schema)
        for name, typ in schema.items():
            assert type(row[name]) is typ, (task, split, lang, name, row)


def test_verify_all_is_clean() -> None:
    assert verify_all() == []


def test_data_dir_is_compact_and_has_no_stray_files() -> None:
    root = data_dir()
    files = {p.relative_to(root).as_posix() for p in root.rglob("*")
             if p.is_file() and "__pycache__" not in p.parts}
    total = sum((root / f).stat().st_size for f in files)
    assert total < 25 * 2**20, f"packaged data is {total / 2**20:.1f} MiB"
    man = manifest()
    listed = {e["file"] for t in man["tasks"].values() for s in t["splits"].values() for e in s.values()}
    listed |= {e["file"] for e in man["extras"].values()}
    licences = {t["license_file"] for t in man["tasks"].values()}
    assert files == listed | licences | {"manifest.json", "LICENSES.md"}


def test_extras_copa_en_question_checksum() -> None:
    info = manifest()["extras"]["copa_en_question"]
    assert info["license"].startswith("BSD-2-Clause")
    data = (data_dir() / info["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == info["sha256"]
    assert info["rows"] == {"test": 500, "validation": 100}


# ------------------------------------------------------------------------------------------ corrupted data

def test_flipped_bytes_give_checksum_mismatch(data_copy: Path) -> None:
    path = data_copy / VICTIM_FILE
    raw = bytearray(path.read_bytes())
    for i in (20, len(raw) // 2, len(raw) - 10):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    task, lang, split = VICTIM
    with pytest.raises(DataError) as exc:
        load_rows(task, lang, split, data_dir=data_copy)
    msg = _assert_one_line_naming(exc, VICTIM_FILE)
    assert "checksum mismatch (expected " in msg and "reinstall statement-bench" in msg
    problems = verify_all(data_copy)
    assert len(problems) == 1 and VICTIM_FILE in problems[0]
    # other files in the same copy still load
    assert len(load_rows("xcopa", "th", "test", data_dir=data_copy).rows) == 500


def test_env_var_selects_the_data_dir(data_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = data_copy / VICTIM_FILE
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    path.write_bytes(bytes(raw))
    monkeypatch.setenv(loading.ENV_DATA_DIR, str(data_copy))
    assert data_dir() == data_copy
    task, lang, split = VICTIM
    with pytest.raises(DataError) as exc:
        load_rows(task, lang, split)
    assert str(data_copy) in _assert_one_line_naming(exc, VICTIM_FILE)


def test_truncated_file_gives_checksum_mismatch(data_copy: Path) -> None:
    path = data_copy / VICTIM_FILE
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    task, lang, split = VICTIM
    with pytest.raises(DataError) as exc:
        load_rows(task, lang, split, data_dir=data_copy)
    assert "checksum mismatch" in _assert_one_line_naming(exc, VICTIM_FILE)


def test_truncated_gzip_with_matching_checksum_is_reported(data_copy: Path) -> None:
    """Even if the manifest agreed with a damaged file, parsing fails cleanly and names the file."""
    path = data_copy / VICTIM_FILE
    data = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(data)
    _set_manifest(data_copy, VICTIM_FILE, sha256=hashlib.sha256(data).hexdigest())
    task, lang, split = VICTIM
    with pytest.raises(DataError) as exc:
        load_rows(task, lang, split, data_dir=data_copy)
    assert "gzip" in _assert_one_line_naming(exc, VICTIM_FILE)


def test_bad_json_is_reported(data_copy: Path) -> None:
    path = data_copy / VICTIM_FILE
    data = gzip.compress(b'{"premise": "x"}\n{not json\n', mtime=0)
    path.write_bytes(data)
    _set_manifest(data_copy, VICTIM_FILE, sha256=hashlib.sha256(data).hexdigest())
    task, lang, split = VICTIM
    with pytest.raises(DataError) as exc:
        load_rows(task, lang, split, data_dir=data_copy)
    msg = _assert_one_line_naming(exc, VICTIM_FILE)
    assert "line 2" in msg and "bad JSON" in msg


def test_row_count_mismatch_is_reported(data_copy: Path) -> None:
    _set_manifest(data_copy, VICTIM_FILE, rows=499)
    task, lang, split = VICTIM
    with pytest.raises(DataError) as exc:
        load_rows(task, lang, split, data_dir=data_copy)
    assert "500 rows, the manifest says 499" in _assert_one_line_naming(exc, VICTIM_FILE)


def test_missing_file_and_missing_manifest(data_copy: Path) -> None:
    (data_copy / VICTIM_FILE).unlink()
    task, lang, split = VICTIM
    with pytest.raises(DataError) as exc:
        load_rows(task, lang, split, data_dir=data_copy)
    assert "missing" in _assert_one_line_naming(exc, VICTIM_FILE)
    (data_copy / "manifest.json").unlink()
    with pytest.raises(DataError) as exc2:
        load_rows(task, lang, split, data_dir=data_copy)
    assert "manifest.json" in str(exc2.value)
    assert verify_all(data_copy) and "manifest.json" in verify_all(data_copy)[0]


def test_corrupt_copa_en_question_file(data_copy: Path) -> None:
    rel = manifest()["extras"]["copa_en_question"]["file"]
    (data_copy / rel).write_text('{"test": []}\n', encoding="utf-8")
    with pytest.raises(DataError) as exc:
        copa_en_questions("test", data_dir=data_copy)
    assert "checksum mismatch" in _assert_one_line_naming(exc, rel)


# ------------------------------------------------------------------------------------------------ usage

def test_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown task"):
        load_rows("xcopaa", "et", "test")
    with pytest.raises(UsageError, match="no language 'en'"):
        load_rows("xcopa", "en", "test")
    with pytest.raises(UsageError, match="no split 'val'"):
        load_rows("xcopa", "et", "val")
    with pytest.raises(UsageError, match="--data-source"):
        load_rows("xcopa", "et", "test", source="local")
    with pytest.raises(UsageError, match="no split"):
        copa_en_questions("train")


def test_rows_are_cached_but_callers_get_copies() -> None:
    a = load_rows("xnli", "en", "test")
    a.rows[0]["label"] = 99
    a.rows.pop()
    b = load_rows("xnli", "en", "test")
    assert len(b.rows) == 5010 and b.rows[0]["label"] != 99


# --------------------------------------------------------------------------------------------- contents

def test_xwinograd_known_rows() -> None:
    en = load_rows("xwinograd", "en", "test").rows
    assert en[0] == {
        "sentence": "The city councilmen refused the demonstrators a permit because _ feared violence.",
        "option1": "The city councilmen", "option2": "the demonstrators", "answer": "1", "source": "original",
    }
    # NLTK splits "doesn't" into "does" "n't"; the raw text is kept.
    assert en[2]["sentence"] == "The trophy doesn't fit into the brown suitcase because _ is too large."
    jp = load_rows("xwinograd", "jp", "test").rows
    assert jp[0] == {"sentence": "狙撃兵はテロリストを撃った。_は悪漢だったからだ。", "option1": "狙撃兵",
                     "option2": "テロリスト", "answer": "2", "source": "test"}
    ru = load_rows("xwinograd", "ru", "test").rows
    assert ru[0] == {
        "sentence": "Члены городского совета отказали организаторам митинга в разрешении, потому что _ "
                    "опасались насилия.",
        "option1": "Члены городского совета", "option2": "организаторам митинга", "answer": "1",
        "source": "superglue.train",
    }
    # upstream span 'его.' includes the full stop: the punctuation stays in the sentence
    assert ru[129]["sentence"].endswith("поэтому он передумал и включил _.")
    assert "кроме _, работал" in ru[232]["sentence"]


def test_xwinograd_rows_are_well_formed() -> None:
    for lang in TASKS["xwinograd"].languages:
        for i, row in enumerate(load_rows("xwinograd", lang, "test").rows):
            assert row["sentence"].count("_") == 1, (lang, i)
            assert row["answer"] in ("1", "2"), (lang, i)
            assert row["option1"].strip() and row["option2"].strip() and row["option1"] != row["option2"]


def test_xwinograd_zh_is_the_16_original_schemas_with_documented_odd_spans() -> None:
    zh = load_rows("xwinograd", "zh", "test")
    assert len(zh.rows) == 16
    assert "504" in zh.note
    # upstream pronoun span is the '为' of 因为 in rows 0, 1, 14, 15: converted faithfully and documented
    assert zh.rows[0]["sentence"].startswith("市政府拒绝给示威者颁发游行许可证，因_担心")
    for i in (0, 1, 14, 15):
        assert "因_" in zh.rows[i]["sentence"]
        assert f"row {i}: pronoun span is '为'" in zh.note
    assert zh.rows[2]["sentence"].startswith("奖杯无法放进到棕色的箱子里，因为_太小了")


def test_xnli_derived_flags_exactly_bg_el_ru_th() -> None:
    man = manifest()["tasks"]["xnli"]["splits"]
    derived = {lang for lang, e in man["test"].items() if e["derived"]}
    assert derived == {"bg", "el", "ru", "th"}
    assert not any(e["derived"] for e in man["validation"].values())
    for lang in ("bg", "ru"):
        rs = load_rows("xnli", lang, "test")
        assert rs.derived and "DERIVED" in rs.note
    assert not load_rows("xnli", "de", "test").derived
    # derived labels follow the English rows
    en = [r["label"] for r in load_rows("xnli", "en", "test").rows]
    assert [r["label"] for r in load_rows("xnli", "th", "test").rows] == en
    assert Counter(en) == {0: 1670, 1: 1670, 2: 1670}
    assert Counter(r["label"] for r in load_rows("xnli", "en", "validation").rows) == {0: 830, 1: 830, 2: 830}


def test_xcopa_th_question_and_copa_en_questions() -> None:
    th = load_rows("xcopa", "th", "test").rows
    assert {r["question"] for r in th} == {"effect"}  # upstream values kept
    assert [r["idx"] for r in th] == list(range(500))
    q = copa_en_questions("test")
    assert len(q) == 500 and Counter(q) == {"cause": 250, "effect": 250}
    qv = copa_en_questions("validation")
    assert len(qv) == 100 and Counter(qv) == {"cause": 52, "effect": 48}
    # languages with a correct upstream field agree with the English one
    assert [r["question"] for r in load_rows("xcopa", "et", "test").rows] == q
    assert [r["question"] for r in load_rows("xcopa", "et", "validation").rows] == qv


def test_xstorycloze_answers_are_one_based() -> None:
    for split in TASKS["xstorycloze"].splits:
        ref = None
        for lang in TASKS["xstorycloze"].languages:
            rows = load_rows("xstorycloze", lang, split).rows
            answers = [r["answer_right_ending"] for r in rows]
            assert set(answers) == {1, 2}
            key = [(r["story_id"], r["answer_right_ending"]) for r in rows]
            ref = ref or key
            assert key == ref  # row-aligned across languages
    eu = load_rows("xstorycloze", "eu", "eval")
    assert eu.rows[360]["input_sentence_1"].startswith('"Buffy banpiro-ehiztaria"')  # QUOTE_NONE: quotes kept
    assert "Buffy" in eu.note


# ------------------------------------------------------------------------------------------- packaging

def test_packaging_script_reproduces_identical_bytes(tmp_path: Path) -> None:
    if not (SHARED / "README.md").is_file():
        pytest.skip(f"source data {SHARED} is absent (needed only to re-run scripts/package_data.py)")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "package_data.py"), "--shared", str(SHARED),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    packaged = data_dir()
    new_manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    old_manifest = manifest()
    for task, split, lang in ALL_ENTRIES:
        new = new_manifest["tasks"][task]["splits"][split][lang]
        old = old_manifest["tasks"][task]["splits"][split][lang]
        assert new["sha256"] == old["sha256"], (task, split, lang)
        assert hashlib.sha256((out / new["file"]).read_bytes()).hexdigest() == new["sha256"]
    assert new_manifest["extras"] == old_manifest["extras"]
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    for rel in files:
        assert (out / rel).read_bytes() == (packaged / rel).read_bytes(), rel


def _packaging_module():  # scripts/ is not a package: load the dev tool by path
    import importlib.util

    spec = importlib.util.spec_from_file_location("package_data", REPO / "scripts" / "package_data.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_token_alignment_handles_nltk_rewrites() -> None:
    pd = _packaging_module()
    raw = 'He said "it doesn\'t fit" (twice).'
    tokens = ["He", "said", "``", "it", "does", "n't", "fit", "''", "-LRB-", "twice", "-RRB-", "."]
    spans = pd.align_tokens(raw, tokens)
    assert [raw[a:b] for a, b in spans] == ["He", "said", '"', "it", "does", "n't", "fit", '"', "(", "twice",
                                            ")", "."]
    assert pd.align_tokens(raw, ["He", "says"]) is None
    assert pd.align_tokens(raw, ["He"]) is None  # tokens must cover the whole text


def test_unalignable_xwinograd_rows_fail_loudly(tmp_path: Path) -> None:
    src = SHARED / "xwinograd" / "dataset.tsv"
    if not src.is_file():
        pytest.skip(f"source data {SHARED} is absent")
    pd = _packaging_module()
    lines = src.read_text(encoding="utf-8").splitlines(keepends=True)
    cols = lines[0].split("\t")
    cols[4] = cols[4].replace('"city"', '"town"')  # a token that is not in the raw text
    lines[0] = "\t".join(cols)
    cols = lines[1].split("\t")
    cols[5] = '["they", [2, 3], ["they"]]'  # pronoun span pointing at "councilmen"
    lines[1] = "\t".join(cols)
    (tmp_path / "xwinograd").mkdir()
    (tmp_path / "xwinograd" / "dataset.tsv").write_text("".join(lines), encoding="utf-8")
    with pytest.raises(pd.PackagingError) as exc:
        pd.build_xwinograd(tmp_path, pd.Output())
    msg = str(exc.value)
    assert "2 row(s) could not be converted" in msg
    assert "en row 0 (dataset.tsv line 1): NLTK tokens do not align" in msg
    assert ("en row 1 (dataset.tsv line 2): replaced characters 'councilmen' do not match the pronoun 'they'"
            in msg)


def test_one_line_first_line_or_joined() -> None:
    err = ValueError("Expecting value\n  line 2 column 5\n\n(char 17)")
    assert one_line(err) == "Expecting value"
    assert one_line(err, join_lines=True) == "Expecting value line 2 column 5 (char 17)"
    assert one_line(ValueError("x" * 300), 20, join_lines=True) == "x" * 17 + "..."
    assert one_line(KeyError(), join_lines=True) == "KeyError"
