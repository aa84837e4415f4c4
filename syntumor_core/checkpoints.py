"""Safe loading and saving of segmentation checkpoints in the published layout.

The published ``model.pt`` files are ``torch.save``d dicts: ``epoch`` (int), ``best_acc`` (a
numpy float64 scalar), ``state_dict`` and sometimes ``optimizer`` / ``scheduler``. Unpickling an
arbitrary file runs arbitrary code, so files are only ever read with
``torch.load(weights_only=True)`` plus an allow-list of exactly the numpy globals a float64
scalar needs; anything else is refused with :class:`~syntumor_core.errors.CheckpointError`.

Swin files use the original key names (``mlp.fc1`` / ``mlp.fc2``, an unused ``swinViT.norm``);
:func:`load_model` maps them onto the MONAI network and :func:`save_checkpoint` maps back, so
files written here load strictly in the authors' code as well.

Example:
    >>> model, info = load_model("models/unet_synthetic/model.pt")  # doctest: +SKIP
    >>> info.arch, info.epoch, info.best_acc  # doctest: +SKIP
    ('unet', 3800, 0.61)
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import pickle
import pickletools
import tempfile
import threading
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy
import torch
from torch import nn

from syntumor_core.errors import CheckpointError, ParameterError
from syntumor_core.models import (
    ARCHITECTURES,
    SWIN_FEATURE_SIZES,
    build_model,
    convert_published_swin_keys,
    count_parameters,
    describe_mismatch,
    detect_architecture,
    few_names,
    to_published_swin_keys,
)

logger = logging.getLogger(__name__)

RESERVED_CHECKPOINT_KEYS = ("epoch", "best_acc", "state_dict", "optimizer", "scheduler")
_LEGACY_PICKLE_COUNT = 5  # magic number, protocol, system info, the object, storage keys
# Non-torch globals that torch.save writes for plain data (OrderedDict state dicts, bytes).
_PLAIN_GLOBALS = frozenset(
    {"collections.OrderedDict", "_codecs.encode", "builtins.set", "builtins.bytearray"}
)

# torch's allow-list for weights_only loading is process-wide; serialise loads so that one
# load leaving the safe_globals context cannot strip the allow-list from another.
_LOAD_LOCK = threading.Lock()

# What can go wrong inside torch.load on a damaged or hostile file.
_READ_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, LookupError)
_READ_ERRORS += (TypeError, AttributeError, zipfile.BadZipFile)


@dataclass(frozen=True)
class CheckpointInfo:
    """What a loaded checkpoint file said about itself.

    Args:
        path: the file read.
        sha256: hex digest of the file's bytes.
        arch: architecture the network was built as.
        detected_arch: architecture the keys look like (``None`` if none).
        epoch: training epoch stored in the file, if any.
        best_acc: validation score stored in the file, as a plain float, if any.
        swin_key_names: ``"published"`` (``mlp.fc1``) or ``"monai"`` (``mlp.linear1``) for
            Swin files, ``None`` for UNet.
        had_module_prefix: keys carried a ``module.`` (data-parallel) prefix, stripped.
        has_optimizer: the file holds an optimizer state.
        has_scheduler: the file holds a learning-rate scheduler state.
        num_parameters: parameters of the built network.
        other_keys: further top-level entries of the file.
    """

    path: str
    sha256: str
    arch: str
    detected_arch: str | None
    epoch: int | None
    best_acc: float | None
    swin_key_names: str | None
    had_module_prefix: bool
    has_optimizer: bool
    has_scheduler: bool
    num_parameters: int
    other_keys: tuple[str, ...]


def _numpy_float64_safe_globals() -> list[Any]:
    """The numpy globals a pickled numpy float64 scalar needs, under old and new module names."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2 (and 1.26 compatibility shim)
    except ImportError:  # pragma: no cover - older numpy
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    allowed: list[Any] = [
        (scalar, "numpy.core.multiarray.scalar"),  # files written with numpy 1.x
        (scalar, "numpy._core.multiarray.scalar"),  # files written with numpy 2.x
        (numpy.dtype, "numpy.dtype"),
    ]
    float64_dtype_class = type(numpy.dtype("float64"))
    if float64_dtype_class is not numpy.dtype:  # numpy >= 1.25: dtypes.Float64DType
        allowed.append((float64_dtype_class, f"numpy.dtypes.{float64_dtype_class.__name__}"))
    return allowed


