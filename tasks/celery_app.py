"""The one Celery app of hwq, configured from settings."""

from __future__ import annotations

from celery import Celery

from config import Settings, load_settings
from tasks.broker_transport import TRANSPORT_PATH
from tasks.queues import SERVER_QUEUE

EXECUTE_TASK = "hwq.execute"
ANALYZE_TASK = "hwq.analyze"
# Publishing gives up fast so the API can answer 503 instead of hanging on a dead broker.
PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}


def broker_key_prefix(key_prefix: str) -> str:
    """What the Redis transport puts before every queue key."""
    return f"{key_prefix}:q:"


def create_celery(settings: Settings) -> Celery:
    """A Celery app on the settings' Redis with hwq's task definitions registered."""
    app = Celery("hwq", broker=settings.celery_broker_url, set_as_current=True)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        # Flower builds its pages from task events; send them from the start.
        worker_send_task_events=True,
        task_send_sent_event=True,
        # One task at a time per worker, acknowledged only once it has run. The server
        # worker's crash leaves its message to be delivered again; device workers turn kombu's
        # ack emulation off, since their claim is the acknowledgement (device_worker.py).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # Queues live under hwq's key prefix, so installs (and tests) sharing one Redis
            # never see each other's messages.
            "global_keyprefix": broker_key_prefix(settings.key_prefix),
        },
        # kombu's Redis transport, minus a new client object per publish and acknowledgement.
        broker_transport=TRANSPORT_PATH,
        broker_connection_retry_on_startup=True,
        task_default_queue=SERVER_QUEUE,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        enable_utc=True,
        timezone="UTC",
    )
    # Importing the definitions registers them on the current app.
    import tasks.definitions  # noqa: F401

    return app


def __getattr__(name: str) -> Celery:
    """`celery -A tasks.celery_app …` finds the app as the module's `app`, made on first use.

    Celery's command line looks for an attribute named `app` in the module it is given. hwq
    makes its app from settings, so it is built from the environment (HWQ_REDIS_URL,
    HWQ_KEY_PREFIX) only when asked for, never when the module is imported.
    """
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    app = create_celery(load_settings())
    globals()["app"] = app
    return app
