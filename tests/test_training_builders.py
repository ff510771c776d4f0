"""Training statements: builders (truth rules, balance, caps, seeds), mixture (presets, manifest, leakage guard,
extra statement files), translated templates, and the 90/10 split - on small fixture rows for every source."""

from __future__ import annotations

import json
import random
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.errors import DataError, UsageError
from harness.languages import LANGUAGE_SETS
from harness.training import sources
from harness.training.builders import TrainStatement, build_cell, random_span
from harness.training.mixture import (
    MixtureConfig,
    build_mixture,
    eval_overlap,
    read_statements,
    resolve_langs,
    split_statements,
    write_statements,
)
from harness.training.templates import PACKAGED_DIR, load_templates, parse_train_template_file

A_CHIP = "https://en.wikinews.org/wiki/Scientists_say_new_medical_diagnostic_chip_can_sort_cells_anywhere_with_an_inkjet"
A_JET = "https://en.wikinews.org/wiki/Fighter_jet_crashes_during_Children%27s_Day_airshow_in_Thailand"
A_VIDAL = "https://en.wikinews.org/wiki/Spanish_football:_Sevilla_signs_Aleix_Vidal_from_FC_Barcelona"


def _flores(texts: list[str]) -> list[dict[str, Any]]:
    articles = [A_CHIP, A_CHIP, A_JET, A_JET, A_JET, A_VIDAL]
    return [{"id": f"{i:04d}", "text": t, "article": a} for i, (t, a) in enumerate(zip(texts, articles, strict=True))]


