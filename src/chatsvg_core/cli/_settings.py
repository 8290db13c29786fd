"""CLI settings: flags over environment variables over a config file over defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

__all__ = ["CLISettings", "config_path"]


def config_path() -> Path:
    """``$CHATSVG_CONFIG``, else ``./chatsvg.toml``."""
    return Path(os.environ.get("CHATSVG_CONFIG", "chatsvg.toml"))


class CLISettings(BaseSettings):
    """What the ``chatsvg`` command runs against.

    Every field reads ``CHATSVG_<FIELD>`` from the environment (e.g.
    ``CHATSVG_DATABASE_URL``) and, below that, the same key in the TOML file
    named by ``CHATSVG_CONFIG`` (default ``./chatsvg.toml``). Provider
    settings (``CHATSVG_OPENAI_BASE_URL``, ``CHATSVG_OPENAI_MODEL``,
    ``CHATSVG_OPENAI_API_KEY``) are read by the provider itself.
    """

    model_config = SettingsConfigDict(env_prefix="CHATSVG_", extra="ignore")

    home: Path = Field(default=Path(".chatsvg"), description="Where the embedded database lives.")
    database_url: str | None = Field(
        default=None, description="Storage URL; default ``sqlite:///<home>/chatsvg.db``."
    )
    owner: str = Field(default="local", description="The account jobs are charged to.")
    welcome_credits: int = Field(
        default=50, ge=0, description="Granted once to a new local owner, so the demo runs."
    )
    provider: Literal["auto", "offline", "openai"] = Field(
        default="auto",
        description="``auto``: the OpenAI-compatible provider when "
        "``CHATSVG_OPENAI_BASE_URL`` or an API key is set, else the offline sketcher.",
    )
    concurrency: int = Field(default=2, ge=1, le=64)
    daily_cap: int | None = Field(default=None, ge=1)
    lease_seconds: float = Field(default=120.0, gt=0)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_path()),
        )

    def storage_url(self) -> str:
        """The storage URL to open."""
        return self.database_url or f"sqlite:///{self.home / 'chatsvg.db'}"

    def with_flags(self, **flags: Any) -> CLISettings:
        """A copy with the flags that were given (``None`` means not given)."""
        given = {k: v for k, v in flags.items() if v is not None}
        return self.model_copy(update=given) if given else self
