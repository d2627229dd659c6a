"""The state machines that ship with sandzmq, by the name a config gives them.

Names map to "module:Class" strings rather than classes so that reading a
config, or importing sandzmq, never imports a state machine nobody uses.
"""

BUILTINS: dict[str, str] = {
    "kv": "sandzmq.statemachines.kv:KVStateMachine",
}
