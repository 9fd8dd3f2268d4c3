# The kb service image: small, non-root, with a health check.
# In production it embeds through vLLM; the in-process model stays installed as
# the embedded default, on the CPU build of torch (no CUDA libraries).
FROM python:3.11-slim

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    KB_DATA_DIR=/data KB_HOST=0.0.0.0 KB_PORT=8000

# OCR: Tesseract (the better reader of Latin script) and the libraries OpenCV needs
# for RapidOCR (the Chinese reader, installed with kb).
RUN apt-get update && apt-get install -y --no-install-recommends \
        tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
RUN pip install --index-url ${TORCH_INDEX_URL} torch==2.13.0
COPY pyproject.toml README.md ./
COPY app ./app
COPY ingest ./ingest
COPY retrieval ./retrieval
RUN pip install . && rm -rf /src
# The in-process model's ONNX export, made once here instead of at every container start.
ENV KB_MODEL_CACHE=/opt/kb/models
RUN kb prepare && chmod -R a+rX /opt/kb

RUN useradd --create-home --uid 10001 kb && mkdir -p /data && chown kb /data
USER kb
WORKDIR /home/kb
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"]
CMD ["kb", "serve"]
