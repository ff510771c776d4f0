"""Converters for the word-in-context and sentiment training sources (dev-time only).

Word-in-context (``wic``): AM2iCo, MCL-WiC, WiC-ITA, WiC-Kazakh, XL-WiC (WordNet package).
Sentiment (``sentiment``): multilingual sentiments, AfriSenti, KazSAnDRA.

Every converter reads ``<shared>/train/<source>/`` (see its ``SOURCE.md``) and returns ``{lang: rows}`` in the
row contract of :mod:`harness.training.rows`; a missing or malformed file raises :class:`SourceError` naming it.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from .common import SourceError, SourceInfo, parse_jsonl, read_text

Row = dict[str, Any]

# --------------------------------------------------------------------------------------------------------------------
# shared helpers


def _c1_char(char: str) -> str:
    try:
        return bytes([ord(char)]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81 0x8D 0x8F 0x90 0x9D are undefined in cp1252
        return " "


#: C1 control characters (U+0080..U+009F, text once decoded as Latin-1 instead of cp1252) -> the cp1252 character
_C1_MAP = {code: _c1_char(chr(code)) for code in range(0x80, 0xA0)}


def _fix_c1(text: str) -> str:
    """Replace C1 control characters by their cp1252 meaning (``\\x96`` -> ``–``); length-preserving, so character
    offsets into the text stay valid."""
    return text.translate(_C1_MAP)


def _clean_text(text: str) -> str:
    """A sentiment text on one line: C1 characters fixed, whitespace runs (incl. newlines) collapsed to one space."""
    return " ".join(_fix_c1(text).split())


def _read_zip(path: Path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(member)
    except FileNotFoundError:
        raise SourceError(f"{path}: missing") from None
    except KeyError:
        raise SourceError(f"{path}: no member {member!r}") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise SourceError(f"{path}: unreadable zip ({exc})") from None


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{where}: not UTF-8 ({exc})") from None


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceError(f"{where}: bad JSON ({exc})") from None


def _table(text: str, where: str, header: list[str], *, delimiter: str = ",",
           quoting: Literal[0, 1, 2, 3] = csv.QUOTE_MINIMAL) -> list[list[str]]:
    """The data rows of a CSV/TSV text whose first row must be ``header``; every row must have as many fields."""
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting))
    if not rows or rows[0] != header:
        raise SourceError(f"{where}: header {rows[0] if rows else None!r}, expected {header!r}")
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise SourceError(f"{where}: row {number} has {len(row)} fields, expected {len(header)}")
    return rows[1:]


def _span(text: str, start: int | str, end: int | str, where: str) -> str:
    """The target word at character offsets ``[start, end)`` of ``text`` (surrounding spaces stripped)."""
    try:
        begin, stop = int(start), int(end)
    except ValueError:
        raise SourceError(f"{where}: bad offsets {start!r}-{end!r}") from None
    if not 0 <= begin < stop <= len(text) or not text[begin:stop].strip():
        raise SourceError(f"{where}: offsets {begin}-{stop} give no word in a text of {len(text)} characters")
    return text[begin:stop].strip()


def _wic_row(row_id: str, word1: str, context1: str, word2: str, context2: str, label: bool) -> Row:
    return {"id": row_id, "word1": word1, "context1": context1, "word2": word2, "context2": context2,
            "label": label}


def _dedupe(rows: Iterable[Row], key_fields: tuple[str, ...], label_field: str = "label") -> list[Row]:
    """Drop exact repeats (same key and label; the first is kept) and every row whose key occurs with
    different labels (contradictory gold)."""
    rows = list(rows)
    labels: dict[tuple[Any, ...], set[Any]] = {}
    for row in rows:
        labels.setdefault(tuple(row[name] for name in key_fields), set()).add(row[label_field])
    kept: list[Row] = []
    seen: set[tuple[Any, ...]] = set()
    for row in rows:
        key = tuple(row[name] for name in key_fields)
        if len(labels[key]) == 1 and key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


_WIC_KEY = ("word1", "context1", "word2", "context2")

# --------------------------------------------------------------------------------------------------------------------
# word-in-context

_AM2ICO_LANGS = ("ar", "de", "id", "kk", "ru", "tr", "zh")
_WORD_TAG = re.compile(r"<word>(.*?)</word>")
_SPACED_WORD_TAG = re.compile(r"\s*<word>.*?</word>\s*")


def _untag(context: str, where: str, *, spaceless: bool = False) -> tuple[str, str]:
    """(word, context without the tags) of a context with exactly one ``<word>…</word>``. ``spaceless``: the text
    has no spaces besides those written around the tags (AM2iCo Chinese), so those are dropped too."""
    found = _WORD_TAG.findall(context)
    if len(found) != 1 or context.count("<word>") != 1 or context.count("</word>") != 1 or not found[0].strip():
        raise SourceError(f"{where}: expected exactly one non-empty <word>…</word>, found {len(found)}")
    word = " ".join(found[0].split())
    if spaceless:
        return word, _SPACED_WORD_TAG.sub(lambda _: word, context, count=1).strip()
    # the tags are written as " <word>w</word> ": drop them and the double spaces they leave
    plain = " ".join(_WORD_TAG.sub(lambda match: match.group(1), context).split())
    return word, plain


def convert_am2ico(shared: Path) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for lang in _AM2ICO_LANGS:
        rows: list[Row] = []
        for split in ("dev", "test"):
            path = shared / "train" / "am2ico" / lang / f"{split}.tsv"
            table = _table(read_text(path), str(path), ["context1", "context2", "label"], delimiter="\t",
                           quoting=csv.QUOTE_NONE)
            for number, (raw1, raw2, tag) in enumerate(table):
                where = f"{path}: row {number + 2}"
                if tag not in ("T", "F"):
                    raise SourceError(f"{where}: label {tag!r} not T/F")
                word1, context1 = _untag(_fix_c1(raw1), where, spaceless=lang == "zh")
                word2, context2 = _untag(_fix_c1(raw2), where)
                rows.append(_wic_row(f"{split}-{number}", word1, context1, word2, context2, tag == "T"))
        out[lang] = _dedupe(rows, _WIC_KEY)
    return out


_MCL_ALL = "SemEval-2021_MCL-WiC_all-datasets.zip"
_MCL_GOLD = "SemEval-2021_MCL-WiC_test-gold-data.zip"
#: (zip, member path of the .data file, zip and member of the .gold file, language)
_MCL_FILES: tuple[tuple[str, str, str, str], ...] = (
    ("MCL-WiC/training/training.en-en.data", _MCL_ALL, "MCL-WiC/training/training.en-en.gold", "en"),
    *((f"MCL-WiC/dev/multilingual/dev.{lg}-{lg}.data", _MCL_ALL, f"MCL-WiC/dev/multilingual/dev.{lg}-{lg}.gold", lg)
      for lg in ("ar", "en", "fr", "ru", "zh")),
    *((f"MCL-WiC/test/multilingual/test.{lg}-{lg}.data", _MCL_GOLD, f"test.{lg}-{lg}.gold", lg)
      for lg in ("ar", "en", "fr", "ru", "zh")),
    *((f"MCL-WiC/test/crosslingual/test.en-{lg}.data", _MCL_GOLD, f"test.en-{lg}.gold", lg)
      for lg in ("ar", "fr", "ru", "zh")),
)


def _mcl_word(item: dict[str, Any], side: str, where: str) -> str | None:
    """The target word of sentence ``side`` ("1"/"2"), or None for a multi-range (discontinuous) target."""
    sentence = item[f"sentence{side}"]
    if f"ranges{side}" in item:
        ranges = str(item[f"ranges{side}"]).split(",")
        if len(ranges) != 1:
            return None
        start, _, end = ranges[0].partition("-")
        return _span(sentence, start, end, where)
    return _span(sentence, item[f"start{side}"], item[f"end{side}"], where)


def convert_mcl_wic(shared: Path) -> dict[str, list[Row]]:
    folder = shared / "train" / "mcl_wic"
    out: dict[str, list[Row]] = {}
    for member, gold_zip, gold_member, lang in _MCL_FILES:
        where = f"{folder / _MCL_ALL}:{member}"
        data = _json(_decode(_read_zip(folder / _MCL_ALL, member), where), where)
        gold_where = f"{folder / gold_zip}:{gold_member}"
        gold = _json(_decode(_read_zip(folder / gold_zip, gold_member), gold_where), gold_where)
        if not isinstance(data, list) or not isinstance(gold, list) or len(data) != len(gold):
            raise SourceError(f"{where}: data and gold are not JSON arrays of the same length")
        rows = out.setdefault(lang, [])
        for number, (item, tag) in enumerate(zip(data, gold, strict=True)):
            item_where = f"{where}[{number}]"
            try:
                row_id, label = item["id"], tag["tag"]
                if tag["id"] != row_id or label not in ("T", "F"):
                    raise SourceError(f"{item_where}: gold {tag!r} does not match id {row_id!r}")
                sentence1, sentence2 = _fix_c1(item["sentence1"]), _fix_c1(item["sentence2"])
                word1 = _mcl_word({**item, "sentence1": sentence1}, "1", item_where)
                word2 = _mcl_word({**item, "sentence2": sentence2}, "2", item_where)
            except (KeyError, TypeError):
                raise SourceError(f"{item_where}: missing or malformed field") from None
            if word1 is None or word2 is None:  # discontinuous target (e.g. "pris … en main"): not one word form
                continue
            rows.append(_wic_row(str(row_id), word1, sentence1.strip(), word2, sentence2.strip(), label == "T"))
    return {lang: _dedupe(rows, _WIC_KEY) for lang, rows in out.items()}


def convert_wic_ita(shared: Path) -> dict[str, list[Row]]:
    rows: list[Row] = []
    for split, name in (("train", "train.jsonl"), ("dev", "dev.jsonl"), ("test", "test_gold.jsonl")):
        path = shared / "train" / "wic_ita" / name
        for number, item in enumerate(parse_jsonl(read_text(path), str(path)), 1):
            where = f"{path}:{number}"
            try:
                label = item["label"]
                if label not in (0, 1) or isinstance(label, bool):
                    raise SourceError(f"{where}: label {label!r} not 0/1")
                sentence1, sentence2 = _fix_c1(item["sentence1"]), _fix_c1(item["sentence2"])
                word1 = _span(sentence1, item["start1"], item["end1"], where)
                word2 = _span(sentence2, item["start2"], item["end2"], where)
                row_id = f"{split}-{item['id']}"
            except (KeyError, TypeError):
                raise SourceError(f"{where}: missing or malformed field") from None
            rows.append(_wic_row(row_id, word1, sentence1.strip(), word2, sentence2.strip(), label == 1))
    return {"it": _dedupe(rows, _WIC_KEY)}


def _locate_by_stem(sentence: str, lemma: str) -> str | None:
    """The one token of ``sentence`` that starts with ``lemma`` minus its last letter (Kazakh stems alternate their
    final consonant: тамақ -> тамағы, көк -> көгін), or None when there is not exactly one."""
    stem = lemma[:-1].lower()
    if len(stem) < 2:
        return None
    tokens = {token for token in re.findall(r"\w+", sentence) if token.lower().startswith(stem)}
    return tokens.pop() if len(tokens) == 1 else None


def convert_wic_kazakh(shared: Path) -> dict[str, list[Row]]:
    path = shared / "train" / "wic_kazakh" / "final_dataset_lastE.jsonl"
    rows: list[Row] = []
    for number, item in enumerate(parse_jsonl(read_text(path), str(path)), 1):
        where = f"{path}:{number}"
        try:
            label, lemma = item["label"], item["word"]
            if not isinstance(label, bool):
                raise SourceError(f"{where}: label {label!r} not true/false")
            sentences = (_fix_c1(item["sentence1"]), _fix_c1(item["sentence2"]))
            words: list[str] = []
            for side, sentence in zip("12", sentences, strict=True):
                start, end = item[f"start{side}"], item[f"end{side}"]
                if start == end == -1:  # 2 rows upstream lack offsets: find the inflected form by its stem
                    word = _locate_by_stem(sentence, lemma)
                    if word is None:
                        raise SourceError(f"{where}: no offsets and {lemma!r} not found in sentence{side}")
                else:
                    word = _span(sentence, start, end, where)
                words.append(word)
            row_id = str(item["idx"])
        except (KeyError, TypeError):
            raise SourceError(f"{where}: missing or malformed field") from None
        rows.append(_wic_row(row_id, words[0], sentences[0].strip(), words[1], sentences[1].strip(), label))
    return {"kk": _dedupe(rows, _WIC_KEY)}


_XLWIC_ZIP = "xlwic_wn_xlingual.zip"
_XLWIC_FILES = (("en", "train", "xlwic_wn_xlingual/train_en.txt"), ("en", "valid", "xlwic_wn_xlingual/valid_en.txt"),
                ("zh", "valid", "xlwic_wn_xlingual/chinese_zh/valid.txt"))


def convert_xlwic(shared: Path) -> dict[str, list[Row]]:
    path = shared / "train" / "xlwic" / _XLWIC_ZIP
    out: dict[str, list[Row]] = {}
    for lang, split, member in _XLWIC_FILES:
        where = f"{path}:{member}"
        rows = out.setdefault(lang, [])
        lines = [line for line in _decode(_read_zip(path, member), where).split("\n") if line.strip()]
        for number, line in enumerate(lines):
            fields = line.rstrip("\r").split("\t")
            line_where = f"{where}: line {number + 1}"
            if len(fields) != 9 or fields[8] not in ("0", "1"):
                raise SourceError(f"{line_where}: expected 9 tab-separated fields ending in label 0/1")
            _, _, start1, end1, start2, end2, raw1, raw2, label = fields
            example1, example2 = _fix_c1(raw1), _fix_c1(raw2)
            word1 = _span(example1, start1, end1, line_where)
            word2 = _span(example2, start2, end2, line_where)
            rows.append(_wic_row(f"{split}-{number}", word1, example1.strip(), word2, example2.strip(), label == "1"))
    return {lang: _dedupe(rows, _WIC_KEY) for lang, rows in out.items()}


# --------------------------------------------------------------------------------------------------------------------
# sentiment

_SENTIMENT_LABELS = ("positive", "neutral", "negative")
_MULTI_FOLDERS = {"arabic": "ar", "chinese": "zh", "english": "en", "french": "fr", "german": "de", "hindi": "hi",
                  "indonesian": "id", "italian": "it", "portuguese": "pt", "spanish": "es"}


def _sentiment_row(row_id: str, text: str, label: str, where: str) -> Row:
    if label not in _SENTIMENT_LABELS:
        raise SourceError(f"{where}: label {label!r} not one of {_SENTIMENT_LABELS}")
    cleaned = _clean_text(text)
    if not cleaned:
        raise SourceError(f"{where}: empty text")
    return {"id": row_id, "text": cleaned, "label": label}


def convert_multilingual_sentiments(shared: Path) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for folder, lang in sorted(_MULTI_FOLDERS.items(), key=lambda item: item[1]):
        rows: list[Row] = []
        splits = ("valid", "test") if folder == "chinese" else ("train", "valid", "test")  # zh train not available
        for split in splits:
            path = shared / "train" / "multilingual_sentiments" / folder / f"{split}.csv"
            for number, (text, label, _source) in enumerate(_table(read_text(path), str(path),
                                                                   ["text", "label", "source"])):
                rows.append(_sentiment_row(f"{split}-{number}", text, label, f"{path}: row {number + 2}"))
        out[lang] = _dedupe(rows, ("text",))
    return out


def convert_afrisenti(shared: Path) -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for folder, lang in (("hau", "ha"), ("ibo", "ig")):
        rows: list[Row] = []
        for split in ("dev", "test"):
            path = shared / "train" / "afrisenti" / folder / f"{split}.tsv"
            table = _table(read_text(path), str(path), ["tweet", "label"], delimiter="\t", quoting=csv.QUOTE_NONE)
            for number, (tweet, label) in enumerate(table):
                rows.append(_sentiment_row(f"{split}-{number}", tweet, label, f"{path}: row {number + 2}"))
        out[lang] = _dedupe(rows, ("text",))
    return out


#: KazSAnDRA polarity label -> sentiment (1 = review score 4-5, 0 = score 1-2; score 3 is not in the PC splits)
_KAZSANDRA_LABELS = {"1": "positive", "0": "negative"}


def convert_kazsandra(shared: Path) -> dict[str, list[Row]]:
    path = shared / "train" / "kazsandra" / "04_pc_valid.zip"
    where = f"{path}:04_pc_valid.csv"
    table = _table(_decode(_read_zip(path, "04_pc_valid.csv"), where), where,
                   ["custom_id", "text", "text_cleaned", "label", "domain"])
    rows: list[Row] = []
    for number, (custom_id, text, _cleaned, label, _domain) in enumerate(table):
        row_where = f"{where}: row {number + 2}"
        if label not in _KAZSANDRA_LABELS or not custom_id:
            raise SourceError(f"{row_where}: label {label!r} not 0/1 or empty custom_id")
        rows.append(_sentiment_row(custom_id, text, _KAZSANDRA_LABELS[label], row_where))
    if len(Counter(row["id"] for row in rows)) != len(rows):
        raise SourceError(f"{where}: custom_id not unique")
    return {"kk": _dedupe(rows, ("text",))}


# --------------------------------------------------------------------------------------------------------------------

SOURCES: list[SourceInfo] = [
    SourceInfo(
        name="am2ico",
        task_type="wic",
        license="CC BY 4.0",
        provenance="cambridgeltl/AM2iCo @ 2003865050bc9a9e84f2bcb4979f03734bddab28",
        note="Cross-lingual WiC: context1 is a target-language Wikipedia context, context2 an English one; the row's "
             "language is the non-English side. dev+test (the train files are not in the local copy); <word> tags "
             "removed (word1/word2 = the tagged words). Adversarial negatives; contexts are tokenised (zh: unspaced). "
             "zh contexts mix Traditional and Simplified script. Balanced 50/50.",
        license_files=(Path("train/am2ico/LICENSE.md"),),
        convert=convert_am2ico,
    ),
    SourceInfo(
        name="mcl_wic",
        task_type="wic",
        license="CC BY-NC 4.0",
        provenance="SapienzaNLP/mcl-wic @ 30d05d85a9902081bec8ca2eb2ba552e7570b1e7",
        note="Non-commercial (CC BY-NC 4.0; licence text is MCL-WiC/LICENSE.txt inside the all-datasets zip). "
             "SemEval-2021 Task 2: en = training + dev + test (en-en); ar/fr/ru/zh = monolingual dev + test plus the "
             "cross-lingual en-X test (context1 English, context2 in the row's language; ids 'test.en-X.N'). Test "
             "gold from the separate gold zip. Rows whose target is a discontinuous multi-word span (several ranges, "
             "cross-lingual test only) are left out. UN-document sentences, Simplified Chinese; rows come in pairs "
             "sharing lemma and sentence1.",
        license_files=(),
        convert=convert_mcl_wic,
        non_commercial=True,
    ),
    SourceInfo(
        name="wic_ita",
        task_type="wic",
        license="none stated",
        provenance="wic-ita/data @ 3a9ba283a905ca878c41f4349ebc15541946dc60",
        note="EVALITA 2023 WiC-ITA binary task (it): train + dev + gold test (ids prefixed with the split). No licence "
             "in the repository: research use only; cite Cassotti et al. 2023. Train is 71 % 'same meaning'. "
             "Tokenised web text with some mojibake (e.g. 'lâ € TM' for l'); C1 control characters mapped to cp1252.",
        license_files=(),
        convert=convert_wic_ita,
    ),
    SourceInfo(
        name="wic_kazakh",
        task_type="wic",
        license="none stated",
        provenance="Nedzhin/WiC_Kazakh_dataset @ 33e0f8f0c794428fddba948112e923e6fc08ce2f",
        note="Small single-author Kazakh WiC set (no official splits; README: 'open for research use', no licence). "
             "Word forms from the character offsets; 2 rows without offsets get the inflected form located by stem.",
        license_files=(),
        convert=convert_wic_kazakh,
    ),
    SourceInfo(
        name="xlwic",
        task_type="wic",
        license="CC BY-NC 4.0",
        provenance="pilehvar/pilehvar.github.io @ 0253ea205a618ef3b150aa2f9c739e6e50488114",
        note="Non-commercial (CC BY-NC 4.0 per the WiC page and the HF card; the XL-WiC page states none). WordNet "
             "package only: zh = the labelled valid set, in Traditional Chinese script (the zh test has no gold); "
             "en = train + valid, i.e. the original English WiC (= SuperGLUE WiC) train/dev.",
        license_files=(),
        convert=convert_xlwic,
        non_commercial=True,
    ),
    SourceInfo(
        name="multilingual_sentiments",
        task_type="sentiment",
        license="Apache-2.0 (aggregation repo); underlying datasets keep their own terms (zh: Amazon Reviews Multi, "
                "non-commercial)",
        provenance="tyqiangz/multilingual-sentiment-datasets @ 0f4d140251eda600db2be6ecd8f92dce454be2b7",
        note="Aggregated 3-class sentiment. ar de en es fr hi it pt: XLM-T UMSAB tweets (train+valid+test, balanced, "
             "'@user' placeholders); id: IndoNLU SmSA (imbalanced, neutral rare); zh: Amazon Reviews Multi (valid+test "
             "only, 1★ neg / 3★ neu / 5★ pos). Marked non-commercial because of the zh Amazon part; the other "
             "languages are not Amazon data. Whitespace collapsed; repeated texts kept once, texts with conflicting "
             "labels dropped.",
        license_files=(Path("train/multilingual_sentiments/LICENSE"),),
        convert=convert_multilingual_sentiments,
        non_commercial=True,
    ),
    SourceInfo(
        name="afrisenti",
        task_type="sentiment",
        license="CC BY 4.0",
        provenance="afrisenti-semeval/afrisent-semeval-2023 @ 5aec3cfcf87b59f885e98641f72e52182776429d",
        note="SemEval-2023 Task 12 tweets, Hausa (ha) and Igbo (ig), dev + test (train not in the local copy); "
             "code-mixed with English/Pidgin, '@user' placeholders. Licence stated in the README (no LICENSE file).",
        license_files=(),
        convert=convert_afrisenti,
    ),
    SourceInfo(
        name="kazsandra",
        task_type="sentiment",
        license="none stated",
        provenance="IS2AI/KazSAnDRA @ d769cf7f7bd62b59f88915508d4bc062310b54d6",
        note="Kazakh app-store/market reviews, polarity-classification valid split only: label 1 (score 4-5) -> "
             "positive, 0 (score 1-2) -> negative; no neutral. 82 % positive. Original 'text' column (not the "
             "cleaned one), newlines collapsed. Mixed Kazakh/Russian and scripts. No licence: research use; cite "
             "Yeshpanov & Varol 2024.",
        license_files=(),
        convert=convert_kazsandra,
    ),
]
