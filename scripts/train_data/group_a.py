"""Converters for SIB-200, FLORES-200, XQuAD, TyDi QA GoldP, xSID, EXAMS, Belebele (partial) and PAWS-X.

Each converter takes the shared data directory (``<repo>/../shared/data``) and returns ``{lang: rows}`` in the
normalised row contract of ``harness/training/rows.py``; the formats follow each folder's ``SOURCE.md``.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any, Literal

from .common import FLORES_TO_ISO, SourceError, SourceInfo, fail, parse_jsonl, read_text

Rows = dict[str, list[dict[str, Any]]]


# ----------------------------------------------------------------------------------------------- helpers

def _tsv(path: Path, quoting: Literal[0, 1, 2, 3] = csv.QUOTE_NONE) -> list[list[str]]:
    return list(csv.reader(io.StringIO(read_text(path), newline=""), delimiter="\t", quoting=quoting))


def _json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}: bad JSON ({exc})") from None


def _tar_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of the single ``.jsonl`` member of a ``.jsonl.tar.gz`` archive."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            if len(members) != 1 or not members[0].name.endswith(".jsonl"):
                fail(f"{path}: expected one .jsonl member, found {[m.name for m in members]}")
            fh = tar.extractfile(members[0])
            if fh is None:
                fail(f"{path}: cannot read member {members[0].name}")
            assert fh is not None
            text = fh.read().decode("utf-8")
    except FileNotFoundError:
        raise SourceError(f"{path}: missing") from None
    except (OSError, tarfile.TarError, UnicodeDecodeError) as exc:
        raise SourceError(f"{path}: unreadable archive ({exc})") from None
    return parse_jsonl(text, f"{path}!{members[0].name}")


def _clean(text: Any) -> str:
    return text.strip() if isinstance(text, str) else ""


def _unique(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v and v not in out:
            out.append(v)
    return out


def _expect(path: Path | str, what: str, got: int, want: int) -> None:
    if got != want:
        fail(f"{path}: {got} {what}, SOURCE.md says {want}")


# ------------------------------------------------------------------------------------------------ SIB-200

SIB_CATEGORIES = ("science/technology", "travel", "politics", "sports", "health", "entertainment", "geography")


def _sib_unquote(text: str) -> str:
    """Undo the CSV quoting that ~4% of SIB-200 texts carry upstream (``"...""x""..."``) although SOURCE.md says none.

    Only a field wrapped in quotes whose inner quotes are all doubled is unwrapped; the result equals the FLORES-200
    sentence with the same id (checked on 623 of the 944 such rows whose id the packaged FLORES rows hold).
    """
    inner = text[1:-1]
    if len(text) >= 2 and text[0] == text[-1] == '"' and '"' not in inner.replace('""', ""):
        return inner.replace('""', '"')
    return text


def convert_sib200(shared: Path) -> Rows:
    out: Rows = {}
    for code, lang in FLORES_TO_ISO.items():
        folder = shared / "train" / "sib200" / code
        rows: list[dict[str, Any]] = []
        for split in ("train", "dev", "test"):
            path = folder / f"{split}.tsv"
            table = _tsv(path)
            if not table or table[0] != ["index_id", "category", "text"]:
                fail(f"{path}: header {table[:1]} is not index_id/category/text")
            for n, rec in enumerate(table[1:], 2):
                if len(rec) != 3 or not rec[0].isdigit():
                    fail(f"{path}:{n}: expected 3 tab-separated fields with a numeric index_id, got {rec!r}")
                if rec[1] not in SIB_CATEGORIES:
                    fail(f"{path}:{n}: unknown category {rec[1]!r}")
                # the id is the FLORES dev+devtest index (same as the flores200 rows), zero-padded
                rows.append({"id": f"{int(rec[0]):04d}", "text": _sib_unquote(rec[2]).strip(), "category": rec[1]})
        _expect(folder, "rows", len(rows), 1004)
        out[lang] = sorted(rows, key=lambda r: r["id"])
    return out


# --------------------------------------------------------------------------------------------- FLORES-200

FLORES_SPLITS = (("dev", 997), ("devtest", 1012))


def _flores_urls(shared: Path) -> list[str]:
    urls: list[str] = []
    for split, count in FLORES_SPLITS:
        path = shared / "train" / "flores200" / f"metadata_{split}.tsv"
        table = _tsv(path)
        if not table or table[0][:1] != ["URL"]:
            fail(f"{path}: header {table[:1]} does not start with URL")
        _expect(path, "metadata rows", len(table) - 1, count)
        for n, rec in enumerate(table[1:], 2):
            if not rec or not rec[0].startswith("http"):
                fail(f"{path}:{n}: no URL in {rec!r}")
            urls.append(rec[0])
    return urls


def convert_flores200(shared: Path) -> Rows:
    urls = _flores_urls(shared)
    out: Rows = {}
    for code, lang in FLORES_TO_ISO.items():
        lines: list[str] = []
        for split, count in FLORES_SPLITS:
            path = shared / "train" / "flores200" / split / f"{code}.{split}"
            text = read_text(path)
            got = text.split("\n")
            if got and got[-1] == "":
                got.pop()
            _expect(path, "lines", len(got), count)
            for n, line in enumerate(got, 1):
                if not line.strip():
                    fail(f"{path}:{n}: empty line")
            lines.extend(line.strip() for line in got)
        # id = index in dev + devtest concatenated (0-996 dev, 997-2008 devtest): the same for every language
        # and equal to SIB-200's index_id
        out[lang] = [{"id": f"{i:04d}", "text": line, "article": urls[i]} for i, line in enumerate(lines)]
    return out


# ------------------------------------------------------------------------------------------ SQuAD-style QA

def _squad_rows(path: Path) -> list[dict[str, Any]]:
    data = _json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        fail(f"{path}: not SQuAD-style JSON (no 'data' list)")
    rows: list[dict[str, Any]] = []
    for article in data["data"]:
        for para in article.get("paragraphs", []):
            context = _clean(para.get("context"))
            for qa in para.get("qas", []):
                qid = _clean(qa.get("id"))
                answers = _unique([_clean(a.get("text")) for a in qa.get("answers", [])])
                question = _clean(qa.get("question"))
                if not (qid and context and question and answers):
                    fail(f"{path}: question {qid or '?'}: empty id, context, question or answers")
                rows.append({"id": qid, "context": context, "question": question, "answers": answers})
    return rows


XQUAD_LANGS = ("ar", "de", "en", "es", "hi", "ru", "tr", "vi", "zh")


def convert_xquad(shared: Path) -> Rows:
    out: Rows = {}
    for lang in XQUAD_LANGS:
        path = shared / "train" / "xquad" / f"xquad.{lang}.json"
        rows = _squad_rows(path)
        _expect(path, "questions", len(rows), 1190)
        out[lang] = rows  # file order: questions of one context stay together
    return out


TYDIQA_FILES = {"ar": ("arabic", 921), "en": ("english", 440), "id": ("indonesian", 565), "ru": ("russian", 812)}


def convert_tydiqa_goldp(shared: Path) -> Rows:
    out: Rows = {}
    for lang, (name, count) in TYDIQA_FILES.items():
        path = shared / "train" / "tydiqa_goldp" / f"{name}_tydiqa_dev.json"
        rows = _squad_rows(path)
        _expect(path, "questions", len(rows), count)
        out[lang] = rows
    return out


# ------------------------------------------------------------------------------------------------- xSID

XSID_LANGS = ("ar", "de", "en", "id", "it", "kk", "tr", "zh")
XSID_SPLITS = (("valid", 300), ("test", 500))
_COMMENT_RE = re.compile(r"^# (id|text|intent) = (.*)$")


def convert_xsid(shared: Path) -> Rows:
    out: Rows = {}
    for lang in XSID_LANGS:
        rows: list[dict[str, Any]] = []
        for split, count in XSID_SPLITS:
            path = shared / "train" / "xsid" / f"{lang}.{split}.conll"
            blocks = [b for b in read_text(path).split("\n\n") if b.strip()]
            _expect(path, "utterances", len(blocks), count)
            for n, block in enumerate(blocks, 1):
                fields: dict[str, str] = {}
                for line in block.splitlines():
                    m = _COMMENT_RE.match(line)
                    if m:
                        fields[m.group(1)] = m.group(2).strip()
                if "id" in fields and fields["id"] != str(n):
                    fail(f"{path}: utterance {n} has '# id = {fields['id']}' (expected {n})")
                if not fields.get("text") or not fields.get("intent"):
                    fail(f"{path}: utterance {n}: no '# text' or '# intent' line")
                # ids by position: the utterances are parallel across languages (en has no '# id' lines)
                rows.append({"id": f"{split}-{n:03d}", "text": fields["text"], "intent": fields["intent"]})
        out[lang] = rows
    return out


# ------------------------------------------------------------------------------------------------ EXAMS

EXAMS_LANGS = {"Arabic": "ar", "German": "de", "Spanish": "es", "French": "fr", "Italian": "it", "Portuguese": "pt",
               "Turkish": "tr", "Vietnamese": "vi"}
EXAMS_COUNTS = {"it": 1256, "pt": 924, "tr": 1964, "vi": 2443, "ar": 562, "de": 577, "es": 235, "fr": 318}
# rows dropped from the multilingual files: answerKey "@" (no valid answer; 2 German test rows per SOURCE.md, and
# also 1 Turkish train row, 2547cfe3-8571-11ea-a5d8-54bef70b159e) and empty question stems (1 Turkish train row,
# b80bf5ca-8d07-11ea-ae7d-54bef70b159e)
EXAMS_DROPPED = {"de": 2, "tr": 2}


def _exams_row(rec: dict[str, Any], where: str) -> dict[str, Any] | None:
    question = rec.get("question") or {}
    choices = question.get("choices") or []
    texts = [_clean(c.get("text")) for c in choices]
    labels = [c.get("label") for c in choices]
    key = rec.get("answerKey")
    if key == "@" or not _clean(question.get("stem")):
        return None  # no valid answer / no question text
    if key not in labels:
        fail(f"{where}: id {rec.get('id')}: answerKey {key!r} not among the choice labels {labels}")
    if len(texts) < 2 or not all(texts) or not _clean(rec.get("id")):
        fail(f"{where}: id {rec.get('id')}: empty id or choice, or fewer than 2 choices")
    return {"id": _clean(rec["id"]), "question": _clean(question["stem"]), "choices": texts,
            "answer": labels.index(key)}


def convert_exams(shared: Path) -> Rows:
    base = shared / "train" / "exams"
    by_lang: dict[str, dict[str, dict[str, Any]]] = {lang: {} for lang in EXAMS_LANGS.values()}
    dropped: dict[str, int] = {}
    files = [base / "multilingual" / f"{s}.jsonl.tar.gz" for s in ("train", "dev", "test")]
    files += [base / "cross-lingual" / f"{s}_{lang}.jsonl.tar.gz" for lang in ("it", "pt", "tr", "vi")
              for s in ("train", "dev")]
    for path in files:
        for rec in _tar_jsonl(path):
            lang = EXAMS_LANGS.get(str((rec.get("info") or {}).get("language")))
            if lang is None:
                continue  # not a target language
            row = _exams_row(rec, str(path))
            if row is None:
                if path.parent.name == "multilingual":
                    dropped[lang] = dropped.get(lang, 0) + 1
                continue
            seen = by_lang[lang].get(row["id"])
            if seen is None:
                if path.parent.name == "cross-lingual":
                    fail(f"{path}: id {row['id']} is not in the multilingual files (SOURCE.md says they are equal)")
                by_lang[lang][row["id"]] = row
            elif seen != row:
                fail(f"{path}: id {row['id']} differs from the multilingual copy")
    if dropped != EXAMS_DROPPED:
        fail(f"{base}: dropped rows {dropped} (answerKey '@' or empty stem), expected {EXAMS_DROPPED}")
    out: Rows = {}
    for lang in sorted(by_lang):
        rows = list(by_lang[lang].values())
        _expect(base, f"distinct {lang} questions (+ dropped)", len(rows) + dropped.get(lang, 0), EXAMS_COUNTS[lang])
        out[lang] = rows
    return out


# --------------------------------------------------------------------------------------------- Belebele

BELEBELE_FILES = {"de": "deu_Latn", "en": "eng_Latn"}


def convert_belebele_partial(shared: Path) -> Rows:
    out: Rows = {}
    for lang, code in BELEBELE_FILES.items():
        path = shared / "train" / "belebele_partial" / f"{code}.jsonl"
        rows: list[dict[str, Any]] = []
        recs = parse_jsonl(read_text(path), str(path))
        _expect(path, "passages", len(recs), 488)
        for n, rec in enumerate(recs, 1):
            url = _clean(((rec.get("metadata") or {}).get("extra") or {}).get("url"))
            passage = _clean(rec.get("text"))
            if not url or not passage:
                fail(f"{path}:{n}: no passage text or metadata.extra.url")
            for k, item in enumerate(rec.get("items") or [], 1):
                answers = item.get("answers") or []
                choices = [_clean(a.get("text")) for a in answers]
                correct = [i for i, a in enumerate(answers) if a.get("correct") is True]
                if len(choices) != 4 or not all(choices) or len(correct) != 1 or not _clean(item.get("question")):
                    fail(f"{path}:{n}: question {k}: expected 4 non-empty answers with exactly one correct")
                # id = the passage's link + the question number within the passage (same in en and de)
                rows.append({"id": f"{url}#{k}", "passage": passage, "question": _clean(item["question"]),
                             "choices": choices, "answer": correct[0]})
        _expect(path, "questions", len(rows), 900)
        out[lang] = rows
    return out


# ------------------------------------------------------------------------------------------------ PAWS-X

PAWSX_LANGS = ("de", "en", "es", "fr", "zh")
PAWSX_TEST = {"de": "test-de.tsv", "zh": "test-00000-of-00001.tsv"}
PLACEHOLDER = "NS"  # untranslated items in the official dev/test (README: "make sure you clean them up")


def _hf_tsv(path: Path) -> list[tuple[str, str, str, str]]:
    table = _tsv(path, csv.QUOTE_MINIMAL)
    if not table or table[0] != ["id", "sentence1", "sentence2", "label"]:
        fail(f"{path}: header {table[:1]} is not id/sentence1/sentence2/label")
    rows = []
    for n, rec in enumerate(table[1:], 2):
        if len(rec) != 4 or rec[3] not in ("0", "1") or not rec[0].isdigit():
            fail(f"{path}:{n}: expected id, sentence1, sentence2, label 0|1; got {rec!r}")
        rows.append((rec[0], rec[1], rec[2], rec[3]))
    return rows


def convert_pawsx(shared: Path) -> Rows:
    base = shared / "pawsx"
    # The XTREME dev files have no id column; their rows are in the HF validation order, whose ids the zh HF
    # export gives (its text equals xtreme/dev-zh.tsv row by row: checked below).
    zh_val = _hf_tsv(base / "tsv_files" / "validation-00000-of-00001.tsv")
    _expect(base / "tsv_files" / "validation-00000-of-00001.tsv", "rows", len(zh_val), 2000)
    out: Rows = {}
    for lang in PAWSX_LANGS:
        path = base / "xtreme" / f"dev-{lang}.tsv"
        table = _tsv(path, csv.QUOTE_MINIMAL)
        _expect(path, "rows", len(table), len(zh_val))
        rows: list[dict[str, Any]] = []
        for n, (rec, hf) in enumerate(zip(table, zh_val, strict=True), 1):
            if len(rec) != 3 or rec[2] not in ("0", "1"):
                fail(f"{path}:{n}: expected sentence1, sentence2, label 0|1; got {rec!r}")
            if lang == "zh" and (rec[0].strip(), rec[1].strip(), rec[2]) != (hf[1].strip(), hf[2].strip(), hf[3]):
                fail(f"{path}:{n}: differs from the HF zh validation export (id {hf[0]})")
            rows.append({"id": f"dev-{hf[0]}", "sentence1": rec[0].strip(), "sentence2": rec[1].strip(),
                         "label": rec[2] == "1"})
        if lang in PAWSX_TEST:
            tpath = base / "tsv_files" / PAWSX_TEST[lang]
            test = _hf_tsv(tpath)
            _expect(tpath, "rows", len(test), 2000)
            rows += [{"id": f"test-{i}", "sentence1": s1.strip(), "sentence2": s2.strip(), "label": lab == "1"}
                     for i, s1, s2, lab in test]
        out[lang] = [r for r in rows if PLACEHOLDER not in (r["sentence1"], r["sentence2"])]
    return out


# ---------------------------------------------------------------------------------------------- sources

SOURCES: list[SourceInfo] = [
    SourceInfo(
        name="sib200", task_type="topic", license="CC BY-SA 4.0",
        provenance="dadelani/sib-200 @ 593cea88519930f776c1a4a1980b6a35b39dca57",
        note="All splits (train 701 + dev 99 + test 204 = 1,004 per language), parallel across languages. "
             "id = the FLORES-200 dev+devtest index (index_id, zero-padded), the same as the flores200 ids: the "
             "sentences are FLORES-200 text (overlap flores200 and belebele_partial). zh = Simplified "
             "(zho_Hans), ar = Modern Standard Arabic (arb_Arab). Repository licence Apache-2.0 (copied); the data "
             "is CC BY-SA 4.0 per the SIB-200 paper / HF card (FLORES-200 licence text copied).",
        license_files=(Path("train/sib200/LICENSE"), Path("train/flores200/LICENSE-CC-BY-SA")),
        convert=convert_sib200,
    ),
    SourceInfo(
        name="flores200", task_type="translation", license="CC BY-SA 4.0",
        provenance="Helsinki-NLP/OPUS-MT-testsets @ d4522b6dc6a7d668ec636a4256c6b913671a9666 (third-party verbatim "
                   "copy of the official flores200_dataset.tar.gz)",
        note="dev (997) + devtest (1,012) sentences; id = index in dev+devtest (0000-0996 dev, 0997-2008 devtest), "
             "identical across languages (same id = same sentence), and the same sample of ids is kept in every "
             "language. article = the source URL from metadata_{dev,devtest}.tsv. devtest is the standard MT test "
             "set: do not evaluate models trained on this on FLORES. zh = Simplified (cmn_Hans file), "
             "ar = Modern Standard Arabic (arb_Arab).",
        license_files=(Path("train/flores200/LICENSE-CC-BY-SA"),),
        convert=convert_flores200,
    ),
    SourceInfo(
        name="xquad", task_type="extractive_qa", license="CC BY-SA 4.0",
        provenance="google-deepmind/xquad @ 7d30520c717524000f0d9d2f9c10a069acd9d285",
        note="The only XQuAD split (SQuAD v1.1 dev, professionally translated; 1,190 questions on 240 contexts per "
             "language); id = the SQuAD question id, identical across languages. One gold answer per question. "
             "Contexts are long (truncate statements at the model's length).",
        license_files=(Path("train/xquad/LICENSE-CC-BY-SA4.0.txt"),),
        convert=convert_xquad,
    ),
    SourceInfo(
        name="tydiqa_goldp", task_type="extractive_qa", license="Apache-2.0",
        provenance="sagorbrur/tydiqa-language-specific @ 55c6649475e0765f717a6d32a173c6664096a8ce (official TyDi QA "
                   "GoldP v1.1 dev, split by language)",
        note="TyDi QA GoldP dev only (no train for ar/id/ru in the source); native (not translated) questions. "
             "answers = the distinct gold answer strings, first = the first gold answer.",
        license_files=(Path("train/tydiqa_goldp/LICENSE"),),
        convert=convert_tydiqa_goldp,
    ),
    SourceInfo(
        name="xsid", task_type="intent", license="CC BY-SA 4.0",
        provenance="mainlp/xsid @ 761d926c3f2e9f6bea13192d2f39cec1d04d9777 (xSID 0.7)",
        note="valid (300) + test (500) utterances, parallel across languages; id = split-position (the same "
             "utterance has the same id in every language). intent = the dataset's English intent name (15: Snips "
             "names such as AddToPlaylist, Facebook names such as weather/find). Substitute for MASSIVE (not "
             "available). Arabic labels differ from the other languages on 26/500 test utterances (upstream).",
        license_files=(Path("train/xsid/LICENSE"),),
        convert=convert_xsid,
    ),
    SourceInfo(
        name="exams", task_type="exam_qa", license="CC BY-SA 4.0",
        provenance="mhardalov/exams-qa @ f859e665de6c370f6214ca5f36a34ace36ada6cb",
        note="multilingual train+dev+test for the target languages (it pt tr vi: all splits; ar de es fr: test "
             "only). The cross-lingual train/dev files hold the same questions (same ids, checked equal) and are "
             "not counted twice. Dropped: rows with answerKey '@' (no valid answer: 2 German, 1 Turkish) and 1 "
             "Turkish row with an empty question stem. id = the EXAMS question id; 3-5 choices; answer = index "
             "into choices. Exam stems without passages.",
        license_files=(Path("train/exams/LICENSE"),),
        convert=convert_exams,
    ),
    SourceInfo(
        name="belebele_partial", task_type="reading_comprehension", license="CC BY-SA 4.0",
        provenance="saeub/item-evaluation @ c6332925bd1984396267a60a861227514edac484 (reformatted en/de copy of "
                   "Belebele); licence from facebookresearch/belebele @ 918890beb2290a8d3ef2d7a90369925959e1bacf",
        note="Only en and de (the full Belebele release is not available locally); all 900 questions on 488 "
             "passages each (the Belebele test set). id = the passage link + '#' + question number within the "
             "passage (the same in en and de). Choices in the official mc_answer1..4 order. Passages are FLORES-200 "
             "text (overlap flores200 and sib200). The copy's repository code is MIT (licence also copied).",
        license_files=(Path("train/belebele_partial/LICENSE_CC-BY-SA4.0-belebele"),
                       Path("train/belebele_partial/LICENSE-repo-MIT")),
        convert=convert_belebele_partial,
    ),
    SourceInfo(
        name="pawsx", task_type="paraphrase", license="PAWS licence (free use, attribution to Google appreciated)",
        provenance="wuhjie/few_shots_that_matters_wu @ 6bfe6324e428ec21a777b5543cd8e50ec82dcb3c (XTREME dev files) + "
                   "GautamGupta17/MESH @ 68f82e29e71a4e425069ff398a61387c24c0f30d (HF exports: zh validation, "
                   "de/zh test); licence from google-research-datasets/paws @ "
                   "02b29f3af1143620d1b7f352247e65c0bdd2ec18",
        note="No PAWS-X train split is available: dev (2,000 per language) for de en es fr zh, plus the labelled "
             "test (2,000) for de and zh (test labels of en/es/fr are not available). Dev ids ('dev-<HF id>') are "
             "assigned by row position from the HF zh validation export (same row order in every language); test "
             "ids 'test-<HF id>'. Pairs with the untranslated placeholder 'NS' are dropped. Labels are per "
             "language (not carried across languages).",
        license_files=(Path("pawsx/LICENSE.txt"),),
        convert=convert_pawsx,
    ),
]
