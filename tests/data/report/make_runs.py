"""Regenerate the two saved runs of tests/test_report.py (run from the repo root):
    python tests/data/report/make_runs.py && python run_bench.py report tests/data/report/cpu-a \
        tests/data/report/h100-b --baseline fixed --out tests/data/report/expected
Review the expected tables by hand before committing them."""
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from runfiles import samples, write_run  # noqa: E402

here = Path(__file__).parent
for d in ("cpu-a", "h100-b"):
    shutil.rmtree(here / d, ignore_errors=True)
write_run(here / "cpu-a", {"fixed": samples(8, 7, 48, 30), "fixed@s": 4.0,
                           "threshold": samples(8, 6, 10, 30), "threshold@s": 1.0,
                           "threshold:tau=0.7": samples(8, 5, 8, 28), "threshold:tau=0.7@s": 0.8},
          spec={"methods": "fixed,threshold,threshold:tau=0.7"}, host="ci-a")
b = write_run(here / "h100-b", {"fixed": samples(8, 8, 48, 30), "fixed@s": 0.4,
                                "threshold": samples(8, 6, 12, 30), "threshold@s": 0.125},
              spec={"methods": "fixed,threshold"}, host="gpu-node", gpu="NVIDIA H100 80GB HBM3")
# energy on the GPU run: 300 W during each decode window, 60 W idle, long windows
lines = [json.loads(l) for l in (b / "requests.jsonl").read_text().splitlines()]
for l in lines:
    l.update(batch_energy_j=300.0 * l["batch_latency_s"], batch_energy_short=False, idle_w=60.0)
(b / "requests.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
