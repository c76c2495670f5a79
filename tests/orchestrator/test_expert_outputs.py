"""The experts build their ModelOutput field by field (PivotCNNExpert._finish, DQNExpert._vote)
instead of through dataclasses.replace, which walks the fields at every step: that equals
replace only while these are all of ModelOutput's fields."""

from __future__ import annotations

from dataclasses import fields

from pivotal.core.types import ModelOutput


def test_the_fields_the_experts_rebuild_are_all_of_model_outputs() -> None:
    assert [f.name for f in fields(ModelOutput)] == [
        "model_type",
        "model_name",
        "symbol",
        "timestamp",
        "confidence",
        "predictions",
        "hidden_states",
        "metadata",
    ]
