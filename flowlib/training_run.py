"""One training run, step by step: restore or begin, optimize, and the periodic jobs
(evaluation, metrics, samples, checkpoints). :func:`flowlib.train.train` builds it."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .averaging import WeightAverage
from .batches import ShardedBatches, random_hflip
from .checkpoints import remove_stale_temporaries, rng_state, save_checkpoint, stored_step
from .data import dataset_info
from .data.embedded import test_label
from .layers.nets import ConcatELU
from .layers.networks_mode import coupling_networks, cpu_has_bf16
from .metrics import evaluate_bpd, fair_order
from .run_files import prepare_metrics, write_config, write_metrics
from .run_state import RunState, Window, lr_at, restored, started_from
from .runtime import Distributed, StopFlag, describe_device, fixed_rng, log, seed_for
from .train_config import TrainConfig, run_checkpoint
from .viz import save_grid


class TrainingDiverged(RuntimeError):
    """Too many non-finite losses in a row; the message names the last good checkpoint."""


@dataclass
class TrainResult:
    """What :func:`~flowlib.train.train` returns (rank 0's view under DDP)."""

    out: Path
    checkpoint: Path | None
    step: int
    epoch: int
    train_bpd: float | None
    test_bpd: float | None
    skipped_steps: int
    images_per_s: float | None
    interrupted: bool = False
    data: str = ""  # which data it trained on: the full dataset or the embedded subset


def compute_loss(objective: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Mean bits per dimension of the batch ``x`` (the training loss), in float32."""
    return objective(x).float()


class _Objective(nn.Module):
    """``x -> mean bpd``: the module DDP wraps, so gradients sync in ``backward``."""

    def __init__(self, flow: nn.Module):
        super().__init__()
        self.flow = flow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.flow.bpd(x).float().mean()


def network_precision(bf16: bool | None, device: torch.device):
    """(dtype of the coupling networks, None for the flow's own; why), for ``--bf16``."""
    if bf16 is None:
        if device.type == "cpu" and cpu_has_bf16():
            return torch.bfloat16, "this CPU computes bfloat16 natively; --no-bf16 turns it off"
        return None, ""
    return (torch.bfloat16, "--bf16") if bf16 else (None, "")


def _load_data(cfg: TrainConfig, dd: Distributed):
    """(training set, shuffled test images or None off rank 0); rank 0 loads first."""
    info = dataset_info(cfg.dataset)
    if not dd.main:
        dd.barrier()  # rank 0 first, so a dataset cache is written once
    train_set = info.split(info.train_split, cfg.n_bits, cfg.size, cfg.data_root)
    test_images = None
    if dd.main:  # periodic evaluations use the first images of a fixed shuffled order
        test_images = fair_order(info.images(info.test_split, cfg.n_bits, cfg.size, cfg.data_root))
        dd.barrier()
    return train_set, test_images


class TrainingRun:
    """One training run: its model, optimizer, data and state, and the jobs of each step."""

    def __init__(
        self, cfg: TrainConfig, model: nn.Module, dd: Distributed, resume: bool, start: dict | None
    ):
        self.cfg, self.model, self.dd = cfg, model, dd
        self.out, self.ckpt_file = Path(cfg.out), run_checkpoint(cfg.out)
        self.log = log if dd.main else (lambda msg: None)
        train_set, self.test_images = _load_data(cfg, dd)
        self.train_images, self.data_source = train_set.images, train_set.source
        self.test_label = test_label(self.data_source)
        self.batches = ShardedBatches(
            len(self.train_images), cfg.batch_size, cfg.seed, dd.rank, dd.world
        )
        self.total_steps = (
            cfg.max_steps
            if cfg.max_steps is not None
            else math.ceil(cfg.epochs * self.batches.per_epoch)
        )
        use_cl = cfg.channels_last if cfg.channels_last is not None else dd.device.type == "cpu"
        self.memory_format = torch.channels_last if use_cl else torch.contiguous_format
        self.net_dtype, self.bf16_reason = network_precision(cfg.bf16, dd.device)
        model.to(device=dd.device, memory_format=self.memory_format)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        if resume:
            if dd.main:
                remove_stale_temporaries(self.ckpt_file)
            self.state = restored(start, model, self.optimizer, cfg.seed, dd.rank, self.ckpt_file)
        elif start is not None:
            self.state = started_from(start, model, cfg, dd.rank, self.total_steps)
        else:
            torch.manual_seed(seed_for(cfg.seed, dd.rank, 1))  # per-rank dequantization noise
            self._initialise_actnorm()
            self.state = RunState()
        model.train()
        self.average = self._weight_average(start)
        if resume:
            start.clear()  # free the memory
        self.objective = self._wrap(_Objective(model))
        self.hardware = (
            f"{describe_device(dd.device, dd.world)}, {platform.processor() or platform.machine()}"
        )
        self.window, self.smoothed_loss, self.last_norm = Window(), None, None
        self.images_per_s = self.train_bpd = None
        self.bad_in_row = 0

    # ------------------------------------------------------------------ start

    def _initialise_actnorm(self) -> None:
        """ActNorm's data-dependent init, on every rank before DDP (stats all-reduced inside)."""
        g = torch.Generator().manual_seed(self.cfg.seed + 104729 * self.dd.rank)
        idx = torch.randperm(len(self.train_images), generator=g)[: self.cfg.init_batch_size]
        x = self.train_images[idx].to(self.dd.device).contiguous(memory_format=self.memory_format)
        with torch.no_grad():
            self.model.log_prob(x)
        _debug_dump(self.model, self.out, f"rank{self.dd.rank}_init")

    def _weight_average(self, start: dict | None) -> WeightAverage | None:
        """Polyak averaging, continuing a stored average; else starting from the weights."""
        if not self.cfg.ema:
            return None
        state = start.get("ema_model") if start else None
        updates = start.get("ema_updates", 0) if state else 0
        return WeightAverage(self.model, self.cfg.ema, state, updates)

    def _wrap(self, objective: nn.Module) -> nn.Module:
        if not self.dd.enabled:
            return objective
        device = self.dd.device
        return nn.parallel.DistributedDataParallel(
            objective,
            device_ids=[device.index] if device.type == "cuda" else None,
            broadcast_buffers=False,
        )

    def _announce(self) -> None:
        cfg, st = self.cfg, self.state
        n_params = sum(p.numel() for p in self.model.parameters())
        options = "".join(
            [
                ", channels_last" if self.memory_format == torch.channels_last else "",
                f", coupling networks in bfloat16 ({self.bf16_reason})" if self.net_dtype else "",
                ", gradient checkpointing" if cfg.grad_checkpoint else "",
                self._compile_note(),
                f", evaluated with weights averaged at decay {cfg.ema}" if self.average else "",
            ]
        )
        origin = f"from the weights of {cfg.init_from} " if cfg.init_from and not st.resumed else ""
        self.log(
            f"flowlib train: {cfg.model} on {cfg.dataset} {tuple(self.model.image_shape)} "
            f"{cfg.n_bits}-bit, {n_params:,} parameters, device "
            f"{describe_device(self.dd.device, self.dd.world)}{options}; "
            f"{'resuming at' if st.resumed else 'starting at'} step {st.step} of "
            f"{self.total_steps} {origin}({self.batches.per_epoch} steps per epoch); "
            f"run folder {self.out}"
        )

    def _compile_note(self) -> str:
        if not self.cfg.compile:
            return ""
        if any(isinstance(m, ConcatELU) for m in self.model.modules()):
            return ", ConcatELUs fused by torch.compile"
        return f", --compile does nothing for {self.cfg.model} (it has no ConcatELU)"

    # ------------------------------------------------------------------ jobs

    def averaged(self):
        return self.average.applied() if self.average else contextlib.nullcontext()

    def evaluate(self, n_images: int | None) -> float:
        with fixed_rng(self.dd.device, self.cfg.seed + 12345), self.averaged():
            return evaluate_bpd(
                self.model, self.test_images, self.cfg.eval_batch_size, 1, max_images=n_images
            )

    def write_samples(self, step: int) -> None:
        cfg = self.cfg
        with fixed_rng(self.dd.device, cfg.sample_seed), self.averaged():
            self.model.eval()
            try:
                images = self.model.sample(
                    cfg.n_samples,
                    cfg.temperature,
                    generator=torch.Generator().manual_seed(cfg.sample_seed),
                )
            finally:
                self.model.train()
        save_grid(
            images,
            self.out / "samples" / f"step_{step:06d}.png",
            cfg.n_bits,
            nrow=max(1, int(math.sqrt(cfg.n_samples))),
        )

    def save(self, step: int, all_ranks: bool = True) -> Path | None:
        """Checkpoint (rank 0 writes). ``all_ranks``: gather every rank's RNG (collective)."""
        rngs = [rng_state()]
        if self.dd.enabled and all_ranks:
            rngs = [None] * self.dd.world
            dist.all_gather_object(rngs, rng_state())
        if not self.dd.main:
            return None
        st, average = self.state, self.average
        epoch, batch_in_epoch = self.batches.position(step)
        try:
            return save_checkpoint(
                self.ckpt_file,
                self.model,
                self.optimizer,
                train_config=self.cfg,
                rng=rngs,
                step=step,
                epoch=epoch,
                batch_in_epoch=batch_in_epoch,
                skipped_steps=st.skipped,
                wall_time=st.wall_time,
                test_bpd=st.test_bpd,
                warmup_from=st.warmup_from,
                hardware=self.hardware,
                data_source=self.data_source,
                ema_model=average.state_dict() if average else None,
                ema_updates=average.updates if average else 0,
            )
        except ValueError as err:
            kept = self.ckpt_file if self.ckpt_file.exists() else "none"
            self.log(f"{err} Last good checkpoint kept: {kept}.")
            return None

    def metrics_row(self, **row) -> None:
        st = self.state
        write_metrics(
            self.out / "metrics.csv",
            dict(
                row,
                lr=lr_at(self.cfg, st.step, st.warmup_from),
                skipped_steps=st.skipped,
                wall_time=st.wall_time,
            ),
        )

    # ------------------------------------------------------------------ steps

    def train_step(self, x: torch.Tensor, stop: StopFlag) -> tuple[float, float, bool]:
        """One optimizer step on ``x``; returns (loss, grad norm, stop requested), agreed
        by all ranks. A non-finite loss or norm leaves the weights alone."""
        st, cfg = self.state, self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(cfg, st.step, st.warmup_from)
        with coupling_networks(self.net_dtype, cfg.grad_checkpoint, cfg.compile):
            loss = compute_loss(self.objective, x)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # also when non-finite: under DDP every rank must join the all-reduce
        params = [p for p in self.model.parameters() if p.requires_grad]
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        # One sync per step; under DDP the ranks agree on the loss, the skip and the stop.
        flag = torch.tensor(float(stop.stop), device=self.dd.device)
        stats = torch.stack([loss.detach().float(), norm.float(), flag])
        if self.dd.enabled:
            dist.all_reduce(stats)
            stats[:2] /= self.dd.world
        loss_value, norm_value, stop_requested = stats.tolist()
        if math.isfinite(loss_value) and math.isfinite(norm_value):
            self.optimizer.step()
            if self.average:
                self.average.update()
        else:
            self.optimizer.zero_grad(set_to_none=True)
        return loss_value, norm_value, bool(stop_requested)

    def count(self, loss_value: float, norm_value: float) -> None:
        """Book a step's loss, or its skip; TrainingDiverged after too many in a row."""
        st, cfg = self.state, self.cfg
        self.last_norm = norm_value
        if math.isfinite(loss_value) and math.isfinite(norm_value):
            self.bad_in_row = 0
            self.window.loss += loss_value
            self.window.n += 1
            s = self.smoothed_loss
            self.smoothed_loss = loss_value if s is None else 0.98 * s + 0.02 * loss_value
            return
        st.skipped += 1
        self.bad_in_row += 1
        self.log(
            f"step {st.step + 1}: non-finite loss {loss_value} (grad norm {norm_value}): "
            f"step skipped ({self.bad_in_row} in a row, {st.skipped} in all)"
        )
        if self.bad_in_row > cfg.max_bad_steps:
            good = (
                f"{self.ckpt_file} (step {stored_step(self.ckpt_file)})"
                if self.ckpt_file.exists()
                else "none was saved yet"
            )
            raise TrainingDiverged(
                f"Stopped at step {st.step + 1}: {self.bad_in_row} non-finite losses in a row "
                f"(limit max_bad_steps={cfg.max_bad_steps}). Last good checkpoint: {good}. "
                f"Lower the learning rate or lengthen the warm-up, then resume from it."
            )

    def periodic_jobs(self, bar) -> None:
        """After a step: evaluation, metrics, progress, samples and checkpoints when due."""
        cfg, st, main = self.cfg, self.state, self.dd.main
        last = st.step == self.total_steps
        n_eval = (
            cfg.final_eval_images
            if last
            else cfg.eval_images
            if cfg.eval_every and st.step % cfg.eval_every == 0
            else 0
        )
        do_eval = main and n_eval != 0
        if do_eval:
            st.test_bpd = self.evaluate(n_eval)
        if main and (st.step % cfg.log_every == 0 or do_eval or last):
            self.metrics_row(
                step=st.step,
                epoch=self.batches.position(st.step - 1)[0],
                train_bpd=self.window.train_bpd(),
                test_bpd=st.test_bpd if do_eval else "",
                images_per_s=self.window.images_per_s(),
                grad_norm=self.last_norm,
            )
            self.images_per_s, self.train_bpd = self.window.images_per_s(), self.window.train_bpd()
            self.window = Window()
        if main and (st.step % 10 == 0 or do_eval):
            self._show_progress(bar)
        if do_eval:
            self._log_evaluation(n_eval, last)
        if main and cfg.sample_every and st.step % cfg.sample_every == 0 and not last:
            self.write_samples(st.step)
        if (
            cfg.checkpoint_every
            and st.step % cfg.checkpoint_every == 0
            and not last
            and not self.bad_in_row
        ):
            self.save(
                st.step
            )  # never in a run of non-finite losses: "last good" = after a good step

    def _show_progress(self, bar) -> None:
        s, t, speed = self.smoothed_loss, self.state.test_bpd, self.images_per_s
        bar.set_postfix(
            bpd=f"{s:.3f}" if s is not None else "nan",
            test=f"{t:.3f}" if t is not None else "-",
            img_s=f"{speed:.0f}" if speed else "-",
            refresh=False,
        )

    def _log_evaluation(self, n_eval: int | None, last: bool) -> None:
        st, s = self.state, self.smoothed_loss
        n_test = len(self.test_images) if n_eval is None else min(n_eval, len(self.test_images))
        self.log(
            f"step {st.step}: {'final ' if last else ''}test bpd {st.test_bpd:.4f} "
            f"({n_test} {self.test_label}), train bpd {s if s is not None else float('nan'):.4f}, "
            f"{st.skipped} skipped step(s), {st.wall_time:.0f} s of training"
        )

    # ------------------------------------------------------------------ the loop

    def _start_files(self) -> None:
        """config.json, and metrics.csv (on resume: without rows after the checkpoint)."""
        st = self.state
        self.out.mkdir(parents=True, exist_ok=True)
        write_config(self.out, self.cfg)
        prepare_metrics(self.out / "metrics.csv", st.step if st.resumed else None)

    def _first_evaluation(self) -> None:
        st, n = self.state, self.cfg.eval_images
        st.test_bpd = self.evaluate(n)
        self.metrics_row(
            step=st.step, epoch=self.batches.position(st.step)[0], test_bpd=st.test_bpd
        )
        self.log(
            f"step {st.step}: test bpd {st.test_bpd:.4f} "
            f"({min(n, len(self.test_images))} {self.test_label})"
        )

    def run(self) -> TrainResult:
        cfg, st, dd = self.cfg, self.state, self.dd
        if dd.main:
            self._start_files()
        self._announce()
        if dd.main and not st.resumed and cfg.eval_every:
            self._first_evaluation()
        from tqdm import tqdm

        interrupted = False
        with (
            StopFlag() as stop,
            tqdm(
                total=self.total_steps,
                initial=st.step,
                unit="step",
                disable=not (dd.main and cfg.progress),
                dynamic_ncols=True,
                file=sys.stderr,
            ) as bar,
        ):
            t_last = time.perf_counter()
            while st.step < self.total_steps:
                x = self.train_images[self.batches.indices(st.step)]
                x = random_hflip(x) if cfg.hflip else x
                x = x.to(dd.device, non_blocking=True).contiguous(memory_format=self.memory_format)
                loss_value, norm_value, stop_requested = self.train_step(x, stop)
                self.count(loss_value, norm_value)
                st.step += 1
                dt = time.perf_counter() - t_last
                st.wall_time += dt
                self.window.time += dt
                self.window.images += len(x) * dd.world
                bar.update(1)
                self.periodic_jobs(bar)
                if stop_requested and st.step < self.total_steps:
                    interrupted = True
                    break
                t_last = time.perf_counter()  # evaluations, samples, checkpoints: not training time
        return self._finish(interrupted)

    def _finish(self, interrupted: bool) -> TrainResult:
        st = self.state
        if interrupted:
            path = self.save(st.step)
            self.log(
                f"Interrupted at step {st.step}: checkpoint saved to {path}. "
                f"Continue with --resume."
            )
        else:
            if self.dd.main and self.cfg.sample_every:
                self.write_samples(st.step)
            path = self.save(st.step)
        _debug_dump(self.model, self.out, f"rank{self.dd.rank}")
        return TrainResult(
            out=self.out,
            checkpoint=path,
            step=st.step,
            epoch=self.batches.position(max(st.step - 1, 0))[0],
            train_bpd=self.train_bpd,
            test_bpd=st.test_bpd,
            skipped_steps=st.skipped,
            images_per_s=self.images_per_s,
            interrupted=interrupted,
            data=self.data_source,
        )


def _debug_dump(model: nn.Module, out: Path, name: str) -> None:
    """Test hook: with FLOWLIB_DEBUG_PARAM_DUMP=1 save the state dict to <out>/debug/<name>.pt."""
    if os.environ.get("FLOWLIB_DEBUG_PARAM_DUMP") not in (None, "", "0"):
        (out / "debug").mkdir(parents=True, exist_ok=True)
        torch.save(
            {k: v.detach().cpu() for k, v in model.state_dict().items()},
            out / "debug" / f"{name}.pt",
        )
