"""Topic names, topic filters and the trees that match them.

A filter is stored level by level in a tree, so matching a topic costs one
walk per level rather than one comparison per subscription.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final, Generic, TypeVar

V = TypeVar("V")

MAX_TOPIC_BYTES: Final = 65535


def is_valid_topic_name(topic: str) -> bool:
    return bool(topic) and "+" not in topic and "#" not in topic and "\x00" not in topic


def is_valid_topic_filter(topic_filter: str) -> bool:
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def is_shared_filter(topic_filter: str) -> bool:
    return topic_filter.startswith("$share/")


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches ``topic_filter`` (one-off check, no tree)."""
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    if topic.startswith("$") and f_levels[0] in ("+", "#"):
        return False
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


class _Node(Generic[V]):
    __slots__ = ("children", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node[V]] = {}
        self.values: dict[object, V] = {}


def _remove_value(root: _Node[V], key_path: str, key: object) -> bool:
    """Remove ``key`` from the node at ``key_path``; prune branches left empty."""
    path: list[tuple[_Node[V], str]] = []
    node = root
    for level in key_path.split("/"):
        child = node.children.get(level)
        if child is None:
            return False
        path.append((node, level))
        node = child
    if key not in node.values:
        return False
    del node.values[key]
    # prune empty branches so long-lived servers do not accumulate dead nodes
    for parent, level in reversed(path):
        if parent.children[level].values or parent.children[level].children:
            break
        del parent.children[level]
    return True


class FilterTree(Generic[V]):
    """Topic filters mapped to values, keyed per filter by an owner.

    ``match(topic)`` yields ``(owner, value)`` for every filter that matches,
    which is how subscriptions (owner = session) and interception claims
    (owner = driver handler) are found for a published topic.
    """

    __slots__ = ("_root", "_size")

    def __init__(self) -> None:
        self._root: _Node[V] = _Node()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, topic_filter: str, owner: object, value: V) -> bool:
        """Store ``value`` for ``owner`` under ``topic_filter``; True if it was new."""
        node = self._root
        for level in topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        is_new = owner not in node.values
        node.values[owner] = value
        if is_new:
            self._size += 1
        return is_new

    def remove(self, topic_filter: str, owner: object) -> bool:
        if not _remove_value(self._root, topic_filter, owner):
            return False
        self._size -= 1
        return True

    def match(self, topic: str) -> Iterator[tuple[object, V]]:
        levels = topic.split("/")
        yield from self._match(self._root, levels, 0, topic.startswith("$"))

    def _match(
        self, node: _Node[V], levels: list[str], i: int, dollar: bool
    ) -> Iterator[tuple[object, V]]:
        children = node.children
        # "$" topics are not matched by a wildcard in the first level
        wild = not (dollar and i == 0)
        if wild:
            hash_node = children.get("#")
            if hash_node is not None:
                yield from hash_node.values.items()
        if i == len(levels):
            yield from node.values.items()
            return
        exact = children.get(levels[i])
        if exact is not None:
            yield from self._match(exact, levels, i + 1, dollar)
        if wild:
            plus = children.get("+")
            if plus is not None:
                yield from self._match(plus, levels, i + 1, dollar)


class TopicStore(Generic[V]):
    """Values kept per concrete topic (retained messages), found by filter."""

    __slots__ = ("_root", "_size")

    def __init__(self) -> None:
        self._root: _Node[V] = _Node()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def set(self, topic: str, value: V) -> None:
        node = self._root
        for level in topic.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        if None not in node.values:
            self._size += 1
        node.values[None] = value

    def get(self, topic: str) -> V | None:
        node = self._root
        for level in topic.split("/"):
            child = node.children.get(level)
            if child is None:
                return None
            node = child
        return node.values.get(None)

    def delete(self, topic: str) -> bool:
        if not _remove_value(self._root, topic, None):
            return False
        self._size -= 1
        return True

    def match(self, topic_filter: str) -> Iterator[tuple[str, V]]:
        """Every stored ``(topic, value)`` whose topic matches ``topic_filter``."""
        yield from self._walk(self._root, topic_filter.split("/"), 0, [])

    def _walk(
        self, node: _Node[V], levels: list[str], i: int, prefix: list[str]
    ) -> Iterator[tuple[str, V]]:
        if i == len(levels):
            if None in node.values:
                yield "/".join(prefix), node.values[None]
            return
        level = levels[i]
        if level == "#":
            # "#" also matches the parent level itself ("a/#" matches "a")
            if i > 0 and None in node.values:
                yield "/".join(prefix), node.values[None]
            yield from self._all(node, prefix, skip_dollar=(i == 0))
            return
        if level == "+":
            for name, child in node.children.items():
                if i == 0 and name.startswith("$"):
                    continue
                yield from self._walk(child, levels, i + 1, [*prefix, name])
            return
        exact = node.children.get(level)
        if exact is not None:
            yield from self._walk(exact, levels, i + 1, [*prefix, level])

    def _all(self, node: _Node[V], prefix: list[str], skip_dollar: bool) -> Iterator[tuple[str, V]]:
        for name, child in node.children.items():
            if skip_dollar and name.startswith("$"):
                continue
            path = [*prefix, name]
            if None in child.values:
                yield "/".join(path), child.values[None]
            yield from self._all(child, path, skip_dollar=False)
