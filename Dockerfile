# smartlock bridge and worker image. Used by compose.yaml (services bridge, worker,
# demo-fleet); build alone with: docker build -t smartlock .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # Installed as a package, the code cannot find the repository's geofences/ by itself.
    SMARTLOCK_GEOFENCE_DIR=/opt/smartlock/geofences

WORKDIR /opt/smartlock
COPY pyproject.toml README.md ./
COPY smartlock ./smartlock
COPY geofences ./geofences
# The credentials service writes the store and the brokers' files into named volumes mounted
# at these paths: created here, owned by smartlock, so the new volumes start owned by it.
RUN pip install . \
    && useradd --system --create-home --home-dir /var/lib/smartlock smartlock \
    && mkdir -p /run/smartlock/credentials /mosquitto/auth /redis/auth /kafka/auth \
    && chown smartlock: /run/smartlock/credentials /mosquitto/auth /redis/auth /kafka/auth \
    && chmod 0700 /run/smartlock/credentials

# Faust writes its data directory into the working directory.
USER smartlock
WORKDIR /var/lib/smartlock
CMD ["smartlock", "worker"]
