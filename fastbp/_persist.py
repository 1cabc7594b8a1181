"""Files: atomic writes, and the model file format (version 1).

A model file is an ``.npz`` archive with a JSON ``meta`` string and the arrays
``params``, ``buf1``, ``buf2``. ``meta`` holds ``format`` ("fastbp-model"),
``format_version`` (1), ``fastbp_version``, ``config`` (Model's constructor
arguments), ``optimizer`` (the optimizer settings list, or null) and ``step``,
``rng_state`` (the shuffling generator), ``epochs_done``, ``lr_schedule`` (the
last schedule's state or null) and ``metadata`` (``model.metadata``). Files from
before ``epochs_done``, ``lr_schedule``, ``metadata`` and Adam's betas/eps/eps_mode
load with their defaults.
"""

import errno
import io
import json
import os
import tempfile
import warnings
import zipfile

import numpy as np

from fastbp._version import __version__

FORMAT = "fastbp-model"
FORMAT_VERSION = 1


def check_writable(path):
    """Raise OSError naming ``path`` unless a file can be written there: its folder
    exists and is writable, and ``path`` is not a folder. Called before the work whose
    result goes there (``fastbp train --output-model``), not only when writing."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(errno.ENOENT, f"folder {folder} does not exist", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a folder, not a file", path)
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise PermissionError(errno.EACCES, "cannot be written (permission denied)", path)


def write_atomic(path, write, binary=True):
    """Call ``write(fh)`` on a temporary file in ``path``'s folder, flush it to disk,
    then ``os.replace`` it onto ``path``: an interrupted or failed write leaves the
    old file intact and no temporary file behind. Errors name ``path``, not the
    temporary file."""
    check_writable(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastbp-", suffix=".tmp", dir=folder)
    try:
        mode = "wb" if binary else "w"
        opts = {} if binary else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **opts) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _mode_for(path):
    """The permission bits a plain ``open(path, "w")`` would leave: an existing
    file's own, else 0666 less the umask (mkstemp's file is 0600, which other users
    and services could not read)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _umask():
    """The process's umask, read without changing it where Linux shows it (reading
    it with os.umask sets it for a moment, for every thread of the process)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o077)  # elsewhere: set (restrictively) and put straight back
    os.umask(umask)
    return umask


def save(model, path):
    """Write ``model``'s whole training state to exactly ``path`` (see module doc)."""
    path = os.fspath(path)
    opt_meta, opt_arrays = model._optimizer.to_file()
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "fastbp_version": __version__, "config": model._config(), **opt_meta,
            "rng_state": model._rng.bit_generator.state,
            "epochs_done": model.epochs_done,
            "lr_schedule": _schedule_state_for_file(model._schedule_state),
            "metadata": _checked_metadata(model.metadata),
            "dropout_key": model._dropout_key}
    # the keys in format 1's order: optimizer and step after config
    meta = {key: meta[key] for key in ("format", "format_version", "fastbp_version",
                                       "config", "optimizer", "step", "rng_state",
                                       "epochs_done", "lr_schedule", "metadata",
                                       "dropout_key")}
    write_atomic(path, lambda fh: np.savez(fh, meta=np.array(json.dumps(meta)),
                                           params=model.params, **opt_arrays))


def load(cls, path):
    """A ``cls`` model read from ``path``. A truncated, corrupt or foreign file raises
    ValueError; a missing one OSError."""
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    not_ours = f"{path} is not a fastbp model file (an .npz archive written by Model.save)"
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, EOFError, OSError):
        # numpy's own message may advise allow_pickle=True: never for a model file
        raise ValueError(not_ours) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):  # a single .npy array
        raise ValueError(f"{not_ours}: it holds one array of shape {archive.shape}")
    try:
        with archive:
            arrays = {name: archive[name] for name in ("meta", "params", "buf1", "buf2")}
        meta = json.loads(str(arrays["meta"]))
    except KeyError:
        raise ValueError(f"{not_ours}: it lacks the meta, params, buf1 and buf2 arrays") from None
    except (zipfile.BadZipFile, ValueError, EOFError, OSError):
        raise ValueError(not_ours) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fastbp model file (no fastbp header)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} has model format {meta.get('format_version')}, "
                         f"this fastbp reads {FORMAT_VERSION}")
    try:
        model = cls(**meta["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} holds an invalid model configuration: {exc}") from None
    for name in ("params", "buf1", "buf2"):
        arr = arrays[name]
        # buf2 is twice as long for centered RMSprop (State.from_file checks which)
        shapes = [model.params.shape] + [(2 * model.params.size,)] * (name == "buf2")
        if arr.shape not in shapes or arr.dtype != model.dtype:
            raise ValueError(f"{path}: {name} has shape {arr.shape} and dtype {arr.dtype}, "
                             f"expected {model.params.shape} {model.dtype}")
    model.params[...] = arrays["params"]
    try:
        model._optimizer.from_file(meta, arrays)
        model._rng.bit_generator.state = meta["rng_state"]
        # files from before these keys: no epochs counted, no schedule
        model.epochs_done = int(meta.get("epochs_done", 0))
        schedule = meta.get("lr_schedule")
        if model.epochs_done < 0 or not isinstance(schedule, (dict, type(None))):
            raise ValueError("bad epochs_done or lr_schedule")
        model._schedule_state = schedule
        model.metadata = meta.get("metadata", {})  # files from before it: none
        # files from before dropout: the key the model's seed gives (a new one
        # for a model without a seed; it never trained with dropout)
        model._dropout_key = int(meta.get("dropout_key", model._dropout_key))
        if not 0 <= model._dropout_key < 2**53:
            raise ValueError("bad dropout_key")
        if not isinstance(model.metadata, dict):
            raise ValueError("bad metadata")
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} holds an invalid training state: {exc!r}") from None
    written_by = meta.get("fastbp_version") or "(version not recorded)"
    if written_by != __version__:
        warnings.warn(
            f"{path} was written by fastbp {written_by}, this is fastbp "
            f"{__version__}: it loads, but training on from it may not repeat "
            f"the bits fastbp {written_by} would give",
            UserWarning, stacklevel=3)
    return model


def _checked_metadata(metadata):
    """``model.metadata`` if it is a dict json can write (TypeError otherwise,
    before anything is written)."""
    if not isinstance(metadata, dict):
        raise TypeError(f"model.metadata must be a dict, got {type(metadata).__name__}")
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"model.metadata must hold JSON-able values: {exc}") from None
    return metadata


def _schedule_state_for_file(state):
    """The remembered schedule state if json can write it, else None (with a
    warning): a custom schedule's odd state must not make a checkpoint fail."""
    try:
        json.dumps(state)
    except (TypeError, ValueError) as exc:
        warnings.warn(f"the lr schedule's state is not JSON-able ({exc}); the "
                      "file is saved without it", UserWarning, stacklevel=4)
        return None
    return state
