"""Procedurally generated mazes as a task distribution (Duan et al. 2016; Mishra et al. 2018).

A maze of ``size`` x ``size`` cells (SNAIL's small mazes have 5, its large ones 9) is a perfect
maze, exactly one path between any two cells, carved by a randomized depth-first search. Its
wall grid has side ``2 * size + 1``: cell (r, c) sits at grid square (2r + 1, 2c + 1), the
squares between neighbouring cells are walls (1) or openings (0), and the border is wall.

A *task* is a maze, a start cell and a goal cell, both uniform and distinct. It is encoded as
one integer row: the flattened wall grid, then the start and the goal as cell indices
``r * size + c``; many tasks form one array (num_tasks, (2 * size + 1) ** 2 + 2).

A gymnasium episode is one *trial*: ``episodes_per_trial`` episodes on the same task, so that
an agent can explore in the first and exploit in the next. An episode starts at the start
cell and ends on reaching the goal or after ``max_episode_steps`` steps; the agent is then put
back at the start. The step that ends an episode has ``info["episode_end"]`` set. The trial
terminates when its last episode reaches the goal and is truncated when that one runs out of
steps. Reward: ``-step_penalty`` on every step, plus 1 on the step that reaches the goal.

Actions move one cell: 0 up, 1 right, 2 down, 3 left; a move into a wall leaves the agent in
place. The agent sees a local view: the (2v + 1) x (2v + 1) window of the wall grid centred on
its square (``v = view_radius``, outside the grid is wall), the same window marking the goal's
square if it is in sight, and a flag that is 1 in the observation of an episode's first step
(the agent has just been placed at the start). The observation is ``[walls (row-major), goal
(row-major), first]``, float32 in [0, 1]. With ``observe_position`` a one-hot of the agent's
cell (``size ** 2`` entries, index ``r * size + c``) comes before the flag, standing in for
the landmarks by which an agent in a 3-D maze knows where it is: without it, the place of a
step can only be inferred from the moves and views before it.

Two environments with the same semantics, both stepping one batched core:

- :class:`MazeEnv`, a plain :class:`gymnasium.Env` (passes ``check_env``), rendering as text
  or as an RGB image;
- :class:`MazeVectorEnv`, a :class:`gymnasium.vector.VectorEnv` that steps thousands of
  trials at once in numpy.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from envs.tasks import check_actions, reset_task, reset_tasks

MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))  # (row, column) step of up, right, down, left

WALL_RGB = (40, 40, 40)
FLOOR_RGB = (255, 255, 255)
START_RGB = (160, 200, 255)
GOAL_RGB = (120, 210, 120)
AGENT_RGB = (220, 40, 40)
PATH_RGB = ((31, 119, 180), (255, 127, 14), (148, 103, 189), (140, 86, 75), (23, 190, 207))


def _require_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def default_max_episode_steps(size: int) -> int:
    """The default episode cap, ``4 * size ** 2``: room for a depth-first tour of the whole
    maze (``2 * (size ** 2 - 1)`` moves) twice over."""
    return 4 * size**2


class MazeTask(NamedTuple):
    """A decoded task: the wall grid (2 * size + 1 square, uint8, 1 = wall) and the start and
    goal cells as (row, column)."""

    walls: np.ndarray
    start: tuple[int, int]
    goal: tuple[int, int]


@functools.cache
def _geometry(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per cell and move (n, 4): the flat grid index of the square crossed (a border square,
    always wall, at the edge) and the cell reached (``n``, no cell, at the edge)."""
    side = 2 * size + 1
    rows, cols = np.divmod(np.arange(size * size), size)
    crossed = np.empty((size * size, 4), dtype=np.int64)
    reached = np.empty((size * size, 4), dtype=np.int64)
    for move, (dr, dc) in enumerate(MOVES):
        crossed[:, move] = (2 * rows + 1 + dr) * side + 2 * cols + 1 + dc
        r, c = rows + dr, cols + dc
        inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
        reached[:, move] = np.where(inside, r * size + c, size * size)
    return crossed, reached


