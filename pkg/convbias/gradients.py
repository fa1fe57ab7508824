"""Gradients of deep 1-D conv nets at initialization, and the end-to-end filter's spectrum.

For a linear single-channel circular conv net without normalization the
hidden layers compose into one circular convolution, ``f(x) = h_L * ... * h_1 * x``,
whose DFT is the product of the layers' DFTs,

.. math::  \\hat h(\\omega) = \\prod_{l=1}^{L} \\hat h_l(\\omega).

Circular convolutions commute, so for the loss ``(1/n) ||f(x) - y||^2`` the
gradient for layer ``l`` is a correlation of the residual ``r = f(x) - y`` with
the input filtered by all *other* layers,

.. math::  \\frac{\\partial \\mathcal L}{\\partial h_l[j]} = \\frac{2}{n} \\sum_i r[i]\\,
           u_l[(i + j - p) \\bmod n], \\qquad u_l = \\big(\\textstyle\\prod_{m \\ne l} h_m\\big) * x,

which shrinks like ``prod_{m != l} |h_m|``: exponentially in depth when the
filters are contractions. (:func:`linear_net_gradient` computes this closed form.)

Used by chapter 3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .losses import member_losses

if TYPE_CHECKING:
    from .train import History

Tensor = torch.Tensor


def _kernels(weights: Tensor | Sequence[Tensor]) -> Tensor:
    """Single-channel kernels as a tensor ``(L, ..., k)``: layer first, kernel taps last.

    A list of kernels (each ``(k,)`` or ``(1, 1, k)``) is stacked to ``(L, k)``; a tensor
    is taken as ``(L, ..., k)`` (e.g. ``(L, members, k)``).
    """
    if isinstance(weights, Tensor):
        w = weights
    else:
        w = torch.stack([torch.as_tensor(v).reshape(-1) for v in weights])
    if w.ndim < 2:
        raise ValueError(
            f"weights must be (L, ..., k) or a list of kernels; got shape {tuple(w.shape)}"
        )
    return w


def circulant_kernel(weight: Tensor, n: int) -> Tensor:
    """The length-``n`` filter ``g`` with ``conv1d(x, w, circular padding) = g * x`` (circular convolution).

    PyTorch's conv1d is a correlation, ``y[i] = sum_j w[j] x[i + j - p]`` (``p = k // 2``),
    so ``g[(p - j) mod n] = w[j]``. Works on a batch of kernels ``(..., k)``.
    """
    k = weight.shape[-1]
    if k > n:
        raise ValueError(f"kernel size {k} exceeds the signal length n={n}")
    p = k // 2
    g = torch.zeros(*weight.shape[:-1], n, dtype=weight.dtype, device=weight.device)
    idx = (p - torch.arange(k, device=weight.device)) % n
    g[..., idx] = weight
    return g


def layer_spectra(weights: Tensor | Sequence[Tensor], n: int) -> Tensor:
    """DFTs ``hat h_l(omega)`` of each layer's filter, shape ``(L, ..., n // 2 + 1)`` (real FFT)."""
    return torch.fft.rfft(circulant_kernel(_kernels(weights), n), dim=-1)


def end_to_end_spectrum(weights: Tensor | Sequence[Tensor], n: int) -> Tensor:
    """``hat h(omega) = prod_l hat h_l(omega)``, the end-to-end filter's DFT, shape ``(..., n // 2 + 1)``."""
    return layer_spectra(weights, n).prod(dim=0)


def end_to_end_filter(weights: Tensor | Sequence[Tensor], n: int) -> Tensor:
    """The length-``n`` end-to-end filter ``h = h_L * ... * h_1`` of a linear single-channel net."""
    return torch.fft.irfft(end_to_end_spectrum(weights, n), n=n)


def circular_convolve(g: Tensor, x: Tensor) -> Tensor:
    """``(g * x)[i] = sum_m g[m] x[(i - m) mod n]`` along the last axis, by FFT."""
    n = x.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(g, n=n) * torch.fft.rfft(x, n=n), n=n)


