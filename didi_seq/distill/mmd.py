"""Representation-space MMD distillation (arXiv 2610.06648; yandex-research/dlm-mmd, branch
mdlm-mmd, ``algo.py`` and ``mmd/objective.py``) as small functions.

No auxiliary network and no rollout. One student forward on a noised *real* x0 gives x0
probabilities P at the masked set S; with no gradient, G groups of B fills of S are drawn
from P; a frozen copy of the initial model's trunk, cut after block k and run on clean input
(σ = 0), gives token features of x0 and of every fill. Each group's reward is an unbiased
estimate of −MMD² (RBF kernel, the real–real constant left out) between x0's features at S
and the group's fill features at S:

    r_g = 2·attraction − repulsion
    attraction = mean over b, i ∈ S, j ∈ S of k(φ_j(x0), φ_i(X_{g,b}))
    repulsion  = mean over b ≠ b′, i ≠ j ∈ S of k(φ_i(X_{g,b}), φ_j(X_{g,b′}))

(fills of one group are independent draws, so pairs across fills give unbiased cross terms;
same-position pairs are left out, as the reference does). The policy gradient uses a
leave-one-out baseline over groups: A_g = r_g − mean of the other groups' r, and the loss is
−Σ_g A_g Σ_b Σ_{i∈S} log P[X_{g,b,i}], averaged over the G·B·|S| sampled tokens.

Token credit (``--mmd-credit token``; ours, not the paper's): r_g is a sum of kernel terms, and
the terms that hold token X_{g,b,i} are (2 / (B·|S|))·(att_{b,i} − rep_{b,i}) with
att_{b,i} = mean_{j∈S} k(φ_j(x0), φ_i(X_b)) and rep_{b,i} = mean_{b′≠b, j≠i} k(φ_i(X_b), φ_j(X_b′))
(each repulsion pair holds two tokens). With a factorised policy the other terms score zero
against ∇log P[X_{g,b,i}] in expectation, so crediting each token with only its own terms keeps
the gradient of E[r] exactly when features are context-free, and drops the ~|S|·B − 1 other
tokens' noise from every token's credit. The trunk's features are contextual, so there it is a
low-variance approximation (a token's effect on its neighbours' features is not credited). The
baseline is per position: the other groups' mean credit at i (independent of group g's draws).

Every function takes plain tensors and callables so the exactness tests can drive them with
the enumerable toy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..errors import DidiError
from ..sampling.ancestral import categorical_from_uniform
from ..training.distributed import RowNoise, local_mean
from .noised_data import noised_rows
from .objective import Mean, entropy, kl_regulariser
from .real_data_config import MMDConfig

# ids [N, L] → token features [N, L, H] (fp32) of a frozen trunk cut after one block
Features = Callable[[torch.Tensor], torch.Tensor]


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """‖a_i − b_j‖² for [..., n, H] × [..., m, H] → [..., n, m] (fp32, clamped at 0)."""
    a, b = a.float(), b.float()
    d = a.square().sum(-1)[..., :, None] + b.square().sum(-1)[..., None, :] - 2 * a @ b.transpose(-1, -2)
    return d.clamp_min(0)


def rbf_kernel(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """k(a, b) = exp(−α‖a − b‖²) for every pair: [..., n, H] × [..., m, H] → [..., n, m]."""
    return torch.exp(-alpha * squared_distances(a, b))


def median_alpha(features: torch.Tensor, positions: torch.Tensor) -> float:
    """The median heuristic α = 1 / median ‖φ_i − φ_j‖² over pairs i ≠ j of one row's ``positions``."""
    d = squared_distances(features, features)
    pairs = positions[:, :, None] & positions[:, None, :] & ~torch.eye(positions.shape[1], dtype=torch.bool,
                                                                         device=positions.device)
    if not pairs.any():
        raise DidiError("the MMD kernel width needs rows with at least two tokens to measure")
    return 1.0 / d[pairs].median().clamp_min(1e-12).item()


