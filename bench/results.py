"""Result files of one run: run.json (spec, protocol, environment), prompts.jsonl (the built
requests: stage 1), requests.jsonl (one line per sample, appended and flushed as decoded: stage 2;
the score stage fills in extracted/correct/scores), summary.json (one row per model/task/method)
and lm_eval/ (lm-eval's own results and samples files, for lm-eval tasks)."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path


class CorruptLine(ValueError):
    """A line of a result file that is not a JSON object: names the file and line."""


def parse_jsonl(text: str, path: Path, allow_cut_tail: bool = False) -> tuple[list[dict], str | None]:
    """The JSON objects of a .jsonl text, one a line (blank lines skipped). A line that does not
    parse stops with its file and line number: nothing is dropped silently. With allow_cut_tail,
    a last line without its newline that does not parse (a run still writing, or killed mid-line)
    is left out and named in the returned note instead."""
    lines = text.split("\n")
    cut = not text.endswith("\n") and lines[-1].strip() != ""
    out, note = [], None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            if cut and i == len(lines) and allow_cut_tail:
                note = f"{path} line {i}: the last line is cut off (a run still writing, or killed); not counted"
                continue
            what = "is cut off (a crash mid-write?)" if cut and i == len(lines) else f"is not valid JSON ({e.msg})"
            raise CorruptLine(f"{path} line {i} {what}; the file was left as it is: repair or remove that line")
        if not isinstance(obj, dict):
            raise CorruptLine(f"{path} line {i} is not a JSON object; the file was left as it is: "
                              f"repair or remove that line")
        out.append(obj)
    return out, note


def read_text(path: Path) -> str:
    """A result file's text; `.gz` files (committed runs) are decompressed."""
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as f:
            return f.read()
    return path.read_text()

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
    def requests_file(self) -> Path | None:
        """requests.jsonl, or requests.jsonl.gz (committed runs), or None."""
        for p in (self.requests_jsonl, self.path / "requests.jsonl.gz"):
            if p.exists():
                return p
        return None

    @property
    def prompts_jsonl(self) -> Path:
        return self.path / "prompts.jsonl"

    @property
    def summary_json(self) -> Path:
        return self.path / "summary.json"

    @property
    def warmup_jsonl(self) -> Path:
        return self.path / "warmup.jsonl"

    IDENTITY = ("spec", "protocol", "methods", "model", "machine")

    def check(self, identity: dict, resume: bool) -> None:
        """Refuse to write into a directory holding another run (different spec, protocol, method
        settings, model or kind of machine), or into any existing run without --resume."""
        if not self.run_json.exists():
            return
        old = json.loads(self.run_json.read_text())
        identity = json.loads(json.dumps(identity))   # tuples -> lists, as stored
        for part in self.IDENTITY:
            a, b = old.get(part) or {}, identity.get(part) or {}
            if a != b:
                keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                raise ValueError(f"{self.path} holds a run with a different {part} (differs in: {', '.join(keys)}); "
                                 f"choose another --run-id instead of mixing results")
        if not resume:
            raise ValueError(f"{self.path} already exists; pass --resume to continue it or choose another --run-id")

    def start(self, run_info: dict, resume: bool, session: dict | None = None) -> None:
        """Create the directory and run.json, or (resume) check it and record the new session."""
        self.check(run_info, resume)
        if self.run_json.exists():
            old = json.loads(self.run_json.read_text())
            old.setdefault("sessions", []).append(session or {})
            self.write_json(self.run_json, old)
            self.drop_incomplete()
            return
        self.path.mkdir(parents=True, exist_ok=True)
        self.write_json(self.run_json, {**run_info, "sessions": [session or {}]})

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

    def append_warmup(self, line: dict) -> None:
        with open(self.warmup_jsonl, "a") as f:
            f.write(json.dumps(line) + "\n")

    def drop_incomplete(self) -> None:
        """After a crash (kill -9 mid-write): keep only whole batches, so a resumed run redoes the
        batch in flight with its original inputs and seed. A cut last line is cut off; a batch
        with fewer lines than its batch_size is removed (the file is rewritten atomically)."""
        if not self.requests_jsonl.exists():
            return
        data = self.requests_jsonl.read_bytes()
        if data and not data.endswith(b"\n"):
            data = data[:data.rfind(b"\n") + 1]
        lines, _ = parse_jsonl(data.decode(), self.requests_jsonl)
        count: dict[str, int] = {}
        for r in lines:
            count[r.get("batch_id")] = count.get(r.get("batch_id"), 0) + 1
        keep = [r for r in lines if count[r.get("batch_id")] >= r.get("batch_size", 1)]
        if len(keep) != len(lines) or data != self.requests_jsonl.read_bytes():
            tmp = self.requests_jsonl.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in keep))
            os.replace(tmp, self.requests_jsonl)

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
        """Every line of requests.jsonl (or .gz). A line that does not parse raises CorruptLine
        naming the file and line: a stage that rewrites the file (score) must never drop it."""
        path = self.requests_file
        if path is None:
            return []
        return parse_jsonl(read_text(path), path)[0]
