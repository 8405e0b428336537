# emolens REST API + web page: inference dependencies only (numpy, OpenCV headless, ONNX Runtime) and the
# [serve] extra (FastAPI, uvicorn, python-multipart); no torch.
#   docker build -t emolens .
#   docker run --rm -p 127.0.0.1:8000:8000 emolens            # then open http://127.0.0.1:8000/
#   docker run --rm -e PORT=9000 -p 127.0.0.1:9000:9000 emolens  # another port: set PORT (server and health check)
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=8000

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install ".[serve]" && rm -rf /app/src

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin emolens
USER emolens
WORKDIR /home/emolens

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import json, os, sys, urllib.request; r = urllib.request.urlopen(f\"http://127.0.0.1:{os.environ['PORT']}/health\", timeout=4); sys.exit(0 if json.load(r).get('status') == 'ok' else 1)"]

# Inside the container the server must listen on every interface so that `-p` can reach it; publish the
# port on the host's loopback (-p 127.0.0.1:8000:8000) unless you mean to expose it. The port is $PORT, read
# by both the server and the health check: change it with `-e PORT=...`, not with --port. Extra flags are
# appended, e.g. `docker run ... emolens --concurrency 4`; an API key through `-e EMOLENS_API_KEY=...`.
ENTRYPOINT ["sh", "-c", "exec emolens serve --host 0.0.0.0 --port \"$PORT\" \"$@\"", "emolens"]
