"""Fitting un-trained generators to one corrupted image: denoising and linear inverse problems.

Notation (Heckel & Soltanolkotabi 2020): the clean image ``x``, the observation
``y = A x + z`` (``A`` the identity for denoising, a random Gaussian matrix for
compressive sensing, a pixel mask for inpainting), the generator ``G(C)``. We run
Adam (or SGD) on ``L(C) = ||A G(C) - y||^2 / m`` and follow the PSNR of ``G(C)``
to the clean image along the way, keeping the best iterate (early stopping
with an oracle: what the paper's curves show).

Everything stays on the generator's device; the loop never moves a number to
the host until it ends.
"""

from __future__ import annotations

import functools
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from .cache import resumable
from .config import cap_steps, recording, step_starts
from .executors import submit
from .live import progress as progress_bar
from .train import (
    History,
    Metrics,
    check_metrics,
    make_optimizer,
    metric_values,
    raise_diverged,
)

Tensor = torch.Tensor
CS_MODES = ("gaussian", "dense-gaussian", "mask")


def mse(x: Tensor | np.ndarray, ref: Tensor | np.ndarray) -> float:
    """Mean squared error of ``x`` to ``ref``."""
    x, ref = (
        torch.as_tensor(x, dtype=torch.float64),
        torch.as_tensor(ref, dtype=torch.float64),
    )
    if x.shape != ref.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} vs {tuple(ref.shape)}")
    return float(((x - ref) ** 2).mean())


