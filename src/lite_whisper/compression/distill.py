"""Optional distillation: train the low-rank factors so the lite encoder's output matches the dense one's.

Per-linear PCA is already the best rank-k answer for each linear alone; what it cannot see is how
the errors of 24 (or 192) truncated linears compound through the layers and the layer norms.
A few steps of training on the calibration audio let the factors (and their biases) correct
for each other, measured where the decoder looks: the encoder's final output, after its last
layer norm. Only the factors train; the decoder and every non-factor weight stay frozen.

Why the care:
- `to_lite_whisper` shares every non-factor tensor with the dense model, so the dense teacher
  and the student are one set of weights apart from the factors. The teacher's outputs are
  computed once, before any step (cached in float16), and nothing but factors has
  requires_grad during training (restored after).
- The fast CPU route bypasses autograd; it is skipped whenever gradients are needed, so
  training sees the plain modules.
- Calibration sets are small: a few clips are held out, their loss is measured along the way,
  and the factors of the best held-out step are kept (never worse than no training on them).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from lite_whisper.lowrank.cost import encoder_of
from lite_whisper.lowrank.modeling_lite_whisper import LowRankLinear


@dataclass(frozen=True)
class DistillConfig:
    """How the factors are trained (defaults measured in docs/RESULTS.md §6)."""

    steps: int = 0  # 0: no distillation
    learning_rate: float = 1e-4
    batch_size: int = 4
    warmup_steps: int | None = None  # default: a tenth of the steps
    holdout_clips: int = 8  # calibration clips kept out of training to pick the best step
    evaluations: int = 8  # held-out loss measured this many times along the way
    seed: int = 0
    max_clips: int = 256  # calibration clips used at most (their log-mel features are held in memory)

    def __post_init__(self):
        if self.steps < 0:
            raise ValueError(f"distillation steps must be 0 or more, got {self.steps}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"distillation learning rate must be positive, got {self.learning_rate}")
        if self.batch_size < 1:
            raise ValueError(f"distillation batch size must be at least 1, got {self.batch_size}")
        if self.holdout_clips < 0 or self.evaluations < 1 or self.max_clips < 1:
            raise ValueError("held-out clips must be 0 or more, evaluations and clips at least 1")

    @property
    def clips(self) -> int:
        """Calibration clips distillation reads: what its steps draw (each clip once at most) and the held-out
        ones, up to `max_clips`; a teacher output costs an encoder pass, so none is made that no step uses."""
        return min(self.max_clips, self.steps * self.batch_size + self.holdout_clips) if self.steps else 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DistillReport:
    steps: int
    train_clips: int
    holdout_clips: int
    seconds: float
    teacher_seconds: float
    loss_first: float  # training loss (relative squared error of the encoder output) at the first step
    loss_last: float  # mean of the last tenth of the steps
    holdout_before: float | None  # held-out loss before training
    holdout_after: float | None  # held-out loss of the kept factors
    best_step: int  # the step whose factors were kept (0: the untrained ones)
    config: dict

    def to_dict(self) -> dict:
        return asdict(self)


def factor_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The trainable part of a lite model: every LowRankLinear's down, up and up-bias."""
    return [parameter for module in encoder_of(model).modules() if isinstance(module, LowRankLinear)
            for parameter in module.parameters()]


def relative_error(output: Tensor, target: Tensor) -> Tensor:
    """Squared error of the encoder output relative to the target's energy (scale-free across models)."""
    return (output.float() - target.float()).square().sum() / target.float().square().sum()


