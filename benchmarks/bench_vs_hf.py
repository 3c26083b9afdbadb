"""bert_tf against Hugging Face transformers + PyTorch (and Model Garden), same shapes, one run.

Sections (each in its own process, once per condition: the default environment, which turns
oneDNN on through ``import bert_tf``, and ``TF_ENABLE_ONEDNN_OPTS=0``):

  mini      pretraining BERT-Mini (4 layers, hidden 256), seq 128, batch 32, 20 predictions:
            our ``Pretrainer`` loop vs Model Garden's ``BertPretrainerV2`` step with the same
            steps per ``tf.function`` call as ours (as its Orbit loop would) vs HF
            ``BertForPreTraining`` (torch AdamW, clip 1.0, linear schedule: what HF's Trainer
            does); plus the 2048x2048 ``tf.matmul`` peak.
  base      pretraining BERT-Base (12 layers, hidden 768), seq 128, batch 8: ours vs HF, model
            GFLOP/s against the matmul peak measured in the same rounds, FLOP accounting printed.
  finetune  a 6-layer 384-wide BERT (all-MiniLM-L6-v2's shape) at seq 64, batch 32, 3 labels:
            our ``ClassifierTrainer`` compiled train loop vs HF ``BertForSequenceClassification``.
  infer     batch 32, seq 128, the same 6-layer 384-wide BERT: the encoder forward
            ``extract_features.py`` compiles (layers -1..-4 to NumPy) vs HF ``BertModel`` with
            hidden states; classifier prediction (``ClassifierTrainer.logits``, what
            ``run_classifier.py --do_predict`` runs) vs HF ``BertForSequenceClassification``
            in eval mode. ``--infer_model base`` for BERT-Base.

Fairness: PyTorch gets as many threads as TensorFlow's intra-op pool (the core count when
TensorFlow chooses), HF uses its default attention (``sdpa``) and google's tanh GELU
(``gelu_new``, ours), dropout 0.1 on both sides in training, no dropout in inference. The
contenders of a section run interleaved (round r in one order, r+1 reversed), warm-up calls
excluded; the tables give median examples/s, its min..max over rounds, and the median (and
min..max) of the per-round ratio, so drift of a shared machine hits both sides alike.

HF's ``BertForPreTraining`` computes MLM logits at every position (its API takes [B, S]
labels with -100), where ours and Model Garden's compute them at the 20 masked positions;
that is part of what is compared. FLOP accounting (model FLOPs, ours): 6 x block parameters x
tokens + attention (12 x layers x batch x seq^2 x hidden) + MLM head at the masked positions +
pooler/NSP, as ``bench_pretraining.model_flops_per_step``.

Needs PyTorch and transformers (``pip install -e .[bench]``); without them it prints why and
exits 0. Tests never need them.

    python benchmarks/bench_vs_hf.py                       # all sections, both conditions
    python benchmarks/bench_vs_hf.py --sections mini --conditions default --quick
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

SECTIONS = ("mini", "base", "finetune", "infer")
CONDITIONS = {"default": None, "onednn_off": "0"}
FINETUNE = dict(layers=6, hidden=384, heads=12, seq=64, batch=32, labels=3)
INFER = dict(seq=128, batch=32)


def missing_deps() -> str:
  gone = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
  return ", ".join(gone)


# --- helpers ---------------------------------------------------------------------------------

def spread(values) -> tuple:
  return statistics.median(values), min(values), max(values)


def interleave(contenders: dict, rounds: int, warmup: dict, label: str) -> dict:
  """contenders: name -> (run_fn, examples per call). Returns name -> [examples/s per round]."""
  for name, (run, _) in contenders.items():
    for _ in range(warmup.get(name, 2)):
      run()
  eps = {name: [] for name in contenders}
  names = list(contenders)
  for r in range(rounds):
    order = names if r % 2 == 0 else names[::-1]
    line = []
    for name in order:
      run, examples = contenders[name]
      began = time.perf_counter()
      run()
      seconds = time.perf_counter() - began
      eps[name].append(examples / seconds)
      line.append(f"{name} {seconds:.2f}s")
    print(f"  {label} round {r + 1}/{rounds}: " + ", ".join(line), flush=True)
  return eps


def summarise(eps: dict, against: str) -> dict:
  """Per contender: median/min/max ex/s, and ratio of ``against`` to it per round."""
  out = {}
  for name, values in eps.items():
    row = {"eps": spread(values)}
    if name != against:
      row["ratio"] = spread([a / b for a, b in zip(eps[against], values)])
    out[name] = row
  return out


def torch_setup():
  import tensorflow as tf
  import torch
  threads = tf.config.threading.get_intra_op_parallelism_threads() or os.cpu_count()
  torch.set_num_threads(threads)
  torch.manual_seed(0)
  return torch


def hf_config(config, **extra):
  from transformers import BertConfig as HFBertConfig
  return HFBertConfig(
      vocab_size=config.vocab_size, hidden_size=config.hidden_size,
      num_hidden_layers=config.num_hidden_layers,
      num_attention_heads=config.num_attention_heads,
      intermediate_size=config.intermediate_size, hidden_act="gelu_new",
      hidden_dropout_prob=config.hidden_dropout_prob,
      attention_probs_dropout_prob=config.attention_probs_dropout_prob,
      max_position_embeddings=config.max_position_embeddings,
      type_vocab_size=config.type_vocab_size, layer_norm_eps=1e-12, **extra)


def hf_optimizer(model, lr: float, warmup: int, total: int):
  """What HF's Trainer builds: AdamW with no decay on biases and LayerNorm, linear schedule."""
  import torch
  from transformers import get_linear_schedule_with_warmup
  decay = [p for n, p in model.named_parameters() if not ("bias" in n or "LayerNorm" in n)]
  no_decay = [p for n, p in model.named_parameters() if "bias" in n or "LayerNorm" in n]
  opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                           {"params": no_decay, "weight_decay": 0.0}], lr=lr, eps=1e-6)
  return opt, get_linear_schedule_with_warmup(opt, warmup, total)


