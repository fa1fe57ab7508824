"""Rank functions on complex, non-finite, empty and tiny-valued matrices: the right number or a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convbias.lowrank import layer_ranks, top_alignment
from convbias.rank import (
    effective_rank,
    numerical_rank,
    ranks,
    singular_values,
    stable_rank,
)


def frobenius_rank(W):
    return numerical_rank(W, relative_to="frobenius")


def _np_stable_rank(A: np.ndarray) -> float:
    s = np.linalg.svd(A, compute_uv=False)
    return float((s**2).sum() / s[0] ** 2)


def test_complex_input_keeps_the_imaginary_part():
    g = torch.Generator().manual_seed(0)
    A = torch.randn(6, 5, generator=g, dtype=torch.float64) + 1j * torch.randn(
        6, 5, generator=g, dtype=torch.float64
    )
    expected = np.linalg.svd(A.numpy(), compute_uv=False)
    assert np.allclose(singular_values(A).numpy(), expected)
    assert np.allclose(
        singular_values(A.to(torch.complex64)).numpy(), expected, rtol=1e-5
    )
    assert stable_rank(A).item() == pytest.approx(_np_stable_rank(A.numpy()))
    assert stable_rank(A.to(torch.complex64)).item() == pytest.approx(
        _np_stable_rank(A.numpy()), rel=1e-5
    )
    # a purely imaginary rank-one matrix: the real part alone would be the zero matrix
    B = 1j * torch.outer(torch.arange(1.0, 4.0), torch.ones(3)).to(torch.complex128)
    assert ranks(B)["numerical"].item() == 1 and stable_rank(B).item() == pytest.approx(
        1.0
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_entries_are_a_clear_error(bad):
    W = torch.eye(4)
    W[1, 2] = bad
    for fn in (
        stable_rank,
        effective_rank,
        numerical_rank,
        singular_values,
        ranks,
        frobenius_rank,
    ):
        with pytest.raises(ValueError, match="NaN or infinite"):
            fn(W)


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (3, 0, 4)])
def test_empty_matrices_have_rank_zero(shape):
    W = torch.zeros(shape)
    batch = shape[:-2]
    for value in (
        stable_rank(W, batch=True),
        effective_rank(W, batch=True),
        numerical_rank(W, batch=True),
        *ranks(W, batch=True).values(),
        numerical_rank(W, relative_to="frobenius", batch=True),
    ):
        assert tuple(value.shape) == batch and bool((value == 0).all())
    for value in (stable_rank(W), *ranks(W).values(), frobenius_rank(W)):
        assert tuple(value.shape) == () and value.item() == 0  # one (reshaped) matrix


def test_float64_tiny_values_get_the_stable_rank_of_scale_one():
    g = torch.Generator().manual_seed(1)
    A = torch.randn(8, 6, generator=g, dtype=torch.float64)
    ref = _np_stable_rank(A.numpy())
    for scale in (1e-170, 1e-300, 1e150):
        W = A * scale
        assert stable_rank(W).item() == pytest.approx(ref, rel=1e-10)
        assert ranks(W)["stable"].item() == pytest.approx(ref, rel=1e-10)
        assert ranks(W)["numerical"].item() == 6 and effective_rank(
            W
        ).item() == pytest.approx(effective_rank(A).item())
    params = {"w": (A * 1e-170)[None]}
    assert layer_ranks(params, ["w"])["srank"].item() == pytest.approx(ref, rel=1e-6)


def test_top_alignment_of_complex_layers():
    u = torch.tensor([1.0, 1j]).to(torch.complex128) / 2**0.5
    W1 = torch.outer(
        u, torch.tensor([1.0, 0.0], dtype=torch.complex128)
    )  # top left vector u
    W2 = torch.outer(
        torch.tensor([1.0, 0.0], dtype=torch.complex128), u.conj()
    )  # top right vector u
    assert top_alignment(W1, W2).item() == pytest.approx(1.0)
    v = (
        torch.tensor([1.0, -1j]).to(torch.complex128) / 2**0.5
    )  # orthogonal to u; same real part
    W3 = torch.outer(torch.tensor([1.0, 0.0], dtype=torch.complex128), v.conj())
    assert top_alignment(W1, W3).item() == pytest.approx(0.0, abs=1e-12)


def test_top_alignment_is_batched_over_stacked_members():
    """An ensemble's stacked weights (E, m, n): one alignment per member, as one by one."""
    g = torch.Generator().manual_seed(3)
    lower, upper = torch.randn(3, 6, 5, generator=g), torch.randn(3, 4, 6, generator=g)
    together = top_alignment(lower, upper)
    assert together.shape == (3,)
    for e in range(3):
        assert together[e].item() == pytest.approx(
            top_alignment(lower[e], upper[e]).item(), rel=1e-5
        )
