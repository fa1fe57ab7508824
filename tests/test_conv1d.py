"""Deep 1-D circular conv nets, channel normalization and the end-to-end filter (Chapter 3)."""

from __future__ import annotations

from functools import reduce

import numpy as np
import pytest
import torch
from torch import nn

from convbias.data.signals import random_input, step_signal
from convbias.gradients import (
    circular_convolve,
    end_to_end_filter,
    end_to_end_spectrum,
    energy_init_finding,
    layer_gradient_norms,
    linear_net_gradient,
    smaller_rate_finding,
)
from convbias.models.conv1d import (
    ChannelBias1d,
    ChannelNorm1d,
    DeepConv1d,
    energy_gain,
)
from convbias.one_example import fit_one_example, member_losses


@pytest.fixture(autouse=True)
def one_thread():
    """These nets are tiny: a second intra-op thread only adds synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- channel normalization
def test_channel_norm_zero_mean_unit_variance_per_channel():
    torch.manual_seed(0)
    x = 3.0 + 5.0 * torch.randn(2, 6, 200) * torch.arange(1, 7).reshape(1, 6, 1)
    y = ChannelNorm1d(6)(x)
    mean = y.mean(-1)
    var = y.var(-1, correction=0)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-5)
    assert torch.allclose(
        var, torch.ones_like(var), atol=1e-3
    )  # eps = 1e-5 against variances >= 25


def test_channel_norm_unbiased_variance_is_the_n_minus_1_version():
    x = torch.tensor([[[1.0, 2.0, 3.0, 4.0]]])
    y = ChannelNorm1d(1, eps=0.0, unbiased=True)(x)
    # unbiased var of 1..4 = 5/3; (x - 2.5) / sqrt(5/3)
    expected = (torch.tensor([1.0, 2.0, 3.0, 4.0]) - 2.5) / np.sqrt(5 / 3)
    assert torch.allclose(y[0, 0], expected, atol=1e-6)


def test_channel_norm_bias_is_added_after_normalizing():
    norm = ChannelNorm1d(3)
    with torch.no_grad():
        norm.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    y = norm(torch.randn(1, 3, 64))
    assert torch.allclose(y.mean(-1), torch.tensor([[0.5, -1.0, 2.0]]), atol=1e-5)


def test_channel_norm_equals_batch_norm_on_a_batch_of_one():
    torch.manual_seed(1)
    x = torch.randn(1, 5, 37) * 4 + 1
    cn = ChannelNorm1d(5)
    bn = nn.BatchNorm1d(5, eps=1e-5, track_running_stats=False)
    with torch.no_grad():
        cn.bias.copy_(torch.randn(5))
        bn.bias.copy_(cn.bias)
    assert torch.allclose(cn(x), bn(x), atol=1e-5)
    # the gradients agree too
    gx_cn = torch.autograd.grad(cn(x).pow(3).sum(), cn.bias)[0]
    gx_bn = torch.autograd.grad(bn(x).pow(3).sum(), bn.bias)[0]
    assert torch.allclose(gx_cn, gx_bn, atol=1e-4)


def test_channel_norm_matches_a_per_channel_loop():
    torch.manual_seed(2)
    x = torch.randn(1, 4, 50)
    looped = torch.stack(
        [
            (x[0, c] - x[0, c].mean()) / torch.sqrt(x[0, c].var(correction=0) + 1e-5)
            for c in range(4)
        ]
    )
    assert torch.allclose(ChannelNorm1d(4)(x)[0], looped, atol=1e-6)


def test_bias_control_only_adds_the_bias_and_bad_shapes_are_refused():
    ctrl = ChannelBias1d(2)
    with torch.no_grad():
        ctrl.bias.copy_(torch.tensor([1.0, -2.0]))
    x = torch.randn(1, 2, 8)
    assert torch.allclose(
        ctrl(x) - x, torch.tensor([1.0, -2.0]).reshape(1, 2, 1).expand(1, 2, 8)
    )
    with pytest.raises(ValueError, match="expected"):
        ChannelNorm1d(3)(torch.randn(1, 2, 8))


# ----------------------------------------------------------------------------- the nets
def test_delta_filters_make_the_linear_net_the_identity():
    net = DeepConv1d(4, kernel_size=5, norm="none", head="none")
    with torch.no_grad():
        for conv in net.conv_layers():
            conv.weight.zero_()
            conv.weight[0, 0, 2] = 1.0  # centre tap
    x = torch.randn(1, 1, 16)
    assert torch.allclose(net(x), x)


def test_convolution_is_circular():
    net = DeepConv1d(1, kernel_size=3, norm="none", head="none")
    with torch.no_grad():
        net.conv_layers()[0].weight.copy_(
            torch.tensor([[[1.0, 0.0, 0.0]]])
        )  # y[i] = x[i - 1]
    x = torch.arange(6.0).reshape(1, 1, 6)
    assert torch.equal(net(x)[0, 0], torch.tensor([5.0, 0.0, 1.0, 2.0, 3.0, 4.0]))


def test_linear_net_is_one_convolution_with_the_end_to_end_filter():
    torch.manual_seed(3)
    net = DeepConv1d(6, kernel_size=7, norm="none", head="none")
    x = torch.randn(1, 1, 32)
    h = end_to_end_filter(net.filters()[:, 0, 0, 0], 32)
    assert torch.allclose(net(x)[0, 0], circular_convolve(h, x[0, 0]), atol=1e-5)
    spectrum = end_to_end_spectrum(net.filters()[:, 0, 0, 0], 32)
    assert spectrum.shape == (17,)


def test_spectra_of_several_members_at_once():
    torch.manual_seed(9)
    net = DeepConv1d(5, kernel_size=5, members=3)
    w = net.filters()[:, :, 0, 0].detach()  # (L, E, k)
    together = end_to_end_spectrum(w, 20)
    assert together.shape == (3, 11)
    for e in range(3):
        assert torch.allclose(together[e], end_to_end_spectrum(w[:, e], 20), atol=1e-6)


def test_end_to_end_spectrum_of_a_known_filter():
    # two layers of the moving sum [1, 1, 1]: |DFT| = |1 + 2 cos(2 pi f / n)| each, squared overall
    w = torch.ones(2, 3)
    n = 12
    f = torch.arange(n // 2 + 1)
    expected = (1 + 2 * torch.cos(2 * torch.pi * f / n)) ** 2
    assert torch.allclose(end_to_end_spectrum(w, n).abs(), expected.abs(), atol=1e-5)


def test_gradient_of_the_linear_net_matches_the_closed_form():
    torch.manual_seed(4)
    n, k, L = 10, 3, 4
    net = DeepConv1d(L, kernel_size=k, norm="none", head="none")
    x, y = torch.randn(1, 1, n), torch.randn(1, 1, n)
    loss = (net(x) - y).pow(2).mean()
    autograd = torch.stack(
        [
            g[0, 0]
            for g in torch.autograd.grad(loss, [c.weight for c in net.conv_layers()])
        ]
    )
    closed = linear_net_gradient(net.filters()[:, 0, 0, 0].detach(), x, y)
    assert torch.allclose(autograd, closed, atol=1e-5)

    # and both agree with dense circulant matrices: dL/dw_l[j] = (2/n) r^T A_>l S_j A_<l x
    W = net.filters()[:, 0, 0, 0].detach().double().numpy()

    def circulant(kernel):
        M = np.zeros((n, n))
        for i in range(n):
            for j, wj in enumerate(kernel):
                M[i, (i + j - k // 2) % n] += wj
        return M

    mats = [circulant(w) for w in W]
    xv, yv = x.double().numpy().ravel(), y.double().numpy().ravel()

    def product(ms):  # ms[-1] @ ... @ ms[0]
        return reduce(lambda acc, m: m @ acc, ms, np.eye(n))

    r = product(mats) @ xv - yv
    dense = np.zeros((L, k))
    for l in range(L):
        after, before = product(mats[l + 1 :]), product(mats[:l])
        for j in range(k):
            dense[l, j] = 2 / n * r @ after @ circulant(np.eye(k)[j]) @ before @ xv
    np.testing.assert_allclose(closed.double().numpy(), dense, atol=1e-5)


def test_members_are_independent_networks():
    torch.manual_seed(5)
    net = DeepConv1d(
        3, channels=2, kernel_size=3, activation="relu", in_channels=2, members=3
    )
    x = random_input(2, 20, seed=1)
    out = net(x)
    assert out.shape == (1, 3, 20)
    for e in range(3):
        assert torch.allclose(out[:, e : e + 1], net.member(e)(x), atol=1e-6)


def test_member_gradients_are_their_own_gradients():
    torch.manual_seed(6)
    net = DeepConv1d(3, kernel_size=5, members=2)
    x, y = random_input(1, 16, seed=2), step_signal(16)
    layer_norms = layer_gradient_norms(net, x, y)
    assert layer_norms.shape == (3, 2)
    for e in range(2):
        lone = net.member(e)
        assert torch.allclose(
            layer_norms[:, e], layer_gradient_norms(lone, x, y)[:, 0], rtol=1e-4
        )


def test_init_follows_pytorch_default_fan_in():
    torch.manual_seed(7)
    net = DeepConv1d(200, kernel_size=15, norm="none", members=50)
    w = net.filters()
    assert w.abs().max() <= 1 / np.sqrt(15)
    # U(-a, a) has variance a^2 / 3 = 1 / (3 k): each layer's energy sum_j w_j^2 is 1/3 on average
    assert abs(w.pow(2).sum(-1).mean().item() - 1 / 3) < 0.01


# ----------------------------------------------------------------------------- fitting one example
def test_energy_init_is_the_default_draw_times_the_gain_and_keeps_the_energy():
    assert energy_gain("linear") == pytest.approx(3**0.5)
    assert energy_gain("relu") == pytest.approx(6**0.5)
    torch.manual_seed(3)
    default = DeepConv1d(4, kernel_size=15, norm="bias", members=500)
    torch.manual_seed(3)
    energy = DeepConv1d(4, kernel_size=15, norm="bias", members=500, init="energy")
    assert torch.allclose(energy.filters(), default.filters() * 3**0.5)
    # a layer keeps a signal's expected energy: sum_j h[j]^2 has mean 1 (default: 1/3)
    assert energy.filters().pow(2).sum(-1).mean().item() == pytest.approx(1.0, rel=0.03)
    assert energy.member(7).init == "energy"
    with pytest.raises(ValueError, match="unknown init"):
        DeepConv1d(2, init="kaiming")


def test_relu_energy_init_keeps_the_energy_through_depth():
    # He init: after 20 ReLU layers the signal's mean square is of order one (random draws
    # spread it around the expected 1); the default init divides it by about 6 per layer
    torch.manual_seed(0)
    x = torch.randn(1, 32, 256)
    for init, low, high in (("energy", 0.01, 10.0), ("default", 0.0, 1e-10)):
        net = DeepConv1d(
            20,
            channels=32,
            kernel_size=3,
            activation="relu",
            norm="none",
            head="none",
            out_channels=32,
            init=init,
        )
        with torch.no_grad():
            energy = net(x).pow(2).mean().item() / x.pow(2).mean().item()
        assert low <= energy <= high, (init, energy)


def test_energy_init_finding_is_worded_from_the_counts():
    assert "not the whole explanation" in energy_init_finding(0, 9, 12)
    assert "fewer than the 9 with CN" in energy_init_finding(3, 9, 12)
    assert "does what CN does" in energy_init_finding(9, 9, 12)
    with pytest.raises(ValueError, match="escape counts"):
        energy_init_finding(13, 9, 12)
    none = smaller_rate_finding({0.01: 0, 0.003: 0}, 4, 5)
    assert "0.01 / 0.003" in none and "in 0 / 0 of 4 draws" in none
    assert "does not rescue" in none
    assert "the step size matters" in smaller_rate_finding({0.01: 1, 0.003: 0}, 4, 5)
    with pytest.raises(ValueError, match="escape count"):
        smaller_rate_finding({0.01: 5}, 4, 5)


def test_member_losses_and_shapes():
    y = torch.zeros(1, 1, 4)
    out = torch.tensor([[[1.0] * 4, [2.0] * 4]])
    assert torch.allclose(member_losses(out, y, 2), torch.tensor([1.0, 4.0]))
    with pytest.raises(ValueError, match="member"):
        member_losses(out, y, 3)


def test_fit_one_example_trains_each_member_like_a_lone_net():
    torch.manual_seed(8)
    net = DeepConv1d(3, kernel_size=5, members=2)
    lone = [net.member(e) for e in range(2)]
    x, y = random_input(1, 32, seed=3), step_signal(32)
    hist = fit_one_example(net, y, x, steps=40, log_every=10)
    assert hist["loss"].shape == (5, 2) and hist["step"].tolist() == [0, 10, 20, 30, 40]
    for e, model in enumerate(
        lone
    ):  # the same SGD(lr 0.1, momentum 0.9) run, one net at a time
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for _ in range(40):
            loss = (model(x) - y).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        final = (model(x) - y).pow(2).mean().item()
        assert abs(hist["loss"][-1, e] - final) < 1e-5
        assert hist["loss"][-1, e] < hist["loss"][0, e]


def test_signals():
    assert step_signal(6).flatten().tolist() == [1, 1, 1, 0, 0, 0]
    a, b = random_input(3, 10, seed=4), random_input(3, 10, seed=4)
    assert torch.equal(a, b) and a.shape == (1, 3, 10) and 0 <= a.min() and a.max() <= 1
    with pytest.raises(ValueError):
        step_signal(8, jump=8)
