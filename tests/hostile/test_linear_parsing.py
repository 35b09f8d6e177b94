"""#3: vendor strings are parsed in linear time (no backtracking regex on untrusted input)."""

from __future__ import annotations

import re
import time

import pytest

from processors.masks.labelmap import build_labelmap, class_name

OLD_SUFFIX = re.compile(r"\s*#\s*\d+\s*$")  # what class_name used to run: quadratic on spaces


@pytest.mark.parametrize(
    "hostile",
    [
        " " * 100_000,
        "car" + " " * 100_000 + "x",
        " " * 50_000 + "#" + " " * 50_000,
        "9" * 100_000,
        "#" * 100_000,
    ],
    ids=["spaces", "spaces-then-letter", "spaces-hash-spaces", "digits", "hashes"],
)
def test_class_name_is_linear_on_hostile_values(hostile: str) -> None:
    started = time.perf_counter()
    class_name(hostile)
    assert time.perf_counter() - started < 0.05  # was 55 s for 100 KB of spaces


@pytest.mark.parametrize(
    "value",
    ["car # 2", "car#2", "car", "# 3", " # 3 ", "car # ", "car # x2", "a#1#2", "car  #  12  \n", "7", "#"],
)
def test_class_name_means_what_the_regex_meant(value: str) -> None:
    assert class_name(value) == (OLD_SUFFIX.sub("", value) or value)


def test_a_playment_instance_of_100kb_spaces_builds_a_labelmap_at_once() -> None:
    legend = {"#ff0000": "car"}
    instances = [{"color": "#ff0000", "value": " " * 100_000, "class_id": "c1"}]
    started = time.perf_counter()
    build_labelmap(legend, instances)
    assert time.perf_counter() - started < 0.5
