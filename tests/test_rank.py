import math

import pytest
import torch

from convbias.rank import (
    as_matrix,
    effective_rank,
    numerical_rank,
    singular_values,
    stable_rank,
)


def matrix_with_spectrum(s, m=None, n=None, seed=0):
    """U diag(s) V^T with random orthonormal U, V."""
    g = torch.Generator().manual_seed(seed)
    s = torch.as_tensor(s, dtype=torch.float64)
    k = len(s)
    m, n = m or k + 3, n or k + 5
    U, _ = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    return U @ torch.diag(s) @ V.T


def test_stable_rank_of_identity_is_dimension():
    assert stable_rank(torch.eye(7)).item() == pytest.approx(7.0)


def test_stable_rank_matches_formula():
    W = matrix_with_spectrum([3.0, 2.0, 1.0])
    assert stable_rank(W).item() == pytest.approx((9 + 4 + 1) / 9)


def test_effective_rank_of_flat_spectrum_is_its_length():
    assert effective_rank(matrix_with_spectrum([2.0] * 5)).item() == pytest.approx(5.0)


def test_effective_rank_matches_entropy_formula():
    s = torch.tensor([4.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    p = s / s.sum()
    expected = math.exp(-(p * p.log()).sum().item())
    assert effective_rank(matrix_with_spectrum(s)).item() == pytest.approx(
        expected, rel=1e-9
    )


@pytest.mark.parametrize("r", [1, 3, 10])
def test_numerical_rank_of_random_rank_r_matrix(r):
    g = torch.Generator().manual_seed(r)
    W = torch.randn(40, r, generator=g) @ torch.randn(r, 30, generator=g)
    assert numerical_rank(W).item() == r


def test_numerical_rank_tolerance_is_relative():
    W = matrix_with_spectrum([1.0, 1e-2, 1e-4])
    assert numerical_rank(W, rtol=1e-3).item() == 2
    assert numerical_rank(W, rtol=1e-5).item() == 3
    assert numerical_rank(1e6 * W, rtol=1e-3).item() == 2  # scale does not matter


def test_ranks_are_zero_for_zero_matrix():
    Z = torch.zeros(4, 6)
    assert (
        stable_rank(Z).item() == 0
        and effective_rank(Z).item() == 0
        and numerical_rank(Z).item() == 0
    )


def test_batches_give_one_value_per_matrix():
    batch = torch.stack(
        [
            matrix_with_spectrum([1.0] * k + [0.0] * (4 - k), 6, 7, seed=k)
            for k in (1, 2, 3, 4)
        ]
    )
    batch = batch.reshape(2, 2, 6, 7)
    assert numerical_rank(batch, batch=True).shape == (2, 2)
    assert numerical_rank(batch, batch=True).flatten().tolist() == [1, 2, 3, 4]
    assert torch.allclose(
        stable_rank(batch, batch=True).flatten(),
        torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64),
    )
    assert effective_rank(batch, batch=True).shape == (2, 2)
    assert singular_values(batch, batch=True).shape == (2, 2, 6)


def test_a_conv_weight_is_one_matrix_unless_a_batch_is_asked_for():
    g = torch.Generator().manual_seed(0)
    # rank 2 as a layer (out x in*kh*kw), but each 3 x 3 kernel is a full-rank matrix
    W = (torch.randn(48, 2, generator=g) @ torch.randn(2, 3 * 9, generator=g)).reshape(
        48, 3, 3, 3
    )
    conv = torch.nn.Conv2d(3, 48, 3)
    with torch.no_grad():
        conv.weight.copy_(W)
    for weight in (W, conv.weight):
        assert numerical_rank(weight).shape == () and numerical_rank(weight).item() == 2
        assert stable_rank(weight).item() == pytest.approx(
            stable_rank(as_matrix(weight)).item(), rel=1e-12
        )
        assert effective_rank(weight).item() == pytest.approx(
            effective_rank(as_matrix(weight)).item(), rel=1e-12
        )
        assert singular_values(weight).shape == (27,)
    from convbias.rank import ranks

    assert {k: v.shape for k, v in ranks(W).items()} == dict.fromkeys(
        ("stable", "effective", "numerical"), ()
    )
    per_kernel = stable_rank(W, batch=True)  # asked for: one value per 3 x 3 kernel
    assert per_kernel.shape == (48, 3)
    assert numerical_rank(torch.randn(5, 4, 7), batch=True).shape == (5,)
    assert numerical_rank(torch.randn(5, 4, 7)).item() == 5  # a Conv1d weight (5, 4*7)


def test_as_matrix_reshapes_conv_weights():
    W = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    M = as_matrix(W)
    assert M.shape == (2, 60)
    assert torch.equal(M[1], W[1].flatten())
    assert as_matrix(torch.ones(3, 4)).shape == (3, 4)
    assert as_matrix(torch.ones(3, 4, 5)).shape == (3, 20)  # Conv1d weight


def test_conv_weight_rank_via_as_matrix():
    g = torch.Generator().manual_seed(0)
    W = (torch.randn(16, 2, generator=g) @ torch.randn(2, 3 * 9, generator=g)).reshape(
        16, 3, 3, 3
    )
    assert numerical_rank(as_matrix(W)).item() == 2


def test_integer_input_is_accepted():
    assert numerical_rank(torch.eye(3, dtype=torch.int64)).item() == 3


@pytest.mark.parametrize("bad", [torch.ones(3), torch.tensor(2.0)])
def test_vectors_are_rejected(bad):
    with pytest.raises(ValueError):
        stable_rank(bad)
    with pytest.raises(ValueError):
        as_matrix(bad)


def test_bad_rtol_is_rejected():
    with pytest.raises(ValueError, match="rtol"):
        numerical_rank(torch.eye(3), rtol=2.0)


@pytest.mark.parametrize("shape", [(3, 8, 20), (3, 20, 8), (2, 2, 5, 5)])
def test_stable_rank_equals_singular_value_formula(shape):
    W = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    s = torch.linalg.svdvals(W.double())
    torch.testing.assert_close(
        stable_rank(W, batch=True), (s**2).sum(-1) / s[..., 0] ** 2, rtol=1e-10, atol=0
    )
    assert stable_rank(
        torch.outer(torch.ones(4), torch.arange(5.0))
    ).item() == pytest.approx(1.0)


def test_stable_rank_from_gram_matches_blockwise_accumulation():
    from convbias.rank import stable_rank_from_gram

    W = torch.randn(
        90, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    G = sum(B.T @ B for B in W.split(25))  # accumulated over row blocks
    assert stable_rank_from_gram(G).item() == pytest.approx(
        stable_rank(W).item(), rel=1e-12
    )
    assert stable_rank_from_gram(torch.zeros(3, 3, dtype=torch.float64)).item() == 0


@pytest.mark.parametrize("shape", [(12, 30), (30, 12), (20, 20)])
def test_float32_singular_values_via_gram_match_svd(shape):
    """The float64 Gram route gives a float32 matrix's singular values to float32 precision,
    down to a spectrum spanning six decades."""
    k = min(shape)
    s_true = torch.logspace(0, -6, k, dtype=torch.float64)
    W = matrix_with_spectrum(s_true, *shape).float()
    s = singular_values(W)
    reference = torch.linalg.svdvals(W.double())  # of the float32-rounded matrix
    assert s.dtype == torch.float64 and s.shape == (k,)
    assert (s[:-1] >= s[1:]).all()  # decreasing
    assert torch.allclose(s, reference, rtol=0, atol=1e-8 * float(reference[0]))
    # numerical rank at a tolerance between two singular values counts exactly those above it
    for rtol in (3e-2, 3e-4, 3e-6):
        assert int(numerical_rank(W, rtol=rtol)) == int((s_true > rtol).sum())


def test_float64_input_uses_the_svd():
    W = matrix_with_spectrum([1.0, 1e-12])  # below what the Gram route could resolve
    assert (
        int(numerical_rank(W, rtol=1e-13)) == 2
        and int(numerical_rank(W.float(), rtol=1e-3)) == 1
    )


def test_ranks_from_one_decomposition_equal_the_single_functions():
    from convbias.rank import ranks

    g = torch.Generator().manual_seed(4)
    W = torch.randn(6, 9, 5, generator=g) @ torch.diag(torch.logspace(0, -4, 5))
    W[2] = 0  # a zero matrix in the batch
    out = ranks(W, rtol=1e-2, batch=True)
    assert torch.allclose(out["stable"], stable_rank(W, batch=True), rtol=1e-10)
    assert torch.allclose(out["effective"], effective_rank(W, batch=True), rtol=1e-10)
    assert torch.equal(out["numerical"], numerical_rank(W, rtol=1e-2, batch=True))
    assert out["stable"][2] == out["effective"][2] == out["numerical"][2] == 0
    with pytest.raises(ValueError, match="rtol"):
        ranks(W, rtol=1.5)
