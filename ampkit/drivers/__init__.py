"""ampkit's own drivers. Each is registered in the ``ampkit.drivers`` entry-point
group, exactly as a third-party driver would be (see :mod:`ampkit.registry`)."""
