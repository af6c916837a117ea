"""DP-SGD fine-tuning with TF Privacy (the authors', fixed as docs/deviations.md says): true per-example clipping,
Gaussian noise, and epsilon from the RDP and PLD accountants (defenses/accounting.py), stored in the run JSON.

- Per-example gradients: TrainingModel hands the per-example loss vector and its tape to this hook, which runs
  TF Privacy's DP optimiser (`GenericDPAdamOptimizer` / `GenericDPSGDOptimizer` with a Gaussian sum query,
  num_microbatches=None = one microbatch per example) to clip each example's gradient to C and add N(0, (C sigma)^2).
- Pruned weights: tfmot's layers use the raw kernel, so a pruned entry still gets a gradient; it would spend
  clip budget on weights that are reset to 0 after the step (the authors' bug). The query multiplies each
  example's gradient by the masks before clipping; the noised result is masked again (post-processing).
- BatchNorm is frozen (trainable=False, so it runs on the original model's moving statistics): in training mode
  its batch statistics make each example's output depend on the other examples of the batch, and per-example
  clipping would then no longer bound one example's influence. Freezing keeps the pretrained statistics, which
  GroupNorm replacement would throw away.
- Coupled weight decay is added after noising: it depends on the weights only, so it is post-processing.
- Accounting assumes Poisson sampling with q = B / N (the standard DP-SGD analysis) while Keras feeds shuffled
  fixed-size batches, as TF Privacy's own tutorials do; steps count every epoch run (early stopping selects
  by the dev split, but over models that saw all those steps). delta defaults to min(1e-5, N^-1.1)
  (`default_delta`): 1/N would allow exposing one record in N outright.
- Scope `finetune` (the default): epsilon covers the fine-tuning only. The original model was trained on the same
  members without DP and the masks come from it, so the released model is not DP as a whole; the number measures
  this stage. Scope `end_to_end`: the original victim is trained with DP-SGD too (its BatchNorm frozen at
  initialisation, for the reason above), the pruning masks are chosen from its (private) weights, which is
  post-processing, and both runs compose into one epsilon that covers the released model. Pruners that train on
  the data before choosing masks (their own pre-phase) would spend privacy outside the accountant, so they are
  refused in that scope.
"""
from __future__ import annotations

import dataclasses
from typing import List, Mapping, Optional, Sequence


from tfprune_mia.backend import keras, tf
from tfprune_mia.defenses.accounting import DpSgdStage, calibrate_noise, composed_epsilon, default_delta
from tfprune_mia.defenses.base import DEFENSES, Defense, DefenseContext
from tfprune_mia.errors import ConfigError
from tfprune_mia.options import Options, short
from tfprune_mia.training import TrainingHook

# TF Privacy is imported where DP is used: importing it (and TensorFlow Probability with it) costs ~0.7 s and
# ~50 MB, which every process without DP would otherwise pay.


def _dp_adam(query, lr):
    from tensorflow_privacy.privacy.optimizers.dp_optimizer_keras import GenericDPAdamOptimizer

    return GenericDPAdamOptimizer(dp_sum_query=query, num_microbatches=None, learning_rate=lr, epsilon=1e-8)


def _dp_sgd(query, lr):
    from tensorflow_privacy.privacy.optimizers.dp_optimizer_keras import GenericDPSGDOptimizer

    return GenericDPSGDOptimizer(dp_sum_query=query, num_microbatches=None, learning_rate=lr)


DP_OPTIMIZERS = {"adam": _dp_adam, "sgd": _dp_sgd}


SCOPES = ("finetune", "end_to_end")


def dp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
               accountant: str = "rdp") -> float:
    """epsilon of `steps` Poisson-subsampled Gaussian mechanisms; inf without noise, 0 without steps."""
    return composed_epsilon([DpSgdStage(noise_multiplier, sample_rate, steps)], delta, accountant)


