"""The case-study CNN: Huberized ReLU, the fixed-second-layer network, its gradient and GD."""

import pytest
import torch
import torch.nn.functional as F

from convbias.data.patches import PatchDataModel
from convbias.intrinsic_dimension import run_sigma_sweep
from convbias.models.patch_cnn import HuberizedReLU, PatchCNN, huberized_relu
from convbias.train import fit_gd

KAPPA = 0.5


def test_huberized_relu_known_values():
    z = torch.tensor([-1.0, 0.0, 0.25, 0.5, 1.0, 3.0])
    expected = torch.tensor(
        [0.0, 0.0, 0.25**2 / (2 * KAPPA), KAPPA / 2, 1.0 - KAPPA / 2, 3.0 - KAPPA / 2]
    )
    torch.testing.assert_close(huberized_relu(z, KAPPA), expected)
    torch.testing.assert_close(HuberizedReLU(KAPPA)(z), expected)


@pytest.mark.parametrize("kink", [0.0, KAPPA])
def test_huberized_relu_value_and_gradient_are_continuous_at_the_kinks(kink):
    eps = 1e-4
    z = torch.tensor([kink - eps, kink + eps], dtype=torch.float64, requires_grad=True)
    value = huberized_relu(z, KAPPA)
    (grad,) = torch.autograd.grad(value.sum(), z)
    assert abs(value[1] - value[0]) < 2 * eps * (kink / KAPPA + 1e-9) + 1e-7
    assert (
        abs(grad[1] - grad[0]) < 1e-3
    )  # derivative clamp(z, 0, kappa) / kappa is continuous
    assert grad[0].item() == pytest.approx(kink / KAPPA, abs=1e-3)


def test_huberized_relu_derivative_is_the_clamped_ramp():
    z = torch.linspace(-1, 2, 301, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(huberized_relu(z, KAPPA).sum(), z)
    torch.testing.assert_close(grad, z.detach().clamp(0, KAPPA) / KAPPA)


def test_huberized_relu_rejects_bad_kappa():
    with pytest.raises(ValueError):
        huberized_relu(torch.zeros(2), 0.0)


def test_forward_matches_the_formula_written_as_loops():
    torch.manual_seed(0)
    net = PatchCNN(d=5, m=3, seeds=[1, 2], kappa=KAPPA, init_std=0.7)
    X = torch.randn(4, 3, 5)
    out = net(X)
    assert out.shape == (2, 4)
    W = net.weight.detach()
    for e in range(2):
        for i in range(4):
            F_pos = (
                sum(
                    huberized_relu(W[e, 0, r] @ X[i, p], KAPPA)
                    for r in range(3)
                    for p in range(3)
                )
                / 3
            )
            F_neg = (
                sum(
                    huberized_relu(W[e, 1, r] @ X[i, p], KAPPA)
                    for r in range(3)
                    for p in range(3)
                )
                / 3
            )
            assert out[e, i].item() == pytest.approx((F_pos - F_neg).item(), abs=1e-5)


def test_only_the_first_layer_is_trained():
    net = PatchCNN(d=7, m=4, seeds=[0, 1, 2])
    assert [n for n, _ in net.named_parameters()] == ["weight"]
    assert net.weight.numel() == 3 * 2 * 4 * 7


@pytest.mark.parametrize("shared", [True, False])
def test_written_out_gradient_equals_autograd(shared):
    torch.manual_seed(0)
    net = PatchCNN(d=6, m=4, seeds=[3, 4], kappa=KAPPA, init_std=0.5).double()
    X = (
        torch.randn(5, 3, 6, dtype=torch.float64)
        if shared
        else torch.randn(2, 5, 3, 6, dtype=torch.float64)
    )
    y = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0], dtype=torch.float64)
    loss, grad = net.loss_and_grad(X, y)
    ref_loss = F.softplus(-y * net(X)).mean(-1)
    (ref_grad,) = torch.autograd.grad(ref_loss.sum(), net.weight)
    torch.testing.assert_close(loss, ref_loss.detach())
    torch.testing.assert_close(grad, ref_grad, atol=1e-10, rtol=1e-8)


def test_members_train_independently():
    data = PatchDataModel(d=20, P=3, K=2, sigma_p=0.5).sample(30, seed=0)
    both = PatchCNN(d=20, m=5, seeds=[0, 1])
    alone = PatchCNN(d=20, m=5, seeds=[1])
    fit_gd(both, data.X, data.y, lr=0.5, steps=20, progress=False)
    fit_gd(alone, data.X, data.y, lr=0.5, steps=20, progress=False)
    torch.testing.assert_close(both.weight[1], alone.weight[0], atol=1e-5, rtol=1e-5)


def test_gd_learns_the_signal_span_on_clean_data():
    model = PatchDataModel(d=40, P=3, K=2, sigma_p=0.0)
    sweep = run_sigma_sweep(
        model,
        [0.0],
        [0],
        n_train=60,
        n_test=200,
        m=10,
        steps=100,
        log_every=50,
        progress=False,
    )
    assert sweep.test_acc.min() == 1.0
    assert (
        sweep.signal_energy().min() > 0.99
    )  # the filters live in the 2K-dim signal span
    assert sweep.filter_srank.max() <= 4.0 + 1e-6  # hence stable rank <= 2K = 4
    assert sweep.along_training("filter_srank").shape == (3, 1, 1)


# ----------------------------------------------------------------------------- the one-conv CNN for real images
from convbias.models.one_conv import OneConvCNN, first_layer_filters  # noqa: E402


def test_one_conv_cnn_shapes_and_filter_matrix():
    net = OneConvCNN(
        in_channels=3, n_classes=4, width=6, kernel=5, pool=4, image_size=32
    )
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
    assert net.first_layer_filters().shape == (6, 3 * 25)
    stacked = {"conv.weight": torch.stack([net.conv.weight, 2 * net.conv.weight])}
    torch.testing.assert_close(
        first_layer_filters(stacked)[1], 2 * net.first_layer_filters()
    )


def test_one_conv_cnn_initial_scale():
    torch.manual_seed(0)
    ref = OneConvCNN(first_init_scale=1.0).conv.weight
    torch.manual_seed(0)
    small = OneConvCNN(first_init_scale=0.1).conv.weight
    torch.testing.assert_close(small, 0.1 * ref)
    with pytest.raises(ValueError):
        OneConvCNN(kernel=5, pool=30, image_size=28)
