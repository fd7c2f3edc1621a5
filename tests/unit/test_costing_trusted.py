"""`trusted()` builds what `model_construct` builds, and its guard on pydantic's private slots
fails loudly when pydantic changes them (costing/_trusted.py, pinned pydantic minor version)."""

from __future__ import annotations

import importlib
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, PrivateAttr

from meterflow import _guards
from meterflow._guards import BorrowedInternalsError
from meterflow.costing import _trusted
from meterflow.costing._trusted import trusted


class Amount(BaseModel):
    model_config = ConfigDict(frozen=True)
    value: Decimal
    currency: str = "GBP"


def test_a_trusted_instance_is_what_model_construct_builds() -> None:
    values = {"value": Decimal("1.25"), "currency": "EUR"}
    built = trusted(Amount, dict(values))
    constructed = Amount.model_construct(**values)
    assert built == constructed
    assert built.__getstate__() == constructed.__getstate__()
    assert built.model_dump_json() == '{"value":"1.25","currency":"EUR"}'


class Secret(BaseModel):
    a: int
    _note: str = PrivateAttr("")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: int


class Hooked(BaseModel):
    a: int

    def model_post_init(self, context: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("model", "needs"),
    [(Secret, "private attributes"), (Open, 'extra="allow"'), (Hooked, "model_post_init")],
)
def test_a_model_needing_more_than_the_four_slots_is_refused(
    model: type[BaseModel], needs: str
) -> None:
    with pytest.raises(
        TypeError, match=f"trusted\\(\\) cannot build {model.__name__}: it has {needs}"
    ):
        trusted(model, {"a": 1})


def test_the_guard_passes_on_the_pinned_pydantic() -> None:
    _trusted.BORROWED.check()


def pydantic_at(monkeypatch: pytest.MonkeyPatch, version: str) -> None:
    real = _guards.installed_version
    monkeypatch.setattr(
        _guards, "installed_version", lambda dist: version if dist == "pydantic" else real(dist)
    )


def test_another_pydantic_minor_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pydantic_at(monkeypatch, "2.15.0")
    with pytest.raises(BorrowedInternalsError) as raised:
        _trusted.BORROWED.check()
    assert "patch 'trusted': pydantic: expected version 2.14, found 2.15.0" in str(raised.value)


def test_a_patch_release_of_the_same_minor_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    pydantic_at(monkeypatch, "2.14.99")
    _trusted.BORROWED.check()


def test_a_new_slot_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    slots = (*BaseModel.__slots__, "__pydantic_new__")
    monkeypatch.setattr(BaseModel, "__slots__", slots)
    with pytest.raises(BorrowedInternalsError) as raised:
        _trusted.BORROWED.check()
    assert (
        "patch 'trusted': pydantic.main.BaseModel.__slots__: expected ('__dict__', "
        "'__pydantic_fields_set__', '__pydantic_extra__', '__pydantic_private__'), found "
        f"{slots!r}"
    ) in str(raised.value)


def test_a_model_construct_that_no_longer_sets_the_slots_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def model_construct(cls: Any, _fields_set: Any = None, **values: Any) -> Any:
        return cls.__new__(cls)

    monkeypatch.setattr(BaseModel, "model_construct", classmethod(model_construct))
    with pytest.raises(BorrowedInternalsError, match=r"model_construct: expected its code to name"):
        _trusted.BORROWED.check()


def test_importing_under_another_pydantic_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        with monkeypatch.context() as patched:
            pydantic_at(patched, "3.0.0")
            with pytest.raises(BorrowedInternalsError, match=r"expected version 2\.14, found 3"):
                importlib.reload(_trusted)
    finally:
        importlib.reload(_trusted)  # the real pydantic again: a whole module for later tests
