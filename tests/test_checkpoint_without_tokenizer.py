"""`--model llada --model-path DIR` on a directory without tokenizer files: loading and ids-only
decoding work (real or random weights); only text needs the files, and then the error names the
directory and the fix in one line."""
import pytest
import torch

import run_bench
from decoding.base import GenConfig
from decoding.loop import decode
from decoding.registry import build_method, parse_methods
from models import load_model
from models.checkpoint import save_checkpoint
from models.dream import CONFIGS as DREAM_CONFIGS, Dream
from models.llada import CONFIGS as LLADA_CONFIGS, LLaDA


@pytest.fixture(scope="module", params=["llada", "dream"])
def bare_dir(request, tmp_path_factory):
    family = request.param
    cfg = LLADA_CONFIGS["llada-tiny"] if family == "llada" else DREAM_CONFIGS["dream-tiny"]
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp(family)
    save_checkpoint((LLaDA if family == "llada" else Dream)(cfg), cfg.to_hf(), d)   # config + weights only
    assert not any(p.name.startswith(("tokenizer", "vocab")) for p in d.iterdir())
    return family, d


def test_ids_only_decode_needs_no_tokenizer_files(bare_dir):
    family, d = bare_dir
    gen = GenConfig(gen_length=8, block_length=8)
    for no_weights in (False, True):
        m = load_model(family, path=str(d), no_weights=no_weights)
        res = decode(m, build_method(parse_methods("threshold")[0], gen), [[11, 12, 13], [14, 15]], gen)
        assert res.tokens.shape == (2, 8) and (res.nfe > 0).all()
    assert load_model(family, path=str(d), no_weights=True).tokenizer.encode("ab") == [ord("a") + 16, ord("b") + 16]


def test_text_needs_the_tokenizer_and_says_so_in_one_line(bare_dir):
    family, d = bare_dir
    m = load_model(family, path=str(d))
    for call in (lambda: m.tokenizer.encode("Question: 1 + 1"), lambda: m.tokenizer.decode([1, 2])):
        with pytest.raises(ValueError, match="no tokenizer files") as e:
            call()
        assert str(d) in str(e.value) and "\n" not in str(e.value)


def test_cli_run_on_real_weights_without_tokenizer_names_the_problem(bare_dir, tmp_path, capsys):
    family, d = bare_dir
    rc = run_bench.main(["--model", family, "--model-path", str(d), "--limit", "2", "--methods", "fixed",
                         "--out-dir", str(tmp_path), "--no-progress", "--warmup-batches", "0"])
    err = capsys.readouterr().err
    assert rc != 0 and "no tokenizer files" in err and "Traceback" not in err
    # with --no-weights the same directory runs end to end (byte tokenizer, accuracy not applicable)
    assert run_bench.main(["--model", family, "--model-path", str(d), "--no-weights", "--limit", "2",
                           "--methods", "fixed", "--out-dir", str(tmp_path), "--run-id", "nw", "--no-progress",
                           "--warmup-batches", "0", "--gen-length", "16", "--block-length", "8"]) == 0
