"""One config surface: dataclasses loaded from a YAML file plus dotted command-line overrides.

`load_config(ExperimentConfig, "configs/x.yaml", ["train.lr=1e-4"])` fills nested dataclasses,
rejects unknown keys and wrong types (naming the field), and `save_config` writes the resolved
config next to checkpoints so a resumed run reads back exactly what it ran with.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override does not match the config dataclasses."""


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass (tuples become lists), ready for YAML/JSON."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, Path):
            return str(value)
        return value

    return plain(config)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Convert a YAML value to `annotation`, raising ConfigError naming `where` on mismatch."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: {value!r} matches none of {annotation}")
    if dataclasses.is_dataclass(annotation):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {annotation.__name__}, got {value!r}")
        return from_dict(annotation, value, prefix=where + ".")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} items, got {value!r}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        coerced = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(coerced) if origin is tuple else coerced
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string; users mean a number.
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if annotation is Path:
        return Path(value)
    if isinstance(annotation, type) and not isinstance(value, annotation):
        raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass `cls` from a nested mapping; unknown keys and bad types raise ConfigError."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
                          f"{cls.__name__} has: {', '.join(sorted(names))}")
    kwargs = {key: _coerce(value, hints[key], prefix + key) for key, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        where, message = prefix.rstrip(".") or cls.__name__, str(error)
        raise ConfigError(message if message.startswith(where) else f"{where}: {message}") from error


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {key} is not a section")
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """`'train.lr=1e-4'` or `'--train.lr=1e-4'` -> `('train.lr', 0.0001)` (value parsed as YAML)."""
    body = text[2:] if text.startswith("--") else text
    if "=" not in body:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = body.split("=", 1)
    value = yaml.safe_load(raw) if raw != "" else ""
    return key, value


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> T:
    """Defaults of `cls`, updated by the YAML file at `path`, then by dotted `overrides`."""
    tree: dict[str, Any] = config_to_dict(cls()) if _has_defaults(cls) else {}
    return from_dict(cls, read_tree(path, overrides, base=tree))


def read_tree(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
              base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The nested mapping of `base`, updated by the YAML file at `path`, then by dotted `overrides`.

    For loaders that must look at the raw values before building dataclasses (e.g. to start a
    section from a named preset).
    """
    tree: dict[str, Any] = base if base is not None else {}
    if path is not None:
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"{path} is a folder; a YAML config file is expected here")
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        _merge(tree, loaded)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(tree, key, value)
    return tree


def field_docs(cls: type) -> dict[str, str]:
    """Each dataclass field's documentation, read from the class source: the attribute docstring under the
    field, else its trailing `# comment` with the `#   ...` lines that continue it. CLI help is built from
    these, so the flags and the dataclass cannot drift apart."""
    import ast
    import inspect
    import io
    import textwrap
    import tokenize

    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, str] = {}  # line number -> comment text
    own_line: set[int] = set()  # lines holding a comment only
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
            if not token.line[: token.start[1]].strip():
                own_line.add(token.start[0])
    body = ast.parse(source).body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, [*body[1:], None]):
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        if isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            docs[node.target.id] = " ".join(after.value.value.split())
            continue
        line = node.end_lineno or node.lineno
        if line not in comments or line in own_line:
            continue
        parts = [comments[line]]
        while line + 1 in own_line and source.splitlines()[line].lstrip().startswith("#   "):
            line += 1
            parts.append(comments[line])
        docs[node.target.id] = " ".join(parts)
    return docs


def expand_includes(tree: dict[str, Any], directory: Path) -> dict[str, Any]:
    """A top-level section may say `include: FILE` (relative to `directory`, the config's folder): it starts from
    that file's section of the same name (or the whole file, when it has none), and its other keys win."""
    for name, section in tree.items():
        if isinstance(section, dict) and "include" in section:
            included = read_tree(directory / str(section.pop("include")))
            included.pop("kind", None)
            content = included.get(name, included) if isinstance(included.get(name), dict) else included
            tree[name] = merge_tree(content, section)
    return tree


def merge_tree(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursively update mapping `base` with `update` (in place) and return it."""
    _merge(base, update)
    return base


def _has_defaults(cls: type) -> bool:
    return all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
               for f in dataclasses.fields(cls) if f.init)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML."""
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