def group_rewards(real: torch.Tensor, fills: torch.Tensor, selected: torch.Tensor,
                  alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row and group: r = 2·attraction − repulsion (module docstring), and which rows count.

    real [N, L, H]: x0's features; fills [N, G, B, L, H]: the features of each group's fills;
    selected bool [N, L]: the masked set S. Rows with |S| < 2 have no repulsion pair: their
    reward is 0 and they are reported inactive. Returns (rewards [N, G], active [N]).
    """
    n, g, b, length, _ = fills.shape
    w = selected.float()
    count = w.sum(-1)
    eye = torch.eye(length, device=real.device)
    attraction = torch.zeros(n, g, device=real.device)
    repulsion = torch.zeros(n, g, device=real.device)
    for i in range(b):
        k = rbf_kernel(real[:, None], fills[:, :, i], alpha)  # [N, G, L(real), L(fill)]
        attraction += torch.einsum("nj,ngji,ni->ng", w, k, w)
        for j in range(i + 1, b):  # each unordered pair of fills once, counted for both orders
            k = rbf_kernel(fills[:, :, i], fills[:, :, j], alpha) * (1 - eye)
            repulsion += 2 * torch.einsum("nj,ngji,ni->ng", w, k, w)
    attraction = attraction / (b * count.square()).clamp_min(1)[:, None]
    repulsion = repulsion / (b * (b - 1) * count * (count - 1)).clamp_min(1)[:, None]
    active = count >= 2
    return torch.where(active[:, None], 2 * attraction - repulsion, torch.zeros_like(attraction)), active


def resolve_alpha(alpha: float | None, features: Features, x0: torch.Tensor, maskable: torch.Tensor | None) -> float:
    """The configured α, or the median heuristic over ``x0``'s maskable tokens (every token if None)."""
    if alpha is not None:
        return float(alpha)
    return median_alpha(features(x0), torch.ones_like(x0, dtype=torch.bool) if maskable is None else maskable)


def leave_one_out(r: torch.Tensor) -> torch.Tensor:
    """A_g = r_g − mean of the other groups' r ([N, G]): a baseline independent of group g's own draws."""
    g = r.shape[-1]
    return r - (r.sum(-1, keepdim=True) - r) / (g - 1)


def draw_fills(student_lp: torch.Tensor, x0: torch.Tensor, selected: torch.Tensor, groups: int, draws: int,
               noise: RowNoise | torch.Generator) -> torch.Tensor:
    """G·B fills of the masked set: [N, G, B, L] ids, x0 outside S, student draws (detached) inside.

    One uniform per (fill, position), a fixed shape per row, so ranks holding rows of one global
    batch draw what one process would (distributed.py).
    """
    if isinstance(noise, torch.Generator):
        noise = RowNoise(noise, x0.shape[0])
    k = groups * draws
    u = torch.stack([noise.uniform(x0.shape[1]) for _ in range(k)], -1)  # [N, L, K] fp64
    tokens = categorical_from_uniform(student_lp.detach(), u[selected])  # [P, K]
    fills = x0[:, :, None].repeat(1, 1, k)
    fills[selected] = tokens
    return fills.permute(0, 2, 1).reshape(x0.shape[0], groups, draws, x0.shape[1])


def token_terms(real: torch.Tensor, fills: torch.Tensor, selected: torch.Tensor,
                alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """att_{b,i} and rep_{b,i} of every sampled token (module docstring), each [N, G, B, L]; zero outside S.

    Their means over b and i ∈ S give r_g = 2·mean(att) − mean(rep) (``group_rewards``).
    """
    n, g, b, length, _ = fills.shape
    w = selected.float()
    count = w.sum(-1)
    off = 1 - torch.eye(length, device=real.device)
    att = torch.zeros(n, g, b, length, device=real.device)
    rep = torch.zeros(n, g, b, length, device=real.device)
    for i in range(b):
        att[:, :, i] = torch.einsum("nj,ngji->ngi", w, rbf_kernel(real[:, None], fills[:, :, i], alpha))
        for j in range(i + 1, b):
            k = rbf_kernel(fills[:, :, i], fills[:, :, j], alpha) * off  # [N, G, L(i), L(j)]
            rep[:, :, i] += torch.einsum("ngij,nj->ngi", k, w)
            rep[:, :, j] += torch.einsum("ngij,ni->ngj", k, w)
    w = w[:, None, None, :]
    return (att / count.clamp_min(1)[:, None, None, None] * w,
            rep / ((b - 1) * (count - 1)).clamp_min(1)[:, None, None, None] * w)


def token_credits(real: torch.Tensor, fills: torch.Tensor, selected: torch.Tensor, alpha: float) -> torch.Tensor:
    """Each sampled token's own terms of its group's reward, 2·(att_{b,i} − rep_{b,i}) [N, G, B, L]: the
    repulsion weighs twice because each pair holds two tokens. Zero on rows with |S| < 2 (no pair).
    (1 / (B·|S|))·Σ_{b,i} credit·∇log P has the expectation ∇E[r_g] for context-free features."""
    att, rep = token_terms(real, fills, selected, alpha)
    active = (selected.sum(-1) >= 2).float()[:, None, None, None]
    return 2 * (att - rep) * active


def token_advantages(credits: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
    """A_{g,b,i} = credit − the other groups' mean credit at position i, divided by B·|S| so that
    E[∇ loss] equals the sequence-credit estimator's (the KL guard keeps its balance). [N, G, B, L]."""
    per_group = credits.mean(2)  # [N, G, L]
    g = per_group.shape[1]
    baseline = (per_group.sum(1, keepdim=True) - per_group) / (g - 1)
    count = selected.float().sum(-1).clamp_min(1)
    return (credits - baseline[:, :, None]) / (credits.shape[2] * count)[:, None, None, None]


def reinforce_loss(student_lp: torch.Tensor, fills: torch.Tensor, selected: torch.Tensor, advantages: torch.Tensor,
                   mean: Mean = local_mean) -> torch.Tensor:
    """−A · log P[X_{g,b,i}] averaged over every sampled token (i ∈ S, all g, b).

    student_lp [P, V] at ``selected`` (row-major), fills [N, G, B, L], advantages (detached): [N, G] (one per
    group, sequence credit) or [N, G, B, L] (one per token, ``token_advantages``).
    """
    n, g, b, length = fills.shape
    picked = student_lp.gather(-1, fills.permute(0, 3, 1, 2)[selected].reshape(-1, g * b))  # [P, G·B]
    adv = advantages.detach()
    if adv.dim() == 2:
        adv = adv[:, :, None, None].expand(n, g, b, length)
    adv = adv.permute(0, 3, 1, 2)[selected].reshape(-1, g * b)  # [P, G·B]
    return mean(-(adv * picked))


def features_of_fills(features: Features, x0: torch.Tensor, fills: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x0's features [N, L, H] and every fill's [N, G, B, L, H], from one batched trunk pass."""
    n, g, b, length = fills.shape
    with torch.no_grad():
        f = features(torch.cat([x0, fills.reshape(-1, length)]))
    return f[:n], f[n:].view(n, g, b, length, -1)


def sample_stats(fills: torch.Tensor, selected: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cheap collapse indicators per fill over its tokens at S ([F] each, rows with |S| ≥ 2): unigram
    entropy (nats) and repetition 1 − distinct/total (rep-1). Falling entropy or rising repetition
    during training is the signature of the policy gradient collapsing onto frequent tokens."""
    n, g, b, _ = fills.shape
    ent, rep = [], []
    for row in range(n):
        s = selected[row]
        if int(s.sum()) < 2:
            continue
        for toks in fills[row].reshape(g * b, -1)[:, s]:
            _, counts = toks.unique(return_counts=True)
            p = counts.double() / counts.sum()
            ent.append(-(p * p.log()).sum())
            rep.append(1.0 - len(counts) / len(toks))
    return {"fill_entropy": torch.tensor(ent, dtype=torch.float32), "fill_rep1": torch.tensor(rep, dtype=torch.float32)}


def mmd_step(student, features: Features, x0: torch.Tensor, maskable: torch.Tensor | None, schedule, mask_id: int,
             cfg: MMDConfig, alpha: float, generator: torch.Generator, noise: RowNoise, mean: Mean = local_mean,
             teacher=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One MMD loss on real rows ``x0``: noise them, one student forward, G·B fills, features, rewards.

    ``student`` and ``teacher`` are ``Denoiser``s (the teacher only for the KL guard, ``cfg.kl_coef`` > 0);
    ``features`` the frozen trunk cut (``TeacherAdapter.trunk_features``). Returns the loss (this rank's
    share of the global mean, with a graph into the student) and detached metrics: loss, mean reward of
    active rows, mean |advantage|, the student's predictive entropy at S, the fills' unigram entropy and
    rep-1 (collapse shows there first), and the KL to the teacher when guarded.
    """
    t, z = noised_rows(x0, maskable, schedule, mask_id, generator, noise, cfg.t_min)
    masked = z == mask_id
    lp = student(z, masked, t)
    fills = draw_fills(lp, x0, masked, cfg.groups, cfg.draws, noise)
    real, fake = features_of_fills(features, x0, fills)
    r, active = group_rewards(real, fake, masked, alpha)
    adv = leave_one_out(r) * active[:, None]
    if cfg.credit == "token":
        adv = token_advantages(token_credits(real, fake, masked, alpha), masked)
    loss = reinforce_loss(lp, fills, masked, adv, mean)
    metrics = {}
    if cfg.kl_coef > 0:
        with torch.no_grad():
            teacher_lp = teacher(z, masked, t)
        kl = kl_regulariser(teacher_lp, lp, "reverse", mean=mean)
        loss = loss + cfg.kl_coef * kl
        metrics["kl"] = kl.detach()
    weight = active[:, None].expand_as(r).float()
    adv_weight = weight if adv.dim() == 2 else masked[:, None, None, :].expand_as(adv).float()  # per group | per token
    with torch.no_grad():
        metrics.update({"loss": loss.detach(), "reward": mean(r, weight=weight), "advantage_abs": mean(adv.abs(), weight=adv_weight),
                        "entropy": entropy(lp.detach(), mean)})
        metrics.update({k: mean(v.to(loss.device)) for k, v in sample_stats(fills, masked).items()})
    return loss, metrics
