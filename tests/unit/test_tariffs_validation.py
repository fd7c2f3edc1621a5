"""Whole-profile validation: TOU coverage and overlaps, overlapping versions and prices."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from costing_support import fixed, profile, rule, tou
from hypothesis import given, settings
from hypothesis import strategies as st

from meterflow.models import TariffDirection, TimeOfUseTariff
from meterflow.tariffs import ProfileError, _schedule_problem, validate_profile

WEEKDAYS = ["MON", "TUE", "WED", "THU", "FRI"]


def _check(tariffs: dict[str, list[dict[str, Any]]]) -> None:
    validate_profile(profile(tariffs))


def test_complete_profiles_pass() -> None:
    _check(
        {
            "IMPORT": [
                tou(
                    [
                        rule("00:00", "07:00", "0.1", days=WEEKDAYS),
                        rule("07:00", "24:00", "0.3", days=WEEKDAYS),
                        rule("00:00", "24:00", "0.2", days=["SAT", "SUN"], months=[1, 2, 3]),
                        rule(
                            "00:00", "24:00", "0.15", days=["SAT", "SUN"], months=list(range(4, 13))
                        ),
                    ],
                    effective_to="2024-01-01T00:00:00Z",
                ),
                fixed("0.2", effective_from="2024-01-01T00:00:00Z"),
            ],
            "EXPORT": [fixed("0.05")],
        }
    )


def test_gap_is_named_precisely() -> None:
    rules = [
        rule("00:00", "24:00", "0.1", days=["MON", "TUE", "WED", "THU", "FRI", "SUN"]),
        rule("00:00", "07:00", "0.1", days=["SAT"]),
        rule("08:00", "24:00", "0.1", days=["SAT"]),
    ]
    with pytest.raises(ProfileError) as error:
        _check({"IMPORT": [tou(rules, effective_from="2024-01-01T00:00:00Z")]})
    assert (
        str(error.value) == "IMPORT version from 2024-01-01: no rule covers SAT 07:00–08:00 in Jan"
    )


def test_gap_in_one_month_only() -> None:
    rules = [
        rule("00:00", "24:00", "0.1", months=[1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]),
        rule("00:00", "23:30", "0.1", months=[6]),
    ]
    with pytest.raises(ProfileError, match=r"no rule covers MON 23:30–24:00 in Jun"):
        _check({"EXPORT": [tou(rules)]})


def test_overlap_is_named() -> None:
    rules = [rule("00:00", "12:00", "0.1"), rule("11:00", "24:00", "0.2")]
    with pytest.raises(ProfileError, match=r"rules 1 and 2 overlap on MON 11:00–12:00 in Jan"):
        _check({"IMPORT": [tou(rules)]})


def test_overlapping_versions() -> None:
    with pytest.raises(
        ProfileError, match=r"IMPORT version from 2000-01-01 .* overlaps IMPORT version"
    ):
        _check({"IMPORT": [fixed("0.1"), fixed("0.2", effective_from="2024-01-01T00:00:00Z")]})
    with pytest.raises(ProfileError, match="overlaps"):
        _check(
            {
                "IMPORT": [
                    fixed("0.1", effective_to="2024-01-01T00:00:01Z"),
                    fixed("0.2", effective_from="2024-01-01T00:00:00Z"),
                ]
            }
        )


def test_adjacent_versions_and_versions_of_other_directions_pass() -> None:
    _check(
        {
            "IMPORT": [
                fixed("0.2", effective_from="2024-01-01T00:00:00+01:00"),
                fixed("0.1", effective_to="2023-12-31T23:00:00Z"),
            ],
            "EXPORT": [fixed("0.05")],
        }
    )


def test_overlapping_dynamic_prices() -> None:
    version = {
        "type": "DYNAMIC",
        "effective_from": "2024-01-01T00:00:00Z",
        "prices": [
            {"valid_from": "2024-01-01T00:00:00Z", "valid_to": "2024-01-01T00:30:00Z", "rate": 1},
            {"valid_from": "2024-01-01T00:29:00Z", "valid_to": "2024-01-01T01:00:00Z", "rate": 1},
        ],
    }
    with pytest.raises(ProfileError, match=r"dynamic prices .* overlap"):
        _check({"IMPORT": [version]})


def test_version_starting_mid_day_is_named_with_its_instant() -> None:
    with pytest.raises(ProfileError, match=r"EXPORT version from 2024-03-01T12:00:00\+00:00"):
        _check(
            {"EXPORT": [tou([rule("00:00", "12:00", "1")], effective_from="2024-03-01T12:00:00Z")]}
        )


def _every_day_problem(rules: list[dict[str, Any]]) -> str | None:
    """The reference: check all 84 (month, weekday) days in calendar order."""
    version = profile({"EXPORT": [tou(rules)]}).tariffs[TariffDirection.EXPORT][0]
    assert isinstance(version, TimeOfUseTariff)
    for month in range(1, 13):
        for weekday in range(7):
            _, problem = _schedule_problem(version.rules, month, weekday)
            if problem is not None:
                return f"EXPORT version from 2000-01-01: {problem}"
    return None


_DAY_NAMES = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]


@st.composite
def _rules(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Rules that tile the day, each span split by a month or weekday filter and its
    complement; some complements left out (a gap in some days only) or overlapping."""
    cuts = sorted(draw(st.sets(st.integers(1, 23), max_size=3)))
    bounds = [0, *cuts, 24]
    rules = []
    for start, end in itertools.pairwise(bounds):
        span = (f"{start:02d}:00", f"{end:02d}:00")
        field, values = draw(
            st.sampled_from([("months", list(range(1, 13))), ("days", _DAY_NAMES), (None, [])])
        )
        if field is None:
            rules.append(rule(*span, "0.1"))
            continue
        chosen = draw(st.sets(st.sampled_from(values), min_size=1))
        rules.append(rule(*span, "0.1", **{field: [v for v in values if v in chosen]}))
        rest = [v for v in values if v not in chosen]
        how = draw(st.sampled_from(["complement", "missing", "overlap"]))
        if how == "overlap":
            rest.append(draw(st.sampled_from(sorted(chosen, key=values.index))))
        if rest and how != "missing":
            rules.append(rule(*span, "0.2", **{field: sorted(rest, key=values.index)}))
    return rules


@settings(max_examples=300, deadline=None)
@given(_rules())
def test_checking_one_day_per_class_names_the_same_first_problem_as_every_day(
    rules: list[dict[str, Any]],
) -> None:
    """Rules with and without month/day filters, gaps and overlaps: the same verdict and the
    same first (month, weekday) named as checking every day of the year."""
    expected = _every_day_problem(rules)
    if expected is None:
        _check({"EXPORT": [tou(rules)]})
    else:
        with pytest.raises(ProfileError) as error:
            _check({"EXPORT": [tou(rules)]})
        assert str(error.value) == expected
