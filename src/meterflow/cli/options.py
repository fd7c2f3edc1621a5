"""Settings for the long-running commands (`api`, `worker`): their options override MF_…."""

from __future__ import annotations

from meterflow.settings import Settings, get_settings


def settings_with_options(**options: object) -> Settings:
    """The MF_… settings with each option the user gave on top (one left out is None and keeps
    the variable's value); logging is configured from the result before anything logs."""
    from meterflow.logs import configure_logging

    given = {name: value for name, value in options.items() if value is not None}
    settings = get_settings().model_copy(update=given)
    configure_logging(settings.log_level, settings.log_format)
    return settings
