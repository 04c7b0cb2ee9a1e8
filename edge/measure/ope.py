"""Off-policy evaluation of a candidate offer model from the ledger's logged decisions (docs/measurement.md).

For every identified decision of a period the candidate's probability of the action the gateway took is
computed under the running policy's own rules (``edge.decide.policy``: holdout and "nothing eligible" show
the fallback; otherwise the greedy offer by ``greedy_index`` gets ``1 - epsilon`` and each eligible offer
``epsilon / n``), with the candidate's scores from onnxruntime on features rebuilt from the logged context
(``edge.decide.logged``) through ``FeatureBuilder.build``. The running model goes through the same steps, so
both estimates come from the same decisions and the same estimator (``edge.measure.estimates.off_policy``).

The reward is the one the report attributes (``edge.ledger.measure.decision_rewards``: the shown offer bought
within the attribution window, 1/0). Rows stream from the ledger; per decision only a few numbers are kept
(numpy-backed arrays), and features are scored in chunks of ``CHUNK_ROWS`` rows, one run per model.

The doubly robust estimate's reward model is the logged mean reward of each action (each offer, and the
fallback), the same for both models; see ``_reward_model`` for why not the candidate's own score.
"""

from __future__ import annotations

import json
import logging
import math
from array import array
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from statistics import NormalDist
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from edge.config import GatewaySettings
from edge.config.decisions import PolicySettings
from edge.decide.catalog import Catalog, Offer
from edge.decide.features import FeatureBuilder
from edge.decide.lifecycle import ModelStore
from edge.decide.logged import ContextError, decode_context
from edge.decide.policy import choice_propensity, greedy_index
from edge.decide.scorer import OnnxScorer, Scorer, load_model
from edge.ledger.measure import decision_rewards
from edge.ledger.ope import Connection, LoggedRow, anonymous_decisions, identified_decisions, snapshot
from edge.measure.estimates import Interval, OffPolicy, off_policy
from edge.onnxrt import ORT_ERRORS

log = logging.getLogger(__name__)

# Feature rows scored per onnxruntime run: ~400 decisions of 50 offers, 22 features x 4 bytes x 20k = 1.8 MB
# per model; large enough that the per-run overhead vanishes, small enough to stay in cache.
CHUNK_ROWS: Final = 20_000
# Feature builders kept (one per distinct logged offer list and model): a catalog changes a few times a day.
_BUILDERS: Final = 16
_FALLBACK: Final = 0  # the action code of "no offer"
_DAY_S: Final = 86_400.0
# Reward rows held while the two streams disagree (they should not: same rows, same order, one transaction).
_LOOKAHEAD: Final = 10_000


class Skip(StrEnum):
    """Why a logged decision is not in the estimate (the summary's ``skipped`` keys)."""

    ANONYMOUS = "anonymous"  # no shopper kept (no measurement consent): no outcome to evaluate by
    NO_REWARD = "no_reward"  # identified, but the reward query did not return it (written meanwhile)
    NO_CANDIDATES = "no_candidates"  # a display's idle content (expiry, start-up), not a choice among offers
    BAD_CANDIDATES = "bad_candidates"  # the candidates column does not parse
    PROPENSITY_ZERO = "propensity_zero"  # logged with propensity 0 (or not in (0, 1]): no importance weight
    INCONSISTENT = "inconsistent"  # the logged action is not one the policy could take (e.g. not eligible)
    NO_CONTEXT = "no_context"  # logged before contexts were, or erased with the shopper
    BAD_CONTEXT = "bad_context"  # the context blob does not decode
    CUT_CONTEXT = "cut_context"  # the basket was cut when logged: features cannot be rebuilt exactly
    OFFER_GONE = "offer_gone"  # an eligible offer is no longer in the catalog: it cannot be scored
    CANDIDATE_ERROR = "candidate_model_error"  # the candidate's run failed or gave a score outside [0, 1]
    RUNNING_ERROR = "running_model_error"


class RewardSource(Protocol):
    """``edge.ledger.measure.decision_rewards``: (decision_id, converted 0/1, revenue) by time, then id."""

    def __call__(
        self,
        conn: Connection,
        since: float,
        until: float,
        window_s: float,
        offers: Iterable[Offer],
        *,
        pos_clock_tolerance_s: float = ...,
    ) -> Iterable[tuple[str, int, float]]: ...


