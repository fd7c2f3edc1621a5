"""Guards on library internals we borrow: fail loudly when a library changes under a patch.

`stream/faust_fixes.py` replaces faust methods and `costing/_trusted.py` writes pydantic's
private slots. Both were written against one library version; on another version the patch may
silently do nothing (a method renamed or overridden in a subclass) or the wrong thing (a new
parameter, a new slot). Each patch therefore declares, next to its code, the versions it was
written for and what it borrows (`Signature`, `Names`, `Value`); `Borrowings.check()` compares
that with what is installed and raises one `BorrowedInternalsError` naming every patch, every
attribute and what differed, expected vs found. Run it where the patch is installed or used
first (worker start-up, module import), never per record.

Only the standard library is imported here, so the pure core may use it too.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class BorrowedInternalsError(RuntimeError):
    """A library no longer matches what a patch on its internals was written for."""


def installed_version(distribution: str) -> str | None:
    """The installed version of `distribution` (a module-level function so tests can fake it)."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def version_matches(written_for: str, installed: str) -> bool:
    """`written_for` "0.15.3" matches only 0.15.3; "2.14" matches any 2.14.x."""
    wanted = written_for.split(".")
    return installed.split(".")[: len(wanted)] == wanted


def _where(owner: Any, name: str) -> str:
    if inspect.ismodule(owner):
        return f"{owner.__name__}.{name}"
    return f"{owner.__module__}.{owner.__qualname__}.{name}"


_MISSING = object()


def signature_text(attr: Any) -> str:
    """`attr`'s signature without annotations, "async " first for a coroutine function.

    Patches record the function they replace as `__wrapped__` (see `replace`), so this reads
    the original's signature whether or not the patch is installed already.
    """
    fn = inspect.unwrap(attr)
    sig = inspect.signature(fn, follow_wrapped=False)
    bare = sig.replace(
        parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
        return_annotation=sig.empty,
    )
    return ("async " if inspect.iscoroutinefunction(fn) else "") + str(bare)


def code_names(attr: Any) -> frozenset[str]:
    """The names `attr`'s code refers to (attributes, globals, string constants such as the
    slot names given to `object.__setattr__`), nested code included."""
    names: set[str] = set()
    pending = [inspect.unwrap(attr).__code__]
    while pending:
        code = pending.pop()
        names.update(code.co_names)
        names.update(c for c in code.co_consts if isinstance(c, str))
        pending.extend(c for c in code.co_consts if inspect.iscode(c))
    return frozenset(names)


class Expectation(Protocol):
    def mismatch(self) -> str | None:
        """None when the library matches, else "<attribute>: expected …, found …"."""


@dataclass(frozen=True)
class Signature:
    """`owner.name` exists with this signature (`signature_text`): a patch replaces, wraps or
    calls it. With `reached_from`, that class still resolves `name` to `owner`'s attribute (a
    subclass override would bypass a patch on `owner`)."""

    owner: Any
    name: str
    expected: str
    reached_from: type | None = None

    def mismatch(self) -> str | None:
        where = _where(self.owner, self.name)
        attr = getattr(self.owner, self.name, _MISSING)
        if attr is _MISSING:
            return f"{where}: expected signature {self.expected}, found no such attribute"
        found = signature_text(attr)
        if found != self.expected:
            return f"{where}: expected signature {self.expected}, found {found}"
        if self.reached_from is not None:
            reached = getattr(self.reached_from, self.name, _MISSING)
            if reached is not attr:
                by = _where(self.reached_from, self.name)
                return f"{where}: expected {by} to be this attribute, found it overridden"
        return None


@dataclass(frozen=True)
class Names:
    """`owner.name`'s code still refers to these names: the instance attributes a patch reads
    (set in `__init__`), or the calls it relies on a faust loop making."""

    owner: Any
    name: str
    expected: tuple[str, ...]

    def mismatch(self) -> str | None:
        where = _where(self.owner, self.name)
        attr = getattr(self.owner, self.name, _MISSING)
        if attr is _MISSING:
            return (
                f"{where}: expected code naming {', '.join(self.expected)}, found no such attribute"
            )
        missing = [n for n in self.expected if n not in code_names(attr)]
        if missing:
            named = ", ".join(self.expected)
            return f"{where}: expected its code to name {named}, found no {', '.join(missing)}"
        return None


@dataclass(frozen=True)
class Value:
    """`owner.name == expected` (a slot layout, or the class a library uses for something)."""

    owner: Any
    name: str
    expected: object

    def mismatch(self) -> str | None:
        found = getattr(self.owner, self.name, _MISSING)
        if found == self.expected:
            return None
        shown = "no such attribute" if found is _MISSING else repr(found)
        return f"{_where(self.owner, self.name)}: expected {self.expected!r}, found {shown}"


@dataclass(frozen=True)
class Patch:
    """One patch (or use of internals): the versions it was written for and what it borrows."""

    name: str
    written_for: Mapping[str, str]
    borrows: tuple[Expectation, ...]

    def problems(self) -> list[str]:
        found = []
        for distribution, wanted in self.written_for.items():
            installed = installed_version(distribution)
            if installed is None or not version_matches(wanted, installed):
                found.append(
                    f"patch {self.name!r}: {distribution}: expected version {wanted}, "
                    f"found {installed or 'not installed'}"
                )
        found.extend(
            f"patch {self.name!r}: {problem}"
            for problem in (b.mismatch() for b in self.borrows)
            if problem is not None
        )
        return found


@dataclass
class Borrowings:
    """The patches one module makes on libraries' internals, declared with `@patch(...)`."""

    module: str
    written_for: Mapping[str, str]
    docs: str
    patches: list[Patch] = field(default_factory=list)

    def patch(
        self, *borrows: Expectation, also_written_for: Mapping[str, str] | None = None
    ) -> Callable[[T], T]:
        """Declare what the decorated patch borrows; its name (less `_install_`) names it."""

        def declare(target: T) -> T:
            name = getattr(target, "__name__", repr(target)).removeprefix("_install_")
            versions = {**self.written_for, **(also_written_for or {})}
            self.patches.append(Patch(name, versions, borrows))
            return target

        return declare

    def check_one(self, name: str) -> None:
        """`check` for the patch called `name` alone (installed on demand, by its caller)."""
        self.check([patch for patch in self.patches if patch.name == name])

    def check(self, patches: Iterable[Patch] | None = None) -> None:
        """Raise `BorrowedInternalsError` listing every difference, or return."""
        problems = [p for patch in (patches or self.patches) for p in patch.problems()]
        if problems:
            lines = "\n".join(f"- {problem}" for problem in problems)
            raise BorrowedInternalsError(
                f"{self.module} relies on library internals that are not what it was "
                f"written for:\n{lines}\nRe-read each patch against the installed library, then "
                f"update its declaration (see {self.docs})."
            )


def replace(owner: Any, name: str, new: Callable[..., Any], original: Callable[..., Any]) -> None:
    """Set `owner.name = new`, recording `original` as `new.__wrapped__` so that the guards
    still read the original's signature once the patch is installed."""
    new.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(owner, name, new)
