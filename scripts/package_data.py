#!/usr/bin/env python
"""Package the four eval sets into ``harness/tasks/data`` (a dev tool, run once; the output is committed).

    python scripts/package_data.py [--shared ../shared/data] [--out harness/tasks/data]

Reads the local copies described in ``<shared>/README.md`` and each dataset's ``SOURCE.md`` and writes, in the
Hugging Face schema (and split names) of each task:

* ``<task>/<split>/<lang>.jsonl.gz``: one JSON object per line, keys in a fixed order, gzip (mtime 0,
  level 9);
* ``xcopa/copa_en_question.json``: the English COPA ``question`` (the reliable cause/effect) by XCOPA ``idx``;
* ``manifest.json``: hub ids, licences, provenance, notes, and the sha256 and row count of every file;
* ``LICENSES.md`` and ``LICENSE-<task>.txt`` (copies of the upstream licence texts).

The output is deterministic: running the script twice gives identical bytes. Every check that fails stops the
script with a message naming the file and rows.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.tasks.registry import load_registry  # noqa: E402

#: the packaged tasks, read from their task files (harness/tasks/builtin/*.yaml: languages, rows, hub ids)
TASKS = {name: spec for name, spec in load_registry().tasks.items() if spec.source == "packaged"}

DEFAULT_SHARED = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "harness" / "tasks" / "data"
FORMAT_VERSION = 1
GZIP_LEVEL = 9

# Provenance (repo @ commit) as recorded in each SOURCE.md; checked against the SOURCE.md text at run time.
COMMITS = {
    "xcopa": [("cambridgeltl/xcopa", "e2e9d7f105a758ee869cd13e0fe251ef93a29840")],
    "xnli": [
        ("HKUNLP/multilingual-transfer", "ef92deb6bbe55d5d4e49e64fed17f35f133f6030"),
        ("wuhjie/few_shots_that_matters_wu", "6bfe6324e428ec21a777b5543cd8e50ec82dcb3c"),
    ],
    "xstorycloze": [("juletx/self-translate", "c21cd7b0bf8243956c46d54b6596323df395fc4c")],
    "xwinograd": [("yandex-research/crosslingual_winograd", "d2cfbbf7dc8f4ec66381e9651f9f5633c2df848d")],
    "copa_en": [
        ("HKUNLP/multilingual-transfer", "ef92deb6bbe55d5d4e49e64fed17f35f133f6030"),
        ("GautamGupta17/MESH", "68f82e29e71a4e425069ff398a61387c24c0f30d"),
    ],
}
XNLI_LICENSE_COMMIT = ("facebookresearch/XNLI", "9624695001060244cf8d5d893b5236093a21a42c")

XCOPA_FIELDS = ("premise", "choice1", "choice2", "question", "label", "idx", "changed")
XNLI_FIELDS = ("premise", "hypothesis", "label")
XNLI_LABELS = {"entailment": 0, "neutral": 1, "contradiction": 2}
XNLI_HKUNLP = ("ar", "de", "en", "es", "fr", "hi", "sw", "tr", "ur", "vi", "zh")
XNLI_DERIVED = ("bg", "el", "ru", "th")
STORY_HEADER = ["InputStoryid", "InputSentence1", "InputSentence2", "InputSentence3", "InputSentence4",
                "RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2", "AnswerRightEnding"]
STORY_FIELDS = ("story_id", "input_sentence_1", "input_sentence_2", "input_sentence_3", "input_sentence_4",
                "sentence_quiz1", "sentence_quiz2", "answer_right_ending")
WINO_FIELDS = ("sentence", "option1", "option2", "answer", "source")

# NLTK (Treebank) rewrites some characters; the token on the left may stand for any raw text on the right.
NLTK_SUBSTITUTIONS = {
    "``": ('"', "“", "„", "«", "''"),
    "''": ('"', "”", "»", "“", "``"),
    "-LRB-": ("(",), "-RRB-": (")",), "-LSB-": ("[",), "-RSB-": ("]",), "-LCB-": ("{",), "-RCB-": ("}",),
}
PUNCT_RE = re.compile(r"^[\s.,;:!?。，、；：！？…]+$")

LICENSE_TEXTS = {  # output name -> source path relative to <shared>
    "LICENSE-xcopa.txt": "xcopa/LICENSE.txt",
    "LICENSE-xnli.txt": "xnli/LICENSE.txt",
    "LICENSE-xstorycloze.txt": "xstorycloze/LICENSE.txt",
    "LICENSE-xwinograd.txt": "xwinograd/LICENSE.txt",
}


class PackagingError(Exception):
    pass


def fail(msg: str) -> None:
    raise PackagingError(msg)


# ----------------------------------------------------------------------------------------------- I/O helpers

def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                fail(f"{path}:{n}: bad JSON ({exc})")
    return rows


def read_tsv(path: Path, quoting: Any = csv.QUOTE_NONE, **kw: Any) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh, delimiter="\t", quoting=quoting, **kw))


def jsonl_gz_bytes(rows: list[dict[str, Any]], fields: tuple[str, ...]) -> bytes:
    lines = []
    for row in rows:
        if tuple(row) != fields:
            fail(f"internal: row keys {list(row)} != {list(fields)}")
        lines.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    raw = ("\n".join(lines) + "\n").encode("utf-8")
    return gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Output:
    """Collects the files to write (relative path -> bytes) so that stale files can be removed afterwards."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def add(self, rel: str, data: bytes) -> str:
        if rel in self.files:
            fail(f"internal: {rel} written twice")
        self.files[rel] = data
        return sha256(data)

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        for rel, data in sorted(self.files.items()):
            path = out / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.read_bytes() != data:
                path.write_bytes(data)
        for path in sorted(out.rglob("*"), reverse=True):
            rel = path.relative_to(out).as_posix()
            if path.is_file() and rel not in self.files:
                print(f"removing stale {rel}")
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def check_sources(shared: Path) -> None:
    for name, pairs in COMMITS.items():
        text = (shared / name / "SOURCE.md").read_text(encoding="utf-8")
        for repo, commit in pairs:
            if repo not in text or commit not in text:
                fail(f"{shared / name / 'SOURCE.md'}: does not mention {repo} @ {commit}; update COMMITS")
    text = (shared / "xnli" / "SOURCE.md").read_text(encoding="utf-8")
    if XNLI_LICENSE_COMMIT[1] not in text:
        fail(f"{shared / 'xnli' / 'SOURCE.md'}: licence commit {XNLI_LICENSE_COMMIT[1]} not mentioned")