def generate_mazes(rng: np.random.Generator, num_mazes: int, size: int) -> np.ndarray:
    """Wall grids (num_mazes, 2 * size + 1, 2 * size + 1), uint8 with 1 = wall, of perfect
    mazes carved by randomized depth-first search from a uniform root.

    Every search carves its ``n - 1`` openings within ``2 * (n - 1)`` moves (a move pushes a
    new cell or pops a finished one, and the root is popped last), so all searches run in
    lock-step, one batched numpy step per move, with no loop over mazes."""
    num_mazes = _require_int("num_mazes", num_mazes, 0)
    size = _require_int("size", size, 2)
    n, side = size * size, 2 * size + 1
    crossed, reached = _geometry(size)
    mazes = np.arange(num_mazes)
    visited = np.zeros((num_mazes, n + 1), dtype=bool)
    visited[:, n] = True  # "no cell" beyond the border counts as visited
    walls = np.ones((num_mazes, side * side), dtype=np.uint8)
    walls.reshape(num_mazes, side, side)[:, 1::2, 1::2] = 0
    stack = np.zeros((num_mazes, n + 1), dtype=np.int64)  # one spare slot: pops write there
    stack[:, 0] = rng.integers(n, size=num_mazes)
    visited[mazes, stack[:, 0]] = True
    depth = np.ones(num_mazes, dtype=np.int64)
    for _ in range(2 * (n - 1)):
        top = stack[mazes, depth - 1]
        free = ~visited[mazes[:, None], reached[top]]
        move = np.where(free, rng.random((num_mazes, 4)), -1.0).argmax(axis=1)
        push = free[mazes, move]
        new = np.where(push, reached[top, move], n)
        visited[mazes, new] = True
        walls[mazes, crossed[top, move]] &= ~push  # a push opens the wall it crosses
        stack[mazes, depth] = new
        depth += np.where(push, 1, -1)
    return walls.reshape(num_mazes, side, side)


def sample_tasks(rng: np.random.Generator, num_tasks: int, size: int) -> np.ndarray:
    """Draw ``num_tasks`` tasks: a maze, then a uniform start and a uniform goal among the other
    cells; int64 of shape (num_tasks, (2 * size + 1) ** 2 + 2)."""
    walls = generate_mazes(rng, num_tasks, size).reshape(num_tasks, -1)
    n = size * size
    start = rng.integers(n, size=num_tasks)
    goal = (start + rng.integers(1, n, size=num_tasks)) % n
    return np.concatenate([walls, start[:, None], goal[:, None]], axis=1).astype(np.int64)


def maze_size(tasks: np.ndarray) -> int:
    """The maze size (cells per side) of task rows with ``(2 * size + 1) ** 2 + 2`` entries."""
    width = np.shape(tasks)[-1] if np.ndim(tasks) else 0
    side = math.isqrt(max(width - 2, 0))
    if side * side != width - 2 or side % 2 == 0 or side < 5:
        raise ValueError(
            f"a task row has (2 * size + 1) ** 2 + 2 entries with size >= 2, got {width}"
        )
    return (side - 1) // 2


def _next_cells(walls: np.ndarray, size: int) -> np.ndarray:
    """The cell each move leads to (num_tasks, n, 4), from flat wall grids (num_tasks, side²)."""
    crossed, reached = _geometry(size)
    stay = np.arange(size * size)[:, None]
    return np.where(walls[:, crossed] == 0, reached, stay)


