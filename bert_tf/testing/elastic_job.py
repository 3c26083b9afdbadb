"""Horovod elastic jobs on localhost for tests: a discovery script the test controls, the
horovodrun command line, and the per-process traces of ``bert_tf.training.elastic``.

Horovod blacklists a host whose worker fails, and a job whose every host is blacklisted
stops. So the tests give this one machine two host names, ``localhost`` and ``127.0.0.1``
(both run locally), one slot each, and kill the rank on ``127.0.0.1``; the blacklist
cool-down (``--blacklist-cooldown-range``) lets discovery offer it again."""
import glob
import json
import os
import shutil
import stat
import sys

from bert_tf.training.elastic import PACE_ENV, TRACE_ENV  # noqa: F401

HOSTS_TWO = "localhost:1\n127.0.0.1:1\n"
HOSTS_ONE = "localhost:1\n"


def discovery_script(directory, hosts=HOSTS_TWO):
  """Writes ``directory/hosts`` and an executable ``directory/discover.sh`` that prints it.
  Returns (script path, hosts path); rewrite the hosts file to change the offer."""
  hosts_file = os.path.join(directory, "hosts")
  set_hosts(hosts_file, hosts)
  script = os.path.join(directory, "discover.sh")
  with open(script, "w") as f:
    f.write(f"#!/bin/sh\ncat {hosts_file}\n")
  os.chmod(script, os.stat(script).st_mode | stat.S_IXUSR)
  return script, hosts_file


def set_hosts(hosts_file, hosts):
  tmp = hosts_file + ".tmp"
  with open(tmp, "w") as f:
    f.write(hosts)
  os.replace(tmp, hosts_file)  # atomic: discovery never reads half a file


def horovodrun_elastic(command, script, min_np=1, max_np=2, num_ranks=2, cooldown=(1, 2)):
  run = shutil.which("horovodrun", path=os.path.dirname(sys.executable)) or "horovodrun"
  return [run, "-np", str(num_ranks), "--min-np", str(min_np), "--max-np", str(max_np),
          "--host-discovery-script", script, "--blacklist-cooldown-range",
          str(cooldown[0]), str(cooldown[1]), "--gloo", *command]


def read_traces(directory):
  """Every record of every process, with its file's pid, ordered by time."""
  records = []
  for path in glob.glob(os.path.join(directory, "trace-*.jsonl")):
    pid = int(os.path.basename(path)[6:-6])
    with open(path) as f:
      records += [dict(json.loads(line), pid=pid) for line in f if line.endswith("\n")]
  return sorted(records, key=lambda r: r["t"])


def final_steps(records):
  """step -> {rank: record} of the surviving execution of each step: rank 0's last one gives
  the world size, and each rank's last record of that step at that size (records are in time
  order, so a re-execution after a roll-back replaces the earlier one)."""
  last = {}
  for r in records:
    if r["event"] == "step":
      last[(r["step"], r["size"], r["rank"])] = r
  sizes = {step: size for (step, size, rank), r in sorted(last.items(), key=lambda i: i[1]["t"])
           if rank == 0}
  return {step: {rank: last[(step, size, rank)] for rank in range(size)
                 if (step, size, rank) in last} for step, size in sorted(sizes.items())}


def loss_log(output_dir):
  """The chief's step-by-step log: [(step, loss)] in the order written (a step rolled back and
  run again appears twice)."""
  with open(os.path.join(output_dir, "train_metrics.jsonl")) as f:
    return [(r["step"], r["loss"]) for r in map(json.loads, f)]
