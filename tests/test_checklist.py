from decimal import Decimal

import pytest

from pgdrill.core.errors import BadInput
from pgdrill.verification.checklist import (
    describe_failures,
    load_checklist,
    matches,
    normalise,
    parse_checklist,
)

GOOD = """
database: app
checks:
  - name: sentinel
    query: SELECT 'ok'
    expected: ok
  - name: rows
    query: SELECT 100000
    expected: 100000
"""


def test_shipped_checklist_loads():
    plan = load_checklist("experiments/checklists/app.yaml")
    assert plan.database == "app"
    assert {"sentinel-row", "accounts-row-count"} <= {c.name for c in plan.checks}


def test_parse_good_checklist():
    plan = parse_checklist(GOOD)
    assert [c.name for c in plan.checks] == ["sentinel", "rows"]
    assert plan.checks[1].expected == 100000


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("checks: [", "not valid YAML"),
        ("checks: []", "malformed"),
        ("checks:\n  - name: a\n    query: SELECT 1\n", "'expected' is a required property"),
        (
            "checks:\n  - {name: a, query: SELECT 1, expected: 1, extra: 2}\n",
            "malformed at checks/0",
        ),
        (
            "checks:\n  - {name: a, query: SELECT 1, expected: 1}\n"
            "  - {name: a, query: SELECT 2, expected: 2}\n",
            "repeats check names: a",
        ),
    ],
)
def test_malformed_checklists_are_named(text, fragment):
    with pytest.raises(BadInput) as err:
        parse_checklist(text, "c.yaml")
    assert fragment in str(err.value)
    assert "c.yaml" in str(err.value)


def test_missing_checklist_file_says_what_to_pass(tmp_path):
    with pytest.raises(BadInput) as err:
        load_checklist(tmp_path / "nope.yaml")
    assert "cannot read checklist" in str(err.value)
    assert err.value.fix


@pytest.mark.parametrize(
    "expected, actual, ok",
    [
        (100000, 100000, True),
        (100000, 99999, False),
        (1.5, 1.5, True),
        ("ok", "ok", True),
        ("on", "off", False),
        (True, True, True),
        (True, 1, False),  # a boolean check does not accept a number
        (1, True, False),
        (None, None, True),
        (None, "x", False),
        ("42", 42, True),  # text expectations compare as text
    ],
)
def test_matches(expected, actual, ok):
    assert matches(expected, actual) is ok


def test_normalise_postgres_values():
    assert normalise(Decimal("100000")) == 100000
    assert isinstance(normalise(Decimal("100000")), int)
    assert normalise(Decimal("1.25")) == 1.25
    assert normalise(b"\x01\x02") == "0102"


def test_describe_failures_names_each_failing_check():
    from pgdrill.verification.checklist import CheckResult

    text = describe_failures(
        [
            CheckResult("a", "q", 1, 1, True),
            CheckResult("b", "q", 1, 2, False),
            CheckResult("c", "q", 1, None, False, error="relation x does not exist"),
        ]
    )
    assert "'b' expected 1, got 2" in text
    assert "'c' errored: relation x does not exist" in text
    assert "'a'" not in text