@dataclass(frozen=True, slots=True)
class Estimate:
    """One model's value (the conversion rate of the offers its policy would show) over the logged decisions."""

    model_version: str
    result: OffPolicy | None  # None: no decision could be evaluated
    skipped: Mapping[str, int]

    @property
    def n(self) -> int:
        return 0 if self.result is None else self.result.n

    def as_json(self) -> dict[str, Any]:
        """The summary's ``EST``: ``ips``, ``snips``, ``dr`` as ``[value, low, high]`` (null without data)."""
        r = self.result
        return {
            "model_version": self.model_version,
            "n": self.n,
            "ess": None if r is None else round(r.effective_sample_size, 3),
            "ips": _triple(None if r is None else r.ips),
            "snips": _triple(None if r is None else r.snips),
            "dr": _triple(None if r is None else r.dr),
            "skipped": dict(sorted(self.skipped.items())),
        }


class Verdict(StrEnum):
    BETTER = "better"
    WORSE = "worse"
    NOT_DISTINGUISHABLE = "not distinguishable"


@dataclass(frozen=True, slots=True)
class Comparison:
    """The candidate against the running model on the same decisions."""

    candidate: Estimate
    running: Estimate
    difference: Interval | None  # DR, candidate minus running, paired per decision
    confidence: float

    @property
    def verdict(self) -> Verdict:
        d = self.difference
        if d is None or d.contains(0.0):
            return Verdict.NOT_DISTINGUISHABLE
        return Verdict.BETTER if d.low > 0 else Verdict.WORSE

    def summary_part(self) -> dict[str, Any]:
        """The summary's ``"ope"`` value: ``{"candidate": EST, "running": EST}``."""
        return {"candidate": self.candidate.as_json(), "running": self.running.as_json()}


def _triple(interval: Interval | None) -> list[float] | None:
    if interval is None:
        return None
    return [round(interval.estimate, 6), round(interval.low, 6), round(interval.high, 6)]


@dataclass(slots=True)
class _Pending:
    """A decision waiting for its chunk's scores; transient (at most a chunk's worth exist)."""

    start: int  # first row in the chunk's matrices
    rows: npt.NDArray[np.intp]  # the eligible offers' rows of its matrix, in candidate order
    weight: npt.NDArray[np.float32]  # 1 + value of each eligible offer
    logged: int  # the logged offer's position among the eligible ones
    action: int  # its action code
    codes: tuple[int, ...]  # every eligible offer's action code
    reward: float
    propensity: float


@dataclass(slots=True)
class _Columns:
    """Per evaluated decision, what the estimators need: compact arrays, not one object per decision."""

    reward: array[float] = field(default_factory=lambda: array("d"))
    propensity: array[float] = field(default_factory=lambda: array("d"))
    action: array[int] = field(default_factory=lambda: array("i"))
    choice_set: array[int] = field(default_factory=lambda: array("i"))  # -1: the fallback was forced
    q: tuple[array[float], array[float]] = field(default_factory=lambda: (array("d"), array("d")))
    greedy: tuple[array[int], array[int]] = field(default_factory=lambda: (array("i"), array("i")))


class _Rewards:
    """Joins the reward stream to the decision stream: both list the same decisions in the same order (the
    same rows, ``ORDER BY at_wall, decision_id``, in one read transaction), so each lookup is normally the
    next row. Rows passed over while looking for one are held (at most ``_LOOKAHEAD``) for a later lookup."""

    __slots__ = ("_held", "_rows")

    def __init__(self, rows: Iterable[tuple[str, int, float]]) -> None:
        self._rows: Iterator[tuple[str, int, float]] = iter(rows)
        self._held: dict[str, float] = {}

    def get(self, decision_id: str) -> float | None:
        held = self._held.pop(decision_id, None)
        if held is not None:
            return held
        for scanned, (row_id, converted, _revenue) in enumerate(self._rows):
            reward = 1.0 if converted else 0.0
            if row_id == decision_id:
                return reward
            if len(self._held) >= _LOOKAHEAD:
                del self._held[next(iter(self._held))]  # the oldest: a row no decision asked for
            self._held[row_id] = reward
            if scanned >= _LOOKAHEAD:
                break  # no reward row near this decision's place: it has none
        return None