def masked_query_class() -> type:
    """MaskedGaussianSumQuery: TF Privacy's GaussianSumQuery that zeroes the pruned entries of each example's
    gradient before clipping it. Built on first use (see above); kept as the module attribute of that name, which
    tests may replace."""
    query_class = globals().get("MaskedGaussianSumQuery")
    if query_class is None:
        from tensorflow_privacy.privacy.dp_query.gaussian_query import GaussianSumQuery

        class MaskedGaussianSumQuery(GaussianSumQuery):
            masks = None  # per record entry: a mask variable or None; set at trace time by DPTraining

            def preprocess_record_impl(self, params, record):
                if self.masks is not None:
                    record = [r if m is None else r * tf.cast(m, r.dtype) for r, m in zip(record, self.masks)]
                return super().preprocess_record_impl(params, record)

        globals()["MaskedGaussianSumQuery"] = query_class = MaskedGaussianSumQuery
    return query_class


def __getattr__(name: str):
    if name == "MaskedGaussianSumQuery":
        return masked_query_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def freeze_batch_norm(net: keras.Model) -> int:
    frozen = 0
    for layer in net.submodules:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            frozen += 1
    return frozen


class DPTraining(TrainingHook):
    computes_gradients = True

    def __init__(self, noise_multiplier: float, l2_norm_clip: float, optimizer: str = "adam"):
        self.noise_multiplier = float(noise_multiplier)
        self.l2_norm_clip = float(l2_norm_clip)
        self.optimizer_name = optimizer
        self.model = None

    def attach(self, model):
        others = [term for term in model.loss_terms if term is not self]
        if others:
            raise ConfigError("DP-SGD clips per-example gradients and cannot be combined with other loss terms "
                              "(batch-level terms couple examples); use --defense=dp alone with a standard pruner")
        self.model = model
        freeze_batch_norm(model.net)
        self.masks = {variable.ref(): mask for variable, mask in model.mask_pairs}

    def make_optimizer(self, config):
        query = masked_query_class()(self.l2_norm_clip, self.l2_norm_clip * self.noise_multiplier)
        return DP_OPTIMIZERS[self.optimizer_name](query, config.learning_rate)

    def compute_gradients(self, tape, per_example_loss, variables):
        optimizer = self.model.optimizer
        query = getattr(optimizer, "_dp_sum_query", None)
        if not isinstance(query, masked_query_class()):
            raise ConfigError("the DP defense needs its own DP optimiser; do not pass optimizer= to fit_classifier")
        masks = [self.masks.get(variable.ref()) for variable in variables]
        query.masks = masks
        # TF Privacy's DP optimisers compute, clip and noise per-example gradients here (apply_gradients asserts
        # that this ran); there is no public method that returns the noised gradients without applying them.
        grads_and_vars = optimizer._compute_gradients(per_example_loss, variables, tape=tape)
        return [g if m is None else g * tf.cast(m, g.dtype) for (g, _), m in zip(grads_and_vars, masks)]


@dataclasses.dataclass(frozen=True)
class DPOptions(Options):
    """clip: the per-example clip norm C; target_epsilon: calibrate sigma to it for the maximum number of epochs
    (overrides the strength); delta: of the reported epsilon (None: min(1e-5, N^-1.1) of the model's training set
    of N records); optimizer: the TF Privacy DP optimiser; scope: `finetune` (DP fine-tuning of a non-private
    original) or `end_to_end` (the original victim trained with DP-SGD too: one composed epsilon for the released
    model)."""

    flag_prefix = "dp"
    clip: float = 1.0
    target_epsilon: Optional[float] = None
    delta: Optional[float] = None
    optimizer: str = "adam"
    scope: str = "finetune"

    def validate(self):
        if not self.clip > 0:
            raise ConfigError(f"dp_clip={self.clip}: the clip norm must be positive (e.g. 1.0)")
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise ConfigError(f"dp_target_epsilon={self.target_epsilon}: must be positive (e.g. 8)")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigError(f"dp_delta={self.delta}: must be in (0, 1), e.g. 1e-5; omit it for min(1e-5, N^-1.1)")
        if self.optimizer not in DP_OPTIMIZERS:
            raise ConfigError(f"unknown dp_optimizer {self.optimizer!r}; choose one of: "
                              f"{', '.join(DP_OPTIMIZERS)}")
        if self.scope not in SCOPES:
            raise ConfigError(f"unknown dp_scope {self.scope!r}; choose one of: {', '.join(SCOPES)}")
        if self.scope == "end_to_end" and self.target_epsilon is not None:
            # The original is trained before the fine-tuning's length is known to the defense, so a target
            # cannot be split between the stages here; a fixed sigma composes exactly.
            raise ConfigError("dp_target_epsilon cannot be combined with dp_scope=end_to_end; set the noise "
                              "multiplier with --defense_arg (the reported epsilon composes both stages)")


