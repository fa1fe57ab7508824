"""Chapter 5's checks fail when its phenomenon is broken on purpose (tiny sizes, one seed).

Each mutation reruns the relax-time protocol (:func:`convbias.relax.relax_protocol`) with one
natural change and asserts the named check FAILS; the unmutated tiny run passes.
"""

from __future__ import annotations

import pytest
import torch

from convbias.checks import failed
from convbias.data.canvas import load_canvas, standardize
from convbias.efcn import EmbeddedLinear, to_fcn
from convbias.models.canvas_cnn import canvas_cnn
from convbias.relax import relative_output_error, relax_checks, relax_protocol

EPOCHS, WIDTH, LR = 10, 8, 0.05


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):
    """These runs are calibrated on one torch thread."""


@pytest.fixture(scope="module")
def data():
    return standardize(load_canvas("digits", 16, 500, 200, seed=0))


def protocol(data, relax_epochs=(0, EPOCHS), **kw):
    shape = tuple(data.X_train.shape[1:])
    return relax_protocol(
        lambda: canvas_cnn(shape, width=WIDTH),
        data,
        input_shape=shape,
        epochs=EPOCHS,
        relax_epochs=list(relax_epochs),
        relax_train_epochs=5,
        lr=LR,
        momentum=0.9,
        batch_size=50,
        seed=0,
        log_every=10,
        progress=False,
        **kw,
    )


def random_fcn_noise(net: torch.nn.Module) -> None:
    """Add to every dense layer a random FCN's worth of weights (PyTorch's default init scale)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in net.modules():
            if isinstance(layer, EmbeddedLinear):
                bound = layer.in_features**-0.5
                layer.weight.add_(
                    (torch.rand(layer.weight.shape, generator=gen) * 2 - 1) * bound
                )


def random_error(data, perturb=None) -> float:
    shape = tuple(data.X_train.shape[1:])
    torch.manual_seed(0)
    cnn = canvas_cnn(shape, width=WIDTH).eval()
    efcn = to_fcn(cnn, shape)
    if perturb is not None:
        perturb(efcn)
    return relative_output_error(efcn, cnn, torch.randn(64, *shape))


def checks(data, run, perturb=None):
    return relax_checks(
        [run], random_error(data, perturb), late_from=EPOCHS, beat_from=EPOCHS
    )


@pytest.fixture(scope="module")
def unmutated(data):
    return protocol(data)


def test_unmutated_protocol_passes(data, unmutated):
    assert failed(checks(data, unmutated)) == []


def test_perturbed_efcn_weights_fail_exactness_directly(data):
    run = protocol(data, perturb=random_fcn_noise)
    bad = set(failed(checks(data, run, perturb=random_fcn_noise)))
    assert {"exact_random", "exact_trained"} <= bad
    assert {"off_support_max", "off_tying_max"} <= bad


def test_scratch_fcn_in_place_of_the_efcn_fails(data):
    # the embedding replaced by a fresh random FCN of the same architecture: no CNN prior left
    def reinitialize(net):
        with torch.no_grad():
            for layer in net.modules():
                if isinstance(layer, EmbeddedLinear):
                    torch.nn.Linear.reset_parameters(layer)

    bad = set(failed(checks(data, protocol(data, perturb=reinitialize))))
    assert {"exact_trained", "late_gain_min", "off_support_max"} <= bad


def test_untrained_cnn_fails_the_gain_checks(data):
    # relaxed at t = 0 only: the CNN prior is an initialisation, not a trained CNN
    run = protocol(data, relax_epochs=(0,))
    bad = set(failed(relax_checks([run], random_error(data), late_from=0, beat_from=0)))
    assert {"late_gain_min", "beats_fcn_from"} <= bad
