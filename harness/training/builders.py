"""Turn normalised source rows (``rows.py``) into balanced True/False training statements, one cell at a time.

A cell is one (task type, language): the rows of every source of that task type in that language are pooled and
shuffled with ``Random(f"{seed}/{task_type}/{language}")``, so adding a language or a task never changes another
cell. Each statement's template and negative are drawn with its own RNG seeded by the row (source, id, side), so a
row's statement does not depend on the pool order either. True statements take rows from the front of the shuffled
pool and False ones from the back: distinct examples while the pool holds both sides, each row once per side when
it does not. Every cell is exactly balanced (trimmed to the smaller side).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError
from harness.training.rows import TASK_TYPES
from harness.training.templates import TemplateFile

Row = Mapping[str, Any]
MAX_CHARS = 4000  # longer statements are skipped (the trainer truncates anyway; these would be mostly cut off)
_EDGE = " \t\n,.;:!?\"'«»“”„()[]{}،。，、：；！？"  # punctuation stripped from random spans


@dataclass(frozen=True)
class TrainStatement:
    text: str
    label: int  # 1 True, 0 False
    task_type: str
    source: str
    language: str
    template_id: str
    example_id: str
    template_language: str = "en"  # the template file used ("en" or the statement's language)


@dataclass(frozen=True)
class Entry:
    source: str
    row: Row


@dataclass(frozen=True)
class Cell:
    task_type: str
    language: str
    statements: tuple[TrainStatement, ...]
    per_side: int  # True statements (= False statements) built
    wanted: int  # per_task // 2
    capped: str | None  # why per_side < wanted, else None


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


class _Maker:
    """One task type's truth rule: which rows are usable, and the template slots of a True/False statement."""

    labelled = False  # True: a row's own label decides its side (wic, paraphrase)

    def __init__(self, entries: list[Entry], language: str, english: Mapping[str, Sequence[Row]]) -> None:
        self.language = language

    def usable(self, entry: Entry) -> bool:
        return True

    def slots(self, entry: Entry, truth: bool, rng: random.Random, file: TemplateFile) -> dict[str, str] | None:
        raise NotImplementedError


class _Classify(_Maker):
    """topic / intent / sentiment: False = another label of the source's label set in this language, uniformly."""

    def __init__(self, entries: list[Entry], language: str, english: Mapping[str, Sequence[Row]],
                 task_type: str, field: str) -> None:
        super().__init__(entries, language, english)
        self.task_type, self.field = task_type, field
        found: dict[str, set[str]] = {}
        for e in entries:
            found.setdefault(e.source, set()).add(e.row[field])
        self.label_sets = {source: sorted(labels) for source, labels in found.items()}

    def usable(self, entry: Entry) -> bool:
        return len(self.label_sets[entry.source]) > 1

    def slots(self, entry: Entry, truth: bool, rng: random.Random, file: TemplateFile) -> dict[str, str] | None:
        gold = entry.row[self.field]
        value = gold if truth else rng.choice([x for x in self.label_sets[entry.source] if x != gold])
        return {"text": entry.row["text"], self.field: file.label(self.task_type, value)}


