import numpy as np
import pytest
import torch

from convbias import config


@pytest.mark.parametrize(
    "value,expected",
    [("quick", "quick"), ("full", "full"), (" QUICK ", "quick"), ("Full", "full")],
)
def test_profile_parses_explicit_values(monkeypatch, value, expected):
    monkeypatch.setenv(config.ENV_VAR, value)
    assert config.profile() == expected


def test_profile_auto_follows_cuda(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "auto")
    assert config.profile() == ("full" if torch.cuda.is_available() else "quick")
    monkeypatch.delenv(config.ENV_VAR)
    assert config.profile() == ("full" if torch.cuda.is_available() else "quick")


def test_profile_rejects_unknown_value(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "fast")
    with pytest.raises(ValueError, match="'fast' is not a profile"):
        config.profile()


def test_by_profile_picks_by_profile(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "quick")
    assert config.by_profile(quick=1, full=2) == 1
    monkeypatch.setenv(config.ENV_VAR, "full")
    assert config.by_profile(quick=1, full=2) == 2


def test_device_matches_cuda_availability():
    assert config.device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_seed_everything_repeats_numbers():
    config.seed_everything(123)
    a = (torch.randn(5), np.random.rand(5))
    config.seed_everything(123)
    b = (torch.randn(5), np.random.rand(5))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    config.seed_everything(124)
    assert not torch.equal(a[0], torch.randn(5))


@pytest.mark.parametrize("bad", [-1, 1.5, "3"])
def test_seed_everything_rejects_bad_seed(bad):
    with pytest.raises(ValueError):
        config.seed_everything(bad)


def test_run_info_names_profile_and_device(monkeypatch):
    monkeypatch.setenv(config.ENV_VAR, "quick")
    line = config.run_info()
    assert "profile=quick" in line and config.device().type in line


def test_limit_cpu_threads():
    before = torch.get_num_threads()
    try:
        config.limit_cpu_threads(1)
        if config.device().type == "cpu":
            assert torch.get_num_threads() == 1
        with pytest.raises(ValueError):
            config.limit_cpu_threads(0)
    finally:
        torch.set_num_threads(before)
