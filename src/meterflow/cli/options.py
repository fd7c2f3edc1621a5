"""Settings for the long-running commands (`api`, `worker`, `sink`): their options override MF_…."""

from __future__ import annotations

from meterflow.settings import Settings, get_settings


def settings_with_options(**options: object) -> Settings:
    """The MF_… settings with each option the user gave on top (one left out is None and keeps
    the variable's value), validated as the variables are (`--port 70000` is the one-line
    "invalid setting" of `MF_HTTP_PORT=70000`, not a traceback from `bind`); logging is
    configured from the result before anything logs."""
    from meterflow.logs import configure_logging

    given = {name: value for name, value in options.items() if value is not None}
    settings = get_settings()
    if given:
        settings = Settings.model_validate({**settings.model_dump(), **given})
    configure_logging(settings.log_level, settings.log_format)
    return settings
