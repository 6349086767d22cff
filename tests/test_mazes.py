from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env

from envs.mazes import (
    MazeEnv,
    MazeVectorEnv,
    decode_task,
    draw_paths,
    encode_task,
    maze_image,
    sample_tasks,
    shortest_path_length,
    shortest_path_lengths,
)
from metarl.eval.mazes import (
    episode_lengths,
    oracle_episode_lengths,
    random_episode_lengths,
    rollout_episode_ends,
)

UP, RIGHT, DOWN, LEFT = range(4)

# a 3x3 maze whose only path from S to G visits every cell: 8 steps
SNAKE = """\
#######
#S    #
##### #
#     #
# #####
#    G#
#######"""
SNAKE_PATH = [RIGHT, RIGHT, DOWN, LEFT, LEFT, DOWN, RIGHT, RIGHT]


def task_from_text(text: str) -> np.ndarray:
    chars = np.array([list(line) for line in text.splitlines()])
    (sy,), (sx,) = np.nonzero(chars == "S")
    (gy,), (gx,) = np.nonzero(chars == "G")
    return encode_task(chars == "#", ((sy - 1) // 2, (sx - 1) // 2), ((gy - 1) // 2, (gx - 1) // 2))


def grid_distance(walls: np.ndarray, source: tuple[int, int], target: tuple[int, int]) -> int:
    """Moves from cell to cell, by a breadth-first search over open grid squares (a move
    between cells crosses two squares): independent of the environment's own search."""
    source, target = (2 * source[0] + 1, 2 * source[1] + 1), (2 * target[0] + 1, 2 * target[1] + 1)
    dist, queue = {source: 0}, deque([source])
    while queue:
        y, x = queue.popleft()
        for ny, nx in ((y - 1, x), (y, x + 1), (y + 1, x), (y, x - 1)):
            if not walls[ny, nx] and (ny, nx) not in dist:
                dist[ny, nx] = dist[y, x] + 1
                queue.append((ny, nx))
    return dist[target] // 2 if target in dist else -1


@pytest.mark.parametrize("size", [2, 3, 5, 9])
def test_mazes_are_perfect_with_distinct_start_and_goal(size):
    tasks = sample_tasks(np.random.default_rng(size), 30, size)
    n = size * size
    for task in tasks:
        walls, start, goal = decode_task(task)
        openings = (walls == 0).sum() - n
        assert openings == n - 1  # a connected graph with n - 1 edges is a tree
        assert all(grid_distance(walls, (0, 0), divmod(c, size)) >= 0 for c in range(n))
        assert start != goal


def test_every_2x2_maze_is_drawn():
    """The 2x2 grid of cells is a 4-cycle: its perfect mazes drop one of the 4 openings."""
    walls = sample_tasks(np.random.default_rng(0), 200, 2)[:, :-2]
    assert len(np.unique(walls, axis=0)) == 4


def test_shortest_path_matches_an_independent_search_and_a_hand_drawn_maze():
    assert shortest_path_length(task_from_text(SNAKE)) == 8
    tasks = sample_tasks(np.random.default_rng(0), 40, 5)
    expected = [grid_distance(*decode_task(task)) for task in tasks]
    np.testing.assert_array_equal(shortest_path_lengths(tasks), expected)


def test_same_seed_same_tasks_different_seed_different():
    def first_task(env_class, seed, **kwargs):
        env = env_class(**kwargs)
        return env.reset(seed=seed)[1]["task"]

    np.testing.assert_array_equal(first_task(MazeEnv, 3), first_task(MazeEnv, 3))
    assert not np.array_equal(first_task(MazeEnv, 3), first_task(MazeEnv, 4))
    a, b = (first_task(MazeVectorEnv, 3, num_envs=4, size=9) for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, first_task(MazeVectorEnv, 4, num_envs=4, size=9))


@pytest.mark.filterwarnings("ignore:.*spec")  # alternative render modes need gymnasium.make
@pytest.mark.parametrize("render_mode", [None, "ansi", "rgb_array"])
def test_single_env_passes_sb3_and_gymnasium_checks(render_mode):
    check_env(MazeEnv(size=3, render_mode=render_mode), warn=True)
    gym_check_env(MazeEnv(size=3, render_mode=render_mode))


def test_observation_is_the_local_window_goal_and_first_step_flag():
    env = MazeEnv(size=3)
    obs, _ = env.reset(options={"task": task_from_text(SNAKE)})
    expected_walls = [
        [1, 1, 1, 1, 1],  # outside the grid counts as wall
        [1, 1, 1, 1, 1],
        [1, 1, 0, 0, 0],  # the agent at the centre, in the top-left cell
        [1, 1, 1, 1, 1],
        [1, 1, 0, 0, 0],
    ]
    np.testing.assert_array_equal(obs[:25].reshape(5, 5), expected_walls)
    assert not obs[25:50].any() and obs[50] == 1
    for action in SNAKE_PATH[:6]:
        obs, *_ = env.step(action)
    assert env.position == (2, 0) and not obs[25:50].any() and obs[50] == 0  # goal 2 cells away
    obs, *_ = env.step(RIGHT)
    goal = np.zeros((5, 5))
    goal[2, 4] = 1  # the next cell to the right
    np.testing.assert_array_equal(obs[25:50].reshape(5, 5), goal)


def test_observed_position_is_the_one_hot_of_the_agents_cell_before_the_flag():
    env = MazeEnv(size=3, episodes_per_trial=2, observe_position=True)
    obs, _ = env.reset(options={"task": task_from_text(SNAKE)})
    assert obs.shape == (2 * 25 + 9 + 1,) and env.observation_space.contains(obs)
    cells = [int(np.flatnonzero(obs[50:59])[0])]
    for action in SNAKE_PATH:
        obs, *_ = env.step(action)
        assert obs[50:59].sum() == 1
        cells.append(int(np.flatnonzero(obs[50:59])[0]))
    # the snake visits cells 0 1 2 5 4 3 6 7, then reaches the goal (8) and is put back at 0
    assert cells == [0, 1, 2, 5, 4, 3, 6, 7, 0] and obs[-1] == 1
    plain, _ = MazeEnv(size=3).reset(options={"task": task_from_text(SNAKE)})
    first, _ = env.reset(options={"task": task_from_text(SNAKE)})
    np.testing.assert_array_equal(np.delete(first, np.s_[50:59]), plain)


def test_reaching_the_goal_restarts_the_episode_and_the_trial_ends_after_its_episodes():
    env = MazeEnv(size=3, episodes_per_trial=3)
    env.reset(options={"task": task_from_text(SNAKE)})
    for episode in range(3):
        for step, action in enumerate(SNAKE_PATH):
            obs, reward, terminated, truncated, info = env.step(action)
            last = step == len(SNAKE_PATH) - 1
            assert reward == pytest.approx(0.99 if last else -0.01)
            assert info["episode_end"] == last and obs[-1] == last
            assert terminated == (last and episode == 2) and not truncated
        assert env.position == (0, 0)


def test_the_cap_cuts_episodes_and_truncates_the_trial():
    env = MazeEnv(size=3, max_episode_steps=3)
    env.reset(options={"task": task_from_text(SNAKE)})
    outcomes = [env.step(UP)[1:] for _ in range(6)]  # into the wall, six times
    assert [info["episode_end"] for *_, info in outcomes] == [False, False, True] * 2
    assert [truncated for _, _, truncated, _ in outcomes] == [False] * 5 + [True]
    assert all(reward == -0.01 and not terminated for reward, terminated, *_ in outcomes)
    assert env.max_trial_steps == 6


@pytest.mark.parametrize("observe_position", [False, True])
def test_vector_env_equals_copies_of_single_env_through_autoresets(observe_position):
    """Trials of different lengths: each sub-env restarts on its own next step."""
    rng = np.random.default_rng(0)
    tasks = sample_tasks(rng, 8, 3)
    actions = rng.integers(0, 4, size=(60, 8))
    kwargs = {"size": 3, "max_episode_steps": 6, "view_radius": 1}
    kwargs["observe_position"] = observe_position
    vec = MazeVectorEnv(8, **kwargs)
    obs, _ = vec.reset(seed=0, options={"tasks": tasks})
    singles = [MazeEnv(**kwargs) for _ in range(8)]
    for env, task, row in zip(singles, tasks, obs, strict=True):
        np.testing.assert_array_equal(env.reset(options={"task": task})[0], row)
    done = np.zeros(8, dtype=bool)
    trial_ends = set()
    for t, step_actions in enumerate(actions):
        obs, rewards, term, trunc, info = vec.step(step_actions)
        for i, env in enumerate(singles):
            if done[i]:  # next-step autoreset: a reset step with reward 0
                expected = (env.reset()[0], 0.0, False, False, False)
            else:
                o, r, te, tr, inf = env.step(int(step_actions[i]))
                expected = (o, r, te, tr, inf["episode_end"])
            np.testing.assert_array_equal(obs[i], expected[0])
            assert (rewards[i], term[i], trunc[i], info["episode_end"][i]) == expected[1:]
        done = term | trunc
        if done.any():
            trial_ends.add(t)
    assert len(trial_ends) > 3 and term.dtype == bool


def test_vector_env_draws_fresh_tasks_after_autoreset():
    vec = MazeVectorEnv(4, size=3, episodes_per_trial=1, max_episode_steps=1)
    _, info = vec.reset(seed=0)
    first = vec.tasks.copy()
    np.testing.assert_array_equal(info["task"], first)
    vec.step(np.zeros(4, dtype=np.int64))
    _, rewards, *_ = vec.step(np.zeros(4, dtype=np.int64))
    assert np.all(rewards == 0) and not np.array_equal(vec.tasks, first)


def test_text_rendering_of_a_hand_made_maze():
    env = MazeEnv(size=3, render_mode="ansi")
    env.reset(options={"task": task_from_text(SNAKE)})
    env.step(RIGHT)
    assert env.render() == ("#######\n#S A  #\n##### #\n#     #\n# #####\n#    G#\n#######")


def test_images_and_paths():
    task = task_from_text(SNAKE)
    env = MazeEnv(size=3, render_mode="rgb_array")
    env.reset(options={"task": task})
    image = env.render()
    assert image.shape == (56, 56, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, maze_image(task, (0, 0)))
    np.testing.assert_array_equal(image[12, 12], (220, 40, 40))  # the agent, at (0, 0)
    paths = [[(0, 0), (0, 1), (0, 2)], [(0, 0), (0, 0), (0, 1)]]
    drawn = draw_paths(task, paths)
    colours = {tuple(c) for c in drawn.reshape(-1, 3)}
    assert {(31, 119, 180), (255, 127, 14)} <= colours
    with pytest.raises(ValueError, match="neighbours"):
        draw_paths(task, [[(0, 0), (1, 1)]])


def _corrupt(key):
    task = task_from_text(SNAKE)
    grid = task[:-2].reshape(7, 7)
    if key == "walls":
        grid[2, 2] = 2
    elif key == "border":
        grid[0, 3] = 0
    elif key == "cell":
        grid[1, 3] = 1
    elif key == "range":
        task[-1] = 9
    elif key == "same":
        task[-1] = task[-2]
    elif key == "unreachable":
        grid[2, 5] = 1
    return task


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("walls", "0 or 1"),
        ("border", "border"),
        ("cell", "cell squares"),
        ("range", r"cells in \[0, 9\)"),
        ("same", "different cells"),
        ("unreachable", "unreachable"),
    ],
)
def test_bad_tasks_are_rejected(key, message):
    with pytest.raises(ValueError, match=message):
        MazeEnv(size=3).set_task(_corrupt(key))
    with pytest.raises(ValueError, match=message):
        MazeVectorEnv(2, size=3).reset(options={"tasks": np.stack([_corrupt(key)] * 2)})