def _distances(next_cells: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Breadth-first search from ``start`` in every task: steps to each cell (num_tasks, n),
    -1 where unreachable."""
    num_tasks, n, _ = next_cells.shape
    tasks = np.arange(num_tasks)
    dist = np.full((num_tasks, n), -1, dtype=np.int64)
    dist[tasks, start] = 0
    frontier = np.zeros((num_tasks, n), dtype=bool)
    frontier[tasks, start] = True
    for steps in range(1, n):
        task, cell = np.nonzero(frontier)
        frontier = np.zeros_like(frontier)
        frontier[task[:, None], next_cells[task, cell]] = True
        frontier &= dist < 0
        if not frontier.any():
            break
        dist[frontier] = steps
    return dist


def _check_tasks(tasks: np.ndarray, shape: tuple[int | None, ...]) -> np.ndarray:
    """Validate tasks given from outside against ``shape`` (``None``: any length): 0/1 walls,
    a closed border, open cells, start and goal distinct cells with the goal reachable.
    Returns them as int64."""
    array = np.asarray(tasks)
    if array.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(array.shape, shape, strict=True)
    ):
        expected = tuple("any" if want is None else want for want in shape)
        raise ValueError(f"tasks must have shape {expected}, got {array.shape}")
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise ValueError(f"tasks must be an integer array, got dtype {array.dtype}")
    rows = array.reshape(-1, array.shape[-1]).astype(np.int64)
    size = maze_size(rows)
    n, side = size * size, 2 * size + 1
    grids = rows[:, :-2].reshape(-1, side, side)
    border = np.concatenate([grids[:, 0], grids[:, -1], grids[:, :, 0], grids[:, :, -1]], axis=1)
    ends = rows[:, -2:]
    for bad, message in (
        (((grids != 0) & (grids != 1)).any(axis=(1, 2)), "walls must be 0 or 1"),
        ((border != 1).any(axis=1), "the border of the wall grid must be all wall (1)"),
        ((grids[:, 1::2, 1::2] != 0).any(axis=(1, 2)), "cell squares (odd, odd) must be open"),
        (((ends < 0) | (ends >= n)).any(axis=1), f"start and goal must be cells in [0, {n})"),
        (ends[:, 0] == ends[:, 1], "start and goal must be different cells"),
    ):
        if bad.any():
            raise ValueError(f"task {int(np.argmax(bad))}: {message}")
    dist = _distances(_next_cells(rows[:, :-2], size), rows[:, -2])
    unreachable = dist[np.arange(len(rows)), rows[:, -1]] < 0
    if unreachable.any():
        raise ValueError(f"task {int(np.argmax(unreachable))}: the goal is unreachable")
    return rows.reshape(array.shape)


def encode_task(walls: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> np.ndarray:
    """The task row of a wall grid (2 * size + 1 square, 1 = wall) and (row, column) cells."""
    walls = np.asarray(walls)
    size = (walls.shape[0] - 1) // 2
    ends = [start[0] * size + start[1], goal[0] * size + goal[1]]
    return _check_tasks(np.append(walls.reshape(-1), ends), (None,))


def decode_task(task: np.ndarray) -> MazeTask:
    """The wall grid, start cell and goal cell of a (validated) task row."""
    task = _check_tasks(task, (None,))
    size = maze_size(task)
    walls = task[:-2].reshape(2 * size + 1, -1).astype(np.uint8)
    start, goal = divmod(int(task[-2]), size), divmod(int(task[-1]), size)
    return MazeTask(walls, start, goal)


def shortest_path_lengths(tasks: np.ndarray) -> np.ndarray:
    """Steps from start to goal along the shortest path, by breadth-first search, for task
    rows (num_tasks, D): the oracle's episode length."""
    tasks = _check_tasks(tasks, (None, None))
    dist = _distances(_next_cells(tasks[:, :-2], maze_size(tasks)), tasks[:, -2])
    return dist[np.arange(len(tasks)), tasks[:, -1]]


def shortest_path_length(task: np.ndarray) -> int:
    """Steps from start to goal along the shortest path of one task row."""
    return int(shortest_path_lengths(np.asarray(task)[None])[0])


def maze_text(task: np.ndarray, position: tuple[int, int] | None = None) -> str:
    """The maze as text, one line per grid row: walls ``#``, start ``S``, goal ``G`` and, if
    given, the agent's cell ``A``."""
    walls, start, goal = decode_task(task)
    chars = np.where(walls == 1, "#", " ")
    for cell, char in ((start, "S"), (goal, "G"), (position, "A")):
        if cell is not None:
            chars[2 * cell[0] + 1, 2 * cell[1] + 1] = char
    return "\n".join("".join(line) for line in chars)


def maze_image(
    task: np.ndarray, position: tuple[int, int] | None = None, scale: int = 8
) -> np.ndarray:
    """The maze as an RGB image, ``scale`` pixels per grid square: walls dark, start blue,
    goal green and, if given, the agent's cell red. uint8 (side * scale, side * scale, 3)."""
    scale = _require_int("scale", scale, 1)
    walls, start, goal = decode_task(task)
    squares = np.where(walls[..., None] == 1, WALL_RGB, FLOOR_RGB).astype(np.uint8)
    for cell, colour in ((start, START_RGB), (goal, GOAL_RGB), (position, AGENT_RGB)):
        if cell is not None:
            squares[2 * cell[0] + 1, 2 * cell[1] + 1] = colour
    return squares.repeat(scale, axis=0).repeat(scale, axis=1)


def draw_paths(
    task: np.ndarray, paths: Sequence[Sequence[tuple[int, int]]], scale: int = 8
) -> np.ndarray:
    """:func:`maze_image` with each path drawn as a line through its cells, one colour per
    path (side by side where they overlap), e.g. a trial's episodes to compare exploring and
    exploiting. A path is a list of (row, column) cells, each the same as or a neighbour of
    the one before."""
    image = maze_image(task, scale=scale)
    size = maze_size(np.asarray(task))
    width = max(scale // 4, 1)
    for k, path in enumerate(paths):
        cells = np.asarray(path, dtype=np.int64).reshape(-1, 2)
        if ((cells < 0) | (cells >= size)).any():
            raise ValueError(f"path {k}: cells must lie in [0, {size}) x [0, {size})")
        if (np.abs(np.diff(cells, axis=0)).sum(axis=1) > 1).any():
            raise ValueError(f"path {k}: consecutive cells must be the same or neighbours")
        low = scale // 2 - len(paths) * width // 2 + k * width  # this path's lane in a square
        centres = (2 * cells + 1) * scale + low
        colour = PATH_RGB[k % len(PATH_RGB)]
        previous = np.concatenate([centres[:1], centres[:-1]])  # the first cell is a dot
        for (y0, x0), (y1, x1) in zip(previous, centres, strict=True):
            image[min(y0, y1) : max(y0, y1) + width, min(x0, x1) : max(x0, x1) + width] = colour
    return image


class _Trials:
    """A batch of maze trials: tasks, agents and the dynamics both environments step.

    Args are those of :class:`MazeEnv`, plus ``num`` trials."""

    def __init__(
        self,
        num: int,
        size: int,
        episodes_per_trial: int,
        max_episode_steps: int | None,
        step_penalty: float,
        view_radius: int,
        observe_position: bool,
    ) -> None:
        self.num = _require_int("num_envs", num, 1)
        self.size = _require_int("size", size, 2)
        self.episodes_per_trial = _require_int("episodes_per_trial", episodes_per_trial, 1)
        if max_episode_steps is None:
            max_episode_steps = default_max_episode_steps(self.size)
        self.max_episode_steps = _require_int("max_episode_steps", max_episode_steps, 1)
        if not (isinstance(step_penalty, (int, float, np.number)) and 0 <= step_penalty < 1):
            raise ValueError(f"step_penalty must be a number in [0, 1), got {step_penalty!r}")
        self.step_penalty = float(step_penalty)
        self.view_radius = _require_int("view_radius", view_radius, 1)
        if not isinstance(observe_position, (bool, np.bool_)):
            raise ValueError(f"observe_position must be True or False, got {observe_position!r}")
        self.observe_position = bool(observe_position)
        self.width = (self.size * 2 + 1) ** 2 + 2  # entries of a task row
        side, v = 2 * self.size + 1, self.view_radius
        window = 2 * v + 1
        self._padded = side + 2 * v  # the wall grid with ``v`` squares of wall around it
        rows, cols = np.divmod(np.arange(self.size**2), self.size)
        # flat index, in the padded grid, of each cell's window's top-left square, and of
        # each square of a window relative to its top-left one
        self._corner = (2 * rows + 1) * self._padded + 2 * cols + 1
        self._window = (np.arange(window)[:, None] * self._padded + np.arange(window)).ravel()
        cells = self.size**2 if self.observe_position else 0
        self.observation_space = spaces.Box(
            0.0, 1.0, shape=(2 * window * window + cells + 1,), dtype=np.float32
        )
        self._index = np.arange(self.num)
        self._walls = np.ones((self.num, self._padded**2), dtype=np.uint8)
        self._next = np.zeros((self.num, self.size**2, 4), dtype=np.int64)
        self.start = np.zeros(self.num, dtype=np.int64)
        self.goal = np.zeros(self.num, dtype=np.int64)
        self.position = np.zeros(self.num, dtype=np.int64)
        self._steps = np.zeros(self.num, dtype=np.int64)
        self._episodes = np.zeros(self.num, dtype=np.int64)
        self._first = np.ones(self.num, dtype=bool)

    @property
    def max_trial_steps(self) -> int:
        """Steps in the longest trial."""
        return self.episodes_per_trial * self.max_episode_steps

    def load(self, index: np.ndarray, tasks: np.ndarray) -> None:
        """Start new trials of validated ``tasks`` (k, width) in slots ``index`` (k,)."""
        side, v = 2 * self.size + 1, self.view_radius
        padded = np.ones((len(index), self._padded, self._padded), dtype=np.uint8)
        padded[:, v : v + side, v : v + side] = tasks[:, :-2].reshape(-1, side, side)
        self._walls[index] = padded.reshape(len(index), -1)
        self._next[index] = _next_cells(tasks[:, :-2], self.size)
        self.start[index], self.goal[index] = tasks[:, -2], tasks[:, -1]
        self.position[index] = tasks[:, -2]
        self._steps[index] = 0
        self._episodes[index] = 0
        self._first[index] = True

    def observe(self) -> np.ndarray:
        """Observations (num, obs_size): wall window, goal window, the position's one-hot if
        observed, first-step flag."""
        v = self.view_radius
        area = (2 * v + 1) ** 2
        obs = np.zeros((self.num, *self.observation_space.shape), dtype=np.float32)
        squares = (self._index * self._padded**2 + self._corner[self.position])[:, None]
        obs[:, :area] = self._walls.reshape(-1)[squares + self._window]
        # the goal's square relative to the window's top-left one
        dy, dx = np.divmod(self.goal, self.size)
        y, x = np.divmod(self.position, self.size)
        dy, dx = 2 * (dy - y) + v, 2 * (dx - x) + v
        seen = (dy >= 0) & (dy <= 2 * v) & (dx >= 0) & (dx <= 2 * v)
        obs[self._index[seen], area + dy[seen] * (2 * v + 1) + dx[seen]] = 1.0
        if self.observe_position:
            obs[self._index, 2 * area + self.position] = 1.0
        obs[:, -1] = self._first
        return obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Move every agent; return rewards, terminated, truncated and episode ends (num,)."""
        moved = self._next[self._index, self.position, actions]
        self._steps += 1
        reached = moved == self.goal
        episode_end = reached | (self._steps >= self.max_episode_steps)
        self._episodes += episode_end
        self.position = np.where(episode_end, self.start, moved)
        self._steps = np.where(episode_end, 0, self._steps)
        self._first = episode_end.copy()  # the caller may edit what it is given
        trial_end = episode_end & (self._episodes >= self.episodes_per_trial)
        rewards = reached - self.step_penalty
        return rewards, trial_end & reached, trial_end & ~reached, episode_end


class MazeEnv(gym.Env):
    """One maze task; an episode is a trial of ``episodes_per_trial`` episodes on it.

    Args:
        size: cells per side of the maze (SNAIL: 5 small, 9 large).
        episodes_per_trial: episodes per trial, each from the start cell.
        max_episode_steps: steps after which an episode is cut short; ``None`` for
            :func:`default_max_episode_steps` (``4 * size ** 2``).
        step_penalty: reward lost per step, in [0, 1); reaching the goal adds 1.
        view_radius: half-width v of the (2v + 1)-square view of the wall grid, in squares.
        observe_position: add the one-hot of the agent's cell to the observation.
        render_mode: ``"ansi"`` (text) or ``"rgb_array"`` (8 pixels per grid square).

    A new task is drawn from ``self.np_random`` at every reset, unless one was fixed with
    :meth:`set_task` or passed as ``reset(options={"task": row})``. :attr:`position` is the
    agent's cell, for recording paths.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        size: int = 5,
        episodes_per_trial: int = 2,
        max_episode_steps: int | None = None,
        step_penalty: float = 0.01,
        view_radius: int = 2,
        observe_position: bool = False,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None, 'ansi' or 'rgb_array', got {render_mode!r}"
            )
        self.render_mode = render_mode
        self._trials = _Trials(
            1,
            size,
            episodes_per_trial,
            max_episode_steps,
            step_penalty,
            view_radius,
            observe_position,
        )
        self.size = self._trials.size
        self.episodes_per_trial = self._trials.episodes_per_trial
        self.max_episode_steps = self._trials.max_episode_steps
        self.observation_space = self._trials.observation_space
        self.action_space = spaces.Discrete(4)
        self._fixed_task: np.ndarray | None = None
        self.task: np.ndarray | None = None

    @property
    def max_trial_steps(self) -> int:
        """Steps in the longest trial."""
        return self._trials.max_trial_steps

    @property
    def position(self) -> tuple[int, int]:
        """The agent's cell (row, column)."""
        return divmod(int(self._trials.position[0]), self.size)

    def sample_tasks(self, num_tasks: int) -> np.ndarray:
        """Draw tasks from this environment's random generator."""
        return sample_tasks(self.np_random, num_tasks, self.size)

    def set_task(self, task: np.ndarray | None) -> None:
        """Fix the task row used from the next reset on (``None``: sample at each reset)."""
        self._fixed_task = None if task is None else _check_tasks(task, (self._trials.width,))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        reset_task(self, seed, options)
        self._trials.load(np.zeros(1, dtype=np.int64), self.task[None])
        return self._trials.observe()[0], {"task": self.task.copy()}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.task is None:
            raise gym.error.ResetNeeded("call reset before step")
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}: 0 up, 1 right, 2 down or 3 left")
        rewards, terminated, truncated, episode_end = self._trials.step(np.array([int(action)]))
        info = {"episode_end": bool(episode_end[0])}
        obs = self._trials.observe()[0]
        return obs, float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info

    def render(self) -> str | np.ndarray | None:
        if self.task is None:
            raise gym.error.ResetNeeded("call reset before render")
        if self.render_mode == "ansi":
            return maze_text(self.task, self.position)
        if self.render_mode == "rgb_array":
            return maze_image(self.task, self.position)
        return None


