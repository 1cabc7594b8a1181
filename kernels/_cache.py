"""Where fastbp's compiled kernels are cached on disk, and how a stale entry is
never loaded.

Each kernel's cache lives in one folder per kernel-source digest,
``<root>/kernels-<digest>``. The digest is a SHA-256 over every ``.py`` file of
this package plus the numba, llvmlite and Python versions and the settings that
change the generated code (``_CODEGEN_ENV``). So an upgrade or an edit of any
kernel file, callee or caller, starts a new folder. Numba's own
check looks only at each function's own file: edit kernels/tiles.py and
train.region would load its old machine code.

``<root>`` is the first of these that is set:

- ``FASTBP_CACHE_DIR``;
- ``NUMBA_CACHE_DIR`` + ``/fastbp``, numba's "cache everything here" setting;
- ``$XDG_CACHE_HOME/fastbp``;
- ``~/.cache/fastbp``.

If the folder cannot be written, a per-user folder under the temporary
directory is used instead. If no folder can be written, caching is off, with one
warning. The cache never goes inside the installed package: pip does not track
such files, and a folder left behind after an uninstall shadowed a later
editable install.

Only the kernels decorated by kernels/_jit.py use this locator (each
dispatcher gets its own cache object). Numba's locators and its cache location
for every other package in the process are untouched.

Numba writes each index and data file to a temporary name and renames it into
place. Several processes filling one empty folder at once can each compile a
kernel and overwrite each other's index entry. A file is never half written
(tests/test_cache.py starts four at once).
"""

import hashlib
import os
import sys
import tempfile
import warnings

import llvmlite
import numba

# numba's documented extension points for cache location (private names)
from numba.core.caching import CompileResultCacheImpl, FunctionCache, _CacheLocator

_HERE = os.path.dirname(os.path.abspath(__file__))
# Environment variables that change the machine code of the same source (numba's
# own index keys on the CPU name and features it detects, not on these).
_CODEGEN_ENV = ("FASTBP_VECTOR_BYTES", "NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES", "NUMBA_OPT",
                "NUMBA_BOUNDSCHECK", "NUMBA_DEBUGINFO")


def _digest():
    h = hashlib.sha256()
    for name in sorted(os.listdir(_HERE)):
        if name.endswith(".py"):
            with open(os.path.join(_HERE, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read() + b"\0")
    h.update(f"numba {numba.__version__} llvmlite {llvmlite.__version__} "
             f"python {sys.version}".encode())
    for name in _CODEGEN_ENV:
        h.update(f"\0{name}={os.environ.get(name)}".encode())
    return h.hexdigest()


SOURCE_DIGEST = _digest()


def cache_root():
    """The folder holding every ``kernels-<digest>`` folder (see the module docstring)."""
    if os.environ.get("FASTBP_CACHE_DIR"):
        return os.path.abspath(os.path.expanduser(os.environ["FASTBP_CACHE_DIR"]))
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.path.join(os.path.abspath(os.environ["NUMBA_CACHE_DIR"]), "fastbp")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastbp")


def _writable(path):
    try:
        os.makedirs(path, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
        return True
    except OSError:
        return False


def _choose_folder():
    name = "kernels-" + SOURCE_DIGEST[:16]
    user = getattr(os, "getuid", lambda: "user")()
    for root in (cache_root(), os.path.join(tempfile.gettempdir(), f"fastbp-cache-{user}")):
        if _writable(os.path.join(root, name)):
            return os.path.join(root, name)
    warnings.warn(f"fastbp: no writable cache folder ({cache_root()!r} and the temporary "
                  "directory failed); kernels compile again in every process. Set "
                  "FASTBP_CACHE_DIR to a writable folder.", RuntimeWarning, stacklevel=3)
    return None


CACHE_DIR = _choose_folder()


class _Locator(_CacheLocator):
    """numba's cache locator interface: the folder, the freshness stamp and a
    disambiguator (the first line) of one kernel."""

    def __init__(self, py_func, py_file):
        # numba names _py_file in its warning when a compile result cannot be cached
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno

    def get_cache_path(self):
        return CACHE_DIR

    def get_source_stamp(self):
        return SOURCE_DIGEST

    def get_disambiguator(self):
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func, py_file):
        return cls(py_func, py_file)


class _KernelImpl(CompileResultCacheImpl):
    _locator_classes = [_Locator]


class KernelCache(FunctionCache):
    """numba's per-function cache, located by ``_Locator``."""

    _impl_class = _KernelImpl


def enable(dispatcher):
    """Give a kernel (a numba dispatcher compiled without numba's cache) fastbp's cache."""
    if CACHE_DIR is not None:
        dispatcher._cache = KernelCache(dispatcher.py_func)
    return dispatcher


def folders():
    """Every ``kernels-*`` folder under ``cache_root()``, with its size in bytes:
    [(path, bytes, is_current)]."""
    root = cache_root()
    found = []
    if os.path.isdir(root):
        for name in sorted(os.listdir(root)):
            path = os.path.join(root, name)
            if name.startswith("kernels-") and os.path.isdir(path):
                size = sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
                found.append((path, size, path == CACHE_DIR))
    return found