# source -> task type, licence, non-commercial, {language: rows}
FIXTURE: dict[str, tuple[str, str, bool, dict[str, list[dict[str, Any]]]]] = {
    "sib200": ("topic", "CC BY-SA 4.0", False, {
        "ha": [
            {"id": "0001", "text": "Manyan masu bincike sun ce wannan na iya sa a gano ciwon daji da wuri.",
             "category": "health"},
            {"id": "0005", "text": "Vidal dan shekara 28 ya koma Barcelona a kakar wasanni ukun da suka wuce.",
             "category": "sports"},
            {"id": "0010", "text": "Jirgin ya fado a kan hanyar jirgi da misalin karfe 9:30 na safe.",
             "category": "travel"},
        ],
        "de": [
            {"id": "0001", "text": "Führende Forscher sagen, dies könnte die Früherkennung von Krebs fördern.",
             "category": "health"},
            {"id": "0005", "text": "Der 28-jährige Vidal war vor drei Spielzeiten von Sevilla zu Barça gekommen.",
             "category": "sports"},
            {"id": "0010", "text": "Der JAS 39C Gripen stürzte gegen 9:30 Uhr Ortszeit auf eine Startbahn.",
             "category": "travel"},
        ],
    }),
    "flores200": ("translation", "CC BY-SA 4.0", False, {
        "en": _flores([
            "On Monday, scientists announced the invention of a new diagnostic tool.",
            "Lead researchers say this may bring early detection of cancer.",
            "The JAS 39C Gripen crashed onto a runway at around 9:30 am local time.",
            "The pilot was identified as Squadron Leader Dilokrit Pattavee.",
            "Local media reports an airport fire vehicle rolled over while responding.",
            "28-year-old Vidal had joined Barça three seasons ago, from Sevilla.",
        ]),
        "de": _flores([
            "Am Montag gaben Wissenschaftler die Erfindung eines neuen Diagnosetools bekannt.",
            "Führende Forscher sagen, dies könnte die Früherkennung von Krebs fördern.",
            "Der JAS 39C Gripen stürzte gegen 9:30 Uhr Ortszeit auf eine Startbahn.",
            "Der Pilot wurde als Staffelführer Dilokrit Pattavee identifiziert.",
            "Lokale Medien berichten, dass ein Feuerwehrwagen während der Rettungsaktion umkippte.",
            "Der 28-jährige Vidal war vor drei Spielzeiten von Sevilla zu Barça gekommen.",
        ]),
        "ha": _flores([
            "A ranar Litinin, masana kimiyya sun sanar da kirkirar sabon kayan aikin bincike.",
            "Manyan masu bincike sun ce wannan na iya sa a gano ciwon daji da wuri.",
            "Jirgin JAS 39C Gripen ya fado a kan hanyar jirgi da misalin karfe 9:30 na safe.",
            "An gano cewa matukin jirgin shine Shugaban Rundunar Sojoji Dilokrit Pattavee.",
            "Kafofin watsa labarai na cikin gida sun ce wata motar kashe gobara ta tashi.",
            "Vidal dan shekara 28 ya koma Barcelona a kakar wasanni ukun da suka wuce.",
        ]),
    }),
    "xquad": ("extractive_qa", "CC BY-SA 4.0", False, {
        "de": [
            {"id": "56e1254ae3433e1400422c66", "question": "Welcher Artikel wurde 1937 veröffentlicht?",
             "context": "Seine religiösen Ansichten bleiben jedoch ungewiss. In seinem Artikel „A Machine to End War“, "
                        "der 1937 veröffentlicht wurde, sagte Tesla beispielsweise:",
             "answers": ["„A Machine to End War“"]},
            {"id": "56e1254ae3433e1400422c67", "question": "Wie lauten seine religiösen Ansichten?",
             "context": "Seine religiösen Ansichten bleiben jedoch ungewiss. In seinem Artikel „A Machine to End War“, "
                        "der 1937 veröffentlicht wurde, sagte Tesla beispielsweise:",
             "answers": ["ungewiss"]},
            {"id": "56e10aa5cd28a01900c674b3", "question": "Wie viele mögliche Nominierungen gab es 1915?",
             "context": "Weder Tesla noch Edison gewannen den Nobelpreis (obwohl Edison 1915 eine von 38 möglichen "
                        "Nominierungen erhielt).",
             "answers": ["38"]},
        ],
    }),
    "tydiqa_goldp": ("extractive_qa", "Apache-2.0", False, {
        "id": [
            {"id": "indonesian-7934824595644568581-30",
             "context": "Sampai tahun 2017, ITS memiliki 10 fakultas dengan 34 departemen.",
             "question": "Berapa jumlah fakultas di Institut Teknologi Sepuluh Nopember Surabaya?", "answers": ["10"]},
            {"id": "indonesian--4580157749161260649-16",
             "context": "UNICEF (United Nations Children Fund) adalah badan PBB yang mengurus perlindungan anak.",
             "question": "Apa nama badan PBB yang mengurus tentang perlindungan anak?", "answers": ["UNICEF"]},
        ],
    }),
    "am2ico": ("wic", "CC BY 4.0", False, {
        "de": [
            {"id": "dev-288", "word1": "Pizza",
             "context1": "Man kann die Burrata auch als Belag auf der Pizza genießen .",
             "word2": "food", "context2": "Tacos and Tortas are sold from open food stalls .", "label": False},
            {"id": "dev-301", "word1": "Blatt", "context1": "Im Herbst fällt das Blatt vom Baum .",
             "word2": "leaf", "context2": "A single leaf drifted down from the oak .", "label": True},
        ],
    }),
    "mcl_wic": ("wic", "CC BY-NC 4.0", True, {
        "fr": [
            {"id": "dev.fr-fr.999", "word1": "confine", "context1": "Une grande partie du parc confine avec la Suisse.",
             "word2": "confinent", "context2": "Les endroits suivants confinent à Wurmlingen.", "label": True},
            {"id": "test.fr-fr.548", "word1": "médiocre",
             "context1": "Le jeune Zénobe est un étudiant médiocre préférant le travail manuel.",
             "word2": "médiocre", "context2": "La qualité des images et du son est souvent médiocre.", "label": False},
        ],
    }),
    "wic_ita": ("wic", "none stated", False, {
        "it": [
            {"id": "dev-coppia.noun.8", "word1": "coppia", "context1": "Nella vita di coppia si è in due .",
             "word2": "coppia", "context2": "Pensano che i due fanno ormai coppia fissa .", "label": True},
            {"id": "train-così.adv.3", "word1": "Così", "context1": "Così ecco una Francesca Neri produttrice .",
             "word2": "così", "context2": "Come fate a rispondere ai messaggi così velocemente ?", "label": False},
        ],
    }),
    "wic_kazakh": ("wic", "none stated", False, {
        "kk": [
            {"id": "14", "word1": "үйіне", "context1": "Ол кешке үйіне келді.", "word2": "үй",
             "context2": "Жаңа үй өте әдемі.", "label": True},
            {"id": "200", "word1": "қал", "context1": "Менің бетімде қал көбірек.", "word2": "Қал",
             "context2": "Қал қалай?", "label": False},
        ],
    }),
    "xlwic": ("wic", "CC BY-NC 4.0", True, {
        "zh": [
            {"id": "valid-38", "word1": "少", "context1": "這本書少了兩頁。", "word2": "少",
             "context2": "米麵是一天不可少的。", "label": True},
            {"id": "valid-2802", "word1": "次", "context1": "這批貨要按等次來出售。", "word2": "次",
             "context2": "不能恭慎所任，恪居職次。", "label": False},
        ],
    }),
    "xsid": ("intent", "CC BY-SA 4.0", False, {
        "kk": [
            {"id": "test-001", "text": "барлық еске салғыштарды көрсет", "intent": "reminder/show_reminders"},
            {"id": "test-168", "text": "ертең Алматыда ауа райы қандай", "intent": "weather/find"},
            {"id": "test-460", "text": "кешкі асқа 9 орынды жалда", "intent": "BookRestaurant"},
        ],
    }),
    "multilingual_sentiments": ("sentiment", "Apache-2.0", True, {
        "de": [
            {"id": "test-107", "text": "Bestes Konzert des Jahres, danke @user!", "label": "positive"},
            {"id": "train-550", "text": "Morgen geht es um 9 Uhr los.", "label": "neutral"},
            {"id": "test-276", "text": "Der Akku hält keine zwei Stunden, totaler Mist.", "label": "negative"},
        ],
    }),
    "afrisenti": ("sentiment", "CC BY 4.0", False, {
        "ha": [
            {"id": "test-22", "text": "Allah ya saka da alheri, mun gode sosai", "label": "positive"},
            {"id": "test-3395", "text": "a ina kenan", "label": "neutral"},
            {"id": "test-4583", "text": "wallahi wannan abin takaici ne", "label": "negative"},
        ],
    }),
    "kazsandra": ("sentiment", "none stated", False, {
        "kk": [
            {"id": "fli000059fli", "text": "Кітап өте ұнады, тысы да қатты, маған ұнады", "label": "positive"},
            {"id": "pla084808pla", "text": "Жеткізу тым баяу болды, көңілім толмады", "label": "negative"},
        ],
    }),
    "exams": ("exam_qa", "CC BY-SA 4.0", False, {
        "tr": [
            {"id": "c2c36b8e-8d07-11ea-ae7d-54bef70b159e", "question": "Hangisinde İyonik bağı vardır:",
             "choices": ["CH 4", "N 2", "LiH", "SO 2"], "answer": 2},
            {"id": "c1a4d049-8d07-11ea-ae7d-54bef70b159e", "question": "Pitagora’ya göre doğanın özü nedir:",
             "choices": ["sayı.", "su.", "sevgi.", "ateş."], "answer": 0},
        ],
    }),
    "belebele_partial": ("reading_comprehension", "CC BY-SA 4.0", False, {
        "en": [
            {"id": f"{A_VIDAL}#2", "question": "How many games has Vidal played for Barça?",
             "passage": "28-year-old Vidal had joined Barça three seasons ago, from Sevilla. Since moving to the "
                        "Catalan-capital, Vidal had played 49 games for the club.",
             "choices": ["49", "39", "3", "29"], "answer": 0},
        ],
    }),
    "pawsx": ("paraphrase", "PAWS licence", False, {
        "es": [
            {"id": "dev-1732", "sentence1": "Dijo que Easipower era", "sentence2": "Se dice que Easipower era,",
             "label": True},
            {"id": "dev-704", "sentence1": "Fue Easipower quien dijo:", "sentence2": "Dijo que Easipower era",
             "label": False},
        ],
    }),
}