def linear_net_gradient(
    weights: Tensor | Sequence[Tensor], x: Tensor, y: Tensor
) -> Tensor:
    """Closed-form gradient of ``(1/n) ||h_L * ... * h_1 * x - y||^2`` for every layer, shape ``(L, k)``.

    ``x`` and ``y`` are length-``n`` signals (any leading shape of ones). Uses the
    formula in the module docstring; no autograd.
    """
    w = _kernels(weights)
    if w.ndim != 2:
        raise ValueError(
            f"the closed form is for one net: weights must be (L, k), got {tuple(w.shape)}"
        )
    x, y = x.reshape(-1).to(w.dtype), y.reshape(-1).to(w.dtype)
    n, (L, k) = x.shape[0], w.shape
    spectra = layer_spectra(w, n)
    X = torch.fft.rfft(x)
    r = torch.fft.irfft(spectra.prod(0) * X, n=n) - y
    p = k // 2
    shift = (
        torch.arange(n)[:, None] + torch.arange(k)[None, :] - p
    ) % n  # (n, k): i + j - p
    grads = []
    for l in range(L):
        others = (
            torch.cat([spectra[:l], spectra[l + 1 :]]).prod(0)
            if L > 1
            else torch.ones_like(X)
        )
        u = torch.fft.irfft(others * X, n=n)
        grads.append(2.0 / n * (r[:, None] * u[shift]).sum(0))
    return torch.stack(grads)


def conv_weights(model: nn.Module) -> list[Tensor]:
    """The hidden convolution weights of a model, first layer first.

    Uses ``model.conv_layers()`` when the model has it (e.g. ``DeepConv1d``), then
    ``model.weights()`` (e.g. the deep decoder's ``C_1, ..., C_d, C_out``), otherwise
    every ``Conv1d``/``Conv2d``.
    """
    if hasattr(model, "conv_layers"):
        return [m.weight for m in model.conv_layers()]
    if hasattr(model, "weights") and callable(model.weights):
        return list(model.weights())
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]


def layer_gradient_norms(model: nn.Module, x: Tensor | None, y: Tensor) -> Tensor:
    """``||dL/dW_l||_2`` for each hidden convolution ``l``, shape ``(depth, members)``.

    ``L`` is the mean squared error of ``model(x)`` (``model()`` when ``x`` is None)
    against ``y``, per member for models with a ``members`` attribute (one column
    each; a plain model gives one column). ``.grad`` is left untouched.
    """
    weights = conv_weights(model)
    if not weights:
        raise ValueError("the model has no convolution weights to differentiate")
    E = int(getattr(model, "members", 1))
    out = model() if x is None else model(x)
    loss = member_losses(out, y.to(out.device), E).sum()
    grads = torch.autograd.grad(loss, weights)
    return torch.stack([g.reshape(E, -1).norm(dim=1) for g in grads]).detach()


def gradient_norms_vs_depth(
    depths: Iterable[int],
    x: Tensor,
    y: Tensor,
    *,
    members: int = 8,
    seed: int = 0,
    **net_kwargs,
) -> dict[int, np.ndarray]:
    """Per-layer gradient norms at initialization of ``DeepConv1d(depth, members=members, **net_kwargs)``.

    Returns ``{depth: array (depth, members)}``; the nets for each depth are drawn
    under ``torch.manual_seed(seed + depth)``.
    """
    from .models.conv1d import DeepConv1d

    result = {}
    for depth in depths:
        torch.manual_seed(int(seed) + int(depth))
        net = DeepConv1d(int(depth), members=members, **net_kwargs).to(x.device)
        result[int(depth)] = layer_gradient_norms(net, x, y).cpu().numpy()
    return result


# ----------------------------------------------------------------- the chapter's experiments and checks
#: the two arms of the experiment: arm name -> the ``norm`` of :class:`DeepConv1d` it uses
ARMS = {"channel": "channel", "bias": "bias"}
#: a net "escapes" when its final loss is below this (the bias-only control sits at 0.25 or 0.5)
ESCAPE_LOSS = 0.1


