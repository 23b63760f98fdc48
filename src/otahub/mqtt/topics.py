"""Topic names, topic filters and the trees that match them.

A filter is stored level by level in a tree, so matching a topic costs one
walk per level rather than one comparison per subscription.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, Generic, TypeVar, cast

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


# marks a node's lone-value slot as empty (None is a key: TopicStore uses it)
_ABSENT: Final = object()


class _Node(Generic[V]):
    """One topic level: its children and the values stored at it.

    Most levels below the first few belong to a single device's topics, so a
    node usually has one child and one value. Those are kept in slots; a dict is
    made only for the second (a dict with one entry is about 230 bytes, and a
    fleet has several such levels for every device).
    """

    __slots__ = ("_level", "_more", "_only", "_owner", "_value", "_values")

    def __init__(self) -> None:
        # the lone child and its level, or every child in ``_more`` (never both)
        self._level = ""
        self._only: _Node[V] | None = None
        self._more: dict[str, _Node[V]] | None = None
        # the lone value and its key, or every value in ``_values`` (never both)
        self._owner: object = _ABSENT
        self._value: V | None = None
        self._values: dict[object, V] | None = None

    def get(self, level: str) -> _Node[V] | None:
        only = self._only
        if only is not None:
            return only if self._level == level else None
        more = self._more
        return None if more is None else more.get(level)

    def child(self, level: str) -> _Node[V]:
        """The child for ``level``, made if there is none."""
        node = self.get(level)
        if node is not None:
            return node
        node = _Node()
        only = self._only
        if only is not None:
            self._more = {self._level: only, level: node}
            self._only = None
            self._level = ""
        elif self._more is not None:
            self._more[level] = node
        else:
            self._level = level
            self._only = node
        return node

    def drop(self, level: str) -> None:
        """Forget the child for ``level`` (there is one)."""
        if self._only is not None:
            self._only = None
            self._level = ""
            return
        more = self._more
        assert more is not None
        del more[level]
        if len(more) == 1:
            ((self._level, self._only),) = more.items()
            self._more = None

    def has_children(self) -> bool:
        return self._only is not None or self._more is not None

    def children(self) -> list[tuple[str, _Node[V]]]:
        if self._only is not None:
            return [(self._level, self._only)]
        return [] if self._more is None else list(self._more.items())

    def put(self, key: object, value: V) -> bool:
        """Store ``value`` under ``key``; True if the key was new."""
        values = self._values
        if values is not None:
            is_new = key not in values
            values[key] = value
            return is_new
        owner = self._owner
        if owner is _ABSENT or owner == key:
            self._owner = key
            self._value = value
            return owner is _ABSENT
        self._values = {owner: cast(V, self._value), key: value}
        self._owner = _ABSENT
        self._value = None
        return True

    def take(self, key: object) -> bool:
        """Remove the value under ``key``; False if there was none."""
        values = self._values
        if values is None:
            if self._owner is _ABSENT or self._owner != key:
                return False
            self._owner = _ABSENT
            self._value = None
            return True
        if key not in values:
            return False
        del values[key]
        if len(values) == 1:
            ((self._owner, self._value),) = values.items()
            self._values = None
        return True

    def has_values(self) -> bool:
        return self._owner is not _ABSENT or self._values is not None

    def value_of(self, key: object) -> V | None:
        values = self._values
        if values is not None:
            return values.get(key)
        return self._value if self._owner is not _ABSENT and self._owner == key else None

    def pairs(self) -> Iterable[tuple[object, V]]:
        """Every ``(key, value)`` stored here."""
        values = self._values
        if values is not None:
            return values.items()
        if self._owner is _ABSENT:
            return ()
        return ((self._owner, cast(V, self._value)),)


def _remove_value(root: _Node[V], key_path: str, key: object) -> bool:
    """Remove ``key`` from the node at ``key_path``; prune branches left empty."""
    path: list[tuple[_Node[V], str, _Node[V]]] = []
    node = root
    for level in key_path.split("/"):
        child = node.get(level)
        if child is None:
            return False
        path.append((node, level, child))
        node = child
    if not node.take(key):
        return False
    # prune empty branches so long-lived servers do not accumulate dead nodes
    for parent, level, child in reversed(path):
        if child.has_values() or child.has_children():
            break
        parent.drop(level)
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
        # "$" topics are not matched by a wildcard in the first level
        wild = not (dollar and i == 0)
        if wild:
            hash_node = node.get("#")
            if hash_node is not None:
                yield from hash_node.pairs()
        if i == len(levels):
            yield from node.pairs()
            return
        exact = node.get(levels[i])
        if exact is not None:
            yield from self._match(exact, levels, i + 1, dollar)
        if wild:
            plus = node.get("+")
            if plus is not None:
                yield from self._match(plus, levels, i + 1, dollar)


class TopicStore(Generic[V]):
    """Values kept per concrete topic (retained messages), found by filter.

    A value is never None: None is what ``get`` says for a topic with none.
    """

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
            child = node.get(level)
            if child is None:
                return None
            node = child
        return node.value_of(None)

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
            value = node.value_of(None)
            if value is not None:
                yield "/".join(prefix), value
            return
        level = levels[i]
        if level == "#":
            # "#" also matches the parent level itself ("a/#" matches "a")
            value = node.value_of(None) if i > 0 else None
            if value is not None:
                yield "/".join(prefix), value
            yield from self._all(node, prefix, skip_dollar=(i == 0))
            return
        if level == "+":
            for name, child in node.children():
                if i == 0 and name.startswith("$"):
                    continue
                yield from self._walk(child, levels, i + 1, [*prefix, name])
            return
        exact = node.get(level)
        if exact is not None:
            yield from self._walk(exact, levels, i + 1, [*prefix, level])

    def _all(self, node: _Node[V], prefix: list[str], skip_dollar: bool) -> Iterator[tuple[str, V]]:
        for name, child in node.children():
            if skip_dollar and name.startswith("$"):
                continue
            path = [*prefix, name]
            value = child.value_of(None)
            if value is not None:
                yield "/".join(path), value
            yield from self._all(child, path, skip_dollar=False)