def _rows(source: str, lang: str) -> list[dict[str, Any]]:
    return FIXTURE[source][3][lang]


@pytest.fixture
def packaged(monkeypatch: pytest.MonkeyPatch) -> dict[str, tuple[str, str, bool, dict[str, list[dict[str, Any]]]]]:
    """Serve FIXTURE through the sources API; tests may add or change entries of the returned dict."""
    data = {name: (t, lic, nc, {lang: list(rows) for lang, rows in by_lang.items()})
            for name, (t, lic, nc, by_lang) in FIXTURE.items()}

    def list_sources() -> list[sources.TrainSource]:
        return [sources.TrainSource(name=name, task_type=t, license=lic, provenance=f"fixture/{name} @ 0000000",
                                    note="", non_commercial=nc, languages=tuple(sorted(by_lang)),
                                    rows={lang: len(rows) for lang, rows in by_lang.items()})
                for name, (t, lic, nc, by_lang) in sorted(data.items())]

    monkeypatch.setattr(sources, "list_sources", list_sources)
    monkeypatch.setattr(sources, "load_rows", lambda source, lang: [dict(r) for r in data[source][3][lang]])
    monkeypatch.setattr(sources, "data_checksums",
                        lambda pairs: {f"{s}/{lang}": f"sha-{s}-{lang}" for s, lang in pairs})
    return data


EN = load_templates("en").english


def _cell(task_type: str, lang: str, *source_names: str, per_task: int = 2, seed: int = 0) -> list[tuple[int, str]]:
    pools = [(name, _rows(name, lang)) for name in source_names]
    english = {name: _rows(name, "en") for name in source_names} if task_type == "translation" else None
    cell = build_cell(task_type, lang, pools, EN, per_task=per_task, seed=seed, english=english)
    return [(s.label, s.text) for s in cell.statements]


# ------------------------------------------------------------------------------------------ exact statements

EXACT: list[tuple[str, str, str, list[tuple[int, str]]]] = [
    ("topic", "ha", "sib200", [
        (0, '"Manyan masu bincike sun ce wannan na iya sa a gano ciwon daji da wuri." is about travel.'),
        (1, 'The topic of "Jirgin ya fado a kan hanyar jirgi da misalin karfe 9:30 na safe." is travel.'),
    ]),
    ("translation", "ha", "flores200", [
        (1, '"The JAS 39C Gripen crashed onto a runway at around 9:30 am local time." translates to "Jirgin JAS 39C '
            'Gripen ya fado a kan hanyar jirgi da misalin karfe 9:30 na safe." in Hausa.'),
        (0, '"Manyan masu bincike sun ce wannan na iya sa a gano ciwon daji da wuri." is a translation of "28-year-old '
            'Vidal had joined Barça three seasons ago, from Sevilla." into Hausa.'),
    ]),
    ("extractive_qa", "de", "xquad", [
        (0, '"Seine religiösen Ansichten bleiben jedoch ungewiss. In seinem Artikel „A Machine to End War“, der 1937 '
            'veröffentlicht wurde, sagte Tesla beispielsweise:"\nQ: "Welcher Artikel wurde 1937 veröffentlicht?"\n'
            'A: "ungewiss"'),
        (1, '"Weder Tesla noch Edison gewannen den Nobelpreis (obwohl Edison 1915 eine von 38 möglichen Nominierungen '
            'erhielt)."\nAccording to the passage above, the answer to "Wie viele mögliche Nominierungen gab es 1915?" '
            'is "38".'),
    ]),
    ("extractive_qa", "id", "tydiqa_goldp", [
        (0, 'Context: "Sampai tahun 2017, ITS memiliki 10 fakultas dengan 34 departemen."\nQuestion: "Berapa jumlah '
            'fakultas di Institut Teknologi Sepuluh Nopember Surabaya?"\nAnswer: "1"'),
        (1, '"UNICEF (United Nations Children Fund) adalah badan PBB yang mengurus perlindungan anak."\nAccording to '
            'the passage above, the answer to "Apa nama badan PBB yang mengurus tentang perlindungan anak?" is '
            '"UNICEF".'),
    ]),
    ("wic", "de", "am2ico", [
        (0, '"Pizza" in "Man kann die Burrata auch als Belag auf der Pizza genießen ." means the same as "food" in '
            '"Tacos and Tortas are sold from open food stalls .".'),
        (1, '"Blatt" in "Im Herbst fällt das Blatt vom Baum ." means the same as "leaf" in "A single leaf drifted down '
            'from the oak .".'),
    ]),
    ("wic", "fr", "mcl_wic", [
        (1, 'The word "confine" in "Une grande partie du parc confine avec la Suisse." has the same meaning as '
            '"confinent" in "Les endroits suivants confinent à Wurmlingen.".'),
        (0, '"médiocre" in "Le jeune Zénobe est un étudiant médiocre préférant le travail manuel." means the same as '
            '"médiocre" in "La qualité des images et du son est souvent médiocre.".'),
    ]),
    ("wic", "it", "wic_ita", [
        (0, 'The word "Così" in "Così ecco una Francesca Neri produttrice ." has the same meaning as "così" in "Come '
            'fate a rispondere ai messaggi così velocemente ?".'),
        (1, '"coppia" in "Nella vita di coppia si è in due ." means the same as "coppia" in "Pensano che i due fanno '
            'ormai coppia fissa .".'),
    ]),
    ("wic", "kk", "wic_kazakh", [
        (1, 'The word "үйіне" in "Ол кешке үйіне келді." has the same meaning as "үй" in "Жаңа үй өте әдемі.".'),
        (0, 'The word "қал" in "Менің бетімде қал көбірек." has the same meaning as "Қал" in "Қал қалай?".'),
    ]),
    ("wic", "zh", "xlwic", [
        (0, 'The word "次" in "這批貨要按等次來出售。" has the same meaning as "次" in "不能恭慎所任，恪居職次。".'),
        (1, '"少" in "這本書少了兩頁。" means the same as "少" in "米麵是一天不可少的。".'),
    ]),
    ("intent", "kk", "xsid", [
        (1, 'User: "кешкі асқа 9 орынды жалда". The best intent for the user query is "BookRestaurant".'),
        (0, 'User: "барлық еске салғыштарды көрсет". The best intent for the user query is "BookRestaurant".'),
    ]),
    ("sentiment", "de", "multilingual_sentiments", [
        (1, '"Bestes Konzert des Jahres, danke @user!" expresses a positive sentiment.'),
        (0, 'The sentiment in "Morgen geht es um 9 Uhr los." is negative.'),
    ]),
    ("sentiment", "ha", "afrisenti", [
        (0, 'The sentiment in "Allah ya saka da alheri, mun gode sosai" is negative.'),
        (1, '"a ina kenan" expresses a neutral sentiment.'),
    ]),
    ("sentiment", "kk", "kazsandra", [
        (0, '"Кітап өте ұнады, тысы да қатты, маған ұнады" expresses a negative sentiment.'),
        (1, '"Жеткізу тым баяу болды, көңілім толмады" expresses a negative sentiment.'),
    ]),
    ("exam_qa", "tr", "exams", [
        (0, '"Hangisinde İyonik bağı vardır:". Answer: "SO 2"'),
        (1, 'Q: "Pitagora’ya göre doğanın özü nedir:". A: "sayı."'),
    ]),
    ("reading_comprehension", "en", "belebele_partial", [
        (0, 'Passage: "28-year-old Vidal had joined Barça three seasons ago, from Sevilla. Since moving to the '
            'Catalan-capital, Vidal had played 49 games for the club."\nQuestion: "How many games has Vidal played for '
            'Barça?"\nAnswer: "3"'),
        (1, 'Passage: "28-year-old Vidal had joined Barça three seasons ago, from Sevilla. Since moving to the '
            'Catalan-capital, Vidal had played 49 games for the club."\nQuestion: "How many games has Vidal played for '
            'Barça?"\nAnswer: "49"'),
    ]),
    ("paraphrase", "es", "pawsx", [
        (1, '"Dijo que Easipower era" is a paraphrase of "Se dice que Easipower era,".'),
        (0, '"Fue Easipower quien dijo:" and "Dijo que Easipower era" mean the same thing.'),
    ]),
]


