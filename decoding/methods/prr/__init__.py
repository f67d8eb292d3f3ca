"""PRR: Progressive Refinement Regulation (arXiv 2603.04514), inference and training.

    controller.py  the token-wise MLP over [last hidden state, 11 features] and its checkpoint files
    features.py    the 11 per-position features (pure tensor math) and the per-row history they need
    shaping.py     temperature / weighted / gating shaping of the top-1 confidence by the controller
    method.py      the `prr` decoding method (quota UNION shaped score > tau) and its ablations
    trajectory.py  rollouts that log every step, and full-fidelity branch continuations
    labels.py      empirical convergence progress labels from a trajectory
    train.py       `python -m training.prr_train`: rollouts -> labels -> BCE -> progressive rounds
"""
