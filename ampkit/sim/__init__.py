"""Device simulators that speak the device's side of each protocol."""
