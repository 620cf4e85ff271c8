"""Read a compose YAML file the way Compose (Go, yaml.v3) reads it.

Why not plain `yaml.safe_load`: PyYAML implements YAML 1.1, where `22:22` is the number
1342 (base 60) and `yes`/`on`/`off` are booleans; Compose's parser reads `22:22` as the
string a port mapping needs and `yes` as a string. So this loader uses YAML 1.2
core-schema scalars, with integers read as Go reads them (`0440` is octal, as modes
are). It keeps anchors, aliases and `<<` merge keys, refuses duplicate keys (as Compose
does), and turns Compose's `!reset` and `!override` tags into `Tagged` values for the
merge step. Aliased nodes are copied so that later
in-place edits never leak from one use of an anchor into another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

from .errors import ComposeError


@dataclass
class Tagged:
    """A value carrying Compose's `!reset` (drop the inherited value) or `!override`
    (replace it instead of merging) tag."""

    tag: str  # "reset" or "override"
    value: Any


class _Resolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core schema: only true/false are booleans, no sexagesimal numbers."""


_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^[-+]?(?:0b[01_]+|0o[0-7_]+|0x[0-9a-fA-F_]+|[0-9][0-9_]*)$"),
    list("-+0123456789"),
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)
_Resolver.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)
_Resolver.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])


class _Constructor(yaml.constructor.SafeConstructor):
    def construct_yaml_int(self, node: ScalarNode) -> int:
        """Integers as Go's strconv.ParseInt(s, 0, 64) reads them (yaml.v3 does): `0x1f`,
        `0o17`, `0b101`, and a leading 0 means octal (`0440` is 288, as in file modes)."""
        text = str(self.construct_scalar(node)).replace("_", "")
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        prefix = digits[:2].lower()
        if prefix in ("0x", "0o", "0b"):
            return sign * int(digits[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix])
        if len(digits) > 1 and digits.startswith("0") and set(digits) <= set("01234567"):
            return sign * int(digits, 8)
        return sign * int(digits, 10)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first defined at line "
                    f"{seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _construct_tagged(tag: str) -> Any:
    def construct(loader: _Constructor, node: Node) -> Tagged:
        if isinstance(node, ScalarNode):
            value: Any = loader.construct_scalar(node)
        elif isinstance(node, MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:
            value = loader.construct_sequence(node, deep=True)  # type: ignore[arg-type]
        return Tagged(tag, value)

    return construct


_Constructor.add_constructor("tag:yaml.org,2002:int", _Constructor.construct_yaml_int)  # type: ignore[type-var]
_Constructor.add_constructor("!reset", _construct_tagged("reset"))
_Constructor.add_constructor("!override", _construct_tagged("override"))


class _Loader(
    yaml.reader.Reader,
    yaml.scanner.Scanner,
    yaml.parser.Parser,
    yaml.composer.Composer,
    _Constructor,
    _Resolver,
):
    def __init__(self, stream: str) -> None:
        yaml.reader.Reader.__init__(self, stream)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        _Constructor.__init__(self)
        _Resolver.__init__(self)


_CParser: Any
try:
    from yaml.cyaml import CParser as _CParser  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None

if _CParser is not None:
    # libyaml (Debian's python3-yaml has it) parses about four times faster; tags are
    # still resolved by _Resolver and values built by _Constructor.
    class _FastLoader(_CParser, _Constructor, _Resolver):  # type: ignore[misc]
        def __init__(self, stream: str) -> None:
            _CParser.__init__(self, stream)
            _Constructor.__init__(self)
            _Resolver.__init__(self)

    _LOADER: type[Any] = _FastLoader
else:  # pragma: no cover - pure-Python PyYAML
    _LOADER = _Loader


def fresh(node: Any) -> Any:
    """A copy with no shared sub-objects (YAML aliases share them)."""
    if isinstance(node, dict):
        return {k: fresh(v) for k, v in node.items()}
    if isinstance(node, list):
        return [fresh(v) for v in node]
    if isinstance(node, Tagged):
        return Tagged(node.tag, fresh(node.value))
    return node


def load_text(text: str, file: Path | str) -> Any:
    """Parse one YAML document; syntax errors become ComposeError with line and column."""
    try:
        loader = _LOADER(text)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(top level)"
        problem = exc.problem or exc.context or "invalid YAML"
        raise ComposeError(file, where, f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ComposeError(file, "(top level)", f"invalid YAML: {exc}") from None
    return fresh(data)


def load_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ComposeError(path, "(file)", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ComposeError(path, "(file)", f"cannot read: {exc}") from None
    return load_text(text, path)
