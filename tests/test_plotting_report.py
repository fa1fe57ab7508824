import matplotlib

matplotlib.use("Agg")
import io
import re

import matplotlib.pyplot as plt
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


def test_subplots_grid_shape_and_column_width():
    fig, axes = plotting.subplots(ncols=2, nrows=3)
    assert axes.shape == (3, 2)
    assert fig.get_figwidth() == pytest.approx(plotting.COLUMN_WIDTH)
    with pytest.raises(ValueError, match="too many"):
        plotting.subplots(ncols=3)
    with pytest.raises(ValueError, match="wider than the page column"):
        plotting.subplots(ncols=2, width=4.0)
    with pytest.raises(ValueError, match="wider than the page column"):
        plotting.image_row([np.zeros((4, 4))] * 3, size=2.5)


def test_figure_problems_name_width_and_small_text():
    import warnings

    plotting.set_style()
    fig, ax = plotting.subplots(2)
    ax[0].plot([0, 1], label="$a$")
    ax[0].legend()
    assert plotting.figure_problems(fig) == []
    wide = plt.figure(figsize=(9, 3))
    wide.add_subplot().set_title("tiny", fontsize=6)
    problems = plotting.figure_problems(wide)
    assert len(problems) == 2 and "in wide" in problems[0] and "6.0 pt" in problems[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        wide.savefig(io.BytesIO(), format="png", bbox_inches="tight")
    assert any(issubclass(w.category, plotting.FigureLayoutWarning) for w in caught)
    plt.close("all")


def test_spread_is_mean_and_range():
    assert report.spread([1.0, 2.0, 6.0]) == "3.00 [1.00, 6.00]"
    assert report.spread(np.array([[1, 10], [3, 30]]), fmt=".0f") == [
        "2 [1, 3]",
        "20 [10, 30]",
    ]
    assert report.row("rank", paper=25, build=31) == {
        "quantity": "rank",
        "paper": 25,
        "this build": 31,
        "note": "",
    }


def test_comparison_table_keeps_paper_and_build_apart():
    table = report.comparison_table(
        [{"quantity": "rank", "paper": "25", "this build": "31"}]
    )
    frame = table.data
    assert list(frame.columns) == ["quantity", "paper", "this build", "note"]
    assert (
        frame.loc[0, "paper"] == "25"
        and frame.loc[0, "this build"] == "31"
        and frame.loc[0, "note"] == ""
    )
    with pytest.raises(ValueError, match="unknown column"):
        report.comparison_table([{"ours": 1}])


def test_glue_returns_and_records_value_outside_a_book():
    assert report.glue("test_x", 3.5) == 3.5
    assert report.GLUED["test_x"] == 3.5


def test_run_info_and_checks_glue_record_strings(monkeypatch):
    monkeypatch.setenv("CONVBIAS_PROFILE", "quick")
    assert "profile=quick" in report.glue_run_info("chX")
    assert report.GLUED["chX_run_info"].startswith("profile=quick")
    from convbias import checks

    monkeypatch.setattr(checks, "RECORDED", {"chX": [checks.at_least("a", 2, 1)]})
    assert (
        report.glue_checks_passed("chX") == "all passed" == report.GLUED["chX_checks"]
    )


def test_plain_text_renders_without_quotes():
    t = report.PlainText("profile=quick")
    assert repr(t) == "profile=quick" and t._repr_markdown_() == "profile=quick"


def test_plain_log_labels_a_log_axis_in_plain_numbers():
    fig, ax = plotting.subplots()
    ax.plot([1, 100], [1, 100])
    ax.set_yscale("log")
    plotting.plain_log(ax.yaxis)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
    assert {"1", "2", "5", "10", "50", "100"} <= set(labels)
    plt.close(fig)


def test_plain_number_writes_measured_numbers_as_the_text_does():
    assert [
        report.plain_number(x) for x in (1007.52, 21.312, 0.9681, 4.0, 0.0, 6.3e-6)
    ] == [
        "1008",
        "21.3",
        "0.968",
        "4",
        "0",
        "6.3e-06",
    ]


def test_glue_robustness_glues_each_check_of_the_chapter(tmp_path):
    import json

    table = tmp_path / "robustness.json"
    row = dict(
        passed=4, seeds=5, value_min=21.312, value_max=1007.52, failing_seeds=[3]
    )
    table.write_text(
        json.dumps(
            {
                "seeds": [0, 1, 2, 3, 4],
                "checks": [
                    dict(row, chapter="03_x", check="depth10_ratio"),
                    dict(row, chapter="04_y", check="other", failing_seeds=[]),
                ],
            }
        )
    )
    glued = report.glue_robustness("ch3", "03_x", table)
    assert glued == {
        "ch3_robust_seeds": "0 to 4",
        "ch3_robust_depth10_ratio": "21.3 to 1008",
        "ch3_robust_depth10_ratio_min": "21.3",
        "ch3_robust_depth10_ratio_max": "1008",
        "ch3_robust_depth10_ratio_passed": "4 of 5",
        "ch3_robust_depth10_ratio_failing": "base seed 3",
    }
    assert report.GLUED["ch3_robust_depth10_ratio"] == "21.3 to 1008"
    assert report.glue_robustness("ch3", "03_x", tmp_path / "absent.json") == {}
    with pytest.raises(ValueError, match="no check of chapter"):
        report.glue_robustness("ch5", "05_z", table)


def test_a_kernel_shows_figures_as_svg(monkeypatch):
    """The page's figures are vector: set_style switches a Jupyter kernel to SVG, nothing else."""
    import IPython
    import matplotlib_inline.backend_inline as inline

    asked = []
    monkeypatch.setattr(inline, "set_matplotlib_formats", lambda *f: asked.append(f))
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert plotting.vector_figures() is False and asked == []
    registered = {}

    class Formatter:
        def for_type(self, kind, function):
            registered[kind] = function

    kernel = type("Shell", (), {"kernel": object()})()
    kernel.display_formatter = type(
        "F", (), {"formatters": {"image/svg+xml": Formatter()}}
    )
    monkeypatch.setattr(IPython, "get_ipython", lambda: kernel)
    assert plotting.vector_figures() is True and asked == [("svg",)]
    (show,) = (
        registered.values()
    )  # a figure shown as SVG, its size in px at the house dpi
    fig, _ = plotting.subplots(1)
    assert re.search(r'<svg\b[^>]*\bwidth="[\d.]+px"', show(fig))
    plt.close(fig)


def test_the_parameter_table_shows_this_runs_values(monkeypatch):
    from convbias import report

    monkeypatch.setenv("CONVBIAS_PROFILE", "quick")
    P = {"lrs": [0.1, 0.3], "epochs": 48, "sigma": 25 / 255, "seed": 0}
    text = report.parameter_table(
        P, {"lrs": "learning rates of the grid", "sigma": "noise level"}
    )
    assert text.splitlines() == [
        "| `P[...]` | what it sets | this run (quick profile) |",
        "|---|---|---|",
        "| `lrs` | learning rates of the grid | 0.1, 0.3 |",
        "| `sigma` | noise level | 0.0980392 |",
    ]
    with pytest.raises(KeyError, match="not in the parameter table: steps"):
        report.parameter_table(P, {"steps": "iterations"})


def test_an_svg_figure_says_its_size_in_px_at_the_house_dpi():
    import io

    fig, _ = plotting.subplots(1)
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    svg = plotting.svg_at_dpi(buffer.getvalue())
    width = float(re.search(r'<svg\b[^>]*\bwidth="([\d.]+)px"', svg).group(1))
    assert width == pytest.approx(plotting.COLUMN_WIDTH * plotting.DPI, abs=0.1)
    assert 'viewBox="0 0 439.2' in svg  # the drawing itself unchanged
