#!/bin/sh
# One-shot: a SCRAM-SHA-512 credential for each service principal (idempotent: an upsert).
# Passwords come from the environment only; nothing is echoed.
set -eu
cat > /tmp/admin.properties <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${KAFKA_ADMIN_PASSWORD}";
PROPS
upsert() {
  /opt/kafka/bin/kafka-configs.sh --bootstrap-server kafka:9092 --command-config /tmp/admin.properties \
    --alter --entity-type users --entity-name "$1" --add-config "SCRAM-SHA-512=[password=$2]" >/dev/null
  echo "scram credential set: $1"
}
upsert consentgate-router "${ROUTER_PASSWORD:?}"
upsert consentgate-consent "${CONSENT_PASSWORD:?}"
upsert jobsite-events "${JOBSITE_PASSWORD:?}"
upsert analytics "${ANALYTICS_PASSWORD:?}"
upsert consentgate-audit "${AUDIT_PASSWORD:?}"
