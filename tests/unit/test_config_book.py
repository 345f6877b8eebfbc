"""companion.config and companion.book: SMOKE default, seeding, device, glue and check."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from companion import book, config


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("ON", True), ("0", False), ("", False), ("no", False)])
def test_smoke_default_reads_the_environment(value, expected):
    assert config.smoke_default({"COMPANION_SMOKE": value}) is expected


def test_smoke_default_is_off_when_unset():
    assert config.smoke_default({}) is False


def test_smoke_default_rejects_garbage():
    with pytest.raises(ValueError, match="COMPANION_SMOKE='maybe'"):
        config.smoke_default({"COMPANION_SMOKE": "maybe"})


def test_pick_chooses_by_mode_and_rejects_non_bool():
    assert config.pick(True, 1, 2) == 1 and config.pick(False, 1, 2) == 2
    with pytest.raises(TypeError, match="smoke must be a bool"):
        config.pick("yes", 1, 2)


def test_seed_everything_makes_runs_repeatable():
    config.seed_everything(7)
    a = (torch.rand(3), np.random.rand(3))
    config.seed_everything(7)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        config.seed_everything(-1)


def test_device_prefers_cuda_only_when_present():
    assert config.device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert config.device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="prefer must be"):
        config.device("tpu")


def test_cache_dir_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_CACHE", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()


def test_glue_records_python_numbers():
    value = book.glue("unit_test_value", np.float32(1.5))
    assert value == 1.5 and isinstance(book.GLUED["unit_test_value"], float)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_glue_refuses_non_finite_numbers(bad):
    with pytest.raises(ValueError, match="non-finite"):
        book.glue("x", bad)


def test_glue_refuses_bad_names():
    with pytest.raises(ValueError, match="identifier-like"):
        book.glue("not a name", 1)


def test_check_verdicts():
    assert bool(book.check(3.001, 3.0)) is True
    assert bool(book.check(4.0, 3.0)) is False
    unanswered = book.check(..., 3.0)
    assert not unanswered and "Not answered yet" in repr(unanswered)
    assert "Not quite: got 4.0" in repr(book.check(4.0, 3.0))
    assert book.check("adam", "adam") and not book.check("adam", "sgd")
    with pytest.raises(ValueError, match="rel_tol"):
        book.check(1, 1, rel_tol=-1)
