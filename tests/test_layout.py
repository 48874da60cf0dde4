"""The package's layout: no import cycle (function-level imports included), no module over 400
lines, every module importable alone in a fresh interpreter, `revgm` starting without the
evaluation's heavy libraries."""

import ast
import os
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "revgm_jax"
MAX_LINES = 400


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: pathlib.Path) -> set[str]:
  """Package modules `name` imports anywhere in its source (also inside functions), each with
  the packages above it (importing a.b.c runs a/__init__.py and a/b/__init__.py first)."""
  is_package = path.name == "__init__.py"
  out = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # relative: from the module's own package
        base = name.split(".")[:len(name.split(".")) - node.level + is_package]
        module = ".".join(base + ([node.module] if node.module else []))
      else:
        module = node.module
      # `from pkg import mod` imports the module pkg.mod where there is one.
      targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module
                 for a in node.names]
    else:
      continue
    for target in targets:
      parts = target.split(".")
      out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & MODULES.keys()
  # A package's __init__ importing its own submodules is not a cycle through the package.
  return out - {name} - {p for p in out if name.startswith(p + ".")}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
  state, stack = {}, []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state:
        found = visit(nxt)
        if found:
          return found
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_the_import_graph_has_no_cycle():
  graph = {name: _imports(name, path) for name, path in MODULES.items()}
  assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_the_cycle_check_finds_a_cycle():
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_is_over_400_lines():
  long = {name: n for name, path in MODULES.items()
          if (n := len(path.read_text().splitlines())) > MAX_LINES}
  assert not long, long


def _fresh(code: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
  return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=600)


@pytest.mark.e2e
@pytest.mark.parametrize("order", ["sorted", "reversed"])
def test_every_module_imports_in_a_fresh_interpreter(order):
  names = sorted(n for n in MODULES if not n.endswith("__main__"))
  names = names if order == "sorted" else names[::-1]
  proc = _fresh("import importlib\n" + "".join(f"importlib.import_module({n!r})\n"
                                                  for n in names))
  assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.e2e
def test_the_command_line_starts_without_the_heavy_libraries():
  """`revgm parse` answers in seconds: the console script loads neither TensorFlow nor the
  evaluation's scikit-learn and matplotlib nor the zoo."""
  proc = _fresh("import sys\nimport revgm_jax.cli.main\n"
                "print(sorted(m for m in ('sklearn', 'matplotlib', 'tensorflow', 'revgm_jax.zoo')"
                " if m in sys.modules))")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip() == "[]"
