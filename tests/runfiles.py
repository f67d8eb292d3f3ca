"""Write small synthetic run directories (run.json + requests.jsonl) for report/check tests."""
import json
from pathlib import Path

SPEC = {"model": "tiny", "task": "arith", "methods": "fixed,threshold", "limit": 8, "seed": 0, "batch_size": 4,
        "gen_length": None, "block_length": None, "early_stop": True, "max_steps": None, "device": "auto",
        "dtype": "auto", "warmup_batches": 1, "time_forwards": False, "baseline": None}


def write_run(path, methods: dict, spec=None, host="ci-a", gpu=None, run_id=None):
    """methods: {label: [(correct, nfe, gen_tokens), ...]} plus {label + '@s': batch seconds (one
    number for every batch, or a list with one per batch) and optionally {label + '@cpu': CPU
    seconds} (default: the wall seconds)}."""
    path = Path(path)
    path.mkdir(parents=True)
    spec = dict(SPEC, **(spec or {}))
    labels = [m for m in methods if "@" not in m]
    env = {"host": host, "git_commit": "0" * 40, "git_dirty": False}
    if gpu:
        env["gpu_name"] = gpu
    (path / "run.json").write_text(json.dumps({
        "run_id": run_id or path.name, "spec": spec, "baseline": labels[0],
        "methods": {m: {"name": m.split(":")[0], "settings": {}} for m in labels}, "env": env,
        "energy": {"available": False, "reason": "no GPU"},
        "machine": {"device_type": "cuda" if gpu else "cpu", "gpu_name": gpu}}))
    lines = []
    for m in labels:
        samples, secs, cpus = methods[m], methods[m + "@s"], methods.get(m + "@cpu", methods[m + "@s"])
        bs = spec["batch_size"]
        for b in range(0, len(samples), bs):
            sec = secs[b // bs] if isinstance(secs, list) else secs
            cpu = cpus[b // bs] if isinstance(cpus, list) else cpus
            for i, (correct, nfe, toks) in enumerate(samples[b:b + bs]):
                lines.append({"task": "arith", "doc_id": b + i, "model": "tiny", "method": m, "correct": correct,
                              "nfe": nfe, "gen_tokens": toks, "batch_id": f"{m}-{b}",
                              "batch_size": len(samples[b:b + bs]), "batch_latency_s": sec,
                              "batch_energy_j": None, "batch_wall_s": sec * 1.25, "batch_cpu_s": cpu, "fastdllm_tokens": toks})
    (path / "requests.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    return path


def samples(n, n_correct, nfe, toks=20):
    return [(i < n_correct, nfe, toks) for i in range(n)]
