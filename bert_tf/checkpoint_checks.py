"""Our own (object-based) checkpoints, checked both ways and for damage.

* ``read_all_used``: a checkpoint read into a model must fill the model (TensorFlow checks
  that) AND every model weight in the checkpoint must have gone somewhere; only optimizer
  slots, counters and heads outside the loaded part may be left. A shape that does not fit
  names the file and both configurations.
* ``describe_checkpoint``: the model configuration a checkpoint's shapes imply.
* ``refuse_other_model``: an output directory holding another model's checkpoints (other
  shapes, attention heads or activation) is refused before anything is written there.
* ``restore_newest_readable``: resume from the newest checkpoint that reads correctly; a
  damaged one (truncated or corrupted data or index) is named and skipped, never ignored,
  and moved aside into ``ckpt-N.damaged/`` so that no later save or rotation takes it for a
  checkpoint.
* ``remove_stale_temp_dirs``: ``ckpt-N_temp/`` folders a kill during a save left behind.
"""
from __future__ import annotations

import json
import os
import re
from typing import Callable, Optional

from absl import logging
import tensorflow as tf

from bert_tf.checkpoints import CheckpointMismatchError

# The fields that decide the shapes of a model's weights.
SHAPE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size",
                "max_position_embeddings", "type_vocab_size")
# The fields that make the architecture: the shapes plus what changes the computation with
# the same weights. Dropout probabilities are not among them (google's BERT lets fine-tuning
# change them), nor is initializer_range (initialisation only).
ARCHITECTURE_FIELDS = SHAPE_FIELDS + ("num_attention_heads", "hidden_act")
_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


class CheckpointDamagedError(RuntimeError):
  """No checkpoint of an output directory reads correctly; the message names each file."""


def _is_model_weight(key: str) -> bool:
  return key.endswith(_SUFFIX) and ".OPTIMIZER_SLOT" not in key


def unused_keys(status) -> list[str]:
  """Checkpoint keys of ``status``'s read that no object took (TensorFlow's own bookkeeping,
  as ``assert_consumed`` walks it)."""
  checkpoint = status._checkpoint  # pylint: disable=protected-access
  slots = {slot.slot_variable_node_id for node in checkpoint.object_graph_proto.nodes
           for slot in node.slot_variables}
  return sorted(attribute.checkpoint_key
                for node_id, node in enumerate(checkpoint.object_graph_proto.nodes)
                if node.attributes and node_id not in slots
                and node_id not in checkpoint.object_by_proto_id
                for attribute in node.attributes)


def describe_checkpoint(prefix: str) -> dict:
  """What the shapes of one of our checkpoints say about its model: the ``SHAPE_FIELDS``
  that can be read off them (missing when the checkpoint holds no such weight)."""
  shapes = dict(tf.train.list_variables(prefix))
  found = {}
  blocks = {int(m.group(1)) for k in shapes for m in [re.search(r"encoder/blocks/(\d+)/", k)]
            if m and ".OPTIMIZER_SLOT" not in k}
  if blocks:
    found["num_hidden_layers"] = max(blocks) + 1
  for key, shape in shapes.items():
    if ".OPTIMIZER_SLOT" in key:
      continue
    if key.endswith("embeddings/position_embeddings" + _SUFFIX):
      found["max_position_embeddings"], found["hidden_size"] = shape
    elif key.endswith("embeddings/token_type_embeddings" + _SUFFIX):
      found["type_vocab_size"] = shape[0]
    elif key.endswith(("embeddings/word_embeddings" + _SUFFIX,
                       "masked_lm/embedding_table" + _SUFFIX)):
      found["vocab_size"] = shape[0]
    elif re.search(r"encoder/blocks/0/intermediate/bias" + re.escape(_SUFFIX) + "$", key):
      found["intermediate_size"] = shape[0]
  return {k: found[k] for k in SHAPE_FIELDS if k in found}


def _config_of(model) -> Optional[dict]:
  encoder = getattr(model, "encoder", model)
  config = getattr(encoder, "bert_config", None)
  return None if config is None else {k: getattr(config, k) for k in SHAPE_FIELDS}


def _stored_config(prefix: str) -> str:
  """Where the checkpoint's own configuration is written down, if anywhere."""
  folder = os.path.dirname(prefix)
  for name, key in (("run_config.json", "bert_config"), ("bert_config.json", None)):
    path = os.path.join(folder, name)
    if tf.io.gfile.exists(path):
      try:
        with tf.io.gfile.GFile(path) as f:
          values = json.load(f)
        values = values.get(key, {}) if key else values
        return f"{path}: " + json.dumps({k: values.get(k) for k in SHAPE_FIELDS})
      except (ValueError, AttributeError):
        return f"{path} (unreadable)"
  return "no run_config.json or bert_config.json next to it"


