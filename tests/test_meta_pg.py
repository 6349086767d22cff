import math

import numpy as np
import pytest
import torch
from torch.distributions import Categorical, kl_divergence
from torch.func import functional_call

from metarl.learners.linear_baseline import fit_predict
from metarl.learners.maml import DivergenceError
from metarl.learners.meta_pg import MetaPolicyGradient, TaskEpisodes, task_episodes
from metarl.learners.ppo import gae, masked_mean
from metarl.learners.trpo import TRPOConfig, conjugate_gradient, trpo_step
from metarl.policies import CategoricalMLPPolicy, GaussianMLPPolicy

POLICIES = {  # a float64 policy of 2-wide observations, 2-wide or 3-way actions
    "gaussian": lambda hidden: GaussianMLPPolicy(2, 2, hidden, init_std=0.7).double(),
    "categorical": lambda hidden: CategoricalMLPPolicy(2, 3, hidden).double(),
}


def test_conjugate_gradient_solves_a_positive_definite_system():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=g, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=6)
    torch.testing.assert_close(x, torch.linalg.solve(a, b))


def test_trpo_step_moves_along_the_natural_gradient_to_the_trust_region():
    # loss -c·θ, KL ½(θ-θ0)ᵀA(θ-θ0): the step is √(2δ / cᵀA⁻¹c) A⁻¹c, KL = δ on the boundary
    a = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    c = torch.tensor([1.0, -2.0], dtype=torch.float64)
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)

    def objective():
        return -(c @ theta), 0.5 * theta @ a @ theta

    config = TRPOConfig(max_kl=0.02, cg_damping=0.0)
    stats = trpo_step([theta], objective, config)
    natural = torch.linalg.solve(a, c)
    expected = natural * math.sqrt(2 * 0.02 / (c @ natural).item())
    steps = stats["line_search_steps"]
    torch.testing.assert_close(theta.detach(), expected * 0.8**steps)
    assert steps <= 1  # the full step or, on float round-off at the boundary, one shrink
    assert stats["kl"] <= 0.02 and stats["loss_after"] < stats["loss_before"]


def test_trpo_step_keeps_theta_when_no_step_improves():
    theta = torch.ones(2, requires_grad=True)

    def objective():  # a flat loss: no step lowers it
        return 0.0 * theta.sum() + 1.0, ((theta - 1) ** 2).sum()

    stats = trpo_step([theta], objective, TRPOConfig(line_search_steps=3))
    assert stats["line_search_steps"] == 3
    torch.testing.assert_close(theta.detach(), torch.ones(2))


def test_discounted_returns_by_hand():
    # the baseline's targets: GAE with λ = 1 and zero values, an episode ending at step 3
    rewards = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    ends = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    _, returns = gae(rewards, torch.zeros_like(rewards), ends, gamma=0.5, lam=1.0)
    torch.testing.assert_close(returns, torch.tensor([[1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3, 0]]))


def test_linear_baseline_fits_returns_that_are_cubic_in_time():
    # constant reward 1, γ = 1: G_t = T − t, a polynomial of the time feature
    obs = torch.randn(3, 50, 2)
    mask = torch.ones(3, 50)
    values = fit_predict(obs, (50 - torch.arange(50.0)).expand(3, 50), mask)
    torch.testing.assert_close(values, (50 - torch.arange(50.0)).expand(3, 50), atol=0.05, rtol=0)


def test_advantages_are_normalised_over_valid_steps():
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(4, 6)
    mask[1, 4:] = 0
    batch = {
        "obs": torch.randn(4, 6, 2, generator=g).numpy(),
        "actions": torch.randn(4, 6, 2, generator=g).numpy(),
        "rewards": (torch.randn(4, 6, generator=g) * mask).numpy(),
        "mask": mask.numpy(),
    }
    episodes = task_episodes(batch, gamma=0.99, gae_lambda=1.0)
    assert masked_mean(episodes.advantages, mask).abs() < 1e-6
    assert masked_mean(episodes.advantages**2, mask).sqrt() == pytest.approx(1.0, abs=1e-4)
    assert (episodes.advantages[1, 4:] == 0).all()


