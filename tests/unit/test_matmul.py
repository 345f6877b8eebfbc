"""companion.matmul: every rung of the ladder equals torch's product, on shapes that are not multiples
of the tiles; bad inputs get clear errors; the ladder reports one positive GFLOP/s per rung."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from companion import matmul as mm

SHAPES = [(1, 1, 1), (3, 5, 2), (37, 53, 29), (67, 130, 71)]  # (m, k, n): odd, prime, past one tile


def operands(m: int, k: int, n: int, dtype=np.float32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)


def reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (torch.from_numpy(a).double() @ torch.from_numpy(b).double()).numpy()


@pytest.mark.parametrize("name", list(mm.RUNGS))
@pytest.mark.parametrize("shape", SHAPES)
def test_every_rung_equals_torch(name, shape):
    a, b = operands(*shape)
    out = mm.RUNGS[name](a, b)
    assert out.shape == (shape[0], shape[2]) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference(a, b), rtol=1e-4, atol=1e-4 * math.sqrt(shape[1]))


@pytest.mark.parametrize("tile", [(2, 4, 4), (4, 16, 8), (64, 512, 128), (6, 7, 12)])
def test_tiled_is_exact_for_any_tile_and_in_float64(tile):
    a, b = operands(67, 130, 71, np.float64, seed=1)
    np.testing.assert_allclose(mm.matmul_numba_tiled(a, b, tile), reference(a, b), rtol=1e-12, atol=1e-11)


def test_tiled_with_two_threads_matches_one_thread():
    a, b = operands(130, 70, 300, seed=2)
    with mm.threads(1):
        one = mm.matmul_numba_tiled(a, b, (8, 64, 16))
    with mm.threads(2):
        two = mm.matmul_numba_tiled(a, b, (8, 64, 16))
    np.testing.assert_array_equal(one, two)  # row tiles are independent: same sums in the same order


def test_tiled_accepts_non_contiguous_inputs():
    a, b = operands(40, 30, 20, seed=3)
    np.testing.assert_allclose(mm.matmul_numba_tiled(b.T, a.T), reference(b.T.copy(), a.T.copy()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fn", list(mm.RUNGS.values()))
def test_bad_inputs_get_clear_errors(fn):
    a, b = operands(4, 5, 3)
    with pytest.raises(ValueError, match="a's columns must equal b's rows"):
        fn(a, a)
    with pytest.raises(ValueError, match="must be 2-D"):
        fn(a[0], b)
    with pytest.raises(ValueError, match="float32 or float64"):
        fn(a.astype(np.int64), b.astype(np.int64))
    with pytest.raises(ValueError, match="share a dtype"):
        fn(a, b.astype(np.float64))
    with pytest.raises(ValueError, match="numpy array"):
        fn(torch.from_numpy(a), b)


def test_bad_tiles_and_thread_counts():
    a, b = operands(4, 5, 3)
    for tile in [(3, 8, 8), (4, 8, 6), (0, 8, 8), (4, 8)]:
        with pytest.raises(ValueError, match="tile"):
            mm.matmul_numba_tiled(a, b, tile)
    for n in (0, 10_000, 1.5, True):
        with pytest.raises(ValueError, match="threads must be an int"):
            mm.threads(n)


def test_threads_restores_the_previous_counts():
    before = torch.get_num_threads()
    with mm.threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_ladder_reports_positive_finite_gflops_per_rung():
    rungs = mm.ladder(n=32, repeat=1, python_n=8)
    assert [r.name for r in rungs] == list(mm.RUNGS)
    assert {r.name: r.n for r in rungs}["Python loops"] == 8 and {r.name: r.n for r in rungs}["torch"] == 32
    for r in rungs:
        assert r.seconds > 0 and math.isfinite(r.gflops) and r.gflops > 0
        assert r.gflops == pytest.approx(2 * r.n**3 / r.seconds / 1e9)
    with pytest.raises(ValueError, match="n must be an int"):
        mm.ladder(n=0)
    with pytest.raises(ValueError, match="repeat"):
        mm.best_seconds(lambda: None, repeat=0)