def test_bad_shapes_actions_and_settings_are_rejected():
    task = task_from_text(SNAKE)
    with pytest.raises(ValueError, match="shape"):
        MazeEnv(size=5).set_task(task)
    with pytest.raises(ValueError, match="shape"):
        MazeVectorEnv(3, size=3).set_tasks(np.stack([task] * 2))
    with pytest.raises(ValueError, match="integer"):
        MazeEnv(size=3).set_task(task.astype(float))
    env = MazeEnv(size=3)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(4)
    vec = MazeVectorEnv(2, size=3)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        vec.step(np.array([0, -1]))
    with pytest.raises(ValueError, match="shape"):
        vec.step(np.array([0.0, 1.0]))
    for kwargs, name in [
        ({"size": 1}, "size"),
        ({"episodes_per_trial": 0}, "episodes_per_trial"),
        ({"max_episode_steps": 0}, "max_episode_steps"),
        ({"step_penalty": -0.1}, "step_penalty"),
        ({"view_radius": 0}, "view_radius"),
        ({"observe_position": 1}, "observe_position"),
    ]:
        with pytest.raises(ValueError, match=name):
            MazeVectorEnv(2, **kwargs)
    with pytest.raises(ValueError, match="render_mode"):
        MazeEnv(render_mode="human")


