# scenecut on CPU: `docker build -t scenecut .` then
# `docker run --rm -v "$PWD:/work" scenecut segment film.mp4 --save-clips`.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

# CPU-only PyTorch first: the default wheels bring about 4.5 GB of CUDA libraries.
RUN pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /opt/scenecut
COPY pyproject.toml README.md LICENSE ./
COPY scenecut ./scenecut
RUN pip install . && useradd --create-home --uid 1000 scenecut

USER 1000
WORKDIR /work
ENTRYPOINT ["scenecut"]
CMD ["--help"]
