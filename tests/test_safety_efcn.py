"""to_fcn embeds exactly or refuses: a zoo of small models against the identity-basis oracle, memory, input size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convbias import efcn
from convbias.efcn import (
    SparseLinear,
    UnsupportedModule,
    identity_basis_matrix,
    parameter_bytes,
    to_fcn,
    to_lcn,
)

D = torch.float64


class Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


class DoubledReLU(nn.ReLU):
    def forward(self, x):
        return 2 * F.relu(x)


class Functional(nn.Module):
    def forward(self, x):
        return torch.tanh(x)


def _hooked():
    act = nn.ReLU()
    act.register_forward_hook(lambda mod, inp, out: out * 3)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), act, nn.Flatten(), nn.Linear(2 * 36, 3)
    )


def _zoo():
    torch.manual_seed(0)
    act, conv = nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)
    bn = nn.BatchNorm2d(2)
    bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
    return {  # name: (model, input shape, exact?)
        "shared activation": (
            nn.Sequential(
                nn.Conv2d(1, 2, 3, padding=1),
                act,
                nn.Conv2d(2, 2, 3, padding=1),
                act,
                nn.Flatten(),
                nn.Linear(72, 3),
            ),
            (1, 6, 6),
            True,
        ),
        "shared conv": (
            nn.Sequential(nn.Conv2d(1, 2, 1), conv, nn.ReLU(), conv, nn.Tanh()),
            (1, 6, 6),
            True,
        ),
        "nested containers": (
            nn.Sequential(
                nn.Sequential(
                    nn.Conv2d(1, 3, 3, stride=2, padding_mode="circular", padding=1),
                    nn.ReLU(),
                ),
                nn.Sequential(nn.Sequential(nn.Conv2d(3, 2, 3, groups=1)), bn),
                nn.AvgPool2d(1),
                nn.Flatten(),
                nn.Linear(8, 4),
            ),
            (1, 7, 7),
            True,
        ),
        "pooling before a conv": (
            nn.Sequential(
                nn.AvgPool2d(2),
                nn.Conv2d(1, 2, 3, padding=1),
                nn.MaxPool2d(2),
                nn.Flatten(),
                nn.Linear(8, 2),
            ),
            (1, 8, 8),
            True,
        ),
        "affine 1-d": (
            nn.Sequential(
                nn.Conv1d(2, 3, 3, padding=2, dilation=2),
                nn.AvgPool1d(2),
                nn.Flatten(),
                nn.Linear(15, 4),
            ),
            (2, 10),
            True,
        ),
        "residual block": (
            nn.Sequential(
                nn.Conv2d(1, 2, 3, padding=1),
                Residual(nn.Conv2d(2, 2, 3, padding=1), nn.ReLU()),
            ),
            (1, 6, 6),
            False,
        ),
        "custom forward of a supported layer": (
            nn.Sequential(nn.Conv2d(1, 2, 3), DoubledReLU()),
            (1, 6, 6),
            False,
        ),
        "functional module": (
            nn.Sequential(nn.Conv2d(1, 2, 3), Functional()),
            (1, 6, 6),
            False,
        ),
        "forward hook": (_hooked(), (1, 6, 6), False),
    }


@pytest.mark.parametrize("name", list(_zoo()))
@pytest.mark.parametrize(
    "embed, sparse", [(to_fcn, False), (to_fcn, True), (to_lcn, False)]
)
def test_zoo_exact_or_refused(name, embed, sparse):
    model, shape, exact = _zoo()[name]
    model = model.to(D).eval()
    if not exact:
        with pytest.raises(UnsupportedModule, match=r"module|the model"):
            embed(model, shape, sparse=sparse)
        return
    net = embed(model, shape, sparse=sparse)
    x = torch.randn(16, *shape, dtype=D)
    with torch.no_grad():
        ref, got = model(x).reshape(16, -1), net(x)
    assert torch.allclose(got, ref, atol=1e-10, rtol=1e-10)
    if not any(
        isinstance(m, (nn.ReLU, nn.Tanh, nn.MaxPool2d)) for m in model.modules()
    ):
        # an affine network: its eFCN's matrix is the one the identity basis reads off the model
        A, c = identity_basis_matrix(model, shape)
        A_net, c_net = identity_basis_matrix(net, shape)
        assert torch.allclose(A_net, A, atol=1e-12) and torch.allclose(
            c_net, c, atol=1e-12
        )


def test_shared_modules_keep_every_use():
    model, shape, _ = _zoo()["shared activation"]
    model = model.to(D)
    net = to_fcn(model, shape)
    assert (
        sum(isinstance(m, nn.ReLU) for m in net) == 2
    )  # old: the second use was dropped


def test_size_is_estimated_and_refused_before_allocating():
    EmbeddingTooLarge, embedding_bytes = efcn.EmbeddingTooLarge, efcn.embedding_bytes
    big = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU())
    need = embedding_bytes(big, (3, 256, 256))
    assert need > 3 * 2**40  # 64 * 256^2 outputs by 3 * 256^2 inputs, 4 bytes each
    with pytest.raises(EmbeddingTooLarge, match=rf"max_bytes={need}") as info:
        to_fcn(big, (3, 256, 256))
    assert "TiB" in str(info.value)
    small = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3)
    )
    with pytest.raises(EmbeddingTooLarge):
        to_fcn(small, (1, 4, 4), max_bytes=1000)
    for sparse in (False, True):
        net = to_fcn(small, (1, 4, 4), sparse=sparse, max_bytes=None)
        assert embedding_bytes(small, (1, 4, 4), sparse=sparse) == parameter_bytes(net)
    assert embedding_bytes(small, (1, 4, 4), mode="lcn") == parameter_bytes(
        to_lcn(small, (1, 4, 4))
    )


def test_sparse_is_built_without_the_dense_matrix(monkeypatch):
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 2, 3, padding=1, padding_mode="circular"),
    )
    dense_net = to_fcn(model, (1, 6, 6))

    def refuse(*args, **kwargs):
        raise AssertionError("the dense matrix was formed")

    monkeypatch.setattr(efcn, "conv_to_dense", refuse)
    net = to_fcn(model, (1, 6, 6), sparse=True)
    assert sum(isinstance(m, SparseLinear) for m in net) == 2
    x = torch.randn(5, 1, 6, 6)
    assert torch.allclose(net(x), dense_net(x), atol=1e-5)


def test_wrong_input_size_is_named():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10)
    )
    with pytest.raises(
        ValueError, match=r"does not accept inputs of shape \(1, 10, 10\)"
    ):
        to_fcn(model, (1, 10, 10))
    with pytest.raises(
        ValueError, match=r"does not accept inputs of shape \(3, 8, 8\)"
    ):
        to_fcn(model, (3, 8, 8))


def test_embedding_leaves_the_models_mode_alone():
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(32, 2),
    ).train()
    to_fcn(model, (1, 6, 6))
    efcn.embedded_layer_shapes(model, (1, 6, 6))
    assert all(m.training for m in model.modules())
