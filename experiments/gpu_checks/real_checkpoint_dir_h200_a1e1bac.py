"""GPU: a real-format checkpoint directory (llada-small / dream-small random N(0, 0.05) weights, a
word-level tokenizer) through run_bench.py on CUDA, bf16, graphs on vs off: outputs and NFE equal?"""
import json, os, subprocess, sys, torch, transformers
sys.path.insert(0, "tests")   # run from the repository root: PYTHONPATH=. python experiments/gpu_checks/real_checkpoint_dir_h200_a1e1bac.py
import types
try:
    import pytest  # noqa: F401
except ImportError:   # the device has no pytest; the test module needs only these two names
    sys.modules["pytest"] = types.SimpleNamespace(importorskip=__import__, fixture=lambda *a, **k: (lambda f: f))
from pathlib import Path
from models.checkpoint import save_checkpoint
from models.llada import CONFIGS as LC, LLaDA
from models.dream import CONFIGS as DC, Dream
from test_real_checkpoint import write_tokenizer, arith_texts
print("transformers", transformers.__version__, torch.cuda.get_device_name())
root = Path("/tmp/ck")
for fam, cfg, net in [("llada", LC["llada-small"], LLaDA), ("dream", DC["dream-small"], Dream)]:
    d = root / fam
    d.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    m = net(cfg)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.05)
    save_checkpoint(m, cfg.to_hf(), d)
    write_tokenizer(d, arith_texts())
    outs = {}
    for graphs in ("1", "0"):
        env = dict(os.environ, DLLM_CUDA_GRAPHS=graphs, DLLM_COMPILE="0")
        rid = f"{fam}-g{graphs}"
        r = subprocess.run([sys.executable, "run_bench.py", "--model", fam, "--model-path", str(d), "--device", "cuda",
                            "--methods", "fixed,threshold:tau=0.5,cache=dual", "--limit", "16", "--batch-size", "8",
                            "--gen-length", "32", "--block-length", "16", "--out-dir", str(root / "runs"), "--run-id", rid,
                            "--no-progress"], env=env, capture_output=True, text=True)
        print(rid, "rc", r.returncode, r.stdout[-900:], r.stderr[-600:] if r.returncode else "")
        outs[graphs] = sorted((q["method"], q["doc_id"], q["output"], q["nfe"]) for q in map(json.loads, open(root / "runs" / rid / "requests.jsonl")))
        info = json.load(open(root / "runs" / rid / "run.json"))
        print("  model_info", {k: info["model_info"][k] for k in ("backend", "weights", "random_weights")}, "dtype", info["spec"]["dtype"])
    same = sum(a == b for a, b in zip(outs["1"], outs["0"]))
    print(f"{fam}: graphs on vs off, equal (method, doc, output, nfe) in {same} of {len(outs['1'])}; non-empty outputs {sum(bool(o[2]) for o in outs['1'])}")
