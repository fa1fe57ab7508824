"""The one loss module: per-model and per-member losses agree, and labels a loss cannot read are refused."""

import pytest
import torch

from convbias.losses import check_labels, logistic_loss, loss_value, member_losses


def test_logistic_loss_is_the_mean_logistic_loss_of_each_member():
    out = torch.tensor([[2.0, -1.0, 0.0], [0.5, 0.5, -3.0]])
    y = torch.tensor([1.0, -1.0, 1.0])
    expected = torch.log1p(torch.exp(-y * out)).mean(-1)
    torch.testing.assert_close(logistic_loss(out, y), expected)
    for e in range(2):  # each member's value is the one-model loss of that member
        torch.testing.assert_close(
            logistic_loss(out, y)[e], loss_value("logistic", out[e], y)
        )


def test_member_losses_are_each_members_mean_squared_error():
    y = torch.zeros(1, 1, 4)
    out = torch.cat(
        [torch.ones(1, 1, 4), 2 * torch.ones(1, 1, 4)], dim=1
    )  # two members
    torch.testing.assert_close(member_losses(out, y, 2), torch.tensor([1.0, 4.0]))
    assert member_losses(out, y, 2)[1] == loss_value("mse", out[:, 1:], y)


def test_zero_one_labels_are_refused_for_the_logistic_loss_with_the_fix():
    with pytest.raises(ValueError, match=r"2 \* y - 1"):
        check_labels("logistic", torch.tensor([0.0, 1.0, 1.0]))
    check_labels("logistic", torch.tensor([-1.0, 1.0]))  # ±1 labels pass
    check_labels("ce", torch.tensor([0, 1, 2]))  # other losses read class indices