@DEFENSES.register("dp")
class DPSGD(Defense):
    default_strength = 1.0  # noise multiplier sigma (the authors' 0.1 gives no meaningful epsilon)
    options_class = DPOptions
    # TF Privacy 0.9's DP optimisers clip, sum and noise the gradients of each replica's share of the batch;
    # the strategy then adds the replicas' noised sums, so noise and scale are not what the accountant assumes.
    strategy_refusal = "TF Privacy's DP optimisers noise each replica's gradients separately"

    @classmethod
    def key(cls, config):
        options = config.options
        noise = (f"eps{short(options.target_epsilon)}" if options.target_epsilon is not None
                 else f"s{short(config.strength)}")
        delta = "" if options.delta is None else f"-d{short(options.delta)}"
        scope = "" if options.scope == "finetune" else "-e2e"
        return f"dp-{noise}-c{short(options.clip)}-{options.optimizer}{delta}{scope}"

    @classmethod
    def trains_original(cls, config) -> bool:
        return config.options.scope == "end_to_end"

    @classmethod
    def check_pruner(cls, config, pruner) -> None:
        if cls.trains_original(config) and pruner.trains_before_masking():
            raise ConfigError("dp_scope=end_to_end needs masks chosen from the private weights alone, but this "
                              "pruner trains on the data before choosing them, outside the accountant; use "
                              "--pruner=l1_unstructured (or another magnitude pruner) or --dp_scope=finetune")

    def delta(self, context: DefenseContext) -> float:
        return self.options.delta if self.options.delta is not None else default_delta(context.num_members)

    def sample_rate(self, context: DefenseContext) -> float:
        return min(1.0, context.train_config.batch_size / context.num_members)

    def noise_multiplier(self, context: DefenseContext) -> float:
        if self.options.target_epsilon is None:
            return float(self.config.strength)
        # Calibrated for the maximum number of epochs, so early stopping can only spend less.
        steps = context.train_config.epochs * context.steps_per_epoch
        return calibrate_noise(self.options.target_epsilon, self.sample_rate(context), steps, self.delta(context))

    def hooks(self, context):
        return [DPTraining(self.noise_multiplier(context), self.options.clip, self.options.optimizer)]

    def summary(self, context, fit):
        sigma = self.noise_multiplier(context)
        steps = fit.epochs_completed * context.steps_per_epoch
        delta = self.delta(context)
        stage = DpSgdStage(sigma, self.sample_rate(context), steps)
        stages = _stages(context.prior_stages) + [stage]
        end_to_end = self.trains_original(self.config)
        summary = {"noise_multiplier": sigma, "l2_norm_clip": self.options.clip, "delta": delta,
                   "members": context.num_members,
                   "sample_rate": self.sample_rate(context), "steps": steps,
                   "epochs": fit.epochs_completed, "scope": self.options.scope,
                   "epsilon": composed_epsilon(stages, delta, "rdp"),
                   "epsilon_pld": composed_epsilon(stages, delta, "pld"),
                   "stages": [dataclasses.asdict(s) for s in stages],
                   # End to end, every training run on these records is in `stages`; otherwise the original's
                   # non-private training is not, and the epsilon says nothing about the released model.
                   "covers_released_model": end_to_end,
                   "accounting": ("RDP and PLD, Poisson-subsampled Gaussian (dp_accounting); "
                                  + ("every training stage, composed" if end_to_end else "fine-tuning stage only"))}
        if sigma > 0 and steps > 0 and len(stages) == 1:
            from tensorflow_privacy.privacy.analysis.compute_dp_sgd_privacy_lib import \
                compute_dp_sgd_privacy_statement
            summary["statement"] = compute_dp_sgd_privacy_statement(
                number_of_examples=context.num_members, batch_size=context.train_config.batch_size,
                num_epochs=fit.epochs_completed, noise_multiplier=sigma, delta=delta)
        return summary


def _stages(records: Sequence[Mapping]) -> List[DpSgdStage]:
    return [DpSgdStage(float(r["noise_multiplier"]), float(r["sample_rate"]), int(r["steps"])) for r in records]
