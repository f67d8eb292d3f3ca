"""Our decoders as an lm-eval model: `dllm_bench`.

    python -m bench.lm_eval_model run --model dllm_bench \\
        --model_args model=tiny,method=threshold,tau=0.9 --tasks gsm8k        # lm-eval's own CLI
    python -m bench.lm_eval_model --data-dir ../shared/data run --model dllm_bench \\
        --model_args model=oracle --tasks mbpp --confirm_run_unsafe_code     # offline, local data

    import bench.lm_eval_model, lm_eval
    lm_eval.simple_evaluate(model="dllm_bench", model_args="model=oracle", tasks=[...])

(lm-eval's CLI finds models only in its own registry, which this module adds to on import;
`python -m bench.lm_eval_model` is lm-eval's CLI with `dllm_bench` registered, code execution
routed to our sandbox (allowed by lm-eval's own `--confirm_run_unsafe_code` or its alias
`--allow-code-exec`, run_bench.py's flag), and an optional `--data-dir` that points
gsm8k/gsm8k_cot/mbpp/humaneval at local data and sets the HF offline variables; without it, a
machine that cannot reach the hub gets a one-line error unless the data is cached.)

model_args: `model` (a bench model or `oracle`), `model_path` (llada/dream: a checkpoint directory
or hub id, as run_bench.py's --model-path), `no_weights`, `model_backend` (native / hf), `method`
(a registered method), its settings (`tau=0.9`, `steps=64`, ...), and the run options `gen_length`, `block_length` (default: each
task's protocol in tasks/lmeval_tasks.py), `early_stop`, `max_steps`, `device`, `dtype`, `seed`,
`batch_size`, `warmup_batches` (1: one untimed batch per task first, as run_bench.py does), and
`record=<path>`: a JSONL file that receives one line per request with NFE,
steps, gen_tokens, latency and energy, keyed by task and doc id (the same fields as a run's
requests.jsonl). `generate_until` runs the shared decode loop, cuts each output at the request's
stop strings, and keeps those lines in `self.records` as well.
"""
from __future__ import annotations

import json

import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from decoding.base import GenConfig
from acceleration import Decoder
from decoding.registry import MethodSpec, build_method
from tasks.lmeval_tasks import LMEVAL_TASKS
from .generate import cut_at_stops, render_prompt
from .measure import EnergyMeter, devices_in_use, timed
from .runner import warmup_gen


@register_model("dllm_bench")
class DllmBenchLM(LM):
    def __init__(self, model: str = "tiny", method: str = "fixed", device: str | None = "auto",
                 dtype: str = "auto", batch_size: int | str | None = 1, max_batch_size=None,
                 gen_length: int | None = None, block_length: int | None = None, early_stop: bool = True,
                 max_steps: int | None = None, seed: int = 0, record: str | None = None,
                 warmup_batches: int = 1, model_path: str | None = None, no_weights: bool = False,
                 model_backend: str = "native", **settings):
        super().__init__()
        from .runner import PSEUDO_MODELS, resolve_device, resolve_dtype
        self.model_name, self.oracle = model, model in PSEUDO_MODELS
        if device and device.startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"   # lm-eval's CLI passes cuda:0 unless told otherwise
        self.torch_device = resolve_device(device or "auto")
        self.method_spec = MethodSpec(method, tuple((k, str(v)) for k, v in settings.items()))
        self.label = self.method_spec.label
        self.gen_length, self.block_length = gen_length, block_length
        self.early_stop, self.max_steps, self.seed = early_stop, max_steps, seed
        self.batch_size = int(batch_size) if str(batch_size).isdigit() else 1
        self.record_path = record
        self.warmup_batches = int(warmup_batches)
        self.records: list[dict] = []
        self._gen(None)          # validate method and settings now, not after the prompts are built
        self.model = None
        if not self.oracle:
            from models import load_model
            self.model = load_model(model, device=str(self.torch_device), dtype=resolve_dtype(dtype, self.torch_device),
                                    path=model_path, no_weights=no_weights, backend=model_backend, seed=seed)
        self.devices = devices_in_use(self.model.module, self.torch_device) if self.model else [self.torch_device]
        self.meter = EnergyMeter.for_devices(self.devices)
        self.meter.measure_idle()
        self.generator = torch.Generator(device=self.torch_device)

    def _gen(self, task: str | None):
        p = LMEVAL_TASKS[task].protocol if task in LMEVAL_TASKS else None
        gen = GenConfig(gen_length=self.gen_length or (p.gen_length if p else 256),
                        block_length=self.block_length or (p.block_length if p else 32),
                        early_stop=self.early_stop, max_steps=self.max_steps)
        return gen, build_method(self.method_spec, gen)

    # -- lm-eval interface ---------------------------------------------------------------------
    def loglikelihood(self, requests):
        raise NotImplementedError("dllm_bench serves generate_until tasks (gsm8k, mbpp, humaneval, ...)")

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError("dllm_bench serves generate_until tasks (gsm8k, mbpp, humaneval, ...)")

    @property
    def tokenizer_name(self) -> str:
        return self.model_name

    def chat_template(self, chat_template=False):
        return getattr(self.model, "chat_template", None) or ""

    def apply_chat_template(self, chat_history, add_generation_prompt=True):
        if self.model is None:     # the oracle ignores prompts
            return json.dumps(chat_history)
        return render_prompt(self.model, "", chat_history)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out: list[str | None] = [None] * len(requests)
        by_task: dict[str, list[int]] = {}
        for i, inst in enumerate(requests):
            by_task.setdefault(inst.task_name, []).append(i)
        for task, idx in by_task.items():
            if self.oracle:
                for i in idx:
                    inst = requests[i]
                    out[i] = LMEVAL_TASKS[task].oracle(inst.doc)
                    self._record(task, inst.doc_id, out[i], None, None, 0.0, None, 1)
                continue
            gen, method = self._gen(task)
            encoded = {i: self.model.tokenizer.encode(requests[i].args[0]) for i in idx}
            for _ in range(self.warmup_batches):   # untimed, about the first block only, as in run_bench.py
                self.generator.manual_seed(self.seed)
                self._decode(method, [encoded[i] for i in idx[:self.batch_size]], warmup_gen(gen))
            self.generator.manual_seed(self.seed)
            for b in range(0, len(idx), self.batch_size):
                batch = idx[b:b + self.batch_size]
                ids = [encoded[i] for i in batch]
                with timed(self.devices, self.meter) as w:
                    res = self._decode(method, ids, gen)
                for j, i in enumerate(batch):
                    n = int(res.gen_tokens[j])
                    until = requests[i].args[1].get("until") or []
                    until = [until] if isinstance(until, str) else until
                    text, _ = cut_at_stops(self.model.tokenizer.decode(res.tokens[j, :n].tolist()), until)
                    out[i] = text
                    self._record(task, requests[i].doc_id, text, res, j, w.seconds, w.energy_j, len(batch))
        return out

    def _decode(self, method, ids, gen):
        """The fast decode (acceleration.Decoder, which keeps the model's graphs across batches)."""
        if getattr(self, "_decoder", None) is None:
            self._decoder = Decoder(self.model)
        return self._decoder(method, ids, gen, generator=self.generator)

    def _record(self, task, doc_id, text, res, j, seconds, energy, bsz) -> None:
        line = {"task": task, "doc_id": doc_id, "model": self.model_name, "method": self.label, "output": text,
                "nfe": int(res.nfe[j]) if res is not None else 0,
                "steps": int(res.steps[j]) if res is not None else 0,
                "gen_tokens": int(res.gen_tokens[j]) if res is not None else 0,
                "batch_size": bsz, "batch_latency_s": seconds, "batch_energy_j": energy,
                "energy_j": energy / bsz if energy is not None else None}
        self.records.append(line)
        if self.record_path:
            with open(self.record_path, "a") as f:
                f.write(json.dumps(line) + "\n")


