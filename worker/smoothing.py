"""Temporal smoothing of a track's expression probabilities with a sticky hidden Markov model.

The expression is a hidden state that persists: between two samples ``dt`` seconds apart it stays with probability
``exp(-dt / seconds)`` and is otherwise drawn afresh, uniformly over the classes (a continuous-time Markov chain whose
state changes at rate ``1 / seconds``; long gaps decay towards no memory). The network's per-sample probabilities
serve as emission likelihoods (its posteriors over a flat prior). The forward–backward algorithm (Rabiner, "A
tutorial on hidden Markov models", Proc. IEEE 1989) gives every sample's probabilities given the whole track; the
smoothed label is their argmax. Parameterised in seconds, the filter does not depend on the sample rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Floor of an emission likelihood, so that one confident sample cannot rule a class out for the whole track.
MIN_LIKELIHOOD = 1e-4


def smooth_probabilities(times: Sequence[float] | np.ndarray, probs: np.ndarray, seconds: float) -> np.ndarray:
    """Smoothed ``(n, K)`` probabilities of one track's samples at ``times`` (seconds, not decreasing).

    ``seconds`` is the expected time an expression lasts; ``0`` returns the probabilities unchanged (normalised).
    """
    probs = np.asarray(probs, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    if probs.ndim != 2 or len(times) != len(probs):
        raise ValueError(f"probs must be (n, K) with one time per row, got {probs.shape} and {len(times)} times")
    if seconds < 0:
        raise ValueError(f"seconds must be non-negative, got {seconds}")
    if len(probs) and np.any(np.diff(times) < 0):
        raise ValueError("times must not decrease")
    likelihood = np.clip(np.nan_to_num(probs, nan=0.0), MIN_LIKELIHOOD, None)
    if seconds == 0 or len(probs) < 2:
        return likelihood / likelihood.sum(axis=1, keepdims=True)
    n, classes = likelihood.shape
    stay = np.exp(-np.diff(times) / seconds)
    forward = np.empty_like(likelihood)
    state = likelihood[0] / likelihood[0].sum()
    forward[0] = state
    for i in range(1, n):  # predict with the transition, weigh by the sample, normalise
        state = (stay[i - 1] * state + (1 - stay[i - 1]) / classes) * likelihood[i]
        state /= state.sum()
        forward[i] = state
    backward = np.ones(classes)
    smoothed = np.empty_like(likelihood)
    smoothed[-1] = forward[-1]
    for i in range(n - 2, -1, -1):
        message = likelihood[i + 1] * backward
        backward = stay[i] * message + (1 - stay[i]) * message.sum() / classes
        backward /= backward.sum()
        posterior = forward[i] * backward
        smoothed[i] = posterior / posterior.sum()
    return smoothed


def label_changes(labels: Sequence[object]) -> int:
    """How often consecutive labels differ."""
    return sum(a != b for a, b in zip(labels, labels[1:]))
