"""Reading a config file safely: the only place that parses YAML.

Refused, each with one line naming the file (and the line where YAML knows it):
- anything but a regular file (a FIFO would block forever, a device could be endless), or above
  MAX_CONFIG_BYTES, or not UTF-8;
- YAML syntax errors, tags (`!!python/...`: safe_load only), and duplicate keys at any level (YAML
  would keep the last one silently, and a sweep would train the wrong model);
- nesting deeper than MAX_CONFIG_DEPTH, and more than MAX_CONFIG_NODES values once aliases are
  expanded (an alias bomb: a few lines that expand to billions of values);
- values YAML has but JSON does not (dates, sets, binary), and integers beyond 64 bits.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config.limits import MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, MAX_CONFIG_NODES
from orchestrator.errors import ConfigError
from trainables.schema import INT64_MAX


class _TooDeep(yaml.YAMLError):
    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__()
        self.problem_mark = mark


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice in one mapping, and nesting past MAX_CONFIG_DEPTH while
    composing (PyYAML's scanner slows quadratically with flow nesting: stop before that, not at recursion's
    limit)."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_CONFIG_DEPTH + 1:  # the document's root is one level
                raise _TooDeep(self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` merges are YAML's way to override on purpose
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_text(path: Path) -> str:
    """The file's text, after checking it is a regular file of sensible size."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte in the path
        raise ConfigError(repr(str(path)), "cannot read config file: the path contains a NUL byte") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a FIFO, socket or device)"
        raise ConfigError(str(path), f"cannot read config file: {kind}")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), f"config file is {info.st_size} bytes, above the {MAX_CONFIG_BYTES} byte cap")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(str(path), f"config file is above the {MAX_CONFIG_BYTES} byte cap")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"cannot read config file: not UTF-8 text (byte {exc.start})") from None


def parse(text: str, where: str, field: str = "") -> Any:
    """YAML text -> plain data; `where` names the source in errors (a path, or `--set key`), `field` the
    dotted field the text is the value of (`--set trial.lr=...`), so errors inside it name the full field."""
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _TooDeep as exc:
        raise ConfigError(
            f"{where}:{exc.problem_mark.line + 1}", f"YAML nested more than {MAX_CONFIG_DEPTH} levels deep"
        ) from None
    except yaml.YAMLError as exc:
        raise _yaml_error(where, exc) from None
    except RecursionError:
        raise ConfigError(where, f"YAML nested too deeply (more than {MAX_CONFIG_DEPTH} levels allowed)") from None
    check_plain(data, where, field)
    return data


def read_yaml(path: Path) -> dict[str, Any]:
    raw = parse(read_text(path), str(path))
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "the config must be a YAML mapping of sections", type(raw).__name__)
    return raw


def _yaml_error(where: str, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    located = f"{where}:{mark.line + 1}" if mark else where
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line, whatever PyYAML wrote
    if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
        return ConfigError(located, f"YAML tags are not allowed ({problem}); write plain values")
    if isinstance(exc, yaml.constructor.ConstructorError):
        return ConfigError(located, problem)
    return ConfigError(located, f"YAML syntax error: {problem}")


def check_plain(data: Any, where: str, field: str = "") -> None:
    """JSON-like values only, within the depth and size caps, counting every alias expansion."""
    count = 0
    stack: list[tuple[Any, str, int]] = [(data, field, 0)]
    while stack:
        node, path, depth = stack.pop()
        count += 1
        if count > MAX_CONFIG_NODES:
            raise ConfigError(
                where,
                f"more than {MAX_CONFIG_NODES} values once YAML aliases are expanded "
                "(an alias bomb?); write the values out",
            )
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{where}: {path}", f"nested more than {MAX_CONFIG_DEPTH} levels deep")
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise ConfigError(
                        f"{path}.{key!r}" if path else repr(key), f"keys must be text (got {type(key).__name__})"
                    )
                stack.append((value, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(node, list):
            stack.extend((value, f"{path}[{i}]", depth + 1) for i, value in enumerate(node))
        elif isinstance(node, bool) or node is None or isinstance(node, str | float):
            continue
        elif isinstance(node, int):
            if abs(node) > INT64_MAX:
                raise ConfigError(path or where, "integer beyond 64 bits", node)
        else:
            raise ConfigError(
                path or where,
                f"{type(node).__name__} values are not allowed here; write a "
                "number, text, true/false, a list or a mapping (quote dates)",
                str(node),
            )