HUB_PROBE_S = 3.0   # how long main() waits for the hub before treating the machine as offline


def hub_reachable(timeout: float = HUB_PROBE_S) -> bool:
    """Whether the Hugging Face hub answers a TCP connect (HF_ENDPOINT or huggingface.co)."""
    import os
    import socket
    from urllib.parse import urlparse
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """lm-eval's command line with `dllm_bench` registered (see the module doc). Besides lm-eval's
    options: `--data-dir DIR` (local data, offline) and `--allow-code-exec` (= lm-eval's
    `--confirm_run_unsafe_code`: MBPP/HumanEval run generated code in our sandbox). Without
    --data-dir on a machine that cannot reach the hub, the hub is switched off (cached data
    still loads) and missing data is a one-line error instead of a minute of retries."""
    import os
    import sys
    import tempfile
    import evaluate
    from lm_eval.__main__ import cli_evaluate
    from tasks import code_eval
    from tasks.lmeval_tasks import set_offline, write_local_task_dir
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = ["--confirm_run_unsafe_code" if a == "--allow-code-exec" else a for a in argv]
    data_dir = None
    if "--data-dir" in argv:
        i = argv.index("--data-dir")
        if i + 1 >= len(argv):
            print("error: --data-dir needs a directory (the ../shared/data layout)", file=sys.stderr)
            return 2
        data_dir = argv[i + 1]
        del argv[i:i + 2]
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
    if not data_dir and not offline and not hub_reachable():
        set_offline()
        offline = True
    code_eval.configure(allow="--confirm_run_unsafe_code" in argv)
    real = evaluate.load
    evaluate.load = lambda path, *a, **k: code_eval.CODE_EVAL if path == "code_eval" else real(path, *a, **k)
    with tempfile.TemporaryDirectory(prefix="dllm-lmeval-tasks-") as tmp:
        if data_dir:
            set_offline()
            write_local_task_dir(data_dir, tmp)
            argv += ["--include_path", tmp]
        sys.argv = [sys.argv[0], *argv]
        try:
            cli_evaluate()
        except ConnectionError as e:   # the hub unreachable, the data not cached
            where = "the hub is unreachable or offline" if offline else "the hub did not answer"
            print(f"error: {str(e).splitlines()[0]} ({where}, and the data is not cached); pass --data-dir DIR "
                  f"with local data (the ../shared/data layout) to run offline", file=sys.stderr)
            return 2
        except ValueError as e:       # ours (e.g. code execution not allowed) and lm-eval's bad input
            text = (str(e).splitlines() or [repr(e)])[0].strip("'\"")
            print(f"error: {text}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())