def source_str(name: str) -> str:
    return "; ".join(f"{repo} @ {commit}" for repo, commit in COMMITS[name])


def expect_rows(task: str, split: str, lang: str, rows: list[Any], path: Path) -> None:
    want = TASKS[task].rows(split, lang)
    if len(rows) != want:
        fail(f"{path}: {len(rows)} rows, the task file expects {want} for {task}/{split}/{lang}")


def entry(file: str, digest: str, rows: int, derived: bool, note: str) -> dict[str, Any]:
    return {"file": file, "sha256": digest, "rows": rows, "derived": derived, "note": note}


# ---------------------------------------------------------------------------------------------------- XCOPA

def build_xcopa(shared: Path, out: Output) -> tuple[dict[str, Any], dict[str, Any]]:
    en_files = {"test": shared / "copa_en/xcopa_en/test.jsonl",
                "validation": shared / "copa_en/xcopa_en/val-en.jsonl"}
    en: dict[str, list[dict[str, Any]]] = {}
    for split, path in en_files.items():
        rows = sorted(read_jsonl(path), key=lambda r: r["idx"])
        if [r["idx"] for r in rows] != list(range(TASKS["xcopa"].rows(split, "et"))):
            fail(f"{path}: idx is not 0..{TASKS['xcopa'].rows(split, 'et') - 1}")
        bad = [r["idx"] for r in rows if r["question"] not in ("cause", "effect")]
        if bad:
            fail(f"{path}: question not cause/effect at idx {bad[:10]}")
        en[split] = rows
    questions = {split: [r["question"] for r in en[split]] for split in ("test", "validation")}
    q_bytes = (json.dumps(questions, ensure_ascii=False) + "\n").encode("utf-8")
    q_rel = "xcopa/copa_en_question.json"
    q_counts = {s: dict(sorted(Counter(q).items())) for s, q in questions.items()}
    extras = {
        "copa_en_question": {
            "file": q_rel,
            "sha256": out.add(q_rel, q_bytes),
            "rows": {s: len(q) for s, q in questions.items()},
            "license": "BSD-2-Clause (COPA, Roemmele et al. 2011)",
            "source": source_str("copa_en")
            + " (data/xcopa/en/test.jsonl from HKUNLP; data/xcopa/val-en.jsonl from MESH)",
            "note": "English COPA `question` (cause/effect) for XCOPA idx 0..N-1: {split: [question, ...]}. "
            f"Counts: {json.dumps(q_counts)}. English labels equal every XCOPA language's labels (checked). "
            "Use it instead of the upstream XCOPA `question`, which is wrong for many items.",
        }
    }

    splits: dict[str, Any] = {}
    for split, prefix in (("test", "test"), ("validation", "val")):
        splits[split] = {}
        for lang in TASKS["xcopa"].languages:
            path = shared / f"xcopa/data/{lang}/{prefix}.{lang}.jsonl"
            raw = read_jsonl(path)
            expect_rows("xcopa", split, lang, raw, path)
            rows = []
            for n, r in enumerate(raw):
                if set(r) != set(XCOPA_FIELDS):
                    fail(f"{path}: row {n} has fields {sorted(r)}")
                if r["idx"] != n or r["label"] not in (0, 1) or not isinstance(r["changed"], bool):
                    fail(f"{path}: row {n}: idx {r['idx']!r} label {r['label']!r} changed {r['changed']!r}")
                if r["label"] != en[split][n]["label"]:
                    fail(f"{path}: row {n} label differs from English COPA")
                rows.append({k: r[k] for k in XCOPA_FIELDS})
            agree = sum(r["question"] == q for r, q in zip(rows, questions[split], strict=True))
            qc = Counter(r["question"] for r in rows)
            note = (f"upstream data/{lang}/{prefix}.{lang}.jsonl, values unchanged; `question` agrees with "
                    f"English COPA for {agree}/{len(rows)} rows (upstream: {qc['cause']} cause / "
                    f"{qc['effect']} effect)")
            if agree != len(rows):
                note += "; use copa_en_question.json for the true cause/effect"
            rel = f"xcopa/{split}/{lang}.jsonl.gz"
            digest = out.add(rel, jsonl_gz_bytes(rows, XCOPA_FIELDS))
            splits[split][lang] = entry(rel, digest, len(rows), False, note)
    task = {
        "hub_id": TASKS["xcopa"].hub_id,
        "license": "CC BY 4.0",
        "license_file": "LICENSE-xcopa.txt",
        "source": source_str("xcopa"),
        "note": "Same fields and values as upstream (HF builds from the same files); upstream split `val` is "
        "HF `validation`. The `question` field is wrong upstream for many items (th: all 'effect'; tr "
        "validation: all 'effect'; a few in sw, tr, id, it); the English COPA value by idx is in "
        "extras.copa_en_question.",
        "splits": splits,
    }
    return task, extras