class MazeVectorEnv(VectorEnv):
    """``num_envs`` maze trials stepped together in numpy.

    Semantics equal ``num_envs`` copies of :class:`MazeEnv` under gymnasium's next-step
    autoreset: trials end at different steps, and each sub-environment starts its next trial
    on its own next step (reward 0, no episode end), with its fixed task or a fresh one.

    Args:
        num_envs: trials stepped at once.
        size, episodes_per_trial, max_episode_steps, step_penalty, view_radius,
            observe_position: as for :class:`MazeEnv`.

    Fresh tasks come from ``self.np_random``, generated ``num_envs`` at a time and handed out
    as trials end: maze generation is batched, so one big batch costs about what a single
    maze does. A reset discards tasks drawn ahead, so ``reset(seed=s)`` reproduces them.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int,
        size: int = 5,
        episodes_per_trial: int = 2,
        max_episode_steps: int | None = None,
        step_penalty: float = 0.01,
        view_radius: int = 2,
        observe_position: bool = False,
    ) -> None:
        self._trials = _Trials(
            num_envs,
            size,
            episodes_per_trial,
            max_episode_steps,
            step_penalty,
            view_radius,
            observe_position,
        )
        self.num_envs, self.size = self._trials.num, self._trials.size
        self.episodes_per_trial = self._trials.episodes_per_trial
        self.max_episode_steps = self._trials.max_episode_steps
        self.single_observation_space = self._trials.observation_space
        self.single_action_space = spaces.Discrete(4)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._fixed_tasks: np.ndarray | None = None
        self.tasks = np.zeros((self.num_envs, self._trials.width), dtype=np.int64)
        self._ahead = self.tasks[:0]  # tasks drawn ahead, not yet used
        self._needs_reset = np.ones(self.num_envs, dtype=bool)

    @property
    def max_trial_steps(self) -> int:
        """Steps in the longest trial."""
        return self._trials.max_trial_steps

    def sample_tasks(self, num_tasks: int) -> np.ndarray:
        """Draw tasks from this environment's random generator."""
        return sample_tasks(self.np_random, num_tasks, self.size)

    def set_tasks(self, tasks: np.ndarray | None) -> None:
        """Fix the task rows, shape (num_envs, width), from the next reset on (``None``:
        fresh tasks at every trial)."""
        shape = (self.num_envs, self._trials.width)
        self._fixed_tasks = None if tasks is None else _check_tasks(tasks, shape)

    def _new_trials(self, index: np.ndarray) -> None:
        if self._fixed_tasks is not None:
            tasks = self._fixed_tasks[index]
        else:
            if len(self._ahead) < len(index):
                fresh = self.sample_tasks(max(len(index), self.num_envs))
                self._ahead = np.concatenate([self._ahead, fresh])
            tasks, self._ahead = self._ahead[: len(index)], self._ahead[len(index) :]
        self.tasks[index] = tasks
        self._trials.load(index, tasks)
        self._needs_reset[index] = False

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        reset_tasks(self, seed, options)
        self._ahead = self.tasks[:0]
        self._new_trials(np.arange(self.num_envs))
        return self._trials.observe(), {"task": self.tasks.copy()}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = check_actions(actions, self.num_envs, 4, ": 0 up, 1 right, 2 down, 3 left")
        resetting = np.flatnonzero(self._needs_reset)
        rewards, terminated, truncated, episode_end = self._trials.step(actions)
        if resetting.size:  # next-step autoreset: these start a new trial instead of moving
            self._new_trials(resetting)
            for flags in (terminated, truncated, episode_end):
                flags[resetting] = False
            rewards[resetting] = 0.0
        self._needs_reset = terminated | truncated
        info = {"episode_end": episode_end}
        return self._trials.observe(), rewards, terminated, truncated, info
