"""The model registry: which segmentation checkpoints exist, where they live, how to get them.

Two registries are merged:

- the built-in one, ``models/registry.json`` (the ten published checkpoints of the seed project
  and SynTumor's own demo model, whose file ships at ``models/demo/model.pt``), and
- a user registry, ``<data_dir>/models/registry.json``, that :func:`add` writes.

Pulled and added checkpoints live at ``<data_dir>/models/<name>/model.pt`` beside a
``config.json`` saying where they came from. A file is only moved into place after
:func:`syntumor_core.checkpoints.load_model` (safe unpickling, strict loading) accepted it, so a
corrupt, truncated or malicious download is deleted and never used.

Example:
    >>> path, arch = resolve_model("demo", Path("var"))  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.registry.download import (
    CHECKPOINT_FILE_NAME,
    check_download_url,
    install_checkpoint,
    staging_file,
    verify_checkpoint,
    write_json_atomically,
)
from syntumor_core.errors import CheckpointError, ParameterError, SynTumorError
from syntumor_core.models import ARCHITECTURES, check_architecture

logger = logging.getLogger(__name__)

BUILTIN_REGISTRY_PATH = Path(__file__).resolve().parents[2] / "models" / "registry.json"
TUMOR_KINDS = ("real", "synthetic", "mixed", "unknown")
STATUS_LOCAL, STATUS_MISSING, STATUS_REMOTE = "local", "missing", "remote"
_NAME_RULE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_REQUIRED_FIELDS = {"name": str, "arch": str, "tumors": str, "pretrained": bool, "description": str}
_OPTIONAL_FIELDS = ("url", "path", "sha256", "readme_log_dir", "training_data")


class ModelRegistryError(SynTumorError):
    """A registry file is malformed, or a model is unknown, absent or not downloadable."""


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Args:
        name: registry name (lower case letters, digits, ``.``, ``_``, ``-``).
        arch: one of :data:`syntumor_core.models.ARCHITECTURES`.
        tumors: what it was trained on: ``real``, ``synthetic``, ``mixed`` or ``unknown``.
        pretrained: whether the encoder started from self-supervised weights.
        description: one line for people.
        url: download link, ``None`` if none is known.
        path: where the file ships, relative to the repository root (demo model only).
        sha256: expected hex digest of ``model.pt``, if known.
        readme_log_dir: the published training folder (provenance).
        training_data: the published training fold (provenance).
        origin: ``built-in`` or ``user``.
    """

    name: str
    arch: str
    tumors: str
    pretrained: bool
    description: str
    url: str | None = None
    path: str | None = None
    sha256: str | None = None
    readme_log_dir: str | None = None
    training_data: str | None = None
    origin: str = "built-in"


@dataclass(frozen=True)
class ModelStatus:
    """A registered model and whether its file is here.

    Args:
        entry: the registry entry.
        status: ``local`` (file present), ``remote`` (not here, downloadable with
            ``syntumor models pull``) or ``missing`` (not here and no download link known).
        local_path: where the file is, or would be.
    """

    entry: ModelEntry
    status: str
    local_path: Path


def user_registry_path(data_dir: str | os.PathLike[str]) -> Path:
    """The user registry file of a data folder."""
    return Path(data_dir) / "models" / "registry.json"


def _check_fields(raw: dict[str, Any], where: str) -> None:
    for field, kind in _REQUIRED_FIELDS.items():
        if not isinstance(raw.get(field), kind):
            got = type(raw[field]).__name__ if field in raw else "nothing"
            raise ModelRegistryError(
                f"{where}: field {field!r} must be a {kind.__name__}, got {got}"
            )
    for field in _OPTIONAL_FIELDS:
        if raw.get(field) is not None and not isinstance(raw[field], str):
            raise ModelRegistryError(f"{where}: field {field!r} must be a string or null")
    unknown = sorted(set(raw) - set(_REQUIRED_FIELDS) - set(_OPTIONAL_FIELDS))
    if unknown:
        raise ModelRegistryError(f"{where}: unknown field(s) {', '.join(unknown)}")