# ----------------------------------------------------------------------------------------------------- XNLI

def build_xnli(shared: Path, out: Output) -> dict[str, Any]:
    splits: dict[str, Any] = {"test": {}, "validation": {}}
    en_labels = [r["label"] for r in read_jsonl(shared / "xnli/hkunlp/en/test.jsonl")]
    for lang in TASKS["xnli"].languages:
        if lang in XNLI_HKUNLP:
            path = shared / f"xnli/hkunlp/{lang}/test.jsonl"
            derived = False
            note = (f"HKUNLP/multilingual-transfer data/xnli/{lang}/test.jsonl (an HF facebook/xnli export: "
                    "same fields, label coding and row order; raw leading/trailing whitespace kept)")
        elif lang in XNLI_DERIVED:
            path = shared / f"xnli/derived/test-{lang}.jsonl"
            derived = True
            note = ("DERIVED, not an upstream labelled file: premise/hypothesis = row i of XTREME "
                    f"test-{lang}.tsv (wuhjie/few_shots_that_matters_wu, whitespace-stripped text), label = "
                    "label of row i of the English test file (XNLI test items are translations of the same "
                    "5,010 English pairs in the same order; label sequences are identical for the 10 other "
                    "languages). The upstream labelled file (>4 MiB) was not available")
        else:
            fail(f"xnli language {lang} has no source")
        raw = read_jsonl(path)
        expect_rows("xnli", "test", lang, raw, path)
        rows = []
        for n, r in enumerate(raw):
            if set(r) != set(XNLI_FIELDS) or r["label"] not in (0, 1, 2):
                fail(f"{path}: row {n} has fields {sorted(r)} / label {r.get('label')!r}")
            if not isinstance(r["premise"], str) or not isinstance(r["hypothesis"], str):
                fail(f"{path}: row {n} premise/hypothesis not strings")
            rows.append({k: r[k] for k in XNLI_FIELDS})
        if [r["label"] for r in rows] != en_labels:
            fail(f"{path}: label sequence differs from the English test labels")
        rel = f"xnli/test/{lang}.jsonl.gz"
        digest = out.add(rel, jsonl_gz_bytes(rows, XNLI_FIELDS))
        splits["test"][lang] = entry(rel, digest, len(rows), derived, note)

    dev_en: list[int] | None = None
    for lang in TASKS["xnli"].languages:
        path = shared / f"xnli/xtreme/dev-{lang}.tsv"
        # csv module: the files are CRLF and were written with csv.writer (default quoting).
        table = read_tsv(path, quoting=csv.QUOTE_MINIMAL)
        expect_rows("xnli", "validation", lang, table, path)
        rows = []
        for n, rec in enumerate(table):
            if len(rec) != 3 or rec[2] not in XNLI_LABELS:
                fail(f"{path}: row {n} has {len(rec)} columns / label {rec[-1]!r}")
            rows.append({"premise": rec[0], "hypothesis": rec[1], "label": XNLI_LABELS[rec[2]]})
        labels = [r["label"] for r in rows]
        if dev_en is None:
            dev_en = labels
        elif labels != dev_en:
            fail(f"{path}: label sequence differs from dev-{TASKS['xnli'].languages[0]}.tsv")
        note = (f"XTREME dev-{lang}.tsv (wuhjie/few_shots_that_matters_wu); string labels mapped to 0 "
                "entailment / 1 neutral / 2 contradiction; XTREME strips leading/trailing whitespace (HF "
                "keeps it in a few rows)")
        rel = f"xnli/validation/{lang}.jsonl.gz"
        digest = out.add(rel, jsonl_gz_bytes(rows, XNLI_FIELDS))
        splits["validation"][lang] = entry(rel, digest, len(rows), False, note)
    return {
        "hub_id": TASKS["xnli"].hub_id,
        "license": "CC BY-NC 4.0 (non-commercial)",
        "license_file": "LICENSE-xnli.txt",
        "source": source_str("xnli") + "; licence text from " + " @ ".join(XNLI_LICENSE_COMMIT),
        "note": "Labels 0 entailment / 1 neutral / 2 contradiction (HF ClassLabel order). test: upstream "
        "HF-format files for ar de en es fr hi sw tr ur vi zh; bg el ru th are DERIVED (XTREME test text + "
        "English labels by row, whitespace-stripped; flagged derived). validation: XTREME dev files "
        "(whitespace-stripped). NON-COMMERCIAL licence.",
        "splits": splits,
    }


