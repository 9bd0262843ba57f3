"""All of fervid's configuration, in one place.

Every setting has a default, can be set with an environment variable ``FERVID_<NAME>``
(``FERVID_DATABASE_URL``, ``FERVID_BROKER_URL``, ...) and can be overridden per call
(the CLI passes its options through :func:`get_settings`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from platformdirs import user_data_dir

ENV_PREFIX = "FERVID_"
#: Face detectors by name (:mod:`fervid.model.detect`), and what ``detector`` accepts: those or ``none`` (each
#: image is the face).
DETECTORS: tuple[str, ...] = ("centerface", "haar")
DETECTOR_CHOICES: tuple[str, ...] = (*DETECTORS, "none")
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: What surrounds a face crop where its aligned crop reaches beyond it (``fervid.model.align.CropSpec``), each choice
#: with its words for model cards and reports (here, not in ``fervid.model``, so that reports can read them).
CROP_CONTEXTS: dict[str, str] = {"black": "black", "reflect": "their reflection"}


class SettingsError(ValueError):
    """A setting out of its range or not one of its choices; the message names the option and the variable."""


def _default_data_dir() -> Path:
    return Path(user_data_dir("fervid", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """fervid's settings. ``None`` URLs mean the embedded default."""

    data_dir: Path = field(default_factory=_default_data_dir)
    database_url: str | None = None
    broker_url: str | None = None
    result_backend: str | None = None
    model: str = "ferplus-ck-csa-kd-reflect"  # the shipped model with the best end-to-end accuracy (README: Shipped models)
    model_dir: Path | None = None  # where workers find custom checkpoints by file name (e.g. shared storage)
    detector: str = "centerface"
    sample_fps: float = 5.0
    detect_size: int = 480
    detect_every: int = 5  # whole-frame search on every 5th sample, around the faces between (benchmarks/results/throughput.md)
    detector_threshold: float = 0.3  # CenterFace: see benchmarks/results/pipeline_accuracy.md (0.5 missed 8-18 % of faces)
    photo_floor: float = 0.1  # image jobs: a photo with no face at detector_threshold is read at its likeliest face down to this score (0: off)
    flip: bool = True
    tta_shift: float = 0.0  # also average each face over 4 copies moved this fraction of its side (0: off); model/tta.py
    track_gap: float = 1.0  # seconds a track may go unseen before it ends
    cut_threshold: float = 0.15  # a sample whose thumbnail differs more from the last one's is a cut (1: never)
    smooth_seconds: float = 0.4  # expected seconds an expression lasts, for temporal smoothing (0: off); benchmarks/smoothing.py
    identity: bool = True  # face descriptors: tracks of one face linked into persons, no track spanning two
    identity_threshold: float = 0.6  # descriptor distance below which two tracks are one person
    batch_size: int = 64
    segment_seconds: float = 60.0
    segment_timeout: float = 3600.0
    heartbeat_interval: float = 10.0  # a running segment's worker refreshes segments.heartbeat_at this often
    heartbeat_timeout: float = 60.0  # a running segment whose heartbeat is older is taken for lost and sent again
    url_timeout: float = 30.0  # seconds a URL source may take to connect, and to send more data
    wait_outage: float = 60.0  # `submit --wait` waits through database outages this long
    wait_notice: float = 30.0  # `submit --wait` says so when no worker has taken the job after this long
    max_duration: float = 6 * 3600.0
    max_frames: int = 2_000_000
    max_pixels: int = 4096 * 2160
    device: str = "auto"
    queue: str = "fervid"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        for name, rule in RULES.items():
            problem = rule(getattr(self, name))
            if problem:
                flag = name.replace("_", "-")
                raise SettingsError(f"{name} (--{flag}, {ENV_PREFIX}{name.upper()}): {problem}")
        if self.heartbeat_timeout <= 2 * self.heartbeat_interval:
            raise SettingsError(
                f"heartbeat_timeout (FERVID_HEARTBEAT_TIMEOUT) must exceed twice heartbeat_interval "
                f"(FERVID_HEARTBEAT_INTERVAL): {self.heartbeat_timeout:g} <= 2 × {self.heartbeat_interval:g}"
            )

    @property
    def embedded(self) -> bool:
        """True when no broker is configured: jobs run in-process."""
        return not self.broker_url

    @property
    def effective_database_url(self) -> str:
        """The configured database, or the embedded SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'fervid.db'}"

    def replace(self, **overrides: object) -> Settings:
        """A copy with the non-``None`` overrides applied."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _number(low: float, high: float = math.inf, *, above: bool = True, whole: bool = False):  # type: ignore[no-untyped-def]
    """A rule: a finite number ``> low`` (``>= low`` when not ``above``) and ``<= high``."""

    def check(value: object) -> str | None:
        kind = "a whole number" if whole else "a finite number"
        bound = f"{'>' if above else '>='} {low:g}" + (f" and <= {high:g}" if high < math.inf else "")
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if above else value >= low) and value <= high and (not whole or float(value).is_integer())
        return None if ok else f"must be {kind} {bound}, got {value!r}"

    return check


