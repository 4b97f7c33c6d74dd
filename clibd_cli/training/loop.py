"""The training loop of `clibd train`, top to bottom.

One process or many (torchrun/srun, see distributed.py): every process builds the same model,
reads its share of each global batch, all-gathers features for the contrastive loss (in
models.losses) and lets DDP average gradients. Rank 0 alone writes ``RUN/``:

    args.json      resolved options, command line, versions
    metrics.jsonl  one JSON object per log interval ("train": loss, samples/s, data_s and data_share,
                   the seconds and share of the interval spent waiting for the DataLoader) and per
                   validation ("val")
    last/          model directory + train_state.pt, for --resume
    best/          model directory with the best value of the selection metric
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import shutil
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from clibd_cli import distributed
from clibd_cli.defaults import STOP_SIGNALS
from clibd_cli.io.outputs import UsageError, writer_lock
from clibd_cli.training import adapt, run_files, state
from clibd_cli.training.datasets import GlobalBatchSampler, SpecimenDataset, dataset_fingerprint, make_loader
from clibd_cli.training.optim import create_optimizer, create_schedule
from clibd_cli.training.step import forward_backward
from clibd_cli.training.validation import Validation, best_metric
from models.config import TOWERS
from models.errors import ClibdError, counted

log = logging.getLogger("clibd")


@dataclass
class TrainConfig:
    """Everything `clibd train` was asked to do (saved as RUN/args.json)."""

    model: str
    data: str
    out: str
    modalities: tuple[str, ...] = TOWERS
    train_splits: tuple[str, ...] = ("pretrain", "train")
    epochs: int = 20
    batch_size: int = 64
    lr: float = 5e-4
    warmup: float = 0.3
    weight_decay: float = 0.01
    positives: str = "sample"  # "label": same label string = positive (multi-hot targets)
    dna_dna: float = 0.0  # weight of the supervised DNA-DNA term (with positives="label")
    label_ranks: tuple[str, ...] = ()  # extra terms against the label strings cut at these ranks
    dna_crop: float = 0.0  # share of training barcodes cut to a random stretch each epoch (datasets.py)
    precision: str = "auto"
    freeze: tuple[str, ...] = ()
    lora: int = 0
    grad_accum: int = 1
    val_every: int = 0
    best_metric: str = "auto"
    resume: bool = False
    workers: int = 2
    max_steps: int = 0
    val_limit: int = 0
    log_every: int = 50
    seed: int = 0
    device: str = "cpu"
    threads: int | None = None
    progress: bool = False
    command: list[str] = field(default_factory=list)


class StopFlag:
    """Set by SIGINT and ``STOP_SIGNALS`` (SIGTERM, SIGHUP; ``clibd_cli/defaults.py``): the loop stops
    after the current optimiser step and saves last/.

    Repeated signals change nothing (torchrun and Slurm forward a second one to every rank);
    a worker that must die at once can still be killed.
    """

    def __init__(self) -> None:
        self.raised = False
        self.signal = signal.SIGINT  # the first one received

    @contextlib.contextmanager
    def installed(self):
        def handler(signum, frame):
            if not self.raised:
                log.warning("%s: stopping after this step and saving last/", signal.Signals(signum).name)
                self.signal = signum
            self.raised = True

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, *STOP_SIGNALS)}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def run_training(cfg: TrainConfig) -> dict:
    """Run (or resume) a training run; returns the last validation metrics and where things are."""
    world = distributed.detect()
    if not world.is_main:
        log.setLevel(logging.ERROR)
    import models.bert  # noqa: F401 - transformers (and the torch modules it pulls) before joining the group
    device = distributed.init(world, cfg.device)
    finished = False
    try:
        with _one_run_per_out(cfg.out, world):
            result = _train(cfg, world, device)
        finished = True
        return result
    except ClibdError:
        if not world.is_main:  # every rank fails alike; rank 0 says why
            raise SystemExit(1) from None
        raise
    finally:
        distributed.shutdown(finished)


@contextlib.contextmanager
def _one_run_per_out(out: str | Path, world: distributed.World):
    """Rank 0 holds ``out``'s writer lock for the run (``io/outputs.writer_lock``); every rank
    learns whether it got it, so that a refused run stops on every rank (under srun the others
    would otherwise wait at their first collective until it timed out)."""
    with contextlib.ExitStack() as stack:
        refused = None
        if world.is_main:
            try:
                stack.enter_context(writer_lock(Path(out).resolve(), wait=False))  # one lock however --out is written
            except ClibdError as exc:
                refused = exc
        if distributed.any_rank(refused is not None, world):
            raise refused or ClibdError(f"{out}: another clibd is writing it")
        yield


def _train(cfg: TrainConfig, world: distributed.World, device: str) -> dict:
    from models import create_model, load_model
    from models.losses import ContrastiveLoss

    # --- seeds, run directory, resume state ------------------------------------------------
    _seed_everything(cfg.seed + world.rank)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = Path(cfg.out)
    resume_from = run_files.checkpoint_for(run, cfg.resume)  # clibd train asks before any work; other callers here
    records = dataset_fingerprint(cfg.data, cfg.train_splits) if cfg.resume or world.is_main else None
    if cfg.resume:
        run_files.check_resume(run, asdict(cfg), records)
    saved = state.load_state(resume_from) if cfg.resume else None

    # --- model (what trains: everything, unfrozen towers, or LoRA adapters) -----------------
    model = load_model(resume_from) if saved else create_model(cfg.model, modalities=cfg.modalities)
    model.float()  # master weights in fp32, also when fine-tuning a model stored in half precision
    if cfg.lora:
        adapt.add_lora(model, cfg.lora)
        if saved:
            adapt.load_adapter_state(model, saved["adapters"])
    adapt.freeze_backbones(model, cfg.freeze)
    model.to(device)

    # --- data -------------------------------------------------------------------------------
    dataset = SpecimenDataset(cfg.data, cfg.train_splits, cfg.modalities, model, train=True, seed=cfg.seed,
                              label_ranks=cfg.label_ranks, dna_crop=cfg.dna_crop)
    sampler = GlobalBatchSampler(len(dataset), cfg.batch_size, world, seed=cfg.seed,
                                 multiple_of=cfg.grad_accum)
    if sampler.batches_per_epoch == 0:
        raise ClibdError(f"{cfg.data}: {counted(len(dataset), 'training record')}, fewer than "
                         f"{counted(cfg.grad_accum, 'global batch', 'global batches')} of "
                         f"{cfg.batch_size * world.size}; "
                         "lower --batch-size")
    steps_per_epoch = sampler.batches_per_epoch // cfg.grad_accum
    total_steps = min(steps_per_epoch * cfg.epochs, cfg.max_steps or steps_per_epoch * cfg.epochs)
    validation = Validation.for_dataset(cfg.data, cfg.modalities, model, world, batch_size=2 * cfg.batch_size,
                                        workers=cfg.workers, limit=cfg.val_limit, seed=cfg.seed)
    metric = best_metric(cfg.best_metric, cfg.modalities, validation, cfg.data)

    # --- optimiser, schedule, precision, DDP ------------------------------------------------
    optimizer = create_optimizer(model, cfg.lr, cfg.weight_decay)
    schedule = create_schedule(optimizer, cfg.lr, total_steps, cfg.warmup)
    step, epoch, batch_in_epoch, best = 0, 0, 0, -math.inf
    batches = [cfg.batch_size * world.size, cfg.grad_accum]  # global batch, micro-batches per step
    if saved:
        if saved["total_steps"] != total_steps:
            raise UsageError(f"{resume_from}: the run planned {saved['total_steps']} steps, this command "
                             f"{total_steps}; resume with its --max-steps, --epochs, --batch-size x processes "
                             "and --grad-accum")
        if (ran := saved.get("batches", batches)) != batches:  # the same steps of other data: not a resume
            raise UsageError(f"{resume_from}: the run took {_batches(*ran)}, this command {_batches(*batches)}; "
                             "resume with its --batch-size x processes and --grad-accum")
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["scheduler"])
        step, epoch, batch_in_epoch, best = saved["step"], saved["epoch"], saved["batch"], saved["best"]
        rngs = saved["rng"]
        if len(rngs) == world.size:
            state.set_rng_state(rngs[world.rank])
        else:
            log.warning("resuming with %s instead of %d: dropout noise will differ",
                        counted(world.size, "process", "processes"), len(rngs))
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.startswith("cuda"))
    autocast = functools.partial(torch.autocast, device.split(":")[0], dtype=torch.bfloat16, enabled=bf16)
    net = model
    if world.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.startswith("cuda") else None)
    loss_fn = ContrastiveLoss(dna_dna=cfg.dna_dna)
    if world.is_main:
        run_files.write_args(run, {k: v for k, v in asdict(cfg).items() if k != "command"}, cfg.command, world.size,
                             resumed_at=step if saved else None, dataset=records)
        run_files.keep_metrics(run / "metrics.jsonl", up_to_step=step)
        if not saved:
            shutil.rmtree(run / "best", ignore_errors=True)  # left by a run that never reached last/
        log.info("training %s on %s (%s), %s of %s, %s%s", cfg.model, counted(len(dataset), "record"),
                 "+".join(cfg.modalities), counted(total_steps, "step"),
                 counted(cfg.batch_size * world.size * cfg.grad_accum, "sample"),
                 counted(world.size, "process", "processes"), f"; resumed at step {step}" if saved else "")

    def checkpoint(name: str, with_state: bool) -> None:
        """Save RUN/name (rank 0 writes; all ranks take part in gathering RNG states)."""
        rngs = distributed.gather_objects(state.rng_state(), world) if with_state else None
        if world.is_main:
            train_state = {"step": step, "epoch": epoch, "batch": batch_in_epoch, "best": best,
                           "total_steps": total_steps, "batches": batches, "optimizer": optimizer.state_dict(),
                           "scheduler": schedule.state_dict(), "rng": rngs, "meter": meter.state(),
                           "adapters": adapt.adapter_state(model)} if with_state else None
            info = {"training": {"step": step, "epoch": epoch, "best_metric": metric,
                                 "best": best if math.isfinite(best) else None}}
            state.save_checkpoint(adapt.merged(model), run / name, info, train_state)

    def validate() -> None:
        nonlocal best
        if validation is None:
            return
        with autocast():
            scores = validation.run()
        if world.is_main:
            value = scores.get(metric, float("nan"))
            improved = value > best
            best = value if improved else best
            run_files.append_metrics(run / "metrics.jsonl", {"kind": "val", "step": step,
                                            "epoch": _epochs(epoch, batch_in_epoch, sampler), **scores})
            log.info("step %d: %s = %.4f%s", step, metric, value, " (best)" if improved else "")
            if improved:
                checkpoint("best", with_state=False)

    # --- the loop ---------------------------------------------------------------------------
    stop = StopFlag()
    bar = _progress(cfg.progress and world.is_main, total_steps, step)
    meter = run_files.Meter()
    if saved and "meter" in saved:  # the losses logged since the last train line, before the interruption
        meter.restore(saved["meter"])
    net.train()
    with stop.installed():
        while step < total_steps:
            sampler.set_epoch(epoch, start=batch_in_epoch)
            dataset.epoch = epoch
            for batch in meter.timed(make_loader(dataset, sampler, cfg.workers, seed=cfg.seed + epoch)):
                batch_in_epoch += 1
                try:
                    loss, logit_scale = forward_backward(net, batch, loss_fn, autocast, device, cfg,
                                                         sync=batch_in_epoch % cfg.grad_accum == 0)
                except RuntimeError as exc:
                    if _is_oom(exc):
                        raise ClibdError(f"out of memory at batch size {cfg.batch_size}; try --batch-size "
                                         f"{max(1, cfg.batch_size // 2)} (and --grad-accum 2 to keep the "
                                         "step size)") from exc
                    raise
                if not math.isfinite(loss):
                    raise ClibdError(f"the loss became {loss} at step {step + 1}: training diverged; lower --lr "
                                     f"(now {cfg.lr:g})")
                meter.add(loss, len(batch["index"]) * world.size)
                if batch_in_epoch % cfg.grad_accum:
                    continue
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                lr = schedule.get_last_lr()[0]  # the rate this step used (schedule.step() sets the next one's)
                schedule.step()
                step += 1
                end_of_epoch = batch_in_epoch == sampler.batches_per_epoch
                if end_of_epoch:
                    epoch, batch_in_epoch = epoch + 1, 0
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{meter.rate():.1f}")
                if step % cfg.log_every == 0 or step == total_steps:
                    record = {"kind": "train", "step": step, "epoch": _epochs(epoch, batch_in_epoch, sampler),
                              **meter.flush(),
                              "lr": lr, "logit_scale": logit_scale}
                    if world.is_main:
                        run_files.append_metrics(run / "metrics.jsonl", record)
                        if bar is None:
                            log.info("step %d/%d  loss %.4f  lr %.2e  %.1f samples/s", step, total_steps,
                                     record["loss"], record["lr"], record["samples_per_s"])
                due = step % cfg.val_every == 0 if cfg.val_every else end_of_epoch
                if due or step == total_steps:
                    validate()
                    net.train()
                # asked after validating: a signal during it stops here (it ran one more step and saved twice)
                interrupted = distributed.any_rank(stop.raised, world)  # the same answer on every rank
                stopping = interrupted or step == total_steps
                if due or stopping or end_of_epoch:
                    checkpoint("last", with_state=True)
                if interrupted:
                    error = ClibdError(f"interrupted at step {step} of {total_steps}; {run}/last holds the "
                                       "state: run the same command with --resume to continue")
                    error.exit_code = 128 + int(stop.signal)  # 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP, as shells say
                    raise error
                if stopping:
                    break
    if bar is not None:
        bar.close()
    if world.is_main and math.isfinite(best):
        log.info("stopped at step %d of %d; best %s = %.4f (%s/best)", step, total_steps, metric, best, run)
    elif world.is_main:  # no validation score: best/ was never written
        log.info("stopped at step %d of %d; no %s to choose best/ by: the model is %s/last", step, total_steps,
                 metric, run)
    return {"run": str(run), "step": step, "epoch": epoch, "best_metric": metric, "best": best}


def _epochs(epoch: int, batch_in_epoch: int, sampler: GlobalBatchSampler) -> float:
    """Epochs done, with the fraction of the current one (e.g. 2.5)."""
    return round(epoch + batch_in_epoch / sampler.batches_per_epoch, 4)


def _is_oom(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate" in text


def _batches(global_batch: int, grad_accum: int) -> str:
    """``global batches of 64 (2 micro-batches a step)``: what a run's steps are made of."""
    return f"global batches of {global_batch} ({counted(grad_accum, 'micro-batch', 'micro-batches')} a step)"


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _progress(enabled: bool, total: int, done: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="step", file=sys.stderr, dynamic_ncols=True)
