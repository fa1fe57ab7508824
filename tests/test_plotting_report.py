import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest

from convbias import plotting, report


def test_band_plots_mean_and_checks_shape():
    plotting.set_style()
    fig, ax = plotting.subplots()
    Y = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]])
    line = plotting.band(ax, [0, 1, 2], Y, label="a")
    assert np.allclose(line.get_ydata(), [2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="n_seeds"):
        plotting.band(ax, [0, 1], Y)


def test_subplots_grid_shape():
    fig, axes = plotting.subplots(ncols=3, nrows=2)
    assert axes.shape == (2, 3)


def test_comparison_table_keeps_paper_and_build_apart():
    table = report.comparison_table([{"quantity": "rank", "paper": "25", "this build": "31"}])
    frame = table.data
    assert list(frame.columns) == ["quantity", "paper", "this build", "note"]
    assert frame.loc[0, "paper"] == "25" and frame.loc[0, "this build"] == "31" and frame.loc[0, "note"] == ""
    with pytest.raises(ValueError, match="unknown column"):
        report.comparison_table([{"ours": 1}])


def test_glue_returns_and_records_value_outside_a_book():
    assert report.glue("test_x", 3.5) == 3.5
    assert report.GLUED["test_x"] == 3.5


def test_run_info_and_checks_glue_record_strings(monkeypatch):
    monkeypatch.setenv("CONVBIAS_PROFILE", "quick")
    assert "profile=quick" in report.glue_run_info("chX")
    assert report.GLUED["chX_run_info"].startswith("profile=quick")
    assert report.glue_checks_passed("chX") == "all passed" == report.GLUED["chX_checks"]


def test_plain_text_renders_without_quotes():
    t = report.PlainText("profile=quick")
    assert repr(t) == "profile=quick" and t._repr_markdown_() == "profile=quick"
