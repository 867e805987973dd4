"""The LightningModule: one ``_step(flat, stage)`` for train / val / test.

A step: (train, contrastive on) build [anchor | positive | negative]; the model's forward; the
targets and target query; every loss term (spec section 4), summed with ``train.loss_weights``
(the paper: 1 each; logged unweighted); the NaN / inf guard; logging. Imitation losses supervise the anchors and the positives (a positive is the same scene
seen from a slightly moved ego, so the expert is still right), **not the negatives**: a negative's
scene was changed so that the expert's future is no longer the right answer (e.g. the red light it
waited at is now green), so imitating it there would teach the opposite of the contrastive term.
"""

from __future__ import annotations

import lightning as L
import torch

import pluto_dvc.model as model_pkg
from pluto_dvc.errors import PlutoDvcError
from pluto_dvc.model import ModelConfig, PlutoBatch
from pluto_dvc.params import TrainParams
from pluto_dvc.training import losses
from pluto_dvc.training.contrastive import make_contrastive_batch
from pluto_dvc.training.metrics import planning_metrics, prediction_metrics
from pluto_dvc.training.optim import build_optimizer
from pluto_dvc.training.targets import future_states, select_target


class NonFiniteLossError(PlutoDvcError):
    """A loss term became NaN or infinite: training stops and names the step and the term."""


