"""hub.costs.money: ISO 4217 minor units, the rounding modes, refusing floats."""

from __future__ import annotations

import decimal
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.costs import MoneyPolicy, PricingError, minor_units
from hub.costs.money import ROUNDINGS, exact, shown

# Minor units as published in the ISO 4217 list (amendment of 2026-01-01), one
# of each kind: the usual 2, none, three-decimal dinars, four-decimal units of account.
PUBLISHED = {"USD": 2, "EUR": 2, "JPY": 0, "ISK": 0, "VND": 0, "KWD": 3, "BHD": 3, "CLF": 4}


@pytest.mark.parametrize(("code", "digits"), sorted(PUBLISHED.items()))
def test_minor_units_follow_the_published_iso_4217_list(code: str, digits: int) -> None:
    assert minor_units(code) == digits


@pytest.mark.parametrize(
    ("code", "problem"),
    [
        ("XAU", "XAU has no minor unit in ISO 4217"),  # gold: not a bill currency
        ("ZZZ", "'ZZZ' is not an ISO 4217 currency"),
        ("US", "'US' is not a three-letter ISO 4217 code"),
        ("U$D", "'U$D' is not a three-letter ISO 4217 code"),
    ],
)
def test_a_currency_without_minor_units_or_unknown_is_refused(code: str, problem: str) -> None:
    with pytest.raises(PricingError) as caught:
        minor_units(code)
    assert caught.value.where == "currency"
    assert caught.value.problem == problem


def test_the_policy_comes_from_the_environment_with_usd_half_even_by_default() -> None:
    assert MoneyPolicy.from_env({}) == MoneyPolicy("USD", "half_even")
    chosen = MoneyPolicy.from_env({"RESMON_CURRENCY": "jpy", "RESMON_COST_ROUNDING": "HALF_UP"})
    assert chosen == MoneyPolicy("JPY", "half_up")
    assert chosen.minor_units == 0


@pytest.mark.parametrize(
    ("environ", "variable", "text"),
    [
        ({"RESMON_CURRENCY": "ZZZ"}, "RESMON_CURRENCY", "'ZZZ' is not an ISO 4217 currency"),
        ({"RESMON_COST_ROUNDING": "bankers"}, "RESMON_COST_ROUNDING", "bankers"),
    ],
)
def test_a_bad_money_setting_names_its_variable(
    environ: dict[str, str], variable: str, text: str
) -> None:
    with pytest.raises(PricingError) as caught:
        MoneyPolicy.from_env(environ)
    assert caught.value.where == variable
    assert text in caught.value.problem


def test_lower_case_codes_and_unknown_roundings_are_refused_when_built_directly() -> None:
    with pytest.raises(PricingError, match="capitals"):
        MoneyPolicy("usd")
    with pytest.raises(PricingError, match="rounding: 'nearest' is not one of half_even"):
        MoneyPolicy("USD", "nearest")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        # value:        0.125  0.135  -0.125  0.1251  0.121
        ("half_even", ["0.12", "0.14", "-0.12", "0.13", "0.12"]),
        ("half_up", ["0.13", "0.14", "-0.13", "0.13", "0.12"]),
        ("half_down", ["0.12", "0.13", "-0.12", "0.13", "0.12"]),
        ("up", ["0.13", "0.14", "-0.13", "0.13", "0.13"]),
        ("down", ["0.12", "0.13", "-0.12", "0.12", "0.12"]),
        ("ceiling", ["0.13", "0.14", "-0.12", "0.13", "0.13"]),
        ("floor", ["0.12", "0.13", "-0.13", "0.12", "0.12"]),
    ],
)
def test_each_rounding_mode_by_hand(mode: str, expected: list[str]) -> None:
    policy = MoneyPolicy("USD", mode)  # type: ignore[arg-type]
    values = ["0.125", "0.135", "-0.125", "0.1251", "0.121"]
    assert [str(policy.round(Fraction(v))) for v in values] == expected


_DECIMAL_MODES = {
    "half_even": decimal.ROUND_HALF_EVEN,
    "half_up": decimal.ROUND_HALF_UP,
    "half_down": decimal.ROUND_HALF_DOWN,
    "up": decimal.ROUND_UP,
    "down": decimal.ROUND_DOWN,
    "ceiling": decimal.ROUND_CEILING,
    "floor": decimal.ROUND_FLOOR,
}


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=6, min_value=-(10**9), max_value=10**9
    ),
    st.sampled_from(sorted(ROUNDINGS)),
    st.sampled_from(["USD", "JPY", "BHD", "CLF"]),
)
def test_rounding_a_decimal_agrees_with_the_decimal_module(
    value: Decimal, mode: str, currency: str
) -> None:
    policy = MoneyPolicy(currency, mode)  # type: ignore[arg-type]
    quantum = Decimal(1).scaleb(-policy.minor_units)
    reference = value.quantize(quantum, rounding=_DECIMAL_MODES[mode])
    rounded = policy.round(Fraction(value))
    assert rounded == reference
    assert rounded.as_tuple().exponent == -policy.minor_units


def test_rounding_a_third_is_from_the_exact_rational() -> None:
    # 0.0049999... (a 1/3 step below a half cent) must not round like 0.005 would
    assert MoneyPolicy("USD", "half_up").round(Fraction(1, 200) - Fraction(1, 3 * 10**15)) == (
        Decimal("0.00")
    )
    assert MoneyPolicy().round(Fraction(20 * 11, 31)) == Decimal("7.10")  # 7.0967...


@pytest.mark.parametrize("bad", [0.1, True, Decimal("NaN"), Decimal("Infinity"), "1"])
def test_a_float_a_bool_a_string_or_a_non_finite_amount_is_refused(bad: object) -> None:
    with pytest.raises(PricingError) as caught:
        exact(bad, "baseCost")
    assert caught.value.where == "baseCost"


def test_shown_is_exact_when_the_value_terminates_and_twelve_places_otherwise() -> None:
    assert shown(Fraction(5, 8)) == Decimal("0.625")
    assert shown(Fraction(10**40 + 1, 4)) == Decimal("2500000000000000000000000000000000000000.25")
    assert shown(Fraction(1, 3)) == Decimal("0.333333333333")
    assert shown(Fraction(0)) == 0
