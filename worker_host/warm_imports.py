"""What a device worker needs loaded, imported once in the process device workers fork from.

Importing this module is its whole purpose: the host agent names it as the fork server's
preload, so every device worker starts from an interpreter that already holds Celery, kombu,
redis-py, pyserial and hwq's worker code, shares those pages with its siblings, and skips
the second or so each import would cost it.
"""

from __future__ import annotations

import gc

import billiard.pool  # noqa: F401
import celery.app.amqp  # noqa: F401
import celery.app.control  # noqa: F401
import celery.app.events  # noqa: F401
import celery.app.log  # noqa: F401
import celery.app.routes  # noqa: F401
import celery.bin.celery  # noqa: F401  (worker_main parses its argv with Celery's CLI)
import celery.fixups.django  # noqa: F401
import celery.worker  # noqa: F401
import celery.worker.autoscale  # noqa: F401
import celery.worker.consumer.delayed_delivery  # noqa: F401
import kombu.matcher  # noqa: F401
import kombu.pidbox  # noqa: F401
import kombu.transport.redis  # noqa: F401
import redis  # noqa: F401
import serial  # noqa: F401
from celery.apps import worker as celery_worker_app  # noqa: F401
from celery.concurrency import thread  # noqa: F401
from celery.events import dispatcher  # noqa: F401
from celery.worker import components, consumer, strategy  # noqa: F401

import tasks.celery_app  # noqa: F401
import worker_host.device_worker  # noqa: F401
import worker_host.port_discovery  # noqa: F401
import worker_host.worker_child  # noqa: F401

# Objects made by the imports live as long as every fork: kept out of the cyclic collector,
# a collection in a worker never writes to (and so never copies) the pages they sit on.
gc.freeze()
