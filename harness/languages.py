"""The languages of Statement-Tuning's training mixture: ISO 639-1 code, English name, FLORES-200 code.

One registry for the package and the packaging scripts (scripts/train_data), so the 25-language list and the
English names exist once. Eval languages belong to their task files.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    code: str  # ISO 639-1
    english_name: str  # {language} in translation statements with English templates
    flores: str  # FLORES-200 code (Simplified Chinese for zh, Standard Arabic for ar)


LANGUAGES: tuple[Language, ...] = (
    Language("af", "Afrikaans", "afr_Latn"), Language("ar", "Arabic", "arb_Arab"),
    Language("de", "German", "deu_Latn"), Language("en", "English", "eng_Latn"),
    Language("es", "Spanish", "spa_Latn"), Language("fr", "French", "fra_Latn"),
    Language("ga", "Irish", "gle_Latn"), Language("gu", "Gujarati", "guj_Gujr"),
    Language("ha", "Hausa", "hau_Latn"), Language("hi", "Hindi", "hin_Deva"),
    Language("id", "Indonesian", "ind_Latn"), Language("ig", "Igbo", "ibo_Latn"),
    Language("is", "Icelandic", "isl_Latn"), Language("it", "Italian", "ita_Latn"),
    Language("kk", "Kazakh", "kaz_Cyrl"), Language("ky", "Kyrgyz", "kir_Cyrl"),
    Language("lo", "Lao", "lao_Laoo"), Language("mt", "Maltese", "mlt_Latn"),
    Language("ny", "Chichewa", "nya_Latn"), Language("pt", "Portuguese", "por_Latn"),
    Language("ru", "Russian", "rus_Cyrl"), Language("si", "Sinhala", "sin_Sinh"),
    Language("tr", "Turkish", "tur_Latn"), Language("vi", "Vietnamese", "vie_Latn"),
    Language("zh", "Chinese", "zho_Hans"),
)

#: the 25 training languages, in code order
TRAINING_LANGUAGES: tuple[str, ...] = tuple(lang.code for lang in LANGUAGES)
ENGLISH_NAMES: dict[str, str] = {lang.code: lang.english_name for lang in LANGUAGES}
FLORES_TO_ISO: dict[str, str] = {lang.flores: lang.code for lang in LANGUAGES}

#: named language sets of the training mixture (`bench train --langs en|11|25`); "en" still translates English
#: into the other 24 (see harness.training.mixture)
LANGUAGE_SETS: dict[str, tuple[str, ...]] = {
    "en": ("en",),
    "11": ("ar", "de", "en", "es", "fr", "hi", "id", "ru", "tr", "vi", "zh"),
    "25": TRAINING_LANGUAGES,
}