def _unsafe_reason(error: BaseException) -> str | None:
    """What torch's weights_only unpickler refused, or ``None`` if the file is merely damaged.

    Only the refusal itself is kept: torch's message also suggests ``weights_only=False``,
    which must never be passed on to a user.
    """
    text = str(error)
    if "WeightsUnpickler error" not in text and "Weights only load failed" not in text:
        return None
    detail = text.split("WeightsUnpickler error:", 1)[-1].strip()
    useful = [
        line.strip()
        for line in detail.splitlines()
        if line.strip() and "weights_only" not in line and "torch.load" not in line
    ]
    return useful[0][:200] if useful else "refused by torch's weights_only unpickler"


def load_checkpoint_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``torch.save``d checkpoint without ever running code from it.

    Only tensors, plain containers and numpy float64 scalars are accepted
    (``torch.load(weights_only=True)`` with an allow-list; never ``weights_only=False``).
    Tensors are loaded onto the CPU.

    Args:
        path: the checkpoint file.

    Returns:
        The checkpoint dict, as stored.

    Raises:
        CheckpointError: the file is missing, corrupt, truncated, not a torch file, not a dict,
            or holds any other Python object (which could run code when unpickled).
    """
    file_path = Path(path)
    if not file_path.is_file():
        raise CheckpointError(f"checkpoint file not found: {file_path}")
    with _LOAD_LOCK, torch.serialization.safe_globals(_numpy_float64_safe_globals()):
        _refuse_unsafe_globals(file_path)
        try:
            checkpoint = torch.load(file_path, map_location="cpu", weights_only=True)
        except _READ_ERRORS as error:
            reason = _unsafe_reason(error)
            if reason is not None:
                raise CheckpointError(
                    f"refusing to load checkpoint {file_path}: it holds objects other than "
                    f"tensors, plain containers and numpy float64 scalars ({reason}); "
                    "unpickling them could run arbitrary code"
                ) from None
            raise CheckpointError(
                f"cannot read checkpoint {file_path}: the file is corrupt, truncated or not "
                f"written by torch.save ({type(error).__name__}: {str(error)[:200]})"
            ) from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"checkpoint {file_path} must hold a dict, got {type(checkpoint).__name__}"
        )
    return checkpoint


def _pickle_globals(stream: io.BufferedIOBase | io.BytesIO) -> set[str]:
    """Names of the globals one pickle in ``stream`` references (read statically, nothing runs)."""
    names: set[str] = set()
    for opcode, argument, _ in pickletools.genops(stream):
        if opcode.name in ("GLOBAL", "INST"):
            module, _, name = str(argument).partition(" ")
            names.add(f"{module}.{name}")
        elif opcode.name == "STACK_GLOBAL":
            names.add("STACK_GLOBAL (pickle protocol 4+, never written by torch.save)")
    return names


def _globals_in_checkpoint(file_path: Path) -> set[str] | None:
    """Every global the file's pickles reference, or ``None`` if the file cannot be parsed."""
    try:
        with file_path.open("rb") as stream:
            is_zip = stream.read(4) == b"PK\x03\x04"  # how torch.load tells the formats apart
        if is_zip:
            names: set[str] = set()
            with zipfile.ZipFile(file_path) as archive:
                for member in archive.namelist():
                    if member.endswith(".pkl"):
                        names |= _pickle_globals(io.BytesIO(archive.read(member)))
            return names
        with file_path.open("rb") as stream:  # legacy format: five pickles, then raw storages
            names = set()
            for _ in range(_LEGACY_PICKLE_COUNT):
                names |= _pickle_globals(stream)  # type: ignore[arg-type]
            return names
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, UnicodeDecodeError):
        return None


def _refuse_unsafe_globals(file_path: Path) -> None:
    """Refuse a file whose pickles name any global outside the allow-list, before unpickling.

    torch's own weights_only check runs afterwards as well; this scan is stricter, since it
    ignores globals that other libraries add to torch's process-wide allow-list.
    """
    names = _globals_in_checkpoint(file_path)
    if names is None:
        return  # unparseable: torch.load reports the damage
    allowed = {name for _, name in _numpy_float64_safe_globals()} | _PLAIN_GLOBALS
    unsafe = sorted(name for name in names if not name.startswith("torch.") and name not in allowed)
    if unsafe:
        raise CheckpointError(
            f"refusing to load checkpoint {file_path}: it references Python objects that are "
            f"not plain weights ({', '.join(unsafe)}); only tensors, plain containers and numpy "
            "float64 scalars are allowed, since unpickling others could run code"
        )