# ---------------------------------------------------------------------------------------------- XStoryCloze

def build_xstorycloze(shared: Path, out: Output) -> dict[str, Any]:
    splits: dict[str, Any] = {"eval": {}, "train": {}}
    hf_diffs: list[str] = []
    ref: dict[str, list[tuple[str, str]]] = {}
    for split in ("eval", "train"):
        for lang in TASKS["xstorycloze"].languages:
            path = shared / f"xstorycloze/spring2016.val.{lang}.tsv.split_20_80_{split}.tsv"
            table = read_tsv(path)  # QUOTE_NONE: no field is quoted
            if not table or table[0] != STORY_HEADER:
                fail(f"{path}: unexpected header {table[:1]}")
            body = table[1:]
            expect_rows("xstorycloze", split, lang, body, path)
            rows = []
            for n, rec in enumerate(body):
                if len(rec) != 8 or rec[7] not in ("1", "2"):
                    fail(f"{path}: data row {n + 1} has {len(rec)} columns / answer {rec[-1]!r}")
                row: dict[str, Any] = dict(zip(STORY_FIELDS[:7], rec[:7], strict=True))
                row["answer_right_ending"] = int(rec[7])
                rows.append(row)
            key = [(r["story_id"], str(r["answer_right_ending"])) for r in rows]
            if split not in ref:
                ref[split] = key
            elif key != ref[split]:
                fail(f"{path}: story ids / answers not row-aligned with the first language")
            # What the HF loading script (quotechar '"', QUOTE_ALL, skipinitialspace) would read instead:
            hf = read_tsv(path, quoting=csv.QUOTE_ALL, quotechar='"', skipinitialspace=True)[1:]
            notes = []
            for n, (a, b) in enumerate(zip(body, hf, strict=True)):
                for col, (x, y) in enumerate(zip(a, b, strict=True)):
                    if x != y:
                        d = (f"data row {n + 1} (story_id {a[0]}) field {STORY_FIELDS[col]}: packaged {x!r}, "
                             f"HF's csv quoting reads {y!r}")
                        notes.append(d)
                        hf_diffs.append(f"{lang}/{split} {d}")
            note = f"{Path(path).name}, columns renamed to the HF names, read with csv QUOTE_NONE"
            if notes:
                note += "; differs from HF in " + "; ".join(notes)
            rel = f"xstorycloze/{split}/{lang}.jsonl.gz"
            digest = out.add(rel, jsonl_gz_bytes(rows, STORY_FIELDS))
            splits[split][lang] = entry(rel, digest, len(rows), False, note)
    return {
        "hub_id": TASKS["xstorycloze"].hub_id,
        "license": "CC BY-SA 4.0 (per the release README; the release's LICENSE file is an MIT text)",
        "license_file": "LICENSE-xstorycloze.txt",
        "source": source_str("xstorycloze") + " (datasets/XStoryCloze, from history; removed from HEAD)",
        "note": "Meta XStoryCloze release (en built from English StoryCloze Spring-2016 val per the README), "
        "columns renamed to the HF names; answer_right_ending is 1-based (1 or 2) as on the Hub. Read with "
        "csv QUOTE_NONE (upstream text unchanged). HF's loading script reads with quotechar '\"', QUOTE_ALL, "
        f"skipinitialspace=True, which changes {len(hf_diffs)} field(s) (one quoted eu field loses its "
        "quotes; leading spaces are stripped in hi and ru; the Hub card's per-split num_bytes for hi/ru/eu "
        "eval match that HF-parsed text, so the Hub has these variants): " + "; ".join(hf_diffs),
        "splits": splits,
    }


