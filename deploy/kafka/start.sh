#!/bin/sh
# Formats the KRaft storage on first start, then runs the broker with deploy/kafka/server.properties.
set -eu
config=/etc/tickpipe/kafka/server.properties
if [ ! -f /var/lib/kafka/data/meta.properties ]; then
    /opt/kafka/bin/kafka-storage.sh format --standalone \
        --cluster-id "${CLUSTER_ID:-5L6g3nShT-eMCtK--X86sw}" --config "$config"
fi
exec /opt/kafka/bin/kafka-server-start.sh "$config"