class _Evaluator:
    """Streams logged decisions through both models and keeps the per-decision numbers."""

    def __init__(
        self, models: tuple[Scorer, Scorer], catalog: Catalog, policy: PolicySettings, rewards: _Rewards
    ) -> None:
        self.models = models
        self.same_rules = models[0].basket_rules == models[1].basket_rules
        self.offers = {offer.id: offer for offer in catalog.offers}
        self.policy = policy
        self.epsilon = policy.epsilon
        self.rewards = rewards
        self.skipped: Counter[str] = Counter()
        self.columns = _Columns()
        self.codes: dict[str, int] = {}
        self.choice_sets: dict[tuple[int, ...], int] = {}
        self._builders: OrderedDict[tuple[int, tuple[str, ...]], FeatureBuilder] = OrderedDict()
        self._pending: list[_Pending] = []
        self._matrices: tuple[list[npt.NDArray[np.float32]], list[npt.NDArray[np.float32]]] = ([], [])
        self._rows = 0

    def code(self, offer_id: str) -> int:
        code = self.codes.get(offer_id)
        if code is None:
            code = self.codes[offer_id] = len(self.codes) + 1  # 0 is the fallback
        return code

    def add(self, row: LoggedRow) -> None:
        try:
            candidates = json.loads(row.candidates)
            ids = [str(c["offer_id"]) for c in candidates]
            eligible = [c["eligible"] is True for c in candidates]
        except (ValueError, TypeError, KeyError):
            self.skipped[Skip.BAD_CANDIDATES] += 1
            return
        if not ids:
            self.skipped[Skip.NO_CANDIDATES] += 1
            return
        if not 0.0 < row.propensity <= 1.0:
            self.skipped[Skip.PROPENSITY_ZERO] += 1
            return
        reward = self.rewards.get(row.decision_id)
        if reward is None:
            self.skipped[Skip.NO_REWARD] += 1
            return
        n_eligible = sum(eligible)
        if row.holdout or n_eligible == 0:
            # Both policies show the fallback here whatever the models say: weight 1, no scores needed.
            if row.offer_id is not None:
                self.skipped[Skip.INCONSISTENT] += 1
                return
            self._keep_forced(reward, row.propensity)
            return
        eligible_ids = [offer_id for offer_id, ok in zip(ids, eligible, strict=True) if ok]
        if row.offer_id is None or row.offer_id not in eligible_ids:
            self.skipped[Skip.INCONSISTENT] += 1
            return
        self._add_choice(row, row.offer_id, ids, eligible_ids, reward)

    def _add_choice(
        self, row: LoggedRow, chosen: str, ids: list[str], eligible_ids: list[str], reward: float
    ) -> None:
        if row.context is None:
            self.skipped[Skip.NO_CONTEXT] += 1
            return
        try:
            logged = decode_context(
                row.context, display_id=row.display_id, zone=row.zone, at_wall=row.at_wall
            )
        except ContextError:
            self.skipped[Skip.BAD_CONTEXT] += 1
            return
        if not logged.complete:
            self.skipped[Skip.CUT_CONTEXT] += 1
            return
        if any(offer_id not in self.offers for offer_id in eligible_ids):
            self.skipped[Skip.OFFER_GONE] += 1
            return
        known = tuple(offer_id for offer_id in ids if offer_id in self.offers)
        position = {offer_id: i for i, offer_id in enumerate(known)}
        rows = np.array([position[offer_id] for offer_id in eligible_ids], dtype=np.intp)
        try:
            matrices = [self._builder(i, known).build(logged.context)[rows] for i in range(self._n_builds)]
        except (ValueError, OverflowError, OSError):  # an at_wall no calendar holds
            self.skipped[Skip.BAD_CONTEXT] += 1
            return
        codes = tuple(self.code(offer_id) for offer_id in eligible_ids)
        self._pending.append(
            _Pending(
                start=self._rows,
                rows=rows,
                weight=np.array([1.0 + self.offers[i].value for i in eligible_ids], dtype=np.float32),
                logged=eligible_ids.index(chosen),
                action=self.code(chosen),
                codes=codes,
                reward=reward,
                propensity=row.propensity,
            )
        )
        for index, matrix in enumerate(matrices):
            self._matrices[index].append(matrix)
        self._rows += len(rows)
        if self._rows >= CHUNK_ROWS:
            self.flush()

    @property
    def _n_builds(self) -> int:
        return 1 if self.same_rules else 2

    def _builder(self, model: int, known: tuple[str, ...]) -> FeatureBuilder:
        key = (model, known)
        builder = self._builders.get(key)
        if builder is None:
            offers = [self.offers[offer_id] for offer_id in known]
            builder = FeatureBuilder(offers, self.policy.tz, self.models[model].basket_rules)
            self._builders[key] = builder
            if len(self._builders) > _BUILDERS:
                self._builders.popitem(last=False)
        else:
            self._builders.move_to_end(key)
        return builder

    def _keep_forced(self, reward: float, propensity: float) -> None:
        c = self.columns
        c.reward.append(reward)
        c.propensity.append(propensity)
        c.action.append(_FALLBACK)
        c.choice_set.append(-1)
        for model in (0, 1):
            c.q[model].append(1.0)
            c.greedy[model].append(_FALLBACK)

    def flush(self) -> None:
        """Score the pending decisions (one run per model) and keep their numbers."""
        pending, self._pending = self._pending, []
        matrices, self._matrices = self._matrices, ([], [])
        self._rows = 0
        if not pending:
            return
        scores = []
        for model in (0, 1):
            stacked = np.concatenate(matrices[model if not self.same_rules else 0])
            try:
                scores.append(np.asarray(self.models[model].score(stacked), dtype=np.float32).reshape(-1))
            except ORT_ERRORS as exc:
                log.warning(
                    "model %s failed on %d decisions: %s", self.models[model].version, len(pending), exc
                )
                scores.append(np.full(len(stacked), np.nan, dtype=np.float32))
        # A score outside [0, 1] (NaN included) spoils its decision: one pass over the chunk, then per decision
        # the count of spoilt rows in its range from the running sums.
        spoilt = [np.concatenate(([0], np.cumsum(~((own >= 0.0) & (own <= 1.0))))).tolist() for own in scores]
        for item in pending:
            self._keep_choice(item, scores, spoilt)

    def _keep_choice(
        self, item: _Pending, scores: list[npt.NDArray[np.float32]], spoilt: list[list[int]]
    ) -> None:
        n = len(item.rows)
        start, end = item.start, item.start + n
        greedy = []
        zeros = np.zeros(n, dtype=np.float32)  # only eligible rows: nothing to mask
        scratch = np.empty(n, dtype=np.float32)
        for model, reason in ((0, Skip.CANDIDATE_ERROR), (1, Skip.RUNNING_ERROR)):
            if spoilt[model][end] != spoilt[model][start]:
                self.skipped[reason] += 1
                return
            greedy.append(greedy_index(scores[model][start:end], item.weight, zeros, (), scratch))
        c = self.columns
        c.reward.append(item.reward)
        c.propensity.append(item.propensity)
        c.action.append(item.action)
        choice_set = self.choice_sets.get(item.codes)
        if choice_set is None:
            choice_set = self.choice_sets[item.codes] = len(self.choice_sets)
        c.choice_set.append(choice_set)
        for model in (0, 1):
            c.q[model].append(
                choice_propensity(greedy=greedy[model] == item.logged, epsilon=self.epsilon, n_eligible=n)
            )
            c.greedy[model].append(item.codes[greedy[model]])


