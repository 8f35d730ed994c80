# The product's image: the consentgate wheel and its dependencies on a slim Python, run as a
# non-root user. No development stack (broker, demo), no compilers, no secrets.
#
#   docker build -t consentgate:0.1.0 .
#   docker run --rm -e CONSENTGATE_BOOTSTRAP=kafka:9092 ... consentgate:0.1.0 router
#
# The base is pinned by version; pin it by digest too in your registry mirror
# (docker buildx imagetools inspect python:3.11.14-slim-bookworm).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# -- build: wheels of the product and every dependency ------------------------------------
FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services/consentgate services/consentgate
RUN python -m pip install --no-cache-dir --upgrade pip \
 && python -m pip wheel --no-cache-dir --wheel-dir /wheels .

# -- run: install from those wheels only --------------------------------------------------
FROM ${PYTHON_IMAGE} AS run
ARG UID=10001
RUN groupadd --gid ${UID} consentgate \
 && useradd --uid ${UID} --gid ${UID} --no-create-home --shell /usr/sbin/nologin consentgate
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index --find-links /wheels consentgate \
 && rm -rf /wheels
# every command's default files are deploy/policy.yaml and deploy/topics.yaml under WORKDIR;
# mount a ConfigMap over /etc/consentgate/deploy to replace them
COPY deploy/policy.yaml deploy/topics.yaml /etc/consentgate/deploy/
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    CONSENTGATE_HEALTH_URL=http://127.0.0.1:6066/healthz
WORKDIR /etc/consentgate
USER ${UID}:${UID}
EXPOSE 6066 8070 8071
# the router's /healthz by default; the consent service's pods set CONSENTGATE_HEALTH_URL
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['CONSENTGATE_HEALTH_URL'], timeout=4)"]
ENTRYPOINT ["consentgate"]
CMD ["router"]
