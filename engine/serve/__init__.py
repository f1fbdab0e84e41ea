"""The engine server for the Blender add-on: the ZeroMQ ROUTER loop (`server`), who may talk to it (`access`:
bind rule, tokens, clients), its handshake (`hello`), the checks every request passes before `accepted`
(`arrays`, `admission`), and where jobs run: one worker thread (`local_worker`) or a pool of Ray actors
(`ray_pool`, `ray_support`). May import tasks/ and everything below it and the protocol; never commands/, batch/
or cli/."""