class PlutoTrainingModule(L.LightningModule):
    """``data``: facts of the cache the losses need: history (present index), future_steps,
    dt (s), mode_length_m (the target-mode range, radius), cost_map_resolution (m / px)."""

    def __init__(self, model_config: dict, train: dict, data: dict, steps_per_epoch: int = 1):
        super().__init__()
        self.save_hyperparameters()
        self.config = ModelConfig.from_dict(model_config)
        self.train_params = TrainParams(**train)
        self.data = dict(data)
        self.steps_per_epoch = steps_per_epoch
        self.model = model_pkg.PlutoModel(self.config)

    @classmethod
    def create(
        cls, config: ModelConfig, train: TrainParams, data: dict, steps_per_epoch: int
    ) -> PlutoTrainingModule:
        return cls(config.to_dict(), train.model_dump(mode="json"), data, steps_per_epoch)

    def forward(self, batch: PlutoBatch):
        return self.model(batch)

    # ------------------------------------------------------------------------------ step
    def _step(self, batch: PlutoBatch, stage: str) -> torch.Tensor:
        p = self.train_params
        flat = batch.to_flat()
        history = int(self.data["history"])
        b = flat["current_state"].shape[0]
        contrastive = stage == "train" and p.contrastive
        if contrastive:
            cb = make_contrastive_batch(
                flat,
                history,
                float(self.data["cost_map_resolution"]),
                list(p.negative_kinds),
                p.positive_probability,
                p.drop_non_interacting_probability,
            )
            flat = cb.flat
        out = self.model(PlutoBatch.from_flat(flat) if contrastive else batch)
        imitate = slice(0, 2 * b) if contrastive else slice(0, b)
        if contrastive:  # positives not drawn this step are not imitated
            keep = torch.cat([torch.ones_like(cb.positive_valid), cb.positive_valid])
        else:
            keep = None
        terms = self.loss_terms(flat, out, imitate, keep)
        if contrastive and out.hidden is not None:
            usable = cb.positive_valid & cb.negative_valid
            h = out.hidden
            if usable.any():
                terms["contrastive"] = losses.contrastive_loss(
                    h[:b][usable],
                    h[b : 2 * b][usable],
                    h[2 * b :][usable],
                    p.contrastive_temperature,
                )
            else:
                terms["contrastive"] = h.sum() * 0.0
        self._check_finite(terms, stage)
        weights = p.loss_weights
        loss = torch.stack([getattr(weights, k) * v for k, v in terms.items()]).sum()
        log = {f"{stage}/{k}_loss": v.detach() for k, v in terms.items()}
        log[f"{stage}/loss"] = loss.detach()
        on_step = stage == "train"
        self.log_dict(log, on_step=on_step, on_epoch=True, batch_size=b, sync_dist=stage != "train")
        if stage != "train":
            self._log_metrics(flat, out, stage)
        return loss

    def loss_terms(
        self, flat, out, rows: slice, keep: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """Every imitation loss on the samples ``rows`` of the batch (``keep``: (n,) bool)."""
        d = self.data
        f = int(d["future_steps"])
        sel = {k: v[rows] for k, v in flat.items()}
        if keep is not None:
            sel = {k: v[keep] for k, v in sel.items()}
        pick = (lambda t: t[rows][keep]) if keep is not None else (lambda t: t[rows])
        states, valid = future_states(
            sel["agent.position"],
            sel["agent.heading"],
            sel["agent.velocity"],
            sel["agent.valid_mask"],
            f,
        )
        ego, ego_valid = states[:, 0], valid[:, 0]
        line_valid = sel["reference_line.valid_mask"].any(-1)
        query = select_target(
            sel["reference_line.future_projection"],
            line_valid,
            ego_valid,
            self.config.num_modes,
            float(d["mode_length_m"]),
        )
        trajectory = pick(out.trajectory)
        n = torch.arange(trajectory.shape[0], device=trajectory.device)
        best = trajectory[n, query.line, query.mode]  # (n, F, 6)
        reg_valid = ego_valid & query.has_line[:, None]
        terms = {
            "regression": losses.regression_loss(best, ego, reg_valid),
            "classification": losses.classification_loss(
                pick(out.probability), line_valid, query.line, query.mode, query.has_line
            ),
            "prediction": losses.prediction_loss(pick(out.prediction), states[:, 1:], valid[:, 1:]),
        }
        if "cost_maps" in sel:
            terms["collision"] = losses.collision_loss(
                best, sel["cost_maps"], float(d["cost_map_resolution"])
            )
        if out.ref_free_trajectory is not None:
            terms["ref_free"] = losses.ref_free_loss(pick(out.ref_free_trajectory), ego, ego_valid)
        return terms

    def _check_finite(self, terms: dict[str, torch.Tensor], stage: str) -> None:
        values = torch.stack([v.detach() for v in terms.values()])
        if bool(torch.isfinite(values).all()):
            return
        bad = [k for k, v in terms.items() if not bool(torch.isfinite(v.detach()))]
        raise NonFiniteLossError(
            f"{stage} loss is not finite at global step {self.global_step} (epoch "
            f"{self.current_epoch}, batch {self._batch_idx}): term(s) "
            + ", ".join(f"{k}={terms[k].item()}" for k in bad)
            + ". Lower train.lr, check the cache (`pluto-dvc cache verify`), or use "
            "train.precision: 32-true"
        )

    def _log_metrics(self, flat, out, stage: str) -> None:
        d = self.data
        f = int(d["future_steps"])
        history = int(d["history"])
        states, valid = future_states(
            flat["agent.position"],
            flat["agent.heading"],
            flat["agent.velocity"],
            flat["agent.valid_mask"],
            f,
        )
        line_valid = flat["reference_line.valid_mask"].any(-1)
        cv_velocity = flat["agent.velocity"][:, 0, history]
        values, counted = planning_metrics(
            out.trajectory,
            out.probability,
            line_valid,
            states[:, 0],
            valid[:, 0],
            cv_velocity,
            float(d["dt"]),
        )
        n = int(counted.sum())
        if n:
            for name, v in values.items():
                self.log(
                    f"{stage}/{name}",
                    v[counted].mean(),
                    on_epoch=True,
                    batch_size=n,
                    sync_dist=True,
                )
        ade_sum, fde_sum, agents = prediction_metrics(out.prediction, states[:, 1:], valid[:, 1:])
        if int(agents):
            k = int(agents)
            self.log(f"{stage}/pred_ade", ade_sum / k, on_epoch=True, batch_size=k, sync_dist=True)
            self.log(f"{stage}/pred_fde", fde_sum / k, on_epoch=True, batch_size=k, sync_dist=True)

    # ----------------------------------------------------------------------- lightning hooks
    def training_step(self, batch: PlutoBatch, batch_idx: int):
        self._batch_idx = batch_idx
        return self._step(batch, "train")

    def validation_step(self, batch: PlutoBatch, batch_idx: int):
        self._batch_idx = batch_idx
        return self._step(batch, "val")

    def test_step(self, batch: PlutoBatch, batch_idx: int):
        self._batch_idx = batch_idx
        return self._step(batch, "test")

    def configure_optimizers(self):
        p = self.train_params
        optimizer, schedule = build_optimizer(
            self.model,
            p.lr,
            p.weight_decay,
            p.min_lr,
            p.epochs,
            p.warmup_epochs,
            self.steps_per_epoch,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "step"},
        }

    def on_train_epoch_start(self) -> None:
        # dropout, state dropout and augmentation draws depend only on (seed, epoch, rank), so a
        # resumed run repeats an uninterrupted one exactly
        seed = self.train_params.seed * 1_000_003 + self.current_epoch * 1009 + self.global_rank
        torch.manual_seed(seed)
