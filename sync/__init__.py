"""Moving data between machines: bundles, the relay, USB transfer, HQ import."""