class _Translation(_Maker):
    """English sentence + its translation (True) or another sentence of the target language (False): a
    neighbouring line of the same article, else another line of that article, else a random line."""

    def __init__(self, entries: list[Entry], language: str, english: Mapping[str, Sequence[Row]]) -> None:
        super().__init__(entries, language, english)
        if language == "en":
            raise UsageError("translation statements need a non-English target language, not 'en'")
        self.english = {(source, r["id"]): r["text"] for source, rows in english.items() for r in rows}
        self.articles: dict[tuple[str, str], list[Entry]] = {}
        self.position: dict[tuple[str, str], int] = {}
        self.by_source: dict[str, list[Entry]] = {}
        for e in entries:
            article = self.articles.setdefault((e.source, e.row["article"]), [])
            self.position[(e.source, e.row["id"])] = len(article)
            article.append(e)
            self.by_source.setdefault(e.source, []).append(e)

    def usable(self, entry: Entry) -> bool:
        return (entry.source, entry.row["id"]) in self.english

    def _negative(self, entry: Entry, rng: random.Random) -> str | None:
        gold = _norm(entry.row["text"])
        article = self.articles[(entry.source, entry.row["article"])]
        pos = self.position[(entry.source, entry.row["id"])]
        near = [article[i] for i in (pos - 1, pos + 1) if 0 <= i < len(article)]
        for candidates in (near, article):
            texts = [e.row["text"] for e in candidates if e is not entry and _norm(e.row["text"]) != gold]
            if texts:
                return str(rng.choice(texts))
        pool = self.by_source[entry.source]
        for _ in range(50):  # rejection sampling: a random line of the language (almost always differs)
            other = rng.choice(pool)
            if other is not entry and _norm(other.row["text"]) != gold:
                return str(other.row["text"])
        return None

    def slots(self, entry: Entry, truth: bool, rng: random.Random, file: TemplateFile) -> dict[str, str] | None:
        tgt = entry.row["text"] if truth else self._negative(entry, rng)
        if tgt is None:
            return None
        return {"src": self.english[(entry.source, entry.row["id"])], "tgt": tgt,
                "language": file.language_name(self.language)}


def random_span(context: str, answers: Sequence[str], rng: random.Random, tries: int = 20) -> str | None:
    """A span of ``context`` as long as the gold answer (words where the script spaces words, else characters)
    that neither equals, contains nor is contained in any gold answer."""
    gold = answers[0]
    words = context.split()
    spaced = len(words) >= 4 and len(context) / len(words) < 20
    golds = [_norm(a) for a in answers]
    for _ in range(tries):
        if spaced:
            n = min(max(1, len(gold.split())), len(words))
            start = rng.randrange(len(words) - n + 1)
            span = " ".join(words[start:start + n]).strip(_EDGE)
        else:
            n = min(max(1, len(gold.strip())), len(context))
            start = rng.randrange(len(context) - n + 1)
            span = context[start:start + n].strip(_EDGE)
        s = _norm(span)
        if s and not any(s in g or g in s for g in golds):
            return span
    return None


class _ExtractiveQA(_Maker):
    """True = first gold answer; False = another question's answer on the same context when it differs, else a
    random number 1-300 for an all-digit answer, else a random span of the context."""

    def __init__(self, entries: list[Entry], language: str, english: Mapping[str, Sequence[Row]]) -> None:
        super().__init__(entries, language, english)
        self.contexts: dict[tuple[str, str], list[Entry]] = {}
        for e in entries:
            self.contexts.setdefault((e.source, e.row["context"]), []).append(e)

    def _negative(self, entry: Entry, rng: random.Random) -> str | None:
        answers: list[str] = entry.row["answers"]
        golds = {_norm(a) for a in answers}
        others: list[str] = []
        for e in self.contexts[(entry.source, entry.row["context"])]:
            other = e.row["answers"][0]
            if e is not entry and _norm(other) not in golds and other not in others:
                others.append(other)
        if others:
            return rng.choice(others)
        gold = answers[0].strip()
        if gold.isdigit():
            return str(rng.choice([n for n in range(1, 301) if str(n) not in golds]))
        return random_span(entry.row["context"], answers, rng)

    def slots(self, entry: Entry, truth: bool, rng: random.Random, file: TemplateFile) -> dict[str, str] | None:
        answer = entry.row["answers"][0] if truth else self._negative(entry, rng)
        if answer is None:
            return None
        return {"context": entry.row["context"], "question": entry.row["question"], "answer": answer}


class _MultipleChoice(_Maker):
    """exam_qa / reading_comprehension: True = gold option, False = a random wrong option (distinct text)."""

    def _wrong(self, row: Row) -> list[str]:
        gold = _norm(row["choices"][row["answer"]])
        wrong: list[str] = []
        for c in row["choices"]:
            if _norm(c) != gold and c not in wrong:
                wrong.append(c)
        return wrong

    def usable(self, entry: Entry) -> bool:
        return bool(self._wrong(entry.row))

    def slots(self, entry: Entry, truth: bool, rng: random.Random, file: TemplateFile) -> dict[str, str] | None:
        row = entry.row
        answer = row["choices"][row["answer"]] if truth else rng.choice(self._wrong(row))
        out = {"question": row["question"], "answer": answer}
        if "passage" in row:
            out["passage"] = row["passage"]
        return out


