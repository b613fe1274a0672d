"""Safe rollout: validation records that gate promotion, traffic policies stored in the
registry, and the controller that steps a candidate version up or rolls it back."""
