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
    # Both maps are made when first needed: an inner node holds no values and a
    # leaf no children, and each empty dict is 64 bytes for every topic level
    # of every subscription and retained message.
    __slots__ = ("children", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node[V]] | None = None
        self.values: dict[object, V] | None = None

    def child(self, level: str) -> _Node[V]:
        """The child for ``level``, made if there is none."""
        children = self.children
        if children is None:
            children = self.children = {}
        node = children.get(level)
        if node is None:
            node = children[level] = _Node()
        return node

    def put(self, key: object, value: V) -> bool:
        """Store ``value`` under ``key``; True if the key was new."""
        values = self.values
        if values is None:
            values = self.values = {}
        is_new = key not in values
        values[key] = value
        return is_new


def _remove_value(root: _Node[V], key_path: str, key: object) -> bool:
    """Remove ``key`` from the node at ``key_path``; prune branches left empty."""
    path: list[tuple[_Node[V], str]] = []
    node = root
    for level in key_path.split("/"):
        children = node.children
        child = None if children is None else children.get(level)
        if child is None:
            return False
        path.append((node, level))
        node = child
    values = node.values
    if values is None or key not in values:
        return False
    del values[key]
    if not values:
        node.values = None
    # prune empty branches so long-lived servers do not accumulate dead nodes
    for parent, level in reversed(path):
        children = parent.children
        assert children is not None
        child = children[level]
        if child.values or child.children:
            break
        del children[level]
        if not children:
            parent.children = None
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
            node = node.child(level)
        is_new = node.put(owner, value)
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
        if wild and children is not None:
            hash_node = children.get("#")
            if hash_node is not None and hash_node.values:
                yield from hash_node.values.items()
        if i == len(levels):
            if node.values:
                yield from node.values.items()
            return
        if children is None:
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
            node = node.child(level)
        if node.put(None, value):
            self._size += 1

    def get(self, topic: str) -> V | None:
        node = self._root
        for level in topic.split("/"):
            children = node.children
            child = None if children is None else children.get(level)
            if child is None:
                return None
            node = child
        values = node.values
        return None if values is None else values.get(None)

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
        values = node.values
        if i == len(levels):
            if values is not None and None in values:
                yield "/".join(prefix), values[None]
            return
        level = levels[i]
        if level == "#":
            # "#" also matches the parent level itself ("a/#" matches "a")
            if i > 0 and values is not None and None in values:
                yield "/".join(prefix), values[None]
            yield from self._all(node, prefix, skip_dollar=(i == 0))
            return
        children = node.children
        if children is None:
            return
        if level == "+":
            for name, child in children.items():
                if i == 0 and name.startswith("$"):
                    continue
                yield from self._walk(child, levels, i + 1, [*prefix, name])
            return
        exact = children.get(level)
        if exact is not None:
            yield from self._walk(exact, levels, i + 1, [*prefix, level])

    def _all(self, node: _Node[V], prefix: list[str], skip_dollar: bool) -> Iterator[tuple[str, V]]:
        children = node.children
        if children is None:
            return
        for name, child in children.items():
            if skip_dollar and name.startswith("$"):
                continue
            path = [*prefix, name]
            values = child.values
            if values is not None and None in values:
                yield "/".join(path), values[None]
            yield from self._all(child, path, skip_dollar=False)
