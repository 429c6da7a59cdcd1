"""Reading YAML without losing where things came from.

The YAML is composed into nodes once; the data is built from those nodes while recording the
file, line and column of every value and every key under its path (`("cameras", 0, "zones")`).
`!include FILE`, `!secret NAME` and `!env NAME` / `!env [NAME, default]` are resolved here.
Problems are collected, never raised, so a user sees all of them at once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[Any, ...]
TAGS = ("!include", "!secret", "!env")
SECRETS_FILE = "secrets.yaml"
SECRETS_EXAMPLE = "secrets.example.yaml"
MAX_NODES = 200_000  # a spec is a few thousand values; this stops alias bombs ("billion laughs")
_STANDARD_TAGS = {
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge", "binary")
}


@dataclass(frozen=True)
class Mark:
    file: str
    line: int  # 1-based
    col: int  # 1-based

    @classmethod
    def of(cls, node_or_mark, file: str) -> "Mark":
        m = getattr(node_or_mark, "start_mark", node_or_mark)
        return cls(file, m.line + 1, m.column + 1)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Problem:
    mark: Mark | None
    message: str
    file: str = ""


@dataclass
class YamlDocument:
    data: Any = None
    values: dict[Path_, Mark] = field(default_factory=dict)  # where each value starts
    keys: dict[Path_, Mark] = field(default_factory=dict)  # where each mapping key is written
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # every file read, spec first (for the spec hash)


def display(path: Path) -> str:
    """A path as people typed it: relative to the working directory when below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(Path(path).resolve()) if rel.startswith("..") else rel


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps unknown tags as plain nodes (we resolve our three ourselves)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.merged: dict[int, int] = {}  # id(mapping node) -> how many of its pairs came from `<<:` merges

    def flatten_mapping(self, node):
        """YAML merge keys, the same on every PyYAML version: merged pairs first (from the last mapping
        of a `<<: [*a, *b]` list to the first, so earlier mappings win), then the node's own pairs, which
        win over merged ones. Remembers how many pairs were merged, so an own key overriding a merged one
        is not reported as a duplicate."""
        if id(node) in self.merged:
            return
        subs, own = [], []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                items = [value_node] if isinstance(value_node, yaml.MappingNode) else (
                    value_node.value if isinstance(value_node, yaml.SequenceNode) else None)
                if items is None or not all(isinstance(n, yaml.MappingNode) for n in items):
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark,
                        f"expected a mapping or list of mappings for merging, but found {value_node.id}",
                        value_node.start_mark)
                for sub in items:
                    self.flatten_mapping(sub)
                    subs.append(list(sub.value))
            else:
                if key_node.tag == "tag:yaml.org,2002:value":
                    key_node.tag = "tag:yaml.org,2002:str"
                own.append((key_node, value_node))
        merged = [pair for sub in reversed(subs) for pair in sub]
        node.value = merged + own
        self.merged[id(node)] = len(merged)


def _compose(text: str, name: str):
    loader = _Loader(text)
    loader.name = name
    try:
        return loader, loader.get_single_node()
    finally:
        loader.dispose()