def test_episode_lengths_from_per_step_flags():
    episode_end = np.array([[0, 1, 0, 0, 1, 0], [0, 0, 1, 1, 0, 0]], dtype=bool)
    mask = np.array([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]], dtype=bool)
    np.testing.assert_array_equal(episode_lengths(episode_end, mask, 2), [[2, 3], [3, 1]])


def test_oracle_is_shorter_than_random_and_both_match_the_env():
    tasks = sample_tasks(np.random.default_rng(1), 200, 5)
    oracle = oracle_episode_lengths(tasks)
    random = random_episode_lengths(tasks, seed=0)
    assert oracle.shape == random.shape == (200, 2)
    assert (oracle <= random).all() and oracle.mean() < random.mean() / 2
    assert random.max() == 100  # the default cap, 4 * 5 ** 2
    np.testing.assert_array_equal(random, random_episode_lengths(tasks, seed=0))
    np.testing.assert_array_equal(
        oracle_episode_lengths(tasks, 3, 5), np.minimum(oracle, 5)[:, [0, 0, 1]]
    )


def test_episode_ends_are_recovered_from_a_rollout_worker_batch():
    from metarl.backbones.lstm import LSTMBackbone
    from metarl.policies import RecurrentActorCritic
    from metarl.rollout.worker import RolloutWorker, Shard

    kwargs = {"size": 3, "max_episode_steps": 8}
    worker = RolloutWorker(
        lambda n: MazeVectorEnv(n, **kwargs),
        lambda: RecurrentActorCritic(LSTMBackbone(51 + 4 + 2, 16, hidden_size=8), 4),
    )
    tasks = sample_tasks(np.random.default_rng(2), 6, 3)
    batch = worker.run_trials(Shard(5, 6, tasks))
    env = MazeVectorEnv(6, **kwargs)
    env.reset(seed=5, options={"tasks": tasks})
    ends = [env.step(actions)[4]["episode_end"] for actions in batch["actions"].T]
    expected = np.stack(ends, axis=1) & batch["mask"]
    np.testing.assert_array_equal(rollout_episode_ends(batch), expected)
    lengths = episode_lengths(expected, batch["mask"], 2)
    np.testing.assert_array_equal(lengths.sum(axis=1), batch["mask"].sum(axis=1))
