"""Offline sequence metrics: no folding model needed. None of these is pLDDT.

They catch collapse and drift, not foldability: a shuffled real protein scores like a
real one on every composition metric. Each function is named for exactly what it measures.

* ``composition_js``: Jensen–Shannon divergence (nats, 0…ln 2) between the pooled
  amino-acid (k=1) or dipeptide (k=2, overlapping pairs) frequencies of two sets.
* ``longest_homopolymer``: the longest run of one residue in a sequence.
* ``max_residue_fraction``: the largest single-residue share of a sequence (DPLM's 25 % rule).
* ``uniqueness``: distinct sequences / sequences.
* ``lcs_identity``: identical residues in the best gapped alignment (= longest common
  subsequence: match 1, mismatch 0, gaps 0) divided by the *longer* length (so a short
  peptide is not "identical" to every long protein that contains it); its mean over all
  pairs is the set's mean pairwise identity. Unrelated sequences already score well above
  0 (an LCS of random letters is long), so compare with the held-out reference row.
* ``wasserstein_1``: earth mover's distance between two length distributions (residues).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter


def kmer_counts(seqs: list[str], k: int) -> Counter:
    c: Counter = Counter()
    for s in seqs:
        c.update(s[i:i + k] for i in range(len(s) - k + 1))
    return c


def js_divergence(p: Counter, q: Counter) -> float:
    """JS divergence (nats) of two count tables, over the union of their keys."""
    tp, tq = sum(p.values()), sum(q.values())
    if tp == 0 or tq == 0:
        return float("nan")
    total = 0.0
    for key in set(p) | set(q):
        a, b = p.get(key, 0) / tp, q.get(key, 0) / tq
        m = 0.5 * (a + b)
        total += (0.5 * a * math.log(a / m) if a else 0.0) + (0.5 * b * math.log(b / m) if b else 0.0)
    return total


def composition_js(seqs: list[str], reference: list[str], k: int = 1) -> float:
    return js_divergence(kmer_counts(seqs, k), kmer_counts(reference, k))


def longest_homopolymer(seq: str) -> int:
    return max((len(list(g)) for _, g in itertools.groupby(seq)), default=0)


def max_residue_fraction(seq: str) -> float:
    return max(Counter(seq).values()) / len(seq) if seq else 0.0


def uniqueness(seqs: list[str]) -> float:
    return len(set(seqs)) / len(seqs) if seqs else float("nan")


def lcs_identity(a: str, b: str) -> float:
    if not a or not b:
        return 0.0
    from Bio.Align import PairwiseAligner

    aligner = PairwiseAligner(mode="global", match_score=1.0, mismatch_score=0.0, gap_score=0.0)
    return aligner.score(a, b) / max(len(a), len(b))


def mean_pairwise_identity(seqs: list[str], max_pairs: int = 5000) -> float:
    """Mean ``lcs_identity`` over all pairs (the first ``max_pairs`` pairs in order for large sets)."""
    pairs = list(itertools.islice(itertools.combinations(range(len(seqs)), 2), max_pairs))
    if not pairs:
        return float("nan")
    return sum(lcs_identity(seqs[i], seqs[j]) for i, j in pairs) / len(pairs)


def wasserstein_1(xs: list[float], ys: list[float]) -> float:
    """W1 between two empirical distributions: the area between their CDFs."""
    if not xs or not ys:
        return float("nan")
    xs, ys = sorted(xs), sorted(ys)
    points = sorted(set(xs) | set(ys))
    total, i, j = 0.0, 0, 0
    for lo, hi in itertools.pairwise(points):
        while i < len(xs) and xs[i] <= lo:
            i += 1
        while j < len(ys) and ys[j] <= lo:
            j += 1
        total += abs(i / len(xs) - j / len(ys)) * (hi - lo)
    return total