def test_exact_cases_cover_every_source() -> None:
    assert sorted(source for _, _, source, _ in EXACT) == sorted(FIXTURE)


@pytest.mark.parametrize(("task_type", "lang", "source", "expected"), EXACT, ids=[c[2] for c in EXACT])
def test_exact_statements_for_seed_0(task_type: str, lang: str, source: str, expected: list[tuple[int, str]]) -> None:
    assert _cell(task_type, lang, source) == expected


def test_statement_records_carry_provenance() -> None:
    cell = build_cell("intent", "kk", [("xsid", _rows("xsid", "kk"))], EN, per_task=2)
    assert cell.statements[0] == TrainStatement(
        text='User: "кешкі асқа 9 орынды жалда". The best intent for the user query is "BookRestaurant".', label=1,
        task_type="intent", source="xsid", language="kk", template_id="intent-2", example_id="test-460",
        template_language="en")
    assert (cell.per_side, cell.wanted, cell.capped) == (1, 1, None)


def test_labels_come_from_the_source_label_set() -> None:
    # KazSAnDRA is binary: its False statements never say "neutral"; AfriSenti (3-class) may
    for seed in range(20):
        kaz = build_cell("sentiment", "kk", [("kazsandra", _rows("kazsandra", "kk"))], EN, per_task=4, seed=seed)
        assert all("neutral" not in s.text for s in kaz.statements)
        topic = build_cell("topic", "ha", [("sib200", _rows("sib200", "ha"))], EN, per_task=6, seed=seed)
        gold = {r["id"]: r["category"] for r in _rows("sib200", "ha")}
        for s in topic.statements:
            named = s.text.rstrip(".").rsplit(" ", 1)[1]
            assert named in {"health", "sports", "travel"} and (named == gold[s.example_id]) == bool(s.label)


# ------------------------------------------------------------------------------------------ truth rules

def test_translation_negatives_come_from_the_same_article_neighbour() -> None:
    de, en = _rows("flores200", "de"), _rows("flores200", "en")
    for seed in range(10):
        cell = build_cell("translation", "de", [("flores200", de)], EN, per_task=12, seed=seed,
                          english={"flores200": en})
        assert cell.per_side == 6
        for s in cell.statements:
            i = int(s.example_id)
            assert en[i]["text"] in s.text and s.text.endswith(("in German.", "into German."))
            (tgt,) = [j for j, r in enumerate(de) if f'"{r["text"]}"' in s.text]
            if s.label:
                assert tgt == i
            elif de[i]["article"] == A_VIDAL:  # one-sentence article: a random line of another article
                assert de[tgt]["article"] != A_VIDAL
            else:
                assert de[tgt]["article"] == de[i]["article"] and abs(tgt - i) == 1


def test_translation_needs_a_non_english_target() -> None:
    with pytest.raises(UsageError, match="non-English target language"):
        build_cell("translation", "en", [("flores200", _rows("flores200", "en"))], EN,
                   english={"flores200": _rows("flores200", "en")})


def _false_answers(rows: list[dict[str, Any]], seed: int) -> dict[str, str]:
    cell = build_cell("extractive_qa", "xx", [("xquad", rows)], EN, per_task=2 * len(rows), seed=seed)
    out = {}
    for s in cell.statements:
        if not s.label:
            out[s.example_id] = s.text.rsplit('"', 2)[-2]
    return out


def test_qa_negative_is_another_answer_on_the_same_context() -> None:
    for seed in range(5):
        got = _false_answers(_rows("xquad", "de"), seed)
        assert got["56e1254ae3433e1400422c66"] == "ungewiss"
        assert got["56e1254ae3433e1400422c67"] == "„A Machine to End War“"


