"""MAUVE (Pillutla et al. 2021, "MAUVE: Measuring the Gap Between Neural Text and Human Text")
of samples against the domain's held-out real text, on features from the Gen PPL judge.

Protocol, every setting recorded in the result's scorer info:

* Features: the judge's last hidden layer at the text's last token, from the same forward
  pass (and the same re-tokenisation and truncation) as Gen PPL. Last-token pooling, not
  the mean over tokens: it is what the MAUVE reference implementation feeds its clusters
  (``mauve/utils.py`` ``featurize_tokens_from_model``), so values are computed the way the
  literature's are, only under a different feature model; a causal LM's last state
  summarises the whole prefix, whereas a mean is dominated by the many generic positions.
* Clustering and the divergence frontier: the ``mauve-text`` package's quantisation
  (``cluster_feats``) and divergence curve, with ``compute_mauve``'s defaults: l2-normalised features, PCA to 90 % explained
  variance, k-means (faiss, 5 restarts, 500 iterations, seed 25), scaling factor c = 5,
  and ``num_buckets`` = max(2, round(min(#samples, #reference) / 10)) unless set. The area
  under the curve is taken in curve order (``frontier_area``: the package's sort breaks on
  ties, scoring a set against itself 0.75).
* Absolute values depend on the feature model, the sample counts and the clusters: compare
  MAUVE only between records whose recorded settings agree (the default judge is a 135 M
  model, not GPT-2 large as in the paper).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys

from didi_seq import DidiError, install_command

SCALING_FACTOR = 5  # c in the paper, mauve-text's default
KMEANS_SEED = 25  # mauve-text's default seed
EXPLAINED_VARIANCE = 0.9
KMEANS_REDO, KMEANS_ITERS = 5, 500
DIVERGENCE_CURVE_POINTS = 25
INSTALL = f"{install_command('mauve')} (mauve-text, faiss-cpu, scikit-learn)"


def missing() -> str | None:
    return None if importlib.util.find_spec("mauve") is not None else f"needs the mauve-text package: {INSTALL}"


# Below this many samples (and reference texts) a MAUVE value is flagged as unreliable. Why 1000: the MAUVE
# paper (arXiv 2102.01454) scores 5000 generations per model; this project's 258-sample cells moved by up to
# 0.15 between adjacent sampling temperatures (docs/results.md), and 16 samples of unreadable text scored 0.984
# with a CI of 0.68–1.00 (issue 25). Below 1000 a value is only comparable with runs of the same size, with
# its CI, never with a paper's.
SOUND_SAMPLES = 1000
FAISS_POINTS_PER_CLUSTER = 39  # faiss's k-means warns below this many training points per centroid


def caveat(n_samples: int, n_reference: int, clusters: int | None = None) -> str | None:
    """Why MAUVE on these counts is not to be trusted, or None.

    It also carries what faiss's C-level "please provide at least 39*K training points" warning said
    (``mauve_score`` silences it, as it fires at every size under the auto cluster count): how many
    points each k-means cluster had, so the value's small-sample estimate shows beside it."""
    n = min(n_samples, n_reference)
    if n >= SOUND_SAMPLES:
        return None
    k = clusters or auto_clusters(n_samples, n_reference)
    return (f"unreliable: {n_samples} samples and {n_reference} reference texts (sound from {SOUND_SAMPLES} of each; "
            f"the MAUVE paper uses 5000), {(n_samples + n_reference) / k:.1f} points per k-means cluster (faiss asks "
            f"for {FAISS_POINTS_PER_CLUSTER}): compare it only with runs of the same size, with its CI")


def auto_clusters(n_samples: int, n_reference: int) -> int:
    return max(2, round(min(n_samples, n_reference) / 10))


def settings(clusters: int | None) -> dict:
    return {"features": "judge last hidden layer, last-token pooling", "num_clusters": clusters or "auto: max(2, round(min(n)/10))",
            "scaling_factor": SCALING_FACTOR, "kmeans_seed": KMEANS_SEED, "pca_explained_variance": EXPLAINED_VARIANCE,
            "kmeans_restarts": KMEANS_REDO, "kmeans_max_iter": KMEANS_ITERS, "feature_norm": "l2",
            "divergence_curve_points": DIVERGENCE_CURVE_POINTS}


def mauve_score(features: list[list[float]], reference: list[list[float]], clusters: int | None = None) -> float:
    """MAUVE between two feature sets (lists of equal-width vectors); 1 means indistinguishable."""
    if importlib.util.find_spec("mauve") is None:
        raise DidiError(f"MAUVE {missing()}")
    k = clusters or auto_clusters(len(features), len(reference))
    if min(len(features), len(reference)) < k:
        raise DidiError(f"MAUVE with {k} clusters needs at least {k} samples and {k} reference texts, got "
                        f"{len(features)} and {len(reference)}; draw more samples or pass a smaller --mauve-clusters")
    import faiss
    import numpy as np
    from mauve.compute_mauve import cluster_feats, get_divergence_curve_for_multinomials
    from threadpoolctl import threadpool_limits  # comes with scikit-learn

    # one thread for faiss's k-means and the PCA's BLAS: at these sizes (hundreds of points) threads only
    # spin-wait, and on a busy machine that made one MAUVE 35× slower (2.7 s instead of 0.08 s)
    faiss.omp_set_num_threads(1)
    with threadpool_limits(1), _quiet_stderr():  # faiss prints a C-level warning below 39 points per cluster
        p_hist, q_hist, _, _ = cluster_feats(np.asarray(reference, dtype=np.float32), np.asarray(features, dtype=np.float32),
                                             num_clusters=k, norm="l2", whiten=False, explained_variance=EXPLAINED_VARIANCE,
                                             num_redo=KMEANS_REDO, max_iter=KMEANS_ITERS, seed=KMEANS_SEED)
    weights = np.linspace(1e-6, 1 - 1e-6, DIVERGENCE_CURVE_POINTS)
    curve = get_divergence_curve_for_multinomials(p_hist, q_hist, weights, SCALING_FACTOR)
    return frontier_area(curve[:, 0], curve[:, 1])


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (C code's stderr) for the duration; Python exceptions still propagate."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def frontier_area(x, y) -> float:
    """Area under the divergence frontier, integrated in the curve's own order.

    The points run from (1, 0) to (0, 1) as the mixture weight grows, with x falling and y
    rising. ``compute_mauve`` instead sorts by x, which leaves ties in arbitrary order: for
    identical histograms every inner point is (1, 1) and it returns 0.75 rather than 1. In
    the curve's order the trapezoid sum is that value without ties, and exact with them.
    """
    return float(sum((x[i] - x[i + 1]) * (y[i] + y[i + 1]) / 2 for i in range(len(x) - 1)))
