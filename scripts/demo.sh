#!/usr/bin/env bash
# The demo on the embedded default: creates/reuses .venv, then
#   1. makes a real English corpus offline (CPython's bundled docs), learns a WordPiece vocab
#      and writes pretraining TFRecords;
#   2. pretrains BERT-Tiny on it for a few minutes on CPU (LAMB), evaluating every 200 steps:
#      masked-LM accuracy rises;
#   3. fine-tunes that encoder on a small XNLI-format sample and prints eval accuracy;
#   4. checks numerics: google checkpoint round trip, Model Garden parity, recompute, fp16.
# Outputs go to ./demo_output (override with DEMO_DIR=...). Re-running reuses finished stages.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
DEMO_DIR="${DEMO_DIR:-$ROOT/demo_output}"
PY="$ROOT/.venv/bin/python"
mkdir -p "$DEMO_DIR"
quiet() { grep -v -E "cuda|oneDNN|rebuild TensorFlow|cpu_feature_guard|Sharding callback|GeneratorDatasetOp|TF-TRT" || true; }

echo "== 1/4 demo data: corpus, vocab, pretraining TFRecords -> $DEMO_DIR/data"
"$PY" prepare_demo_data.py --output_dir="$DEMO_DIR/data" 2>&1 | quiet
VOCAB_SIZE="$(wc -l < "$DEMO_DIR/data/vocab.txt")"

echo "== 2/4 pretraining BERT-Tiny (2 layers, 128 hidden) for 1000 steps -> $DEMO_DIR/pretrain"
"$PY" run_pretraining.py --bert_preset=tiny --vocab_size="$VOCAB_SIZE" \
  --input_file="$DEMO_DIR/data/train-*.tfrecord" \
  --eval_input_file="$DEMO_DIR/data/eval-00000-of-00001.tfrecord" \
  --output_dir="$DEMO_DIR/pretrain" --do_train --do_eval \
  --train_batch_size=32 --max_seq_length=128 --max_predictions_per_seq=20 \
  --optimizer=lamb --learning_rate=5e-3 --num_train_steps=1000 --num_warmup_steps=100 \
  --save_checkpoints_steps=200 --eval_every_steps=200 --iterations_per_loop=50 \
  --eval_batch_size=8 --max_eval_steps=25 2>&1 | quiet
"$PY" - "$DEMO_DIR/pretrain/eval_metrics.jsonl" <<'PYEOF'
import json, sys
rows = {}
for line in open(sys.argv[1]):
  r = json.loads(line)
  rows[r["step"]] = r
print("\nmasked-LM accuracy on held-out records while pretraining:\n")
print("| step | masked_lm_accuracy | masked_lm_loss |\n|---|---|---|")
for step in sorted(rows):
  print(f"| {step} | {rows[step]['masked_lm_accuracy']:.4f} | {rows[step]['masked_lm_loss']:.3f} |")
print()
PYEOF

echo "== 3/4 fine-tuning on an XNLI-format sample (train en, evaluate en/de/es/fr) -> $DEMO_DIR/xnli"
"$PY" -c "import bert_tf; from bert_tf.data.demo import xnli_sample; xnli_sample.write_sample('$DEMO_DIR/xnli_sample')" 2>&1 | quiet
"$PY" run_classifier.py --task=xnli --data_dir="$DEMO_DIR/xnli_sample" \
  --vocab_file="$DEMO_DIR/data/vocab.txt" \
  --bert_config_file="$DEMO_DIR/pretrain/encoder/bert_config.json" \
  --init_checkpoint="$DEMO_DIR/pretrain/encoder" --output_dir="$DEMO_DIR/xnli" \
  --do_train --do_eval --xnli_language=en --max_seq_length=64 \
  --batch_size_in_tokens --train_batch_size=512 --eval_batch_size=4096 \
  --predict_batch_size=4096 --learning_rate=5e-4 --num_train_epochs=8 \
  --iterations_per_loop=50 2>&1 | quiet
echo
echo "XNLI-format sample, dev accuracy (trained on English only; the other languages are"
echo "zero-shot from an English-only pretrained model, so near chance is expected):"
grep -E "^eval_accuracy" "$DEMO_DIR/xnli/eval_results.txt"

echo
echo "== 4/4 numerics: google checkpoint round trip, Model Garden parity, recompute, fp16/bf16"
"$PY" "$ROOT/scripts/model_check.py" --output_dir="$DEMO_DIR/model_check" 2>&1 | quiet