def distill(
    student: nn.Module,
    teacher: nn.Module,
    features: Tensor,
    config: DistillConfig,
    progress: Callable[[int, int, float], None] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> DistillReport:
    """Train `student`'s factors in place so its encoder output matches `teacher`'s on `features`.

    `features`: log-mel inputs (clips x n_mels x 3000) of the calibration audio; the last
    `config.holdout_clips` of them (at most a quarter) are held out. `progress(step, steps, loss)` after each step.
    The teacher is never modified (its outputs are taken once, before training).
    """
    start = time.perf_counter()
    parameters = factor_parameters(student)
    if not parameters:
        raise ValueError("the model has no low-rank linears to train: compress it first")
    holdout = min(config.holdout_clips, features.shape[0] // 4)  # a small set mostly trains
    train, held = features[: features.shape[0] - holdout], features[features.shape[0] - holdout:]
    if train.shape[0] == 0:
        raise ValueError("distillation needs at least one calibration clip")
    student_encoder, teacher_encoder = encoder_of(student), encoder_of(teacher)
    device, dtype = parameters[0].device, parameters[0].dtype

    log(f"distillation: teacher outputs of {features.shape[0]} clips ...")
    targets = _outputs(teacher_encoder, features, config.batch_size, device, dtype)
    teacher_seconds = time.perf_counter() - start
    train_targets, held_targets = targets[: train.shape[0]], targets[train.shape[0]:]

    flags = {parameter: parameter.requires_grad for parameter in student_encoder.parameters()}
    trainable = set(parameters)
    was_training = student_encoder.training
    try:
        for parameter in student_encoder.parameters():
            parameter.requires_grad_(parameter in trainable)
        student_encoder.eval()  # no dropout: Whisper's encoder dropout is 0 anyway, and the runs stay deterministic
        holdout_before = _holdout_loss(student_encoder, held, held_targets, config.batch_size, device, dtype)
        best = (holdout_before, 0, [p.detach().clone() for p in parameters])
        optimiser = torch.optim.Adam(parameters, lr=config.learning_rate)
        warmup = config.warmup_steps if config.warmup_steps is not None else max(1, config.steps // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: _learning_rate_factor(step, warmup, config.steps))
        generator = torch.Generator().manual_seed(config.seed)
        order: list[int] = []
        losses: list[float] = []
        checkpoints = {round(config.steps * (i + 1) / config.evaluations) for i in range(config.evaluations)}
        for step in range(1, config.steps + 1):
            batch = []
            while len(batch) < min(config.batch_size, train.shape[0]):
                if not order:  # a fresh shuffled pass over the training clips
                    order = torch.randperm(train.shape[0], generator=generator).tolist()
                batch.append(order.pop())
            inputs = train[batch].to(device=device, dtype=dtype)
            loss = relative_error(student_encoder(inputs).last_hidden_state, train_targets[batch].to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
            if progress is not None:
                progress(step, config.steps, losses[-1])
            if step in checkpoints and held.shape[0]:
                held_loss = _holdout_loss(student_encoder, held, held_targets, config.batch_size, device, dtype)
                log(f"distillation step {step}/{config.steps}: training loss {losses[-1]:.4g}, held-out {held_loss:.4g}")
                if held_loss < best[0]:
                    best = (held_loss, step, [p.detach().clone() for p in parameters])
        if not held.shape[0] and config.steps:  # nothing to choose with: keep the last step
            best = (None, config.steps, [p.detach().clone() for p in parameters])
        with torch.no_grad():
            for parameter, kept in zip(parameters, best[2]):
                parameter.copy_(kept)
    finally:
        for parameter, flag in flags.items():
            parameter.requires_grad_(flag)
        student_encoder.train(was_training)
    tail = losses[-max(1, len(losses) // 10):] if losses else []
    return DistillReport(
        steps=config.steps, train_clips=train.shape[0], holdout_clips=held.shape[0],
        seconds=time.perf_counter() - start, teacher_seconds=teacher_seconds,
        loss_first=losses[0] if losses else float("nan"), loss_last=sum(tail) / len(tail) if tail else float("nan"),
        holdout_before=holdout_before, holdout_after=best[0], best_step=best[1], config=config.to_dict(),
    )


def _learning_rate_factor(step: int, warmup: int, steps: int) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _outputs(encoder: nn.Module, features: Tensor, batch_size: int, device, dtype,
             keep: torch.dtype = torch.float16) -> Tensor:
    """The encoder's final outputs on the CPU, kept in float16 by default (half the memory of the
    teacher's cache; its rounding is far below the losses)."""
    chunks = []
    with torch.inference_mode():
        for begin in range(0, features.shape[0], batch_size):
            inputs = features[begin: begin + batch_size].to(device=device, dtype=dtype)
            chunks.append(encoder(inputs).last_hidden_state.to("cpu", keep))
    return torch.cat(chunks) if chunks else features.new_zeros(0)


def _holdout_loss(encoder, features: Tensor, targets: Tensor, batch_size: int, device, dtype) -> float | None:
    if features.shape[0] == 0:
        return None
    return float(relative_error(_outputs(encoder, features, batch_size, device, dtype, torch.float32), targets))
