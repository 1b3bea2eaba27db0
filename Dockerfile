# syntax=docker/dockerfile:1
# The hwq image: one image, every role. The first argument picks it (see docker-compose.yml):
#   docker run hwq api --host 0.0.0.0 --port 8000
#
# Stage 1 builds wheels for hwq and all its dependencies; stage 2 installs only those, so the
# runtime image carries neither the sources nor a build cache. Only the package folders are
# copied in, never .venv/ or var/ (which may hold a local database and tokens). Every
# dependency is built at the version constraints.txt pins, the one the tests ran with.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml constraints.txt README* LICENSE* ./
COPY config ./config
COPY tasks ./tasks
COPY api ./api
COPY worker_host ./worker_host
COPY hwq ./hwq
RUN pip wheel --wheel-dir /wheels --constraint constraints.txt ".[postgres]"

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HWQ_HOME=/var/lib/hwq
RUN groupadd --system --gid 10001 hwq \
    && useradd --system --uid 10001 --gid hwq --home-dir /var/lib/hwq --create-home \
       --shell /usr/sbin/nologin hwq
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels "hwq[postgres]"
USER hwq
WORKDIR /var/lib/hwq
ENTRYPOINT ["hwq"]
CMD ["--help"]
