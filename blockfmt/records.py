"""Bases for the small value classes on the start-up path: cheap to define, dataclass-like to use.

``@dataclass`` writes the source of ``__init__``, ``__repr__`` and ``__eq__`` (and, when frozen,
of ``__setattr__``, ``__delattr__`` and ``__hash__``) and compiles it while the class is being
defined: on Python 3.11 that is 1.3 million instructions per class, 2.9 million when frozen
(about 0.5-1.5 ms each). ``blockfmt-img info`` of a VHDX defined 31 of them before doing any
work: about 90 of the 160 million instructions blockfmt's own code cost on top of the
interpreter, pluggy and the console script. A :class:`Record` writes its ``__init__`` by hand
and names its fields in ``_fields`` (its ``__slots__``); equality, ``repr``, copying, pickling
and :meth:`~Record.replace` are written once, here. Classes off the start-up path stay dataclasses.
"""

from __future__ import annotations

from typing import Any, Self

__all__ = ["FrozenRecord", "Record"]

_set_attribute = object.__setattr__


class Record:
    """A mutable value: equal to another of its class with equal fields, unhashable (as a
    dataclass with ``eq=True``). Subclasses name every field in ``_fields`` (in ``__init__``'s
    order, which ``repr`` shows), set ``__slots__ = _fields``, and take each field as an
    ``__init__`` parameter of the same name."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()
    __hash__ = None  # type: ignore[assignment]  # mutable: equal values may change

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({fields})"

    def replace(self, **changes: Any) -> Self:
        """A copy with *changes* applied (what :func:`dataclasses.replace` does for a dataclass).

        :raises TypeError: for a name that is not a field.
        """
        return type(self)(**{name: getattr(self, name) for name in self._fields} | changes)


class FrozenRecord(Record):
    """An immutable, hashable :class:`Record` (a frozen dataclass): ``__init__`` stores the fields
    with :meth:`_fill`, and assigning or deleting one afterwards raises :class:`AttributeError`."""

    __slots__ = ()

    def _fill(self, *values: Any) -> None:
        """Store *values* into the fields, in ``_fields`` order (for ``__init__``)."""
        for name, value in zip(self._fields, values, strict=True):
            _set_attribute(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field '{name}'")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field '{name}'")

    def __hash__(self) -> int:
        return hash(self._values())

    def __getstate__(self) -> tuple[Any, ...]:
        return self._values()

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._fill(*state)