# ------------------------------------------------------------------------------------------------ XWinograd

def align_tokens(raw: str, tokens: list[str]) -> list[tuple[int, int]] | None:
    """Character span of every NLTK token in ``raw`` (tokens in order, separated only by whitespace).

    Returns None when the tokens do not cover the raw text exactly (apart from whitespace).
    """
    spans = []
    pos = 0
    for tok in tokens:
        while pos < len(raw) and raw[pos].isspace():
            pos += 1
        for cand in (tok, *NLTK_SUBSTITUTIONS.get(tok, ())):
            if cand and raw.startswith(cand, pos):
                spans.append((pos, pos + len(cand)))
                pos += len(cand)
                break
        else:
            return None
    if raw[pos:].strip():
        return None
    return spans


def nows(s: str) -> str:
    return "".join(s.split())


def build_xwinograd(shared: Path, out: Output) -> dict[str, Any]:
    path = shared / "xwinograd/dataset.tsv"
    table = read_tsv(path)
    by_lang: dict[str, list[dict[str, Any]]] = {lang: [] for lang in TASKS["xwinograd"].languages}
    problems: list[str] = []
    odd: dict[str, list[str]] = {lang: [] for lang in by_lang}
    seen: Counter[str] = Counter()
    for line_no, rec in enumerate(table, 1):
        where = f"dataset.tsv line {line_no}"
        if len(rec) != 7:
            problems.append(f"{where}: {len(rec)} columns")
            continue
        lang, source, _en_ref, raw, tok_json, pron_json, cand_json = rec
        if lang not in by_lang:
            problems.append(f"{where}: unknown language {lang!r}")
            continue
        pos_in_lang = seen[lang]  # row index in the language's output (counting rows that fail, too)
        seen[lang] += 1
        tag = f"{lang} row {pos_in_lang} ({where})"
        tokens = json.loads(tok_json)
        pron_text, (ps, pe), _ = json.loads(pron_json)
        cands = json.loads(cand_json)
        spans = align_tokens(raw, tokens)
        if spans is None:
            problems.append(f"{tag}: NLTK tokens do not align with the raw text")
            continue
        if not (0 <= ps < pe <= len(tokens)):
            problems.append(f"{tag}: pronoun token span {[ps, pe]} out of range")
            continue
        # A few spans include a trailing punctuation token ("его" + "."): keep the punctuation.
        trimmed = pe
        while trimmed - 1 > ps and PUNCT_RE.match(tokens[trimmed - 1]):
            trimmed -= 1
        start, end = spans[ps][0], spans[trimmed - 1][1]
        replaced = raw[start:end]
        dropped = raw[end:spans[pe - 1][1]]
        if nows(replaced) + nows(dropped) != nows(pron_text) or not replaced.strip():
            problems.append(f"{tag}: replaced characters {replaced!r} do not match the pronoun {pron_text!r}")
            continue
        if "_" in raw:
            problems.append(f"{tag}: raw text already contains '_'")
            continue
        sentence = raw[:start] + "_" + raw[end:]
        # The rest of the text is unchanged: putting the pronoun back gives the raw text.
        if sentence.replace("_", replaced, 1) != raw or sentence.count("_") != 1:
            problems.append(f"{tag}: blanking changed the rest of the text")
            continue
        if len(cands) != 2 or sum(bool(c[3]) for c in cands) != 1:
            problems.append(f"{tag}: expected 2 candidates with exactly one correct")
            continue
        if trimmed != pe:
            odd[lang].append(f"row {pos_in_lang}: pronoun span {pron_text!r} includes punctuation "
                             f"{dropped!r}, kept in the sentence")
        for c in cands:
            cs, ce = c[1]
            ctext = raw[spans[cs][0]:spans[ce - 1][1]] if 0 <= cs < ce <= len(spans) else None
            if ctext is None or nows(ctext) != nows(c[0]):
                odd[lang].append(f"row {pos_in_lang}: candidate {c[0]!r} token span covers {ctext!r} "
                                 "(the candidate text is used)")
            if not (ce <= ps or cs >= pe):
                odd[lang].append(f"row {pos_in_lang}: candidate {c[0]!r} overlaps the pronoun {pron_text!r} "
                                 "(kept as is)")
        if lang == "zh" and pron_text not in ("他", "她", "它", "他们", "她们", "它们"):
            ctx = raw[max(0, start - 2):end + 2]
            odd[lang].append(f"row {pos_in_lang}: pronoun span is {pron_text!r} (in {ctx!r}), not a pronoun; "
                             f"converted as is: {sentence.strip()!r}")
        by_lang[lang].append({
            "sentence": sentence,
            "option1": cands[0][0],
            "option2": cands[1][0],
            "answer": "1" if cands[0][3] else "2",
            "source": source,
        })
    if problems:
        fail(f"{path}: {len(problems)} row(s) could not be converted:\n  " + "\n  ".join(problems))

    splits: dict[str, Any] = {"test": {}}
    for lang, rows in by_lang.items():
        expect_rows("xwinograd", "test", lang, rows, path)
        srcs = ", ".join(f"{k} {v}" for k, v in sorted(Counter(r["source"] for r in rows).items()))
        note = (f"converted from dataset.tsv ({srcs}): the pronoun's NLTK token span replaced by '_' after "
                "aligning tokens to the raw text; options = the candidates' raw texts in authored order "
                "(HF's order may differ, so `answer` may too)")
        if lang == "zh":
            note += ("; ONLY the 16 original schemas (the Hub has 504: +488 from CLUEWSC2020); do not "
                     "compare with published zh numbers")
        if odd[lang]:
            note += "; odd upstream rows: " + "; ".join(odd[lang])
        rel = f"xwinograd/test/{lang}.jsonl.gz"
        digest = out.add(rel, jsonl_gz_bytes(rows, WINO_FIELDS))
        splits["test"][lang] = entry(rel, digest, len(rows), False, note)
    return {
        "hub_id": TASKS["xwinograd"].hub_id,
        "license": "Apache-2.0 (repository licence; the HF card says CC-BY-4.0; component datasets keep "
        "their terms)",
        "license_file": "LICENSE-xwinograd.txt",
        "source": source_str("xwinograd") + " (dataset.tsv)",
        "note": "Converted to the HF schema {sentence, option1, option2, answer ('1'/'2' string)} plus "
        "`source` (column 2 of dataset.tsv). All 3,961 rows align (tokens vs raw text, pronoun characters "
        "checked). zh has 16 rows, not the Hub's 504.",
        "splits": splits,
    }