def psnr(
    x: Tensor | np.ndarray, ref: Tensor | np.ndarray, data_range: float = 1.0
) -> float:
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE(x, ref))`` in dB (inf if equal)."""
    err = mse(x, ref)
    return float("inf") if err == 0 else float(10 * np.log10(data_range**2 / err))


def _psnr_tensor(x: Tensor, ref: Tensor) -> Tensor:
    """PSNR (data range 1) as a 0-d tensor on the device, no host sync."""
    return -10 * torch.log10(((x - ref) ** 2).mean().clamp_min(1e-12))


def add_noise(image: Tensor, sigma: float, seed: int = 0, clip: bool = True) -> Tensor:
    """``image + sigma * N(0, I)`` (``sigma`` on the [0, 1] scale: 25/255 is the paper's 25), clipped to [0, 1]."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    gen = torch.Generator().manual_seed(seed)
    noisy = image + sigma * torch.randn(image.shape, generator=gen).to(
        image.device, image.dtype
    )
    return noisy.clamp(0, 1) if clip else noisy


def uniform_noise(shape: tuple[int, ...], seed: int = 0) -> Tensor:
    """Pure noise ``U[0, 1]`` of ``shape``: the paper's "fit noise" target."""
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------- measurement operators
class Identity:
    """``A = I``: denoising."""

    name = "denoising"

    def __call__(self, x: Tensor) -> Tensor:
        return x

    def to(self, device) -> "Identity":
        return self


class GaussianMeasurements:
    """Compressive sensing: ``y = A vec(x)`` with ``A`` an ``m x n`` matrix of i.i.d. ``N(0, 1/m)`` entries."""

    name = "compressive sensing"

    def __init__(self, n: int, m: int, seed: int = 0):
        if not 0 < m:
            raise ValueError(f"need at least one measurement, got m={m}")
        gen = torch.Generator().manual_seed(seed)
        self.n, self.m = n, m
        self.A = torch.randn(m, n, generator=gen) / m**0.5

    def __call__(self, x: Tensor) -> Tensor:
        return x.reshape(x.shape[0], -1) @ self.A.T if x.ndim > 1 else self.A @ x

    def adjoint(self, y: Tensor) -> Tensor:
        return y @ self.A

    def to(self, device) -> "GaussianMeasurements":
        self.A = self.A.to(device)
        return self


class CirculantGaussianMeasurements:
    """Compressive sensing without an ``m x n`` matrix: ``A = S C_g D``, a random partial circulant Gaussian matrix.

    ``D`` flips the sign of each pixel at random, ``C_g`` is the circulant matrix of
    ``g``, ``n`` i.i.d. ``N(0, 1/m)`` numbers (``(C_g x)_i = sum_j g_{(i - j) mod n} x_j``,
    a circular convolution applied by FFT), and ``S`` keeps ``m`` of its ``n`` rows
    chosen at random. The signs spread an image's mean (its DC component), which a
    circulant alone would measure through one number ``sum_j g_j``. Every entry of ``A`` is
    ``N(0, 1/m)`` and ``E[A^T A] = I``, as for :class:`GaussianMeasurements`, but
    the rows are shifts of one another: the operator stores ``O(n)`` numbers (a dense
    ``A`` for a 256x256 image with ``m = n/2`` is 8.6 GB) and a product costs
    ``O(n log n)``. :meth:`adjoint` is ``A^T`` exactly; :meth:`matrix` builds the
    dense ``A`` (for tests at small ``n``).
    """

    name = "compressive sensing"

    def __init__(self, n: int, m: int, seed: int = 0):
        if not 0 < m <= n:
            raise ValueError(f"need 1 <= m <= n measurements, got m={m} for n={n}")
        gen = torch.Generator().manual_seed(seed)
        self.n, self.m = n, m
        g = torch.randn(n, generator=gen) / m**0.5
        self.rows = torch.randperm(n, generator=gen)[:m].sort().values
        self.signs = torch.randint(0, 2, (n,), generator=gen).float() * 2 - 1
        self.spectrum = torch.fft.rfft(g)

    def __call__(self, x: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1) if x.ndim > 1 else x[None]
        full = torch.fft.irfft(
            torch.fft.rfft(flat * self.signs, n=self.n) * self.spectrum, n=self.n
        )
        out = full[:, self.rows]
        return out if x.ndim > 1 else out[0]

    def adjoint(self, y: Tensor) -> Tensor:
        batch = y[None] if y.ndim == 1 else y
        full = batch.new_zeros(batch.shape[0], self.n)
        full[:, self.rows] = batch
        out = (
            torch.fft.irfft(
                torch.fft.rfft(full, n=self.n) * self.spectrum.conj(), n=self.n
            )
            * self.signs
        )
        return out[0] if y.ndim == 1 else out

    def matrix(self) -> Tensor:
        """The dense ``m x n`` matrix (``O(mn)`` memory: for tests at small sizes)."""
        return self(torch.eye(self.n, device=self.rows.device)).T.contiguous()

    def to(self, device) -> "CirculantGaussianMeasurements":
        self.rows, self.signs = self.rows.to(device), self.signs.to(device)
        self.spectrum = self.spectrum.to(device)
        return self


class RandomMask:
    """Inpainting: keep a random fraction ``keep`` of the pixels (``y = M x``, the same mask on all channels)."""

    name = "inpainting"

    def __init__(self, shape: tuple[int, ...], keep: float, seed: int = 0):
        if not 0 < keep <= 1:
            raise ValueError(f"keep must be in (0, 1], got {keep}")
        gen = torch.Generator().manual_seed(seed)
        h, w = shape[-2:]
        self.mask = (torch.rand(h, w, generator=gen) < keep).float()
        self.m = int(self.mask.sum())

    def __call__(self, x: Tensor) -> Tensor:
        return x * self.mask

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self.mask

    def to(self, device) -> "RandomMask":
        self.mask = self.mask.to(device)
        return self


# ----------------------------------------------------------------- the fitting loop
@dataclass(kw_only=True)
class FitResult(History):
    """The :class:`~convbias.train.History` of :func:`fit_generator` (``loss``, and ``psnr`` to the clean image,
    every ``log_every`` steps from step 0), with the best and final images.

    ``loss`` and ``psnr`` read the records as float32 arrays (as computed on the device).
    """

    best_psnr: float = float("nan")
    best_step: int = -1
    best_image: Tensor | None = None
    final_image: Tensor | None = None

    @property
    def loss(self) -> np.ndarray:
        return np.asarray(self.values.get("loss", []), dtype=np.float32)

    @property
    def psnr(self) -> np.ndarray:
        return np.asarray(self.values.get("psnr", []), dtype=np.float32)

    @property
    def final_psnr(self) -> float:
        return float(self.psnr[-1]) if len(self.psnr) else float("nan")

    def late_loss(self, records: int = 3) -> float:
        """Median of the last ``records`` logged losses: the loss reached, robust to one Adam spike."""
        return _median_of_last(self.loss, records)

    def late_psnr(self, records: int = 3) -> float:
        """Median PSNR of the last ``records`` logged iterates: where the fit ended, robust to one Adam spike."""
        return _median_of_last(self.psnr, records)

    def loss_at(self, step: int) -> float:
        """The recorded loss at the logged step closest to ``step``."""
        return float(self.loss[int(np.argmin(np.abs(self["step"] - step)))])

    def psnr_at(self, step: int) -> float:
        """The recorded PSNR at the logged step closest to ``step``."""
        return float(self.psnr[int(np.argmin(np.abs(self["step"] - step)))])


def _median_of_last(values: np.ndarray, records: int) -> float:
    """Median of the last ``records`` entries (NaN when there are none)."""
    if records < 1:
        raise ValueError(f"records must be >= 1, got {records}")
    return float(np.median(values[-records:])) if len(values) else float("nan")


def fit_generator(
    net: nn.Module,
    target: Tensor,
    steps: int,
    *,
    lr: float = 0.01,
    clean: Tensor | None = None,
    operator: Callable[[Tensor], Tensor] | None = None,
    log_every: int = 10,
    optimizer: str | torch.optim.Optimizer = "adam",
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    metrics: Metrics | None = None,
    progress: bool | str = True,
    desc: str = "fit",
    channels_last: bool | None = None,
) -> FitResult:
    """Fit ``net()`` to ``target`` by minimizing ``mean((A net() - target)^2)``; track PSNR to ``clean``.

    ``operator`` is ``A`` (default identity); ``clean`` (optional) is the image the
    PSNR is measured against, at steps ``0, log_every, ..., steps`` (step ``t`` is
    the image after ``t`` updates); ``metrics(net)`` is recorded at the same steps.
    The best iterate by that PSNR is kept on the device. ``optimizer`` is ``"adam"``
    (the paper's) or ``"sgd"`` (with ``momentum``), or an optimizer instance.
    ``channels_last`` (default: on a CPU) stores the network's 4-d weights and
    buffers in the NHWC memory format, faster on a CPU (measured in
    ``benchmarks/README.md``); the function computed is the same.
    A NaN or infinite recorded loss raises :class:`convbias.train.TrainingDiverged`.
    """
    if steps < 1 or log_every < 1:
        raise ValueError("steps and log_every must be >= 1")
    if not isinstance(optimizer, torch.optim.Optimizer) and optimizer not in (
        "adam",
        "sgd",
    ):
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    check_metrics(metrics)
    if isinstance(progress, str):  # the bar's label, as older code passed it
        progress, desc = True, progress
    steps = cap_steps(steps, log_every)  # a smoke run stops after a few steps
    dev = next(net.parameters()).device
    if channels_last is None:
        channels_last = dev.type == "cpu"
    if channels_last:
        net.to(memory_format=torch.channels_last)
        if target.ndim == 4:
            target = target.contiguous(memory_format=torch.channels_last)
    A = (operator or Identity()).to(dev)
    target = target.to(dev)
    clean = None if clean is None else clean.to(dev)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = make_optimizer(
        optimizer, params, lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    losses, psnrs, logged, measured = [], [], [], []
    best_psnr = torch.tensor(-float("inf"), device=dev)
    best_step = torch.tensor(-1, device=dev)
    best_image = None

    bar = progress_bar(total=steps, desc=desc, enabled=progress)
    for t in range(steps + 1):
        if t < steps:
            step_starts()
        with recording(once=True, on=t == steps):  # the last pass only evaluates
            out = net()
            loss = ((A(out) - target) ** 2).mean()
        if t % log_every == 0 or t == steps:
            with recording():
                logged.append(t)
                losses.append(loss.detach())
                if metrics is not None:
                    with torch.no_grad():
                        measured.append(metric_values(metrics, net))
                if clean is not None:
                    p = _psnr_tensor(out.detach().reshape(clean.shape), clean)
                    psnrs.append(p)
                    better = p > best_psnr
                    best_image = (
                        out.detach().clone()
                        if best_image is None
                        else torch.where(better, out.detach(), best_image)
                    )
                    best_step = torch.where(
                        better, torch.tensor(t, device=dev), best_step
                    )
                    best_psnr = torch.maximum(best_psnr, p)
        if t == steps:
            final = out.detach()
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        bar.update(1)
    bar.close()
    loss_values = torch.stack(losses).cpu().numpy()
    if not np.isfinite(loss_values).all():
        raise_diverged(logged[int(np.argmax(~np.isfinite(loss_values)))], "the loss")
    psnr_values = torch.stack(psnrs).cpu().numpy() if clean is not None else None
    res = FitResult(final_image=final.cpu())
    for r, t in enumerate(logged):
        values = {"loss": loss_values[r]}
        if psnr_values is not None:
            values["psnr"] = psnr_values[r]
        if measured:
            values.update(
                {
                    k: torch.as_tensor(v).detach().cpu().numpy()
                    for k, v in measured[r].items()
                }
            )
        res.record(t, **values)
    if clean is not None:
        res.best_psnr, res.best_step, res.best_image = (
            float(best_psnr),
            int(best_step),
            best_image.cpu(),
        )
    return res


# ----------------------------------------------------------------- a simple baseline: sparse DCT recovery
def dct_matrix(n: int, device: torch.device | str | None = None) -> Tensor:
    """The orthonormal DCT-II matrix ``D`` (``D @ x`` transforms a length-``n`` signal)."""
    i = torch.arange(n, dtype=torch.float64)
    D = torch.cos(torch.pi * (i[None, :] + 0.5) * i[:, None] / n) * (2.0 / n) ** 0.5
    D[0] /= 2**0.5
    return D.float().to(device)


def dct_recover(
    y: Tensor, operator, shape: tuple[int, int], lam: float = 1e-3, iters: int = 300
) -> Tensor:
    """Baseline: ``argmin_x ||A x - y||^2 / 2 + lam ||DCT2(x)||_1`` by FISTA; returns a ``(1, 1, H, W)`` image.

    Natural images are nearly sparse in the 2-D DCT, so this is the classical
    compressive-sensing recovery the un-trained generator is compared with.
    """
    h, w = shape
    dev = y.device
    Dh, Dw = dct_matrix(h, dev), dct_matrix(w, dev)
    to_img = lambda z: (Dh.T @ z @ Dw).reshape(1, 1, h, w)  # noqa: E731
    to_coef = lambda x: Dh @ x.reshape(h, w) @ Dw.T  # noqa: E731
    fwd = lambda z: operator(to_img(z))  # noqa: E731
    adj = lambda r: to_coef(operator.adjoint(r).reshape(1, 1, h, w))  # noqa: E731
    # Lipschitz constant ||A||^2 by power iteration
    v = torch.randn(h, w, generator=torch.Generator().manual_seed(0)).to(dev)
    for _ in range(30):
        v = adj(fwd(v))
        L = v.norm()
        v = v / L
    step = 1.0 / float(L)
    z = torch.zeros(h, w, device=dev)
    z_prev, s, t = z, z, 1.0
    for _ in range(cap_steps(iters)):
        step_starts()
        g = s - step * adj(fwd(s) - y)
        z = torch.sign(g) * (g.abs() - lam * step).clamp_min(0)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        s = z + ((t - 1) / t_next) * (z - z_prev)
        z_prev, t = z, t_next
    return to_img(z).clamp(0, 1)


# ----------------------------------------------------------------- the chapter's experiments
def fit_targets(
    make_net: Callable[[], nn.Module],
    targets: dict[str, Tensor],
    steps: int,
    lr: float = 0.01,
    clean: Tensor | None = None,
    log_every: int = 10,
    progress: bool = True,
    cache: str | None = None,
) -> dict[str, FitResult]:
    """Fit a fresh ``make_net()`` (same seed, same initialization) to each named target; PSNR against ``clean``.

    ``cache`` names the runs in the results cache (:mod:`convbias.cache`): each
    target's fit is stored once done and restored by a rerun with the same network,
    target and settings.
    """
    out = {}
    for name, target in targets.items():
        net = make_net()
        config = dict(
            target_name=name,
            net=net,
            target=target,
            clean=clean,
            steps=steps,
            lr=lr,
            log_every=log_every,
            device=str(next(net.parameters()).device),
        )
        out[name] = resumable(
            cache and f"{cache}-{name}",
            config,
            lambda net=net, target=target, name=name: fit_generator(
                net,
                target,
                steps,
                lr=lr,
                clean=clean,
                log_every=log_every,
                progress=progress,
                desc=name,
            ),
        )
    return out


def compressive_sensing_sweep(
    image: Tensor,
    measurements: list[int],
    make_net: Callable[[], nn.Module],
    steps: int,
    lr: float = 0.01,
    mode: str = "gaussian",
    lam: float = 1e-2,
    baseline_iters: int = 300,
    seed: int = 0,
    progress: bool = True,
    cache: str | None = None,
    executor: Executor | None = None,
) -> dict[str, np.ndarray]:
    """Recover a gray ``(1, 1, H, W)`` image from ``m`` measurements for each ``m``: generator vs sparse-DCT baseline.

    ``mode="gaussian"`` is compressive sensing (``y = A x``, ``A`` with ``N(0, 1/m)`` entries, a random partial
    circulant matrix applied by FFT: :class:`CirculantGaussianMeasurements`); ``"dense-gaussian"`` stores
    an i.i.d. ``A`` (:class:`GaussianMeasurements`, ``4mn`` bytes: small images only);
    ``mode="mask"`` keeps ``m`` random pixels on average (inpainting). The generator
    is fitted to the measurements for ``steps`` iterations (no early stopping: the
    final iterate is reported). Returns ``m``, the generator's final and best PSNR,
    and the baseline's PSNR, as arrays over ``measurements``, and ``net_late``, the median
    PSNR of the last three logged iterates (robust to a single Adam spike at the end). ``cache`` names the
    sweep in the results cache (:mod:`convbias.cache`): each ``m`` is stored once
    done, so an interrupted sweep resumes at the next ``m``; ``executor`` (any
    ``concurrent.futures.Executor``; default: here, in order) runs the ``m`` as separate
    tasks (:mod:`convbias.executors`).
    """
    if image.ndim != 4 or image.shape[:2] != (1, 1):
        raise ValueError(f"image must be gray (1, 1, H, W), got {tuple(image.shape)}")
    if mode not in CS_MODES:
        raise ValueError(f"mode must be one of {CS_MODES}, got {mode!r}")
    h, w = image.shape[-2:]
    rows: dict[str, list] = {
        "m": [],
        "net_final": [],
        "net_best": [],
        "net_late": [],
        "baseline": [],
    }
    ms = progress_bar(measurements, desc=f"{mode} measurements", enabled=progress)
    futures = []
    for m in ms:
        net = make_net()
        recover = functools.partial(
            _recover,
            net,
            image,
            m,
            mode=mode,
            seed=seed,
            steps=steps,
            lr=lr,
            lam=lam,
            baseline_iters=baseline_iters,
        )
        config = dict(
            m=m,
            mode=mode,
            seed=seed,
            net=net,
            image=image,
            steps=steps,
            lr=lr,
            lam=lam,
            baseline_iters=baseline_iters,
            device=str(next(net.parameters()).device),
        )
        futures.append(
            (m, submit(executor, cache and f"{cache}-m{m}", config, recover))
        )
    for m, future in futures:
        final, best, late, baseline = future.result()
        rows["m"].append(m)
        rows["net_final"].append(final)
        rows["net_best"].append(best)
        rows["net_late"].append(late)
        rows["baseline"].append(baseline)
    return {k: np.asarray(v) for k, v in rows.items()}


def _recover(
    net: nn.Module,
    image: Tensor,
    m: int,
    *,
    mode: str,
    seed: int,
    steps: int,
    lr: float,
    lam: float,
    baseline_iters: int,
) -> tuple[float, float, float, float]:
    """One ``m`` of :func:`compressive_sensing_sweep`: the generator's final, best and late PSNR, the baseline's."""
    h, w = image.shape[-2:]
    op = (
        CirculantGaussianMeasurements(h * w, m, seed=seed)
        if mode == "gaussian"
        else GaussianMeasurements(h * w, m, seed=seed)
        if mode == "dense-gaussian"
        else RandomMask((h, w), keep=m / (h * w), seed=seed)
    )
    dev = next(net.parameters()).device
    op.to(dev)
    y = op(image.to(dev))
    res = fit_generator(
        net,
        y,
        steps,
        lr=lr,
        clean=image,
        operator=op,
        log_every=max(steps // 20, 1),
        progress=False,
    )
    base = dct_recover(y, op, (h, w), lam=lam, iters=baseline_iters)
    return res.final_psnr, res.best_psnr, res.late_psnr(), psnr(base.cpu(), image.cpu())


# ----------------------------------------------------------------- early stopping: the experiment and its checks
@dataclass
class DenoisingRun:
    """One generator fitted to a noisy image (past its PSNR peak), the clean image and pure noise.

    ``early_stopping`` says which iterate is the denoised image: the best one by PSNR
    (oracle early stopping, the paper's curves) or the last ones (run to the end).
    """

    fits: dict[str, FitResult]
    noisy_psnr: float
    early_stopping: bool = True

    @property
    def noisy_fit(self) -> FitResult:
        return self.fits["noisy image"]

    @property
    def denoised_psnr(self) -> float:
        """The PSNR of the output kept.

        With early stopping the peak, else where the fit ended (median of the last 3).
        """
        return (
            self.noisy_fit.best_psnr
            if self.early_stopping
            else self.noisy_fit.late_psnr()
        )

    @property
    def decline(self) -> float:
        """Peak PSNR minus the PSNR where the fit ended (median of the last 3 logged iterates), in dB.

        0 when the peak is one of those last 3 records: the fit has not passed its peak.
        """
        fit = self.noisy_fit
        if int(np.searchsorted(fit.step, fit.best_step)) >= len(fit.step) - 3:
            return 0.0
        return fit.best_psnr - fit.late_psnr()

    @property
    def noise_image_ratio(self) -> float:
        """Late loss fitting pure noise over late loss fitting the clean image (same network, same steps)."""
        return (
            self.fits["pure noise"].late_loss() / self.fits["clean image"].late_loss()
        )


def denoising_experiment(
    make_net: Callable[[], nn.Module],
    clean: Tensor,
    noisy: Tensor,
    noise: Tensor,
    steps: int,
    fit_steps: int,
    lr: float = 0.01,
    log_every: int = 25,
    early_stopping: bool = True,
    progress: bool = True,
    cache: str | None = None,
) -> DenoisingRun:
    """Fit ``make_net()`` to ``noisy`` for ``steps`` (PSNR to ``clean`` along the way), and to ``clean`` and ``noise``
    for ``fit_steps``; see :class:`DenoisingRun`."""
    fits = fit_targets(
        make_net,
        {"noisy image": noisy},
        steps,
        lr=lr,
        clean=clean,
        log_every=log_every,
        progress=progress,
        cache=cache,
    )
    fits.update(
        fit_targets(
            make_net,
            {"clean image": clean, "pure noise": noise},
            fit_steps,
            lr=lr,
            clean=clean,
            log_every=log_every,
            progress=progress,
            cache=cache,
        )
    )
    return DenoisingRun(fits, psnr(noisy.cpu(), clean.cpu()), early_stopping)


def early_stopping_checks(
    run: DenoisingRun,
    gain_db: float = 5.0,
    decline_db: float = 1.0,
    ratio: float = 10.0,
) -> list:
    """The denoising claims as :class:`convbias.checks.Check` objects (chapter 4)."""
    from .checks import at_least

    return [
        at_least(
            "denoise_gain_db",
            run.denoised_psnr - run.noisy_psnr,
            gain_db,
            f"the early-stopped image is at least {gain_db:g} dB above the noisy input",
        ),
        at_least(
            "psnr_decline_db",
            run.decline,
            decline_db,
            f"run past its peak, the fit loses at least {decline_db:g} dB (it fits the noise)",
        ),
        at_least(
            "noise_image_ratio",
            run.noise_image_ratio,
            ratio,
            f"the generator fits the image over {ratio:g}x better than noise at a fixed step",
            scale="ratio",
        ),
    ]


def architecture_checks(
    ratios: dict[str, float], fixed: float = 10.0, trainable: float = 3.0
) -> list:
    """Noise/image late-loss ratios by architecture.

    Fixed interpolation must exceed ``fixed``, trainable filters stay below ``trainable``.
    """
    from .checks import at_least, at_most

    out = []
    for name in ("deep_decoder", "fixed_kernel"):
        if name in ratios:
            out.append(
                at_least(
                    f"{name}_ratio",
                    ratios[name],
                    fixed,
                    f"{name.replace('_', ' ')}: noise fitted over {fixed:g}x worse than the image",
                    scale="ratio",
                )
            )
    for name in ("conv3x3", "transposed"):
        if name in ratios:
            out.append(
                at_most(
                    f"{name}_ratio",
                    ratios[name],
                    trainable,
                    f"{name}: noise fitted about as well as the image (ratio under {trainable:g})",
                    scale="ratio",
                )
            )
    return out


def late_drop(result: FitResult, records: int = 5) -> float:
    """Peak PSNR minus the mean PSNR of the last ``records`` logged iterates (robust to single Adam spikes)."""
    return float(result.best_psnr - np.mean(result.psnr[-records:]))


def overfitting_checks(
    over: dict[int, FitResult], drop_db: float = 1.0, gap_db: float = 1.0
) -> list:
    """The widest network loses PSNR after its peak, more than the narrowest one."""
    from .checks import at_least

    wide, narrow = late_drop(over[max(over)]), late_drop(over[min(over)])
    return [
        at_least(
            "overfit_drop_db",
            wide,
            drop_db,
            f"k={max(over)} loses at least {drop_db:g} dB after its peak",
        ),
        at_least(
            "overfit_gap_db",
            wide - narrow,
            gap_db,
            f"k={max(over)} over-fits at least {gap_db:g} dB more than k={min(over)}",
        ),
    ]


def compressive_sensing_checks(
    cs: dict[str, np.ndarray],
    method: str = "net_late",
    rise_db: float = 3.0,
    over_baseline_db: float = 3.0,
) -> list:
    """Compressive-sensing claims for the recovery ``cs[method]`` (the deep decoder's late PSNR by default).

    Both compare with the sparse-DCT baseline, so the baseline itself (``method="baseline"``) fails
    them: from the fewest to the most measurements the recovery gains ``rise_db`` more than the
    baseline does, and at the most measurements it is ``over_baseline_db`` above the baseline.
    """
    from .checks import at_least

    got, base = (
        np.asarray(cs[method], dtype=float),
        np.asarray(cs["baseline"], dtype=float),
    )
    return [
        at_least(
            "cs_rise_vs_baseline_db",
            float((got[-1] - got[0]) - (base[-1] - base[0])),
            rise_db,
            f"more measurements help the recovery at least {rise_db:g} dB more than the sparse-DCT baseline",
        ),
        at_least(
            "cs_over_baseline_db",
            float(got[-1] - base[-1]),
            over_baseline_db,
            f"at the most measurements the recovery beats the sparse-DCT baseline by {over_baseline_db:g} dB",
        ),
    ]
