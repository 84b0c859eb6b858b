"""Source code as syntax trees: the languages we read, an SDK's public API, call sites, validity.

Everything is built on tree-sitter grammars shipped as wheels, so parsing needs no compiler
and no network. Parsers and queries are created lazily once per process (they cannot be
pickled, and the dataset builder parses in worker processes).

Offsets: tree-sitter reports UTF-8 byte offsets; every span this module returns is a
character offset into the `str` it was given, so callers slice the text directly.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final, Literal

from tree_sitter import Language, Node, Parser, Query, QueryCursor

LanguageName = Literal["python", "java", "javascript", "typescript", "tsx", "go"]
SymbolKind = Literal["module", "class", "function", "method"]

# tsx is TypeScript with JSX; it only differs in the grammar that parses it.
EXTENSIONS: Final[dict[str, LanguageName]] = {
    ".py": "python",
    ".java": "java",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".go": "go",
}
# What a dataset card and a report call each grammar.
DISPLAY_LANGUAGE: Final[dict[LanguageName, str]] = {
    "python": "python",
    "java": "java",
    "javascript": "javascript",
    "typescript": "typescript",
    "tsx": "typescript",
    "go": "go",
}

_CALL_QUERIES: Final[dict[LanguageName, str]] = {
    "python": """
        (call function: (identifier) @name) @call
        (call function: (attribute attribute: (identifier) @name)) @call
    """,
    "java": """
        (method_invocation name: (identifier) @name) @call
        (object_creation_expression type: (type_identifier) @name) @call
        (object_creation_expression type: (generic_type (type_identifier) @name)) @call
        (object_creation_expression type: (scoped_type_identifier (type_identifier) @name)) @call
    """,
    "javascript": """
        (call_expression function: (identifier) @name) @call
        (call_expression function: (member_expression property: (property_identifier) @name))
            @call
        (new_expression constructor: (identifier) @name) @call
        (new_expression constructor: (member_expression property: (property_identifier) @name))
            @call
    """,
    "go": """
        (call_expression function: (identifier) @name) @call
        (call_expression function: (selector_expression field: (field_identifier) @name)) @call
    """,
}
_CALL_QUERIES["typescript"] = _CALL_QUERIES["javascript"]
_CALL_QUERIES["tsx"] = _CALL_QUERIES["javascript"]

# Source roots that are not part of a module's import name.
_SOURCE_ROOT_DIRS: Final = frozenset({"src", "lib", "source", "pkg"})


@dataclass(frozen=True, slots=True)
class ApiSymbol:
    """One public name of an SDK: `qualified` is what a dataset card lists, `name` what a call
    site spells (the last part)."""

    qualified: str
    name: str
    kind: SymbolKind
    language: str
    path: str


@dataclass(frozen=True, slots=True)
class CallSite:
    """A call or constructor expression: `text[start:end]`, calling `name` through `callee`
    (`client.post_entry` calls `post_entry` through `client.post_entry`)."""

    start: int
    end: int
    name: str
    name_start: int
    callee: str


def language_for(path: str) -> LanguageName | None:
    return EXTENSIONS.get(PurePosixPath(path).suffix.lower())


@functools.cache
def _language(name: LanguageName) -> Language:
    # Imported here: a process that never parses never loads the grammars.
    if name == "python":
        import tree_sitter_python

        return Language(tree_sitter_python.language())
    if name == "java":
        import tree_sitter_java

        return Language(tree_sitter_java.language())
    if name == "javascript":
        import tree_sitter_javascript

        return Language(tree_sitter_javascript.language())
    if name == "go":
        import tree_sitter_go

        return Language(tree_sitter_go.language())
    import tree_sitter_typescript

    if name == "typescript":
        return Language(tree_sitter_typescript.language_typescript())
    return Language(tree_sitter_typescript.language_tsx())


@functools.cache
def _parser(name: LanguageName) -> Parser:
    return Parser(_language(name))


@functools.cache
def _call_query(name: LanguageName) -> Query:
    return Query(_language(name), _CALL_QUERIES[name])


class ParsedSource:
    """A text and its syntax tree, with byte offsets mapped back to characters."""

    def __init__(self, text: str, language: LanguageName) -> None:
        self.text = text
        self.language = language
        self._data = text.encode("utf-8")
        self._ascii = len(self._data) == len(text)
        self.tree = _parser(language).parse(self._data)
        self._char_offsets: list[int] | None = None

    @property
    def root(self) -> Node:
        return self.tree.root_node

    def char_offset(self, byte_offset: int) -> int:
        if self._ascii:
            return byte_offset
        if self._char_offsets is None:
            # One pass builds the whole table: files with many call sites would otherwise
            # decode their prefix once per call.
            table = [0] * (len(self._data) + 1)
            position = 0
            for index, char in enumerate(self.text):
                width = len(char.encode("utf-8"))
                for step in range(width):
                    table[position + step] = index
                position += width
            table[position] = len(self.text)
            self._char_offsets = table
        return self._char_offsets[byte_offset]

    def node_text(self, node: Node) -> str:
        return self.byte_text(node.start_byte, node.end_byte)

    def byte_text(self, start: int, end: int) -> str:
        return self._data[start:end].decode("utf-8", errors="replace")


def parse(text: str, language: LanguageName) -> ParsedSource:
    return ParsedSource(text, language)


def call_sites(source: ParsedSource) -> list[CallSite]:
    """Every call and constructor expression, ordered by position."""
    cursor = QueryCursor(_call_query(source.language))
    found: dict[tuple[int, int], CallSite] = {}
    for _, captures in cursor.matches(source.root):
        call = captures["call"][0]
        name = captures["name"][0]
        callee_start, callee_end = _callee_range(call, name)
        key = (call.start_byte, call.end_byte)
        found[key] = CallSite(
            start=source.char_offset(call.start_byte),
            end=source.char_offset(call.end_byte),
            name=source.node_text(name),
            name_start=source.char_offset(name.start_byte),
            callee=source.byte_text(callee_start, callee_end),
        )
    return [found[key] for key in sorted(found)]


def _callee_range(call: Node, name: Node) -> tuple[int, int]:
    function = call.child_by_field_name("function") or call.child_by_field_name("constructor")
    if function is not None:
        return function.start_byte, function.end_byte
    # Java's `client.postEntry(...)` has no function node: the callee runs from the object to
    # the method name.
    obj = call.child_by_field_name("object")
    if obj is not None and call.type == "method_invocation":
        return obj.start_byte, name.end_byte
    return name.start_byte, name.end_byte


def syntax_errors(text: str, language: LanguageName) -> int:
    """How many ERROR and MISSING nodes the parse of `text` has (0 for a valid file)."""
    tree = _parser(language).parse(text.encode("utf-8"))
    if not tree.root_node.has_error:
        return 0
    count = 0
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            count += 1
            continue
        if node.has_error:
            stack.extend(node.children)
    return count


# ---- public API ----------------------------------------------------------------------------


def module_name(path: str, language: LanguageName) -> str:
    """The import name of the module at repository-relative `path` (`src/ledgerlink/ledger.py`
    is `ledgerlink.ledger`; `web/client/index.ts` is `web/client`)."""
    pure = PurePosixPath(path)
    parts = list(pure.with_suffix("").parts)
    if len(parts) > 1 and parts[0] in _SOURCE_ROOT_DIRS:
        parts = parts[1:]
    if parts and parts[-1] in ("__init__", "index", "mod"):
        parts = parts[:-1]
    if language == "python":
        return ".".join(parts)
    return "/".join(parts)


def public_api(source: ParsedSource, path: str) -> tuple[list[ApiSymbol], list[str]]:
    """The public symbols `source` defines, and the names a consumer's imports would mention
    to reach them (a Python package, a Java package, a Go package)."""
    extract = _API_EXTRACTORS[source.language]
    return extract(source, path)


def _symbol(
    source: ParsedSource, qualified: str, name: str, kind: SymbolKind, path: str
) -> ApiSymbol:
    return ApiSymbol(
        qualified=qualified,
        name=name,
        kind=kind,
        language=DISPLAY_LANGUAGE[source.language],
        path=path,
    )


def _definition(node: Node) -> Node:
    if node.type == "decorated_definition":
        inner = node.child_by_field_name("definition")
        if inner is not None:
            return inner
    return node


def _name_of(source: ParsedSource, node: Node) -> str | None:
    name = node.child_by_field_name("name")
    return source.node_text(name) if name is not None else None


def _python_api(source: ParsedSource, path: str) -> tuple[list[ApiSymbol], list[str]]:
    module = module_name(path, "python")
    if not module or any(part.startswith("_") for part in module.split(".")):
        return [], []
    symbols = [_symbol(source, module, module.rsplit(".", 1)[-1], "module", path)]
    for child in source.root.children:
        node = _definition(child)
        name = _name_of(source, node)
        if name is None or name.startswith("_"):
            continue
        if node.type == "function_definition":
            symbols.append(_symbol(source, f"{module}.{name}", name, "function", path))
        elif node.type == "class_definition":
            symbols.append(_symbol(source, f"{module}.{name}", name, "class", path))
            body = node.child_by_field_name("body")
            for member in body.children if body is not None else []:
                method = _definition(member)
                method_name = _name_of(source, method)
                if (
                    method.type == "function_definition"
                    and method_name is not None
                    and not method_name.startswith("_")
                ):
                    symbols.append(
                        _symbol(
                            source, f"{module}.{name}.{method_name}", method_name, "method", path
                        )
                    )
    return symbols, [module.split(".")[0]]


def _has_modifier(source: ParsedSource, node: Node, modifier: str) -> bool:
    for child in node.children:
        if child.type == "modifiers":
            return modifier in source.node_text(child).split()
    return False


_JAVA_TYPES: Final = frozenset(
    {"class_declaration", "interface_declaration", "enum_declaration", "record_declaration"}
)


def _java_api(source: ParsedSource, path: str) -> tuple[list[ApiSymbol], list[str]]:
    package = ""
    for child in source.root.children:
        if child.type == "package_declaration":
            package = " ".join(
                source.node_text(part) for part in child.children if part.is_named
            ).strip()
    symbols: list[ApiSymbol] = []

    def visit(node: Node, owner: str, in_interface: bool) -> None:
        for child in node.children:
            if child.type in _JAVA_TYPES and (
                in_interface or _has_modifier(source, child, "public")
            ):
                name = _name_of(source, child)
                if name is None:
                    continue
                qualified = f"{owner}.{name}" if owner else name
                symbols.append(_symbol(source, qualified, name, "class", path))
                body = child.child_by_field_name("body")
                if body is not None:
                    visit(body, qualified, child.type == "interface_declaration")
            elif (
                child.type == "method_declaration"
                and owner
                and (in_interface or _has_modifier(source, child, "public"))
            ):
                name = _name_of(source, child)
                if name is not None:
                    symbols.append(_symbol(source, f"{owner}.{name}", name, "method", path))
            elif child.type == "enum_body_declarations":
                visit(child, owner, in_interface)

    visit(source.root, package, in_interface=False)
    return symbols, [package] if package and symbols else []


def _js_api(source: ParsedSource, path: str) -> tuple[list[ApiSymbol], list[str]]:
    module = module_name(path, source.language)
    symbols: list[ApiSymbol] = []
    for child in source.root.children:
        if child.type != "export_statement":
            continue
        declaration = child.child_by_field_name("declaration")
        if declaration is None:
            continue
        if declaration.type in ("function_declaration", "generator_function_declaration"):
            name = _name_of(source, declaration)
            if name is not None:
                symbols.append(_symbol(source, f"{module}.{name}", name, "function", path))
        elif declaration.type in ("class_declaration", "abstract_class_declaration"):
            name = _name_of(source, declaration)
            if name is None:
                continue
            symbols.append(_symbol(source, f"{module}.{name}", name, "class", path))
            body = declaration.child_by_field_name("body")
            for member in body.children if body is not None else []:
                if member.type not in ("method_definition", "method_signature"):
                    continue
                method = member.child_by_field_name("name")
                if method is None or method.type == "private_property_identifier":
                    continue
                method_name = source.node_text(method)
                if method_name.startswith("_") or method_name == "constructor":
                    continue
                if _has_child_type(member, "accessibility_modifier", source, ("private",)):
                    continue
                symbols.append(
                    _symbol(source, f"{module}.{name}.{method_name}", method_name, "method", path)
                )
        elif declaration.type == "lexical_declaration":
            for declarator in declaration.children:
                if declarator.type != "variable_declarator":
                    continue
                value = declarator.child_by_field_name("value")
                name = _name_of(source, declarator)
                if (
                    name is not None
                    and value is not None
                    and value.type in ("arrow_function", "function_expression", "function")
                ):
                    symbols.append(_symbol(source, f"{module}.{name}", name, "function", path))
    return symbols, [module.rsplit("/", 1)[-1]] if symbols and module else []


def _has_child_type(
    node: Node, child_type: str, source: ParsedSource, texts: tuple[str, ...]
) -> bool:
    return any(
        child.type == child_type and source.node_text(child) in texts for child in node.children
    )


def _go_receiver_type(source: ParsedSource, node: Node) -> str | None:
    receiver = node.child_by_field_name("receiver")
    if receiver is None:
        return None
    for parameter in receiver.named_children:
        kind = parameter.child_by_field_name("type")
        while kind is not None and kind.type in ("pointer_type", "generic_type"):
            kind = kind.named_children[0] if kind.named_children else None
        if kind is not None:
            return source.node_text(kind)
    return None


def _go_api(source: ParsedSource, path: str) -> tuple[list[ApiSymbol], list[str]]:
    package = ""
    symbols: list[ApiSymbol] = []
    for child in source.root.children:
        if child.type == "package_clause":
            package = " ".join(source.node_text(part) for part in child.named_children)
        elif child.type == "function_declaration":
            name = _name_of(source, child)
            if name is not None and name[:1].isupper():
                symbols.append(_symbol(source, f"{package}.{name}", name, "function", path))
        elif child.type == "method_declaration":
            name = _name_of(source, child)
            owner = _go_receiver_type(source, child)
            if name is not None and name[:1].isupper() and owner and owner[:1].isupper():
                symbols.append(_symbol(source, f"{package}.{owner}.{name}", name, "method", path))
        elif child.type == "type_declaration":
            for spec in child.named_children:
                name = _name_of(source, spec) if spec.type == "type_spec" else None
                if name is not None and name[:1].isupper():
                    symbols.append(_symbol(source, f"{package}.{name}", name, "class", path))
    if package in ("", "main"):
        return [], []
    return symbols, [package] if symbols else []


_API_EXTRACTORS: Final[
    dict[LanguageName, Callable[[ParsedSource, str], tuple[list[ApiSymbol], list[str]]]]
] = {
    "python": _python_api,
    "java": _java_api,
    "javascript": _js_api,
    "typescript": _js_api,
    "tsx": _js_api,
    "go": _go_api,
}
