# One image for the meterflow worker, sink and API (the command picks which one runs).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install '.[rocksdb]'
RUN useradd --create-home --uid 10001 meterflow && mkdir -p /data && chown meterflow /data
USER meterflow
ENV MF_DATA_DIR=/data
ENTRYPOINT ["meterflow"]
