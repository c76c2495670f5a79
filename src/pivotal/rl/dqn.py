"""The DQN agent (seed 000's network), read top to bottom like cleanrl's ``dqn.py``.

Config → network → agent → one visible training loop (:func:`train_dqn`), importable and
tested. The loop works with any vector environment with the Gymnasium batch API whose
observation space is a ``Box`` of shape ``(frames, features)`` and whose action space is
``Discrete(n)``: ``reset(seed=) -> (obs, infos)``, ``step(actions) -> (obs, rewards,
terminated, truncated, infos)``, auto-resetting finished episodes in either of Gymnasium's
modes (``NextStep``: the step after an episode's end is a reset step, skipped here;
``SameStep``: the real last observation is in ``infos["final_obs"]``).

Extensions over the plain DQN: double-DQN targets, n-step returns, prioritized replay
(β annealed to 1 over the run), dueling heads, Huber loss, gradient clipping, hard or Polyak
target updates. One *step* is one environment transition: a vector env of ``N`` environments
advances ``N`` steps per iteration.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from pydantic import Field
from torch import nn

from pivotal.config.models import StrictModel
from pivotal.core.symbols import Symbol
from pivotal.core.types import ModelOutput
from pivotal.rl.replay import NStepAccumulator, PrioritizedReplayBuffer
from pivotal.training.checkpoint_manager import CheckpointManager
from pivotal.training.checkpoints import read_checkpoint, save_checkpoint
from pivotal.training.config import TrainingConfig
from pivotal.training.trainer import set_seed

__all__ = [
    "DQNAgent",
    "DQNConfig",
    "DQNHistory",
    "DQNResult",
    "QNetwork",
    "default_action_names",
    "dqn_targets",
    "linear_schedule",
    "train_dqn",
]

logger = logging.getLogger(__name__)
MODEL_NAME = "dqn"


class DQNConfig(StrictModel):
    """DQN hyperparameters. Counts of steps are environment transitions (all envs summed)."""

    total_steps: int = Field(default=500_000, ge=1, description="Environment steps to train")
    learning_rate: float = Field(default=1e-4, gt=0, description="Adam learning rate")
    gamma: float = Field(default=0.99, ge=0, le=1, description="Discount per step")
    batch_size: int = Field(default=64, ge=1, description="Transitions per gradient step")
    buffer_size: int = Field(default=50_000, ge=1, description="Replay capacity (transitions)")
    learning_starts: int = Field(default=5_000, ge=0, description="Steps before learning")
    train_frequency: int = Field(
        default=4, ge=1, description="Env steps per update: replay ratio independent of N envs"
    )
    gradient_steps: int = Field(default=1, ge=1, description="Gradient steps per update")
    target_update: Literal["hard", "polyak"] = "hard"
    target_update_interval: int = Field(
        default=1_000, ge=1, description="Gradient steps between hard target copies"
    )
    tau: float = Field(default=0.005, gt=0, le=1, description="Polyak rate per gradient step")
    double_dqn: bool = Field(default=True, description="Online net picks, target net values")
    n_step: int = Field(default=3, ge=1, description="Rewards summed before bootstrapping")
    prioritized: bool = Field(default=True, description="Proportional prioritized replay")
    alpha: float = Field(default=0.6, ge=0, description="Priority exponent")
    beta_start: float = Field(default=0.4, ge=0, le=1, description="IS exponent, annealed to 1")
    epsilon_start: float = Field(default=1.0, ge=0, le=1)
    epsilon_end: float = Field(default=0.05, ge=0, le=1)
    exploration_fraction: float = Field(
        default=0.2, gt=0, le=1, description="Share of total_steps over which ε falls linearly"
    )
    max_grad_norm: float = Field(default=10.0, gt=0, description="Global gradient-norm clip")
    hidden: int = Field(default=384, ge=1, description="Network width (seed 000: 384)")
    heads: int = Field(default=4, ge=1, description="Attention heads; must divide hidden")
    seed: int = Field(default=0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="auto: CUDA when available, else CPU"
    )


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available; asking for ``cuda`` without it raises ``ValueError``."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available; use 'auto' or 'cpu'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def linear_schedule(start: float, end: float, duration: int, step: int) -> float:
    """``start`` → ``end`` linearly over ``duration`` steps, then ``end``."""
    return end + (start - end) * max(0.0, 1.0 - step / max(duration, 1))


def default_action_names(n_actions: int) -> tuple[str, ...]:
    """The trading env's names for ``Discrete(4)``; ``ACTION_i`` otherwise."""
    if n_actions == 4:
        return ("HOLD", "BUY", "SELL", "CLOSE")
    return tuple(f"ACTION_{i}" for i in range(n_actions))