class HFTrainer:
  """HF model + torch AdamW, ``steps`` steps per call over precomputed batches (cycled)."""

  def __init__(self, model, batches: list, steps: int, lr: float):
    import torch
    self.torch, self.model, self.batches, self.steps = torch, model, batches, steps
    self.opt, self.sched = hf_optimizer(model, lr, 10 ** 4, 10 ** 6)
    self.params = [p for p in model.parameters() if p.requires_grad]
    self.i = 0
    model.train()

  def run(self) -> float:
    loss = None
    for _ in range(self.steps):
      batch = self.batches[self.i % len(self.batches)]
      self.i += 1
      loss = self.model(**batch).loss
      loss.backward()
      self.torch.nn.utils.clip_grad_norm_(self.params, 1.0)
      self.opt.step()
      self.sched.step()
      self.opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def hf_pretraining_batches(examples: dict, batch: int) -> list:
  import numpy as np
  import torch
  n = len(examples["input_ids"])
  batches = []
  for start in range(0, n - batch + 1, batch):
    rows = slice(start, start + batch)
    ids = examples["input_ids"][rows]
    labels = np.full(ids.shape, -100, np.int64)
    pos, lm_ids = examples["masked_lm_positions"][rows], examples["masked_lm_ids"][rows]
    weights = examples["masked_lm_weights"][rows]
    for b in range(batch):
      keep = weights[b] > 0
      labels[b, pos[b][keep]] = lm_ids[b][keep]
    batches.append(dict(
        input_ids=torch.from_numpy(ids.astype(np.int64)),
        attention_mask=torch.from_numpy(examples["input_mask"][rows].astype(np.int64)),
        token_type_ids=torch.from_numpy(examples["segment_ids"][rows].astype(np.int64)),
        labels=torch.from_numpy(labels),
        next_sentence_label=torch.from_numpy(
            examples["next_sentence_labels"][rows].reshape(-1).astype(np.int64))))
  return batches


def attn_impl(model) -> str:
  return getattr(model.config, "_attn_implementation", None) or "eager"


