"""Constructors of more than three fields take the rest by keyword.

A class defined here whose constructor has more than three fields lets at most
three be passed positionally: a dataclass with more than three ``__init__``
fields is ``kw_only=True`` or puts a ``_: KW_ONLY`` marker after at most three;
a NamedTuple has at most three fields; an explicit ``__init__`` takes at most
three positional parameters besides ``self``, the rest after ``*``. Python then
refuses a positional call at every call site, so this test is the tool that
keeps ``Sample(a, b, c, d, e)`` out of the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.static.test_code_shape import ROOT, python_files

MAX_POSITIONAL = 3


def dotted(node: ast.expr) -> str:
    """``dataclasses.dataclass`` for that attribute chain, ``""`` for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Subscript):
        return dotted(node.value)
    return ""


def last_name(node: ast.expr) -> str:
    return dotted(node).rsplit(".", 1)[-1]


def dataclass_call(cls: ast.ClassDef) -> ast.expr | None:
    """The ``@dataclass`` or ``@dataclass(...)`` decorator of ``cls``, if any."""
    for decorator in cls.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if last_name(target) == "dataclass":
            return decorator
    return None


def keyword_is(call: ast.expr | None, name: str, value: bool = True) -> bool:
    """Whether ``call`` is a call that passes ``name=value`` (a literal True or False)."""
    return isinstance(call, ast.Call) and any(
        keyword.arg == name and isinstance(keyword.value, ast.Constant) and keyword.value.value is value
        for keyword in call.keywords
    )


def positional_fields(cls: ast.ClassDef) -> list[str]:
    """The annotated fields of ``cls`` that ``__init__`` takes positionally, in order."""
    names = []
    for statement in cls.body:
        if not isinstance(statement, ast.AnnAssign) or not isinstance(statement.target, ast.Name):
            continue
        annotation = last_name(statement.annotation)
        if annotation == "KW_ONLY":
            break
        value = statement.value
        is_field = isinstance(value, ast.Call) and last_name(value.func) == "field"
        if annotation == "ClassVar" or (
            is_field and (keyword_is(value, "init", False) or keyword_is(value, "kw_only"))
        ):
            continue
        names.append(statement.target.id)
    return names


def init_positional(cls: ast.ClassDef) -> list[str] | None:
    """The positional parameters of an explicit ``__init__`` besides ``self``, or None without one."""
    for statement in cls.body:
        if isinstance(statement, ast.FunctionDef) and statement.name == "__init__":
            arguments = statement.args
            names = [argument.arg for argument in [*arguments.posonlyargs, *arguments.args][1:]]
            return [*names, f"*{arguments.vararg.arg}"] if arguments.vararg else names
    return None


def violations(source: str, name: str) -> list[str]:
    """``name:line Class: ...`` for each class in ``source`` that takes too many fields positionally.

    A dataclass's positional fields follow those of its dataclass bases defined in ``source``.
    """
    found, inherited = [], {}
    for cls in ast.walk(ast.parse(source)):
        if not isinstance(cls, ast.ClassDef):
            continue
        decorator = dataclass_call(cls)
        is_named_tuple = any(last_name(base) == "NamedTuple" for base in cls.bases)
        explicit = init_positional(cls)
        if explicit is not None:
            positional, kind = explicit, "__init__ takes"
        elif is_named_tuple:
            positional, kind = positional_fields(cls), "NamedTuple has"
        elif decorator is not None:
            bases = [field for base in cls.bases for field in inherited.get(dotted(base), [])]
            own = [] if keyword_is(decorator, "kw_only") else positional_fields(cls)
            positional = inherited[cls.name] = [*bases, *own]
            kind = "dataclass takes"
        else:
            continue
        if len(positional) > MAX_POSITIONAL:
            found.append(
                f"{name}:{cls.lineno} {cls.name}: {kind} {len(positional)} positional ({', '.join(positional)})"
            )
    return found


def test_constructors_of_more_than_three_fields_take_keywords() -> None:
    found = [
        problem for path in python_files() for problem in violations(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert not found, "make these keyword-only (kw_only=True, `_: KW_ONLY`, or `*` in __init__):\n" + "\n".join(found)


BAD = """
from dataclasses import dataclass, field, KW_ONLY
from typing import ClassVar, NamedTuple

@dataclass(frozen=True)
class Wide:
    a: int
    b: int
    c: int
    d: int = 0

@dataclass
class Marked:
    a: int
    b: int
    c: int
    _: KW_ONLY
    d: int

@dataclass(frozen=True, kw_only=True)
class Keyed:
    a: int
    b: int
    c: int
    d: int

@dataclass
class Skipped:
    a: int
    b: int
    c: int
    d: ClassVar[int] = 0
    e: list[int] = field(init=False)
    f: int = field(default=0, kw_only=True)

@dataclass
class Base:
    a: int
    b: int

@dataclass
class Derived(Base):
    c: int
    d: int

@dataclass(kw_only=True)
class KeyedDerived(Base):
    c: int
    d: int

class Tuple(NamedTuple):
    a: int
    b: int
    c: int
    d: int

class Explicit:
    def __init__(self, a: int, b: int, c: int, d: int = 0) -> None: ...

class Starred:
    def __init__(self, a: int, b: int, c: int, *, d: int = 0) -> None: ...

class Variadic:
    def __init__(self, a: int, b: int, c: int, *rest: int) -> None: ...
"""


def test_the_checker_names_each_class_that_takes_too_many_positionally() -> None:
    found = violations(BAD, "bad.py")
    named = [problem.split(":", 2)[1].split()[1] for problem in found]
    assert named == ["Wide", "Derived", "Tuple", "Explicit", "Variadic"]
    assert found[0] == "bad.py:6 Wide: dataclass takes 4 positional (a, b, c, d)"
    assert found[1].endswith("Derived: dataclass takes 4 positional (a, b, c, d)")


def test_every_python_file_is_checked() -> None:
    files = {str(path.relative_to(ROOT)) for path in python_files()}
    assert Path(__file__).relative_to(ROOT).as_posix() in files
    assert {"shared/sample.py", "shared/runtime.py"} <= files
    assert not any(name.startswith(("shared/proto/", ".venv/")) for name in files)