def _parse_entry(raw: Any, where: str, origin: str) -> ModelEntry:
    if not isinstance(raw, dict):
        raise ModelRegistryError(f"{where} must be a JSON object, got {type(raw).__name__}")
    _check_fields(raw, where)
    entry = ModelEntry(**{key: raw.get(key) for key in (*_REQUIRED_FIELDS, *_OPTIONAL_FIELDS)},
                       origin=origin)  # fmt: skip
    check_model_name(entry.name)
    check_architecture(entry.arch)
    if entry.tumors not in TUMOR_KINDS:
        raise ModelRegistryError(
            f"{where}: tumors must be one of {', '.join(TUMOR_KINDS)}, got {entry.tumors!r}"
        )
    if entry.url is not None:
        check_download_url(entry.url)
    if entry.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", entry.sha256):
        raise ModelRegistryError(f"{where}: sha256 must be 64 lower-case hex digits")
    return entry


def load_registry(path: str | os.PathLike[str], *, origin: str = "built-in") -> list[ModelEntry]:
    """Read and validate one registry file (``{"format": 1, "models": [...]}``).

    Args:
        path: the JSON file. A user registry that does not exist yet is empty.
        origin: ``built-in`` or ``user``, recorded in every entry.

    Raises:
        ModelRegistryError: unreadable JSON, wrong layout, a bad entry or a repeated name.
    """
    file_path = Path(path)
    if origin == "user" and not file_path.exists():
        return []
    try:
        document = json.loads(file_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelRegistryError(f"model registry not found: {file_path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelRegistryError(f"cannot read model registry {file_path}: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("models"), list):
        raise ModelRegistryError(f"model registry {file_path} must hold a 'models' list")
    entries: list[ModelEntry] = []
    for index, raw in enumerate(document["models"]):
        entry = _parse_entry(raw, f"{file_path}: models[{index}]", origin)
        if any(known.name == entry.name for known in entries):
            raise ModelRegistryError(f"model registry {file_path} names {entry.name!r} twice")
        entries.append(entry)
    return entries


def all_entries(
    data_dir: str | os.PathLike[str], registry_path: str | os.PathLike[str] | None = None
) -> dict[str, ModelEntry]:
    """The built-in entries, then the user's (a user entry never shadows a built-in one)."""
    entries = {e.name: e for e in load_registry(registry_path or BUILTIN_REGISTRY_PATH)}
    for entry in load_registry(user_registry_path(data_dir), origin="user"):
        if entry.name in entries:
            logger.warning("user model %r ignored: a built-in model has that name", entry.name)
            continue
        entries[entry.name] = entry
    return entries


def local_path(
    entry: ModelEntry,
    data_dir: str | os.PathLike[str],
    registry_path: str | os.PathLike[str] | None = None,
) -> Path:
    """Where an entry's checkpoint file is (or would be after ``pull``)."""
    if entry.path is not None:  # shipped with the repository, next to the built-in registry
        return Path(registry_path or BUILTIN_REGISTRY_PATH).resolve().parents[1] / entry.path
    return Path(data_dir) / "models" / entry.name / CHECKPOINT_FILE_NAME


def list_models(
    data_dir: str | os.PathLike[str], registry_path: str | os.PathLike[str] | None = None
) -> list[ModelStatus]:
    """Every registered model with its status (see :class:`ModelStatus`)."""
    statuses = []
    for entry in all_entries(data_dir, registry_path).values():
        where = local_path(entry, data_dir, registry_path)
        status = STATUS_LOCAL if where.is_file() else STATUS_REMOTE if entry.url else STATUS_MISSING
        statuses.append(ModelStatus(entry, status, where))
    return statuses


def finest_grid_mm(
    data_dir: str | os.PathLike[str], registry_path: str | os.PathLike[str] | None = None
) -> float:
    """The finest grid (mm) that a model here runs on (the published 1 mm at least): uploads
    are checked against it, so any model can segment what was accepted."""
    from syntumor_core.segmentation import SPACING_MM, settings_beside

    finest = min(SPACING_MM)
    for status in list_models(data_dir, registry_path):
        if status.status != STATUS_LOCAL:
            continue
        try:
            finest = min(finest, *settings_beside(status.local_path).get("spacing_mm", SPACING_MM))
        except SynTumorError:  # a broken config.json is reported when the model is used
            continue
    return finest


def check_model_name(name: str) -> str:
    """Refuse names that are not safe as one folder name."""
    if not _NAME_RULE.fullmatch(str(name)):
        raise ParameterError(
            f"model name must be 1-64 lower-case letters, digits, '.', '_' or '-', starting with "
            f"a letter or digit; got {name!r}"
        )
    return name


def find_entry(
    name: str, entries: dict[str, ModelEntry], *, paths_allowed: bool = True
) -> ModelEntry:
    """The entry called ``name``, or an error suggesting the closest names.

    Args:
        name: a registry name.
        entries: the registered models (:func:`all_entries`).
        paths_allowed: whether the caller may give a checkpoint path instead (the CLI may; the
            web app may not), which the error then mentions.
    """
    if name in entries:
        return entries[name]
    close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    if paths_allowed:
        raise ModelRegistryError(
            f"unknown model {name!r}: {hint}known models: {', '.join(entries)} "
            "(see `syntumor models list`), or give the path of a checkpoint file"
        )
    raise ModelRegistryError(
        f"unknown model {name!r}: {hint}choose one of the registered models: {', '.join(entries)}"
    )


def _absent_message(entry: ModelEntry, where: Path) -> str:
    if entry.path is not None:
        return (
            f"model {entry.name!r} is registered but its file {where} is missing: train it with "
            "the command in models/README.md, or give the path of a checkpoint file"
        )
    if entry.origin == "user":
        return f"model {entry.name!r} was added but its file {where} is missing: run `syntumor models add` again"
    if entry.url is None:
        how = f"`syntumor models pull {entry.name} --url URL` (no download link is recorded for it)"
    else:
        how = f"`syntumor models pull {entry.name}`"
    return f"model {entry.name!r} is not downloaded yet: run {how}"


def _looks_like_path(text: str) -> bool:
    return (
        Path(text).exists()
        or "/" in text
        or os.sep in text
        or Path(text).suffix in (".pt", ".pth", ".ckpt")
    )


def resolve_model(
    name_or_path: str,
    data_dir: str | os.PathLike[str],
    *,
    arch: str | None = None,
    registry_path: str | os.PathLike[str] | None = None,
    allow_path: bool = True,
) -> tuple[Path, str]:
    """Find the checkpoint file for a registered name or a path, and its architecture.

    Args:
        name_or_path: a registry name (``demo``, ``unet_synt``, a name given to ``add``) or
            the path of a checkpoint file (only with ``allow_path``).
        data_dir: the data folder holding pulled and added models.
        arch: the architecture, if known; for a path it is otherwise detected from the keys.
        registry_path: the built-in registry file (tests inject their own).
        allow_path: accept a path (the CLI, run by the machine's own user). The web app and
            its worker pass False: a name from a request is looked up in the registry only,
            and no file is opened or even looked at for an unknown name.

    Returns:
        (checkpoint file, architecture).

    Raises:
        ModelRegistryError: unknown name (with suggestions) or a registered model not here.
        CheckpointError: a path that is not a file, is unsafe or of no known architecture.
        ParameterError: ``arch`` unknown, or not the registered model's.
    """
    if arch is not None:
        check_architecture(arch)
    entries = all_entries(data_dir, registry_path)
    if not allow_path or name_or_path in entries or not _looks_like_path(name_or_path):
        entry = find_entry(name_or_path, entries, paths_allowed=allow_path)
        if arch is not None and arch != entry.arch:
            raise ParameterError(f"model {entry.name!r} is a {entry.arch}, not a {arch}")
        where = local_path(entry, data_dir, registry_path)
        if not where.is_file():
            raise ModelRegistryError(_absent_message(entry, where))
        return where, entry.arch
    file_path = Path(name_or_path)
    if not file_path.is_file():
        raise CheckpointError(f"checkpoint file not found: {file_path}")
    return file_path, arch or _detect_file_architecture(file_path)


def _detect_file_architecture(file_path: Path) -> str:
    from syntumor_core.checkpoints import load_checkpoint_file, state_dict_from_checkpoint
    from syntumor_core.models import detect_architecture

    detected = detect_architecture(state_dict_from_checkpoint(load_checkpoint_file(file_path)))
    if detected is None:
        raise CheckpointError(
            f"cannot tell the architecture of checkpoint {file_path}: pass it explicitly "
            f"(one of {', '.join(ARCHITECTURES)})"
        )
    return detected


def _trained_settings(checkpoint: Path) -> dict[str, Any]:
    """``spacing_mm`` and ``window_hu`` from a ``config.json`` beside ``checkpoint`` (as
    ``syntumor train`` writes it), to be kept beside the installed copy so that inference
    resamples and windows as in training; empty when there is none.

    Raises:
        ParameterError: that file records malformed settings.
    """
    from syntumor_core.segmentation import settings_beside

    names = {"spacing_mm": "spacing_mm", "hu_window": "window_hu"}  # Predictor → config.json
    return {names[key]: list(value) for key, value in settings_beside(checkpoint).items()}


def _install(candidate: Path, entry: ModelEntry, target: Path, source: str, **details: Any) -> None:
    config = {**asdict(entry), "source": source, **details}
    install_checkpoint(candidate, target, config)
    logger.info("installed model %s (%s) at %s", entry.name, entry.arch, target)


def add(
    path: str | os.PathLike[str],
    arch: str,
    name: str | None = None,
    data_dir: str | os.PathLike[str] = "var",
    *,
    tumors: str = "unknown",
    description: str = "",
    replace: bool = False,
    registry_path: str | os.PathLike[str] | None = None,
) -> ModelEntry:
    """Register a local checkpoint: copy it into the data folder and record it in the user registry.

    Args:
        path: the checkpoint file.
        arch: its architecture (one of :data:`~syntumor_core.models.ARCHITECTURES`).
        name: registry name; defaults to the file's folder name for ``.../NAME/model.pt``,
            otherwise the file name without its suffix (lower-cased).
        data_dir: the data folder.
        tumors: ``real``, ``synthetic``, ``mixed`` or ``unknown``.
        description: one line for people.
        replace: overwrite a user model of the same name.
        registry_path: the built-in registry file (tests inject their own).

    Returns:
        The new entry.

    Raises:
        CheckpointError: the file is missing, unsafe or does not fit ``arch``.
        ParameterError: bad name, architecture or tumors value.
        ModelRegistryError: the name is taken.
    """
    source = Path(path)
    if not source.is_file():
        raise CheckpointError(f"checkpoint file not found: {source}")
    if tumors not in TUMOR_KINDS:
        raise ParameterError(f"tumors must be one of {', '.join(TUMOR_KINDS)}, got {tumors!r}")
    default = source.parent.name if source.stem == "model" and source.parent.name else source.stem
    entry = ModelEntry(name=check_model_name(name or default.lower()), arch=check_architecture(arch),
                       tumors=tumors, pretrained=False, description=description or f"added from {source.name}",
                       origin="user")  # fmt: skip
    if entry.name in {e.name for e in load_registry(registry_path or BUILTIN_REGISTRY_PATH)}:
        raise ModelRegistryError(
            f"model name {entry.name!r} belongs to a built-in model: choose another with --name"
        )
    user_file = user_registry_path(data_dir)
    existing = load_registry(user_file, origin="user")
    others = [e for e in existing if e.name != entry.name]
    if len(others) < len(existing) and not replace:
        raise ModelRegistryError(
            f"model {entry.name!r} is already added: choose another --name, or --replace it"
        )
    trained_on = _trained_settings(source)
    target = Path(data_dir) / "models" / entry.name / CHECKPOINT_FILE_NAME
    with staging_file(target.parent) as copy:
        shutil.copyfile(source, copy)
        details = verify_checkpoint(copy, entry.arch, None, f"checkpoint {source}")
        _install(copy, entry, target, str(source.resolve()), **details, **trained_on)
    fields = (*_REQUIRED_FIELDS, *_OPTIONAL_FIELDS)
    records = [
        {k: v for k, v in asdict(e).items() if k in fields and v is not None}
        for e in [*others, entry]
    ]
    write_json_atomically(user_file, {"format": 1, "models": records})
    return entry