# ------------------------------------------------------------------------------------------------- licences

LICENSES_MD = """# Licences and attribution of the packaged eval data

These files are generated by `scripts/package_data.py` from local copies of public upstream data (see
`manifest.json` for the exact repository and commit of every file, and the per-file notes). The data was
re-serialised (gzip-compressed JSON Lines in the Hugging Face schema of each task); changes are listed
below.

## Licences

- **xcopa**: CC BY 4.0, text in `LICENSE-xcopa.txt`. XCOPA (Ponti et al. 2020), {xcopa}.
- **xcopa `copa_en_question.json`**: BSD-2-Clause (English COPA, Roemmele et al. 2011; licence text not in
  the local copies, see below), via {copa_en}.
- **xnli**: **CC BY-NC 4.0 (non-commercial)**, text in `LICENSE-xnli.txt`. XNLI (Conneau et al. 2018), via
  {xnli}.
- **xstorycloze**: **CC BY-SA 4.0** (share-alike), see `LICENSE-xstorycloze.txt` and the note below.
  XStoryCloze (Lin et al. 2021, Meta AI), via {xstorycloze}.
- **xwinograd**: Apache-2.0, text in `LICENSE-xwinograd.txt`. XWINO (Tikhonov & Ryabinin 2021),
  {xwinograd}.

## Changes made (CC BY / CC BY-SA / CC BY-NC require indicating them)

- **xcopa**: values unchanged; split `val` renamed `validation`; re-serialised. `copa_en_question.json` is
  the English COPA `question` field aligned by `idx`.
- **xnli**: test ar de en es fr hi sw tr ur vi zh unchanged (third-party HF export). test bg el ru th are
  **derived**: XTREME-format text with the English labels by row (see `manifest.json`). validation: XTREME
  dev files, string labels mapped to 0/1/2, whitespace-stripped text.
- **xstorycloze**: columns renamed to the HF names, `answer_right_ending` stored as an int. The en files were
  built from English StoryCloze (Spring 2016, Mostafazadeh et al. 2016), also CC BY-SA 4.0 per the release
  README.
- **xwinograd**: converted from the raw 7-column `dataset.tsv` to `sentence` (pronoun replaced by `_`),
  `option1`, `option2`, `answer`, `source`. Component datasets keep their own terms: Winograd Schema
  Challenge (Levesque et al. 2012), SuperGLUE WSC, Definite Pronoun Resolution (Rahman & Ng 2012), French
  WSC (Amsili & Seminck 2017), Japanese WSC (Shibata et al. 2015), Russian RWSD, Chinese and Portuguese WSC
  translations.

## Notes

- `LICENSE-xstorycloze.txt` is the file shipped with the XStoryCloze release: an MIT text ("Copyright (c)
  Facebook, Inc. and its affiliates"), apparently the XGLM code licence. The release README states the data
  is CC BY-SA 4.0, "the same license as the original English StoryCloze"; treat the data as CC BY-SA 4.0.
- COPA (Choice of Plausible Alternatives, Roemmele, Bejan & Gordon 2011) is distributed under the BSD
  2-Clause licence; its licence text is not part of the local copies this package was built from
  (https://people.ict.usc.edu/~gordon/copa.html).
- The XNLI licence text comes from {xnli_license}.
- Citations: XCOPA (Ponti et al., EMNLP 2020); XNLI (Conneau et al., EMNLP 2018); XStoryCloze (Lin et al.,
  2021, arXiv:2112.10668); XWINO (Tikhonov & Ryabinin, Findings of ACL 2021); COPA (Roemmele et al., 2011).
"""


