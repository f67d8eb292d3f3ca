"""A real checkpoint directory end to end, offline: config.json + safetensors written by our
save_checkpoint, and a word-level tokenizer with a chat template saved by transformers, as the
published LLaDA / Dream directories hold them. `--model llada --model-path DIR` must tokenize with
that tokenizer, decode, score and record the directory; `--chat` must go through its template."""
import json
import re

import pytest
import torch

pytest.importorskip("transformers")

import run_bench  # noqa: E402
from models import load_model  # noqa: E402
from models.checkpoint import save_checkpoint  # noqa: E402
from models.dream import CONFIGS as DREAM_CONFIGS, Dream  # noqa: E402
from models.llada import CONFIGS as LLADA_CONFIGS, LLaDA  # noqa: E402
from decoding.base import GenConfig  # noqa: E402
from decoding.loop import decode  # noqa: E402
from decoding.registry import build_method, parse_methods  # noqa: E402
from tasks.arith import test_problems as arith_problems  # noqa: E402

CHAT = ("{% for m in messages %}<|user|> {{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}")
SPECIAL = {"<|mask|>": 500, "<|eos|>": 501, "<|user|>": 502, "<|assistant|>": 503}


def _words(texts) -> list[str]:
    return sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]+", t)})


def write_tokenizer(d, texts) -> None:
    """A word-level tokenizer over the words of `texts` (ids 1..), [UNK] 0, and the tiny configs'
    special ids (mask 500, EOS 501), saved as tokenizer.json + tokenizer_config.json."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    words = [w for w in _words(texts) if w not in SPECIAL][:490]
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}, **SPECIAL}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", eos_token="<|eos|>",
                                  mask_token="<|mask|>", additional_special_tokens=["<|user|>", "<|assistant|>"])
    tok.chat_template = CHAT
    tok.save_pretrained(str(d))


def arith_texts(n=64) -> list[str]:
    probs = arith_problems(n)
    return [p.prompt for p in probs] + [s for p in probs for s in p.solutions] + [str(i) for i in range(400)]


@pytest.fixture(scope="module", params=["llada", "dream"])
def checkpoint(request, tmp_path_factory):
    family = request.param
    return family, write_checkpoint(family, tmp_path_factory.mktemp(family))


def write_checkpoint(family, d):
    """A tiny random checkpoint directory as published ones are laid out (no remote code)."""
    cfg = (LLADA_CONFIGS["llada-tiny"] if family == "llada" else DREAM_CONFIGS["dream-tiny"])
    torch.manual_seed(3)
    net = (LLaDA if family == "llada" else Dream)(cfg)
    with torch.no_grad():   # peaked logits: distinct argmaxes, so the decode is a real check
        for p in net.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.5)
    save_checkpoint(net, cfg.to_hf(), d)
    write_tokenizer(d, arith_texts())
    return d


def test_checkpoint_tokenizer_is_the_directory_s(checkpoint):
    family, d = checkpoint
    m = load_model(family, path=str(d))
    tok = m.tokenizer
    ids = tok.encode("Question: Tom has 12 apples.")
    assert 0 not in ids and all(0 < i < 500 for i in ids)          # every word is in the vocabulary
    assert tok.decode(ids) == "Question : Tom has 12 apples ."       # word-level: tokens joined by spaces
    assert tok.decode(ids + [SPECIAL["<|eos|>"]]) == tok.decode(ids)  # special tokens skipped
    text = tok.apply_chat_template([{"role": "user", "content": "Tom has 12 apples."}])
    assert text == "<|user|> Tom has 12 apples. <|assistant|>"
    assert tok.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False,
                                   add_generation_prompt=False) == "<|user|> x "
    assert m.chat_template == CHAT and m.mask_id == 500 and SPECIAL["<|eos|>"] in m.eos_ids
    assert m.info["weights"] == str(d) and m.info["backend"] == "native" and not m.info["random_weights"]


def test_cli_run_on_a_checkpoint_directory_equals_the_library_decode(checkpoint, tmp_path):
    family, d = checkpoint
    rc = run_bench.main(["--model", family, "--model-path", str(d), "--limit", "3", "--batch-size", "3",
                         "--methods", "threshold:tau=0.5,cache=dual", "--gen-length", "16", "--block-length", "8",
                         "--out-dir", str(tmp_path), "--run-id", "r", "--no-progress", "--warmup-batches", "0"])
    assert rc == 0
    run = tmp_path / "r"
    info = json.loads((run / "run.json").read_text())
    assert info["model_info"]["weights"] == str(d) and info["model_info"]["backend"] == "native"
    assert info["spec"]["model_path"] == str(d)
    row = json.loads((run / "summary.json").read_text())["rows"][0]
    assert isinstance(row["accuracy"], float) and 0.0 <= row["accuracy"] <= 1.0   # scored: real weights
    reqs = [json.loads(l) for l in (run / "requests.jsonl").read_text().splitlines()]
    prompts = {p["doc_id"]: p["prompt"] for p in map(json.loads, (run / "prompts.jsonl").read_text().splitlines())}
    reqs.sort(key=lambda r: r["doc_id"])

    m = load_model(family, path=str(d))
    gen = GenConfig(gen_length=16, block_length=8)
    method = build_method(parse_methods("threshold:tau=0.5,cache=dual")[0], gen)
    res = decode(m, method, [m.tokenizer.encode(prompts[r["doc_id"]]) for r in reqs], gen)
    for i, r in enumerate(reqs):
        n = int(res.gen_tokens[i])
        assert (r["nfe"], r["gen_tokens"]) == (int(res.nfe[i]), n)
        assert r["output"] == m.tokenizer.decode(res.tokens[i, :n].tolist())
    assert any(r["output"] for r in reqs)


def test_chat_run_goes_through_the_checkpoint_template(checkpoint, tmp_path):
    from lmeval_helpers import data_dir
    family, d = checkpoint
    rc = run_bench.main(["--model", family, "--model-path", str(d), "--tasks", "gsm8k", "--limit", "2",
                         "--chat", "single-turn", "--methods", "fixed:steps=8", "--gen-length", "8",
                         "--block-length", "8", "--data-dir", str(data_dir()), "--out-dir", str(tmp_path),
                         "--run-id", "c", "--no-progress", "--warmup-batches", "0"])
    assert rc == 0
    reqs = [json.loads(l) for l in (tmp_path / "c" / "requests.jsonl").read_text().splitlines()]
    assert len(reqs) == 2 and all(r["nfe"] == 8 for r in reqs)
    m = load_model(family, path=str(d))
    p = json.loads((tmp_path / "c" / "prompts.jsonl").read_text().splitlines()[0])
    from bench.generate import render_prompt
    text = render_prompt(m, p["prompt"], p["messages"])
    assert text.startswith("<|user|> ") and text.endswith("<|assistant|>")


def test_hf_backend_without_the_authors_code_names_the_problem(checkpoint, tmp_path, capsys):
    family, d = checkpoint
    assert run_bench.main(["verify-model", str(d)]) == 2
    err = capsys.readouterr().err
    assert "no auto_map entry for AutoModel" in err and "modeling_" in err
    assert run_bench.main(["--model", family, "--model-path", str(d), "--model-backend", "hf",
                           "--out-dir", str(tmp_path), "--limit", "1"]) == 2
    assert "no auto_map entry for AutoModel" in capsys.readouterr().err


def test_lm_eval_model_loads_the_checkpoint_directory(checkpoint):
    """`dllm_bench` with model_path (lm-eval's own CLI: --model_args model=llada,model_path=DIR,...)."""
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.api.model import LM
    import bench.lm_eval_model
    family, d = checkpoint
    lm = bench.lm_eval_model.DllmBenchLM.create_from_arg_string(
        f"model={family},model_path={d},method=fixed,steps=8,gen_length=8,block_length=8,warmup_batches=0")
    assert isinstance(lm, LM) and lm.model.info["weights"] == str(d)
    chat = lm.apply_chat_template([{"role": "user", "content": "Tom has 12 apples."}])
    assert chat == "<|user|> Tom has 12 apples. <|assistant|>"
    prompt = "Question: Tom has 12 apples. How many apples does Tom have now?\nAnswer:"
    inst = Instance("generate_until", doc={}, arguments=(prompt, {"until": []}), idx=0, metadata=("gsm8k", 0, 1))
    (out,) = lm.generate_until([inst])
    m = load_model(family, path=str(d))
    gen = GenConfig(gen_length=8, block_length=8)
    res = decode(m, build_method(parse_methods("fixed:steps=8")[0], gen), [m.tokenizer.encode(prompt)], gen)
    assert out == m.tokenizer.decode(res.tokens[0, :int(res.gen_tokens[0])].tolist())
    assert lm.records[0]["nfe"] == int(res.nfe[0])


# Remote code written by the test (the authors' files are never committed): our own LLaDA behind
# transformers' PreTrainedModel, with the checkpoint's parameter names, plus an optional logit
# offset, so the hf backend's plumbing (auto_map, AutoModel with trust_remote_code, the forward
# signature, verify's verdict and exit code) is exercised end to end.
STAND_IN = '''
import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

OFFSET = {offset}


class StandInConfig(PretrainedConfig):
    model_type = "llada"


class StandInModel(PreTrainedModel):
    config_class = StandInConfig

    def __init__(self, config):
        super().__init__(config)
        from models.llada import LLaDA, LLaDAConfig
        net = LLaDA(LLaDAConfig.from_hf(config.to_dict()))
        self.model = net.model                      # parameter names: model.transformer.*
        object.__setattr__(self, "net", net)        # not a second registration of the same weights
        self.post_init()

    def _init_weights(self, module):
        pass

    def forward(self, input_ids, output_hidden_states=False, **kw):
        logits, h = self.net(input_ids)
        return MaskedLMOutput(logits=logits + OFFSET, hidden_states=(h,))
'''


def _with_stand_in(src, dst, offset):
    import shutil
    shutil.copytree(src, dst)
    (dst / "modeling_stand_in.py").write_text(STAND_IN.format(offset=offset))
    cfg = json.loads((dst / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "modeling_stand_in.StandInConfig", "AutoModel": "modeling_stand_in.StandInModel"}
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_verify_model_through_transformers_remote_code(tmp_path, capsys, monkeypatch):
    family, d = "llada", write_checkpoint("llada", tmp_path / "plain")
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    same = _with_stand_in(d, tmp_path / "same", 0.0)
    assert run_bench.main(["verify-model", str(same), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "MATCH: worst relative error 0.00e+00" in out and out.count("| 1.0000 |") == 4   # 3 prompts + chat
    off = _with_stand_in(d, tmp_path / "off", 0.5)
    assert run_bench.main(["verify-model", str(off), "--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "5.000e-01" in out

    # the same checkpoint decoded through the hf backend gives the native run's tokens
    runs = {}
    for backend in ("native", "hf"):
        assert run_bench.main(["--model", family, "--model-path", str(same), "--model-backend", backend,
                               "--limit", "2", "--batch-size", "1", "--methods", "fixed:steps=8",
                               "--gen-length", "16", "--block-length", "8", "--out-dir", str(tmp_path / "runs"),
                               "--run-id", backend, "--no-progress", "--warmup-batches", "0"]) == 0
        runs[backend] = sorted((q["doc_id"], q["output"], q["nfe"]) for q in map(
            json.loads, (tmp_path / "runs" / backend / "requests.jsonl").read_text().splitlines()))
    assert runs["hf"] == runs["native"]
    info = json.loads((tmp_path / "runs" / "hf" / "run.json").read_text())
    assert info["model_info"]["backend"] == "hf"