def _raw_state_dict(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"checkpoint must be a dict, got {type(checkpoint).__name__}")
    if "state_dict" in checkpoint:
        raw = checkpoint["state_dict"]
        if not isinstance(raw, Mapping):
            raise CheckpointError(
                f"checkpoint entry 'state_dict' must be a dict, got {type(raw).__name__}"
            )
        return raw
    if checkpoint and all(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        return checkpoint  # a bare state dict
    found = ", ".join(sorted(map(str, checkpoint))[:10]) or "nothing"
    raise CheckpointError(
        "checkpoint must hold a 'state_dict' entry or be a bare state dict (name -> tensor); "
        f"found {found}"
    )


def state_dict_from_checkpoint(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Extract the network weights from a checkpoint dict.

    Accepts ``{"state_dict": ..., "epoch": ..., "optimizer": ..., ...}`` or a bare state dict,
    and strips the ``module.`` prefix that data-parallel training adds.

    Args:
        checkpoint: as returned by :func:`load_checkpoint_file`.

    Returns:
        A new dict: parameter name -> tensor, in file order.

    Raises:
        CheckpointError: no state dict, an empty one, entries that are not tensors, or names
            that collide once the prefix is stripped.
    """
    raw = _raw_state_dict(checkpoint)
    if not raw:
        raise CheckpointError("checkpoint state dict is empty")
    not_tensors = [str(key) for key, value in raw.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            "checkpoint state dict must map names to tensors; not tensors: "
            + few_names(not_tensors)
        )
    state_dict: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        name = str(key).removeprefix("module.")
        if name in state_dict:
            raise CheckpointError(
                f"checkpoint state dict has {name!r} both with and without a 'module.' prefix"
            )
        state_dict[name] = value
    return state_dict


def sha256_of_file(file_path: Path) -> str:
    """Hex SHA-256 digest of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with file_path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _plain_number(value: Any, kind: type[int] | type[float]) -> int | float | None:
    """``value`` as a plain int / float (from numpy scalars, 0-d tensors), or ``None``."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def _checkpoint_info(
    file_path: Path, checkpoint: Mapping[str, Any], model: nn.Module, **fields: Any
) -> CheckpointInfo:
    """Describe a loaded file; top-level entries count only beside a ``state_dict`` entry."""
    entries = checkpoint if "state_dict" in checkpoint else {}
    raw = _raw_state_dict(checkpoint)
    return CheckpointInfo(
        path=str(file_path),
        sha256=sha256_of_file(file_path),
        epoch=_plain_number(entries.get("epoch"), int),  # type: ignore[arg-type]
        best_acc=_plain_number(entries.get("best_acc"), float),
        had_module_prefix=any(str(key).startswith("module.") for key in raw),
        has_optimizer="optimizer" in entries,
        has_scheduler="scheduler" in entries,
        num_parameters=count_parameters(model),
        other_keys=tuple(str(key) for key in entries if key not in RESERVED_CHECKPOINT_KEYS),
        **fields,
    )


def load_model(
    path: str | os.PathLike[str], arch: str | None = None
) -> tuple[nn.Module, CheckpointInfo]:
    """Build the right network and load a checkpoint into it strictly, in eval mode on the CPU.

    Args:
        path: a checkpoint file (published layout, one written by :func:`save_checkpoint`,
            or a bare state dict; ``module.`` prefixes and optimizer states are fine).
        arch: one of :data:`~syntumor_core.models.ARCHITECTURES`, or ``None`` to detect it
            from the keys and shapes.

    Returns:
        The network with the file's weights, and what the file said about itself.

    Raises:
        CheckpointError: unsafe or unreadable file, undetectable architecture, or weights that
            do not fit the architecture exactly (the message names the architecture the file
            looks like and some missing / unexpected / mis-shaped keys).
        ParameterError: unknown ``arch``.
    """
    file_path = Path(path)
    checkpoint = load_checkpoint_file(file_path)
    state_dict = state_dict_from_checkpoint(checkpoint)
    detected = detect_architecture(state_dict)
    if arch is None and detected is None:
        raise CheckpointError(
            f"cannot tell the architecture of checkpoint {file_path}: its keys match none of "
            f"{', '.join(ARCHITECTURES)} (first keys: {few_names(list(state_dict))}); "
            "pass the architecture explicitly"
        )
    chosen: str = arch if arch is not None else str(detected)
    model = build_model(chosen)
    swin_key_names = None
    if chosen in SWIN_FEATURE_SIZES:
        published = any(".mlp.fc1." in key for key in state_dict)
        swin_key_names = "published" if published else "monai"
        state_dict = convert_published_swin_keys(state_dict)
    mismatch = describe_mismatch(model.state_dict(), state_dict)
    if mismatch is not None:
        looks_like = f"it looks like {detected!r}" if detected else "it looks like none of them"
        raise CheckpointError(
            f"checkpoint {file_path} does not fit architecture {chosen!r} ({looks_like}): "
            f"{mismatch}"
        )
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    info = _checkpoint_info(
        file_path,
        checkpoint,
        model,
        arch=chosen,
        detected_arch=detected,
        swin_key_names=swin_key_names,
    )
    logger.info("loaded %s checkpoint %s (epoch %s)", chosen, file_path, info.epoch)
    return model, info


def _is_plain(value: Any) -> bool:
    """Whether ``value`` survives a weights_only load (tensors, numbers, strings, containers)."""
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str | int) and _is_plain(item) for key, item in value.items())
    return False


def _published_payload(model: nn.Module, arch: str, epoch: int, best_acc: float) -> dict[str, Any]:
    if isinstance(model, nn.DataParallel | nn.parallel.DistributedDataParallel):
        model = model.module
    if arch not in ARCHITECTURES:
        build_model(arch)  # raises ParameterError with a suggestion
    if isinstance(epoch, bool) or not isinstance(epoch, int | numpy.integer) or epoch < 0:
        raise ParameterError(f"epoch must be a non-negative integer, got {epoch!r}")
    score = _plain_number(best_acc, float)
    if score is None or not math.isfinite(score):
        raise ParameterError(f"best_acc must be a finite number, got {best_acc!r}")
    state_dict = {
        key.removeprefix("module."): value.detach().cpu()
        for key, value in model.state_dict().items()
    }
    detected = detect_architecture(state_dict)
    if detected != arch:
        raise ParameterError(
            f"model does not look like architecture {arch!r} (its weights look like {detected!r})"
        )
    if arch in SWIN_FEATURE_SIZES:
        state_dict = to_published_swin_keys(state_dict)
    return {"epoch": int(epoch), "best_acc": score, "state_dict": state_dict}


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    arch: str,
    epoch: int,
    best_acc: float,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint in the published layout, so the authors' tools can load it too.

    The file holds ``epoch`` (int), ``best_acc`` (plain float), ``state_dict`` (CPU tensors,
    no ``module.`` prefix; Swin weights under the published names, with the unused final
    ``swinViT.norm`` added as a fresh layer norm), and ``optimizer`` / ``scheduler`` states when
    given. The file is written to a temporary name and moved into place.

    Args:
        path: where to write.
        model: the network (a ``DataParallel`` / ``DistributedDataParallel`` wrapper is unwrapped).
        arch: its architecture name; must match the weights.
        epoch: training epoch (non-negative integer).
        best_acc: best validation score so far (stored as a plain float).
        optimizer: optional optimizer whose ``state_dict()`` is stored.
        scheduler: optional learning-rate scheduler whose ``state_dict()`` is stored.
        extra: further top-level entries (plain values only: numbers, strings, tensors,
            lists, dicts), e.g. ``{"arch": arch}``; must not reuse the reserved names.

    Returns:
        The path written.

    Raises:
        ParameterError: unknown or mismatched ``arch``, bad ``epoch`` / ``best_acc``, or an
            ``extra`` entry that is reserved or not plain.
    """
    payload = _published_payload(model, arch, epoch, best_acc)
    if optimizer is not None:
        payload["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        payload["scheduler"] = scheduler.state_dict()
    for key, value in (extra or {}).items():
        if key in RESERVED_CHECKPOINT_KEYS:
            raise ParameterError(
                f"extra entry {key!r} would overwrite a reserved checkpoint entry "
                f"({', '.join(RESERVED_CHECKPOINT_KEYS)})"
            )
        if not isinstance(key, str) or not _is_plain(value):
            raise ParameterError(
                f"extra entry {key!r} must be a plain value (number, string, tensor, list, "
                f"dict), got {type(value).__name__}"
            )
        payload[key] = value
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        torch.save(payload, temporary)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("saved %s checkpoint %s (epoch %s)", arch, target, epoch)
    return target