class _Builder:
    def __init__(self, root: Path):
        self.doc = YamlDocument()
        self.nodes = 0
        self.secrets: dict[Path, dict | None] = {}
        self.root_dir = root.parent

    # -- files -------------------------------------------------------------------------------
    def load(self, path: Path, at: Path_, stack: tuple[Path, ...], from_mark: Mark | None) -> Any:
        shown = display(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            self.problem(from_mark, f"no such file: {shown}", shown)
            return None
        except OSError as e:
            self.problem(from_mark, f"cannot read {shown}: {e.strerror or e}", shown)
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            self.problem(Mark(shown, line, 1), "not UTF-8 text; save the file as UTF-8", shown)
            return None
        if "\x00" in text:
            self.problem(Mark(shown, 1, 1), "contains NUL bytes; is this a YAML file?", shown)
            return None
        self.doc.files.append(path)
        try:
            loader, node = _compose(text, shown)
        except yaml.reader.ReaderError as e:
            pos = max(0, min(e.position, len(text)))
            line, col = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
            char = f"#x{e.character:04x}" if isinstance(e.character, int) else repr(e.character)
            self.problem(Mark(shown, line, col), f"YAML does not allow the character {char} here; remove it", shown)
            return None
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            what = e.problem or "syntax error"
            ctx = f" ({e.context})" if e.context else ""
            self.problem(Mark.of(mark, shown) if mark else Mark(shown, 1, 1), f"YAML syntax error: {what}{ctx}", shown)
            return None
        except yaml.YAMLError as e:
            self.problem(Mark(shown, 1, 1), f"YAML error: {e}", shown)
            return None
        except RecursionError:
            self.problem(Mark(shown, 1, 1), "nesting too deep to read; flatten the brackets", shown)
            return None
        if node is None:
            return None
        return self.build(node, loader, path, at, (*stack, path.resolve()), depth=0)

    # -- nodes -------------------------------------------------------------------------------
    def build(self, node, loader, path: Path, at: Path_, stack, depth: int) -> Any:
        shown = display(path)
        mark = Mark.of(node, shown)
        self.doc.values.setdefault(at, mark)
        if depth > 64:
            self.problem(mark, "nesting deeper than 64 levels (a recursive alias?)", shown)
            return None
        self.nodes += 1
        if self.nodes > MAX_NODES:
            if self.nodes == MAX_NODES + 1:
                self.problem(mark, f"the spec expands to more than {MAX_NODES} values (aliases nested in aliases?)", shown)
            return None
        if node.tag in TAGS or (node.tag.startswith("!") and not node.tag.startswith("!!")):
            return self.tagged(node, loader, path, at, stack, mark)
        if node.tag not in _STANDARD_TAGS:
            self.problem(mark, f"tag {node.tag} is not allowed in a spec; the tags are {', '.join(TAGS)}", shown)
            return None
        if isinstance(node, yaml.MappingNode):
            try:
                loader.flatten_mapping(node)
            except yaml.MarkedYAMLError as e:
                self.problem(Mark.of(e.problem_mark, shown) if e.problem_mark else mark, f"YAML merge error: {e.problem}", shown)
                return None
            merged = loader.merged.get(id(node), 0)
            chosen: dict[Any, tuple[int, Mark, Any]] = {}  # key -> (index, key mark, value node)
            for index, (key_node, value_node) in enumerate(node.value):
                key_mark = Mark.of(key_node, shown)
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problem(key_mark, "a key must be a plain value, not a list or mapping", shown)
                    continue
                try:
                    key = loader.construct_object(key_node)
                    hash(key)
                except (yaml.YAMLError, ValueError) as e:
                    self.problem(key_mark, f"cannot read this key: {getattr(e, 'problem', None) or e}", shown)
                    continue
                except TypeError:
                    self.problem(key_mark, "this key cannot be used as a mapping key", shown)
                    continue
                if key in chosen and chosen[key][0] >= merged:  # both written here: a real duplicate
                    self.problem(
                        key_mark,
                        f"key '{key}' appears twice in this mapping (first at line {chosen[key][1].line}); keep one",
                        shown,
                    )
                    continue
                chosen[key] = (index, key_mark, value_node)  # a key written here overrides a merged one
            out: dict[Any, Any] = {}
            for key, (_, key_mark, value_node) in chosen.items():
                self.doc.keys[(*at, key)] = key_mark
                out[key] = self.build(value_node, loader, path, (*at, key), stack, depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(n, loader, path, (*at, i), stack, depth + 1) for i, n in enumerate(node.value)]
        try:
            return loader.construct_object(node)
        except (yaml.YAMLError, ValueError) as e:  # ValueError: e.g. an integer of more than 4300 digits
            self.problem(mark, f"cannot read this value: {getattr(e, 'problem', None) or e}", shown)
            return None

    def tagged(self, node, loader, path: Path, at: Path_, stack, mark: Mark) -> Any:
        shown = display(path)
        if node.tag not in TAGS:
            self.problem(mark, f"unknown tag {node.tag}; the tags are {', '.join(TAGS)}", shown)
            return None
        if node.tag == "!env":
            return self.env(node, loader, mark, shown)
        if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
            self.problem(mark, f"{node.tag} takes one name, e.g. `{node.tag} {'zones.yaml' if node.tag == '!include' else 'vms_token'}`", shown)
            return None
        arg = str(node.value).strip()
        if node.tag == "!include":
            target = (path.parent / arg).resolve()
            if target in stack:
                chain = " -> ".join(display(p) for p in (*stack[stack.index(target):], target))
                self.problem(mark, f"circular include: {chain}", shown)
                return None
            if not target.is_file():
                self.problem(mark, f"!include: no such file {display(target)} (paths are relative to {shown})", shown)
                return None
            return self.load(target, at, stack, mark)
        return self.secret(arg, path, mark, shown)

    def env(self, node, loader, mark: Mark, shown: str) -> Any:
        if isinstance(node, yaml.ScalarNode):
            name, default, has_default = str(node.value).strip(), None, False
        elif isinstance(node, yaml.SequenceNode) and len(node.value) == 2 and isinstance(node.value[0], yaml.ScalarNode):
            name = str(node.value[0].value).strip()
            try:
                default, has_default = loader.construct_object(node.value[1], deep=True), True
            except (yaml.YAMLError, ValueError) as e:
                self.problem(mark, f"cannot read the default of !env: {getattr(e, 'problem', None) or e}", shown)
                return None
        else:
            self.problem(mark, "!env takes a name, or [NAME, default], e.g. `!env [VMS_TOKEN, dev-token]`", shown)
            return None
        if not name:
            self.problem(mark, "!env needs the name of an environment variable", shown)
            return None
        if name in os.environ:
            return os.environ[name]
        if has_default:
            return default
        self.problem(mark, f"environment variable {name} is not set; set it or give a default: `!env [{name}, VALUE]`", shown)
        return None

    def secret(self, name: str, path: Path, mark: Mark, shown: str) -> Any:
        for folder in dict.fromkeys((path.parent, self.root_dir)):
            table = self.secrets_in(folder / SECRETS_FILE)
            if table is not None and name in table:
                return table[name]
        for folder in dict.fromkeys((path.parent, self.root_dir)):
            example = self.secrets_in(folder / SECRETS_EXAMPLE)
            if not (folder / SECRETS_FILE).is_file() and example is not None and name in example:
                self.doc.warnings.append(
                    Problem(mark, f"secret '{name}' comes from {SECRETS_EXAMPLE} (a placeholder); put the real value "
                            f"in {display(folder / SECRETS_FILE)} before going to site", shown)
                )
                return example[name]
        where = display(path.parent / SECRETS_FILE)
        self.problem(mark, f"secret '{name}' is not in {where}; add `{name}: VALUE` there (the file stays out of git)", shown)
        return None

    def secrets_in(self, file: Path) -> dict | None:
        if file not in self.secrets:
            table = None
            if file.is_file():
                try:
                    loaded = yaml.safe_load(file.read_text(encoding="utf-8"))
                except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
                    self.problem(Mark(display(file), 1, 1), f"cannot read secrets: {e}", display(file))
                    loaded = None
                if isinstance(loaded, dict):
                    table = {str(k): v for k, v in loaded.items()}
                elif loaded is not None:
                    self.problem(Mark(display(file), 1, 1), "secrets file must be a mapping of NAME: value", display(file))
            self.secrets[file] = table
        return self.secrets[file]

    def problem(self, mark: Mark | None, message: str, file: str) -> None:
        self.doc.problems.append(Problem(mark, message, file))


def read_yaml(path: Path) -> YamlDocument:
    """Build the data of a YAML file with includes, secrets and env resolved, and its marks."""
    builder = _Builder(Path(path))
    builder.doc.data = builder.load(Path(path), (), (), None)
    return builder.doc
