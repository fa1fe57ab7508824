"""Sharpness: the top eigenvalue of the loss Hessian, from Hessian-vector products only.

For a loss :math:`\\mathcal L(\\theta)` the sharpness is
:math:`\\lambda_{\\max}(\\nabla^2 \\mathcal L(\\theta))`. Gradient descent with step
:math:`\\eta` on a quadratic is stable only while :math:`\\lambda_{\\max} < 2/\\eta`
(Cohen et al., ICLR 2021: on neural networks the sharpness rises to about
:math:`2/\\eta` and hovers there, the *edge of stability*).

The Hessian is never formed: :func:`hvp_operator` returns :math:`v \\mapsto
\\nabla^2 \\mathcal L(\\theta) v` by forward-over-reverse differentiation
(``torch.func.jvp`` of ``torch.func.grad``) on the flat parameter vector, and
:func:`lanczos` (or :func:`power_iteration`) finds the top eigenvalue from a few
dozen such products. Used by chapter 7.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp

from .losses import loss_value

Tensor = torch.Tensor
MatVec = Callable[[Tensor], Tensor]


def flat_parameters(model: nn.Module) -> tuple[Tensor, list[tuple[str, torch.Size]]]:
    """The model's trainable parameters as one detached vector, and the ``(name, shape)`` layout."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters")
    flat = torch.cat([p.detach().reshape(-1) for _, p in named])
    return flat, [(n, p.shape) for n, p in named]


def unflatten(flat: Tensor, layout: list[tuple[str, torch.Size]]) -> dict[str, Tensor]:
    """The parameter dict of a flat vector (views of ``flat``, so gradients flow through)."""
    sizes = [shape.numel() for _, shape in layout]
    if sum(sizes) != flat.numel():
        raise ValueError(
            f"flat vector has {flat.numel()} entries, the layout {sum(sizes)}"
        )
    # split, not slicing: the backward of a slice writes into a zero tensor, which
    # forward-over-reverse differentiation (Hessian-vector products) refuses
    return {
        name: part.view(shape)
        for (name, shape), part in zip(layout, torch.split(flat, sizes))
    }


def flat_loss(
    model: nn.Module, X: Tensor, y: Tensor, loss: str = "mse"
) -> tuple[Callable[..., Tensor], Tensor]:
    """``(f, theta)``: the loss as a function ``f(flat, X=X, y=y)`` of the flat parameter vector, and the vector.

    ``X`` and ``y`` are the defaults; a mini-batch can be passed at call time.
    """
    theta, layout = flat_parameters(model)
    buffers = dict(model.named_buffers())

    def f(flat: Tensor, X: Tensor = X, y: Tensor = y) -> Tensor:
        params = unflatten(flat, layout)
        out = functional_call(model, (params, buffers), (X,))
        if loss == "mse":
            # the same value as train.loss_value("mse"), written out: forward-over-reverse
            # differentiation of F.mse_loss, and of a one-hot scatter into zeros_like(out),
            # fails on ZeroTensor tangents
            if not y.is_floating_point() and out.ndim == 2:
                y = F.one_hot(y, out.shape[-1]).to(out.dtype)
            return (out - y.reshape(out.shape)).pow(2).mean()
        return loss_value(loss, out, y)

    return f, theta


def hvp_operator(f: Callable[[Tensor], Tensor], theta: Tensor) -> MatVec:
    """``v -> H v`` with ``H`` the Hessian of ``f`` at ``theta`` (forward-over-reverse, no explicit Hessian)."""
    g = grad(f)

    def matvec(v: Tensor) -> Tensor:
        return jvp(g, (theta,), (v.to(theta.dtype),))[1]

    return matvec


def _start(
    dim: int, v0: Tensor | None, generator: torch.Generator | None, dtype, device
) -> Tensor:
    v = (
        torch.randn(dim, generator=generator, dtype=dtype).to(device)
        if v0 is None
        else v0.detach().to(device, dtype).clone()
    )
    norm = v.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise ValueError("the start vector must be finite and nonzero")
    return v / norm


def power_iteration(
    matvec: MatVec,
    dim: int,
    iters: int = 100,
    v0: Tensor | None = None,
    tol: float = 1e-6,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[float, Tensor]:
    """The eigenvalue of largest magnitude of a symmetric operator and its unit eigenvector.

    Stops when the Rayleigh quotient changes by less than ``tol`` (relative). On a
    Hessian with a negative eigenvalue larger in magnitude than the top one it finds
    that one: :func:`lanczos` does not have this problem.
    """
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    v = _start(dim, v0, generator, dtype, device)
    lam = float("nan")
    for _ in range(iters):
        w = matvec(v)
        new = float(torch.dot(v, w))
        norm = w.norm()
        if norm == 0:
            return 0.0, v
        v = w / norm
        if abs(new - lam) <= tol * max(abs(new), 1e-30):
            return new, v
        lam = new
    return lam, v


def lanczos(
    matvec: MatVec,
    dim: int,
    k: int = 20,
    v0: Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """``k`` steps of Lanczos with full re-orthogonalisation on a symmetric operator.

    Returns the Ritz values, largest first (float64, at most ``min(k, dim)`` of them),
    and the Ritz vector of the largest. The top Ritz value converges to the top
    eigenvalue from below, fast when it is separated from the rest of the spectrum.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    k = min(k, dim)
    Q = torch.zeros(k, dim, dtype=dtype, device=device)
    alpha = torch.zeros(k, dtype=torch.float64)
    beta = torch.zeros(max(k - 1, 0), dtype=torch.float64)
    q = _start(dim, v0, generator, dtype, device)
    m = k
    for j in range(k):
        Q[j] = q
        w = matvec(q)
        alpha[j] = float(torch.dot(q, w))
        # full re-orthogonalisation (twice is enough), against every Lanczos vector so far
        for _ in range(2):
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        if j == k - 1:
            break
        b = float(w.norm())
        if b <= 1e-10 * max(abs(float(alpha[j])), 1.0):  # invariant subspace found
            m = j + 1
            break
        beta[j] = b
        q = w / b
    T = (
        torch.diag(alpha[:m])
        + torch.diag(beta[: m - 1], 1)
        + torch.diag(beta[: m - 1], -1)
    )
    evals, evecs = torch.linalg.eigh(T)
    order = torch.argsort(evals, descending=True)
    top = (Q[:m].to(torch.float64).T @ evecs[:, order[0]]).to(dtype)
    return evals[order], top / top.norm()


def sharpness(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    loss: str = "mse",
    k: int = 20,
    v0: Tensor | None = None,
    seed: int = 0,
) -> tuple[float, Tensor]:
    """The top Hessian eigenvalue of the model's ``loss`` on ``(X, y)`` by ``k`` Lanczos steps, and its vector.

    ``v0`` warm-starts the iteration (e.g. the previous vector along training).
    """
    f, theta = flat_loss(model, X, y, loss)
    gen = torch.Generator().manual_seed(seed)
    evals, vec = lanczos(
        hvp_operator(f, theta),
        theta.numel(),
        k=k,
        v0=v0,
        generator=gen,
        dtype=theta.dtype,
        device=theta.device,
    )
    return float(evals[0]), vec