class QNetwork(nn.Module):
    """Seed 000's DQN: Linear(features → hidden) → ReLU → 2-layer LSTM → 4-head attention →
    Linear → ReLU → dueling heads ``Q = V + A − mean(A)``.

    Input ``(batch, frames, features)``, oldest frame first. The attention reads the LSTM
    outputs of all frames with the *last* frame as query (the newest state asks what in the
    window matters); its output is added to that frame's LSTM output (residual) and gives
    the pooled ``features`` ``(batch, hidden)``.
    """

    def __init__(
        self, frames: int, features: int, n_actions: int, hidden: int = 384, heads: int = 4
    ) -> None:
        super().__init__()
        for name, value in (("frames", frames), ("features", features), ("hidden", hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if n_actions < 2:
            raise ValueError(f"n_actions must be >= 2, got {n_actions}")
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.frames, self.features, self.n_actions = frames, features, n_actions
        self.hidden, self.heads = hidden, heads
        self.embed = nn.Sequential(nn.Linear(features, hidden), nn.ReLU())
        self.lstm = nn.LSTM(hidden, hidden, num_layers=2, batch_first=True)
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU())
        self.value = nn.Linear(hidden, 1)
        self.advantage = nn.Linear(hidden, n_actions)

    def config(self) -> dict[str, Any]:
        """Arguments that rebuild this network (stored in checkpoints)."""
        return {
            "shape": {"frames": self.frames, "features": self.features},
            "targets": {"n_actions": self.n_actions},
            "hyperparameters": {"hidden": self.hidden, "heads": self.heads},
        }

    def forward_with_hidden(
        self, obs: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(Q (batch, n_actions), {"value": (batch,), "advantages", "features"})``."""
        if obs.dim() != 3 or tuple(obs.shape[1:]) != (self.frames, self.features):
            raise ValueError(
                f"observations must have shape (batch, {self.frames}, {self.features}), got "
                f"{tuple(obs.shape)}"
            )
        h, _ = self.lstm(self.embed(obs))
        last = h[:, -1:, :]
        attended, _ = self.attention(last, h, h, need_weights=False)
        pooled = (last + attended).squeeze(1)
        z = self.head(pooled)
        value = self.value(z)
        advantages = self.advantage(z)
        q = value + advantages - advantages.mean(dim=1, keepdim=True)
        return q, {"value": value.squeeze(1), "advantages": advantages, "features": pooled}

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward_with_hidden(obs)[0]


def dqn_targets(
    rewards: torch.Tensor,
    discounts: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None = None,
) -> torch.Tensor:
    """TD targets ``reward + discount · Q_target(s', a*)`` (``discount`` = γ^k or 0).

    Double DQN (``next_q_online`` given): ``a* = argmax_a Q_online(s', a)``; otherwise
    ``a* = argmax_a Q_target(s', a)`` (plain DQN).
    """
    chooser = next_q_target if next_q_online is None else next_q_online
    best = chooser.argmax(dim=1, keepdim=True)
    return rewards + discounts * next_q_target.gather(1, best).squeeze(1)


class DQNAgent:
    """The online network with what is needed to act, explain itself, and be saved."""

    def __init__(
        self,
        network: QNetwork,
        config: DQNConfig,
        action_names: Sequence[str] | None = None,
    ) -> None:
        self.network = network
        self.config = config
        self.action_names = tuple(action_names or default_action_names(network.n_actions))
        if len(self.action_names) != network.n_actions:
            raise ValueError(
                f"{len(self.action_names)} action names for {network.n_actions} actions"
            )

    @property
    def observation_shape(self) -> tuple[int, int]:
        return (self.network.frames, self.network.features)

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device

    def _tensor(self, obs_batch: npt.ArrayLike) -> torch.Tensor:
        obs = np.asarray(obs_batch, dtype=np.float32)
        if obs.ndim != 3 or obs.shape[1:] != self.observation_shape:
            frames, features = self.observation_shape
            raise ValueError(
                f"observations must have shape (batch, {frames}, {features}), got {obs.shape}; "
                "the agent was trained on another observation shape"
            )
        if not np.isfinite(obs).all():
            raise ValueError(
                "observations contain NaN or infinity; fill or drop warm-up frames before acting"
            )
        return torch.as_tensor(obs, device=self.device)

    @torch.no_grad()
    def q_values(self, obs_batch: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """Q-values ``(batch, n_actions)`` for observations ``(batch, frames, features)``."""
        return self.network(self._tensor(obs_batch)).cpu().numpy()

    def act(
        self,
        obs_batch: npt.ArrayLike,
        epsilon: float = 0.0,
        rng: np.random.Generator | None = None,
    ) -> npt.NDArray[np.int64]:
        """ε-greedy actions ``(batch,)``; greedy (deterministic) when ``epsilon`` is 0."""
        greedy = self.q_values(obs_batch).argmax(axis=1).astype(np.int64)
        if epsilon <= 0.0:
            return greedy
        rng = rng if rng is not None else np.random.default_rng()
        explore = rng.random(len(greedy)) < epsilon
        random_actions = rng.integers(0, self.network.n_actions, size=len(greedy))
        return np.where(explore, random_actions, greedy)

    def output(self, obs: npt.ArrayLike, *, symbol: Symbol | str, timestamp: int) -> ModelOutput:
        """Seed 003's RL output for one observation ``(frames, features)``.

        ``confidence`` is the softmax of the Q-values at the chosen (greedy) action;
        ``expected_reward`` is ``max Q`` (discounted return, in reward units); ``timestamp``
        is UTC milliseconds; ``symbol`` a :class:`Symbol` or its ccxt text (``BTC/USDT``).
        """
        return self.outputs(np.asarray(obs)[None], symbol=symbol, timestamps=[timestamp])[0]

    @torch.inference_mode()
    def outputs(
        self, obs_batch: npt.ArrayLike, *, symbol: Symbol | str, timestamps: Sequence[int]
    ) -> list[ModelOutput]:
        """:meth:`output` for a batch ``(batch, frames, features)``, one network pass."""
        q, hidden = self.network.forward_with_hidden(self._tensor(obs_batch))
        qs = q.cpu().numpy().astype(float)
        probs = torch.softmax(q, dim=1).cpu().numpy().astype(float)
        values = hidden["value"].cpu().numpy().astype(float)
        advantages = hidden["advantages"].cpu().numpy().astype(float)
        features = hidden["features"].cpu().numpy().astype(float)
        sym = Symbol.parse(symbol)
        names = self.action_names
        metadata = {"hidden": self.network.hidden, "n_step": self.config.n_step}
        out = []
        for k, timestamp in enumerate(timestamps):
            qv, pv = qs[k], probs[k]
            best = int(qv.argmax())
            out.append(
                ModelOutput(
                    model_type="rl",
                    model_name=MODEL_NAME,
                    symbol=sym,
                    timestamp=int(timestamp),
                    confidence=float(min(1.0, max(0.0, pv[best]))),
                    predictions={
                        "action": names[best],
                        "action_confidence": float(pv[best]),
                        "q_values": dict(zip(names, qv.tolist(), strict=True)),
                        "probabilities": dict(zip(names, pv.tolist(), strict=True)),
                        "expected_reward": float(qv[best]),
                    },
                    hidden_states={
                        "value": float(values[k]),
                        "advantages": advantages[k].tolist(),
                        "features": features[k].tolist(),
                    },
                    metadata=dict(metadata),
                )
            )
        return out

    # persistence ---------------------------------------------------------------------------

    def _save_kwargs(self) -> dict[str, Any]:
        cfg = self.config
        training = TrainingConfig(
            epochs=1,
            batch_size=cfg.batch_size,
            optimizer="adam",
            lr=cfg.learning_rate,
            grad_clip_norm=cfg.max_grad_norm,
            seed=cfg.seed,
            device=cfg.device,
            early_stopping_patience=None,
            progress=False,
        )
        pipeline = {
            "kind": "dqn",
            "dqn_config": cfg.model_dump(mode="json"),
            "observation_shape": list(self.observation_shape),
            "action_names": list(self.action_names),
        }
        return {"training_config": training, "pipeline": pipeline, "model_name": MODEL_NAME}

    def save(self, path: str | Path, *, metrics: dict[str, Any] | None = None) -> Path:
        """Atomically write a pivotal checkpoint (weights, DQN config, shape, action names)."""
        ckpt = save_checkpoint(path, model=self.network, metrics=metrics, **self._save_kwargs())
        return ckpt.path

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        observation_shape: tuple[int, int] | None = None,
        device: str = "cpu",
    ) -> DQNAgent:
        """Rebuild a saved agent; ``observation_shape`` (if given) must match the saved one."""
        ckpt = read_checkpoint(path)
        pipeline = ckpt.pipeline or {}
        if pipeline.get("kind") != "dqn":
            raise ValueError(f"{path} is a {ckpt.model_name!r} checkpoint, not a DQN agent")
        saved_shape = tuple(pipeline["observation_shape"])
        if observation_shape is not None and tuple(observation_shape) != saved_shape:
            raise ValueError(
                f"{path} was trained on observations of shape {saved_shape} (frames, features), "
                f"not {tuple(observation_shape)}; build the environment with the same frames "
                "and features, or train a new agent"
            )
        config = DQNConfig.model_validate(pipeline["dqn_config"])
        names = tuple(pipeline["action_names"])
        network = QNetwork(*saved_shape, len(names), hidden=config.hidden, heads=config.heads)
        state = torch.load(Path(path), map_location="cpu", weights_only=True)["model_state"]
        network.load_state_dict(state)
        network.to(resolve_device(device)).eval()
        return cls(network, config, names)


@dataclass
class DQNHistory:
    """What happened during training; steps are environment steps."""

    episode_steps: list[int] = field(default_factory=list)
    episode_returns: list[float] = field(default_factory=list)
    loss_steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    eval_returns: list[float] = field(default_factory=list)


@dataclass
class DQNResult:
    """The final agent, the best checkpoint (by validation return) and the history."""

    agent: DQNAgent
    best_path: Path | None
    best_val_return: float | None
    history: DQNHistory
    steps: int
    gradient_steps: int
    steps_per_second: float


def _autoreset_next_step(envs: Any) -> bool:
    """True when finished episodes reset on the *next* step (Gymnasium's default)."""
    mode = getattr(envs, "metadata", {}).get("autoreset_mode")
    mode = getattr(mode, "value", mode)
    if mode == "Disabled":
        raise ValueError("the vector env must auto-reset; build it with an autoreset mode")
    return mode == "NextStep"


def _final_obs(infos: dict[str, Any], i: int) -> np.ndarray | None:
    for key in ("final_obs", "final_observation"):
        mask = infos.get(f"_{key}")
        if key in infos and (mask is None or mask[i]) and infos[key][i] is not None:
            return np.asarray(infos[key][i], dtype=np.float32)
    return None


def train_dqn(
    envs: Any,
    config: DQNConfig,
    *,
    eval_fn: Callable[[DQNAgent], float] | None = None,
    eval_every: int = 10_000,
    log_dir: Path | None = None,
    checkpoints: CheckpointManager | None = None,
    progress: bool = False,
) -> DQNResult:
    """Train a DQN agent on the vector env ``envs`` for ``config.total_steps`` steps.

    ``eval_fn(agent) -> return`` runs every ``eval_every`` steps and at the end; each result
    is offered to ``checkpoints`` (metric ``"val_return"``, mode ``"max"``), which keeps the
    best N. TensorBoard scalars go to ``log_dir`` when given.
    """
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    if checkpoints is not None and (checkpoints.metric, checkpoints.mode) != ("val_return", "max"):
        raise ValueError(
            "the CheckpointManager must rank by metric='val_return' with mode='max', got "
            f"{checkpoints.metric!r} ({checkpoints.mode})"
        )
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    if len(obs_space.shape) != 2 or not hasattr(act_space, "n"):
        raise ValueError(
            f"need observations (frames, features) and Discrete actions, got {obs_space} "
            f"and {act_space}"
        )
    set_seed(config.seed, deterministic=False)
    device = resolve_device(config.device)
    rng = np.random.default_rng(config.seed)
    n_envs, n_actions = int(envs.num_envs), int(act_space.n)
    frames, features = (int(s) for s in obs_space.shape)

    online = QNetwork(frames, features, n_actions, config.hidden, config.heads).to(device)
    target = QNetwork(frames, features, n_actions, config.hidden, config.heads).to(device)
    target.load_state_dict(online.state_dict())
    target.requires_grad_(False)
    optimizer = torch.optim.Adam(online.parameters(), lr=config.learning_rate)
    agent = DQNAgent(online, config)
    buffer = PrioritizedReplayBuffer(
        config.buffer_size,
        (frames, features),
        prioritized=config.prioritized,
        alpha=config.alpha,
        seed=config.seed,
    )
    accumulators = [NStepAccumulator(config.n_step, config.gamma) for _ in range(n_envs)]
    next_step_reset = _autoreset_next_step(envs)
    writer = None
    if log_dir is not None:
        from torch.utils.tensorboard import SummaryWriter  # slow import: only when logging

        writer = SummaryWriter(log_dir=str(log_dir))

    history = DQNHistory()
    best_val: float | None = None
    obs, _ = envs.reset(seed=config.seed)
    obs = np.asarray(obs, dtype=np.float32)
    resetting = np.zeros(n_envs, dtype=bool)  # NextStep mode: this env's next step is a reset
    episode_return = np.zeros(n_envs)
    exploration_steps = int(config.exploration_fraction * config.total_steps)
    iterations = math.ceil(config.total_steps / n_envs)
    global_step = grad_steps = 0
    loss_sum, q_sum, loss_count = 0.0, 0.0, 0
    next_eval = eval_every
    next_train = max(config.learning_starts, 1)
    start = time.perf_counter()

    for iteration in range(1, iterations + 1):
        # --- act and store ------------------------------------------------------------------
        epsilon = linear_schedule(
            config.epsilon_start, config.epsilon_end, exploration_steps, global_step
        )
        actions = agent.act(obs, epsilon, rng)
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        next_obs = np.asarray(next_obs, dtype=np.float32)
        global_step += n_envs
        for i in range(n_envs):
            if resetting[i]:  # the step that reset env i: not a transition
                resetting[i] = False
                continue
            done = bool(terminated[i] or truncated[i])
            real_next = next_obs[i]
            if done and not next_step_reset:
                final = _final_obs(infos, i)
                real_next = final if final is not None else real_next
            for tr in accumulators[i].push(
                obs[i], int(actions[i]), float(rewards[i]), real_next, bool(terminated[i]), done
            ):
                buffer.add(tr)
            episode_return[i] += float(rewards[i])
            if done:
                history.episode_steps.append(global_step)
                history.episode_returns.append(float(episode_return[i]))
                if writer is not None:
                    writer.add_scalar("episode/return", episode_return[i], global_step)
                episode_return[i] = 0.0
                resetting[i] = next_step_reset
        obs = next_obs

        # --- learn ----------------------------------------------------------------------------
        updates = 0
        while global_step >= next_train:  # one update per train_frequency env steps
            updates += config.gradient_steps
            next_train += config.train_frequency
        if updates and len(buffer) >= config.batch_size:  # else skipped: buffer too small
            beta = linear_schedule(config.beta_start, 1.0, config.total_steps, global_step)
            for _ in range(updates):
                batch = buffer.sample(config.batch_size, beta)
                b_obs = torch.as_tensor(batch.obs, device=device)
                b_next = torch.as_tensor(batch.next_obs, device=device)
                with torch.no_grad():
                    td_target = dqn_targets(
                        torch.as_tensor(batch.rewards, device=device),
                        torch.as_tensor(batch.discounts, device=device),
                        target(b_next),
                        online(b_next) if config.double_dqn else None,
                    )
                b_actions = torch.as_tensor(batch.actions, device=device)
                q = online(b_obs).gather(1, b_actions[:, None]).squeeze(1)
                td_error = td_target - q
                weights = torch.as_tensor(batch.weights, device=device)
                loss = (
                    weights * nn.functional.smooth_l1_loss(q, td_target, reduction="none")
                ).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(online.parameters(), config.max_grad_norm)
                optimizer.step()
                buffer.update_priorities(batch.indices, td_error.detach().abs().cpu().numpy())
                grad_steps += 1
                if config.target_update == "polyak":
                    with torch.no_grad():
                        for p_t, p_o in zip(target.parameters(), online.parameters(), strict=True):
                            p_t.lerp_(p_o, config.tau)
                elif grad_steps % config.target_update_interval == 0:
                    target.load_state_dict(online.state_dict())
                loss_sum += float(loss.detach())
                q_sum += float(q.detach().mean())
                loss_count += 1
            if loss_count >= 100 or iteration == iterations:
                history.loss_steps.append(global_step)
                history.losses.append(loss_sum / loss_count)
                if writer is not None:
                    sps = global_step / (time.perf_counter() - start)
                    writer.add_scalar("train/loss", loss_sum / loss_count, global_step)
                    writer.add_scalar("train/mean_q", q_sum / loss_count, global_step)
                    writer.add_scalar("train/epsilon", epsilon, global_step)
                    writer.add_scalar("train/beta", beta, global_step)
                    writer.add_scalar("train/sps", sps, global_step)
                loss_sum, q_sum, loss_count = 0.0, 0.0, 0

        # --- evaluate and keep the best --------------------------------------------------------
        if eval_fn is not None and (global_step >= next_eval or iteration == iterations):
            next_eval += eval_every * max(1, (global_step - next_eval) // eval_every + 1)
            online.eval()
            val_return = float(eval_fn(agent))
            online.train()
            history.eval_steps.append(global_step)
            history.eval_returns.append(val_return)
            if writer is not None:
                writer.add_scalar("eval/return", val_return, global_step)
            if best_val is None or val_return > best_val:
                best_val = val_return
            if checkpoints is not None and math.isfinite(val_return):
                checkpoints.save(
                    model=online,
                    epoch=global_step,
                    metrics={"val_return": val_return, "step": global_step},
                    optimizer=optimizer,
                    **agent._save_kwargs(),
                )
        if progress and iteration % max(1, iterations // 20) == 0:
            logger.info(
                "step %d/%d  ε=%.3f  last return %s",
                global_step,
                config.total_steps,
                epsilon,
                f"{history.episode_returns[-1]:.3f}" if history.episode_returns else "-",
            )

    elapsed = time.perf_counter() - start
    if writer is not None:
        writer.close()
    online.eval()
    return DQNResult(
        agent=agent,
        best_path=None if checkpoints is None else checkpoints.best_path(),
        best_val_return=best_val,
        history=history,
        steps=global_step,
        gradient_steps=grad_steps,
        steps_per_second=global_step / elapsed if elapsed > 0 else float("nan"),
    )
