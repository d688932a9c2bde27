# One image for the API, the workers and Flower.
FROM python:3.11-slim
# MALLOC_ARENA_MAX: glibc's per-thread malloc arenas cost the workers ~30 MB each for no measured speed (Procfile).
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True MALLOC_ARENA_MAX=2
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY workers workers
COPY schemas schemas
COPY config config
COPY engram engram
# CPU-only torch first, so the pinned version does not pull CUDA libraries.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir ".[weaviate]"
RUN useradd --create-home engram && mkdir -p /data && chown engram /data
USER engram
# Export the embedder's ONNX graph into the image once, instead of in every container's first process.
RUN python -c "from engram.embedding.onnx import OnnxConfig, OnnxEmbedder; OnnxEmbedder(OnnxConfig()).warm_up()"
EXPOSE 8000
CMD ["uvicorn", "--factory", "api.main:create_app", "--host", "0.0.0.0", "--port", "8000"]
