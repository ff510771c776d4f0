"""The normalised row of each training task type: the contract between packaged source data
(``harness/training/data``, written by ``scripts/package_train_data.py``) and the statement builders.

Every row is a JSON object with an ``id`` (unique within its source and language) plus the fields below.
Label names are English (as in the seed code); texts stay in their own language.
"""

from __future__ import annotations

#: task type -> required fields (besides ``id``) and their JSON types
ROW_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    # SIB-200: category in English (science/technology, travel, politics, sports, health, entertainment, geography)
    "topic": {"text": str, "category": str},
    # FLORES-200: one sentence per row, parallel across languages by ``id`` (same id = same sentence);
    # ``article`` groups sentences of one source article (its URL), for hard negatives
    "translation": {"text": str, "article": str},
    # XQuAD, TyDi QA GoldP: ``answers`` = gold answer strings (first is used), non-empty
    "extractive_qa": {"context": str, "question": str, "answers": list},
    # AM2iCo, MCL-WiC, WiC-ITA, WiC-Kazakh, XL-WiC: the target word as it appears in each context
    # (``word1`` in ``context1``, ``word2`` in ``context2``); ``label`` True = same meaning
    "wic": {"word1": str, "context1": str, "word2": str, "context2": str, "label": bool},
    # xSID: ``intent`` = the dataset's English intent name (e.g. "AddToPlaylist")
    "intent": {"text": str, "intent": str},
    # multilingual sentiments, AfriSenti, KazSAnDRA: label "positive" | "neutral" | "negative"
    "sentiment": {"text": str, "label": str},
    # EXAMS: ``answer`` = index into ``choices``
    "exam_qa": {"question": str, "choices": list, "answer": int},
    # Belebele: ``answer`` = index into ``choices``
    "reading_comprehension": {"passage": str, "question": str, "choices": list, "answer": int},
    # PAWS-X: ``label`` True = paraphrase
    "paraphrase": {"sentence1": str, "sentence2": str, "label": bool},
}

TASK_TYPES: tuple[str, ...] = tuple(ROW_FIELDS)


def check_row(task_type: str, row: dict[str, object], where: str) -> None:
    """Raise ValueError naming ``where`` (file/line) and the field when a row breaks the contract."""
    if not isinstance(row.get("id"), str) or not row["id"]:
        raise ValueError(f"{where}: field 'id' missing or not a non-empty string")
    for name, kind in ROW_FIELDS[task_type].items():
        value = row.get(name)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise ValueError(f"{where}: field {name!r} missing or not {getattr(kind, '__name__', kind)}")
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"{where}: field {name!r} is empty")
        if isinstance(value, list) and (not value or not all(isinstance(v, str) and v.strip() for v in value)):
            raise ValueError(f"{where}: field {name!r} must be a non-empty list of non-empty strings")
    if "answer" in ROW_FIELDS[task_type]:
        answer, choices = row["answer"], row["choices"]
        assert isinstance(answer, int) and isinstance(choices, list)  # checked above
        if not 0 <= answer < len(choices):
            raise ValueError(f"{where}: field 'answer' out of range for {len(choices)} choices")
