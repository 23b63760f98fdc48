from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otahub.mqtt.topics import (
    FilterTree,
    TopicStore,
    is_valid_topic_filter,
    is_valid_topic_name,
    topic_matches,
)


@pytest.mark.parametrize(
    ("topic_filter", "valid"),
    [
        ("a/b/c", True),
        ("#", True),
        ("a/#", True),
        ("+", True),
        ("+/+/#", True),
        ("te/device/child03///cmd/firmware_update/+", True),
        ("a/#/b", False),
        ("a#", False),
        ("a/b#", False),
        ("a+/b", False),
        ("", False),
        ("a/\x00", False),
    ],
)
def test_filter_validity(topic_filter: str, valid: bool) -> None:
    assert is_valid_topic_filter(topic_filter) is valid


@pytest.mark.parametrize(
    ("topic", "valid"), [("a/b", True), ("/", True), ("a/+", False), ("#", False), ("", False)]
)
def test_topic_name_validity(topic: str, valid: bool) -> None:
    assert is_valid_topic_name(topic) is valid


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a", False),
        ("a/+", "a/", True),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+/+", "/x", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/+/c", "a/b/d", False),
        (
            "te/device/child03///cmd/firmware_update/+",
            "te/device/child03///cmd/firmware_update/otahub-1",
            True,
        ),
    ],
)
def test_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected
    tree: FilterTree[int] = FilterTree()
    tree.add(topic_filter, "owner", 1)
    assert (list(tree.match(topic)) == [("owner", 1)]) is expected
    store: TopicStore[str] = TopicStore()
    store.set(topic, "v")
    assert (list(store.match(topic_filter)) == [(topic, "v")]) is expected


levels = st.sampled_from(["a", "b", "", "$x", "c"])
topics = st.lists(levels, min_size=1, max_size=4).map("/".join).filter(is_valid_topic_name)
filters = (
    st.lists(st.sampled_from(["a", "b", "", "+", "$x"]), min_size=1, max_size=4)
    .flatmap(lambda ls: st.sampled_from([ls, [*ls, "#"], ["#"]]))
    .map("/".join)
    .filter(is_valid_topic_filter)
)


@settings(max_examples=300, deadline=None)
@given(st.lists(filters, max_size=12, unique=True), topics)
def test_filter_tree_agrees_with_direct_matching(fs: list[str], topic: str) -> None:
    tree: FilterTree[str] = FilterTree()
    for i, f in enumerate(fs):
        tree.add(f, i, f)
    got = sorted(value for _, value in tree.match(topic))
    assert got == sorted(f for f in fs if topic_matches(f, topic))


@settings(max_examples=300, deadline=None)
@given(st.lists(topics, max_size=12, unique=True), filters)
def test_topic_store_agrees_with_direct_matching(ts: list[str], topic_filter: str) -> None:
    store: TopicStore[str] = TopicStore()
    for t in ts:
        store.set(t, t)
    got = sorted(t for t, _ in store.match(topic_filter))
    assert got == sorted(t for t in ts if topic_matches(topic_filter, t))


def test_filter_tree_remove_prunes_and_counts() -> None:
    tree: FilterTree[int] = FilterTree()
    assert tree.add("a/b/c", "s1", 1)
    assert not tree.add("a/b/c", "s1", 2)  # replaced, not added
    tree.add("a/+/c", "s2", 3)
    assert len(tree) == 2
    assert tree.remove("a/b/c", "s1")
    assert not tree.remove("a/b/c", "s1")
    assert [v for _, v in tree.match("a/b/c")] == [3]
    assert tree.remove("a/+/c", "s2")
    assert len(tree) == 0
    assert not tree._root.has_children()  # every branch pruned


def test_topic_store_replace_and_delete() -> None:
    store: TopicStore[str] = TopicStore()
    store.set("a/b", "1")
    store.set("a/b", "2")
    assert len(store) == 1
    assert store.get("a/b") == "2"
    assert store.delete("a/b")
    assert store.get("a/b") is None
    assert len(store) == 0


# An operation on a tree: add (or replace) or remove a filter for an owner.
steps = st.lists(
    st.tuples(st.booleans(), filters, st.sampled_from(["s1", "s2", "s3"])), max_size=30
)


@settings(max_examples=300, deadline=None)
@given(steps, topics)
def test_filter_tree_agrees_with_a_plain_model_through_adds_and_removes(
    ops: list[tuple[bool, str, str]], topic: str
) -> None:
    # Nodes keep a lone child and a lone value in slots and move to dicts for
    # the second; every add and remove here crosses those shapes both ways.
    tree: FilterTree[str] = FilterTree()
    model: dict[tuple[str, str], str] = {}
    for n, (adding, f, owner) in enumerate(ops):
        if adding:
            assert tree.add(f, owner, f"{f}@{n}") == ((f, owner) not in model)
            model[(f, owner)] = f"{f}@{n}"
        else:
            assert tree.remove(f, owner) == ((f, owner) in model)
            model.pop((f, owner), None)
        assert len(tree) == len(model)
    got = sorted((str(owner), value) for owner, value in tree.match(topic))
    assert got == sorted((o, v) for (f, o), v in model.items() if topic_matches(f, topic))
    for f, owner in list(model):
        assert tree.remove(f, owner)
    assert len(tree) == 0
    assert not tree._root.has_children()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), topics), max_size=30), filters)
def test_topic_store_agrees_with_a_plain_model_through_sets_and_deletes(
    ops: list[tuple[bool, str]], topic_filter: str
) -> None:
    store: TopicStore[str] = TopicStore()
    model: dict[str, str] = {}
    for n, (setting, t) in enumerate(ops):
        if setting:
            store.set(t, f"{t}@{n}")
            model[t] = f"{t}@{n}"
        else:
            assert store.delete(t) == (t in model)
            model.pop(t, None)
        assert len(store) == len(model)
    assert sorted(store.match(topic_filter)) == sorted(
        (t, v) for t, v in model.items() if topic_matches(topic_filter, t)
    )
    for t, v in model.items():
        assert store.get(t) == v
        assert store.delete(t)
    assert not store._root.has_children()
