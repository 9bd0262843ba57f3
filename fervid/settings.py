"""All of fervid's configuration, in one place.

Every setting has a default, can be set with an environment variable ``FERVID_<NAME>``
(``FERVID_DATABASE_URL``, ``FERVID_BROKER_URL``, ...) and can be overridden per call
(the CLI passes its options through :func:`get_settings`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from platformdirs import user_data_dir

ENV_PREFIX = "FERVID_"


def _default_data_dir() -> Path:
    return Path(user_data_dir("fervid", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """fervid's settings. ``None`` URLs mean the embedded default."""

    data_dir: Path = field(default_factory=_default_data_dir)
    database_url: str | None = None
    broker_url: str | None = None
    result_backend: str | None = None
    model: str = "fer2013-csa"
    detector: str = "centerface"
    sample_fps: float = 5.0
    detect_size: int = 480
    detect_every: int = 1
    detector_threshold: float = 0.5
    batch_size: int = 64
    segment_seconds: float = 60.0
    segment_timeout: float = 3600.0
    max_duration: float = 6 * 3600.0
    max_frames: int = 2_000_000
    max_pixels: int = 4096 * 2160
    device: str = "auto"
    queue: str = "fervid"
    log_level: str = "INFO"

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

    def replace(self, **overrides: object) -> "Settings":
        """A copy with the non-``None`` overrides applied."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _coerce(kind: type | str, raw: str) -> object:
    kind_name = kind if isinstance(kind, str) else kind.__name__
    if "Path" in kind_name:
        return Path(raw).expanduser()
    if "float" in kind_name:
        return float(raw)
    if "int" in kind_name:
        return int(raw)
    return raw


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, then the given overrides (``None`` values are ignored)."""
    values: dict[str, object] = {}
    for f in fields(Settings):
        raw = os.environ.get(ENV_PREFIX + f.name.upper())
        if raw not in (None, ""):
            values[f.name] = _coerce(f.type, raw)
    return Settings(**values).replace(**overrides)
