import pytest
import torch

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
