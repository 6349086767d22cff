import pytest
import torch

from metarl.errors import ConfigError
from metarl.learners.ppo import clipped_surrogate, gae, masked_mean


def test_gae_matches_hand_computation():
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 1.0, 1.5]])
    dones = torch.tensor([[0.0, 0.0, 1.0]])
    gamma, lam = 0.9, 0.5
    d2 = 2.0 - 1.5
    d1 = 0.0 + 0.9 * 1.5 - 1.0
    d0 = 1.0 + 0.9 * 1.0 - 0.5
    a2 = d2
    a1 = d1 + 0.45 * a2
    a0 = d0 + 0.45 * a1
    adv, ret = gae(rewards, values, dones, gamma, lam)
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, a2]]))
    torch.testing.assert_close(ret, adv + values)


def test_gae_does_not_bootstrap_across_a_done():
    rewards = torch.tensor([[1.0, 1.0]])
    values = torch.tensor([[0.0, 100.0]])
    adv, _ = gae(rewards, values, torch.tensor([[1.0, 1.0]]), gamma=1.0, lam=1.0)
    assert adv[0, 0].item() == 1.0


def test_gae_lambda_one_gives_monte_carlo_returns():
    rewards = torch.rand(4, 6)
    values = torch.rand(4, 6)
    dones = torch.zeros(4, 6)
    dones[:, -1] = 1
    _, ret = gae(rewards, values, dones, gamma=0.8, lam=1.0)
    discounts = 0.8 ** torch.arange(6.0)
    torch.testing.assert_close(ret[:, 0], (rewards * discounts).sum(1))


def test_clipped_surrogate_clips_only_in_the_improving_direction():
    old = torch.zeros(4)
    logp = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5]))
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    out = clipped_surrogate(logp, old, adv, clip=0.2)
    torch.testing.assert_close(out, torch.tensor([1.2, -1.5, 0.5, -0.8]))


def test_masked_mean_ignores_padding():
    x = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert masked_mean(x, mask).item() == 2.0


def test_normalize_returns_divides_rewards_by_the_running_return_std():
    """Two trials of two steps, gamma 0.5: returns-to-go [1 + 0.5*3, 3] = [2.5, 3] and
    [2 + 0.5*0, 0] = [2, 0]; the padded third trial is left out of the statistics."""
    import numpy as np

    from metarl.backbones.lstm import LSTMBackbone
    from metarl.learners.rl2 import RL2, PPOConfig
    from metarl.policies import RecurrentActorCritic

    policy = RecurrentActorCritic(LSTMBackbone(3, 4), 2)
    learner = RL2(policy, PPOConfig(gamma=0.5, normalize_returns=True))
    rewards = torch.tensor([[1.0, 3.0], [2.0, 0.0], [9.0, 9.0]])
    dones = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    scaled = learner.scaled_rewards(rewards, dones, mask)
    to_go = np.array([2.5, 3.0, 2.0, 0.0])
    # SB3's running moments start from mean 0, var 1 with weight 1e-4
    count = 1e-4 + 4
    mean = to_go.mean() * 4 / count
    var = (1e-4 + to_go.var() * 4 + to_go.mean() ** 2 * 1e-4 * 4 / count) / count
    torch.testing.assert_close(scaled, rewards / np.sqrt(var + 1e-8))
    assert learner.returns.mean == pytest.approx(mean)

    restored = RL2(policy, PPOConfig(gamma=0.5, normalize_returns=True))
    restored.load_state_dict(learner.state_dict())
    assert vars(restored.returns) == pytest.approx(vars(learner.returns))
    plain = RL2(policy, PPOConfig())
    assert plain.scaled_rewards(rewards, dones, mask) is rewards


def _gaussian_policy(init_std: float = 0.5):
    from metarl.backbones.lstm import LSTMBackbone
    from metarl.policies import RecurrentActorCritic

    torch.manual_seed(0)
    return RecurrentActorCritic(LSTMBackbone(5, 8), 2, continuous=True, init_std=init_std)


