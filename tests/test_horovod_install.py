"""Horovod, built by scripts/install_horovod.sh, runs two gloo ranks on this TF."""
import json
import subprocess
import sys

import pytest

from bert_tf.testing import launch

pytestmark = pytest.mark.distributed


def test_two_horovod_ranks_allreduce_and_broadcast():
  pytest.importorskip("horovod.tensorflow", reason="Horovod is not installed "
                      "(scripts/bootstrap.sh --horovod installs it)")
  command = launch.horovodrun([sys.executable, "-m", "bert_tf.testing.horovod_allreduce"])
  result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=launch.ROOT)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  rows = []
  for line in result.stdout.splitlines():
    start = line.find("{")  # horovodrun prefixes each line with "[rank]<stdout>:"
    if start >= 0 and '"rank"' in line:
      rows.append(json.loads(line[start:]))
  assert sorted(r["rank"] for r in rows) == [0, 1], result.stdout
  for row in rows:
    assert row["size"] == 2
    assert row["w"] == [10.0] * 3  # broadcast from rank 0
    assert row["grad"] == [1.5] * 3  # mean of x over ranks (1 and 2)
    assert row["sum"] == 3.0