def test_qa_digit_answer_gets_a_random_number_else_a_random_span() -> None:
    ctx = "Sampai tahun 2017, ITS memiliki 10 fakultas dengan 34 departemen."
    rows = [  # same context, same answer: "another answer that differs" does not exist
        {"id": "q1", "context": ctx, "question": "Berapa jumlah fakultas ITS?", "answers": ["10"]},
        {"id": "q2", "context": ctx, "question": "Ada berapa fakultas di ITS?", "answers": ["10"]},
        {"id": "q3", "context": "UNICEF (United Nations Children Fund) adalah badan PBB yang mengurus anak.",
         "question": "Apa nama badan PBB yang mengurus anak?", "answers": ["UNICEF"]},
    ]
    numbers, spans = set(), set()
    for seed in range(30):
        got = _false_answers(rows, seed)
        for qid in ("q1", "q2"):
            assert got[qid].isdigit() and 1 <= int(got[qid]) <= 300 and got[qid] != "10"
            numbers.add(got[qid])
        assert got["q3"] in rows[2]["context"] and "unicef" not in got["q3"].casefold()
        assert len(got["q3"].split()) == 1  # as many words as the gold answer
        spans.add(got["q3"])
    assert len(numbers) > 10 and len(spans) > 3


def test_random_span_uses_characters_for_unspaced_scripts() -> None:
    context = "北京是中华人民共和国的首都，也是全国的政治和文化中心。"
    for seed in range(20):
        span = random_span(context, ["北京"], random.Random(seed))
        assert span is not None and span in context and len(span) <= 2 and "北京" not in span
    assert random_span("Paris", ["Paris"], random.Random(0)) is None


def test_multiple_choice_negative_is_a_wrong_option() -> None:
    rows = _rows("exams", "tr")
    for seed in range(10):
        cell = build_cell("exam_qa", "tr", [("exams", rows)], EN, per_task=4, seed=seed)
        by_id = {r["id"]: r for r in rows}
        for s in cell.statements:
            row = by_id[s.example_id]
            answer = s.text.rsplit('"', 2)[-2]
            assert answer in row["choices"] and (answer == row["choices"][row["answer"]]) == bool(s.label)


def test_statements_over_4000_chars_are_skipped() -> None:
    rows = [dict(r) for r in _rows("belebele_partial", "en")]
    rows.append({**rows[0], "id": "long", "passage": "Vidal " * 700})
    cell = build_cell("reading_comprehension", "en", [("belebele_partial", rows)], EN, per_task=4)
    assert {s.example_id for s in cell.statements} == {f"{A_VIDAL}#2"}
    assert cell.capped == "1 per side < 2: 2 usable rows, 2 statements skipped (over 4000 chars or no negative)"


# ------------------------------------------------------------------------------------------ balance, caps, seeds

def _topic_rows(n: int) -> list[dict[str, Any]]:
    cats = ["health", "sports", "travel", "politics"]
    return [{"id": f"{i:04d}", "text": f"Labari na {i} a cikin jaridar yau.", "category": cats[i % 4]}
            for i in range(n)]


def test_large_pool_uses_distinct_examples_per_side() -> None:
    cell = build_cell("topic", "ha", [("sib200", _topic_rows(40))], EN, per_task=20, seed=3)
    true_ids = [s.example_id for s in cell.statements if s.label]
    false_ids = [s.example_id for s in cell.statements if not s.label]
    assert len(true_ids) == len(false_ids) == 10 and not set(true_ids) & set(false_ids)
    assert cell.capped is None


def test_small_pool_is_capped_using_each_row_once_per_side() -> None:
    cell = build_cell("topic", "ha", [("sib200", _topic_rows(7))], EN, per_task=20, seed=3)
    true_ids = sorted(s.example_id for s in cell.statements if s.label)
    false_ids = sorted(s.example_id for s in cell.statements if not s.label)
    assert true_ids == false_ids == [f"{i:04d}" for i in range(7)]
    assert cell.capped == "7 per side < 10: 7 usable rows"


def test_pooled_sources_and_labelled_cap() -> None:
    rows = [dict(r, id=f"t{i}", label=True) for i, r in enumerate(_rows("wic_kazakh", "kk") * 3)]
    rows += [dict(_rows("wic_kazakh", "kk")[1], id=f"f{i}") for i in range(2)]
    pools = [("wic_kazakh", rows), ("am2ico", [dict(_rows("am2ico", "de")[0], id="a0")])]
    cell = build_cell("wic", "kk", pools, EN, per_task=20)
    assert Counter(s.label for s in cell.statements) == {1: 3, 0: 3}
    assert cell.capped == "3 per side < 10: 6 label-True and 3 label-False rows"
    assert {s.source for s in cell.statements if not s.label} == {"wic_kazakh", "am2ico"}
    assert all(s.example_id.startswith("t") for s in cell.statements if s.label)


def test_mixture_cells_are_balanced(packaged: dict[str, Any]) -> None:
    mixture = build_mixture(MixtureConfig(langs=("de", "ha", "kk"), per_task=4))
    cells = Counter((s.task_type, s.language, s.label) for s in mixture.statements)
    for (task_type, lang, label), n in cells.items():
        assert cells[(task_type, lang, 1 - label)] == n


def test_seed_determinism_and_language_independence(packaged: dict[str, Any]) -> None:
    one = build_mixture(MixtureConfig(langs=("de",), per_task=4, seed=7))
    two = build_mixture(MixtureConfig(langs=("de", "ha", "kk"), per_task=4, seed=7))
    again = build_mixture(MixtureConfig(langs=("de",), per_task=4, seed=7))
    other = build_mixture(MixtureConfig(langs=("de",), per_task=4, seed=8))
    assert one.statements == again.statements
    assert [s for s in two.statements if s.language == "de"] == list(one.statements)
    assert one.statements != other.statements


# ------------------------------------------------------------------------------------------ mixture + manifest