def fit_arms(
    configs: Sequence[tuple],
    seed: int,
    arms: dict[str, str] = ARMS,
    lr: float = 0.1,
    momentum: float = 0.9,
    log_every: int = 5,
    device: torch.device | None = None,
    cache: str | None = None,
    progress: bool = True,
) -> dict[tuple[str, str], "History"]:
    """Fit every configuration in both arms from the same initial filters; ``{(name, arm): history}``.

    ``configs`` holds ``(name, arch, x, y, members, offset, steps)``: ``DeepConv1d(norm=arms[arm],
    members=members, **arch)`` drawn under ``torch.manual_seed(seed + offset)`` (the same filters
    in both arms) is fitted to ``y`` from ``x`` by SGD for ``steps``.
    """
    from .live import progress as progress_bar
    from .models.conv1d import DeepConv1d
    from .one_example import fit_one_example

    out = {}
    for name, arch, xin, yt, members, offset, steps in progress_bar(
        configs, desc="configurations", enabled=progress
    ):
        for arm, norm in arms.items():
            torch.manual_seed(int(seed) + int(offset))
            net = DeepConv1d(norm=norm, members=members, **arch)
            if device is not None:
                net = net.to(device)
            out[name, arm] = fit_one_example(
                net,
                yt,
                xin,
                steps=steps,
                lr=lr,
                momentum=momentum,
                log_every=log_every,
                cache=cache and f"{cache}-{name}-{norm}",
            )
    return out


def escaped(losses: np.ndarray, threshold: float = ESCAPE_LOSS) -> int:
    """How many nets ended below ``threshold`` (off the plateau of the best constant output)."""
    return int((np.asarray(losses) < threshold).sum())


def batch_norm_gap(
    channels: int = 6, n: int = 100, unbiased: bool = False, seed: int = 0
) -> float:
    """Largest difference between channel norm and batch norm (train mode) on one example.

    Channel norm is :class:`~convbias.models.conv1d.ChannelNorm1d`; the example is ``(1, C, n)``.
    """
    from .models.conv1d import ChannelNorm1d

    gen = torch.Generator().manual_seed(seed)
    z = 5 * torch.randn(1, channels, n, generator=gen) + 2
    bn = nn.BatchNorm1d(channels, track_running_stats=False)
    with torch.no_grad():
        return float(
            (ChannelNorm1d(channels, unbiased=unbiased)(z) - bn(z)).abs().max()
        )


