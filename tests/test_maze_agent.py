import numpy as np
import pytest

from agents.rl2_bandit import Config as BanditConfig
from agents.rl2_bandit import RL2BanditAgent
from agents.rl2_maze import Config, MazeConfig, RL2MazeAgent
from metarl.backbones.config import ModelConfig
from metarl.config import SamplerConfig, TrainConfig
from metarl.eval.mazes import trial_paths
from metarl.rollout.worker import Shard
from tests.test_mazes import SNAKE, SNAKE_PATH, task_from_text

UP, RIGHT, DOWN, LEFT = range(4)
SMALL = {
    "snail": ModelConfig(backbone="snail", blocks=["tc 8", "attention 8 8"], projection_size=8),
    "lstm": ModelConfig(backbone="lstm", hidden_size=16, projection_size=0),
    "mann": ModelConfig(backbone="mann", hidden_size=16, memory_slots=8, memory_width=4),
}


def small_config(backbone: str, observe_position: bool = False) -> Config:
    return Config(
        name=f"{backbone}-maze",
        agent="rl2-maze",
        trials_per_iteration=8,
        env=MazeConfig(size=3, max_episode_steps=12, observe_position=observe_position),
        model=SMALL[backbone],
        sampler=SamplerConfig(shards=2),
        train=TrainConfig(iterations=1),
    )


@pytest.mark.parametrize(
    "backbone, observe_position",
    [("snail", False), ("lstm", False), ("mann", False), ("snail", True)],
)
def test_every_backbone_trains_and_is_measured_on_mazes(backbone, observe_position):
    agent = RL2MazeAgent(small_config(backbone, observe_position))
    env = agent.worker_kwargs["make_env"](1)
    assert env.single_observation_space.shape == (51 + 9 * observe_position,)
    metrics = agent.train_iteration(0)
    assert 1 <= metrics["length_episode_1"] <= 12 and 1 <= metrics["length_episode_2"] <= 12
    report = agent.evaluate(20)
    curve = report["curve"]
    assert curve["x"] == [1, 2] and report["value"] == pytest.approx(curve["agent"][-1])
    assert all(o <= r for o, r in zip(curve["oracle"], curve["random"], strict=True))
    assert report["higher_is_better"] is False
    oracle = report["paired"]["oracle"]  # the oracle walks the shortest path: never longer
    assert oracle["tasks"] == 20 and oracle["diff"] >= 0 and oracle["verdict"] != "better"
    assert report["gains"]["x"] == [2] and len(report["gains"]["mean"]) == 1
    assert np.mean(report["scores"]) == pytest.approx(report["value"])  # metarl compare
    paths = report["rendered_trial"]["paths"]
    start = paths[0][0]
    assert 1 <= len(paths) <= 2 and all(p[0] == start for p in paths)
    for path in paths:  # consecutive cells are equal or neighbours
        steps = np.abs(np.diff(np.array(path), axis=0)).sum(1)
        assert np.all(steps <= 1)


def test_trial_paths_replay_a_trial_episode_by_episode():
    """SNAKE's only path runs through every cell; the first episode wanders (bumps into a
    wall, steps back), the second walks straight to the goal."""
    task = task_from_text(SNAKE)
    wander = [UP, RIGHT, LEFT, RIGHT, *SNAKE_PATH[1:]]
    paths = trial_paths(task, np.array(wander + SNAKE_PATH), episodes_per_trial=2)
    straight = [(0, 0), (0, 1), (0, 2), (1, 2), (1, 1), (1, 0), (2, 0), (2, 1), (2, 2)]
    assert paths[1] == straight
    assert paths[0] == [(0, 0), (0, 0), (0, 1), (0, 0), (0, 1)] + straight[2:]


def test_memory_policies_start_every_trial_with_empty_memory():
    """A MANN bandit worker gives a shard the same trials whatever it ran before."""
    config = BanditConfig(
        name="mann-bandit",
        agent="rl2-bandit",
        trials_per_iteration=8,
        model=SMALL["mann"],
        train=TrainConfig(iterations=1),
    )
    agent = RL2BanditAgent(config)
    weights = agent.policy.state_dict()
    (alone,) = agent.sampler.sample(weights, [Shard(5, 6)])
    _, after = agent.sampler.sample(weights, [Shard(4, 6), Shard(5, 6)])
    for key in alone:
        np.testing.assert_array_equal(alone[key], after[key])
