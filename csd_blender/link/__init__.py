"""The add-on's link to the engine, with no bpy: the ZeroMQ client and its events, the engine session the
operators share, the local engine process, Set Up Engine (a Python environment with PyTorch and the engine), the
interpreter check and the reading of process output. It may import the standard library, zmq, numpy and
`..protocol`; never bpy or any other layer of the add-on, so all of it is tested without Blender."""