def _reward_model(columns: _Columns, n_codes: int) -> npt.NDArray[np.float64]:
    """Per action code, the mean logged reward of the decisions that took it (the overall mean if none did).

    Why not the candidate's own score read as a conversion probability: the reward here is the report's
    attributed conversion within the window, which the model was not trained to predict (its scale is the
    training data's); the fallback has no score at all; and a candidate sure of itself would inflate its own
    DR term. The per-action mean is calibrated to this store's rewards, exists for every action, and is the
    same for both models, so their difference does not come from the reward model. DR stays unbiased with any
    reward model when the logged propensities are right; a better one only narrows the interval.
    """
    reward = np.frombuffer(columns.reward, dtype=np.float64)
    action = np.array(columns.action, dtype=np.intp)
    counts = np.bincount(action, minlength=n_codes).astype(np.float64)
    sums = np.bincount(action, weights=reward, minlength=n_codes)
    overall = float(reward.mean()) if reward.size else 0.0
    return np.where(counts > 0, sums / np.maximum(counts, 1.0), overall)


def _estimates(
    evaluator: _Evaluator, confidence: float
) -> tuple[OffPolicy | None, OffPolicy | None, Interval | None]:
    c = evaluator.columns
    n = len(c.reward)
    if n == 0:
        return None, None, None
    m = _reward_model(c, len(evaluator.codes) + 1)
    epsilon = evaluator.epsilon
    set_means = np.array([m[list(codes)].mean() for codes in evaluator.choice_sets], dtype=np.float64)
    reward = np.frombuffer(c.reward, dtype=np.float64)
    logged = np.frombuffer(c.propensity, dtype=np.float64)
    action = np.array(c.action, dtype=np.intp)
    choice_set = np.array(c.choice_set, dtype=np.intp)
    forced = choice_set < 0
    m_logged = m[action]
    results, terms = [], []
    for model in (0, 1):
        q = np.frombuffer(c.q[model], dtype=np.float64)
        greedy = np.array(c.greedy[model], dtype=np.intp)
        explore = set_means[np.where(forced, 0, choice_set)] if set_means.size else np.zeros(n)
        m_policy = np.where(forced, m[_FALLBACK], (1.0 - epsilon) * m[greedy] + epsilon * explore)
        results.append(
            off_policy(
                reward,
                logged,
                q,
                predicted_logged=m_logged,
                predicted_candidate=m_policy,
                confidence=confidence,
            )
        )
        # The DR estimate's per-decision terms (as off_policy computes them), for the paired difference.
        terms.append(m_policy + q / logged * (reward - m_logged))
    difference = terms[0] - terms[1]
    half = NormalDist().inv_cdf(0.5 + confidence / 2.0) * (
        float(difference.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    )
    mean = float(difference.mean())
    return results[0], results[1], Interval(mean, mean - half, mean + half)


def evaluate(
    conn: Connection,
    *,
    candidate: Scorer,
    running: Scorer,
    catalog: Catalog,
    policy: PolicySettings,
    since: float,
    until: float,
    window_s: float,
    rewards: RewardSource,
    pos_clock_tolerance_s: float = 600.0,
    confidence: float = 0.95,
) -> Comparison:
    """The candidate's and the running model's value over the identified decisions made in ``[since, until)``.

    ``rewards`` is ``edge.ledger.measure.decision_rewards`` (a parameter so a test may pass its own). Both
    reads run in one read transaction, so they see the same decisions beside a writing gateway, in the same
    order (time, then id).
    """
    with snapshot(conn):
        stream = rewards(
            conn, since, until, window_s, catalog.offers, pos_clock_tolerance_s=pos_clock_tolerance_s
        )
        evaluator = _Evaluator((candidate, running), catalog, policy, _Rewards(stream))
        for row in identified_decisions(conn, since, until):
            evaluator.add(row)
        evaluator.flush()
        anonymous = anonymous_decisions(conn, since, until)
    if anonymous:
        evaluator.skipped[Skip.ANONYMOUS] = anonymous
    cand, run, difference = _estimates(evaluator, confidence)
    skipped = dict(evaluator.skipped)
    return Comparison(
        candidate=Estimate(candidate.version, cand, skipped),
        running=Estimate(running.version, run, skipped),
        difference=difference,
        confidence=confidence,
    )


def running_model(settings: GatewaySettings) -> OnnxScorer:
    """The model the gateway runs: the model store's pointer (``[control] state_dir``) if there is one, else
    the configured model. Raises ``ModelError``. Read-only: unlike the daemon's start, nothing is installed."""
    current = ModelStore.at(settings.control.state_dir).load_current()
    if current is not None:
        return current
    return load_model(settings.decisions.model, settings.decisions.manifest_path)


def compare(
    settings: GatewaySettings,
    conn: Connection,
    candidate: OnnxScorer,
    since: float,
    until: float,
    catalog: Catalog,
    *,
    running: Scorer | None = None,
    rewards: RewardSource | None = None,
) -> Comparison:
    """``evaluate`` with a gateway's settings: its policy, attribution window and POS clock tolerance."""
    measurement = settings.measurement
    return evaluate(
        conn,
        candidate=candidate,
        running=running_model(settings) if running is None else running,
        catalog=catalog,
        policy=settings.decisions.policy,
        since=since,
        until=until,
        window_s=measurement.attribution_window_days * _DAY_S,
        rewards=decision_rewards if rewards is None else rewards,
        pos_clock_tolerance_s=measurement.pos_clock_tolerance_s,
    )


class _Period(Protocol):
    @property
    def since(self) -> float: ...

    @property
    def until(self) -> float: ...


def report_part(
    settings: GatewaySettings, conn: Connection, candidate: Path, period: _Period, catalog: Catalog
) -> Mapping[str, Any]:
    """The summary's ``"ope"`` part for ``edge-gateway report --candidate F.onnx`` (its manifest beside it,
    ``F.json``). Raises ``ModelError`` for a model that cannot be loaded."""
    scorer = load_model(candidate, candidate.with_suffix(".json"))
    return compare(settings, conn, scorer, period.since, period.until, catalog).summary_part()