def synthetic_tasks(policy, tasks=3, steps=1, seed=0):
    g = torch.Generator().manual_seed(seed)

    def episodes():
        obs = torch.randn(2, 4, 2, generator=g, dtype=torch.float64)
        if isinstance(policy, CategoricalMLPPolicy):
            actions = torch.randint(3, (2, 4), generator=g)
        else:
            actions = torch.randn(2, 4, 2, generator=g, dtype=torch.float64)
        return TaskEpisodes(obs, actions, torch.ones(2, 4, dtype=torch.float64), obs[..., 0])

    inner = [[episodes() for _ in range(steps)] for _ in range(tasks)]
    outer = [episodes() for _ in range(tasks)]
    return inner, outer


def loop_objective(learner, inner, outer, old):
    """The MAML-TRPO surrogate and KL written as a plain per-task loop."""
    losses, kls = [], []
    for task_inner, episodes, old_params in zip(inner, outer, old, strict=True):
        params = learner.maml.meta_params()
        for j, e in enumerate(task_inner):
            params = learner.maml.adapt_step(lambda p, e=e: learner.inner_loss(p, e), params, j)
        dist = functional_call(learner.policy, params, (episodes.obs,))
        old_dist = functional_call(learner.policy, old_params, (episodes.obs,))
        ratio = torch.exp(dist.log_prob(episodes.actions) - old_dist.log_prob(episodes.actions))
        losses.append(-masked_mean(ratio * episodes.advantages, episodes.mask))
        kls.append(masked_mean(kl_divergence(old_dist, dist), episodes.mask))
    return torch.stack(losses).mean(), torch.stack(kls).mean()


def capture_objective(learner, inner, outer, old, monkeypatch):
    import metarl.learners.meta_pg as meta_pg

    captured = {}

    def spy(params, objective, config):
        captured["objective"] = objective
        return {}

    monkeypatch.setattr(meta_pg, "trpo_step", spy)
    learner.update(inner, outer, old)
    return captured["objective"]


@pytest.mark.parametrize("kind", POLICIES)
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("algorithm", ["maml", "fomaml"])
def test_batched_and_per_task_outer_objectives_equal_a_hand_written_loop(
    algorithm, steps, batched, kind, monkeypatch
):
    torch.manual_seed(0)
    policy = POLICIES[kind]([5])
    rates = [0.3, 0.2][:steps]
    learner = MetaPolicyGradient(policy, algorithm, rates, steps, TRPOConfig(), batched=batched)
    inner, outer = synthetic_tasks(policy, steps=steps)
    theta = {k: v.detach() for k, v in policy.named_parameters()}
    old = [{k: v + 0.01 * (i + 1) for k, v in theta.items()} for i in range(len(outer))]
    batched = capture_objective(learner, inner, outer, old, monkeypatch)()
    looped = loop_objective(learner, inner, outer, old)
    params = list(policy.parameters())
    for a, b in zip(batched, looped, strict=True):
        torch.testing.assert_close(a, b)
        for ga, gb in zip(
            torch.autograd.grad(a, params, retain_graph=True),
            torch.autograd.grad(b, params, retain_graph=True),
            strict=True,
        ):
            torch.testing.assert_close(ga, gb)


@pytest.mark.parametrize(("kind", "steps"), [("gaussian", 1), ("gaussian", 3), ("categorical", 2)])
def test_maml_trpo_meta_gradient_matches_finite_differences(kind, steps, monkeypatch):
    torch.manual_seed(1)
    policy = POLICIES[kind]([4])
    learner = MetaPolicyGradient(policy, "maml", 0.2, steps, TRPOConfig())
    inner, outer = synthetic_tasks(policy, tasks=2, steps=steps, seed=1)
    old = [{k: v.detach().clone() for k, v in policy.named_parameters()}] * 2
    objective = capture_objective(learner, inner, outer, old, monkeypatch)
    params = list(policy.parameters())
    exact = torch.autograd.grad(objective()[0], params)
    eps = 1e-6
    for p, grad in zip(params, exact, strict=True):
        numeric = torch.zeros_like(p)
        for i in range(p.numel()):
            values = []
            for sign in (1, -1):
                with torch.no_grad():
                    p.view(-1)[i] += sign * eps
                values.append(objective()[0].item())
                with torch.no_grad():
                    p.view(-1)[i] -= sign * eps
            numeric.view(-1)[i] = (values[0] - values[1]) / (2 * eps)
        assert ((grad - numeric).norm() / numeric.norm()).item() <= 1e-4


