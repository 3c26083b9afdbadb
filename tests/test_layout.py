"""The library stays readable: no file over 400 lines, no class over 250, no function over 80
(issue 10's limits), one outer training loop and one step core, and library code that never
reads flags nor imports Horovod at module level."""
import ast
import os

import pytest

from bert_tf.testing.launch import ROOT

pytestmark = pytest.mark.unit
LIBRARY = os.path.join(ROOT, "bert_tf")


def _library_files():
  for folder, _, names in os.walk(LIBRARY):
    for name in sorted(names):
      if name.endswith(".py"):
        yield os.path.join(folder, name)


def _sizes(path):
  with open(path) as f:
    text = f.read()
  tree = ast.parse(text)
  for node in ast.walk(tree):
    if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
      yield node, node.end_lineno - node.lineno + 1
  yield None, len(text.splitlines())


def test_files_classes_and_functions_stay_within_the_limits():
  too_long = []
  for path in _library_files():
    where = os.path.relpath(path, ROOT)
    for node, lines in _sizes(path):
      if node is None and lines > 400:
        too_long.append(f"{where}: {lines} lines (file limit 400)")
      elif isinstance(node, ast.ClassDef) and lines > 250:
        too_long.append(f"{where}: class {node.name} {lines} lines (limit 250)")
      elif node is not None and not isinstance(node, ast.ClassDef) and lines > 80:
        too_long.append(f"{where}: {node.name}() {lines} lines (limit 80)")
  assert not too_long, "\n".join(too_long)


def test_one_outer_loop_and_one_step_core():
  """Only step.py applies gradients, only the engine runs the outer loop; tools may time the
  compiled loop. (The test harness, bert_tf/testing, is not library code.)"""
  found = {"apply_gradients(": [], "while step < target": [], "compiled_train_loop(": []}
  for path in _library_files():
    where = os.path.relpath(path, LIBRARY)
    if where.startswith("testing"):
      continue
    text = open(path).read()
    for needle, files in found.items():
      if needle in text:
        files.append(where)
  assert found["apply_gradients("] == ["training/step.py"], found
  assert found["while step < target"] == ["training/engine.py"], found
  assert all(f == "training/engine.py" or f.startswith("tools/")
             for f in found["compiled_train_loop("]), found


def test_library_reads_no_flags_and_imports_horovod_lazily():
  for path in _library_files():
    tree = ast.parse(open(path).read())
    where = os.path.relpath(path, ROOT)
    for node in tree.body:  # module level only: Horovod may be imported inside a function
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      for name in names:
        assert not name.startswith("horovod"), f"{where} imports {name} at module level"
    text = open(path).read()
    assert "absl.flags" not in text and "from absl import flags" not in text, where


def test_flags_import_configs_not_trainers():
  """flags/ sits below the library's trainers: it turns flags into configs and nothing more."""
  for name in sorted(os.listdir(os.path.join(ROOT, "flags"))):
    if name.endswith(".py"):
      text = open(os.path.join(ROOT, "flags", name)).read()
      for trainer in ("bert_tf.training", "bert_tf import training", "bert_tf.finetuning",
                      "bert_tf import finetuning", "import distribution"):
        assert trainer not in text, f"flags/{name} imports {trainer}"
