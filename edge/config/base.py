"""What every settings section shares: unknown keys are errors, values are frozen, no secret is written inline."""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, model_validator

# Keys that look like secrets are refused in the TOML with a pointer to the right place.
SECRET_KEYS: Final = frozenset({"password", "secret", "private_key", "token", "api_key"})
# Every number has an upper bound too (issue 12): a typo or a signed push must not be able to make a timer
# fire never, a queue hold all memory, or data be kept for ever. The bounds that are a policy, not a
# sanity check, say why next to them.
HOUR_S: Final = 3_600.0


class Section(BaseModel):
    """A table of the configuration file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_inline_secrets(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in data:
                if key in SECRET_KEYS:
                    msg = (
                        f"'{key}' must not be written in the config file; "
                        f"use '{key}_env' (an environment variable) or '{key}_file' (a file path)"
                    )
                    raise ValueError(msg)
        return data