# --- sections --------------------------------------------------------------------------------

def section_pretraining(name: str, args) -> dict:
  import bench_pretraining as bp  # this directory is on sys.path (run as a script)
  import transformers
  torch = torch_setup()
  config = bp.bert_config(name, 0.1)
  batch = bp.MODELS[name][3]
  if name == "mini":
    steps, hf_steps, rounds = (2, 1, 2) if args.quick else (5, 2, 4)
  else:
    steps, hf_steps, rounds = (1, 1, 2) if args.quick else (2, 1, 3)
  examples = bp.random_examples(max(4 * batch, 64))
  peak = bp.MatmulPeak()
  contenders, warmup = {}, {"HF": 1, "peak": 2}
  with tempfile.TemporaryDirectory() as tmp:
    ours = bp.Ours(config, batch, examples, steps, False, tmp)
    contenders["ours"] = (ours.run, steps * batch)
    if name == "mini" or args.base_mg:
      mg = bp.ModelGarden(config, batch, examples, steps, steps_per_call=steps)
      contenders["MG"] = (mg.run, steps * batch)
    model = transformers.BertForPreTraining(hf_config(config))
    hf = HFTrainer(model, hf_pretraining_batches(examples, batch), hf_steps, 1e-4)
    contenders["HF"] = (hf.run, hf_steps * batch)
    contenders["peak"] = (peak.run, 1.0)  # "examples/s" = calls/s; FLOP/s below
    eps = interleave(contenders, rounds, warmup, name)
  peaks = [peak.flops * c for c in eps.pop("peak")]
  flops = bp.model_flops_per_step(config, batch)
  h, i, L, v = config.hidden_size, config.intermediate_size, config.num_hidden_layers, \
      config.vocab_size
  accounting = {
      "blocks": 6 * L * (4 * h * h + 4 * h + 2 * h * i + i + h + 4 * h) * batch * bp.SEQ,
      "attention": 12 * L * batch * bp.SEQ * bp.SEQ * h,
      "mlm": 6 * batch * bp.PREDICTIONS * (h * h + h * v),
      "pooler_nsp": 6 * batch * ((h * h + h) + (2 * h + 2))}
  util = {who: spread([e / batch * flops / p for e, p in zip(eps[who], peaks)])
          for who in eps}
  return {"section": name, "batch": batch, "steps": steps, "hf_steps": hf_steps,
          "rounds": rounds, "result": summarise(eps, "ours"), "peak": spread(peaks),
          "gflop_step": flops / 1e9, "accounting": accounting, "util": util,
          "hf_attn": attn_impl(model), "torch_threads": torch.get_num_threads()}


def small_config(layers, hidden, heads, dropout=0.1):
  from bert_tf.configs import BertConfig
  return BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers,
                    num_attention_heads=heads, intermediate_size=4 * hidden,
                    max_position_embeddings=512, type_vocab_size=2,
                    hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)