def test_manifest_counts_sources_and_caps(packaged: dict[str, Any]) -> None:
    mixture = build_mixture(MixtureConfig(langs=("de", "ha", "kk"), per_task=4))
    m = mixture.manifest
    two = {"false": 2, "true": 2}
    expected = {f"{cell}/{label}": n for cell, sides in {
        "extractive_qa/de": two, "intent/kk": two, "sentiment/de": two, "sentiment/ha": two, "sentiment/kk": two,
        "topic/de": two, "topic/ha": two, "translation/de": two, "translation/ha": two,
        "wic/de": {"false": 1, "true": 1}, "wic/kk": {"false": 1, "true": 1}}.items() for label, n in sides.items()}
    assert m["counts"] == expected
    assert m["totals"] == {"statements": 40, "true": 20, "false": 20} and len(mixture.statements) == 40
    assert m["per_source"] == {"afrisenti/ha": 4, "am2ico/de": 2, "flores200/de": 4, "flores200/ha": 4,
                               "kazsandra/kk": 4, "multilingual_sentiments/de": 4, "sib200/de": 4, "sib200/ha": 4,
                               "wic_kazakh/kk": 2, "xquad/de": 4, "xsid/kk": 4}
    assert m["capped"] == [
        {"task_type": "wic", "language": lang, "per_side": 1, "wanted": 2,
         "reason": "1 per side < 2: 1 label-True and 1 label-False rows"} for lang in ("de", "kk")]
    assert m["missing"]["translation"] == ["kk"] and m["missing"]["paraphrase"] == ["de", "ha", "kk"]
    assert m["non_commercial"] == ["multilingual_sentiments"]
    assert m["sources"]["kazsandra"] == {"task_type": "sentiment", "license": "none stated", "non_commercial": False,
                                         "provenance": "fixture/kazsandra @ 0000000"}
    assert "flores200/en" in m["data_checksums"] and m["data_checksums"]["xsid/kk"] == "sha-xsid-kk"
    assert m["config"]["languages"] == ["de", "ha", "kk"] and m["config"]["per_task"] == 4
    assert m["templates"]["files"] == {"en": EN.sha256} and len(m["templates_version"]) == 64
    assert m["eval_overlap"] == [] and m["extra_sources"] == []


def test_translation_switch_and_task_filter(packaged: dict[str, Any]) -> None:
    off = build_mixture(MixtureConfig(langs=("de", "ha"), per_task=4, translation=False))
    assert "translation" not in {s.task_type for s in off.statements}
    only = build_mixture(MixtureConfig(langs=("de", "ha"), per_task=4, task_types=("topic",)))
    assert {s.task_type for s in only.statements} == {"topic"}
    with pytest.raises(UsageError, match=r"^task type 'nli' unknown; expected one of topic, translation, "):
        build_mixture(MixtureConfig(langs=("de",), task_types=("nli",)))
    with pytest.raises(UsageError, match=r"^per_task 3: must be an even number >= 2"):
        build_mixture(MixtureConfig(langs=("de",), per_task=3))


# ------------------------------------------------------------------------------------------ languages

def test_presets_resolve_to_exact_language_lists() -> None:
    have = set(LANGUAGE_SETS["25"])
    assert resolve_langs("11", have) == (("ar", "de", "en", "es", "fr", "hi", "id", "ru", "tr", "vi", "zh"),
                                         ("ar", "de", "es", "fr", "hi", "id", "ru", "tr", "vi", "zh"))
    langs25 = ("af", "ar", "de", "en", "es", "fr", "ga", "gu", "ha", "hi", "id", "ig", "is", "it", "kk", "ky", "lo",
               "mt", "ny", "pt", "ru", "si", "tr", "vi", "zh")
    assert resolve_langs("25", have) == (langs25, tuple(c for c in langs25 if c != "en"))
    # English only for every task type, but translation statements into the other 24
    assert resolve_langs("en", have) == (("en",), tuple(c for c in langs25 if c != "en"))
    assert resolve_langs("de, ha,de", have) == (("de", "ha"), ("de", "ha"))
    assert resolve_langs(("en",), have) == (("en",), ())


def test_unknown_language_is_a_usage_error(packaged: dict[str, Any]) -> None:
    with pytest.raises(UsageError) as err:
        build_mixture(MixtureConfig(langs=("de", "xx")))
    assert str(err.value) == ("--langs: unknown language 'xx'; the training data has de, en, es, fr, ha, id, it, kk, "
                              "tr, zh")
    with pytest.raises(UsageError, match=r"^--langs '': no language given"):
        resolve_langs("", {"de"})


def test_preset_en_translates_into_the_other_24(packaged: dict[str, Any]) -> None:
    flores = packaged["flores200"][3]
    for lang in LANGUAGE_SETS["25"]:
        flores.setdefault(lang, [dict(r, text=f"[{lang}] {r['text']}") for r in flores["en"]])
    mixture = build_mixture(MixtureConfig(langs="en", per_task=2))
    langs = {(s.task_type, s.language) for s in mixture.statements}
    assert {lang for t, lang in langs if t == "translation"} == set(LANGUAGE_SETS["25"]) - {"en"}
    assert {lang for t, lang in langs if t != "translation"} == {"en"}


# ------------------------------------------------------------------------------------------ leakage guard

@pytest.mark.parametrize(("name", "hit"), [
    ("XCOPA", ("xcopa", "xcopa")), ("Balanced-COPA", ("balancedcopa", "xcopa")), ("b-copa", ("bcopa", "xcopa")),
    ("super_glue/copa", ("copa", "xcopa")), ("multi_nli", ("multinli", "xnli")), ("SNLI", ("snli", "xnli")),
    ("nyu-mll/MNLI", ("mnli", "xnli")), ("story_cloze", ("storycloze", "xstorycloze")),
    ("ROCStories", ("rocstories", "xstorycloze")), ("Muennighoff/xwinograd", ("xwinograd", "xwinograd")),
    ("WinoGrande", ("winogrande", "xwinograd")), ("super_glue/wsc273", ("wsc", "xwinograd")),
    ("mcl_wic", None), ("pawsx", None), ("flores200", None), ("copacabana reviews", None), ("xquad", None),
])
def test_eval_overlap_names(name: str, hit: tuple[str, str] | None) -> None:
    assert eval_overlap(name) == hit


def _add_nli_source(packaged: dict[str, Any]) -> None:
    packaged["multi_nli"] = ("paraphrase", "CC BY 3.0", False, {"es": [
        {"id": "m1", "sentence1": "El gato duerme.", "sentence2": "Un gato está durmiendo.", "label": True},
        {"id": "m2", "sentence1": "El gato duerme.", "sentence2": "El perro corre.", "label": False}]})


