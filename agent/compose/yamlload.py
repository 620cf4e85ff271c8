"""Read a compose YAML file the way Compose (Go, yaml.v3) reads it.

Why not plain `yaml.safe_load`: PyYAML implements YAML 1.1, where `22:22` is the number
1342 (base 60) and `yes`/`on`/`off` are booleans; Compose's parser reads `22:22` as the
string a port mapping needs and `yes` as a string. So this loader uses YAML 1.2
core-schema scalars, with integers read as Go reads them (`0440` is octal, as modes
are). It keeps anchors, aliases and `<<` merge keys, refuses duplicate keys (as Compose
does), and turns Compose's `!reset` and `!override` tags into `Tagged` values for the
merge step. Aliased nodes are copied so that later
in-place edits never leak from one use of an anchor into another.

The file is untrusted: nesting deeper than MAX_DEPTH is refused before it is composed
(libyaml's composer recurses in C and would crash the interpreter on `[[[[...`), and
before anything is built the node graph is measured with aliases followed, so an alias
bomb (billion laughs), a recursive alias or a deep chain of aliases is refused in
time proportional to the file, not to its expansion. Errors give the line and column,
never the text of the file: it may be a secret that is not YAML (`include: [/etc/shadow]`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.events import MappingEndEvent, MappingStartEvent, SequenceEndEvent, SequenceStartEvent
from yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode

from . import files
from .errors import ComposeError, shown

MAX_VALUES = 100_000  # scalars and collections once aliases are followed
MAX_DEPTH = 100  # nesting, aliases followed; a compose file needs about 8
MAX_EXPANDED_BYTES = 32 << 20  # the text of the scalars once aliases are followed
MAX_INT_DIGITS = 64  # Compose reads 64-bit integers
# libyaml's composer recurses in C: 5000 levels are fine, 100000 crash the interpreter.
# Below this bound it composes safely and _measure then applies MAX_DEPTH.
SAFE_COMPOSE_DEPTH = 1000


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
        try:
            if len(digits) > MAX_INT_DIGITS:
                raise ValueError("too many digits")
            if prefix in ("0x", "0o", "0b"):
                return sign * int(digits[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix])
            if len(digits) > 1 and digits.startswith("0") and set(digits) <= set("01234567"):
                return sign * int(digits, 8)
            return sign * int(digits, 10)
        except ValueError:  # `0b_`, or a number no 64-bit integer holds
            raise ConstructorError(None, None, "not a valid integer", node.start_mark) from None

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, MappingNode):  # `!!map text`
            raise ConstructorError(None, None, "expected a mapping", node.start_mark)
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise ConstructorError(
                    None, None, "a key that is a list or a mapping", key_node.start_mark
                ) from None
            if key in seen:
                raise ConstructorError(
                    None,
                    None,
                    f"duplicate key {shown(key)} (first defined at line "
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


@dataclass
class Document:
    """One parsed file: its data, how many values it holds once aliases are followed,
    and where each top-level key is (`line 3, column 1`), for messages that must not
    quote the file."""

    data: Any
    values: int
    key_marks: dict[str, str]


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(top level)"


# Quoted text in a parser message is text of the file, unless it is a token name
# (`'<block end>'`), a key name or one character (`did not find expected ',' or '}'`).
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_TOKEN = re.compile(r"<[a-z ]+>|[A-Za-z0-9_.-]{1,64}|.?", re.DOTALL)


def _redact(problem: str) -> str:
    """A parser message without the file's text (`found undefined alias 'x'`)."""
    first = problem.strip().splitlines()[0] if problem.strip() else "invalid YAML"
    return _QUOTED.sub(
        lambda m: m.group() if _TOKEN.fullmatch(m.group()[1:-1]) else "(text not shown)", first
    )


_SAFE_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _nesting_bound(text: str) -> int:
    """An upper bound on the nesting depth, in C-speed string operations: a flow
    collection needs a `[` or `{`, and each nested block collection starts at a greater
    column than its parent's (a sequence in a mapping may share it), so at most two
    block levels per column of the longest line."""
    longest = max(map(len, text.split("\n")), default=0)
    return 2 * (longest + 1) + text.count("[") + text.count("{")


