"""hub.costs.models: price models validate, and every error names the field at fault."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from hub.costs import (
    CostModel,
    Overage,
    Package,
    PerUnit,
    PricingError,
    Tier,
    Tiered,
    load_cost_model,
)

TIERS = [{"upTo": "100", "unitPrice": "0.10"}, {"upTo": 1000, "unitPrice": "0.08"}, {}]


def _tiered(tiers: list[dict[str, Any]]) -> dict[str, Any]:
    return {"usage": {"type": "tiered", "mode": "graduated", "tiers": tiers}}


@pytest.mark.parametrize(
    ("data", "where", "problem"),
    [
        (_tiered([]), "$.usage.tiers", "at least one tier is needed"),
        (
            _tiered([{"upTo": 100}, {"upTo": 100}, {}]),
            "$.usage.tiers[1].upTo",
            "100 is not above the previous tier's upTo (100)",
        ),
        (_tiered([{}, {"upTo": 5}]), "$.usage.tiers[0].upTo", "only the last tier may be open"),
        (_tiered([{"upTo": 5}]), "$.usage.tiers[0].upTo", "the last tier must be open"),
        (_tiered([{"upTo": 0}, {}]), "$.usage.tiers[0].upTo", "0 is not above"),
        (_tiered([{"unitPrice": "-1"}]), "$.usage.tiers[0].unitPrice", "-1 is negative"),
        (_tiered([{"flatPrice": "x"}]), "$.usage.tiers[0].flatPrice", "Invalid decimal"),
        (_tiered([{"upto": 5}, {}]), "$.usage.tiers[0]", "unknown field `upto`"),
        ({"baseCost": "-0.01"}, "$.baseCost", "-0.01 is negative"),
        ({"baseCost": 0.1}, "$.baseCost", "0.1 is a float"),
        ({"included": "NaN"}, "$.included", "NaN is not a finite number"),
        ({"billingPeriod": "weekly"}, "$.billingPeriod", "Invalid enum value 'weekly'"),
        ({"usage": {"type": "perMonth"}}, "$.usage.type", "Invalid value 'perMonth'"),
        ({"usage": {"type": "package", "size": 0, "price": 1}}, "$.usage.size", "above zero"),
        ({"usage": {"type": "perUnit"}}, "$.usage", "missing required field `unitPrice`"),
        (
            {"included": 5, "usage": {"type": "overage", "rate": "0.5"}},
            "$.included",
            "the resource's limit is the allowance",
        ),
        (
            {
                "included": 5,
                "usage": {"type": "percentile95", "committedMbps": 5, "overagePerMbps": 2},
            },
            "$.included",
            "the CDR is the allowance",
        ),
        (
            {
                "usage": {
                    "type": "percentile95",
                    "committedMbps": 5,
                    "overagePerMbps": "1",
                    "direction": "in",
                }
            },
            "$.usage.direction",
            "Invalid enum value 'in'",
        ),
    ],
)
def test_a_bad_model_is_refused_naming_the_field(
    data: dict[str, Any], where: str, problem: str
) -> None:
    with pytest.raises(PricingError) as caught:
        load_cost_model(data)
    assert caught.value.where == where
    assert problem in caught.value.problem


def test_json_numbers_are_read_exactly_and_round_trip() -> None:
    text = (
        b'{"billingPeriod":"yearly","baseCost":499.99,"usage":{"type":"tiered",'
        b'"mode":"volume","tiers":[{"upTo":100,"unitPrice":0.10000000000000000555},'
        b'{"unitPrice":"0.05","flatPrice":"5"}]}}'
    )
    model = load_cost_model(text)
    assert model.base_cost == Decimal("499.99")
    assert isinstance(model.usage, Tiered)
    assert model.usage.tiers[0].unit_price == Decimal("0.10000000000000000555")  # no float hop
    assert model.usage.tiers[1] == Tier(None, Decimal("0.05"), Decimal("5"))
    assert load_cost_model(msgspec.json.encode(model)) == model


def test_not_json_is_refused() -> None:
    with pytest.raises(PricingError, match="not JSON"):
        load_cost_model(b"{baseCost: 1}")


@pytest.mark.parametrize(
    ("build", "where"),
    [
        (lambda: PerUnit(unit_price=0.1), "unitPrice"),  # type: ignore[arg-type]
        (lambda: Overage(rate=Decimal("-1")), "rate"),
        (lambda: Package(size=Decimal(0), price=Decimal(1)), "size"),
        (lambda: CostModel(base_cost=True), "baseCost"),  # type: ignore[arg-type]
        (lambda: CostModel(billing_period="daily"), "billingPeriod"),  # type: ignore[arg-type]
        (lambda: Tiered("stepped", [Tier()]), "mode"),  # type: ignore[arg-type]
        (
            lambda: Tiered("graduated", [Tier(Decimal(5), unit_price=0.5), Tier()]),  # type: ignore[arg-type]
            "tiers[0].unitPrice",
        ),
    ],
)
def test_building_a_model_in_code_checks_it_too(build: Any, where: str) -> None:
    with pytest.raises(PricingError) as caught:
        build()
    assert caught.value.where == where


def test_the_plans_rule_and_the_catalogs_price_are_models() -> None:
    plan = load_cost_model({"baseCost": "49.99", "usage": {"type": "overage", "rate": "0.015"}})
    assert plan == CostModel(base_cost=Decimal("49.99"), usage=Overage(Decimal("0.015")))
    catalog = load_cost_model({"usage": {"type": "perUnit", "unitPrice": "0.001"}})
    assert catalog.usage == PerUnit(Decimal("0.001"))
    assert catalog.billing_period == "monthly"
    assert catalog.base_cost == 0