def _choice(choices: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def check(value: object) -> str | None:
        return None if value in choices else f"must be one of {', '.join(choices)}, got {value!r}"

    return check


def _device(value: object) -> str | None:
    ok = isinstance(value, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", value)
    return None if ok else f"must be auto, cpu, cuda or cuda:N, got {value!r}"


#: Every checked setting and its rule: a problem in words, or ``None``.
RULES = {
    "detector": _choice(DETECTOR_CHOICES),
    "sample_fps": _number(0, 1000),
    "detect_size": _number(32, 8192, above=False, whole=True),
    "detect_every": _number(1, 1000, above=False, whole=True),
    "detector_threshold": _number(0, 1, above=True),
    "photo_floor": _number(0, 1, above=False),
    "tta_shift": _number(0, 0.25, above=False),
    "batch_size": _number(1, 4096, above=False, whole=True),
    "track_gap": _number(0, 3600),
    "cut_threshold": _number(0, 1),
    "smooth_seconds": _number(0, 3600, above=False),
    "identity_threshold": _number(0, 2),
    "segment_seconds": _number(0),
    "segment_timeout": _number(0),
    "heartbeat_interval": _number(0, 3600),
    "heartbeat_timeout": _number(0),
    "url_timeout": _number(0),
    "wait_outage": _number(0, above=False),
    "wait_notice": _number(0),
    "max_duration": _number(0),
    "max_frames": _number(1, above=False, whole=True),
    "max_pixels": _number(1, above=False, whole=True),
    "device": _device,
    "log_level": _choice(LOG_LEVELS),
}


def described(name: str, text: str) -> str:
    """``text`` followed by setting ``name``'s default, variable and, for a choice, its values — for option help
    (brackets escaped, so that rich shows them)."""
    spec = next(f for f in fields(Settings) if f.name == name)
    default = spec.default if spec.default is not dataclasses.MISSING else "(see the README)"
    shown = {True: "on", False: "off", None: "none"}.get(default, default) if isinstance(default, (bool, type(None))) else default
    return f"{text} \\[default: {shown}; env: {ENV_PREFIX}{name.upper()}]"


def _coerce(kind: type | str, raw: str) -> object:
    kind_name = kind if isinstance(kind, str) else kind.__name__
    if "Path" in kind_name:
        return Path(raw).expanduser()
    if "bool" in kind_name:
        if raw.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(raw)
        return raw.lower() in ("1", "true", "yes", "on")
    if "float" in kind_name:
        return float(raw)
    if "int" in kind_name:
        return int(raw)
    return raw


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, then the given overrides (``None`` values are ignored)."""
    values: dict[str, object] = {}
    for f in fields(Settings):
        variable = ENV_PREFIX + f.name.upper()
        raw = os.environ.get(variable)
        if raw not in (None, ""):
            try:
                values[f.name] = _coerce(f.type, raw)
            except ValueError:
                raise SettingsError(f"{variable}: {raw!r} is not a valid {f.type} for {f.name}") from None
    return Settings(**values).replace(**overrides)