def build_licenses(shared: Path, out: Output) -> None:
    for name, rel in LICENSE_TEXTS.items():
        out.add(name, (shared / rel).read_bytes())
    text = LICENSES_MD.format(
        xcopa=source_str("xcopa"), copa_en=source_str("copa_en"), xnli=source_str("xnli"),
        xstorycloze=source_str("xstorycloze"), xwinograd=source_str("xwinograd"),
        xnli_license=" @ ".join(XNLI_LICENSE_COMMIT),
    )
    out.add("LICENSES.md", text.encode("utf-8"))


# ----------------------------------------------------------------------------------------------------- main

def build(shared: Path) -> Output:
    if not (shared / "README.md").is_file():
        fail(f"{shared}: not the shared data directory (no README.md)")
    check_sources(shared)
    out = Output()
    xcopa, extras = build_xcopa(shared, out)
    tasks = {
        "xcopa": xcopa,
        "xnli": build_xnli(shared, out),
        "xstorycloze": build_xstorycloze(shared, out),
        "xwinograd": build_xwinograd(shared, out),
    }
    if list(tasks) != list(TASKS):
        fail(f"internal: tasks {list(tasks)} != specs {list(TASKS)}")
    for name, task in tasks.items():
        spec = TASKS[name]
        if list(task["splits"]) != list(spec.splits):
            fail(f"{name}: splits {list(task['splits'])} != specs {list(spec.splits)}")
        for split, langs in task["splits"].items():
            if list(langs) != list(spec.languages):
                fail(f"{name}/{split}: languages {list(langs)} != specs {list(spec.languages)}")
    build_licenses(shared, out)
    manifest = {"format_version": FORMAT_VERSION, "tasks": tasks, "extras": extras}
    out.add("manifest.json", (json.dumps(manifest, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                    help=f"shared data dir (default {DEFAULT_SHARED})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output dir (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    try:
        out = build(args.shared.resolve())
    except (PackagingError, OSError, KeyError, ValueError) as exc:
        print(f"package_data: {exc}", file=sys.stderr)
        return 1
    target: Path = args.out
    if target.exists() and any(target.iterdir()) and not (target / "manifest.json").exists():
        print(f"package_data: {target} is not empty and has no manifest.json; refusing to overwrite",
              file=sys.stderr)
        return 1
    out.write(target)
    total = sum(len(b) for b in out.files.values())
    print(f"wrote {len(out.files)} files, {total:,} bytes ({total / 2**20:.2f} MiB) to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
