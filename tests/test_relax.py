"""The relax-time protocol: checkpoints, exact hand-over at the relax time, bookkeeping."""

from __future__ import annotations

import pytest
import torch

from convbias.data.canvas import load_canvas, place_on_canvas, standardize
from convbias.efcn import to_fcn
from convbias.models.canvas_cnn import canvas_cnn
from convbias.relax import log_relax_times, relax_protocol


def test_log_relax_times_matches_paper_checkpoints():
    # the paper's code: np.unique(np.logspace(0, log10(100), 20).astype(int)) with 0 prepended
    assert log_relax_times(100, 20) == [
        0,
        1,
        2,
        3,
        4,
        5,
        6,
        8,
        11,
        14,
        18,
        23,
        29,
        37,
        48,
        61,
        78,
        100,
    ]
    assert log_relax_times(10, 3) == [0, 1, 3, 10]
    with pytest.raises(ValueError):
        log_relax_times(0, 3)


def test_place_on_canvas_keeps_pixels_and_moves_them():
    X = torch.rand(5, 1, 4, 4)
    out = place_on_canvas(X, 9, seed=1)
    assert out.shape == (5, 1, 9, 9)
    assert torch.allclose(out.sum((1, 2, 3)), X.sum((1, 2, 3)))
    centred = place_on_canvas(X, 8, random_position=False)
    assert torch.equal(centred[:, :, 2:6, 2:6], X)
    with pytest.raises(ValueError, match="canvas"):
        place_on_canvas(X, 3)


def test_standardize_gives_zero_mean_unit_std_on_train():
    s = standardize(load_canvas("digits", 12, 200, 100))
    assert (
        abs(float(s.X_train.mean())) < 1e-5 and abs(float(s.X_train.std()) - 1) < 1e-3
    )


def test_protocol_small_run_bookkeeping_and_exact_handover():
    torch.manual_seed(0)
    data = standardize(load_canvas("digits", 10, 100, 60))
    make = lambda: canvas_cnn((1, 10, 10), width=4)
    run = relax_protocol(
        make,
        data,
        input_shape=(1, 10, 10),
        epochs=2,
        relax_epochs=[0, 2],
        relax_train_epochs=1,
        lr=0.05,
        batch_size=50,
        seed=3,
        lcn=True,
        progress=False,
        device=torch.device("cpu"),
    )
    assert run.relax_epochs == [0, 2]
    assert run.efcn_acc.shape == (2,) and run.lcn_acc.shape == (2,)
    assert set(run.histories) == {"cnn", "efcn@0", "efcn@2", "lcn@0", "lcn@2", "fcn"}
    # the recorded CNN accuracy at 2 epochs is the CNN's final one
    assert run.cnn_acc_at[-1] == pytest.approx(run.cnn_acc)
    # distance from the CNN subspace after training is small but nonzero (dense gradients leave it)
    assert 0 < run.off_support.max() < run.off_tying.max() + 1e-12 < 0.5
    # same seed, same numbers
    again = relax_protocol(
        make,
        data,
        input_shape=(1, 10, 10),
        epochs=2,
        relax_epochs=[0, 2],
        relax_train_epochs=1,
        lr=0.05,
        batch_size=50,
        seed=3,
        progress=False,
        device=torch.device("cpu"),
    )
    assert torch.allclose(
        torch.as_tensor(again.efcn_acc), torch.as_tensor(run.efcn_acc)
    )
    with pytest.raises(ValueError, match="relax_epochs"):
        relax_protocol(
            make,
            data,
            input_shape=(1, 10, 10),
            epochs=2,
            relax_epochs=[3],
            relax_train_epochs=1,
            lr=0.05,
            batch_size=50,
            seed=3,
            progress=False,
        )


def test_embedding_of_trained_cnn_keeps_its_test_accuracy():
    torch.manual_seed(0)
    data = standardize(load_canvas("digits", 10, 100, 60))
    cnn = canvas_cnn((1, 10, 10), width=4)
    from convbias.train import evaluate, fit

    fit(
        cnn,
        data.X_train,
        data.y_train,
        lr=0.05,
        epochs=3,
        batch_size=50,
        progress=False,
    )
    net = to_fcn(cnn.eval(), (1, 10, 10))
    a = evaluate(cnn, data.X_test, data.y_test)["acc"]
    b = evaluate(net, data.X_test, data.y_test)["acc"]
    assert a == b
