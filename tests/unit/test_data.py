"""companion.data: offline corpora and bundled datasets (no network)."""

from __future__ import annotations

import pytest
import torch

from companion.data import (
    digits,
    noisy_labels,
    parallel_passage,
    passage_scripts,
    python_docs,
    python_docs_paragraphs,
    stdlib_code,
)


def test_python_docs_is_real_english_prose():
    text = python_docs()
    assert len(text) > 400_000 and "the" in text.split()[:2000]
    assert python_docs(max_chars=100) == text[:100]


def test_paragraphs_respect_the_minimum_length():
    paragraphs = python_docs_paragraphs(min_chars=300)
    assert len(paragraphs) > 200 and all(len(p) > 0 and '\n' not in p for p in paragraphs)
    with pytest.raises(ValueError, match="min_chars"):
        python_docs_paragraphs(0)


def test_stdlib_code_is_python_source():
    code = stdlib_code(max_files=5)
    assert "def " in code and "import" in code
    with pytest.raises(ValueError, match="max_files"):
        stdlib_code(max_files=0)


def test_digits_split_is_standardized_on_train_only():
    (x_tr, y_tr), (x_va, y_va) = digits(seed=0)
    assert x_tr.shape[1] == 64 and len(x_tr) + len(x_va) == 1797
    assert x_tr.dtype == torch.float32 and y_tr.dtype == torch.long
    assert torch.allclose(x_tr.mean(0), torch.zeros(64), atol=1e-4)
    assert not torch.allclose(x_va.mean(0), torch.zeros(64), atol=1e-3)
    assert x_va.abs().max() < 100, "constant training pixels must not blow up validation features"
    (small, _), _ = digits(seed=0, n_train=100)
    assert len(small) == 100
    with pytest.raises(ValueError, match="n_train"):
        digits(n_train=5)
    with pytest.raises(ValueError, match="val_frac"):
        digits(val_frac=1.5)


def test_noisy_labels_flips_about_the_requested_fraction():
    y = torch.arange(10).repeat(1000)  # 10,000 labels
    noisy = noisy_labels(y, rate=0.3, n_classes=10, seed=0)
    changed = (noisy != y).float().mean().item()
    assert abs(changed - 0.3 * 0.9) < 0.02, "a flipped label lands on its own class 1 time in 10"
    assert torch.equal(noisy, noisy_labels(y, rate=0.3, n_classes=10, seed=0)), "seeded"
    assert torch.equal(noisy_labels(y, rate=0.0, n_classes=10), y)


def test_noisy_labels_rejects_bad_input():
    y = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="rate"):
        noisy_labels(y, rate=1.5, n_classes=3)
    with pytest.raises(ValueError, match="n_classes=2"):
        noisy_labels(y, rate=0.1, n_classes=2)
    with pytest.raises(ValueError, match="1-D long"):
        noisy_labels(y.float(), rate=0.1, n_classes=3)
    with pytest.raises(ValueError, match="n_classes must be an int >= 1"):
        noisy_labels(y, rate=0.1, n_classes=0)


def test_parallel_passage_holds_one_passage_per_language():
    texts = parallel_passage()
    assert list(texts)[0] == "English" and len(texts) >= 9
    assert set(texts) == set(passage_scripts()), "every language names its script"
    assert len(set(passage_scripts().values())) >= 8, "the point is many writing systems"
    for language, text in texts.items():
        assert text == text.strip() and 80 <= len(text) <= 600, language
        assert not any(c.isdigit() for c in text), f"{language}: numbers are spelled out, as in English"
    assert texts["English"].count(". ") == 4 and texts["English"].endswith(".")
    assert texts["Chinese"].count("。") == texts["Japanese"].count("。") == 5
    assert texts["English"].isascii() and not texts["German"].isascii(), "umlauts and ß are not ASCII"
    assert parallel_passage() == texts and parallel_passage() is not texts, "a fresh dict each call"


def test_parallel_passage_is_written_in_each_script():
    import unicodedata

    expected = {"Russian": "CYRILLIC", "Greek": "GREEK", "Arabic": "ARABIC", "Hindi": "DEVANAGARI",
                "Chinese": "CJK", "Korean": "HANGUL", "Thai": "THAI"}
    texts = parallel_passage()
    for language, script in expected.items():
        letters = [c for c in texts[language] if c.isalpha()]
        share = sum(unicodedata.name(c, "").startswith(script) for c in letters) / len(letters)
        assert share > 0.95, f"{language}: only {share:.0%} of letters are {script}"
    kana = [c for c in texts["Japanese"] if unicodedata.name(c, "").startswith(("HIRAGANA", "KATAKANA"))]
    assert len(kana) > 20