def classifier_features(n: int, seq: int, labels: int, seed: int = 0):
  """n full-length examples (so padding is the same for every contender)."""
  import numpy as np
  from bert_tf.data import classifier as data
  rng = np.random.default_rng(seed)
  ids = rng.integers(5, 30522, n * seq).astype(np.int32)
  offsets = (np.arange(n + 1) * seq).astype(np.int64)
  return data.Features(ids, offsets, np.full(n, seq // 2, np.int32),
                       rng.integers(0, labels, n).astype(np.int32))


def hf_classifier_batches(features, n: int, seq: int, batch: int, with_labels: bool) -> list:
  import numpy as np
  import torch
  ids = features.ids.reshape(n, seq).astype(np.int64)
  segments = np.zeros((n, seq), np.int64)
  segments[:, seq // 2:] = 1
  out = []
  for start in range(0, n - batch + 1, batch):
    rows = slice(start, start + batch)
    b = dict(input_ids=torch.from_numpy(ids[rows]),
             attention_mask=torch.ones((batch, seq), dtype=torch.int64),
             token_type_ids=torch.from_numpy(segments[rows]))
    if with_labels:
      b["labels"] = torch.from_numpy(features.labels[rows].astype(np.int64))
    out.append(b)
  return out


def classifier_trainer(config, seq, batch, output_dir, steps_per_call):
  from bert_tf import distribution, finetuning
  from bert_tf.configs import OptimizerConfig
  from bert_tf.data import classifier as data
  run = finetuning.FinetuneConfig(
      output_dir=output_dir, train_batch_size=batch, eval_batch_size=batch,
      predict_batch_size=batch, max_seq_length=seq, num_train_epochs=1000,
      iterations_per_loop=steps_per_call, save_checkpoints_steps=10 ** 9,
      stall_timeout_secs=0)
  return finetuning.ClassifierTrainer(config, run, OptimizerConfig(learning_rate=2e-5),
                                      distribution.make_runtime("one_device"),
                                      data.make_task("xnli"))


class OursFinetune:
  """``ClassifierTrainer``'s compiled train loop over its planned dataset (what ``train`` runs
  between two log lines)."""

  def __init__(self, config, seq, batch, steps, output_dir, n=256):
    import tensorflow as tf
    features = classifier_features(n, seq, FINETUNE["labels"])
    trainer = classifier_trainer(config, seq, batch, output_dir, steps)
    plan = trainer.plan(features)
    trainer.build_optimizer(dataclasses.replace(
        trainer.base_optimizer_config, num_train_steps=len(plan),
        num_warmup_steps=int(0.1 * len(plan))))
    trainer.task.num_train_steps = len(plan)
    trainer.restore(None)
    self.iterator = iter(trainer._distribute(features, plan, 1, 0, trainer.pad_to(True)))
    self.loop = trainer.compiled_train_loop()
    self.num_steps = tf.constant(steps)
    self.features = features

  def run(self) -> float:
    return float(self.loop(self.iterator, self.num_steps).numpy()[0])


def section_finetune(args) -> dict:
  import transformers
  torch = torch_setup()
  f = FINETUNE
  config = small_config(f["layers"], f["hidden"], f["heads"])
  steps, hf_steps, rounds = (2, 1, 2) if args.quick else (6, 3, 5)
  with tempfile.TemporaryDirectory() as tmp:
    ours = OursFinetune(config, f["seq"], f["batch"], steps, tmp)
    model = transformers.BertForSequenceClassification(hf_config(config, num_labels=f["labels"]))
    batches = hf_classifier_batches(ours.features, 256, f["seq"], f["batch"], True)
    hf = HFTrainer(model, batches, hf_steps, 2e-5)
    eps = interleave({"ours": (ours.run, steps * f["batch"]),
                      "HF": (hf.run, hf_steps * f["batch"])}, rounds, {"HF": 1}, "finetune")
  return {"section": "finetune", **f, "steps": steps, "hf_steps": hf_steps, "rounds": rounds,
          "result": summarise(eps, "ours"), "hf_attn": attn_impl(model),
          "torch_threads": torch.get_num_threads()}


def section_infer(args) -> dict:
  import numpy as np
  import tensorflow as tf
  import transformers
  from bert_tf.modeling import BertEncoder
  torch = torch_setup()
  seq, batch = INFER["seq"], INFER["batch"]
  if args.infer_model == "base":
    config, model_name = small_config(12, 768, 12, 0.0), "BERT-Base (12/768)"
  else:
    config, model_name = small_config(FINETUNE["layers"], FINETUNE["hidden"],
                                      FINETUNE["heads"], 0.0), "6/384"
  batches_per_call = 1 if args.quick else 2
  n = batch * batches_per_call
  rounds = 2 if args.quick else 5
  features = classifier_features(n, seq, FINETUNE["labels"])
  layer_indexes = [-1, -2, -3, -4]

  # extract_features.py: the encoder, one tf.function forward, chosen layers to NumPy.
  encoder = BertEncoder(config)
  ids = features.ids.reshape(n, seq)
  segments = np.zeros((n, seq), np.int32)
  segments[:, seq // 2:] = 1
  tf_batches = [{"input_ids": ids[s:s + batch], "input_mask": np.ones((batch, seq), np.int32),
                 "segment_ids": segments[s:s + batch]} for s in range(0, n, batch)]

  @tf.function
  def forward(inputs):
    outputs = encoder(inputs, training=False)["encoder_outputs"]
    return [outputs[i] for i in layer_indexes]

  def ours_extract():
    for b in tf_batches:
      [o.numpy() for o in forward({k: tf.constant(v) for k, v in b.items()})]

  hf_encoder = transformers.BertModel(hf_config(config), add_pooling_layer=False).eval()
  hf_in = hf_classifier_batches(features, n, seq, batch, False)

  def hf_extract():
    with torch.inference_mode():
      for b in hf_in:
        states = hf_encoder(**b, output_hidden_states=True).hidden_states
        [states[i].numpy() for i in layer_indexes]

  with tempfile.TemporaryDirectory() as tmp:
    trainer = classifier_trainer(config, seq, batch, tmp, 1)
    hf_classifier = transformers.BertForSequenceClassification(
        hf_config(config, num_labels=FINETUNE["labels"])).eval()

    def ours_predict():
      trainer.logits(features, batch)

    def hf_predict():
      with torch.inference_mode():
        for b in hf_in:
          hf_classifier(**b).logits.numpy()

    eps = interleave({"ours extract": (ours_extract, n), "HF extract": (hf_extract, n),
                      "ours predict": (ours_predict, n), "HF predict": (hf_predict, n)},
                     rounds, {"HF extract": 1, "HF predict": 1}, "infer")
  result = {
      "extract": summarise({"ours": eps["ours extract"], "HF": eps["HF extract"]}, "ours"),
      "predict": summarise({"ours": eps["ours predict"], "HF": eps["HF predict"]}, "ours")}
  return {"section": "infer", "model": model_name, "seq": seq, "batch": batch,
          "batches_per_call": batches_per_call, "rounds": rounds, "result": result,
          "hf_attn": attn_impl(hf_encoder), "torch_threads": torch.get_num_threads()}


def run_section(args) -> dict:
  import bert_tf  # noqa: F401  (Keras 2 and bert_tf's oneDNN default, before TensorFlow)
  from absl import logging
  from bert_tf.tools.machine import machine_line
  logging.set_verbosity(logging.WARNING)
  name = args.sections
  if name in ("mini", "base"):
    result = section_pretraining(name, args)
  elif name == "finetune":
    result = section_finetune(args)
  else:
    result = section_infer(args)
  import torch
  import transformers
  result["machine"] = machine_line()
  result["versions"] = f"torch {torch.__version__}, transformers {transformers.__version__}"
  return result


# --- tables ----------------------------------------------------------------------------------

def fmt(s, digits=2) -> str:
  med, lo, hi = s
  return f"{med:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def fmt_ratio(s) -> str:
  med, lo, hi = s
  return f"{med:.2f}× ({lo:.2f}–{hi:.2f})"


def print_tables(condition: str, results: list) -> None:
  print(f"\n### {condition}\n")
  machines = sorted({r["machine"] for r in results})
  for m in machines:
    print(f"machine: `{m}`")
  first = results[0]
  print(f"{first['versions']}, torch threads {first['torch_threads']}, HF attention "
        f"{first['hf_attn']}; median (min–max) over interleaved rounds; ratio = ours / other, "
        f"per round\n")
  pre = [r for r in results if r["section"] in ("mini", "base")]
  if pre:
    print("| pretraining | batch | ours ex/s | Model Garden ex/s | HF + PyTorch ex/s | "
          "ours / MG | ours / HF | matmul peak GFLOP/s | GFLOP/step | ours % peak |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in pre:
      res = r["result"]
      mg = res.get("MG")
      print(f"| BERT-{r['section'].capitalize()} seq 128 | {r['batch']} | "
            f"{fmt(res['ours']['eps'])} | {fmt(mg['eps']) if mg else '—'} | "
            f"{fmt(res['HF']['eps'])} | {fmt_ratio(mg['ratio']) if mg else '—'} | "
            f"{fmt_ratio(res['HF']['ratio'])} | {fmt(tuple(p / 1e9 for p in r['peak']), 0)} | "
            f"{r['gflop_step']:.1f} | {fmt(tuple(100 * u for u in r['util']['ours']), 0)}% |")
    print()
    for r in pre:
      a = r["accounting"]
      total = sum(a.values())
      print(f"FLOP accounting, BERT-{r['section'].capitalize()} batch {r['batch']} (GFLOP per "
            f"step, forward + backward): " + ", ".join(
                f"{k} {v / 1e9:.1f}" for k, v in a.items()) + f"; total {total / 1e9:.1f}. "
            f"Steps per call: ours {r['steps']}" +
            (f", MG {r['steps']}" if "MG" in r["result"] else "") + f", HF {r['hf_steps']}; "
            f"{r['rounds']} rounds.")
    print()
  for r in results:
    if r["section"] == "finetune":
      res = r["result"]
      print(f"| fine-tuning {r['layers']}/{r['hidden']}, seq {r['seq']}, batch {r['batch']} | "
            "ours ex/s | HF + PyTorch ex/s | ours / HF |")
      print("|---|---:|---:|---:|")
      print(f"| classifier train step | {fmt(res['ours']['eps'], 1)} | "
            f"{fmt(res['HF']['eps'], 1)} | {fmt_ratio(res['HF']['ratio'])} |\n")
    if r["section"] == "infer":
      print(f"| inference {r['model']}, seq {r['seq']}, batch {r['batch']} | ours ex/s | "
            "HF + PyTorch ex/s | ours / HF |")
      print("|---|---:|---:|---:|")
      for key, label in (("extract", "encoder forward, layers -1..-4 to NumPy "
                                     "(extract_features)"),
                         ("predict", "classifier prediction (logits)")):
        res = r["result"][key]
        print(f"| {label} | {fmt(res['ours']['eps'], 1)} | {fmt(res['HF']['eps'], 1)} | "
              f"{fmt_ratio(res['HF']['ratio'])} |")
      print()


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--sections", default=",".join(SECTIONS),
                      help=f"comma list of: {', '.join(SECTIONS)}")
  parser.add_argument("--conditions", default=",".join(CONDITIONS),
                      help="default (TF_ENABLE_ONEDNN_OPTS as you set it, else bert_tf's "
                      "default: on) and/or onednn_off (TF_ENABLE_ONEDNN_OPTS=0)")
  parser.add_argument("--quick", action="store_true", help="fewer steps and rounds")
  parser.add_argument("--base_mg", action="store_true",
                      help="also Model Garden in the BERT-Base section (a third Base model)")
  parser.add_argument("--infer_model", default="6x384", choices=("6x384", "base"))
  parser.add_argument("--json_out", default="", help=argparse.SUPPRESS)  # child: one section
  args = parser.parse_args(argv)
  gone = missing_deps()
  if gone:
    print(f"skipped: {gone} not installed (pip install -e .[bench]: torch==2.13.0 CPU, "
          f"transformers<5)")
    return
  if args.json_out:
    with open(args.json_out, "w") as f:
      json.dump(run_section(args), f)
    return
  base_argv = [a for a in (argv if argv is not None else sys.argv[1:])]
  all_results = {}
  for condition in args.conditions.split(","):
    env = dict(os.environ)
    if CONDITIONS[condition] is not None:
      env["TF_ENABLE_ONEDNN_OPTS"] = CONDITIONS[condition]
    results = []
    for section in args.sections.split(","):
      with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        print(f"[{condition}] {section}", flush=True)
        subprocess.run([sys.executable, os.path.abspath(__file__), *base_argv,
                        "--sections", section, "--json_out", out], check=True, env=env)
        with open(out) as f:
          results.append(json.load(f))
    all_results[condition] = results
    print_tables(condition, results)
  print("\n\n## all conditions")
  for condition, results in all_results.items():
    print_tables(condition, results)


if __name__ == "__main__":
  main()