def test_gaussian_actor_scores_actions_by_the_hand_computed_density():
    import math

    policy = _gaussian_policy(init_std=0.5)
    inputs = torch.randn(3, 4, 5)
    dist, values = policy(inputs)
    mean = policy.actor(policy.backbone(inputs))
    actions = torch.randn(3, 4, 2)
    by_hand = (
        -0.5 * ((actions - mean) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
    ).sum(-1)
    torch.testing.assert_close(dist.log_prob(actions), by_hand)
    torch.testing.assert_close(
        dist.entropy(), torch.full((3, 4), 2 * (0.5 + 0.5 * math.log(2 * math.pi) + math.log(0.5)))
    )
    assert values.shape == (3, 4)
    with pytest.raises(ValueError, match="init_std must be positive"):
        _gaussian_policy(init_std=0.0)


def test_drawn_actions_follow_the_generator_and_greedy_takes_the_mean():
    from metarl.policies import draw_actions

    policy = _gaussian_policy()
    dist, _ = policy(torch.randn(2, 3, 5))
    first = draw_actions(dist, torch.Generator().manual_seed(4))
    again = draw_actions(dist, torch.Generator().manual_seed(4))
    torch.testing.assert_close(first, again)
    assert not torch.equal(first, draw_actions(dist, torch.Generator().manual_seed(5)))
    torch.testing.assert_close(draw_actions(dist, torch.Generator(), deterministic=True), dist.mean)


def test_categorical_actor_keeps_log_softmax_arithmetic_bit_for_bit():
    """Discrete runs must reproduce the seeded figures of before the Gaussian actor: the PPO
    loss's gradient through log-probabilities and entropy, the sampled and the greedy actions
    equal those of the plain log_softmax arithmetic exactly."""
    from metarl.policies import LogSoftmaxCategorical, draw_actions

    torch.manual_seed(0)
    raw = torch.randn(64, 50, 5) * 3
    actions, advantages = torch.randint(5, (64, 50)), torch.randn(64, 50)
    grads = []
    for distribution in (False, True):
        logits = raw.clone().requires_grad_()
        if distribution:
            dist = LogSoftmaxCategorical(logits)
            logp, entropy = dist.log_prob(actions), dist.entropy()
        else:
            logprobs = torch.log_softmax(logits, dim=-1)
            logp = logprobs.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            entropy = -(logprobs.exp() * logprobs).sum(-1)
        (-(logp.exp() * advantages).mean() - 0.01 * entropy.mean()).backward()
        grads.append(logits.grad)
    assert torch.equal(*grads)
    step = raw[:, 0]  # the worker draws one step (B, A) at a time
    drawn = draw_actions(LogSoftmaxCategorical(step), torch.Generator().manual_seed(3))
    plain = torch.multinomial(
        torch.log_softmax(step, -1).exp(), 1, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(drawn, plain.squeeze(-1))
    close = LogSoftmaxCategorical(torch.tensor([0.0, 1e-8]))  # a tie after log_softmax
    assert draw_actions(close, torch.Generator(), deterministic=True).item() == 1


def test_continuous_rl2_inputs_carry_the_previous_action_vector():
    import numpy as np

    from metarl.policies import rl2_inputs

    prev = np.array([[0.5, -1.0], [0.0, 0.25]], dtype=np.float32)
    out = rl2_inputs(np.ones((2, 3)), prev, np.array([1.0, 2.0]), np.array([False, True]), 2)
    np.testing.assert_array_equal(out[:, 3:5], prev)
    np.testing.assert_array_equal(out[:, 5:], [[1.0, 0.0], [2.0, 1.0]])


def test_ppo_on_gaussian_actions_moves_the_mean_towards_rewarded_actions():
    """One-step trials whose reward is the first action's coordinate: PPO updates raise the
    actor's mean along it and leave the learned std positive."""
    from metarl.learners.rl2 import RL2, PPOConfig
    from metarl.policies import draw_actions

    policy = _gaussian_policy(init_std=1.0)
    learner = RL2(policy, PPOConfig(lr=0.01, epochs=4, minibatches=2))
    inputs = torch.zeros(64, 1, 5)
    generator = torch.Generator().manual_seed(0)
    start = policy(inputs)[0].mean[:, 0, 0].mean().item()
    for _ in range(15):
        with torch.no_grad():
            dist, values = policy(inputs)
            actions = draw_actions(dist, generator)
            batch = {
                "inputs": inputs,
                "actions": actions,
                "logp": dist.log_prob(actions),
                "values": values,
                "rewards": actions[..., 0],
                "dones": torch.ones(64, 1),
                "mask": torch.ones(64, 1),
            }
        learner.update(batch, generator)
    assert policy(inputs)[0].mean[:, 0, 0].mean().item() > start + 0.5
    assert torch.isfinite(policy.log_std).all()


def test_the_entropy_bonus_anneals_linearly_then_stays():
    from metarl.learners.rl2 import PPOConfig

    annealed = PPOConfig(entropy_coef=0.05, entropy_final=0.01, entropy_anneal_updates=4)
    weights = [annealed.entropy_weight(update) for update in (0, 1, 2, 4, 10)]
    assert weights == pytest.approx([0.05, 0.04, 0.03, 0.01, 0.01])
    assert PPOConfig(entropy_coef=0.05).entropy_weight(1000) == 0.05


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"entropy_final": -0.1}, "ppo.entropy_final"),
        ({"entropy_final": 0.01, "entropy_anneal_updates": 0}, "ppo.entropy_anneal_updates"),
        ({"entropy_coef": -1.0}, "ppo.entropy_coef"),
    ],
)
def test_bad_entropy_settings_are_rejected(settings, message):
    from metarl.learners.rl2 import PPOConfig

    with pytest.raises(ConfigError, match=message):
        PPOConfig(**settings)


def test_an_update_uses_the_bonus_of_its_iteration():
    """Rewards -a² favour a narrower Gaussian, the entropy bonus a wider one. Annealed from
    0 to 10 over 2 updates, update 1 weighs the entropy 5: the same step as a constant 5,
    which widens the policy, where a constant 0 (the schedule's start) narrows it."""
    import copy

    from metarl.learners.rl2 import RL2, PPOConfig
    from metarl.policies import draw_actions

    policy = _gaussian_policy()
    inputs = torch.zeros(64, 1, 5)
    with torch.no_grad():
        dist, values = policy(inputs)
        actions = draw_actions(dist, torch.Generator().manual_seed(0))
    batch = {
        "inputs": inputs,
        "actions": actions,
        "logp": dist.log_prob(actions),
        "values": values,
        "rewards": -actions.square().sum(-1),
        "dones": torch.ones(64, 1),
        "mask": torch.ones(64, 1),
    }
    settings = {"lr": 0.01, "epochs": 1, "minibatches": 1}
    configs = {
        "annealed": PPOConfig(
            entropy_coef=0.0, entropy_final=10.0, entropy_anneal_updates=2, **settings
        ),
        "constant": PPOConfig(entropy_coef=5.0, **settings),
        "start": PPOConfig(entropy_coef=0.0, **settings),
    }
    moved = {}
    for name, config in configs.items():
        copied = copy.deepcopy(policy)
        RL2(copied, config).update(batch, torch.Generator().manual_seed(0), iteration=1)
        moved[name] = (copied.log_std - policy.log_std).detach()
    torch.testing.assert_close(moved["annealed"], moved["constant"])
    assert (moved["annealed"] > 0).all() and (moved["start"] < 0).all()