def test_packaged_eval_overlap_is_refused(packaged: dict[str, Any]) -> None:
    _add_nli_source(packaged)
    with pytest.raises(UsageError) as err:
        build_mixture(MixtureConfig(langs=("es",), per_task=2))
    assert str(err.value) == ("training source 'multi_nli' overlaps eval task 'xnli' (matches 'multinli' in "
                              "'multi_nli'); refused unless allow_eval_overlap (--allow-eval-overlap) is set")


def test_allowed_eval_overlap_is_recorded(packaged: dict[str, Any]) -> None:
    _add_nli_source(packaged)
    mixture = build_mixture(MixtureConfig(langs=("es",), per_task=2, allow_eval_overlap=True))
    assert mixture.manifest["eval_overlap"] == [{"source": "multi_nli", "eval_task": "xnli", "matched": "multinli"}]
    assert mixture.manifest["config"]["allow_eval_overlap"] is True
    assert {s.source for s in mixture.statements if s.task_type == "paraphrase"} == {"multi_nli", "pawsx"}


def _jsonl(path: Path, *objs: Any) -> Path:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o, ensure_ascii=False)) + "\n" for o in objs),
                    encoding="utf-8")
    return path


GOOD = {"text": "Le chat dort sur le canapé.", "label": 1, "source": "my_captions", "language": "fr",
        "task_type": "captioning"}


def test_extra_source_with_eval_origin_is_refused_then_recorded(packaged: dict[str, Any], tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "mine.jsonl", GOOD, {**GOOD, "label": 0, "origin": "super_glue/copa"})
    with pytest.raises(UsageError) as err:
        build_mixture(MixtureConfig(langs=("de",), per_task=2, extra_sources=(str(path),)))
    assert str(err.value) == ("training source 'my_captions' overlaps eval task 'xcopa' (matches 'copa' in "
                              "'super_glue/copa'); refused unless allow_eval_overlap (--allow-eval-overlap) is set")
    mixture = build_mixture(MixtureConfig(langs=("de",), per_task=2, extra_sources=(str(path),),
                                          allow_eval_overlap=True))
    assert mixture.manifest["eval_overlap"] == [{"source": "my_captions", "eval_task": "xcopa", "matched": "copa"}]


# ------------------------------------------------------------------------------------------ extra statement files

def test_extra_statements_are_added_and_counted(packaged: dict[str, Any], tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "mine.jsonl", GOOD, "", {**GOOD, "label": 0, "text": "Le chat aboie.",
                                                     "example_id": "cat-2"})
    mixture = build_mixture(MixtureConfig(langs=("de",), per_task=2, extra_sources=(str(path),)))
    extra = [s for s in mixture.statements if s.source == "my_captions"]
    assert extra == [
        TrainStatement("Le chat dort sur le canapé.", 1, "captioning", "my_captions", "fr", "extra", "mine:1", "en"),
        TrainStatement("Le chat aboie.", 0, "captioning", "my_captions", "fr", "extra", "cat-2", "en")]
    assert mixture.manifest["counts"]["captioning/fr/true"] == 1
    assert mixture.manifest["extra_sources"][0]["path"] == str(path)


@pytest.mark.parametrize(("lines", "message"), [
    ([GOOD, "{not json"], "{path}:2: invalid JSON (Expecting property name enclosed in double quotes)"),
    ([{**GOOD, "label": 2}], "{path}:1: field 'label' must be 0 or 1, got 2"),
    ([{**GOOD, "label": True}], "{path}:1: field 'label' must be 0 or 1, got True"),
    ([{**GOOD, "text": ""}], "{path}:1: field 'text' missing or not a non-empty string"),
    ([{k: v for k, v in GOOD.items() if k != "language"}],
     "{path}:1: field 'language' missing or not a non-empty string"),
    (["[1, 2]"], "{path}:1: expected a JSON object"),
    ([{**GOOD, "origin": 3}], "{path}:1: field 'origin' must be a string"),
    ([""], "{path}: no statements"),
])
def test_extra_statement_file_errors(packaged: dict[str, Any], tmp_path: Path, lines: list[Any], message: str) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(DataError) as err:
        build_mixture(MixtureConfig(langs=("de",), per_task=2, extra_sources=(str(path),)))
    assert str(err.value) == message.format(path=path)


