"""Rank summaries of a network's weights, for one model or a stacked ensemble.

Galanti et al. measure the rank of a weight ``W`` (conv weights reshaped to
``(out, in * k * k)``) as the numerical rank of ``W / ||W||_F`` with an
*absolute* tolerance ``eps = 1e-3``:

$$ \\operatorname{rank}_\\epsilon(W) = \\#\\{ i : \\sigma_i(W) > \\epsilon \\, \\|W\\|_F \\}, $$

averaged over the hidden layers (the classifier is left out):
``convbias.rank.numerical_rank(W, tol, relative_to="frobenius")``. This module
computes it, the stable rank and the alignment of consecutive layers, batched
over a leading ensemble dimension (one SVD call per layer), and chapter 2's checks.
Used by chapter 2.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch

from .rank import (
    _checked,
    numerical_rank_from_singular_values,
    singular_values,
    stable_rank_from_singular_values,
)

Tensor = torch.Tensor


def hidden_weight_names(model: torch.nn.Module) -> list[str]:
    """Names of the weights whose rank is reported: every parameter with at least
    2 dimensions except the classifier (the last such parameter), in order."""
    names = [n for n, p in model.named_parameters() if p.ndim >= 2]
    if len(names) < 2:
        raise ValueError(
            "the model needs a hidden weight besides the classifier; name the layers explicitly"
        )
    return names[:-1]


def _as_matrices(W: Tensor, stacked: bool) -> Tensor:
    """``(out, in, *k)`` -> ``(out, in*k)``; with ``stacked`` the leading dimension is kept."""
    lead = 2 if stacked else 1
    if W.ndim < lead + 1:
        raise ValueError(
            f"expected a weight with at least {lead + 1} dimensions, got shape {tuple(W.shape)}"
        )
    return W.reshape(*W.shape[:lead], -1)


def layer_ranks(
    params: Mapping[str, Tensor],
    names: Sequence[str],
    *,
    tol: float = 1e-3,
    stacked: bool = True,
) -> dict[str, Tensor]:
    """Rank and stable rank of each named weight, and their means over the layers.

    Returns ``{"rank": (E,), "srank": (E,), "rank/<name>": (E,), "srank/<name>": (E,)}``
    (scalars when ``stacked=False``), all float tensors.
    """
    if not names:
        raise ValueError("names must list at least one weight")
    if not 0 < tol < 1:
        raise ValueError(f"tol must lie in (0, 1), got {tol}")
    out: dict[str, Tensor] = {}
    for name in names:  # one decomposition per weight serves both ranks
        s = singular_values(_as_matrices(params[name].detach(), stacked), batch=True)
        out[f"rank/{name}"] = numerical_rank_from_singular_values(
            s, tol, relative_to="frobenius"
        ).float()
        out[f"srank/{name}"] = stable_rank_from_singular_values(s).float()
    out["rank"] = torch.stack([out[f"rank/{n}"] for n in names]).mean(0)
    out["srank"] = torch.stack([out[f"srank/{n}"] for n in names]).mean(0)
    return out


def rank_metrics(
    names: Sequence[str], tol: float = 1e-3
) -> Callable[[Mapping[str, Tensor]], dict[str, Tensor]]:
    """A ``metrics`` function for :func:`convbias.train.fit_ensemble` recording :func:`layer_ranks`."""
    names = list(names)
    return lambda params: layer_ranks(params, names, tol=tol, stacked=True)


def spectra(
    params: Mapping[str, Tensor], names: Sequence[str], member: int | None = None
) -> dict[str, Tensor]:
    """Singular values of each named weight divided by the largest (of member ``member`` when stacked)."""
    out = {}
    for name in names:
        W = params[name].detach()
        W = (
            _as_matrices(W[member], False)
            if member is not None
            else _as_matrices(W, False)
        )
        s = singular_values(W)
        out[name] = (s / s[0]).float()
    return out


def top_alignment(W_lower: Tensor, W_upper: Tensor) -> Tensor:
    """``|<u_1(W_l), v_1(W_{l+1})>|``: how well the top left singular vector of a layer
    matches the top right singular vector of the next one (1 = aligned). Batched over
    leading dimensions."""
    if W_lower.shape[-2] != W_upper.shape[-1]:
        raise ValueError(
            f"consecutive layers must chain: {tuple(W_lower.shape)} then {tuple(W_upper.shape)}"
        )
    wide = lambda W: W.to(torch.complex128) if W.is_complex() else W.double()
    U, _, _ = torch.linalg.svd(wide(_checked(W_lower, batch=True)), full_matrices=False)
    _, _, Vh = torch.linalg.svd(
        wide(_checked(W_upper, batch=True)), full_matrices=False
    )
    return (U[..., :, 0].conj() * Vh[..., 0, :].conj()).sum(-1).abs().float()


# ----------------------------------------------------------------------------- the chapter's claims
def grid_checks(grid, control, full_rank: float) -> list:
    """Galanti et al.'s claims on a (B, lr, lambda) grid, as :class:`convbias.checks.Check` objects.

    ``grid`` is a :class:`convbias.sweep.SweepResult` at equal **epochs**; ``control``
    one at equal **steps** (as many as the grid's smallest batch takes) at the grid's
    largest lr and lambda, with full-batch gradient descent among its batch sizes.
    ``full_rank`` is the average rank of full-rank hidden weights.

    - ``rank_lambda0_full``: without weight decay every run keeps at least 95% of full rank;
    - ``rank_cut_corner``: the largest lambda with the smallest batch and largest lr cuts
      the rank at least 2x;
    - ``rank_drop_smallest_batch``: at the smallest batch the rank falls (by at least one)
      from lambda = 0 to the largest lambda, for every learning rate;
    - ``accuracy_corner``: the low-rank corner is at most 0.05 less accurate than lambda = 0;
    - ``batch_trend_equal_epochs``: at equal epochs the largest batch ends at least 10 above
      the smallest in rank (the trend of the paper);
    - ``equal_steps_gap``: at equal steps full-batch gradient descent ends within 3 of the
      smallest batch's rank: the equal-epochs trend is an effect of the number of steps.
    """
    from .checks import at_least, at_most

    final = grid.final
    if control.compare != "steps" or grid.compare != "epochs":
        raise ValueError("grid must compare at equal epochs and control at equal steps")
    b_min, b_max = final.batch_size.min(), final.batch_size.max()
    lr_max, wd_max = final.lr.max(), final.weight_decay.max()
    mean = final.groupby(["batch_size", "lr", "weight_decay"])["rank"].mean()
    acc = final.groupby(["batch_size", "lr", "weight_decay"])["test_acc"].mean()
    corner = mean[(b_min, lr_max, wd_max)]
    drops = [
        mean[(b_min, lr, 0.0)] - mean[(b_min, lr, wd_max)]
        for lr in sorted(final.lr.unique())
    ]
    gd = control.final[control.final.batch_size == control.final.batch_size.max()]
    gd_rank = gd[gd.weight_decay == wd_max]["rank"].mean()
    steps_b_min = int(final[final.batch_size == b_min]["steps"].iloc[0])
    steps_gd = int(
        gd["steps"].iloc[0]
    )  # a control with fewer steps ends higher and fails the check
    return [
        at_least(
            "rank_lambda0_full",
            final[final.weight_decay == 0.0]["rank"].min() / full_rank,
            0.95,
            "without weight decay the rank stays near full (share of full rank, lowest run)",
            scale="ratio",
        ),
        at_least(
            "rank_cut_corner",
            full_rank / corner,
            2.0,
            f"B={b_min}, lr={lr_max:g}, lambda={wd_max:g} cuts the rank at least 2x",
            scale="ratio",
        ),
        at_least(
            "rank_drop_smallest_batch",
            min(drops),
            1.0,
            f"at B={b_min} the rank falls from lambda=0 to lambda={wd_max:g} for every lr",
        ),
        at_least(
            "accuracy_corner",
            acc[(b_min, lr_max, wd_max)] - acc[(b_min, lr_max, 0.0)],
            -0.05,
            "the low-rank corner is about as accurate as lambda = 0",
        ),
        at_least(
            "batch_trend_equal_epochs",
            mean[(b_max, lr_max, wd_max)] - corner,
            10.0,
            f"at equal epochs B={b_max} ends well above B={b_min} in rank",
        ),
        at_most(
            "equal_steps_gap",
            abs(gd_rank - corner),
            3.0,
            f"full-batch GD ({steps_gd} steps) ends within 3 of B={b_min}'s rank ({steps_b_min} steps)",
        ),
    ]


def le_jegelka_checks(srank_start, srank_end, align_start, align_end) -> list:
    """Le & Jegelka's rank-one drift, per seed (arrays over seeds).

    - ``lj_srank_end``: the middle layers' mean stable rank ends below 1.5 (highest seed);
    - ``lj_srank_drop``: and below 0.35 of its start;
    - ``lj_alignment``: consecutive layers' top singular vectors overlap above 0.8 (lowest seed);
    - ``lj_alignment_gain``: at least 3 times the overlap at the start.
    """
    import numpy as np

    from .checks import at_least, at_most

    s0, s1, a0, a1 = (
        np.asarray(v, dtype=float)
        for v in (srank_start, srank_end, align_start, align_end)
    )
    return [
        at_most(
            "lj_srank_end",
            s1.max(),
            1.5,
            "middle layers approach rank one (stable rank < 1.5)",
            scale="ratio",
        ),
        at_most(
            "lj_srank_drop",
            (s1 / s0).max(),
            0.35,
            "their stable rank falls below 0.35 of its start",
            scale="ratio",
        ),
        at_least(
            "lj_alignment",
            a1.min(),
            0.8,
            "consecutive layers align (overlap > 0.8)",
            scale="ratio",
        ),
        at_least(
            "lj_alignment_gain",
            (a1 / a0).min(),
            3.0,
            "the overlap grows at least 3x",
            scale="ratio",
        ),
    ]


def weight_decay_srank_check(
    srank_without: float,
    srank_with: float,
    name: str = "mnist_mlp_srank_wd",
    factor: float = 1.3,
) -> list:
    """``srank(lambda = 0) / srank(lambda > 0) >= factor``: weight decay lowers the stable rank."""
    from .checks import at_least

    return [
        at_least(
            name,
            srank_without / srank_with,
            factor,
            f"weight decay lowers the stable rank at least {factor:g}x",
            scale="ratio",
        )
    ]
