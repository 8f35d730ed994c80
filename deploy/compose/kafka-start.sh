#!/bin/sh
# Format the node once (with the admin's SCRAM credential, which the broker needs to talk to
# itself), then run it. KAFKA_ADMIN_PASSWORD comes from the environment only.
set -eu
: "${KAFKA_ADMIN_PASSWORD:?set KAFKA_ADMIN_PASSWORD}"
props=/tmp/server.properties
cp /etc/consentgate/kafka.properties "$props"
echo "listener.name.sasl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"${KAFKA_ADMIN_PASSWORD}\";" >> "$props"
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
  /opt/kafka/bin/kafka-storage.sh format --standalone -t "${KAFKA_CLUSTER_ID:-consentgate-compose-0001}" -c "$props" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=${KAFKA_ADMIN_PASSWORD}]"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$props"
