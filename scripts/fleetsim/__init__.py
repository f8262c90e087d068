"""The 500-gateway fleet simulation behind `scripts/fleet` (docs/ops.md, "A fleet of 500").

    gateways.py  who is in the fleet: ids, the minimal config every gateway runs, the push file
    light.py     a light gateway: the agent's own MQTT client, birth/will, downlink and config-push code
                 in one asyncio task set, hundreds to a worker process (`python -m scripts.fleetsim.light`)
    procs.py     child processes that never outlive the run: brokers (mosquitto, an ejabberd cluster),
                 real `o2o-edge run` daemons, light workers; CPU and memory read from /proc
    scenario.py  the measured run: connect, steady traffic, `ops push --all`, `ops fleet`, broker restart
"""
