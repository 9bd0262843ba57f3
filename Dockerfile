# fervid: one image for the CLI, the Celery workers (CPU or GPU) and Flower.
# GPUs need the NVIDIA Container Toolkit on the host; PyPI's torch wheel brings its own CUDA runtime.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FERVID_DATA_DIR=/data

# OpenCV's runtime libraries.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY fervid fervid
COPY model model
COPY db db
COPY worker worker
COPY cli cli
COPY alembic alembic
RUN pip install ".[monitor]" && useradd --create-home --uid 1000 fervid && mkdir -p /data && chown fervid /data

# Not root: Celery warns about workers with superuser privileges.
USER fervid
WORKDIR /data
VOLUME /data
CMD ["fervid", "--help"]
