"""The eFCN/eLCN embeddings are exact, refuse what they cannot embed, and train."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from convbias.efcn import (
    EmbeddedLinear,
    FlatMaxPool,
    MaskedLinear,
    SparseLinear,
    UnsupportedModule,
    conv_to_dense,
    identity_basis_matrix,
    reinitialized_fcn,
    subspace_distance,
    to_fcn,
    to_lcn,
)
from convbias.models import count_parameters
from convbias.models.canvas_cnn import canvas_cnn, skinny_cnn

CONV_CONFIGS = [
    dict(kernel_size=3, padding=1),
    dict(kernel_size=4, stride=2, padding=2),
    dict(kernel_size=3, stride=2, dilation=2),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(0, 1)),
    dict(kernel_size=3, padding="same", dilation=2),
    dict(kernel_size=3, padding=1, groups=2),
    dict(kernel_size=3, padding=1, groups=4, bias=False),
    dict(kernel_size=3, padding=1, padding_mode="reflect"),
    dict(kernel_size=3, padding=2, padding_mode="replicate"),
    dict(kernel_size=3, padding=1, padding_mode="circular", stride=2),
]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _conv(dim: int, cfg: dict) -> nn.Module:
    cfg = dict(cfg)
    if dim == 1:
        cfg = {k: (v[-1] if isinstance(v, tuple) else v) for k, v in cfg.items()}
    return (nn.Conv1d if dim == 1 else nn.Conv2d)(4, 8, **cfg)


@pytest.mark.parametrize("dim,cfg", list(itertools.product([1, 2], CONV_CONFIGS)))
def test_conv_matrix_equals_identity_basis_oracle(dim, cfg):
    torch.manual_seed(0)
    conv = _conv(dim, cfg)
    shape = (4, 13) if dim == 1 else (4, 9, 10)
    W, b, out_shape = conv_to_dense(conv, shape)
    A, c = identity_basis_matrix(lambda x: conv.double()(x), shape)
    conv.float()
    assert W.shape == A.shape and tuple(out_shape) == tuple(
        conv(torch.zeros(1, *shape)).shape[1:]
    )
    assert torch.allclose(W.double(), A, atol=1e-6)
    expected_bias = c if conv.bias is not None else torch.zeros_like(c)
    got_bias = b.double() if b is not None else torch.zeros_like(c)
    assert torch.allclose(got_bias, expected_bias, atol=1e-6)


def _model(dim: int, cfg: dict, shape) -> nn.Sequential:
    BN = nn.BatchNorm1d if dim == 1 else nn.BatchNorm2d
    Avg = nn.AvgPool1d if dim == 1 else nn.AvgPool2d
    Max = nn.MaxPool1d if dim == 1 else nn.MaxPool2d
    bn, bn2 = BN(8), BN(8)
    for b in (bn, bn2):  # real running statistics, not the identity defaults
        b.running_mean.normal_()
        b.running_var.uniform_(0.5, 2.0)
        b.weight.data.normal_()
        b.bias.data.normal_()
    model = nn.Sequential(
        _conv(dim, cfg),
        bn,
        nn.Tanh(),
        nn.Sequential(Max(2, ceil_mode=True), nn.Dropout(0.5)),
        bn2,
        nn.GELU(),
        Avg(2, ceil_mode=True),
        nn.Flatten(),
    )
    model.eval()
    with torch.no_grad():
        n = model(torch.zeros(1, *shape)).shape[1]
    model.append(nn.Linear(n, 5))
    model.append(nn.LeakyReLU(0.1))
    model.append(nn.Linear(5, 3))
    return model.eval()


@pytest.mark.parametrize("dim,cfg", list(itertools.product([1, 2], CONV_CONFIGS)))
@pytest.mark.parametrize(
    "embed,sparse", [(to_fcn, False), (to_fcn, True), (to_lcn, False)]
)
def test_embedding_is_exact(dim, cfg, embed, sparse):
    torch.manual_seed(1)
    shape = (4, 13) if dim == 1 else (4, 9, 10)
    model = _model(dim, cfg, shape)
    net = embed(model, shape, sparse=sparse)
    x = torch.randn(16, *shape)
    with torch.no_grad():
        assert _rel(net(x), model(x)) < 1e-5


def test_chapter_models_exact_and_paper_parameter_count():
    torch.manual_seed(0)
    cnn = canvas_cnn((1, 16, 16), width=8).eval()
    net = to_fcn(cnn, (1, 16, 16))
    x = torch.rand(32, 1, 16, 16)
    with torch.no_grad():
        assert _rel(net(x), cnn(x)) < 1e-5
    # conv layers: 256 -> 8*16*16, 8*8*8 -> 8*8*8; linear 8*4*4 -> 10 (weights + biases)
    assert count_parameters(net) == 256 * 2048 + 2048 + 512 * 512 + 512 + 128 * 10 + 10
    assert count_parameters(skinny_cnn()) == 143_178  # the paper's Skinny CNN


def test_layers_kinds_and_maxpool_kept_as_operator():
    cnn = canvas_cnn((1, 8, 8), width=4).eval()
    net = to_fcn(cnn, (1, 8, 8))
    kinds = [type(m) for m in net]
    assert kinds == [
        nn.Flatten,
        EmbeddedLinear,
        nn.ReLU,
        FlatMaxPool,
        EmbeddedLinear,
        nn.ReLU,
        FlatMaxPool,
        EmbeddedLinear,
    ]
    assert isinstance(to_lcn(cnn, (1, 8, 8))[1], MaskedLinear)
    assert isinstance(to_fcn(cnn, (1, 8, 8), sparse=True)[1], SparseLinear)


@pytest.mark.parametrize(
    "module",
    [nn.LSTM(4, 4), nn.Softmax(dim=1), nn.LayerNorm(8), nn.Upsample(scale_factor=2)],
)
def test_unsupported_module_is_named(module):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), module)
    with pytest.raises(UnsupportedModule, match=type(module).__name__):
        to_fcn(model, (1, 6, 6))


def test_refusals_explain_what_to_do():
    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(UnsupportedModule, match="nn.Sequential"):
        to_fcn(Custom(), (1, 4, 4))
    with pytest.raises(UnsupportedModule, match="track_running_stats"):
        to_fcn(
            nn.Sequential(
                nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, track_running_stats=False)
            ),
            (1, 6, 6),
        )
    with pytest.raises(ValueError, match="Flatten"):
        to_fcn(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(4, 3)), (1, 6, 6))
    with pytest.raises(ValueError, match="input_shape"):
        to_fcn(nn.Sequential(nn.Conv2d(3, 2, 3)), (1, 6, 6))


def test_gradients_flow_and_subspace_distance():
    torch.manual_seed(0)
    cnn = canvas_cnn((1, 8, 8), width=4).eval()
    x, y = torch.rand(20, 1, 8, 8), torch.randint(0, 10, (20,))
    for embed in (to_fcn, to_lcn):
        net = embed(cnn, (1, 8, 8))
        d0 = subspace_distance(net)
        assert float(d0["off_support"]) == 0.0 and float(d0["off_tying"]) < 1e-12
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        g = net[1].weight.grad
        assert g is not None and g.abs().sum() > 0
        with torch.no_grad():
            for p in net.parameters():
                p -= 0.5 * p.grad
        d1 = subspace_distance(net)
        if embed is to_fcn:  # a dense gradient leaves the conv's support and tying
            assert float(d1["off_support"]) > 0 and float(d1["off_tying"]) > float(
                d1["off_support"]
            )
        else:  # the eLCN keeps its support but unties its weights
            assert float(d1["off_support"]) == 0.0 and float(d1["off_tying"]) > 0
    sp = to_fcn(cnn, (1, 8, 8), sparse=True)
    nn.functional.cross_entropy(sp(x), y).backward()
    assert sp[1].values.grad is not None and sp[1].values.grad.abs().sum() > 0


def test_subspace_distance_known_value():
    """Moving one off-support entry by 1 and nothing else: off_support = 1 / (||W||^2 + 1)."""
    conv = nn.Conv1d(1, 1, 2, bias=False)
    conv.weight.data[:] = torch.tensor([[[1.0, 2.0]]])
    net = to_fcn(nn.Sequential(conv), (1, 4))
    W = net[
        1
    ].weight.data  # 3 x 4 banded matrix with rows (1 2 0 0), (0 1 2 0), (0 0 1 2)
    assert torch.equal(W, torch.tensor([[1.0, 2, 0, 0], [0, 1, 2, 0], [0, 0, 1, 2]]))
    W[2, 0] = 1.0
    d = subspace_distance(net)
    assert float(d["off_support"]) == pytest.approx(1 / 16)
    W[2, 0] = 0.0
    W[0, 0] = (
        3.0  # taps (1 -> entries 3, 1, 1; mean 5/3): residual 2 * (2/3)^2 + (4/3)^2 = 8/3
    )
    d = subspace_distance(net)
    assert float(d["off_tying"]) == pytest.approx((8 / 3) / (9 + 1 + 1 + 4 * 3))


def test_reinitialized_fcn_has_same_architecture_and_fresh_weights():
    cnn = canvas_cnn((1, 8, 8), width=4)
    net = to_fcn(cnn, (1, 8, 8))
    fcn = reinitialized_fcn(net, seed=0)
    assert [type(m) for m in fcn] == [
        nn.Flatten,
        nn.Linear,
        nn.ReLU,
        FlatMaxPool,
        nn.Linear,
        nn.ReLU,
        FlatMaxPool,
        nn.Linear,
    ]
    assert count_parameters(fcn) == count_parameters(net)
    assert float(subspace_distance(net)["off_support"]) == 0.0
    assert (fcn[1].weight == 0).float().mean() < 0.01  # dense, unlike the eFCN


@pytest.mark.parametrize("embed", [to_fcn, to_lcn])
def test_reshape_only_modules_anywhere(embed):
    """Flatten/Unflatten/Identity/Dropout before, inside and after a composed affine run keep the map exact,
    and a conv followed only by reshapes keeps its conv support (a masked layer in the eLCN)."""
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Flatten(),
        nn.Unflatten(1, (2, 6, 6)),
        nn.Identity(),
        nn.AvgPool2d(2),
        nn.Dropout(),
        nn.Conv2d(2, 3, 3, padding=1),
        nn.Dropout(),
        nn.Flatten(),
        nn.Unflatten(1, (3, 3, 3)),
        nn.ReLU(),
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Flatten(),
        nn.Dropout(),
        nn.Unflatten(1, (4, 3, 3)),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(36, 4),
    ).eval()
    net = embed(model, (2, 6, 6))
    x = torch.randn(8, 2, 6, 6)
    with torch.no_grad():
        assert _rel(net(x), model(x)) < 1e-5
    dense = [m for m in net if isinstance(m, EmbeddedLinear)]
    assert len(dense) == 3
    assert dense[0].conv_support() is None  # pooled then convolved: no longer one conv
    assert dense[1].conv_support() is not None  # conv then reshapes only: still a conv
    assert isinstance(dense[1], MaskedLinear) == (embed is to_lcn)
