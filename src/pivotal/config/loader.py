"""Loading the configuration: defaults ← YAML file ← ``PIVOTAL_*`` environment ← CLI flags.

Environment keys are the dotted config path in upper case with ``__`` between levels:
``PIVOTAL_DATA_DIR``, ``PIVOTAL_EXCHANGES__BINANCE__REST_URL``,
``PIVOTAL_DOWNLOAD__FALLBACK_EXCHANGES='[binance, mexc]'``. Values are read as YAML
scalars or lists. ``PIVOTAL_CONFIG`` names the file itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from pivotal.config.models import PivotalConfig
from pivotal.core.errors import ConfigError

ENV_PREFIX = "PIVOTAL_"
CONFIG_FILE_NAME = "pivotal.yaml"
_NOT_KEYS = {  # not settings
    "PIVOTAL_CONFIG",
    "PIVOTAL_SHARED_DATA",
    "PIVOTAL_DEBUG",
    "PIVOTAL_API_TOKEN_FILE",
}
MASK = "********"


def find_config_file(explicit: Path | None = None) -> Path | None:
    """The file to read: ``--config``, ``$PIVOTAL_CONFIG``, ``./pivotal.yaml``, or the user's."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    env = os.environ.get("PIVOTAL_CONFIG")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ConfigError(f"PIVOTAL_CONFIG names {path}, which does not exist")
        return path
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path.cwd() / CONFIG_FILE_NAME, Path(base) / "pivotal" / CONFIG_FILE_NAME):
        if candidate.is_file():
            return candidate
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, not {type(data).__name__}"
        )
    return data


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Nested overrides from ``PIVOTAL_*`` variables and, per dotted key, the variable name."""
    tree: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name in _NOT_KEYS:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        if isinstance(value, str) and "," in value and parts[-1] in _LIST_KEYS:
            value = [v.strip() for v in value.split(",") if v.strip()]
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"environment variable {name} conflicts with another PIVOTAL_ variable"
                )
            node = child
        node[parts[-1]] = value
        origin[".".join(parts)] = name
    return tree, origin


_LIST_KEYS = {"symbols", "timeframes", "fallback_exchanges"}


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at the parent of ``loc`` (for 'unknown key' messages)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return []
            current = field.annotation
            models = [a for a in getattr(current, "__args__", ()) if _is_model(a)]
            if getattr(current, "__origin__", None) is not dict and models:
                current = models[0]  # Optional[Model]
        elif getattr(current, "__origin__", None) is dict:
            current = current.__args__[1]
        else:
            return []
    return sorted(current.model_fields) if _is_model(current) else []


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _format_errors(exc: ValidationError, file: Path | None, origin: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        dotted = ".".join(str(p) for p in loc)
        where = (
            f"environment variable {origin[dotted]}"
            if dotted in origin
            else (str(file) if file else "configuration")
        )
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(PivotalConfig, loc)
            hint = f"; allowed here: {', '.join(allowed)}" if allowed else ""
            lines.append(f"{where}: key '{dotted}' is not a known setting{hint}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{where}: key '{dotted}': {msg} (got {err.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(
    path: Path | None = None,
    *,
    data_dir: Path | None = None,
    environ: Mapping[str, str] | None = None,
    use_default_file: bool = True,
) -> tuple[PivotalConfig, Path | None]:
    """Build the effective configuration and return it with the file it came from.

    Precedence (highest first): ``data_dir`` argument (the ``--data-dir`` flag), ``PIVOTAL_*``
    variables, the YAML file, built-in defaults.
    """
    environ = os.environ if environ is None else environ
    file = find_config_file(path) if (path is not None or use_default_file) else None
    data = _read_yaml(file) if file else {}
    overrides, origin = _env_overrides(environ)
    merged = _merge(data, overrides)
    if data_dir is not None:
        merged["data_dir"] = str(data_dir)
    try:
        return PivotalConfig.model_validate(merged), file
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, file, origin)) from None


def masked_dump(config: PivotalConfig) -> dict[str, Any]:
    """The configuration as plain data with every secret replaced by a mask."""

    def walk(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return MASK if value.get_secret_value() else ""
        if isinstance(value, BaseModel):
            return {k: walk(getattr(value, k)) for k in type(value).model_fields}
        if isinstance(value, dict):
            return {str(k): walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        if isinstance(value, Path):
            return str(value)
        return value

    result = walk(config)
    assert isinstance(result, dict)
    return result
