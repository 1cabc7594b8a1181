"""The public API documents every parameter, numpydoc style, and names only
things that exist: numpydoc's PR01 (a parameter not documented) and PR02 (a
documented parameter that is not in the signature), checked here without
numpydoc itself. fastbp.reference documents the names its functions share once,
in its module docstring's Parameters section."""

import importlib
import inspect
import re

import pytest

import fastbp
from fastbp import callbacks, datasets, distributed, reference, schedules, sklearn

SECTION = re.compile(r"^Parameters\n-{3,}\n(.*?)(?=^\S[^\n]*\n-{3,}\n|\Z)", re.S | re.M)
ENTRY = re.compile(r"^(\*{0,2}[A-Za-z_]\w*(?:, \*{0,2}[A-Za-z_]\w*)*)(?: :|$)", re.M)


def documented(doc):
    """The names a numpydoc Parameters section lists (``a, b : type`` counts both)."""
    found = SECTION.search(inspect.cleandoc(doc or ""))
    if not found:
        return set()
    return {name.strip().lstrip("*") for entry in ENTRY.findall(found.group(1))
            for name in entry.split(",")}


def public_callables():
    """(qualified name, callable, names documented elsewhere) of the public API."""
    modules = {"fastbp": fastbp, "fastbp.callbacks": callbacks, "fastbp.schedules": schedules,
               "fastbp.datasets": datasets, "fastbp.sklearn": sklearn,
               "fastbp.distributed": distributed}
    shared = documented(reference.__doc__)
    found = [(f"fastbp.reference.{name}", func, shared)
             for name, func in vars(reference).items()
             if inspect.isfunction(func) and not name.startswith("_")
             and func.__module__ == reference.__name__]
    for prefix, module in modules.items():
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                found.append((f"{prefix}.{name}", obj, set()))
            elif inspect.isclass(obj) and obj.__module__.startswith("fastbp"):
                init = next(k for k in obj.__mro__ if "__init__" in vars(k))
                if init.__module__.startswith("fastbp"):  # not an exception's own
                    found.append((f"{prefix}.{name}", obj, set()))
                for attr in dir(obj):
                    if attr.startswith("_"):
                        continue
                    try:
                        member = getattr(obj, attr)
                    except AttributeError:  # sklearn's available_if on the class
                        continue
                    if (inspect.isfunction(member) or inspect.ismethod(member)) and \
                            getattr(member, "__module__", "").startswith("fastbp"):
                        found.append((f"{prefix}.{name}.{attr}", member, set()))
    return found


CALLABLES = public_callables()


@pytest.mark.parametrize("name,obj,shared", CALLABLES, ids=[c[0] for c in CALLABLES])
def test_every_parameter_is_documented_and_no_other(name, obj, shared):
    params = [p for p in inspect.signature(obj).parameters if p not in ("self", "cls")]
    own = documented(inspect.getdoc(obj))
    missing = [p for p in params if p not in own | shared]
    assert not missing, f"{name} does not document {missing}"
    stale = sorted(own - set(params))
    assert not stale, f"{name} documents {stale}, which its signature does not have"


def test_the_checks_can_fail():
    def f(a, b):
        """Do it.

        Parameters
        ----------
        a, c : int
            Numbers.
        """

    assert documented(f.__doc__) == {"a", "c"}
    with pytest.raises(AssertionError, match="does not document"):
        test_every_parameter_is_documented_and_no_other("f", f, set())
    f.__doc__ = "See fastbp.kernels.train.train_epoch (removed in 2026-12)."
    with pytest.raises(AssertionError, match="which does not exist"):
        test_dotted_names_in_docstrings_exist("f", f, set())


DOTTED = re.compile(r"\bfastbp(?:\.[A-Za-z_]\w*)+")


@pytest.mark.parametrize("name,obj,shared", CALLABLES, ids=[c[0] for c in CALLABLES])
def test_dotted_names_in_docstrings_exist(name, obj, shared):
    for dotted in DOTTED.findall(inspect.getdoc(obj) or ""):
        parts = dotted.split(".")
        for split in range(len(parts), 0, -1):  # the longest importable module
            try:
                target = importlib.import_module(".".join(parts[:split]))
                break
            except ImportError:
                continue
        for attr in parts[split:]:
            assert hasattr(target, attr), f"{name} names {dotted}, which does not exist"
            target = getattr(target, attr)