def channel_norm_checks(
    final: dict[tuple[str, str], np.ndarray],
    first_layer: dict[str, np.ndarray],
    grad_depths: Sequence[int],
    *,
    ratio_config: str = "linear, depth 10",
    escape_configs: Sequence[str] | None = None,
    shallow: int | None = None,
    deep: int | None = None,
    bn_gap: float | None = None,
    spectrum_peak: float | None = None,
    dd_final: dict[bool, float] | None = None,
    min_escaped: int = 1,
    ratio: float = 10.0,
) -> list:
    """Chapter 3's claims as :class:`convbias.checks.Check` objects.

    ``final[name, arm]`` are the final losses of one configuration's nets, ``first_layer[arm]``
    the median first-layer gradient norm at init per depth in ``grad_depths``. Optional parts
    (batch norm gap, end-to-end spectrum peak at the deepest depth, deep decoder final losses
    with/without normalization) add their checks when given.
    """
    from .checks import at_least, at_most, between

    cn, ctrl = final[ratio_config, "channel"], final[ratio_config, "bias"]
    names = list(
        escape_configs
        if escape_configs is not None
        else sorted({name for name, _ in final if name.startswith("linear")})
    )
    n_cn = sum(escaped(final[name, "channel"]) for name in names)
    n_ctrl = sum(escaped(final[name, "bias"]) for name in names)
    total = sum(len(np.atleast_1d(final[name, "channel"])) for name in names)
    depths = list(grad_depths)
    shallow = min(depths) if shallow is None else shallow
    deep = max(depths) if deep is None else deep
    drop = {
        arm: float(
            first_layer[arm][depths.index(shallow)]
            / first_layer[arm][depths.index(deep)]
        )
        for arm in ("channel", "bias")
    }
    checks = [
        at_least(
            "depth10_ratio",
            float(np.median(ctrl) / np.median(cn)),
            ratio,
            f"{ratio_config}: with CN the median final loss is {ratio:g}x lower",
            scale="ratio",
        ),
        at_least(
            "escaped_with_cn",
            n_cn,
            min_escaped,
            f"with CN at least {min_escaped} of {total} linear nets end below {ESCAPE_LOSS:g}",
        ),
        at_most(
            "escaped_without_cn",
            n_ctrl,
            0,
            f"without CN none of {total} linear nets ends below {ESCAPE_LOSS:g}",
        ),
        at_least(
            "grad_drop_without_cn",
            drop["bias"],
            1e3,
            f"without CN the first-layer gradient falls 1000x from depth {shallow} to {deep}",
            scale="ratio",
        ),
        between(
            "grad_drop_with_cn",
            drop["channel"],
            0.1,
            10,
            f"with CN it stays within 10x from depth {shallow} to {deep}",
            scale="ratio",
        ),
    ]
    if bn_gap is not None:
        checks.append(
            at_most(
                "batchnorm_is_cn",
                bn_gap,
                1e-5,
                "batch norm on one example is CN",
                scale="ratio",
            )
        )
    if spectrum_peak is not None:
        checks.append(
            at_most(
                "spectrum_peak_deep",
                spectrum_peak,
                1e-4,
                "the deepest unnormalized net's end-to-end filter is tiny at every frequency",
                scale="ratio",
            )
        )
    if dd_final is not None:
        checks.append(
            at_least(
                "deep_decoder_ratio",
                dd_final[False] / dd_final[True],
                10,
                "the normalized deep decoder fits 10x better",
                scale="ratio",
            )
        )
    return checks


def init_spectra(
    depth: int, kernel_size: int, n: int, members: int, seed: int, gain: float = 1.0
) -> np.ndarray:
    """``|hat h(omega)|`` at init of ``members`` unnormalized linear nets drawn under ``torch.manual_seed(seed)``.

    Shape ``(members, n // 2 + 1)``. ``gain`` scales every filter (1: PyTorch's default init, whose
    layers have energy 1/3; ``sqrt(3)`` makes each layer's expected energy 1).
    """
    from .models.conv1d import DeepConv1d

    torch.manual_seed(int(seed))
    net = DeepConv1d(int(depth), kernel_size=kernel_size, norm="none", members=members)
    w = net.filters()[:, :, 0, 0].detach() * gain  # (L, members, k)
    return end_to_end_spectrum(w, n).abs().numpy()


# ----------------------------------------------------------------- an energy-preserving initialization
#: the arm of the unnormalized nets drawn with the energy-preserving init: arm name -> ``norm``
ENERGY_ARMS = {"energy": "bias"}


