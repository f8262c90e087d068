"""Central ops: sign and push config, publish documents, run commands and watch the fleet over MQTT.

`o2o-edge ops …` (agent/ops/cli.py). Everything goes through the agent's own
MQTT client (agent/sync/client.py) and config schema (agent/config.py); the
gateways are found from their retained topics, never from a list kept here.

    errors.py     OpsError and its exit codes
    keys.py       Ed25519 signing keys: keygen, load, sign a document
    broker.py     connection options -> a connected MqttClient, failures in one sentence
    fleet.py      what the retained topics say about each gateway (pure)
    observer.py   one connection that keeps the fleet view current and waits on it
    targets.py    --store/--gateway/--all -> gateways; --waves -> wave sizes (pure)
    documents.py  config files and data documents, validated locally before anything is sent
    diff.py       key-path diff of a config document against a gateway's reported one (pure)
    push.py       config pushes and staged rollouts; rollout records and rollback
    publish.py    catalog, members, campaigns, collect, qr documents
    cmd.py        commands and their results
    table.py      compact text tables
"""
