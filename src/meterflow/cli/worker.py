"""`meterflow worker`: run the Faust worker (cost agent, profile tables) until stopped."""

from __future__ import annotations

import asyncio

import click

from meterflow.cli.failures import outside_failure
from meterflow.cli.long_lived import freeze_startup_objects
from meterflow.cli.options import settings_with_options


@click.command(name="worker")
@click.option("--web-port", type=int, default=None, help="faust web port (MF_WORKER_WEB_PORT)")
@click.option("--web/--no-web", "web", default=None, help="serve faust's web views")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING… (MF_LOG_LEVEL)")
@click.option(
    "--api/--no-api", "api", default=True, show_default=True, help="also serve the HTTP API"
)
@click.option("--api-port", type=int, default=None, help="HTTP API port (MF_HTTP_PORT)")
def worker(
    web_port: int | None, web: bool | None, log_level: str | None, api: bool, api_port: int | None
) -> None:
    """Price `meter-records` into `energy-costs` / `dead-letters`; topics are created if missing."""
    from faust.worker import Worker

    from meterflow.kafka_admin import ensure_topics
    from meterflow.stream import create_app, diagnostics
    from meterflow.stream.worker_topics import prepare_worker_topics

    settings = settings_with_options(
        worker_web_port=web_port,
        worker_web_enabled=web,
        log_level=log_level,
        http_port=api_port,
    )

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    loop.run_until_complete(ensure_topics(settings))
    app = create_app(settings)
    # faust's own topics exist and every broker lists them before the group's first assignment
    loop.run_until_complete(prepare_worker_topics(app, settings))
    services = []
    if api:
        from meterflow.api.service import ApiService

        services.append(ApiService(settings))

    class MeterflowWorker(Worker):
        outside: str | None = None
        """Why starting failed, when the world outside caused it (`failures.outside_failure`):
        mode would log it with a traceback, then exit 1 itself."""

        async def start(self) -> None:
            try:
                await super().start()
            except Exception as error:
                self.outside = outside_failure(error)
                if self.outside is None:
                    raise  # a bug: mode logs its traceback

        async def on_startup_finished(self) -> None:
            await super().on_startup_finished()
            # tables recovered, agents running
            freeze_startup_objects("worker", settings.worker_gc_threshold)

        def _on_sigusr2(self) -> None:
            # mode's default enters pdb, which a daemon cannot use; log the diagnostics instead
            diagnostics.log.warning(diagnostics.dump(app, loop))

    runner = MeterflowWorker(
        app,
        *services,
        loop=loop,
        loglevel=settings.log_level,
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    runner.spinner = None  # faust's terminal spinner wrote control characters into the JSON log
    try:
        runner.execute_from_commandline()
    except SystemExit:
        if runner.outside is not None:  # e.g. its web port taken: one line, exit 1
            raise click.ClickException(runner.outside) from None
        raise
