"""Pretraining throughput: our train loop against Model Garden's, and against the matmul peak.

For BERT-Mini (4 layers, hidden 256, batch 32) and BERT-Base (12 layers, hidden 768, batch 8)
at sequence length 128 (vocab 30522, max_predictions_per_seq 20) this measures, in one
process and one run:

  * ours: ``training.Pretrainer``'s real train loop (``compiled_train_loop``:
    ``iterations_per_loop`` steps per ``tf.function`` call, google's AdamWeightDecay,
    global-norm clipping), fed by an in-memory repeating ``tf.data`` pipeline through the
    strategy's distributed iterator (``bert_tf.tools.probe``);
  * Model Garden: ``BertPretrainerV2`` + ``BertEncoderV2`` with the same config (NSP head as in
    Model Garden's BERT pretraining config), MLM + NSP losses as its ``MaskedLMTask``, global
    norm clipping 1.0 and its ``AdamWeightDecay``, as many train steps per ``tf.function``
    call as ours, as its Orbit loop would run them (``--mg_steps_per_call`` to change it);
  * the machine's ``tf.matmul`` peak: 2048 x 2048 float32.

The contenders run interleaved (peak, ours, Model Garden, then the next round in the other
order) and the table reports medians over rounds, so drift of the shared machine hits both
sides alike. Warm-up (tracing and the first calls) is excluded.

Model FLOPs per step = 6 x non-embedding parameters x tokens (the transformer blocks; pooler
and NSP head per example) + attention (QK^T and PV: 12 x layers x batch x seq^2 x hidden for
forward + backward) + MLM head at the masked positions (6 x batch x predictions x (hidden^2 +
hidden x vocab)). Utilisation = model FLOP/s / matmul peak.

    python benchmarks/bench_pretraining.py            # both models (one process each), ~20 min
    python benchmarks/bench_pretraining.py --quick    # a short run
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import bert_tf  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf
import tf_keras
from absl import logging

from bert_tf import distribution
from bert_tf.configs import BertConfig, OptimizerConfig
from bert_tf.tools import probe, synthetic
from bert_tf.tools.machine import machine_line

SEQ, PREDICTIONS, VOCAB = 128, 20, 30522
MODELS = {
    # name: (layers, hidden, heads, batch)
    "mini": (4, 256, 4, 32),
    "base": (12, 768, 12, 8),
}


def bert_config(name: str, dropout: float) -> BertConfig:
  layers, hidden, heads, _ = MODELS[name]
  return BertConfig(vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers,
                    num_attention_heads=heads, intermediate_size=4 * hidden,
                    max_position_embeddings=512, type_vocab_size=2,
                    hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)


def random_examples(n: int, seed: int = 0) -> dict:
  """n google-format pretraining examples, full length, PREDICTIONS masked positions each."""
  return synthetic.random_pretraining_features(n, SEQ, PREDICTIONS, VOCAB, seed)


def repeating_dataset(examples: dict, batch: int) -> tf.data.Dataset:
  return tf.data.Dataset.from_tensor_slices(examples).repeat().batch(batch, drop_remainder=True)


def model_flops_per_step(config: BertConfig, batch: int) -> float:
  h, i, n_layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
  block_params = 4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h  # qkv+out, ffn, 2 LayerNorms
  tokens = batch * SEQ
  dense = 6 * n_layers * block_params * tokens
  per_example = 6 * batch * ((h * h + h) + (2 * h + 2))       # pooler + NSP output layer
  attention = 12 * n_layers * batch * SEQ * SEQ * h
  mlm = 6 * batch * PREDICTIONS * (h * h + h * config.vocab_size)
  return float(dense + per_example + attention + mlm)


# --- contenders -----------------------------------------------------------------------------

class Ours:
  """The real ``Pretrainer`` loop: ``steps`` optimizer steps per tf.function call."""

  def __init__(self, config: BertConfig, batch: int, examples: dict, steps: int, xla: bool,
               output_dir: str):
    self.steps = steps
    optimizer = OptimizerConfig(name="adamw", learning_rate=1e-4, num_train_steps=10 ** 6,
                                num_warmup_steps=10 ** 4)
    trainer = probe.build_pretrainer(
        config, examples, distribution.make_runtime("one_device"), output_dir, batch, SEQ,
        PREDICTIONS, optimizer=optimizer, iterations_per_loop=steps, use_xla=xla)
    self.runner = probe.LoopRunner(trainer, steps)

  def run(self) -> float:
    """Runs one call of ``steps`` steps; returns its loss (forces the result)."""
    return self.runner.run()


class ModelGarden:
  """Model Garden's BertPretrainerV2 with an equivalent train step under tf.function."""

  def __init__(self, config: BertConfig, batch: int, examples: dict, steps: int,
               steps_per_call: int):
    from official.modeling.optimization import legacy_adamw
    from official.nlp import optimization as mg_optimization
    from official.nlp.modeling import layers, models, networks

    self.steps, self.steps_per_call = steps, steps_per_call
    gelu = lambda x: tf_keras.activations.gelu(x, approximate=True)
    init = lambda: tf_keras.initializers.TruncatedNormal(stddev=config.initializer_range)
    encoder = networks.BertEncoderV2(
        vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers, num_attention_heads=config.num_attention_heads,
        max_sequence_length=config.max_position_embeddings,
        type_vocab_size=config.type_vocab_size, inner_dim=config.intermediate_size,
        inner_activation=gelu, output_dropout=config.hidden_dropout_prob,
        attention_dropout=config.attention_probs_dropout_prob, initializer=init())
    self.model = models.BertPretrainerV2(
        encoder_network=encoder, mlm_activation=gelu, mlm_initializer=init(),
        classification_heads=[layers.ClassificationHead(
            inner_dim=config.hidden_size, num_classes=2,
            dropout_rate=config.hidden_dropout_prob, initializer=init(),
            name="next_sentence")])
    schedule = mg_optimization.WarmUp(
        1e-4, tf_keras.optimizers.schedules.PolynomialDecay(1e-4, 10 ** 6, 0.0), 10 ** 4)
    self.optimizer = legacy_adamw.AdamWeightDecay(
        learning_rate=schedule, weight_decay_rate=0.01, epsilon=1e-6,
        exclude_from_weight_decay=["LayerNorm", "layer_norm", "bias"])
    dataset = repeating_dataset(examples, batch).prefetch(tf.data.AUTOTUNE)
    self.iterator = iter(dataset)
    model, optimizer = self.model, self.optimizer

    def train_step(features):
      inputs = {"input_word_ids": features["input_ids"], "input_mask": features["input_mask"],
                "input_type_ids": features["segment_ids"],
                "masked_lm_positions": features["masked_lm_positions"]}
      with tf.GradientTape() as tape:
        outputs = model(inputs, training=True)
        # Model Garden's MaskedLMTask.build_losses.
        lm_losses = tf_keras.losses.sparse_categorical_crossentropy(
            features["masked_lm_ids"], tf.cast(outputs["mlm_logits"], tf.float32),
            from_logits=True)
        weights = features["masked_lm_weights"]
        mlm_loss = tf.math.divide_no_nan(tf.reduce_sum(lm_losses * weights),
                                         tf.reduce_sum(weights))
        nsp_loss = tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(
            features["next_sentence_labels"], tf.cast(outputs["next_sentence"], tf.float32),
            from_logits=True))
        loss = mlm_loss + nsp_loss
      variables = model.trainable_variables
      grads = tape.gradient(loss, variables)
      grads, _ = tf.clip_by_global_norm(grads, 1.0)
      optimizer.apply_gradients(zip(grads, variables))
      return loss

    @tf.function
    def loop(iterator):
      loss = tf.constant(0.0)
      for _ in tf.range(steps_per_call):
        loss = train_step(next(iterator))
      return loss

    self.loop = loop

  def run(self) -> float:
    loss = None
    for _ in range(self.steps // self.steps_per_call):
      loss = self.loop(self.iterator)
    return float(loss.numpy())


class MatmulPeak:
  """FLOP/s of tf.matmul on 2048 x 2048 float32 (a chain, so no call can be skipped)."""

  N, CHAIN = 2048, 10

  def __init__(self):
    self.a = tf.random.normal([self.N, self.N]) / self.N ** 0.5

    @tf.function
    def chain(a):
      x = a
      for _ in range(self.CHAIN):
        x = tf.matmul(x, a)
      return tf.reduce_sum(x)

    self.chain = chain

  def run(self) -> float:
    return float(self.chain(self.a).numpy())

  @property
  def flops(self) -> float:
    return 2.0 * self.N ** 3 * self.CHAIN


def timed(fn) -> float:
  began = time.perf_counter()
  fn()
  return time.perf_counter() - began


# --- the benchmark --------------------------------------------------------------------------

def bench_model(name: str, args, peak: MatmulPeak) -> dict:
  config = bert_config(name, args.dropout)
  batch = MODELS[name][3]
  steps = args.steps or (3 if args.quick else 10)
  rounds = args.rounds or (2 if args.quick else (5 if name == "mini" else 3))
  examples = random_examples(max(4 * batch, 64))
  with tempfile.TemporaryDirectory() as tmp:
    ours = Ours(config, batch, examples, steps, args.xla, tmp)
    # Model Garden builds under the policy our Pretrainer set (float32); build it second so
    # the global seed and policy stay as the Pretrainer left them.
    mg = ModelGarden(config, batch, examples, steps, args.mg_steps_per_call or steps)
    for contender in (ours, mg, ours, mg):  # warm-up: tracing and first calls excluded
      contender.run()
    times = {"ours": [], "mg": [], "peak": []}
    for r in range(rounds):
      order = [("peak", peak), ("ours", ours), ("mg", mg)]
      if r % 2:
        order = order[::-1]
      for key, contender in order:
        times[key].append(timed(contender.run))
      print(f"  {name} round {r + 1}/{rounds}: ours {times['ours'][-1]:.2f}s, "
            f"mg {times['mg'][-1]:.2f}s, matmul {times['peak'][-1]:.2f}s "
            f"({steps} steps each)", flush=True)
  flops = model_flops_per_step(config, batch)
  ours_eps = [steps * batch / t for t in times["ours"]]
  mg_eps = [steps * batch / t for t in times["mg"]]
  peaks = [peak.flops / t for t in times["peak"]]
  ratios = [a / b for a, b in zip(ours_eps, mg_eps)]
  # Utilisation per round against that round's peak, then the median.
  ours_util = [e / batch * flops / p for e, p in zip(ours_eps, peaks)]
  mg_util = [e / batch * flops / p for e, p in zip(mg_eps, peaks)]
  return {"name": name, "batch": batch, "steps": steps, "rounds": rounds,
          "ours": statistics.median(ours_eps), "mg": statistics.median(mg_eps),
          "ratio": statistics.median(ratios), "peak": statistics.median(peaks),
          "ours_util": statistics.median(ours_util), "mg_util": statistics.median(mg_util),
          "gflop_step": flops / 1e9}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="short run (fewer steps/rounds)")
  parser.add_argument("--models", default="mini,base", help="comma list of: mini, base")
  parser.add_argument("--steps", type=int, default=0, help="steps per timed call (0: auto)")
  parser.add_argument("--rounds", type=int, default=0, help="interleaved rounds (0: auto)")
  parser.add_argument("--dropout", type=float, default=0.1,
                      help="hidden and attention dropout of both models (BERT's 0.1)")
  parser.add_argument("--xla", action="store_true", help="our loop with jit_compile=True")
  parser.add_argument("--mg_steps_per_call", type=int, default=0,
                      help="Model Garden steps per tf.function call (0: as many as ours)")
  parser.add_argument("--json_out", default="", help=argparse.SUPPRESS)  # one model, child run
  args = parser.parse_args(argv)
  names = [name.strip() for name in args.models.split(",")]
  if args.json_out:
    logging.set_verbosity(logging.WARNING)
    peak = MatmulPeak()
    peak.run()
    with open(args.json_out, "w") as f:
      json.dump(bench_model(names[0], args, peak), f)
    return
  # Each model in its own process: two BERT-Base models with optimizer state plus the Mini
  # graphs of an earlier round do not fit beside other jobs on a shared machine.
  results = []
  for name in names:
    with tempfile.TemporaryDirectory() as tmp:
      out = os.path.join(tmp, "result.json")
      child = [a for a in (argv if argv is not None else sys.argv[1:])]
      subprocess.run([sys.executable, os.path.abspath(__file__), *child, "--models", name,
                      "--json_out", out], check=True)
      with open(out) as f:
        results.append(json.load(f))
  print()
  print(f"machine: {machine_line()}")
  print(f"seq {SEQ}, vocab {VOCAB}, {PREDICTIONS} predictions, dropout {args.dropout}, "
        f"{'XLA' if args.xla else 'no XLA'}; medians over interleaved rounds; "
        f"threads: intra {tf.config.threading.get_intra_op_parallelism_threads() or 'auto'}")
  print()
  print("| model | batch | GFLOP/step | ours ex/s | Model Garden ex/s | ours / MG | "
        "matmul peak GFLOP/s | ours % peak | MG % peak |")
  print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
  for r in results:
    print(f"| BERT-{r['name'].capitalize()} | {r['batch']} | {r['gflop_step']:.1f} | "
          f"{r['ours']:.2f} | {r['mg']:.2f} | {r['ratio']:.2f}x | {r['peak'] / 1e9:.0f} | "
          f"{100 * r['ours_util']:.0f}% | {100 * r['mg_util']:.0f}% |")


if __name__ == "__main__":
  main()
