"""The checks vocabulary: pass/fail, margins, NaN, report mode, records for the runners."""

from __future__ import annotations

import math

import pytest

from convbias import checks as C


def test_pass_fail_and_margins():
    a = C.at_least("a", 12.0, 10.0, scale="ratio")
    b = C.at_most("b", 3.0, 2.0)
    c = C.between("c", 0.5, 0.1, 10.0, scale="ratio")
    assert a.passed and a.margin == pytest.approx(1.2)
    assert not b.passed and b.margin == pytest.approx(-1.0)
    assert c.passed and c.margin == pytest.approx(
        5.0
    )  # nearer the low bound: 0.5 / 0.1
    assert C.failed([a, b, c]) == ["b"]


def test_nan_and_inf_fail():
    for v in (math.nan, math.inf, -math.inf):
        assert not C.at_most("x", v, 1.0).passed
        assert not C.at_least("x", v, 1.0).passed


def test_bad_definitions_are_refused():
    with pytest.raises(ValueError, match="op must be"):
        C.Check("x", 1.0, ">", 0.0)
    with pytest.raises(ValueError, match="low, high"):
        C.Check("x", 1.0, "in", 0.0)


def test_require_raises_naming_the_failed_check(monkeypatch, capsys):
    monkeypatch.setattr(C, "RECORDED", {})
    with pytest.raises(C.CheckFailed, match="1 of 2 checks failed: FAILED  gap"):
        C.require("chX", [C.at_least("ok", 2, 1), C.at_most("gap", 5, 1)])
    assert [c.name for c in C.RECORDED["chX"]] == ["ok", "gap"]
    assert "FAILED  gap: 5 <= 1" in capsys.readouterr().out


def test_report_mode_does_not_raise(monkeypatch):
    monkeypatch.setenv(C.ENV_VAR, "report")
    out = C.require("chY", [C.holds("never", False)])
    assert not out[0].passed
    monkeypatch.setenv(C.ENV_VAR, "maybe")
    with pytest.raises(ValueError, match="judge"):
        C.require("chY", [C.holds("never", False)])


def test_require_is_not_an_assert_statement():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(C))
    assert not any(isinstance(node, ast.Assert) for node in ast.walk(tree))


def test_mime_bundle_round_trip():
    table = C.CheckTable(
        "chZ", [C.at_least("a", 3, 1, "three beats one", scale="ratio")]
    )
    bundle = table._repr_mimebundle_()
    records = C.from_outputs([{"output_type": "display_data", "data": bundle}])
    assert (
        records[0]["name"] == "a"
        and records[0]["passed"]
        and records[0]["margin"] == pytest.approx(3.0)
    )
    assert "passed  a: 3 >= 1" in bundle["text/plain"]
    html = bundle["text/html"]
    assert (
        html.count("<tr>") == 2
        and "<code>a</code>" in html
        and "three beats one" in html
    )
    failing = C.CheckTable("chZ", [C.at_least("b<", 0, 1)])._repr_html_()
    assert "FAILED" in failing and "b&lt;" in failing