class _Labelled(_Maker):
    """wic / paraphrase: the row's label is the statement's truth; True and False rows are drawn separately."""

    labelled = True

    def __init__(self, entries: list[Entry], language: str, english: Mapping[str, Sequence[Row]],
                 fields: tuple[str, ...]) -> None:
        super().__init__(entries, language, english)
        self.fields = fields

    def slots(self, entry: Entry, truth: bool, rng: random.Random, file: TemplateFile) -> dict[str, str] | None:
        return {f: entry.row[f] for f in self.fields}


def _maker(task_type: str, entries: list[Entry], language: str, english: Mapping[str, Sequence[Row]]) -> _Maker:
    if task_type in ("topic", "intent", "sentiment"):
        field = {"topic": "category", "intent": "intent", "sentiment": "label"}[task_type]
        return _Classify(entries, language, english, task_type, field)
    if task_type == "translation":
        return _Translation(entries, language, english)
    if task_type == "extractive_qa":
        return _ExtractiveQA(entries, language, english)
    if task_type in ("exam_qa", "reading_comprehension"):
        return _MultipleChoice(entries, language, english)
    if task_type == "wic":
        return _Labelled(entries, language, english, ("word1", "context1", "word2", "context2"))
    if task_type == "paraphrase":
        return _Labelled(entries, language, english, ("sentence1", "sentence2"))
    raise UsageError(f"unknown task type {task_type!r}; expected one of {', '.join(TASK_TYPES)}")


def build_cell(task_type: str, language: str, pools: Sequence[tuple[str, Sequence[Row]]], file: TemplateFile, *,
               per_task: int = 1500, seed: int = 0, english: Mapping[str, Sequence[Row]] | None = None) -> Cell:
    """Statements of one (task type, language) from ``pools`` = [(source, rows in that language)], pooled.

    ``english`` (translation only) maps a source to its English rows, matched to ``pools`` rows by id.
    """
    entries = [Entry(source, row) for source, rows in sorted(pools, key=lambda p: p[0]) for row in rows]
    maker = _maker(task_type, entries, language, english or {})
    usable = [e for e in entries if maker.usable(e)]
    rng = random.Random(f"{seed}/{task_type}/{language}")
    wanted = per_task // 2
    templates = file.task_types[task_type]

    skipped = 0

    def take(order: list[Entry], truth: bool) -> list[TrainStatement]:
        nonlocal skipped
        out: list[TrainStatement] = []
        for e in order:
            if len(out) == wanted:
                break
            srng = random.Random(f"{seed}/{task_type}/{language}/{e.source}/{e.row['id']}/{int(truth)}")
            slots = maker.slots(e, truth, srng, file)
            template = srng.choice(templates)
            text = template.text.format_map(slots) if slots is not None else None
            if text is None or len(text) > MAX_CHARS:
                skipped += 1
                continue
            out.append(TrainStatement(text, int(truth), task_type, e.source, language, template.id,
                                      str(e.row["id"]), file.language))
        return out

    if maker.labelled:
        pos, neg = [e for e in usable if e.row["label"]], [e for e in usable if not e.row["label"]]
        rng.shuffle(pos)
        rng.shuffle(neg)
        trues, falses = take(pos, True), take(neg, False)
        pool = f"{len(pos)} label-True and {len(neg)} label-False rows"
    else:
        order = list(usable)
        rng.shuffle(order)
        trues, falses = take(order, True), take(order[::-1], False)
        pool = f"{len(usable)} usable rows"
    n = min(len(trues), len(falses))
    statements = trues[:n] + falses[:n]
    rng.shuffle(statements)
    capped = None
    if n < wanted:
        capped = f"{n} per side < {wanted}: {pool}"
        if len(usable) < len(entries):
            capped += f", {len(entries) - len(usable)} of {len(entries)} rows unusable"
        if skipped:
            capped += f", {skipped} statements skipped (over {MAX_CHARS} chars or no negative)"
    return Cell(task_type, language, tuple(statements), n, wanted, capped)