def _check_nesting(text: str, file: Path | str) -> None:
    """Refuse nesting deeper than MAX_DEPTH from the event stream (parsed iteratively),
    before the composer recurses into it; only run when the cheap bound allows more
    than SAFE_COMPOSE_DEPTH."""
    if _nesting_bound(text) <= SAFE_COMPOSE_DEPTH:
        return
    loader = _LOADER(text)
    try:
        depth = 0
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, MappingStartEvent | SequenceStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ComposeError(
                        file, _where(event.start_mark), f"nested more than {MAX_DEPTH} levels deep"
                    )
            elif isinstance(event, MappingEndEvent | SequenceEndEvent):
                depth -= 1
    finally:
        loader.dispose()


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return list(node.value) if isinstance(node, CollectionNode) else []


def _measure(root: Node, file: Path | str) -> int:
    """Values, depth and scalar text of the node graph with aliases followed, each node
    measured once (an alias is the same node object): refuses bombs before building."""
    size: dict[int, tuple[int, int, int]] = {}  # collection id -> (values, depth, text)
    opened: set[int] = set()  # collections on the path being walked
    todo: list[Node] = [root]
    while todo:
        node = todo[-1]
        key = id(node)
        if key in size:
            todo.pop()
            continue
        children = _children(node)
        if key not in opened:
            opened.add(key)
            pending: list[Node] = [
                c for c in children if isinstance(c, CollectionNode) and id(c) not in size
            ]
            for child in pending:
                if id(child) in opened:
                    raise ComposeError(
                        file,
                        _where(child.start_mark),
                        "an alias refers to a collection it is part of",
                    )
            if pending:
                todo.extend(pending)
                continue
        todo.pop()
        opened.discard(key)
        values, depth, text = 1, 0, len(node.value) if isinstance(node, ScalarNode) else 0
        for child in children:
            if isinstance(child, ScalarNode):
                values, depth, text = values + 1, max(depth, 1), text + len(child.value)
            else:
                v, d, t = size[id(child)]
                values, depth, text = values + v, max(depth, d), text + t
        size[key] = (values, depth + 1, text)
        if values > MAX_VALUES:
            raise ComposeError(
                file,
                _where(node.start_mark),
                f"more than {MAX_VALUES} values once aliases are followed; refused",
            )
        if depth + 1 > MAX_DEPTH:
            raise ComposeError(
                file,
                _where(node.start_mark),
                f"nested more than {MAX_DEPTH} levels deep once aliases are followed",
            )
        if text > MAX_EXPANDED_BYTES:
            raise ComposeError(
                file,
                _where(node.start_mark),
                f"more than {MAX_EXPANDED_BYTES >> 20} MiB of text once aliases are "
                "followed; refused",
            )
    return size[id(root)][0]


def _key_marks(root: Node) -> dict[str, str]:
    if not isinstance(root, MappingNode):
        return {}
    return {str(k.value): _where(k.start_mark) for k, _ in root.value if isinstance(k, ScalarNode)}


def parse(text: str, file: Path | str) -> Document:
    """Parse one YAML document within the bounds; errors are ComposeErrors giving the
    line and column, never the file's text."""
    return _parse(text, file, _LOADER)


def load_plain(text: str, file: Path | str) -> Any:
    """Like PyYAML's safe_load (YAML 1.1, as LiteLLM reads its config), within the same
    bounds and with the same errors as compose files."""
    return _parse(text, file, _SAFE_LOADER).data


def _parse(text: str, file: Path | str, loader_class: type[Any]) -> Document:
    if len(text) > files.MAX_FILE_BYTES:
        raise ComposeError(file, "(file)", f"larger than {files.MAX_FILE_BYTES >> 20} MiB")
    try:
        _check_nesting(text, file)
        loader = loader_class(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return Document(None, 0, {})
            values = _measure(node, file)
            marks = _key_marks(node)
            try:
                data = loader.construct_document(node)
            except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError):
                # PyYAML's constructors fail this way on an explicit tag that does not
                # fit its value (`!!float`, `!!timestamp x`, `!!bool`)
                raise ComposeError(
                    file, "(top level)", "invalid YAML: a value that does not fit its tag"
                ) from None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = _redact(exc.problem or exc.context or "invalid YAML")
        raise ComposeError(file, _where(mark), f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise ComposeError(file, "(top level)", f"invalid YAML: {_redact(str(exc))}") from None
    except RecursionError:  # only PyYAML's pure-Python composer recurses in Python
        raise ComposeError(
            file, "(top level)", f"nested more than {MAX_DEPTH} levels deep"
        ) from None
    return Document(fresh(data), values, marks)


def load_text(text: str, file: Path | str) -> Any:
    """Parse one YAML document; syntax errors become ComposeError with line and column."""
    return parse(text, file).data


def load_file(path: Path) -> Any:
    """Read (bounded, regular files only) and parse one file."""
    return load_text(files.read_text(path), path)
