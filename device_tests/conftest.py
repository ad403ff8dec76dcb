"""pytest configuration for ``device_tests/`` (run with ``pytest device_tests -m device``).

The ``device`` marker is registered here as well as in ``pyproject.toml`` because
this folder is copied alone onto a device (or into the emulated rootfs), where no
``pyproject.toml`` is present and an unregistered marker would warn.
"""


def pytest_configure(config):
    config.addinivalue_line("markers", "device: on-target runs (device_tests), selected with -m device")
