"""The house rules that code review would otherwise have to remember (STYLE.md):
numba options only in kernels/_jit.py, kernels/ a leaf, no import cycles, no
module over MAX_LINES, the benchmark lab out of the library's imports, SciPy
outside the core."""

import ast
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
MAX_LINES = 600
# Package folder -> dotted package name (kernels/ installs as fastbp.kernels).
PACKAGES = {"fastbp": "fastbp", "kernels": "fastbp.kernels"}
# Names through which numba options get written: jit decorators and their options.
NUMBA_JIT = {"njit", "jit", "generated_jit", "vectorize", "guvectorize", "cfunc",
             "jit_module", "stencil"}
NUMBA_OPTIONS = {"cache", "fastmath", "nogil", "error_model", "boundscheck", "parallel"}


def _modules():
    """{dotted name: path} of every module of the installed package."""
    out = {}
    for folder, package in PACKAGES.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((package, *parts))] = path
    return out


MODULES = _modules()
# the suite's own files, not asv's virtualenvs and results under asv_benchmarks/.asv
LIBRARY = [*MODULES.values(), *sorted((REPO / "asv_benchmarks" / "benchmarks").rglob("*.py"))]


def _imports(name, path):
    """(imported dotted module, inside a function?) for every import in ``path``;
    ``from fastbp import x`` counts as importing fastbp.x when x is a module."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level
                                                    + 1] + ([base] if base else []))
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    found.append((full if full in MODULES else base, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def test_numba_options_are_written_only_in_kernels_jit():
    offenders = []
    for path in LIBRARY:
        if path == REPO / "kernels" / "_jit.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Attribute) and node.attr in NUMBA_JIT
                    and ast.unparse(node.value) == "numba"):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {node.attr}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("numba"):
                offenders += [f"{path.relative_to(REPO)}:{node.lineno} {a.name}"
                              for a in node.names if a.name in NUMBA_JIT]
            elif isinstance(node, ast.Call) and any(k.arg in NUMBA_OPTIONS
                                                    for k in node.keywords):
                func = ast.unparse(node.func)
                if "numba" in func or func.split(".")[-1] in NUMBA_JIT:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno} {func}")
    assert not offenders, "numba options outside kernels/_jit.py: " + ", ".join(offenders)


def test_kernels_import_nothing_from_fastbp_but_kernels():
    offenders = [
        f"{name} imports {target}"
        for name, path in MODULES.items() if name.startswith("fastbp.kernels")
        for target, _ in _imports(name, path)
        if (target == "fastbp" or target.startswith("fastbp."))
        and not target.startswith("fastbp.kernels")
    ]
    assert not offenders, offenders


def test_no_import_cycles():
    graph = {name: {t for t, _ in _imports(name, path) if t in MODULES and t != name}
             for name, path in MODULES.items()}
    # A package imports its own submodules; a submodule importing a name from its
    # package's __init__ would close a cycle through it, and counts.
    cycles, state = [], {}

    def walk(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                walk(nxt, stack)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [])
    assert not cycles, cycles


@pytest.mark.parametrize("path", LIBRARY, ids=[str(p.relative_to(REPO)) for p in LIBRARY])
def test_module_length(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(REPO)} has {n} lines (at most {MAX_LINES})"


def test_library_modules_never_import_the_benchmark_lab():
    offenders = []
    for name, path in MODULES.items():
        if name.startswith("fastbp.bench"):
            continue
        for target, in_function in _imports(name, path):
            if target.startswith("fastbp.bench") and not (name == "fastbp.cli"
                                                          and in_function):
                offenders.append(f"{name} imports {target}")
    assert not offenders, offenders


@pytest.mark.slow
def test_training_needs_neither_scipy_nor_the_benchmark_lab(tmp_path):
    """SciPy is an optional extra: with it made unimportable, fit, evaluate, predict,
    save, load and ``fastbp.show_config`` run (numba itself only tries it), and no
    fastbp.bench module is loaded."""
    code = (
        "import sys; sys.modules['scipy'] = None  # import scipy -> ImportError\n"
        "import io, numpy as np, fastbp\n"
        "X = np.random.default_rng(0).normal(size=(40, 5)); y = np.arange(40) % 3\n"
        "m = fastbp.Model([5, 8, 3], output='softmax', loss='cross_entropy', seed=0)\n"
        "m.fit(X, y, epochs=2, batch_size=8); m.evaluate(X, y); m.predict(X)\n"
        "m.fit(X, y, epochs=1, batch_size=1)\n"
        "m.save('m.npz'); fastbp.Model.load('m.npz'); fastbp.show_config(file=io.StringIO())\n"
        "print(sorted(n for n in sys.modules if n.startswith('fastbp.bench')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, check=True).stdout
    assert out.strip() == "[]"


def test_import_fastbp_never_imports_the_optional_engines():
    import subprocess
    import sys

    code = ("import sys, fastbp; print(sorted(m for m in ('mpi4py', 'torch', 'jax', "
            "'onnx', 'onnxruntime', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