def test_a_non_finite_inner_loss_raises_divergence():
    policy = GaussianMLPPolicy(2, 2, hidden=[4])
    learner = MetaPolicyGradient(policy, "maml", 0.1, 1, TRPOConfig())
    obs = torch.randn(2, 3, 2)
    episodes = TaskEpisodes(obs, obs, torch.ones(2, 3), torch.full((2, 3), float("nan")))
    theta = dict(policy.named_parameters())
    with pytest.raises(DivergenceError, match="inner step 1"):
        learner.step(theta, episodes, 0.1)


@pytest.mark.parametrize(
    ("lr", "steps", "message"),
    [(0.0, 1, "positive and finite"), (float("nan"), 1, "positive"), (0.1, 0, "positive integer")],
)
def test_invalid_inner_step_sizes_and_counts_are_rejected(lr, steps, message):
    policy = GaussianMLPPolicy(2, 2)
    with pytest.raises(ValueError, match=message):
        MetaPolicyGradient(policy, "maml", lr, steps, TRPOConfig())


def test_gaussian_policy_log_prob_by_hand():
    policy = GaussianMLPPolicy(1, 1, hidden=[], init_std=2.0)
    with torch.no_grad():
        policy.body[0].weight.fill_(3.0)
        policy.body[0].bias.fill_(1.0)
    dist = policy(torch.tensor([[1.0]]))  # mean 4, std 2
    expected = -0.5 * ((5.0 - 4.0) / 2) ** 2 - math.log(2.0) - 0.5 * math.log(2 * math.pi)
    assert dist.log_prob(torch.tensor([[5.0]])).item() == pytest.approx(expected)
    assert np.isclose(dist.stddev.item(), 2.0)


def test_categorical_policy_log_prob_by_hand():
    policy = CategoricalMLPPolicy(2, 3, hidden=[])
    with torch.no_grad():
        policy.body[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
        policy.body[0].bias.copy_(torch.tensor([0.0, -1.0, 0.5]))
    obs = torch.tensor([[1.0, 0.5], [0.0, 0.0]])  # logits [1, 0, 2] and [0, -1, 0.5]
    logits = [[1.0, 0.0, 2.0], [0.0, -1.0, 0.5]]
    dist = policy(obs)
    actions = torch.tensor([2, 1])
    expected = [
        row[a] - math.log(sum(math.exp(x) for x in row))
        for row, a in zip(logits, actions.tolist(), strict=True)
    ]
    torch.testing.assert_close(dist.log_prob(actions), torch.tensor(expected))
    # functional parameters in place of the policy's own: a zero weight leaves the bias
    params = {"body.0.weight": torch.zeros(3, 2), "body.0.bias": torch.tensor([0.0, 0.0, 1.0])}
    shifted = functional_call(policy, params, (obs,))
    log_z = math.log(2 + math.e)
    torch.testing.assert_close(shifted.log_prob(actions), torch.tensor([1 - log_z, -log_z]))
    # its KL (one that vmap batches) is torch's: Σ p log(p / q)
    plain = [Categorical(logits=d.logits) for d in (dist, shifted)]
    torch.testing.assert_close(kl_divergence(dist, shifted), kl_divergence(*plain))


@pytest.mark.parametrize("kind", POLICIES)
def test_log_probs_are_per_action_and_step_for_both_policies(kind):
    """MetaPolicyGradient.log_probs is log π(a_t|s_t) of whole actions, (E, T): a Gaussian's
    sums its dimensions, a categorical's is one number per step (never summed over time)."""
    torch.manual_seed(0)
    policy = POLICIES[kind]([4])
    learner = MetaPolicyGradient(policy, "maml", 0.1, 1, TRPOConfig())
    (episodes,) = synthetic_tasks(policy, tasks=1)[1]
    theta = dict(policy.named_parameters())
    log_probs = learner.log_probs(theta, episodes)
    assert log_probs.shape == (2, 4)
    out = policy.body(episodes.obs)
    if kind == "gaussian":
        std = policy.log_std.exp()
        per_dim = (
            -0.5 * ((episodes.actions - out) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)
        )
        expected = per_dim.sum(-1)
    else:
        expected = out.log_softmax(-1).gather(-1, episodes.actions[..., None]).squeeze(-1)
    torch.testing.assert_close(log_probs, expected)