def _both(prefix: str, model) -> str:
  return (f"\n  checkpoint {prefix}: {describe_checkpoint(prefix)} "
          f"({_stored_config(prefix)})\n  model ({type(model).__name__}) config: "
          f"{_config_of(model)}")


def read_all_used(root: tf.train.Checkpoint, prefix: str, model, within: tuple[str, ...],
                  restore: bool = False):
  """Reads ``prefix`` into ``root`` and checks it both ways: every variable of ``root`` found
  (unless ``restore``, which the caller checks against its optimizer) and every model weight
  of the checkpoint under the key prefixes ``within`` used. Returns the load status."""
  try:
    status = root.restore(prefix) if restore else root.read(prefix)
  except ValueError as e:  # "Received incompatible tensor with shape ..."
    raise CheckpointMismatchError(
        f"{prefix}: a weight's shape does not fit the model ({str(e)[:300]}); another model's "
        f"checkpoint?{_both(prefix, model)}") from None
  if not restore:
    status.expect_partial()  # optimizer slots and step counters are not wanted here
    try:
      status.assert_existing_objects_matched()  # every variable of `root` came from the file
    except AssertionError as e:
      raise CheckpointMismatchError(f"{prefix}: does not hold all of this model's weights: "
                                    f"{str(e)[:2000]}{_both(prefix, model)}") from None
  unused = [k[:-len(_SUFFIX)] for k in unused_keys(status)
            if _is_model_weight(k) and k.startswith(within)]
  if unused:
    raise CheckpointMismatchError(
        f"{prefix}: holds {len(unused)} model weight(s) this model does not use (a bigger "
        f"model's checkpoint? loading it would drop them): {unused[:12]}"
        f"{' ...' if len(unused) > 12 else ''}{_both(prefix, model)}")
  return status


def _candidates(manager: tf.train.CheckpointManager) -> list[str]:
  """The manager's checkpoints newest first, then any ``ckpt-N.index`` its state file does
  not list (a lost or damaged ``checkpoint`` file must not mean starting from scratch)."""
  listed = list(reversed(manager.checkpoints))
  found = tf.io.gfile.glob(os.path.join(manager.directory, "ckpt-*.index"))
  others = sorted((p[:-len(".index")] for p in found
                   if re.fullmatch(r"ckpt-\d+", os.path.basename(p)[:-len(".index")])),
                  key=lambda p: -int(p.rsplit("-", 1)[1]))
  return listed + [p for p in others if p not in listed]


def _aside_name(prefix: str) -> str:
  """``ckpt-N.damaged/``, or ``ckpt-N.damaged-2/``... when an earlier one holds that name."""
  target, n = prefix + ".damaged", 1
  while tf.io.gfile.exists(target):
    n += 1
    target = f"{prefix}.damaged-{n}"
  return target


def move_damaged_aside(manager: tf.train.CheckpointManager, prefix: str,
                       restored: Optional[str]) -> Optional[str]:
  """Moves a damaged checkpoint's files (``ckpt-N.index``, ``ckpt-N.data-*``) into a folder
  ``ckpt-N.damaged/`` next to them (nothing is deleted), and takes it out of the manager's
  list and state file, whose newest is then ``restored``: a later save of step N, the
  rotation and ``tf.train.latest_checkpoint`` never see the damaged files as a checkpoint.
  Returns the folder (None if the files were gone: another worker moved them)."""
  files = [p for p in tf.io.gfile.glob(prefix + ".*")
           if re.fullmatch(r"\.(index|data-\d+-of-\d+)", p[len(prefix):])]
  target = None
  if files:
    target = _aside_name(prefix)
    tf.io.gfile.makedirs(target)
    for path in files:
      try:
        tf.io.gfile.rename(path, os.path.join(target, os.path.basename(path)))
      except tf.errors.NotFoundError:
        pass
    logging.warning("moved the damaged checkpoint %s aside, into %s/ (kept for inspection; "
                    "delete it when no longer wanted)", prefix, target)
  # The manager's own bookkeeping has no public setter. pylint: disable=protected-access
  listed = getattr(manager, "_maybe_delete", None)
  if listed is not None and prefix in listed:
    del listed[prefix]
  if getattr(manager, "_latest_checkpoint", None) == prefix:
    manager._latest_checkpoint = restored or (list(listed)[-1] if listed else None)
  if listed is not None and hasattr(manager, "_record_state") and (listed or restored):
    manager._record_state()
  return target


