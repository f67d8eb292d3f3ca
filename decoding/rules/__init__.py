"""Per-step math of the history-, revocation- and editing-based decoders, as pure tensor functions.

One module per method: `klass` (KL stability), `wino` (wide-in narrow-out revocation), `edit`
(LLaDA2.1 mask-to-token plus token-to-token editing), `dico` (divide and conquer), `slowfast_code`
(SlowFast as the authors' sampler computes it, for `slowfast:preset=code`). Shapes: B rows,
G generated positions; masks are bool [B, G]. Every function treats each row on its own (a row's
result never depends on other rows), draws no random numbers and never syncs with the host, so a
method's `decide` built from them can run inside a captured step. What each rule reads from the
authors' code, and where we had to choose, is in docs/methods-fidelity.md.
"""
