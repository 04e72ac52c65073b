# Nova's functional test classes need Nova's eventlet monkey patching to
# happen before anything else is imported; importing nova.tests does it.
import nova.tests  # noqa: F401
