"""A family's series table (:mod:`aggregator.series.table`) behaves like a dictionary of
label sets to values whatever is added and removed: holes left by removed series are reused
and never copied out, and every live series keeps its own value and label text."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.series.table import SeriesTable
from aggregator.series.views import ColumnMapping

LABELS = st.tuples(st.sampled_from(["a", "b", "c", "d", "e", "f"]), st.sampled_from(["x", "y"]))
OPS = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "grow"]), LABELS, st.integers(0, 10**20)), max_size=60
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_a_table_is_a_dictionary_of_live_series(ops: list[tuple[str, tuple[str, str], int]]) -> None:
    table = SeriesTable(0)
    model: dict[tuple[str, ...], tuple[int, int]] = {}
    for op, labels, amount in ops:
        if op == "add" and labels not in model:
            table.add(labels, f"text {labels}", amount, 2 * amount)
            model[labels] = (amount, 2 * amount)
        elif op == "remove" and labels in model:
            assert table.remove(table.slots[labels]) == (labels, model.pop(labels))
        elif op == "grow" and labels in model:
            slot = table.slots[labels]
            table.packets[slot] += amount
            table.bytes[slot] += 1
            model[labels] = (model[labels][0] + amount, model[labels][1] + 1)
        assert len(table) == len(model)
        assert dict(table.items()) == model
        labels_column, texts, packets, octets = table.columns()
        assert sorted(labels_column) == sorted(model)
        assert texts == tuple(f"text {labels}" for labels in labels_column)
        assert list(zip(packets, octets, strict=True)) == [model[labels] for labels in labels_column]


def test_a_hole_is_reused_and_left_out_of_the_columns() -> None:
    table = SeriesTable(0)
    first, second, third = (table.add((name,), f"{{{name}}}", 1, 2) for name in ("a", "b", "c"))
    assert (first, second, third) == (0, 1, 2)
    assert table.remove(second) == (("b",), (1, 2))
    assert table.columns() == ((("a",), ("c",)), ("{a}", "{c}"), (1, 1), (2, 2))
    assert table.add(("d",), "{d}", 5, 6) == second  # the hole, not a new slot
    assert table.columns() == ((("a",), ("d",), ("c",)), ("{a}", "{d}", "{c}"), (1, 5, 1), (2, 6, 2))
    assert (table.packets[second], table.bytes[second]) == (5, 6) and table.holders[second] == 0


def test_a_column_mapping_is_the_mapping_of_its_columns() -> None:
    labels = (("a", "x"), ("b", "y"), ("c", "x"))
    mapping = ColumnMapping(labels, (1, 2, 3), (10, 20, 30))
    expected = {("a", "x"): (1, 10), ("b", "y"): (2, 20), ("c", "x"): (3, 30)}
    assert mapping == expected and dict(mapping) == expected
    assert list(mapping.items()) == list(expected.items()) and len(mapping.items()) == 3
    assert mapping[("b", "y")] == (2, 20) and ("z", "z") not in mapping
    assert len(mapping) == 3 and list(mapping) == list(labels)
