"""Result files of one run: run.json (spec, protocol, environment), prompts.jsonl (the built
requests: stage 1), requests.jsonl (one line per sample, appended and flushed as decoded: stage 2;
the score stage fills in extracted/correct/scores), summary.json (one row per model/task/method)
and lm_eval/ (lm-eval's own results and samples files, for lm-eval tasks)."""
from __future__ import annotations

import json
import os
from pathlib import Path

SUMMARY_FIELDS = ("model", "task", "method", "n", "accuracy", "nfe_mean", "tpf", "latency_s_mean",
                  "latency_s_p50", "tokens_per_s", "energy_j_per_sample", "energy_j_per_token", "speedup")


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def requests_jsonl(self) -> Path:
        return self.path / "requests.jsonl"

    @property
    def prompts_jsonl(self) -> Path:
        return self.path / "prompts.jsonl"

    @property
    def summary_json(self) -> Path:
        return self.path / "summary.json"

    def start(self, run_info: dict, resume: bool) -> None:
        """Create the directory, or check that an existing one holds the same spec."""
        if self.run_json.exists():
            old = json.loads(self.run_json.read_text())
            if old.get("spec") != run_info["spec"]:
                diff = sorted(k for k in set(old.get("spec", {})) | set(run_info["spec"])
                              if old.get("spec", {}).get(k) != run_info["spec"].get(k))
                raise ValueError(f"{self.path} holds a run with a different spec (differs in: {', '.join(diff)}); "
                                 f"choose another --run-id instead of mixing results")
            if not resume:
                raise ValueError(f"{self.path} already exists; pass --resume to continue it or choose another --run-id")
            self._drop_partial_line()
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_json(self.run_json, run_info)

    def write_json(self, path: Path, obj) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj, indent=1) + "\n")
        os.replace(tmp, path)  # atomic: a crash never leaves half a file

    def append_requests(self, lines: list[dict]) -> None:
        with open(self.requests_jsonl, "a") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def _drop_partial_line(self) -> None:
        """A crash mid-write can leave a last line without its newline: cut it off."""
        if not self.requests_jsonl.exists():
            return
        data = self.requests_jsonl.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.requests_jsonl, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def write_prompts(self, lines: list[dict]) -> None:
        tmp = self.prompts_jsonl.with_suffix(".tmp")
        with open(tmp, "w") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
        os.replace(tmp, self.prompts_jsonl)

    def load_prompts(self) -> list[dict]:
        if not self.prompts_jsonl.exists():
            raise FileNotFoundError(f"{self.prompts_jsonl} is missing; build the requests first "
                                    f"(run_bench.py run ... --stop-after build)")
        return [json.loads(l) for l in self.prompts_jsonl.read_text().splitlines() if l.strip()]

    def rewrite_requests(self, lines: list[dict]) -> None:
        """Replace requests.jsonl atomically (the score stage adds its fields to every line)."""
        tmp = self.requests_jsonl.with_suffix(".tmp")
        with open(tmp, "w") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.requests_jsonl)

    def load_requests(self) -> list[dict]:
        if not self.requests_jsonl.exists():
            return []
        out = []
        for line in self.requests_jsonl.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash: that sample is redone
                continue
        return out