def test_missing_extra_statement_file(packaged: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(UsageError) as err:
        build_mixture(MixtureConfig(langs=("de",), extra_sources=(str(tmp_path / "nope.jsonl"),)))
    assert str(err.value) == f"extra source {tmp_path / 'nope.jsonl'}: no such file"


# ------------------------------------------------------------------------------------------ translated templates

DE_YAML = """language: de
version: 1
labels: {topic: {health: Gesundheit, sports: Sport, travel: Reisen}}
language_names: {de: Deutsch}
task_types:
  topic:
    templates:
      - {id: topic-1, text: 'Das Thema von "{text}" ist {category}.'}
      - {id: topic-2, text: '"{text}" handelt von {category}.'}
  translation:
    templates:
      - {id: translation-1, text: '"{src}" wird auf {language} als "{tgt}" übersetzt.'}
      - {id: translation-2, text: '"{tgt}" ist eine Übersetzung von "{src}" ins {language}.'}
"""


@pytest.fixture
def template_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "templates"
    directory.mkdir()
    shutil.copy(PACKAGED_DIR / "en.yaml", directory / "en.yaml")
    (directory / "de.yaml").write_text(DE_YAML, encoding="utf-8")
    monkeypatch.setattr("harness.training.templates.PACKAGED_DIR", directory)
    return directory


def test_translated_templates_with_fallback_to_english(packaged: dict[str, Any], template_dir: Path) -> None:
    cfg = MixtureConfig(langs=("de", "ha"), per_task=6, task_types=("topic", "translation", "sentiment"),
                        template_language="translated")
    mixture = build_mixture(cfg)
    used = {(s.task_type, s.language): {x.template_language for x in mixture.statements
                                        if (x.task_type, x.language) == (s.task_type, s.language)}
            for s in mixture.statements}
    assert used == {("topic", "de"): {"de"}, ("translation", "de"): {"de"},  # de.yaml
                    ("sentiment", "de"): {"en"},  # de.yaml has no sentiment templates
                    ("topic", "ha"): {"en"}, ("translation", "ha"): {"en"}, ("sentiment", "ha"): {"en"}}  # no ha.yaml
    de_topic = [s.text for s in mixture.statements if (s.task_type, s.language) == ("topic", "de")]
    assert all(t.endswith(("Gesundheit.", "Sport.", "Reisen.")) for t in de_topic)
    assert any(t.startswith("Das Thema von") for t in de_topic)
    assert all(" Deutsch" in s.text for s in mixture.statements if (s.task_type, s.language) == ("translation", "de"))
    assert set(mixture.manifest["templates"]["files"]) == {"en", "de"}
    english = build_mixture(MixtureConfig(langs=("de", "ha"), per_task=6, task_types=("topic",)))
    assert english.manifest["templates_version"] != mixture.manifest["templates_version"]
    assert {s.template_language for s in english.statements} == {"en"}


def test_translated_template_placeholders_must_match_english(template_dir: Path) -> None:
    path = template_dir / "de.yaml"
    path.write_text(DE_YAML.replace('"{text}" handelt', '"{txt}" handelt'), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_templates("translated", ("de",))
    assert str(err.value) == (f"template file {path}: template 'topic-2' placeholders ['category', 'txt'] differ "
                              "from English ['category', 'text']")
    path.write_text(DE_YAML.replace("topic-2", "topic-9"), encoding="utf-8")
    with pytest.raises(DataError, match=r"template 'topic-9' is not an English topic id$"):
        load_templates("translated", ("de",))
    assert load_templates("en", ("de",)).translated == {}  # English mode never reads translations


def test_flat_label_maps_apply_to_every_task_type(template_dir: Path) -> None:
    path = template_dir / "de.yaml"
    path.write_text(DE_YAML.replace("labels: {topic: {health: Gesundheit, sports: Sport, travel: Reisen}}",
                                    "labels: {health: Gesundheit, positive: positiv}"), encoding="utf-8")
    de = load_templates("translated", ("de",)).translated["de"]
    assert (de.label("topic", "health"), de.label("sentiment", "positive"), de.label("topic", "travel")) == (
        "Gesundheit", "positiv", "travel")
    assert (de.language_name("de"), de.language_name("ha"), EN.language_name("ny")) == ("Deutsch", "Hausa", "Chichewa")
    path.write_text(DE_YAML.replace("labels: {topic:", "labels: {topics:"), encoding="utf-8")
    with pytest.raises(DataError, match=r"de.yaml: `labels:` must map label names \(or task types"):
        load_templates("translated", ("de",))


def test_english_file_needs_two_templates_per_task_type(tmp_path: Path) -> None:
    text = (PACKAGED_DIR / "en.yaml").read_text(encoding="utf-8")
    path = tmp_path / "en.yaml"
    path.write_text(text.replace("      - {id: topic-2, text: '\"{text}\" is about {category}.'}\n", "")
                    .replace("      - {id: topic-3, text: 'Text: \"{text}\" Topic: {category}.'}\n", ""),
                    encoding="utf-8")
    with pytest.raises(DataError) as err:
        parse_train_template_file(path)
    assert str(err.value) == f"template file {path}: task type 'topic' needs at least 2 templates"
    path.write_text(text.replace("  paraphrase:", "  paraphrase_x:"), encoding="utf-8")
    with pytest.raises(DataError, match=r"unknown task type 'paraphrase_x'$"):
        parse_train_template_file(path)


def test_packaged_english_templates_are_valid() -> None:
    assert set(EN.task_types) == set(FIXTURE_TASKS) and all(len(t) >= 2 for t in EN.task_types.values())
    for lang_file in sorted(PACKAGED_DIR.glob("*.yaml")):
        if lang_file.stem != "en":
            parse_train_template_file(lang_file, EN)  # translated copies (written separately) must validate


FIXTURE_TASKS = {task for task, _, _, _ in FIXTURE.values()}


# ------------------------------------------------------------------------------------------ split, files

def _synthetic(n: int) -> list[TrainStatement]:
    return [TrainStatement(f"{task} {lang} {i}", label, task, "src", lang, "t", f"{i}")
            for task in ("topic", "wic") for lang in ("de", "ha") for label in (1, 0) for i in range(n)]


def test_split_is_90_10_stratified_and_deterministic() -> None:
    statements = _synthetic(50)
    random.Random(0).shuffle(statements)
    train, held = split_statements(statements, holdout=0.1, seed=1)
    assert Counter((s.task_type, s.language, s.label) for s in held) == {
        (t, lang, label): 5 for t in ("topic", "wic") for lang in ("de", "ha") for label in (1, 0)}
    assert len(train) == 360 and not set(train) & set(held)
    assert [s for s in statements if s in set(held)] == held  # order kept
    assert split_statements(statements, holdout=0.1, seed=1) == (train, held)
    assert split_statements(statements, holdout=0.1, seed=2)[1] != held
    assert split_statements(statements, holdout=0.0) == (statements, [])
    with pytest.raises(UsageError, match=r"^holdout 1.0: must be in \[0, 1\)$"):
        split_statements(statements, holdout=1.0)


def test_write_and_read_statements(packaged: dict[str, Any], tmp_path: Path) -> None:
    mixture = build_mixture(MixtureConfig(langs=("de", "kk"), per_task=4))
    out = write_statements(mixture, tmp_path / "mix")
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "statements.jsonl"]
    back = read_statements(out)
    assert back.statements == mixture.statements
    assert back.manifest == json.loads(json.dumps(mixture.manifest))
    lines = (out / "statements.jsonl").read_text(encoding="utf-8").splitlines()
    (out / "statements.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_statements(out)
    assert str(err.value) == (f"{out / 'statements.jsonl'}: {len(lines) - 1} statements, manifest.json says "
                              f"{len(lines)}")
    with pytest.raises(DataError, match=r"manifest.json: no such file \(not a statements directory\)$"):
        read_statements(tmp_path)
