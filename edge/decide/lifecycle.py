"""The offer model's lifecycle: verified install, shadow comparison, atomic swap, the last 3 kept, rollback.

On disk, under ``<state_dir>/models/`` (docs/models.md)::

    current                    the running version's name; written atomically; the truth
    history.json               activation stack (last = current, rollback pops) and the configured sha256
    <version>/model.onnx       an installed model: an immutable copy, named by its manifest's version
    <version>/manifest.json    its manifest, byte for byte as received
    <version>/installed.json   when and from where it was installed
    .lock                      flock: one writer at a time (the daemon or the ``edge-gateway model`` CLI)
    .tmp-*                     an install or a pointer write in progress; removed when the store is opened

Every method is synchronous. Those that load a model (``start``, ``install``, ``activate`` without a
scorer, ``install_and_activate``, ``rollback``, ``reload_pointer``, ``load_current``) take 10-50 ms and do
disk I/O with fsync: the daemon runs them in an executor, never on the event loop and never in the engine's
decision thread. ``current_version``, ``versions`` and ``history`` only read small files.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from edge.decide.catalog import CATEGORIES, Offer
from edge.decide.features import FeatureBuilder, LocalTime
from edge.decide.manifest import FEATURE_NAMES, ModelError, ModelManifest, parse_manifest, read_model
from edge.decide.policy import DecisionEngine
from edge.decide.scorer import OnnxScorer, Scorer, load_model
from edge.events import Weather
from edge.fsutil import TMP_PREFIX, fsync_dir, write_atomic, write_new
from edge.onnxrt import ORT_ERRORS

log = logging.getLogger(__name__)

MODELS_DIR: Final = "models"
POINTER: Final = "current"
HISTORY: Final = "history.json"
LOCK: Final = ".lock"
MODEL_FILE: Final = "model.onnx"
MANIFEST_FILE: Final = "manifest.json"
INFO_FILE: Final = "installed.json"
KEEP: Final = 3  # versions kept on disk: the current one and the two before it
_VERSION: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")  # a safe directory name
_RESERVED: Final = frozenset({POINTER, HISTORY})
_SHA256: Final = re.compile(r"[0-9a-f]{64}")


class ModelRefusedError(ModelError):
    """Shadow scoring refused a model (failure, NaN/inf, scores outside [0, 1], agreement below the gate).

    ``comparison`` is the comparison with the running model when it could be computed.
    """

    def __init__(self, message: str, comparison: ShadowComparison | None = None) -> None:
        super().__init__(message)
        self.comparison = comparison


@dataclass(frozen=True, slots=True)
class ShadowComparison:
    """A candidate model against the running one on the engine's recent decisions.

    ``agreement``: share of decisions with at least one eligible offer where both models' top choice (the
    highest expected value ``score * (1 + value)`` among the eligible offers, ties to engine order, as the
    engine picks) is the same offer. ``chosen_agreement``: share of decisions that showed an offer where the
    candidate's top choice is the offer shown (exploration makes this below 1 even for the same model).
    ``mean_abs_diff`` / ``max_abs_diff``: over every scored row. ``None`` where there was nothing to compare.
    """

    candidate_version: str
    running_version: str | None
    decisions: int  # recent decisions scored by both models
    compared: int  # of those, decisions with at least one eligible offer
    agreement: float | None
    shown: int  # of those, decisions that showed an offer
    chosen_agreement: float | None
    mean_abs_diff: float | None
    max_abs_diff: float | None
    probe_rows: int  # fixed synthetic rows also scored (finite, in [0, 1]) whatever the recent traffic

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class InstalledModel:
    """One version in the store."""

    version: str
    sha256: str
    installed_at: float | None  # unix seconds
    source: str | None  # the path it was installed from
    path: Path
    current: bool


@dataclass(frozen=True, slots=True)
class InstallResult:
    """A model copied into the store, loaded and shadow-scored; not yet running."""

    version: str
    sha256: str
    path: Path
    already_installed: bool
    comparison: ShadowComparison
    scorer: OnnxScorer = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class ActivationResult:
    """The pointer (and, with an engine, the running scorer) moved to ``version``."""

    version: str
    previous: str | None  # what ran before: the engine's model when one was swapped, else the old pointer
    swapped: bool  # an engine's scorer was swapped
    pruned: tuple[str, ...] = ()
    install: InstallResult | None = None
    scorer: OnnxScorer | None = field(default=None, repr=False, compare=False)


@dataclass(slots=True)
class _State:
    current: str | None
    stack: list[str]
    configured_sha256: str | None


def valid_version(version: str) -> bool:
    """A version usable as a directory name: letters, digits, ``._+-``, 1-64 characters, not reserved."""
    return _VERSION.fullmatch(version) is not None and version not in _RESERVED


# ----- shadow scoring -----
@functools.cache
def probe_matrix() -> npt.NDArray[np.float32]:
    """Fixed synthetic candidate rows (every category, extreme values, several contexts) every model must
    score finitely in [0, 1], even when the engine has no recent decisions to offer."""
    offers = [
        Offer.model_validate(
            {"id": f"probe-{category}-{i}", "title": "probe", "category": category, "value": v, "discount": d}
        )
        for i, (v, d) in enumerate(((0.0, 0.0), (25.0, 0.3), (10_000.0, 1.0)))
        for category in CATEGORIES
    ]
    builder = FeatureBuilder(offers)
    full = {"visits": 1_000_000, "affinity": dict.fromkeys(CATEGORIES, 1.0)}
    # Weather, basket and trends at their extremes too (the basket column's extreme, 1, set directly: the
    # probe has no rules of its own).
    hot = Weather(40.0, True, 40.0, 0.0, "probe")
    cold = Weather(-20.0, False, None, 0.0, "probe")
    contexts: list[tuple[object, int, LocalTime, Weather | None, dict[str, float] | None]] = [
        (None, 0, LocalTime(0, 0, 1), None, None),
        (None, 3, LocalTime(2, 9 * 60, 1), cold, {"coffee": 1.0}),
        ({"visits": 3, "affinity": {"coffee": 0.5}}, 40, LocalTime(5, 17 * 60 + 30, 1), hot, None),
        (full, 10_000, LocalTime(6, 1439, 1), hot, dict.fromkeys(CATEGORIES, 1.0)),
    ]
    blocks = [
        builder.fill(profile, people, when, weather, (), trends).copy()
        for profile, people, when, weather, trends in contexts
    ]
    blocks[-1][:, FEATURE_NAMES.index("basket_complement")] = 1.0
    matrix = np.concatenate(blocks)
    matrix.flags.writeable = False
    return matrix


def checked_scores(scorer: Scorer, matrix: npt.NDArray[np.float32], what: str) -> npt.NDArray[np.float32]:
    """``scorer.score(matrix)``, refused (``ModelRefusedError``) on a failure, a wrong length, NaN/inf or a score
    outside [0, 1]."""
    try:
        scores = np.asarray(scorer.score(matrix), dtype=np.float32)
    except ORT_ERRORS as exc:
        raise ModelRefusedError(f"model {scorer.version} failed in shadow scoring on {what}: {exc}") from exc
    if scores.shape != (matrix.shape[0],):
        raise ModelRefusedError(
            f"model {scorer.version} returned {scores.shape} scores for {matrix.shape[0]} rows of {what}"
        )
    if not np.isfinite(scores).all():
        raise ModelRefusedError(f"model {scorer.version} produced non-finite scores (NaN or inf) on {what}")
    if scores.size and (scores.min() < 0.0 or scores.max() > 1.0):
        raise ModelRefusedError(f"model {scorer.version} produced scores outside [0, 1] on {what}")
    return scores


def shadow_compare(candidate: Scorer, engine: DecisionEngine | None) -> ShadowComparison:
    """Score the probe rows and the engine's recent decisions with ``candidate`` and compare with the running
    model. Raises ``ModelRefusedError`` if the candidate fails or produces NaN/inf or scores outside [0, 1].

    Runs in any thread: it reads a snapshot of the engine's ring and runs the running model's session
    (onnxruntime sessions allow concurrent runs), never the engine's bound buffers.
    """
    probe = probe_matrix()
    checked_scores(candidate, probe, "the probe rows")
    empty = ShadowComparison(candidate.version, None, 0, 0, None, 0, None, None, None, probe.shape[0])
    if engine is None:
        return empty
    running = engine.scorer
    n = len(engine.offer_ids)
    recent = [entry for entry in engine.recent_decisions() if entry[0].shape[0] == n]
    if not recent:
        return ShadowComparison(
            candidate.version, running.version, 0, 0, None, 0, None, None, None, probe.shape[0]
        )
    d = len(recent)
    matrix = np.concatenate([features for features, _, _ in recent])
    new = checked_scores(candidate, matrix, f"{d} recent decisions").reshape(d, n)
    old = np.asarray(running.score(matrix), dtype=np.float32).reshape(d, n)
    eligible = np.array([flags for _, flags, _ in recent], dtype=bool).reshape(d, n)
    chosen = np.array([index for _, _, index in recent], dtype=np.intp)
    diff = np.abs(new.astype(np.float64) - old)
    has_rows = diff.size > 0
    comparable = eligible.any(axis=1)
    compared = int(comparable.sum())
    shown = chosen >= 0
    agreement = chosen_agreement = None
    if compared:
        weight = engine.value_weight
        top_new, top_old = _top(new, weight, eligible), _top(old, weight, eligible)
        agreement = float((top_new == top_old)[comparable].mean())
        if shown.any():
            chosen_agreement = float((top_new == chosen)[shown].mean())
    return ShadowComparison(
        candidate_version=candidate.version,
        running_version=running.version,
        decisions=d,
        compared=compared,
        agreement=agreement,
        shown=int(shown.sum()),
        chosen_agreement=chosen_agreement,
        mean_abs_diff=float(diff.mean()) if has_rows else None,
        max_abs_diff=float(diff.max()) if has_rows else None,
        probe_rows=probe.shape[0],
    )


def _top(
    scores: npt.NDArray[np.float32], weight: npt.NDArray[np.float32], eligible: npt.NDArray[np.bool_]
) -> npt.NDArray[np.intp]:
    """Per decision, the offer the engine would pick greedily: highest expected value among the eligible."""
    value = np.where(eligible, scores * weight, np.float32(-np.inf))
    top: npt.NDArray[np.intp] = value.argmax(axis=1)
    return top


# ----- files -----
def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class ModelStore:
    """The installed models of one gateway; one writer at a time (a thread lock plus an flock on ``.lock``).

    Rules (docs/models.md): a model whose sha256 differs from its manifest (or from the sha256 a signed
    config push expects), that onnxruntime cannot load, whose graph does not fit the manifest and this code's
    features, or that fails or produces NaN/inf or scores outside [0, 1] in shadow scoring is refused and
    nothing changes. ``min_agreement`` (default ``None``: off) also refuses a model whose top-choice agreement
    with the running one on recent decisions is lower; off by default because a retrained model is *meant*
    to choose differently, so the comparison is reported (logged, returned to the push) rather than gated.
    """

    def __init__(
        self,
        root: Path,
        *,
        keep: int = KEEP,
        min_agreement: float | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if keep < 2:
            raise ValueError("keep at least 2 versions: the current one and the one a rollback returns to")
        if min_agreement is not None and not 0.0 <= min_agreement <= 1.0:
            raise ValueError("min_agreement is a share in [0, 1]")
        self.root = root
        self.keep = keep
        self.min_agreement = min_agreement
        self._wall = wall
        self._thread_lock = threading.Lock()

    @classmethod
    def at(cls, state_dir: str | Path, **options: Any) -> ModelStore:
        """The store under ``<state_dir>/models`` without touching the disk (read-only use: listing)."""
        return cls(Path(state_dir) / MODELS_DIR, **options)

    @classmethod
    def open(cls, state_dir: str | Path, **options: Any) -> ModelStore:
        """Create ``<state_dir>/models`` if needed and clean what a crash left (``.tmp-*``).

        Raises ``ModelError`` if the folder cannot be created or written.
        """
        store = cls.at(state_dir, **options)
        try:
            store.root.mkdir(parents=True, exist_ok=True)
            store.recover()
        except OSError as exc:
            raise ModelError(f"cannot open the model store {store.root}: {exc.strerror or exc}") from exc
        return store

    def recover(self) -> list[str]:
        """Remove half-done installs and pointer writes (``.tmp-*``); returns their names."""
        with self._locked():
            leftovers = sorted(p.name for p in self.root.iterdir() if p.name.startswith(TMP_PREFIX))
            for name in leftovers:
                log.warning(
                    "removing %s: an install or pointer write interrupted by a crash", self.root / name
                )
                _remove(self.root / name)
            return leftovers

    # ----- reading -----
    def current_version(self) -> str | None:
        """The version the pointer names, or None (no pointer yet, or an unreadable one: logged)."""
        path = self.root / POINTER
        try:
            text = path.read_text("utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            log.error("model pointer %s unreadable (%s); treated as absent", path, exc)  # noqa: TRY400
            return None
        if not valid_version(text):
            log.error("model pointer %s holds %r, not a version; treated as absent", path, text[:80])
            return None
        return text

    def history(self) -> list[str]:
        """The activation stack, oldest first, ending with the current version; a rollback pops it."""
        return self._state().stack

    def rollback_target(self) -> str | None:
        """The version ``rollback`` would return to."""
        state = self._state()
        return state.stack[-2] if state.current is not None and len(state.stack) >= 2 else None

    def versions(self) -> list[InstalledModel]:
        """Every installed version, oldest install first; unreadable ones are skipped (logged)."""
        current = self.current_version()
        found: list[InstalledModel] = []
        if not self.root.is_dir():
            return found
        for path in self.root.iterdir():
            if not path.is_dir() or not valid_version(path.name):
                continue
            manifest = self._manifest_of(path)
            if manifest is None:
                continue
            info = self._info_of(path)
            installed_at = info.get("installed_at")
            source = info.get("source")
            found.append(
                InstalledModel(
                    version=path.name,
                    sha256=manifest.sha256,
                    installed_at=float(installed_at) if isinstance(installed_at, int | float) else None,
                    source=source if isinstance(source, str) else None,
                    path=path,
                    current=path.name == current,
                )
            )
        found.sort(key=lambda model: (model.installed_at or 0.0, model.version))
        return found

    def load(self, version: str) -> OnnxScorer:
        """An installed version, loaded and checked (a privacy export explains older decisions with it)."""
        return self._load_checked(version)

    def load_current(self) -> OnnxScorer | None:
        """The pointer's model, loaded and checked; None without a pointer. Raises ``ModelError``."""
        version = self.current_version()
        return None if version is None else self._load_checked(version)

    # ----- the daemon's calls -----
    def start(self, model_path: str | Path, manifest_path: str | Path) -> OnnxScorer:
        """The scorer the daemon starts with (see docs/models.md, "At start").

        The configured model is installed and activated if there is no pointer yet or if its sha256 differs
        from the configured model recorded at the last start or push (the configuration changed); otherwise
        the pointer wins, so a rollback survives restarts. If the pointer's model cannot be loaded the
        configured model is loaded straight from its path (logged). Raises ``ModelError`` only if nothing
        usable is left.
        """
        with self._locked():
            state = self._state()
            try:
                candidate = self._read_candidate(model_path, manifest_path, None)
            except ModelError as exc:
                log.error("configured model not usable: %s", exc)  # noqa: TRY400 - the reason is the message
                candidate = None
            if candidate is not None and (
                state.current is None or state.configured_sha256 != candidate[2].sha256
            ):
                try:
                    installed = self._install_locked(*candidate, source=str(model_path), engine=None)
                    self._activate_locked(
                        installed.version, None, installed.scorer, configured=installed.sha256
                    )
                except (ModelError, OSError) as exc:
                    log.error("configured model %s not installed: %s", model_path, exc)  # noqa: TRY400
                else:
                    return installed.scorer
            if state.current is not None:
                try:
                    scorer = self._load_checked(state.current)
                except ModelError as exc:
                    log.error(  # noqa: TRY400 - the reason is the message, not a traceback
                        "current model %s cannot be loaded (%s); running the configured model %s instead",
                        state.current,
                        exc,
                        model_path,
                    )
                else:
                    log.info("model %s from the store's pointer", scorer.version)
                    return scorer
        scorer = load_model(model_path, manifest_path)
        checked_scores(scorer, probe_matrix(), "the probe rows")
        return scorer

    def install(
        self,
        model_path: str | Path,
        manifest_path: str | Path,
        expected_sha256: str | None = None,
        *,
        engine: DecisionEngine | None = None,
    ) -> InstallResult:
        """Verify, copy into the store, load and shadow-score a model; nothing runs it yet.

        Raises ``ModelError`` (``ModelRefusedError`` from shadow scoring) and leaves nothing behind on refusal.
        Installing a version already installed with the same sha256 only loads and compares it again.
        """
        candidate = self._read_candidate(model_path, manifest_path, expected_sha256)
        with self._locked():
            return self._install_locked(*candidate, source=str(model_path), engine=engine)

    def activate(
        self, version: str, engine: DecisionEngine | None = None, *, scorer: OnnxScorer | None = None
    ) -> ActivationResult:
        """Make ``version`` current: history, then pointer, then ``engine.swap_scorer``; prune to ``keep``.

        ``scorer`` (from ``install``) saves loading the model again. Raises ``ModelError`` if the version
        is missing or does not load; then nothing changed.
        """
        with self._locked():
            return self._activate_locked(version, engine, scorer)

    def install_and_activate(
        self,
        engine: DecisionEngine | None,
        model_path: str | Path,
        manifest_path: str | Path,
        expected_sha256: str | None = None,
    ) -> ActivationResult:
        """A config push: install (with shadow comparison against ``engine``) and activate, under one lock.

        The model's sha256 is recorded as the configured one, so the next start does not install it again
        over a later rollback. Raises ``ModelError``/``ModelRefusedError``; then the running scorer is unchanged.
        """
        candidate = self._read_candidate(model_path, manifest_path, expected_sha256)
        with self._locked():
            installed = self._install_locked(*candidate, source=str(model_path), engine=engine)
            return self._activate_locked(
                installed.version, engine, installed.scorer, configured=installed.sha256, install=installed
            )

    def rollback(self, engine: DecisionEngine | None = None) -> ActivationResult:
        """Return to the version before the current one (loaded and checked first); the history is popped.

        Raises ``ModelError`` if there is no previous version or it does not load; then nothing changed.
        """
        with self._locked():
            state = self._state()
            if state.current is None:
                raise ModelError(f"no current model in {self.root}: nothing to roll back")
            if len(state.stack) < 2:
                raise ModelError(f"no model kept before {state.current}: nothing to roll back to")
            target = state.stack[-2]
            scorer = self._load_checked(target)
            self._write_history(state.stack[:-1], state.configured_sha256)
            self._write_pointer(target)
            previous, swapped = state.current, False
            if engine is not None:
                previous, swapped = engine.swap_scorer(scorer).version, True
            log.info("model rolled back to %s (was %s)", target, state.current)
            return ActivationResult(target, previous, swapped, scorer=scorer)

    def reload_pointer(self, engine: DecisionEngine) -> ActivationResult | None:
        """After the CLI moved the pointer (SIGHUP): run the pointer's model if it is not running already.

        None when nothing changed. Raises ``ModelError`` if the pointer's model does not load; the engine
        then keeps its scorer.
        """
        # Under the lock, so a push activating another version at the same time cannot interleave.
        with self._locked():
            version = self.current_version()
            if version is None or version == engine.model_version:
                return None
            scorer = self._load_checked(version)
            previous = engine.swap_scorer(scorer)
        log.info("model %s now running (was %s), from the store's pointer", version, previous.version)
        return ActivationResult(version, previous.version, True, scorer=scorer)

    # ----- internals (the caller holds the lock) -----
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._thread_lock:
            # Read-only is enough for flock, and lets a lock file created by another user be used.
            fd = os.open(self.root / LOCK, os.O_RDONLY | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _state(self) -> _State:
        """History reconciled with the pointer, which is the truth: a crash between the history write and
        the pointer write leaves a history one step ahead (truncated here) or behind (extended here)."""
        current = self.current_version()
        stack, configured = self._read_history()
        if current is not None:
            if current in stack:
                del stack[stack.index(current) + 1 :]
            else:
                stack.append(current)
        return _State(current, stack, configured)

    def _read_history(self) -> tuple[list[str], str | None]:
        path = self.root / HISTORY
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return [], None
        except (OSError, ValueError) as exc:
            log.error("model history %s unreadable (%s); starting it afresh", path, exc)  # noqa: TRY400
            return [], None
        if not isinstance(data, dict):
            log.error("model history %s is not an object; starting it afresh", path)
            return [], None
        raw_stack = data.get("stack")
        stack: list[str] = []
        for item in raw_stack if isinstance(raw_stack, list) else []:
            if isinstance(item, str) and valid_version(item) and item not in stack:
                stack.append(item)
        configured = data.get("configured_sha256")
        return stack, configured if isinstance(configured, str) and _SHA256.fullmatch(configured) else None

    def _write_history(self, stack: list[str], configured_sha256: str | None) -> None:
        body = {"stack": stack, "configured_sha256": configured_sha256, "updated_at": self._wall()}
        self._write(self.root / HISTORY, (json.dumps(body, indent=2) + "\n").encode())

    def _write_pointer(self, version: str) -> None:
        self._write(self.root / POINTER, f"{version}\n".encode())

    def _write(self, path: Path, data: bytes) -> None:
        try:
            write_atomic(path, data)
        except OSError as exc:
            raise ModelError(f"cannot write {path}: {exc.strerror or exc}") from exc

    def _read_candidate(
        self, model_path: str | Path, manifest_path: str | Path, expected_sha256: str | None
    ) -> tuple[bytes, bytes, ModelManifest]:
        """The model and manifest bytes (read once) and the parsed manifest, hashes checked."""
        blob, manifest_bytes, manifest = read_model(model_path, manifest_path)
        digest = manifest.sha256  # read_model has checked the bytes against it
        if expected_sha256 is not None:
            expected = expected_sha256.strip().lower()
            if _SHA256.fullmatch(expected) is None:
                raise ModelError(f"expected sha256 {expected_sha256!r} is not 64 hex digits")
            if digest != expected:
                raise ModelError(
                    f"model {model_path} has sha256 {digest}, the configuration expects {expected}"
                )
        if not valid_version(manifest.version):
            raise ModelError(
                f"model version {manifest.version!r} cannot name a folder (letters, digits, '._+-', <= 64)"
            )
        return blob, manifest_bytes, manifest

    def _install_locked(
        self,
        blob: bytes,
        manifest_bytes: bytes,
        manifest: ModelManifest,
        *,
        source: str,
        engine: DecisionEngine | None,
    ) -> InstallResult:
        version = manifest.version
        target = self.root / version
        if target.exists():
            existing = self._manifest_of(target)
            if existing is not None and existing.sha256 != manifest.sha256:
                raise ModelError(
                    f"version {version} is already installed with sha256 {existing.sha256[:12]}..., "
                    f"this model has {manifest.sha256[:12]}...: a new model needs a new version"
                )
            try:
                scorer = self._load_checked(version)
            except ModelRefusedError:
                raise
            except ModelError as exc:
                if version == self.current_version():
                    raise
                log.warning("installed copy of %s is damaged (%s); installing it again", version, exc)
                _remove(target)
            else:
                comparison = self._compare(scorer, engine)
                return InstallResult(version, manifest.sha256, target, True, comparison, scorer)
        tmp = self.root / f"{TMP_PREFIX}{version}-{secrets.token_hex(4)}"
        info = {"installed_at": self._wall(), "source": source, "sha256": manifest.sha256}
        try:
            tmp.mkdir()
            write_new(tmp / MODEL_FILE, blob)
            write_new(tmp / MANIFEST_FILE, manifest_bytes)
            write_new(tmp / INFO_FILE, (json.dumps(info, indent=2) + "\n").encode())
            fsync_dir(tmp)
            # Loaded from the copy: the bytes that will run are the bytes checked, and a broken model
            # never appears under its version's name.
            scorer = load_model(tmp / MODEL_FILE, tmp / MANIFEST_FILE)
            comparison = self._compare(scorer, engine)
            tmp.rename(target)
            fsync_dir(self.root)
        except OSError as exc:
            _remove(tmp)
            raise ModelError(
                f"cannot install model {version} into {self.root}: {exc.strerror or exc}"
            ) from exc
        except BaseException:
            _remove(tmp)
            raise
        log.info("model %s installed in %s (sha256 %s)", version, target, manifest.sha256[:12])
        return InstallResult(version, manifest.sha256, target, False, comparison, scorer)

    def _compare(self, scorer: OnnxScorer, engine: DecisionEngine | None) -> ShadowComparison:
        comparison = shadow_compare(scorer, engine)
        log.info("shadow comparison: %s", json.dumps(comparison.as_dict()))
        gate = self.min_agreement
        if gate is not None and comparison.agreement is not None and comparison.agreement < gate:
            raise ModelRefusedError(
                f"model {scorer.version} agrees with {comparison.running_version} on "
                f"{comparison.agreement:.1%} of {comparison.compared} recent decisions, below {gate:.1%}",
                comparison,
            )
        return comparison

    def _activate_locked(
        self,
        version: str,
        engine: DecisionEngine | None,
        scorer: OnnxScorer | None,
        *,
        configured: str | None = None,
        install: InstallResult | None = None,
    ) -> ActivationResult:
        if not valid_version(version):
            raise ModelError(f"{version!r} is not a model version")
        if scorer is None or scorer.version != version:
            scorer = self._load_checked(version)
        state = self._state()
        stack = [item for item in state.stack if item != version]
        stack.append(version)
        stack = stack[-self.keep :]
        # History first, pointer second: the pointer is the commit, _state() repairs a crash in between.
        self._write_history(stack, configured if configured is not None else state.configured_sha256)
        self._write_pointer(version)
        previous, swapped = state.current, False
        if engine is not None:
            previous, swapped = engine.swap_scorer(scorer).version, True
        pruned = self._prune(set(stack))
        log.info("model %s active (was %s); kept %s", version, previous, ", ".join(stack))
        return ActivationResult(version, previous, swapped, tuple(pruned), install, scorer)

    def _prune(self, keep: set[str]) -> list[str]:
        """Remove installed versions outside ``keep`` (the last ``keep`` of the history)."""
        pruned = []
        for path in sorted(self.root.iterdir()):
            if path.is_dir() and valid_version(path.name) and path.name not in keep:
                _remove(path)
                pruned.append(path.name)
        if pruned:
            log.info("pruned models %s", ", ".join(pruned))
        return pruned

    def _load_checked(self, version: str) -> OnnxScorer:
        """An installed version loaded (sha256, graph) and probed (finite scores in [0, 1])."""
        path = self.root / version
        if not valid_version(version) or not path.is_dir():
            raise ModelError(f"model {version} is not installed in {self.root}")
        scorer = load_model(path / MODEL_FILE, path / MANIFEST_FILE)
        if scorer.version != version:
            raise ModelError(f"{path} holds model version {scorer.version}, not {version}")
        checked_scores(scorer, probe_matrix(), "the probe rows")
        return scorer

    @staticmethod
    def _manifest_of(path: Path) -> ModelManifest | None:
        try:
            return parse_manifest((path / MANIFEST_FILE).read_bytes(), path / MANIFEST_FILE)
        except (OSError, ModelError) as exc:
            log.warning("installed model %s unreadable: %s", path, exc)
            return None

    @staticmethod
    def _info_of(path: Path) -> dict[str, Any]:
        try:
            data = json.loads((path / INFO_FILE).read_bytes())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}