def energy_init_checks(
    final: dict[tuple[str, str], np.ndarray],
    first_layer: dict[str, np.ndarray],
    grad_depths: Sequence[int],
    *,
    escape_configs: Sequence[str] | None = None,
    near_depth: int = 10,
    deep: int | None = None,
    gain: float | None = None,
    within: float = 100.0,
    max_escaped: int = 0,
) -> list:
    """Does the unnormalized net stall only because its gradients vanish at init? Checks of that.

    ``first_layer[arm]`` holds the median first-layer gradient norm at init per depth in
    ``grad_depths`` for the arms ``"channel"`` (CN), ``"bias"`` (no CN, default init) and
    ``"energy"`` (no CN, the same filters times ``gain``, :func:`~convbias.models.conv1d.energy_gain`
    by default); ``final[name, "energy"]`` the final losses of the energy arm's nets.

    * ``energy_init_gradient_gain``: at the deepest depth ``L`` the energy arm's gradient is the
      default's times ``gain ** (L - 1)`` (every other layer's factor scaled by ``gain``);
    * ``energy_init_gradients_do_not_vanish``: at ``near_depth`` the energy arm's gradient is
      within ``within`` x of CN's;
    * ``energy_init_escaped_without_cn``: at most ``max_escaped`` of its nets end below
      :data:`ESCAPE_LOSS`.
    """
    from .checks import at_most, between
    from .models.conv1d import energy_gain

    gain = energy_gain("linear") if gain is None else float(gain)
    depths = list(grad_depths)
    deep = max(depths) if deep is None else deep
    names = list(
        escape_configs
        if escape_configs is not None
        else sorted({name for name, arm in final if arm == "energy"})
    )
    n_energy = sum(escaped(final[name, "energy"]) for name in names)
    total = sum(len(np.atleast_1d(final[name, "energy"])) for name in names)
    i_deep, i_near = depths.index(deep), depths.index(near_depth)
    measured_gain = float(first_layer["energy"][i_deep] / first_layer["bias"][i_deep])
    near = float(first_layer["energy"][i_near] / first_layer["channel"][i_near])
    return [
        between(
            "energy_init_gradient_gain",
            measured_gain / gain ** (deep - 1),
            0.5,
            2.0,
            f"at depth {deep} the energy init multiplies the first-layer gradient "
            f"by {gain:.3g}^{deep - 1} (measured / predicted)",
            scale="ratio",
        ),
        between(
            "energy_init_gradients_do_not_vanish",
            near,
            1 / within,
            within,
            f"at depth {near_depth} the energy init's first-layer gradient is within "
            f"{within:g}x of CN's (energy / CN)",
            scale="ratio",
        ),
        at_most(
            "energy_init_escaped_without_cn",
            n_energy,
            max_escaped,
            f"with the energy init and without CN at most {max_escaped} of {total} "
            f"linear nets end below {ESCAPE_LOSS:g}",
        ),
    ]


def energy_init_finding(n_energy: int, n_cn: int, total: int) -> str:
    """The sentence that says what the energy-init nets' escapes show, worded from the counts.

    ``n_energy`` of ``total`` unnormalized nets with the energy-preserving init escaped,
    ``n_cn`` of ``total`` with CN (both counted by :func:`escaped`).
    """
    if min(n_energy, n_cn) < 0 or max(n_energy, n_cn) > total:
        raise ValueError(
            f"escape counts must lie in [0, {total}], got {n_energy} and {n_cn}"
        )
    counts = f"{n_energy} of {total} unnormalized nets with the energy-preserving init"
    if n_energy == 0:
        return (
            f"none of the {total} unnormalized nets with the energy-preserving init escapes the "
            f"plateau (with CN: {n_cn} of {total}), although their gradients "
            "at initialization no longer vanish: in this setup vanishing gradients at "
            "initialization are not the whole explanation of why CN helps"
        )
    if n_energy < n_cn:
        return (
            f"{counts} escape the plateau, fewer than the {n_cn} with CN: larger gradients at "
            "initialization help, but they do not account for all of CN's effect"
        )
    return (
        f"{counts} escape the plateau, as many as with CN ({n_cn}): here an initialization "
        "that keeps the gradients from vanishing does what CN does, as the "
        "vanishing-gradient explanation predicts"
    )


def smaller_rate_finding(escapes: dict[float, int], total: int, depth: int) -> str:
    """What the energy-init nets of one ``depth`` do at smaller learning rates, worded from the counts.

    ``escapes[lr]`` of ``total`` nets ended below :data:`ESCAPE_LOSS` when trained at ``lr``.
    """
    if not escapes or any(not 0 <= n <= total for n in escapes.values()):
        raise ValueError(
            f"give an escape count in [0, {total}] for each learning rate, got {escapes!r}"
        )
    rates = " / ".join(f"{lr:g}" for lr in escapes)
    counts = " / ".join(str(n) for n in escapes.values())
    said = (
        f"at learning rates {rates} the same depth-{depth} nets end below "
        f"{ESCAPE_LOSS:g} in {counts} of {total} draws"
    )
    if sum(escapes.values()) == 0:
        return said + ": a smaller step does not rescue them either"
    return (
        said + ": with a smaller step some of them escape, so the step size matters "
        "too, not only the gradient at initialization"
    )