def restore_newest_readable(manager: tf.train.CheckpointManager,
                            restore: Callable[[str], None],
                            move_damaged: bool = True) -> Optional[str]:
  """Calls ``restore(prefix)`` on the newest checkpoint, falling back to older ones while a
  checkpoint's data or index is damaged (each named in the log). Returns the prefix restored
  (None if the directory holds none); raises ``CheckpointDamagedError`` if none reads.

  When it falls back and ``move_damaged`` (the chief: one process moves files), the damaged
  checkpoints newer than the one restored are moved into ``ckpt-N.damaged/`` folders (see
  ``move_damaged_aside``). When none reads, everything is left in place for the user."""
  failures, damaged = [], []
  for prefix in _candidates(manager):
    try:
      restore(prefix)
    except (tf.errors.OpError, IndexError) as e:  # IndexError: "Read less bytes than requested"
      files = ", ".join(sorted(tf.io.gfile.glob(prefix + ".*"))) or f"{prefix}.* (missing)"
      failures.append(f"{files}: {type(e).__name__}: {str(e).strip().splitlines()[-1][:300]}")
      damaged.append(prefix)
      logging.error("checkpoint %s is damaged and is skipped (%s)", prefix, failures[-1])
      continue
    if failures:
      moved = [move_damaged_aside(manager, d, prefix) for d in damaged] if move_damaged else []
      logging.warning("resumed from %s, the newest checkpoint that reads correctly; damaged: "
                      "%s; %s", prefix, "; ".join(failures),
                      f"moved aside into {', '.join(m for m in moved if m)}"
                      if any(moved) else "left in place")
    return prefix
  if failures:
    raise CheckpointDamagedError(
        f"{manager.directory}: no checkpoint reads correctly; refusing to start from scratch "
        "over them (move them away to do that):\n  " + "\n  ".join(failures))
  return None


def refuse_other_model(output_dir: str, bert_config) -> None:
  """Raises ``CheckpointMismatchError`` if ``output_dir`` holds checkpoints of another model
  than ``bert_config``: any ``ARCHITECTURE_FIELDS`` value other than the run_config.json
  written with them records (each named with both values and the file), or other shapes in
  the newest checkpoint; both configurations shown. Call before writing anything."""
  if not output_dir or not tf.io.gfile.isdir(output_dir):
    return
  indexes = tf.io.gfile.glob(os.path.join(output_dir, "ckpt-*.index"))
  if not indexes:
    return
  wanted = {k: getattr(bert_config, k) for k in ARCHITECTURE_FIELDS}
  prefix = tf.train.latest_checkpoint(output_dir) or sorted(
      indexes, key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0))[-1][:-6]
  problems = []
  path = os.path.join(output_dir, "run_config.json")
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      recorded = json.load(f).get("bert_config", {})
    differ = [k for k, v in wanted.items() if recorded.get(k) != v]
    if differ:
      problems += [f"{k}: {recorded.get(k)!r} in {path} (the run that wrote them), "
                   f"{wanted[k]!r} in this run's config" for k in differ]
      problems.append(f"{path} (the run that wrote them) has bert_config "
                      f"{json.dumps({k: recorded.get(k) for k in ARCHITECTURE_FIELDS})}")
  try:
    found = describe_checkpoint(prefix)
  except (tf.errors.OpError, ValueError) as e:
    found = {}
    logging.warning("%s: cannot read its shapes (%s); restore will check it", prefix, e)
  if any(found[k] != wanted[k] for k in found):
    problems.append(f"the checkpoint {prefix} has the shapes of {json.dumps(found)}")
  if problems:
    raise CheckpointMismatchError(
        f"--output_dir={output_dir} holds checkpoints of a different model; refusing to mix "
        "them with this one or overwrite them (use a new --output_dir, or the same config):\n"
        "  " + "\n  ".join(problems) + f"\n  this run's config: {json.dumps(wanted)}")


def remove_stale_temp_dirs(output_dir: str) -> list[str]:
  """Removes the ``ckpt-N_temp/`` folders a kill during a save left (the save they belonged
  to never completed; the newest complete checkpoint is unaffected). Returns them."""
  stale = [p.rstrip("/") for p in tf.io.gfile.glob(os.path.join(output_dir, "ckpt-*_temp"))
           if tf.io.gfile.isdir(p)]
  for path in stale:
    tf.io.gfile.rmtree(path)
    logging.warning("removed %s, left by a save that did not complete", path)
  return stale
