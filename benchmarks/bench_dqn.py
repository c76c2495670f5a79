"""DQN training throughput: environment steps and gradient steps per second, beside a peer.

Run ``python benchmarks/bench_dqn.py``. The agent trains in the real trading environment
(planted 1m candles, 32 frames, 4 vector envs) with seed 000's network at its full width
(hidden 384, 2-layer LSTM, 4-head attention), batch 64, one gradient step per 4 env steps,
prioritized replay and 3-step returns. The peer is the same network trained on random
tensors in a bare loop (forward, backward, Adam step on online + target forward): the cost
of the gradient steps alone, so the ratio shows what the loop adds (env, replay, n-step).
On a CUDA machine both run there too. Nothing here is asserted; figures are printed.
"""

from __future__ import annotations

import time

import torch

from pivotal.core.timeframes import Timeframe
from pivotal.features.inputs.spec import InputSpec
from pivotal.rl.config import EnvConfig
from pivotal.rl.dqn import DQNConfig, QNetwork, train_dqn
from pivotal.rl.observations import MarketObservations
from pivotal.rl.vector import VectorTradingEnv
from pivotal.testing.planted import planted_candles

FRAMES, HIDDEN, BATCH, STEPS, LEARN_AFTER = 32, 384, 64, 1_600, 400


def _envs() -> VectorTradingEnv:
    candles = {Timeframe.M1: planted_candles(6_000, seed=1)}
    spec = InputSpec.candles([Timeframe.M1], frames=FRAMES, min_frames=FRAMES)
    obs = MarketObservations(candles, spec)
    obs.fit_scaler(int(obs.times[len(obs) // 2]))
    config = EnvConfig(symbol="BTC/USDT", timeframe="1m", frames=FRAMES, episode_length=500)
    return VectorTradingEnv(obs, config, 4)


def _loop(device: str) -> tuple[float, float]:
    config = DQNConfig(
        total_steps=STEPS,
        learning_starts=LEARN_AFTER,
        batch_size=BATCH,
        buffer_size=5_000,
        hidden=HIDDEN,
        device=device,  # type: ignore[arg-type]
    )
    envs = _envs()
    start = time.perf_counter()
    result = train_dqn(envs, config)
    seconds = time.perf_counter() - start
    return result.steps / seconds, result.gradient_steps / seconds


def _peer(device: str, features: int, repeats: int = 20) -> float:
    net = QNetwork(FRAMES, features, 4, hidden=HIDDEN).to(device)
    target = QNetwork(FRAMES, features, 4, hidden=HIDDEN).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randn(BATCH, FRAMES, features, device=device)
    for i in range(repeats + 2):
        if i == 2:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.no_grad():
            target(x)
        loss = net(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return repeats / (time.perf_counter() - start)


def main() -> None:
    features = _envs().single_observation_space.shape[1]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"DQN training, obs {FRAMES}x{features}, hidden {HIDDEN}, batch {BATCH}, 4 envs")
    print(
        f"{'device':<8}{'env steps/s':>14}{'grad steps/s':>14}{'peer grad/s':>14}{'loop/peer':>11}"
    )
    for device in devices:
        env_rate, grad_rate = _loop(device)
        peer = _peer(device, features)
        ratio = grad_rate / peer
        print(f"{device:<8}{env_rate:>14,.1f}{grad_rate:>14,.2f}{peer:>14,.2f}{ratio:>10.2f}x")
    if not torch.cuda.is_available():
        print("no CUDA device here: GPU figures not measured")


if __name__ == "__main__":
    main()
