"""Every method decodes the tokens, NFE and steps recorded in tests/data/golden_decode.json (built-in
model, tiny random LLaDA and Dream; cache none/prefix/dual where the method allows it; left-padded
batches, early stop, a step cap; some with their trace: its integers exactly, its probabilities within 1e-4), so a change of the loop changes no result."""
import json

import pytest

import golden_decode as golden


@pytest.fixture(scope="module")
def setup():
    return golden.models(), golden.gens(), json.loads(golden.FIXTURE.read_text())


def test_fixture_covers_every_case(setup):
    _, _, want = setup
    assert sorted(want) == sorted(k for k, *_ in golden.cases())


@pytest.mark.parametrize("model", ["tiny", "llada-tiny", "dream-tiny"])
def test_decodes_equal_the_golden_fixture(setup, model):
    from decoding.loop import decode
    ms, gs, want = setup
    m, ids = ms[model]
    for key, name, spec, gname in golden.cases():
        if name != model:
            continue
        got = golden.run_case(decode, m, ids, spec, gs[gname], trace=key in golden.TRACED)
        exp = dict(want[key])
        if "p1" in exp:   # a trace's probabilities: within a tolerance (golden_decode.P1_TOLERANCE)
            assert got.pop("p1") == pytest.approx(exp.pop("p1"), abs=golden.P1_TOLERANCE), key
        assert got == exp, key
